// Every string the UI shows, in English: the reference dictionary. Other
// languages have the same keys (`Dict`), checked by the compiler. A function
// takes the values to put in the sentence, already formatted for the language.

export const en = {
  langName: 'English',
  language: 'Language',

  // page and header
  appTitle: 'chatstream',
  skipToComposer: 'Skip to message box',
  loadingConversation: 'Loading conversation…',
  untitledOpen: 'Chat',
  newChat: 'New chat',
  openConversations: 'Open conversations',
  closeMenu: 'Close menu',
  guest: 'Guest',
  model: 'Model',

  // connection
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
  retryNow: 'Retry now',
  connectedToNode: (node: string) => `Connected to node ${node}`,

  // theme
  theme: 'Theme',
  themeSystem: 'System theme',
  themeLight: 'Light theme',
  themeDark: 'Dark theme',

  // empty chat
  emptyTitle: 'What can I help with?',
  emptyText: 'Replies stream in as they are written, and survive reloads and dropped connections.',
  suggestionsLabel: 'Suggestions',
  suggestions: [
    'How do sequence numbers make delivery exactly-once?',
    'Explain backpressure with an everyday example',
    'What should a good retry policy look like?',
    'Tips for naming things in code',
  ] as readonly string[],

  // messages
  messagesLabel: 'Messages',
  jumpToLatest: 'Jump to latest',
  you: 'You',
  assistant: 'Assistant',
  stopped: 'Stopped',
  sending: 'Sending…',
  writing: 'Writing',
  regenerate: 'Regenerate',
  regenerateReply: 'Regenerate reply',
  retry: 'Retry',
  copy: 'Copy',
  copied: 'Copied',
  copyReply: 'Copy reply',
  failedReply: 'This reply could not be completed.',

  // composer
  messageLabel: 'Message',
  placeholder: 'Message chatstream',
  sendMessage: 'Send message',
  stopGenerating: 'Stop generating',
  stopping: 'Stopping',
  hintToSend: 'to send',
  hintNewLine: 'for a new line',
  waitForReply: 'Wait for the reply to finish, or press Stop.',
  waitForSend: 'Wait until your previous message is sent.',
  counterChars: (used: string, max: string) => `${used} / ${max} characters`,
  counterBytes: (used: string, max: string) => `${used} / ${max} KB`,
  tooManyChars: (max: string, over: string) =>
    `This message is longer than ${max} characters, the most one message can hold, so it cannot be sent. ` +
    `Nothing was cut: shorten it by ${over} characters, or split it into several messages.`,
  tooManyBytes: (used: string, max: string) =>
    `This message is too large to send: ${used} KB once encoded, over the limit of ${max} KB. ` +
    'Letters such as Chinese characters or Vietnamese letters with marks take two to four bytes each. ' +
    'Shorten it, or split it into several messages.',

  // notices
  dismiss: 'Dismiss',
  identityReplaced:
    'This browser now has a new guest identity, because the previous one could no longer be renewed. ' +
    'Your earlier conversations belonged to the previous guest identity and can no longer be opened from this browser.',
  deleteFailed: 'That conversation could not be deleted.',
  tryAgainSoon: 'Try again in a moment.',
  frameRefused:
    'That message is too large for the server and was not sent; it is back in the message box. ' +
    'Shorten it, or split it into several messages.',
  retryingConversation: 'This conversation is temporarily unavailable. Retrying…',
  somethingWentWrong: 'Something went wrong.',
  /** The protocol's error codes, in words. */
  codes: {
    bad_request: 'The server could not accept that request.',
    unauthorized: 'Your session could not be verified. Reload the page to sign in again.',
    forbidden:
      'That conversation cannot be opened here: it belongs to someone else, or to an earlier guest identity of this browser.',
    not_found: 'This conversation no longer exists.',
    too_large: 'That is more than the server accepts: the message is too long, or this conversation or your account is full.',
    rate_limited: 'You are going too fast. Wait a moment and try again.',
    conflict: 'That could not be done right now: a reply may still be in progress or already finished.',
    unavailable: 'The server is temporarily unavailable. Try again in a moment.',
    internal: 'Something went wrong on the server.',
  } as Readonly<Record<string, string>>,

  // conversation list
  loading: 'Loading…',
  noConversations: 'No conversations yet.',
  conversationsLabel: 'Conversations',
  untitledChat: 'Untitled chat',
  deleteTitled: (title: string) => `Delete “${title}”`,
  delete: 'Delete',
  deleteThisChat: 'Delete this chat?',
  cancel: 'Cancel',
  showMore: 'Show more',
  today: 'Today',
  yesterday: 'Yesterday',
  previous7Days: 'Previous 7 days',
  previous30Days: 'Previous 30 days',
  older: 'Older',

  // search
  searchMessages: 'Search messages',
  clearSearch: 'Clear search',
  searchResults: 'Search results',
  searching: 'Searching…',
  searchFailed: 'Search failed.',
  noMatch: 'No messages match',
  searchUnavailable: 'Search is not available on this server',

  // rename, export, maths and the installable app (issue 13, item 5)
  rename: 'Rename',
  renameTitled: (title: string) => `Rename “${title}”`,
  renameConversation: 'Rename this conversation',
  newTitle: 'New title',
  titleEmpty: 'A title cannot be empty.',
  titleTooLong: (max: string) => `A title can be at most ${max} characters.`,
  renameFailed: 'The conversation could not be renamed.',
  /** Rename's own sentences for some codes; the others use `codes`. */
  renameCodes: {
    bad_request: 'Enter a title.',
    too_large: 'That title is too long.',
  } as Record<string, string>,
  exportConversation: 'Export',
  exportMenu: 'Export this conversation',
  exportMarkdown: 'Markdown (.md)',
  exportJson: 'JSON, every version (.json)',
  exportFailed: 'The conversation could not be exported.',
  exportedOn: (date: string) => `Exported from chatstream on ${date}`,
  replyStopped: 'Stopped before the end.',
  copyCode: 'Copy code',
  copyFailed: 'Copy failed',

  // versions and branches (issue 13): Edit, Regenerate, Continue, ‹ 2/3 ›
  edit: 'Edit',
  editMessage: 'Edit message',
  editLabel: 'Edit your message',
  editEmpty: 'Write something to send',
  save: 'Save',
  saveEdit: 'Save and send as a new version',
  hintToSave: 'to save',
  hintToCancel: 'to cancel',
  continue: 'Continue',
  continueReply: 'Continue this reply',
  previousVersion: 'Previous version',
  nextVersion: 'Next version',
  versionOf: (index: string, count: string) => `Version ${index} of ${count}`,
  versionsOfQuestion: 'Versions of this message',
  versionsOfReply: 'Versions of this reply',
  lockedWhileReplying: 'Available once the reply has finished (or press Stop)',
  lockedWhileSending: 'Available once your previous request has been sent',
};

export type Dict = typeof en;
