//! A sale's variants in Postgres (`sale_variants`, `variant_units`): written at create,
//! when a merchant adds a variant or changes a variant's stock.
//!
//! Units are numbered sale-wide: new units of any variant are numbered after the
//! sale's highest (`sales.unit_count`, bumped under the row's lock in the same
//! transaction), so the ranges of `variant_units` never overlap.

use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{SaleRow, SaleStore, COLUMNS};
use crate::ids::{SaleId, VariantId};
use crate::sales::{Sale, UnitRange, Variant, VariantSpec};
use crate::{Error, Result};

/// Inserts the variants of a new sale, each owning the next `total` units from 1. The
/// one variant of a sale created the v1 way (`listed` false) has the sale's id; the
/// variants of a body that listed them get ids of their own.
pub(super) async fn insert_all(
    tx: &mut Transaction<'_, Postgres>,
    sale: SaleId,
    specs: &[VariantSpec],
    listed: bool,
) -> Result<Vec<Variant>> {
    let currency = specs
        .first()
        .map(|v| v.price.currency.clone())
        .unwrap_or_default();
    let mut next = 1;
    let mut variants = Vec::with_capacity(specs.len());
    for (ordinal, spec) in specs.iter().enumerate() {
        let id = match (ordinal, listed) {
            (0, false) => VariantId(sale.0),
            _ => VariantId(Uuid::now_v7()),
        };
        let range = UnitRange {
            first: next,
            last: next + spec.total - 1,
        };
        insert_one(tx, sale, id, ordinal as i32, spec, range).await?;
        next = range.last + 1;
        variants.push(Variant {
            id,
            ordinal: ordinal as i32,
            sku: spec.sku.clone(),
            name: spec.name.clone(),
            price: crate::sales::Money {
                amount_minor: spec.price.amount_minor,
                currency: currency.clone(),
            },
            per_user_limit: spec.per_user_limit,
            total: spec.total,
            units: vec![range],
        });
    }
    Ok(variants)
}

