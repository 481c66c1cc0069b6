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
//! (`cargo run --example booking -- --help`); `--metrics-addr 127.0.0.1:9100` serves
//! Prometheus metrics on `/metrics`, and with `--features otel`, `--otlp-endpoint` exports
//! spans. The code lives in the `booking` crate
//! (`examples/booking/`), which the tests and benches use as a library.

/// jemalloc with its background purging threads rather than glibc's malloc: once a load's
/// sagas ended their memory goes back to the system within seconds (with glibc's malloc the
/// peak stayed resident: 20k sagas in flight left ~520 MiB behind, jemalloc ~40 MiB; see
/// `cargo bench --bench inflight_memory` and the README's figures).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = match booking::Options::load() {
        Ok(options) => options,
        Err(booking::ConfigError::Cli(error)) => error.exit(),
        Err(error) => return Err(error.into()),
    };
    if options.print_config {
        print!("{}", options.printout());
        return Ok(());
    }
    // Spans over OTLP: `cargo run --example booking --features otel -- --otlp-endpoint
    // http://127.0.0.1:4317` (the guard flushes the last spans when main returns).
    #[cfg(feature = "otel")]
    let _otel = match options.otlp_endpoint.as_deref() {
        Some(endpoint) => Some(sagaflow::otel::init(endpoint, "booking")?),
        None => {
            booking::init_logging();
            None
        }
    };
    #[cfg(not(feature = "otel"))]
    {
        if options.otlp_endpoint.is_some() {
            return Err("--otlp-endpoint needs a build with `--features otel`".into());
        }
        booking::init_logging();
    }
    booking::run(options).await
}
