//! Server-sent events decoding, as OpenAI-compatible servers stream them.
//!
//! Bytes arrive in arbitrary pieces: an event, a line, even one UTF-8
//! character may be split across TCP reads. The decoder therefore buffers
//! bytes and hands out only complete events. Only the `data` field matters
//! for chat completions; comments (`:` lines, which servers send as
//! keep-alives) and the `event`, `id` and `retry` fields are skipped.

/// Lines longer than this are refused rather than buffered: a server that
/// never ends a line would otherwise grow the buffer without limit.
const MAX_LINE_BYTES: usize = 1 << 20;

/// Why a body is not a valid event stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("a line of the event stream is not UTF-8")]
    NotUtf8,
    #[error("a line of the event stream exceeds {MAX_LINE_BYTES} bytes")]
    LineTooLong,
}

/// Turns body pieces into the `data` of complete events.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes after the last complete line.
    buffer: Vec<u8>,
    /// The `data` lines of the event being read, joined by `\n`.
    data: Option<String>,
}

impl SseDecoder {
    pub fn new() -> SseDecoder {
        SseDecoder::default()
    }

    /// Feeds the next piece of the body; returns the data of every event it
    /// completed, in order.
    pub fn feed(&mut self, piece: &[u8]) -> Result<Vec<String>, SseError> {
        let mut events = Vec::new();
        // Only the new bytes can hold a line end not seen before.
        let mut search_from = self.buffer.len();
        self.buffer.extend_from_slice(piece);
        let mut line_start = 0;
        while let Some(offset) = self.buffer[search_from..].iter().position(|&b| b == b'\n') {
            let line_end = search_from + offset;
            // The same limit whether the line came in one piece or many.
            if line_end - line_start > MAX_LINE_BYTES {
                return Err(SseError::LineTooLong);
            }
            let mut line = &self.buffer[line_start..line_end];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
            if let Some(data) = apply_line(&mut self.data, line) {
                events.push(data);
            }
            line_start = line_end + 1;
            search_from = line_start;
        }
        self.buffer.drain(..line_start);
        if self.buffer.len() > MAX_LINE_BYTES {
            return Err(SseError::LineTooLong);
        }
        Ok(events)
    }
}

/// Applies one line to the event being read; a blank line dispatches it.
fn apply_line(data: &mut Option<String>, line: &str) -> Option<String> {
    if line.is_empty() {
        return data.take();
    }
    let (field, value) = match line.split_once(':') {
        // A comment: keep-alives look like this.
        Some(("", _)) => return None,
        Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
        None => (line, ""),
    };
    if field == "data" {
        match data {
            Some(existing) => {
                existing.push('\n');
                existing.push_str(value);
            }
            None => *data = Some(value.to_owned()),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_too_long_is_refused_however_it_arrives() {
        let body = [
            b"data: ".as_slice(),
            &vec![b'a'; MAX_LINE_BYTES + 1000],
            b"\n\n",
        ]
        .concat();
        assert_eq!(
            SseDecoder::new().feed(&body),
            Err(SseError::LineTooLong),
            "in one piece"
        );
        let mut decoder = SseDecoder::new();
        let in_pieces = body
            .chunks(4096)
            .map(|piece| decoder.feed(piece))
            .find(Result::is_err);
        assert_eq!(in_pieces, Some(Err(SseError::LineTooLong)), "in pieces");
    }

    fn decode_in_pieces(body: &[u8], piece: usize) -> Vec<String> {
        let mut decoder = SseDecoder::new();
        body.chunks(piece)
            .flat_map(|chunk| decoder.feed(chunk).unwrap())
            .collect()
    }

    #[test]
    fn events_survive_any_split() {
        let body =
            ": keep-alive\n\ndata: {\"a\":\"é€\"}\n\nevent: x\r\nid: 3\r\ndata:[DONE]\r\n\r\n";
        let expected = vec!["{\"a\":\"é€\"}".to_owned(), "[DONE]".to_owned()];
        for piece in 1..=body.len() {
            assert_eq!(
                decode_in_pieces(body.as_bytes(), piece),
                expected,
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn multi_line_data_is_joined_and_comments_dispatch_nothing() {
        let body = b"data: one\ndata: two\n\n: ping\n\n:\n\ndata\n\n";
        assert_eq!(
            decode_in_pieces(body, 64),
            vec!["one\ntwo".to_owned(), String::new()]
        );
    }

    #[test]
    fn an_unfinished_event_waits_for_its_blank_line() {
        let mut decoder = SseDecoder::new();
        assert!(decoder.feed(b"data: x\n").unwrap().is_empty());
        assert_eq!(decoder.feed(b"\n").unwrap(), vec!["x".to_owned()]);
    }

    #[test]
    fn invalid_utf8_and_endless_lines_are_errors() {
        assert_eq!(
            SseDecoder::new().feed(b"data: \xff\n\n"),
            Err(SseError::NotUtf8)
        );
        let mut decoder = SseDecoder::new();
        let long = vec![b'a'; MAX_LINE_BYTES + 1];
        assert_eq!(decoder.feed(&long), Err(SseError::LineTooLong));
    }
}
