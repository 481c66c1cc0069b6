//! One chaos run: fresh booking processes on the session's servers, the load, the faults
//! injected mid-run, the settle wait, and the verdict on every trace id.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use booking_proto::pb::booking_service_client::BookingServiceClient;

use crate::cluster::{Cluster, ClusterConfig};
use crate::infra::Infra;
use crate::load::{self, Board, LoadConfig, Mix, Upstreams};
use crate::procs::nanos;
use crate::verify::{Booking, Class, Mode, Timeline, Upstream, classify};

/// A fault injected mid-run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Fault {
    /// `kill -9` one orchestrator replica, restart it after `--restart-after`.
    Replica,
    /// `kill -9` the broker (NATS or RabbitMQ), restart it on the same data dir.
    Broker,
    /// `kill -9` Redis, restart it with its data (append-only file, fsync always).
    Redis,
    /// `kill -9` Redis and restart it EMPTY (the store is lost).
    RedisLost,
    /// No fault (a baseline run).
    None,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Replica => "replica",
            Fault::Broker => "broker",
            Fault::Redis => "redis",
            Fault::RedisLost => "redis-lost",
            Fault::None => "none",
        }
    }
}

/// What one run does.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub mix: Mix,
    pub load: LoadConfig,
    pub faults: Vec<Fault>,
    pub restart_after: Duration,
    pub settle: Duration,
    pub poll_interval: Duration,
    /// A replica kill waits (up to 3 s past its time) until this many sync calls to that
    /// replica are in their second step (sent 1.2 to 1.8 upstream latencies ago: the order
    /// exists, the payment is being taken), so the kill does catch sync sagas mid-flight
    /// (an upstream call cut earlier is dropped with its connection and leaves nothing).
    pub sync_in_flight_at_kill: usize,
    /// The booking processes (broker and Redis URLs and the prefix are filled in per run).
    pub cluster: ClusterConfig,
}

/// One injected fault, as it happened.
#[derive(Clone, Debug)]
pub struct FaultEvent {
    pub fault: Fault,
    /// The process killed.
    pub target: String,
    /// The replica index, for replica kills.
    pub replica: Option<usize>,
    /// When it was killed (since the load started).
    pub at: Duration,
    pub killed_at: Instant,
    /// When it listened again.
    pub back_at: Option<Instant>,
    /// Why it did not come back.
    pub error: Option<String>,
    /// Sync calls to the killed replica unanswered at the kill (replica kills).
    pub sync_in_flight: Option<usize>,
}

/// Everything a run saw.
#[derive(Debug)]
pub struct RunResult {
    pub index: usize,
    pub transport: &'static str,
    pub prefix: String,
    pub bookings: Vec<Booking>,
    pub timelines: Vec<Timeline>,
    /// The records of every trace id after settling.
    pub finals: Vec<Option<Upstream>>,
    pub classes: Vec<Class>,
    pub events: Vec<FaultEvent>,
    /// Processes that exited on their own.
    pub crashes: Vec<String>,
    pub started: Instant,
    /// From the load's start to its last answer.
    pub load_took: Duration,
    /// From the last answer to the end of the settle wait.
    pub settle_took: Duration,
    /// Whether every booking that may have a saga settled within the wait.
    pub all_settled: bool,
    pub rate: f64,
    /// Per booking: whether the saga store (Redis) has a key naming its trace id at the end
    /// (`Err`: the store could not be read).
    pub recorded: Result<Vec<bool>, String>,
}

impl RunResult {
    pub fn count(&self, class: Class) -> usize {
        self.classes.iter().filter(|c| **c == class).count()
    }

    pub fn failures(&self) -> usize {
        self.classes.iter().filter(|c| c.is_failure()).count()
    }
}

