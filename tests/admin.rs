//! Operating sagas through [`Admin`]: the history of every transition, listings by status, a
//! stuck saga resumed to its end, a running saga compensated on an operator's request (and
//! refused past its pivot), dead letters replayed exactly once, and a listing that pages
//! through 10,000 sagas in Redis without a key scan. Every test runs against the real local
//! servers where it names them.

mod common;

use std::collections::HashSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::backends::{Backend, Backends};
use sagaflow::admin::{Admin, AdminError, CompensationRequest};
use sagaflow::engine::{Orchestrator, OrchestratorConfig, step_topic};
use sagaflow::error::SagaFailure;
use sagaflow::store::{
    Advance, Begin, Custody, HistoryEvent, ListQuery, Mode, RedisConfig, RedisStore, SagaRecord,
    SagaStatus, SagaStore, StatusKind, StoreConfig, Written, fingerprint,
};
use sagaflow::transport::{Disposition, SubscribeOptions};
use sagaflow::{RetryPolicy, SagaContext, SagaError, StepError, StepResult, saga};
use tokio::sync::Semaphore;

const WAIT: Duration = Duration::from_secs(20);
const POD: &str = "admin-test-pod";

/// A trip whose hotel step waits at a gate, whose flight cancellation can be made to fail
/// (the saga gets stuck compensating) and whose last, retriable step can be made to fail
/// (stuck past the pivot). A city named `fail` has no hotel room.
struct Trip {
    gate: Semaphore,
    cancellation_fails: AtomicBool,
    notify_fails: AtomicBool,
    flights: AtomicU32,
    charges: AtomicU32,
    hotel_cancellations: AtomicU32,
    flight_cancellations: AtomicU32,
}

impl Trip {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            gate: Semaphore::new(Semaphore::MAX_PERMITS),
            cancellation_fails: AtomicBool::new(false),
            notify_fails: AtomicBool::new(false),
            flights: AtomicU32::new(0),
            charges: AtomicU32::new(0),
            hotel_cancellations: AtomicU32::new(0),
            flight_cancellations: AtomicU32::new(0),
        })
    }

    /// A trip whose hotel step waits until [`Trip::open`].
    fn gated() -> Arc<Self> {
        let trip = Self::new();
        trip.gate.forget_permits(Semaphore::MAX_PERMITS);
        trip
    }

    fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS);
    }
}

#[saga(name = "admin_trip")]
impl Trip {
    #[step(compensate = cancel_flight)]
    async fn book_flight(&self, _cx: &SagaContext, city: &String) -> StepResult<String> {
        self.flights.fetch_add(1, Ordering::SeqCst);
        Ok(format!("flight to {city}"))
    }
    async fn cancel_flight(&self, _cx: &SagaContext, _flight: &String) -> StepResult<()> {
        if self.cancellation_fails.load(Ordering::SeqCst) {
            return Err(StepError::retryable("the airline is down"));
        }
        self.flight_cancellations.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    #[step(compensate = cancel_hotel)]
    async fn book_hotel(&self, _cx: &SagaContext, book_flight: &String) -> StepResult<String> {
        let _pass = self
            .gate
            .acquire()
            .await
            .map_err(|e| StepError::fatal(e.to_string()))?;
        if book_flight.ends_with("fail") {
            return Err(StepError::fatal("no room left"));
        }
        Ok(format!("hotel after {book_flight}"))
    }
    async fn cancel_hotel(&self, _cx: &SagaContext, _hotel: &String) -> StepResult<()> {
        self.hotel_cancellations.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, book_hotel: &String) -> StepResult<u64> {
        self.charges.fetch_add(1, Ordering::SeqCst);
        Ok(book_hotel.len() as u64)
    }

    #[step(
        retriable,
        retry(max_attempts = 2, initial_backoff_ms = 1, max_backoff_ms = 1)
    )]
    async fn notify(&self, _cx: &SagaContext, charge: &u64) -> StepResult<u64> {
        if self.notify_fails.load(Ordering::SeqCst) {
            return Err(StepError::retryable("the mail server is down"));
        }
        Ok(*charge)
    }
}

