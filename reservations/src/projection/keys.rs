//! Where a sale's hot state lives: the stripes of a sale, which stripe owns a unit or a
//! shopper, and the Redis key names of each stripe. Pure functions, no I/O, so every
//! process (and every release) computes the same answers.

use redis::Script;

use crate::ids::{SaleId, ShopperId};

/// Most stripes a sale's stock may be split into.
pub const MAX_STRIPES: u32 = 64;

// A reservation id names its stripe in one byte (see `crate::ids`).
const _: () = assert!(MAX_STRIPES <= 256);

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

    /// How the legacy reservation index wrote it: the sale id alone for stripe 0 (the
    /// entry an unstriped deployment always wrote), `<sale>:<k>` otherwise. Nothing
    /// writes the index any more (a reservation id names its stripe); this stays for the
    /// test of [`Self::parse_index_value`].
    #[cfg(test)]
    pub(crate) fn to_index_value(self) -> String {
        match self.index {
            0 => self.sale.to_string(),
            k => format!("{}:{k}", self.sale),
        }
    }

    /// Reads a legacy index entry (written by processes before reservation ids named
    /// their stripe; remove with `Projection::legacy_index_stripe`); an entry with only
    /// a sale id is stripe 0.
    pub(crate) fn parse_index_value(raw: &str) -> Option<Self> {
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

/// How many of the units 1..=`unit_count` belong to stripe `index` of `stripes`.
pub(crate) fn stripe_unit_count(unit_count: i64, stripes: u32, index: u32) -> i64 {
    let (stripes, index) = (i64::from(stripes), i64::from(index));
    if unit_count <= index {
        0
    } else {
        (unit_count - 1 - index) / stripes + 1
    }
}

/// The Redis key names of one stripe of a sale.
#[derive(Debug, Clone)]
pub struct SaleKeys {
    keys: [String; 8],
    /// Free lists of variants 1..n-1 of a multi-variant sale (empty otherwise), passed
    /// after the eight as KEYS 9.. (see `lua/common.lua`).
    variant_free: Vec<String>,
    tag: String,
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
            variant_free: Vec::new(),
            tag,
        }
    }

    /// The same keys with the free lists of a sale with `variants` variants (variant
    /// 0's list is the stripe's `free`; variant k's is `free:<k>`, same hash tag).
    pub fn with_variants(mut self, variants: u32) -> Self {
        self.variant_free = (1..variants)
            .map(|k| format!("{}:free:{k}", self.tag))
            .collect();
        self
    }

    /// The free list of variant `ordinal` (0: the stripe's `free`).
    pub fn variant_free(&self, ordinal: u32) -> &str {
        match ordinal {
            0 => self.free(),
            k => &self.variant_free[k as usize - 1],
        }
    }

    /// A call of `script` with the eight keys every hold script takes, in the order
    /// `lua/common.lua` names them.
    pub(crate) fn invoke<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        for key in self.keys.iter().chain(&self.variant_free) {
            invocation.key(key);
        }
        invocation
    }

    /// Runs `script` by EVALSHA with the eight keys (and the variants' free lists),
    /// then the arguments `args` adds ([`crate::redis_conn::evalsha`]).
    pub(crate) async fn evalsha<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        conn: &mut impl redis::aio::ConnectionLike,
        args: impl FnOnce(&mut redis::Cmd),
    ) -> redis::RedisResult<T> {
        let keys: Vec<&str> = self
            .keys
            .iter()
            .chain(&self.variant_free)
            .map(String::as_str)
            .collect();
        crate::redis_conn::evalsha(conn, script, &keys, args).await
    }

    /// The hash of the stripe's meta (state, times, counters).
    pub(crate) fn meta(&self) -> &str {
        &self.keys[0]
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

    /// The per-sale rebuild lock (meaningful on stripe 0 only: one lock for the sale).
    pub(crate) fn rebuild_lock(&self) -> &str {
        &self.rebuild_lock
    }
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
}
