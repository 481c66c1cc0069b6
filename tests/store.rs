//! The saga stores: the same test bodies against the memory store and the Redis store.
//!
//! Redis tests run against a real server (`SAGAFLOW_REDIS_URL`, default
//! `redis://127.0.0.1:6379`) and fail, naming Redis and the command that starts it, when it is
//! unreachable. Each test uses its own key prefix and deletes its keys at the end.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use sagaflow::SagaError;
use sagaflow::StepError;
use sagaflow::error::StuckAt;
use sagaflow::store::{
    Begin, MemoryStore, RedisConfig, RedisStore, SagaRecord, SagaStatus, SagaStore, StoreConfig,
    fingerprint,
};
use serde_json::json;

const START_REDIS: &str = "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log";
/// Bound on every wait in these tests: generous, for a loaded 2-core CI machine.
const WAIT: Duration = Duration::from_secs(30);
const FINISHED_TTL: Duration = Duration::from_secs(60);
const RUNNING_TTL: Duration = Duration::from_secs(600);

fn redis_url() -> String {
    std::env::var("SAGAFLOW_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

fn store_config() -> StoreConfig {
    StoreConfig {
        finished_ttl: FINISHED_TTL,
        running_ttl: Some(RUNNING_TTL),
    }
}

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
        admin: redis::aio::MultiplexedConnection,
        prefix: String,
    },
}

struct Fixture {
    stores: Stores,
}

async fn redis_store(prefix: &str) -> RedisStore {
    let config = RedisConfig {
        key_prefix: prefix.to_string(),
        ..RedisConfig::from(store_config())
    };
    match RedisStore::connect(&redis_url(), config).await {
        Ok(store) => store,
        Err(error) => panic!(
            "Redis is unreachable at {} ({error}). Start it with: {START_REDIS}",
            redis_url()
        ),
    }
}

impl Fixture {
    fn memory() -> Self {
        Self {
            stores: Stores::Memory(Arc::new(MemoryStore::new(store_config()))),
        }
    }

