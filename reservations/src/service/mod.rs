//! The operations the HTTP layer calls: sales for merchants, holds for shoppers. Each
//! one keeps Postgres (the record) and Redis (the hot state) in step, and rebuilds a
//! sale's Redis state from Postgres when it finds it missing.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::Clock;
use crate::ids::{MerchantId, ReservationId, SaleId, ShopperId};
use crate::projection::{Projection, ReserveOutcome, Stripe};
use crate::sales::{
    limits, FieldError, Sale, SaleInput, SalePatch, SaleSpec, StatusFilter, StockView, Transition,
};
use crate::store::{ListCursor, SaleStore};
use crate::{Error, Result};

/// How long the reservation → sale index outlives a hold (longest hold is an hour).
const RESERVATION_INDEX_TTL_SECS: u64 = 2 * 24 * 3600;
/// How long one rebuild may hold the per-sale lock.
const REBUILD_LOCK_MS: u64 = 10_000;

/// Units a shopper asks for: 1..=100 (the highest per-shopper limit), parsed at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(i64);

impl Quantity {
    /// Accepts 1..=100.
    pub fn parse(value: i64) -> Result<Quantity> {
        if limits::PER_USER_LIMIT.contains(&value) {
            Ok(Quantity(value))
        } else {
            Err(Error::InvalidQuantity(format!(
                "quantity must be between 1 and {}",
                limits::PER_USER_LIMIT.end()
            )))
        }
    }

    /// The number of units.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// The status of a reservation as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Units are held for the shopper until `expires_at`.
    Held,
    /// An order was placed for it.
    CheckedOut,
    /// The shopper gave it back.
    Released,
    /// Its deadline passed.
    Expired,
}

/// A hold as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reservation {
    /// The hold's id.
    pub reservation_id: ReservationId,
    /// Its sale.
    pub sale_id: SaleId,
    /// Units held.
    pub quantity: i64,
    /// Where it stands.
    pub status: ReservationStatus,
    /// When it stops holding the units.
    pub expires_at: DateTime<Utc>,
}

/// Result of a reserve call: the reservation, and whether it was created now (201) or
/// replayed from an idempotency key.
#[derive(Debug, Clone)]
pub struct Reserved {
    /// The reservation.
    pub reservation: Reservation,
    /// False when an earlier request with the same key created it.
    pub created: bool,
}

fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Why a sale's state is being written to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// A new sale.
    Initial,
    /// The state was missing (Redis restarted empty, keys evicted).
    Recovery,
}

/// Sales and holds.
#[derive(Clone)]
pub struct Sales {
    store: SaleStore,
    projection: Projection,
    clock: Arc<dyn Clock>,
}

