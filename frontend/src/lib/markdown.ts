// Markdown to safe HTML. Model output and user input are both untrusted: HTML
// in them is shown as text, images become links, and everything marked
// produces still goes through DOMPurify before it reaches the DOM.

import DOMPurify from 'dompurify';
import katex from 'katex';
import { Marked, type MarkedExtension, type Renderer, type Tokens } from 'marked';
import hljs from 'highlight.js/lib/core';
import bash from 'highlight.js/lib/languages/bash';
import css from 'highlight.js/lib/languages/css';
import go from 'highlight.js/lib/languages/go';
import javascript from 'highlight.js/lib/languages/javascript';
import json from 'highlight.js/lib/languages/json';
import python from 'highlight.js/lib/languages/python';
import rust from 'highlight.js/lib/languages/rust';
import sql from 'highlight.js/lib/languages/sql';
import typescript from 'highlight.js/lib/languages/typescript';
import xml from 'highlight.js/lib/languages/xml';
import yaml from 'highlight.js/lib/languages/yaml';

// The core plus a handful of common languages keeps the bundle small; other
// languages still render, just without colours.
const languages = { bash, css, go, javascript, json, python, rust, sql, typescript, xml, yaml };
for (const [name, language] of Object.entries(languages)) hljs.registerLanguage(name, language);
hljs.registerAliases(['sh', 'shell', 'zsh', 'console'], { languageName: 'bash' });
hljs.registerAliases(['js', 'jsx', 'mjs'], { languageName: 'javascript' });
hljs.registerAliases(['ts', 'tsx'], { languageName: 'typescript' });
hljs.registerAliases(['py'], { languageName: 'python' });
hljs.registerAliases(['rs'], { languageName: 'rust' });
hljs.registerAliases(['html', 'svg'], { languageName: 'xml' });
hljs.registerAliases(['yml'], { languageName: 'yaml' });

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function renderCode({ text, lang }: Tokens.Code): string {
  const language = (lang ?? '').trim().split(/\s+/)[0]?.toLowerCase() ?? '';
  const known = language !== '' && hljs.getLanguage(language) !== undefined;
  const body = known ? hljs.highlight(text, { language, ignoreIllegals: true }).value : escapeHtml(text);
  // The copy button works through event delegation in <Markdown>, because
  // this HTML is a string and cannot carry React handlers. The <pre> scrolls
  // sideways: focusable, so a keyboard can scroll it too.
  return (
    `<div class="code-block"><div class="code-head"><span>${escapeHtml(language || 'text')}</span>` +
    `<button type="button" class="copy-code" data-copy-code aria-label="Copy code">Copy</button></div>` +
    `<pre tabindex="0"><code class="hljs">${body}</code></pre></div>`
  );
}

/**
 * An image is never fetched: text from a model (or pasted by a user) could
 * otherwise make every reader's browser request any address, telling its
 * owner who read the reply and when, or show a convincing fake screenshot.
 * A web image becomes a link to it, which fetches nothing until clicked; any
 * other kind (`data:`, relative) keeps only its description.
 */
function renderImage(this: Renderer, { href, text, tokens }: Tokens.Image): string {
  const description = tokens ? this.parser.parseInline(tokens, this.parser.textRenderer) : text;
  if (/^https?:\/\//i.test(href.trim())) {
    return `<a class="image-link" href="${escapeHtml(href.trim())}">${escapeHtml(description || href.trim())}</a>`;
  }
  return escapeHtml(description);
}

/**
 * HTML in a message is shown as the text it is: a model explaining `<div>`
 * means the tag, not an element, and no markup from a message reaches the
 * page (nothing that loads a URL, no `style` attribute for the page's
 * Content-Security-Policy to refuse).
 */
function renderHtml({ text, block }: Tokens.HTML | Tokens.Tag): string {
  const shown = escapeHtml(text);
  return block ? `<p>${shown.trimEnd().replace(/\n/g, '<br>')}</p>` : shown;
}

/**
 * LaTeX maths: `$…$` and `\\(…\\)` inline, `$$…$$` and `\\[…\\]` as a block (or
 * inline, inside a paragraph). KaTeX writes MathML, which the browser lays
 * out itself: its HTML output needs inline styles, which the node's
 * Content-Security-Policy refuses. Code spans and blocks are tokenized
 * before any of this, so maths is never looked for inside code. A price such
 * as "$5 and $10" is not maths: an opening `$` is followed by a non-space,
 * a closing one preceded by a non-space and not followed by a digit; inline
 * maths holds no backtick, so a code span after a price stays code.
 */
interface MathToken extends Tokens.Generic {
  type: 'math' | 'inlineMath';
  raw: string;
  tex: string;
  display: boolean;
}

