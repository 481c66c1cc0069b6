//! Errors: [`StepError`] (what a step or compensation returns) and [`SagaError`] (how a saga
//! ended when it did not complete).

use serde::{Deserialize, Serialize};

/// What a step returns: its output, or why it failed.
pub type StepResult<T> = Result<T, StepError>;

/// Whether a failure may go away if the same call is made again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// Transient (unavailable, timeout, overloaded): retried with backoff, within the bound
    /// of the step's [`RetryPolicy`](crate::RetryPolicy).
    Retryable,
    /// Permanent (invalid argument, business rule): never retried; the saga compensates.
    Final,
}

/// Whether a failed call may nevertheless have taken effect upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The upstream answered that it did not do it (a refusal, a validation error): nothing
    /// to undo.
    #[default]
    None,
    /// The request may have reached the upstream and been applied before the failure (a
    /// timeout, a connection lost mid-call, `Unavailable`, `Unknown`, `Cancelled`,
    /// `DeadlineExceeded`): its effect is unknown.
    Unknown,
}

/// Why one step or compensation failed, classified [`ErrorKind::Retryable`] or
/// [`ErrorKind::Final`], and whether its [`Effect`] is unknown.
///
/// **Ambiguous failures.** When a compensatable step (or the pivot) gives up and its last error
/// has [`Effect::Unknown`], the saga still compensates every earlier step, and its outcome,
/// [`SagaError::Compensated`], says so: [`SagaError::effect_unknown`] is true, the message names
/// the step and its idempotency key, and the gRPC status carries the reason
/// `SAGA_COMPENSATED_EFFECT_UNKNOWN`, so the caller reconciles that one step by its key (the
/// upstream deduplicates by it) instead of believing nothing happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({kind:?}{})", if *effect == Effect::Unknown { ", effect unknown" } else { "" })]
pub struct StepError {
    kind: ErrorKind,
    message: String,
    #[serde(default, skip_serializing_if = "is_no_effect")]
    effect: Effect,
}

fn is_no_effect(effect: &Effect) -> bool {
    *effect == Effect::None
}

impl StepError {
    /// A transient failure: the engine retries it within the step's retry policy.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            message: message.into(),
            effect: Effect::None,
        }
    }

    /// A permanent failure: the engine does not retry it and compensates the saga.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Final,
            message: message.into(),
            effect: Effect::None,
        }
    }

    /// A transient failure after which the call may have taken effect (retryable, effect
    /// unknown): a timeout, a connection lost mid-call.
    pub fn ambiguous(message: impl Into<String>) -> Self {
        Self::retryable(message).with_effect(Effect::Unknown)
    }

    /// The same error with `effect`.
    pub fn with_effect(mut self, effect: Effect) -> Self {
        self.effect = effect;
        self
    }

    /// The step did not finish within its timeout (retryable; its effect is unknown: the
    /// request may have been applied).
    pub fn timeout(after: std::time::Duration) -> Self {
        Self::ambiguous(format!("timed out after {after:?}"))
    }

    /// Whether the failed call may have taken effect.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// Retryable or final.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True for [`ErrorKind::Retryable`].
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    /// The human-readable reason.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Where a stuck saga is stuck: the transition that exhausted its retries. The saga's state
/// still points at it, so it can be resumed once the cause is fixed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StuckAt {
    /// A compensation of this step kept failing.
    Compensation(String),
    /// A retriable step (after the pivot, never compensated) kept failing.
    Step(String),
}

impl std::fmt::Display for StuckAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StuckAt::Compensation(step) => write!(f, "the compensation of step `{step}`"),
            StuckAt::Step(step) => write!(f, "retriable step `{step}`"),
        }
    }
}

/// How a saga ended when it did not complete, or why it could not run.
///
/// Every variant names the trace id; the ones about a failed step name the step and the
/// reason, and say whether every compensation finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
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
    /// The saga was refused before it started (queue full, shutting down, ...).
    #[error("saga `{saga}` [trace id {trace_id}] was rejected: {reason}")]
    Rejected {
        /// The saga's name.
        saga: String,
        /// The trace id (saga id).
        trace_id: String,
        /// Why.
        reason: String,
    },
    /// The saga store failed (unreachable, bad data); nothing was started.
    #[error("saga store error [trace id {trace_id}]: {message}")]
    Store {
        /// The trace id (saga id).
        trace_id: String,
        /// What failed.
        message: String,
    },
    /// The transport failed (broker unreachable, publish not confirmed).
    #[error("transport error [trace id {trace_id}]: {message}")]
    Transport {
        /// The trace id (saga id).
        trace_id: String,
        /// What failed.
        message: String,
    },
    /// A state that cannot be driven (a finished state resumed, a state of another saga).
    #[error("saga `{saga}` [trace id {trace_id}]: invalid state: {message}")]
    InvalidState {
        /// The saga's name.
        saga: String,
        /// The trace id (saga id).
        trace_id: String,
        /// What is wrong.
        message: String,
    },
}

impl SagaError {
    /// True for a [`SagaError::Compensated`] whose failed step may have taken effect (its last
    /// error has [`Effect::Unknown`]): every other step was compensated, that one must be
    /// reconciled by its idempotency key.
    pub fn effect_unknown(&self) -> bool {
        matches!(self, SagaError::Compensated { error, .. } if error.effect() == Effect::Unknown)
    }

    /// The trace id the error is about.
    pub fn trace_id(&self) -> &str {
        match self {
            SagaError::Compensated { trace_id, .. }
            | SagaError::RollbackQueued { trace_id, .. }
            | SagaError::Stuck { trace_id, .. }
            | SagaError::DeadlineExceeded { trace_id, .. }
            | SagaError::IdTaken { trace_id, .. }
            | SagaError::Rejected { trace_id, .. }
            | SagaError::Store { trace_id, .. }
            | SagaError::Transport { trace_id, .. }
            | SagaError::InvalidState { trace_id, .. } => trace_id,
        }
    }
}
