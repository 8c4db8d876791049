//! One Redis connection type for a single server or a Redis Cluster.
//!
//! Every crate talks to Redis through [`RedisConn`], so the same code runs on both:
//! each sale's keys share one hash tag (`{sale:<id>}`), every script names all its keys
//! in `KEYS`, and every pipeline stays inside one tag, so the cluster client routes each
//! call to the one node that owns the slot. Keys outside a sale (`:sweep`, `:lines`,
//! `:signals`, a reservation's index entry, a stream) are single-key commands.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// Where Redis is: one server, or the seed nodes of a cluster.
#[derive(Clone)]
pub enum RedisTarget {
    /// One server (`REDIS_URL`).
    Single(redis::Client),
    /// A Redis Cluster (`REDIS_CLUSTER_URLS`): any reachable subset of its nodes.
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// A single server at `url` when `cluster_urls` (comma-separated node URLs) is
    /// blank, else the cluster they name.
    pub fn parse(url: &str, cluster_urls: &str) -> RedisResult<Self> {
        let nodes: Vec<String> = cluster_urls
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .map(str::to_owned)
            .collect();
        if nodes.is_empty() {
            Ok(Self::Single(redis::Client::open(url)?))
        } else {
            // Validates the URLs now rather than on first use.
            ClusterClient::new(nodes.clone())?;
            Ok(Self::Cluster(nodes))
        }
    }

    /// A new connection of its own (a multiplexed one that reconnects by itself).
    /// `response_timeout` bounds every command: callers that block (`XREADGROUP
    /// BLOCK`) pass one longer than their block time.
    pub async fn connect(&self, response_timeout: Duration) -> RedisResult<RedisConn> {
        const CONNECT: Duration = Duration::from_secs(2);
        match self {
            Self::Single(client) => {
                let settings = ConnectionManagerConfig::new()
                    .set_connection_timeout(CONNECT)
                    .set_response_timeout(response_timeout);
                let conn = client.get_connection_manager_with_config(settings).await?;
                Ok(RedisConn::Single(conn))
            }
            Self::Cluster(urls) => {
                let client = ClusterClientBuilder::new(urls.clone())
                    .connection_timeout(CONNECT)
                    .response_timeout(response_timeout)
                    .build()?;
                Ok(RedisConn::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

/// A connection to one Redis server or to a cluster; cheap to clone (clones share the
/// multiplexed connections).
#[derive(Clone)]
pub enum RedisConn {
    /// One server.
    Single(ConnectionManager),
    /// A cluster: commands are routed by the slot of their keys.
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Runs `script` by EVALSHA with `keys`, then the arguments `args` adds, loading the
/// script once when Redis does not know it (NOSCRIPT: nothing ran, so the retry is
/// the only run). The call `redis::Script::invoke_async` makes, written straight into
/// one command: a `ScriptInvocation` copies every key and argument into a buffer of
/// its own and then again into the command (profiled: a share of the reserve, join and
/// poll paths' allocations).
pub async fn evalsha<T: redis::FromRedisValue>(
    conn: &mut impl ConnectionLike,
    script: &redis::Script,
    keys: &[&str],
    args: impl FnOnce(&mut Cmd),
) -> RedisResult<T> {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    args(&mut cmd);
    match cmd.query_async(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
            script.prepare_invoke().load_async(conn).await?;
            cmd.query_async(conn).await
        }
        answer => answer,
    }
}
