//! Reading and replaying dead letters.

use super::{Admin, AdminError};

/// A dead-lettered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The saga it belongs to.
    pub saga: String,
    /// The logical topic it was dead-lettered from (and is replayed to).
    pub topic: String,
    /// Its message id (`{trace_id}/{seq}`...), the key of a single replay.
    pub message_id: String,
    /// Its trace id.
    pub trace_id: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Its size in bytes.
    pub bytes: usize,
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Published again and removed from the dead-letter topic.
    pub replayed: Vec<DeadLetter>,
    /// Could not be published again: left on the dead-letter topic, with the error.
    pub failed: Vec<(DeadLetter, String)>,
}

pub(super) async fn list(
    _admin: &Admin,
    _saga: Option<&str>,
    _limit: usize,
) -> Result<Vec<DeadLetter>, AdminError> {
    Err(AdminError::StateUnreadable {
        trace_id: String::new(),
        reason: "dead letters: not built yet".to_string(),
    })
}

pub(super) async fn replay(
    _admin: &Admin,
    _saga: Option<&str>,
    _message_id: Option<&str>,
) -> Result<Replayed, AdminError> {
    Err(AdminError::StateUnreadable {
        trace_id: String::new(),
        reason: "dead letters: not built yet".to_string(),
    })
}
