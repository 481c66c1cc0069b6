//! Load generator for any server of `pb.BookingService` (issue 5): the sagaflow booking example
//! or the Go framework's server, over plain gRPC with only the proto (no in-process shortcut).
//!
//! `--concurrency` workers send requests back to back for `--duration`, each with its own
//! `x-request-id` (`{prefix}-{run id}-{counter}`, the run id makes reruns unique), a share
//! `--fault-ratio` of them with `FaultInject`. It prints requests, successes, failures by status
//! code (fault-injected requests that failed are counted apart: that is their expected end),
//! sagas/s and p50/p99/max latency. `--upstream-stats` reads the load figures of the example's
//! Order and Payment services (`GetLoad`) before and after, to show the most concurrent calls
//! they saw. `--spawn-example` starts the booking example binary first and stops it at the end.
//!
//! ```sh
//! cargo build --release --example booking
//! cargo bench --bench booking_load -- --rpc throttled --concurrency 50 --duration 10s \
//!     --spawn-example -- --transport nats --store redis
//! ```
//! With `--rpc async` the request figures are for accepted sagas (the RPC answers once the
//! first message is confirmed). `--metrics-url` (the server's Prometheus `/metrics`) adds the
//! end-to-end figures: after the senders stop, the harness polls the saga end counters
//! (completed, compensated, stuck, invalid, summed over their labels) until they grew by the
//! number of accepted sagas (at most `--drain-timeout`), and prints the sagas completed per
//! second from the first request to the last end, and the drain time after the senders
//! stopped. With `--spawn-example` and `--rpc async` it passes `--metrics-addr` to the example
//! itself (on a free loopback port, unless the example arguments give one), and prints the
//! server's CPU time per saga.
//!
//! ```sh
//! cargo bench --bench booking_load -- --rpc async --concurrency 50 --duration 20s \
//!     --spawn-example -- --simulate --transport nats --store redis --topic-prefix e2e-$RANDOM
//! ```

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use booking_proto::order::order_service_client::OrderServiceClient;
use booking_proto::payment::payment_service_client::PaymentServiceClient;
use booking_proto::pb::BookingRequest;
use booking_proto::pb::booking_service_client::BookingServiceClient;
use booking_proto::upstream::{GetLoadRequest, LoadStats};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

use support::example;
use support::prometheus::{SagaCounts, saga_counts};

/// Which RPC of `pb.BookingService` to call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Rpc {
    /// HandleSyncBooking.
    Sync,
    /// HandleAsyncBooking (answers when the saga is accepted).
    Async,
    /// HandleThrottlingBooking.
    Throttled,
}

/// Load generator for a `pb.BookingService` server.
#[derive(Debug, Parser)]
#[command(name = "booking_load")]
struct Args {
    /// The server's URL.
    #[arg(long, default_value = "http://127.0.0.1:10000")]
    addr: String,
    /// Which RPC to call.
    #[arg(long, value_enum, default_value = "sync")]
    rpc: Rpc,
    /// Requests in flight at once (one worker each, back to back).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long to send requests (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Share of requests sent with FaultInject (0..=1).
    #[arg(long, default_value_t = 0.0)]
    fault_ratio: f64,
    /// Deadline of each request (sent as grpc-timeout).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// HTTP/2 connections the workers share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// First part of every x-request-id (`{prefix}-{run id}-{counter}`).
    #[arg(long, default_value = "load")]
    request_id_prefix: String,
    /// Order and Payment service URLs whose GetLoad figures to print (the booking example's).
    #[arg(long, value_delimiter = ',')]
    upstream_stats: Vec<String>,
    /// Start the booking example binary first (default path: target/release/examples/booking)
    /// with the arguments after `--`, wait until it listens, stop it at the end.
    #[arg(long, num_args = 0..=1, default_missing_value = example::DEFAULT_PATH)]
    spawn_example: Option<PathBuf>,
    /// The server's Prometheus page (e.g. `http://127.0.0.1:9100/metrics`): after sending,
    /// wait until the sagas ended (completed, compensated, stuck) reach the accepted ones and
    /// print end-to-end figures. Set by itself with `--spawn-example` and `--rpc async`.
    #[arg(long)]
    metrics_url: Option<String>,
    /// How long to wait after the senders stopped for the accepted sagas to end.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Arguments of the spawned example.
    #[arg(last = true)]
    example_args: Vec<String>,
}

