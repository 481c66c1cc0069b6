//! What an operator's request can fail with.

use crate::store::{StatusKind, StoreError};
use crate::transport::TransportError;

/// Why an [`Admin`](super::Admin) request was refused or failed. Every message names the saga
/// (trace id) and what to do next.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The store holds no record of this trace id.
    #[error(
        "no saga with trace id `{trace_id}`: it was never begun here, or its record expired after the finished time-to-live"
    )]
    NotFound {
        /// The trace id asked for.
        trace_id: String,
    },
    /// No dead letter with this message id is waiting.
    #[error(
        "no dead letter with message id `{message_id}` is waiting (list them with dead-letters)"
    )]
    DeadLetterNotFound {
        /// The message id asked for.
        message_id: String,
    },
    /// No orchestrator of this saga is registered with the admin.
    #[error("no saga named `{saga}` is registered with this admin (registered: {})", known.join(", "))]
    UnknownSaga {
        /// The saga name asked for.
        saga: String,
        /// The registered saga names.
        known: Vec<String>,
    },
    /// Resume needs a stuck saga.
    #[error("saga `{trace_id}` is {}, not stuck: only a stuck saga can be resumed", status.as_str())]
    NotStuck {
        /// The saga's trace id.
        trace_id: String,
        /// Its status family.
        status: StatusKind,
    },
    /// The saga finished: there is nothing left to run or undo.
    #[error("saga `{trace_id}` already finished ({}): nothing to compensate", status.as_str())]
    Finished {
        /// The saga's trace id.
        trace_id: String,
        /// Its status family.
        status: StatusKind,
    },
    /// The saga passed its pivot: it can only go forward.
    #[error(
        "saga `{trace_id}` is past its pivot (it stands at `{step}`): it can only go forward; resume it instead of compensating"
    )]
    PastPivot {
        /// The saga's trace id.
        trace_id: String,
        /// The step it stands at.
        step: String,
    },
    /// The saga changed between the read and the write of the request (another operator,
    /// a replica): nothing was done.
    #[error(
        "saga `{trace_id}` changed while the request ran; nothing was done: read it again and retry"
    )]
    Conflict {
        /// The saga's trace id.
        trace_id: String,
    },
    /// The stored state cannot be read by the deployed definition, or there is none.
    #[error("the stored state of saga `{trace_id}` cannot be resumed: {reason}")]
    StateUnreadable {
        /// The saga's trace id.
        trace_id: String,
        /// Why.
        reason: String,
    },
    /// The saga store failed.
    #[error("the saga store failed")]
    Store(#[from] StoreError),
    /// The broker failed.
    #[error("the message broker failed")]
    Transport(#[from] TransportError),
}
