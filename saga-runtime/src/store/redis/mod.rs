//! The Redis saga store (feature `redis`): records shared by every orchestrator replica, and
//! a watcher that lets any replica await a saga's end.
//!
//! # Layout in Redis
//! - `{prefix}:saga:{trace_id}`: the [`SagaRecord`] as JSON. Created with `SET NX` (atomic
//!   across replicas), with the running safety TTL ([`StoreConfig::running_ttl`]); a final
//!   status sets the finished TTL ([`StoreConfig::finished_ttl`]).
//! - `{prefix}:done:{trace_id}`: the pub/sub channel on which the final record is published,
//!   in the same `MULTI`/`EXEC` as the write that makes it final.
//!
//! # Connections and failures
//! Commands go through a redis-rs [`ConnectionManager`] (multiplexed, reconnects on its own);
//! the watcher has one more, RESP3 with automatic resubscription, shared by every waiting
//! request of the instance (see the `watcher` module docs). [`RedisStore::connect`] fails
//! within [`RedisConfig::connect_timeout`] when Redis is unreachable; every operation fails
//! within [`RedisConfig::response_timeout`] (or twice that for a watch's subscription) when
//! Redis goes away, with an error naming the address. Nothing hangs.

mod watcher;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncConnectionConfig, Client, ConnectionInfo, IntoConnectionInfo, ProtocolVersion};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use self::watcher::Watcher;
use super::{Begin, Outcome, SagaRecord, SagaStatus, SagaStore, StoreConfig, StoreError, now_ms};

const BACKEND: &str = "redis";

/// What [`UPDATE_SCRIPT`] returns when the record does not exist.
const UPDATE_MISSING: i64 = 0;

/// Sets `KEYS[1]` to `ARGV[1]` (with `PX ARGV[2]` unless 0) if it exists and is not final,
/// then publishes it on `KEYS[2]` when `ARGV[3]` is 1. Returns 0 when the key is missing, 1
/// when the stored record is final (left unchanged), 2 when written. A record is final when
/// its status object starts with a final tag; the JSON is matched as bytes (quotes inside
/// JSON strings are escaped, so user data cannot fake the marker) rather than decoded, so
/// large integers in outputs are never re-encoded by Lua.
static UPDATE_SCRIPT: std::sync::LazyLock<::redis::Script> = std::sync::LazyLock::new(|| {
    ::redis::Script::new(
        r#"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if string.find(current, '"status":{"status":"completed"', 1, true)
    or string.find(current, '"status":{"status":"failed"', 1, true) then
    return 1
end
if ARGV[2] ~= '0' then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
    redis.call('SET', KEYS[1], ARGV[1])
end
if ARGV[3] == '1' then redis.call('PUBLISH', KEYS[2], ARGV[1]) end
return 2
"#,
    )
});
/// How a user makes Redis reachable, appended to connection errors.
const START_HINT: &str = "is Redis running and reachable? Start it (e.g. `redis-server`, or `docker compose -f deployment/local/compose.yaml up redis`) or fix the URL";

/// Settings of the Redis store. `From<StoreConfig>` gives the defaults below with those
/// store settings.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// Settings common to every backend (time-to-live of records).
    pub store: StoreConfig,
    /// Prefix of every key and channel (`{prefix}:saga:{id}`, `{prefix}:done:{id}`), so
    /// several deployments (or tests) can share one Redis. Default `sagaflow`.
    pub key_prefix: String,
    /// Bound on [`RedisStore::connect`] and on each connection attempt. Default 3 s.
    pub connect_timeout: Duration,
    /// Bound on each operation (a command, or a reconnection it waits for). Default 5 s.
    pub response_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self::from(StoreConfig::default())
    }
}

impl From<StoreConfig> for RedisConfig {
    fn from(store: StoreConfig) -> Self {
        Self {
            store,
            key_prefix: "sagaflow".to_string(),
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(5),
        }
    }
}

