//! The booking example of sagaflow, as a library.
//!
//! One saga ([`saga::Booking`]: create an order, then take the payment, the pivot; a refused
//! payment cancels the order), served by the orchestrator's `pb.BookingService`
//! ([`service::BookingApi`]: its three RPCs are the three modes), with the two upstream
//! services it calls ([`order::OrderSvc`], [`payment::PaymentSvc`], in memory, idempotent per
//! `x-idempotency-key`, with a [`upstream::LoadGate`] to behave like overloaded pods).
//! [`app`] holds the flags and starts the roles a process runs.
//!
//! The binary is the root package's example, a thin `main` over [`run`]:
//!
//! ```sh
//! cargo run --example booking
//! grpcurl -plaintext localhost:10000 list
//! grpcurl -rpc-header x-request-id:req-1 -plaintext -d '{"ProductID": "1", "FaultInject": "false"}' \
//!     localhost:10000 pb.BookingService/HandleSyncBooking
//! ```
//!
//! Flags switch to RabbitMQ or NATS and Redis and run one role per process
//! (`cargo run --example booking -- --help`). Tests start the same code in-process with
//! [`app::start`] and drive it over the network.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod app;
pub mod ledger;
pub mod order;
pub mod payment;
pub mod saga;
pub mod service;
pub mod telemetry;
pub mod upstream;

use std::error::Error;

pub use app::{App, Options, start};
pub use sagaflow::config::ConfigError;

/// Logs to stdout with the `RUST_LOG` filter (`info` when unset). With `--otlp-endpoint`,
/// call [`telemetry::init_otel`] instead (feature `otel` of the root package).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// Starts what `options` say (see [`app::start`]) and runs until SIGINT/SIGTERM, then stops
/// the servers and drains the saga consumers: the example binary's whole life.
pub async fn run(options: Options) -> Result<(), Box<dyn Error>> {
    start(options).await?.wait().await
}
