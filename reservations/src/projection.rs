//! A sale's hot state in Redis: free units, holds, deadlines and counters, changed only
//! through the Lua scripts in `lua/`. Every key of a sale carries the hash tag
//! `{sale:<id>}`, so each script touches one cluster slot.
//!
//! # Stripes
//!
//! A hot sale may be split into several stripes (`FLASHSALE_STOCK_STRIPES`, default 1)
//! so that its reserves spread over several Redis Cluster nodes. Stripe 0 keeps the
//! unstriped keys (`{sale:<id>}`); stripe k ≥ 1 has the hash tag `{sale:<id>:<k>}`. Each
//! stripe is a complete sale state: a copy of the meta and its own free list, holds,
//! deadlines, per-shopper counts, idempotency keys and reserved set. Unit u belongs to
//! stripe (u − 1) mod S, and a hold lives wholly in one stripe. A shopper reserves in
//! their home stripe (a stable hash of their id) and falls back to the next stripes in
//! order only when it is sold out. Whole-sale operations (stock, load, stock changes,
//! the sweep) visit every stripe.

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
    note_elsewhere: Script,
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
            note_elsewhere: hold_script!("lua/note_elsewhere.lua"),
        }
    }
}

/// Most stripes a sale's stock may be split into.
pub const MAX_STRIPES: u32 = 64;

/// One stripe of a sale's stock: where a hold lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stripe {
    /// The sale.
    pub sale: SaleId,
    /// 0-based; stripe 0 has the keys of an unstriped sale.
    pub index: u32,
}

impl Stripe {
    /// Stripe `index` of `sale`.
    pub fn new(sale: SaleId, index: u32) -> Self {
        Self { sale, index }
    }

    /// Stripe 0: the whole sale when it is not striped.
    pub fn first(sale: SaleId) -> Self {
        Self::new(sale, 0)
    }

    /// The stripe unit `unit` (numbered from 1) belongs to when the sale has `stripes`.
    pub fn of_unit(sale: SaleId, unit: i64, stripes: u32) -> Self {
        Self::new(
            sale,
            ((unit - 1).rem_euclid(i64::from(stripes.max(1)))) as u32,
        )
    }

    /// How the reservation index writes it: the sale id alone for stripe 0 (the entry
    /// an unstriped deployment always wrote), `<sale>:<k>` otherwise.
    fn to_index_value(self) -> String {
        match self.index {
            0 => self.sale.to_string(),
            k => format!("{}:{k}", self.sale),
        }
    }

    /// Reads an index entry; an entry with only a sale id is stripe 0.
    fn parse_index_value(raw: &str) -> Option<Self> {
        let (sale, index) = match raw.split_once(':') {
            Some((sale, index)) => (sale, index.parse().ok()?),
            None => (raw, 0),
        };
        Some(Self::new(sale.parse().ok()?, index))
    }
}

/// A shopper's home stripe among `stripes`: FNV-1a of the id's 16 bytes, so every
/// process and every release agrees on it (a retried reserve meets its first answer).
pub fn home_stripe(shopper: ShopperId, stripes: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in shopper.0.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(stripes.max(1))) as u32
}

/// The Redis key names of one stripe of a sale.
#[derive(Debug, Clone)]
pub struct SaleKeys {
    keys: [String; 8],
    rebuild_lock: String,
}

impl SaleKeys {
    /// Keys of `sale` (its stripe 0) under `prefix` (tests use a unique prefix each).
    pub fn new(prefix: &str, sale: SaleId) -> Self {
        Self::of_stripe(prefix, Stripe::first(sale))
    }

