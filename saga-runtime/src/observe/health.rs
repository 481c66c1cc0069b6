//! [`HealthMonitor`]: is this replica able to run sagas? It probes the store and the broker
//! ([`SagaStore::ping`], [`Transport::ping`]) and checks that the consumers still run, every
//! interval, and publishes the result as a [`HealthWatch`]. The gRPC server turns it into
//! the standard health status (`GrpcServer::health`, feature `grpc`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::metrics;
use crate::engine::ConsumersProbe;
use crate::error::Report;
use crate::store::SagaStore;
use crate::transport::Transport;

/// What a probe of one component found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// It answered.
    Up,
    /// It did not, for this reason (an error chain, or a timeout).
    Down(String),
}

impl Probe {
    /// True for [`Probe::Up`].
    pub fn is_up(&self) -> bool {
        matches!(self, Probe::Up)
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Up => f.write_str("up"),
            Probe::Down(reason) => write!(f, "down: {reason}"),
        }
    }
}

/// The health of a replica: its saga store, its broker and its consumers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The saga store.
    pub store: Probe,
    /// The message broker.
    pub broker: Probe,
    /// The consumers and recovery sweepers the monitor watches ([`Probe::Up`] when it
    /// watches none).
    pub consumers: Probe,
}

impl Health {
    /// True when every component is up: the replica can take requests.
    pub fn is_serving(&self) -> bool {
        self.store.is_up() && self.broker.is_up() && self.consumers.is_up()
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "store {}, broker {}, consumers {}",
            self.store, self.broker, self.consumers
        )
    }
}

/// Probes a replica's store, broker and consumers every [`interval`](Self::interval).
///
/// ```no_run
/// # async fn run(orchestrator: saga_runtime::engine::Orchestrator<impl saga_runtime::Saga>) {
/// use std::time::Duration;
/// let consumers = orchestrator.serve().await.expect("consumers");
/// let health = orchestrator
///     .health_monitor()
///     .watch_consumers(&consumers)
///     .interval(Duration::from_secs(1))
///     .start()
///     .await;
/// println!("{}", health.current());
/// # }
/// ```
#[derive(Clone)]
pub struct HealthMonitor {
    store: Arc<dyn SagaStore>,
    transport: Arc<dyn Transport>,
    consumers: Vec<ConsumersProbe>,
    interval: Duration,
    timeout: Duration,
}

impl fmt::Debug for HealthMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthMonitor")
            .field("store", &self.store)
            .field("transport", &self.transport)
            .field("consumers", &self.consumers.len())
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HealthMonitor {
    /// A monitor of `store` and `transport`, probing every 2 s, each probe bounded by 2 s.
    pub fn new(store: Arc<dyn SagaStore>, transport: Arc<dyn Transport>) -> Self {
        Self {
            store,
            transport,
            consumers: Vec::new(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
        }
    }

    /// Also reports NOT serving when these consumers (or their sweeper) stopped: shut down,
    /// aborted, dropped, or their task died. Call it once per orchestrator served.
    pub fn watch_consumers(mut self, consumers: &crate::engine::Consumers) -> Self {
        self.consumers.push(consumers.probe());
        self
    }

    /// How often to probe (at least 10 ms). Default 2 s.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How long a probe may take before its component counts as down. Default 2 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Probes every component once (store and broker at the same time).
    pub async fn check(&self) -> Health {
        let timeout = self.timeout;
        let store = async {
            match tokio::time::timeout(timeout, self.store.ping()).await {
                Ok(Ok(())) => Probe::Up,
                Ok(Err(error)) => Probe::Down(Report(&error).to_string()),
                Err(_) => Probe::Down(format!("the saga store did not answer within {timeout:?}")),
            }
        };
        let broker = async {
            let outcome = match tokio::time::timeout(timeout, self.transport.ping()).await {
                Ok(Ok(())) => return Probe::Up,
                Ok(Err(error)) => Report(&error).to_string(),
                Err(_) => format!("the message broker did not answer within {timeout:?}"),
            };
            metrics::broker_ping_error(self.transport.backend());
            Probe::Down(outcome)
        };
        let (store, broker) = tokio::join!(store, broker);
        let consumers = self
            .consumers
            .iter()
            .find_map(|probe| probe.check().err())
            .map_or(Probe::Up, Probe::Down);
        let health = Health {
            store,
            broker,
            consumers,
        };
        metrics::health_up("store", health.store.is_up());
        metrics::health_up("broker", health.broker.is_up());
        metrics::health_up("consumers", health.consumers.is_up());
        health
    }

    /// Probes once, then every interval on a task of its own, until every clone of the
    /// returned watch is dropped. Changes are logged (a warning when a component goes down).
    pub async fn start(self) -> HealthWatch {
        let first = self.check().await;
        log_change(None, &first);
        let (sender, receiver) = watch::channel(first);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = sender.closed() => return,
                    () = tokio::time::sleep(self.interval) => {}
                }
                let health = self.check().await;
                sender.send_if_modified(|current| {
                    if *current == health {
                        return false;
                    }
                    log_change(Some(current), &health);
                    *current = health;
                    true
                });
            }
        });
        HealthWatch {
            receiver,
            _task: Arc::new(AbortOnDrop(task)),
        }
    }
}

fn log_change(before: Option<&Health>, now: &Health) {
    let was_serving = before.is_none_or(Health::is_serving);
    if now.is_serving() && !was_serving {
        info!(health = %now, "replica healthy again: serving");
    } else if !now.is_serving() {
        warn!(health = %now, "replica unhealthy: not serving");
    }
}

/// The latest [`Health`] of a running [`HealthMonitor`]. Cheap to clone; the monitor stops
/// when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct HealthWatch {
    receiver: watch::Receiver<Health>,
    _task: Arc<AbortOnDrop>,
}

impl HealthWatch {
    /// The health found by the latest probe.
    pub fn current(&self) -> Health {
        self.receiver.borrow().clone()
    }

    /// Waits until the health differs from the last one this watch saw, and returns it;
    /// `None` if the monitor stopped.
    pub async fn changed(&mut self) -> Option<Health> {
        self.receiver.changed().await.ok()?;
        Some(self.receiver.borrow_and_update().clone())
    }
}

/// Aborts the monitor's task when the last watch goes.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
