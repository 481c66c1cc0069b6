//! Wiring of the booking example: flags, backends, and the roles a process runs.

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use sagaflow::RetryPolicy;
use sagaflow::admin::Admin;
use sagaflow::config::{ConfigError, Secret, masked_toml};
use sagaflow::engine::{Consumers, Orchestrator, OrchestratorConfig, Routing};
use sagaflow::grpc::admin::AdminService;
use sagaflow::grpc::{GrpcServer, ServerHandle, TraceIdPolicy, client_tls_config};
use sagaflow::store::{MemoryStore, RedisStore, SagaStore, StoreConfig};
use sagaflow::tls::{ClientTls, ServerTls};
use sagaflow::transport::{
    MemoryTransport, NatsTransport, RabbitMqTransport, Transport, TransportConfig, TransportError,
};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;
use tracing::info;

use crate::order::OrderSvc;
use crate::payment::PaymentSvc;
use crate::saga::Booking;
use crate::service::BookingApi;
use crate::upstream::LoadConfig;

/// Which broker carries the async and throttled sagas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    /// In-process (one process only).
    Memory,
    /// RabbitMQ (`--rabbitmq-url`).
    Rabbitmq,
    /// NATS JetStream (`--nats-url`).
    Nats,
}

/// Where saga records live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// In-process (one process only, or pod-affine routing).
    Memory,
    /// Redis (`--redis-url`), shared by every replica.
    Redis,
}

/// What this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Order service, Payment service and the orchestrator.
    All,
    /// Only the orchestrator (`BookingService` and the saga consumers).
    Orchestrator,
    /// Only the Order service.
    Order,
    /// Only the Payment service.
    Payment,
}

/// How the trace id of a request is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TraceIds {
    /// `x-request-id` is required (missing: INVALID_ARGUMENT).
    Require,
    /// A missing `x-request-id` gets a generated one.
    Generate,
}

