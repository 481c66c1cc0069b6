//! Crash recovery: a replica dies mid-saga and another replica's recovery sweeper finishes it.
//!
//! A replica's death is simulated in-process: replica A runs its orchestrator (and its own
//! store connection) on a `tokio` runtime of its own, and the test calls
//! `shutdown_background()` on that runtime mid-saga, which drops every task of A at once (the
//! step, the lease renewal, the store connection). Replicas B and C are orchestrators of the
//! same saga on the test's runtime, serving (the sweeper is part of `serve`), over the same
//! store (the same Redis prefix; or one memory store shared in-process) and the same
//! transport. Leases are short (300 ms) and sweeps frequent (50 ms), so a recovery takes well
//! under a second.
//!
//! Redis, RabbitMQ and NATS are the local servers; an unreachable one fails the test, naming
//! the server and how to start it.
#![cfg(all(feature = "redis", feature = "rabbitmq", feature = "nats"))]

#[macro_use]
mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::backends::{
    Backend, Backends, NATS_URL, RABBITMQ_URL, REDIS_URL, START_NATS, START_RABBITMQ, START_REDIS,
    delete_redis_keys, unique_prefix,
};
use futures_util::future::{BoxFuture, join_all};
use sagaflow::engine::{
    Completion, Envelope, FORMAT_VERSION, Orchestrator, OrchestratorBuilder, OrchestratorConfig,
    Routing, Started,
};
use sagaflow::observe::{TRACEPARENT_HEADER, TraceParent};
use sagaflow::store::{
    Advance, Begin, Custody, Hold, MemoryStore, Mode, RedisConfig, RedisStore, SagaRecord,
    SagaStatus, SagaStore, StoreConfig, StoreError, StoreErrorKind, Written, fingerprint,
};
use sagaflow::transport::{
    Delivery, Disposition, Handler, MemoryTransport, Message, NatsTransport, RabbitMqTransport,
    SubscribeOptions, Subscription, TRACE_ID_HEADER, Transport, TransportConfig, TransportError,
};
use sagaflow::{Metadata, Saga, SagaContext, SagaError, StepError, StepResult, saga};
use serde::{Deserialize, Serialize};

/// How long a replica's custody lasts without renewal.
const LEASE: Duration = Duration::from_millis(300);
/// How often each replica's sweeper looks for lapsed leases.
const SWEEP: Duration = Duration::from_millis(50);
/// Slack on top of `LEASE + SWEEP` for a recovery to finish on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(1_500);
/// Bound on every wait.
const WAIT: Duration = Duration::from_secs(20);
/// The lease of a record a test writes itself, as left by a replica that died.
const SHORT_LEASE: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------------------------
// The test saga: reserve (compensated by release), charge (compensated by refund), confirm
// (the pivot, which fails for good when the order says so). Every step records its calls and
// its effects per trace id, and can be told to hang on its first call for each trace id.

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    item: String,
    /// Makes `confirm` fail for good, so the saga is compensated.
    fail_confirm: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Receipt {
    hold: String,
    paid: u32,
}

/// The idempotency key and request metadata a step call saw.
type CallContext = (String, Metadata);

/// What the steps did, per trace id, shared by every replica of a test.
struct Probe {
    /// (trace id, step) -> calls (entries into the step).
    calls: Mutex<HashMap<(String, &'static str), u32>>,
    /// (trace id, step) -> effects (calls that completed successfully).
    effects: Mutex<HashMap<(String, &'static str), u32>>,
    /// Steps (or compensations) whose first call hangs until released, as on a replica about
    /// to die or stall:
    /// `step` for every trace id, `trace_id/step` for one.
    hang_first: Mutex<HashSet<String>>,
    /// A delay in every step, so duplicate deliveries overlap.
    delay_ms: AtomicUsize,
    /// Set to true to let the hanging calls go on (a stalled replica that comes back).
    release: tokio::sync::watch::Sender<bool>,
    /// Steps whose every call hangs until released (a poison step that kills its replica).
    hang_always: Mutex<HashSet<String>>,
    /// (trace id, step) -> the attempt number of each call (`SagaContext::attempt`).
    attempts: Mutex<HashMap<(String, &'static str), Vec<u32>>>,
    /// (trace id, step) -> (idempotency key, request metadata) of each call.
    contexts: Mutex<HashMap<(String, &'static str), Vec<CallContext>>>,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            calls: Mutex::default(),
            effects: Mutex::default(),
            hang_first: Mutex::default(),
            delay_ms: AtomicUsize::new(0),
            release: tokio::sync::watch::Sender::new(false),
            attempts: Mutex::default(),
            contexts: Mutex::default(),
            hang_always: Mutex::default(),
        }
    }
}

impl Probe {
    fn hanging(steps: &[&'static str]) -> Arc<Self> {
        let probe = Self::default();
        probe
            .hang_first
            .lock()
            .expect("lock")
            .extend(steps.iter().map(|step| step.to_string()));
        Arc::new(probe)
    }

    /// Counts a call of `step`; hangs if it is the first call of a hanging step.
    async fn enter(&self, cx: &SagaContext, step: &'static str) {
        let call = {
            let mut calls = self.calls.lock().expect("lock");
            let n = calls.entry((cx.trace_id().to_string(), step)).or_default();
            *n += 1;
            *n
        };
        self.attempts
            .lock()
            .expect("lock")
            .entry((cx.trace_id().to_string(), step))
            .or_default()
            .push(cx.attempt());
        self.contexts
            .lock()
            .expect("lock")
            .entry((cx.trace_id().to_string(), step))
            .or_default()
            .push((cx.idempotency_key(), cx.metadata().clone()));
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay as u64)).await;
        }
        let hangs = {
            let hang = self.hang_first.lock().expect("lock");
            hang.contains(step) || hang.contains(&format!("{}/{step}", cx.trace_id()))
        };
        let always = self.hang_always.lock().expect("lock").contains(step);
        if (call == 1 && hangs) || always {
            let mut released = self.release.subscribe();
            let _ = released.wait_for(|released| *released).await;
        }
    }

    /// Counts the effect of `step`.
    fn done(&self, cx: &SagaContext, step: &'static str) {
        *self
            .effects
            .lock()
            .expect("lock")
            .entry((cx.trace_id().to_string(), step))
            .or_default() += 1;
    }

    fn calls(&self, trace_id: &str, step: &'static str) -> u32 {
        let calls = self.calls.lock().expect("lock");
        calls
            .get(&(trace_id.to_string(), step))
            .copied()
            .unwrap_or(0)
    }

    /// (idempotency key, metadata) of every call of `step` for `trace_id`, without the W3C
    /// `traceparent` the engine may add: every call carries the same one, if any (the trace the
    /// saga began with continues on whichever replica runs or recovers it).
    fn contexts(&self, trace_id: &str, step: &'static str) -> Vec<CallContext> {
        let contexts = self.contexts.lock().expect("lock");
        let mut calls = contexts
            .get(&(trace_id.to_string(), step))
            .cloned()
            .unwrap_or_default();
        let traces: std::collections::BTreeSet<Option<String>> = calls
            .iter_mut()
            .map(|(_, metadata)| metadata.remove(TRACEPARENT_HEADER))
            .collect();
        assert!(traces.len() <= 1, "one trace across the runs: {traces:?}");
        for trace in traces.iter().flatten() {
            assert!(
                TraceParent::parse(trace).is_some(),
                "a valid traceparent: {trace}"
            );
        }
        calls
    }

    /// The attempt numbers the calls of `step` for `trace_id` ran with.
    fn attempts(&self, trace_id: &str, step: &'static str) -> Vec<u32> {
        let attempts = self.attempts.lock().expect("lock");
        attempts
            .get(&(trace_id.to_string(), step))
            .cloned()
            .unwrap_or_default()
    }

    fn effects(&self, trace_id: &str, step: &'static str) -> u32 {
        let effects = self.effects.lock().expect("lock");
        effects
            .get(&(trace_id.to_string(), step))
            .copied()
            .unwrap_or(0)
    }

    /// Asserts the calls and effects of every step of `trace_id`, in the order
    /// reserve, charge, confirm, refund, release.
    #[track_caller]
    fn assert_ran(&self, trace_id: &str, calls: [u32; 5], effects: [u32; 5]) {
        let steps = ["reserve", "charge", "confirm", "refund", "release"];
        let got_calls = steps.map(|s| self.calls(trace_id, s));
        let got_effects = steps.map(|s| self.effects(trace_id, s));
        assert_eq!(
            (got_calls, got_effects),
            (calls, effects),
            "{trace_id}: (calls, effects) of {steps:?}"
        );
    }
}

struct Shop {
    probe: Arc<Probe>,
}

