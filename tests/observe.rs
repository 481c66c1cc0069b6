//! Observability, for real: the span tree of a saga across two replicas and the W3C trace
//! context through the broker (`spans`), the Prometheus `/metrics` of a run adding up
//! (`metrics`), and the gRPC health status flipping when a private broker or store dies and
//! comes back (`health`).
#![cfg(all(
    feature = "rabbitmq",
    feature = "nats",
    feature = "redis",
    feature = "grpc"
))]

mod common;

#[path = "observe/health.rs"]
mod health;
#[path = "observe/metrics.rs"]
mod metrics;
#[path = "observe/spans.rs"]
mod spans;
