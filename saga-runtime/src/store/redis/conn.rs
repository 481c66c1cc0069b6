//! One connection type over a standalone Redis and a Redis Cluster, so the store and its
//! scripts are written once.
//!
//! - [`Conn::Single`]: a redis-rs [`ConnectionManager`] (multiplexed, reconnects on its own).
//! - [`Conn::Cluster`]: a redis-rs cluster connection (`cluster-async`): one multiplexed
//!   connection per node, each command routed to the master of its first key's slot (a script
//!   by its first key, so by the hash tag every key of the script shares), `MOVED`/`ASK`
//!   followed and the slot map refreshed after a failover.
//!
//! Both are cheap to clone (a handle on shared connections).
//!
//! After a master dies, the cluster client retries what was sent to it, refreshes its slot map
//! when a node is unreachable or answers `MOVED`, and so reaches the promoted replica once the
//! failover is done (`redis_cluster_follows_a_failover_to_a_master_that_stays_dead` writes
//! through that window with the dead node never coming back).

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisFuture, RedisResult, ToRedisArgs, Value};

/// A standalone or a cluster connection; see the module docs.
#[derive(Clone)]
pub(super) enum Conn {
    /// A standalone Redis.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl Conn {
    /// `SUBSCRIBE` (RESP3; the push sender given at connect time receives the messages, and
    /// both kinds subscribe again on their own after a reconnection).
    pub(super) async fn subscribe(&mut self, channels: impl ToRedisArgs) -> RedisResult<()> {
        match self {
            Conn::Single(conn) => conn.subscribe(channels).await,
            Conn::Cluster(conn) => conn.subscribe(channels).await,
        }
    }

    /// `UNSUBSCRIBE`.
    pub(super) async fn unsubscribe(&mut self, channels: impl ToRedisArgs) -> RedisResult<()> {
        match self {
            Conn::Single(conn) => conn.unsubscribe(channels).await,
            Conn::Cluster(conn) => conn.unsubscribe(channels).await,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
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
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Single(_) => "Conn::Single",
            Conn::Cluster(_) => "Conn::Cluster",
        })
    }
}
