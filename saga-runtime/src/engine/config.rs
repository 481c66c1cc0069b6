//! [`OrchestratorConfig`]: how an [`Orchestrator`](super::Orchestrator) routes, caps and waits.

use std::time::Duration;

use serde::Deserialize;

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
#[serde(default)]
pub struct OrchestratorConfig {
    /// This replica's id (used by [`Routing::PodAffine`] and in log lines).
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
    /// How long a saga may sit at its first step, with no progress recorded, before a start
    /// with the same trace id and input claims it and starts it again. Covers a replica that
    /// died between recording a saga and publishing its first message. Keep it well above the
    /// time a first message can wait in a backlog plus the first step's retries: a saga that
    /// was only slow then runs its first step twice (which idempotent steps tolerate). `None`:
    /// never.
    pub redrive_after: Option<Duration>,
    /// How long a throttled caller without a deadline waits for the outcome.
    pub default_wait: Duration,
    /// How long a nacked message waits before redelivery (publish or store failed).
    pub redelivery_delay: Duration,
    /// How long consumers may take to finish in-flight messages on shutdown.
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
            redrive_after: Some(Duration::from_secs(300)),
            default_wait: Duration::from_secs(30),
            redelivery_delay: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
