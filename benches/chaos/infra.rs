//! The private servers of a chaos session, on free loopback ports, with their data in the
//! session's temp dir: Redis, and NATS (JetStream) or a RabbitMQ node of its own.
//!
//! The shared servers of the machine (RabbitMQ on 5672, Redis on 6379, NATS on 4222) are
//! never touched; the private RabbitMQ node only registers its name with the shared `epmd`
//! on 4369, which is how Erlang nodes find each other.
//!
//! Restarts reuse the same ports and data dirs:
//! - NATS keeps its JetStream file store (`-sd`), so a killed broker comes back with its
//!   streams, consumers and unacked messages;
//! - RabbitMQ keeps its Mnesia dir (same node name), so durable queues and persistent
//!   messages survive;
//! - Redis runs with `--appendonly yes --appendfsync always` when a `redis` kill is planned,
//!   so a restart keeps every acknowledged write (the "Redis crashed" scenario); the
//!   `redis-lost` kill deletes the append-only files before the restart (the "store lost"
//!   scenario: Redis comes back empty). Without a Redis kill it runs without persistence.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::procs::{Proc, Spec, TempDir, free_port, nanos, wait_port};

/// The broker the sagas run through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum TransportKind {
    /// NATS JetStream (`nats-server -js`).
    Nats,
    /// RabbitMQ (a private node of `rabbitmq-server`).
    Rabbitmq,
}

impl TransportKind {
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Nats => "nats",
            TransportKind::Rabbitmq => "rabbitmq",
        }
    }
}

/// How long a server may take to listen after a start.
fn startup_limit(kind: Option<TransportKind>) -> Duration {
    match kind {
        // Erlang boot on a loaded 2-core machine: 10-30 s.
        Some(TransportKind::Rabbitmq) => Duration::from_secs(180),
        _ => Duration::from_secs(30),
    }
}

/// One private server: its process and port.
#[derive(Debug)]
pub struct Server {
    pub proc: Proc,
    pub port: u16,
    /// The broker kind, `None` for Redis.
    kind: Option<TransportKind>,
    /// Its data dir (wiped by a `redis-lost` kill).
    data_dir: PathBuf,
}

impl Server {
    /// Starts it and waits until its port accepts connections.
    pub async fn start(&mut self) -> Result<Duration, String> {
        self.proc.start().map_err(|e| e.to_string())?;
        match wait_port(&mut self.proc, self.port, startup_limit(self.kind)).await {
            Ok(took) => Ok(took),
            Err(e) => {
                let tail = self.proc.tail(20);
                self.proc.kill9();
                Err(format!(
                    "{e}\n--- last lines of {}:\n{tail}",
                    self.proc.name
                ))
            }
        }
    }

    /// `kill -9` by pid; with `wipe`, deletes its data dir; waits `down`; starts it again
    /// and waits until it listens. Returns when it was killed, and whether it came back.
    pub async fn kill_and_restart(
        &mut self,
        down: Duration,
        wipe: bool,
    ) -> (Instant, Result<(), String>) {
        let killed_at = Instant::now();
        self.proc.kill9();
        if wipe && let Err(e) = wipe_dir(&self.data_dir) {
            return (killed_at, Err(e));
        }
        tokio::time::sleep(down).await;
        (killed_at, self.start().await.map(drop))
    }
}

/// Where the RabbitMQ server script is: the package's own copy runs the node in the
/// foreground as the calling user (`/usr/sbin/rabbitmq-server` on Debian switches to the
/// `rabbitmq` user through `su`, whose pid would not be the node's).
pub fn default_rabbitmq_server() -> PathBuf {
    let packaged = Path::new("/usr/lib/rabbitmq/bin/rabbitmq-server");
    if packaged.is_file() {
        packaged.to_path_buf()
    } else {
        PathBuf::from("rabbitmq-server")
    }
}

/// Redis and the broker of one chaos session.
#[derive(Debug)]
pub struct Infra {
    pub transport: TransportKind,
    pub redis: Server,
    pub broker: Server,
}

