import { useI18n } from '../i18n/I18n';
import type { ConnectionState } from '../protocol';

interface Props {
  connection: ConnectionState;
  onRetry: () => void;
}

/**
 * The link's state in a word. Which node serves the page is a debugging
 * detail: it is in the tooltip (and `data-node`), not in the header.
 */
export function ConnectionIndicator({ connection, onRetry }: Props) {
  const { t } = useI18n();
  const label = { connecting: t.connecting, connected: t.connected, reconnecting: t.reconnecting, offline: t.offline }[connection.status];
  const node = connection.status === 'connected' ? connection.nodeId : undefined;
  return (
    <div
      className="connection"
      data-testid="connection"
      data-state={connection.status}
      data-node={node}
      role="status"
      title={node ? t.connectedToNode(node) : undefined}
    >
      <span className="dot" aria-hidden="true" />
      <span className="connection-label">{label}</span>
      {connection.status === 'reconnecting' && (
        <button type="button" className="link-button" onClick={onRetry}>
          {t.retryNow}
        </button>
      )}
    </div>
  );
}
