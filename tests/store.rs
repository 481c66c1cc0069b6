//! The saga stores: the same test bodies against the memory store and the Redis store.
//!
//! Redis tests run against a real server (`SAGAFLOW_REDIS_URL`, default
//! `redis://127.0.0.1:6379`) and fail, naming Redis and the command that starts it, when it is
//! unreachable. Each test uses its own key prefix and deletes its keys at the end.
//!
//! Every test of the store's contract runs on both backends through [`Fixture`]: for Redis, two
//! store instances (`a` and `b`, two replicas) share one prefix; for memory they are one
//! instance. Leases are short (a few hundred milliseconds) and the tests sleep past them.
//!
//! Redis runs each body three ways: the shared standalone server with the plain key names
//! (`redis`), the same server with 4 index buckets and hash-tagged names (`redis_buckets`), and
//! a private 3-master Redis Cluster the test starts on loopback (`redis_cluster_conformance`,
//! every body in turn on one cluster), where `redis_cluster_loses_nothing_when_a_master_dies`
//! also kills a master mid-run.
#![cfg(feature = "redis")]

#[allow(dead_code)]
#[path = "common/servers.rs"]
mod servers;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use sagaflow::StepError;
use sagaflow::error::{Report, SagaFailure, StuckAt};
use sagaflow::store::{
    Advance, Begin, Claim, Claimed, Custody, HistoryEntry, HistoryEvent, Hold, ListQuery,
    MemoryStore, Mode, RedisConfig, RedisStore, SagaRecord, SagaStatus, SagaStore, StatusKind,
    StoreConfig, StoreErrorKind, StoredState, Written, fingerprint,
};
use serde_json::json;

const START_REDIS: &str = "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log";
/// Bound on every wait in these tests: generous, for a loaded 2-core CI machine.
const WAIT: Duration = Duration::from_secs(30);
const FINISHED_TTL: Duration = Duration::from_secs(60);
const RUNNING_TTL: Duration = Duration::from_secs(600);
/// A lease that does not lapse during a test.
const LONG: Duration = Duration::from_secs(60);
/// A lease the tests sleep past.
const SHORT: Duration = Duration::from_millis(200);
/// Longer than [`SHORT`], with slack for the clocks of the test and of Redis.
const PAST_SHORT: Duration = Duration::from_millis(350);
/// The owner token of the run that begins a record.
const OWNER: &str = "pod-a/1/0";
/// The saga every record belongs to (unless a test says otherwise).
const SAGA: &str = "booking";

fn redis_url() -> String {
    std::env::var("SAGAFLOW_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

fn store_config() -> StoreConfig {
    StoreConfig {
        finished_ttl: FINISHED_TTL,
        running_ttl: Some(RUNNING_TTL),
        history_limit: HISTORY_LIMIT,
        ..StoreConfig::memory()
    }
}

/// The history bound of the stores under test: small, so that tests reach it.
const HISTORY_LIMIT: usize = 4;

fn unique(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("sagaflow-test:{name}:{}-{nanos}-{n}", std::process::id())
}

/// The stores under test. For Redis, `a` and `b` are two instances (two replicas) sharing one
/// prefix; for memory they are the same instance.
enum Stores {
    Memory(Arc<MemoryStore>),
    Redis {
        a: Arc<RedisStore>,
        b: Arc<RedisStore>,
        admin: Admin,
        prefix: String,
        /// Keys carry per-bucket hash tags (`{prefix:b}:...`).
        tagged: bool,
    },
}

/// Which Redis a fixture uses.
#[derive(Clone, Debug)]
enum Target {
    /// The shared standalone server, with this many index buckets (`None`: the default, 1).
    Standalone(Option<u16>),
    /// A Redis Cluster, through these seed nodes.
    Cluster(Vec<String>),
}

/// A test's own connection to Redis, for what the store does not expose.
#[derive(Clone)]
enum Admin {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Admin {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Admin::Single(conn) => conn.req_packed_command(cmd),
            Admin::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Admin::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Admin::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Admin::Single(conn) => conn.get_db(),
            Admin::Cluster(conn) => conn.get_db(),
        }
    }
}

struct Fixture {
    stores: Stores,
}

async fn redis_store_on(prefix: &str, target: &Target) -> RedisStore {
    let config = RedisConfig {
        key_prefix: prefix.to_string(),
        ..RedisConfig::from(store_config())
    };
    match target {
        Target::Standalone(buckets) => {
            let config = RedisConfig {
                index_buckets: *buckets,
                ..config
            };
            redis_store_with(config).await
        }
        Target::Cluster(nodes) => {
            let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
            RedisStore::connect_cluster(&nodes, cluster_config(config))
                .await
                .unwrap_or_else(|error| panic!("the private Redis Cluster {nodes:?}: {error}"))
        }
    }
}

/// A store on the local Redis with `config`; fails naming the server and how to start it.
async fn redis_store_with(config: RedisConfig) -> RedisStore {
    RedisStore::connect(&redis_url(), config)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "Redis is unreachable at {} ({error}). Start it with: {START_REDIS}",
                redis_url()
            )
        })
}

/// The settings of a store on the private cluster: every write acknowledged by its master's
/// replica, so a master killed after acknowledging loses nothing.
fn cluster_config(config: RedisConfig) -> RedisConfig {
    RedisConfig {
        replica_acks: 1,
        connect_timeout: Duration::from_secs(5),
        ..config
    }
}

impl Fixture {
    fn memory() -> Self {
        Self {
            stores: Stores::Memory(Arc::new(MemoryStore::new(store_config()))),
        }
    }

    async fn redis(name: &str) -> Self {
        Self::redis_on(name, &Target::Standalone(None)).await
    }

    async fn redis_on(name: &str, target: &Target) -> Self {
        let prefix = unique(name);
        let a = Arc::new(redis_store_on(&prefix, target).await);
        let b = Arc::new(redis_store_on(&prefix, target).await);
        let (admin, tagged) = match target {
            Target::Standalone(buckets) => {
                let admin = redis::Client::open(redis_url())
                    .expect("valid Redis URL")
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "Redis is unreachable at {} ({e}). Start it with: {START_REDIS}",
                            redis_url()
                        )
                    });
                (Admin::Single(admin), buckets.is_some_and(|n| n > 1))
            }
            Target::Cluster(nodes) => (Admin::Cluster(cluster_admin(nodes).await), true),
        };
        Self {
            stores: Stores::Redis {
                a,
                b,
                admin,
                prefix,
                tagged,
            },
        }
    }

    /// The store of replica A.
    fn a(&self) -> Arc<dyn SagaStore> {
        match &self.stores {
            Stores::Memory(store) => store.clone(),
            Stores::Redis { a, .. } => a.clone(),
        }
    }

    /// The store of replica B (the same as A for memory).
    fn b(&self) -> Arc<dyn SagaStore> {
        match &self.stores {
            Stores::Memory(store) => store.clone(),
            Stores::Redis { b, .. } => b.clone(),
        }
    }

    /// Watchers registered on B.
    fn b_watchers(&self) -> usize {
        match &self.stores {
            Stores::Memory(store) => store.watcher_count(),
            Stores::Redis { b, .. } => b.watcher_count(),
        }
    }

    /// Waits until B has `n` watchers, and for Redis `channels` subscribed channels.
    async fn until_b_watches(&self, n: usize, channels: usize) {
        match &self.stores {
            Stores::Memory(store) => {
                eventually("memory watchers registered", || store.watcher_count() == n).await
            }
            Stores::Redis { b, .. } => {
                eventually("Redis watchers registered and subscribed", || {
                    b.watcher_count() == n && b.subscribed_channel_count() == channels
                })
                .await
            }
        }
    }

    /// The record's remaining time-to-live in Redis (PTTL), in ms; `None` for memory.
    async fn pttl(&self, trace_id: &str) -> Option<i64> {
        match &self.stores {
            Stores::Memory(_) => None,
            Stores::Redis { a, admin, .. } => {
                let mut admin = admin.clone();
                let ttl: i64 = redis::cmd("PTTL")
                    .arg(a.record_key(trace_id))
                    .query_async(&mut admin)
                    .await
                    .expect("PTTL");
                Some(ttl)
            }
        }
    }

    /// Deletes every key under the test's prefix.
    async fn cleanup(self) {
        if let Stores::Redis {
            mut admin,
            prefix,
            tagged,
            ..
        } = self.stores
        {
            // Tagged keys start with `{prefix:bucket}`; KEYS goes to every master of a cluster.
            let pattern = match tagged {
                true => format!("{{{prefix}:*"),
                false => format!("{prefix}:*"),
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut admin)
                .await
                .expect("KEYS");
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut admin)
                    .await
                    .expect("DEL");
            }
        }
    }
}

/// Waits (bounded by [`WAIT`]) until `condition` holds.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?}: {what}"))
}

/// The state stored at sequence `seq` (any JSON does for the store).
fn state(seq: u64) -> StoredState {
    json!({"v": 2, "seq": seq, "state": {"step": seq}})
        .to_string()
        .into()
}

/// A record of saga [`SAGA`] for `input`, held by [`OWNER`] under a long lease.
fn record(trace_id: &str, input: &serde_json::Value) -> SagaRecord {
    record_in(SAGA, trace_id, input, Custody::held(OWNER, LONG))
}

fn record_in(
    saga: &str,
    trace_id: &str,
    input: &serde_json::Value,
    custody: Custody,
) -> SagaRecord {
    SagaRecord::new(
        trace_id,
        saga,
        fingerprint(saga, input),
        "create_order",
        Mode::Async,
        state(0),
        custody,
    )
}

fn running(step: usize, name: &str) -> SagaStatus {
    SagaStatus::Running {
        step,
        name: name.to_string(),
    }
}

fn completed(output: serde_json::Value) -> SagaStatus {
    SagaStatus::Completed { output }
}

fn compensated(_trace_id: &str) -> SagaFailure {
    SagaFailure::Compensated {
        step: "create_payment".into(),
        error: StepError::fatal("card declined"),
    }
}

/// A transition of `trace_id` (saga [`SAGA`]) from `seq` by `token` to `status`, with `next`
/// as the new state unless `status` is final; the saga stays held by `token` under a long
/// lease.
fn transition_of<'a>(
    trace_id: &'a str,
    seq: u64,
    token: &'a str,
    status: SagaStatus,
    next: &'a StoredState,
) -> Advance<'a> {
    let final_status = status.is_final();
    Advance {
        trace_id,
        saga: SAGA,
        seq,
        token,
        status,
        state: (!final_status).then_some(next),
        custody: Custody::held(token, LONG),
        history: &[],
        abortable: false,
    }
}

/// Records a transition of `trace_id` (saga [`SAGA`]) from `seq` by `token`; the next state is
/// held by `token` under a long lease.
async fn advance(
    store: &Arc<dyn SagaStore>,
    trace_id: &str,
    seq: u64,
    token: &str,
    status: SagaStatus,
) -> Written {
    let next = state(seq + 1);
    store
        .advance(transition_of(trace_id, seq, token, status, &next))
        .await
        .expect("advance")
}

/// Takes custody of `trace_id` at `seq` (`None`: recovery) for `token`.
async fn claim(
    store: &Arc<dyn SagaStore>,
    trace_id: &str,
    seq: Option<u64>,
    token: &str,
    recovery: bool,
) -> Claimed {
    store
        .claim(Claim {
            trace_id,
            saga: SAGA,
            seq,
            token,
            lease: LONG,
            recovery,
        })
        .await
        .expect("claim")
}

async fn hold(
    store: &Arc<dyn SagaStore>,
    trace_id: &str,
    seq: u64,
    token: &str,
    custody: Custody,
) -> Written {
    hold_recording(store, trace_id, seq, token, custody, &[]).await
}

/// [`hold`] appending `history` in the same write.
async fn hold_recording(
    store: &Arc<dyn SagaStore>,
    trace_id: &str,
    seq: u64,
    token: &str,
    custody: Custody,
    history: &[HistoryEntry],
) -> Written {
    store
        .hold(Hold {
            trace_id,
            saga: SAGA,
            seq,
            token,
            custody,
            refund_attempt: false,
            requeued: false,
            history,
        })
        .await
        .expect("hold")
}