/// The booking example: Order and Payment gRPC services and the saga orchestrator's
/// `pb.BookingService`, in one process or one role per process.
///
/// Every setting can come from a TOML file (`--config`, keys named as the flags with `_`),
/// a `BOOKING_*` environment variable or a flag, each overriding the one before
/// ([`Options::load`]); `--print-config` shows the result with secrets masked.
#[derive(Clone, Debug, Parser, Serialize, Deserialize)]
#[command(name = "booking", version)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// A TOML file of settings (keys as the flags, `admin_token = { file = "..." }` for a
    /// secret kept in a file); environment variables and flags override it.
    #[arg(long, env = "BOOKING_CONFIG")]
    #[serde(default, skip_serializing)]
    pub config: Option<PathBuf>,
    /// Simulate the steps instead of calling the Order and Payment services (ids from a
    /// counter, a fault-injected payment declined): the framework measured on the same work
    /// as a simulated-step server. Role `all` then starts no Order or Payment service.
    #[arg(long, env = "BOOKING_SIMULATE")]
    #[serde(default)]
    pub simulate: bool,
    /// With `--simulate`: how long each simulated step (and compensation) takes, a timer and
    /// no CPU, so sagas stay in flight (`2s`; below the steps' 5 s timeout). `0s`: at once.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s", env = "BOOKING_SIMULATE_LATENCY")]
    #[serde(default, with = "humantime_serde")]
    pub simulate_latency: Duration,
    /// Print the effective configuration (from defaults, the file, the environment and the
    /// flags; every secret masked) as TOML, and exit.
    #[arg(long)]
    #[serde(default, skip_serializing)]
    pub print_config: bool,
    /// What this process runs.
    #[arg(long, value_enum, default_value = "all", env = "BOOKING_ROLE")]
    pub role: Role,
    /// Address of the orchestrator's BookingService.
    #[arg(long, default_value = "0.0.0.0:10000", env = "BOOKING_LISTEN")]
    pub listen: SocketAddr,
    /// Address the Order service listens on (roles all and order).
    #[arg(long, default_value = "127.0.0.1:10001", env = "BOOKING_ORDER_LISTEN")]
    pub order_listen: SocketAddr,
    /// Address the Payment service listens on (roles all and payment).
    #[arg(
        long,
        default_value = "127.0.0.1:10002",
        env = "BOOKING_PAYMENT_LISTEN"
    )]
    pub payment_listen: SocketAddr,
    /// URL of the Order service (role orchestrator; role all uses its own).
    #[arg(
        long,
        default_value = "http://127.0.0.1:10001",
        env = "BOOKING_ORDER_URL"
    )]
    pub order_url: String,
    /// URL of the Payment service (role orchestrator; role all uses its own).
    #[arg(
        long,
        default_value = "http://127.0.0.1:10002",
        env = "BOOKING_PAYMENT_URL"
    )]
    pub payment_url: String,
    /// Broker of the async and throttled modes.
    #[arg(long, value_enum, default_value = "memory", env = "BOOKING_TRANSPORT")]
    pub transport: TransportKind,
    /// RabbitMQ URL.
    #[arg(
        long,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        env = "BOOKING_RABBITMQ_URL"
    )]
    pub rabbitmq_url: String,
    /// NATS URL.
    #[arg(
        long,
        default_value = "nats://127.0.0.1:4222",
        env = "BOOKING_NATS_URL"
    )]
    pub nats_url: String,
    /// Saga store.
    #[arg(long, value_enum, default_value = "memory", env = "BOOKING_STORE")]
    pub store: StoreKind,
    /// Redis URL.
    #[arg(
        long,
        default_value = "redis://127.0.0.1:6379",
        env = "BOOKING_REDIS_URL"
    )]
    pub redis_url: String,
    /// `--redis-url` is a node of a Redis Cluster (keys hash-tagged per index bucket).
    #[arg(long, env = "BOOKING_REDIS_CLUSTER")]
    #[serde(default)]
    pub redis_cluster: bool,
    /// Replicas that must acknowledge every store write (`WAIT`); 0: the master alone.
    #[arg(long, default_value_t = 0, env = "BOOKING_REDIS_REPLICA_ACKS")]
    #[serde(default)]
    pub redis_replica_acks: u16,
    /// Prefix of every topic (and Redis key).
    #[arg(long, default_value = "sagaflow", env = "BOOKING_TOPIC_PREFIX")]
    pub topic_prefix: String,
    /// This replica's id; throttled sagas use `{topic}.{pod_id}` when the store is not shared.
    #[arg(long, default_value_t = default_pod_id(), env = "BOOKING_POD_ID")]
    pub pod_id: String,
    /// Most step executions this replica runs at once (the throttled cap on upstream load).
    #[arg(long, default_value_t = 4, env = "BOOKING_CONCURRENCY")]
    pub concurrency: usize,
    /// Most throttled requests this replica lets wait at once; more are refused with
    /// RESOURCE_EXHAUSTED (unbounded if unset).
    #[arg(long, env = "BOOKING_MAX_WAITING")]
    pub max_waiting: Option<usize>,
    /// Trace id policy for requests without `x-request-id`.
    #[arg(long, value_enum, default_value = "require", env = "BOOKING_TRACE_IDS")]
    pub trace_ids: TraceIds,
    /// Most concurrent calls each upstream service accepts (overload demo); unlimited if unset.
    #[arg(long, env = "BOOKING_UPSTREAM_CAPACITY")]
    pub upstream_capacity: Option<u64>,
    /// How long this replica's custody of a running saga lasts without renewal; a saga whose
    /// replica died is recovered by another replica once it passed (`250ms`, `5s`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s", env = "BOOKING_LEASE")]
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often this replica's recovery sweeper looks for sagas whose custody lapsed.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s", env = "BOOKING_SWEEP_INTERVAL")]
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// How long a saga's next message may wait on the broker before the sweeper publishes
    /// it again.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s", env = "BOOKING_REQUEUE_AFTER")]
    #[serde(with = "humantime_serde")]
    pub requeue_after: Duration,
    /// The longest wait between two re-publications of one message by the sweeper: each one
    /// doubles the wait after `--requeue-after` up to this (unset: 8 x `--requeue-after`).
    #[arg(long, value_parser = humantime::parse_duration, env = "BOOKING_MAX_REQUEUE_AFTER")]
    #[serde(default, with = "humantime_serde")]
    pub max_requeue_after: Option<Duration>,
    /// Latency added to each upstream call (overload demo; `20ms`, `0s` for none).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s", env = "BOOKING_UPSTREAM_LATENCY")]
    #[serde(with = "humantime_serde")]
    pub upstream_latency: Duration,
    /// Serve Prometheus metrics on `http://{addr}/metrics` (e.g. `127.0.0.1:9100`); off unless
    /// given.
    #[arg(long, env = "BOOKING_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// How often the orchestrator's health monitor probes the store, the broker and the
    /// consumers (the gRPC health status follows it).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s", env = "BOOKING_HEALTH_INTERVAL")]
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// Export spans over OTLP/gRPC to this collector (e.g. `http://127.0.0.1:4317`); needs a
    /// build with `--features otel`.
    #[arg(long, env = "BOOKING_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// How many times a compensation is tried (backing off from 100 ms doubling up to 30 s)
    /// before its saga is stuck and waits for an operator (`sagaflow resume`).
    #[arg(long, default_value_t = RetryPolicy::COMPENSATION.max_attempts, env = "BOOKING_COMPENSATION_ATTEMPTS")]
    pub compensation_attempts: u32,
    /// Address of the admin API (`sagaflow.admin.v1.SagaAdmin`, what the `sagaflow` CLI talks
    /// to), a listener of its own; off unless given. Beyond loopback it needs `--admin-token`.
    #[arg(long, env = "BOOKING_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Bearer token every admin API call must carry (`authorization: Bearer <token>`);
    /// required when `--admin-addr` is not a loopback address. `file:PATH` reads it from a
    /// file.
    #[arg(long, env = "SAGAFLOW_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// PEM certificate chain of this process's gRPC servers (BookingService, Order, Payment,
    /// admin API), with `--tls-key`: they then serve TLS only. Plaintext unless given.
    #[arg(long, env = "BOOKING_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "BOOKING_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) client certificates must chain to: the servers then refuse a
    /// client without such a certificate (mutual TLS). Needs `--tls-cert`.
    #[arg(long, env = "BOOKING_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// PEM CA certificate(s) the Order and Payment services' certificates must chain to: the
    /// orchestrator then calls them over TLS only (`https://` URLs; role all uses its own
    /// services over TLS when `--tls-cert` is given, and needs this).
    #[arg(long, env = "BOOKING_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
    /// PEM client certificate the orchestrator presents to the Order and Payment services
    /// (their `--tls-client-ca`), with `--upstream-key`. Needs `--upstream-ca`.
    #[arg(long, env = "BOOKING_UPSTREAM_CERT", requires_all = ["upstream_key", "upstream_ca"])]
    pub upstream_cert: Option<PathBuf>,
    /// PEM private key of `--upstream-cert`.
    #[arg(long, env = "BOOKING_UPSTREAM_KEY", requires = "upstream_cert")]
    pub upstream_key: Option<PathBuf>,
}

