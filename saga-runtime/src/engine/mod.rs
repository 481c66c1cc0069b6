//! The engine: drives a [`Saga`](crate::Saga) state machine in each mode.
//!
//! - [`SyncEngine`]: the bare sync mode, no store, no broker (the saga in the caller's task,
//!   compensations inline).
//! - [`Orchestrator`]: the three modes of one definition over a transport and a store, with
//!   idempotent start by trace id, durable state and leases in every mode, fenced deliveries,
//!   queued rollback, the step consumers, the recovery sweeper and the watcher.
//!
//! One saga, from `#[saga]` to the broker and back, in reading order:
//! 1. [`Orchestrator`] (`orchestrator.rs`) records the saga with its first state
//!    (`store::SagaStore::begin`) and either drives it here (sync) or publishes it (async,
//!    throttled);
//! 2. `driver.rs` is the one loop of every mode: run an attempt (`transition.rs`: timeout,
//!    panic caught), decide on a retry, fold the effect into the next state (`progress.rs`),
//!    and ask the mode's journal what to record and whether to go on here;
//! 3. the journals: `sync.rs` (nothing), `durable.rs` (the store, next transition in place:
//!    sync mode and recovery), `consumer.rs` (the store, then the broker: async and
//!    throttled, fenced by a claim on the delivery's sequence number);
//! 4. `serve.rs` subscribes a `consumer.rs` handler per topic (`topics.rs`) and starts
//!    `sweeper.rs`, which resumes sagas whose custody lapsed;
//! 5. `runtime.rs` holds what they share: encoding (`envelope.rs`), publishing, store writes
//!    with retries, lease renewal, the completion hook (`completion.rs`), the outcome watch.
//!
//! Retry rules, common to every mode: each attempt of a step is bounded by the step's
//! `timeout_ms` (a timeout is a retryable error; a panic too); compensatable steps and the
//! pivot retry retryable errors within their [`RetryPolicy`](crate::RetryPolicy) and
//! compensate on a final error or when the bound is hit; retriable steps (after the pivot)
//! retry every error within their bound, and compensations every error within the
//! compensation policy ([`OrchestratorConfig::compensation_retry`]), after which the saga is
//! stuck ([`SagaError::Stuck`](crate::SagaError::Stuck)) and its state still points at the
//! stuck transition (in the async modes its message goes to the dead-letter topic). In the
//! sync modes a retry waits in place; in the async modes it goes back to the broker (a nack
//! with the delay), and the attempt count lives in the store, so it survives redeliveries and
//! replica deaths.

mod builder;
mod completion;
mod config;
mod consumer;
mod driver;
mod durable;
mod envelope;
mod operate;
mod orchestrator;
mod progress;
mod runtime;
mod serve;
mod sweeper;
mod sync;
mod topics;
mod transition;

pub use builder::OrchestratorBuilder;
pub use completion::{Completion, CompletionHook};
pub use config::{OrchestratorConfig, Rollback, Routing};
pub use consumer::ConsumerService;
#[doc(hidden)]
pub use envelope::{Envelope, FORMAT_VERSION};
pub use orchestrator::{Orchestrator, Started};
#[doc(hidden)]
pub use progress::{FailedStep, Progress};
pub use serve::{Consumers, ConsumersProbe};
pub use sync::SyncEngine;
pub use topics::{all_topics, rollback_topic, step_topic, topic_for};
