//! Chaos harness of the booking example: processes, not threads.
//!
//! It starts private servers on free loopback ports with their data in a temp dir (Redis,
//! and NATS JetStream or a RabbitMQ node of its own), then per run the booking example as
//! four processes (`--role order`, `--role payment` and two `--role orchestrator` replicas
//! with distinct `--pod-id`), loads the replicas with bookings at a fixed rate (a mix of
//! `HandleSyncBooking`, `HandleAsyncBooking` and `HandleThrottlingBooking`, some with
//! `FaultInject`, each with its own `x-request-id`), and mid-run `kill -9`s what `--kill`
//! says: an orchestrator replica, the broker, Redis (each restarted after `--restart-after`).
//! After the load it waits for the sagas to settle, reads every trace id's records at the
//! Order and Payment services and judges each booking:
//!
//! - **completed**: one active order and one active payment;
//! - **compensated**: the order cancelled, no active payment;
//! - **refused**: the caller got an error and nothing exists upstream;
//! - **lost**: nothing exists upstream after settling, although the caller was told
//!   ok/accepted (or "your throttled wait ended, the saga goes on"), or its call broke off
//!   (transport error) after the saga store recorded the saga;
//! - **half-done**: inconsistent after settling (an active order without payment...);
//! - **duplicated**: more than one order or payment for the trace id;
//! - **mismatch**: the caller got `ok` but the records say otherwise (other ids, compensated);
//! - **unverified**: the records could not be read (a harness problem).
//!
//! It also measures, for the sagas in flight at each kill, how long after the kill they
//! settled (max, p99, and how many never did). It prints a table per run and a summary, and
//! exits with 1 if any booking was lost, half-done, duplicated, mismatched or unverified
//! (2 when the harness itself could not run).
//!
//! ```sh
//! cargo bench --bench chaos -- --transport nats --runs 10 --bookings 1000 --rate 50 \
//!     --kill replica,broker,redis
//! cargo bench --bench chaos -- --short            # what tests/chaos.rs runs
//! cargo bench --bench chaos -- --example-arg=--lease=2s   # a flag for every booking process
//! ```
//! The booking example binary is built first (`cargo build --example booking` in the
//! profile of this binary: `--release` under `cargo bench`), unless `--no-build` or
//! `--booking-bin` is given. Needs `redis-server`, `nats-server` and, for RabbitMQ,
//! `rabbitmq-server` (Erlang) installed; the machine's own servers are never touched.

mod cluster;
mod infra;
mod load;
mod procs;
mod report;
mod run;
mod verify;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};

use crate::cluster::ClusterConfig;
use crate::infra::{Infra, TransportKind};
use crate::load::{LoadConfig, Mix};
use crate::procs::TempDir;
use crate::run::{Fault, RunConfig, RunResult};