impl Options {
    /// The options of this process: its command line over its environment over the TOML
    /// file named by `--config` (or `BOOKING_CONFIG`) over the defaults.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(std::env::args_os())
    }

    /// As [`Options::load`], from `args` (the program name first).
    pub fn load_from<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        sagaflow::config::load(args, "config")
    }

    /// The effective options as TOML, every secret masked (`--print-config`).
    pub fn printout(&self) -> String {
        masked_toml(self).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }

    /// Refuses an admin API that would be reachable beyond this machine without a token (or
    /// with an empty one), and one asked of a process that runs no orchestrator.
    pub fn check_admin(&self) -> Result<(), String> {
        let Some(addr) = self.admin_addr else {
            return Ok(());
        };
        if !matches!(self.role, Role::All | Role::Orchestrator) {
            return Err(format!(
                "--admin-addr {addr}: the admin API is served by the orchestrator; run role `all` or `orchestrator`"
            ));
        }
        match self.admin_token.as_ref().map(Secret::expose) {
            Some("") => Err(
                "--admin-token (SAGAFLOW_ADMIN_TOKEN) is empty: set a secret token or leave it unset"
                    .to_string(),
            ),
            None if !addr.ip().is_loopback() => Err(format!(
                "refusing to serve the admin API on {addr} without a token: anyone who reaches it \
                 could resume or compensate sagas. Set --admin-token (or SAGAFLOW_ADMIN_TOKEN), \
                 or listen on loopback (--admin-addr 127.0.0.1:{})",
                addr.port()
            )),
            _ => Ok(()),
        }
    }
}

impl Options {
    /// The TLS settings of this process's gRPC servers (`--tls-cert`, `--tls-key`,
    /// `--tls-client-ca`), if any.
    pub fn server_tls(&self) -> Option<ServerTls> {
        let (cert, key) = (self.tls_cert.as_ref()?, self.tls_key.as_ref()?);
        let tls = ServerTls::new(cert, key);
        Some(match &self.tls_client_ca {
            Some(ca) => tls.require_client_certs(ca),
            None => tls,
        })
    }