    async fn redis(name: &str) -> Self {
        let prefix = unique(name);
        let a = Arc::new(redis_store(&prefix).await);
        let b = Arc::new(redis_store(&prefix).await);
        let admin = redis::Client::open(redis_url())
            .expect("valid Redis URL")
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("Redis is unreachable ({e}). Start it with: {START_REDIS}"));
        Self {
            stores: Stores::Redis {
                a,
                b,
                admin,
                prefix,
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
            mut admin, prefix, ..
        } = self.stores
        {
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

fn record(trace_id: &str, input: &serde_json::Value) -> SagaRecord {
    let input = serde_json::to_vec(input).expect("json");
    SagaRecord::new(
        trace_id,
        "booking",
        fingerprint("booking", &input),
        "create_order",
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

fn compensated(trace_id: &str) -> SagaError {
    SagaError::Compensated {
        saga: "booking".into(),
        trace_id: trace_id.into(),
        step: "create_payment".into(),
        error: StepError::fatal("card declined"),
    }
}

/// Runs one async test body against the memory store and against Redis.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
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
        }
    )*};
}

both_backends!(
    begin_is_idempotent,
    concurrent_begins_start_once,
    update_tracks_the_lifecycle,
    update_of_a_failed_saga,
    update_without_record_fails,
    a_final_record_is_never_reopened,
    watch_resolves_when_completed_later,
    watch_resolves_at_once_when_final,
    watch_reports_a_failure,
    many_watchers_all_resolve,
    dropped_watch_leaves_no_entry,
);

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
            assert_eq!(existing.saga, "booking");
            assert_eq!(existing.status, running(0, "create_order"));
        }
        other => panic!("same input must find the existing saga, got {other:?}"),
    }
    // From the other replica too.
    assert!(matches!(
        fx.b().begin(record("t1", &input)).await.expect("begin"),
        Begin::Existing(_)
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

async fn update_tracks_the_lifecycle(fx: &Fixture) {
    let (a, b) = (fx.a(), fx.b());
    let mut first = record("life", &json!({"user": 3}));
    // Stamped in the past, so the update's timestamp visibly moves without sleeping.
    first.created_at_ms -= 10_000;
    first.updated_at_ms -= 10_000;
    let created_at = first.created_at_ms;
    assert_eq!(a.begin(first).await.expect("begin"), Begin::Started);
    if let Some(ttl) = fx.pttl("life").await {
        assert!(
            ttl > FINISHED_TTL.as_millis() as i64,
            "running TTL, got {ttl}"
        );
    }

    a.update("life", running(1, "create_payment"), 2)
        .await
        .expect("update");
    let got = b.get("life").await.expect("get").expect("record");
    assert_eq!(got.status, running(1, "create_payment"));
    assert_eq!(got.attempts, 2);
    assert_eq!(got.created_at_ms, created_at);
    assert!(got.updated_at_ms > created_at, "updated_at must move");
    if let Some(ttl) = fx.pttl("life").await {
        assert!(
            ttl > FINISHED_TTL.as_millis() as i64 && ttl <= RUNNING_TTL.as_millis() as i64,
            "running safety TTL, got {ttl}"
        );
    }

    a.update(
        "life",
        SagaStatus::Compensating {
            step: 0,
            name: "create_order".into(),
        },
        1,
    )
    .await
    .expect("update");
    let got = b.get("life").await.expect("get").expect("record");
    assert!(matches!(
        got.status,
        SagaStatus::Compensating { step: 0, .. }
    ));
    assert_eq!(got.attempts, 1);

    a.update("life", completed(json!({"order": 42})), 0)
        .await
        .expect("update");
    let got = b.get("life").await.expect("get").expect("record");
    assert_eq!(got.status, completed(json!({"order": 42})));
    assert_eq!(got.status.outcome(), Some(Ok(json!({"order": 42}))));
    if let Some(ttl) = fx.pttl("life").await {
        assert!(
            ttl > 0 && ttl <= FINISHED_TTL.as_millis() as i64,
            "finished TTL applied, got {ttl}"
        );
    }

    a.remove("life").await.expect("remove");
    assert_eq!(b.get("life").await.expect("get"), None);
}

async fn update_of_a_failed_saga(fx: &Fixture) {
    let a = fx.a();
    for (id, error) in [
        ("compensated", compensated("compensated")),
        (
            "stuck",
            SagaError::Stuck {
                saga: "booking".into(),
                trace_id: "stuck".into(),
                stuck: StuckAt::Compensation("create_order".into()),
                attempts: 5,
                last_error: StepError::retryable("order service unavailable"),
                failed_step: Some(("create_payment".into(), StepError::fatal("declined"))),
            },
        ),
    ] {
        a.begin(record(id, &json!(id))).await.expect("begin");
        a.update(
            id,
            SagaStatus::Failed {
                error: error.clone(),
            },
            5,
        )
        .await
        .expect("update");
        let got = fx.b().get(id).await.expect("get").expect("record");
        assert_eq!(got.status.outcome(), Some(Err(error)));
        assert_eq!(got.attempts, 5);
        if let Some(ttl) = fx.pttl(id).await {
            assert!(
                ttl > 0 && ttl <= FINISHED_TTL.as_millis() as i64,
                "got {ttl}"
            );
        }
    }
}

async fn update_without_record_fails(fx: &Fixture) {
    let error = fx
        .a()
        .update("never-begun", running(1, "x"), 1)
        .await
        .expect_err("no record");
    assert!(error.message.contains("never-begun"), "{error}");
    assert_eq!(fx.a().get("never-begun").await.expect("get"), None);
}

async fn a_final_record_is_never_reopened(fx: &Fixture) {
    let input = serde_json::json!({"late": true});
    fx.a().begin(record("late", &input)).await.expect("begin");
    fx.a()
        .update("late", completed(serde_json::json!({"done": 1})), 1)
        .await
        .expect("complete");
    // A late or duplicate delivery on another replica tries to move it back.
    fx.b()
        .update("late", running(1, "second"), 2)
        .await
        .expect("a late update is accepted and ignored");
    fx.b()
        .update(
            "late",
            SagaStatus::Failed {
                error: compensated("late"),
            },
            3,
        )
        .await
        .expect("a late final update is accepted and ignored");
    let stored = fx.a().get("late").await.expect("get").expect("record");
    assert_eq!(stored.status, completed(serde_json::json!({"done": 1})));
    assert_eq!(stored.attempts, 1);
}

async fn watch_resolves_when_completed_later(fx: &Fixture) {
    let (a, b) = (fx.a(), fx.b());
    a.begin(record("later", &json!(1))).await.expect("begin");
    let watch = tokio::spawn(async move { b.watch("later").await });
    fx.until_b_watches(1, 1).await;
    a.update("later", running(1, "create_payment"), 1)
        .await
        .expect("update");
    a.update("later", completed(json!("done")), 1)
        .await
        .expect("update");
    let outcome = bounded("watch", watch).await.expect("task").expect("watch");
    assert_eq!(outcome, Ok(json!("done")));
    assert_eq!(fx.b_watchers(), 0);
}

async fn watch_resolves_at_once_when_final(fx: &Fixture) {
    let a = fx.a();
    a.begin(record("final", &json!(1))).await.expect("begin");
    a.update("final", completed(json!([1, 2])), 1)
        .await
        .expect("update");
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
    a.update(
        "fails",
        SagaStatus::Failed {
            error: error.clone(),
        },
        1,
    )
    .await
    .expect("update");
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

    if let Stores::Redis { b, admin, .. } = &fx.stores {
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
        a.update(id, completed(json!(i)), 1).await.expect("update");
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
    if let Stores::Redis { b, admin, .. } = &fx.stores {
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

#[tokio::test]
async fn memory_store_expires_finished_records() {
    let store = MemoryStore::new(StoreConfig {
        finished_ttl: Duration::ZERO,
        running_ttl: None,
    });
    store.begin(record("ttl", &json!(1))).await.expect("begin");
    store
        .update("ttl", running(1, "create_payment"), 1)
        .await
        .expect("update");
    assert!(
        store.get("ttl").await.expect("get").is_some(),
        "running records stay"
    );
    store
        .update("ttl", completed(json!(null)), 1)
        .await
        .expect("update");
    assert_eq!(
        store.get("ttl").await.expect("get"),
        None,
        "expired at once"
    );
    // The id is free again once its record expired.
    assert_eq!(
        store.begin(record("ttl", &json!(2))).await.expect("begin"),
        Begin::Started
    );
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
    assert!(error.message.contains("127.0.0.1:1"), "{error}");
    assert!(error.message.contains("Redis"), "{error}");
}

#[tokio::test]
async fn redis_bad_url_is_refused() {
    let error = bounded(
        "connect with a bad URL",
        RedisStore::connect("http://secret@nowhere", RedisConfig::default()),
    )
    .await
    .expect_err("not a Redis URL");
    assert!(error.message.contains("invalid Redis URL"), "{error}");
    assert!(
        !error.message.contains("secret"),
        "password leaked: {error}"
    );
}

#[tokio::test]
async fn redis_corrupt_record_names_the_key() {
    let fx = Fixture::redis("corrupt").await;
    let Stores::Redis { a, admin, .. } = &fx.stores else {
        unreachable!()
    };
    let key = a.record_key("bad");
    let mut admin = admin.clone();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("{not json")
        .query_async(&mut admin)
        .await
        .expect("SET");
    let error = a.get("bad").await.expect_err("corrupt");
    assert!(error.message.contains(&key), "{error}");
    let error = a
        .begin(record("bad", &json!(1)))
        .await
        .expect_err("corrupt");
    assert!(error.message.contains(&key), "{error}");
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_watcher_survives_a_killed_pubsub_connection() {
    let fx = Fixture::redis("killed").await;
    let Stores::Redis { a, b, admin, .. } = &fx.stores else {
        unreachable!()
    };
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
    a.update("before", completed(json!("b")), 1)
        .await
        .expect("update");
    let outcome = bounded("watch across a reconnect", before).await;
    assert_eq!(outcome.expect("task").expect("watch"), Ok(json!("b")));

    // Once reconnected the subscriptions are back: a later completion is delivered.
    let new_id = bounded("CLIENT ID after reconnect", b.watch_connection_id())
        .await
        .expect("CLIENT ID");
    assert_ne!(new_id, id, "a new pub/sub connection");
    a.update("after", completed(json!("a")), 1)
        .await
        .expect("update");
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
    let store = RedisStore::connect(&url, config).await.unwrap_or_else(|e| {
        panic!("Redis unreachable through the proxy ({e}). Start it with: {START_REDIS}")
    });
    store.begin(record("gone", &json!(1))).await.expect("begin");
    proxy.stop();

    let address = proxy.addr.to_string();
    let error = bounded("get after Redis went away", store.get("gone"))
        .await
        .expect_err("Redis is gone");
    assert!(error.message.contains(&address), "{error}");
    let error = bounded(
        "begin after Redis went away",
        store.begin(record("gone-2", &json!(2))),
    )
    .await
    .expect_err("Redis is gone");
    assert!(error.message.contains(&address), "{error}");
    let error = bounded("watch after Redis went away", store.watch("gone"))
        .await
        .expect_err("Redis is gone");
    assert!(error.message.contains(&address), "{error}");
    assert_eq!(store.watcher_count(), 0);

    // The record written through the proxy, removed directly.
    let mut admin = redis::Client::open(redis_url())
        .expect("valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{prefix}:saga:gone"))
        .query_async(&mut admin)
        .await
        .expect("DEL");
}