/// Advances `trace_id` from its begin to the `create_payment` step, recording `entries`.
async fn ordered(store: &Arc<dyn SagaStore>, trace_id: &str, entries: &[HistoryEntry]) -> Written {
    let next = state(1);
    store
        .advance(Advance {
            history: entries,
            ..transition_of(trace_id, 0, OWNER, running(1, "create_payment"), &next)
        })
        .await
        .expect("advance")
}

async fn get(store: &Arc<dyn SagaStore>, trace_id: &str) -> SagaRecord {
    store
        .get(trace_id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("no record for {trace_id}"))
}

/// Runs one async test body against the memory store and against Redis.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
    $(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                let fixture = super::Fixture::memory();
                super::$name(&fixture).await;
                fixture.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let fixture = super::Fixture::redis(stringify!($name)).await;
                super::$name(&fixture).await;
                fixture.cleanup().await;
            }

            /// The shared server with 4 index buckets: tagged keys, merged reads.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_buckets() {
                let target = super::Target::Standalone(Some(4));
                let fixture = super::Fixture::redis_on(stringify!($name), &target).await;
                super::$name(&fixture).await;
                fixture.cleanup().await;
            }
        }
    )*

        /// Every body in turn on one Redis Cluster (a fixture with its own prefix each).
        async fn every_body_on(target: &Target) {
            $(
                eprintln!("cluster conformance: {}", stringify!($name));
                let fixture = Fixture::redis_on(stringify!($name), target).await;
                $name(&fixture).await;
                fixture.cleanup().await;
            )*
        }
    };
}

both_backends!(
    begin_is_idempotent,
    concurrent_begins_start_once,
    advance_tracks_the_lifecycle,
    advance_to_a_failed_outcome,
    a_stuck_saga_keeps_the_state_it_is_stuck_at,
    writes_without_record_find_it_missing,
    a_final_record_is_never_reopened,
    claim_is_fenced,
    claim_counts_attempts,
    requeues_count_hand_backs_until_the_next_transition,
    advance_is_a_compare_and_set,
    a_final_advance_wakes_watchers_on_the_other_replica,
    hold_renews_and_hands_over,
    advance_renews_a_lease_only_when_due,
    expired_lists_only_lapsed_leases_of_the_saga,
    many_racers_one_recovery_wins,
    watch_resolves_when_completed_later,
    watch_resolves_at_once_when_final,
    watch_reports_a_failure,
    many_watchers_all_resolve,
    dropped_watch_leaves_no_entry,
    history_keeps_the_latest_entries_in_order,
    list_pages_through_every_saga_once_in_order,
);

