import { describe, expect, it } from 'vitest';
import { BlockSplitter, splitBlocks } from './blocks';
import { markdownHtml } from './markdown';

const CODE_WITH_BLANKS = [
  'Here is the function:',
  '',
  '```rust',
  'fn main() {',
  '    let x = 1;',
  '',
  '    println!("{x}");',
  '}',
  '```',
  '',
  'And after it, a paragraph.',
  '',
].join('\n');

const LISTS = [
  '# Steps',
  '',
  '- first, tight',
  '- second',
  '',
  '- third, making the list loose',
  '',
  '  still the third item',
  '',
  '1. one',
  '2. two',
  '',
  '   more of two',
  '3. three',
  '',
  'A paragraph ends the list.',
  '',
  '* another list',
  '',
].join('\n');

const TABLE = [
  '| Name | Value |',
  '| --- | ---: |',
  '| a | 1 |',
  '| b | 2 |',
  '',
  'Text under the table.',
  '',
  '> a quote',
  '> on two lines',
  '',
  '> another quote',
  '',
  '    indented code',
  '',
  '    more indented code after a blank line',
  '',
  'The end.',
].join('\n');

const MIXED = [
  '## Tilde fences and maths',
  '',
  '~~~~python',
  'print("```")',
  '',
  '~~~',
  'still code: a shorter fence does not close it',
  '~~~~',
  '',
  'Euler: $e^{i\\pi} + 1 = 0$, and a price of $5 and $10.',
  '',
  '$$',
  'x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a}',
  '',
  '$$',
  '',
  '<!-- an HTML comment',
  '',
  'over a blank line -->',
  '',
  'Setext heading',
  '==============',
  '',
  'Paragraph then code without a blank line:',
  '```js',
  'const a = 1;',
  '',
  'const b = 2;',
  '```',
  'Last words.',
].join('\n');

const DOCUMENTS = { CODE_WITH_BLANKS, LISTS, TABLE, MIXED };

/** What the browser shows is the HTML of each block one after the other. */
const rendered = (text: string) => {
  const { blocks, tail } = splitBlocks(text);
  return [...blocks, tail].map(markdownHtml).join('');
};
const normalize = (html: string) => html.replace(/>\s+</g, '><').trim();

describe('splitting Markdown into finished blocks', () => {
  for (const [name, doc] of Object.entries(DOCUMENTS)) {
    it(`renders every prefix of ${name} as the whole text renders`, () => {
      for (let end = 1; end <= doc.length; end++) {
        const text = doc.slice(0, end);
        expect(normalize(rendered(text)), `prefix of ${end} characters`).toBe(normalize(markdownHtml(text)));
      }
    });

    it(`keeps the text whole (${name})`, () => {
      const { blocks, tail } = splitBlocks(doc);
      expect(blocks.join('') + tail).toBe(doc);
      expect(blocks.length).toBeGreaterThan(1);
    });
  }

  it('never cuts inside a fenced code block, however many blank lines it holds', () => {
    const { blocks, tail } = splitBlocks(CODE_WITH_BLANKS);
    expect(blocks).toEqual(['Here is the function:\n\n', CODE_WITH_BLANKS.slice(23, CODE_WITH_BLANKS.indexOf('And after'))]);
    expect(tail).toBe('And after it, a paragraph.\n');
    // While the fence is open, everything from it is the tail.
    const open = CODE_WITH_BLANKS.slice(0, CODE_WITH_BLANKS.indexOf('}'));
    expect(splitBlocks(open).tail).toMatch(/^```rust\n/);
    expect(splitBlocks(open).blocks).toHaveLength(1);
  });

  it('keeps a list whole across blank lines and indented continuations', () => {
    const { blocks } = splitBlocks(LISTS);
    expect(blocks[0]).toBe('# Steps\n\n');
    expect(blocks[1]).toMatch(/^- first[\s\S]*3\. three\n\n$/);
    expect(blocks[2]).toBe('A paragraph ends the list.\n\n');
  });

  it('cuts at a blank line only once the next block has a complete line', () => {
    expect(splitBlocks('First paragraph.\n\n').blocks).toEqual([]);
    expect(splitBlocks('First paragraph.\n\nSec').blocks).toEqual([]);
    expect(splitBlocks('First paragraph.\n\nSecond.\n')).toEqual({ blocks: ['First paragraph.\n\n'], tail: 'Second.\n' });
  });

  it('keeps a table and the text after it apart', () => {
    const { blocks } = splitBlocks(TABLE);
    expect(blocks[0]).toBe('| Name | Value |\n| --- | ---: |\n| a | 1 |\n| b | 2 |\n\n');
  });

  it('does not cut a text with link reference definitions', () => {
    const text = 'See [the docs][d].\n\nMore.\n\n[d]: https://example.com/\n';
    expect(splitBlocks(text)).toEqual({ blocks: [], tail: text });
  });
});

describe('BlockSplitter', () => {
  it('gives, delta by delta, what splitting the whole text gives, keeping finished blocks', () => {
    for (const doc of Object.values(DOCUMENTS)) {
      const splitter = new BlockSplitter();
      let previous: string[] = [];
      for (let end = 0; end <= doc.length; end += 7) {
        const text = doc.slice(0, end);
        const split = splitter.update(text);
        expect(split).toEqual(splitBlocks(text));
        // Finished blocks never change as the text grows.
        expect(split.blocks.slice(0, previous.length)).toEqual(previous);
        previous = split.blocks;
      }
    }
  });

  it('starts afresh when the text is replaced rather than extended', () => {
    const splitter = new BlockSplitter();
    splitter.update('One.\n\nTwo.\n\nThree');
    expect(splitter.update('Other.\n\nText.\n')).toEqual({ blocks: ['Other.\n\n'], tail: 'Text.\n' });
  });

  it('stops cutting when a link reference definition arrives', () => {
    const splitter = new BlockSplitter();
    expect(splitter.update('See [x][d].\n\nMore.\n').blocks).toHaveLength(1);
    const text = 'See [x][d].\n\nMore.\n\n[d]: https://example.com/\n';
    expect(splitter.update(text)).toEqual({ blocks: [], tail: text });
  });
});
