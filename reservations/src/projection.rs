//! A sale's hot state in Redis: free units, holds, deadlines and counters, changed only
//! through the Lua scripts in `lua/`. Every key of a sale carries the hash tag
//! `{sale:<id>}`, so each script touches one cluster slot.

use crate::redis_conn::RedisConn;
use redis::Script;

use crate::ids::{OrderId, ReservationId, SaleId, ShopperId};
use crate::sales::{Sale, StockView};
use crate::{Error, Result};

macro_rules! hold_script {
    ($file:literal) => {
        Script::new(concat!(include_str!("lua/common.lua"), include_str!($file)))
    };
}

/// The scripts, loaded once; `redis::Script` calls them by SHA and reloads on `NOSCRIPT`.
struct Scripts {
    load: Script,
    sync_meta: Script,
    add_units: Script,
    retire_units: Script,
    unretire_units: Script,
    reserve: Script,
    release: Script,
    begin_checkout: Script,
    finish_checkout: Script,
    expire: Script,
    stock: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            load: hold_script!("lua/load.lua"),
            sync_meta: hold_script!("lua/sync_meta.lua"),
            add_units: hold_script!("lua/add_units.lua"),
            retire_units: hold_script!("lua/retire_units.lua"),
            unretire_units: hold_script!("lua/unretire_units.lua"),
            reserve: hold_script!("lua/reserve.lua"),
            release: hold_script!("lua/release.lua"),
            begin_checkout: hold_script!("lua/begin_checkout.lua"),
            finish_checkout: hold_script!("lua/finish_checkout.lua"),
            expire: hold_script!("lua/expire.lua"),
            stock: hold_script!("lua/stock.lua"),
        }
    }
}

/// The Redis key names of one sale.
#[derive(Debug, Clone)]
pub struct SaleKeys {
    keys: [String; 8],
    rebuild_lock: String,
}

impl SaleKeys {
    /// Keys of `sale` under `prefix` (tests use a unique prefix each).
    pub fn new(prefix: &str, sale: SaleId) -> Self {
        let tag = format!("{prefix}:{{sale:{sale}}}");
        let key = |name: &str| format!("{tag}:{name}");
        Self {
            keys: [
                key("meta"),
                key("free"),
                key("holds"),
                key("deadlines"),
                key("users"),
                key("idem"),
                key("committing"),
                key("reserved"),
            ],
            rebuild_lock: key("rebuild-lock"),
        }
    }

    fn invoke<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        invocation
    }

    /// The hash of holds (id → JSON record).
    pub fn holds(&self) -> &str {
        &self.keys[2]
    }

    /// All eight keys, for tests and the invariant checker.
    pub fn all(&self) -> &[String; 8] {
        &self.keys
    }

    /// The set of shoppers who reserved at least once.
    pub fn reserved_shoppers(&self) -> &str {
        &self.keys[7]
    }
}

/// What a reserve script call decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// The hold exists (new, or the first answer to this idempotency key).
    Held {
        /// The hold's id.
        id: ReservationId,
        /// When it expires, in ms since the epoch.
        deadline_ms: i64,
    },
    /// The sale's state is not in Redis.
    NoState,
    /// The idempotency key was used with another body.
    IdempotencyMismatch,
    /// Not between start and end, or paused/ended.
    NotLive,
    /// The per-shopper limit would be passed.
    LimitExceeded(i64),
    /// Not enough free units.
    SoldOut,
}

/// A hold as stored in Redis.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct HoldRecord {
    /// Owner.
    #[serde(rename = "o")]
    pub owner: ShopperId,
    /// Number of units.
    #[serde(rename = "q")]
    pub quantity: i64,
    /// The unit numbers.
    #[serde(rename = "u", deserialize_with = "units_or_empty")]
    pub units: Vec<i64>,
    /// Deadline, ms since the epoch.
    #[serde(rename = "d")]
    pub deadline_ms: i64,
    /// `held`, `committing`, `checked_out`, `released` or `expired`.
    #[serde(rename = "s")]
    pub status: String,
    /// The order of the checkout attempt that is (or was) committing it.
    #[serde(rename = "r", default)]
    pub order: Option<OrderId>,
}

/// What `begin_checkout` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginCheckout {
    /// The hold is now `committing` for this attempt.
    Committing {
        /// Units held.
        quantity: i64,
        /// The hold's deadline, ms.
        deadline_ms: i64,
        /// The unit numbers.
        units: Vec<i32>,
    },
    /// No such hold in Redis.
    Missing,
    /// Another shopper's hold.
    NotFound,
    /// Another checkout of this hold is in flight.
    AlreadyCommitting,
    /// Ended: the status it ended in.
    NotHeld(String),
    /// Past its deadline.
    Expired,
}

