//! [`SagaError`]: the outcome a caller sees when a saga did not complete, or could not run.

use super::{Effect, SagaFailure, StepError, StuckAt};
use crate::store::StoreError;
use crate::transport::TransportError;

/// How a saga ended when it did not complete, or why it could not run: what the caller of
/// [`Orchestrator::run_sync`](crate::engine::Orchestrator::run_sync) (or a watcher of the outcome) gets.
///
/// Three families, each variant naming the trace id:
/// - **the saga ended** without completing ([`Compensated`](Self::Compensated),
///   [`Stuck`](Self::Stuck), [`RollbackQueued`](Self::RollbackQueued),
///   [`InvalidState`](Self::InvalidState)): the store keeps it as a [`SagaFailure`];
/// - **the caller's request was refused or gave up** ([`IdTaken`](Self::IdTaken),
///   [`Rejected`](Self::Rejected), [`DeadlineExceeded`](Self::DeadlineExceeded));
/// - **infrastructure failed** ([`Store`](Self::Store), [`Transport`](Self::Transport),
///   [`Panicked`](Self::Panicked)): the cause is the [`source`](std::error::Error::source)
///   chain, matchable through [`StoreError::kind`] and [`TransportError::kind`]; the message
///   itself says what failed without internal addresses (log it with
///   [`Report`](super::Report) to see the whole chain).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SagaError {
    /// A step failed for good and every completed step was compensated.
    #[error(
        "saga `{saga}` [trace id {trace_id}]: step `{step}` failed: {error}; every completed step was compensated{}",
        if error.effect() == Effect::Unknown { format!("; the effect of step `{step}` itself is UNKNOWN (its last attempt may have been applied): reconcile it by idempotency key `{trace_id}/{step}`") } else { String::new() }
    )]
    Compensated {
        /// The saga's name.
        saga: String,
        /// The trace id (saga id).
        trace_id: String,
        /// The step that failed.
        step: String,
        /// Why it failed.
        error: StepError,
    },
    /// A step failed for good and its compensation was queued on the rollback topic (sync
    /// mode with queued rollback); the outcome lands in the store when it ends.
    #[error(
        "saga `{saga}` [trace id {trace_id}]: step `{step}` failed: {error}; compensation queued on the rollback topic"
    )]
    RollbackQueued {
        /// The saga's name.
        saga: String,
        /// The trace id (saga id).
        trace_id: String,
        /// The step that failed.
        step: String,
        /// Why it failed.
        error: StepError,
    },
    /// A transition kept failing past its retry bound; the saga needs an operator.
    #[error("saga `{saga}` [trace id {trace_id}] is stuck: {stuck} failed {attempts} times, last: {last_error}{}", failed_step.as_ref().map(|(s, e)| format!(" (while compensating the failure of step `{s}`: {e})")).unwrap_or_default())]
    Stuck {
        /// The saga's name.
        saga: String,
        /// The trace id (saga id).
        trace_id: String,
        /// The transition that is stuck.
        stuck: StuckAt,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure of the stuck transition.
        last_error: StepError,
        /// The forward step whose failure started the rollback, and its error.
        failed_step: Option<(String, StepError)>,
    },
    /// A state that cannot be driven or a result that cannot be represented (a state of
    /// another saga, an output that does not serialize, a stored state that does not decode).
    #[error("saga `{saga}` [trace id {trace_id}]: invalid state: {message}")]
    InvalidState {
        /// The saga's name.
        saga: String,
        /// The trace id (saga id).
        trace_id: String,
        /// What is wrong.
        message: String,
    },
    /// The caller's deadline passed before the saga ended; the saga itself goes on.
    #[error(
        "saga `{saga}` [trace id {trace_id}]: deadline exceeded while waiting for the outcome; the saga keeps running and its outcome stays in the store"
    )]
    DeadlineExceeded {
        /// The saga's name.
        saga: String,
        /// The trace id (saga id).
        trace_id: String,
    },
    /// The trace id already belongs to a saga started with a different input.
    #[error(
        "trace id {trace_id} is already used by saga `{saga}` with a different input; use a new x-request-id"
    )]
    IdTaken {
        /// The saga's name.
        saga: String,
        /// The trace id (saga id).
        trace_id: String,
    },
    /// The saga was refused before it started.
    #[error("saga `{saga}` [trace id {trace_id}] was rejected: {reason}")]
    Rejected {
        /// The saga's name.
        saga: String,
        /// The trace id (saga id).
        trace_id: String,
        /// Why.
        reason: Rejection,
    },
    /// The saga store failed (unreachable, timed out, bad data). When it failed before the
    /// saga was recorded nothing started; later, recovery finishes the saga.
    #[error("{} [trace id {trace_id}]", source.kind())]
    Store {
        /// The trace id (saga id).
        trace_id: String,
        /// What failed, with its causes.
        #[source]
        source: StoreError,
    },
    /// The transport failed (broker unreachable, publish not confirmed).
    #[error("{} [trace id {trace_id}]", source.kind())]
    Transport {
        /// The trace id (saga id).
        trace_id: String,
        /// What failed, with its causes.
        #[source]
        source: TransportError,
    },
    /// The task running the saga panicked (a bug in a hook or in the engine; a panicking
    /// step is a failed step instead). Recovery resumes the saga from its record.
    #[error("saga `{saga}` [trace id {trace_id}]: the task running it panicked: {message}")]
    Panicked {
        /// The saga's name.
        saga: String,
        /// The trace id (saga id).
        trace_id: String,
        /// The panic message.
        message: String,
    },
}

