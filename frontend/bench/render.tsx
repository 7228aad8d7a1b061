// The render benchmark's page (`npm run bench:render`, scripts/bench-render.mjs):
// one assistant message, as the app shows it, fed a reply delta by delta.
// `?mode=blocks` renders it with <Markdown> (finished blocks kept, the
// unfinished one rendered again); `?mode=whole` with the renderer as it was
// before, which parsed, sanitized and highlighted the whole text per delta.

import { memo, useMemo, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { flushSync } from 'react-dom';
import { Markdown } from '../src/components/Markdown';
import { renderMarkdown } from '../src/lib/markdown';
import '../src/styles.css';

/** The message renderer before issue 13: the whole text, every time it changes. */
const WholeMarkdown = memo(function WholeMarkdown({ text }: { text: string }) {
  const html = useMemo(() => renderMarkdown(text), [text]);
  return <div className="markdown" dangerouslySetInnerHTML={{ __html: html }} />;
});

const mode = new URLSearchParams(location.search).get('mode') === 'whole' ? 'whole' : 'blocks';
let setText: (text: string) => void = () => {};

function Bench() {
  const [text, set] = useState('');
  setText = set;
  return (
    <div className="messages" style={{ height: '100vh' }}>
      <div className="messages-inner">
        <article className="message assistant" data-status="streaming">
          <div className="avatar" aria-hidden="true" />
          <div className="message-body">{mode === 'whole' ? <WholeMarkdown text={text} /> : <Markdown text={text} />}</div>
        </article>
      </div>
    </div>
  );
}

createRoot(document.getElementById('root')!).render(<Bench />);

const frame = () => new Promise<void>((resolve) => requestAnimationFrame(() => resolve()));

/**
 * Feeds `deltas` one per frame, as a stream does. Returns each delta's
 * synchronous cost (React render and commit, the Markdown work, then style
 * and layout, forced) in milliseconds.
 */
async function run(deltas: string[]): Promise<number[]> {
  flushSync(() => setText(''));
  await frame();
  const costs: number[] = [];
  let text = '';
  for (const delta of deltas) {
    text += delta;
    const start = performance.now();
    flushSync(() => setText(text));
    void document.body.offsetHeight;
    costs.push(performance.now() - start);
    await frame();
  }
  return costs;
}

Object.assign(window, { bench: { mode, run, shown: () => document.querySelector('.markdown')?.innerHTML ?? '' } });
