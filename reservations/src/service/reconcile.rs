//! When Redis comes back older: noticing it, and reconciling every live sale from
//! Postgres.
//!
//! # What is detected, and how
//!
//! With `appendfsync everysec` a crash loses up to a second of acknowledged writes; a
//! failover to an asynchronous replica loses what it had not received. Redis then
//! comes back *older*, not empty, and nothing else would notice (the full rebuild
//! happens only when a sale's `meta` is missing). Each process runs a
//! [`RedisWatcher`]: once a second it reads the incarnation of the Redis it talks to
//! ([`crate::redis_identity`]: `run_id` of every master, new on every restart, and
//! `master_replid`, new when a replica is promoted; in a cluster every master is
//! read). A change is counted in `flashsale_redis_incarnation_changes_total` and
//! logged at WARN. While Redis does not answer, the watcher looks every 50 ms, so a
//! restart is noticed within about 50 ms of Redis answering again (a failover without
//! downtime, within a second).
//!
//! # What is reconciled
//!
//! On a new incarnation (and at the first look after the process starts, since it
//! cannot know what happened before), every sale that ends after now minus the
//! longest hold is reconciled, unless its marker already names this incarnation.
//! Once across all processes: the reconciler holds the sale's rebuild lock (the same
//! lock as the full rebuild, so the two never interleave), checks the marker again,
//! reads Postgres in one REPEATABLE READ snapshot ([`crate::store::SaleRecord`]), runs
//! `lua/reconcile.lua` on every stripe whose state is present, and then writes the
//! marker; a process that arrives later finds the marker and skips the sale. A stripe
//! whose state is missing is left to the full rebuild, which still loads empty Redis
//! on demand. A sale that disagreed with Postgres is counted in
//! `flashsale_redis_sales_reconciled_total` and logged at WARN with what changed.
//! After it, in every stripe:
//!
//! - units Postgres sold or retired are neither free nor in a live hold;
//! - a hold whose reservation has an order in Postgres is `checked_out`;
//! - a live hold Postgres contradicts (a unit sold to another order or retired) has
//!   ended `expired`; a hold Redis lost stays lost (checkout answers 410);
//! - every shopper's count = the units of their orders in Postgres + their live holds;
//! - `sold` = Postgres' units sold, and `available + held + sold = total`;
//! - the definition (state, times, limit, TTL) is Postgres' unless Redis has a newer
//!   version.
//!
//! Postgres is read before the script runs, so the script also trusts what Redis did
//! after that read (a hold checked out meanwhile is sold and counted; holds taken or
//! released meanwhile stay as they are): the script is right whatever ran in between.
//! One gap: a merchant's stock retirement that takes units from Redis between the
//! read and the script is undone in Redis (the units become free again while Postgres
//! records them retired); such a unit, if sold, is refused by nothing. Retiring stock
//! while Redis is being reconciled is rare and the window is one script long.
//!
//! # What a shopper sees meanwhile
//!
//! No fence of its own: each stripe is reconciled by one script, and Redis runs one
//! script at a time, so a request waits at most for that script (milliseconds for a
//! sale of thousands of units; about a second per stripe of a million) and never sees
//! a half-reconciled stripe. A 503 fence would add nothing the script does not
//! already give, and it would need a check on every request. Before the watcher
//! notices (about 50 ms after a restart, up to a second after a failover without
//! downtime), requests are served from the older state: a unit handed out twice is
//! still refused by Postgres' `order_units` key (the shopper gets 409
//! `unit_unavailable`, nothing is charged); a shopper of an unstriped sale whose
//! count rolled back could buy past the limit in that moment, because only striped
//! sales check the limit in the order transaction.
//!
//! # The cost
//!
//! Nothing on a request's path: no command is added to reserve or checkout (a test
//! counts them with INFO commandstats). The watcher sends two INFO per master per
//! second per process. Reconciling reads a sale's orders once per incarnation per
//! sale, and its script reads every hold record of the stripe once.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::Mutex;