/// 30 completed sagas (several in one millisecond, so ties order by trace id), 3 running, 2 of
/// another saga: pages of 7 list every completed one exactly once, oldest first, with the
/// cursor semantics of one index whatever the number of buckets; a saga filter and an age
/// filter apply across buckets.
async fn list_pages_through_every_saga_once_in_order(fx: &Fixture) {
    let a = fx.a();
    let mut completed_ids = Vec::new();
    for i in 0..35 {
        let id = format!("listed-{i:02}");
        let saga = if i >= 33 { "other-saga" } else { SAGA };
        a.begin(record_in(saga, &id, &json!(i), Custody::held(OWNER, LONG)))
            .await
            .expect("begin");
        if (3..33).contains(&i) {
            let written = advance(&a, &id, 0, OWNER, completed(json!(i))).await;
            assert_eq!(written, Written::Done);
            completed_ids.push(id);
        }
        if i % 4 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let mut listed: Vec<SagaRecord> = Vec::new();
    let mut query = ListQuery {
        limit: 7,
        saga: Some(SAGA.to_string()),
        ..ListQuery::new(StatusKind::Completed)
    };
    for _ in 0..20 {
        let page = fx.b().list(&query).await.expect("list");
        assert!(page.sagas.len() <= 7, "{} in a page of 7", page.sagas.len());
        listed.extend(page.sagas);
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let ids: Vec<&str> = listed.iter().map(|r| r.trace_id.as_str()).collect();
    let mut expected: Vec<&str> = completed_ids.iter().map(String::as_str).collect();
    expected.sort_unstable_by_key(|id| {
        let record = listed.iter().find(|r| r.trace_id == *id);
        (record.map_or(0, |r| r.status_since_ms), *id)
    });
    assert_eq!(ids, expected, "every completed saga once, oldest first");
    assert!(
        listed.windows(2).all(
            |w| (w[0].status_since_ms, &w[0].trace_id) < (w[1].status_since_ms, &w[1].trace_id)
        )
    );
    let running = fx
        .b()
        .list(&ListQuery::new(StatusKind::Running))
        .await
        .expect("list running");
    let running: Vec<&str> = running.sagas.iter().map(|r| r.trace_id.as_str()).collect();
    assert_eq!(
        running,
        [
            "listed-00",
            "listed-01",
            "listed-02",
            "listed-33",
            "listed-34"
        ]
    );
    let old = ListQuery {
        older_than: Some(Duration::from_secs(3600)),
        ..ListQuery::new(StatusKind::Completed)
    };
    assert!(fx.b().list(&old).await.expect("list").sagas.is_empty());
}

/// A history entry of a transition of `step`, attempt `attempt`, written by `token`.
fn transition(token: &str, step: &str, attempt: u32, error: Option<&str>) -> HistoryEntry {
    HistoryEntry::now(
        token,
        HistoryEvent::Transition {
            step: step.to_string().into(),
            compensation: false,
            attempt,
            elapsed_ms: 1,
            error: error.map(str::to_string),
            retried: error.is_some(),
        },
    )
}

async fn history_keeps_the_latest_entries_in_order(fx: &Fixture) {
    let store = fx.a();
    let id = "bounded-history";
    store.begin(record(id, &json!(1))).await.expect("begin");
    // Two transitions, each written with the failed attempt retried in place before it (two
    // entries per write), then a failed attempt handed over by a hold: five entries after
    // `started`; the bound keeps `started` and the last three.
    for (seq, step) in [(0, "create_order"), (1, "create_payment")] {
        let entries = [
            transition(OWNER, step, 1, Some("timeout")),
            transition(OWNER, step, 2, None),
        ];
        let next = state(seq + 1);
        let written = store
            .advance(Advance {
                trace_id: id,
                saga: SAGA,
                seq,
                token: OWNER,
                status: running(usize::try_from(seq).expect("small") + 1, step),
                state: Some(&next),
                custody: Custody::held(OWNER, LONG),
                history: &entries,
                abortable: false,
            })
            .await
            .expect("advance");
        assert_eq!(written, Written::Done);
    }
    let held = hold_recording(
        &store,
        id,
        2,
        OWNER,
        Custody::held(OWNER, LONG),
        &[transition(OWNER, "notify", 1, Some("unavailable"))],
    )
    .await;
    assert_eq!(held, Written::Done);
    let history = fx.b().history(id).await.expect("history");
    let begun = get(&store, id).await;
    assert_eq!(
        history.first(),
        Some(&HistoryEntry {
            at_ms: begun.created_at_ms,
            run: OWNER.into(),
            event: HistoryEvent::Started { mode: Mode::Async },
        }),
        "the `started` entry is always kept, first"
    );
    let seen: Vec<(String, u32)> = history[1..]
        .iter()
        .map(|entry| match &entry.event {
            HistoryEvent::Transition { step, attempt, .. } => (step.to_string(), *attempt),
            other => panic!("only transitions follow `started`, got {other:?}"),
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("create_payment".to_string(), 1),
            ("create_payment".to_string(), 2),
            ("notify".to_string(), 1),
        ],
        "`started` and the latest {} others, oldest first",
        HISTORY_LIMIT - 1
    );
    assert_eq!(
        history[1].event,
        transition(OWNER, "create_payment", 1, Some("timeout")).event
    );
    assert_eq!(history[3].replica(), "pod-a");
    // Removing the record removes its history.
    store.remove(id).await.expect("remove");
    assert_eq!(fx.b().history(id).await.expect("history"), Vec::new());
}

async fn begin_is_idempotent(fx: &Fixture) {
    let store = fx.a();
    let input = json!({"user": 1});
    assert_eq!(
        store.begin(record("t1", &input)).await.expect("begin"),
        Begin::Started
    );
    match store.begin(record("t1", &input)).await.expect("begin") {
        Begin::Existing(existing) => {
            assert_eq!(existing.trace_id, "t1");
            assert_eq!(existing.saga, SAGA);
            assert_eq!(existing.status, running(0, "create_order"));
            assert_eq!(existing.mode, Mode::Async);
            assert_eq!(existing.seq, 0);
            assert_eq!(existing.state.as_deref(), Some(state(0).as_str()));
            assert_eq!(existing.owner, OWNER);
            assert!(!existing.queued);
            assert_eq!(existing.attempts, 0);
        }
        other => panic!("same input must find the existing saga, got {other:?}"),
    }
    // From the other replica too, whoever asks (another run's token, another lease).
    let mut again = record("t1", &input);
    again.owner = "pod-b/2/0".into();
    again.queued = true;
    assert!(matches!(
        fx.b().begin(again).await.expect("begin"),
        Begin::Existing(existing) if existing.owner == OWNER && !existing.queued
    ));
    match store
        .begin(record("t1", &json!({"user": 2})))
        .await
        .expect("begin")
    {
        Begin::Conflict(existing) => {
            assert_eq!(existing.fingerprint, record("t1", &input).fingerprint)
        }
        other => panic!("another input must conflict, got {other:?}"),
    }
}

async fn concurrent_begins_start_once(fx: &Fixture) {
    let input = json!({"user": 7});
    let begins = (0..20).map(|i| {
        let store = if i % 2 == 0 { fx.a() } else { fx.b() };
        let record = record("race", &input);
        tokio::spawn(async move { store.begin(record).await })
    });
    let results: Vec<Begin> = bounded("20 concurrent begins", join_all(begins))
        .await
        .into_iter()
        .map(|joined| joined.expect("task").expect("begin"))
        .collect();
    let started = results.iter().filter(|b| **b == Begin::Started).count();
    let existing = results
        .iter()
        .filter(|b| matches!(b, Begin::Existing(_)))
        .count();
    assert_eq!((started, existing), (1, 19), "results: {results:?}");
}

async fn advance_tracks_the_lifecycle(fx: &Fixture) {
    let (a, b) = (fx.a(), fx.b());
    assert_eq!(
        a.begin(record("life", &json!({"user": 3})))
            .await
            .expect("begin"),
        Begin::Started
    );
    let begun = get(&b, "life").await;
    assert_eq!(begun.status, running(0, "create_order"));
    assert_eq!((begun.seq, begun.attempts), (0, 0));
    assert_eq!(begun.owner, OWNER);
    assert!(
        begun.lease_until_ms >= begun.created_at_ms + LONG.as_millis() as u64 - 1_000,
        "the lease runs from the begin: {begun:?}"
    );
    if let Some(ttl) = fx.pttl("life").await {
        assert!(
            ttl > FINISHED_TTL.as_millis() as i64,
            "running TTL, got {ttl}"
        );
    }
    // So that the update's timestamp visibly moves.
    tokio::time::sleep(Duration::from_millis(5)).await;

    assert_eq!(
        advance(&a, "life", 0, OWNER, running(1, "create_payment")).await,
        Written::Done
    );
    let got = get(&b, "life").await;
    assert_eq!(got.status, running(1, "create_payment"));
    assert_eq!(got.seq, 1);
    assert_eq!(got.state.as_deref(), Some(state(1).as_str()));
    assert_eq!(got.attempts, 0);
    assert_eq!(got.created_at_ms, begun.created_at_ms);
    assert!(
        got.updated_at_ms > begun.created_at_ms,
        "updated_at must move"
    );
    if let Some(ttl) = fx.pttl("life").await {
        assert!(
            ttl > FINISHED_TTL.as_millis() as i64 && ttl <= RUNNING_TTL.as_millis() as i64,
            "running safety TTL, got {ttl}"
        );
    }

    let compensating = SagaStatus::Compensating {
        step: 0,
        name: "create_order".into(),
    };
    assert_eq!(
        advance(&a, "life", 1, OWNER, compensating.clone()).await,
        Written::Done
    );
    let got = get(&b, "life").await;
    assert_eq!(got.status, compensating);
    assert_eq!(got.seq, 2);

    assert_eq!(
        advance(&a, "life", 2, OWNER, completed(json!({"order": 42}))).await,
        Written::Done
    );
    let got = get(&b, "life").await;
    assert_eq!(got.status, completed(json!({"order": 42})));
    assert_eq!(got.status.outcome(), Some(Ok(json!({"order": 42}))));
    // Every read gives a finished record's output back (the memory store keeps it as text):
    // a watch after the end, a listing.
    let outcome = bounded("watch of a completed saga", b.watch("life"))
        .await
        .expect("watch");
    assert_eq!(outcome, Ok(json!({"order": 42})));
    let page = b
        .list(&ListQuery::new(StatusKind::Completed))
        .await
        .expect("list");
    let listed = page.sagas.iter().find(|record| record.trace_id == "life");
    assert_eq!(
        listed.map(|record| &record.status),
        Some(&completed(json!({"order": 42})))
    );
    assert_eq!(got.seq, 3);
    assert_eq!(got.state, None, "a final record holds no state");
    assert_eq!(got.owner, "", "a final record has no owner");
    assert_eq!(got.lease_until_ms, 0);
    assert!(!got.queued);
    if let Some(ttl) = fx.pttl("life").await {
        assert!(
            ttl > 0 && ttl <= FINISHED_TTL.as_millis() as i64,
            "finished TTL applied, got {ttl}"
        );
    }

    a.remove("life").await.expect("remove");
    assert_eq!(b.get("life").await.expect("get"), None);
}

async fn a_stuck_saga_keeps_the_state_it_is_stuck_at(fx: &Fixture) {
    let a = fx.a();
    let id = "stuck-keeps";
    a.begin(record(id, &json!(id))).await.expect("begin");
    let stuck_state = state(7);
    let written = a
        .advance(Advance {
            trace_id: id,
            saga: SAGA,
            seq: 0,
            token: OWNER,
            status: SagaStatus::Failed {
                error: SagaFailure::Stuck {
                    stuck: StuckAt::Definition {
                        written: 1,
                        deployed: 2,
                    },
                    attempts: 1,
                    last_error: StepError::fatal("does not decode"),
                    failed_step: None,
                },
            },
            state: Some(&stuck_state),
            custody: Custody::held(OWNER, LONG),
            history: &[],
            abortable: false,
        })
        .await
        .expect("advance");
    assert_eq!(written, Written::Done);
    let got = get(&fx.b(), id).await;
    assert!(got.status.is_final());
    assert_eq!(
        got.state.as_deref(),
        Some(stuck_state.as_str()),
        "kept for an operator"
    );
    assert_eq!(got.owner, "", "nobody holds a final record");
}

async fn advance_to_a_failed_outcome(fx: &Fixture) {
    let a = fx.a();
    for (id, error) in [
        ("compensated", compensated("compensated")),
        (
            "stuck",
            SagaFailure::Stuck {
                stuck: StuckAt::Compensation("create_order".into()),
                attempts: 5,
                last_error: StepError::retryable("order service unavailable"),
                failed_step: Some(("create_payment".into(), StepError::fatal("declined"))),
            },
        ),
    ] {
        a.begin(record(id, &json!(id))).await.expect("begin");
        // Five attempts of the transition, then it gives up.
        for _ in 0..5 {
            assert!(matches!(
                claim(&a, id, Some(0), OWNER, false).await,
                Claimed::Won { .. }
            ));
        }
        assert_eq!(get(&fx.b(), id).await.attempts, 5);
        let failed = SagaStatus::Failed {
            error: error.clone(),
        };
        assert_eq!(advance(&a, id, 0, OWNER, failed).await, Written::Done);
        let got = get(&fx.b(), id).await;
        assert_eq!(got.status.outcome(), Some(Err(error)));
        assert_eq!(got.attempts, 0, "attempts are per transition");
        if let Some(ttl) = fx.pttl(id).await {
            assert!(
                ttl > 0 && ttl <= FINISHED_TTL.as_millis() as i64,
                "got {ttl}"
            );
        }
    }
}

async fn writes_without_record_find_it_missing(fx: &Fixture) {
    let a = fx.a();
    let id = "never-begun";
    assert_eq!(
        advance(&a, id, 0, OWNER, running(1, "x")).await,
        Written::Missing
    );
    assert_eq!(
        advance(&a, id, 0, OWNER, completed(json!(1))).await,
        Written::Missing
    );
    assert_eq!(
        hold(&a, id, 0, OWNER, Custody::held(OWNER, LONG)).await,
        Written::Missing
    );
    assert_eq!(claim(&a, id, Some(0), OWNER, false).await, Claimed::Missing);
    assert_eq!(
        claim(&fx.b(), id, None, OWNER, true).await,
        Claimed::Missing
    );
    assert_eq!(a.get(id).await.expect("get"), None, "nothing was created");
    assert!(a.expired(SAGA, 10).await.expect("expired").is_empty());
    a.remove(id)
        .await
        .expect("removing a missing record is fine");
}

async fn a_final_record_is_never_reopened(fx: &Fixture) {
    let (a, b) = (fx.a(), fx.b());
    let input = json!({"late": true});
    a.begin(record("late", &input)).await.expect("begin");
    assert_eq!(
        advance(&a, "late", 0, OWNER, completed(json!({"done": 1}))).await,
        Written::Done
    );
    // Late or duplicate deliveries on another replica try to move it back.
    for (seq, token) in [(0, OWNER), (1, OWNER), (0, "pod-b/2/7"), (1, "pod-b/2/7")] {
        assert_eq!(
            advance(&b, "late", seq, token, running(1, "second")).await,
            Written::Finished
        );
        let failed = SagaStatus::Failed {
            error: compensated("late"),
        };
        assert_eq!(
            advance(&b, "late", seq, token, failed).await,
            Written::Finished
        );
        assert_eq!(
            hold(&b, "late", seq, token, Custody::held(token, LONG)).await,
            Written::Finished
        );
        assert_eq!(
            claim(&b, "late", Some(seq), token, false).await,
            Claimed::Finished
        );
    }
    assert_eq!(
        claim(&b, "late", None, "pod-b/2/8", true).await,
        Claimed::Finished
    );
    let stored = get(&a, "late").await;
    assert_eq!(stored.status, completed(json!({"done": 1})));
    assert_eq!(stored.seq, 1);
    assert_eq!(stored.owner, "");
    // Starting the id again returns the outcome, it does not restart the saga.
    assert!(matches!(
        b.begin(record("late", &input)).await.expect("begin"),
        Begin::Existing(existing) if existing.status == completed(json!({"done": 1}))
    ));
}

async fn claim_is_fenced(fx: &Fixture) {
    let (a, b) = (fx.a(), fx.b());
    // The first message is on the broker.
    a.begin(record_in(
        SAGA,
        "fence",
        &json!(1),
        Custody::queued("publisher", LONG),
    ))
    .await
    .expect("begin");
    assert_eq!(
        claim(&a, "fence", Some(1), "c1", false).await,
        Claimed::Stale { current: 0 },
        "a delivery from the future is stale"
    );
    assert_eq!(
        claim(&b, "fence", None, "sweeper", true).await,
        Claimed::Busy,
        "recovery waits for the queued lease to lapse"
    );
    assert_eq!(
        claim(&a, "fence", Some(0), "c1", false).await,
        Claimed::Won {
            attempt: 1,
            seq: 0,
            mode: Mode::Async,
            state: None,
            compensate: false,
            requeues: 0,
        },
        "any consumer may claim a queued saga"
    );
    let held = get(&b, "fence").await;
    assert_eq!(held.owner, "c1");
    assert!(!held.queued);
    // A duplicate of the delivery on another replica, while c1 runs it.
    assert_eq!(
        claim(&b, "fence", Some(0), "c2", false).await,
        Claimed::Busy
    );
    assert_eq!(claim(&b, "fence", None, "c2", false).await, Claimed::Busy);
    assert_eq!(
        claim(&b, "fence", None, "sweeper", true).await,
        Claimed::Busy
    );
    // c1 moves it on and hands the next message to the broker.
    let next = state(1);
    let written = a
        .advance(Advance {
            trace_id: "fence",
            saga: SAGA,
            seq: 0,
            token: "c1",
            status: running(1, "create_payment"),
            state: Some(&next),
            custody: Custody::queued("c1", LONG),
            history: &[],
            abortable: false,
        })
        .await
        .expect("advance");
    assert_eq!(written, Written::Done);
    assert_eq!(
        claim(&b, "fence", Some(0), "c2", false).await,
        Claimed::Stale { current: 1 },
        "the duplicate of the first message is stale now"
    );
    assert!(matches!(
        claim(&b, "fence", Some(1), "c3", false).await,
        Claimed::Won {
            attempt: 1,
            seq: 1,
            ..
        }
    ));
    assert_eq!(
        advance(&b, "fence", 1, "c3", completed(json!("ok"))).await,
        Written::Done
    );
    assert_eq!(
        claim(&a, "fence", Some(2), "c4", false).await,
        Claimed::Finished
    );
    assert_eq!(
        claim(&a, "nobody", Some(0), "c4", false).await,
        Claimed::Missing
    );

    // A held lease that lapsed (its owner died): recovery takes it with the stored state, and
    // so may a delivery.
    let mut sync = record_in(SAGA, "lapsed", &json!(2), Custody::held(OWNER, SHORT));
    sync.mode = Mode::Sync;
    a.begin(sync).await.expect("begin");
    let mut delivered = record_in(SAGA, "lapsed-2", &json!(3), Custody::held(OWNER, SHORT));
    delivered.mode = Mode::Throttled;
    a.begin(delivered).await.expect("begin");
    assert_eq!(
        claim(&b, "lapsed", None, "sweeper", true).await,
        Claimed::Busy
    );
    assert_eq!(
        claim(&b, "lapsed-2", Some(0), "c5", false).await,
        Claimed::Busy
    );
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(
        claim(&b, "lapsed", None, "sweeper", true).await,
        Claimed::Won {
            attempt: 1,
            seq: 0,
            mode: Mode::Sync,
            state: Some(state(0).to_string()),
            compensate: false,
            requeues: 0,
        }
    );
    assert_eq!(
        claim(&a, "lapsed-2", Some(0), "c5", false).await,
        Claimed::Won {
            attempt: 1,
            seq: 0,
            mode: Mode::Throttled,
            state: None,
            compensate: false,
            requeues: 0,
        }
    );
    assert_eq!(get(&a, "lapsed").await.owner, "sweeper");
    assert_eq!(
        advance(&a, "lapsed", 0, OWNER, running(1, "x")).await,
        Written::Fenced,
        "the dead owner can no longer write"
    );
}

async fn claim_counts_attempts(fx: &Fixture) {
    let (a, b) = (fx.a(), fx.b());
    a.begin(record_in(
        SAGA,
        "attempts",
        &json!(1),
        Custody::queued("publisher", LONG),
    ))
    .await
    .expect("begin");
    for attempt in 1..=3 {
        let token = format!("c{attempt}");
        let store = if attempt % 2 == 0 { &a } else { &b };
        assert_eq!(
            claim(store, "attempts", Some(0), &token, false).await,
            Claimed::Won {
                attempt,
                seq: 0,
                mode: Mode::Async,
                state: None,
                compensate: false,
                requeues: 0,
            }
        );
        // A retryable failure: back to the broker (a nack with a delay).
        assert_eq!(
            hold(store, "attempts", 0, &token, Custody::queued(&token, LONG)).await,
            Written::Done
        );
    }
    let record = get(&a, "attempts").await;
    assert_eq!((record.attempts, record.queued), (3, true));
    // The owner itself may claim what it holds (the broker gave the redelivery back to it).
    assert!(matches!(
        claim(&a, "attempts", Some(0), "c3", false).await,
        Claimed::Won { attempt: 4, .. }
    ));
    assert!(matches!(
        claim(&a, "attempts", Some(0), "c3", false).await,
        Claimed::Won { attempt: 5, .. }
    ));
    assert_eq!(
        advance(&a, "attempts", 0, "c3", running(1, "create_payment")).await,
        Written::Done
    );
    assert_eq!(get(&b, "attempts").await.attempts, 0);
    assert!(matches!(
        claim(&b, "attempts", Some(1), "c3", false).await,
        Claimed::Won {
            attempt: 1,
            seq: 1,
            ..
        }
    ));
}

/// The sweeper's hand-back of a saga whose message it publishes again (`Hold::requeued`).
async fn hand_back(store: &Arc<dyn SagaStore>, trace_id: &str, seq: u64, token: &str) -> Written {
    store
        .hold(Hold {
            trace_id,
            saga: SAGA,
            seq,
            token,
            custody: Custody::queued(token, SHORT),
            refund_attempt: true,
            requeued: true,
            history: &[],
        })
        .await
        .expect("hand back")
}

/// `SagaRecord::requeues`: 0 at begin, one more per requeued hand-back (and nothing else), on
/// any replica; returned by every won claim (a recovery spaces its next re-publication by it);
/// back to 0 at the next transition, a final one too; shown by listings.
async fn requeues_count_hand_backs_until_the_next_transition(fx: &Fixture) {
    let (a, b) = (fx.a(), fx.b());
    let id = "requeued";
    a.begin(record_in(
        SAGA,
        id,
        &json!(1),
        Custody::queued("publisher", SHORT),
    ))
    .await
    .expect("begin");
    assert_eq!(get(&b, id).await.requeues, 0);
    // Nobody claims the message in time: the sweepers of A and B requeue it in turn.
    for (n, store) in [(0, &a), (1, &b), (2, &a)] {
        tokio::time::sleep(PAST_SHORT).await;
        let sweeper = format!("sweeper-{n}");
        assert_eq!(
            claim(store, id, None, &sweeper, true).await,
            Claimed::Won {
                attempt: 1,
                seq: 0,
                mode: Mode::Async,
                state: Some(state(0).to_string()),
                compensate: false,
                requeues: n,
            },
            "recovery claim {n}"
        );
        assert_eq!(hand_back(store, id, 0, &sweeper).await, Written::Done);
        let record = get(&b, id).await;
        assert_eq!(
            (record.requeues, record.attempts, record.queued),
            (n + 1, 0, true),
            "after hand-back {n}: {record:?}"
        );
    }
    // A refused hand-back counts nothing.
    assert_eq!(hand_back(&b, id, 0, "intruder").await, Written::Fenced);
    assert_eq!(hand_back(&b, id, 1, "sweeper-2").await, Written::Fenced);
    assert_eq!(get(&a, id).await.requeues, 3);
    let page = b
        .list(&ListQuery::new(StatusKind::Running))
        .await
        .expect("list running");
    let listed: Vec<(&str, u32)> = page
        .sagas
        .iter()
        .map(|r| (r.trace_id.as_str(), r.requeues))
        .collect();
    assert_eq!(listed, [(id, 3)], "a listing shows the count");
    // A delivery claims one of the copies: the count is returned, and a plain hold (a lease
    // renewal, a retry handed to the broker) keeps it.
    assert!(matches!(
        claim(&b, id, Some(0), "consumer", false).await,
        Claimed::Won {
            attempt: 1,
            requeues: 3,
            ..
        }
    ));
    assert_eq!(
        hold(&a, id, 0, "consumer", Custody::held("consumer", LONG)).await,
        Written::Done
    );
    assert_eq!(get(&b, id).await.requeues, 3);
    // The transition resets it.
    assert_eq!(
        advance(&a, id, 0, "consumer", running(1, "create_payment")).await,
        Written::Done
    );
    let record = get(&b, id).await;
    assert_eq!((record.seq, record.requeues), (1, 0), "{record:?}");
    assert!(matches!(
        claim(&b, id, Some(1), "consumer", false).await,
        Claimed::Won {
            seq: 1,
            requeues: 0,
            ..
        }
    ));
    // Counted again at the next transition, and reset by a final one.
    assert_eq!(hand_back(&a, id, 1, "consumer").await, Written::Done);
    assert_eq!(get(&b, id).await.requeues, 1);
    assert!(matches!(
        claim(&b, id, Some(1), "consumer-2", false).await,
        Claimed::Won { requeues: 1, .. }
    ));
    assert_eq!(
        advance(&b, id, 1, "consumer-2", completed(json!("done"))).await,
        Written::Done
    );
    assert_eq!(get(&a, id).await.requeues, 0);
}

async fn advance_is_a_compare_and_set(fx: &Fixture) {
    let (a, b) = (fx.a(), fx.b());
    a.begin(record("cas", &json!(1))).await.expect("begin");
    assert_eq!(
        advance(&a, "cas", 1, OWNER, running(1, "x")).await,
        Written::Fenced,
        "wrong sequence number"
    );
    assert_eq!(
        advance(&b, "cas", 0, "pod-b/2/0", running(1, "x")).await,
        Written::Fenced,
        "wrong token"
    );
    assert_eq!(
        advance(&b, "cas", 0, "", running(1, "x")).await,
        Written::Fenced,
        "empty token"
    );
    let untouched = get(&a, "cas").await;
    assert_eq!((untouched.seq, untouched.owner.as_str()), (0, OWNER));
    assert_eq!(
        advance(&a, "cas", 0, OWNER, running(1, "create_payment")).await,
        Written::Done
    );
    assert_eq!(
        advance(&a, "cas", 0, OWNER, running(1, "create_payment")).await,
        Written::Fenced,
        "the same transition twice"
    );
    // Many concurrent writers of the same transition (a forked run): exactly one wins.
    let writers = (0..10).map(|i| {
        let store = if i % 2 == 0 { fx.a() } else { fx.b() };
        tokio::spawn(async move {
            advance(&store, "cas", 1, OWNER, running(2, &format!("fork-{i}"))).await
        })
    });
    let written: Vec<Written> = bounded("10 concurrent advances", join_all(writers))
        .await
        .into_iter()
        .map(|joined| joined.expect("task"))
        .collect();
    assert_eq!(
        written.iter().filter(|w| **w == Written::Done).count(),
        1,
        "{written:?}"
    );
    assert!(
        written
            .iter()
            .all(|w| matches!(w, Written::Done | Written::Fenced)),
        "{written:?}"
    );
    let record = get(&b, "cas").await;
    assert_eq!(record.seq, 2);
    assert_eq!(
        advance(&a, "cas", 2, OWNER, completed(json!(2))).await,
        Written::Done
    );
    assert_eq!(
        advance(&a, "cas", 3, OWNER, completed(json!(3))).await,
        Written::Finished,
        "after the final status"
    );
    assert_eq!(get(&b, "cas").await.status, completed(json!(2)));
}

async fn a_final_advance_wakes_watchers_on_the_other_replica(fx: &Fixture) {
    let (a, b) = (fx.a(), fx.b());
    a.begin(record_in(
        SAGA,
        "wake",
        &json!(1),
        Custody::held(OWNER, SHORT),
    ))
    .await
    .expect("begin");
    let watchers: Vec<_> = (0..3)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.watch("wake").await })
        })
        .collect();
    fx.until_b_watches(3, 1).await;
    let written = a
        .advance(Advance {
            trace_id: "wake",
            saga: SAGA,
            seq: 0,
            token: OWNER,
            status: completed(json!({"woken": true})),
            state: None,
            custody: Custody::held(OWNER, LONG),
            history: &[],
            abortable: false,
        })
        .await
        .expect("advance");
    assert_eq!(written, Written::Done);
    for outcome in bounded("watchers woken", join_all(watchers)).await {
        assert_eq!(
            outcome.expect("task").expect("watch"),
            Ok(json!({"woken": true}))
        );
    }
    fx.until_b_watches(0, 0).await;
    let record = get(&b, "wake").await;
    assert_eq!(record.state, None, "a completed saga keeps no state");
    assert_eq!((record.owner.as_str(), record.lease_until_ms), ("", 0));
    assert!(!record.queued);
    // Its lease is gone from the index: past the begin lease, nothing to recover.
    tokio::time::sleep(PAST_SHORT).await;
    assert!(a.expired(SAGA, 10).await.expect("expired").is_empty());
    assert_eq!(
        claim(&b, "wake", None, "sweeper", true).await,
        Claimed::Finished
    );
}

