// Apply a chosen theme before the first paint, so a dark page never flashes
// light. A file rather than an inline script: the node's
// Content-Security-Policy runs no inline script.
try {
  const theme = localStorage.getItem('chatstream.theme');
  if (theme === 'light' || theme === 'dark') document.documentElement.dataset.theme = theme;
} catch {
  // No storage (private mode): the system theme until the app starts.
}
