//! Which Redis a process talks to: its incarnation. A Redis that restarted (even from
//! its own AOF, which may lack its last second) has a new `run_id` (INFO server); a
//! replica promoted by a failover has a new `master_replid` (INFO replication) and is
//! another process, so another `run_id` too. In a cluster every master is read, and the
//! incarnation of the deployment is all of them together: when any master changes,
//! the incarnation changes.
//!
//! Reading it is two INFO calls per master, made by the watcher once a second
//! (`service::reconcile`); nothing on a request's path reads it.

use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::Value;

use crate::redis_conn::RedisConn;
use crate::{Error, Result};

/// One master's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeIdentity {
    /// The node's address as the client names it (empty for a single server).
    pub node: String,
    /// `run_id` of INFO server: new on every start of the process.
    pub run_id: String,
    /// `master_replid` of INFO replication: new when a replica becomes a master.
    pub master_replid: String,
}

/// The identity of every master the process talks to, sorted by node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incarnation {
    nodes: Vec<NodeIdentity>,
}

impl Incarnation {
    /// The identities it is made of.
    pub fn nodes(&self) -> &[NodeIdentity] {
        &self.nodes
    }

    /// A short stable name (FNV-1a 64 of every node's identity), written in each
    /// reconciled sale's marker.
    pub fn id(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for node in &self.nodes {
            for part in [&node.node, &node.run_id, &node.master_replid] {
                for byte in part.bytes().chain(std::iter::once(0)) {
                    hash ^= u64::from(byte);
                    hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
                }
            }
        }
        format!("{hash:016x}")
    }

    /// The masters whose identity differs from `before` (new, changed or gone).
    pub fn changed_since(&self, before: &Incarnation) -> Vec<String> {
        let mut changed: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| !before.nodes.contains(n))
            .chain(before.nodes.iter().filter(|n| !self.nodes.contains(n)))
            .map(|n| n.node.clone())
            .collect();
        changed.sort();
        changed.dedup();
        changed
    }
}

/// Reads the incarnation of the Redis (or of every master of the cluster) behind `conn`.
pub async fn read(conn: &RedisConn) -> Result<Incarnation> {
    let mut nodes = match conn {
        RedisConn::Single(_) => {
            let server = info(conn.clone(), "server").await?;
            let replication = info(conn.clone(), "replication").await?;
            vec![identity(String::new(), &server, &replication)?]
        }
        RedisConn::Cluster(cluster) => {
            let routing = || RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            let server = per_node(
                cluster
                    .clone()
                    .route_command(redis::cmd("INFO").arg("server"), routing())
                    .await?,
            )?;
            let replication = per_node(
                cluster
                    .clone()
                    .route_command(redis::cmd("INFO").arg("replication"), routing())
                    .await?,
            )?;
            let mut nodes = Vec::with_capacity(server.len());
            for (node, server) in server {
                let replication = replication
                    .iter()
                    .find(|(n, _)| *n == node)
                    .map(|(_, text)| text.as_str())
                    .unwrap_or("");
                nodes.push(identity(node, &server, replication)?);
            }
            nodes
        }
    };
    nodes.sort();
    Ok(Incarnation { nodes })
}

async fn info(mut conn: RedisConn, section: &str) -> Result<String> {
    Ok(redis::cmd("INFO")
        .arg(section)
        .query_async(&mut conn)
        .await?)
}

/// A multi-node reply: node address → that node's answer.
fn per_node(reply: Value) -> Result<Vec<(String, String)>> {
    let Value::Map(pairs) = reply else {
        return Err(Error::Internal(anyhow::anyhow!(
            "INFO to every master answered {reply:?}"
        )));
    };
    pairs
        .into_iter()
        .map(|(node, text)| {
            Ok((
                redis::from_redis_value::<String>(&node)?,
                redis::from_redis_value::<String>(&text)?,
            ))
        })
        .collect()
}

fn identity(node: String, server: &str, replication: &str) -> Result<NodeIdentity> {
    let run_id = field(server, "run_id")
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("INFO server of {node:?} has no run_id")))?;
    Ok(NodeIdentity {
        node,
        run_id,
        // Absent on servers that do not report it: the run id alone then decides.
        master_replid: field(replication, "master_replid").unwrap_or_default(),
    })
}

/// `name:value` of an INFO answer.
fn field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (key, value) = line.trim_end().split_once(':')?;
        (key == name).then(|| value.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, run: &str, repl: &str) -> NodeIdentity {
        NodeIdentity {
            node: name.into(),
            run_id: run.into(),
            master_replid: repl.into(),
        }
    }

    #[test]
    fn info_fields_are_read_by_name() {
        let server = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\ntcp_port:6379\r\n";
        assert_eq!(field(server, "run_id").as_deref(), Some("abc123"));
        assert_eq!(field(server, "run"), None);
        let id = identity("n".into(), server, "master_replid:r1\r\n").unwrap();
        assert_eq!(id, node("n", "abc123", "r1"));
        assert!(identity("n".into(), "# Server\r\n", "").is_err());
    }

    #[test]
    fn the_incarnation_id_is_pinned_for_the_chaos_runner() {
        // loadtests/lib/rollback.py computes the same id from INFO to see that a sale
        // is reconciled for the Redis that came back: both must agree.
        let single = Incarnation {
            nodes: vec![node("", "abc123", "r1")],
        };
        assert_eq!(single.id(), "addddc8d67b8da9c");
    }

    #[test]
    fn a_new_run_id_or_replication_id_is_a_new_incarnation() {
        let before = Incarnation {
            nodes: vec![node("a", "r1", "x"), node("b", "r2", "y")],
        };
        let same = before.clone();
        assert_eq!(before.id(), same.id());
        assert!(same.changed_since(&before).is_empty());
        let restarted = Incarnation {
            nodes: vec![node("a", "r9", "x"), node("b", "r2", "y")],
        };
        assert_ne!(restarted.id(), before.id());
        assert_eq!(restarted.changed_since(&before), ["a"]);
        let promoted = Incarnation {
            nodes: vec![node("a", "r1", "x"), node("b", "r2", "z")],
        };
        assert_ne!(promoted.id(), before.id());
        assert_eq!(promoted.changed_since(&before), ["b"]);
    }
}
