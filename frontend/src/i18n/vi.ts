// Every string the UI shows, in Vietnamese (tiếng Việt, with its diacritics).

import type { Dict } from './en';

export const vi: Dict = {
  langName: 'Tiếng Việt',
  language: 'Ngôn ngữ',

  appTitle: 'chatstream',
  skipToComposer: 'Chuyển đến ô soạn tin nhắn',
  loadingConversation: 'Đang tải cuộc trò chuyện…',
  untitledOpen: 'Trò chuyện',
  newChat: 'Cuộc trò chuyện mới',
  openConversations: 'Mở danh sách trò chuyện',
  closeMenu: 'Đóng menu',
  guest: 'Khách',
  model: 'Mô hình',

  connecting: 'Đang kết nối…',
  connected: 'Đã kết nối',
  reconnecting: 'Đang kết nối lại…',
  offline: 'Mất kết nối mạng',
  retryNow: 'Thử lại ngay',
  connectedToNode: (node) => `Đã kết nối tới node ${node}`,

  theme: 'Giao diện',
  themeSystem: 'Giao diện theo hệ thống',
  themeLight: 'Giao diện sáng',
  themeDark: 'Giao diện tối',

  emptyTitle: 'Tôi có thể giúp gì cho bạn?',
  emptyText: 'Câu trả lời hiện ra ngay trong lúc được viết, và không mất đi khi bạn tải lại trang hay mất kết nối.',
  suggestionsLabel: 'Gợi ý',
  suggestions: [
    'Số thứ tự giúp mỗi tin được giao đúng một lần như thế nào?',
    'Giải thích cơ chế backpressure bằng một ví dụ đời thường',
    'Một chính sách thử lại tốt nên như thế nào?',
    'Mẹo đặt tên biến và hàm khi lập trình',
  ],

  messagesLabel: 'Tin nhắn',
  jumpToLatest: 'Xem tin mới nhất',
  you: 'Bạn',
  assistant: 'Trợ lý',
  stopped: 'Đã dừng',
  sending: 'Đang gửi…',
  writing: 'Đang viết',
  regenerate: 'Tạo lại',
  regenerateReply: 'Tạo lại câu trả lời',
  retry: 'Thử lại',
  copy: 'Sao chép',
  copied: 'Đã sao chép',
  copyReply: 'Sao chép câu trả lời',
  failedReply: 'Không thể hoàn thành câu trả lời này.',

  messageLabel: 'Tin nhắn',
  placeholder: 'Nhắn tin cho chatstream',
  sendMessage: 'Gửi tin nhắn',
  stopGenerating: 'Dừng tạo câu trả lời',
  stopping: 'Đang dừng',
  hintToSend: 'để gửi',
  hintNewLine: 'để xuống dòng',
  waitForReply: 'Hãy đợi câu trả lời viết xong, hoặc bấm Dừng.',
  waitForSend: 'Hãy đợi tin nhắn trước được gửi xong.',
  counterChars: (used, max) => `${used} / ${max} ký tự`,
  counterBytes: (used, max) => `${used} / ${max} KB`,
  tooManyChars: (max, over) =>
    `Tin nhắn này dài hơn ${max} ký tự, mức tối đa của một tin nhắn, nên không thể gửi. ` +
    `Không có gì bị cắt bớt: hãy rút ngắn ${over} ký tự, hoặc chia thành nhiều tin nhắn.`,
  tooManyBytes: (used, max) =>
    `Tin nhắn này quá lớn để gửi: ${used} KB sau khi mã hoá, vượt giới hạn ${max} KB. ` +
    'Những chữ như chữ Hán hay chữ tiếng Việt có dấu chiếm từ hai đến bốn byte mỗi chữ. ' +
    'Hãy rút ngắn, hoặc chia thành nhiều tin nhắn.',

  dismiss: 'Đóng',
  identityReplaced:
    'Trình duyệt này giờ có một danh tính khách mới, vì danh tính trước không thể gia hạn được nữa. ' +
    'Các cuộc trò chuyện trước đây thuộc về danh tính khách cũ và không thể mở lại từ trình duyệt này.',
  deleteFailed: 'Không thể xoá cuộc trò chuyện đó.',
  tryAgainSoon: 'Hãy thử lại sau giây lát.',
  frameRefused:
    'Tin nhắn đó quá lớn nên máy chủ không nhận và nó chưa được gửi; nội dung đã được trả lại vào ô soạn tin. ' +
    'Hãy rút ngắn, hoặc chia thành nhiều tin nhắn.',
  retryingConversation: 'Cuộc trò chuyện này tạm thời không khả dụng. Đang thử lại…',
  somethingWentWrong: 'Đã có lỗi xảy ra.',
  codes: {
    bad_request: 'Máy chủ không thể chấp nhận yêu cầu đó.',
    unauthorized: 'Không thể xác minh phiên làm việc của bạn. Hãy tải lại trang để đăng nhập lại.',
    forbidden:
      'Không thể mở cuộc trò chuyện đó ở đây: nó thuộc về người khác, hoặc thuộc về một danh tính khách trước đây của trình duyệt này.',
    not_found: 'Cuộc trò chuyện này không còn tồn tại.',
    too_large:
      'Nội dung vượt quá mức máy chủ chấp nhận: tin nhắn quá dài, hoặc cuộc trò chuyện hay tài khoản của bạn đã đầy.',
    rate_limited: 'Bạn thao tác quá nhanh. Hãy đợi một chút rồi thử lại.',
    conflict: 'Chưa thể làm việc đó lúc này: có thể một câu trả lời vẫn đang được viết hoặc đã kết thúc.',
    unavailable: 'Máy chủ tạm thời không khả dụng. Hãy thử lại sau giây lát.',
    internal: 'Đã có lỗi xảy ra phía máy chủ.',
  },

  loading: 'Đang tải…',
  noConversations: 'Chưa có cuộc trò chuyện nào.',
  conversationsLabel: 'Các cuộc trò chuyện',
  untitledChat: 'Cuộc trò chuyện không tên',
  deleteTitled: (title) => `Xoá “${title}”`,
  delete: 'Xoá',
  deleteThisChat: 'Xoá cuộc trò chuyện này?',
  cancel: 'Huỷ',
  showMore: 'Xem thêm',
  today: 'Hôm nay',
  yesterday: 'Hôm qua',
  previous7Days: '7 ngày trước',
  previous30Days: '30 ngày trước',
  older: 'Cũ hơn',

  searchMessages: 'Tìm trong tin nhắn',
  clearSearch: 'Xoá nội dung tìm kiếm',
  searchResults: 'Kết quả tìm kiếm',
  searching: 'Đang tìm…',
  searchFailed: 'Tìm kiếm thất bại.',
  noMatch: 'Không có tin nhắn nào khớp',
  searchUnavailable: 'Máy chủ này không hỗ trợ tìm kiếm',

  // rename, export, maths and the installable app (issue 13, item 5)
  rename: 'Đổi tên',
  renameTitled: (title) => `Đổi tên “${title}”`,
  renameConversation: 'Đổi tên cuộc trò chuyện này',
  newTitle: 'Tên mới',
  titleEmpty: 'Tên không được để trống.',
  titleTooLong: (max) => `Tên dài tối đa ${max} ký tự.`,
  renameFailed: 'Không thể đổi tên cuộc trò chuyện.',
  renameCodes: {
    bad_request: 'Hãy nhập một cái tên.',
    too_large: 'Tên này quá dài.',
  },
  exportConversation: 'Xuất',
  exportMenu: 'Xuất cuộc trò chuyện này',
  exportMarkdown: 'Tệp Markdown (.md)',
  exportJson: 'Tệp JSON, mọi phiên bản (.json)',
  exportFailed: 'Không thể xuất cuộc trò chuyện.',
  exportedOn: (date) => `Xuất từ chatstream lúc ${date}`,
  replyStopped: 'Đã dừng trước khi viết xong.',
  copyCode: 'Sao chép mã',
  copyFailed: 'Không sao chép được',

  // phiên bản và nhánh (issue 13): Sửa, Tạo lại, Viết tiếp, ‹ 2/3 ›
  edit: 'Sửa',
  editMessage: 'Sửa tin nhắn',
  editLabel: 'Sửa tin nhắn của bạn',
  editEmpty: 'Hãy viết nội dung để gửi',
  save: 'Lưu',
  saveEdit: 'Lưu và gửi thành một phiên bản mới',
  hintToSave: 'để lưu',
  hintToCancel: 'để huỷ',
  continue: 'Viết tiếp',
  continueReply: 'Viết tiếp câu trả lời này',
  previousVersion: 'Phiên bản trước',
  nextVersion: 'Phiên bản sau',
  versionOf: (index, count) => `Phiên bản ${index} trong số ${count}`,
  versionsOfQuestion: 'Các phiên bản của tin nhắn này',
  versionsOfReply: 'Các phiên bản của câu trả lời này',
  lockedWhileReplying: 'Dùng được khi câu trả lời đã viết xong (hoặc bấm Dừng)',
  lockedWhileSending: 'Dùng được khi yêu cầu trước của bạn đã được gửi xong',
};
