//! Memory per in-flight saga (issue 13): the release booking example's resident memory with
//! N sagas in flight at once, per saga, at several N, and whether it is returned after.
//!
//! It starts the example itself (`--simulate --simulate-latency 3s`: each of the two steps
//! waits 3 s on a timer, so a saga stays in flight 6 s without using CPU), on free loopback
//! ports, with `--metrics-addr`, and
//!
//! 1. warms it up (a few hundred sagas), waits for them to end, and reads its idle RSS
//!    (`VmRSS` of `/proc/<pid>/status`);
//! 2. per level N (5k, 10k, 20k by default), sends N requests at once over a few HTTP/2
//!    connections (one distinct `x-request-id` each), polls the saga counters of `/metrics`
//!    until N sagas are open (`started - ended`, summed over their labels), then reads the
//!    RSS: `(RSS - idle RSS) / open sagas` is the memory per in-flight saga (it includes the
//!    gRPC stream of a sync request and the store record); then it waits for every saga to
//!    end, `--settle`, and reads the RSS again (returned or not);
//! 3. stops the example (only the process it started) and prints one row per level.
//!
//! The ramp must fit in a saga's life (2 x `--simulate-latency`); if sagas end before N are
//! open, the reading is taken at the most open seen and the row says so.
//!
//! ```sh
//! cargo build --release --example booking
//! cargo bench --bench inflight_memory                     # memory transport + memory store
//! cargo bench --bench inflight_memory -- --levels 5000,10000,20000 -- --transport nats --store redis
//! ```
//! `--rpc async` holds the sagas in the async mode instead (the example then gets
//! `--concurrency <largest level>`, so its consumers run them all at once); its requests are
//! sent at most 256 at a time (`--max-streams`), since an accepted async saga holds no request.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use booking_proto::pb::BookingRequest;
use booking_proto::pb::booking_service_client::BookingServiceClient;
use clap::{Parser, ValueEnum};
use tokio::sync::Semaphore;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use support::example;
use support::prometheus::{SagaCounts, saga_counts};

/// How the sagas are held in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Rpc {
    /// HandleSyncBooking: each open request is one saga running.
    Sync,
    /// HandleAsyncBooking: accepted sagas run on the example's consumers.
    Async,
}

/// Memory per in-flight saga of the booking example.
#[derive(Debug, Parser)]
#[command(name = "inflight_memory")]
struct Args {
    /// The booking example binary.
    #[arg(long, default_value = example::DEFAULT_PATH)]
    example: PathBuf,
    /// Sagas held in flight at once, one level after the other.
    #[arg(long, value_delimiter = ',', default_value = "5000,10000,20000")]
    levels: Vec<u64>,
    /// How long each simulated step takes (the example's `--simulate-latency`).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    simulate_latency: Duration,
    /// Which RPC holds the sagas.
    #[arg(long, value_enum, default_value = "sync")]
    rpc: Rpc,
    /// HTTP/2 connections the requests share (with 4, 20k sync requests at once broke the
    /// connections with a transport error: 5,000 streams each).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// The most requests open at once while a level is sent. Default: every request of the
    /// level at once with `--rpc sync` (each open request is a saga in flight), 256 with
    /// `--rpc async` (an accepted async saga holds no request: sending all of them at once
    /// would measure the HTTP/2 server's stream tables, which keep the capacity of the burst,
    /// not the sagas).
    #[arg(long)]
    max_streams: Option<usize>,
    /// Sagas of the warm-up before the idle reading.
    #[arg(long, default_value_t = 500)]
    warmup: u64,
    /// How long to wait after the sagas of a level ended before reading the RSS again.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// The longest wait for a level's sagas to be open, or to end.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// More arguments of the example (`--transport nats --store redis`).
    #[arg(last = true)]
    example_args: Vec<String>,
}

impl Args {
    /// The most requests open at once while `level` requests are sent (see `max_streams`).
    fn streams(&self, level: u64) -> usize {
        let all = usize::try_from(level).unwrap_or(usize::MAX);
        match (self.max_streams, self.rpc) {
            (Some(streams), _) => streams,
            (None, Rpc::Sync) => all,
            (None, Rpc::Async) => all.min(256),
        }
    }
}