fn config() -> OrchestratorConfig {
    OrchestratorConfig {
        pod_id: POD.to_string(),
        redelivery_delay: Duration::from_millis(20),
        sweep_interval: Some(Duration::from_millis(100)),
        compensation_retry: RetryPolicy::new(3, Duration::from_millis(1), Duration::from_millis(2)),
        ..OrchestratorConfig::default()
    }
}

fn orchestrator(trip: &Arc<Trip>, backends: &Backends) -> Orchestrator<Trip> {
    Orchestrator::new(
        Arc::clone(trip),
        Arc::clone(&backends.transport),
        Arc::clone(&backends.store),
        config(),
    )
}

fn cx(id: &str) -> SagaContext {
    SagaContext::for_saga::<Trip>(id).with_deadline(Some(Instant::now() + WAIT))
}

/// A trace id no other test or run uses.
fn id(name: &str) -> String {
    common::backends::unique_prefix(name)
}

/// The outcome of `id` from the store, within [`WAIT`].
async fn ended(store: &Arc<dyn SagaStore>, id: &str) -> sagaflow::store::Outcome {
    tokio::time::timeout(WAIT, store.watch(id))
        .await
        .unwrap_or_else(|_| panic!("saga {id} did not end within {WAIT:?}"))
        .expect("watch")
}

/// The history of `id` as short labels: `started`, `book_flight`, `book_flight!` (gave up),
/// `book_flight! (retried)` (failed, tried again), `~book_flight` (its compensation),
/// `resumed by alice`, ...
async fn labels(admin: &Admin, id: &str) -> Vec<String> {
    let view = admin.get(id).await.expect("get").expect("a record");
    view.history
        .iter()
        .map(|entry| {
            assert_eq!(entry.replica(), POD, "{entry:?}");
            match &entry.event {
                HistoryEvent::Started { .. } => "started".to_string(),
                HistoryEvent::Transition {
                    step,
                    compensation,
                    error,
                    retried,
                    ..
                } => format!(
                    "{}{step}{}{}",
                    if *compensation { "~" } else { "" },
                    if error.is_some() { "!" } else { "" },
                    if *retried { " (retried)" } else { "" }
                ),
                HistoryEvent::Resumed { by } => format!("resumed by {by}"),
                HistoryEvent::CompensationRequested { by } => {
                    format!("compensation requested by {by}")
                }
                HistoryEvent::CompensationStarted { step } => {
                    format!("compensation started at {step}")
                }
            }
        })
        .collect()
}

