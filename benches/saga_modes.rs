//! Saga-mode benchmark (issue 4): the booking-shaped saga (two no-op steps; the fault path
//! fails step 2 and compensates step 1) through [`Orchestrator`] in each mode, per transport
//! with its store: memory + memory store, RabbitMQ + Redis, NATS JetStream + Redis, against the
//! servers on 127.0.0.1 under a unique prefix that is removed at the end.
//!
//! Per transport, mode and path it prints sagas/s with `--in-flight` sagas (default 50) in
//! flight for `--duration`, and the p50/p99 latency of `--sagas` sagas run one after another.
//! With `--profile` it also prints, for the sequential runs, how many store operations and
//! broker publishes one saga costs and their mean time (a counting wrapper around the store
//! and the transport).
//!
//! - sync: `run_sync` (store records, no broker; compensation inline);
//! - async: `start`, then the completion hook receives the outcome;
//! - throttled: `run_throttled` (start, steps through the topics, outcome through the watcher).
//!
//! Run: `cargo bench --bench saga_modes -- --transports memory,rabbitmq,nats --duration 5s`
//! (`-- --help` lists the flags). `--metrics-addr 127.0.0.1:9100` installs the Prometheus
//! exporter first (so the run pays for real metrics), and at the end scrapes `/metrics` and
//! checks that the end counters add up to the sagas run; `--trace` installs a log subscriber
//! so the engine's spans are built.

#[path = "../tests/common/backends.rs"]
#[allow(dead_code)]
mod backends;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backends::{Backend, Backends};
use clap::{Parser, ValueEnum};
use futures_util::future::BoxFuture;
use hdrhistogram::Histogram;
use sagaflow::engine::{Consumers, Orchestrator, OrchestratorConfig};
use sagaflow::store::{
    Advance, Begin, Claim, Claimed, HistoryEntry, Hold, ListQuery, Outcome, Reopen, SagaPage,
    SagaRecord, SagaStore, StoreConfig, StoreError, Written,
};
use sagaflow::transport::{
    Handler, Message, SubscribeOptions, Subscription, Transport, TransportConfig, TransportError,
};
use sagaflow::{Saga, SagaContext, SagaError, StepError, StepResult, saga};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

// ---------------------------------------------------------------------------------------------
// The saga: the booking example's shape with no-op steps.

/// What to book; `fault` makes the payment fail for good.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct BookingInput {
    product_id: i64,
    fault: bool,
}

/// The saga's output.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Booked {
    order_id: i64,
    payment_id: i64,
}

struct BenchBooking;

#[saga]
impl BenchBooking {
    #[step(compensate = cancel_order)]
    async fn create_order(&self, _cx: &SagaContext, req: &BookingInput) -> StepResult<i64> {
        Ok(req.product_id)
    }
    async fn cancel_order(&self, _cx: &SagaContext, _order: &i64) -> StepResult<()> {
        Ok(())
    }

    #[step(compensate = refund)]
    async fn create_payment(
        &self,
        _cx: &SagaContext,
        req: &BookingInput,
        create_order: &i64,
    ) -> StepResult<Booked> {
        if req.fault {
            return Err(StepError::fatal("payment declined (fault injected)"));
        }
        Ok(Booked {
            order_id: *create_order,
            payment_id: *create_order + 1,
        })
    }
    async fn refund(&self, _cx: &SagaContext, _payment: &Booked) -> StepResult<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Flags.

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TransportArg {
    Memory,
    Rabbitmq,
    Nats,
}

impl TransportArg {
    fn backend(self) -> Backend {
        match self {
            Self::Memory => Backend::Memory,
            Self::Rabbitmq => Backend::RabbitMq,
            Self::Nats => Backend::Nats,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Memory => "memory+memory",
            Self::Rabbitmq => "rabbitmq+redis",
            Self::Nats => "nats+redis",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Sync,
    Async,
    Throttled,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sync => "sync",
            Self::Async => "async",
            Self::Throttled => "throttled",
        })
    }
}

