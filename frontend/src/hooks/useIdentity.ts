import { useEffect } from 'react';
import { pageAuth } from '../api/auth';
import { IDENTITY_REPLACED } from '../components/Notices';
import { useChatClient } from './useChat';

/**
 * Keeps the guest token renewed while the page is open (half way through its
 * lifetime, and again when the tab wakes up or the network returns), and
 * tells the user plainly when the page had to start a new guest identity.
 */
export function useIdentity(): void {
  const client = useChatClient();
  useEffect(() => {
    const auth = pageAuth();
    const stop = auth.start();
    const off = auth.onIdentityReplaced(() => client.notify('unauthorized', IDENTITY_REPLACED));
    // Timers of a hidden tab or a sleeping laptop run late: check again on return.
    const wake = () => document.visibilityState === 'visible' && auth.wake();
    document.addEventListener('visibilitychange', wake);
    window.addEventListener('online', wake);
    return () => {
      stop();
      off();
      document.removeEventListener('visibilitychange', wake);
      window.removeEventListener('online', wake);
    };
  }, [client]);
}
