//! The Redis watcher: one pub/sub connection per store instance, multiplexing every waiting
//! request of the replica.
//!
//! Each trace id has its own channel (`{prefix}:done:{trace_id}`), so a replica only receives
//! the completions it waits for, however many replicas and sagas there are. Waiters live in
//! a map trace id -> waiters ([`Waiters`]); the channel of an id is subscribed while the id
//! has at least one waiter. SUBSCRIBE/UNSUBSCRIBE are issued by a single task that decides
//! from the live map, so a subscribe and an unsubscribe of one id can never cross; it batches
//! whatever requests are queued into one command.
//!
//! # Connection drops
//! The pub/sub connection is a RESP3 connection manager with automatic resubscription (on a
//! standalone Redis), or a RESP3 cluster connection (in a Redis Cluster), whose subscription
//! tracker re-subscribes each channel on the node that serves its slot after a reconnection
//! or a failover. Classic `PUBLISH` in a cluster reaches every node, so a subscription on any
//! node hears every completion. Completions published while it was disconnected are lost by
//! Redis pub/sub, so after a drop the watcher waits for the connection to answer again (a
//! PING through it: on a cluster, every master answers, so a failover has completed),
//! subscribes every watched channel again itself (idempotent; it does not rely on the order of
//! the client's own resubscription), and only then re-reads the record of every watched id,
//! waking those that ended meanwhile: an end is either published after that subscription or
//! written before that read.
//!
//! In a cluster (tagged keys) a channel carries its bucket's hash tag, and one `SUBSCRIBE`
//! holds the channels of one bucket, so the node the client sends it to (by the first
//! channel's slot) is the node its tracker re-subscribes all of them on. It retries that with backoff for
//! about a minute; a waiter still unresolved after a longer outage ends by its caller's
//! timeout, and the outcome remains readable in the store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ::redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot};

use super::{Conn, Keys, Shared};
use crate::store::waiters::{WaitResult, Waiters};
use crate::store::{StoreError, StoreErrorKind};

/// Most requests merged into one SUBSCRIBE/UNSUBSCRIBE round.
const MAX_BATCH: usize = 4096;
/// Attempts to re-read the watched records after a connection drop.
const RESYNC_ATTEMPTS: u32 = 20;

pub(super) enum Request {
    /// Make sure the channel of `trace_id` is subscribed (it has a waiter), then ack.
    Subscribe {
        trace_id: String,
        ack: oneshot::Sender<Result<(), StoreError>>,
    },
    /// `trace_id` lost its last waiter: unsubscribe unless a new one arrived.
    Idle(String),
    /// The connection dropped: re-read the watched records once it is back.
    Resync,
    /// Subscribe every channel subscribed so far again (after a drop), then ack.
    Resubscribe(oneshot::Sender<Result<(), StoreError>>),
}

/// What [`Watcher::prepare`] sets up before the pub/sub connection exists.
pub(super) struct Parts {
    waiters: Arc<Waiters>,
    requests: mpsc::UnboundedSender<Request>,
    rx: mpsc::UnboundedReceiver<Request>,
}

/// The handle the store keeps; dropping it stops the task and closes the connection.
#[derive(Debug)]
pub(super) struct Watcher {
    pub(super) waiters: Arc<Waiters>,
    requests: mpsc::UnboundedSender<Request>,
    subscribed: Arc<AtomicUsize>,
    pubsub: Conn,
}