/// How a checkout ended, for `finish_checkout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish<'a> {
    /// The order committed with these units.
    Sold(&'a [i32]),
    /// Nothing committed; the hold returns to `held`.
    Abort,
    /// These units were sold to another order; the hold ends.
    Conflict(&'a [i32]),
}

/// cjson encodes an empty Lua table as `{}`, not `[]`; anything but unit numbers is a
/// corrupt record and an error, never silently dropped.
fn units_or_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    use serde::de::Error as _;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| D::Error::custom(format!("unit {v} is not a number")))
            })
            .collect(),
        serde_json::Value::Object(map) if map.is_empty() => Ok(Vec::new()),
        other => Err(D::Error::custom(format!("units: {other}"))),
    }
}

use serde::Deserialize;

/// Stock and holds of every sale, in one Redis.
#[derive(Clone)]
pub struct Projection {
    conn: RedisConn,
    prefix: String,
    scripts: std::sync::Arc<Scripts>,
}

/// Compresses sorted unit numbers to "a-b,c-d" ranges for the load script.
pub fn free_ranges(unit_count: i32, taken: &[i32]) -> String {
    let mut ranges = Vec::new();
    let mut next = 1;
    for &unit in taken {
        if unit > next {
            ranges.push(format!("{next}-{}", unit - 1));
        }
        next = next.max(unit + 1);
    }
    if next <= unit_count {
        ranges.push(format!("{next}-{unit_count}"));
    }
    ranges.join(",")
}

fn meta_args(sale: &Sale) -> [String; 5] {
    [
        sale.state.as_str().to_owned(),
        sale.starts_at.timestamp_millis().to_string(),
        sale.ends_at.timestamp_millis().to_string(),
        sale.per_user_limit.to_string(),
        (i64::from(sale.hold_ttl_seconds) * 1000).to_string(),
    ]
}

