//! Errors, in three layers that never mix:
//! - [`StepError`]: what a step or compensation returns (retryable or final, effect known or
//!   unknown);
//! - [`SagaFailure`]: how a saga that did not complete ended, as the store records it;
//! - [`SagaError`]: what a caller sees — the saga's ending, a refusal of the request, or an
//!   infrastructure failure whose cause ([`StoreError`](crate::store::StoreError),
//!   [`TransportError`](crate::transport::TransportError)) is its `source()` chain. Match
//!   causes by kind ([`StoreErrorKind`](crate::store::StoreErrorKind),
//!   [`TransportErrorKind`](crate::transport::TransportErrorKind)); log them with [`Report`].

mod failure;
mod report;
mod saga;
mod step;

pub use failure::{SagaFailure, StuckAt};
pub use report::{Cause, Report, cause};
pub use saga::{Rejection, SagaError};
pub use step::{Effect, ErrorKind, StepError, StepResult};