/// An advance keeps a lease that still has at least 90% of the lease it asks for (and no more
/// than all of it) and writes a new one otherwise, record and lease index alike.
async fn advance_renews_a_lease_only_when_due(fx: &Fixture) {
    let (a, b) = (fx.a(), fx.b());
    a.begin(record("lazy", &json!(1))).await.expect("begin");
    let begun = get(&b, "lazy").await;
    // So that a renewal would visibly move the lease end.
    tokio::time::sleep(Duration::from_millis(5)).await;

    // Almost all of the begin's long lease is left: kept as it is.
    assert_eq!(
        advance(&a, "lazy", 0, OWNER, running(1, "create_payment")).await,
        Written::Done
    );
    let kept = get(&b, "lazy").await;
    assert_eq!(kept.seq, 1);
    assert_eq!(kept.lease_until_ms, begun.lease_until_ms, "{kept:?}");

    // More left than the short lease asked for: cut down to it, in the index too.
    let s2 = StoredState::from("s2");
    let mut shorter = transition_of("lazy", 1, OWNER, running(2, "book_hotel"), &s2);
    shorter.custody = Custody::held(OWNER, SHORT);
    assert_eq!(a.advance(shorter).await.expect("advance"), Written::Done);
    let cut = get(&b, "lazy").await;
    assert!(
        cut.lease_until_ms <= cut.updated_at_ms + SHORT.as_millis() as u64,
        "{cut:?}"
    );
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(
        b.expired(SAGA, 10).await.expect("expired"),
        vec!["lazy".to_string()],
        "the short lease lapsed"
    );

    // Less than 90% of the long lease left: renewed to a whole one.
    assert_eq!(
        advance(&a, "lazy", 2, OWNER, running(3, "create_order")).await,
        Written::Done
    );
    let renewed = get(&b, "lazy").await;
    assert!(
        renewed.lease_until_ms >= renewed.updated_at_ms + LONG.as_millis() as u64 - 1_000,
        "{renewed:?}"
    );
    assert!(
        b.expired(SAGA, 10).await.expect("expired").is_empty(),
        "a renewed lease has not lapsed"
    );
}

