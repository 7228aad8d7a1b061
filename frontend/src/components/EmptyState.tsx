const SUGGESTIONS = [
  'How do sequence numbers make delivery exactly-once?',
  'Explain backpressure with an everyday example',
  'What should a good retry policy look like?',
  'Tips for naming things in code',
];

export function EmptyState({ onPick }: { onPick: (text: string) => void }) {
  return (
    <div className="empty">
      <h2>What can I help with?</h2>
      <p>Replies stream in as they are written, and survive reloads and dropped connections.</p>
      <ul className="suggestions" aria-label="Suggestions">
        {SUGGESTIONS.map((s) => (
          <li key={s}>
            <button type="button" onClick={() => onPick(s)}>
              {s}
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}