    /// The TLS settings of the orchestrator's calls to Order and Payment (`--upstream-ca`,
    /// `--upstream-cert`, `--upstream-key`), if any.
    pub fn upstream_tls(&self) -> Option<ClientTls> {
        let tls = ClientTls::with_ca(self.upstream_ca.as_ref()?);
        Some(match (&self.upstream_cert, &self.upstream_key) {
            (Some(cert), Some(key)) => tls.identity(cert, key),
            _ => tls,
        })
    }

    /// Refuses a `--simulate-latency` that would not apply (no `--simulate`: the real services
    /// take `--upstream-latency`) or that every step would time out on (5 s or more).
    pub fn check_simulate(&self) -> Result<(), String> {
        let latency = self.simulate_latency;
        if latency.is_zero() {
            return Ok(());
        }
        if !self.simulate {
            return Err(format!(
                "--simulate-latency {} needs --simulate (with the real services, use --upstream-latency)",
                humantime::format_duration(latency)
            ));
        }
        if latency >= SIMULATED_STEP_TIMEOUT {
            return Err(format!(
                "--simulate-latency {}: every step would time out (the steps' timeout is {}); give less",
                humantime::format_duration(latency),
                humantime::format_duration(SIMULATED_STEP_TIMEOUT)
            ));
        }
        Ok(())
    }

    /// Refuses TLS settings that would leave a connection in plaintext or unusable: a
    /// certificate without its key (or the reverse), a client CA or an upstream client
    /// certificate with nothing to go with (from flags, variables or the config file, where
    /// clap's own checks do not reach), and role `all` with TLS servers but no way for its
    /// orchestrator to call them (no `--upstream-ca`, or no client certificate when they
    /// require one).
    pub fn check_tls(&self) -> Result<(), String> {
        let pairs = [
            (
                self.tls_cert.is_some(),
                self.tls_key.is_some(),
                "--tls-cert",
                "--tls-key",
            ),
            (
                self.tls_client_ca.is_some() && self.tls_cert.is_none(),
                false,
                "--tls-client-ca",
                "--tls-cert",
            ),
            (
                self.upstream_cert.is_some(),
                self.upstream_key.is_some(),
                "--upstream-cert",
                "--upstream-key",
            ),
            (
                self.upstream_cert.is_some() && self.upstream_ca.is_none(),
                false,
                "--upstream-cert",
                "--upstream-ca",
            ),
        ];
        for (has, other, flag, needs) in pairs {
            if has != other {
                let (given, missing) = if has { (flag, needs) } else { (needs, flag) };
                return Err(format!(
                    "{given} needs {missing} (a flag, a BOOKING_* variable or a config file key)"
                ));
            }
        }
        // Simulated steps call no service.
        if self.role != Role::All || self.tls_cert.is_none() || self.simulate {
            return Ok(());
        }
        if self.upstream_ca.is_none() {
            return Err(
                "role all serves Order and Payment over TLS (--tls-cert) and calls them: \
                 give --upstream-ca with the CA that signed --tls-cert"
                    .to_string(),
            );
        }
        if self.tls_client_ca.is_some() && self.upstream_cert.is_none() {
            return Err(
                "role all requires client certificates (--tls-client-ca) from its own \
                 orchestrator too: give --upstream-cert and --upstream-key"
                    .to_string(),
            );
        }
        Ok(())
    }
}

/// A lazily connected channel to the upstream service at `url`: over TLS with `tls` (the URL
/// must then be `https://`), plaintext without (the URL must then be `http://`).
pub fn upstream_channel(url: &str, tls: Option<&ClientTls>) -> Result<Channel, Box<dyn Error>> {
    let endpoint = Channel::from_shared(url.to_string())?;
    let https = url.starts_with("https://");
    Ok(match tls {
        Some(tls) if https => endpoint.tls_config(client_tls_config(tls)?)?.connect_lazy(),
        Some(_) => {
            return Err(format!(
                "--upstream-ca is set but `{url}` is plaintext: use an https:// URL"
            )
            .into());
        }
        None if https => {
            return Err(format!(
                "`{url}` is https: give --upstream-ca with the CA its certificate chains to"
            )
            .into());
        }
        None => endpoint.connect_lazy(),
    })
}

/// The timeout of the booking saga's steps (`timeout_ms = 5000` in [`crate::saga`]).
const SIMULATED_STEP_TIMEOUT: Duration = Duration::from_secs(5);

