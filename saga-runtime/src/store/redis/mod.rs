//! The Redis saga store (feature `redis`): records shared by every orchestrator replica, and
//! a watcher that lets any replica await a saga's end.
//!
//! # Layout in Redis
//! Names below are those of a standalone Redis with one index bucket (the default). In a
//! Redis Cluster (or with [`RedisConfig::index_buckets`] above 1) each `{prefix}` reads
//! `{prefix:bucket}`, a hash tag per bucket, a saga's bucket being a stable hash of its trace
//! id: every key one script touches shares its saga's bucket, hence one slot (see the `keys`
//! module).
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
//! - `{prefix}:leases:{saga}`: a sorted set of the running trace ids scored by lease end, which the
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
//! the Redis server's clock (`TIME`), so replicas' clocks need not agree. [`SagaStore::expired`]
//! and [`SagaStore::list`] read every bucket and merge what they read.
//!
//! # Connections and failures
//! Commands go through a redis-rs connection manager (multiplexed, reconnects on its own) or,
//! in a cluster, a redis-rs cluster connection (see the `conn` module); the watcher has one
//! more, RESP3 with automatic resubscription, shared by every waiting request of the instance
//! (see the `watcher` module docs). [`RedisStore::connect`] fails
//! within [`RedisConfig::connect_timeout`] when Redis is unreachable; every operation fails
//! within [`RedisConfig::response_timeout`] (or twice that for a watch's subscription) when
//! Redis goes away, with an error naming the address. Nothing hangs.

mod conn;
mod keys;
mod scripts;
mod watcher;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManagerConfig;
use ::redis::cluster::ClusterClientBuilder;
use ::redis::{
    AsyncConnectionConfig, Client, ConnectionInfo, FromRedisValue, IntoConnectionInfo,
    ProtocolVersion,
};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use self::conn::Conn;
use self::keys::Keys;
use self::scripts::LISTED_FIELDS;
use self::scripts::{Acks, Call, SCRIPTS, band, band_end, reply, status_score};
use self::watcher::Watcher;
use super::{
    Advance, Begin, Claim, Claimed, HistoryEntry, HistoryEvent, Hold, ListCursor, ListQuery, Mode,
    Outcome, Reopen, SagaPage, SagaRecord, SagaStatus, SagaStore, StoreConfig, StoreError,
    StoreErrorKind, StoredState, Written, millis,
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
    /// Talk to a **Redis Cluster**: [`RedisStore::connect`]'s URL is one seed node (a managed
    /// service's configuration endpoint will do; [`RedisStore::connect_cluster`] takes several),
    /// the cluster's slot map is discovered from it, each command goes to the master of its
    /// keys' slot, and keys carry per-bucket hash tags (see [`RedisConfig::index_buckets`]).
    /// Default `false` (a standalone Redis).
    pub cluster: bool,
    /// How many buckets the saga keys and indexes are spread over; `None` (the default): 1 on
    /// a standalone Redis, 16 in cluster mode.
    ///
    /// A saga's record, the lease index of its saga name and the status index it is listed in
    /// belong to one bucket (a stable hash of its trace id), whose keys share one hash tag
    /// `{prefix:bucket}`, so each store operation stays one atomic script on one slot while the
    /// buckets spread the load over the cluster's masters. [`SagaStore::expired`] and
    /// [`SagaStore::list`] read every bucket (one script each) and merge them. More than one
    /// bucket (or cluster mode) switches to the tagged key names (`{sagaflow:3}:saga:{id}`);
    /// one bucket on a standalone Redis keeps the plain names (`sagaflow:saga:{id}`). The
    /// number is fixed for the life of a deployment, like the prefix: changing it moves every
    /// saga to other keys.
    pub index_buckets: Option<u16>,
    /// How many replicas must acknowledge every write before it is reported done (`WAIT` in the
    /// same pipeline as the write's script, on the same connection to the same master). 0 (the
    /// default): writes are acknowledged by the master alone, and the replication to its
    /// replicas is asynchronous, so a master that dies may take its last writes with it (see
    /// the README, "Redis Cluster"). With `n > 0` a write is only reported done once `n`
    /// replicas hold it; if they do not within [`RedisConfig::replica_ack_timeout`] the write
    /// fails with [`StoreErrorKind::Unavailable`] (it was applied on the master, and may or may
    /// not survive a failover), which the engine retries like any store failure: its retry
    /// finds the write applied, or applies it again if the failover lost it.
    ///
    /// Cost: `WAIT` holds this process's (multiplexed) connection to that master until the
    /// replicas answer, so every write adds one replica round trip and commands to that master
    /// queue behind it. A master with fewer than `n` replicas in sync (its replica died, or it
    /// is a promoted replica whose old master has not rejoined) takes no write: each waits the
    /// timeout and fails, and the commands behind it wait too. Run `n + 1` replicas per master
    /// to keep writing through the loss of one node. It narrows, but does not close, Redis's
    /// window: a partitioned master keeps accepting writes until it notices.
    pub replica_acks: u16,
    /// Bound on each `WAIT` for [`RedisConfig::replica_acks`]. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub replica_ack_timeout: Duration,
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
            cluster: false,
            index_buckets: None,
            replica_acks: 0,
            replica_ack_timeout: Duration::from_secs(1),
        }
    }
}