/// Chaos harness of the sagaflow booking example.
#[derive(Clone, Debug, Parser)]
#[command(name = "chaos")]
struct Args {
    /// Broker(s) to run on, one session each (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "nats")]
    transport: Vec<TransportKind>,
    /// Runs per transport (fresh booking processes each; the servers are shared).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Bookings per run.
    #[arg(long, default_value_t = 1000)]
    bookings: usize,
    /// Bookings per second (open loop, spread over the replicas).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Faults injected mid-run, in this order, spread over the load (comma-separated):
    /// replica, broker, redis (restarted with its data), redis-lost (restarted empty), none.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "replica,broker,redis"
    )]
    kill: Vec<Fault>,
    /// How long a killed process stays down.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    restart_after: Duration,
    /// Orchestrator replicas.
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Latency of each upstream call (`--upstream-latency` of the example).
    #[arg(long, default_value = "150ms", value_parser = humantime::parse_duration)]
    upstream_latency: Duration,
    /// Share of HandleSyncBooking (the rest is half async, half throttled).
    #[arg(long, default_value_t = 0.1)]
    sync_share: f64,
    /// Share of bookings with FaultInject.
    #[arg(long, default_value_t = 0.2)]
    fault_ratio: f64,
    /// Deadline of each call (grpc-timeout).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Retries of a call answered UNAVAILABLE or broken off (UNKNOWN/CANCELLED without a saga
    /// error), same x-request-id, on the next replica (0: callers do not retry, so nothing is
    /// recovered by a retry).
    #[arg(long, default_value_t = 0)]
    client_retries: u32,
    /// Do not send a request whose connection was refused (its replica is down) to the next
    /// replica; by default the load fails over like a load balancer would (nothing reached
    /// the dead replica, so this hides no saga).
    #[arg(long)]
    no_failover: bool,
    /// Longest wait, after the last answer, for every saga to settle.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// How often the upstream records of unsettled trace ids are read.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// A replica kill waits (up to 3 s past its time) until this many sync calls to that
    /// replica are in their second step (sent 1.2 to 1.8 upstream latencies ago: the order
    /// exists, the payment is being taken), so it hits sync sagas mid-flight (0: kill on time).
    #[arg(long, default_value_t = 1)]
    sync_in_flight_at_kill: usize,
    /// Extra argument of every booking process (repeat it; e.g. `--example-arg=--lease=2s`).
    #[arg(long = "example-arg", allow_hyphen_values = true)]
    example_args: Vec<String>,
    /// RUST_LOG of the booking processes (their logs are in the temp dir).
    #[arg(long, default_value = "info")]
    child_log: String,
    /// The booking example binary (default: `target/<this profile>/examples/booking`, built first).
    #[arg(long)]
    booking_bin: Option<PathBuf>,
    /// Do not run `cargo build --example booking` first.
    #[arg(long)]
    no_build: bool,
    /// The RabbitMQ server script (default: /usr/lib/rabbitmq/bin/rabbitmq-server if present).
    #[arg(long)]
    rabbitmq_server: Option<PathBuf>,
    /// Where to create the temp dir (default: the system's).
    #[arg(long)]
    tmp_dir: Option<PathBuf>,
    /// Keep the temp dir (data and logs); it is always kept when a run fails.
    #[arg(long)]
    keep_tmp: bool,
    /// Failing bookings listed per verdict in a run's table.
    #[arg(long, default_value_t = 5)]
    examples: usize,
    /// The CI form: 200 bookings, one replica kill, NATS (flags given explicitly still win).
    #[arg(long)]
    short: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Args {
    fn parse_with_short() -> Self {
        let matches = Args::command().get_matches();
        let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        if args.short {
            let default = |id: &str| matches.value_source(id) == Some(ValueSource::DefaultValue);
            if default("bookings") {
                args.bookings = 200;
            }
            if default("kill") {
                args.kill = vec![Fault::Replica];
            }
            if default("transport") {
                args.transport = vec![TransportKind::Nats];
            }
            if default("runs") {
                args.runs = 1;
            }
        }
        args
    }
}

/// `target/<profile>`, the directory of this binary's `deps/`.
fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.to_path_buf())
}

/// Removes the variables `cargo bench`/`cargo test` set for the program it runs
/// (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`...) from a nested cargo's environment: build
/// scripts that track them (`ring` does) would otherwise see them change and rebuild half
/// the dependency tree, every time, in both directions.
fn clean_cargo_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || matches!(
                key,
                "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "OUT_DIR"
            )
        {
            command.env_remove(key);
        }
    }
}