async fn hold_renews_and_hands_over(fx: &Fixture) {
    let (a, b) = (fx.a(), fx.b());
    a.begin(record_in(
        SAGA,
        "hold",
        &json!(1),
        Custody::held(OWNER, SHORT),
    ))
    .await
    .expect("begin");
    // Renewed past the begin lease.
    assert_eq!(
        hold(&a, "hold", 0, OWNER, Custody::held(OWNER, LONG)).await,
        Written::Done
    );
    let renewed = get(&b, "hold").await;
    assert!(
        renewed.lease_until_ms >= renewed.updated_at_ms + LONG.as_millis() as u64 - 1_000,
        "{renewed:?}"
    );
    tokio::time::sleep(PAST_SHORT).await;
    assert!(
        b.expired(SAGA, 10).await.expect("expired").is_empty(),
        "a renewed lease has not lapsed"
    );
    assert_eq!(
        claim(&b, "hold", None, "sweeper", true).await,
        Claimed::Busy
    );
    // Only the holder, at its sequence number, may renew.
    assert_eq!(
        hold(&b, "hold", 0, "intruder", Custody::held("intruder", LONG)).await,
        Written::Fenced
    );
    assert_eq!(
        hold(&b, "hold", 1, OWNER, Custody::held(OWNER, LONG)).await,
        Written::Fenced
    );
    // Handed to the broker (a nack): any consumer may claim it now.
    assert_eq!(
        hold(&a, "hold", 0, OWNER, Custody::queued(OWNER, LONG)).await,
        Written::Done
    );
    let queued = get(&b, "hold").await;
    assert!(queued.queued);
    assert_eq!(queued.owner, OWNER);
    assert!(matches!(
        claim(&b, "hold", Some(0), "consumer", false).await,
        Claimed::Won { attempt: 1, .. }
    ));
    assert_eq!(
        hold(&a, "hold", 0, OWNER, Custody::held(OWNER, LONG)).await,
        Written::Fenced,
        "the previous owner lost custody"
    );
    // Handed over to another run.
    assert_eq!(
        hold(&b, "hold", 0, "consumer", Custody::held("heir", LONG)).await,
        Written::Done
    );
    assert_eq!(get(&a, "hold").await.owner, "heir");
    assert_eq!(
        advance(&a, "hold", 0, "consumer", running(1, "x")).await,
        Written::Fenced
    );
    assert_eq!(
        advance(&a, "hold", 0, "heir", running(1, "create_payment")).await,
        Written::Done
    );
    // A short renewal lapses, and recovery may take it.
    assert_eq!(
        hold(&b, "hold", 1, "heir", Custody::held("heir", SHORT)).await,
        Written::Done
    );
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(a.expired(SAGA, 10).await.expect("expired"), vec!["hold"]);
    assert!(matches!(
        claim(&a, "hold", None, "sweeper", true).await,
        Claimed::Won { seq: 1, .. }
    ));
}

async fn expired_lists_only_lapsed_leases_of_the_saga(fx: &Fixture) {
    let (a, b) = (fx.a(), fx.b());
    let begin = |saga: &str, id: &str, custody: Custody| {
        let record = record_in(saga, id, &json!(id), custody);
        let store = fx.a();
        async move { store.begin(record).await.expect("begin") }
    };
    begin(SAGA, "short-1", Custody::held(OWNER, SHORT)).await;
    // A queued message nobody claimed (its publisher died) lapses too.
    begin(SAGA, "short-2", Custody::queued(OWNER, SHORT)).await;
    begin(SAGA, "long", Custody::held(OWNER, LONG)).await;
    begin("other-saga", "other", Custody::held(OWNER, SHORT)).await;
    begin(SAGA, "done", Custody::held(OWNER, SHORT)).await;
    assert_eq!(
        advance(&a, "done", 0, OWNER, completed(json!(null))).await,
        Written::Done
    );
    assert!(
        a.expired(SAGA, 10).await.expect("expired").is_empty(),
        "nothing lapsed yet"
    );
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(
        a.expired(SAGA, 10).await.expect("expired"),
        vec!["short-1", "short-2"],
        "lapsed leases of the saga, oldest first"
    );
    assert_eq!(b.expired(SAGA, 1).await.expect("expired"), vec!["short-1"]);
    assert_eq!(
        b.expired("other-saga", 10).await.expect("expired"),
        vec!["other"]
    );
    assert!(
        b.expired("no-such-saga", 10)
            .await
            .expect("expired")
            .is_empty()
    );
    // Recovered: off the list until its new lease lapses.
    assert!(matches!(
        claim(&b, "short-1", None, "sweeper", true).await,
        Claimed::Won { .. }
    ));
    assert_eq!(a.expired(SAGA, 10).await.expect("expired"), vec!["short-2"]);
    // Removed: off the list.
    a.remove("short-2").await.expect("remove");
    assert!(a.expired(SAGA, 10).await.expect("expired").is_empty());
}

async fn many_racers_one_recovery_wins(fx: &Fixture) {
    const ROUNDS: usize = 50;
    const RACERS: usize = 16;
    for round in 0..ROUNDS {
        let id = format!("racer-{round}");
        fx.a()
            .begin(record_in(
                SAGA,
                &id,
                &json!(round),
                Custody::held(OWNER, SHORT),
            ))
            .await
            .expect("begin");
    }
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(
        fx.b().expired(SAGA, 1_000).await.expect("expired").len(),
        ROUNDS
    );
    for round in 0..ROUNDS {
        let id = format!("racer-{round}");
        let start = Arc::new(tokio::sync::Barrier::new(RACERS));
        let racers = (0..RACERS).map(|k| {
            let store = if k % 2 == 0 { fx.a() } else { fx.b() };
            let (id, start) = (id.clone(), start.clone());
            tokio::spawn(async move {
                let token = format!("sweeper-{k}");
                start.wait().await;
                let claimed = claim(&store, &id, None, &token, true).await;
                (token, claimed)
            })
        });
        let results: Vec<(String, Claimed)> = bounded("racing claims", join_all(racers))
            .await
            .into_iter()
            .map(|joined| joined.expect("task"))
            .collect();
        let winners: Vec<_> = results
            .iter()
            .filter(|(_, claimed)| matches!(claimed, Claimed::Won { .. }))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let (token, won) = winners[0];
        assert_eq!(
            *won,
            Claimed::Won {
                attempt: 1,
                seq: 0,
                mode: Mode::Async,
                state: Some(state(0).to_string()),
                compensate: false,
                requeues: 0,
            }
        );
        assert!(
            results
                .iter()
                .all(|(t, claimed)| t == token || *claimed == Claimed::Busy),
            "round {round}: the losers find it busy: {results:?}"
        );
        let record = get(&fx.a(), &id).await;
        assert_eq!(record.owner, *token);
        assert_eq!(record.attempts, 1);
    }
    assert!(
        fx.a()
            .expired(SAGA, 1_000)
            .await
            .expect("expired")
            .is_empty()
    );
}

async fn watch_resolves_when_completed_later(fx: &Fixture) {
    let (a, b) = (fx.a(), fx.b());
    a.begin(record("later", &json!(1))).await.expect("begin");
    let watch = tokio::spawn(async move { b.watch("later").await });
    fx.until_b_watches(1, 1).await;
    assert_eq!(
        advance(&a, "later", 0, OWNER, running(1, "create_payment")).await,
        Written::Done
    );
    assert_eq!(
        advance(&a, "later", 1, OWNER, completed(json!("done"))).await,
        Written::Done
    );
    let outcome = bounded("watch", watch).await.expect("task").expect("watch");
    assert_eq!(outcome, Ok(json!("done")));
    assert_eq!(fx.b_watchers(), 0);
}

async fn watch_resolves_at_once_when_final(fx: &Fixture) {
    let a = fx.a();
    a.begin(record("final", &json!(1))).await.expect("begin");
    assert_eq!(
        advance(&a, "final", 0, OWNER, completed(json!([1, 2]))).await,
        Written::Done
    );
    let outcome = bounded("watch of a final saga", fx.b().watch("final"))
        .await
        .expect("watch");
    assert_eq!(outcome, Ok(json!([1, 2])));
    assert_eq!(fx.b_watchers(), 0);
}

async fn watch_reports_a_failure(fx: &Fixture) {
    let (a, b) = (fx.a(), fx.b());
    a.begin(record("fails", &json!(1))).await.expect("begin");
    let watch = tokio::spawn(async move { b.watch("fails").await });
    fx.until_b_watches(1, 1).await;
    let error = compensated("fails");
    let failed = SagaStatus::Failed {
        error: error.clone(),
    };
    assert_eq!(advance(&a, "fails", 0, OWNER, failed).await, Written::Done);
    let outcome = bounded("watch", watch).await.expect("task").expect("watch");
    assert_eq!(outcome, Err(error));
}

async fn many_watchers_all_resolve(fx: &Fixture) {
    const IDS: usize = 500;
    const PER_ID: usize = 2;
    let (a, b) = (fx.a(), fx.b());
    let ids: Vec<String> = (0..IDS).map(|i| format!("many-{i}")).collect();
    for id in &ids {
        a.begin(record(id, &json!(id))).await.expect("begin");
    }
    let watches: Vec<_> = ids
        .iter()
        .flat_map(|id| std::iter::repeat_n(id.clone(), PER_ID))
        .map(|id| {
            let b = b.clone();
            tokio::spawn(async move { (b.watch(&id).await, id) })
        })
        .collect();
    fx.until_b_watches(IDS * PER_ID, IDS).await;

    // A standalone Redis: every subscription is on the one server (a cluster spreads them).
    if let Stores::Redis {
        b,
        admin: Admin::Single(admin),
        ..
    } = &fx.stores
    {
        // Every channel has exactly one subscriber, and it is B's single pub/sub connection.
        let mut admin = admin.clone();
        let id = b.watch_connection_id().await.expect("CLIENT ID");
        let info: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("ID")
            .arg(id)
            .query_async(&mut admin)
            .await
            .expect("CLIENT LIST");
        assert!(
            info.split_whitespace().any(|f| f == format!("sub={IDS}")),
            "the watcher connection must hold all {IDS} subscriptions: {info}"
        );
        let mut numsub = redis::cmd("PUBSUB");
        numsub.arg("NUMSUB");
        for id in &ids {
            numsub.arg(b.completion_channel(id));
        }
        let counts: Vec<(String, i64)> = numsub.query_async(&mut admin).await.expect("NUMSUB");
        assert_eq!(counts.len(), IDS);
        assert!(counts.iter().all(|(_, n)| *n == 1), "{counts:?}");
    }

    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            advance(&a, id, 0, OWNER, completed(json!(i))).await,
            Written::Done
        );
    }
    let results = bounded("1,000 watchers", join_all(watches)).await;
    assert_eq!(results.len(), IDS * PER_ID);
    for result in results {
        let (outcome, id) = result.expect("task");
        let i: usize = id["many-".len()..].parse().expect("index");
        assert_eq!(outcome.expect("watch"), Ok(json!(i)));
    }
    fx.until_b_watches(0, 0).await;
}

async fn dropped_watch_leaves_no_entry(fx: &Fixture) {
    let b = fx.b();
    fx.a()
        .begin(record("dropped", &json!(1)))
        .await
        .expect("begin");
    let watch = tokio::spawn(async move { b.watch("dropped").await });
    fx.until_b_watches(1, 1).await;
    watch.abort();
    assert!(
        bounded("aborted watch", watch)
            .await
            .is_err_and(|e| e.is_cancelled())
    );
    assert_eq!(
        fx.b_watchers(),
        0,
        "the dropped watcher must be unregistered"
    );
    // Redis: its channel is unsubscribed too.
    fx.until_b_watches(0, 0).await;
    if let Stores::Redis {
        b,
        admin: Admin::Single(admin),
        ..
    } = &fx.stores
    {
        let mut admin = admin.clone();
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(b.completion_channel("dropped"))
            .query_async(&mut admin)
            .await
            .expect("NUMSUB");
        assert_eq!(counts[0].1, 0, "{counts:?}");
    }
}

/// A memory store with these retention bounds and no running TTL.
fn memory_with(finished_ttl: Duration, max_finished: usize) -> Arc<dyn SagaStore> {
    Arc::new(MemoryStore::new(StoreConfig {
        finished_ttl,
        running_ttl: None,
        max_finished,
        history_limit: 100,
    }))
}

/// Begins `trace_id` and, unless `finish` is false, ends it at once.
async fn begun(store: &Arc<dyn SagaStore>, trace_id: &str, finish: bool) {
    assert_eq!(
        store
            .begin(record(trace_id, &json!(trace_id)))
            .await
            .expect("begin"),
        Begin::Started
    );
    if finish {
        assert_eq!(
            advance(store, trace_id, 0, OWNER, completed(json!(trace_id))).await,
            Written::Done
        );
    }
}

