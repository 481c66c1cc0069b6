//! Shared pieces of the transport conformance suite: one factory per transport, a collector
//! of deliveries with a generous wait, and cleanup of what a test declared.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
#[cfg(feature = "nats")]
use sagaflow::transport::NatsTransport;
#[cfg(feature = "rabbitmq")]
use sagaflow::transport::RabbitMqTransport;
use sagaflow::transport::{
    Delivery, Disposition, Handler, MemoryTransport, Transport, TransportConfig,
};
use tokio::sync::Notify;

#[cfg(feature = "rabbitmq")]
pub const RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
#[cfg(feature = "nats")]
pub const NATS_URL: &str = "nats://127.0.0.1:4222";
#[cfg(feature = "rabbitmq")]
pub const RABBITMQ_START: &str = "rabbitmq-server -detached";
#[cfg(feature = "nats")]
pub const NATS_START: &str = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log";

/// How long a test waits for something that should happen (generous: loaded 2-core CI).
pub const WAIT: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // the broker kinds are unused when built without their feature
pub enum Kind {
    Memory,
    RabbitMq,
    /// RabbitMQ with quorum queues (`TransportConfig::queue_type`).
    RabbitMqQuorum,
    Nats,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Memory => "memory",
            Kind::RabbitMq => "rabbitmq",
            Kind::RabbitMqQuorum => "rabbitmq-quorum",
            Kind::Nats => "nats",
        })
    }
}

enum Backend {
    Memory,
    #[cfg(feature = "rabbitmq")]
    RabbitMq(RabbitMqTransport),
    #[cfg(feature = "nats")]
    Nats(NatsTransport),
}

/// A transport under test, on a prefix no other test uses.
pub struct Harness {
    pub kind: Kind,
    /// The connection name shown by the broker (unique per test).
    #[cfg_attr(not(feature = "rabbitmq"), allow(dead_code))]
    pub connection_name: String,
    pub transport: Arc<dyn Transport>,
    backend: Backend,
}

fn unique_prefix(kind: Kind, test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "conformance-{kind}-{test}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Harness {
    pub async fn open(kind: Kind, test: &str) -> Self {
        let mut config = TransportConfig::with_prefix(unique_prefix(kind, test));
        // Short ack wait so NATS redelivers what an aborted subscriber left within the test.
        config.ack_wait = Duration::from_secs(2);
        config.connection_name = format!("sagaflow-{}", config.topic_prefix);
        let connection_name = config.connection_name.clone();
        match kind {
            Kind::Memory => {
                let transport = MemoryTransport::new(config);
                Self {
                    kind,
                    connection_name,
                    transport: Arc::new(transport),
                    backend: Backend::Memory,
                }
            }
            #[cfg(feature = "rabbitmq")]
            Kind::RabbitMq | Kind::RabbitMqQuorum => {
                if kind == Kind::RabbitMqQuorum {
                    config.queue_type = sagaflow::transport::QueueType::Quorum;
                }
                Self::rabbitmq(kind, config, connection_name).await
            }
            #[cfg(feature = "nats")]
            Kind::Nats => match NatsTransport::connect(NATS_URL, config).await {
                Ok(transport) => Self {
                    kind,
                    connection_name,
                    transport: Arc::new(transport.clone()),
                    backend: Backend::Nats(transport),
                },
                Err(error) => panic!(
                    "NATS (JetStream) is not reachable at 127.0.0.1:4222 ({error}); start it with `{NATS_START}`"
                ),
            },
            #[allow(unreachable_patterns)]
            other => panic!("the {other} transport needs `--features {other}`"),
        }
    }

    #[cfg(feature = "rabbitmq")]
    async fn rabbitmq(kind: Kind, config: TransportConfig, connection_name: String) -> Self {
        match RabbitMqTransport::connect(RABBITMQ_URL, config).await {
            Ok(transport) => Self {
                kind,
                connection_name,
                transport: Arc::new(transport.clone()),
                backend: Backend::RabbitMq(transport),
            },
            Err(error) => panic!(
                "RabbitMQ is not reachable at 127.0.0.1:5672 ({error}); start it with `{RABBITMQ_START}`"
            ),
        }
    }

    /// Deletes what the test declared on the broker.
    pub async fn cleanup(&self) {
        let result: Result<(), sagaflow::transport::TransportError> = match &self.backend {
            Backend::Memory => Ok(()),
            #[cfg(feature = "rabbitmq")]
            Backend::RabbitMq(transport) => transport.delete_topology().await,
            #[cfg(feature = "nats")]
            Backend::Nats(transport) => transport.delete_topology().await,
        };
        if let Err(error) = result {
            eprintln!("{}: cleanup failed: {error}", self.kind);
        }
    }
}

/// Runs one conformance test body against `kind`, then cleans up, even when the body panics.
pub async fn run<F, Fut>(kind: Kind, test: &str, body: F)
where
    F: FnOnce(Arc<Harness>) -> Fut,
    Fut: Future<Output = ()>,
{
    let harness = Arc::new(Harness::open(kind, test).await);
    let outcome = AssertUnwindSafe(body(harness.clone())).catch_unwind().await;
    harness.cleanup().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Shared state that handlers update and tests wait on.
pub struct Shared<T> {
    state: Mutex<T>,
    changed: Notify,
}

impl<T> Shared<T> {
    pub fn new(state: T) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(state),
            changed: Notify::new(),
        })
    }

    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let result = f(&mut self.state.lock().unwrap());
        self.changed.notify_waiters();
        result
    }

    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.state.lock().unwrap())
    }

    /// Waits until `done` holds, failing the test with `what` after [`WAIT`].
    pub async fn wait_until(&self, what: &str, done: impl Fn(&T) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.read(&done) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                assert!(
                    self.read(&done),
                    "timed out after {WAIT:?} waiting for {what}"
                );
                return;
            }
        }
    }
}

/// A handler from an async closure.
pub fn handler<F, Fut>(f: F) -> Arc<dyn Handler>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Disposition> + Send + 'static,
{
    Arc::new(f)
}
