//! The admin API over gRPC (`sagaflow.admin.v1.SagaAdmin`): [`AdminService`] serves an
//! [`Admin`](crate::admin::Admin) to the `sagaflow` CLI, grpcurl or any gRPC client.
//!
//! - **Off by default**: an orchestrator serves it only when told to, on its own listen
//!   address ([`AdminService::server`] gives a [`GrpcServer`](super::GrpcServer) with
//!   reflection and health for it).
//! - **Authentication**: with [`AdminService::with_token`], every call must carry
//!   `authorization: Bearer <token>` (compared in constant time), or it is refused with
//!   `UNAUTHENTICATED`. Serve it beyond loopback only with a token (and TLS in front when the
//!   network is not trusted).
//! - **Operator identity**: resume and compensate record who asked, read from the
//!   [`OPERATOR_HEADER`] metadata entry ([`DEFAULT_OPERATOR`] when absent).
//! - **Errors** map to status codes by [`status_from_admin_error`]: a script can rely on the
//!   code, a human reads the message.
//!
//! The messages are generated from `saga-runtime/proto/sagaflow/admin/v1/admin.proto` into
//! [`pb`] (client and server), and [`FILE_DESCRIPTOR_SET`] describes them to reflection.

mod auth;
mod convert;
mod service;
mod status;

pub use auth::BearerAuth;
pub use service::{AdminServer, AdminService};
pub use status::status_from_admin_error;

/// The messages, client and server generated from `sagaflow/admin/v1/admin.proto`.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod pb {
    tonic::include_proto!("sagaflow.admin.v1");
}

/// The encoded `FileDescriptorSet` of the admin proto, for server reflection
/// ([`GrpcServer::register_file_descriptor_set`](super::GrpcServer::register_file_descriptor_set)).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sagaflow_admin_descriptor.bin"));

/// The metadata entry naming the operator of a request (recorded in the saga's history by
/// resume and compensate).
pub const OPERATOR_HEADER: &str = "x-operator";

/// The operator recorded when a request does not name one.
pub const DEFAULT_OPERATOR: &str = "admin-api";
