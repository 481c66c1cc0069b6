//! The three modes of one saga over each transport with its store: memory transport with the
//! memory store, RabbitMQ and NATS JetStream with the Redis store (real servers on 127.0.0.1).
#![cfg(all(feature = "rabbitmq", feature = "nats", feature = "redis"))]

#[macro_use]
mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::backends::{Backend, Backends};
use sagaflow::engine::{
    Envelope, FORMAT_VERSION, Orchestrator, OrchestratorBuilder, OrchestratorConfig, Rollback,
    Started,
};
use sagaflow::error::{Rejection, SagaFailure, StuckAt};
use sagaflow::store::{Custody, Mode, SagaRecord, SagaStatus, SagaStore, fingerprint};
use sagaflow::transport::{
    DEAD_LETTER_REASON_HEADER, Delivery, Disposition, Message, SubscribeOptions, Subscription,
    dead_letter_topic,
};
use sagaflow::{RetryPolicy, Saga, SagaContext, SagaError, StepError, StepResult, saga};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

/// What the test saga is asked to do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Trip {
    destination: String,
    /// Makes `pay` fail for good.
    fault: bool,
}

/// What the steps did, shared by every orchestrator instance of a test.
#[derive(Default)]
struct Probe {
    reserve_calls: AtomicU32,
    pay_calls: AtomicU32,
    release_calls: AtomicU32,
    refund_calls: AtomicU32,
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// The release compensation always fails.
    release_fails: AtomicBool,
    /// The next `reserve` call parks until `unpark` is notified (a consumer stopped mid-step).
    park_next_reserve: AtomicBool,
    parked: Notify,
    unpark: Notify,
    step_delay_ms: AtomicU32,
}

impl Probe {
    async fn enter(&self) -> Running<'_> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let delay = self.step_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(u64::from(delay))).await;
        }
        Running(self)
    }
}

/// Notifies `parked`, then waits until `unpark` is notified. It registers for `unpark` before
/// saying it is parked, so no wake-up is lost.
async fn park(parked: &Notify, unpark: &Notify) {
    let unpark = unpark.notified();
    tokio::pin!(unpark);
    unpark.as_mut().enable();
    parked.notify_one();
    unpark.await;
}

/// Counts a step execution as running until dropped.
struct Running<'a>(&'a Probe);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

struct TripSaga {
    probe: Arc<Probe>,
}

#[saga]
impl TripSaga {
    #[step(compensate = release, retry(max_attempts = 3, initial_backoff_ms = 5, max_backoff_ms = 20))]
    async fn reserve(&self, _cx: &SagaContext, trip: &Trip) -> StepResult<String> {
        let _running = self.probe.enter().await;
        self.probe.reserve_calls.fetch_add(1, Ordering::SeqCst);
        if self.probe.park_next_reserve.swap(false, Ordering::SeqCst) {
            park(&self.probe.parked, &self.probe.unpark).await;
        }
        Ok(format!("seat to {}", trip.destination))
    }
    async fn release(&self, _cx: &SagaContext, _reserve: &String) -> StepResult<()> {
        let _running = self.probe.enter().await;
        self.probe.release_calls.fetch_add(1, Ordering::SeqCst);
        if self.probe.release_fails.load(Ordering::SeqCst) {
            return Err(StepError::retryable("the seat service refuses to release"));
        }
        Ok(())
    }