/// What one worker saw.
struct Tally {
    latency: Histogram<u64>,
    ok: u64,
    /// Fault-injected requests that failed (their expected end).
    fault_failed: u64,
    /// Fault-injected requests that succeeded (should not happen).
    fault_succeeded: u64,
    /// Other failures by status code.
    failures: BTreeMap<String, u64>,
    first_failure: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds"),
            ok: 0,
            fault_failed: 0,
            fault_succeeded: 0,
            failures: BTreeMap::new(),
            first_failure: None,
        }
    }

    fn merge(&mut self, other: Tally) {
        let _ = self.latency.add(&other.latency);
        self.ok += other.ok;
        self.fault_failed += other.fault_failed;
        self.fault_succeeded += other.fault_succeeded;
        for (code, n) in other.failures {
            *self.failures.entry(code).or_default() += n;
        }
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }

    fn requests(&self) -> u64 {
        self.ok + self.fault_failed + self.fault_succeeded + self.failures.values().sum::<u64>()
    }
}

/// Whether request `n` carries FaultInject: spread evenly (golden-ratio sequence), so any
/// window of requests has about `ratio` of them.
fn is_fault(n: u64, ratio: f64) -> bool {
    ratio > 0.0 && ((n as f64) * 0.618_033_988_749_895).fract() < ratio
}

struct Plan {
    rpc: Rpc,
    fault_ratio: f64,
    timeout: Duration,
    id_prefix: String,
    next: AtomicU64,
    end: Instant,
}

async fn call(
    client: &mut BookingServiceClient<Channel>,
    plan: &Plan,
    n: u64,
    fault: bool,
) -> Result<(), tonic::Status> {
    let mut request = Request::new(BookingRequest {
        product_id: 1 + (n % 1000) as i64,
        count: 1,
        fault_inject: fault,
    });
    let id = format!("{}-{n}", plan.id_prefix);
    let value = MetadataValue::try_from(id.as_str())
        .map_err(|e| tonic::Status::invalid_argument(format!("bad x-request-id {id}: {e}")))?;
    request.metadata_mut().insert("x-request-id", value);
    request.set_timeout(plan.timeout);
    match plan.rpc {
        Rpc::Sync => client.handle_sync_booking(request).await.map(drop),
        Rpc::Async => client.handle_async_booking(request).await.map(drop),
        Rpc::Throttled => client.handle_throttling_booking(request).await.map(drop),
    }
}

async fn worker(mut client: BookingServiceClient<Channel>, plan: Arc<Plan>) -> Tally {
    let mut tally = Tally::new();
    while Instant::now() < plan.end {
        let n = plan.next.fetch_add(1, Ordering::Relaxed);
        let fault = is_fault(n, plan.fault_ratio);
        let started = Instant::now();
        let result = call(&mut client, &plan, n, fault).await;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        tally.latency.saturating_record(micros.max(1));
        match (result, fault) {
            (Ok(()), false) => tally.ok += 1,
            (Ok(()), true) if plan.rpc == Rpc::Async => tally.ok += 1,
            (Ok(()), true) => tally.fault_succeeded += 1,
            (Err(status), true) if status.code() == Code::FailedPrecondition => {
                tally.fault_failed += 1
            }
            (Err(status), _) => {
                *tally
                    .failures
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1;
                if tally.first_failure.is_none() {
                    tally.first_failure =
                        Some(format!("{:?}: {}", status.code(), status.message()));
                }
            }
        }
    }
    tally
}

