(articleId, query) => {
  if (!articleId) return [articleId, query];
  return window.confirm('Delete ' + articleId + ' from the index?') ? [articleId, query] : [null, query];
}
