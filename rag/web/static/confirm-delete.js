(articleId, ...listed) => {
  if (!articleId) return [articleId, ...listed];
  return window.confirm('Delete ' + articleId + ' from the index?') ? [articleId, ...listed] : [null, ...listed];
}
