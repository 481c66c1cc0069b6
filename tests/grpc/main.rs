//! The tonic glue (feature `grpc`) and the booking example's upstream services, over real
//! servers on ephemeral loopback ports. One test binary, a module per concern:
//!
//! - [`glue`]: trace ids and their policies, the saga context, outgoing metadata (trace id and
//!   idempotency key), the `Status` mapping both ways, reflection and health;
//! - [`server`]: `GrpcServer` with the user's tonic builder, its routes on the user's own
//!   server, graceful shutdown;
//! - [`upstream`]: the example's Order and Payment services and their load gate (the
//!   `booking` crate).
//!
//! [`support`] holds the waits, the request helpers and a stand-in `BookingService`.
#![cfg(feature = "grpc")]

mod glue;
mod server;
mod support;
mod upstream;