impl Watcher {
    /// The waiter registry and request queue ([`Parts`]) and the push handler for the
    /// pub/sub connection; the watcher task starts with [`Watcher::start`] once the
    /// connection exists.
    pub(super) fn prepare(
        keys: Arc<Keys>,
    ) -> (
        Parts,
        impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + 'static,
    ) {
        let (requests, rx) = mpsc::unbounded_channel();
        let idle_tx = requests.downgrade();
        let waiters = Waiters::new(Some(Box::new(move |trace_id: &str| {
            if let Some(tx) = idle_tx.upgrade() {
                let _ = tx.send(Request::Idle(trace_id.to_string()));
            }
        })));
        let push_waiters = Arc::clone(&waiters);
        let push_tx = requests.downgrade();
        let on_push = move |info: PushInfo| {
            match info.kind {
                PushKind::Message => on_message(&keys, &push_waiters, info.data),
                PushKind::Disconnection => {
                    if let Some(tx) = push_tx.upgrade() {
                        let _ = tx.send(Request::Resync);
                    }
                }
                _ => {}
            }
            Ok(())
        };
        let parts = Parts {
            waiters,
            requests,
            rx,
        };
        (parts, on_push)
    }

    /// Spawns the task that owns `pubsub` and serves `requests`.
    pub(super) fn start(shared: Arc<Shared>, pubsub: Conn, parts: Parts) -> Self {
        let Parts {
            waiters,
            requests,
            rx,
        } = parts;
        let subscribed = Arc::new(AtomicUsize::new(0));
        let task = Task {
            shared,
            requests: requests.downgrade(),
            pubsub: pubsub.clone(),
            waiters: Arc::clone(&waiters),
            subscribed: HashSet::new(),
            subscribed_count: Arc::clone(&subscribed),
        };
        tokio::spawn(task.run(rx));
        Self {
            waiters,
            requests,
            subscribed,
            pubsub,
        }
    }

    /// Resolves once the channel of `trace_id` is subscribed. The caller registered a waiter
    /// for the id before, so the subscription is kept until that waiter is gone.
    pub(super) async fn subscribe(
        &self,
        shared: &Shared,
        trace_id: &str,
    ) -> Result<(), StoreError> {
        let (ack, acked) = oneshot::channel();
        let request = Request::Subscribe {
            trace_id: trace_id.to_string(),
            ack,
        };
        if self.requests.send(request).is_err() {
            return Err(shared.error(
                StoreErrorKind::Closed,
                format!("the watcher task stopped; cannot watch trace id {trace_id}"),
            ));
        }
        // The task serves requests in order and bounds each command; allow for a queue.
        let bound = shared.config.response_timeout * 2;
        match tokio::time::timeout(bound, acked).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(error))) => Err(error),
            Ok(Err(_)) => Err(shared.error(
                StoreErrorKind::Closed,
                format!("the watcher task stopped; cannot watch trace id {trace_id}"),
            )),
            Err(_) => Err(shared.error(
                StoreErrorKind::Timeout,
                format!(
                    "subscribing to the completion of trace id {trace_id} took over {bound:?}; is Redis overloaded or down?"
                ),
            )),
        }
    }

    /// The server-side id (`CLIENT ID`) of the pub/sub connection.
    pub(super) async fn connection_id(&self, shared: &Shared) -> Result<i64, StoreError> {
        let mut pubsub = self.pubsub.clone();
        let id = ::redis::cmd("CLIENT").arg("ID").to_owned();
        shared
            .bounded("CLIENT ID", "-", id.query_async(&mut pubsub))
            .await
    }

    /// Channels currently subscribed by this instance.
    pub(super) fn subscribed_count(&self) -> usize {
        self.subscribed.load(Ordering::Relaxed)
    }
}

/// A published completion: wake the id's waiters with the record's outcome.
fn on_message(keys: &Keys, waiters: &Waiters, data: Vec<Value>) {
    let mut data = data.into_iter();
    let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
        (data.next(), data.next())
    else {
        tracing::warn!("saga store (redis): ignoring a malformed pub/sub message");
        return;
    };
    let channel = String::from_utf8_lossy(&channel);
    let Some(trace_id) = keys.trace_id_of_channel(&channel) else {
        return;
    };
    let result: WaitResult = match serde_json::from_slice::<crate::store::SagaStatus>(&payload) {
        Ok(status) => match status.outcome() {
            Some(outcome) => Ok(outcome),
            None => return,
        },
        Err(error) => Err(StoreError::new(
            super::BACKEND,
            StoreErrorKind::Corrupt,
            format!(
                "corrupt completion published on channel `{channel}`; the record is in key `{}`",
                keys.record(trace_id)
            ),
        )
        .caused_by(error)),
    };
    waiters.notify(trace_id, &result);
}

