//! `tonic::Status` <-> saga errors.
//!
//! Upstream `Status` -> [`StepError`] ([`step_error_from_status`], also `From`, so a step can
//! write `client.call(req).await?`):
//!
//! | code | kind | why |
//! |---|---|---|
//! | `ResourceExhausted`, `Aborted` | retryable | transient by definition (overloaded, contention) |
//! | `Unavailable`, `DeadlineExceeded`, `Unknown`, `Cancelled` | retryable, [`Effect::Unknown`](crate::Effect) | down, slow, or what a broken connection or a server shutting down mid-call yields: the request may have been applied; retries are bounded and carry the same idempotency key |
//! | every other code (`Internal` included) | final | retrying the same request cannot change the answer; the saga compensates |
//!
//! [`SagaError`] -> `Status` ([`status_from_saga_error`], also `From`):
//!
//! | variant | code | reason in `ErrorInfo` |
//! |---|---|---|
//! | `Compensated` (a step failed for good, every completed step undone) | `FailedPrecondition` | `SAGA_COMPENSATED` |
//! | `Compensated` whose failed step's effect is unknown ([`SagaError::effect_unknown`]) | `FailedPrecondition` | `SAGA_COMPENSATED_EFFECT_UNKNOWN` |
//! | `RollbackQueued` (a step failed for good, compensation queued on the rollback topic) | `FailedPrecondition` | `SAGA_ROLLBACK_QUEUED` |
//! | `Stuck` (a compensation or retriable step exhausted its retries) | `Internal` | `SAGA_STUCK` |
//! | `DeadlineExceeded` (the caller's wait ended; the saga goes on) | `DeadlineExceeded` | `SAGA_DEADLINE_EXCEEDED` |
//! | `IdTaken` (trace id used by another input) | `AlreadyExists` | `SAGA_ID_TAKEN` |
//! | `Rejected` (the throttled queue is full) | `ResourceExhausted` | `SAGA_REJECTED` |
//! | `Store`, `Transport` (backend unreachable, timed out) | `Unavailable` | `SAGA_STORE_UNAVAILABLE`, `SAGA_TRANSPORT_UNAVAILABLE` |
//! | `Store` whose kind is not transient (corrupt record, bad configuration) | `Internal` | `SAGA_STORE_UNAVAILABLE` |
//! | `InvalidState` | `Internal` | `SAGA_INVALID_STATE` |
//! | `Panicked` (the task running the saga panicked) | `Internal` | `SAGA_PANICKED` |
//!
//! For `Store` and `Transport` the message says what failed (the store is unreachable, the
//! broker did not confirm) and never the internal address or the cause; those are logged at
//! `error` level with the trace id and the whole cause chain when the status is built.
//!
//! `Compensated` is `FailedPrecondition` rather than `Aborted` because it is the final outcome
//! of that trace id (a repeat returns it again), so a client must not retry it as is: it is
//! final for [`step_error_from_status`] too, which matters when a saga calls another
//! orchestrator. The message is the error's `Display` (saga, trace id, failed step, reason).
//! The details are a `google.rpc.Status` holding a `google.rpc.ErrorInfo` with domain
//! [`ERROR_DOMAIN`] and metadata `trace_id`, `saga` and `step` (when known): grpcurl prints
//! it, any gRPC client decodes it, [`trace_id_from_status`] reads it back. The response
//! metadata also carries `x-request-id`.

use std::collections::HashMap;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::REQUEST_ID_HEADER;
use crate::error::{Report, StuckAt};
use crate::{SagaError, StepError};

/// The `ErrorInfo.domain` of every status made from a [`SagaError`].
pub const ERROR_DOMAIN: &str = "sagaflow";

/// Classifies an upstream call's failure (table in the source of `grpc/status.rs`). The message
/// keeps the code and the upstream message: `Unavailable: connection refused`.
pub fn step_error_from_status(status: &Status) -> StepError {
    let message = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::ResourceExhausted | Code::Aborted => StepError::retryable(message),
        // The request may have been applied before the answer was lost.
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => {
            StepError::ambiguous(message)
        }
        Code::Ok
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss
        | Code::Unauthenticated => StepError::fatal(message),
    }
}

impl From<Status> for StepError {
    fn from(status: Status) -> Self {
        step_error_from_status(&status)
    }
}

