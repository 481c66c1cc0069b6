//! Runtime of sagaflow: the [`Saga`] trait that `#[saga]` implements, the engine that drives
//! it (sync, async over a queue, throttled), the transports, the saga stores and the tonic glue.
//!
//! Users normally depend on the `sagaflow` facade crate, which re-exports this crate and the
//! macros. The delivery contract every mode relies on is at-least-once: a step or a
//! compensation may run more than once for one saga (after a crash, a redelivery or a
//! retry), so steps and compensations must be idempotent. Each gets a stable idempotency key
//! (`{trace_id}/{step}`) in its [`SagaContext`] for exactly that purpose.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
// `SagaError` carries the failed step, the stuck transition and both errors so one value
// tells an operator everything; it is built only on the cold failure path.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod context;
pub mod description;
pub mod engine;
pub mod error;
mod metadata;
pub mod observe;
pub mod redact;
pub mod retry;
pub mod saga;
pub mod store;
pub mod testing;
pub mod tls;
pub mod transport;

#[cfg(feature = "config")]
pub mod config;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "otel")]
pub mod otel;

pub use context::SagaContext;
pub use description::{SagaDescription, StepDescription, StepKind};
pub use error::{Effect, ErrorKind, SagaError, StepError, StepResult};
pub use metadata::Metadata;
pub use retry::RetryPolicy;
pub use saga::{Cursor, Saga};

/// Items the `#[saga]` expansion names by absolute path. Not a public API: no stability
/// promise, may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use core::future::Future;
    pub use core::result::Result;
    pub use core::time::Duration;
    pub use serde;
}
