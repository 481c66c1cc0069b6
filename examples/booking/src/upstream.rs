//! What the example's upstream services share: [`LoadGate`], which counts concurrent calls
//! (now and at most), can add latency, and can refuse calls beyond a capacity, to reproduce
//! an overloaded upstream (the Go framework's load-test headline).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use booking_proto::upstream::LoadStats;
use tonic::Status;

/// How an upstream service behaves under load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadConfig {
    /// Artificial latency added to every gated call (zero: none).
    pub latency: Duration,
    /// Most concurrent gated calls; further calls fail at once with `Unavailable`, as a pod
    /// killed by its memory limit would (`None`: unlimited).
    pub capacity: Option<u64>,
}

/// Counts the concurrent calls of one service and applies its [`LoadConfig`].
#[derive(Debug, Default)]
pub struct LoadGate {
    service: &'static str,
    config: LoadConfig,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    calls: AtomicU64,
    rejected: AtomicU64,
}

impl LoadGate {
    /// A gate for `service` (named in error messages) behaving per `config`.
    pub fn new(service: &'static str, config: LoadConfig) -> Self {
        Self {
            service,
            config,
            ..Self::default()
        }
    }

    /// Runs `call` as one in-flight call: refused with `Unavailable` when the capacity is
    /// reached, else counted (until it ends or is cancelled) and delayed by the latency.
    pub async fn run<T>(&self, call: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let capacity = self.config.capacity.unwrap_or(u64::MAX);
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now < capacity).then_some(now + 1)
            });
        let now = match admitted {
            Ok(before) => before + 1,
            Err(now) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(Status::unavailable(format!(
                    "{} is overloaded: {now} calls in flight, capacity {capacity}; retry later",
                    self.service
                )));
            }
        };
        let _guard = InFlight(self);
        self.max_in_flight.fetch_max(now, Ordering::AcqRel);
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        call.await
    }

    /// The figures since start or the last reset; `reset` zeroes the maximum and counters
    /// (the maximum restarts from the calls in flight now).
    pub fn stats(&self, reset: bool) -> LoadStats {
        let in_flight = self.in_flight.load(Ordering::Acquire);
        if reset {
            LoadStats {
                in_flight,
                max_in_flight: self.max_in_flight.swap(in_flight, Ordering::AcqRel),
                calls: self.calls.swap(0, Ordering::AcqRel),
                rejected: self.rejected.swap(0, Ordering::AcqRel),
            }
        } else {
            LoadStats {
                in_flight,
                max_in_flight: self.max_in_flight.load(Ordering::Acquire),
                calls: self.calls.load(Ordering::Acquire),
                rejected: self.rejected.load(Ordering::Acquire),
            }
        }
    }
}

/// Decrements the in-flight count when a call ends, even when its future is dropped.
struct InFlight<'a>(&'a LoadGate);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The `x-idempotency-key` of a request, if it has a non-empty visible-ASCII one.
pub fn idempotency_key<T>(request: &tonic::Request<T>) -> Option<String> {
    request
        .metadata()
        .get(sagaflow::grpc::IDEMPOTENCY_KEY_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
}

/// Locks `mutex`, turning a poisoned lock (a panic elsewhere) into `Internal`.
pub fn lock<'a, T>(
    mutex: &'a std::sync::Mutex<T>,
    service: &str,
) -> Result<std::sync::MutexGuard<'a, T>, Status> {
    mutex.lock().map_err(|_| {
        Status::internal(format!(
            "{service}: state lock poisoned; restart the service"
        ))
    })
}
