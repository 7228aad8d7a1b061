// What a person reads when something fails. Servers of contract 1.1 write
// `error.message`, `failed.error` and HTTP error bodies as short sentences for
// people, so those are shown; a code, an empty message or something that is
// plainly not a sentence (JSON, an HTML error page from a proxy) is replaced
// by the sentence for its code.

import { ApiError } from '../api/http';
import { en, type Dict } from '../i18n/en';

/** The longest server sentence shown as it is; anything longer is not a short sentence. */
const MAX_SENTENCE_CHARS = 300;

/** The protocol's error codes (section 6 of the contract), each with its sentence in every language. */
export const ERROR_CODES = [
  'bad_request',
  'unauthorized',
  'forbidden',
  'not_found',
  'too_large',
  'rate_limited',
  'conflict',
  'unavailable',
  'internal',
] as const;

/** The code's sentence in the dictionary's language; an unknown code gets a general one. */
export function sentenceForCode(code: string, t: Pick<Dict, 'codes' | 'somethingWentWrong'> = en): string {
  return (Object.hasOwn(t.codes, code) ? t.codes[code] : undefined) ?? t.somethingWentWrong;
}

/**
 * `text` as a sentence to show, or null when it is not one: empty, a bare
 * code (`too_large`), JSON or markup, or too long to be a short sentence.
 */
export function humanSentence(text: string | null | undefined): string | null {
  const trimmed = (text ?? '').trim().replace(/\s+/g, ' ');
  if (trimmed === '' || trimmed.length > MAX_SENTENCE_CHARS) return null;
  if (!/\s/.test(trimmed)) return null; // one word: a code or a status, not a sentence
  if (/^[[{<]/.test(trimmed)) return null;
  // An address in an error is an internal detail (an upstream's URL from a
  // node older than contract 1.1), not something for the reader.
  if (trimmed.includes('://')) return null;
  const capitalized = trimmed[0]!.toUpperCase() + trimmed.slice(1);
  return /[.!?…]$/.test(capitalized) ? capitalized : `${capitalized}.`;
}

/**
 * The UI speaks English: the server's sentences (always English) can be
 * shown as they are. In any other language they are not: the page's own
 * sentence for the error's code is shown instead, so a Vietnamese reader
 * never meets an English sentence from the server.
 */
export function speaksServerLanguage(t: Pick<Dict, 'langName'>): boolean {
  return t.langName === en.langName;
}

/** The server's `text` to show in the UI's language: a sentence in an English UI, null otherwise (or when it is not one). */
export function serverSentence(text: string | null | undefined, t: Pick<Dict, 'langName'> = en): string | null {
  return speaksServerLanguage(t) ? humanSentence(text) : null;
}

/** What to show for an error with a protocol code and the server's message. */
export function describeError(
  code: string,
  message: string | null | undefined,
  t: Pick<Dict, 'codes' | 'somethingWentWrong' | 'langName'> = en,
): string {
  return serverSentence(message, t) ?? sentenceForCode(code, t);
}

/** The first line of a reply that ended `failed`. */
export const FAILED_REPLY_TEXT = en.failedReply;

/**
 * The server's explanation of a failed reply, when it gives one worth
 * showing: only in an English UI (`failedText` is the UI's own first line,
 * which says in its language that the reply failed).
 */
export function failedReplyDetail(error: string | null | undefined, failedText: string = FAILED_REPLY_TEXT): string | null {
  if (failedText !== FAILED_REPLY_TEXT) return null;
  const sentence = humanSentence(error);
  return sentence === FAILED_REPLY_TEXT || sentence === failedText ? null : sentence;
}

/**
 * The sentence for an action that failed (`lead`: "The conversation could
 * not be renamed."), then why: the server's sentence in an English UI, else
 * the action's own sentence for the code (`own`), else the code's. Anything
 * that is not the node's answer (offline) says to try again.
 */
export function actionFailure(
  lead: string,
  error: unknown,
  t: Pick<Dict, 'codes' | 'somethingWentWrong' | 'langName' | 'tryAgainSoon'>,
  own: Readonly<Record<string, string>> = {},
): string {
  if (!(error instanceof ApiError)) return `${lead} ${t.tryAgainSoon}`;
  const ownSentence = Object.hasOwn(own, error.code) ? own[error.code] : undefined;
  return `${lead} ${serverSentence(error.message, t) ?? ownSentence ?? sentenceForCode(error.code, t)}`;
}