/// Key and channel names under the configured prefix.
#[derive(Debug)]
struct Keys {
    record_prefix: String,
    channel_prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            record_prefix: format!("{prefix}:saga:"),
            channel_prefix: format!("{prefix}:done:"),
        }
    }

    fn record(&self, trace_id: &str) -> String {
        format!("{}{trace_id}", self.record_prefix)
    }

    fn channel(&self, trace_id: &str) -> String {
        format!("{}{trace_id}", self.channel_prefix)
    }

    fn trace_id_of_channel<'c>(&self, channel: &'c str) -> Option<&'c str> {
        channel.strip_prefix(self.channel_prefix.as_str())
    }
}

/// What the store and its watcher task share: settings, names and the command connection.
struct Shared {
    config: RedisConfig,
    keys: Arc<Keys>,
    /// `host:port` (never the password), for error messages.
    addr: String,
    commands: ConnectionManager,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("addr", &self.addr)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn error(&self, message: String) -> StoreError {
        StoreError {
            backend: BACKEND,
            message: format!("Redis at {}: {message}", self.addr),
        }
    }

    /// Runs one Redis operation within the response timeout; `what` and `trace_id` name it
    /// in the error.
    async fn bounded<T>(
        &self,
        what: &str,
        trace_id: &str,
        operation: impl Future<Output = ::redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let timeout = self.config.response_timeout;
        match tokio::time::timeout(timeout, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.error(format!(
                "{what} failed [trace id {trace_id}]: {error}; {START_HINT}"
            ))),
            Err(_) => Err(self.error(format!(
                "{what} got no answer within {timeout:?} [trace id {trace_id}]; {START_HINT}"
            ))),
        }
    }

    fn decode(&self, key: &str, json: &str) -> Result<SagaRecord, StoreError> {
        serde_json::from_str(json).map_err(|error| {
            self.error(format!(
                "key `{key}` holds corrupt data, not a saga record ({error}); delete or repair the key"
            ))
        })
    }

    fn encode(&self, record: &SagaRecord) -> Result<String, StoreError> {
        serde_json::to_string(record).map_err(|error| {
            self.error(format!(
                "cannot serialise the record of trace id {}: {error}",
                record.trace_id
            ))
        })
    }

    async fn get(&self, trace_id: &str) -> Result<Option<SagaRecord>, StoreError> {
        let key = self.keys.record(trace_id);
        let mut conn = self.commands.clone();
        let get = ::redis::cmd("GET").arg(&key).to_owned();
        let json: Option<String> = self
            .bounded("GET", trace_id, get.query_async(&mut conn))
            .await?;
        json.map(|json| self.decode(&key, &json)).transpose()
    }
}

