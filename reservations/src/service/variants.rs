//! A merchant's variants (v1.1): adding one before the start, changing one variant's
//! stock at any time, and the per-variant stock every sale answer lists.
//!
//! Adding a variant rewrites the sale's Redis state from Postgres (under the sale's
//! lock): before the start no hold exists, so nothing is lost, and the new variant's
//! free list, counters and unit ranges appear in every stripe at once. A stock change
//! of a variant moves only that variant's free list and counters, as the v1 stock
//! change does for a one-variant sale; the v1 `/stock` route of a sale with several
//! variants answers `variant_required`.

use super::Sales;
use crate::ids::{MerchantId, SaleId, VariantId};
use crate::sales::{
    check_new_variant, limits, FieldError, Sale, StockView, VariantInput, VariantSpec,
};
use crate::{Error, Result};

impl Sales {
    /// Adds a variant to a sale that has not started (`SaleLocked` after).
    pub async fn add_variant(
        &self,
        merchant: MerchantId,
        id: SaleId,
        input: VariantInput,
    ) -> Result<(Sale, StockView)> {
        let spec = VariantSpec::parse(input)?;
        let sale = self
            .with_sale_lock(id, || async {
                let sale = self.store.get_owned(merchant, id).await?;
                if self.now() >= sale.starts_at {
                    return Err(Error::SaleLocked("variants"));
                }
                check_new_variant(&sale, &spec)?;
                let sale = self
                    .store
                    .add_variant(id, sale.variants.len() as i32, &spec)
                    .await?;
                self.projection.drop_state(&sale).await?;
                self.rebuild_locked(id).await?;
                Ok(sale)
            })
            .await?;
        let stock = self.stock(&sale).await?;
        Ok((sale, stock))
    }

    /// Adds (positive) or retires (negative) free units of one variant.
    pub async fn change_variant_stock(
        &self,
        merchant: MerchantId,
        id: SaleId,
        variant: VariantId,
        delta: i64,
    ) -> Result<(Sale, StockView)> {
        let sale = self.store.get_owned(merchant, id).await?;
        let Some(current) = sale.variants.iter().find(|v| v.id == variant).cloned() else {
            return Err(Error::VariantNotFound);
        };
        if !sale.has_variants() {
            // The one variant of a sale is the v1 stock change.
            return self.change_stock(merchant, id, delta).await;
        }
        let new_total = i64::from(sale.total).checked_add(delta);
        if delta == 0
            || delta.unsigned_abs() > limits::MAX_UNITS as u64
            || new_total.is_none_or(|t| t > limits::MAX_UNITS)
        {
            return Err(FieldError {
                field: "delta",
                message: format!(
                    "must be non-zero and keep the sale's stock at most {}",
                    limits::MAX_UNITS
                ),
            }
            .into());
        }
        let ordinal = current.ordinal as u32;
        let sale = self
            .with_sale_lock(id, || async {
                if delta > 0 {
                    let sale = self
                        .store
                        .add_variant_units(id, variant, delta as i32)
                        .await?;
                    if !self.projection.add_units(&sale, Some(ordinal)).await? {
                        self.rebuild_locked(id).await?;
                    }
                    return Ok(sale);
                }
                let count = -delta;
                let units = match self
                    .projection
                    .retire_units(id, count, Some(ordinal))
                    .await?
                {
                    Some(units) => units,
                    None => {
                        self.rebuild_locked(id).await?;
                        self.projection
                            .retire_units(id, count, Some(ordinal))
                            .await?
                            .ok_or_else(|| {
                                Error::Internal(anyhow::anyhow!(
                                    "sale state vanished during retire"
                                ))
                            })?
                    }
                };
                match self.store.retire_variant_units(id, variant, &units).await {
                    Ok(sale) => Ok(sale),
                    Err(e) => {
                        self.projection.unretire_units(id, &units).await?;
                        Err(e)
                    }
                }
            })
            .await?;
        let stock = self.stock(&sale).await?;
        Ok((sale, stock))
    }

    /// Each variant's stock, in ordinal order. A one-variant sale's is the sale's own
    /// `stock` (no second read); a multi-variant sale's is read from Redis (each stripe
    /// atomically, rebuilt first when missing).
    pub async fn variant_stock(&self, sale: &Sale, stock: &StockView) -> Result<Vec<StockView>> {
        if !sale.has_variants() {
            return Ok(vec![*stock]);
        }
        loop {
            if let Some((_, per_variant)) = self.projection.stock_by_variant(sale).await? {
                return Ok(per_variant);
            }
            self.rebuild(sale.id).await?;
        }
    }
}
