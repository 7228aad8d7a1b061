import { FRAME_TOO_LARGE, type Notice } from '../protocol';
import { en, type Dict } from '../i18n/en';
import { useI18n } from '../i18n/I18n';
import { describeError, serverSentence } from '../lib/failures';
import { CloseIcon } from './icons';

/**
 * The message of the notice that says this browser started a new guest
 * identity (its code is `unauthorized`, which the UI shows only then).
 */
export const IDENTITY_REPLACED = 'identity-replaced';


/** Notices the page raises itself: their sentence is the page's, with the server's explanation after it when there is one. */
const PAGE_NOTICES: Record<string, (t: Dict) => { text: string; otherwise: string }> = {
  delete_failed: (t) => ({ text: t.deleteFailed, otherwise: t.tryAgainSoon }),
};

/**
 * The sentence a notice shows, or null for one that is not shown. The
 * server's message when it is a sentence for people, else the sentence for
 * its code: never a bare code or raw JSON.
 */
export function describeNotice(notice: Pick<Notice, 'code' | 'message'>, t: Dict = en): string | null {
  if (notice.code === 'unauthorized') {
    // A refused token is renewed without a word; only a new identity is news.
    return notice.message === IDENTITY_REPLACED ? t.identityReplaced : null;
  }
  if (notice.code === FRAME_TOO_LARGE) return t.frameRefused;
  const page = PAGE_NOTICES[notice.code]?.(t);
  if (page) return `${page.text} ${serverSentence(notice.message, t) ?? page.otherwise}`;
  return describeError(notice.code, notice.message, t);
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
export function banners(notices: readonly Notice[], t: Dict = en): Banner[] {
  const byText = new Map<string, Banner>();
  for (const notice of notices) {
    const text = describeNotice(notice, t);
    if (text === null) continue;
    const banner = byText.get(text);
    // A repeated notice moves its banner to the end, as the latest.
    if (banner) byText.delete(text);
    byText.set(text, { ids: [...(banner?.ids ?? []), notice.id], code: notice.code, text });
  }
  return [...byText.values()].slice(-SHOWN);
}

/** Shown while the open conversation cannot be served and the client asks again. */
export const RETRYING_TEXT = en.retryingConversation;

interface Props {
  notices: readonly Notice[];
  onDismiss: (id: string) => void;
  /** The open conversation is temporarily unavailable; the client retries it. */
  retrying?: boolean;
}

export function Notices({ notices, onDismiss, retrying = false }: Props) {
  // The retry banner says it already; a notice saying the same is not repeated.
  const { t } = useI18n();
  const shown = banners(notices, t).filter((b) => !(retrying && b.code === 'unavailable'));
  if (shown.length === 0 && !retrying) return null;
  return (
    <div className="notices">
      {retrying && (
        <div className="notice" role="status" data-testid="notice" data-code="unavailable">
          <p className="notice-text">{t.retryingConversation}</p>
        </div>
      )}
      {shown.map((banner) => (
        <div key={banner.ids[0]} className="notice" role="status" data-testid="notice" data-code={banner.code}>
          <p className="notice-text">{banner.text}</p>
          <button
            type="button"
            className="icon-button"
            onClick={() => banner.ids.forEach(onDismiss)}
            aria-label={t.dismiss}
          >
            <CloseIcon />
          </button>
        </div>
      ))}
    </div>
  );
}