/// The example process, killed (and reaped) when dropped: only the process this bench started.
struct Server {
    child: Child,
    metrics: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `VmRSS` of the example, in bytes.
    fn rss(&self) -> u64 {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
    }

    async fn counts(&self) -> SagaCounts {
        saga_counts(&self.metrics)
            .await
            .unwrap_or_else(|e| panic!("cannot read the example's metrics: {e}"))
    }

    /// Waits until no saga is open (at most `wait`); returns whether none is.
    async fn until_idle(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if self.counts().await.open() < 0.5 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// Sends `n` requests, at most `streams` open at once; the handle resolves to how many failed
/// (and the first error).
fn send(
    channels: &[Channel],
    rpc: Rpc,
    prefix: &str,
    next: &Arc<AtomicU64>,
    n: u64,
    streams: usize,
) -> tokio::task::JoinHandle<(u64, Option<String>)> {
    let open = Arc::new(Semaphore::new(streams.max(1)));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut client =
                BookingServiceClient::new(channels[i as usize % channels.len()].clone());
            let id = format!("{prefix}-{}", next.fetch_add(1, Ordering::Relaxed));
            let open = Arc::clone(&open);
            tokio::spawn(async move {
                let _stream = open
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let mut request = Request::new(BookingRequest {
                    product_id: 1,
                    count: 1,
                    fault_inject: false,
                });
                let value = MetadataValue::try_from(id.as_str()).expect("an ascii request id");
                request.metadata_mut().insert("x-request-id", value);
                request.set_timeout(Duration::from_secs(120));
                match rpc {
                    Rpc::Sync => client.handle_sync_booking(request).await.map(drop),
                    Rpc::Async => client.handle_async_booking(request).await.map(drop),
                }
            })
        })
        .collect();
    tokio::spawn(async move {
        let (mut failed, mut first) = (0, None);
        for task in tasks {
            if let Err(status) = task.await.expect("request task") {
                failed += 1;
                first.get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
            }
        }
        (failed, first)
    })
}

/// One level's figures.
struct Level {
    target: u64,
    /// Sagas open when the RSS was read.
    open: f64,
    /// The `sagaflow_sagas_in_flight` gauge then.
    gauge: f64,
    rss_before: u64,
    rss_held: u64,
    rss_after: u64,
    drained: bool,
    failed: u64,
    first_failure: Option<String>,
}

const MIB: f64 = 1024.0 * 1024.0;

fn per_saga(rss: u64, base: u64, open: f64) -> f64 {
    (rss as f64 - base as f64) / open.max(1.0)
}

