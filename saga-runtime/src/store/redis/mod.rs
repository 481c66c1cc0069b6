//! The Redis saga store (feature `redis`): records shared by every orchestrator replica, and
//! a watcher that lets any replica await a saga's end.
//!
//! # Layout in Redis
//! - `{prefix}:saga:{trace_id}`: a hash holding the [`SagaRecord`]: `saga`, `fp`
//!   (fingerprint), `mode`, `status` (JSON), `state` (the envelope to resume from, JSON),
//!   `seq`, `owner`, `until` (lease end, ms on the Redis clock), `queued`, `attempts`,
//!   `final`, `created`, `updated`, `kind` and `since` (its status family and since when),
//!   `abort` (compensation requested), `ttl_at` (when its running TTL was last restarted), and
//!   its history: `h<n>`, the `n`th [`HistoryEntry`] as JSON (the latest
//!   [`StoreConfig::history_limit`] kept), and `hn`, how many were ever written.
//!   It carries the running safety TTL
//!   ([`StoreConfig::running_ttl`]); a final status sets the finished TTL
//!   ([`StoreConfig::finished_ttl`]).
//! - `{prefix}:leases`: a sorted set of the running trace ids scored by lease end, which the
//!   recovery sweeper reads (`ZRANGEBYSCORE`), so finding expired sagas never scans keys.
//! - `{prefix}:done:{trace_id}`: the pub/sub channel on which the final status is published,
//!   by the same script that makes the record final.
//! - `{prefix}:status`: the status index, one sorted set of every saga's trace id, scored by
//!   its status family ([`StatusKind`](super::StatusKind), one band of scores each) plus when
//!   it entered it (the record's `kind` and `since` fields): a saga changing family is moved
//!   by one `ZADD`, and listings page through one band (`ZRANGEBYSCORE`) without scanning
//!   keys. Entries of expired final records are pruned by the sweeper's periodic read of
//!   expired leases and by listings.
//!
//! Every operation is one Lua script (one round trip) that reads, fences (sequence number,
//! owner token, lease), writes the hash and the lease index, and publishes. Lease times use
//! the Redis server's clock (`TIME`), so replicas' clocks need not agree. The keys of one saga
//! and the lease index are separate keys: a Redis Cluster deployment needs them in one slot
//! (a `{...}` hash tag in the prefix).
//!
//! # Connections and failures
//! Commands go through a redis-rs [`ConnectionManager`] (multiplexed, reconnects on its own);
//! the watcher has one more, RESP3 with automatic resubscription, shared by every waiting
//! request of the instance (see the `watcher` module docs). [`RedisStore::connect`] fails
//! within [`RedisConfig::connect_timeout`] when Redis is unreachable; every operation fails
//! within [`RedisConfig::response_timeout`] (or twice that for a watch's subscription) when
//! Redis goes away, with an error naming the address. Nothing hangs.

mod scripts;
mod watcher;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncConnectionConfig, Client, ConnectionInfo, IntoConnectionInfo, ProtocolVersion};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use self::scripts::LISTED_FIELDS;
use self::scripts::{SCRIPTS, band, band_end, reply, status_score};
use self::watcher::Watcher;
use super::{
    Advance, Begin, Claim, Claimed, HistoryEntry, HistoryEvent, Hold, ListCursor, ListQuery, Mode,
    Outcome, Reopen, SagaPage, SagaRecord, SagaStatus, SagaStore, StoreConfig, StoreError,
    StoreErrorKind, Written, millis,
};
use crate::redact::{Scrubbed, redact_url, secrets_of};
use crate::tls::{ClientTls, wants_tls};

const BACKEND: &str = "redis";

/// How a user makes Redis reachable, appended to connection errors.
const START_HINT: &str = "is Redis running and reachable? Start it (e.g. `redis-server`, or `docker compose -f deployment/local/compose.yaml up redis`) or fix the URL";

/// What a connect error adds when the connection is TLS: where to look.
fn over_tls(tls: bool) -> &'static str {
    if tls {
        " over TLS (is this Redis's TLS port, and does its certificate chain to the trusted CA?)"
    } else {
        ""
    }
}

