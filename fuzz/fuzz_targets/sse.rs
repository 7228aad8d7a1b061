//! Arbitrary bytes, cut into arbitrary pieces, as the body of an upstream's
//! event stream: `SseDecoder::feed` must never panic, never hand out more
//! than it was fed, and decode the same events however the body is cut.
//!
//! Input: one byte `n` (taken modulo 16), then `n` piece lengths of one byte
//! each, then the body. The body is fed in pieces of those lengths, cycling
//! through them (a length of 0 feeds an empty piece), so that a few bytes
//! give many cuts and a seed is a plain event stream behind a short header.

#![no_main]

use chatstream::providers::openai::sse::SseDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 16).min(rest.len());
    let (lengths, body) = rest.split_at(count);
    let pieces = cut(body, lengths);

    // The body in one piece is the reference every other cut must match.
    let whole = SseDecoder::new().feed(body);

    let mut decoder = SseDecoder::new();
    let mut fed = 0usize;
    let mut events: Vec<String> = Vec::new();
    let mut outcome = Ok(());
    for piece in &pieces {
        fed += piece.len();
        match decoder.feed(piece) {
            Ok(completed) => {
                events.extend(completed);
                // Every byte of an event's data comes from a line that was
                // fed, and each event also needs a blank line to end it.
                let handed_out: usize = events.iter().map(|e| e.len() + 1).sum();
                assert!(
                    handed_out <= fed,
                    "{handed_out} bytes of events from {fed} bytes fed"
                );
            }
            Err(error) => {
                // The upstream attempt gives up on a stream at its first error.
                outcome = Err(error);
                break;
            }
        }
    }

    match (whole, outcome) {
        (Ok(expected), Ok(())) => assert_eq!(events, expected, "events of {body:?}"),
        // The events before a bad line may already have been handed out;
        // the error itself must be the same.
        (Err(expected), Err(error)) => assert_eq!(error, expected, "error of {body:?}"),
        (whole, cut) => panic!(
            "cut into {} pieces the body gives {cut:?}, whole it gives {whole:?}: {body:?}",
            pieces.len()
        ),
    }
});

/// `body` in pieces of `lengths`, cycled; in one piece when they are all 0.
fn cut<'a>(body: &'a [u8], lengths: &[u8]) -> Vec<&'a [u8]> {
    if lengths.iter().all(|&l| l == 0) {
        return vec![body];
    }
    let mut pieces = Vec::new();
    let mut rest = body;
    for &length in lengths.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, after) = rest.split_at(usize::from(length).min(rest.len()));
        pieces.push(piece);
        rest = after;
    }
    pieces
}