impl RedisConfig {
    /// The number of index buckets in effect ([`RedisConfig::index_buckets`]).
    pub fn buckets(&self) -> u16 {
        match self.index_buckets {
            Some(n) => n.max(1),
            None if self.cluster => 16,
            None => 1,
        }
    }

    /// True when the keys carry per-bucket hash tags: cluster mode or more than one bucket.
    pub fn tagged(&self) -> bool {
        self.cluster || self.buckets() > 1
    }

    /// The key names of this configuration, or why the prefix cannot be tagged.
    fn keys(&self) -> Result<Keys, StoreError> {
        if self.tagged() && self.key_prefix.contains(['{', '}']) {
            return Err(StoreError::new(
                BACKEND,
                StoreErrorKind::InvalidConfig,
                format!(
                    "key prefix `{}` holds a brace: in cluster mode (or with index buckets) the store tags every key with `{{prefix:bucket}}` itself; drop the braces from the prefix",
                    self.key_prefix
                ),
            ));
        }
        Ok(Keys::new(&self.key_prefix, self.buckets(), self.tagged()))
    }

    /// The replica acknowledgements every write waits for, if any.
    fn acks(&self) -> Option<Acks> {
        (self.replica_acks > 0).then(|| Acks {
            replicas: self.replica_acks,
            timeout_ms: millis(self.replica_ack_timeout).max(1),
        })
    }
}

/// What the store and its watcher task share: settings, names and the command connection.
struct Shared {
    config: RedisConfig,
    keys: Arc<Keys>,
    /// `host:port` (never the password), for error messages; the seed nodes of a cluster,
    /// comma-separated.
    addr: String,
    commands: Conn,
    /// The replica acknowledgements every write waits for ([`RedisConfig::replica_acks`]).
    acks: Option<Acks>,
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

    /// Runs the write script `call` within the response timeout, and with
    /// [`RedisConfig::replica_acks`] waits for that many replicas to hold it; fewer within
    /// [`RedisConfig::replica_ack_timeout`] is an [`StoreErrorKind::Unavailable`] error (the
    /// write was applied on the master: a retry finds it, or redoes it if a failover lost it).
    async fn write<T: FromRedisValue>(
        &self,
        what: &str,
        trace_id: &str,
        call: &Call<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.commands.clone();
        let (reply, acked) = self
            .bounded(what, trace_id, call.invoke_acked(&mut conn, self.acks))
            .await?;
        if let (Some(acks), Some(acked)) = (self.acks, acked)
            && acked < i64::from(acks.replicas)
        {
            return Err(self.error(
                StoreErrorKind::Unavailable,
                format!(
                    "{what} [trace id {trace_id}] was applied by its master but acknowledged by {acked} of the {} replicas required within {} ms (replica_acks); it is lost if that master fails before replicating it. Retry it: the retry finds it applied, or applies it again",
                    acks.replicas, acks.timeout_ms
                ),
            ));
        }
        Ok(reply)
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

/// A record's `started` history entry, read back from its fields: when it was created, in
/// which mode, by which run (`by`, written by the begin when the history is on). `None` for a
/// record begun with the history off, or by a version that stored its `started` entry as
/// `h1` (read with the other entries then).
fn started_entry(fields: &HashMap<String, String>) -> Result<Option<HistoryEntry>, String> {
    let Some(by) = fields.get("by") else {
        return Ok(None);
    };
    let field = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| format!("field `{name}` is missing"))
    };
    Ok(Some(HistoryEntry {
        at_ms: number("created", field("created")?)?,
        run: by.as_str().into(),
        event: HistoryEvent::Started {
            mode: mode(field("mode")?)?,
        },
    }))
}