async fn upstream_stats(urls: &[String], reset: bool) -> Vec<(String, LoadStats)> {
    let mut stats = Vec::new();
    for url in urls {
        let Ok(endpoint) = Endpoint::from_shared(url.clone()) else {
            eprintln!("upstream stats: bad URL {url}");
            continue;
        };
        let Ok(channel) = endpoint.connect().await else {
            eprintln!("upstream stats: cannot connect to {url}");
            continue;
        };
        let request = GetLoadRequest { reset };
        // The Order and Payment services both serve GetLoad; try one, then the other.
        let figures = match OrderServiceClient::new(channel.clone())
            .get_load(request)
            .await
        {
            Ok(response) => Ok(response.into_inner()),
            Err(_) => PaymentServiceClient::new(channel)
                .get_load(request)
                .await
                .map(|r| r.into_inner()),
        };
        match figures {
            Ok(figures) => stats.push((url.clone(), figures)),
            Err(status) => eprintln!("upstream stats: {url}: {status}"),
        }
    }
    stats
}

fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", nanos % (1 << 48), std::process::id())
}

fn report(args: &Args, total: &Tally, elapsed: Duration) {
    let requests = total.requests();
    let secs = elapsed.as_secs_f64();
    let rate = |n: u64| n as f64 / secs;
    let millis = |q: f64| total.latency.value_at_quantile(q) as f64 / 1000.0;
    let what = if args.rpc == Rpc::Async {
        "accepted"
    } else {
        "completed"
    };
    println!(
        "rpc {:?}, concurrency {}, {:.1}s, fault ratio {}",
        args.rpc, args.concurrency, secs, args.fault_ratio
    );
    println!("requests     {requests} ({:.0}/s)", rate(requests));
    println!(
        "successes    {} ({:.1}%)",
        total.ok,
        100.0 * total.ok as f64 / requests.max(1) as f64
    );
    if args.fault_ratio > 0.0 && args.rpc != Rpc::Async {
        println!(
            "fault-injected: {} compensated as expected (FailedPrecondition), {} succeeded (unexpected)",
            total.fault_failed, total.fault_succeeded
        );
    }
    let failed: u64 = total.failures.values().sum();
    println!("failures     {failed}");
    for (code, n) in &total.failures {
        println!("  {code:<20} {n}");
    }
    if let Some(first) = &total.first_failure {
        println!("  first: {first}");
    }
    println!(
        "sagas/s      {:.0} ({what} as intended: successes + compensated fault-injected)",
        rate(total.ok + total.fault_failed)
    );
    println!(
        "latency ms   p50 {:.2}  p99 {:.2}  max {:.2}",
        millis(0.5),
        millis(0.99),
        total.latency.max() as f64 / 1000.0
    );
}

/// The end-to-end figures: how many of the accepted sagas ended, and when the last did.
struct Drained {
    /// The counters' growth since the run began.
    counts: SagaCounts,
    /// When the ended sagas first reached the accepted ones (or the last poll, if never).
    last_end: Instant,
    /// Whether they did within `--drain-timeout`.
    complete: bool,
}

