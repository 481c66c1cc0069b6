//! Every former loop ends, visibly: a panicking step, a panicking completion hook, a next state
//! too large for the broker, a saga whose record vanished, and a step longer than the NATS ack
//! wait (which must run once, not be redelivered while it runs).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::backends::{Backend, Backends};
use sagaflow::engine::{Orchestrator, OrchestratorBuilder, OrchestratorConfig, step_topic};
use sagaflow::transport::{
    DEAD_LETTER_REASON_HEADER, Delivery, Disposition, SubscribeOptions, Subscription,
    dead_letter_topic,
};
use sagaflow::{RetryPolicy, SagaContext, SagaError, StepResult, saga};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

const WAIT: Duration = Duration::from_secs(20);

/// What `grow` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Behaviour {
    Fine = 0,
    Panic = 1,
    Huge = 2,
    /// Sleeps `SLOW` before it returns.
    Slow = 3,
    /// Waits for `Probe::release`.
    Parked = 4,
}

const SLOW: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Probe {
    behaviour: AtomicU8,
    grow_calls: AtomicU32,
    finish_calls: AtomicU32,
    hooks: AtomicUsize,
    entered: Notify,
    release: Notify,
}

impl Probe {
    fn set(&self, behaviour: Behaviour) {
        self.behaviour.store(behaviour as u8, Ordering::SeqCst);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Seed {
    size: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Blob {
    data: String,
}

struct Grower {
    probe: Arc<Probe>,
}

#[saga]
impl Grower {
    #[step(compensate = shrink, retry(max_attempts = 2, initial_backoff_ms = 1, max_backoff_ms = 2))]
    async fn grow(&self, _cx: &SagaContext, seed: &Seed) -> StepResult<Blob> {
        self.probe.grow_calls.fetch_add(1, Ordering::SeqCst);
        match self.probe.behaviour.load(Ordering::SeqCst) {
            1 => panic!("boom in grow"),
            2 => Ok(Blob {
                data: "x".repeat(seed.size),
            }),
            3 => {
                tokio::time::sleep(SLOW).await;
                Ok(Blob {
                    data: "slow".into(),
                })
            }
            4 => {
                self.probe.entered.notify_one();
                self.probe.release.notified().await;
                Ok(Blob {
                    data: "parked".into(),
                })
            }
            _ => Ok(Blob { data: "ok".into() }),
        }
    }
    async fn shrink(&self, _cx: &SagaContext, _grow: &Blob) -> StepResult<()> {
        Ok(())
    }

    #[step(pivot)]
    async fn finish(&self, _cx: &SagaContext, grow: &Blob) -> StepResult<usize> {
        self.probe.finish_calls.fetch_add(1, Ordering::SeqCst);
        Ok(grow.data.len())
    }
}

fn config() -> OrchestratorConfig {
    OrchestratorConfig {
        redelivery_delay: Duration::from_millis(50),
        compensation_retry: RetryPolicy::new(2, Duration::from_millis(1), Duration::from_millis(2)),
        ..OrchestratorConfig::default()
    }
}

fn orchestrator(backends: &Backends, probe: &Arc<Probe>) -> Orchestrator<Grower> {
    builder(backends, probe).build()
}

fn builder(backends: &Backends, probe: &Arc<Probe>) -> OrchestratorBuilder<Grower> {
    let saga = Arc::new(Grower {
        probe: Arc::clone(probe),
    });
    Orchestrator::builder(
        saga,
        Arc::clone(&backends.transport),
        Arc::clone(&backends.store),
    )
    .config(config())
}

fn cx(id: &str) -> SagaContext {
    SagaContext::new("Grower", id).with_deadline(Some(Instant::now() + WAIT))
}

async fn dead_letters(
    backends: &Backends,
    topic: &str,
) -> (Subscription, mpsc::UnboundedReceiver<Delivery>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = Arc::new(move |delivery: Delivery| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(delivery);
            Disposition::Ack
        }
    });
    let options = SubscribeOptions {
        group: "Grower".into(),
        concurrency: 1,
    };
    let subscription = backends
        .transport
        .subscribe(topic, options, handler)
        .await
        .expect("dead-letter subscription");
    (subscription, rx)
}

async fn next_reason(rx: &mut mpsc::UnboundedReceiver<Delivery>) -> String {
    let letter = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a dead letter arrives")
        .expect("open");
    letter
        .headers
        .get(DEAD_LETTER_REASON_HEADER)
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_step_counts_as_a_failure_and_the_saga_compensates() {
    let backends = Backends::connect(Backend::Memory, "bounded-panic").await;
    let probe = Arc::new(Probe::default());
    probe.set(Behaviour::Panic);
    let orchestrator = orchestrator(&backends, &probe);
    let consumers = orchestrator.serve().await.expect("serve");
    let error = orchestrator
        .run_throttled(&cx("panic"), Seed { size: 1 })
        .await
        .expect_err("grow panics every time");
    match &error {
        SagaError::Compensated { step, error, .. } => {
            assert_eq!(step, "grow");
            assert!(error.message().contains("boom in grow"), "{error}");
        }
        other => panic!("expected Compensated, got {other:?}"),
    }
    assert_eq!(
        probe.grow_calls.load(Ordering::SeqCst),
        2,
        "bounded by the step's policy"
    );
    // The consumer survived: the next saga runs.
    probe.set(Behaviour::Fine);
    let len = orchestrator
        .run_throttled(&cx("after-panic"), Seed { size: 1 })
        .await
        .expect("completes");
    assert_eq!(len, 2);
    consumers.shutdown().await;
    backends.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_completion_hook_is_caught_and_called_once() {
    let backends = Backends::connect(Backend::Memory, "bounded-hook").await;
    let probe = Arc::new(Probe::default());
    let hooked = Arc::clone(&probe);
    let orchestrator = builder(&backends, &probe)
        .on_complete(move |_| {
            let hooked = Arc::clone(&hooked);
            async move {
                hooked.hooks.fetch_add(1, Ordering::SeqCst);
                panic!("boom in the hook");
            }
        })
        .build();
    let consumers = orchestrator.serve().await.expect("serve");
    for id in ["hook-1", "hook-2"] {
        let len = orchestrator
            .run_throttled(&cx(id), Seed { size: 1 })
            .await
            .expect("completes despite the hook");
        assert_eq!(len, 2);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        probe.hooks.load(Ordering::SeqCst),
        2,
        "once per saga, never redelivered"
    );
    assert_eq!(probe.finish_calls.load(Ordering::SeqCst), 2);
    consumers.shutdown().await;
    backends.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_state_over_the_payload_limit_ends_the_saga_stuck_and_dead_lettered() {
    let backends = Backends::connect_with(Backend::Memory, "bounded-huge", |config| {
        config.max_payload = 64 * 1024;
    })
    .await;
    let probe = Arc::new(Probe::default());
    probe.set(Behaviour::Huge);
    let orchestrator = orchestrator(&backends, &probe);
    let topic = step_topic::<Grower>(0, None).expect("topic");
    let (dead, mut dead_rx) = dead_letters(&backends, &dead_letter_topic(&topic)).await;
    let consumers = orchestrator.serve().await.expect("serve");
    let error = orchestrator
        .run_throttled(&cx("huge"), Seed { size: 100 * 1024 })
        .await
        .expect_err("the next state cannot travel");
    assert!(
        matches!(error, SagaError::Stuck { .. }) && error.to_string().contains("max_payload"),
        "{error}"
    );
    let reason = next_reason(&mut dead_rx).await;
    assert!(reason.contains("max_payload"), "reason: {reason}");
    assert_eq!(probe.grow_calls.load(Ordering::SeqCst), 1, "never re-run");
    assert_eq!(probe.finish_calls.load(Ordering::SeqCst), 0);
    consumers.shutdown().await;
    dead.shutdown(Duration::from_secs(5)).await;
    backends.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_record_vanished_is_dead_lettered_not_retried_forever() {
    let backends = Backends::connect(Backend::Memory, "bounded-missing").await;
    let probe = Arc::new(Probe::default());
    probe.set(Behaviour::Parked);
    let orchestrator = orchestrator(&backends, &probe);
    let topic = step_topic::<Grower>(0, None).expect("topic");
    let (dead, mut dead_rx) = dead_letters(&backends, &dead_letter_topic(&topic)).await;
    let consumers = orchestrator.serve().await.expect("serve");
    orchestrator
        .start(&cx("vanished"), Seed { size: 1 })
        .await
        .expect("start");
    tokio::time::timeout(WAIT, probe.entered.notified())
        .await
        .expect("grow runs");
    // The record goes away mid-step (expired, removed, a memory store restarted).
    backends.store.remove("vanished").await.expect("remove");
    probe.release.notify_one();
    let reason = next_reason(&mut dead_rx).await;
    assert!(reason.contains("no saga record"), "reason: {reason}");
    assert_eq!(probe.grow_calls.load(Ordering::SeqCst), 1, "not re-run");
    assert_eq!(probe.finish_calls.load(Ordering::SeqCst), 0);
    consumers.shutdown().await;
    dead.shutdown(Duration::from_secs(5)).await;
    backends.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_longer_than_the_nats_ack_wait_runs_once() {
    // The ack wait is 1 s; the step takes 3 s. In-progress acks keep the delivery.
    let backends = Backends::connect_with(Backend::Nats, "bounded-slow", |config| {
        config.ack_wait = Duration::from_secs(1);
    })
    .await;
    let probe = Arc::new(Probe::default());
    probe.set(Behaviour::Slow);
    let orchestrator = orchestrator(&backends, &probe);
    let consumers = orchestrator.serve().await.expect("serve");
    let len = orchestrator
        .run_throttled(&cx("slow"), Seed { size: 1 })
        .await
        .expect("completes");
    assert_eq!(len, 4);
    assert_eq!(
        probe.grow_calls.load(Ordering::SeqCst),
        1,
        "the slow step ran once, not once per ack wait"
    );
    consumers.shutdown().await;
    backends.cleanup().await;
}
