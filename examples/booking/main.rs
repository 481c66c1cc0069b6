//! The booking example: an Order service, a Payment service and the saga orchestrator's
//! `pb.BookingService` on port 10000, in one process with the in-memory transport and store.
//!
//! ```sh
//! cargo run --example booking
//! grpcurl -plaintext localhost:10000 list
//! grpcurl -rpc-header x-request-id:req-1 -plaintext -d '{"ProductID": "1", "FaultInject": "false"}' \
//!     localhost:10000 pb.BookingService/HandleSyncBooking
//! ```
//!
//! Flags switch to RabbitMQ or NATS and Redis and run one role per process
//! (`cargo run --example booking -- --help`).

mod app;
mod ledger;
mod order;
mod payment;
mod saga;
mod service;
mod upstream;

use clap::Parser;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let options = app::Options::parse();
    let app = app::start(options).await?;
    app.wait().await
}
