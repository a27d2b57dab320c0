// Home: a live channel's thumbnail may not exist yet; then the placeholder shows.
for (const img of document.querySelectorAll('img[data-optional]')) {
  const hide = () => { img.hidden = true; };
  if (img.complete && img.naturalWidth === 0) hide(); // failed before this module ran
  img.addEventListener('error', hide);
}