/// Saga-mode benchmark: sagas/s with N in flight and sequential p50/p99 per transport and mode.
#[derive(Debug, Parser)]
#[command(name = "saga_modes")]
struct Args {
    /// Transports to run (each with its store: memory, or Redis for the brokers).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "memory,rabbitmq,nats"
    )]
    transports: Vec<TransportArg>,
    /// Modes to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sync,async,throttled"
    )]
    modes: Vec<Mode>,
    /// Sagas run one after another for the latency percentiles (per transport, mode, path).
    #[arg(long, default_value_t = 1000)]
    sagas: usize,
    /// How long each throughput run lasts (e.g. 5s, 500ms).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Sagas in flight at once in the throughput runs.
    #[arg(long, default_value_t = 50)]
    in_flight: usize,
    /// Consumer concurrency of each saga topic (async and throttled modes).
    #[arg(long, default_value_t = 64)]
    consumer_concurrency: usize,
    /// Skip the fault path (step 2 fails, step 1 is compensated).
    #[arg(long)]
    no_fault: bool,
    /// Also print the store operations and publishes per saga of the sequential runs.
    #[arg(long)]
    profile: bool,
    /// Install the Prometheus exporter serving `/metrics` on this address (e.g.
    /// `127.0.0.1:9100`) before the orchestrators are built, and at the end scrape it and check
    /// that the end counters add up to the sagas run.
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// History entries kept per saga (`StoreConfig::history_limit`; 0 turns the history off,
    /// to measure what it costs).
    #[arg(long, default_value_t = 100)]
    history_limit: usize,
    /// Install a log subscriber at `info` (stderr), so the engine's `saga` and `transition`
    /// spans are created, as in a service that logs.
    #[arg(long)]
    trace: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

// ---------------------------------------------------------------------------------------------
// Counting wrappers: how many store operations and publishes one saga costs, and their time.

/// Calls and total time per operation name.
#[derive(Debug, Default)]
struct Ops(Mutex<BTreeMap<&'static str, (u64, Duration)>>);

impl Ops {
    async fn time<T>(&self, name: &'static str, op: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let value = op.await;
        let took = started.elapsed();
        if let Ok(mut ops) = self.0.lock() {
            let entry = ops.entry(name).or_default();
            entry.0 += 1;
            entry.1 += took;
        }
        value
    }

    fn take(&self) -> BTreeMap<&'static str, (u64, Duration)> {
        self.0
            .lock()
            .map(|mut ops| std::mem::take(&mut *ops))
            .unwrap_or_default()
    }
}

#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn SagaStore>,
    ops: Arc<Ops>,
}

impl SagaStore for CountingStore {
    fn begin(&self, record: SagaRecord) -> BoxFuture<'_, Result<Begin, StoreError>> {
        Box::pin(self.ops.time("store.begin", self.inner.begin(record)))
    }
    fn claim<'a>(&'a self, claim: Claim<'a>) -> BoxFuture<'a, Result<Claimed, StoreError>> {
        Box::pin(self.ops.time("store.claim", self.inner.claim(claim)))
    }
    fn advance<'a>(&'a self, advance: Advance<'a>) -> BoxFuture<'a, Result<Written, StoreError>> {
        let name = if advance.status.is_final() {
            "store.advance(final)"
        } else {
            "store.advance(progress)"
        };
        Box::pin(self.ops.time(name, self.inner.advance(advance)))
    }
    fn hold<'a>(&'a self, hold: Hold<'a>) -> BoxFuture<'a, Result<Written, StoreError>> {
        Box::pin(self.ops.time("store.hold", self.inner.hold(hold)))
    }
    fn expired<'a>(
        &'a self,
        saga: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(
            self.ops
                .time("store.expired", self.inner.expired(saga, limit)),
        )
    }
    fn get<'a>(
        &'a self,
        trace_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SagaRecord>, StoreError>> {
        Box::pin(self.ops.time("store.get", self.inner.get(trace_id)))
    }
    fn watch<'a>(&'a self, trace_id: &'a str) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        // Counted, not timed: a watch lasts until the saga ends.
        Box::pin(async move {
            self.ops.time("store.watch", async {}).await;
            self.inner.watch(trace_id).await
        })
    }
    fn remove<'a>(&'a self, trace_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.ops.time("store.remove", self.inner.remove(trace_id)))
    }
    fn history<'a>(
        &'a self,
        trace_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<HistoryEntry>, StoreError>> {
        Box::pin(self.ops.time("store.history", self.inner.history(trace_id)))
    }

    fn list<'a>(&'a self, query: &'a ListQuery) -> BoxFuture<'a, Result<SagaPage, StoreError>> {
        Box::pin(self.ops.time("store.list", self.inner.list(query)))
    }

    fn reopen<'a>(&'a self, reopen: Reopen<'a>) -> BoxFuture<'a, Result<Written, StoreError>> {
        Box::pin(self.ops.time("store.reopen", self.inner.reopen(reopen)))
    }

    fn request_compensation<'a>(
        &'a self,
        trace_id: &'a str,
        entry: HistoryEntry,
    ) -> BoxFuture<'a, Result<Written, StoreError>> {
        Box::pin(self.ops.time(
            "store.request_compensation",
            self.inner.request_compensation(trace_id, entry),
        ))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.ping()
    }
}