/// The Redis [`SagaStore`], shared by every replica that uses the same Redis and prefix.
///
/// Create it once per process with [`RedisStore::connect`] and share it (`Arc`): it holds two
/// connections (commands, and the watcher's pub/sub) whatever the number of concurrent sagas
/// and waiting requests. Dropping it closes them and fails its pending watches.
pub struct RedisStore {
    shared: Arc<Shared>,
    watcher: Watcher,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.shared.addr)
            .field("config", &self.shared.config)
            .field("watchers", &self.watcher.waiters.count())
            .finish()
    }
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[user:password@]host:port[/db]`).
    ///
    /// Fails within `config.connect_timeout` with a [`StoreError`] naming the address when the
    /// URL is invalid or Redis is unreachable. `config` is a [`RedisConfig`] or a
    /// [`StoreConfig`] (then the Redis settings take their defaults).
    pub async fn connect(url: &str, config: impl Into<RedisConfig>) -> Result<Self, StoreError> {
        let config = config.into();
        let info = url.into_connection_info().map_err(|error| StoreError {
            backend: BACKEND,
            message: format!("invalid Redis URL `{}`: {error}", redact(url)),
        })?;
        let addr = info.addr().to_string();
        let bound = config.connect_timeout;
        match tokio::time::timeout(bound, Self::open(info, config, addr.clone())).await {
            Ok(result) => result,
            Err(_) => Err(StoreError {
                backend: BACKEND,
                message: format!(
                    "cannot connect to Redis at {addr}: no connection within {bound:?}; {START_HINT}"
                ),
            }),
        }
    }

    async fn open(
        info: ConnectionInfo,
        config: RedisConfig,
        addr: String,
    ) -> Result<Self, StoreError> {
        let connect_error = |error: ::redis::RedisError| StoreError {
            backend: BACKEND,
            message: format!("cannot connect to Redis at {addr}: {error}; {START_HINT}"),
        };
        let client = Client::open(info.clone()).map_err(connect_error)?;
        // One direct attempt first: the connection managers retry with backoff, which would
        // hide the cause (refused, auth, ...) behind the connect timeout.
        let probe = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout));
        client
            .get_multiplexed_async_connection_with_config(&probe)
            .await
            .map_err(connect_error)?;

        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout));
        let commands = client
            .get_connection_manager_with_config(manager_config.clone())
            .await
            .map_err(connect_error)?;

        let keys = Arc::new(Keys::new(&config.key_prefix));
        let (parts, on_push) = Watcher::prepare(Arc::clone(&keys));
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let pubsub_client = Client::open(info.set_redis_settings(resp3)).map_err(connect_error)?;
        let pubsub = pubsub_client
            .get_connection_manager_with_config(
                manager_config
                    .set_push_sender(on_push)
                    .set_automatic_resubscription(),
            )
            .await
            .map_err(connect_error)?;

        let shared = Arc::new(Shared {
            config,
            keys,
            addr,
            commands,
        });
        let watcher = Watcher::start(Arc::clone(&shared), pubsub, parts);
        Ok(Self { shared, watcher })
    }

    /// The Redis key holding the record of `trace_id`.
    pub fn record_key(&self, trace_id: &str) -> String {
        self.shared.keys.record(trace_id)
    }

    /// The pub/sub channel on which the end of `trace_id` is published.
    pub fn completion_channel(&self, trace_id: &str) -> String {
        self.shared.keys.channel(trace_id)
    }

    /// Number of registered watchers (all trace ids). For tests.
    #[doc(hidden)]
    pub fn watcher_count(&self) -> usize {
        self.watcher.waiters.count()
    }

    /// Number of completion channels this instance is subscribed to. For tests.
    #[doc(hidden)]
    pub fn subscribed_channel_count(&self) -> usize {
        self.watcher.subscribed_count()
    }

    /// The server-side id (`CLIENT ID`) of the watcher's pub/sub connection. For tests.
    #[doc(hidden)]
    pub async fn watch_connection_id(&self) -> Result<i64, StoreError> {
        self.watcher.connection_id(&self.shared).await
    }

    async fn begin_record(&self, record: SagaRecord) -> Result<Begin, StoreError> {
        let shared = &self.shared;
        let trace_id = record.trace_id.as_str();
        let key = shared.keys.record(trace_id);
        let json = shared.encode(&record)?;
        let mut set = ::redis::cmd("SET");
        set.arg(&key).arg(&json).arg("NX");
        if let Some(ttl) = shared.config.store.ttl_for(&record.status) {
            set.arg("PX").arg(millis(ttl));
        }
        // The record may expire or be removed between a refused SET NX and the GET: try again.
        for _ in 0..3 {
            let mut conn = shared.commands.clone();
            let created: Option<String> = shared
                .bounded("SET NX", trace_id, set.query_async(&mut conn))
                .await?;
            if created.is_some() {
                return Ok(Begin::Started);
            }
            if let Some(existing) = shared.get(trace_id).await? {
                return Ok(if existing.fingerprint == record.fingerprint {
                    Begin::Existing(existing)
                } else {
                    Begin::Conflict(existing)
                });
            }
        }
        Err(shared.error(format!(
            "key `{key}` kept appearing and vanishing while beginning trace id {trace_id}; retry"
        )))
    }

    async fn update_record(
        &self,
        trace_id: &str,
        status: SagaStatus,
        attempts: u32,
    ) -> Result<(), StoreError> {
        let shared = &self.shared;
        let key = shared.keys.record(trace_id);
        let mut record = shared
            .get(trace_id)
            .await?
            .ok_or_else(|| missing(shared, trace_id))?;
        if record.status.is_final() {
            // An ended saga stays ended: a late or duplicate delivery does not reopen it.
            return Ok(());
        }
        let is_final = status.is_final();
        let ttl = shared.config.store.ttl_for(&status);
        record.status = status;
        record.attempts = attempts;
        record.updated_at_ms = now_ms();
        let json = shared.encode(&record)?;

        // One atomic script: write unless the record turned final since it was read (another
        // replica ended the saga in between), and publish a final record to the watchers.
        let mut invocation = UPDATE_SCRIPT.key(&key);
        invocation
            .key(shared.keys.channel(trace_id))
            .arg(&json)
            .arg(ttl.map(millis).unwrap_or(0))
            .arg(u8::from(is_final));
        let mut conn = shared.commands.clone();
        let written: i64 = shared
            .bounded("update", trace_id, invocation.invoke_async(&mut conn))
            .await?;
        match written {
            UPDATE_MISSING => Err(missing(shared, trace_id)),
            _ => Ok(()),
        }
    }

    async fn watch_outcome(&self, trace_id: &str) -> Result<Outcome, StoreError> {
        // Register, subscribe, then read: a completion published after the subscription
        // wakes the waiter; one written before it is seen by the read.
        let waiter = self.watcher.waiters.register(trace_id);
        self.watcher.subscribe(&self.shared, trace_id).await?;
        if let Some(outcome) = self
            .shared
            .get(trace_id)
            .await?
            .and_then(|record| record.status.outcome())
        {
            return Ok(outcome);
        }
        waiter.wait(BACKEND).await
    }

    async fn remove_record(&self, trace_id: &str) -> Result<(), StoreError> {
        let key = self.shared.keys.record(trace_id);
        let mut conn = self.shared.commands.clone();
        let del = ::redis::cmd("DEL").arg(&key).to_owned();
        self.shared
            .bounded("DEL", trace_id, del.query_async::<i64>(&mut conn))
            .await
            .map(drop)
    }
}

fn missing(shared: &Shared, trace_id: &str) -> StoreError {
    shared.error(format!(
        "no record for trace id {trace_id} (key `{}`): it was never begun, was removed, or expired",
        shared.keys.record(trace_id)
    ))
}

/// A TTL in whole milliseconds, at least 1 (Redis refuses `PX 0`).
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `url` without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

impl SagaStore for RedisStore {
    fn begin(&self, record: SagaRecord) -> BoxFuture<'_, Result<Begin, StoreError>> {
        self.begin_record(record).boxed()
    }

    fn update<'a>(
        &'a self,
        trace_id: &'a str,
        status: SagaStatus,
        attempts: u32,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.update_record(trace_id, status, attempts).boxed()
    }

    fn get<'a>(
        &'a self,
        trace_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SagaRecord>, StoreError>> {
        self.shared.get(trace_id).boxed()
    }

    fn watch<'a>(&'a self, trace_id: &'a str) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        self.watch_outcome(trace_id).boxed()
    }

    fn remove<'a>(&'a self, trace_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.remove_record(trace_id).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            redact("redis://u:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    #[test]
    fn channel_names_round_trip() {
        let keys = Keys::new("p");
        assert_eq!(keys.trace_id_of_channel(&keys.channel("a:b")), Some("a:b"));
        assert_eq!(keys.trace_id_of_channel("other:done:x"), None);
    }
}