impl Infra {
    /// Starts Redis (persistent when `persistent_redis`) and the broker on free loopback
    /// ports, data under `tmp`, logs under `logs`.
    pub async fn start(
        tmp: &TempDir,
        logs: &Path,
        transport: TransportKind,
        persistent_redis: bool,
        rabbitmq_server: &Path,
    ) -> Result<Self, String> {
        let io = |e: std::io::Error| e.to_string();
        let tag = transport.name();
        let redis_dir = tmp.sub(&format!("{tag}-redis")).map_err(io)?;
        let redis_port = free_port().map_err(io)?;
        let mut redis_spec = Spec::new("redis-server")
            .args(["--port", &redis_port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(&redis_dir)
            .args(["--daemonize", "no"]);
        redis_spec = if persistent_redis {
            redis_spec.args(["--appendonly", "yes", "--appendfsync", "always"])
        } else {
            redis_spec.args(["--appendonly", "no"])
        };
        let mut redis = Server {
            proc: Proc::new(format!("{tag}-redis"), redis_spec, logs),
            port: redis_port,
            kind: None,
            data_dir: redis_dir,
        };
        let took = redis.start().await?;
        eprintln!(
            "chaos: private redis-server on 127.0.0.1:{redis_port} (pid {}, {}; ready in {took:.1?})",
            redis.proc.pid().unwrap_or(0),
            if persistent_redis {
                "appendonly yes, appendfsync always"
            } else {
                "no persistence"
            }
        );

        let broker = match transport {
            TransportKind::Nats => {
                let dir = tmp.sub("nats").map_err(io)?;
                let port = free_port().map_err(io)?;
                let spec = Spec::new("nats-server")
                    .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                    .arg(&dir);
                Server {
                    proc: Proc::new("nats", spec, logs),
                    port,
                    kind: Some(transport),
                    data_dir: dir,
                }
            }
            TransportKind::Rabbitmq => rabbitmq(tmp, logs, rabbitmq_server)?,
        };
        let mut infra = Self {
            transport,
            redis,
            broker,
        };
        let took = infra.broker.start().await?;
        eprintln!(
            "chaos: private {} on 127.0.0.1:{} (pid {}, data {}; ready in {took:.1?})",
            infra.broker.proc.name,
            infra.broker.port,
            infra.broker.proc.pid().unwrap_or(0),
            infra.broker.data_dir.display(),
        );
        Ok(infra)
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis.port)
    }

    pub fn broker_url(&self) -> String {
        match self.transport {
            TransportKind::Nats => format!("nats://127.0.0.1:{}", self.broker.port),
            TransportKind::Rabbitmq => {
                format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.broker.port)
            }
        }
    }

    /// The servers that exited on their own (name and status).
    pub fn crashed(&mut self) -> Vec<String> {
        let mut crashed = Vec::new();
        for server in [&mut self.redis, &mut self.broker] {
            if server.proc.starts > 0
                && let Some(status) = server.proc.exited()
            {
                crashed.push(format!("{} exited on its own ({status})", server.proc.name));
            }
        }
        crashed
    }
}

/// A private RabbitMQ node: own node name, ports, Mnesia and log dirs, config files; no
/// plugins (the management plugin would want port 15672). It runs in the foreground
/// (`RABBITMQ_ALLOW_INPUT` makes the script `exec` the Erlang VM, so the pid is the node's;
/// `-noinput -noshell` keeps it from reading stdin).
fn rabbitmq(tmp: &TempDir, logs: &Path, program: &Path) -> Result<Server, String> {
    let io = |e: std::io::Error| e.to_string();
    let dir = tmp.sub("rabbitmq").map_err(io)?;
    let port = free_port().map_err(io)?;
    let mut dist_port = free_port().map_err(io)?;
    while dist_port == port {
        dist_port = free_port().map_err(io)?;
    }
    let node = format!(
        "chaos{}{}@localhost",
        std::process::id(),
        nanos() % 1_000_000
    );
    let config = dir.join("rabbitmq.conf");
    fs::write(
        &config,
        format!(
            "listeners.tcp.local = 127.0.0.1:{port}\n\
             disk_free_limit.absolute = 10MB\n\
             log.console = false\n\
             log.file.level = warning\n"
        ),
    )
    .map_err(io)?;
    let plugins = dir.join("enabled_plugins");
    fs::write(&plugins, "[].\n").map_err(io)?;
    // An empty env file, so /etc/rabbitmq/rabbitmq-env.conf (NODENAME of the shared node)
    // is not read.
    let env_file = dir.join("rabbitmq-env.conf");
    fs::write(&env_file, "").map_err(io)?;
    let mnesia = tmp.sub("rabbitmq/mnesia").map_err(io)?;
    let log_base = tmp.sub("rabbitmq/log").map_err(io)?;
    let spec = Spec::new(program)
        .env("RABBITMQ_NODENAME", &node)
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("RABBITMQ_DIST_PORT", dist_port.to_string())
        .env("RABBITMQ_MNESIA_BASE", &mnesia)
        .env("RABBITMQ_LOG_BASE", &log_base)
        .env("RABBITMQ_CONFIG_FILE", &config)
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
        .env("RABBITMQ_CONF_ENV_FILE", &env_file)
        .env("RABBITMQ_PID_FILE", dir.join("rabbitmq.pid"))
        .env("RABBITMQ_ALLOW_INPUT", "1")
        .env("RABBITMQ_SERVER_START_ARGS", "-noinput -noshell")
        .env("ERL_FLAGS", "-kernel inet_dist_use_interface {127,0,0,1}")
        // The Erlang cookie goes to $HOME/.erlang.cookie: keep it private too.
        .env("HOME", &dir)
        .cwd(&dir);
    Ok(Server {
        proc: Proc::new("rabbitmq", spec, logs),
        port,
        kind: Some(TransportKind::Rabbitmq),
        data_dir: dir,
    })
}

/// Deletes everything in `dir` (Redis's append-only files, while it is down).
fn wipe_dir(dir: &Path) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| e.to_string())?;
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(|e| format!("cannot delete {}: {e}", path.display()))?;
    }
    Ok(())
}
