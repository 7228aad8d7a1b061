import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import { Snippet } from '../components/Search';
import { parseSnippet, snippetText } from './snippet';

const shape = (snippet: string) => parseSnippet(snippet).map((p) => (p.match ? `<${p.text}>` : p.text));

describe('search snippets', () => {
  it('marks each word between [[ and ]]', () => {
    expect(parseSnippet('How do [[actors]] work?')).toEqual([
      { text: 'How do ', match: false },
      { text: 'actors', match: true },
      { text: ' work?', match: false },
    ]);
    expect(shape('[[a]][[b]] c [[d]]')).toEqual(['<a>', '<b>', ' c ', '<d>']);
  });

  it('keeps Vietnamese text and its diacritics intact', () => {
    expect(shape('Tôi muốn học [[tiếng]] [[Việt]] ở Huế')).toEqual(['Tôi muốn học ', '<tiếng>', ' ', '<Việt>', ' ở Huế']);
    // Decomposed (NFD) diacritics stay as they came.
    const nfd = 'ti\u0065\u0302\u0301ng';
    expect(shape(`[[${nfd}]] Việt`)).toEqual([`<${nfd}>`, ' Việt']);
    expect(shape('…phở [[Hà]] [[Nội]]…')).toEqual(['…phở ', '<Hà>', ' ', '<Nội>', '…']);
  });

  it('treats unbalanced and empty markers as text', () => {
    expect(shape('a [[b c')).toEqual(['a [[b c']);
    expect(shape('a ]] b')).toEqual(['a ]] b']);
    expect(shape('[[]] x')).toEqual(['[[]] x']);
    expect(shape(']][[x')).toEqual([']][[x']);
    expect(shape('[[a [[b]] c')).toEqual(['[[a ', '<b>', ' c']);
    expect(shape('[[[x]]]')).toEqual(['[', '<x>', ']']);
    expect(shape('')).toEqual([]);
  });

  it('never reads a snippet as markup', () => {
    const hostile = '<script>alert(1)</script> [[<img src=x onerror=alert(2)>]] &amp; <b>bold</b>';
    expect(shape(hostile)).toEqual(['<script>alert(1)</script> ', '<<img src=x onerror=alert(2)>>', ' &amp; <b>bold</b>']);
    expect(snippetText(hostile)).toBe('<script>alert(1)</script> <img src=x onerror=alert(2)> &amp; <b>bold</b>');

    const html = renderToStaticMarkup(createElement(Snippet, { text: hostile }));
    expect(html).toBe(
      '<span class="snippet">&lt;script&gt;alert(1)&lt;/script&gt; <mark>&lt;img src=x onerror=alert(2)&gt;</mark> &amp;amp; &lt;b&gt;bold&lt;/b&gt;</span>',
    );
    expect(html).not.toMatch(/<script|<img|<b>/);
  });

  it('renders matches as <mark> and the rest as text', () => {
    expect(renderToStaticMarkup(createElement(Snippet, { text: 'học [[tiếng]] [[Việt]]' }))).toBe(
      '<span class="snippet">học <mark>tiếng</mark> <mark>Việt</mark></span>',
    );
  });
});