/// Why a saga was refused before it started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The replica's throttled queue is full
    /// ([`OrchestratorConfig::max_waiting`](crate::engine::OrchestratorConfig::max_waiting)).
    #[error("the throttled queue of this replica is full ({waiting} callers waiting); retry later")]
    QueueFull {
        /// How many callers were waiting.
        waiting: usize,
    },
}

impl SagaError {
    /// The caller's view of a recorded ending of saga `saga` with trace id `trace_id`.
    pub fn ended(saga: &str, trace_id: &str, failure: SagaFailure) -> Self {
        let (saga, trace_id) = (saga.to_string(), trace_id.to_string());
        match failure {
            SagaFailure::Compensated { step, error } => SagaError::Compensated {
                saga,
                trace_id,
                step,
                error,
            },
            SagaFailure::Stuck {
                stuck,
                attempts,
                last_error,
                failed_step,
            } => SagaError::Stuck {
                saga,
                trace_id,
                stuck,
                attempts,
                last_error,
                failed_step,
            },
            SagaFailure::InvalidState { message } => SagaError::InvalidState {
                saga,
                trace_id,
                message,
            },
        }
    }

    /// The record form of an ending ([`Compensated`](Self::Compensated),
    /// [`Stuck`](Self::Stuck), [`InvalidState`](Self::InvalidState)); `None` for the others,
    /// which the store never keeps as a saga's end.
    pub fn failure(&self) -> Option<SagaFailure> {
        match self {
            SagaError::Compensated { step, error, .. } => Some(SagaFailure::Compensated {
                step: step.clone(),
                error: error.clone(),
            }),
            SagaError::Stuck {
                stuck,
                attempts,
                last_error,
                failed_step,
                ..
            } => Some(SagaFailure::Stuck {
                stuck: stuck.clone(),
                attempts: *attempts,
                last_error: last_error.clone(),
                failed_step: failed_step.clone(),
            }),
            SagaError::InvalidState { message, .. } => Some(SagaFailure::InvalidState {
                message: message.clone(),
            }),
            _ => None,
        }
    }

    /// True for a [`SagaError::Compensated`] whose failed step may have taken effect (its last
    /// error has [`Effect::Unknown`]): every other step was compensated, that one must be
    /// reconciled by its idempotency key.
    pub fn effect_unknown(&self) -> bool {
        matches!(self, SagaError::Compensated { error, .. } if error.effect() == Effect::Unknown)
    }

    /// True when infrastructure failed ([`Store`](Self::Store), [`Transport`](Self::Transport),
    /// [`Panicked`](Self::Panicked)) rather than the saga or the request: the same request may
    /// succeed when retried later.
    pub fn is_infrastructure(&self) -> bool {
        matches!(
            self,
            SagaError::Store { .. } | SagaError::Transport { .. } | SagaError::Panicked { .. }
        )
    }

    /// The trace id the error is about.
    pub fn trace_id(&self) -> &str {
        match self {
            SagaError::Compensated { trace_id, .. }
            | SagaError::RollbackQueued { trace_id, .. }
            | SagaError::Stuck { trace_id, .. }
            | SagaError::InvalidState { trace_id, .. }
            | SagaError::DeadlineExceeded { trace_id, .. }
            | SagaError::IdTaken { trace_id, .. }
            | SagaError::Rejected { trace_id, .. }
            | SagaError::Store { trace_id, .. }
            | SagaError::Transport { trace_id, .. }
            | SagaError::Panicked { trace_id, .. } => trace_id,
        }
    }
}
