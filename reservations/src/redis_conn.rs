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