/// Settings of the Redis store. `From<StoreConfig>` gives the defaults below with those
/// store settings. Reads from a config file like [`StoreConfig`] (the common settings under
/// `store`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Settings common to every backend (time-to-live of records).
    pub store: StoreConfig,
    /// Prefix of every key and channel (`{prefix}:saga:{id}`, `{prefix}:done:{id}`), so
    /// several deployments (or tests) can share one Redis. Default `sagaflow`.
    pub key_prefix: String,
    /// Bound on [`RedisStore::connect`] and on each connection attempt. Default 3 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bound on each operation (a command, or a reconnection it waits for). Default 5 s.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// TLS settings for a `rediss://` URL: the CA file is trusted instead of the bundled
    /// Mozilla roots, the client certificate is presented for mutual TLS. With any file set
    /// the URL must be `rediss://`. Default: none.
    pub tls: ClientTls,
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
            tls: ClientTls::default(),
        }
    }
}

/// Key and channel names under the configured prefix.
#[derive(Debug)]
struct Keys {
    record_prefix: String,
    channel_prefix: String,
    leases_prefix: String,
    /// The status index: every saga, scored by status family and since when.
    status_index: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            record_prefix: format!("{prefix}:saga:"),
            channel_prefix: format!("{prefix}:done:"),
            leases_prefix: format!("{prefix}:leases:"),
            status_index: format!("{prefix}:status"),
        }
    }

    fn record(&self, trace_id: &str) -> String {
        format!("{}{trace_id}", self.record_prefix)
    }

    /// The lease index of the running sagas named `saga`.
    fn leases(&self, saga: &str) -> String {
        format!("{}{saga}", self.leases_prefix)
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
    fn error(&self, kind: StoreErrorKind, message: String) -> StoreError {
        StoreError::new(BACKEND, kind, format!("Redis at {}: {message}", self.addr))
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
            Ok(Err(error)) => Err(self
                .error(
                    StoreErrorKind::Unavailable,
                    format!("{what} failed [trace id {trace_id}]; {START_HINT}"),
                )
                .caused_by(error)),
            Err(_) => Err(self.error(
                StoreErrorKind::Timeout,
                format!(
                    "{what} got no answer within {timeout:?} [trace id {trace_id}]; {START_HINT}"
                ),
            )),
        }
    }

    /// A record from the fields of its hash (HGETALL), or an error naming the key.
    fn decode(
        &self,
        trace_id: &str,
        fields: HashMap<String, String>,
    ) -> Result<SagaRecord, StoreError> {
        let key = self.keys.record(trace_id);
        decode_record(trace_id, fields).map_err(|what| {
            self.error(
                StoreErrorKind::Corrupt,
                format!(
                    "key `{key}` holds corrupt data, not a saga record ({what}); delete or repair the key"
                ),
            )
        })
    }

    async fn get(&self, trace_id: &str) -> Result<Option<SagaRecord>, StoreError> {
        let key = self.keys.record(trace_id);
        let mut conn = self.commands.clone();
        // Every field but the history, which only an operator reads.
        let get = ::redis::cmd("HMGET")
            .arg(&key)
            .arg(&LISTED_FIELDS[..])
            .arg("state")
            .to_owned();
        let values: Vec<Option<String>> = self
            .bounded("HMGET", trace_id, get.query_async(&mut conn))
            .await?;
        if values.first().is_none_or(Option::is_none) {
            return Ok(None);
        }
        let fields = named(LISTED_FIELDS.iter().chain(&["state"]), values);
        self.decode(trace_id, fields).map(Some)
    }
}

/// The fields `names` with the values an `HMGET` of them replied (absent ones left out).
fn named<'n>(
    names: impl Iterator<Item = &'n &'static str>,
    values: Vec<Option<String>>,
) -> HashMap<String, String> {
    names
        .zip(values)
        .filter_map(|(name, value)| Some(((*name).to_string(), value?)))
        .collect()
}

