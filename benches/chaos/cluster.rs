//! The booking example as separate processes: one `--role order`, one `--role payment` and
//! several `--role orchestrator` replicas, all on the private broker and Redis.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::procs::{Proc, Spec, free_port, wait_port};

/// What the example prints once its BookingService listens.
const READY: &str = "booking: BookingService listening on ";

/// How long a booking process may take to be ready.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// How to run the booking processes of one run.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub binary: PathBuf,
    /// `nats` or `rabbitmq`.
    pub transport: &'static str,
    pub broker_url: String,
    pub redis_url: String,
    pub topic_prefix: String,
    pub upstream_latency: Duration,
    pub replicas: usize,
    /// `RUST_LOG` of the children.
    pub rust_log: String,
    /// Appended to every booking process's arguments (`--example-arg`).
    pub extra_args: Vec<String>,
}

/// One orchestrator replica.
#[derive(Debug)]
pub struct Replica {
    pub proc: Proc,
    pub port: u16,
    pub pod_id: String,
}

impl Replica {
    /// Starts it and waits for its "listening" line.
    pub async fn start(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        let offset = self.proc.start().map_err(|e| e.to_string())?;
        loop {
            if self.proc.output_since(offset).contains(READY) {
                return Ok(started.elapsed());
            }
            if let Some(status) = self.proc.exited() {
                return Err(format!(
                    "{} exited ({status}) before listening:\n{}",
                    self.proc.name,
                    self.proc.tail(15)
                ));
            }
            if started.elapsed() > READY_LIMIT {
                let tail = self.proc.tail(15);
                self.proc.kill9();
                return Err(format!(
                    "{} did not print `{READY}<addr>` within {READY_LIMIT:?}:\n{tail}",
                    self.proc.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The booking processes of one run.
#[derive(Debug)]
pub struct Cluster {
    pub order: Proc,
    pub order_port: u16,
    pub payment: Proc,
    pub payment_port: u16,
    pub replicas: Vec<Replica>,
}

impl Cluster {
    /// Starts the Order and Payment services, then the replicas; logs go to
    /// `{logs}/{log_tag}-{role}.log`.
    pub async fn start(config: &ClusterConfig, logs: &Path, log_tag: &str) -> Result<Self, String> {
        let io = |e: std::io::Error| e.to_string();
        let order_port = free_port().map_err(io)?;
        let payment_port = free_port().map_err(io)?;
        let common = |role: &str| {
            let broker_flag = match config.transport {
                "rabbitmq" => "--rabbitmq-url",
                _ => "--nats-url",
            };
            Spec::new(&config.binary)
                .args(["--role", role])
                .args(["--transport", config.transport, "--store", "redis"])
                .args([broker_flag, &config.broker_url])
                .args(["--redis-url", &config.redis_url])
                .args(["--topic-prefix", &config.topic_prefix])
                .args([
                    "--upstream-latency",
                    &humantime::format_duration(config.upstream_latency).to_string(),
                ])
                .args(["--order-listen", &format!("127.0.0.1:{order_port}")])
                .args(["--payment-listen", &format!("127.0.0.1:{payment_port}")])
                .args(["--order-url", &format!("http://127.0.0.1:{order_port}")])
                .args(["--payment-url", &format!("http://127.0.0.1:{payment_port}")])
                .env("RUST_LOG", &config.rust_log)
                .env("NO_COLOR", "1")
        };
        let mut order = Proc::new(
            format!("{log_tag}-order"),
            common("order").args(&config.extra_args),
            logs,
        );
        order.start().map_err(io)?;
        wait_port(&mut order, order_port, READY_LIMIT).await?;
        let mut payment = Proc::new(
            format!("{log_tag}-payment"),
            common("payment").args(&config.extra_args),
            logs,
        );
        payment.start().map_err(io)?;
        wait_port(&mut payment, payment_port, READY_LIMIT).await?;

        let mut replicas = Vec::new();
        for i in 0..config.replicas {
            let letter = char::from(b'a' + (i % 26) as u8);
            let port = free_port().map_err(io)?;
            let pod_id = format!("chaos-{letter}");
            let spec = common("orchestrator")
                .args(["--pod-id", &pod_id])
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(&config.extra_args);
            let mut replica = Replica {
                proc: Proc::new(format!("{log_tag}-orchestrator-{letter}"), spec, logs),
                port,
                pod_id,
            };
            replica.start().await?;
            replicas.push(replica);
        }
        Ok(Self {
            order,
            order_port,
            payment,
            payment_port,
            replicas,
        })
    }

    /// The processes that exited on their own (name and status), reaped so a later check
    /// does not report them again.
    pub fn crashed(&mut self) -> Vec<String> {
        let mut crashed = Vec::new();
        let procs = [&mut self.order, &mut self.payment]
            .into_iter()
            .chain(self.replicas.iter_mut().map(|r| &mut r.proc));
        for proc in procs {
            if let Some(status) = proc.exited() {
                crashed.push(format!("{} exited on its own ({status})", proc.name));
            }
        }
        crashed
    }

    /// Kills every process now (the end of a run).
    pub fn stop(&mut self) {
        for replica in &mut self.replicas {
            replica.proc.kill9();
        }
        self.order.kill9();
        self.payment.kill9();
    }
}