struct Task {
    shared: Arc<Shared>,
    /// For the resync task to ask this one to subscribe again.
    requests: mpsc::WeakUnboundedSender<Request>,
    pubsub: Conn,
    waiters: Arc<Waiters>,
    subscribed: HashSet<String>,
    subscribed_count: Arc<AtomicUsize>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            self.serve(std::mem::take(&mut batch)).await;
        }
        // The store was dropped: nobody can publish to the remaining waiters through it.
        let error = Err(self
            .shared
            .error(StoreErrorKind::Closed, "the store was dropped".to_string()));
        for trace_id in self.waiters.watched_ids() {
            self.waiters.notify(&trace_id, &error);
        }
    }

    async fn serve(&mut self, batch: Vec<Request>) {
        let mut touched = HashSet::new();
        let mut acks = Vec::new();
        let mut resync = false;
        let mut resubscribe = Vec::new();
        for request in batch {
            match request {
                Request::Subscribe { trace_id, ack } => {
                    touched.insert(trace_id.clone());
                    acks.push((trace_id, ack));
                }
                Request::Idle(trace_id) => {
                    touched.insert(trace_id);
                }
                Request::Resync => resync = true,
                Request::Resubscribe(ack) => resubscribe.push(ack),
            }
        }
        if !resubscribe.is_empty() {
            let all = self.subscribed.clone();
            let result = self.subscribe(&all).await;
            for ack in resubscribe {
                let _ = ack.send(result.clone());
            }
        }
        // Decide from the live registry, not from the order of the requests.
        let (mut to_subscribe, mut to_unsubscribe) = (HashSet::new(), Vec::new());
        for trace_id in touched {
            let wanted = self.waiters.is_watched(&trace_id);
            let have = self.subscribed.contains(&trace_id);
            if wanted && !have {
                to_subscribe.insert(trace_id);
            } else if !wanted && have {
                to_unsubscribe.push(trace_id);
            }
        }
        if !to_unsubscribe.is_empty() {
            self.unsubscribe(to_unsubscribe).await;
        }
        let result = if to_subscribe.is_empty() {
            Ok(())
        } else {
            self.subscribe(&to_subscribe).await
        };
        self.subscribed_count
            .store(self.subscribed.len(), Ordering::Relaxed);
        for (trace_id, ack) in acks {
            let answer = if to_subscribe.contains(&trace_id) {
                result.clone()
            } else {
                Ok(())
            };
            let _ = ack.send(answer);
        }
        if resync {
            tokio::spawn(resync_watched(
                Arc::clone(&self.shared),
                self.pubsub.clone(),
                Arc::clone(&self.waiters),
                self.requests.clone(),
            ));
        }
    }

    async fn subscribe(&mut self, trace_ids: &HashSet<String>) -> Result<(), StoreError> {
        if trace_ids.is_empty() {
            return Ok(());
        }
        // One SUBSCRIBE per bucket (one slot each in a cluster), see the module docs.
        let by_bucket = self.channels_by_bucket(trace_ids);
        let timeout = self.shared.config.response_timeout;
        let pubsub = &mut self.pubsub;
        let all = async move {
            for channels in by_bucket.values() {
                pubsub.subscribe(channels).await?;
            }
            Ok::<(), ::redis::RedisError>(())
        };
        match tokio::time::timeout(timeout, all).await {
            Ok(Ok(())) => {
                self.subscribed.extend(trace_ids.iter().cloned());
                Ok(())
            }
            Ok(Err(error)) => Err(self
                .shared
                .error(
                    StoreErrorKind::Unavailable,
                    "SUBSCRIBE to completions failed".to_string(),
                )
                .caused_by(error)),
            Err(_) => Err(self.shared.error(
                StoreErrorKind::Timeout,
                format!("SUBSCRIBE to completions got no answer within {timeout:?}"),
            )),
        }
    }

    /// The completion channels of `trace_ids`, grouped by bucket (one slot each in a cluster).
    fn channels_by_bucket<'a>(
        &self,
        trace_ids: impl IntoIterator<Item = &'a String>,
    ) -> HashMap<usize, Vec<String>> {
        let keys = &self.shared.keys;
        let mut by_bucket: HashMap<usize, Vec<String>> = HashMap::new();
        for id in trace_ids {
            by_bucket
                .entry(keys.bucket(id))
                .or_default()
                .push(keys.channel(id));
        }
        by_bucket
    }

    async fn unsubscribe(&mut self, trace_ids: Vec<String>) {
        let by_bucket = self.channels_by_bucket(&trace_ids);
        let timeout = self.shared.config.response_timeout;
        // Forget them either way: a stray subscription only delivers messages nobody waits
        // for, and SUBSCRIBE is idempotent if an id is watched again.
        for trace_id in &trace_ids {
            self.subscribed.remove(trace_id);
        }
        let pubsub = &mut self.pubsub;
        let all = async move {
            for channels in by_bucket.values() {
                pubsub.unsubscribe(channels).await?;
            }
            Ok::<(), ::redis::RedisError>(())
        };
        match tokio::time::timeout(timeout, all).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "saga store (redis): UNSUBSCRIBE failed");
            }
            Err(_) => tracing::warn!("saga store (redis): UNSUBSCRIBE got no answer"),
        }
    }
}

