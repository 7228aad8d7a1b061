import type { Notice } from '../protocol';
import { describeError, humanSentence } from '../lib/failures';
import { CloseIcon } from './icons';

/**
 * The message of the notice that says this browser started a new guest
 * identity (its code is `unauthorized`, which the UI shows only then).
 */
export const IDENTITY_REPLACED = 'identity-replaced';

const IDENTITY_REPLACED_TEXT =
  'This browser now has a new guest identity, because the previous one could no longer be renewed. ' +
  'Your earlier conversations belonged to the previous guest identity and can no longer be opened from this browser.';

/** Notices the page raises itself: their sentence is the page's, with the server's explanation after it when there is one. */
const PAGE_NOTICES: Record<string, { text: string; otherwise: string }> = {
  delete_failed: { text: 'That conversation could not be deleted.', otherwise: 'Try again in a moment.' },
};

/**
 * The sentence a notice shows, or null for one that is not shown. The
 * server's message when it is a sentence for people, else the sentence for
 * its code: never a bare code or raw JSON.
 */
export function describeNotice(notice: Pick<Notice, 'code' | 'message'>): string | null {
  if (notice.code === 'unauthorized') {
    // A refused token is renewed without a word; only a new identity is news.
    return notice.message === IDENTITY_REPLACED ? IDENTITY_REPLACED_TEXT : null;
  }
  const page = PAGE_NOTICES[notice.code];
  if (page) return `${page.text} ${humanSentence(notice.message) ?? page.otherwise}`;
  return describeError(notice.code, notice.message);
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
          <p className="notice-text">{RETRYING_TEXT}</p>
        </div>
      )}
      {shown.map((banner) => (
        <div key={banner.ids[0]} className="notice" role="status" data-testid="notice" data-code={banner.code}>
          <p className="notice-text">{banner.text}</p>
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