fn default_pod_id() -> String {
    format!("pod-{}", std::process::id())
}

/// A running booking process.
#[derive(Debug)]
pub struct App {
    /// Where BookingService listens (roles all and orchestrator).
    pub booking_addr: Option<SocketAddr>,
    /// Where the admin API listens, when `--admin-addr` was given.
    pub admin_addr: Option<SocketAddr>,
    /// The Order service, when this process runs it.
    pub order: Option<(OrderSvc, SocketAddr)>,
    /// The Payment service, when this process runs it.
    pub payment: Option<(PaymentSvc, SocketAddr)>,
    /// The orchestrator, when this process runs it.
    pub orchestrator: Option<Orchestrator<Booking>>,
    /// Where `/metrics` is served, with `--metrics-addr`.
    pub metrics_addr: Option<SocketAddr>,
    servers: Vec<ServerHandle>,
    consumers: Option<Consumers>,
    broker: Broker,
}

/// The broker connection of the orchestrator, kept so the queues and streams it declared
/// can be deleted (tests use it; the binary leaves them for the next run).
#[derive(Clone, Debug, Default)]
pub enum Broker {
    /// In-process transport, or no orchestrator in this process: nothing to delete.
    #[default]
    None,
    /// RabbitMQ: the queues this process declared and the prefix's exchange.
    RabbitMq(Arc<RabbitMqTransport>),
    /// NATS JetStream: the prefix's stream.
    Nats(Arc<NatsTransport>),
}

impl Broker {
    /// Deletes the topology of the prefix on the broker (after the consumers stopped).
    pub async fn delete_topology(&self) -> Result<(), TransportError> {
        match self {
            Broker::None => Ok(()),
            Broker::RabbitMq(transport) => transport.delete_topology().await,
            Broker::Nats(transport) => transport.delete_topology().await,
        }
    }
}

impl App {
    /// Runs until SIGINT/SIGTERM, then stops the servers and drains the consumers.
    pub async fn wait(self) -> Result<(), Box<dyn Error>> {
        for server in self.servers {
            server.wait().await?;
        }
        if let Some(consumers) = self.consumers {
            let left = consumers.shutdown().await;
            info!(left, "saga consumers stopped");
        }
        if let Some((order, _)) = &self.order {
            info!(load = ?order.gate().stats(false), "Order service load since start");
        }
        if let Some((payment, _)) = &self.payment {
            info!(load = ?payment.gate().stats(false), "Payment service load since start");
        }
        Ok(())
    }

    /// The broker connection, to delete the topology once [`App::shutdown`] returned.
    pub fn broker(&self) -> Broker {
        self.broker.clone()
    }

    /// Stops everything now (the tests use it; the binary waits for a signal instead).
    pub async fn shutdown(self) -> Result<(), Box<dyn Error>> {
        for server in self.servers {
            server.shutdown().await?;
        }
        if let Some(consumers) = self.consumers {
            consumers.shutdown().await;
        }
        Ok(())
    }
}

/// A server of this process, over TLS when `tls` is given.
fn server(tls: Option<&ServerTls>) -> GrpcServer {
    let server = GrpcServer::new().register_file_descriptor_set(booking_proto::FILE_DESCRIPTOR_SET);
    match tls {
        Some(tls) => server.tls(tls.clone()),
        None => server,
    }
}

