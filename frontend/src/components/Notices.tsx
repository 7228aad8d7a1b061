import type { Notice } from '../protocol';
import { CloseIcon } from './icons';

// What each error code means to the person at the keyboard; the server's own
// message follows as the detail.
const EXPLANATIONS: Record<string, string> = {
  bad_request: 'The server could not accept that request.',
  unauthorized: 'Your session expired, so you were signed in again.',
  forbidden: 'That conversation belongs to someone else.',
  not_found: 'That conversation no longer exists.',
  too_large: 'That message is too long to send.',
  rate_limited: 'You are going too fast. Wait a moment and try again.',
  conflict: 'That could not be done right now: a reply may still be in progress or already finished.',
  unavailable: 'The server is recovering. Retrying shortly…',
  internal: 'Something went wrong on the server.',
  network: 'The server could not be reached.',
};

/** Only the latest few stay on screen. */
const SHOWN = 3;

interface Props {
  notices: readonly Notice[];
  onDismiss: (id: string) => void;
}

export function Notices({ notices, onDismiss }: Props) {
  if (notices.length === 0) return null;
  return (
    <div className="notices">
      {notices.slice(-SHOWN).map((n) => (
        <div key={n.id} className="notice" role="alert" data-testid="notice" data-code={n.code}>
          <div className="notice-text">
            <strong>{EXPLANATIONS[n.code] ?? 'Something went wrong.'}</strong>
            <span className="notice-detail">
              {n.message} <code>{n.code}</code>
            </span>
          </div>
          <button type="button" className="icon-button" onClick={() => onDismiss(n.id)} aria-label="Dismiss">
            <CloseIcon />
          </button>
        </div>
      ))}
    </div>
  );
}
