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
//! the sweep) visit every stripe. A cart of a multi-variant sale lives in one stripe
//! too, tried in the same order (see `variants`).
//!
//! # Layout
//!
//! - [`keys`]: stripes, the home stripe, the key names of a stripe.
//! - `scripts`: the script registry and one typed reply per script.
//! - `holds`: reserve, release, the checkout handshake, where a reservation lives.
//! - `directory`: sale ordinal ↔ sale id (reservation ids carry the ordinal), cached
//!   from Postgres.
//! - `stock`: loading from Postgres, unit changes, stock reads, the rebuild lock.
//! - `sweep`: the sweeper's set of sales and hold expiry.
//! - `reconcile`: making a stripe agree with Postgres after Redis came back older.
//! - `returns`: a cancelled or refunded order's units leave `sold`.
//! - `variants`: a multi-variant sale's keys and counters, the cart reserve, per-variant
//!   stock (its `//!` docs hold the decisions: one state per stripe, one free list per
//!   variant, a cart in one stripe).

mod directory;
mod holds;
pub mod keys;
mod reconcile;
mod returns;
mod scripts;
mod stock;
mod sweep;
mod variants;

use crate::ids::SaleId;
use crate::redis_conn::RedisConn;
use crate::Error;

pub use holds::{Ask, Finish, HoldLine, HoldRecord, Release, ReserveOutcome};
pub use keys::{home_stripe, SaleKeys, Stripe, MAX_STRIPES};
pub use reconcile::{StripeReconciled, StripeRecord};
pub use returns::Returned;
pub use scripts::{BeginCheckout, Purge};
pub use stock::free_ranges;

/// Stock and holds of every sale, in one Redis (or one Redis Cluster).
#[derive(Clone)]
pub struct Projection {
    conn: RedisConn,
    prefix: String,
    stripes: u32,
    scripts: std::sync::Arc<scripts::Scripts>,
    directory: directory::SaleDirectory,
    variant_counts: variants::VariantCounts,
}

/// A sale loaded with another stripe count than this process runs with: never guessed
/// around, because units would be looked for in the wrong stripes.
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
            scripts: std::sync::Arc::new(scripts::Scripts::new()),
            directory: directory::SaleDirectory::default(),
            variant_counts: variants::VariantCounts::default(),
        }
    }

    /// The same, reading sale ordinals from `pool` (the `sales` table): needed to mint
    /// reservation ids and to locate holds by them. Without it the projection locates
    /// holds only through the legacy index (enough for the checker and script tests).
    pub fn with_postgres(mut self, pool: sqlx::PgPool) -> Self {
        self.directory = directory::SaleDirectory::postgres(pool);
        self
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
}