#[saga]
impl Shop {
    #[step(compensate = release)]
    async fn reserve(&self, cx: &SagaContext, order: &Order) -> StepResult<String> {
        self.probe.enter(cx, "reserve").await;
        self.probe.done(cx, "reserve");
        Ok(format!("hold:{}", order.item))
    }
    async fn release(&self, cx: &SagaContext, _reserve: &String) -> StepResult<()> {
        self.probe.enter(cx, "release").await;
        self.probe.done(cx, "release");
        Ok(())
    }

    #[step(compensate = refund)]
    async fn charge(&self, cx: &SagaContext, order: &Order) -> StepResult<u32> {
        self.probe.enter(cx, "charge").await;
        self.probe.done(cx, "charge");
        Ok(if order.item.is_empty() { 0 } else { 100 })
    }
    async fn refund(&self, cx: &SagaContext, _charge: &u32) -> StepResult<()> {
        self.probe.enter(cx, "refund").await;
        self.probe.done(cx, "refund");
        Ok(())
    }

    #[step(pivot)]
    async fn confirm(
        &self,
        cx: &SagaContext,
        order: &Order,
        reserve: &String,
        charge: &u32,
    ) -> StepResult<Receipt> {
        self.probe.enter(cx, "confirm").await;
        if order.fail_confirm {
            return Err(StepError::fatal("confirmation refused (fault injected)"));
        }
        self.probe.done(cx, "confirm");
        Ok(Receipt {
            hold: reserve.clone(),
            paid: *charge,
        })
    }
}

fn name() -> &'static str {
    Shop::description().name
}

fn order(item: &str) -> Order {
    Order {
        item: item.to_string(),
        fail_confirm: false,
    }
}

fn failing(item: &str) -> Order {
    Order {
        item: item.to_string(),
        fail_confirm: true,
    }
}

fn receipt(item: &str) -> Receipt {
    Receipt {
        hold: format!("hold:{item}"),
        paid: 100,
    }
}

fn cx(trace_id: &str) -> SagaContext {
    SagaContext::new(name(), trace_id.to_string()).with_deadline(Some(Instant::now() + WAIT))
}

/// Request metadata the callers on A forward to the saga.
fn tenant() -> Metadata {
    Metadata::from([("tenant", "acme")])
}

fn config(pod: &str) -> OrchestratorConfig {
    OrchestratorConfig {
        pod_id: pod.to_string(),
        lease: LEASE,
        sweep_interval: Some(SWEEP),
        requeue_after: Duration::from_secs(2),
        redelivery_delay: Duration::from_millis(50),
        shutdown_grace: Duration::from_secs(2),
        ..OrchestratorConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Replicas.

/// Where the replicas of a test keep their sagas.
#[derive(Clone)]
enum Stores {
    /// One memory store shared in-process (a run dies, the store survives).
    Memory(Arc<MemoryStore>),
    /// Redis under a prefix: every replica connects its own store instance.
    Redis(String),
}

impl Stores {
    fn memory() -> Self {
        Stores::Memory(Arc::new(MemoryStore::new(StoreConfig::memory())))
    }

    fn redis(test: &str) -> Self {
        Stores::Redis(unique_prefix(test))
    }

    /// A store for one replica (connect it on the replica's runtime).
    async fn connect(self) -> Arc<dyn SagaStore> {
        match self {
            Stores::Memory(store) => store,
            Stores::Redis(prefix) => {
                let config = RedisConfig {
                    key_prefix: prefix,
                    connect_timeout: Duration::from_secs(5),
                    ..RedisConfig::from(StoreConfig::default())
                };
                match RedisStore::connect(REDIS_URL, config).await {
                    Ok(store) => Arc::new(store),
                    Err(e) => panic!(
                        "Redis is unreachable at {REDIS_URL} ({e}); start it with: {START_REDIS}"
                    ),
                }
            }
        }
    }

    async fn cleanup(self) {
        if let Stores::Redis(prefix) = self {
            delete_redis_keys(&prefix).await;
        }
    }
}

/// The broker of the replicas of a test.
#[derive(Clone)]
enum Broker {
    /// One transport shared by every replica (the memory transport, or a wrapper of it).
    Shared(Arc<dyn Transport>),
    /// RabbitMQ: every replica opens its own connection, under this topic prefix.
    RabbitMq(String),
    /// NATS JetStream: every replica opens its own connection, under this topic prefix.
    Nats(String),
}

impl Broker {
    /// A transport for one replica (connect it on the replica's runtime).
    async fn connect(self) -> Arc<dyn Transport> {
        match self {
            Broker::Shared(transport) => transport,
            Broker::RabbitMq(prefix) => Arc::new(rabbitmq(&prefix).await),
            Broker::Nats(prefix) => Arc::new(nats(&prefix).await),
        }
    }

    /// Deletes the queues a RabbitMQ test declared.
    async fn cleanup(self) {
        let (prefix, deleted) = match self {
            Broker::Shared(_) => return,
            Broker::RabbitMq(prefix) => {
                let deleted = rabbitmq(&prefix).await.delete_topology().await;
                (prefix, deleted)
            }
            Broker::Nats(prefix) => {
                let deleted = nats(&prefix).await.delete_topology().await;
                (prefix, deleted)
            }
        };
        if let Err(e) = deleted {
            eprintln!("cleanup: cannot delete the broker topology of {prefix}: {e}");
        }
    }
}

async fn nats(prefix: &str) -> NatsTransport {
    let config = TransportConfig {
        ack_wait: Duration::from_secs(2),
        ..TransportConfig::with_prefix(prefix)
    };
    NatsTransport::connect(NATS_URL, config)
        .await
        .unwrap_or_else(|e| {
            panic!("NATS is unreachable at {NATS_URL} ({e}); start it with: {START_NATS}")
        })
}

async fn rabbitmq(prefix: &str) -> RabbitMqTransport {
    let config = TransportConfig {
        ack_wait: Duration::from_secs(2),
        ..TransportConfig::with_prefix(prefix)
    };
    RabbitMqTransport::connect(RABBITMQ_URL, config)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ is unreachable at {RABBITMQ_URL} ({e}); start it with: {START_RABBITMQ}"
            )
        })
}

fn memory_transport(test: &str) -> Arc<dyn Transport> {
    Arc::new(MemoryTransport::new(TransportConfig::with_prefix(
        unique_prefix(test),
    )))
}

/// The outcomes the completion hook of a replica received, per trace id.
type Hooked = Arc<Mutex<HashMap<String, Vec<Result<Receipt, SagaError>>>>>;

/// A completion hook that appends every outcome to `sink`, by trace id.
fn record_into(
    sink: Hooked,
) -> impl Fn(Completion<Shop>) -> futures_util::future::Ready<()> + Send + Sync + 'static {
    move |completion| {
        sink.lock()
            .expect("lock")
            .entry(completion.trace_id)
            .or_default()
            .push(completion.result);
        futures_util::future::ready(())
    }
}

/// A replica on the test's runtime: its orchestrator, serving, with a completion hook.
struct Replica {
    orchestrator: Orchestrator<Shop>,
    store: Arc<dyn SagaStore>,
    consumers: Option<sagaflow::engine::Consumers>,
    hooked: Hooked,
}

impl Replica {
    async fn serving(
        pod: &str,
        stores: &Stores,
        transport: &Arc<dyn Transport>,
        probe: &Arc<Probe>,
    ) -> Self {
        Self::serving_with(stores, transport, probe, config(pod)).await
    }

    /// A replica over its own connection to `stores`.
    async fn serving_with(
        stores: &Stores,
        transport: &Arc<dyn Transport>,
        probe: &Arc<Probe>,
        config: OrchestratorConfig,
    ) -> Self {
        let store = stores.clone().connect().await;
        Self::over(store, transport, probe, config).await
    }

    /// A replica over `store`.
    async fn over(
        store: Arc<dyn SagaStore>,
        transport: &Arc<dyn Transport>,
        probe: &Arc<Probe>,
        config: OrchestratorConfig,
    ) -> Self {
        let hooked: Hooked = Arc::default();
        let sink = Arc::clone(&hooked);
        let orchestrator = Orchestrator::builder(
            Arc::new(Shop {
                probe: Arc::clone(probe),
            }),
            Arc::clone(transport),
            Arc::clone(&store),
        )
        .config(config)
        .on_complete(record_into(sink))
        .build();
        let consumers = orchestrator.serve().await.expect("consumers start");
        Self {
            orchestrator,
            store,
            consumers: Some(consumers),
            hooked,
        }
    }

    /// How many times the completion hook fired for `trace_id`, and the outcomes it got.
    fn hooked(&self, trace_id: &str) -> Vec<Result<Receipt, SagaError>> {
        self.hooked
            .lock()
            .expect("lock")
            .get(trace_id)
            .cloned()
            .unwrap_or_default()
    }