#[derive(Debug)]
struct CountingTransport {
    inner: Arc<dyn Transport>,
    ops: Arc<Ops>,
}

impl Transport for CountingTransport {
    fn config(&self) -> &TransportConfig {
        self.inner.config()
    }
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        message: Message,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(
            self.ops
                .time("broker.publish", self.inner.publish(topic, message)),
        )
    }
    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        options: SubscribeOptions,
        handler: Arc<dyn Handler>,
    ) -> BoxFuture<'a, Result<Subscription, TransportError>> {
        self.inner.subscribe(topic, options, handler)
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        self.inner.ping()
    }
}

// ---------------------------------------------------------------------------------------------
// One transport: the orchestrator, its consumers, and the completion hook's waiters.

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<bool>>>>;

struct Rig {
    orchestrator: Orchestrator<BenchBooking>,
    waiters: Waiters,
    ops: Arc<Ops>,
    next: AtomicU64,
    prefix: String,
}

const WAIT: Duration = Duration::from_secs(20);

/// Sagas started by the bench, for the `--metrics-addr` check.
static SAGAS_RUN: AtomicU64 = AtomicU64::new(0);

impl Rig {
    async fn start(backends: &Backends) -> (Self, Consumers) {
        let ops = Arc::new(Ops::default());
        let store = Arc::new(CountingStore {
            inner: Arc::clone(&backends.store),
            ops: Arc::clone(&ops),
        });
        let transport = Arc::new(CountingTransport {
            inner: Arc::clone(&backends.transport),
            ops: Arc::clone(&ops),
        });
        let config = OrchestratorConfig {
            redelivery_delay: Duration::from_millis(50),
            ..OrchestratorConfig::default()
        };
        let waiters: Waiters = Arc::default();
        let hook_waiters = Arc::clone(&waiters);
        let orchestrator = Orchestrator::builder(Arc::new(BenchBooking), transport, store)
            .config(config)
            .on_complete(move |completion| {
                let waiter = hook_waiters
                    .lock()
                    .ok()
                    .and_then(|mut w| w.remove(&completion.trace_id));
                async move {
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(completion.result.is_ok());
                    }
                }
            })
            .build();
        let consumers = orchestrator.serve().await.expect("saga consumers start");
        let rig = Self {
            orchestrator,
            waiters,
            ops,
            next: AtomicU64::new(0),
            prefix: backends.prefix.clone(),
        };
        (rig, consumers)
    }

    /// Runs one saga to its end in `mode`; `Err` when it ended otherwise than expected.
    async fn one(&self, mode: Mode, fault: bool) -> Result<(), String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        SAGAS_RUN.fetch_add(1, Ordering::Relaxed);
        let trace_id = format!("{}-{mode}-{n}", self.prefix);
        let cx = SagaContext::new(BenchBooking::description().name, trace_id.clone())
            .with_deadline(Some(Instant::now() + WAIT));
        let input = BookingInput {
            product_id: 1 + (n as i64 % 1000),
            fault,
        };
        let ok = match mode {
            Mode::Sync => expected(self.orchestrator.run_sync(&cx, input).await, fault)?,
            Mode::Throttled => {
                let result = self.orchestrator.run_throttled(&cx, input).await;
                if let Err(SagaError::DeadlineExceeded { .. }) = &result {
                    let record = self.orchestrator.store().get(&trace_id).await;
                    let status = record.map(|r| r.map(|r| r.status));
                    return Err(format!(
                        "{trace_id}: no outcome in time; store says {status:?}"
                    ));
                }
                expected(result, fault)?
            }
            Mode::Async => {
                let (tx, rx) = oneshot::channel();
                if let Ok(mut waiters) = self.waiters.lock() {
                    waiters.insert(trace_id.clone(), tx);
                }
                self.orchestrator
                    .start(&cx, input)
                    .await
                    .map_err(|e| format!("start: {e}"))?;
                match tokio::time::timeout(WAIT, rx).await {
                    Ok(Ok(ok)) => ok != fault,
                    _ => return Err(format!("no completion for {trace_id} within {WAIT:?}")),
                }
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{trace_id} ended otherwise than expected"))
        }
    }
}