/// After a drop: once the pub/sub connection is back (and re-subscribed), read the record of
/// every watched id and wake those that ended while the connection was down.
async fn resync_watched(
    shared: Arc<Shared>,
    mut pubsub: Conn,
    waiters: Arc<Waiters>,
    requests: mpsc::WeakUnboundedSender<Request>,
) {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=RESYNC_ATTEMPTS {
        if waiters.count() == 0 {
            return;
        }
        match resync_once(&shared, &mut pubsub, &waiters, &requests).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, attempt, "saga store (redis): re-reading watched sagas after a disconnect failed; retrying");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    tracing::error!(
        "saga store (redis): gave up re-reading watched sagas after a disconnect; waiters end by their own timeout"
    );
}

async fn resync_once(
    shared: &Shared,
    pubsub: &mut Conn,
    waiters: &Waiters,
    requests: &mpsc::WeakUnboundedSender<Request>,
) -> Result<(), StoreError> {
    let ping = ::redis::cmd("PING");
    shared
        .bounded(
            "PING the pub/sub connection",
            "-",
            ping.query_async::<Value>(pubsub),
        )
        .await?;
    // Subscribed again before the reads below (through the task, which owns the set).
    let Some(requests) = requests.upgrade() else {
        return Ok(());
    };
    let (ack, acked) = oneshot::channel();
    if requests.send(Request::Resubscribe(ack)).is_err() {
        return Ok(());
    }
    drop(requests);
    let bound = shared.config.response_timeout * 2;
    match tokio::time::timeout(bound, acked).await {
        Ok(Ok(result)) => result?,
        // The store was dropped.
        Ok(Err(_)) => return Ok(()),
        Err(_) => {
            return Err(shared.error(
                StoreErrorKind::Timeout,
                format!("subscribing again after a disconnect took over {bound:?}"),
            ));
        }
    }
    for trace_id in waiters.watched_ids() {
        let record = shared.get(&trace_id).await;
        if let Some(outcome) = record?.and_then(|record| record.status.outcome()) {
            waiters.notify(&trace_id, &Ok(outcome));
        }
    }
    Ok(())
}
