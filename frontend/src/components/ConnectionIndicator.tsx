import type { ConnectionState } from '../protocol';

interface Props {
  connection: ConnectionState;
  onRetry: () => void;
}

const LABELS: Record<ConnectionState['status'], string> = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

export function ConnectionIndicator({ connection, onRetry }: Props) {
  const detail = connection.status === 'connected' ? `to node ${connection.nodeId}` : undefined;
  return (
    <div className="connection" data-testid="connection" data-state={connection.status} role="status">
      <span className="dot" aria-hidden="true" />
      <span className="connection-label">
        {LABELS[connection.status]}
        {detail && <span className="connection-detail"> {detail}</span>}
      </span>
      {connection.status === 'reconnecting' && (
        <button type="button" className="link-button" onClick={onRetry}>
          Retry now
        </button>
      )}
    </div>
  );
}