/// Starts what `options.role` says and returns once every server listens.
pub async fn start(options: Options) -> Result<App, Box<dyn Error>> {
    options.check_admin()?;
    options.check_tls()?;
    options.check_simulate()?;
    let tls = options.server_tls();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let load = LoadConfig {
        latency: options.upstream_latency,
        capacity: options.upstream_capacity,
    };
    let mut app = App {
        booking_addr: None,
        admin_addr: None,
        order: None,
        payment: None,
        orchestrator: None,
        metrics_addr: None,
        servers: Vec::new(),
        consumers: None,
        broker: Broker::None,
    };
    if let Some(addr) = options.metrics_addr {
        // Before any orchestrator is built: each registers its metric handles once.
        crate::telemetry::serve_metrics(addr)?;
        info!(%addr, "Prometheus metrics on http://{addr}/metrics");
        app.metrics_addr = Some(addr);
    }
    let (mut order_url, mut payment_url) = (options.order_url.clone(), options.payment_url.clone());
    let upstream = !options.simulate;
    if upstream && matches!(options.role, Role::All | Role::Order) {
        let svc = OrderSvc::new(load);
        let handle = server(tls.as_ref())
            .add_service(svc.clone().into_server())
            .serve(options.order_listen)
            .await?;
        let addr = handle.local_addr();
        info!(%addr, tls = tls.is_some(), "Order service listening");
        order_url = format!("{scheme}://{addr}");
        app.order = Some((svc, addr));
        app.servers.push(handle);
    }
    if upstream && matches!(options.role, Role::All | Role::Payment) {
        let svc = PaymentSvc::new(load);
        let handle = server(tls.as_ref())
            .add_service(svc.clone().into_server())
            .serve(options.payment_listen)
            .await?;
        let addr = handle.local_addr();
        info!(%addr, tls = tls.is_some(), "Payment service listening");
        payment_url = format!("{scheme}://{addr}");
        app.payment = Some((svc, addr));
        app.servers.push(handle);
    }
    if matches!(options.role, Role::All | Role::Orchestrator) {
        let saga = if upstream {
            let upstream_tls = options.upstream_tls();
            let orders = upstream_channel(&order_url, upstream_tls.as_ref())?;
            let payments = upstream_channel(&payment_url, upstream_tls.as_ref())?;
            Arc::new(Booking::new(orders, payments))
        } else {
            let latency = options.simulate_latency;
            info!(
                latency = %humantime::format_duration(latency),
                "steps simulated: no Order or Payment service is called"
            );
            Arc::new(Booking::simulated_with_latency(latency))
        };
        let (transport, broker) = transport(&options).await?;
        app.broker = broker;
        let store = store(&options).await?;
        let shared_store =
            options.store == StoreKind::Redis || options.transport == TransportKind::Memory;
        let config = OrchestratorConfig {
            pod_id: options.pod_id.clone(),
            throttled_routing: if shared_store {
                Routing::Shared
            } else {
                Routing::PodAffine
            },
            max_concurrent_steps: Some(options.concurrency),
            max_waiting: options.max_waiting,
            lease: options.lease,
            sweep_interval: Some(options.sweep_interval),
            requeue_after: options.requeue_after,
            max_requeue_after: options.max_requeue_after,
            compensation_retry: RetryPolicy::new(
                options.compensation_attempts,
                RetryPolicy::COMPENSATION.initial_backoff,
                RetryPolicy::COMPENSATION.max_backoff,
            ),
            ..OrchestratorConfig::default()
        };
        let orchestrator = Orchestrator::builder(saga, transport, Arc::clone(&store))
            .config(config)
            .on_complete(|completion| async move {
                match completion.result {
                    Ok(booked) => info!(trace_id = %completion.trace_id, ?booked, "saga completed"),
                    Err(error) => info!(trace_id = %completion.trace_id, %error, "saga failed"),
                }
            })
            .build();
        let consumers = orchestrator.serve().await?;
        let health = orchestrator
            .health_monitor()
            .watch_consumers(&consumers)
            .interval(options.health_interval)
            .start()
            .await;
        app.consumers = Some(consumers);
        let policy = match options.trace_ids {
            TraceIds::Require => TraceIdPolicy::Require,
            TraceIds::Generate => TraceIdPolicy::Generate,
        };
        let api = BookingApi::new(orchestrator.clone(), policy);
        let handle = server(tls.as_ref())
            .add_service(api.into_server())
            .health(health)
            .serve(options.listen)
            .await?;
        let addr = handle.local_addr();
        info!(
            %addr, transport = ?options.transport, store = ?options.store, pod_id = %options.pod_id,
            %order_url, %payment_url, tls = tls.is_some(), "BookingService listening"
        );
        println!("booking: BookingService listening on {addr}");
        app.booking_addr = Some(addr);
        app.servers.push(handle);
        if let Some(admin_addr) = options.admin_addr {
            let admin = Admin::new(store).register(&orchestrator);
            let admin = AdminService::new(admin)
                .with_token(options.admin_token.as_ref().map(Secret::expose))
                .server();
            let admin = match &tls {
                Some(tls) => admin.tls(tls.clone()),
                None => admin,
            };
            let handle = admin.serve(admin_addr).await?;
            let addr = handle.local_addr();
            let token = options.admin_token.is_some();
            info!(%addr, token, tls = tls.is_some(), "admin API listening");
            println!("booking: admin API listening on {addr} (sagaflow --addr {scheme}://{addr})");
            app.admin_addr = Some(addr);
            app.servers.push(handle);
        }
        app.orchestrator = Some(orchestrator);
    }
    Ok(app)
}

