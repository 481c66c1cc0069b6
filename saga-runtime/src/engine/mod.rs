//! The engine: drives a [`Saga`](crate::Saga) state machine in each mode.
//!
//! - [`SyncEngine`]: the bare sync mode, no store, no broker (the saga in the caller's task,
//!   compensations inline).
//! - [`Orchestrator`]: the three modes of one definition over a transport and a store, with
//!   idempotent start by trace id, queued rollback, the step consumers, and the watcher.
//!
//! Retry rules, common to every mode: each attempt of a step is bounded by the step's
//! `timeout_ms` (a timeout is a retryable error); compensatable steps and the pivot retry
//! retryable errors within their [`RetryPolicy`](crate::RetryPolicy) and compensate on a final
//! error or when the bound is hit; retriable steps (after the pivot) and compensations retry
//! every error within their bound, after which the saga is stuck
//! ([`SagaError::Stuck`](crate::SagaError::Stuck)) and its state still points at the stuck
//! transition (in the async modes its message goes to the dead-letter topic).

mod config;
mod consumer;
mod envelope;
mod inner;
mod orchestrator;
mod progress;
mod sync;
mod topics;
mod transition;

pub use config::{OrchestratorConfig, Rollback, Routing};
pub use consumer::Consumers;
pub use envelope::{Envelope, FORMAT_VERSION};
pub use orchestrator::{Completion, CompletionHook, Orchestrator, Started};
pub use progress::{Failure, Progress};
pub use sync::SyncEngine;
pub use topics::{all_topics, rollback_topic, step_topic, topic_for};