use super::Sales;
use crate::ids::{ReservationId, SaleId, ShopperId};
use crate::projection::{free_ranges, Stripe, StripeReconciled, StripeRecord};
use crate::redis_identity::{self, Incarnation};
use crate::sales::limits;
use crate::sales::variant_of_unit;
use crate::{Error, Result};

/// How long one reconciliation may hold the per-sale lock (the rebuild's lock).
const RECONCILE_LOCK_MS: u64 = 10_000;

/// How often a watcher looks at the Redis identity.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// How soon a watcher looks again while Redis does not answer.
const RETRY_WHILE_DOWN: Duration = Duration::from_millis(50);

/// Watches the incarnation of the Redis this process talks to and reconciles the
/// live sales when it changes. One per process; [`RedisWatcher::tick`] is called
/// every [`WATCH_INTERVAL`].
pub struct RedisWatcher {
    sales: Sales,
    /// The incarnation last seen and the one whose sales are all reconciled.
    state: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    noticed: Option<Incarnation>,
    reconciled: Option<Incarnation>,
}

impl RedisWatcher {
    /// A watcher over the sales' Redis.
    pub fn new(sales: Sales) -> Self {
        Self {
            sales,
            state: Mutex::new(Seen::default()),
        }
    }

    /// One look: reads the incarnation; when it is not the one whose sales were
    /// reconciled (a change, or the first look), reconciles every live sale not yet
    /// reconciled for it. Returns whether the incarnation changed since the last look.
    /// A failure leaves it to the next tick.
    pub async fn tick(&self) -> Result<bool> {
        let now = self.read_soon().await?;
        let mut seen = self.state.lock().await;
        let changed = match &seen.noticed {
            Some(before) if *before != now => {
                let nodes = now.changed_since(before);
                metrics::counter!("flashsale_redis_incarnation_changes_total").increment(1);
                tracing::warn!(
                    from = %before.id(),
                    to = %now.id(),
                    ?nodes,
                    "Redis is not the one this process talked to (restart or failover); \
                     reconciling live sales from Postgres"
                );
                true
            }
            _ => false,
        };
        seen.noticed = Some(now.clone());
        if seen.reconciled.as_ref() != Some(&now) {
            let count = self.sales.reconcile_live_sales(&now.id()).await?;
            if changed {
                tracing::warn!(incarnation = %now.id(), sales = count, "live sales reconciled after a Redis change");
            }
            seen.reconciled = Some(now);
        }
        Ok(changed)
    }

    /// Reads the incarnation; while Redis does not answer, tries again every
    /// [`RETRY_WHILE_DOWN`] for about a tick, so that a Redis that restarts is noticed
    /// within that long of answering again, not a whole tick later: the moment it
    /// comes back is when the requests that waited for it arrive.
    async fn read_soon(&self) -> Result<Incarnation> {
        let conn = self.sales.projection.connection();
        let tries = (WATCH_INTERVAL.as_millis() / RETRY_WHILE_DOWN.as_millis()).max(1);
        let mut tried = 1;
        loop {
            match redis_identity::read(&conn).await {
                Ok(now) => return Ok(now),
                Err(e) if tried >= tries => return Err(e),
                Err(_) => tried += 1,
            }
            tokio::time::sleep(RETRY_WHILE_DOWN).await;
        }
    }
}