impl Projection {
    /// A projection on `conn`, with every key under `prefix`.
    pub fn new(conn: RedisConn, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            scripts: std::sync::Arc::new(Scripts::new()),
        }
    }

    /// The key names of a sale.
    pub fn keys(&self, sale: SaleId) -> SaleKeys {
        SaleKeys::new(&self.prefix, sale)
    }

    /// The connection (for callers that read keys directly, e.g. the checker).
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Writes a sale's whole state if it is missing. `taken` is sorted unit numbers that
    /// are sold or retired; `sold` the units sold. Returns whether this call loaded it.
    pub async fn load(
        &self,
        sale: &Sale,
        taken: &[i32],
        sold: i64,
        bought: &[(ShopperId, i64)],
    ) -> Result<bool> {
        let keys = self.keys(sale.id);
        let mut call = keys.invoke(&self.scripts.load);
        for arg in meta_args(sale) {
            call.arg(arg);
        }
        call.arg(sale.total)
            .arg(sold)
            .arg(sale.unit_count)
            .arg(sale.version)
            .arg(free_ranges(sale.unit_count, taken));
        for (shopper, units) in bought {
            call.arg(shopper.to_string()).arg(units);
        }
        let loaded: i64 = call.invoke_async(&mut self.conn.clone()).await?;
        Ok(loaded == 1)
    }

    /// Copies a changed definition into Redis; false when the state is missing.
    pub async fn sync_meta(&self, sale: &Sale) -> Result<bool> {
        let keys = self.keys(sale.id);
        let mut call = keys.invoke(&self.scripts.sync_meta);
        for arg in meta_args(sale) {
            call.arg(arg);
        }
        call.arg(sale.version);
        let done: i64 = call.invoke_async(&mut self.conn.clone()).await?;
        Ok(done == 1)
    }

    /// Frees units up to the sale's `unit_count`; false when the state is missing.
    pub async fn add_units(&self, sale: &Sale) -> Result<bool> {
        let keys = self.keys(sale.id);
        let added: i64 = keys
            .invoke(&self.scripts.add_units)
            .arg(sale.unit_count)
            .arg(sale.total)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(added >= 0)
    }

    /// Takes `count` free units out of sale, all or none. `Ok(None)` when the state is
    /// missing.
    pub async fn retire_units(&self, sale: SaleId, count: i64) -> Result<Option<Vec<i32>>> {
        let reply: Vec<redis::Value> = self
            .keys(sale)
            .invoke(&self.scripts.retire_units)
            .arg(count)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let tag = text(&reply, 0);
        match tag.as_str() {
            "ok" => Ok(Some(
                (1..reply.len()).map(|i| int(&reply, i) as i32).collect(),
            )),
            "insufficient" => Err(Error::InsufficientFreeStock {
                free: int(&reply, 1),
                asked: count,
            }),
            _ => Ok(None),
        }
    }

    /// Puts back units whose retirement Postgres did not record.
    pub async fn unretire_units(&self, sale: SaleId, units: &[i32]) -> Result<()> {
        let mut call = self.keys(sale).invoke(&self.scripts.unretire_units);
        for unit in units {
            call.arg(unit);
        }
        let _: i64 = call.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Runs the reserve script.
    pub async fn reserve(
        &self,
        sale: SaleId,
        now_ms: i64,
        id: ReservationId,
        shopper: ShopperId,
        quantity: i64,
        idempotency_key: Option<&str>,
    ) -> Result<ReserveOutcome> {
        let reply: Vec<redis::Value> = self
            .keys(sale)
            .invoke(&self.scripts.reserve)
            .arg(now_ms)
            .arg(id.to_string())
            .arg(shopper.to_string())
            .arg(quantity)
            .arg(idempotency_key.unwrap_or(""))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match text(&reply, 0).as_str() {
            "ok" => ReserveOutcome::Held {
                id: text(&reply, 1)
                    .parse()
                    .map_err(|e| Error::Internal(anyhow::anyhow!("hold id: {e}")))?,
                deadline_ms: int(&reply, 2),
            },
            "no_state" => ReserveOutcome::NoState,
            "idem_mismatch" => ReserveOutcome::IdempotencyMismatch,
            "not_live" => ReserveOutcome::NotLive,
            "limit" => ReserveOutcome::LimitExceeded(int(&reply, 1)),
            _ => ReserveOutcome::SoldOut,
        })
    }

    /// The shopper releases a hold. Returns the status it was in when it was not `held`.
    pub async fn release(
        &self,
        sale: SaleId,
        id: ReservationId,
        shopper: ShopperId,
    ) -> Result<Result<(), Option<String>>> {
        let reply: Vec<redis::Value> = self
            .keys(sale)
            .invoke(&self.scripts.release)
            .arg(id.to_string())
            .arg(shopper.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match text(&reply, 0).as_str() {
            "ok" => Ok(()),
            "not_held" => Err(Some(text(&reply, 1))),
            _ => Err(None),
        })
    }

    /// Moves a hold to `committing` for the checkout attempt of `order`.
    pub async fn begin_checkout(
        &self,
        sale: SaleId,
        id: ReservationId,
        shopper: ShopperId,
        now_ms: i64,
        order: OrderId,
    ) -> Result<BeginCheckout> {
        let reply: Vec<redis::Value> = self
            .keys(sale)
            .invoke(&self.scripts.begin_checkout)
            .arg(id.to_string())
            .arg(shopper.to_string())
            .arg(now_ms)
            .arg(order.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match text(&reply, 0).as_str() {
            "ok" => BeginCheckout::Committing {
                quantity: int(&reply, 1),
                deadline_ms: int(&reply, 2),
                units: (3..reply.len()).map(|i| int(&reply, i) as i32).collect(),
            },
            "not_found" => BeginCheckout::NotFound,
            "committing" => BeginCheckout::AlreadyCommitting,
            "not_held" => BeginCheckout::NotHeld(text(&reply, 1)),
            "expired" => BeginCheckout::Expired,
            _ => BeginCheckout::Missing,
        })
    }

    /// Ends a committing hold by what Postgres did.
    pub async fn finish_checkout(
        &self,
        sale: SaleId,
        id: ReservationId,
        order: OrderId,
        finish: Finish<'_>,
    ) -> Result<()> {
        let (outcome, units): (&str, &[i32]) = match finish {
            Finish::Sold(units) => ("sold", units),
            Finish::Abort => ("abort", &[]),
            Finish::Conflict(units) => ("conflict", units),
        };
        let mut call = self.keys(sale).invoke(&self.scripts.finish_checkout);
        call.arg(id.to_string()).arg(outcome).arg(order.to_string());
        for unit in units {
            call.arg(unit);
        }
        let _: Vec<redis::Value> = call.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Holds of a sale that began checkout before `before_ms` and are still committing.
    pub async fn stale_commits(
        &self,
        sale: SaleId,
        before_ms: i64,
    ) -> Result<Vec<(ReservationId, HoldRecord)>> {
        let keys = self.keys(sale);
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&keys.keys[6])
            .arg("-inf")
            .arg(before_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(100)
            .query_async(&mut self.conn.clone())
            .await?;
        let mut stale = Vec::with_capacity(ids.len());
        for raw in ids {
            let Ok(id) = raw.parse::<ReservationId>() else {
                continue;
            };
            if let Some(hold) = self.hold(sale, id).await? {
                stale.push((id, hold));
            }
        }
        Ok(stale)
    }

    /// Expires up to `batch` due holds of a sale; returns how many, how many holds are
    /// still live, and when the sale ends (ms).
    pub async fn expire(&self, sale: SaleId, now_ms: i64, batch: usize) -> Result<(i64, i64, i64)> {
        let reply: Vec<i64> = self
            .keys(sale)
            .invoke(&self.scripts.expire)
            .arg(now_ms)
            .arg(batch)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match reply[..] {
            [expired, live, ends_ms] => (expired, live, ends_ms),
            _ => (0, 0, 0),
        })
    }

    /// Stops sweeping a sale (it ended and holds nothing).
    pub async fn untrack_for_sweep(&self, sale: SaleId) -> Result<()> {
        let _: i64 = redis::cmd("SREM")
            .arg(self.sweep_set_key())
            .arg(sale.to_string())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The stock counters, or `None` when the state is missing.
    pub async fn stock(&self, sale: SaleId) -> Result<Option<StockView>> {
        let counts: Vec<i64> = self
            .keys(sale)
            .invoke(&self.scripts.stock)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match counts[..] {
            [total, available, held, sold] => Some(StockView {
                total,
                available,
                held,
                sold,
            }),
            _ => None,
        })
    }

    /// A hold's record, if Redis has it.
    pub async fn hold(&self, sale: SaleId, id: ReservationId) -> Result<Option<HoldRecord>> {
        let raw: Option<String> = redis::cmd("HGET")
            .arg(self.keys(sale).holds())
            .arg(id.to_string())
            .query_async(&mut self.conn.clone())
            .await?;
        raw.map(|raw| {
            serde_json::from_str(&raw)
                .map_err(|e| Error::Internal(anyhow::anyhow!("hold record {id}: {e}")))
        })
        .transpose()
    }

    /// Takes the per-sale rebuild lock for `ttl_ms`; false when another process has it.
    pub async fn try_lock_rebuild(&self, sale: SaleId, token: &str, ttl_ms: u64) -> Result<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(&self.keys(sale).rebuild_lock)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }

    /// Releases the rebuild lock if this process still holds it.
    pub async fn unlock_rebuild(&self, sale: SaleId, token: &str) -> Result<()> {
        const UNLOCK: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                              return redis.call('DEL', KEYS[1]) else return 0 end";
        let _: i64 = Script::new(UNLOCK)
            .key(&self.keys(sale).rebuild_lock)
            .arg(token)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Remembers which sale a reservation belongs to (its routes name only the hold).
    pub async fn index_reservation(
        &self,
        id: ReservationId,
        sale: SaleId,
        ttl_secs: u64,
    ) -> Result<()> {
        let _: () = redis::cmd("SET")
            .arg(self.reservation_key(id))
            .arg(sale.to_string())
            .arg("EX")
            .arg(ttl_secs)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The sale of a reservation, if the index knows it.
    pub async fn reservation_sale(&self, id: ReservationId) -> Result<Option<SaleId>> {
        let raw: Option<String> = redis::cmd("GET")
            .arg(self.reservation_key(id))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(raw.and_then(|s| s.parse().ok()))
    }

    fn reservation_key(&self, id: ReservationId) -> String {
        format!("{}:resv:{{{id}}}", self.prefix)
    }

    /// The set of sales the sweeper visits.
    pub fn sweep_set_key(&self) -> String {
        format!("{}:sweep", self.prefix)
    }

    /// Adds a sale to the sweeper's set.
    pub async fn track_for_sweep(&self, sale: SaleId) -> Result<()> {
        let _: i64 = redis::cmd("SADD")
            .arg(self.sweep_set_key())
            .arg(sale.to_string())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Sales the sweeper visits.
    pub async fn swept_sales(&self) -> Result<Vec<SaleId>> {
        let raw: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.sweep_set_key())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(raw.iter().filter_map(|s| s.parse().ok()).collect())
    }
}

fn text(reply: &[redis::Value], i: usize) -> String {
    reply
        .get(i)
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
        .unwrap_or_default()
}

fn int(reply: &[redis::Value], i: usize) -> i64 {
    reply
        .get(i)
        .and_then(|v| redis::from_redis_value::<i64>(v).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::free_ranges;

    #[test]
    fn free_ranges_skip_taken_units() {
        assert_eq!(free_ranges(10, &[]), "1-10");
        assert_eq!(free_ranges(10, &[1, 2, 5, 10]), "3-4,6-9");
        assert_eq!(free_ranges(3, &[1, 2, 3]), "");
    }
}