/// Runs once on `infra`: starts the booking processes, loads them while injecting the
/// faults, waits for the sagas to settle, reads every trace id's records and judges them.
pub async fn run_once(
    infra: &mut Infra,
    config: &RunConfig,
    index: usize,
    logs: &Path,
) -> Result<RunResult, String> {
    let transport = infra.transport.name();
    let tag = format!("{:x}r{index}", nanos() % 0xFFFF_FFFF);
    let prefix = format!("chaos{tag}");
    let cluster_config = ClusterConfig {
        transport,
        broker_url: infra.broker_url(),
        redis_url: infra.redis_url(),
        topic_prefix: prefix.clone(),
        ..config.cluster.clone()
    };
    let mut cluster =
        Cluster::start(&cluster_config, logs, &format!("{transport}-run{index}")).await?;
    eprintln!(
        "chaos: run {index} ({transport}): order :{} payment :{} replicas {} (prefix {prefix})",
        cluster.order_port,
        cluster.payment_port,
        cluster
            .replicas
            .iter()
            .map(|r| format!("{}:{}", r.pod_id, r.port))
            .collect::<Vec<_>>()
            .join(" "),
    );

    let mut clients = Vec::new();
    for replica in &cluster.replicas {
        clients.push(BookingServiceClient::new(load::lazy_channel(
            &replica.url(),
        )?));
    }
    let upstreams = Upstreams::new(
        &format!("http://127.0.0.1:{}", cluster.order_port),
        &format!("http://127.0.0.1:{}", cluster.payment_port),
    )?;
    let mix = Mix {
        replicas: cluster.replicas.len(),
        ..config.mix.clone()
    };
    let bookings = Arc::new(load::plan(&mix, &tag));
    let board = Board::new(bookings.len());
    let stop = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(load::poll_until_stopped(
        Arc::clone(&bookings),
        Arc::clone(&board),
        upstreams.clone(),
        config.poll_interval,
        Arc::clone(&stop),
    ));

    let started = Instant::now() + Duration::from_millis(100);
    let load_duration =
        Duration::from_secs_f64(bookings.len() as f64 / config.load.rate.max(0.001));
    // Alternate the killed replica between runs.
    let kill_replica = (index.saturating_sub(1)) % cluster.replicas.len().max(1);
    let load = load::run_load(
        Arc::clone(&bookings),
        clients,
        Arc::clone(&board),
        config.load.clone(),
        started,
    );
    let latency = config.cluster.upstream_latency;
    let targets = Targets {
        bookings: &bookings,
        board: &board,
        kill_replica,
        sync_in_flight: config.sync_in_flight_at_kill,
        window: if latency.is_zero() {
            (Duration::ZERO, Duration::from_secs(1))
        } else {
            (latency * 6 / 5, latency * 9 / 5)
        },
    };
    let faults = inject(
        &config.faults,
        infra,
        &mut cluster,
        load_duration,
        config.restart_after,
        started,
        targets,
    );
    let ((), events) = tokio::join!(load, faults);
    let load_took = started.elapsed();

    let settle_start = Instant::now();
    while !load::all_settled(&board) && settle_start.elapsed() < config.settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settle_took = settle_start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = poller.await;
    let all_settled = load::all_settled(&board);

    let mut crashes = cluster.crashed();
    crashes.extend(infra.crashed());

    // The final word: every trace id, settled or not (a late duplicate shows here).
    let mut finals: Vec<Option<Upstream>> = vec![None; bookings.len()];
    let mut missing: Vec<usize> = (0..bookings.len()).collect();
    for _ in 0..3 {
        for (i, upstream) in upstreams.read_many(&bookings, missing, 32).await {
            finals[i] = upstream;
        }
        missing = (0..bookings.len())
            .filter(|i| finals[*i].is_none())
            .collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster.stop();
    let recorded: Result<Vec<bool>, String> =
        store_keys(&infra.redis_url(), &prefix).await.map(|keys| {
            bookings
                .iter()
                .map(|b| keys.contains(b.id.as_str()))
                .collect()
        });

    let timelines = board.snapshot();
    let classes = bookings
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let recorded = recorded.as_ref().ok().map(|r| r[i]);
            classify(
                b,
                timelines[i].answer.as_ref(),
                finals[i].as_ref(),
                recorded,
            )
        })
        .collect();
    Ok(RunResult {
        index,
        transport,
        prefix,
        bookings: Arc::try_unwrap(bookings).unwrap_or_else(|b| (*b).clone()),
        timelines,
        finals,
        classes,
        events,
        crashes,
        started,
        load_took,
        settle_took,
        all_settled,
        rate: config.load.rate,
        recorded,
    })
}