/// Polls the end counters every 50 ms until `target` sagas ended since `before`, or until
/// `timeout` after the senders stopped.
async fn drain(url: &str, before: &SagaCounts, target: u64, timeout: Duration) -> Drained {
    let deadline = Instant::now() + timeout;
    let mut seen = SagaCounts::default();
    let mut last_end = Instant::now();
    loop {
        match saga_counts(url).await {
            Ok(now) => {
                let counts = now.since(before);
                if counts.ended() > seen.ended() {
                    last_end = Instant::now();
                }
                seen = counts;
                if seen.ended() >= target as f64 {
                    return Drained {
                        counts: seen,
                        last_end,
                        complete: true,
                    };
                }
            }
            Err(e) => eprintln!("booking_load: metrics: {e}"),
        }
        if Instant::now() >= deadline {
            return Drained {
                counts: seen,
                last_end,
                complete: false,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn report_end_to_end(
    drained: &Drained,
    accepted: u64,
    started: Instant,
    senders_stopped: Instant,
    cpu: Option<Duration>,
) {
    let c = &drained.counts;
    let span = drained.last_end.duration_since(started).as_secs_f64();
    let drain = drained
        .last_end
        .saturating_duration_since(senders_stopped)
        .as_secs_f64();
    println!(
        "end to end   accepted {accepted}, started {:.0}; ended {:.0}: completed {:.0}, compensated {:.0}, stuck {:.0}, invalid {:.0}",
        c.started,
        c.ended(),
        c.completed,
        c.compensated,
        c.stuck,
        c.invalid
    );
    if !drained.complete {
        println!(
            "  NOT DRAINED: {:.0} of {accepted} accepted sagas ended by the drain timeout; the rates below are lower bounds",
            c.ended()
        );
    }
    println!(
        "  last end {span:.2}s after the first request; drain {drain:.2}s after the senders stopped"
    );
    println!(
        "completed/s  {:.0} end to end (completed / first request to last end); ended/s {:.0}",
        c.completed / span,
        c.ended() / span
    );
    if let Some(cpu) = cpu.filter(|_| c.ended() > 0.0) {
        println!(
            "server CPU   {:.1}s, {:.0} µs per ended saga (user + system, the spawned example)",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / c.ended()
        );
    }
}

/// User + system CPU time of process `pid` so far (Linux `/proc/<pid>/stat`, 100 ticks/s).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = Args::parse();
    if args.spawn_example.is_some() && args.rpc == Rpc::Async && args.metrics_url.is_none() {
        let addr = match example::flag_value(&args.example_args, "--metrics-addr") {
            Some(addr) => addr.to_string(),
            None => {
                let addr = example::free_addr().to_string();
                args.example_args
                    .extend(["--metrics-addr".to_string(), addr.clone()]);
                addr
            }
        };
        args.metrics_url = Some(format!("http://{addr}/metrics"));
    }
    let mut child: Option<Child> = args
        .spawn_example
        .as_ref()
        .map(|path| example::spawn(path, &args.example_args));

    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        let endpoint = Endpoint::from_shared(args.addr.clone())
            .unwrap_or_else(|e| panic!("bad --addr {}: {e}", args.addr));
        match endpoint.connect().await {
            Ok(channel) => channels.push(channel),
            Err(e) => {
                if let Some(child) = child.as_mut() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                panic!(
                    "cannot connect to {} ({e}); is the server running?",
                    args.addr
                )
            }
        }
    }
    if !args.upstream_stats.is_empty() {
        upstream_stats(&args.upstream_stats, true).await;
    }
    let before = match &args.metrics_url {
        Some(url) => match saga_counts(url).await {
            Ok(counts) => Some(counts),
            Err(e) => {
                eprintln!("booking_load: no end-to-end figures: {e}");
                None
            }
        },
        None => None,
    };
    let cpu_before = child.as_ref().and_then(|c| cpu_time(c.id()));

    let id_prefix = format!("{}-{}", args.request_id_prefix, run_id());
    eprintln!("booking_load: x-request-id prefix {id_prefix}");
    let started = Instant::now();
    let plan = Arc::new(Plan {
        rpc: args.rpc,
        fault_ratio: args.fault_ratio,
        timeout: args.timeout,
        id_prefix,
        next: AtomicU64::new(0),
        end: started + args.duration,
    });
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|i| {
            let client = BookingServiceClient::new(channels[i % channels.len()].clone());
            tokio::spawn(worker(client, Arc::clone(&plan)))
        })
        .collect();
    let mut total = Tally::new();
    for worker in workers {
        total.merge(worker.await.expect("worker task"));
    }
    let senders_stopped = Instant::now();
    let elapsed = senders_stopped.duration_since(started);
    report(&args, &total, elapsed);

    if let (Some(url), Some(before)) = (&args.metrics_url, &before) {
        // Sagas that must end: every accepted one (async), every answered one otherwise.
        let accepted = total.ok + total.fault_failed + total.fault_succeeded;
        let drained = drain(url, before, accepted, args.drain_timeout).await;
        let cpu = match (child.as_ref().and_then(|c| cpu_time(c.id())), cpu_before) {
            (Some(after), Some(before)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        report_end_to_end(&drained, accepted, started, senders_stopped, cpu);
    }

    for (url, stats) in upstream_stats(&args.upstream_stats, false).await {
        println!(
            "upstream {url}: max in flight {}, calls {}, rejected {}",
            stats.max_in_flight, stats.calls, stats.rejected
        );
    }
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
}