async fn insert_one(
    tx: &mut Transaction<'_, Postgres>,
    sale: SaleId,
    id: VariantId,
    ordinal: i32,
    spec: &VariantSpec,
    range: UnitRange,
) -> Result<()> {
    sqlx::query(
        "insert into sale_variants (id, sale_id, ordinal, sku, name, price_minor, per_user_limit, total) \
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id.0)
    .bind(sale.0)
    .bind(ordinal)
    .bind(&spec.sku)
    .bind(&spec.name)
    .bind(spec.price.amount_minor)
    .bind(spec.per_user_limit)
    .bind(spec.total)
    .execute(&mut **tx)
    .await?;
    insert_range(tx, sale, id, range).await
}

async fn insert_range(
    tx: &mut Transaction<'_, Postgres>,
    sale: SaleId,
    variant: VariantId,
    range: UnitRange,
) -> Result<()> {
    sqlx::query(
        "insert into variant_units (sale_id, variant_id, first_unit, last_unit) values ($1, $2, $3, $4)",
    )
    .bind(sale.0)
    .bind(variant.0)
    .bind(range.first)
    .bind(range.last)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Gives `range` (new units) to `variant` and counts them in its total.
pub(super) async fn record_units(
    tx: &mut Transaction<'_, Postgres>,
    sale: SaleId,
    variant: VariantId,
    range: UnitRange,
) -> Result<()> {
    insert_range(tx, sale, variant, range).await?;
    sqlx::query("update sale_variants set total = total + $2 where id = $1")
        .bind(variant.0)
        .bind(range.last - range.first + 1)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Numbers `count` new units after the sale's highest under the row lock; returns the
/// range.
async fn new_units(
    tx: &mut Transaction<'_, Postgres>,
    sale: SaleId,
    count: i32,
) -> Result<UnitRange> {
    let unit_count: i32 = sqlx::query_scalar(
        "update sales set unit_count = unit_count + $2, total = total + $2, \
         version = version + 1, updated_at = now() where id = $1 returning unit_count",
    )
    .bind(sale.0)
    .bind(count)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(Error::SaleNotFound)?;
    Ok(UnitRange {
        first: unit_count - count + 1,
        last: unit_count,
    })
}

impl SaleStore {
    /// Adds a variant (ordinal = the next one) with `spec.total` new units.
    pub async fn add_variant(
        &self,
        sale: SaleId,
        ordinal: i32,
        spec: &VariantSpec,
    ) -> Result<Sale> {
        let mut tx = self.pool.begin().await?;
        let range = new_units(&mut tx, sale, spec.total).await?;
        insert_one(
            &mut tx,
            sale,
            VariantId(Uuid::now_v7()),
            ordinal,
            spec,
            range,
        )
        .await?;
        tx.commit().await?;
        self.get(sale).await
    }

    /// Creates `count` new units of one variant; returns the sale.
    pub async fn add_variant_units(
        &self,
        sale: SaleId,
        variant: VariantId,
        count: i32,
    ) -> Result<Sale> {
        let mut tx = self.pool.begin().await?;
        let range = new_units(&mut tx, sale, count).await?;
        record_units(&mut tx, sale, variant, range).await?;
        tx.commit().await?;
        self.get(sale).await
    }

    /// Records `units` (all of one variant) as retired and lowers both totals.
    pub async fn retire_variant_units(
        &self,
        sale: SaleId,
        variant: VariantId,
        units: &[i32],
    ) -> Result<Sale> {
        let mut tx = self.pool.begin().await?;
        let added = sqlx::query(
            "insert into retired_units (sale_id, unit_no) select $1, unnest($2::int[]) \
             on conflict do nothing",
        )
        .bind(sale.0)
        .bind(units)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("update sale_variants set total = total - $2 where id = $1")
            .bind(variant.0)
            .bind(added as i32)
            .execute(&mut *tx)
            .await?;
        let sql = format!(
            "update sales set total = unit_count - (select count(*) from retired_units where sale_id = $1), \
             version = version + 1, updated_at = now() where id = $1 returning {COLUMNS}"
        );
        let row: SaleRow = sqlx::query_as(&sql)
            .bind(sale.0)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.into())
    }

    /// Units bought per (shopper, variant) as the Redis `users` fields
    /// `<shopper>:<ordinal>` (a variant's own per-shopper limit after a rebuild).
    pub async fn bought_per_shopper_and_variant(&self, sale: SaleId) -> Result<Vec<(String, i64)>> {
        let rows: Vec<(Uuid, i32, i64)> = sqlx::query_as(
            "select o.shopper_id, v.ordinal, count(*)::bigint from orders o \
             join order_units u on u.order_id = o.id \
             join variant_units r on r.sale_id = u.sale_id \
               and u.unit_no between r.first_unit and r.last_unit \
             join sale_variants v on v.id = r.variant_id \
             where o.sale_id = $1 group by 1, 2",
        )
        .bind(sale.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(shopper, ordinal, n)| (format!("{shopper}:{ordinal}"), n))
            .collect())
    }

    /// A one-variant sale's variant follows the sale's SKU and price (a v1 edit changes
    /// them there), and a v1 sale's its name too (a listed variant keeps its own name);
    /// a sale with several keeps its variants as they are (the edit refuses to change
    /// its SKU or price).
    pub(super) async fn follow_first_variant(&self, mut sale: Sale) -> Result<Sale> {
        if sale.variants.len() == 1 {
            let name = match sale.lists_variants() {
                true => sale.variants[0].name.clone(),
                false => sale.name.clone(),
            };
            sqlx::query(
                "update sale_variants set sku = $2, name = $3, price_minor = $4 \
                 where sale_id = $1 and ordinal = 0",
            )
            .bind(sale.id.0)
            .bind(&sale.sku)
            .bind(&name)
            .bind(sale.price.amount_minor)
            .execute(&self.pool)
            .await?;
            let first = &mut sale.variants[0];
            first.sku = sale.sku.clone();
            first.name = name;
            first.price = sale.price.clone();
        }
        Ok(sale)
    }
}
