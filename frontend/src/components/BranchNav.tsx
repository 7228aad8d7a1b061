import { useI18n } from '../i18n/I18n';

interface Props {
  /** This version's place among its siblings (0-based), and how many there are. */
  index: number;
  count: number;
  previous?: string;
  next?: string;
  onShow: (id: string) => void;
  /** What the versions are of: a question (edited) or a reply (regenerated, continued). */
  of: 'question' | 'reply';
}

/**
 * ‹ 2/3 › between the versions of a message. The buttons stay focusable at
 * either end (aria-disabled, not disabled), so a keyboard user pressing one
 * repeatedly keeps their place; the position is announced as it changes.
 */
export function BranchNav({ index, count, previous, next, onShow, of }: Props) {
  const { t, n } = useI18n();
  const position = t.versionOf(n(index + 1), n(count));
  return (
    <div className="branch-nav" role="group" aria-label={of === 'question' ? t.versionsOfQuestion : t.versionsOfReply} data-testid="branch-nav">
      <button
        type="button"
        className="icon-button"
        data-testid="branch-prev"
        aria-label={t.previousVersion}
        title={t.previousVersion}
        aria-disabled={previous ? undefined : true}
        onClick={() => previous && onShow(previous)}
      >
        <Chevron dir="left" />
      </button>
      <span
        className="branch-position"
        data-testid="branch-position"
        data-index={index + 1}
        data-count={count}
        aria-live="polite"
        aria-atomic="true"
        title={position}
      >
        <span aria-hidden="true">
          {n(index + 1)}/{n(count)}
        </span>
        <span className="sr-only">{position}</span>
      </span>
      <button
        type="button"
        className="icon-button"
        data-testid="branch-next"
        aria-label={t.nextVersion}
        title={t.nextVersion}
        aria-disabled={next ? undefined : true}
        onClick={() => next && onShow(next)}
      >
        <Chevron dir="right" />
      </button>
    </div>
  );
}

function Chevron({ dir }: { dir: 'left' | 'right' }) {
  return (
    <svg width="16" height="16" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" strokeLinejoin="round" aria-hidden="true" focusable="false">
      <path d={dir === 'left' ? 'M15 18l-6-6 6-6' : 'M9 18l6-6-6-6'} />
    </svg>
  );
}
