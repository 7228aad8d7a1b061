import { memo, useEffect, useLayoutEffect, useRef } from 'react';
import { useI18n } from '../i18n/I18n';
import type { Dict } from '../i18n/en';
import { BlockSplitter } from '../lib/blocks';
import { copyText } from '../lib/clipboard';
import { renderMarkdownFragment } from '../lib/markdown';

/** The nodes one rendered piece of the text put in the container. */
interface Piece {
  source: string;
  nodes: ChildNode[];
}

/**
 * Rendered, sanitised Markdown. While a reply streams, only its unfinished
 * last block is parsed and rendered again on each delta: finished blocks
 * (`lib/blocks.ts`) keep their nodes, so a long reply costs the same per
 * delta as a short one. The container holds the blocks' elements directly,
 * as one rendering of the whole text would.
 */
export const Markdown = memo(function Markdown({ text }: { text: string }) {
  const container = useRef<HTMLDivElement>(null);
  const splitter = useRef<BlockSplitter | null>(null);
  const shown = useRef<{ blocks: Piece[]; tail: Piece | null }>({ blocks: [], tail: null });
  const { t } = useI18n();
  const words = useRef(t);

  useLayoutEffect(() => {
    const el = container.current;
    if (!el) return;
    splitter.current ??= new BlockSplitter();
    const { blocks, tail } = splitter.current.update(text);
    const held = shown.current;
    // Finished blocks already shown stay as they are (the same text renders the same).
    let same = 0;
    while (same < held.blocks.length && same < blocks.length && held.blocks[same]!.source === blocks[same]) same++;
    for (const piece of [...held.blocks.splice(same), ...(held.tail ? [held.tail] : [])]) {
      for (const node of piece.nodes) node.remove();
    }
    for (const source of blocks.slice(same)) held.blocks.push(insert(el, source, words.current));
    held.tail = tail === '' ? null : insert(el, tail, words.current);
  }, [text]);

  // The copy buttons speak the UI's language (the HTML is written in English).
  useLayoutEffect(() => {
    words.current = t;
    if (container.current) labelCopyButtons(container.current, t);
  }, [t]);

  // Copy buttons are plain <button>s in the rendered HTML (so keyboard users
  // press them as any button): their clicks are handled here, by delegation.
  useEffect(() => {
    const el = container.current;
    const onClick = (event: Event) => void onCopyCode(event, words.current);
    el?.addEventListener('click', onClick);
    return () => el?.removeEventListener('click', onClick);
  }, []);

  return <div className="markdown" ref={container} />;
});

function insert(container: HTMLElement, source: string, t: Dict): Piece {
  const fragment = renderMarkdownFragment(source);
  labelCopyButtons(fragment, t);
  const nodes = [...fragment.childNodes];
  container.append(fragment);
  return { source, nodes };
}

function labelCopyButtons(root: ParentNode, t: Dict) {
  for (const button of root.querySelectorAll<HTMLButtonElement>('[data-copy-code]')) {
    button.setAttribute('aria-label', t.copyCode);
    if (!button.dataset.state) button.textContent = t.copy;
  }
}

/** Copy buttons inside rendered HTML cannot carry React handlers: delegate. */
async function onCopyCode(event: Event, t: Dict) {
  const button = (event.target as Element | null)?.closest<HTMLButtonElement>('[data-copy-code]');
  const code = button?.closest('.code-block')?.querySelector('code');
  if (!button || !code) return;
  const copied = await copyText(code.textContent ?? '');
  button.dataset.state = copied ? 'copied' : 'failed';
  button.textContent = copied ? t.copied : t.copyFailed;
  setTimeout(() => {
    delete button.dataset.state;
    button.textContent = t.copy;
  }, 1500);
}
