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
//! (`cargo run --example booking -- --help`). The code lives in the `booking` crate
//! (`examples/booking/`), which the tests and benches use as a library.

use clap::Parser;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    booking::init_logging();
    booking::run(booking::Options::parse()).await
}