/// The booking example binary, built in this binary's profile unless told otherwise.
fn booking_binary(args: &Args) -> Result<PathBuf, String> {
    if let Some(path) = &args.booking_bin {
        return Ok(path.clone());
    }
    let dir = profile_dir().ok_or("cannot tell where this binary lives")?;
    let path = dir
        .join("examples")
        .join(format!("booking{}", std::env::consts::EXE_SUFFIX));
    if !args.no_build {
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--example", "booking"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        clean_cargo_env(&mut build);
        // The facade features this binary was built with, so the example's build reuses the
        // same artifacts (`--all-features` enables all of them).
        let features: Vec<&str> = [
            ("rabbitmq", cfg!(feature = "rabbitmq")),
            ("nats", cfg!(feature = "nats")),
            ("redis", cfg!(feature = "redis")),
            ("grpc", cfg!(feature = "grpc")),
            ("full", cfg!(feature = "full")),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        if !features.is_empty() {
            build.args(["--features", &features.join(",")]);
        }
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        eprintln!("chaos: building the booking example ({profile})");
        let status = build
            .status()
            .map_err(|e| format!("cannot run cargo to build the booking example: {e}"))?;
        if !status.success() {
            return Err(format!("`cargo build --example booking` failed ({status})"));
        }
    }
    if !path.is_file() {
        return Err(format!(
            "the booking example binary is missing at {}; build it with \
             `cargo build --release --example booking` or pass --booking-bin",
            path.display()
        ));
    }
    Ok(path)
}

/// Every session and run; the results, the harness errors, and the temp dir to keep or not.
async fn run_all(args: Args) -> ExitCode {
    let binary = match booking_binary(&args) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("chaos: {e}");
            return ExitCode::from(2);
        }
    };
    // Declared first, dropped last: every process is killed before its dir is removed.
    let mut tmp = match TempDir::new(args.tmp_dir.as_deref()) {
        Ok(tmp) => tmp,
        Err(e) => {
            eprintln!("chaos: cannot create the temp dir: {e}");
            return ExitCode::from(2);
        }
    };
    let logs = match tmp.sub("logs") {
        Ok(logs) => logs,
        Err(e) => {
            eprintln!("chaos: cannot create the logs dir: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "chaos: temp dir {} (logs in {})",
        tmp.path().display(),
        logs.display()
    );
    let rabbitmq_server = args
        .rabbitmq_server
        .clone()
        .unwrap_or_else(infra::default_rabbitmq_server);
    let persistent_redis = args.kill.contains(&Fault::Redis);
    let config = RunConfig {
        mix: Mix {
            bookings: args.bookings,
            sync_share: args.sync_share,
            fault_ratio: args.fault_ratio,
            replicas: args.replicas,
        },
        load: LoadConfig {
            rate: args.rate,
            timeout: args.timeout,
            client_retries: args.client_retries,
            failover: !args.no_failover,
        },
        faults: args.kill.clone(),
        restart_after: args.restart_after,
        settle: args.settle,
        poll_interval: args.poll_interval,
        sync_in_flight_at_kill: args.sync_in_flight_at_kill,
        cluster: ClusterConfig {
            binary,
            transport: "",
            broker_url: String::new(),
            redis_url: String::new(),
            topic_prefix: String::new(),
            upstream_latency: args.upstream_latency,
            replicas: args.replicas.max(1),
            rust_log: args.child_log.clone(),
            extra_args: args.example_args.clone(),
        },
    };

    let mut results: Vec<RunResult> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for &transport in &args.transport {
        let mut infra =
            match Infra::start(&tmp, &logs, transport, persistent_redis, &rabbitmq_server).await {
                Ok(infra) => infra,
                Err(e) => {
                    errors.push(format!(
                        "{}: cannot start the servers: {e}",
                        transport.name()
                    ));
                    continue;
                }
            };
        for index in 1..=args.runs {
            // A server a fault left down is started again before the next run.
            for server in [&mut infra.redis, &mut infra.broker] {
                if !server.proc.running()
                    && let Err(e) = server.start().await
                {
                    errors.push(format!("{} down before run {index}: {e}", server.proc.name));
                }
            }
            match run::run_once(&mut infra, &config, index, &logs).await {
                Ok(result) => {
                    println!("{}", report::run_table(&result, args.runs, args.examples));
                    results.push(result);
                }
                Err(e) => {
                    eprintln!("chaos: run {index} ({}) failed: {e}", transport.name());
                    errors.push(format!("run {index} ({}): {e}", transport.name()));
                }
            }
        }
    }
    println!("{}", report::summary(&results, &errors));

    let failed = results.iter().any(|r| r.failures() > 0);
    if failed || !errors.is_empty() || args.keep_tmp {
        tmp.keep();
        println!("chaos: logs and data kept in {}", tmp.path().display());
    }
    if !errors.is_empty() {
        ExitCode::from(2)
    } else if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args = Args::parse_with_short();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot listen for SIGTERM");
    // Dropping `run_all` kills every process it started (each is a `Proc`) and removes the
    // temp dir.
    tokio::select! {
        code = run_all(args) => code,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("chaos: interrupted; killing every process it started");
            ExitCode::from(130)
        }
        _ = terminate.recv() => {
            eprintln!("chaos: terminated; killing every process it started");
            ExitCode::from(143)
        }
    }
}
