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
    /// across all of its topics; `None` for no cap beyond the per-topic ones. A delivery takes
    /// a slot before it claims the saga and gives it back as soon as the step has run: the
    /// store write, the publish of the next state and the ack that follow do not hold it.
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
    ///
    /// This is the first wait: every time the sweeper publishes the same transition's message
    /// again, the next wait doubles (`requeue_after * 2^n` after the n-th re-publication since
    /// the saga's last transition, see [`SagaRecord::requeues`](crate::store::SagaRecord::requeues)),
    /// up to [`max_requeue_after`](Self::max_requeue_after), so a backlog older than this
    /// costs a few duplicates per saga rather than one every `requeue_after`.
    #[serde(with = "humantime_serde")]
    pub requeue_after: Duration,
    /// The longest the sweeper waits between two re-publications of one saga's message (the
    /// cap of the doubling after [`requeue_after`](Self::requeue_after)). `None` (the default)
    /// means 8 × `requeue_after` (4 min with the default `requeue_after`). A value below
    /// `requeue_after` counts as `requeue_after` (no backoff), with a warning when the
    /// orchestrator is built.
    #[serde(with = "humantime_serde")]
    pub max_requeue_after: Option<Duration>,
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
            max_requeue_after: None,
            compensation_retry: RetryPolicy::COMPENSATION,
            default_wait: Duration::from_secs(30),
            redelivery_delay: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl OrchestratorConfig {
    /// How long the sweeper leaves a saga's message on the broker after re-publishing it for
    /// the `requeues`-th time since the saga's last transition (0 for the first
    /// re-publication): [`requeue_after`](Self::requeue_after) `* 2^requeues`, at most
    /// [`max_requeue_after`](Self::max_requeue_after) (and never below `requeue_after`).
    pub fn requeue_delay(&self, requeues: u32) -> Duration {
        let cap = self.requeue_cap();
        // 2^31 and more overflow any cap anyway.
        self.requeue_after
            .checked_mul(1u32.checked_shl(requeues).unwrap_or(u32::MAX))
            .map_or(cap, |delay| delay.min(cap))
    }

    /// The cap of [`requeue_delay`](Self::requeue_delay): `max_requeue_after` (default 8 ×
    /// `requeue_after`), never below `requeue_after`.
    pub(crate) fn requeue_cap(&self) -> Duration {
        self.max_requeue_after
            .unwrap_or_else(|| self.requeue_after.saturating_mul(8))
            .max(self.requeue_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeue_delays_double_up_to_the_cap() {
        let config = OrchestratorConfig {
            requeue_after: Duration::from_secs(30),
            ..OrchestratorConfig::default()
        };
        let delays: Vec<u64> = (0..6).map(|n| config.requeue_delay(n).as_secs()).collect();
        assert_eq!(
            delays,
            [30, 60, 120, 240, 240, 240],
            "default cap: 8 x requeue_after"
        );
        assert_eq!(config.requeue_delay(u32::MAX), Duration::from_secs(240));
        let capped = OrchestratorConfig {
            max_requeue_after: Some(Duration::from_secs(90)),
            ..config.clone()
        };
        let delays: Vec<u64> = (0..4).map(|n| capped.requeue_delay(n).as_secs()).collect();
        assert_eq!(delays, [30, 60, 90, 90]);
        let below = OrchestratorConfig {
            max_requeue_after: Some(Duration::from_secs(1)),
            ..config
        };
        assert_eq!(
            below.requeue_delay(3),
            Duration::from_secs(30),
            "never below requeue_after"
        );
    }

    #[test]
    fn max_requeue_after_reads_from_a_config_file() {
        let config: OrchestratorConfig =
            serde_json::from_str(r#"{ "requeue_after": "10s", "max_requeue_after": "2m" }"#)
                .expect("config");
        assert_eq!(config.max_requeue_after, Some(Duration::from_secs(120)));
        let default: OrchestratorConfig = serde_json::from_str("{}").expect("config");
        assert_eq!(default.max_requeue_after, None);
        assert_eq!(default.requeue_delay(10), Duration::from_secs(240));
    }
}
