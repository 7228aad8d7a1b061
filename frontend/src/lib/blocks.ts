// Streaming Markdown, a block at a time. A reply grows by a few words per
// delta; parsing, sanitizing and highlighting the whole text again each time
// costs more the longer it gets. The text is cut instead into finished
// top-level blocks, which never change again and are rendered once, and the
// unfinished tail, the only part rendered again per delta.
//
// A cut is made only where the Markdown before it cannot be changed by what
// follows: at a blank line, outside a fenced code block, display maths or an
// HTML block that may hold blank lines, and only once the next block has
// begun with a line that does not continue the one before (an indented line
// may belong to a list item or an indented code block; a list item after a
// list continues that list). Rendering the blocks one by one then gives what
// rendering the whole text gives (the unit tests check it for every prefix of
// their documents). A text with link reference definitions (`[x]: url`),
// whose links may sit in any block, is not cut at all.

/** The finished blocks of a text and its unfinished tail: `blocks.join('') + tail` is the text. */
export interface Split {
  blocks: string[];
  tail: string;
}

const BLANK = /^[ \t]*$/;
const FENCE = /^ {0,3}(`{3,}|~{3,})(.*)$/;
const LIST_ITEM = /^ {0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)/;
const INDENTED = /^(?: {1,}|\t)/;
const DEFINITION = /^ {0,3}\[[^\]\n]+\]:/m;
/** Display maths that may span lines: `$$` or `\[` opening a line without closing on it. */
const MATH_OPEN = /^ {0,3}(\$\$|\\\[)/;
/** HTML blocks that end at their own end marker rather than at a blank line (CommonMark kinds 1 to 5). */
const HTML_BLOCKS: [RegExp, RegExp][] = [
  [/^ {0,3}<(?:script|pre|style|textarea)(?:\s|>|$)/i, /<\/(?:script|pre|style|textarea)>/i],
  [/^ {0,3}<!--/, /-->/],
  [/^ {0,3}<\?/, /\?>/],
  [/^ {0,3}<![A-Za-z]/, />/],
  [/^ {0,3}<!\[CDATA\[/, /\]\]>/],
];

/** Where a construct that may hold blank lines is still open. */
type Open =
  | { kind: 'fence'; char: string; length: number }
  | { kind: 'math'; close: string }
  | { kind: 'html'; end: RegExp };

/** The complete lines of `text` from `start`, each with its end offset (after its newline). */
function* lines(text: string, start: number): Generator<[line: string, end: number]> {
  let at = start;
  for (;;) {
    const newline = text.indexOf('\n', at);
    if (newline === -1) return;
    yield [text.slice(at, newline), newline + 1];
    at = newline + 1;
  }
}

/**
 * The offsets, after `from` (itself a cut or 0), at which `text` can be cut
 * into finished blocks: each is the start of a block's first line.
 */
export function cutPoints(text: string, from = 0): number[] {
  if (DEFINITION.test(text)) return [];
  const cuts: number[] = [];
  let open: Open | null = null;
  /** The block being read holds a list item (a list item after a blank line continues it). */
  let hasList = false;
  /** A blank line ended the block being read at this offset; the next line decides whether it is a cut. */
  let blankAt: number | null = null;
  /** The block being read has any line at all. */
  let started = false;
  let lineStart = from;
  for (const [line, end] of lines(text, from)) {
    const start = lineStart;
    lineStart = end;
    if (open) {
      if (closes(open, line)) open = null;
      continue;
    }
    if (BLANK.test(line)) {
      if (started && blankAt === null) blankAt = start;
      continue;
    }
    if (blankAt !== null) {
      const continues = INDENTED.test(line) || (hasList && LIST_ITEM.test(line));
      if (!continues) {
        cuts.push(start);
        hasList = false;
      }
      blankAt = null;
    }
    started = true;
    if (LIST_ITEM.test(line)) hasList = true;
    open = opens(line);
  }
  return cuts;
}

/** A construct this line opens that a blank line does not end, or null. */
function opens(line: string): Open | null {
  const fence = FENCE.exec(line);
  if (fence) {
    const marker = fence[1]!;
    // A backtick fence's info string holds no backtick; otherwise it is inline code.
    if (marker[0] === '`' && fence[2]!.includes('`')) return null;
    return { kind: 'fence', char: marker[0]!, length: marker.length };
  }
  const math = MATH_OPEN.exec(line);
  if (math) {
    const close = math[1] === '$$' ? '$$' : '\\]';
    const rest = line.slice(math.index + math[0].length);
    return rest.includes(close) ? null : { kind: 'math', close };
  }
  for (const [start, end] of HTML_BLOCKS) {
    if (start.test(line)) return end.test(line.replace(start, '')) ? null : { kind: 'html', end };
  }
  return null;
}

function closes(open: Open, line: string): boolean {
  switch (open.kind) {
    case 'fence': {
      const match = /^ {0,3}(`+|~+)[ \t]*$/.exec(line);
      return match !== null && match[1]![0] === open.char && match[1]!.length >= open.length;
    }
    case 'math':
      return line.includes(open.close);
    case 'html':
      return open.end.test(line);
  }
}

/** `text` cut into finished blocks and the unfinished tail. */
export function splitBlocks(text: string): Split {
  return splitFrom(text, [], 0);
}

function splitFrom(text: string, blocks: string[], from: number): Split {
  const out = [...blocks];
  let at = from;
  for (const cut of cutPoints(text, from)) {
    out.push(text.slice(at, cut));
    at = cut;
  }
  return { blocks: out, tail: text.slice(at) };
}

/**
 * Splits a growing text, reading only what follows the last cut: a text that
 * extends the previous one keeps its finished blocks (the same strings), any
 * other text is split afresh.
 */
export class BlockSplitter {
  private text = '';
  private split: Split = { blocks: [], tail: '' };

  update(text: string): Split {
    if (text === this.text) return this.split;
    const finished = this.text.length - this.split.tail.length;
    // A definition arriving later may change blocks already cut: split afresh (it answers no cuts).
    const reuse = text.startsWith(this.text) && !DEFINITION.test(text.slice(finished));
    this.split = reuse ? splitFrom(text, this.split.blocks, finished) : splitBlocks(text);
    this.text = text;
    return this.split;
  }
}
