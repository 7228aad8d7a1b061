// The address of what is open: `#/c/<conversation>` or, to open it at one of
// its messages (a search result), `#/c/<conversation>/m/<message>`.

export interface Route {
  conversation: string | null;
  /** The message to bring into view, if any. */
  message: string | null;
}

const PREFIX = '#/c/';
const MESSAGE = '/m/';

const decode = (part: string): string | null => {
  try {
    return decodeURIComponent(part) || null;
  } catch {
    return null; // a malformed escape: nothing to open
  }
};

export function parseRoute(hash: string): Route {
  if (!hash.startsWith(PREFIX)) return { conversation: null, message: null };
  const rest = hash.slice(PREFIX.length);
  const split = rest.indexOf(MESSAGE);
  if (split < 0) return { conversation: decode(rest), message: null };
  const conversation = decode(rest.slice(0, split));
  return { conversation, message: conversation ? decode(rest.slice(split + MESSAGE.length)) : null };
}

export function routeHash(conversation: string, message?: string | null): string {
  const base = `${PREFIX}${encodeURIComponent(conversation)}`;
  return message ? `${base}${MESSAGE}${encodeURIComponent(message)}` : base;
}