impl Sales {
    /// Reconciles every sale that may still be served (it ends after now minus the
    /// longest hold) for the Redis incarnation `incarnation`; returns how many this
    /// process reconciled. Every sale is tried; the first failure is returned after.
    pub async fn reconcile_live_sales(&self, incarnation: &str) -> Result<usize> {
        let longest_hold = chrono::Duration::seconds(*limits::HOLD_TTL_SECONDS.end());
        let mut done = 0;
        let mut failed = None;
        for sale in self
            .store
            .sales_ending_after(self.now() - longest_hold)
            .await?
        {
            match self.reconcile(sale, incarnation).await {
                Ok(true) => done += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(sale_id = %sale, error = %e, "reconciling the sale failed; retried at the next look");
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(done), Err)
    }

    /// Reconciles one sale for `incarnation`, once across all processes (the rebuild
    /// lock, then the marker). Returns false when it was already reconciled for it.
    pub async fn reconcile(&self, sale: SaleId, incarnation: &str) -> Result<bool> {
        let token = uuid::Uuid::new_v4().to_string();
        for _ in 0..1000 {
            if self.projection.reconciled_for(sale).await?.as_deref() == Some(incarnation) {
                return Ok(false);
            }
            if self
                .projection
                .try_lock_rebuild(sale, &token, RECONCILE_LOCK_MS)
                .await?
            {
                let outcome = self.reconcile_locked(sale, incarnation).await;
                self.projection.unlock_rebuild(sale, &token).await?;
                return outcome;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::Internal(anyhow::anyhow!(
            "timed out waiting for the lock to reconcile sale {sale}"
        )))
    }

    async fn reconcile_locked(&self, sale: SaleId, incarnation: &str) -> Result<bool> {
        if self.projection.reconciled_for(sale).await?.as_deref() == Some(incarnation) {
            return Ok(false);
        }
        let record = self.store.sale_record(sale).await?;
        let stripes = self.projection.stripe_count();
        let ranges = free_ranges(record.sale.unit_count, &record.taken);
        let mut bought: HashMap<ShopperId, i64> = HashMap::new();
        let mut sold = vec![0i64; stripes as usize];
        let mut ordered: Vec<Vec<ReservationId>> = vec![Vec::new(); stripes as usize];
        for order in &record.orders {
            *bought.entry(order.shopper).or_default() += order.quantity;
            // A hold, and so its order, lives wholly in one stripe: its first unit's.
            if let Some(&first) = order.units.first() {
                let k = Stripe::of_unit(sale, first.into(), stripes).index as usize;
                ordered[k].push(order.reservation);
            }
            for &unit in &order.units {
                sold[Stripe::of_unit(sale, unit.into(), stripes).index as usize] += 1;
            }
        }
        let bought: Vec<(ShopperId, i64)> = bought.into_iter().collect();
        // A multi-variant sale: what each stripe sold of each variant, and the units
        // each shopper bought of each variant (the variants' own limits).
        let variants = record.sale.variants.len();
        let mut sold_by_variant = vec![vec![0i64; variants]; stripes as usize];
        let mut bought_by_variant: HashMap<String, i64> = HashMap::new();
        if record.sale.has_variants() {
            for order in &record.orders {
                for &unit in &order.units {
                    let Some(v) = variant_of_unit(&record.sale.variants, unit) else {
                        continue;
                    };
                    let k = Stripe::of_unit(sale, unit.into(), stripes).index as usize;
                    sold_by_variant[k][v.ordinal as usize] += 1;
                    *bought_by_variant
                        .entry(format!("{}:{}", order.shopper, v.ordinal))
                        .or_default() += 1;
                }
            }
        }
        let bought_by_variant: Vec<(String, i64)> = bought_by_variant.into_iter().collect();
        let mut total = StripeReconciled::default();
        let mut present = false;
        for stripe in self.projection.stripes(sale) {
            let k = stripe.index as usize;
            let record = StripeRecord {
                sale: &record.sale,
                unsold_ranges: &ranges,
                sold: sold[k],
                ordered: &ordered[k],
                bought: &bought,
                sold_by_variant: &sold_by_variant[k],
                bought_by_variant: &bought_by_variant,
            };
            let Some(done) = self.projection.reconcile_stripe(stripe, &record).await? else {
                continue;
            };
            present = true;
            total.changed |= done.changed;
            total.checked_out += done.checked_out;
            total.ended += done.ended;
            total.free_before += done.free_before;
            total.free_after += done.free_after;
        }
        if total.changed {
            metrics::counter!("flashsale_redis_sales_reconciled_total").increment(1);
            tracing::warn!(
                sale_id = %sale,
                checked_out = total.checked_out,
                ended = total.ended,
                free_before = total.free_before,
                free_after = total.free_after,
                "sale state in Redis disagreed with Postgres; reconciled"
            );
        }
        if present {
            // The sweeper's set may have lost the sale with the rest.
            self.projection.track_for_sweep(sale).await?;
        }
        self.projection.mark_reconciled(sale, incarnation).await?;
        Ok(true)
    }
}
