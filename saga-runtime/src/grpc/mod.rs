//! tonic glue (feature `grpc`): `x-request-id` as the trace id, idempotency keys on outgoing
//! calls, `Status` mapping both ways, and a server bootstrap.
//!
//! - Incoming: [`TraceIdPolicy`] reads the trace id from [`REQUEST_ID_HEADER`] (or makes one)
//!   and [`saga_context`] builds the [`SagaContext`](crate::SagaContext) of a request.
//! - Outgoing: a step builds each upstream request with [`outgoing_request`], which adds
//!   [`REQUEST_ID_HEADER`] and [`IDEMPOTENCY_KEY_HEADER`].
//! - Errors: a step's `client.call(req).await?` turns a [`tonic::Status`] into a
//!   [`StepError`](crate::StepError) classified by code ([`step_error_from_status`]); a
//!   handler returns `Err(saga_error.into())` to turn a [`SagaError`](crate::SagaError) into
//!   a `Status` with a documented code and the trace id in its details
//!   ([`status_from_saga_error`], read back with [`trace_id_from_status`]).
//! - Serving: [`GrpcServer`] adds reflection (v1 and v1alpha), health (driven by a
//!   [`HealthWatch`](crate::observe::HealthWatch) with [`GrpcServer::health`]), graceful
//!   shutdown and TLS ([`GrpcServer::tls`], optionally mutual).
//! - TLS: [`server_tls_config`] and [`client_tls_config`] turn the PEM files of a
//!   [`ServerTls`](crate::tls::ServerTls) or [`ClientTls`](crate::tls::ClientTls) into tonic
//!   settings (a client `Channel` to an upstream service over `https://`).
//! - Operating: [`admin::AdminService`] serves the admin API (`sagaflow.admin.v1.SagaAdmin`)
//!   that the `sagaflow` CLI talks to.

pub mod admin;
mod health;
mod outgoing;
mod server;
mod status;
mod tls;
mod trace;

pub use health::{report_health, serving_status};
pub use outgoing::{outgoing_request, response_with_trace_id, set_saga_metadata};
pub use server::{GrpcServer, ServeError, ServerHandle};
pub use status::{
    ERROR_DOMAIN, saga_error_reason, status_from_saga_error, step_error_from_status,
    trace_id_from_status,
};
pub use tls::{client_tls_config, server_tls_config};
pub use trace::{
    FORWARDED_BY_DEFAULT, MAX_TRACE_ID_LEN, RequestPolicy, TRACE_ID_PUNCTUATION, TraceIdPolicy,
    generate_trace_id, saga_context, validate_trace_id,
};

/// The header carrying the trace id, which is also the saga id (the Go framework's header).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The header carrying the idempotency key of the step making an upstream call
/// (`{trace_id}/{step}`, or `{trace_id}/{step}/compensate`).
pub const IDEMPOTENCY_KEY_HEADER: &str = "x-idempotency-key";
