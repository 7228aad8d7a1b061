// Search snippets: plain text in which the server puts each matched word
// between `[[` and `]]`. They are parsed into text parts, shown as text nodes
// (and <mark> for a match): a snippet is never HTML, whatever it contains.

export interface SnippetPart {
  text: string;
  /** A matched word, shown highlighted. */
  match: boolean;
}

/**
 * A match is `[[`, at least one character that opens or closes no other
 * match, then `]]`. Of a run of brackets the innermost pair counts (`[[[x]]`
 * is a literal `[` and the match `x`); a lone `[[` or `]]` is literal text.
 */
const MATCH = /\[\[(?!\[)((?:(?!\[\[|\]\]).)+?)\]\]/gsu;

export function parseSnippet(snippet: string): SnippetPart[] {
  const parts: SnippetPart[] = [];
  const text = (value: string) => {
    if (!value) return;
    const last = parts.at(-1);
    if (last && !last.match) last.text += value;
    else parts.push({ text: value, match: false });
  };
  let at = 0;
  for (const found of snippet.matchAll(MATCH)) {
    text(snippet.slice(at, found.index));
    parts.push({ text: found[1] ?? '', match: true });
    at = found.index + found[0].length;
  }
  text(snippet.slice(at));
  return parts;
}

/** The snippet as plain text, without its markers (for a title or a screen reader). */
export function snippetText(snippet: string): string {
  return parseSnippet(snippet)
    .map((p) => p.text)
    .join('');
}
