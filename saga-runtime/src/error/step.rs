//! [`StepError`]: what a step or compensation returns when it fails.

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
/// [`SagaError::Compensated`](crate::SagaError::Compensated), says so:
/// [`SagaError::effect_unknown`](crate::SagaError::effect_unknown) is true, the message names
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