#[tokio::test]
async fn memory_store_evicts_finished_records_past_their_ttl() {
    let memory = Arc::new(MemoryStore::new(StoreConfig {
        finished_ttl: SHORT,
        running_ttl: None,
        max_finished: 100,
        history_limit: 100,
    }));
    let store: Arc<dyn SagaStore> = memory.clone();
    begun(&store, "running", false).await;
    assert_eq!(
        advance(&store, "running", 0, OWNER, running(1, "create_payment")).await,
        Written::Done
    );
    begun(&store, "ttl-1", true).await;
    begun(&store, "ttl-2", true).await;
    assert!(
        store.get("ttl-1").await.expect("get").is_some(),
        "kept for the finished TTL"
    );
    assert_eq!(memory.record_count(), 3);
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(
        store.get("ttl-1").await.expect("get"),
        None,
        "expired past the finished TTL"
    );
    // The next write that ends a saga evicts what expired, without anyone reading it.
    begun(&store, "trigger", true).await;
    assert_eq!(
        memory.record_count(),
        2,
        "ttl-2 evicted; `running` and `trigger` kept"
    );
    assert!(
        store.get("running").await.expect("get").is_some(),
        "a running record never expires by the finished TTL"
    );
    // The id is free again once its record expired: a new saga starts under it.
    assert_eq!(
        store
            .begin(record("ttl-1", &json!("another input")))
            .await
            .expect("begin"),
        Begin::Started
    );
}

#[tokio::test]
async fn memory_store_caps_finished_records_oldest_first() {
    const CAP: usize = 3;
    let memory = Arc::new(MemoryStore::new(StoreConfig {
        finished_ttl: LONG,
        running_ttl: None,
        max_finished: CAP,
        history_limit: 100,
    }));
    let store: Arc<dyn SagaStore> = memory.clone();
    // More running records than the cap: the cap never touches them.
    for i in 0..10 {
        begun(&store, &format!("run-{i}"), false).await;
    }
    for i in 0..6 {
        begun(&store, &format!("done-{i}"), true).await;
    }
    assert_eq!(memory.record_count(), 10 + CAP);
    for i in 0..3 {
        assert_eq!(
            store.get(&format!("done-{i}")).await.expect("get"),
            None,
            "done-{i} is among the oldest finished: evicted"
        );
    }
    for i in 3..6 {
        let record = get(&store, &format!("done-{i}")).await;
        assert_eq!(record.status, completed(json!(format!("done-{i}"))));
    }
    for i in 0..10 {
        let record = get(&store, &format!("run-{i}")).await;
        assert!(!record.status.is_final());
    }
    // Finishing the running ones keeps the cap.
    for i in 0..10 {
        let id = format!("run-{i}");
        assert_eq!(
            advance(&store, &id, 0, OWNER, completed(json!(i))).await,
            Written::Done
        );
    }
    assert_eq!(memory.record_count(), CAP);
    for i in 7..10 {
        assert!(store.get(&format!("run-{i}")).await.expect("get").is_some());
    }
}

/// An id reused after its finished record expired starts a new saga; that saga's outcome must
/// then be kept for the finished TTL like any other.
///
/// Fails today: the retention queue of the memory store (`State::finished`) still holds the
/// entry of the first outcome, and `evict` (run by the write that ends the second saga) pops
/// it as expired and removes the record under that id, which is now the *new* outcome.
#[tokio::test]
async fn memory_store_keeps_the_outcome_of_a_reused_id() {
    let store = memory_with(SHORT, 100);
    begun(&store, "reused", true).await;
    tokio::time::sleep(PAST_SHORT).await;
    // The old outcome expired: the id starts a new saga, which ends at once (one step).
    assert_eq!(
        store
            .begin(record("reused", &json!("second")))
            .await
            .expect("begin"),
        Begin::Started
    );
    assert_eq!(
        advance(&store, "reused", 0, OWNER, completed(json!("second"))).await,
        Written::Done
    );
    let record = store.get("reused").await.expect("get");
    assert_eq!(
        record.map(|r| r.status),
        Some(completed(json!("second"))),
        "the new outcome was evicted at once by the expired entry of the old one"
    );
}

/// A removed finished record must not count against (nor be evicted through) the entry it
/// left in the retention queue: here `y` is removed, started again and finished again, then
/// `z` finishes. Two finished records, a cap of two: both must be kept.
///
/// Fails today: `remove` leaves `y`'s first entry in `State::finished`; when `z` ends the queue
/// holds three entries for a cap of two, and popping the oldest (the stale `y` one) removes the
/// live, just-finished record `y`.
#[tokio::test]
async fn memory_store_cap_ignores_entries_of_removed_records() {
    let store = memory_with(LONG, 2);
    begun(&store, "y", true).await;
    store.remove("y").await.expect("remove");
    begun(&store, "y", true).await;
    begun(&store, "z", true).await;
    assert!(store.get("z").await.expect("get").is_some());
    assert!(
        store.get("y").await.expect("get").is_some(),
        "y's second outcome was evicted through the entry its removed record left"
    );
}

#[test]
fn fingerprint_ignores_the_order_of_object_keys() {
    let keys = [
        "zeta", "alpha", "mid", "beta", "omega", "gamma", "k1", "k10", "k2",
    ];
    let mut forward: HashMap<String, serde_json::Value> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        forward.insert(
            key.to_string(),
            json!({"n": i, "inner": {"y": 1, "x": [i, "a"]}}),
        );
    }
    let mut backward: HashMap<String, serde_json::Value> = HashMap::with_capacity(64);
    for (i, key) in keys.iter().enumerate().rev() {
        backward.insert(
            key.to_string(),
            json!({"inner": {"x": [i, "a"], "y": 1}, "n": i}),
        );
    }
    let one = serde_json::to_value(&forward).expect("json");
    let two = serde_json::to_value(&backward).expect("json");
    assert_eq!(fingerprint(SAGA, &one), fingerprint(SAGA, &two));
    // Parsed from texts whose keys come in other orders, too.
    let three: serde_json::Value =
        serde_json::from_str(r#"{"b": {"d": 1, "c": [1, {"f": 2, "e": 3}]}, "a": null}"#)
            .expect("json");
    let four: serde_json::Value =
        serde_json::from_str(r#"{"a": null, "b": {"c": [1, {"e": 3, "f": 2}], "d": 1}}"#)
            .expect("json");
    assert_eq!(fingerprint(SAGA, &three), fingerprint(SAGA, &four));
    // What differs is told apart: a value, an array order, a key, the saga.
    let five: serde_json::Value =
        serde_json::from_str(r#"{"a": null, "b": {"c": [{"e": 3, "f": 2}, 1], "d": 1}}"#)
            .expect("json");
    assert_ne!(fingerprint(SAGA, &three), fingerprint(SAGA, &five));
    assert_ne!(
        fingerprint(SAGA, &json!({"a": 1})),
        fingerprint(SAGA, &json!({"a": 2}))
    );
    assert_ne!(
        fingerprint(SAGA, &json!({"a": 1})),
        fingerprint(SAGA, &json!({"b": 1}))
    );
    assert_ne!(fingerprint(SAGA, &json!(1)), fingerprint(SAGA, &json!("1")));
    assert_ne!(fingerprint(SAGA, &one), fingerprint("other", &one));
    let fp = fingerprint(SAGA, &one);
    assert!(fp.starts_with("booking:"), "{fp}");
}

#[tokio::test]
async fn redis_unreachable_fails_fast_naming_the_address() {
    let config = RedisConfig {
        connect_timeout: Duration::from_secs(2),
        ..RedisConfig::default()
    };
    let error = bounded(
        "connect to a closed port",
        RedisStore::connect("redis://127.0.0.1:1", config),
    )
    .await
    .expect_err("nothing listens on port 1");
    assert!(error.message().contains("127.0.0.1:1"), "{error}");
    assert!(error.message().contains("Redis"), "{error}");
    assert_eq!(error.kind(), StoreErrorKind::Connect, "{error}");
    let cause = std::error::Error::source(&error).expect("the refused connection is the source");
    assert!(
        Report(&error).to_string().ends_with(&cause.to_string()),
        "the report ends with the cause: {}",
        Report(&error)
    );
}

#[tokio::test]
async fn redis_bad_url_is_refused() {
    let error = bounded(
        "connect with a bad URL",
        RedisStore::connect("http://secret@nowhere", RedisConfig::default()),
    )
    .await
    .expect_err("not a Redis URL");
    assert!(error.message().contains("invalid Redis URL"), "{error}");
    assert_eq!(error.kind(), StoreErrorKind::InvalidConfig, "{error}");
    assert!(
        !Report(&error).to_string().contains("secret"),
        "password leaked through the cause: {}",
        Report(&error)
    );
    assert!(
        !error.message().contains("secret"),
        "password leaked: {error}"
    );
}

/// A Redis that lost its scripts (restarted, failed over to a replica that never ran them,
/// `SCRIPT FLUSH`) answers `NOSCRIPT`: every operation sends its script again (`EVAL`, which
/// caches it) and runs.
#[tokio::test]
async fn redis_operations_reload_flushed_scripts() {
    let fx = Fixture::redis("noscript").await;
    let Stores::Redis { admin, .. } = &fx.stores else {
        unreachable!()
    };
    let flush = || {
        let mut admin = admin.clone();
        async move {
            let _: () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut admin)
                .await
                .expect("SCRIPT FLUSH");
        }
    };
    let (a, b) = (fx.a(), fx.b());
    flush().await;
    assert_eq!(
        a.begin(record("flushed", &json!(1))).await.expect("begin"),
        Begin::Started
    );
    flush().await;
    assert_eq!(
        advance(&a, "flushed", 0, OWNER, running(1, "create_payment")).await,
        Written::Done
    );
    flush().await;
    assert!(matches!(
        claim(&b, "flushed", Some(1), "other", false).await,
        Claimed::Busy
    ));
    flush().await;
    assert_eq!(
        advance(&a, "flushed", 1, OWNER, completed(json!("done"))).await,
        Written::Done
    );
    let record = get(&b, "flushed").await;
    assert_eq!(record.seq, 2);
    assert_eq!(record.status, completed(json!("done")));
    flush().await;
    let page = b
        .list(&ListQuery::new(StatusKind::Completed))
        .await
        .expect("list");
    assert_eq!(
        page.sagas
            .iter()
            .map(|s| s.trace_id.as_str())
            .collect::<Vec<_>>(),
        ["flushed"]
    );
}

#[tokio::test]
async fn redis_corrupt_record_names_the_key() {
    let fx = Fixture::redis("corrupt").await;
    let Stores::Redis { a, b, admin, .. } = &fx.stores else {
        unreachable!()
    };
    let (a, b): (Arc<dyn SagaStore>, Arc<dyn SagaStore>) = (a.clone(), b.clone());
    let mut admin = admin.clone();
    let Stores::Redis { a: redis_a, .. } = &fx.stores else {
        unreachable!()
    };
    // A field that does not decode, a field that is missing, a number that is not one.
    for (id, field, damage) in [
        ("bad-status", "status", Some("{not json")),
        ("bad-owner", "owner", None),
        ("bad-seq", "seq", Some("seven")),
    ] {
        a.begin(record(id, &json!(id))).await.expect("begin");
        let key = redis_a.record_key(id);
        match damage {
            Some(value) => {
                let _: i64 = redis::cmd("HSET")
                    .arg(&key)
                    .arg(field)
                    .arg(value)
                    .query_async(&mut admin)
                    .await
                    .expect("HSET");
            }
            None => {
                let _: i64 = redis::cmd("HDEL")
                    .arg(&key)
                    .arg(field)
                    .query_async(&mut admin)
                    .await
                    .expect("HDEL");
            }
        }
        let error = b.get(id).await.expect_err("corrupt");
        assert!(error.message().contains(&key), "{error}");
        assert_eq!(error.kind(), StoreErrorKind::Corrupt, "{error}");
        assert!(error.message().contains(field), "names the field: {error}");
        let error = a.begin(record(id, &json!(id))).await.expect_err("corrupt");
        assert!(error.message().contains(&key), "{error}");
        let error = bounded("watch of a corrupt record", b.watch(id))
            .await
            .expect_err("corrupt");
        assert!(error.message().contains(&key), "{error}");
    }
    // A key of another type under the record's name: an error naming the trace id, no panic.
    let key = redis_a.record_key("not-a-hash");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("{not a hash")
        .query_async(&mut admin)
        .await
        .expect("SET");
    let error = a.get("not-a-hash").await.expect_err("wrong type");
    assert!(error.message().contains("not-a-hash"), "{error}");
    let error = b
        .claim(Claim {
            trace_id: "not-a-hash",
            saga: SAGA,
            seq: Some(0),
            token: OWNER,
            lease: LONG,
            recovery: false,
        })
        .await
        .expect_err("wrong type");
    assert!(error.message().contains("not-a-hash"), "{error}");
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_watcher_survives_a_killed_pubsub_connection() {
    let fx = Fixture::redis("killed").await;
    let Stores::Redis { b, admin, .. } = &fx.stores else {
        unreachable!()
    };
    let a = fx.a();
    let mut admin = admin.clone();
    for id in ["before", "after"] {
        a.begin(record(id, &json!(id))).await.expect("begin");
    }
    let watcher = b.clone();
    let before = tokio::spawn(async move { watcher.watch("before").await });
    let watcher = b.clone();
    let after = tokio::spawn(async move { watcher.watch("after").await });
    fx.until_b_watches(2, 2).await;

    let id = b.watch_connection_id().await.expect("CLIENT ID");
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL");
    assert_eq!(killed, 1);
    // Completed while the watcher reconnects (its PUBLISH may reach nobody): the watcher
    // re-reads the watched records once it is back.
    assert_eq!(
        advance(&a, "before", 0, OWNER, completed(json!("b"))).await,
        Written::Done
    );
    let outcome = bounded("watch across a reconnect", before).await;
    assert_eq!(outcome.expect("task").expect("watch"), Ok(json!("b")));

    // Once reconnected the subscriptions are back: a later completion is delivered.
    let new_id = bounded("CLIENT ID after reconnect", b.watch_connection_id())
        .await
        .expect("CLIENT ID");
    assert_ne!(new_id, id, "a new pub/sub connection");
    assert_eq!(
        advance(&a, "after", 0, OWNER, completed(json!("a"))).await,
        Written::Done
    );
    let outcome = bounded("watch after a reconnect", after).await;
    assert_eq!(outcome.expect("task").expect("watch"), Ok(json!("a")));
    fx.cleanup().await;
}

/// A TCP proxy to Redis that can be shut down, to make the server "go away" for one store
/// without touching the shared Redis.
struct Proxy {
    addr: std::net::SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut stop_accepting = stopped.clone();
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stop_accepting.changed() => return,
                };
                let Ok((mut client, _)) = accepted else {
                    return;
                };
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect("127.0.0.1:6379").await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
        });
        Self { addr, stop }
    }

    /// Closes the listener and every proxied connection.
    fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gone_fails_operations_in_bounded_time() {
    let proxy = Proxy::start().await;
    let prefix = unique("gone");
    let config = RedisConfig {
        key_prefix: prefix.clone(),
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(2),
        ..RedisConfig::from(store_config())
    };
    let url = format!("redis://{}", proxy.addr);
    let redis = Arc::new(RedisStore::connect(&url, config).await.unwrap_or_else(|e| {
        panic!("Redis unreachable through the proxy ({e}). Start it with: {START_REDIS}")
    }));
    let store: Arc<dyn SagaStore> = redis.clone();
    store.begin(record("gone", &json!(1))).await.expect("begin");
    proxy.stop();

    let address = proxy.addr.to_string();
    let error = bounded("get after Redis went away", store.get("gone"))
        .await
        .expect_err("Redis is gone");
    assert!(error.message().contains(&address), "{error}");
    assert!(error.kind().is_transient(), "{:?}: {error}", error.kind());
    let error = bounded(
        "begin after Redis went away",
        store.begin(record("gone-2", &json!(2))),
    )
    .await
    .expect_err("Redis is gone");
    assert!(error.message().contains(&address), "{error}");
    let claim = store.claim(Claim {
        trace_id: "gone",
        saga: SAGA,
        seq: Some(0),
        token: OWNER,
        lease: LONG,
        recovery: false,
    });
    let error = bounded("claim after Redis went away", claim)
        .await
        .expect_err("Redis is gone");
    assert!(error.message().contains(&address), "{error}");
    let next = state(1);
    let advance = store.advance(Advance {
        trace_id: "gone",
        saga: SAGA,
        seq: 0,
        token: OWNER,
        status: running(1, "x"),
        state: Some(&next),
        custody: Custody::held(OWNER, LONG),
        history: &[],
        abortable: false,
    });
    let error = bounded("advance after Redis went away", advance)
        .await
        .expect_err("Redis is gone");
    assert!(error.message().contains(&address), "{error}");
    let error = bounded("expired after Redis went away", store.expired(SAGA, 10))
        .await
        .expect_err("Redis is gone");
    assert!(error.message().contains(&address), "{error}");
    let error = bounded("watch after Redis went away", store.watch("gone"))
        .await
        .expect_err("Redis is gone");
    assert!(error.message().contains(&address), "{error}");
    assert_eq!(redis.watcher_count(), 0, "the failed watch left no watcher");

    // The record written through the proxy, removed directly.
    delete_prefix(&prefix).await;
}