/// Whether a waited-for result is the one the path expects (ok, or compensated at payment).
fn expected(result: Result<Booked, SagaError>, fault: bool) -> Result<bool, String> {
    match (result, fault) {
        (Ok(_), false) => Ok(true),
        (Err(SagaError::Compensated { .. }), true) => Ok(true),
        (Err(e), _) => Err(e.to_string()),
        (Ok(_), true) => Ok(false),
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements.

struct Row {
    transport: &'static str,
    mode: Mode,
    fault: bool,
    per_s: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
    profile: BTreeMap<&'static str, (u64, Duration)>,
    sequential: usize,
}

/// Sagas/s with `in_flight` workers looping until `duration` is over.
async fn throughput(
    rig: &Arc<Rig>,
    mode: Mode,
    fault: bool,
    in_flight: usize,
    duration: Duration,
) -> (f64, u64) {
    let started = Instant::now();
    let end = started + duration;
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let rig = Arc::clone(rig);
            tokio::spawn(async move {
                let (mut done, mut errors) = (0u64, 0u64);
                while Instant::now() < end {
                    match rig.one(mode, fault).await {
                        Ok(()) => done += 1,
                        Err(e) => {
                            errors += 1;
                            if errors == 1 {
                                eprintln!("  error ({mode}): {e}");
                            }
                        }
                    }
                }
                (done, errors)
            })
        })
        .collect();
    let (mut done, mut errors) = (0, 0);
    for worker in workers {
        let (d, e) = worker.await.expect("worker task");
        done += d;
        errors += e;
    }
    (done as f64 / started.elapsed().as_secs_f64(), errors)
}

