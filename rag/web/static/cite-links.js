window.__newsragOpen = (ref) => trigger('click', {ref: ref});
if (!window.__newsragListener) {
  window.__newsragListener = true;
  document.addEventListener('click', (event) => {
    const el = event.target && event.target.closest ? event.target.closest('[data-cite], a[href^="#cite-"]') : null;
    if (!el) return;
    let ref = el.getAttribute('data-cite');
    if (!ref) {
      const m = (el.getAttribute('href') || '').match(/^#cite-(\d+)-(\d+)$/);
      if (!m) return;
      ref = m[1] + ':c:' + m[2];
    }
    event.preventDefault();
    event.stopPropagation();
    window.__newsragOpen(ref);
  }, true);
}