async fn delete_prefix(prefix: &str) {
    let mut admin = redis::Client::open(redis_url())
        .expect("valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis is unreachable ({e}). Start it with: {START_REDIS}"));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut admin)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut admin)
            .await
            .expect("DEL");
    }
}

/// Starts a private 3-master, 3-replica Redis Cluster off the async runtime.
async fn private_cluster(name: &'static str) -> servers::RedisCluster {
    tokio::task::spawn_blocking(move || servers::RedisCluster::start(name))
        .await
        .expect("the cluster start task")
}

/// A test's own connection to a cluster.
async fn cluster_admin(nodes: &[String]) -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(nodes.to_vec())
        .expect("cluster URLs")
        .get_async_connection()
        .await
        .unwrap_or_else(|e| panic!("the private Redis Cluster {nodes:?}: {e}"))
}

/// Every conformance body of this file against a private Redis Cluster (16 index buckets
/// spread over 3 masters, writes acknowledged by a replica): the contract holds with each
/// saga's keys and scripts on its bucket's slot, and with listings and expired leases merged
/// from every bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_conformance() {
    let cluster = private_cluster("conformance").await;
    let target = Target::Cluster(cluster.urls());
    every_body_on(&target).await;
    drop(cluster);
}

/// Retries a store operation through a failover, as the engine does (every 100 ms, bounded
/// by [`WAIT`]); counts the failures in `failures`.
async fn through_failover<T, F, Fut>(what: &str, failures: &AtomicU64, mut operation: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sagaflow::store::StoreError>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match operation().await {
            Ok(value) => return value,
            Err(error) => {
                failures.fetch_add(1, Ordering::Relaxed);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{what} still failing after {WAIT:?}: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One saga through a failover: begin on A, watched from B, one step, then completed; every
/// write retried like the engine retries them (a retry that finds its own write applied counts
/// as done). Returns what B's watch resolved with.
async fn run_through_failover(
    a: Arc<dyn SagaStore>,
    b: Arc<dyn SagaStore>,
    i: usize,
    failures: Arc<AtomicU64>,
    watch_failures: Arc<AtomicU64>,
) -> sagaflow::store::Outcome {
    let id = format!("failover-{i}");
    let failures = &*failures;
    let begun = through_failover("begin", failures, || a.begin(record(&id, &json!(i)))).await;
    assert!(
        matches!(begun, Begin::Started | Begin::Existing(_)),
        "{id}: {begun:?}"
    );
    let watch = {
        let (b, id) = (b.clone(), id.clone());
        tokio::spawn(
            async move { through_failover("watch", &watch_failures, || b.watch(&id)).await },
        )
    };
    for (seq, status) in [(0, running(1, "create_payment")), (1, completed(json!(i)))] {
        let next = state(seq + 1);
        let final_status = status.is_final();
        let mut tried = false;
        let written = through_failover("advance", failures, || {
            let retried = std::mem::replace(&mut tried, true);
            let (a, id, status, next) = (a.clone(), id.clone(), status.clone(), next.clone());
            async move {
                let written = a
                    .advance(transition_of(&id, seq, OWNER, status.clone(), &next))
                    .await?;
                if written != Written::Done && retried {
                    let applied = a
                        .get(&id)
                        .await?
                        .is_some_and(|r| r.seq == seq + 1 && (!final_status || r.status == status));
                    if applied {
                        return Ok(Written::Done);
                    }
                }
                Ok(written)
            }
        })
        .await;
        assert_eq!(written, Written::Done, "{id} at seq {seq}");
        // Spread the run over the failover.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bounded("a watch through the failover", watch)
        .await
        .expect("watch task")
}

/// A Redis Cluster of 3 masters and 3 replicas loses nothing when a master is killed mid-run:
/// 300 sagas (begin on replica A, watched from replica B, one step, completed) run 24 at a
/// time; after 80 have completed, the master serving the first saga's bucket is SIGKILLed. Its
/// replica takes over (node timeout 1 s); the operations that failed meanwhile are retried as
/// the engine retries them. Then every saga is readable and completed with its own output at
/// sequence 2, every watch resolved with it, a listing pages through exactly the 300, and the
/// lease index still answers `expired` on the new master. Until the killed node is started
/// again (after the failover, as a supervisor would) and rejoins as the new master's replica,
/// that master cannot get its writes acknowledged by a replica (`replica_acks: 1`): they fail
/// and are retried, and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_loses_nothing_when_a_master_dies() {
    const SAGAS: usize = 300;
    const AT_ONCE: usize = 24;
    const KILL_AFTER: usize = 80;
    let started = std::time::Instant::now();
    let mut cluster = private_cluster("failover").await;
    let target = Target::Cluster(cluster.urls());
    let prefix = unique("failover");
    let a: Arc<dyn SagaStore> = Arc::new(redis_store_on(&prefix, &target).await);
    let b: Arc<dyn SagaStore> = Arc::new(redis_store_on(&prefix, &target).await);
    let mut admin = Admin::Cluster(cluster_admin(&cluster.urls()).await);
    let first_key = redis_store_on(&prefix, &target)
        .await
        .record_key("failover-0");
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(&first_key)
        .query_async(&mut admin)
        .await
        .expect("CLUSTER KEYSLOT");
    let victim = cluster.master_of_slot(slot);
    eprintln!(
        "cluster up in {:?}; will kill the master on port {victim} (slot {slot})",
        started.elapsed()
    );

    let failures = Arc::new(AtomicU64::new(0));
    let watch_failures = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..AT_ONCE)
        .map(|_| {
            let (a, b, failures, watch_failures, done, next) = (
                a.clone(),
                b.clone(),
                failures.clone(),
                watch_failures.clone(),
                done.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= SAGAS {
                        return outcomes;
                    }
                    let outcome = run_through_failover(
                        a.clone(),
                        b.clone(),
                        i,
                        failures.clone(),
                        watch_failures.clone(),
                    )
                    .await;
                    done.fetch_add(1, Ordering::Relaxed);
                    outcomes.push((i, outcome));
                }
            })
        })
        .collect();
    eventually("sagas completed before the kill", || {
        done.load(Ordering::Relaxed) >= KILL_AFTER as u64
    })
    .await;
    let killed_at = std::time::Instant::now();
    cluster.kill(victim);
    eprintln!(
        "killed the master on port {victim} with {} of {SAGAS} sagas completed",
        done.load(Ordering::Relaxed)
    );
    // Once its replica took over, the killed node is started again (as a supervisor would)
    // and rejoins as the new master's replica: until then that master has no replica to
    // acknowledge writes (`replica_acks: 1`), so its writes fail and are retried.
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_until_ok(&[victim], WAIT);
        eprintln!("failed over {:?} after the kill", killed_at.elapsed());
        cluster.restart(victim);
        cluster.wait_until_ok(&[], WAIT);
        eprintln!(
            "the killed node rejoined {:?} after the kill",
            killed_at.elapsed()
        );
        cluster
    })
    .await
    .expect("the failover task");
    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(
            tokio::time::timeout(WAIT * 3, worker)
                .await
                .expect("workers")
                .expect("worker"),
        );
    }
    eprintln!(
        "all {SAGAS} sagas done {:?} after the kill; {} writes and {} watches failed and were retried",
        killed_at.elapsed(),
        failures.load(Ordering::Relaxed),
        watch_failures.load(Ordering::Relaxed)
    );
    let now_masters = cluster.master_ports();
    assert!(
        !now_masters.contains(&victim) && now_masters.len() == 3,
        "a replica took over from the killed master: masters now {now_masters:?}"
    );
    // The promoted replica never ran the scripts (the script cache is not replicated): the
    // writes sent there answered NOSCRIPT and were sent again as EVAL, WAIT included.
    let promoted = cluster.master_of_slot(slot);
    let stats = servers::RedisCluster::cli(promoted, &["info", "commandstats"]);
    assert!(
        stats.contains("cmdstat_eval:"),
        "the promoted master on port {promoted} ran EVAL: {stats}"
    );

    // Every saga: completed with its own output, at sequence 2, and its watch saw it.
    assert_eq!(outcomes.len(), SAGAS);
    for (i, outcome) in &outcomes {
        assert_eq!(outcome, &Ok(json!(i)), "the watch of failover-{i}");
    }
    for i in 0..SAGAS {
        let record = get(&a, &format!("failover-{i}")).await;
        assert_eq!(record.status, completed(json!(i)), "failover-{i}");
        assert_eq!(record.seq, 2, "failover-{i}");
    }

    // Listings merge every bucket, the failed-over ones included.
    let mut listed = std::collections::HashSet::new();
    let mut query = ListQuery {
        limit: 64,
        ..ListQuery::new(StatusKind::Completed)
    };
    loop {
        let page = b.list(&query).await.expect("list after the failover");
        for saga in page.sagas {
            assert!(
                listed.insert(saga.trace_id.clone()),
                "{} listed twice",
                saga.trace_id
            );
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(listed.len(), SAGAS, "every saga listed once");

    // The lease indexes still work, on the new master too.
    for i in 0..8 {
        a.begin(record_in(
            "lapsing",
            &format!("lapsing-{i}"),
            &json!(i),
            Custody::held(OWNER, SHORT),
        ))
        .await
        .expect("begin after the failover");
    }
    tokio::time::sleep(PAST_SHORT).await;
    let mut expired = b
        .expired("lapsing", 100)
        .await
        .expect("expired after the failover");
    expired.sort();
    assert_eq!(
        expired,
        (0..8).map(|i| format!("lapsing-{i}")).collect::<Vec<_>>()
    );
    eprintln!("whole test {:?}", started.elapsed());
    drop(cluster);
}

/// A master killed for good (its node never comes back at that address, as when a managed
/// service replaces it): stores connected before the kill follow the failover to the promoted
/// replica instead of retrying the dead address forever. 48 sagas are begun durably
/// (`replica_acks: 1`) and watched from replica B; the master of the first saga's bucket is
/// SIGKILLed and stays dead; at once (while the cluster still names the dead master), each saga
/// is completed through a store that does not wait for replicas (the promoted master has none
/// left), retried like the engine retries, until its replica has taken over. Every saga then reads completed, every watch made before the kill resolves
/// with its outcome, and listings and expired leases work across the buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_follows_a_failover_to_a_master_that_stays_dead() {
    const SAGAS: usize = 48;
    let started = std::time::Instant::now();
    let mut cluster = private_cluster("stays-dead").await;
    let target = Target::Cluster(cluster.urls());
    let prefix = unique("stays-dead");
    let durable: Arc<dyn SagaStore> = Arc::new(redis_store_on(&prefix, &target).await);
    let connect_unacked = || async {
        let nodes = cluster.urls();
        let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
        let config = RedisConfig {
            key_prefix: prefix.clone(),
            ..RedisConfig::from(store_config())
        };
        Arc::new(
            RedisStore::connect_cluster(&nodes, config)
                .await
                .expect("the private Redis Cluster"),
        )
    };
    let a: Arc<RedisStore> = connect_unacked().await;
    let b: Arc<RedisStore> = connect_unacked().await;
    for i in 0..SAGAS {
        let begun = durable
            .begin(record(&format!("dead-{i}"), &json!(i)))
            .await
            .expect("begin");
        assert_eq!(begun, Begin::Started);
    }
    let watches: Vec<_> = (0..SAGAS)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move { b.watch(&format!("dead-{i}")).await })
        })
        .collect();
    eventually("B watches every saga", || {
        b.watcher_count() == SAGAS && b.subscribed_channel_count() == SAGAS
    })
    .await;

    let mut admin = Admin::Cluster(cluster_admin(&cluster.urls()).await);
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(a.record_key("dead-0"))
        .query_async(&mut admin)
        .await
        .expect("CLUSTER KEYSLOT");
    let victim = cluster.master_of_slot(slot);
    cluster.kill(victim);
    let killed_at = std::time::Instant::now();
    // The writes start at once, while the cluster still names the dead master.
    let failover = tokio::task::spawn_blocking(move || {
        cluster.wait_until_ok(&[victim], WAIT);
        eprintln!(
            "killed the master on port {victim} (slot {slot}); failed over {:?} later",
            killed_at.elapsed()
        );
        cluster
    });

    let failures = AtomicU64::new(0);
    let a_dyn: Arc<dyn SagaStore> = a.clone();
    for i in 0..SAGAS {
        let id = format!("dead-{i}");
        let mut tried = false;
        let written = through_failover("advance", &failures, || {
            let retried = std::mem::replace(&mut tried, true);
            let (a, id) = (a_dyn.clone(), id.clone());
            async move {
                let written = advance(&a, &id, 0, OWNER, completed(json!(i))).await;
                if written != Written::Done && retried {
                    let record = a.get(&id).await?;
                    if record.is_some_and(|r| r.seq == 1 && r.status == completed(json!(i))) {
                        return Ok(Written::Done);
                    }
                }
                Ok(written)
            }
        })
        .await;
        assert_eq!(written, Written::Done, "dead-{i}");
    }
    eprintln!(
        "every saga completed {:?} after the kill ({} attempts failed and were retried)",
        killed_at.elapsed(),
        failures.load(Ordering::Relaxed)
    );
    let cluster = failover.await.expect("the failover task");
    for (i, watch) in watches.into_iter().enumerate() {
        let outcome = bounded("a watch made before the kill", watch)
            .await
            .expect("watch task")
            .expect("watch");
        assert_eq!(outcome, Ok(json!(i)), "the watch of dead-{i}");
    }
    for i in 0..SAGAS {
        let record = get(&a_dyn, &format!("dead-{i}")).await;
        assert_eq!(record.status, completed(json!(i)), "dead-{i}");
    }
    let page = b
        .list(&ListQuery {
            limit: 100,
            ..ListQuery::new(StatusKind::Completed)
        })
        .await
        .expect("list after the failover");
    assert_eq!(page.sagas.len(), SAGAS);
    assert!(page.next.is_none());
    a.begin(record_in(
        "lapsing",
        "lapsing-0",
        &json!(0),
        Custody::held(OWNER, SHORT),
    ))
    .await
    .expect("begin after the failover");
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(
        b.expired("lapsing", 10).await.expect("expired"),
        ["lapsing-0"]
    );
    eprintln!("whole test {:?}", started.elapsed());
    drop(cluster);
}

