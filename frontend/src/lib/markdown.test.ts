// The Markdown half of rendering (the DOMPurify half needs a browser: the
// end-to-end suite checks the page itself).
import { describe, expect, it } from 'vitest';
import { markdownHtml, SANITIZE_CONFIG } from './markdown';

describe('images in Markdown', () => {
  it('turns a web image into a link to it, fetching nothing', () => {
    const html = markdownHtml('Look: ![the chart](https://tracker.example/pixel.png?reader=1)');
    expect(html).not.toMatch(/<img/i);
    expect(html).toContain('<a class="image-link" href="https://tracker.example/pixel.png?reader=1">the chart</a>');
  });

  it('names the address when the image has no description', () => {
    expect(markdownHtml('![](http://example.com/a.png)')).toContain('>http://example.com/a.png</a>');
  });

  it('handles reference images and images inside links the same way', () => {
    const html = markdownHtml('![logo][l] and [![badge](https://ci.example/badge.svg)](https://ci.example/)\n\n[l]: https://cdn.example/logo.png');
    expect(html).not.toMatch(/<img/i);
    expect(html).toContain('href="https://cdn.example/logo.png">logo</a>');
    expect(html).toContain('href="https://ci.example/badge.svg">badge</a>');
  });

  it('keeps only the description of a data: or relative image', () => {
    const data = markdownHtml('![a red dot](data:image/png;base64,iVBORw0KGgo=)');
    expect(data).not.toMatch(/<img|data:|<a /i);
    expect(data).toContain('a red dot');
    const relative = markdownHtml('![icon](/favicon.svg)');
    expect(relative).not.toMatch(/<img|favicon|<a /i);
    expect(relative).toContain('icon');
  });

  it('escapes the description, and links nothing but http and https', () => {
    const html = markdownHtml('![<b onmouseover=x>bold</b> & co](javascript:alert(1))');
    expect(html).not.toMatch(/<b|<img|<a |javascript/i);
    expect(html).toContain('&#60;b onmouseover=x&#62;bold&#60;/b&#62; &#38; co');
  });

  it('shows HTML in a message as text, so that it loads and styles nothing', () => {
    const inline = markdownHtml('An <img src="https://tracker.example/p.png"> and <span style="color:red">red</span>, see <div>.');
    expect(inline).not.toMatch(/<img|<span|<div/i);
    expect(inline).toContain('&#60;img src=&#34;https://tracker.example/p.png&#34;&#62;');
    expect(inline).toContain('&#60;span style=&#34;color:red&#34;&#62;red&#60;/span&#62;');
    const block = markdownHtml('<picture>\n<source srcset="https://t.example/a.webp">\n</picture>\n\nafter');
    expect(block).not.toMatch(/<picture|<source/i);
    expect(block).toContain('&#60;picture&#62;<br>&#60;source srcset=');
    expect(block).toContain('<p>after</p>');
  });

  it('sanitizes whatever markup would still get through so that it loads nothing either', () => {
    for (const tag of ['img', 'picture', 'source', 'video', 'audio', 'style', 'form', 'input']) expect(SANITIZE_CONFIG.FORBID_TAGS).toContain(tag);
    for (const attribute of ['style', 'srcset', 'background', 'poster']) expect(SANITIZE_CONFIG.FORBID_ATTR).toContain(attribute);
    expect(SANITIZE_CONFIG.USE_PROFILES).toEqual({ html: true, mathMl: true }); // maths; never SVG
  });
});

describe('maths', () => {
  it('renders $…$, \\(…\\), $$…$$ and \\[…\\] as MathML, inline or as a block', () => {
    const inline = markdownHtml('Euler: $e^{i\\pi}+1=0$ and \\(a^2\\).');
    expect(inline.match(/<span class="math math-inline"><math xmlns="http:\/\/www.w3.org\/1998\/Math\/MathML">/g)).toHaveLength(2);
    expect(inline).toContain('<msup><mi>a</mi><mn>2</mn></msup>');
    for (const block of ['$$\n\\frac{a}{b}\n$$', '\\[\n\\frac{a}{b}\n\\]', '$$\\frac{a}{b}$$']) {
      const html = markdownHtml(block);
      expect(html, block).toContain('<div class="math math-display"><math xmlns="http://www.w3.org/1998/Math/MathML" display="block">');
      expect(html, block).toContain('<mfrac><mi>a</mi><mi>b</mi></mfrac>');
    }
  });

  it('leaves no TeX source to be shown as text, and no inline style', () => {
    const html = markdownHtml('$$\\sqrt{x}$$ and $\\color{red}{y}$');
    expect(html).not.toMatch(/annotation|semantics|style=/);
  });

  it('looks for no maths inside code', () => {
    const html = markdownHtml('`$x$` and\n\n```\n$$y$$\n```\n');
    expect(html).not.toContain('<math');
    expect(html).toContain('<code>$x$</code>');
    expect(html).toContain('$$y$$');
  });

  it('does not take prices for maths', () => {
    const html = markdownHtml('It costs $5 and $10, or $ 3 $.');
    expect(html).not.toContain('<math');
  });

  it('shows TeX it cannot read as written, escaped', () => {
    const html = markdownHtml('$\\frac{<b>$');
    expect(html).not.toContain('<math');
    expect(html).not.toContain('<b>');
    expect(html).toContain('<code class="math-error">$\\frac{&#60;b&#62;$</code>');
  });

  it('loads nothing and runs nothing: \\href and \\url are shown as text', () => {
    const html = markdownHtml('$\\href{javascript:alert(1)}{x}$ $\\url{https://example.com}$ $\\includegraphics{a.png}$');
    expect(html).not.toMatch(/href=|src=|javascript:/);
  });
});

describe('maths next to code', () => {
  it('keeps a code span after a price as code', () => {
    const html = markdownHtml('A price of $5 and $10, and `$x^2$` in code.');
    expect(html).not.toContain('<math');
    expect(html).toContain('<code>$x^2$</code>');
  });
});