    async fn record(&self, trace_id: &str) -> SagaRecord {
        self.store
            .get(trace_id)
            .await
            .expect("store answers")
            .unwrap_or_else(|| panic!("no record for {trace_id}"))
    }

    async fn stop(mut self) {
        if let Some(consumers) = self.consumers.take() {
            consumers.shutdown().await;
        }
    }
}

/// Replica A: an orchestrator on a runtime of its own, which the test kills (or stalls)
/// mid-saga.
struct Doomed {
    runtime: tokio::runtime::Runtime,
    orchestrator: Orchestrator<Shop>,
    consumers: Option<sagaflow::engine::Consumers>,
    hooked: Hooked,
}

impl Doomed {
    /// A replica over `stores` (its own connection, on its own runtime) and `transport`. It
    /// does not serve: it only starts sagas (its sweeper would not matter, it dies).
    async fn start(stores: &Stores, broker: &Broker, probe: &Arc<Probe>) -> Self {
        Self::start_with(stores, broker, probe, config("a")).await
    }

    async fn start_with(
        stores: &Stores,
        broker: &Broker,
        probe: &Arc<Probe>,
        config: OrchestratorConfig,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("replica-a")
            .enable_all()
            .build()
            .expect("replica A's runtime");
        let store = runtime
            .spawn(stores.clone().connect())
            .await
            .expect("replica A connects its store");
        let transport = runtime
            .spawn(broker.clone().connect())
            .await
            .expect("replica A connects its broker");
        let transport = &transport;
        let hooked: Hooked = Arc::default();
        let sink = Arc::clone(&hooked);
        let orchestrator = Orchestrator::builder(
            Arc::new(Shop {
                probe: Arc::clone(probe),
            }),
            Arc::clone(transport),
            store,
        )
        .config(config)
        .on_complete(record_into(sink))
        .build();
        Self {
            runtime,
            orchestrator,
            consumers: None,
            hooked,
        }
    }

    /// Starts A's consumers and sweeper, on A's runtime.
    async fn serve(&mut self) {
        let orchestrator = self.orchestrator.clone();
        let consumers = self
            .runtime
            .spawn(async move { orchestrator.serve().await })
            .await
            .expect("A's serve task")
            .expect("A's consumers start");
        self.consumers = Some(consumers);
    }

    /// Stalls A (a stop-the-world pause, a frozen VM): its only worker thread blocks until the
    /// returned sender is used (or dropped). Nothing of A runs meanwhile, lease renewals
    /// included.
    async fn stall(&self) -> std::sync::mpsc::Sender<()> {
        let (resume, stalled) = std::sync::mpsc::channel::<()>();
        let (entered_tx, entered) = tokio::sync::oneshot::channel();
        self.runtime.spawn(async move {
            let _ = entered_tx.send(());
            let _ = stalled.recv();
        });
        bounded("A stalls", entered).await.expect("A stalls");
        resume
    }

    /// Runs a sync saga on A (its caller's task lives on A too), with the request metadata
    /// of [`tenant`].
    fn run_sync(
        &self,
        trace_id: &str,
        input: Order,
    ) -> tokio::task::JoinHandle<Result<Receipt, SagaError>> {
        let orchestrator = self.orchestrator.clone();
        let cx = cx(trace_id).with_metadata(tenant());
        self.runtime
            .spawn(async move { orchestrator.run_sync(&cx, input).await })
    }

    /// Runs a throttled saga on A (its caller waits on A).
    fn run_throttled(
        &self,
        trace_id: &str,
        input: Order,
    ) -> tokio::task::JoinHandle<Result<Receipt, SagaError>> {
        let orchestrator = self.orchestrator.clone();
        let cx = cx(trace_id);
        self.runtime
            .spawn(async move { orchestrator.run_throttled(&cx, input).await })
    }

    /// Starts an async saga on A.
    fn start_async(
        &self,
        trace_id: &str,
        input: Order,
    ) -> tokio::task::JoinHandle<Result<Started, SagaError>> {
        let orchestrator = self.orchestrator.clone();
        let cx = cx(trace_id);
        self.runtime
            .spawn(async move { orchestrator.start(&cx, input).await })
    }

    /// The process dies: every task of A is dropped where it stands.
    fn kill(self) {
        let Doomed {
            runtime,
            orchestrator,
            consumers,
            ..
        } = self;
        runtime.shutdown_background();
        // A crash settles nothing: no graceful unsubscribe, no abort of in-flight deliveries.
        std::mem::forget(consumers);
        drop(orchestrator);
    }
}

/// Waits (bounded by [`WAIT`]) until `condition` holds.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?}: {what}"))
}

#[track_caller]
fn assert_recovered_in_time(what: &str, since: Instant) {
    let took = since.elapsed();
    assert!(
        took <= LEASE + SWEEP + SLACK,
        "{what}: recovered after {took:?}, expected about lease {LEASE:?} + sweep {SWEEP:?}"
    );
}

