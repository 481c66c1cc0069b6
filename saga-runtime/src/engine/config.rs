//! [`OrchestratorConfig`]: how an [`Orchestrator`](super::Orchestrator) routes, caps, waits,
//! leases and recovers.
//!
//! Durations deserialize from human-readable strings (`"5s"`, `"250ms"`, `"2m"`).

use std::time::Duration;

use serde::Deserialize;

use crate::RetryPolicy;

/// Where the sync mode runs compensations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rollback {
    /// In the caller's task, before the call returns (the default: the caller learns that
    /// every compensation finished, and no broker is needed).
    #[default]
    Inline,
    /// On the saga's rollback topic, by whichever replica takes the message (the Go
    /// framework's behaviour); the caller gets [`SagaError::RollbackQueued`](crate::SagaError)
    /// at once and the outcome lands in the store.
    Queued,
}

/// Which topics carry a throttled saga.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// The saga's shared step topics: any replica may run the steps; the waiting replica learns
    /// of the end through the store's watcher (needs a shared store such as Redis when there
    /// is more than one replica).
    #[default]
    Shared,
    /// Topics suffixed with this pod's id (`{topic}.{pod_id}`), consumed only by this replica,
    /// so an in-process store is enough to learn of the end.
    PodAffine,
}

/// Settings of an [`Orchestrator`](super::Orchestrator).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrchestratorConfig {
    /// This replica's id (used by [`Routing::PodAffine`], in owner tokens and in log lines).
    pub pod_id: String,
    /// Where the sync mode compensates.
    pub sync_rollback: Rollback,
    /// Which topics carry throttled sagas.
    pub throttled_routing: Routing,
    /// The most step or compensation executions this replica runs at once for this saga,
    /// across all of its topics; `None` for no cap beyond the per-topic ones.
    pub max_concurrent_steps: Option<usize>,
    /// The most throttled callers this replica lets wait at once; one more is refused at
    /// once with [`SagaError::Rejected`](crate::SagaError::Rejected) (gRPC
    /// `ResourceExhausted`) before anything starts, so an overload burst cannot pile up
    /// unbounded waiting requests. `None`: no bound.
    pub max_waiting: Option<usize>,
    /// How long a replica's custody of a running saga lasts without renewal. The replica
    /// renews it every third of this while a transition runs; when the replica dies, the
    /// saga is recovered by any replica's sweeper once this has passed. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often each replica's recovery sweeper looks for sagas whose custody lapsed; `None`
    /// turns recovery off on this replica. A saga whose replica died settles within `lease`
    /// plus this. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Option<Duration>,
    /// How long a saga's next message may wait on the broker before the sweeper publishes it
    /// again (the publisher may have died between recording the transition and publishing).
    /// Keep it above the longest backlog a topic may hold: a message that was only slow then
    /// arrives twice, and the second copy is fenced off (NATS drops it already, by message
    /// id). Default 30 s.
    #[serde(with = "humantime_serde")]
    pub requeue_after: Duration,
    /// The retry policy of every compensation. Default [`RetryPolicy::COMPENSATION`].
    pub compensation_retry: RetryPolicy,
    /// How long a throttled caller without a deadline waits for the outcome.
    #[serde(with = "humantime_serde")]
    pub default_wait: Duration,
    /// How long a nacked message waits before redelivery when the store or the broker failed
    /// (doubling with each redelivery, up to `lease`).
    #[serde(with = "humantime_serde")]
    pub redelivery_delay: Duration,
    /// How long consumers may take to finish in-flight messages on shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            pod_id: "pod-0".to_string(),
            sync_rollback: Rollback::Inline,
            throttled_routing: Routing::Shared,
            max_concurrent_steps: None,
            max_waiting: None,
            lease: Duration::from_secs(5),
            sweep_interval: Some(Duration::from_secs(1)),
            requeue_after: Duration::from_secs(30),
            compensation_retry: RetryPolicy::COMPENSATION,
            default_wait: Duration::from_secs(30),
            redelivery_delay: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
