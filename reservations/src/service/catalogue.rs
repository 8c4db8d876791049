//! A merchant's sales: create, read, list, edit, pause/resume/end and stock changes.
//! Every answer carries the sale's stock, read from Redis (rebuilt first when missing).

use chrono::{DateTime, Utc};

use super::rebuild::Load;
use super::Sales;
use crate::ids::{MerchantId, SaleId};
use crate::sales::{
    limits, FieldError, Sale, SaleInput, SalePatch, SaleSpec, StatusFilter, StockView, Transition,
};
use crate::store::ListCursor;
use crate::{Error, Result};

impl Sales {
    /// Creates a sale and loads it into Redis.
    pub async fn create(
        &self,
        merchant: MerchantId,
        mut input: SaleInput,
    ) -> Result<(Sale, StockView)> {
        input.admission = input.admission.with_proof_default(self.proof_default);
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
        if sale.has_variants() {
            // Which variant's? The v1.1 route names it.
            return Err(Error::VariantRequired);
        }
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
        // Under the sale's lock: a reconciliation (Redis came back older) reads Postgres
        // and rewrites Redis under it, and must not see the change half made.
        let sale = self
            .with_sale_lock(id, || async {
                if delta > 0 {
                    let (sale, _first) = self.store.add_units(id, delta as i32).await?;
                    if !self.projection.add_units(&sale, None).await? {
                        self.rebuild_locked(id).await?;
                    }
                    Ok(sale)
                } else {
                    self.retire(&sale, -delta).await
                }
            })
            .await?;
        let stock = self.stock(&sale).await?;
        Ok((sale, stock))
    }

    /// Retires `count` free units; the caller holds the sale's lock.
    async fn retire(&self, sale: &Sale, count: i64) -> Result<Sale> {
        let units = match self.projection.retire_units(sale.id, count, None).await? {
            Some(units) => units,
            None => {
                self.rebuild_locked(sale.id).await?;
                self.projection
                    .retire_units(sale.id, count, None)
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

    /// One of the merchant's sales without its stock (an ownership check).
    pub async fn owned_sale(&self, merchant: MerchantId, id: SaleId) -> Result<Sale> {
        self.store.get_owned(merchant, id).await
    }

    /// Orders and revenue (minor units) of a sale.
    pub async fn order_totals(&self, id: SaleId) -> Result<(i64, i64)> {
        self.store.order_totals(id).await
    }
}