#[track_caller]
fn assert_compensated_at_confirm(error: &SagaError) {
    match error {
        SagaError::Compensated { step, error, .. } => {
            assert_eq!(step, "confirm");
            assert!(error.message().contains("confirmation refused"), "{error}");
        }
        other => panic!("expected Compensated at confirm, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// (a) A sync saga whose replica died mid-step is finished forward by another replica's sweeper.

async fn a_sync_saga_whose_replica_died_mid_step_is_finished(stores: Stores) {
    let transport = memory_transport("rec-forward");
    let probe = Probe::hanging(&["charge"]);
    let b = Replica::serving("b", &stores, &transport, &probe).await;
    let a = Doomed::start(&stores, &Broker::Shared(Arc::clone(&transport)), &probe).await;
    let id = "forward";
    let caller = a.run_sync(id, order("book"));
    eventually("A runs `charge`", || probe.calls(id, "charge") == 1).await;

    // While A lives it renews its lease: B's sweeper leaves the saga alone.
    tokio::time::sleep(LEASE * 3).await;
    assert_eq!(probe.calls(id, "charge"), 1, "no recovery while A renews");
    let held = b.record(id).await;
    assert!(held.owner.starts_with("a/"), "A holds the saga: {held:?}");
    assert_eq!(held.seq, 1, "reserve is recorded");

    a.kill();
    let died = Instant::now();
    assert!(
        bounded("A's caller", caller).await.is_err(),
        "A's caller died with A"
    );
    let outcome = bounded("the outcome", b.orchestrator.outcome(&cx(id))).await;
    assert_recovered_in_time("forward recovery", died);
    assert_eq!(outcome.expect("the saga completes"), receipt("book"));

    let record = b.record(id).await;
    assert_eq!(
        record.status,
        SagaStatus::Completed {
            output: serde_json::to_value(receipt("book")).expect("json")
        }
    );
    assert_eq!(record.seq, 3, "three transitions");
    assert_eq!(record.state, None);
    // reserve ran once (on A); charge twice (A hung, B ran it), its effect once; confirm once.
    probe.assert_ran(id, [1, 2, 1, 0, 0], [1, 1, 1, 0, 0]);
    // B's run had A's request metadata and the same idempotency key.
    let expected = (format!("{id}/charge"), tenant());
    assert_eq!(
        probe.contexts(id, "charge"),
        vec![expected.clone(), expected]
    );
    assert_eq!(
        probe.contexts(id, "confirm"),
        vec![(format!("{id}/confirm"), tenant())]
    );
    b.stop().await;
    stores.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_saga_whose_replica_died_mid_step_is_finished_memory() {
    a_sync_saga_whose_replica_died_mid_step_is_finished(Stores::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_saga_whose_replica_died_mid_step_is_finished_redis() {
    a_sync_saga_whose_replica_died_mid_step_is_finished(Stores::redis("rec-forward")).await;
}

// ---------------------------------------------------------------------------------------------
// (b) A sync saga whose replica died mid-rollback is compensated by another replica.

async fn a_sync_saga_whose_replica_died_mid_rollback_is_compensated(stores: Stores) {
    let transport = memory_transport("rec-rollback");
    let probe = Probe::hanging(&["refund"]);
    let b = Replica::serving("b", &stores, &transport, &probe).await;
    let a = Doomed::start(&stores, &Broker::Shared(Arc::clone(&transport)), &probe).await;
    let id = "rollback";
    let caller = a.run_sync(id, failing("book"));
    eventually("A runs `refund`", || probe.calls(id, "refund") == 1).await;
    let compensating = b.record(id).await;
    assert!(
        matches!(
            compensating.status,
            SagaStatus::Compensating { step: 1, .. }
        ),
        "{compensating:?}"
    );

    a.kill();
    let died = Instant::now();
    assert!(bounded("A's caller", caller).await.is_err());
    let outcome = bounded("the outcome", b.orchestrator.outcome(&cx(id))).await;
    assert_recovered_in_time("rollback recovery", died);
    assert_compensated_at_confirm(&outcome.expect_err("the saga is compensated"));

    let record = b.record(id).await;
    match &record.status {
        SagaStatus::Failed { error } => {
            assert_compensated_at_confirm(&SagaError::ended(&record.saga, id, error.clone()))
        }
        other => panic!("expected Failed(Compensated), got {other:?}"),
    }
    assert_eq!(record.state, None);
    // Forward steps once each (confirm failed); refund twice (A hung), release once.
    probe.assert_ran(id, [1, 1, 1, 2, 1], [1, 1, 0, 1, 1]);
    let expected = (format!("{id}/charge/compensate"), tenant());
    assert_eq!(
        probe.contexts(id, "refund"),
        vec![expected.clone(), expected]
    );
    b.stop().await;
    stores.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_saga_whose_replica_died_mid_rollback_is_compensated_memory() {
    a_sync_saga_whose_replica_died_mid_rollback_is_compensated(Stores::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_saga_whose_replica_died_mid_rollback_is_compensated_redis() {
    a_sync_saga_whose_replica_died_mid_rollback_is_compensated(Stores::redis("rec-rollback")).await;
}

// ---------------------------------------------------------------------------------------------
// (c) A saga recorded at step 0 whose first message was never published is started by the
// sweeper, with no caller retry.

/// The record `Orchestrator::start` writes before it publishes: step 0, sequence 0, the first
/// message's envelope as the state, queued under `token` for `lease`.
fn stranded_record(trace_id: &str, input: &Order, token: &str, lease: Duration) -> SagaRecord {
    let envelope = Envelope {
        v: FORMAT_VERSION,
        saga: name().to_string(),
        version: 1,
        trace_id: trace_id.to_string(),
        seq: 0,
        metadata: Metadata::new(),
        route: None,
        failure: None,
        state: Shop::start(input.clone()),
    };
    let state = serde_json::to_string(&envelope).expect("the envelope serializes");
    let input = serde_json::to_value(input).expect("json");
    SagaRecord::new(
        trace_id,
        name(),
        fingerprint(name(), &input),
        "reserve",
        Mode::Async,
        state,
        Custody::queued(token, lease),
    )
}

async fn a_stranded_first_message_is_published_by_the_sweeper(stores: Stores) {
    let transport = memory_transport("rec-stranded");
    let probe = Arc::new(Probe::default());
    let b = Replica::serving("b", &stores, &transport, &probe).await;
    let id = "stranded";
    let input = order("stranded");
    let begun = b
        .store
        .begin(stranded_record(id, &input, "dead-pod/0/0", SHORT_LEASE))
        .await
        .expect("begin");
    assert_eq!(begun, Begin::Started);
    let begun_at = Instant::now();
    // Nobody retries: the sweeper publishes the first message once its lease lapsed.
    let outcome = bounded("the outcome", b.orchestrator.outcome(&cx(id))).await;
    assert_recovered_in_time("stranded start", begun_at);
    assert_eq!(outcome.expect("the saga completes"), receipt("stranded"));
    probe.assert_ran(id, [1, 1, 1, 0, 0], [1, 1, 1, 0, 0]);
    eventually("the completion hook", || b.hooked(id).len() == 1).await;
    assert_eq!(b.hooked(id), vec![Ok(receipt("stranded"))]);
    // A caller retrying the id now gets the outcome, and nothing runs again.
    let again = b
        .orchestrator
        .run_sync(&cx(id), input)
        .await
        .expect("the outcome");
    assert_eq!(again, receipt("stranded"));
    probe.assert_ran(id, [1, 1, 1, 0, 0], [1, 1, 1, 0, 0]);
    b.stop().await;
    stores.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranded_first_message_is_published_by_the_sweeper_memory() {
    a_stranded_first_message_is_published_by_the_sweeper(Stores::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranded_first_message_is_published_by_the_sweeper_redis() {
    a_stranded_first_message_is_published_by_the_sweeper(Stores::redis("rec-stranded")).await;
}

/// A transport that records what is published through it, and can hang a publish (a replica
/// about to die), send every message twice (a broker that duplicates) or hold every delivery
/// before its consumer sees it (a broker that is behind).
#[derive(Debug)]
struct Recorder {
    inner: Arc<dyn Transport>,
    published: Mutex<Vec<(String, Message)>>,
    /// (trace id, sequence number, how the consumer settled it) of every delivery.
    delivered: Arc<Mutex<Vec<(String, u64, Disposition)>>>,
    hang: AtomicBool,
    twice: AtomicBool,
    /// False while deliveries are held back from the consumers (open by default).
    open: tokio::sync::watch::Sender<bool>,
}

/// Logs every delivery a consumer settles; holds it back while the gate is closed.
struct Logged {
    inner: Arc<dyn Handler>,
    log: Arc<Mutex<Vec<(String, u64, Disposition)>>>,
    open: tokio::sync::watch::Receiver<bool>,
}

impl Handler for Logged {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Disposition> {
        let trace_id = delivery.trace_id().to_string();
        let seq = serde_json::from_slice::<serde_json::Value>(&delivery.payload)
            .ok()
            .and_then(|envelope| envelope["seq"].as_u64())
            .unwrap_or(u64::MAX);
        let inner = Arc::clone(&self.inner);
        let log = Arc::clone(&self.log);
        let mut open = self.open.clone();
        Box::pin(async move {
            let _ = open.wait_for(|open| *open).await;
            let disposition = inner.handle(delivery).await;
            log.lock()
                .expect("lock")
                .push((trace_id, seq, disposition.clone()));
            disposition
        })
    }
}

impl Recorder {
    fn new(inner: Arc<dyn Transport>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            published: Mutex::default(),
            delivered: Arc::default(),
            hang: AtomicBool::new(false),
            twice: AtomicBool::new(false),
            open: tokio::sync::watch::Sender::new(true),
        })
    }

    /// Holds every delivery back from the consumers (`false`) or lets them through (`true`).
    fn pass_deliveries(&self, open: bool) {
        self.open.send_replace(open);
    }

    /// How many messages of `trace_id` were published.
    fn published_for(&self, trace_id: &str) -> usize {
        self.published
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, message)| {
                message.headers.get(TRACE_ID_HEADER).map(String::as_str) == Some(trace_id)
            })
            .count()
    }

    fn published(&self) -> Vec<(String, Message)> {
        self.published.lock().expect("lock").clone()
    }

    /// The deliveries of `trace_id`'s messages at `seq`, and how each was settled.
    fn delivered(&self, trace_id: &str, seq: u64) -> Vec<Disposition> {
        self.delivered
            .lock()
            .expect("lock")
            .iter()
            .filter(|(id, s, _)| id == trace_id && *s == seq)
            .map(|(_, _, disposition)| disposition.clone())
            .collect()
    }

    fn delivery_count(&self) -> usize {
        self.delivered.lock().expect("lock").len()
    }
}

impl Transport for Recorder {
    fn config(&self) -> &TransportConfig {
        self.inner.config()
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        message: Message,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            self.published
                .lock()
                .expect("lock")
                .push((topic.to_string(), message.clone()));
            if self.twice.load(Ordering::SeqCst) {
                self.inner.publish(topic, message.clone()).await?;
            }
            self.inner.publish(topic, message).await
        })
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        options: SubscribeOptions,
        handler: Arc<dyn Handler>,
    ) -> BoxFuture<'a, Result<Subscription, TransportError>> {
        let logged = Arc::new(Logged {
            inner: handler,
            log: Arc::clone(&self.delivered),
            open: self.open.subscribe(),
        });
        self.inner.subscribe(topic, options, logged)
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        self.inner.ping()
    }
}

/// The same, for real: A's `start` records the saga, then dies while publishing its first
/// message.
async fn a_start_whose_replica_died_while_publishing_is_recovered(stores: Stores) {
    let transport = memory_transport("rec-publish");
    let probe = Arc::new(Probe::default());
    let b = Replica::serving("b", &stores, &transport, &probe).await;
    let hanging = Recorder::new(Arc::clone(&transport));
    hanging.hang.store(true, Ordering::SeqCst);
    let a_transport: Arc<dyn Transport> = hanging.clone();
    // A's queued custody of the first message lasts `requeue_after`.
    let a = Doomed::start_with(
        &stores,
        &Broker::Shared(a_transport),
        &probe,
        OrchestratorConfig {
            requeue_after: LEASE,
            ..config("a")
        },
    )
    .await;
    let id = "unpublished";
    let caller = a.start_async(id, order("unpublished"));
    let recorded = {
        let store = Arc::clone(&b.store);
        async move {
            loop {
                if let Some(record) = store.get(id).await.expect("store answers") {
                    return record;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let record = bounded("A records the saga", recorded).await;
    assert!(record.queued, "{record:?}");
    a.kill();
    let died = Instant::now();
    assert!(bounded("A's caller", caller).await.is_err());
    let outcome = bounded("the outcome", b.orchestrator.outcome(&cx(id))).await;
    assert_recovered_in_time("unpublished start", died);
    assert_eq!(outcome.expect("the saga completes"), receipt("unpublished"));
    probe.assert_ran(id, [1, 1, 1, 0, 0], [1, 1, 1, 0, 0]);
    eventually("the completion hook", || b.hooked(id).len() == 1).await;
    b.stop().await;
    stores.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_whose_replica_died_while_publishing_is_recovered_memory() {
    a_start_whose_replica_died_while_publishing_is_recovered(Stores::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_whose_replica_died_while_publishing_is_recovered_redis() {
    a_start_whose_replica_died_while_publishing_is_recovered(Stores::redis("rec-publish")).await;
}

// ---------------------------------------------------------------------------------------------
// (c') A message that waits on a broker that is behind is published again with a backoff.

/// Regression: the sweeper gave every requeued message a fresh lease of `requeue_after`, so a
/// message nobody claimed (a backlog older than `requeue_after`) was published again every
/// `requeue_after`: about 16 copies over the window below, each a claim round trip and broker
/// work, exactly when the broker is behind. Each re-publication now doubles the next wait
/// (`requeue_after * 2^requeues`, capped by `max_requeue_after`): 4 over the window (at
/// `requeue_after` x 1, 2, 4, 8). Once the broker catches up, the saga runs exactly once.
async fn a_backlogged_message_is_published_again_with_backoff(stores: Stores) {
    const REQUEUE_AFTER: Duration = Duration::from_millis(50);
    let recorder = Recorder::new(memory_transport("rec-backoff"));
    let transport: Arc<dyn Transport> = recorder.clone();
    let probe = Arc::new(Probe::default());
    let b = Replica::serving_with(
        &stores,
        &transport,
        &probe,
        OrchestratorConfig {
            requeue_after: REQUEUE_AFTER,
            sweep_interval: Some(Duration::from_millis(10)),
            ..config("b")
        },
    )
    .await;
    let id = "backlogged";
    // The broker is behind: nothing reaches the consumers.
    recorder.pass_deliveries(false);
    let started = bounded("the start", b.orchestrator.start(&cx(id), order(id))).await;
    assert_eq!(started.expect("start"), Started::New);
    tokio::time::sleep(REQUEUE_AFTER * 16).await;
    let republished = recorder.published_for(id) - 1;
    let record = b.record(id).await;
    assert_eq!(probe.calls(id, "reserve"), 0, "nothing ran yet");
    assert!(
        (2..=5).contains(&republished),
        "re-published {republished} times over 16 x requeue_after (logarithmic: 2 to 5); record: {record:?}"
    );
    // Each re-publication is counted on the record first (one more may be on its way).
    assert!(
        (republished..=republished + 1).contains(&(record.requeues as usize)),
        "requeues {} for {republished} re-publications: {record:?}",
        record.requeues
    );
    // The broker catches up: one copy runs the step, the others are fenced off.
    recorder.pass_deliveries(true);
    let outcome = bounded("the outcome", b.orchestrator.outcome(&cx(id))).await;
    assert_eq!(outcome.expect("the saga completes"), receipt(id));
    probe.assert_ran(id, [1, 1, 1, 0, 0], [1, 1, 1, 0, 0]);
    eventually("the completion hook", || b.hooked(id).len() == 1).await;
    assert_eq!(b.hooked(id), vec![Ok(receipt(id))]);
    assert_eq!(b.record(id).await.requeues, 0, "reset by the transitions");
    b.stop().await;
    stores.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlogged_message_is_published_again_with_backoff_memory() {
    a_backlogged_message_is_published_again_with_backoff(Stores::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlogged_message_is_published_again_with_backoff_redis() {
    a_backlogged_message_is_published_again_with_backoff(Stores::redis("rec-backoff")).await;
}

// ---------------------------------------------------------------------------------------------
// (d) Two replicas' sweepers race for the same expired sagas: each is resumed once.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_sweepers_resume_each_saga_once() {
    const ROUNDS: usize = 5;
    const SAGAS: usize = 4;
    let stores = Stores::redis("rec-race");
    let transport = memory_transport("rec-race");
    let probe = Probe::hanging(&["charge"]);
    let b = Replica::serving("b", &stores, &transport, &probe).await;
    let c = Replica::serving("c", &stores, &transport, &probe).await;
    for round in 0..ROUNDS {
        let a = Doomed::start(&stores, &Broker::Shared(Arc::clone(&transport)), &probe).await;
        let ids: Vec<String> = (0..SAGAS).map(|i| format!("race-{round}-{i}")).collect();
        let callers: Vec<_> = ids.iter().map(|id| a.run_sync(id, order(id))).collect();
        eventually("A runs `charge` of every saga", || {
            ids.iter().all(|id| probe.calls(id, "charge") == 1)
        })
        .await;
        a.kill();
        let died = Instant::now();
        for caller in callers {
            assert!(bounded("A's caller", caller).await.is_err());
        }
        let outcomes = ids.iter().enumerate().map(|(i, id)| {
            // Watch from either replica.
            let orchestrator = if i % 2 == 0 {
                b.orchestrator.clone()
            } else {
                c.orchestrator.clone()
            };
            let id = id.clone();
            async move { (orchestrator.outcome(&cx(&id)).await, id) }
        });
        for (outcome, id) in bounded("the outcomes", join_all(outcomes)).await {
            assert_eq!(outcome.expect("the saga completes"), receipt(&id));
        }
        assert_recovered_in_time("raced recoveries", died);
        for id in &ids {
            // charge: once on A (hung), exactly once more on B or C.
            probe.assert_ran(id, [1, 2, 1, 0, 0], [1, 1, 1, 0, 0]);
        }
    }
    // Give a late second recovery the time to show up, if there were one.
    tokio::time::sleep(LEASE + SWEEP * 2).await;
    for round in 0..ROUNDS {
        for i in 0..SAGAS {
            let id = format!("race-{round}-{i}");
            probe.assert_ran(&id, [1, 2, 1, 0, 0], [1, 1, 1, 0, 0]);
        }
    }
    b.stop().await;
    c.stop().await;
    stores.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// (e) A caller retrying the id of a saga being recovered gets its outcome.

async fn a_caller_retrying_a_saga_being_recovered_gets_the_outcome(stores: Stores) {
    let transport = memory_transport("rec-retry");
    let (ok, bad) = ("retry-ok", "retry-compensated");
    let probe = Probe::hanging(&["retry-ok/charge", "retry-compensated/refund"]);
    let b = Replica::serving("b", &stores, &transport, &probe).await;
    let a = Doomed::start(&stores, &Broker::Shared(Arc::clone(&transport)), &probe).await;
    let callers = [a.run_sync(ok, order(ok)), a.run_sync(bad, failing(bad))];
    eventually("A hangs in both sagas", || {
        probe.calls(ok, "charge") == 1 && probe.calls(bad, "refund") == 1
    })
    .await;
    a.kill();
    let died = Instant::now();
    for caller in callers {
        assert!(bounded("A's caller", caller).await.is_err());
    }
    // The callers retry at once, on B, with the same ids and inputs (the lease has not lapsed
    // yet): they wait for the recovery's outcome, within their deadline.
    let (cx_ok, cx_bad) = (cx(ok), cx(bad));
    let (first, second) = tokio::join!(
        b.orchestrator.run_sync(&cx_ok, order(ok)),
        b.orchestrator.run_sync(&cx_bad, failing(bad)),
    );
    assert_recovered_in_time("retried callers", died);
    assert_eq!(
        first.expect("the retried caller gets the output"),
        receipt(ok)
    );
    assert_compensated_at_confirm(&second.expect_err("the retried caller gets the failure"));
    probe.assert_ran(ok, [1, 2, 1, 0, 0], [1, 1, 1, 0, 0]);
    probe.assert_ran(bad, [1, 1, 1, 2, 1], [1, 1, 0, 1, 1]);
    // Later retries get the outcome at once; another input under the id is refused.
    let again = b.orchestrator.run_sync(&cx(ok), order(ok)).await;
    assert_eq!(again.expect("the outcome"), receipt(ok));
    let refused = b
        .orchestrator
        .run_sync(&cx(ok), order("something else"))
        .await
        .expect_err("another input");
    assert!(matches!(refused, SagaError::IdTaken { .. }), "{refused:?}");
    probe.assert_ran(ok, [1, 2, 1, 0, 0], [1, 1, 1, 0, 0]);
    b.stop().await;
    stores.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_retrying_a_saga_being_recovered_gets_the_outcome_memory() {
    a_caller_retrying_a_saga_being_recovered_gets_the_outcome(Stores::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_retrying_a_saga_being_recovered_gets_the_outcome_redis() {
    a_caller_retrying_a_saga_being_recovered_gets_the_outcome(Stores::redis("rec-retry")).await;
}

// ---------------------------------------------------------------------------------------------
// (f) Duplicate messages are fenced: no step runs again, the hook fires once, the outcome
// never flips.

/// Waits until every message queued before now on the saga's topics was consumed: a fresh
/// saga through every topic completes after them (the queues are FIFO per topic).
async fn drain(replica: &Replica, sentinel: &str) {
    replica
        .orchestrator
        .start(&cx(sentinel), order(sentinel))
        .await
        .expect("start the sentinel");
    let outcome = bounded("the sentinel", replica.orchestrator.outcome(&cx(sentinel))).await;
    assert_eq!(outcome.expect("the sentinel completes"), receipt(sentinel));
}

async fn duplicates_are_fenced(backend: Backend) {
    const SAGAS: usize = 8;
    let backends = Backends::connect(backend, "rec-dup").await;
    let recorder = Recorder::new(Arc::clone(&backends.transport));
    let transport: Arc<dyn Transport> = recorder.clone();
    let probe = Arc::new(Probe::default());
    // Every step takes a while, so two copies of one message overlap.
    probe.delay_ms.store(20, Ordering::SeqCst);
    // The backends' own store: memory for the memory transport, Redis otherwise.
    let replica = Replica::over(
        Arc::clone(&backends.store),
        &transport,
        &probe,
        OrchestratorConfig {
            lease: Duration::from_secs(2),
            ..config("dup")
        },
    )
    .await;

    // 1. Every message published twice at once: each transition runs once.
    recorder.twice.store(true, Ordering::SeqCst);
    let ids: Vec<String> = (0..SAGAS).map(|i| format!("dup-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let input = if i % 2 == 0 { order(id) } else { failing(id) };
        assert_eq!(
            replica
                .orchestrator
                .start(&cx(id), input)
                .await
                .expect("start"),
            Started::New
        );
    }
    let mut outcomes = HashMap::new();
    for id in &ids {
        let outcome = bounded("the outcome", replica.orchestrator.outcome(&cx(id))).await;
        outcomes.insert(id.clone(), outcome);
    }
    recorder.twice.store(false, Ordering::SeqCst);
    let check = |outcomes: &HashMap<String, Result<Receipt, SagaError>>| {
        for (i, id) in ids.iter().enumerate() {
            if i % 2 == 0 {
                assert_eq!(outcomes[id].as_ref().expect("completes"), &receipt(id));
                probe.assert_ran(id, [1, 1, 1, 0, 0], [1, 1, 1, 0, 0]);
            } else {
                assert_compensated_at_confirm(outcomes[id].as_ref().expect_err("compensated"));
                probe.assert_ran(id, [1, 1, 1, 1, 1], [1, 1, 0, 1, 1]);
            }
        }
    };
    check(&outcomes);
    // Both copies of every message reached the consumers (JetStream drops the second copy
    // itself: same `Nats-Msg-Id`) and were acked, none dead-lettered or nacked. (The outcome
    // is out before the consumer settles its delivery: wait for the logs.)
    let copies_delivered = backend != Backend::Nats;
    let copies = if copies_delivered { 2 } else { 1 };
    let mut messages = Vec::new();
    for id in &ids {
        let transitions = replica.record(id).await.seq;
        messages.extend((0..transitions).map(|seq| (id.clone(), seq)));
    }
    // A copy that arrives while its twin runs is held back for a lease (a nack), then acked
    // as stale; nothing is dead-lettered.
    let acks = |id: &String, seq: u64| {
        recorder
            .delivered(id, seq)
            .iter()
            .filter(|d| **d == Disposition::Ack)
            .count()
    };
    eventually("every copy settled", || {
        messages.iter().all(|(id, seq)| acks(id, *seq) >= copies)
    })
    .await;
    for (id, seq) in &messages {
        let settled = recorder.delivered(id, *seq);
        assert!(
            settled
                .iter()
                .all(|d| matches!(d, Disposition::Ack | Disposition::Nack { .. })),
            "{id}@{seq}: {settled:?}"
        );
    }
    drain(&replica, "dup-sentinel-1").await;
    let mut records = HashMap::new();
    for id in &ids {
        assert_eq!(
            replica.hooked(id).len(),
            1,
            "{id}: the completion hook fires once"
        );
        records.insert(id.clone(), replica.record(id).await);
    }
    check(&outcomes);

    // 2. Every message of those sagas published again after they ended (a broker redelivering
    // old messages): nothing runs, nothing changes.
    let published: Vec<(String, Message)> = recorder
        .published()
        .into_iter()
        .filter(|(_, m)| {
            m.headers
                .get(sagaflow::transport::TRACE_ID_HEADER)
                .is_some_and(|id| id.starts_with("dup-") && !id.contains("sentinel"))
        })
        .collect();
    assert!(
        published.len() >= SAGAS * 3,
        "at least three messages per saga: {}",
        published.len()
    );
    let delivered_before = recorder.delivery_count();
    for (topic, message) in &published {
        backends
            .transport
            .publish(topic, message.clone())
            .await
            .expect("publish a stale copy");
    }
    drain(&replica, "dup-sentinel-2").await;
    if copies_delivered {
        eventually("the stale copies delivered and settled", || {
            recorder.delivery_count() >= delivered_before + published.len()
        })
        .await;
    }
    for id in &ids {
        for seq in 0..records[id].seq {
            let settled = recorder.delivered(id, seq);
            // The one nack allowed is the live twin held back for a lease (above).
            assert!(
                settled
                    .iter()
                    .all(|d| matches!(d, Disposition::Ack | Disposition::Nack { .. }))
                    && settled.iter().filter(|d| **d != Disposition::Ack).count() <= 1,
                "{id}@{seq}: stale copies are acked and dropped: {settled:?}"
            );
        }
    }
    check(&outcomes);
    for id in &ids {
        assert_eq!(replica.hooked(id).len(), 1, "{id}: the hook fires once");
        let record = replica.record(id).await;
        assert_eq!(record, records[id], "{id}: the record never changes");
        let outcome = bounded("the outcome", replica.orchestrator.outcome(&cx(id))).await;
        assert_eq!(
            format!("{outcome:?}"),
            format!("{:?}", outcomes[id]),
            "{id}: the outcome never flips"
        );
    }
    replica.stop().await;
    backends.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_fenced_memory() {
    duplicates_are_fenced(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_fenced_rabbitmq() {
    duplicates_are_fenced(Backend::RabbitMq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_fenced_nats() {
    duplicates_are_fenced(Backend::Nats).await;
}

// ---------------------------------------------------------------------------------------------
// (g) An async saga whose consumer died mid-step is published again by the sweeper and
// finished on another replica.

async fn an_async_saga_whose_consumer_died_mid_step_is_recovered(stores: Stores, broker: Broker) {
    let probe = Probe::hanging(&["charge"]);
    let mut a = Doomed::start(&stores, &broker, &probe).await;
    a.serve().await;
    let id = "async-died";
    let started = bounded("A starts the saga", a.start_async(id, order(id))).await;
    assert_eq!(started.expect("A's task").expect("start"), Started::New);
    eventually("A's consumer runs `charge`", || {
        probe.calls(id, "charge") == 1
    })
    .await;
    let a_hooked = Arc::clone(&a.hooked);
    // B serves only now, so A's consumer took the step.
    let transport = broker.clone().connect().await;
    let b = Replica::serving("b", &stores, &transport, &probe).await;
    let held = b.record(id).await;
    assert!(
        held.owner.starts_with("a/") && !held.queued && held.seq == 1,
        "A's consumer holds `charge`: {held:?}"
    );
    a.kill();
    let died = Instant::now();
    let outcome = bounded("the outcome", b.orchestrator.outcome(&cx(id))).await;
    assert_recovered_in_time("async recovery", died);
    assert_eq!(outcome.expect("the saga completes"), receipt(id));
    probe.assert_ran(id, [1, 2, 1, 0, 0], [1, 1, 1, 0, 0]);
    eventually("B's completion hook", || b.hooked(id).len() == 1).await;
    // A copy redelivered from A's connection, if any, is fenced: still one hook call.
    tokio::time::sleep(LEASE).await;
    assert_eq!(b.hooked(id), vec![Ok(receipt(id))]);
    assert!(
        a_hooked.lock().expect("lock").is_empty(),
        "A never ended it"
    );
    probe.assert_ran(id, [1, 2, 1, 0, 0], [1, 1, 1, 0, 0]);
    let record = b.record(id).await;
    assert_eq!(record.seq, 3);
    assert!(record.status.is_final());
    b.stop().await;
    stores.cleanup().await;
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_saga_whose_consumer_died_mid_step_is_recovered_memory() {
    an_async_saga_whose_consumer_died_mid_step_is_recovered(
        Stores::memory(),
        Broker::Shared(memory_transport("rec-async")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_saga_whose_consumer_died_mid_step_is_recovered_rabbitmq() {
    let prefix = unique_prefix("rec-async");
    an_async_saga_whose_consumer_died_mid_step_is_recovered(
        Stores::Redis(prefix.clone()),
        Broker::RabbitMq(prefix),
    )
    .await;
}

/// Fails since the transport-hardening merge (a4a574c): the NATS transport now publishes the
/// engine's message id (`{trace_id}/{seq}`) as `Nats-Msg-Id`, and the sweeper publishes a
/// recovered message again with the *same* id (`sweeper::recover` -> `Runtime::publish`), so
/// JetStream drops it as a duplicate (its duplicate window is minutes). The saga then waits
/// for the dead consumer's unacked delivery to be redelivered after the ack wait
/// (`TransportConfig::ack_wait`: 2 s here, 5 s by default), not `lease` + `sweep_interval`
/// as on the other transports. (The same drop hits every re-publication of the sweeper on
/// NATS, e.g. a queued message whose publisher died after a confirm was lost.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_saga_whose_consumer_died_mid_step_is_recovered_nats() {
    let prefix = unique_prefix("rec-async");
    an_async_saga_whose_consumer_died_mid_step_is_recovered(
        Stores::Redis(prefix.clone()),
        Broker::Nats(prefix),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// (h) A replica that stalls (alive, but frozen past its lease) loses the saga to recovery; when
// it comes back its late write is fenced and its caller gets the one outcome.

/// `step_ends_first`: A's hanging call ends as A comes back (its write is then fenced), or
/// never (A's overdue lease renewal finds the custody lost and abandons the call).
async fn a_stalled_replica_is_fenced_and_its_caller_gets_the_one_outcome(
    stores: Stores,
    step_ends_first: bool,
) {
    let transport = memory_transport("rec-stall");
    let probe = Probe::hanging(&["charge"]);
    let b = Replica::serving("b", &stores, &transport, &probe).await;
    let a = Doomed::start(&stores, &Broker::Shared(Arc::clone(&transport)), &probe).await;
    let id = "stalled";
    let caller = a.run_sync(id, order(id));
    eventually("A runs `charge`", || probe.calls(id, "charge") == 1).await;
    let resume = a.stall().await;
    let stalled = Instant::now();
    let outcome = bounded("the outcome", b.orchestrator.outcome(&cx(id))).await;
    assert_recovered_in_time("recovery from a stalled replica", stalled);
    assert_eq!(outcome.expect("the saga completes"), receipt(id));
    let recorded = b.record(id).await;

    // A comes back. Either its `charge` call finishes (released before A resumes, so it ends
    // before A's overdue renewal can abandon it) and its write is refused, or its renewal
    // finds the custody lost and it abandons the call. Either way it does not go on.
    if step_ends_first {
        probe.release.send_replace(true);
    }
    resume.send(()).expect("A is stalled");
    let result = bounded("A's caller", caller)
        .await
        .expect("A's caller task");
    probe.release.send_replace(true);
    assert_eq!(
        result.expect("A's caller gets the outcome B recorded"),
        receipt(id)
    );
    assert_eq!(
        b.record(id).await,
        recorded,
        "A's late write changed nothing"
    );
    // charge ran twice, and its effect happened twice if A's call was let finish
    // (at-least-once); confirm ran once: A did not go on.
    let charged = if step_ends_first { 2 } else { 1 };
    probe.assert_ran(id, [1, 2, 1, 0, 0], [1, charged, 1, 0, 0]);
    a.kill();
    b.stop().await;
    stores.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_replica_is_fenced_and_its_caller_gets_the_one_outcome_memory() {
    a_stalled_replica_is_fenced_and_its_caller_gets_the_one_outcome(Stores::memory(), true).await;
    a_stalled_replica_is_fenced_and_its_caller_gets_the_one_outcome(Stores::memory(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_replica_is_fenced_and_its_caller_gets_the_one_outcome_redis() {
    a_stalled_replica_is_fenced_and_its_caller_gets_the_one_outcome(
        Stores::redis("rec-stall"),
        true,
    )
    .await;
    a_stalled_replica_is_fenced_and_its_caller_gets_the_one_outcome(
        Stores::redis("rec-stall"),
        false,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// (i) A writer whose final write failed in an outage, while another replica took the saga over
// and recorded its end, must report the recorded outcome, not its own.

/// A store in front of a memory store that plays one outage: the next final write of a saga
/// is not applied and fails; meanwhile (the writer's lease lapsed) another replica takes the
/// saga over and records `takeover` as its end.
#[derive(Debug)]
struct Outage {
    inner: Arc<dyn SagaStore>,
    takeover: Mutex<Option<SagaStatus>>,
    /// Instead: the next final write is applied, but its reply is lost.
    lose_reply: AtomicBool,
}

store_with_advance!(Outage, |this, advance| {
    Box::pin(async move {
        let takeover = if advance.status.is_final() {
            this.takeover.lock().expect("lock").take()
        } else {
            None
        };
        if advance.status.is_final() && this.lose_reply.swap(false, Ordering::SeqCst) {
            this.inner.advance(advance).await?;
            return Err(StoreError::new(
                "memory",
                StoreErrorKind::Unavailable,
                "reply lost (injected outage)",
            ));
        }
        let Some(status) = takeover else {
            return this.inner.advance(advance).await;
        };
        let other = "other-replica/0/0";
        let hold = Hold {
            trace_id: advance.trace_id,
            saga: advance.saga,
            seq: advance.seq,
            token: advance.token,
            custody: Custody::held(other, Duration::from_secs(60)),
            refund_attempt: false,
            requeued: false,
            history: &[],
        };
        assert_eq!(this.inner.hold(hold).await?, Written::Done);
        let ended = Advance {
            token: other,
            status,
            state: None,
            ..advance
        };
        assert_eq!(this.inner.advance(ended).await?, Written::Done);
        Err(StoreError::new(
            "memory",
            StoreErrorKind::Unavailable,
            "connection reset (injected outage)",
        ))
    })
});

/// The end the other replica records: its run of `confirm` was refused.
fn refused_elsewhere(trace_id: &str) -> SagaError {
    SagaError::Compensated {
        saga: name().to_string(),
        trace_id: trace_id.to_string(),
        step: "confirm".to_string(),
        error: StepError::fatal("confirmation refused on the other replica"),
    }
}

/// An orchestrator over an [`Outage`] store whose takeover ends `trace_id` compensated.
fn behind_an_outage(
    trace_id: &str,
    probe: &Arc<Probe>,
    transport: &Arc<dyn Transport>,
) -> (Arc<dyn SagaStore>, OrchestratorBuilder<Shop>) {
    let inner: Arc<dyn SagaStore> = Arc::new(MemoryStore::default());
    let store = Arc::new(Outage {
        inner: Arc::clone(&inner),
        takeover: Mutex::new(Some(SagaStatus::Failed {
            error: refused_elsewhere(trace_id).failure().expect("an ending"),
        })),
        lose_reply: AtomicBool::new(false),
    });
    let orchestrator = Orchestrator::builder(
        Arc::new(Shop {
            probe: Arc::clone(probe),
        }),
        Arc::clone(transport),
        store,
    )
    .config(config("w"));
    (inner, orchestrator)
}

/// Regression: `Runtime::advance` once retried the failed write, got `Finished`, read the
/// record final at `seq + 1` and counted that as its own write applied (whoever wrote it), so
/// the sync caller got its own `Ok` while the store said compensated. A retried final write
/// now adopts only its own status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_writer_whose_final_write_failed_reports_the_recorded_outcome() {
    let id = "outage-sync";
    let probe = Arc::new(Probe::default());
    let transport = memory_transport("rec-outage");
    let (store, orchestrator) = behind_an_outage(id, &probe, &transport);
    let orchestrator = orchestrator.build();
    let result = bounded("the caller", orchestrator.run_sync(&cx(id), order(id))).await;
    let record = store.get(id).await.expect("get").expect("record");
    assert_eq!(
        record.status,
        SagaStatus::Failed {
            error: refused_elsewhere(id).failure().expect("an ending")
        },
        "the other replica's end is recorded"
    );
    assert_eq!(
        result,
        Err(refused_elsewhere(id)),
        "the caller must get the recorded outcome, not a forked one"
    );
}

/// The same in async mode: the completion hook of the writer must not report an end the store
/// does not hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_writer_whose_final_write_failed_reports_the_recorded_outcome() {
    let id = "outage-async";
    let probe = Arc::new(Probe::default());
    let transport = memory_transport("rec-outage");
    let (store, orchestrator) = behind_an_outage(id, &probe, &transport);
    let hooked: Hooked = Arc::default();
    let sink = Arc::clone(&hooked);
    let orchestrator = orchestrator.on_complete(record_into(sink)).build();
    let consumers = orchestrator.serve().await.expect("consumers start");
    orchestrator.start(&cx(id), order(id)).await.expect("start");
    let outcome = bounded("the outcome", orchestrator.outcome(&cx(id))).await;
    assert_eq!(outcome, Err(refused_elsewhere(id)), "the recorded end");
    let record = store.get(id).await.expect("get").expect("record");
    assert_eq!(record.status.outcome().map(|o| o.is_err()), Some(true));
    // Let the writer's retry finish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hooked = hooked
        .lock()
        .expect("lock")
        .get(id)
        .cloned()
        .unwrap_or_default();
    assert!(
        hooked
            .iter()
            .all(|result| *result == Err(refused_elsewhere(id))),
        "the hook reported an end the store does not hold: {hooked:?}"
    );
    consumers.shutdown().await;
}

/// The case the retry is for: the final write was applied and only its reply was lost. The
/// writer counts it as its own and reports it (a fix of the test above must keep this).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_final_reply_was_lost_reports_its_outcome() {
    let id = "lost-reply";
    let probe = Arc::new(Probe::default());
    let inner: Arc<dyn SagaStore> = Arc::new(MemoryStore::default());
    let store = Arc::new(Outage {
        inner: Arc::clone(&inner),
        takeover: Mutex::new(None),
        lose_reply: AtomicBool::new(true),
    });
    let orchestrator = Orchestrator::new(
        Arc::new(Shop {
            probe: Arc::clone(&probe),
        }),
        memory_transport("rec-lost-reply"),
        store.clone(),
        config("w"),
    );
    let result = bounded("the caller", orchestrator.run_sync(&cx(id), order(id))).await;
    assert_eq!(result.expect("completes"), receipt(id));
    assert!(
        !store.lose_reply.load(Ordering::SeqCst),
        "the reply was lost"
    );
    let record = inner.get(id).await.expect("get").expect("record");
    assert_eq!(
        record.status,
        SagaStatus::Completed {
            output: serde_json::to_value(receipt(id)).expect("json")
        }
    );
    probe.assert_ran(id, [1, 1, 1, 0, 0], [1, 1, 1, 0, 0]);
}

// ---------------------------------------------------------------------------------------------
// (j) A throttled saga routed to its pod's own topics (pod-affine) whose pod died is finished by
// another pod.

/// Regression: the sweeper once republished the recovered saga with the route stored in its
/// envelope (`{topic}.a`, the dead pod's topics), which only pod `a` consumes
/// (`sweeper::recover` -> `Runtime::publish(.., route, ..)`). With a shared store the saga is
/// recovered into a queue nobody reads, re-published every `requeue_after`, and never ends
/// (unless a pod named `a` came back). It now carries it on the recovering pod's topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_affine_saga_whose_pod_died_is_finished_by_another_pod() {
    let stores = Stores::redis("rec-affine");
    let transport = memory_transport("rec-affine");
    let probe = Probe::hanging(&["charge"]);
    let affine = |pod: &str| OrchestratorConfig {
        throttled_routing: Routing::PodAffine,
        ..config(pod)
    };
    let mut a = Doomed::start_with(
        &stores,
        &Broker::Shared(Arc::clone(&transport)),
        &probe,
        affine("a"),
    )
    .await;
    a.serve().await;
    let id = "affine";
    let caller = a.run_throttled(id, order(id));
    eventually("A's consumer runs `charge`", || {
        probe.calls(id, "charge") == 1
    })
    .await;
    let b = Replica::serving_with(&stores, &transport, &probe, affine("b")).await;
    a.kill();
    assert!(bounded("A's caller", caller).await.is_err());
    let deadline = LEASE + SWEEP + SLACK * 2;
    let outcome = tokio::time::timeout(deadline, b.orchestrator.outcome(&cx(id))).await;
    let record = b.record(id).await;
    assert!(
        matches!(outcome, Ok(Ok(_))),
        "not finished within {deadline:?}: {outcome:?}; record: {record:?}"
    );
    probe.assert_ran(id, [1, 2, 1, 0, 0], [1, 1, 1, 0, 0]);
    b.stop().await;
    stores.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// (k) The attempt number a step sees counts its executions, not the sweeper's re-publications.

/// Fails today: the sweeper's recovery claim of an async saga adds one to the record's
/// attempts (`SagaStore::claim` counts every claim) although it only publishes the message
/// again, and the consumer's claim adds another. The first execution of a stranded step runs as
/// attempt 2, and the execution after a consumer died as attempt 3. Each re-publication eats
/// into the step's retry budget (`RetryPolicy::delay_after(attempt)`): with the default 3
/// attempts, a stranded step that fails twice with a retryable error is compensated after two
/// executions instead of retried a third time, and a message re-published `max_attempts` times
/// (a backlog longer than `max_attempts * requeue_after`) gets no retry at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_step_counts_executions_not_republications() {
    let stores = Stores::memory();
    let transport = memory_transport("rec-attempts");
    let probe = Probe::hanging(&["died/charge"]);

    // A consumer that died mid-step: its execution was attempt 1, the next is attempt 2.
    let mut a = Doomed::start(&stores, &Broker::Shared(Arc::clone(&transport)), &probe).await;
    a.serve().await;
    let started = bounded("A starts", a.start_async("died", order("died"))).await;
    assert_eq!(started.expect("A's task").expect("start"), Started::New);
    eventually("A's consumer runs `charge`", || {
        probe.calls("died", "charge") == 1
    })
    .await;
    let b = Replica::serving("b", &stores, &transport, &probe).await;
    a.kill();
    let outcome = bounded("the outcome", b.orchestrator.outcome(&cx("died"))).await;
    assert_eq!(outcome.expect("completes"), receipt("died"));

    // A first message never published: its first execution is attempt 1.
    let input = order("stranded");
    let record = stranded_record("stranded", &input, "dead-pod/0/0", SHORT_LEASE);
    assert_eq!(b.store.begin(record).await.expect("begin"), Begin::Started);
    let outcome = bounded("the outcome", b.orchestrator.outcome(&cx("stranded"))).await;
    assert_eq!(outcome.expect("completes"), receipt("stranded"));

    assert_eq!(
        (
            probe.attempts("died", "charge"),
            probe.attempts("stranded", "reserve")
        ),
        (vec![1, 2], vec![1]),
        "attempt numbers of (the step whose consumer died, the stranded first step)"
    );
    b.stop().await;
    stores.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// (l) A poison step that kills every replica that runs it is not retried forever.

/// Every death of a consumer ends in the sweeper publishing the message again, as a new
/// message (delivery count 1, so `max_deliveries` never trips); the store's attempt count,
/// which every executing claim raises, bounds it: a transition past its policy's attempts is
/// given up before it runs. Here three replicas die in turn in `charge` (its retry budget is 3
/// attempts, `max_deliveries` 10); a fourth, healthy replica ends the saga without running
/// `charge` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_step_that_kills_every_replica_is_not_retried_forever() {
    const DEATHS: u32 = 3;
    let stores = Stores::memory();
    let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new(TransportConfig {
        max_deliveries: 10,
        ..TransportConfig::with_prefix(unique_prefix("rec-poison"))
    }));
    let broker = Broker::Shared(Arc::clone(&transport));
    let probe = Arc::new(Probe::default());
    probe
        .hang_always
        .lock()
        .expect("lock")
        .insert("charge".to_string());
    let id = "poison";
    for death in 1..=DEATHS {
        let mut replica = Doomed::start(&stores, &broker, &probe).await;
        replica.serve().await;
        if death == 1 {
            let started = bounded("start", replica.start_async(id, order(id))).await;
            assert_eq!(started.expect("task").expect("start"), Started::New);
        }
        eventually("a replica runs `charge`", || {
            probe.calls(id, "charge") == death
        })
        .await;
        replica.kill();
    }
    // A healthy replica now: the saga should have been given up by now, not run again.
    probe.hang_always.lock().expect("lock").clear();
    let b = Replica::serving("b", &stores, &transport, &probe).await;
    let outcome = bounded("the outcome", b.orchestrator.outcome(&cx(id))).await;
    let record = b.record(id).await;
    assert_eq!(
        probe.calls(id, "charge"),
        DEATHS,
        "charge ran again after {DEATHS} replicas died in it: outcome {outcome:?}, record {record:?}",
    );
    assert!(
        outcome.is_err(),
        "the saga gave up on `charge`: {outcome:?}"
    );
    b.stop().await;
}