impl Sales {
    /// The service over a store, a projection and a clock.
    pub fn new(store: SaleStore, projection: Projection, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            projection,
            clock,
        }
    }

    /// The Redis side (for the sweeper, the checker and tests).
    pub fn projection(&self) -> &Projection {
        &self.projection
    }

    /// The Postgres side.
    pub fn store(&self) -> &SaleStore {
        &self.store
    }

    /// The current time by this service's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Creates a sale and loads it into Redis.
    pub async fn create(
        &self,
        merchant: MerchantId,
        input: SaleInput,
    ) -> Result<(Sale, StockView)> {
        let spec = SaleSpec::parse(input)?;
        let sale = self.store.insert(merchant, &spec).await?;
        self.load_from_postgres(sale.id, Load::Initial).await?;
        let stock = self.stock(&sale).await?;
        Ok((sale, stock))
    }

    /// One of the merchant's sales with its stock.
    pub async fn get_owned(&self, merchant: MerchantId, id: SaleId) -> Result<(Sale, StockView)> {
        let sale = self.store.get_owned(merchant, id).await?;
        let stock = self.stock(&sale).await?;
        Ok((sale, stock))
    }

    /// Any sale with its stock (the public page).
    pub async fn get(&self, id: SaleId) -> Result<(Sale, StockView)> {
        let sale = self.store.get(id).await?;
        let stock = self.stock(&sale).await?;
        Ok((sale, stock))
    }

    /// One page of the merchant's sales with their stock, and the cursor of the next.
    /// The status filter is applied in SQL where the stored state decides it, and to
    /// the derived status (which needs the stock, e.g. `sold_out`) here, reading on
    /// until the page is full so pages are never short while more rows match.
    pub async fn list(
        &self,
        merchant: MerchantId,
        filter: Option<StatusFilter>,
        limit: i64,
        mut after: Option<ListCursor>,
    ) -> Result<(Vec<(Sale, StockView)>, Option<ListCursor>)> {
        let now = self.now();
        let mut page = Vec::new();
        loop {
            let batch = self
                .store
                .list(merchant, filter, limit + 1, after, now)
                .await?;
            let exhausted = (batch.len() as i64) <= limit;
            for sale in batch {
                after = Some(ListCursor {
                    created_at: sale.created_at,
                    id: sale.id.0,
                });
                let stock = self.stock(&sale).await?;
                if filter.is_none_or(|f| f.matches(sale.status(now, &stock))) {
                    if page.len() as i64 == limit {
                        // One more match exists: the page is full and has a successor.
                        let (last, _): &(Sale, StockView) = page.last().expect("limit ≥ 1");
                        let next = ListCursor {
                            created_at: last.created_at,
                            id: last.id.0,
                        };
                        return Ok((page, Some(next)));
                    }
                    page.push((sale, stock));
                }
            }
            if exhausted {
                return Ok((page, None));
            }
        }
    }

    /// Applies a merchant's edit; with `if_match`, only to that version. Without it the
    /// edit is applied to whatever version is current: a concurrent write makes it
    /// re-read and re-apply, never overwrite the other write with stale fields.
    pub async fn patch(
        &self,
        merchant: MerchantId,
        id: SaleId,
        patch: SalePatch,
        if_match: Option<i32>,
    ) -> Result<(Sale, StockView)> {
        let saved = self
            .update_with(merchant, id, if_match, |sale, now| {
                patch.clone().apply(sale, now)
            })
            .await?;
        self.publish_meta(&saved).await
    }

    /// Pause, resume or end.
    pub async fn transition(
        &self,
        merchant: MerchantId,
        id: SaleId,
        action: Transition,
    ) -> Result<(Sale, StockView)> {
        let saved = self
            .update_with(merchant, id, None, |sale, now| {
                sale.state = sale.transition(action, now)?;
                Ok(())
            })
            .await?;
        self.publish_meta(&saved).await
    }

    /// Read, change, write conditionally on the version read; on a lost race, retry
    /// from a fresh read unless the client pinned the version with `If-Match`.
    async fn update_with(
        &self,
        merchant: MerchantId,
        id: SaleId,
        if_match: Option<i32>,
        change: impl Fn(&mut Sale, DateTime<Utc>) -> Result<()>,
    ) -> Result<Sale> {
        loop {
            let mut sale = self.store.get_owned(merchant, id).await?;
            if let Some(version) = if_match {
                if version != sale.version {
                    return Err(Error::StaleVersion(version));
                }
            }
            change(&mut sale, self.now())?;
            match self.store.update(&sale, Some(sale.version)).await {
                Err(Error::StaleVersion(_)) if if_match.is_none() => continue,
                saved => return saved,
            }
        }
    }

    async fn publish_meta(&self, sale: &Sale) -> Result<(Sale, StockView)> {
        if !self.projection.sync_meta(sale).await? {
            self.rebuild(sale.id).await?;
        }
        // A later end (ends_at moved) makes a swept-out sale live again.
        self.projection.track_for_sweep(sale.id).await?;
        let stock = self.stock(sale).await?;
        Ok((sale.clone(), stock))
    }

    /// Adds (positive) or retires (negative) free units.
    pub async fn change_stock(
        &self,
        merchant: MerchantId,
        id: SaleId,
        delta: i64,
    ) -> Result<(Sale, StockView)> {
        let sale = self.store.get_owned(merchant, id).await?;
        // Checked: any i64 may arrive here, and i64::MIN has no absolute value.
        let new_total = i64::from(sale.total).checked_add(delta);
        if delta == 0
            || delta.unsigned_abs() > limits::MAX_UNITS as u64
            || new_total.is_none_or(|t| t > limits::MAX_UNITS)
        {
            return Err(FieldError {
                field: "delta",
                message: format!(
                    "must be non-zero and keep stock.total at most {}",
                    limits::MAX_UNITS
                ),
            }
            .into());
        }
        let sale = if delta > 0 {
            let (sale, _first) = self.store.add_units(id, delta as i32).await?;
            if !self.projection.add_units(&sale).await? {
                self.rebuild(id).await?;
            }
            sale
        } else {
            self.retire(&sale, -delta).await?
        };
        let stock = self.stock(&sale).await?;
        Ok((sale, stock))
    }

    async fn retire(&self, sale: &Sale, count: i64) -> Result<Sale> {
        let units = match self.projection.retire_units(sale.id, count).await? {
            Some(units) => units,
            None => {
                self.rebuild(sale.id).await?;
                self.projection
                    .retire_units(sale.id, count)
                    .await?
                    .ok_or_else(|| {
                        Error::Internal(anyhow::anyhow!("sale state vanished during retire"))
                    })?
            }
        };
        match self.store.retire_units(sale.id, &units).await {
            Ok(sale) => Ok(sale),
            Err(e) => {
                // Postgres did not record the retirement: the units are still for sale.
                self.projection.unretire_units(sale.id, &units).await?;
                Err(e)
            }
        }
    }

    /// The sale's stock, rebuilding its Redis state first if it is missing.
    pub async fn stock(&self, sale: &Sale) -> Result<StockView> {
        loop {
            if let Some(stock) = self.projection.stock(sale.id).await? {
                return Ok(stock);
            }
            self.rebuild(sale.id).await?;
        }
    }

    /// Rebuilds a sale's Redis state from Postgres, once across all processes: the
    /// holder of the per-sale lock loads every stripe that is missing (the others are
    /// left as they are: units never move between stripes, so a stripe's free units
    /// follow from Postgres alone); the others wait until every stripe is there.
    pub async fn rebuild(&self, id: SaleId) -> Result<()> {
        let token = uuid::Uuid::new_v4().to_string();
        for _ in 0..500 {
            if self
                .projection
                .try_lock_rebuild(id, &token, REBUILD_LOCK_MS)
                .await?
            {
                let outcome = self.load_from_postgres(id, Load::Recovery).await;
                self.projection.unlock_rebuild(id, &token).await?;
                return outcome;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.projection.stock(id).await?.is_some() {
                return Ok(());
            }
        }
        Err(Error::Internal(anyhow::anyhow!(
            "timed out waiting for the rebuild of sale {id}"
        )))
    }

    async fn load_from_postgres(&self, id: SaleId, why: Load) -> Result<()> {
        let sale = self.store.get(id).await?;
        let taken = self.store.taken_units(id).await?;
        let sold_units = self.store.sold_units(id).await?;
        let sold = sold_units.len();
        let bought = self.store.bought_per_shopper(id).await?;
        let loaded = self
            .projection
            .load(&sale, &taken, &sold_units, &bought)
            .await?;
        if loaded && why == Load::Recovery {
            metrics::counter!("flashsale_redis_state_rebuilt_total").increment(1);
            tracing::warn!(sale_id = %id, sold, "sale state was missing in Redis; rebuilt from Postgres");
        }
        self.projection.track_for_sweep(id).await
    }

    /// Holds `quantity` units of a sale for a shopper. The caller has checked admission.
    pub async fn reserve(
        &self,
        sale: SaleId,
        shopper: ShopperId,
        quantity: Quantity,
        idempotency_key: Option<&str>,
    ) -> Result<Reserved> {
        let id = ReservationId::new();
        loop {
            let outcome = self
                .projection
                .reserve(
                    sale,
                    self.now().timestamp_millis(),
                    id,
                    shopper,
                    quantity.get(),
                    idempotency_key,
                )
                .await?;
            return match outcome {
                ReserveOutcome::NoState => {
                    self.rebuild(sale).await?;
                    continue;
                }
                ReserveOutcome::Held {
                    id: held,
                    stripe,
                    deadline_ms,
                } => {
                    let created = held == id;
                    if created {
                        self.projection
                            .index_reservation(
                                id,
                                Stripe::new(sale, stripe),
                                RESERVATION_INDEX_TTL_SECS,
                            )
                            .await?;
                    }
                    Ok(Reserved {
                        reservation: Reservation {
                            reservation_id: held,
                            sale_id: sale,
                            quantity: quantity.get(),
                            status: ReservationStatus::Held,
                            expires_at: ms_to_time(deadline_ms),
                        },
                        created,
                    })
                }
                ReserveOutcome::IdempotencyMismatch => Err(Error::IdempotencyKeyReused),
                ReserveOutcome::NotLive => Err(Error::SaleNotLive),
                ReserveOutcome::LimitExceeded(limit) => Err(Error::PerUserLimitExceeded(limit)),
                ReserveOutcome::SoldOut => Err(Error::SoldOut),
            };
        }
    }

    /// A shopper's own reservation; another shopper's is not found.
    pub async fn reservation(&self, shopper: ShopperId, id: ReservationId) -> Result<Reservation> {
        let stripe = self
            .projection
            .reservation_stripe(id)
            .await?
            .ok_or(Error::ReservationNotFound)?;
        let hold = self
            .projection
            .hold(stripe, id)
            .await?
            .filter(|h| h.owner == shopper)
            .ok_or(Error::ReservationNotFound)?;
        let now_ms = self.now().timestamp_millis();
        let status = match hold.status.as_str() {
            "checked_out" => ReservationStatus::CheckedOut,
            "released" => ReservationStatus::Released,
            "expired" => ReservationStatus::Expired,
            // Past its deadline but not yet swept: it can no longer be checked out.
            "held" if hold.deadline_ms <= now_ms => ReservationStatus::Expired,
            _ => ReservationStatus::Held,
        };
        Ok(Reservation {
            reservation_id: id,
            sale_id: stripe.sale,
            quantity: hold.quantity,
            status,
            expires_at: ms_to_time(hold.deadline_ms),
        })
    }

    /// The shopper gives a hold back; its units are free at once.
    pub async fn release(&self, shopper: ShopperId, id: ReservationId) -> Result<()> {
        let stripe = self
            .projection
            .reservation_stripe(id)
            .await?
            .ok_or(Error::ReservationNotFound)?;
        match self.projection.release(stripe, id, shopper).await? {
            Ok(()) => Ok(()),
            Err(None) => Err(Error::ReservationNotFound),
            Err(Some(status)) => Err(Error::ReservationNotHeld(status)),
        }
    }

    /// Expires due holds of every tracked sale, stripe by stripe; returns how many were
    /// expired. A sale that has ended and holds nothing any more in any stripe is no
    /// longer visited.
    pub async fn sweep_once(&self, batch: usize) -> Result<i64> {
        let now_ms = self.now().timestamp_millis();
        let mut expired = 0;
        for sale in self.projection.swept_sales().await? {
            let (mut live_in_sale, mut ends_ms) = (0, 0);
            for stripe in self.projection.stripes(sale) {
                loop {
                    let (n, live, ends) = self.projection.expire(stripe, now_ms, batch).await?;
                    expired += n;
                    if (n as usize) < batch {
                        live_in_sale += live;
                        ends_ms = ends_ms.max(ends);
                        break;
                    }
                }
            }
            if live_in_sale == 0 && ends_ms > 0 && now_ms >= ends_ms {
                self.projection.untrack_for_sweep(sale).await?;
            }
        }
        if expired > 0 {
            metrics::counter!("flashsale_holds_expired_total").increment(expired as u64);
        }
        Ok(expired)
    }
}