const INLINE_MATH: [RegExp, boolean][] = [
  [/^\$\$(?!\$)((?:\\[\s\S]|[^\\$`])+?)\$\$/, true],
  [/^\$(?![\s$])((?:\\.|[^\\$\n`])*?[^\s\\$`])\$(?!\d)/, false],
  [/^\\\(((?:\\[^)]|[^\\])+?)\\\)/, false],
  [/^\\\[((?:\\[^\]]|[^\\])+?)\\\]/, true],
];
const BLOCK_MATH = [/^ {0,3}\$\$((?:\\[\s\S]|[^\\$])+?)\$\$[ \t]*(?:\n|$)/, /^ {0,3}\\\[([\s\S]+?)\\\][ \t]*(?:\n|$)/];

function renderMath(tex: string, display: boolean, raw: string): string {
  let mathml: string;
  try {
    mathml = katex.renderToString(tex, {
      displayMode: display,
      output: 'mathml',
      throwOnError: true,
      trust: false,
      strict: 'ignore',
      maxSize: 50,
      maxExpand: 500,
    });
  } catch {
    // Not TeX after all (or not yet: a formula still streaming): show it as written.
    return `<code class="math-error">${escapeHtml(raw.trim())}</code>`;
  }
  // The TeX source in <annotation> is not for display (and DOMPurify drops
  // <semantics>, which would leave it shown as text).
  const math = mathml
    .replace(/<annotation\b[\s\S]*?<\/annotation>/g, '')
    .replace(/<\/?semantics>/g, '')
    .replace(/^<span class="katex">|<\/span>$/g, '');
  return display ? `<div class="math math-display">${math}</div>` : `<span class="math math-inline">${math}</span>`;
}

const mathExtension: MarkedExtension = {
  extensions: [
    {
      name: 'math',
      level: 'block',
      start: (src) => {
        const m = /(?:^|\n) {0,3}(?:\$\$|\\\[)/.exec(src);
        return m ? m.index + (m[0].startsWith('\n') ? 1 : 0) : undefined;
      },
      tokenizer(src): MathToken | undefined {
        for (const pattern of BLOCK_MATH) {
          const m = pattern.exec(src);
          if (m && m[1]!.trim() !== '') return { type: 'math', raw: m[0], tex: m[1]!.trim(), display: true };
        }
        return undefined;
      },
      renderer: (token) => renderMath((token as MathToken).tex, true, token.raw),
    },
    {
      name: 'inlineMath',
      level: 'inline',
      start: (src) => {
        const m = /\$|\\[([]/.exec(src);
        return m ? m.index : undefined;
      },
      tokenizer(src): MathToken | undefined {
        for (const [pattern, display] of INLINE_MATH) {
          const m = pattern.exec(src);
          if (m && m[1]!.trim() !== '') return { type: 'inlineMath', raw: m[0], tex: m[1]!.trim(), display };
        }
        return undefined;
      },
      renderer: (token) => renderMath((token as MathToken).tex, (token as MathToken).display, token.raw),
    },
  ],
};

const marked = new Marked(
  { gfm: true, breaks: true, renderer: { code: renderCode, image: renderImage, html: renderHtml } },
  mathExtension,
);

let hooked = false;

/** DOMPurify with this module's hook, added on first use: importing the module needs no DOM (its unit tests run in Node). */
function purifier(): typeof DOMPurify {
  if (!hooked) {
    // Links open in a new tab, without giving that tab a handle on this one.
    DOMPurify.addHook('afterSanitizeAttributes', (node) => {
      if (node.tagName === 'A') {
        node.setAttribute('target', '_blank');
        node.setAttribute('rel', 'noopener noreferrer');
      }
    });
    hooked = true;
  }
  return DOMPurify;
}

export const SANITIZE_CONFIG = {
  // HTML, and MathML for maths (written by KaTeX from the TeX: HTML in a
  // message is escaped before it gets here). No SVG: it brings its own ways
  // to load URLs.
  USE_PROFILES: { html: true, mathMl: true },
  ADD_ATTR: ['target'],
  // The renderer above writes none of these; should markup ever get through,
  // it still loads nothing, restyles nothing (the page's policy refuses
  // inline styles anyway) and posts nowhere.
  FORBID_TAGS: ['img', 'picture', 'source', 'video', 'audio', 'track', 'style', 'form', 'input'],
  FORBID_ATTR: ['style', 'srcset', 'background', 'poster', 'ping'],
};

/** Markdown to HTML, before sanitizing (exported for tests). */
export function markdownHtml(source: string): string {
  return marked.parse(source, { async: false });
}

export function renderMarkdown(source: string): string {
  return purifier().sanitize(markdownHtml(source), SANITIZE_CONFIG);
}

/** Like `renderMarkdown`, as nodes ready to insert (no second parse of the HTML). */
export function renderMarkdownFragment(source: string): DocumentFragment {
  return purifier().sanitize(markdownHtml(source), { ...SANITIZE_CONFIG, RETURN_DOM_FRAGMENT: true });
}
