() => {
  setTimeout(() => {
    const mark = document.querySelector('#article-viewer mark.hl');
    const box = document.querySelector('#article-viewer .article-text');
    if (mark && box) {
      mark.scrollIntoView({block: 'center', inline: 'nearest'});
      mark.setAttribute('tabindex', '-1');
      mark.focus({preventScroll: true});
    }
  }, 60);
}
