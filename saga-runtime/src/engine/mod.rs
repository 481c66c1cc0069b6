//! The engine: drives a [`Saga`](crate::Saga) state machine in each mode.
//!
//! Retry rules, common to every mode: each attempt of a step is bounded by the step's
//! `timeout_ms` (a timeout is a retryable error); compensatable steps and the pivot retry
//! retryable errors within their [`RetryPolicy`](crate::RetryPolicy) and compensate on a final
//! error or when the bound is hit; retriable steps (after the pivot) and compensations retry
//! every error within their bound, after which the saga is stuck
//! ([`SagaError::Stuck`](crate::SagaError::Stuck)) and its state still points at the stuck
//! transition.

mod progress;
mod sync;
mod transition;

pub use progress::{Failure, Progress};
pub use sync::SyncEngine;