/// The field `name`'s `text` as a number; `Err` names the field.
fn number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("field `{name}` is not a number: `{text}`"))
}

/// The mode the field `mode` names; `Err` says it is unknown.
fn mode(name: &str) -> Result<Mode, String> {
    Mode::parse(name).ok_or_else(|| format!("unknown mode `{name}`"))
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
    let saga = take("saga")?;
    let fingerprint = take("fp")?;
    let mode = mode(&take("mode")?)?;
    let status_json = take("status")?;
    let status: SagaStatus = serde_json::from_str(&status_json)
        .map_err(|e| format!("field `status` does not decode: {e}"))?;
    let created_at_ms = number("created", &take("created")?)?;
    // Records written before the status indexes have no `since`.
    let status_since_ms = match take("since") {
        Ok(since) => number("since", &since)?,
        Err(_) => created_at_ms,
    };
    Ok(SagaRecord {
        trace_id: trace_id.to_string(),
        saga,
        fingerprint,
        mode,
        status,
        seq: number("seq", &take("seq")?)?,
        // A final record holds an empty state unless it kept one (stuck).
        state: take("state")
            .ok()
            .filter(|state| !state.is_empty())
            .map(StoredState::from),
        owner: take("owner")?,
        lease_until_ms: number("until", &take("until")?)?,
        queued: take("queued")? == "1",
        attempts: number("attempts", &take("attempts")?)?,
        created_at_ms,
        updated_at_ms: number("updated", &take("updated")?)?,
        status_since_ms,
        compensation_requested: take("abort").is_ok_and(|abort| abort == "1"),
        // Absent until the sweeper first requeues the saga (and in records older than it).
        requeues: match take("requeues") {
            Ok(requeues) => number("requeues", &requeues)?,
            Err(_) => 0,
        },
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
    /// `rediss://...` over TLS; the user is an ACL user). With [`RedisConfig::cluster`], `url`
    /// is one node of a Redis Cluster (see [`RedisStore::connect_cluster`]).
    ///
    /// Fails within `config.connect_timeout` with a [`StoreError`] naming the address when the
    /// URL is invalid, Redis is unreachable or refuses the credentials, or, for `rediss://`,
    /// the TLS handshake fails: a `rediss://` URL never connects in plaintext. With
    /// [`RedisConfig::tls`] files set, the URL must be `rediss://` (else
    /// [`StoreErrorKind::InvalidConfig`], as for a TLS file that is missing or not PEM).
    /// `config` is a [`RedisConfig`] or a [`StoreConfig`] (then the Redis settings take their
    /// defaults).
    pub async fn connect(url: &str, config: impl Into<RedisConfig>) -> Result<Self, StoreError> {
        Self::connect_nodes(&[url], config.into()).await
    }

    /// Connects to a Redis Cluster through the seed nodes `nodes` (URLs as for
    /// [`RedisStore::connect`], all with the same scheme and credentials; one reachable node is
    /// enough, the others are discovered from it). Sets [`RedisConfig::cluster`].
    ///
    /// Every operation then goes to the master serving its saga's bucket (see
    /// [`RedisConfig::index_buckets`]); after a failover the client follows the new slot map
    /// on its own, and the watcher re-subscribes and re-reads what it waits for. Fails like
    /// [`RedisStore::connect`], and also when the servers are not a cluster, or when the key
    /// prefix holds a brace ([`StoreErrorKind::InvalidConfig`]).
    pub async fn connect_cluster(
        nodes: &[&str],
        config: impl Into<RedisConfig>,
    ) -> Result<Self, StoreError> {
        let config = RedisConfig {
            cluster: true,
            ..config.into()
        };
        Self::connect_nodes(nodes, config).await
    }

    async fn connect_nodes(urls: &[&str], config: RedisConfig) -> Result<Self, StoreError> {
        let secrets: Vec<String> = urls.iter().flat_map(|url| secrets_of(url)).collect();
        let invalid = |what: String, error: &(dyn std::error::Error + 'static)| {
            StoreError::new(BACKEND, StoreErrorKind::InvalidConfig, what)
                .caused_by(Scrubbed::of(error, &secrets))
        };
        if urls.is_empty() || (urls.len() > 1 && !config.cluster) {
            return Err(StoreError::new(
                BACKEND,
                StoreErrorKind::InvalidConfig,
                format!(
                    "{} Redis URLs given: a standalone Redis takes one, a cluster at least one seed node",
                    urls.len()
                ),
            ));
        }
        let keys = config.keys()?;
        let mut infos = Vec::with_capacity(urls.len());
        let mut tls = None;
        for url in urls {
            let info = url.into_connection_info().map_err(|error| {
                invalid(format!("invalid Redis URL `{}`", redact_url(url)), &error)
            })?;
            let tls_error = |error: crate::tls::TlsError| {
                invalid(
                    format!("invalid TLS settings for Redis at `{}`", redact_url(url)),
                    &error,
                )
            };
            if wants_tls(url, &config.tls, "rediss").map_err(tls_error)? && tls.is_none() {
                tls = Some(config.tls.load().map_err(tls_error)?);
            }
            infos.push(info);
        }
        let addr = infos
            .iter()
            .map(|info| info.addr().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let bound = config.connect_timeout;
        let over = over_tls(tls.is_some());
        let open = Self::open(infos, tls, config, keys, addr.clone(), &secrets);
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
        mut infos: Vec<ConnectionInfo>,
        tls: Option<crate::tls::files::ClientPem>,
        config: RedisConfig,
        keys: Keys,
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
        // `rediss://` with no file set: the bundled roots, no client certificate.
        let certificates = tls
            .filter(|pem| pem.ca.is_some() || pem.identity.is_some())
            .map(|pem| ::redis::TlsCertificates {
                client_tls: pem.identity.map(|(client_cert, client_key)| {
                    ::redis::ClientTlsConfig {
                        client_cert,
                        client_key,
                    }
                }),
                root_cert: pem.ca,
            });
        let keys = Arc::new(keys);
        let (parts, on_push) = Watcher::prepare(Arc::clone(&keys));
        let (commands, pubsub) = if config.cluster {
            let builder = |protocol| {
                let mut builder = ClusterClientBuilder::new(infos.clone())
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.response_timeout)
                    .use_protocol(protocol);
                if let Some(certificates) = &certificates {
                    builder = builder.certs(certificates.clone());
                }
                builder
            };
            // Connecting discovers the slot map from the seed nodes: it fails with the cause
            // (refused, auth, not a cluster) rather than retrying.
            let commands = builder(ProtocolVersion::RESP2)
                .build()
                .map_err(connect_error)?
                .get_async_connection()
                .await
                .map_err(connect_error)?;
            let pubsub = builder(ProtocolVersion::RESP3)
                .push_sender(on_push)
                .build()
                .map_err(connect_error)?
                .get_async_connection()
                .await
                .map_err(connect_error)?;
            (Conn::Cluster(commands), Conn::Cluster(pubsub))
        } else {
            let info = infos.remove(0);
            let client = match certificates {
                Some(certificates) => {
                    Client::build_with_tls(info, certificates).map_err(connect_error)?
                }
                None => Client::open(info).map_err(connect_error)?,
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
            let resp3 = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let pubsub_client =
                Client::open(info.set_redis_settings(resp3)).map_err(connect_error)?;
            let pubsub = pubsub_client
                .get_connection_manager_with_config(
                    manager_config
                        .set_push_sender(on_push)
                        .set_automatic_resubscription(),
                )
                .await
                .map_err(connect_error)?;
            (Conn::Single(commands), Conn::Single(pubsub))
        };

        let shared = Arc::new(Shared {
            acks: config.acks(),
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
        let (key, leases) = (
            shared.keys.record(trace_id),
            shared.keys.leases_of(trace_id, &record.saga),
        );
        let mut call = SCRIPTS
            .begin
            .call(&[&key, &leases, shared.keys.status_index_of(trace_id)]);
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
            .arg(u8::from(self.history_limit() > 0));
        let existing: HashMap<String, String> = shared.write("begin", trace_id, &call).await?;
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
        let (key, leases) = (
            shared.keys.record(trace_id),
            shared.keys.leases_of(trace_id, claim.saga),
        );
        let mut call = SCRIPTS.claim.call(&[&key, &leases]);
        call.arg(trace_id)
            .arg(claim.seq.map(|seq| seq.to_string()).unwrap_or_default())
            .arg(claim.token)
            .arg(millis(claim.lease))
            .arg(u8::from(claim.recovery));
        let reply: Vec<::redis::Value> = shared.write("claim", trace_id, &call).await?;
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
                    requeues: next_value(&mut reply).ok_or_else(corrupt)?,
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
            shared.keys.leases_of(trace_id, advance.saga),
        );
        let channel = shared.keys.channel(trace_id);
        let mut call = SCRIPTS.advance.call(&[
            &key,
            &leases,
            &channel,
            shared.keys.status_index_of(trace_id),
        ]);
        call.arg(trace_id)
            .arg(advance.seq)
            .arg(advance.token)
            .arg(&status)
            .arg(advance.state.map_or("", StoredState::as_str))
            .arg(millis(advance.custody.lease))
            .arg(u8::from(advance.custody.queued))
            .arg(u8::from(advance.status.is_final()))
            .arg(self.ttl_ms(&advance.status))
            .arg(advance.status.kind().as_str())
            .arg(self.stored_entries())
            .arg(u8::from(advance.abortable));
        for entry in &entries {
            call.arg(entry);
        }
        let code: i64 = shared.write("advance", trace_id, &call).await?;
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
            requeued,
            history,
        } = hold;
        let entries = self.entries(trace_id, history)?;
        let (key, leases) = (
            shared.keys.record(trace_id),
            shared.keys.leases_of(trace_id, saga),
        );
        let mut call = SCRIPTS.hold.call(&[&key, &leases]);
        call.arg(trace_id)
            .arg(seq)
            .arg(token)
            .arg(&custody.token)
            .arg(millis(custody.lease))
            .arg(u8::from(custody.queued))
            .arg(u8::from(refund_attempt))
            .arg(self.stored_entries())
            .arg(u8::from(requeued));
        for entry in &entries {
            call.arg(entry);
        }
        let code: i64 = shared.write("hold", trace_id, &call).await?;
        Ok(written(code))
    }

    /// Reads the lease index of `saga` in every bucket (one script each, concurrently) and
    /// keeps the `limit` whose lease lapsed first.
    async fn expired_records(&self, saga: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let shared = &self.shared;
        let finished_ttl = millis(shared.config.store.finished_ttl).max(1);
        let reads = (0..shared.keys.bucket_count()).map(|bucket| async move {
            let leases = shared.keys.leases(bucket, saga);
            let mut call = SCRIPTS
                .expired
                .call(&[&leases, shared.keys.status_index(bucket)]);
            call.arg(limit).arg(finished_ttl);
            let mut conn = shared.commands.clone();
            shared
                .bounded(
                    "read expired leases",
                    "-",
                    call.invoke::<Vec<(String, f64)>>(&mut conn),
                )
                .await
        });
        let mut lapsed: Vec<(String, f64)> = futures_util::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .collect();
        if shared.keys.bucket_count() > 1 {
            // As one sorted set orders them: by lease end, then by trace id.
            lapsed.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        }
        lapsed.truncate(limit);
        Ok(lapsed.into_iter().map(|(trace_id, _)| trace_id).collect())
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

    /// History entries as JSON, one each, as the scripts' `appended` reads them; none when
    /// the record keeps none but its `started` entry ([`Self::stored_entries`] 0: the history
    /// off, or a limit of 1), so every script writes none.
    fn entries(
        &self,
        trace_id: &str,
        history: &[HistoryEntry],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        if self.stored_entries() == 0 {
            return Ok(Vec::new());
        }
        history
            .iter()
            .map(|entry| {
                entry
                    .to_json()
                    .map_err(|error| self.unserialisable(trace_id, "history entry", error))
            })
            .collect()
    }

    /// `StoreConfig::history_limit`: 0 when the history is off (no entry sent).
    fn history_limit(&self) -> usize {
        self.shared.config.store.history_limit
    }

    /// How many entries the record's fields `h<n>` keep: the history limit but the `started`
    /// entry, which is not stored as an entry but read back from the record's own fields
    /// (`created`, `mode` and the begin's run, `by`; see [`started_entry`]).
    fn stored_entries(&self) -> usize {
        self.history_limit().saturating_sub(1)
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
        let started = started_entry(&fields).map_err(|what| {
            shared.error(
                StoreErrorKind::Corrupt,
                format!("key `{key}` holds corrupt data, not a saga record ({what})"),
            )
        })?;
        started
            .into_iter()
            .map(Ok)
            .chain(numbered.into_iter().map(|(n, entry)| {
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
            }))
            .collect()
    }

    async fn list_records(&self, query: &ListQuery) -> Result<SagaPage, StoreError> {
        let limit = query.page_size();
        let pages = futures_util::future::try_join_all(
            (0..self.shared.keys.bucket_count()).map(|bucket| self.list_bucket(bucket, query)),
        )
        .await?;
        Ok(merge_pages(pages, limit))
    }

    /// One bucket's page: up to `page size + 1` matches after the cursor, oldest first.
    async fn list_bucket(
        &self,
        bucket: usize,
        query: &ListQuery,
    ) -> Result<BucketPage, StoreError> {
        let shared = &self.shared;
        let limit = query.page_size();
        let kind = query.status;
        let newest = match query.older_than {
            // The server's clock decides in the script for leases; for an operator's age
            // filter this replica's clock is close enough.
            Some(age) => status_score(kind, super::now_ms().saturating_sub(millis(age))),
            None => band_end(kind),
        };
        let index = shared.keys.status_index(bucket);
        let mut call = SCRIPTS.list.call(&[index]);
        call.arg(shared.keys.record_prefix(bucket))
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
        // Where this bucket's answer stops being complete.
        let complete_to = if sagas.len() > limit {
            sagas
                .last()
                .map(|last| (last.status_since_ms, last.trace_id.clone()))
        } else if bounded == 1 {
            // The script stopped at its examination bound: complete up to what it examined.
            match (last_score.and_then(|s| s.parse::<f64>().ok()), last_id) {
                (Some(score), Some(trace_id)) => {
                    Some(((score as u64).saturating_sub(band(kind)), trace_id))
                }
                _ => return Err(corrupt()),
            }
        } else {
            None
        };
        Ok(BucketPage { sagas, complete_to })
    }

    async fn reopen_record(&self, reopen: Reopen<'_>) -> Result<Written, StoreError> {
        let shared = &self.shared;
        let trace_id = reopen.trace_id;
        let status = self.json(trace_id, "status", &reopen.status)?;
        let entries = self.entries(trace_id, std::slice::from_ref(&reopen.entry))?;
        let running_ttl = self.ttl_ms(&reopen.status);
        let (key, leases) = (
            shared.keys.record(trace_id),
            shared.keys.leases_of(trace_id, reopen.saga),
        );
        let mut call = SCRIPTS
            .reopen
            .call(&[&key, &leases, shared.keys.status_index_of(trace_id)]);
        call.arg(trace_id)
            .arg(reopen.seq)
            .arg(&status)
            .arg(reopen.state)
            .arg(&reopen.custody.token)
            .arg(millis(reopen.custody.lease))
            .arg(u8::from(reopen.custody.queued))
            .arg(reopen.status.kind().as_str())
            .arg(self.stored_entries())
            .arg(running_ttl)
            .arg(u8::from(reopen.compensate));
        for entry in &entries {
            call.arg(entry);
        }
        let code: i64 = shared.write("reopen", trace_id, &call).await?;
        Ok(written(code))
    }

    async fn request_compensation_of(
        &self,
        trace_id: &str,
        entry: HistoryEntry,
    ) -> Result<Written, StoreError> {
        let shared = &self.shared;
        let entries = self.entries(trace_id, &[entry])?;
        let key = shared.keys.record(trace_id);
        let mut call = SCRIPTS.request_compensation.call(&[&key]);
        call.arg(self.stored_entries());
        for entry in &entries {
            call.arg(entry);
        }
        let code: i64 = shared
            .write("request compensation", trace_id, &call)
            .await?;
        Ok(written(code))
    }

    async fn remove_record(&self, trace_id: &str) -> Result<(), StoreError> {
        let keys = &self.shared.keys;
        let key = keys.record(trace_id);
        let mut call = SCRIPTS.remove.call(&[&key, keys.status_index_of(trace_id)]);
        call.arg(keys.leases_prefix_of(trace_id)).arg(trace_id);
        self.shared.write("remove", trace_id, &call).await
    }
}

/// One bucket's answer to a listing: its matches after the cursor, oldest first, and up to
/// where (status since, trace id) they are complete (`None`: to the end of the family).
struct BucketPage {
    sagas: Vec<SagaRecord>,
    complete_to: Option<(u64, String)>,
}

/// Merges the buckets' pages into one page of at most `limit` sagas, ordered as the status
/// index orders them (since when in the status, then trace id), with the same cursor
/// semantics as one bucket: every saga up to the cursor was listed exactly once.
///
/// Each bucket's answer is complete only up to its `complete_to` (its extra match, or where
/// its examination bound stopped it), so the merged page is cut at the smallest of them, the
/// horizon: a saga past it may still be unread in some bucket. More than `limit` sagas up to
/// the horizon: the first `limit`, the cursor at the last. Otherwise all of them, and the
/// cursor at the horizon (none when every bucket was read to its end).
fn merge_pages(pages: Vec<BucketPage>, limit: usize) -> SagaPage {
    let horizon = pages
        .iter()
        .filter_map(|page| page.complete_to.clone())
        .min();
    let mut sagas: Vec<SagaRecord> = pages
        .into_iter()
        .flat_map(|page| page.sagas)
        .filter(|saga| {
            horizon.as_ref().is_none_or(|(since, id)| {
                (saga.status_since_ms, saga.trace_id.as_str()) <= (*since, id.as_str())
            })
        })
        .collect();
    sagas.sort_unstable_by(|a, b| {
        (a.status_since_ms, &a.trace_id).cmp(&(b.status_since_ms, &b.trace_id))
    });
    let next = if sagas.len() > limit {
        sagas.truncate(limit);
        sagas.last().map(|last| ListCursor {
            since_ms: last.status_since_ms,
            trace_id: last.trace_id.clone(),
        })
    } else {
        horizon.map(|(since_ms, trace_id)| ListCursor { since_ms, trace_id })
    };
    SagaPage { sagas, next }
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

    fn saga(since: u64, id: &str) -> SagaRecord {
        let mut record = SagaRecord::new(
            id,
            "s",
            String::new(),
            "a",
            Mode::Async,
            String::new(),
            super::super::Custody::held("o", Duration::ZERO),
        );
        record.status_since_ms = since;
        record
    }

    fn ids(page: &SagaPage) -> Vec<&str> {
        page.sagas.iter().map(|s| s.trace_id.as_str()).collect()
    }

    #[test]
    fn merged_pages_stop_at_the_least_complete_bucket() {
        // Bucket 0 read to its end; bucket 1 has more after (3, "c") (its extra match).
        let page = merge_pages(
            vec![
                BucketPage {
                    sagas: vec![saga(1, "a"), saga(5, "e")],
                    complete_to: None,
                },
                BucketPage {
                    sagas: vec![saga(2, "b"), saga(3, "c")],
                    complete_to: Some((3, "c".into())),
                },
            ],
            2,
        );
        assert_eq!(ids(&page), ["a", "b"]);
        let next = page.next.expect("more");
        assert_eq!((next.since_ms, next.trace_id.as_str()), (2, "b"));

        // Fewer than a page up to a bucket's examination bound: all of them, cursor there.
        let page = merge_pages(
            vec![
                BucketPage {
                    sagas: vec![saga(1, "a"), saga(9, "z")],
                    complete_to: None,
                },
                BucketPage {
                    sagas: vec![],
                    complete_to: Some((4, "x".into())),
                },
            ],
            10,
        );
        assert_eq!(ids(&page), ["a"]);
        let next = page.next.expect("more");
        assert_eq!((next.since_ms, next.trace_id.as_str()), (4, "x"));

        // Equal times order by trace id; every bucket read to its end: no cursor.
        let page = merge_pages(
            vec![
                BucketPage {
                    sagas: vec![saga(1, "b")],
                    complete_to: None,
                },
                BucketPage {
                    sagas: vec![saga(1, "a")],
                    complete_to: None,
                },
            ],
            2,
        );
        assert_eq!(ids(&page), ["a", "b"]);
        assert!(page.next.is_none());
    }

    #[test]
    fn a_tagged_prefix_may_not_hold_braces() {
        let config = RedisConfig {
            key_prefix: "{orders}".into(),
            cluster: true,
            ..RedisConfig::default()
        };
        let error = config.keys().expect_err("braces refused");
        assert!(error.to_string().contains("drop the braces"), "{error}");
        assert_eq!(config.buckets(), 16);
        let standalone = RedisConfig {
            key_prefix: "{orders}".into(),
            ..RedisConfig::default()
        };
        assert!(standalone.keys().is_ok(), "plain names keep any prefix");
        assert_eq!(standalone.buckets(), 1);
    }
}