/// Every `:`-separated part of every key under `prefix` in Redis (trace ids among them).
async fn store_keys(redis_url: &str, prefix: &str) -> Result<HashSet<String>, String> {
    let client = redis::Client::open(redis_url).map_err(|e| e.to_string())?;
    let connect = client.get_multiplexed_async_connection();
    let mut connection = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| format!("no answer from {redis_url} within 5 s"))?
        .map_err(|e| e.to_string())?;
    let mut parts = HashSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        for key in keys {
            parts.extend(key.split(':').map(str::to_owned));
        }
        if next == 0 {
            return Ok(parts);
        }
        cursor = next;
    }
}

/// Which replica a replica kill hits, and when.
struct Targets<'a> {
    bookings: &'a [Booking],
    board: &'a Board,
    kill_replica: usize,
    sync_in_flight: usize,
    /// How long ago a sync call must have been sent to count (its second step is running).
    window: (Duration, Duration),
}

impl Targets<'_> {
    /// Sync calls to the replica to kill, unanswered, sent within the window.
    fn sync_in_flight(&self) -> usize {
        let now = Instant::now();
        let timelines = self.board.lock();
        self.bookings
            .iter()
            .zip(timelines.iter())
            .filter(|(b, t)| {
                b.mode == Mode::Sync
                    && b.replica == self.kill_replica
                    && t.answer.is_none()
                    && t.sent_at.is_some_and(|sent| {
                        let age = now.saturating_duration_since(sent);
                        age >= self.window.0 && age <= self.window.1
                    })
            })
            .count()
    }

    /// Waits, up to `limit`, until enough sync calls are in flight on the replica to kill;
    /// returns how many are.
    async fn wait_for_sync_in_flight(&self, limit: Duration) -> usize {
        let until = Instant::now() + limit;
        loop {
            let n = self.sync_in_flight();
            if n >= self.sync_in_flight || Instant::now() >= until {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Injects `faults` one after the other, spread evenly over the load (the `i`th of `k` at
/// `(i + 1) / (k + 1)` of it), each only once the previous one is back.
async fn inject(
    faults: &[Fault],
    infra: &mut Infra,
    cluster: &mut Cluster,
    load_duration: Duration,
    restart_after: Duration,
    started: Instant,
    targets: Targets<'_>,
) -> Vec<FaultEvent> {
    let kill_replica = targets.kill_replica;
    let faults: Vec<Fault> = faults
        .iter()
        .copied()
        .filter(|f| *f != Fault::None)
        .collect();
    let mut events = Vec::new();
    let k = faults.len() as u32;
    for (i, fault) in faults.into_iter().enumerate() {
        let at = started + load_duration * (i as u32 + 1) / (k + 1);
        tokio::time::sleep_until(at.into()).await;
        let mut sync_in_flight = None;
        let (target, replica, killed_at, back) = match fault {
            Fault::Replica => {
                sync_in_flight = Some(
                    targets
                        .wait_for_sync_in_flight(Duration::from_secs(3))
                        .await,
                );
                let replica = &mut cluster.replicas[kill_replica];
                let killed_at = Instant::now();
                replica.proc.kill9();
                tokio::time::sleep(restart_after).await;
                let back = replica.start().await.map(drop);
                (
                    replica.proc.name.clone(),
                    Some(kill_replica),
                    killed_at,
                    back,
                )
            }
            Fault::Broker => {
                let (killed_at, back) = infra.broker.kill_and_restart(restart_after, false).await;
                (infra.broker.proc.name.clone(), None, killed_at, back)
            }
            Fault::Redis | Fault::RedisLost => {
                let wipe = fault == Fault::RedisLost;
                let (killed_at, back) = infra.redis.kill_and_restart(restart_after, wipe).await;
                (infra.redis.proc.name.clone(), None, killed_at, back)
            }
            Fault::None => continue,
        };
        let event = FaultEvent {
            fault,
            target,
            replica,
            at: killed_at.saturating_duration_since(started),
            killed_at,
            back_at: back.is_ok().then(Instant::now),
            error: back.err(),
            sync_in_flight,
        };
        eprintln!(
            "chaos: killed {} at {:.1}s; {}",
            event.target,
            event.at.as_secs_f64(),
            match (&event.back_at, &event.error) {
                (Some(back), _) => format!("back after {:.1?}", *back - killed_at),
                (None, Some(error)) => format!("NOT back: {error}"),
                (None, None) => "not back".to_string(),
            }
        );
        events.push(event);
    }
    events
}
