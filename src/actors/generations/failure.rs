//! How a reply that could not be completed is explained to its reader.
//!
//! `failed.error` is read by people: it says what happened in a sentence and
//! carries an error id; what went wrong in detail (an upstream's address, a
//! library's error) goes to the node's log under the same id.

use uuid::Uuid;

use crate::protocol::{Event, new_error_id};

/// Why a reply ends `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The model refused or could not answer (a non-retryable error).
    Refused,
    /// The model's stream broke mid-reply and this model cannot continue
    /// an interrupted reply.
    CannotContinue,
    /// Every restart failed.
    GaveUp,
}

impl FailureKind {
    fn sentence(self) -> &'static str {
        match self {
            FailureKind::Refused => "The model could not complete this reply.",
            FailureKind::CannotContinue => {
                "The connection to the model broke, and this model cannot continue an interrupted reply."
            }
            FailureKind::GaveUp => "The model kept failing, so this reply could not be completed.",
        }
    }
}

/// The `failed` event ending `message_id`, with `detail` logged under the
/// error id the event names.
pub fn failed(message_id: Uuid, kind: FailureKind, detail: &dyn std::fmt::Display) -> Event {
    let error_id = new_error_id();
    tracing::error!(%message_id, %error_id, %detail, "reply failed");
    Event::Failed {
        message_id,
        error: format!("{} (error id {error_id})", kind.sentence()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_gets_a_sentence_and_an_id_not_the_detail() {
        let detail = "the stream from upstream http://10.0.0.7:8091/v1 broke: unexpected EOF";
        let Event::Failed { error, .. } = failed(Uuid::new_v4(), FailureKind::Refused, &detail)
        else {
            panic!("a failed event")
        };
        assert!(error.starts_with("The model could not complete this reply."));
        assert!(!error.contains("http"), "{error}");
        assert!(!error.contains("EOF"), "{error}");
        let id = error
            .rsplit("error id ")
            .next()
            .unwrap()
            .trim_end_matches(')');
        assert_eq!(id.len(), 12, "{error}");
    }
}
