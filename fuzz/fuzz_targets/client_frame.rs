//! Arbitrary text as a client's WebSocket frame: `ClientFrame::parse` must
//! answer every input with a frame or a `bad_request`, never panic, and what
//! it accepts must read back the same after serializing it again.

#![no_main]

use chatstream::protocol::{ClientFrame, ClientRequest, ErrorCode, MAX_FRAME_ID_CHARS};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // A WebSocket text frame is valid UTF-8 by the time it reaches the
    // parser; reading other bytes lossily keeps the fuzzer's byte-level
    // mutations useful rather than discarded.
    match std::str::from_utf8(data) {
        Ok(text) => check(text),
        Err(_) => check(&String::from_utf8_lossy(data)),
    }
});

fn check(text: &str) {
    match ClientFrame::parse(text) {
        Ok(frame) => {
            if let Some(id) = &frame.id {
                assert!(
                    id.chars().count() <= MAX_FRAME_ID_CHARS,
                    "accepted id {id:?}"
                );
            }
            // What the server acts on is what a well-behaved client would
            // have sent: its canonical form parses to the same frame.
            let mut value = serde_json::to_value(&frame.request).expect("requests serialize");
            if let (Some(id), Some(object)) = (&frame.id, value.as_object_mut()) {
                object.insert("id".into(), Value::String(id.clone()));
            }
            let again = ClientFrame::parse(&value.to_string());
            assert_eq!(again.as_ref(), Ok(&frame), "canonical form of {text:?}");
            if let ClientRequest::Send(send) = &frame.request {
                let _ = send.validate();
            }
        }
        Err(error) => {
            assert_eq!(error.error.code, ErrorCode::BadRequest, "input {text:?}");
            if let Some(id) = &error.id {
                assert!(id.chars().count() <= MAX_FRAME_ID_CHARS, "echoed id {id:?}");
            }
        }
    }
}
