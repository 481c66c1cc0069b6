//! Protocol buffers of the sagaflow booking example, generated at build time with protox and
//! tonic-prost-build (no system `protoc` needed).
//!
//! - [`pb`]: the orchestrator's `pb.BookingService` (the Go framework's field names, so its
//!   JSON requests work unchanged);
//! - [`order`] and [`payment`]: the upstream services the saga calls (create, cancel by trace
//!   id, get);
//! - [`upstream`]: messages both upstream services share (load figures);
//! - [`FILE_DESCRIPTOR_SET`]: every file above, encoded, for server reflection.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

/// Package `pb`: `BookingService` and its messages.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("pb");
}

/// Package `order`: `OrderService` and its messages.
#[allow(missing_docs, clippy::all)]
pub mod order {
    tonic::include_proto!("order");
}

/// Package `payment`: `PaymentService` and its messages.
#[allow(missing_docs, clippy::all)]
pub mod payment {
    tonic::include_proto!("payment");
}

/// Package `upstream`: messages shared by the upstream services.
#[allow(missing_docs, clippy::all)]
pub mod upstream {
    tonic::include_proto!("upstream");
}

/// The encoded `FileDescriptorSet` of every proto file of this crate (imports included), to
/// register with server reflection so `grpcurl list` and `describe` work without the files.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/booking_descriptor.bin"));