async fn hold(
    server: &Server,
    args: &Args,
    channels: &[Channel],
    prefix: &str,
    next: &Arc<AtomicU64>,
    target: u64,
) -> Level {
    let rss_before = server.rss();
    let before = server.counts().await;
    let sent = send(
        channels,
        args.rpc,
        prefix,
        next,
        target,
        args.streams(target),
    );
    // Poll until `target` sagas are open; keep the reading at the most open seen, and stop
    // early once sagas of this level begin to end (the ramp took longer than their life).
    let deadline = Instant::now() + args.wait;
    let (mut open, mut gauge, mut rss_held) = (0.0, 0.0, rss_before);
    loop {
        let now = server.counts().await;
        let rss = server.rss();
        let level = now.since(&before);
        let now_open = level.started - level.ended();
        if now_open > open {
            (open, gauge, rss_held) = (now_open, now.in_flight, rss);
        }
        if now_open >= target as f64 {
            // Held: one more reading half a second later (the allocations of the last ones).
            tokio::time::sleep(Duration::from_millis(500)).await;
            let rss = server.rss();
            rss_held = rss_held.max(rss);
            break;
        }
        if level.ended() > 0.0 || Instant::now() > deadline {
            eprintln!(
                "level {target}: only {open:.0} sagas open at once ({:.0} ended before the ramp finished); give a longer --simulate-latency",
                level.ended()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (failed, first_failure) = sent.await.expect("sender task");
    let drained = server.until_idle(args.wait).await;
    tokio::time::sleep(args.settle).await;
    Level {
        target,
        open,
        gauge,
        rss_before,
        rss_held,
        rss_after: server.rss(),
        drained,
        failed,
        first_failure,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    let largest = args.levels.iter().copied().max().unwrap_or(0);
    let listen = example::free_addr();
    let metrics = example::free_addr();
    let run_id = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() % (1 << 40))
            .unwrap_or(0)
    );
    let mut example_args: Vec<String> = [
        "--simulate",
        "--simulate-latency",
        &humantime::format_duration(args.simulate_latency).to_string(),
        "--listen",
        &listen.to_string(),
        "--metrics-addr",
        &metrics.to_string(),
        "--topic-prefix",
        &format!("mem-{run_id}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if args.rpc == Rpc::Async {
        example_args.extend(["--concurrency".to_string(), largest.max(1).to_string()]);
    }
    example_args.extend(args.example_args.iter().cloned());
    let server = Server {
        child: example::spawn(&args.example, &example_args),
        metrics: format!("http://{metrics}/metrics"),
    };
    let rss_start = server.rss();

    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel = Endpoint::from_shared(format!("http://{listen}"))
            .expect("a valid URL")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the example on {listen}: {e}"));
        channels.push(channel);
    }
    let prefix = format!("mem-{run_id}");
    let next = Arc::new(AtomicU64::new(0));
    let (failed, first) = send(
        &channels,
        args.rpc,
        &prefix,
        &next,
        args.warmup,
        args.streams(args.warmup),
    )
    .await
    .expect("warm-up");
    if failed > 0 {
        eprintln!("warm-up: {failed} failed, first {first:?}");
    }
    server.until_idle(args.wait).await;
    tokio::time::sleep(args.settle).await;
    let idle = server.rss();
    println!(
        "example: {} ({:?} mode, each step {}; at most {} requests open at once)",
        example_args.join(" "),
        args.rpc,
        humantime::format_duration(args.simulate_latency),
        args.streams(largest)
    );
    println!(
        "RSS at start {:.1} MiB; idle after a warm-up of {} sagas {:.1} MiB",
        rss_start as f64 / MIB,
        args.warmup,
        idle as f64 / MIB
    );

    let mut levels = Vec::new();
    for &target in &args.levels {
        let level = hold(&server, &args, &channels, &prefix, &next, target).await;
        eprintln!(
            "level {target}: {:.0} open, RSS {:.1} MiB, after {:.1} MiB",
            level.open,
            level.rss_held as f64 / MIB,
            level.rss_after as f64 / MIB
        );
        levels.push(level);
    }
    drop(server);

    println!(
        "| in flight (target) | in-flight gauge | RSS held | bytes/saga vs idle | bytes/saga vs before the level | RSS after the sagas ended (+{}) | failures |",
        humantime::format_duration(args.settle)
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for level in &levels {
        let after = if level.drained {
            format!("{:.1} MiB", level.rss_after as f64 / MIB)
        } else {
            format!("{:.1} MiB (sagas still open)", level.rss_after as f64 / MIB)
        };
        println!(
            "| {:.0} ({}) | {:.0} | {:.1} MiB | {:.0} | {:.0} | {after} | {} |",
            level.open,
            level.target,
            level.gauge,
            level.rss_held as f64 / MIB,
            per_saga(level.rss_held, idle, level.open),
            per_saga(level.rss_held, level.rss_before, level.open),
            level.failed,
        );
        if let Some(first) = &level.first_failure {
            println!("  first failure: {first}");
        }
    }
    println!(
        "idle RSS {:.1} MiB; the RSS after each level minus idle: {}",
        idle as f64 / MIB,
        levels
            .iter()
            .map(|l| format!("{:+.1} MiB", (l.rss_after as f64 - idle as f64) / MIB))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
