#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use saga_macros::{saga, step};

pub use saga_runtime::{
    Cursor, Effect, ErrorKind, Metadata, RetryPolicy, Saga, SagaContext, SagaDescription,
    SagaError, StepDescription, StepError, StepKind, StepResult,
};
pub use saga_runtime::{admin, engine, error, observe, store, testing, tls, transport};

#[cfg(feature = "config")]
pub use saga_runtime::config;
#[cfg(feature = "grpc")]
pub use saga_runtime::grpc;
#[cfg(feature = "otel")]
pub use saga_runtime::otel;

/// Items the `#[saga]` expansion names by absolute path. Not a public API.
#[doc(hidden)]
pub use saga_runtime::__private;
/// The compile-time checks the `#[saga]` expansion names (`saga::checks`). Not a public API.
#[doc(hidden)]
pub use saga_runtime::saga;
