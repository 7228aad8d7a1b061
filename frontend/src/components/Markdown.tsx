import { memo, useMemo, type MouseEvent } from 'react';
import { copyText } from '../lib/clipboard';
import { renderMarkdown } from '../lib/markdown';

/** Rendered, sanitised Markdown; re-parsed only when the text changes. */
export const Markdown = memo(function Markdown({ text }: { text: string }) {
  const html = useMemo(() => renderMarkdown(text), [text]);
  return <div className="markdown" onClick={onCopyCode} dangerouslySetInnerHTML={{ __html: html }} />;
});

/** Copy buttons inside rendered HTML cannot carry React handlers: delegate. */
async function onCopyCode(event: MouseEvent<HTMLDivElement>) {
  const button = (event.target as Element).closest<HTMLButtonElement>('[data-copy-code]');
  const code = button?.closest('.code-block')?.querySelector('code');
  if (!button || !code) return;
  const copied = await copyText(code.textContent ?? '');
  button.textContent = copied ? 'Copied' : 'Copy failed';
  setTimeout(() => (button.textContent = 'Copy'), 1500);
}
