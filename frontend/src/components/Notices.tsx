import type { Notice } from '../protocol';
import { CloseIcon } from './icons';

/**
 * The message of the notice that says this browser started a new guest
 * identity (its code is `unauthorized`, which the UI shows only then).
 */
export const IDENTITY_REPLACED = 'identity-replaced';

// What each code means to the person at the keyboard, in their words: no
// error code and no server or library text is shown.
const EXPLANATIONS: Record<string, string> = {
  bad_request: 'The server could not accept that request.',
  forbidden: 'That conversation cannot be opened here: it belongs to someone else, or to an earlier guest identity of this browser.',
  not_found: 'This conversation no longer exists.',
  too_large: 'That message is too long to send.',
  rate_limited: 'You are going too fast. Wait a moment and try again.',
  conflict: 'That could not be done right now: a reply may still be in progress or already finished.',
  // A conversation being retried says so itself (`retrying`); this is for a send or another request.
  unavailable: 'The server is temporarily unavailable. Try again in a moment.',
  internal: 'Something went wrong on the server.',
  network: 'The server could not be reached.',
  delete_failed: 'That conversation could not be deleted just now. Try again in a moment.',
};

const IDENTITY_REPLACED_TEXT =
  'This browser now has a new guest identity, because the previous one could no longer be renewed. ' +
  'Your earlier conversations belonged to the previous guest identity and can no longer be opened from this browser.';

/** The sentence a notice shows, or null for one that is not shown. */
export function describeNotice(notice: Pick<Notice, 'code' | 'message'>): string | null {
  if (notice.code === 'unauthorized') {
    // A refused token is renewed without a word; only a new identity is news.
    return notice.message === IDENTITY_REPLACED ? IDENTITY_REPLACED_TEXT : null;
  }
  return EXPLANATIONS[notice.code] ?? 'Something went wrong.';
}

/** One banner: notices saying the same thing are shown once. */
export interface Banner {
  /** Every notice it stands for, dismissed together. */
  ids: string[];
  code: string;
  text: string;
}

/** Only the latest few stay on screen. */
const SHOWN = 3;

/** The banners to show for `notices`, oldest first, the latest `SHOWN` of them. */
export function banners(notices: readonly Notice[]): Banner[] {
  const byText = new Map<string, Banner>();
  for (const notice of notices) {
    const text = describeNotice(notice);
    if (text === null) continue;
    const banner = byText.get(text);
    // A repeated notice moves its banner to the end, as the latest.
    if (banner) byText.delete(text);
    byText.set(text, { ids: [...(banner?.ids ?? []), notice.id], code: notice.code, text });
  }
  return [...byText.values()].slice(-SHOWN);
}

/** Shown while the open conversation cannot be served and the client asks again. */
export const RETRYING_TEXT = 'This conversation is temporarily unavailable. Retrying…';

interface Props {
  notices: readonly Notice[];
  onDismiss: (id: string) => void;
  /** The open conversation is temporarily unavailable; the client retries it. */
  retrying?: boolean;
}

export function Notices({ notices, onDismiss, retrying = false }: Props) {
  // The retry banner says it already; a notice saying the same is not repeated.
  const shown = banners(notices).filter((b) => !(retrying && b.code === 'unavailable'));
  if (shown.length === 0 && !retrying) return null;
  return (
    <div className="notices">
      {retrying && (
        <div className="notice" role="status" data-testid="notice" data-code="unavailable">
          <div className="notice-text">
            <strong>{RETRYING_TEXT}</strong>
          </div>
        </div>
      )}
      {shown.map((banner) => (
        <div key={banner.ids[0]} className="notice" role="alert" data-testid="notice" data-code={banner.code}>
          <div className="notice-text">
            <strong>{banner.text}</strong>
          </div>
          <button
            type="button"
            className="icon-button"
            onClick={() => banner.ids.forEach(onDismiss)}
            aria-label="Dismiss"
          >
            <CloseIcon />
          </button>
        </div>
      ))}
    </div>
  );
}
