//! The standard gRPC health status driven by a [`HealthWatch`]: SERVING while the replica's
//! store, broker and consumers are up, NOT_SERVING otherwise.

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::observe::{Health, HealthWatch};

/// The gRPC status of `health`.
pub fn serving_status(health: &Health) -> ServingStatus {
    if health.is_serving() {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// Keeps the status of the server (`""`) and of every service in `services` at what `health`
/// says, until its monitor stops (or this future is dropped: [`GrpcServer`](super::GrpcServer)
/// drops it when it shuts down, then reports NOT_SERVING for good).
pub async fn report_health(
    reporter: HealthReporter,
    services: Vec<&'static str>,
    mut health: HealthWatch,
) {
    let mut current = Some(health.current());
    while let Some(now) = current {
        let status = serving_status(&now);
        reporter.set_service_status("", status).await;
        for name in &services {
            reporter.set_service_status(*name, status).await;
        }
        current = health.changed().await;
    }
}
