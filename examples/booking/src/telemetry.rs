//! The example's telemetry: Prometheus metrics on an admin HTTP port (`--metrics-addr`); spans
//! over OTLP are set up by the binary (`examples/booking.rs`, feature `otel`).

use std::error::Error;
use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use sagaflow::observe::metrics::{TRANSITION_BUCKETS, TRANSITION_DURATION, describe};

/// Installs the Prometheus exporter as the process's metrics recorder and serves
/// `http://{addr}/metrics` from the current Tokio runtime. Call it before building any
/// orchestrator, once per process. Transition latencies are real histograms
/// ([`TRANSITION_BUCKETS`]).
pub fn serve_metrics(addr: SocketAddr) -> Result<(), Box<dyn Error>> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full(TRANSITION_DURATION.to_string()),
            TRANSITION_BUCKETS,
        )?
        .install()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    describe();
    Ok(())
}
