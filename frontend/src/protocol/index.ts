// What the UI may use of the protocol: the client, its state, and messages.
export { ChatClient, FRAME_TOO_LARGE } from './client';
export type { ClientState, ConnectionState, Notice, PendingSend, SocketCredential, TicketResult } from './client';
export type { Message } from './types';
