//! The broker and store a test runs against: the in-memory pair, or RabbitMQ / NATS JetStream
//! with Redis on 127.0.0.1, each under a unique prefix that is removed at the end. An
//! unreachable server fails the test with its name and the command that starts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sagaflow::store::{MemoryStore, RedisConfig, RedisStore, SagaStore, StoreConfig};
use sagaflow::transport::{
    MemoryTransport, NatsTransport, RabbitMqTransport, Transport, TransportConfig,
};

/// Which pair a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Memory transport, memory store.
    Memory,
    /// RabbitMQ and Redis.
    RabbitMq,
    /// NATS JetStream and Redis.
    Nats,
}

pub const RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const NATS_URL: &str = "nats://127.0.0.1:4222";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const START_RABBITMQ: &str = "rabbitmq-server -detached";
pub const START_NATS: &str = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log";
pub const START_REDIS: &str = "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log";

enum Cleanup {
    Memory,
    RabbitMq(Arc<RabbitMqTransport>),
    Nats(Arc<NatsTransport>),
}

/// A connected transport and store under a unique prefix.
pub struct Backends {
    pub transport: Arc<dyn Transport>,
    pub store: Arc<dyn SagaStore>,
    pub prefix: String,
    cleanup: Cleanup,
}

/// A prefix no other test (or earlier run) uses.
pub fn unique_prefix(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "t-{name}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Backends {
    /// Connects `backend` under a unique prefix derived from `name`.
    pub async fn connect(backend: Backend, name: &str) -> Self {
        Self::connect_with(backend, name, |_| {}).await
    }

    /// Like [`Backends::connect`], letting the test adjust the transport config.
    pub async fn connect_with(
        backend: Backend,
        name: &str,
        tune: impl FnOnce(&mut TransportConfig),
    ) -> Self {
        Self::connect_with_store(backend, name, tune, StoreConfig::default()).await
    }

    /// Like [`Backends::connect_with`], with the store settings `store`.
    pub async fn connect_with_store(
        backend: Backend,
        name: &str,
        tune: impl FnOnce(&mut TransportConfig),
        store: StoreConfig,
    ) -> Self {
        let prefix = unique_prefix(name);
        let mut config = TransportConfig {
            ack_wait: Duration::from_secs(2),
            ..TransportConfig::with_prefix(&prefix)
        };
        tune(&mut config);
        match backend {
            Backend::Memory => Self {
                transport: Arc::new(MemoryTransport::new(config)),
                store: Arc::new(MemoryStore::new(store)),
                prefix,
                cleanup: Cleanup::Memory,
            },
            Backend::RabbitMq => {
                let transport = match RabbitMqTransport::connect(RABBITMQ_URL, config).await {
                    Ok(transport) => Arc::new(transport),
                    Err(e) => panic!(
                        "RabbitMQ is unreachable at {RABBITMQ_URL} ({e}); start it with: {START_RABBITMQ}"
                    ),
                };
                Self {
                    transport: transport.clone(),
                    store: redis_store(&prefix, store).await,
                    prefix,
                    cleanup: Cleanup::RabbitMq(transport),
                }
            }
            Backend::Nats => {
                let transport = match NatsTransport::connect(NATS_URL, config).await {
                    Ok(transport) => Arc::new(transport),
                    Err(e) => panic!(
                        "NATS is unreachable at {NATS_URL} ({e}); start it with: {START_NATS}"
                    ),
                };
                Self {
                    transport: transport.clone(),
                    store: redis_store(&prefix, store).await,
                    prefix,
                    cleanup: Cleanup::Nats(transport),
                }
            }
        }
    }

    /// Deletes the queues, streams and keys the test declared.
    pub async fn cleanup(self) {
        match self.cleanup {
            Cleanup::Memory => {}
            Cleanup::RabbitMq(transport) => {
                if let Err(e) = transport.delete_topology().await {
                    eprintln!(
                        "cleanup: cannot delete RabbitMQ topology of {}: {e}",
                        self.prefix
                    );
                }
                delete_redis_keys(&self.prefix).await;
            }
            Cleanup::Nats(transport) => {
                if let Err(e) = transport.delete_topology().await {
                    eprintln!("cleanup: cannot delete NATS stream of {}: {e}", self.prefix);
                }
                delete_redis_keys(&self.prefix).await;
            }
        }
    }
}

async fn redis_store(prefix: &str, store: StoreConfig) -> Arc<dyn SagaStore> {
    let config = RedisConfig {
        key_prefix: prefix.to_string(),
        connect_timeout: Duration::from_secs(5),
        ..RedisConfig::from(store)
    };
    match RedisStore::connect(REDIS_URL, config).await {
        Ok(store) => Arc::new(store),
        Err(e) => panic!("Redis is unreachable at {REDIS_URL} ({e}); start it with: {START_REDIS}"),
    }
}

/// Deletes every key under `prefix` (SCAN + UNLINK in batches: never a KEYS over the whole
/// keyspace, which times out once the shared Redis holds many keys and then leaks them).
pub async fn delete_redis_keys(prefix: &str) {
    let Ok(client) = redis::Client::open(REDIS_URL) else {
        return;
    };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let mut cursor: u64 = 0;
    loop {
        let Ok((next, keys)): Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await
        else {
            return;
        };
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut connection)
                .await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}