async fn transport(options: &Options) -> Result<(Arc<dyn Transport>, Broker), Box<dyn Error>> {
    let config = TransportConfig {
        default_concurrency: options.concurrency,
        ..TransportConfig::with_prefix(&options.topic_prefix)
    };
    Ok(match options.transport {
        TransportKind::Memory => (Arc::new(MemoryTransport::new(config)), Broker::None),
        TransportKind::Rabbitmq => {
            let transport =
                Arc::new(RabbitMqTransport::connect(&options.rabbitmq_url, config).await?);
            (transport.clone(), Broker::RabbitMq(transport))
        }
        TransportKind::Nats => {
            let transport = Arc::new(NatsTransport::connect(&options.nats_url, config).await?);
            (transport.clone(), Broker::Nats(transport))
        }
    })
}

async fn store(options: &Options) -> Result<Arc<dyn SagaStore>, Box<dyn Error>> {
    Ok(match options.store {
        // The in-memory store's own defaults (finished records kept 10 minutes, at most
        // 100,000): the Redis defaults (24 h) would hold every booking of a day in this process.
        StoreKind::Memory => Arc::new(MemoryStore::new(StoreConfig::memory())),
        StoreKind::Redis => {
            let config = sagaflow::store::RedisConfig {
                key_prefix: options.topic_prefix.clone(),
                cluster: options.redis_cluster,
                replica_acks: options.redis_replica_acks,
                ..sagaflow::store::RedisConfig::default()
            };
            Arc::new(RedisStore::connect(&options.redis_url, config).await?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> Options {
        Options::parse_from(std::iter::once("booking").chain(args.iter().copied()))
    }

    #[test]
    fn the_admin_api_beyond_loopback_needs_a_token() {
        assert!(options(&[]).check_admin().is_ok());
        assert!(
            options(&["--admin-addr", "127.0.0.1:10003"])
                .check_admin()
                .is_ok()
        );
        assert!(
            options(&["--admin-addr", "[::1]:10003"])
                .check_admin()
                .is_ok()
        );
        let refused = options(&["--admin-addr", "0.0.0.0:10003"])
            .check_admin()
            .expect_err("no token");
        assert!(refused.contains("--admin-token"), "{refused}");
        assert!(
            options(&["--admin-addr", "0.0.0.0:10003", "--admin-token", "s3cret"])
                .check_admin()
                .is_ok()
        );
        assert!(
            options(&["--admin-addr", "127.0.0.1:10003", "--admin-token", ""])
                .check_admin()
                .is_err()
        );
        assert!(
            options(&["--role", "order", "--admin-addr", "127.0.0.1:10003"])
                .check_admin()
                .is_err()
        );
    }

    #[test]
    fn simulate_latency_is_parsed_and_checked() {
        let plain = options(&["--simulate"]);
        assert_eq!(plain.simulate_latency, Duration::ZERO);
        assert!(plain.check_simulate().is_ok());
        let slow = options(&["--simulate", "--simulate-latency", "2s"]);
        assert_eq!(slow.simulate_latency, Duration::from_secs(2));
        assert!(slow.check_simulate().is_ok());
        let unsimulated = options(&["--simulate-latency", "2s"])
            .check_simulate()
            .expect_err("the real services take --upstream-latency");
        assert!(unsimulated.contains("--simulate"), "{unsimulated}");
        let too_slow = options(&["--simulate", "--simulate-latency", "5s"])
            .check_simulate()
            .expect_err("every step would time out");
        assert!(too_slow.contains("time out"), "{too_slow}");
    }

    /// A simulated saga waits the latency in each of its two steps, and still books.
    #[tokio::test]
    async fn simulated_steps_wait_the_simulated_latency() {
        use crate::saga::BookingInput;
        use sagaflow::engine::SyncEngine;
        use sagaflow::{Saga, SagaContext};

        let latency = Duration::from_millis(150);
        let saga = Booking::simulated_with_latency(latency);
        assert_eq!(saga.simulated_latency(), latency);
        let input = BookingInput {
            product_id: 1,
            count: 1,
            fault_inject: false,
        };
        let cx = SagaContext::new(Booking::description().name, "slow-1");
        let started = std::time::Instant::now();
        let booked = SyncEngine::new()
            .run(&saga, &cx, input)
            .await
            .expect("a simulated booking completes");
        let took = started.elapsed();
        assert!(
            took >= 2 * latency,
            "two steps of {latency:?} took {took:?}"
        );
        assert_eq!((booked.order_id, booked.payment_id), (1, 2));
        assert_eq!(Booking::simulated().simulated_latency(), Duration::ZERO);
    }

    #[test]
    fn tls_flags_make_servers_and_upstream_calls_tls_only() {
        let plain = options(&[]);
        assert!(plain.server_tls().is_none() && plain.upstream_tls().is_none());
        assert!(plain.check_tls().is_ok());

        let tls = options(&[
            "--tls-cert",
            "s.pem",
            "--tls-key",
            "s.key",
            "--upstream-ca",
            "ca.pem",
        ]);
        assert_eq!(tls.server_tls(), Some(ServerTls::new("s.pem", "s.key")));
        assert_eq!(tls.upstream_tls(), Some(ClientTls::with_ca("ca.pem")));
        assert!(tls.check_tls().is_ok());
        let no_ca = options(&["--tls-cert", "s.pem", "--tls-key", "s.key"]);
        assert!(
            no_ca
                .check_tls()
                .expect_err("role all calls its own TLS services")
                .contains("--upstream-ca")
        );
        // Another role calls nothing of its own: no upstream CA needed.
        let order = options(&[
            "--role",
            "order",
            "--tls-cert",
            "s.pem",
            "--tls-key",
            "s.key",
        ]);
        assert!(order.check_tls().is_ok());
        Options::try_parse_from(["booking", "--tls-cert", "s.pem"]).expect_err("a key too");
        // As a config file may give it, past clap's checks: refused, never plaintext.
        let mut half = options(&[]);
        half.tls_cert = Some("s.pem".into());
        let refused = half.check_tls().expect_err("a certificate without its key");
        assert!(refused.contains("--tls-cert needs --tls-key"), "{refused}");
        let mut orphan = options(&[]);
        orphan.upstream_key = Some("c.key".into());
        let refused = orphan
            .check_tls()
            .expect_err("a key without its certificate");
        assert!(refused.contains("--upstream-cert"), "{refused}");
        Options::try_parse_from([
            "booking",
            "--upstream-cert",
            "c.pem",
            "--upstream-key",
            "c.key",
        ])
        .expect_err("a CA too");
    }

    #[tokio::test]
    async fn an_upstream_url_must_match_its_tls_settings() {
        let ca = ClientTls::with_ca("ca.pem");
        let plaintext = upstream_channel("http://127.0.0.1:10001", Some(&ca))
            .expect_err("TLS settings with http");
        assert!(plaintext.to_string().contains("https://"), "{plaintext}");
        let no_ca =
            upstream_channel("https://127.0.0.1:10001", None).expect_err("https without a CA");
        assert!(no_ca.to_string().contains("--upstream-ca"), "{no_ca}");
        let missing =
            upstream_channel("https://127.0.0.1:10001", Some(&ca)).expect_err("no such file");
        assert!(missing.to_string().contains("ca.pem"), "{missing}");
        upstream_channel("http://127.0.0.1:10001", None).expect("plaintext without TLS settings");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_admin_api_serves_the_booking_saga_on_its_own_address() {
        use sagaflow::grpc::admin::pb;
        use sagaflow::grpc::admin::pb::saga_admin_client::SagaAdminClient;

        let mut args = vec!["--admin-addr", "127.0.0.1:0", "--admin-token", "s3cret"];
        for flag in ["--listen", "--order-listen", "--payment-listen"] {
            args.extend([flag, "127.0.0.1:0"]);
        }
        let app = start(options(&args)).await.expect("the example starts");
        let admin = app.admin_addr.expect("the admin API listens");
        assert_ne!(Some(admin), app.booking_addr, "a listener of its own");
        let mut client = SagaAdminClient::connect(format!("http://{admin}"))
            .await
            .expect("connects");

        let refused = client
            .list_saga_definitions(pb::ListSagaDefinitionsRequest {})
            .await
            .expect_err("no token");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);

        let mut request = tonic::Request::new(pb::ListSagaDefinitionsRequest {});
        request
            .metadata_mut()
            .insert("authorization", "Bearer s3cret".parse().expect("ascii"));
        let sagas = client
            .list_saga_definitions(request)
            .await
            .expect("admitted")
            .into_inner()
            .sagas;
        let names: Vec<&str> = sagas.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Booking"]);
        app.shutdown().await.expect("stops");
    }
}