    #[step(compensate = refund, retry(max_attempts = 2, initial_backoff_ms = 5, max_backoff_ms = 20))]
    async fn pay(&self, _cx: &SagaContext, trip: &Trip, reserve: &String) -> StepResult<Ticket> {
        let _running = self.probe.enter().await;
        self.probe.pay_calls.fetch_add(1, Ordering::SeqCst);
        if trip.fault {
            return Err(StepError::fatal("card declined (fault injected)"));
        }
        Ok(Ticket {
            seat: reserve.clone(),
            paid: 100,
        })
    }
    async fn refund(&self, _cx: &SagaContext, _pay: &Ticket) -> StepResult<()> {
        self.probe.refund_calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Ticket {
    seat: String,
    paid: u32,
}

const WAIT: Duration = Duration::from_secs(60);

fn cx(trace_id: &str) -> SagaContext {
    SagaContext::new(TripSaga::description().name, trace_id)
        .with_deadline(Some(Instant::now() + WAIT))
}

fn trip(fault: bool) -> Trip {
    Trip {
        destination: "Lisbon".to_string(),
        fault,
    }
}

/// An orchestrator over the test's broker and store, sharing `probe`.
fn orchestrator(
    backends: &Backends,
    probe: &Arc<Probe>,
    config: OrchestratorConfig,
) -> Orchestrator<TripSaga> {
    builder(backends, probe, config).build()
}

fn builder(
    backends: &Backends,
    probe: &Arc<Probe>,
    config: OrchestratorConfig,
) -> OrchestratorBuilder<TripSaga> {
    let saga = Arc::new(TripSaga {
        probe: Arc::clone(probe),
    });
    Orchestrator::builder(
        saga,
        Arc::clone(&backends.transport),
        Arc::clone(&backends.store),
    )
    .config(config)
}

fn quick_config() -> OrchestratorConfig {
    OrchestratorConfig {
        redelivery_delay: Duration::from_millis(50),
        compensation_retry: RetryPolicy::new(3, Duration::from_millis(1), Duration::from_millis(4)),
        ..OrchestratorConfig::default()
    }
}

fn assert_compensated_at_pay(error: &SagaError) {
    match error {
        SagaError::Compensated { step, error, .. } => {
            assert_eq!(step, "pay");
            assert!(error.message().contains("card declined"), "{error}");
        }
        other => panic!("expected Compensated at pay, got {other:?}"),
    }
}

async fn happy_and_fault_in_each_mode(backend: Backend) {
    let backends = Backends::connect(backend, "modes-each").await;
    let probe = Arc::new(Probe::default());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let orchestrator = builder(&backends, &probe, quick_config())
        .on_complete(move |completion| {
            let done_tx = done_tx.clone();
            async move {
                let _ = done_tx.send(completion);
            }
        })
        .build();
    let consumers = orchestrator.serve().await.expect("consumers start");

    // Sync.
    let ticket = orchestrator
        .run_sync(&cx("sync-ok"), trip(false))
        .await
        .expect("sync saga completes");
    assert_eq!(
        ticket,
        Ticket {
            seat: "seat to Lisbon".to_string(),
            paid: 100
        }
    );
    let error = orchestrator
        .run_sync(&cx("sync-fault"), trip(true))
        .await
        .expect_err("sync saga fails");
    assert_compensated_at_pay(&error);
    assert_eq!(
        probe.release_calls.load(Ordering::SeqCst),
        1,
        "sync: step 1 compensated exactly once"
    );

    // Async: start returns at once; the hook and the store get the outcome.
    assert_eq!(
        orchestrator
            .start(&cx("async-ok"), trip(false))
            .await
            .expect("async start"),
        Started::New
    );
    assert_eq!(
        orchestrator
            .start(&cx("async-fault"), trip(true))
            .await
            .expect("async start"),
        Started::New
    );
    let mut outcomes = std::collections::HashMap::new();
    while outcomes.len() < 2 {
        let completion = tokio::time::timeout(WAIT, done_rx.recv())
            .await
            .expect("hook called")
            .expect("hook open");
        outcomes.insert(completion.trace_id.clone(), completion.result);
    }
    assert_eq!(
        outcomes["async-ok"]
            .as_ref()
            .expect("async saga completes")
            .paid,
        100
    );
    assert_compensated_at_pay(
        outcomes["async-fault"]
            .as_ref()
            .expect_err("async saga fails"),
    );
    assert_eq!(
        probe.release_calls.load(Ordering::SeqCst),
        2,
        "async: step 1 compensated exactly once"
    );
    let record = backends
        .store
        .get("async-fault")
        .await
        .expect("store answers")
        .expect("record exists");
    assert!(
        matches!(
            record.status,
            SagaStatus::Failed {
                error: SagaFailure::Compensated { .. }
            }
        ),
        "{record:?}"
    );

    // Throttled: the caller waits; the work goes through the topics.
    let ticket = orchestrator
        .run_throttled(&cx("throttled-ok"), trip(false))
        .await
        .expect("throttled completes");
    assert_eq!(ticket.paid, 100);
    let error = orchestrator
        .run_throttled(&cx("throttled-fault"), trip(true))
        .await
        .expect_err("throttled fails");
    assert_compensated_at_pay(&error);
    assert_eq!(
        probe.release_calls.load(Ordering::SeqCst),
        3,
        "throttled: step 1 compensated exactly once"
    );
    assert_eq!(probe.reserve_calls.load(Ordering::SeqCst), 6);
    assert_eq!(
        probe.refund_calls.load(Ordering::SeqCst),
        0,
        "a failed payment is never refunded"
    );

    consumers.shutdown().await;
    backends.cleanup().await;
}

async fn queued_rollback_compensates_on_a_consumer(backend: Backend) {
    let backends = Backends::connect(backend, "modes-queued").await;
    let probe = Arc::new(Probe::default());
    let config = OrchestratorConfig {
        sync_rollback: Rollback::Queued,
        ..quick_config()
    };
    let orchestrator = orchestrator(&backends, &probe, config);
    let consumers = orchestrator.serve().await.expect("consumers start");
    let error = orchestrator
        .run_sync(&cx("queued"), trip(true))
        .await
        .expect_err("payment fails");
    assert!(
        matches!(&error, SagaError::RollbackQueued { step, .. } if step == "pay"),
        "{error:?}"
    );
    let outcome = orchestrator
        .outcome(&cx("queued"))
        .await
        .expect_err("the saga ends compensated");
    assert_compensated_at_pay(&outcome);
    assert_eq!(probe.release_calls.load(Ordering::SeqCst), 1);
    consumers.shutdown().await;
    backends.cleanup().await;
}

async fn throttled_burst_never_exceeds_the_cap(backend: Backend) {
    // The cap: 4 deliveries per topic (the transport's consumer concurrency) and 4 step
    // executions in all on this replica (`max_concurrent_steps`).
    let backends = Backends::connect_with(backend, "modes-burst", |config| {
        config.default_concurrency = 4
    })
    .await;
    let probe = Arc::new(Probe::default());
    probe.step_delay_ms.store(2, Ordering::SeqCst);
    let config = OrchestratorConfig {
        max_concurrent_steps: Some(4),
        ..quick_config()
    };
    let orchestrator = orchestrator(&backends, &probe, config);
    let consumers = orchestrator.serve().await.expect("consumers start");
    let calls = (0..200).map(|i| {
        let orchestrator = orchestrator.clone();
        tokio::spawn(async move {
            orchestrator
                .run_throttled(&cx(&format!("burst-{i}")), trip(false))
                .await
        })
    });
    let results = futures_util::future::join_all(calls).await;
    let succeeded = results
        .into_iter()
        .filter(|r| matches!(r, Ok(Ok(_))))
        .count();
    assert_eq!(succeeded, 200, "every throttled request succeeds");
    let max = probe.max_running.load(Ordering::SeqCst);
    assert!(
        max <= 4,
        "at most 4 step executions at once, measured {max}"
    );
    assert!(max >= 1);
    consumers.shutdown().await;
    backends.cleanup().await;
}

async fn a_saga_accepted_by_one_instance_runs_on_the_other(backend: Backend) {
    let backends = Backends::connect(backend, "modes-two").await;
    let probe = Arc::new(Probe::default());
    let accepting = orchestrator(
        &backends,
        &probe,
        OrchestratorConfig {
            pod_id: "a".into(),
            ..quick_config()
        },
    );
    let executing = orchestrator(
        &backends,
        &probe,
        OrchestratorConfig {
            pod_id: "b".into(),
            ..quick_config()
        },
    );
    // Only B consumes: whatever A accepts must run on B.
    let consumers = executing.serve().await.expect("consumers of B start");
    let ticket = accepting
        .run_throttled(&cx("two-instances"), trip(false))
        .await
        .expect("A's caller gets the outcome");
    assert_eq!(ticket.paid, 100);
    assert_eq!(probe.reserve_calls.load(Ordering::SeqCst), 1);
    consumers.shutdown().await;
    backends.cleanup().await;
}

async fn a_consumer_stopped_mid_step_does_not_lose_the_saga(backend: Backend) {
    let backends = Backends::connect(backend, "modes-crash").await;
    let probe = Arc::new(Probe::default());
    probe.park_next_reserve.store(true, Ordering::SeqCst);
    let first = orchestrator(
        &backends,
        &probe,
        OrchestratorConfig {
            pod_id: "first".into(),
            ..quick_config()
        },
    );
    let second = orchestrator(
        &backends,
        &probe,
        OrchestratorConfig {
            pod_id: "second".into(),
            ..quick_config()
        },
    );
    let first_consumers = first
        .serve()
        .await
        .expect("consumers of the first instance start");
    assert_eq!(
        first.start(&cx("crash"), trip(false)).await.expect("start"),
        Started::New
    );
    tokio::time::timeout(WAIT, probe.parked.notified())
        .await
        .expect("the first instance takes the step");
    first_consumers.abort(); // dies mid-step: the message is not acked
    let second_consumers = second
        .serve()
        .await
        .expect("consumers of the second instance start");
    let ticket = second
        .outcome(&cx("crash"))
        .await
        .expect("the saga completes on the second instance");
    assert_eq!(ticket.paid, 100);
    assert!(
        probe.reserve_calls.load(Ordering::SeqCst) >= 2,
        "the step ran again on the second instance"
    );
    probe.unpark.notify_waiters();
    second_consumers.shutdown().await;
    backends.cleanup().await;
}

async fn the_same_trace_id_runs_once(backend: Backend) {
    let backends = Backends::connect(backend, "modes-idem").await;
    let probe = Arc::new(Probe::default());
    probe.step_delay_ms.store(20, Ordering::SeqCst);
    let orchestrator = orchestrator(&backends, &probe, quick_config());
    let consumers = orchestrator.serve().await.expect("consumers start");
    let (cx1, cx2) = (cx("twice"), cx("twice"));
    let (first, second) = tokio::join!(
        orchestrator.run_throttled(&cx1, trip(false)),
        orchestrator.run_throttled(&cx2, trip(false)),
    );
    assert_eq!(first.expect("first caller"), second.expect("second caller"));
    assert_eq!(
        probe.reserve_calls.load(Ordering::SeqCst),
        1,
        "one execution"
    );
    let again = orchestrator
        .run_sync(&cx("twice"), trip(false))
        .await
        .expect("a later call gets the outcome");
    assert_eq!(again.paid, 100);
    assert_eq!(
        probe.reserve_calls.load(Ordering::SeqCst),
        1,
        "still one execution"
    );
    let other = Trip {
        destination: "Porto".to_string(),
        fault: false,
    };
    let refused = orchestrator
        .run_sync(&cx("twice"), other)
        .await
        .expect_err("other input refused");
    assert!(
        matches!(&refused, SagaError::IdTaken { trace_id, .. } if trace_id == "twice"),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("already used"), "{refused}");
    consumers.shutdown().await;
    backends.cleanup().await;
}

/// Subscribes to the dead-letter topic `topic` (before anything is dead-lettered) and hands
/// every dead letter to the returned receiver.
async fn dead_letters(
    backends: &Backends,
    topic: &str,
) -> (Subscription, mpsc::UnboundedReceiver<Delivery>) {
    let (dead_tx, dead_rx) = mpsc::unbounded_channel::<Delivery>();
    let options = SubscribeOptions {
        group: "test-dead".into(),
        concurrency: 1,
    };
    let handler = Arc::new(move |delivery: Delivery| {
        let dead_tx = dead_tx.clone();
        async move {
            let _ = dead_tx.send(delivery);
            Disposition::Ack
        }
    });
    let subscription = backends
        .transport
        .subscribe(topic, options, handler)
        .await
        .expect("dead-letter subscription");
    (subscription, dead_rx)
}

async fn a_compensation_that_always_fails_is_stuck_and_dead_lettered(backend: Backend) {
    let backends = Backends::connect(backend, "modes-stuck").await;
    let probe = Arc::new(Probe::default());
    probe.release_fails.store(true, Ordering::SeqCst);
    let orchestrator = orchestrator(&backends, &probe, quick_config());
    let dead_topic = dead_letter_topic(&sagaflow::engine::rollback_topic::<TripSaga>(None));
    let (dead, mut dead_rx) = dead_letters(&backends, &dead_topic).await;
    let consumers = orchestrator.serve().await.expect("consumers start");
    orchestrator
        .start(&cx("stuck"), trip(true))
        .await
        .expect("start");
    let error = orchestrator
        .outcome(&cx("stuck"))
        .await
        .expect_err("the saga is stuck");
    assert!(
        matches!(&error, SagaError::Stuck { stuck: StuckAt::Compensation(step), .. } if step == "reserve"),
        "{error:?}"
    );
    let record = backends
        .store
        .get("stuck")
        .await
        .expect("store answers")
        .expect("record");
    assert!(
        matches!(
            record.status,
            SagaStatus::Failed {
                error: SagaFailure::Stuck { .. }
            }
        ),
        "{record:?}"
    );
    let letter = tokio::time::timeout(WAIT, dead_rx.recv())
        .await
        .expect("dead letter arrives")
        .expect("open");
    assert_eq!(letter.trace_id(), "stuck");
    let reason = letter
        .headers
        .get(DEAD_LETTER_REASON_HEADER)
        .cloned()
        .unwrap_or_default();
    assert!(
        reason.contains("stuck") && reason.contains("reserve"),
        "reason: {reason}"
    );
    assert_eq!(
        probe.release_calls.load(Ordering::SeqCst),
        3,
        "bounded by the step's policy"
    );
    consumers.shutdown().await;
    dead.shutdown(Duration::from_secs(5)).await;
    backends.cleanup().await;
}

async fn a_bad_message_is_dead_lettered_and_the_consumer_keeps_running(backend: Backend) {
    let backends = Backends::connect(backend, "modes-bad").await;
    let probe = Arc::new(Probe::default());
    let orchestrator = orchestrator(&backends, &probe, quick_config());
    let topic = sagaflow::engine::step_topic::<TripSaga>(0, None).expect("step 0");
    let (dead, mut dead_rx) = dead_letters(&backends, &dead_letter_topic(&topic)).await;
    let consumers = orchestrator.serve().await.expect("consumers start");
    let bad = [
        (r#"{"v":1,"saga":"TripSaga""#.to_string(), "malformed"),
        (
            r#"{"v":99,"saga":"TripSaga","trace_id":"v99","state":{}}"#.to_string(),
            "version 99",
        ),
        (
            r#"{"v":2,"saga":"Other","trace_id":"other","seq":0,"state":{}}"#.to_string(),
            "saga `Other`",
        ),
    ];
    for (i, (payload, _)) in bad.iter().enumerate() {
        let mut message = Message {
            payload: payload.clone().into(),
            ..Message::default()
        };
        message
            .headers
            .insert("x-request-id".into(), format!("bad-{i}"));
        backends
            .transport
            .publish(&topic, message)
            .await
            .expect("publish");
    }
    let mut reasons = HashSet::new();
    for _ in 0..bad.len() {
        let letter = tokio::time::timeout(WAIT, dead_rx.recv())
            .await
            .expect("dead letter arrives")
            .expect("open");
        reasons.insert(
            letter
                .headers
                .get(DEAD_LETTER_REASON_HEADER)
                .cloned()
                .unwrap_or_default(),
        );
    }
    for (_, expected) in &bad {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no reason mentions {expected:?}: {reasons:?}"
        );
    }
    let ticket = orchestrator
        .run_throttled(&cx("after-bad"), trip(false))
        .await
        .expect("consumer still runs");
    assert_eq!(ticket.paid, 100);
    consumers.shutdown().await;
    dead.shutdown(Duration::from_secs(5)).await;
    backends.cleanup().await;
}

/// A store whose next non-final advance (a consumer recording a step's result) waits until
/// `unpark` is notified, after notifying `parked`.
#[derive(Debug)]
struct ParkedAdvance {
    inner: Arc<dyn SagaStore>,
    park_next: AtomicBool,
    parked: Notify,
    unpark: Notify,
}

store_with_advance!(ParkedAdvance, |this, advance| {
    Box::pin(async move {
        if !advance.status.is_final() && this.park_next.swap(false, Ordering::SeqCst) {
            park(&this.parked, &this.unpark).await;
        }
        this.inner.advance(advance).await
    })
});

/// `max_concurrent_steps` caps step executions, not what follows them: with a cap of 1, a
/// second saga's step runs while the first saga's consumer is still recording its step's
/// result (its store write held up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_step_cap_is_given_back_once_the_step_ran() {
    let mut backends = Backends::connect(Backend::Memory, "modes-slot").await;
    let store = Arc::new(ParkedAdvance {
        inner: Arc::clone(&backends.store),
        park_next: AtomicBool::new(false),
        parked: Notify::new(),
        unpark: Notify::new(),
    });
    backends.store = Arc::clone(&store) as Arc<dyn SagaStore>;
    let probe = Arc::new(Probe::default());
    let config = OrchestratorConfig {
        max_concurrent_steps: Some(1),
        ..quick_config()
    };
    let orchestrator = orchestrator(&backends, &probe, config);
    let consumers = orchestrator.serve().await.expect("consumers start");
    // Only the consumer recording the first step parks (a begin is not an advance).
    store.park_next.store(true, Ordering::SeqCst);
    orchestrator
        .start(&cx("slot-1"), trip(false))
        .await
        .expect("start");
    tokio::time::timeout(WAIT, store.parked.notified())
        .await
        .expect("the first saga's step ran and its record waits");
    assert_eq!(probe.reserve_calls.load(Ordering::SeqCst), 1);

    orchestrator
        .start(&cx("slot-2"), trip(false))
        .await
        .expect("start");
    let second_step_ran = async {
        while probe.reserve_calls.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, second_step_ran)
        .await
        .expect("the second saga's step runs while the first one's record waits");

    store.unpark.notify_waiters();
    for id in ["slot-1", "slot-2"] {
        let ticket = orchestrator
            .outcome(&cx(id))
            .await
            .unwrap_or_else(|e| panic!("{id} completes: {e:?}"));
        assert_eq!(ticket.paid, 100);
    }
    assert_eq!(probe.max_running.load(Ordering::SeqCst), 1, "the cap held");
    consumers.shutdown().await;
    backends.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_throttled_queue_refuses_at_once_and_frees_its_slot() {
    let backends = Backends::connect(Backend::Memory, "modes-full").await;
    let probe = Arc::new(Probe::default());
    probe.park_next_reserve.store(true, Ordering::SeqCst);
    let config = OrchestratorConfig {
        max_waiting: Some(1),
        ..quick_config()
    };
    let orchestrator = orchestrator(&backends, &probe, config);
    let consumers = orchestrator.serve().await.expect("consumers start");
    let first = tokio::spawn({
        let orchestrator = orchestrator.clone();
        async move { orchestrator.run_throttled(&cx("full-1"), trip(false)).await }
    });
    tokio::time::timeout(WAIT, probe.parked.notified())
        .await
        .expect("the first saga runs and waits");
    let refused = orchestrator
        .run_throttled(&cx("full-2"), trip(false))
        .await
        .expect_err("the queue is full");
    match &refused {
        SagaError::Rejected {
            trace_id, reason, ..
        } => {
            assert_eq!(trace_id, "full-2");
            assert!(
                matches!(reason, Rejection::QueueFull { waiting: 1 }),
                "{reason}"
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(
        backends.store.get("full-2").await.expect("store").is_none(),
        "nothing was started"
    );
    probe.unpark.notify_waiters();
    first
        .await
        .expect("task")
        .expect("the first saga completes");
    let ticket = orchestrator
        .run_throttled(&cx("full-3"), trip(false))
        .await
        .expect("the slot is free again");
    assert_eq!(ticket.paid, 100);
    consumers.shutdown().await;
    backends.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_stranded_before_its_first_message_is_recovered_by_the_sweeper() {
    let backends = Backends::connect(Backend::Memory, "modes-stranded").await;
    let probe = Arc::new(Probe::default());
    let config = OrchestratorConfig {
        sweep_interval: Some(Duration::from_millis(50)),
        ..quick_config()
    };
    let orchestrator = orchestrator(&backends, &probe, config);
    let consumers = orchestrator.serve().await.expect("consumers start");
    // What a replica that died between recording and publishing leaves behind: a record at
    // step 0, queued, whose lease lapses at once, and nothing on the broker.
    let name = TripSaga::description().name;
    let envelope = Envelope {
        v: FORMAT_VERSION,
        saga: name.to_string(),
        version: 1,
        trace_id: "stranded".to_string(),
        seq: 0,
        metadata: Default::default(),
        route: None,
        failure: None,
        state: TripSaga::start(trip(false)),
    };
    let input = serde_json::to_value(trip(false)).expect("input serialises");
    let record = SagaRecord::new(
        "stranded",
        name,
        fingerprint(name, &input),
        "reserve",
        Mode::Async,
        serde_json::to_string(&envelope).expect("envelope serialises"),
        Custody::queued("a-dead-replica/0/0", Duration::from_millis(1)),
    );
    backends.store.begin(record).await.expect("begin");

    // No caller retries: the sweeper publishes it again and a consumer runs it.
    let waiter = SagaContext::new(name, "stranded")
        .with_deadline(Some(Instant::now() + Duration::from_secs(10)));
    let ticket = orchestrator
        .outcome(&waiter)
        .await
        .expect("recovered and completed");
    assert_eq!(ticket.paid, 100);
    assert_eq!(probe.reserve_calls.load(Ordering::SeqCst), 1, "ran once");

    // A caller retrying the id gets the outcome.
    let again = orchestrator
        .run_throttled(&cx("stranded"), trip(false))
        .await
        .expect("the outcome of the recovered saga");
    assert_eq!(again, ticket);
    assert_eq!(
        probe.reserve_calls.load(Ordering::SeqCst),
        1,
        "nothing ran twice"
    );
    consumers.shutdown().await;
    backends.cleanup().await;
}

/// Counts the deliveries that reach the consumers through a user's tower layer.
#[derive(Clone)]
struct Counted<T> {
    inner: T,
    seen: Arc<AtomicUsize>,
}

impl<T: tower::Service<Delivery>> tower::Service<Delivery> for Counted<T> {
    type Response = T::Response;
    type Error = T::Error;
    type Future = T::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        self.seen.fetch_add(1, Ordering::SeqCst);
        self.inner.call(delivery)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumers_run_through_a_users_tower_layer() {
    let backends = Backends::connect(Backend::Memory, "modes-layer").await;
    let probe = Arc::new(Probe::default());
    let orchestrator = orchestrator(&backends, &probe, quick_config());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let layer = tower::layer::layer_fn(move |inner| Counted {
        inner,
        seen: Arc::clone(&counter),
    });
    let consumers = orchestrator
        .serve_layered(layer)
        .await
        .expect("consumers start");
    let ticket = orchestrator
        .run_throttled(&cx("layered"), trip(false))
        .await
        .expect("completes");
    assert_eq!(ticket.paid, 100);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        TripSaga::description().steps.len(),
        "one delivery per step went through the layer"
    );
    consumers.shutdown().await;
    backends.cleanup().await;
}

macro_rules! per_backend {
    ($($test:ident),* $(,)?) => {
        mod memory { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $test() { super::$test(super::Backend::Memory).await } )* }
        mod rabbitmq { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $test() { super::$test(super::Backend::RabbitMq).await } )* }
        mod nats { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $test() { super::$test(super::Backend::Nats).await } )* }
    };
}

per_backend!(
    happy_and_fault_in_each_mode,
    queued_rollback_compensates_on_a_consumer,
    throttled_burst_never_exceeds_the_cap,
    a_saga_accepted_by_one_instance_runs_on_the_other,
    a_consumer_stopped_mid_step_does_not_lose_the_saga,
    the_same_trace_id_runs_once,
    a_compensation_that_always_fails_is_stuck_and_dead_lettered,
    a_bad_message_is_dead_lettered_and_the_consumer_keeps_running,
);