async fn history_and_listings(backend: Backend) {
    let backends = Backends::connect(backend, "admin-history").await;
    let trip = Trip::new();
    let orchestrator = orchestrator(&trip, &backends);
    let admin = Admin::new(Arc::clone(&backends.store)).register(&orchestrator);
    let (completed, compensated): (Vec<_>, Vec<_>) = (
        (0..3).map(|i| id(&format!("ok{i}"))).collect(),
        (0..2).map(|i| id(&format!("ko{i}"))).collect(),
    );
    for trace_id in &completed {
        orchestrator
            .run_sync(&cx(trace_id), "Oslo".to_string())
            .await
            .expect("completes");
    }
    for trace_id in &compensated {
        let error = orchestrator
            .run_sync(&cx(trace_id), "fail".to_string())
            .await
            .expect_err("no room");
        assert!(matches!(error, SagaError::Compensated { .. }), "{error}");
    }

    assert_eq!(
        labels(&admin, &completed[0]).await,
        ["started", "book_flight", "book_hotel", "charge", "notify"]
    );
    assert_eq!(
        labels(&admin, &compensated[0]).await,
        ["started", "book_flight", "book_hotel!", "~book_flight"]
    );
    let view = admin
        .get(&completed[0])
        .await
        .expect("get")
        .expect("record");
    assert_eq!(view.state, None, "a completed saga has no state left");
    let diagram = view.diagram.expect("registered saga: a diagram");
    assert!(diagram.contains("class done current"), "{diagram}");

    // Pages of two through the completed sagas: each once, oldest first.
    let mut query = ListQuery {
        limit: 2,
        saga: Some("admin_trip".to_string()),
        ..ListQuery::new(StatusKind::Completed)
    };
    let mut listed = Vec::new();
    loop {
        let page = admin.list(&query).await.expect("list");
        assert!(page.sagas.len() <= 2);
        assert!(page.sagas.iter().all(|r| r.state.is_none()));
        listed.extend(page.sagas.iter().map(|r| r.trace_id.clone()));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let ours: Vec<_> = listed
        .iter()
        .filter(|id| completed.contains(id))
        .cloned()
        .collect();
    assert_eq!(
        ours, completed,
        "every completed saga once, in the order they ended"
    );
    let compensated_page = admin
        .list(&ListQuery::new(StatusKind::Compensated))
        .await
        .expect("list");
    for trace_id in &compensated {
        assert!(
            compensated_page
                .sagas
                .iter()
                .any(|r| &r.trace_id == trace_id)
        );
    }
    // Nothing is older than an hour yet.
    let old = ListQuery {
        older_than: Some(Duration::from_secs(3600)),
        ..ListQuery::new(StatusKind::Completed)
    };
    let page = admin.list(&old).await.expect("list");
    assert!(page.sagas.iter().all(|r| !completed.contains(&r.trace_id)));
    let unknown = ListQuery {
        saga: Some("nope".to_string()),
        ..ListQuery::new(StatusKind::Completed)
    };
    assert!(matches!(
        admin.list(&unknown).await,
        Err(AdminError::UnknownSaga { .. })
    ));
    backends.cleanup().await;
}

#[tokio::test]
async fn history_and_listings_memory() {
    history_and_listings(Backend::Memory).await;
}

#[tokio::test]
async fn history_and_listings_redis() {
    history_and_listings(Backend::Nats).await;
}

async fn resume_a_stuck_compensation(backend: Backend, mode: Mode) {
    let backends = Backends::connect(backend, "admin-resume").await;
    let trip = Trip::new();
    let orchestrator = orchestrator(&trip, &backends);
    let consumers = orchestrator.serve().await.expect("consumers");
    let admin = Admin::new(Arc::clone(&backends.store)).register(&orchestrator);
    let trace_id = id("stuck");
    trip.cancellation_fails.store(true, Ordering::SeqCst);
    match mode {
        Mode::Sync => {
            let error = orchestrator
                .run_sync(&cx(&trace_id), "fail".to_string())
                .await
                .expect_err("stuck");
            assert!(matches!(error, SagaError::Stuck { .. }), "{error}");
        }
        _ => {
            orchestrator
                .start(&cx(&trace_id), "fail".to_string())
                .await
                .expect("started");
            let outcome = ended(&backends.store, &trace_id).await;
            assert!(
                matches!(outcome, Err(SagaFailure::Stuck { .. })),
                "{outcome:?}"
            );
        }
    }

    let view = admin.get(&trace_id).await.expect("get").expect("record");
    assert_eq!(view.record.status.kind(), StatusKind::Stuck);
    let state = view.state.expect("a stuck saga keeps its state");
    assert!(
        state["state"].to_string().contains("flight to fail"),
        "{state}"
    );
    assert!(view.diagram.expect("diagram").contains("class c0 stuck"));
    let stuck = admin
        .list(&ListQuery::new(StatusKind::Stuck))
        .await
        .expect("list");
    assert!(stuck.sagas.iter().any(|r| r.trace_id == trace_id));

    // The cause is fixed: resume it.
    trip.cancellation_fails.store(false, Ordering::SeqCst);
    let seq = view.record.seq;
    admin.resume(&trace_id, "alice").await.expect("resumed");
    let outcome = ended(&backends.store, &trace_id).await;
    assert!(
        matches!(outcome, Err(SagaFailure::Compensated { ref step, .. }) if step == "book_hotel"),
        "{outcome:?}"
    );
    assert_eq!(trip.flight_cancellations.load(Ordering::SeqCst), 1);
    let record = backends
        .store
        .get(&trace_id)
        .await
        .expect("get")
        .expect("record");
    assert_eq!(record.status.kind(), StatusKind::Compensated);
    assert!(
        record.seq >= seq + 2,
        "reopened, then ended: {} after {seq}",
        record.seq
    );
    // Three attempts of the cancellation (two retried), the resume, the one that succeeded.
    assert_eq!(
        labels(&admin, &trace_id).await,
        [
            "started",
            "book_flight",
            "book_hotel!",
            "~book_flight! (retried)",
            "~book_flight! (retried)",
            "~book_flight!",
            "resumed by alice",
            "~book_flight",
        ]
    );
    assert!(matches!(
        admin.resume(&trace_id, "alice").await,
        Err(AdminError::NotStuck {
            status: StatusKind::Compensated,
            ..
        })
    ));
    consumers.shutdown().await;
    backends.cleanup().await;
}

#[tokio::test]
async fn a_stuck_sync_saga_resumed_ends_compensated_memory() {
    resume_a_stuck_compensation(Backend::Memory, Mode::Sync).await;
}

#[tokio::test]
async fn a_stuck_sync_saga_resumed_ends_compensated_redis() {
    resume_a_stuck_compensation(Backend::RabbitMq, Mode::Sync).await;
}

#[tokio::test]
async fn a_stuck_async_saga_resumed_ends_compensated_nats() {
    resume_a_stuck_compensation(Backend::Nats, Mode::Async).await;
}

#[tokio::test]
async fn a_stuck_async_saga_resumed_ends_compensated_rabbitmq() {
    resume_a_stuck_compensation(Backend::RabbitMq, Mode::Async).await;
}

/// Past its pivot a saga only goes forward: compensation is refused, resume finishes it.
#[tokio::test]
async fn past_the_pivot_compensation_is_refused_and_resume_completes() {
    let backends = Backends::connect(Backend::Memory, "admin-pivot").await;
    let trip = Trip::new();
    let orchestrator = orchestrator(&trip, &backends);
    let admin = Admin::new(Arc::clone(&backends.store)).register(&orchestrator);
    let trace_id = id("pivot");
    trip.notify_fails.store(true, Ordering::SeqCst);
    let error = orchestrator
        .run_sync(&cx(&trace_id), "Oslo".to_string())
        .await
        .expect_err("stuck at notify");
    assert!(matches!(error, SagaError::Stuck { .. }), "{error}");
    match admin.compensate(&trace_id, "bob").await {
        Err(AdminError::PastPivot { step, .. }) => assert_eq!(step, "notify"),
        other => panic!("expected past the pivot, got {other:?}"),
    }
    trip.notify_fails.store(false, Ordering::SeqCst);
    admin.resume(&trace_id, "alice").await.expect("resumed");
    let outcome = ended(&backends.store, &trace_id).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(trip.charges.load(Ordering::SeqCst), 1, "the pivot ran once");
    assert!(matches!(
        admin.compensate(&trace_id, "bob").await,
        Err(AdminError::Finished { .. })
    ));
}

async fn compensate_a_running_saga(backend: Backend, sync: bool) {
    let backends = Backends::connect(backend, "admin-compensate").await;
    let trip = Trip::gated();
    let orchestrator = orchestrator(&trip, &backends);
    let consumers = orchestrator.serve().await.expect("consumers");
    let admin = Admin::new(Arc::clone(&backends.store)).register(&orchestrator);
    let trace_id = id("running");
    let run = {
        let orchestrator = orchestrator.clone();
        let trace_id = trace_id.clone();
        tokio::spawn(async move {
            if sync {
                orchestrator
                    .run_sync(&cx(&trace_id), "Oslo".to_string())
                    .await
                    .map(|_| ())
            } else {
                orchestrator
                    .start(&cx(&trace_id), "Oslo".to_string())
                    .await
                    .map(|_| ())
            }
        })
    };
    // Wait until the saga stands at the gated hotel step.
    let deadline = Instant::now() + WAIT;
    loop {
        let record = backends.store.get(&trace_id).await.expect("get");
        if matches!(
            record.map(|r| r.status),
            Some(SagaStatus::Running { step: 1, .. })
        ) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the saga never reached the hotel step"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        admin
            .compensate(&trace_id, "carol")
            .await
            .expect("requested"),
        CompensationRequest::Requested
    );
    trip.open();
    let outcome = ended(&backends.store, &trace_id).await;
    match &outcome {
        Err(SagaFailure::Compensated { error, .. }) => {
            assert!(error.to_string().contains("operator"), "{error}")
        }
        other => panic!("expected compensated, got {other:?}"),
    }
    let _ = run.await;
    assert_eq!(
        trip.charges.load(Ordering::SeqCst),
        0,
        "the pivot never ran"
    );
    assert_eq!(trip.hotel_cancellations.load(Ordering::SeqCst), 1);
    assert_eq!(trip.flight_cancellations.load(Ordering::SeqCst), 1);
    let history = labels(&admin, &trace_id).await;
    assert!(
        history.contains(&"compensation requested by carol".to_string())
            && history.contains(&"compensation started at charge".to_string()),
        "{history:?}"
    );
    assert_eq!(history.last().map(String::as_str), Some("~book_flight"));
    consumers.shutdown().await;
    backends.cleanup().await;
}

#[tokio::test]
async fn an_operator_compensates_a_running_sync_saga() {
    compensate_a_running_saga(Backend::Memory, true).await;
}

#[tokio::test]
async fn an_operator_compensates_a_running_async_saga_memory() {
    compensate_a_running_saga(Backend::Memory, false).await;
}

#[tokio::test]
async fn an_operator_compensates_a_running_async_saga_nats() {
    compensate_a_running_saga(Backend::Nats, false).await;
}

/// A consumer of a bad deploy dead-letters the first message of a saga; replaying it runs the
/// saga to its end, once, and leaves no dead letter behind.
async fn replay_dead_letters(backend: Backend) {
    let backends = Backends::connect(backend, "admin-replay").await;
    let trip = Trip::new();
    let orchestrator = orchestrator(&trip, &backends);
    let admin = Admin::new(Arc::clone(&backends.store))
        .register(&orchestrator)
        .with_settle_time(Duration::from_millis(500));
    let first = step_topic::<Trip>(0, None).expect("a first step");
    let options = SubscribeOptions {
        group: "admin_trip".to_string(),
        concurrency: 4,
    };
    let rogue = backends
        .transport
        .subscribe(
            &first,
            options,
            Arc::new(|_| async {
                Disposition::DeadLetter {
                    reason: "a bad deploy".to_string(),
                }
            }),
        )
        .await
        .expect("rogue consumer");
    let trace_id = id("dead");
    orchestrator
        .start(&cx(&trace_id), "Oslo".to_string())
        .await
        .expect("started");
    let deadline = Instant::now() + WAIT;
    let letters = loop {
        let letters = admin.dead_letters(None, 100).await.expect("dead letters");
        if letters.iter().any(|l| l.trace_id == trace_id) {
            break letters;
        }
        assert!(
            Instant::now() < deadline,
            "the message was never dead-lettered"
        );
    };
    let letter = letters
        .iter()
        .find(|l| l.trace_id == trace_id)
        .expect("ours");
    assert_eq!(letter.topic, first);
    assert_eq!(letter.reason, "a bad deploy");
    assert_eq!(letter.message_id, format!("{trace_id}/0"));
    rogue.shutdown(Duration::from_secs(2)).await;
    // Listing left it in place.
    let again = admin
        .dead_letters(Some("admin_trip"), 100)
        .await
        .expect("list");
    assert!(again.iter().any(|l| l.trace_id == trace_id), "{again:?}");

    let consumers = orchestrator.serve().await.expect("consumers");
    assert!(matches!(
        admin.replay(None, Some("no-such-id")).await,
        Err(AdminError::DeadLetterNotFound { .. })
    ));
    let replayed = admin
        .replay(Some("admin_trip"), Some(&letter.message_id))
        .await
        .expect("replay");
    assert_eq!(replayed.replayed.len(), 1, "{replayed:?}");
    assert!(replayed.failed.is_empty(), "{replayed:?}");
    let outcome = ended(&backends.store, &trace_id).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(trip.flights.load(Ordering::SeqCst), 1, "the step ran once");
    let left = admin.dead_letters(None, 100).await.expect("list");
    assert!(left.iter().all(|l| l.trace_id != trace_id), "{left:?}");
    let nothing = admin.replay(None, None).await.expect("replay");
    assert!(nothing.replayed.iter().all(|l| l.trace_id != trace_id));
    assert_eq!(trip.flights.load(Ordering::SeqCst), 1, "replayed once");
    consumers.shutdown().await;
    backends.cleanup().await;
}

#[tokio::test]
async fn dead_letters_replay_exactly_once_memory() {
    replay_dead_letters(Backend::Memory).await;
}

#[tokio::test]
async fn dead_letters_replay_exactly_once_nats() {
    replay_dead_letters(Backend::Nats).await;
}

#[tokio::test]
async fn dead_letters_replay_exactly_once_rabbitmq() {
    replay_dead_letters(Backend::RabbitMq).await;
}

/// A private redis-server on a free loopback port, stopped (by its pid) when dropped.
struct PrivateRedis {
    child: Child,
    url: String,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start a private redis-server ({e}): install Redis (apt install redis-server)")
            });
        Self {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 10,000 finished sagas in Redis, listed 1,000 at a time: every one exactly once, oldest
/// first, and the server never ran SCAN or KEYS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_through_ten_thousand_sagas_without_a_key_scan() {
    const SAGAS: usize = 10_000;
    let redis = PrivateRedis::start();
    let config = RedisConfig::from(StoreConfig::default());
    let deadline = Instant::now() + WAIT;
    let store: Arc<dyn SagaStore> = loop {
        match RedisStore::connect(&redis.url, config.clone()).await {
            Ok(store) => break Arc::new(store),
            Err(e) if Instant::now() > deadline => panic!("private Redis at {}: {e}", redis.url),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let input = serde_json::json!("Oslo");
    let ids: Vec<String> = (0..SAGAS).map(|i| format!("bulk-{i:05}")).collect();
    for chunk in ids.chunks(500) {
        let writes = chunk.iter().map(|trace_id| {
            let store = Arc::clone(&store);
            let input = input.clone();
            async move {
                let token = "bulk/0/0";
                let record = SagaRecord::new(
                    trace_id,
                    "admin_trip",
                    fingerprint("admin_trip", &input),
                    "book_flight",
                    Mode::Async,
                    "{}".to_string(),
                    Custody::held(token, Duration::from_secs(60)),
                );
                assert_eq!(store.begin(record).await.expect("begin"), Begin::Started);
                let done = Advance {
                    trace_id,
                    saga: "admin_trip",
                    seq: 0,
                    token,
                    status: SagaStatus::Completed {
                        output: serde_json::json!(1),
                    },
                    state: None,
                    custody: Custody::held(token, Duration::ZERO),
                    history: &[],
                    abortable: false,
                };
                assert_eq!(store.advance(done).await.expect("advance"), Written::Done);
            }
        });
        futures_util::future::join_all(writes).await;
    }
    let client = redis::Client::open(redis.url.as_str()).expect("url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut connection)
        .await
        .expect("CONFIG RESETSTAT");

    let mut query = ListQuery {
        limit: 1000,
        ..ListQuery::new(StatusKind::Completed)
    };
    let mut seen = Vec::with_capacity(SAGAS);
    let mut pages = 0;
    loop {
        let page = store.list(&query).await.expect("list");
        pages += 1;
        assert!(page.sagas.len() <= 1000);
        seen.extend(
            page.sagas
                .iter()
                .map(|r| (r.status_since_ms, r.trace_id.clone())),
        );
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), SAGAS, "every saga listed");
    let distinct: HashSet<_> = seen.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(distinct.len(), SAGAS, "none twice");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    assert!((10..=11).contains(&pages), "{pages} pages of 1,000");

    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .expect("INFO");
    assert!(stats.contains("cmdstat_zrangebyscore"), "{stats}");
    for scan in ["cmdstat_scan:", "cmdstat_keys:"] {
        assert!(!stats.contains(scan), "the listing ran {scan}: {stats}");
    }
    // The age filter reads the same index: nothing is an hour old.
    let old = ListQuery {
        older_than: Some(Duration::from_secs(3600)),
        ..ListQuery::new(StatusKind::Completed)
    };
    assert!(store.list(&old).await.expect("list").sagas.is_empty());
}