    /// Keys of one stripe: stripe 0 under `{sale:<id>}`, stripe k under `{sale:<id>:<k>}`
    /// so that a cluster places the stripes in different slots.
    pub fn of_stripe(prefix: &str, stripe: Stripe) -> Self {
        let tag = match stripe.index {
            0 => format!("{prefix}:{{sale:{}}}", stripe.sale),
            k => format!("{prefix}:{{sale:{}:{k}}}", stripe.sale),
        };
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

    /// The list of free units.
    pub fn free(&self) -> &str {
        &self.keys[1]
    }

    /// The hash of units held + bought per shopper.
    pub fn users(&self) -> &str {
        &self.keys[4]
    }

    /// The sorted set of holds being checked out.
    pub fn committing(&self) -> &str {
        &self.keys[6]
    }

    /// All eight keys, for tests and the invariant checker.
    pub fn all(&self) -> &[String; 8] {
        &self.keys
    }

    /// The set of shoppers who reached the reserve step (held, or were told sold out).
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
        /// The stripe it lives in.
        stripe: u32,
        /// When it expires, in ms since the epoch.
        deadline_ms: i64,
    },
    /// The state of a stripe the reserve visited is not in Redis.
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
    /// Nothing committed and the hold can never be bought (the shopper's orders would
    /// pass the per-shopper limit): it ends and all its units are free again.
    Release,
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

/// Stock and holds of every sale, in one Redis (or one Redis Cluster).
#[derive(Clone)]
pub struct Projection {
    conn: RedisConn,
    prefix: String,
    stripes: u32,
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

/// How many of the units 1..=`unit_count` belong to stripe `index` of `stripes`.
fn stripe_unit_count(unit_count: i64, stripes: u32, index: u32) -> i64 {
    let (stripes, index) = (i64::from(stripes), i64::from(index));
    if unit_count <= index {
        0
    } else {
        (unit_count - 1 - index) / stripes + 1
    }
}

/// Splits `count` units to retire over stripes with `free` units each, one unit from
/// each stripe in turn (stripes that run out drop out), so retiring thins every stripe
/// alike. `None` when there are not that many free units in all.
fn retire_shares(free: &[i64], count: i64) -> Option<Vec<i64>> {
    if free.iter().sum::<i64>() < count {
        return None;
    }
    let mut shares = vec![0; free.len()];
    let mut left = count;
    // Whole rounds first (every stripe still holding units gives as many), then one
    // at a time: linear in the number of stripes, not in `count`.
    while left > 0 {
        let open: Vec<usize> = (0..free.len()).filter(|&i| shares[i] < free[i]).collect();
        let n = open.len() as i64;
        let round = open
            .iter()
            .map(|&i| free[i] - shares[i])
            .min()
            .unwrap_or(0)
            .min(left / n);
        if round > 0 {
            for &i in &open {
                shares[i] += round;
            }
            left -= round * n;
        } else {
            for &i in open.iter().take(left as usize) {
                shares[i] += 1;
            }
            left -= left.min(n);
        }
    }
    Some(shares)
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

fn stripe_mismatch(sale: SaleId, loaded: i64, configured: u32) -> Error {
    Error::Internal(anyhow::anyhow!(
        "sale {sale} is loaded in Redis with {loaded} stock stripe(s), but this process \
         runs with FLASHSALE_STOCK_STRIPES={configured}; every process must use the same \
         value, and it may change only while no sale's state is in Redis"
    ))
}

impl Projection {
    /// A projection on `conn`, with every key under `prefix`, sales not striped.
    pub fn new(conn: RedisConn, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            stripes: 1,
            scripts: std::sync::Arc::new(Scripts::new()),
        }
    }

    /// The same, with every sale's stock split into `stripes` (1..=[`MAX_STRIPES`]).
    pub fn with_stripes(mut self, stripes: u32) -> Self {
        assert!(
            (1..=MAX_STRIPES).contains(&stripes),
            "stripes must be 1..={MAX_STRIPES}"
        );
        self.stripes = stripes;
        self
    }

    /// How many stripes each sale's stock is split into.
    pub fn stripe_count(&self) -> u32 {
        self.stripes
    }

    /// Every stripe of a sale, in order.
    pub fn stripes(&self, sale: SaleId) -> impl Iterator<Item = Stripe> {
        (0..self.stripes).map(move |k| Stripe::new(sale, k))
    }

    /// The key names of a sale's stripe 0 (all of the sale when it is not striped).
    pub fn keys(&self, sale: SaleId) -> SaleKeys {
        SaleKeys::new(&self.prefix, sale)
    }

    /// The key names of one stripe.
    pub fn stripe_keys(&self, stripe: Stripe) -> SaleKeys {
        SaleKeys::of_stripe(&self.prefix, stripe)
    }

    /// The key names of every stripe of a sale (for tests and the checker).
    pub fn all_stripe_keys(&self, sale: SaleId) -> Vec<SaleKeys> {
        self.stripes(sale).map(|s| self.stripe_keys(s)).collect()
    }

    /// The connection (for callers that read keys directly, e.g. the checker).
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Writes the state of every stripe of a sale that is missing. `taken` is sorted
    /// unit numbers that are sold or retired; `sold` the sorted units sold; `bought` the
    /// units each shopper bought, given to every stripe (after a rebuild each stripe
    /// knows all of a shopper's orders: stricter than while running, never looser).
    /// Returns whether this call loaded any stripe.
    pub async fn load(
        &self,
        sale: &Sale,
        taken: &[i32],
        sold: &[i32],
        bought: &[(ShopperId, i64)],
    ) -> Result<bool> {
        let ranges = free_ranges(sale.unit_count, taken);
        let mut taken_per_stripe = vec![0i64; self.stripes as usize];
        let mut sold_per_stripe = vec![0i64; self.stripes as usize];
        for &unit in taken {
            taken_per_stripe[Stripe::of_unit(sale.id, unit.into(), self.stripes).index as usize] +=
                1;
        }
        for &unit in sold {
            sold_per_stripe[Stripe::of_unit(sale.id, unit.into(), self.stripes).index as usize] +=
                1;
        }
        let mut loaded = false;
        for stripe in self.stripes(sale.id) {
            let k = stripe.index as usize;
            // free + sold: a stripe's units that are not retired.
            let units = stripe_unit_count(sale.unit_count.into(), self.stripes, stripe.index);
            // One stripe: the sale's total, exactly as before striping existed.
            let total = if self.stripes == 1 {
                i64::from(sale.total)
            } else {
                units - taken_per_stripe[k] + sold_per_stripe[k]
            };
            let keys = self.stripe_keys(stripe);
            let mut call = keys.invoke(&self.scripts.load);
            for arg in meta_args(sale) {
                call.arg(arg);
            }
            call.arg(total)
                .arg(sold_per_stripe[k])
                .arg(sale.unit_count)
                .arg(sale.version)
                .arg(&ranges)
                .arg(self.stripes)
                .arg(stripe.index);
            for (shopper, units) in bought {
                call.arg(shopper.to_string()).arg(units);
            }
            match call.invoke_async::<i64>(&mut self.conn.clone()).await? {
                1 => loaded = true,
                -1 => {
                    let stored: Option<i64> = redis::cmd("HGET")
                        .arg(&keys.keys[0])
                        .arg("stripes")
                        .query_async(&mut self.conn.clone())
                        .await?;
                    return Err(stripe_mismatch(sale.id, stored.unwrap_or(1), self.stripes));
                }
                _ => {}
            }
        }
        Ok(loaded)
    }

    /// Copies a changed definition into every stripe; false when a stripe's state is
    /// missing.
    pub async fn sync_meta(&self, sale: &Sale) -> Result<bool> {
        let calls = self.stripes(sale.id).map(|stripe| async move {
            let keys = self.stripe_keys(stripe);
            let mut call = keys.invoke(&self.scripts.sync_meta);
            for arg in meta_args(sale) {
                call.arg(arg);
            }
            call.arg(sale.version);
            call.invoke_async::<i64>(&mut self.conn.clone()).await
        });
        let done = futures::future::try_join_all(calls).await?;
        Ok(done.iter().all(|&d| d == 1))
    }

    /// Frees units up to the sale's `unit_count`, each in its stripe; false when a
    /// stripe's state is missing.
    pub async fn add_units(&self, sale: &Sale) -> Result<bool> {
        let calls = self.stripes(sale.id).map(|stripe| async move {
            self.stripe_keys(stripe)
                .invoke(&self.scripts.add_units)
                .arg(sale.unit_count)
                .arg(sale.total)
                .arg(self.stripes)
                .arg(stripe.index)
                .invoke_async::<i64>(&mut self.conn.clone())
                .await
        });
        let added = futures::future::try_join_all(calls).await?;
        Ok(added.iter().all(|&n| n >= 0))
    }

    /// Takes `count` free units out of sale, all or none, from the stripes in turn.
    /// `Ok(None)` when a stripe's state is missing.
    pub async fn retire_units(&self, sale: SaleId, count: i64) -> Result<Option<Vec<i32>>> {
        if self.stripes == 1 {
            return self.retire_from(Stripe::first(sale), count).await;
        }
        // Free units move while we count them: a stripe may refuse its share; then what
        // was taken goes back and the split is made again from fresh counts.
        let mut free = Vec::new();
        for _ in 0..5 {
            free.clear();
            for stripe in self.stripes(sale) {
                match self.stripe_stock(stripe).await? {
                    Some((view, _)) => free.push(view.available),
                    None => return Ok(None),
                }
            }
            let Some(shares) = retire_shares(&free, count) else {
                break;
            };
            let mut taken = Vec::new();
            let mut refused = None;
            for (stripe, share) in self.stripes(sale).zip(shares) {
                if share == 0 {
                    continue;
                }
                match self.retire_from(stripe, share).await {
                    Ok(Some(units)) => taken.extend(units),
                    other => {
                        refused = Some(other);
                        break;
                    }
                }
            }
            let Some(refused) = refused else {
                return Ok(Some(taken));
            };
            self.unretire_units(sale, &taken).await?;
            match refused {
                Err(Error::InsufficientFreeStock { .. }) => continue,
                other => return other,
            }
        }
        Err(Error::InsufficientFreeStock {
            free: free.iter().sum(),
            asked: count,
        })
    }

    async fn retire_from(&self, stripe: Stripe, count: i64) -> Result<Option<Vec<i32>>> {
        let reply: Vec<redis::Value> = self
            .stripe_keys(stripe)
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

    /// Puts back units whose retirement Postgres did not record, each in its stripe.
    pub async fn unretire_units(&self, sale: SaleId, units: &[i32]) -> Result<()> {
        for stripe in self.stripes(sale) {
            let mine: Vec<i32> = units
                .iter()
                .copied()
                .filter(|&u| Stripe::of_unit(sale, u.into(), self.stripes) == stripe)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut call = self
                .stripe_keys(stripe)
                .invoke(&self.scripts.unretire_units);
            for unit in mine {
                call.arg(unit);
            }
            let _: i64 = call.invoke_async(&mut self.conn.clone()).await?;
        }
        Ok(())
    }

    /// Holds `quantity` units for a shopper: in their home stripe, or — only when it is
    /// sold out — in the next stripe that can serve the whole quantity, in a fixed order
    /// from home. A quantity that no single stripe can serve is sold out.
    pub async fn reserve(
        &self,
        sale: SaleId,
        now_ms: i64,
        id: ReservationId,
        shopper: ShopperId,
        quantity: i64,
        idempotency_key: Option<&str>,
    ) -> Result<ReserveOutcome> {
        let home = home_stripe(shopper, self.stripes);
        let key = idempotency_key.unwrap_or("");
        // A second round happens only when a concurrent request with the same key won
        // (see `note_elsewhere`); the next round replays its answer.
        for _round in 0..3 {
            let mut outcome = ReserveOutcome::SoldOut;
            for step in 0..self.stripes {
                let stripe = Stripe::new(sale, (home + step) % self.stripes);
                let reply = self
                    .reserve_in(stripe, now_ms, id, shopper, quantity, key, step == 0)
                    .await?;
                outcome = match reply {
                    Reply::Outcome(ReserveOutcome::SoldOut) => continue,
                    Reply::Outcome(outcome) => outcome,
                    Reply::Elsewhere(k) if k < self.stripes => {
                        match self
                            .reserve_in(
                                Stripe::new(sale, k),
                                now_ms,
                                id,
                                shopper,
                                quantity,
                                key,
                                false,
                            )
                            .await?
                        {
                            Reply::Outcome(outcome) => outcome,
                            Reply::Elsewhere(_) => ReserveOutcome::IdempotencyMismatch,
                        }
                    }
                    Reply::Elsewhere(_) => ReserveOutcome::IdempotencyMismatch,
                };
                break;
            }
            let ReserveOutcome::Held {
                id: held, stripe, ..
            } = outcome
            else {
                return Ok(outcome);
            };
            if stripe == home || held != id {
                return Ok(outcome);
            }
            // A new hold away from home: tell the home stripe, unless a concurrent
            // request with the same key already answered there.
            let noted: Vec<redis::Value> = self
                .stripe_keys(Stripe::new(sale, home))
                .invoke(&self.scripts.note_elsewhere)
                .arg(shopper.to_string())
                .arg(key)
                .arg(stripe)
                .invoke_async(&mut self.conn.clone())
                .await?;
            if text(&noted, 0) == "ok" {
                return Ok(outcome);
            }
            // Ours is brand new and unseen by anyone: it is still `held`.
            let _ = self.release(Stripe::new(sale, stripe), id, shopper).await?;
        }
        Err(Error::Internal(anyhow::anyhow!(
            "reserve with idempotency key kept losing to concurrent requests"
        )))
    }

    /// Runs the reserve script on one stripe.
    #[allow(clippy::too_many_arguments)]
    async fn reserve_in(
        &self,
        stripe: Stripe,
        now_ms: i64,
        id: ReservationId,
        shopper: ShopperId,
        quantity: i64,
        key: &str,
        home: bool,
    ) -> Result<Reply> {
        let reply: Vec<redis::Value> = self
            .stripe_keys(stripe)
            .invoke(&self.scripts.reserve)
            .arg(now_ms)
            .arg(id.to_string())
            .arg(shopper.to_string())
            .arg(quantity)
            .arg(key)
            .arg(self.stripes)
            .arg(if home { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(Reply::Outcome(match text(&reply, 0).as_str() {
            "ok" => ReserveOutcome::Held {
                id: text(&reply, 1)
                    .parse()
                    .map_err(|e| Error::Internal(anyhow::anyhow!("hold id: {e}")))?,
                stripe: stripe.index,
                deadline_ms: int(&reply, 2),
            },
            "no_state" => ReserveOutcome::NoState,
            "stripes" => return Err(stripe_mismatch(stripe.sale, int(&reply, 1), self.stripes)),
            "elsewhere" => return Ok(Reply::Elsewhere(int(&reply, 1) as u32)),
            "idem_mismatch" => ReserveOutcome::IdempotencyMismatch,
            "not_live" => ReserveOutcome::NotLive,
            "limit" => ReserveOutcome::LimitExceeded(int(&reply, 1)),
            _ => ReserveOutcome::SoldOut,
        }))
    }

    /// The shopper releases a hold. Returns the status it was in when it was not `held`.
    pub async fn release(
        &self,
        stripe: Stripe,
        id: ReservationId,
        shopper: ShopperId,
    ) -> Result<Result<(), Option<String>>> {
        let reply: Vec<redis::Value> = self
            .stripe_keys(stripe)
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
        stripe: Stripe,
        id: ReservationId,
        shopper: ShopperId,
        now_ms: i64,
        order: OrderId,
    ) -> Result<BeginCheckout> {
        let reply: Vec<redis::Value> = self
            .stripe_keys(stripe)
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
        stripe: Stripe,
        id: ReservationId,
        order: OrderId,
        finish: Finish<'_>,
    ) -> Result<()> {
        let (outcome, units): (&str, &[i32]) = match finish {
            Finish::Sold(units) => ("sold", units),
            Finish::Abort => ("abort", &[]),
            Finish::Conflict(units) => ("conflict", units),
            Finish::Release => ("release", &[]),
        };
        let mut call = self
            .stripe_keys(stripe)
            .invoke(&self.scripts.finish_checkout);
        call.arg(id.to_string()).arg(outcome).arg(order.to_string());
        for unit in units {
            call.arg(unit);
        }
        let _: Vec<redis::Value> = call.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Holds of a stripe that began checkout before `before_ms` and are still committing.
    pub async fn stale_commits(
        &self,
        stripe: Stripe,
        before_ms: i64,
    ) -> Result<Vec<(ReservationId, HoldRecord)>> {
        let keys = self.stripe_keys(stripe);
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(keys.committing())
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
            if let Some(hold) = self.hold(stripe, id).await? {
                stale.push((id, hold));
            }
        }
        Ok(stale)
    }

    /// Expires up to `batch` due holds of one stripe; returns how many, how many holds
    /// are still live in it, and when the sale ends (ms; 0 when the state is missing).
    pub async fn expire(
        &self,
        stripe: Stripe,
        now_ms: i64,
        batch: usize,
    ) -> Result<(i64, i64, i64)> {
        let reply: Vec<i64> = self
            .stripe_keys(stripe)
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

    /// The stock counters summed over every stripe, or `None` when a stripe's state is
    /// missing. Each stripe is read atomically and keeps available + held + sold = total
    /// on its own, so the sum keeps it too; it may lag a move in another stripe by the
    /// time of one read.
    pub async fn stock(&self, sale: SaleId) -> Result<Option<StockView>> {
        let reads = self.stripes(sale).map(|stripe| self.stripe_stock(stripe));
        let mut sum = StockView {
            total: 0,
            available: 0,
            held: 0,
            sold: 0,
        };
        for read in futures::future::try_join_all(reads).await? {
            let Some((view, loaded_with)) = read else {
                return Ok(None);
            };
            if loaded_with != i64::from(self.stripes) {
                return Err(stripe_mismatch(sale, loaded_with, self.stripes));
            }
            sum.total += view.total;
            sum.available += view.available;
            sum.held += view.held;
            sum.sold += view.sold;
        }
        Ok(Some(sum))
    }

    /// One stripe's counters and the stripe count its sale was loaded with.
    pub async fn stripe_stock(&self, stripe: Stripe) -> Result<Option<(StockView, i64)>> {
        let counts: Vec<i64> = self
            .stripe_keys(stripe)
            .invoke(&self.scripts.stock)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match counts[..] {
            [total, available, held, sold, stripes] => Some((
                StockView {
                    total,
                    available,
                    held,
                    sold,
                },
                stripes,
            )),
            _ => None,
        })
    }

    /// Shoppers who reached the reserve step (held at least once, or were told sold
    /// out), over every stripe (each shopper is recorded in their home stripe only, so
    /// the sets do not overlap).
    pub async fn reserved_shoppers(&self, sale: SaleId) -> Result<i64> {
        let counts = self.stripes(sale).map(|stripe| async move {
            redis::cmd("SCARD")
                .arg(self.stripe_keys(stripe).reserved_shoppers())
                .query_async::<i64>(&mut self.conn.clone())
                .await
        });
        Ok(futures::future::try_join_all(counts).await?.iter().sum())
    }

    /// A hold's record, if Redis has it.
    pub async fn hold(&self, stripe: Stripe, id: ReservationId) -> Result<Option<HoldRecord>> {
        let raw: Option<String> = redis::cmd("HGET")
            .arg(self.stripe_keys(stripe).holds())
            .arg(id.to_string())
            .query_async(&mut self.conn.clone())
            .await?;
        raw.map(|raw| {
            serde_json::from_str(&raw)
                .map_err(|e| Error::Internal(anyhow::anyhow!("hold record {id}: {e}")))
        })
        .transpose()
    }

    /// Takes the per-sale rebuild lock (one for all stripes, under stripe 0's tag) for
    /// `ttl_ms`; false when another process has it.
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

    /// Remembers where a reservation lives (its routes name only the hold).
    pub async fn index_reservation(
        &self,
        id: ReservationId,
        stripe: Stripe,
        ttl_secs: u64,
    ) -> Result<()> {
        let _: () = redis::cmd("SET")
            .arg(self.reservation_key(id))
            .arg(stripe.to_index_value())
            .arg("EX")
            .arg(ttl_secs)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The sale and stripe of a reservation, if the index knows it.
    pub async fn reservation_stripe(&self, id: ReservationId) -> Result<Option<Stripe>> {
        let raw: Option<String> = redis::cmd("GET")
            .arg(self.reservation_key(id))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(raw.and_then(|s| Stripe::parse_index_value(&s)))
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

/// What one stripe's reserve script answered.
enum Reply {
    /// An answer to give (or, for `SoldOut`, to fall back on).
    Outcome(ReserveOutcome),
    /// The first answer to this idempotency key is a hold in that stripe.
    Elsewhere(u32),
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
    use super::*;

    #[test]
    fn stripe_zero_keeps_the_unstriped_keys_and_other_stripes_get_their_own_tag() {
        let sale: SaleId = "0190f3c1-0000-7000-8000-000000000001".parse().unwrap();
        let zero = SaleKeys::of_stripe("fs", Stripe::first(sale));
        assert_eq!(zero.all(), SaleKeys::new("fs", sale).all());
        assert_eq!(zero.all()[0], format!("fs:{{sale:{sale}}}:meta"));
        let three = SaleKeys::of_stripe("fs", Stripe::new(sale, 3));
        assert_eq!(three.all()[1], format!("fs:{{sale:{sale}:3}}:free"));
    }

    #[test]
    fn units_go_to_stripe_unit_minus_one_mod_stripes() {
        let sale = SaleId::new();
        let stripes: Vec<u32> = (1..=9).map(|u| Stripe::of_unit(sale, u, 4).index).collect();
        assert_eq!(stripes, [0, 1, 2, 3, 0, 1, 2, 3, 0]);
        assert_eq!(Stripe::of_unit(sale, 7, 1).index, 0);
        // 10 units over 4 stripes: 3, 3, 2, 2.
        let counts: Vec<i64> = (0..4).map(|k| stripe_unit_count(10, 4, k)).collect();
        assert_eq!(counts, [3, 3, 2, 2]);
        assert_eq!(stripe_unit_count(2, 4, 3), 0);
    }

    #[test]
    fn the_home_stripe_is_stable_and_spreads_shoppers() {
        let shopper: ShopperId = "6f1c2a4e-8d3b-4f7a-9e21-5b0c7d9a1e34".parse().unwrap();
        // Pinned (FNV-1a 64 of the UUID's bytes, computed independently): every process
        // and every version must agree, or a retry could miss its first answer and a
        // shopper be counted twice among those who reserved.
        assert_eq!([4, 7, 64].map(|s| home_stripe(shopper, s)), [0, 6, 52]);
        assert_eq!(home_stripe(shopper, 1), 0);
        let mut per_stripe = [0; 4];
        for _ in 0..4000 {
            per_stripe[home_stripe(ShopperId::new(), 4) as usize] += 1;
        }
        assert!(
            per_stripe.iter().all(|&n| (800..1200).contains(&n)),
            "{per_stripe:?}"
        );
    }

    #[test]
    fn index_entries_name_the_stripe_and_a_bare_sale_id_is_stripe_zero() {
        let sale = SaleId::new();
        for stripe in [Stripe::first(sale), Stripe::new(sale, 5)] {
            assert_eq!(
                Stripe::parse_index_value(&stripe.to_index_value()),
                Some(stripe)
            );
        }
        assert_eq!(Stripe::first(sale).to_index_value(), sale.to_string());
        assert_eq!(Stripe::parse_index_value("nope"), None);
    }

    #[test]
    fn retiring_takes_from_the_stripes_in_turn_and_all_or_nothing() {
        assert_eq!(retire_shares(&[4, 4, 4, 4], 8), Some(vec![2, 2, 2, 2]));
        assert_eq!(retire_shares(&[4, 4, 4, 4], 6), Some(vec![2, 2, 1, 1]));
        assert_eq!(retire_shares(&[0, 5, 1, 3], 7), Some(vec![0, 3, 1, 3]));
        assert_eq!(retire_shares(&[1, 1], 3), None);
        assert_eq!(retire_shares(&[7], 7), Some(vec![7]));
    }

    #[test]
    fn free_ranges_skip_taken_units() {
        assert_eq!(free_ranges(10, &[]), "1-10");
        assert_eq!(free_ranges(10, &[1, 2, 5, 10]), "3-4,6-9");
        assert_eq!(free_ranges(3, &[1, 2, 3]), "");
    }
}