/// Latencies of `sagas` sagas run one after another.
async fn sequential(rig: &Rig, mode: Mode, fault: bool, sagas: usize) -> (Histogram<u64>, u64) {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut errors = 0;
    for _ in 0..sagas {
        let started = Instant::now();
        if let Err(e) = rig.one(mode, fault).await {
            errors += 1;
            if errors == 1 {
                eprintln!("  error ({mode}): {e}");
            }
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        histogram.saturating_record(micros.max(1));
    }
    (histogram, errors)
}

async fn bench_transport(transport: TransportArg, args: &Args) -> Vec<Row> {
    let store = StoreConfig {
        history_limit: args.history_limit,
        ..StoreConfig::default()
    };
    let backends = Backends::connect_with_store(
        transport.backend(),
        "bench-modes",
        |config| config.default_concurrency = args.consumer_concurrency,
        store,
    )
    .await;
    let (rig, consumers) = Rig::start(&backends).await;
    let rig = Arc::new(rig);
    let mut rows = Vec::new();
    let paths: &[bool] = if args.no_fault {
        &[false]
    } else {
        &[false, true]
    };
    for &mode in &args.modes {
        for &fault in paths {
            // Warm up connections, queues and caches.
            let _ = throughput(
                &rig,
                mode,
                fault,
                args.in_flight,
                Duration::from_millis(300),
            )
            .await;
            let (per_s, throughput_errors) =
                throughput(&rig, mode, fault, args.in_flight, args.duration).await;
            rig.ops.take();
            let (histogram, sequential_errors) = sequential(&rig, mode, fault, args.sagas).await;
            let row = Row {
                transport: transport.label(),
                mode,
                fault,
                per_s,
                p50: Duration::from_micros(histogram.value_at_quantile(0.5)),
                p99: Duration::from_micros(histogram.value_at_quantile(0.99)),
                errors: throughput_errors + sequential_errors,
                profile: rig.ops.take(),
                sequential: args.sagas,
            };
            print_row(&row);
            rows.push(row);
        }
    }
    consumers.shutdown().await;
    drop(rig);
    backends.cleanup().await;
    rows
}

fn print_header() {
    println!(
        "{:<15} {:<10} {:<6} {:>10} {:>10} {:>10} {:>7}",
        "transport", "mode", "path", "sagas/s", "seq p50", "seq p99", "errors"
    );
}

fn print_row(row: &Row) {
    println!(
        "{:<15} {:<10} {:<6} {:>10.0} {:>10} {:>10} {:>7}",
        row.transport,
        row.mode.to_string(),
        if row.fault { "fault" } else { "ok" },
        row.per_s,
        format!("{:.2?}", row.p50),
        format!("{:.2?}", row.p99),
        row.errors
    );
}

fn print_profile(rows: &[Row]) {
    println!(
        "\nper saga in the sequential runs: calls x mean time (time on the critical path or not)"
    );
    for row in rows {
        let n = row.sequential.max(1) as f64;
        let ops: Vec<String> = row
            .profile
            .iter()
            .map(|(name, (calls, total))| {
                let mean = total.checked_div(u32::try_from(*calls).unwrap_or(u32::MAX).max(1));
                format!(
                    "{name} {:.2}x{:.0?}",
                    *calls as f64 / n,
                    mean.unwrap_or_default()
                )
            })
            .collect();
        println!(
            "{:<15} {:<10} {:<6} {}",
            row.transport,
            row.mode.to_string(),
            if row.fault { "fault" } else { "ok" },
            ops.join(", ")
        );
    }
}

/// `GET /metrics` from the exporter at `addr`: the body.
async fn scrape(addr: std::net::SocketAddr) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot reach /metrics on {addr}: {e}"))?;
    let request = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

/// The sum of the samples of counter `name` for the bench's saga in the text format.
fn counter_sum(text: &str, name: &str) -> f64 {
    let saga = format!("saga=\"{}\"", BenchBooking::description().name);
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(&saga))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Scrapes `/metrics` until the end counters reach the sagas run (bounded) and reports them.
async fn check_metrics(addr: std::net::SocketAddr) -> bool {
    use sagaflow::observe::metrics as names;
    let run = SAGAS_RUN.load(Ordering::Relaxed) as f64;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = match scrape(addr).await {
            Ok(text) => text,
            Err(e) => {
                eprintln!("metrics: {e}");
                return false;
            }
        };
        let ends = [
            names::SAGAS_COMPLETED,
            names::SAGAS_COMPENSATED,
            names::SAGAS_STUCK,
            names::SAGAS_INVALID,
        ]
        .map(|name| counter_sum(&text, name));
        let ended: f64 = ends.iter().sum();
        if ended >= run || Instant::now() > deadline {
            println!(
                "metrics: {run} sagas run; /metrics counts {} started, {ended} ended (completed {}, compensated {}, stuck {}, invalid {})",
                counter_sum(&text, names::SAGAS_STARTED),
                ends[0],
                ends[1],
                ends[2],
                ends[3]
            );
            return ended == run;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    if args.trace {
        tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_writer(std::io::stderr)
            .init();
    }
    if let Some(addr) = args.metrics_addr {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(
                    sagaflow::observe::metrics::TRANSITION_DURATION.to_string(),
                ),
                sagaflow::observe::metrics::TRANSITION_BUCKETS,
            )
            .expect("buckets")
            .install()
            .expect("the Prometheus exporter installs");
        sagaflow::observe::metrics::describe();
    }
    println!(
        "saga_modes: {} in flight for {:?} (sagas/s); {} sequential sagas (p50/p99); consumer concurrency {}",
        args.in_flight, args.duration, args.sagas, args.consumer_concurrency
    );
    print_header();
    let mut rows = Vec::new();
    for &transport in &args.transports {
        rows.extend(bench_transport(transport, &args).await);
    }
    if args.profile {
        print_profile(&rows);
    }
    if let Some(addr) = args.metrics_addr
        && !check_metrics(addr).await
    {
        eprintln!("the metrics do not add up to the sagas run");
        std::process::exit(1);
    }
    // Every saga started, warm-ups and sequential runs included: what the CPU and instruction
    // counters of a whole run divide by (benches/cpu_per_saga.sh, benches/instructions_per_saga.sh).
    println!("sagas run: {}", SAGAS_RUN.load(Ordering::Relaxed));
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    if errors > 0 {
        eprintln!("{errors} sagas ended otherwise than expected");
        std::process::exit(1);
    }
}