/// With `history_limit: 0` the history is off: begin, transitions with entries, a hold with an
/// entry and an operator's request write none, and the record, its status and its listing are
/// what they are with a history.
async fn history_off_writes_no_entry(store: Arc<dyn SagaStore>) {
    let id = "no-history";
    assert_eq!(
        store.begin(record(id, &json!(1))).await.expect("begin"),
        Begin::Started
    );
    let entries = [transition(OWNER, "create_order", 1, None)];
    assert_eq!(ordered(&store, id, &entries).await, Written::Done);
    let held = hold_recording(
        &store,
        id,
        1,
        OWNER,
        Custody::held(OWNER, LONG),
        &[transition(OWNER, "create_payment", 1, Some("timeout"))],
    )
    .await;
    assert_eq!(held, Written::Done);
    let requested = store
        .request_compensation(
            id,
            HistoryEntry::now(
                "operator",
                HistoryEvent::CompensationRequested {
                    by: "test".to_string(),
                },
            ),
        )
        .await
        .expect("request compensation");
    assert_eq!(requested, Written::Done);
    assert_eq!(
        advance(&store, id, 1, OWNER, completed(json!("done"))).await,
        Written::Done
    );
    assert_eq!(store.history(id).await.expect("history"), Vec::new());
    let ended = get(&store, id).await;
    assert_eq!((ended.seq, ended.status), (2, completed(json!("done"))));
    let page = store
        .list(&ListQuery::new(StatusKind::Completed))
        .await
        .expect("list");
    assert!(
        page.sagas.iter().any(|saga| saga.trace_id == id),
        "listed as completed"
    );
}

#[tokio::test]
async fn memory_store_with_history_off_writes_no_entry() {
    let store = MemoryStore::new(StoreConfig {
        history_limit: 0,
        ..store_config()
    });
    history_off_writes_no_entry(Arc::new(store)).await;
}

#[tokio::test]
async fn redis_store_with_history_off_writes_no_entry() {
    let config = RedisConfig {
        key_prefix: unique("history-off"),
        ..RedisConfig::from(StoreConfig {
            history_limit: 0,
            ..store_config()
        })
    };
    let store = redis_store_with(config).await;
    let key = store.record_key("no-history");
    let store: Arc<dyn SagaStore> = Arc::new(store);
    history_off_writes_no_entry(Arc::clone(&store)).await;
    let mut admin = redis::Client::open(redis_url())
        .expect("valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&key)
        .query_async(&mut admin)
        .await
        .expect("HKEYS");
    assert!(
        !fields
            .iter()
            .any(|f| f == "hn" || f == "by" || f.starts_with('h') && f[1..].parse::<u64>().is_ok()),
        "no history field in the record: {fields:?}"
    );
    store.remove("no-history").await.expect("remove");
}

/// A record begun by a version that stored its `started` entry as the field `h1` (no `by`) reads
/// back the same history, and its next entries are numbered on after it.
#[tokio::test]
async fn redis_store_reads_a_started_entry_stored_as_h1() {
    let config = RedisConfig {
        key_prefix: unique("history-h1"),
        ..RedisConfig::from(store_config())
    };
    let store = redis_store_with(config).await;
    let id = "started-as-h1";
    let key = store.record_key(id);
    let store: Arc<dyn SagaStore> = Arc::new(store);
    assert_eq!(
        store.begin(record(id, &json!(1))).await.expect("begin"),
        Begin::Started
    );
    let begun = get(&store, id).await;
    let started = HistoryEntry {
        at_ms: begun.created_at_ms,
        run: OWNER.into(),
        event: HistoryEvent::Started { mode: Mode::Async },
    };
    let mut admin = redis::Client::open(redis_url())
        .expect("valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    // The earlier layout: `started` as `h1`, counted by `hn`, no `by`.
    let () = redis::pipe()
        .cmd("HDEL")
        .arg(&key)
        .arg("by")
        .ignore()
        .cmd("HSET")
        .arg(&key)
        .arg("h1")
        .arg(serde_json::to_string(&started).expect("entry as JSON"))
        .arg("hn")
        .arg("1")
        .ignore()
        .query_async(&mut admin)
        .await
        .expect("rewrite the record in the earlier layout");
    let entries = [transition(OWNER, "create_order", 1, None)];
    assert_eq!(ordered(&store, id, &entries).await, Written::Done);
    assert_eq!(
        store.history(id).await.expect("history"),
        vec![started, entries[0].clone()]
    );
    let second: Option<String> = redis::cmd("HGET")
        .arg(&key)
        .arg("h2")
        .query_async(&mut admin)
        .await
        .expect("HGET");
    assert!(second.is_some(), "the transition is numbered on after h1");
    store.remove(id).await.expect("remove");
}