/// The stable `ErrorInfo.reason` of a saga error (table in the source of `grpc/status.rs`).
pub fn saga_error_reason(error: &SagaError) -> &'static str {
    match error {
        SagaError::Compensated { .. } if error.effect_unknown() => {
            "SAGA_COMPENSATED_EFFECT_UNKNOWN"
        }
        SagaError::Compensated { .. } => "SAGA_COMPENSATED",
        SagaError::RollbackQueued { .. } => "SAGA_ROLLBACK_QUEUED",
        SagaError::Stuck { .. } => "SAGA_STUCK",
        SagaError::DeadlineExceeded { .. } => "SAGA_DEADLINE_EXCEEDED",
        SagaError::IdTaken { .. } => "SAGA_ID_TAKEN",
        SagaError::Rejected { .. } => "SAGA_REJECTED",
        SagaError::Store { .. } => "SAGA_STORE_UNAVAILABLE",
        SagaError::Transport { .. } => "SAGA_TRANSPORT_UNAVAILABLE",
        SagaError::InvalidState { .. } => "SAGA_INVALID_STATE",
        SagaError::Panicked { .. } => "SAGA_PANICKED",
    }
}

/// The status a handler returns for `error` (table in the source of `grpc/status.rs`): the code,
/// the error's message, an `ErrorInfo` with the trace id, and `x-request-id` metadata.
pub fn status_from_saga_error(error: &SagaError) -> Status {
    let (code, saga, step) = match error {
        SagaError::Compensated { saga, step, .. } => {
            (Code::FailedPrecondition, Some(saga), Some(step.as_str()))
        }
        SagaError::RollbackQueued { saga, step, .. } => {
            (Code::FailedPrecondition, Some(saga), Some(step.as_str()))
        }
        SagaError::Stuck { saga, stuck, .. } => {
            let step = match stuck {
                StuckAt::Compensation(step) | StuckAt::Step(step) => Some(step.as_str()),
                StuckAt::Definition { .. } => None,
            };
            (Code::Internal, Some(saga), step)
        }
        SagaError::DeadlineExceeded { saga, .. } => (Code::DeadlineExceeded, Some(saga), None),
        SagaError::IdTaken { saga, .. } => (Code::AlreadyExists, Some(saga), None),
        SagaError::Rejected { saga, .. } => (Code::ResourceExhausted, Some(saga), None),
        SagaError::Store { source, .. } if !source.kind().is_transient() => {
            (Code::Internal, None, None)
        }
        SagaError::Store { .. } | SagaError::Transport { .. } => (Code::Unavailable, None, None),
        SagaError::InvalidState { saga, .. } | SagaError::Panicked { saga, .. } => {
            (Code::Internal, Some(saga), None)
        }
    };
    let trace_id = error.trace_id();
    if error.is_infrastructure() {
        // The client's message leaves out internal addresses and causes: log them here.
        tracing::error!(trace_id, error = %Report(error), "saga request failed on infrastructure");
    }
    let mut metadata = HashMap::from([("trace_id".to_owned(), trace_id.to_owned())]);
    if let Some(saga) = saga {
        metadata.insert("saga".to_owned(), saga.clone());
    }
    if let Some(step) = step {
        metadata.insert("step".to_owned(), step.to_owned());
    }
    let details = ErrorDetails::with_error_info(saga_error_reason(error), ERROR_DOMAIN, metadata);
    let mut status = Status::with_error_details(code, error.to_string(), details);
    if let Ok(value) = MetadataValue::try_from(trace_id) {
        status.metadata_mut().insert(REQUEST_ID_HEADER, value);
    }
    status
}

impl From<SagaError> for Status {
    fn from(error: SagaError) -> Self {
        status_from_saga_error(&error)
    }
}

impl From<&SagaError> for Status {
    fn from(error: &SagaError) -> Self {
        status_from_saga_error(error)
    }
}

/// The trace id a status is about: the `trace_id` of its `ErrorInfo` detail (any domain),
/// else its `x-request-id` metadata; `None` when it has neither (or undecodable details).
pub fn trace_id_from_status(status: &Status) -> Option<String> {
    if let Some(info) = status.get_details_error_info()
        && let Some(trace_id) = info.metadata.get("trace_id")
    {
        return Some(trace_id.clone());
    }
    status
        .metadata()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}
