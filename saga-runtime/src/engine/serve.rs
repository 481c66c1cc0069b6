//! What a replica runs for a saga: a consumer per topic and the recovery sweeper.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tower::Layer;
use tracing::info;

use super::config::Routing;
use super::consumer::ConsumerService;
use super::runtime::Runtime;
use super::sweeper;
use super::topics::all_topics;
use crate::Saga;
use crate::observe::ObservedHandler;
use crate::transport::{
    Delivery, Disposition, Liveness, ServiceHandler, SubscribeOptions, Subscription, TransportError,
};

/// Subscribes to every topic of saga `S` for this replica, each consumer wrapped in `layer`,
/// and starts its sweeper.
pub(super) async fn serve<S, L>(
    rt: &Arc<Runtime<S>>,
    layer: &L,
) -> Result<Consumers, TransportError>
where
    S: Saga,
    L: Layer<ConsumerService<S>>,
    L::Service: tower::Service<Delivery, Response = Disposition> + Clone + Send + Sync + 'static,
    <L::Service as tower::Service<Delivery>>::Error: fmt::Display + Send,
    <L::Service as tower::Service<Delivery>>::Future: Send,
{
    let name = S::description().name;
    let pod = rt.config.pod_id.clone();
    let mut routes: Vec<(Option<String>, String)> = vec![(None, name.to_string())];
    if rt.config.throttled_routing == Routing::PodAffine {
        routes.push((Some(pod.clone()), format!("{name}.{pod}")));
    }
    let mut subscriptions = Vec::new();
    for (route, group) in routes {
        for topic in all_topics::<S>(route.as_deref()) {
            let options = SubscribeOptions {
                group: group.clone(),
                concurrency: rt.transport.config().concurrency_for(&topic),
            };
            let service = layer.layer(ConsumerService::new(Arc::clone(rt), &topic));
            let handler = ServiceHandler::new(service, rt.config.redelivery_delay);
            let handler = Arc::new(ObservedHandler::new(handler, Arc::clone(&rt.observe), name));
            let subscription = rt.transport.subscribe(&topic, options, handler).await;
            let subscription =
                subscription.inspect_err(|_| rt.observe.metrics.subscribe_errors.increment(1))?;
            subscriptions.push(subscription);
        }
    }
    let stop = CancellationToken::new();
    let recoveries = TaskTracker::new();
    let alive = Arc::new(());
    let sweeper_liveness = match rt.config.sweep_interval {
        Some(_) => Liveness::of(&alive),
        None => Liveness::unknown(),
    };
    let sweep = sweeper::run(Arc::clone(rt), stop.clone(), recoveries.clone());
    let sweeper = tokio::spawn(async move {
        let _alive = alive;
        sweep.await;
    });
    info!(
        saga = name, pod = %pod, topics = subscriptions.len(),
        sweep_interval = ?rt.config.sweep_interval, lease = ?rt.config.lease,
        "saga consumers and recovery sweeper running"
    );
    Ok(Consumers {
        subscriptions,
        sweeper_liveness,
        grace: rt.config.shutdown_grace,
        _stop_on_drop: stop.clone().drop_guard(),
        stop,
        sweeper,
        recoveries,
    })
}

/// The running consumers and recovery sweeper of one orchestrator on this replica.
///
/// Keep it alive for as long as the replica serves the saga: dropping it stops the consumers
/// at once (as [`Consumers::abort`]), and no async saga runs on this replica any more.
#[derive(Debug)]
#[must_use = "dropping `Consumers` stops the saga's consumers and sweeper at once; keep it alive and call `shutdown` when the replica stops"]
pub struct Consumers {
    subscriptions: Vec<Subscription>,
    sweeper_liveness: Liveness,
    grace: Duration,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
    sweeper: tokio::task::JoinHandle<()>,
    recoveries: TaskTracker,
}

impl Consumers {
    /// A handle that tells whether these consumers still run, without holding them (for a
    /// [`HealthMonitor`](crate::observe::HealthMonitor)).
    pub fn probe(&self) -> ConsumersProbe {
        ConsumersProbe {
            stop: self.stop.clone(),
            subscriptions: self
                .subscriptions
                .iter()
                .map(Subscription::liveness)
                .collect(),
            sweeper: self.sweeper_liveness.clone(),
        }
    }

    /// Stops the sweeper, stops taking messages and lets in-flight ones (and sync sagas being
    /// recovered) finish within the configured grace; returns how many deliveries were still
    /// in flight when it gave up (they will be redelivered; unfinished recoveries are resumed
    /// by another replica once their lease lapses).
    pub async fn shutdown(self) -> usize {
        self.stop.cancel();
        let grace = self.grace;
        let mut left = 0;
        for subscription in self.subscriptions {
            left += subscription.shutdown(grace).await;
        }
        self.recoveries.close();
        let _ = tokio::time::timeout(grace, self.recoveries.wait()).await;
        let _ = self.sweeper.await;
        left
    }

    /// Stops at once, as a crash would: in-flight messages are not acked and get redelivered;
    /// the sweeper stops.
    pub fn abort(self) {
        self.stop.cancel();
        self.sweeper.abort();
        for subscription in self.subscriptions {
            subscription.abort();
        }
    }
}

/// Whether a replica's [`Consumers`] still run: not shut down, aborted or dropped, every
/// subscription still consuming and the recovery sweeper (if on) still sweeping. Cheap to
/// clone; it never keeps the consumers alive.
#[derive(Clone, Debug)]
pub struct ConsumersProbe {
    stop: CancellationToken,
    subscriptions: Vec<Liveness>,
    sweeper: Liveness,
}

impl ConsumersProbe {
    /// `Ok` while they run; otherwise what stopped.
    pub fn check(&self) -> Result<(), String> {
        if self.stop.is_cancelled() {
            return Err("the saga consumers were stopped".to_string());
        }
        let stopped = self.subscriptions.iter().filter(|s| !s.is_alive()).count();
        if stopped > 0 {
            return Err(format!(
                "{stopped} of {} saga topic subscriptions stopped consuming",
                self.subscriptions.len()
            ));
        }
        if !self.sweeper.is_alive() {
            return Err("the recovery sweeper stopped".to_string());
        }
        Ok(())
    }
}