/// Builds a record from its hash fields; `Err` names the field that is missing or wrong.
fn decode_record(
    trace_id: &str,
    mut fields: HashMap<String, String>,
) -> Result<SagaRecord, String> {
    let mut take = |name: &str| {
        fields
            .remove(name)
            .ok_or_else(|| format!("field `{name}` is missing"))
    };
    fn number<T: std::str::FromStr>(name: &str, text: String) -> Result<T, String> {
        text.parse()
            .map_err(|_| format!("field `{name}` is not a number: `{text}`"))
    }
    let saga = take("saga")?;
    let fingerprint = take("fp")?;
    let mode_name = take("mode")?;
    let mode = Mode::parse(&mode_name).ok_or_else(|| format!("unknown mode `{mode_name}`"))?;
    let status_json = take("status")?;
    let status: SagaStatus = serde_json::from_str(&status_json)
        .map_err(|e| format!("field `status` does not decode: {e}"))?;
    let created_at_ms = number("created", take("created")?)?;
    // Records written before the status indexes have no `since`.
    let status_since_ms = match take("since") {
        Ok(since) => number("since", since)?,
        Err(_) => created_at_ms,
    };
    Ok(SagaRecord {
        trace_id: trace_id.to_string(),
        saga,
        fingerprint,
        mode,
        status,
        seq: number("seq", take("seq")?)?,
        // A final record holds an empty state unless it kept one (stuck).
        state: take("state").ok().filter(|state| !state.is_empty()),
        owner: take("owner")?,
        lease_until_ms: number("until", take("until")?)?,
        queued: take("queued")? == "1",
        attempts: number("attempts", take("attempts")?)?,
        created_at_ms,
        updated_at_ms: number("updated", take("updated")?)?,
        status_since_ms,
        compensation_requested: take("abort").is_ok_and(|abort| abort == "1"),
    })
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
    /// Connects to the Redis at `url` (`redis://[user:password@]host:port[/db]`, or
    /// `rediss://...` over TLS; the user is an ACL user).
    ///
    /// Fails within `config.connect_timeout` with a [`StoreError`] naming the address when the
    /// URL is invalid, Redis is unreachable or refuses the credentials, or, for `rediss://`,
    /// the TLS handshake fails: a `rediss://` URL never connects in plaintext. With
    /// [`RedisConfig::tls`] files set, the URL must be `rediss://` (else
    /// [`StoreErrorKind::InvalidConfig`], as for a TLS file that is missing or not PEM).
    /// `config` is a [`RedisConfig`] or a [`StoreConfig`] (then the Redis settings take their
    /// defaults).
    pub async fn connect(url: &str, config: impl Into<RedisConfig>) -> Result<Self, StoreError> {
        let config = config.into();
        let secrets = secrets_of(url);
        let invalid = |what: String, error: &(dyn std::error::Error + 'static)| {
            StoreError::new(BACKEND, StoreErrorKind::InvalidConfig, what)
                .caused_by(Scrubbed::of(error, &secrets))
        };
        let info = url
            .into_connection_info()
            .map_err(|error| invalid(format!("invalid Redis URL `{}`", redact_url(url)), &error))?;
        let tls_error = |error: crate::tls::TlsError| {
            invalid(
                format!("invalid TLS settings for Redis at `{}`", redact_url(url)),
                &error,
            )
        };
        let tls = match wants_tls(url, &config.tls, "rediss").map_err(tls_error)? {
            true => Some(config.tls.load().map_err(tls_error)?),
            false => None,
        };
        let addr = info.addr().to_string();
        let bound = config.connect_timeout;
        let over = over_tls(tls.is_some());
        let open = Self::open(info, tls, config, addr.clone(), &secrets);
        match tokio::time::timeout(bound, open).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::new(
                BACKEND,
                StoreErrorKind::Connect,
                format!(
                    "cannot connect to Redis at {addr}{over}: no connection within {bound:?}; {START_HINT}"
                ),
            )),
        }
    }

    /// Opens the connections; an error's cause is scrubbed of `secrets` (a server may echo a
    /// user name back).
    async fn open(
        info: ConnectionInfo,
        tls: Option<crate::tls::files::ClientPem>,
        config: RedisConfig,
        addr: String,
        secrets: &[String],
    ) -> Result<Self, StoreError> {
        let over = over_tls(tls.is_some());
        let connect_error = |error: ::redis::RedisError| {
            StoreError::new(
                BACKEND,
                StoreErrorKind::Connect,
                format!("cannot connect to Redis at {addr}{over}; {START_HINT}"),
            )
            .caused_by(Scrubbed::of(&error, secrets))
        };
        let client = match tls {
            // `rediss://` with no file set: the bundled roots, no client certificate.
            Some(pem) if pem.ca.is_some() || pem.identity.is_some() => {
                let certificates = ::redis::TlsCertificates {
                    client_tls: pem.identity.map(|(client_cert, client_key)| {
                        ::redis::ClientTlsConfig {
                            client_cert,
                            client_key,
                        }
                    }),
                    root_cert: pem.ca,
                };
                Client::build_with_tls(info, certificates).map_err(connect_error)?
            }
            _ => Client::open(info).map_err(connect_error)?,
        };
        // With its TLS parameters, for the watcher's connection.
        let info = client.get_connection_info().clone();
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

    fn json<T: serde::Serialize>(
        &self,
        trace_id: &str,
        what: &str,
        value: &T,
    ) -> Result<String, StoreError> {
        serde_json::to_string(value).map_err(|error| self.unserialisable(trace_id, what, error))
    }

    fn unserialisable(&self, trace_id: &str, what: &str, error: serde_json::Error) -> StoreError {
        self.shared
            .error(
                StoreErrorKind::InvalidConfig,
                format!("cannot serialise the {what} of trace id {trace_id}"),
            )
            .caused_by(error)
    }

    fn ttl_ms(&self, status: &SagaStatus) -> u64 {
        self.shared
            .config
            .store
            .ttl_for(status)
            .map(|ttl| millis(ttl).max(1))
            .unwrap_or(0)
    }

    async fn begin_record(&self, record: SagaRecord) -> Result<Begin, StoreError> {
        let shared = &self.shared;
        let trace_id = record.trace_id.as_str();
        let status = self.json(trace_id, "status", &record.status)?;
        let lease = record.lease_until_ms.saturating_sub(record.created_at_ms);
        let started = HistoryEntry {
            at_ms: record.created_at_ms,
            run: record.owner.as_str().into(),
            event: HistoryEvent::Started { mode: record.mode },
        };
        let started = self.json(trace_id, "history entry", &started)?;
        let (key, leases) = (
            shared.keys.record(trace_id),
            shared.keys.leases(&record.saga),
        );
        let mut call = SCRIPTS
            .begin
            .call(&[&key, &leases, &shared.keys.status_index]);
        call.arg(trace_id)
            .arg(&record.saga)
            .arg(&record.fingerprint)
            .arg(record.mode.as_str())
            .arg(&status)
            .arg(record.state.as_deref().unwrap_or_default())
            .arg(&record.owner)
            .arg(lease)
            .arg(u8::from(record.queued))
            .arg(self.ttl_ms(&record.status))
            .arg(&started);
        let mut conn = shared.commands.clone();
        let existing: HashMap<String, String> = shared
            .bounded("begin", trace_id, call.invoke(&mut conn))
            .await?;
        if existing.is_empty() {
            return Ok(Begin::Started);
        }
        let existing = shared.decode(trace_id, existing)?;
        Ok(if existing.fingerprint == record.fingerprint {
            Begin::Existing(existing)
        } else {
            Begin::Conflict(existing)
        })
    }

    async fn claim_record(&self, claim: Claim<'_>) -> Result<Claimed, StoreError> {
        let shared = &self.shared;
        let trace_id = claim.trace_id;
        let (key, leases) = (shared.keys.record(trace_id), shared.keys.leases(claim.saga));
        let mut call = SCRIPTS.claim.call(&[&key, &leases]);
        call.arg(trace_id)
            .arg(claim.seq.map(|seq| seq.to_string()).unwrap_or_default())
            .arg(claim.token)
            .arg(millis(claim.lease))
            .arg(u8::from(claim.recovery));
        let mut conn = shared.commands.clone();
        let reply: Vec<::redis::Value> = shared
            .bounded("claim", trace_id, call.invoke(&mut conn))
            .await?;
        let corrupt = || {
            shared.error(
                StoreErrorKind::Corrupt,
                format!("unexpected reply of the claim script for trace id {trace_id}"),
            )
        };
        let mut reply = reply.into_iter();
        let code: i64 = next_value(&mut reply).ok_or_else(corrupt)?;
        Ok(match code {
            reply::MISSING => Claimed::Missing,
            reply::FINISHED => Claimed::Finished,
            reply::STALE => Claimed::Stale {
                current: next_value(&mut reply).ok_or_else(corrupt)?,
            },
            reply::BUSY => Claimed::Busy,
            reply::DONE => {
                let attempt = next_value(&mut reply).ok_or_else(corrupt)?;
                let seq = next_value(&mut reply).ok_or_else(corrupt)?;
                let mode: String = next_value(&mut reply).ok_or_else(corrupt)?;
                Claimed::Won {
                    attempt,
                    seq,
                    mode: Mode::parse(&mode).ok_or_else(corrupt)?,
                    state: next_value(&mut reply),
                    compensate: next_value::<i64>(&mut reply) == Some(1),
                }
            }
            _ => return Err(corrupt()),
        })
    }

    async fn advance_record(&self, advance: Advance<'_>) -> Result<Written, StoreError> {
        let shared = &self.shared;
        let trace_id = advance.trace_id;
        let status = self.json(trace_id, "status", &advance.status)?;
        let entries = self.entries(trace_id, advance.history)?;
        let (key, leases) = (
            shared.keys.record(trace_id),
            shared.keys.leases(advance.saga),
        );
        let channel = shared.keys.channel(trace_id);
        let mut call = SCRIPTS
            .advance
            .call(&[&key, &leases, &channel, &shared.keys.status_index]);
        call.arg(trace_id)
            .arg(advance.seq)
            .arg(advance.token)
            .arg(&status)
            .arg(advance.state.unwrap_or_default())
            .arg(millis(advance.custody.lease))
            .arg(u8::from(advance.custody.queued))
            .arg(u8::from(advance.status.is_final()))
            .arg(self.ttl_ms(&advance.status))
            .arg(advance.status.kind().as_str())
            .arg(self.history_limit())
            .arg(u8::from(advance.abortable));
        for entry in &entries {
            call.arg(entry);
        }
        let mut conn = shared.commands.clone();
        let code: i64 = shared
            .bounded("advance", trace_id, call.invoke(&mut conn))
            .await?;
        Ok(written(code))
    }

    async fn hold_record(&self, hold: Hold<'_>) -> Result<Written, StoreError> {
        let shared = &self.shared;
        let Hold {
            trace_id,
            saga,
            seq,
            token,
            custody,
            refund_attempt,
            history,
        } = hold;
        let entries = self.entries(trace_id, history)?;
        let (key, leases) = (shared.keys.record(trace_id), shared.keys.leases(saga));
        let mut call = SCRIPTS.hold.call(&[&key, &leases]);
        call.arg(trace_id)
            .arg(seq)
            .arg(token)
            .arg(&custody.token)
            .arg(millis(custody.lease))
            .arg(u8::from(custody.queued))
            .arg(u8::from(refund_attempt))
            .arg(self.history_limit());
        for entry in &entries {
            call.arg(entry);
        }
        let mut conn = shared.commands.clone();
        let code: i64 = shared
            .bounded("hold", trace_id, call.invoke(&mut conn))
            .await?;
        Ok(written(code))
    }

    async fn expired_records(&self, saga: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let shared = &self.shared;
        let leases = shared.keys.leases(saga);
        let mut call = SCRIPTS.expired.call(&[&leases, &shared.keys.status_index]);
        let finished_ttl = shared.config.store.finished_ttl;
        call.arg(limit).arg(millis(finished_ttl).max(1));
        let mut conn = shared.commands.clone();
        shared
            .bounded("read expired leases", "-", call.invoke(&mut conn))
            .await
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

    /// History entries as JSON, one each, as the scripts' `appended` reads them.
    fn entries(
        &self,
        trace_id: &str,
        history: &[HistoryEntry],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        history
            .iter()
            .map(|entry| {
                serde_json::to_vec(entry)
                    .map_err(|error| self.unserialisable(trace_id, "history entry", error))
            })
            .collect()
    }

    fn history_limit(&self) -> usize {
        self.shared.config.store.history_limit.max(1)
    }

    async fn history_of(&self, trace_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let shared = &self.shared;
        let key = shared.keys.record(trace_id);
        let mut conn = shared.commands.clone();
        let read = ::redis::cmd("HGETALL").arg(&key).to_owned();
        let fields: HashMap<String, String> = shared
            .bounded("HGETALL", trace_id, read.query_async(&mut conn))
            .await?;
        // The entries are the fields `h<n>`, oldest first by `n`.
        let mut numbered: Vec<(u64, &str)> = fields
            .iter()
            .filter_map(|(name, entry)| {
                let n = name.strip_prefix('h')?.parse().ok()?;
                Some((n, entry.as_str()))
            })
            .collect();
        numbered.sort_unstable_by_key(|(n, _)| *n);
        numbered
            .into_iter()
            .map(|(n, entry)| {
                serde_json::from_str(entry).map_err(|error| {
                    shared
                        .error(
                            StoreErrorKind::Corrupt,
                            format!(
                                "field `h{n}` of key `{key}` holds data that is not a history entry"
                            ),
                        )
                        .caused_by(error)
                })
            })
            .collect()
    }

    async fn list_records(&self, query: &ListQuery) -> Result<SagaPage, StoreError> {
        let shared = &self.shared;
        let limit = query.page_size();
        let kind = query.status;
        let newest = match query.older_than {
            // The server's clock decides in the script for leases; for an operator's age
            // filter this replica's clock is close enough.
            Some(age) => status_score(kind, super::now_ms().saturating_sub(millis(age))),
            None => band_end(kind),
        };
        let index = &shared.keys.status_index;
        let mut call = SCRIPTS.list.call(&[index]);
        call.arg(&shared.keys.record_prefix)
            .arg(newest)
            .arg(
                query
                    .after
                    .as_ref()
                    .map(|after| status_score(kind, after.since_ms).to_string())
                    .unwrap_or_default(),
            )
            .arg(query.after.as_ref().map_or("", |after| &after.trace_id))
            .arg(limit)
            .arg(query.saga.as_deref().unwrap_or_default())
            .arg(limit.saturating_mul(10).max(1000))
            .arg(band(kind));
        let mut conn = shared.commands.clone();
        let reply: Vec<::redis::Value> =
            shared.bounded("list", "-", call.invoke(&mut conn)).await?;
        let corrupt = || {
            shared.error(
                StoreErrorKind::Corrupt,
                format!("unexpected reply of the list script on `{index}`"),
            )
        };
        let mut reply = reply.into_iter();
        let bounded: i64 = next_value(&mut reply).ok_or_else(corrupt)?;
        let last_score: Option<String> = next_value(&mut reply);
        let last_id: Option<String> = next_value(&mut reply);
        let mut sagas = Vec::new();
        while let Some(trace_id) = next_value::<String>(&mut reply) {
            let values: Vec<Option<String>> = next_value(&mut reply).ok_or_else(corrupt)?;
            sagas.push(shared.decode(&trace_id, named(LISTED_FIELDS.iter(), values))?);
        }
        let next = if sagas.len() > limit {
            sagas.truncate(limit);
            sagas.last().map(|last| ListCursor {
                since_ms: last.status_since_ms,
                trace_id: last.trace_id.clone(),
            })
        } else if bounded == 1 {
            // The script stopped at its examination bound: go on after what it examined.
            match (last_score.and_then(|s| s.parse::<f64>().ok()), last_id) {
                (Some(score), Some(trace_id)) => Some(ListCursor {
                    since_ms: (score as u64).saturating_sub(band(kind)),
                    trace_id,
                }),
                _ => return Err(corrupt()),
            }
        } else {
            None
        };
        Ok(SagaPage { sagas, next })
    }

    async fn reopen_record(&self, reopen: Reopen<'_>) -> Result<Written, StoreError> {
        let shared = &self.shared;
        let trace_id = reopen.trace_id;
        let status = self.json(trace_id, "status", &reopen.status)?;
        let entry = self.json(trace_id, "history entry", &reopen.entry)?;
        let running_ttl = self.ttl_ms(&reopen.status);
        let (key, leases) = (
            shared.keys.record(trace_id),
            shared.keys.leases(reopen.saga),
        );
        let mut call = SCRIPTS
            .reopen
            .call(&[&key, &leases, &shared.keys.status_index]);
        call.arg(trace_id)
            .arg(reopen.seq)
            .arg(&status)
            .arg(reopen.state)
            .arg(&reopen.custody.token)
            .arg(millis(reopen.custody.lease))
            .arg(u8::from(reopen.custody.queued))
            .arg(reopen.status.kind().as_str())
            .arg(self.history_limit())
            .arg(running_ttl)
            .arg(u8::from(reopen.compensate))
            .arg(&entry);
        let mut conn = shared.commands.clone();
        let code: i64 = shared
            .bounded("reopen", trace_id, call.invoke(&mut conn))
            .await?;
        Ok(written(code))
    }

    async fn request_compensation_of(
        &self,
        trace_id: &str,
        entry: HistoryEntry,
    ) -> Result<Written, StoreError> {
        let shared = &self.shared;
        let entry = self.json(trace_id, "history entry", &entry)?;
        let key = shared.keys.record(trace_id);
        let mut call = SCRIPTS.request_compensation.call(&[&key]);
        call.arg(self.history_limit()).arg(&entry);
        let mut conn = shared.commands.clone();
        let code: i64 = shared
            .bounded("request compensation", trace_id, call.invoke(&mut conn))
            .await?;
        Ok(written(code))
    }

    async fn remove_record(&self, trace_id: &str) -> Result<(), StoreError> {
        let key = self.shared.keys.record(trace_id);
        let mut conn = self.shared.commands.clone();
        let mut call = SCRIPTS.remove.call(&[&key, &self.shared.keys.status_index]);
        call.arg(&self.shared.keys.leases_prefix).arg(trace_id);
        self.shared
            .bounded("remove", trace_id, call.invoke::<()>(&mut conn))
            .await
    }
}

/// The [`Written`] of a script reply code.
fn written(code: i64) -> Written {
    match code {
        reply::MISSING => Written::Missing,
        reply::FINISHED => Written::Finished,
        reply::DONE => Written::Done,
        reply::COMPENSATE => Written::CompensationRequested,
        _ => Written::Fenced,
    }
}

/// The next element of a script reply, converted; `None` when absent, nil or of another type.
fn next_value<T: ::redis::FromRedisValue>(
    reply: &mut impl Iterator<Item = ::redis::Value>,
) -> Option<T> {
    reply
        .next()
        .and_then(|value| ::redis::from_redis_value(value).ok())
}

impl SagaStore for RedisStore {
    fn begin(&self, record: SagaRecord) -> BoxFuture<'_, Result<Begin, StoreError>> {
        self.begin_record(record).boxed()
    }

    fn claim<'a>(&'a self, claim: Claim<'a>) -> BoxFuture<'a, Result<Claimed, StoreError>> {
        self.claim_record(claim).boxed()
    }

    fn advance<'a>(&'a self, advance: Advance<'a>) -> BoxFuture<'a, Result<Written, StoreError>> {
        self.advance_record(advance).boxed()
    }

    fn hold<'a>(&'a self, hold: Hold<'a>) -> BoxFuture<'a, Result<Written, StoreError>> {
        self.hold_record(hold).boxed()
    }

    fn expired<'a>(
        &'a self,
        saga: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        self.expired_records(saga, limit).boxed()
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

    fn history<'a>(
        &'a self,
        trace_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<HistoryEntry>, StoreError>> {
        self.history_of(trace_id).boxed()
    }

    fn list<'a>(&'a self, query: &'a ListQuery) -> BoxFuture<'a, Result<SagaPage, StoreError>> {
        self.list_records(query).boxed()
    }

    fn reopen<'a>(&'a self, reopen: Reopen<'a>) -> BoxFuture<'a, Result<Written, StoreError>> {
        self.reopen_record(reopen).boxed()
    }

    fn request_compensation<'a>(
        &'a self,
        trace_id: &'a str,
        entry: HistoryEntry,
    ) -> BoxFuture<'a, Result<Written, StoreError>> {
        self.request_compensation_of(trace_id, entry).boxed()
    }

    /// `PING` on the command connection, within the response timeout.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            let mut conn = self.shared.commands.clone();
            let ping = ::redis::cmd("PING").to_owned();
            let _: String = self
                .shared
                .bounded("PING", "-", ping.query_async(&mut conn))
                .await?;
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        let keys = Keys::new("p");
        assert_eq!(keys.trace_id_of_channel(&keys.channel("a:b")), Some("a:b"));
        assert_eq!(keys.trace_id_of_channel("other:done:x"), None);
    }
}
