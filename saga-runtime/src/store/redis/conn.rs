//! One connection type over a standalone Redis and a Redis Cluster, so the store and its
//! scripts are written once.
//!
//! - [`Conn::Single`]: a redis-rs [`ConnectionManager`] (multiplexed, reconnects on its own).
//! - [`Conn::Cluster`]: a redis-rs cluster connection (`cluster-async`): one multiplexed
//!   connection per node, each command routed to the master of its first key's slot (a script
//!   by its first key, so by the hash tag every key of the script shares), `MOVED`/`ASK`
//!   followed and the slot map refreshed after a failover, `SCRIPT LOAD` sent to every node.
//!
//! Both are cheap to clone (a handle on shared connections).
//!
//! # After a master dies
//! redis-rs re-reads the slot map when a node answers `MOVED`, but a command to a master that
//! died fails with an I/O error and is retried on the same address: the client would keep
//! trying the dead address after its replica took over. So after a failed command the cluster
//! connection is *nudged* ([`Conn::after_failure`]): a keyed command (`EXISTS` of one fixed key)
//! is sent to every known node by address; any live node that does not serve that key's slot
//! answers `MOVED`, which makes the client re-read the slot map from a live node (and its
//! subscription tracker re-subscribe on the new owners). Until the failover completes the map
//! read still names the dead master, so nudges repeat (at most one at a time, at most every
//! [`NUDGE_INTERVAL`]) while commands keep failing. The known nodes are the seed nodes plus
//! those `CLUSTER NODES` listed at the last nudge.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{Cmd, Pipeline, RedisFuture, RedisResult, ToRedisArgs, Value};
use std::sync::Arc;

/// The least time between two nudges of one cluster connection.
pub(super) const NUDGE_INTERVAL: Duration = Duration::from_millis(250);

/// A standalone or a cluster connection; see the module docs.
#[derive(Clone)]
pub(super) enum Conn {
    /// A standalone Redis.
    Single(ConnectionManager),
    /// A Redis Cluster, and what nudging it needs.
    Cluster(ClusterConnection, Arc<Nudge>),
}

/// The state of a cluster connection's nudges (see the module docs).
#[derive(Debug)]
pub(super) struct Nudge {
    /// `host:port` of every node known.
    nodes: Mutex<Vec<(String, u16)>>,
    /// The key whose `EXISTS` draws a `MOVED` from the nodes not serving it.
    probe_key: String,
    /// Bound on each command of a nudge.
    timeout: Duration,
    busy: AtomicBool,
    last: Mutex<Option<Instant>>,
}

impl Nudge {
    /// Nudges of a connection whose seed nodes are `seeds`, probing `probe_key`.
    pub(super) fn new(seeds: Vec<(String, u16)>, probe_key: String, timeout: Duration) -> Self {
        Self {
            nodes: Mutex::new(seeds),
            probe_key,
            timeout,
            busy: AtomicBool::new(false),
            last: Mutex::new(None),
        }
    }
}

impl Conn {
    /// After a failed command: on a cluster, starts a nudge (see the module docs) unless one
    /// runs or ran within [`NUDGE_INTERVAL`]; returns at once. Nothing on a standalone Redis.
    pub(super) fn after_failure(&self) {
        let Conn::Cluster(conn, nudge) = self else {
            return;
        };
        {
            let mut last = nudge.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < NUDGE_INTERVAL)
                || nudge.busy.swap(true, Ordering::AcqRel)
            {
                return;
            }
            *last = Some(Instant::now());
        }
        let (conn, nudge) = (conn.clone(), Arc::clone(nudge));
        tokio::spawn(async move {
            nudge_once(conn, &nudge).await;
            nudge.busy.store(false, Ordering::Release);
        });
    }

    /// `SUBSCRIBE` (RESP3; the push sender given at connect time receives the messages, and
    /// both kinds subscribe again on their own after a reconnection).
    pub(super) async fn subscribe(&mut self, channels: impl ToRedisArgs) -> RedisResult<()> {
        match self {
            Conn::Single(conn) => conn.subscribe(channels).await,
            Conn::Cluster(conn, _) => conn.subscribe(channels).await,
        }
    }

    /// `UNSUBSCRIBE`.
    pub(super) async fn unsubscribe(&mut self, channels: impl ToRedisArgs) -> RedisResult<()> {
        match self {
            Conn::Single(conn) => conn.unsubscribe(channels).await,
            Conn::Cluster(conn, _) => conn.unsubscribe(channels).await,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn, _) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn, _) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn, _) => conn.get_db(),
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Single(_) => "Conn::Single",
            Conn::Cluster(..) => "Conn::Cluster",
        })
    }
}

/// One nudge: `EXISTS probe_key` on every known node (concurrently, each bounded), then the
/// node list refreshed from the first live node's `CLUSTER NODES`.
async fn nudge_once(conn: ClusterConnection, nudge: &Nudge) {
    let nodes = nudge
        .nodes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let by_address = |(host, port): &(String, u16)| {
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.clone(),
            port: *port,
        })
    };
    let probes = nodes.iter().map(|node| {
        let mut conn = conn.clone();
        let mut exists = Cmd::new();
        exists.arg("EXISTS").arg(&nudge.probe_key);
        let routing = by_address(node);
        async move { tokio::time::timeout(nudge.timeout, conn.route_command(exists, routing)).await }
    });
    futures_util::future::join_all(probes).await;
    for node in &nodes {
        let mut conn = conn.clone();
        let mut list = Cmd::new();
        list.arg("CLUSTER").arg("NODES");
        let listed =
            tokio::time::timeout(nudge.timeout, conn.route_command(list, by_address(node)));
        if let Ok(Ok(value)) = listed.await
            && let Ok(text) = ::redis::from_redis_value::<String>(value)
        {
            let known = parse_cluster_nodes(&text);
            if !known.is_empty() {
                *nudge.nodes.lock().unwrap_or_else(|e| e.into_inner()) = known;
            }
            return;
        }
    }
}

/// `host:port` of every node a `CLUSTER NODES` reply lists (`id host:port@bus flags ...`).
fn parse_cluster_nodes(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let address = line.split_whitespace().nth(1)?;
            let address = address.split(['@', ',']).next()?;
            let (host, port) = address.rsplit_once(':')?;
            Some((host.to_string(), port.parse().ok()?))
        })
        .filter(|(host, port)| !host.is_empty() && *port != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_nodes_lists_addresses() {
        let text = "07c3 127.0.0.1:30004@31004,host-a slave e7d1 0 1426238317239 4 connected\n\
                    67ed 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922\n\
                    bad :0@0 master,noaddr - 0 0 0 disconnected\n";
        assert_eq!(
            super::parse_cluster_nodes(text),
            [
                ("127.0.0.1".to_string(), 30004),
                ("127.0.0.1".to_string(), 30002)
            ]
        );
    }
}
