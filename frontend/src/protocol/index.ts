// What the UI may use of the protocol: the client, its state, messages and their tree.
export { ChatClient, FRAME_TOO_LARGE } from './client';
export type { ClientState, ConnectionState, Notice, PendingSend, PendingVersion, SocketCredential, TicketResult } from './client';
export type { TreeMessage } from './reducer';
export { ROOT, followUpParent, parentKey, visiblePath } from './tree';
export type { Choices, PathStep } from './tree';
export type { Message } from './types';
