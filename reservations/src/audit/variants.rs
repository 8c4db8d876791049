//! The variant audit (v1.1): conservation and the unit guard per variant.
//!
//! In Postgres: every unit number belongs to exactly one variant (`variant_units`
//! ranges do not overlap and cover 1..=unit_count), every sold unit is a unit of a
//! variant, and no variant sold more than its total. In Redis (a multi-variant sale
//! only; a one-variant sale's variant is the sale, audited by [`super::stock`]):
//! `available + held + sold = total` for each variant, each variant's total and sold
//! are Postgres', and every free unit is in its own variant's free list.
//!
//! Besides its checks it measures each variant's units sold and oversold (the
//! report's per-variant figures, which a rehearsal's report prints).

use std::collections::HashMap;

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Audit, AuditedSale, Check};
use crate::projection::Projection;
use crate::redis_conn::RedisConn;
use crate::sales::variant_of_unit;
use crate::store::SaleStore;
use crate::Result;

/// What one variant sold, in Postgres (`order_units`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VariantSold {
    /// The variant.
    pub variant_id: Uuid,
    /// Its SKU.
    pub sku: String,
    /// Its display name.
    pub name: String,
    /// Its sellable units.
    pub total: i64,
    /// Its units in `order_units`.
    pub units_sold: i64,
    /// Its units sold above `total`, plus its units sold more than once: 0 unless the
    /// variant was oversold (the sale's figure, per variant).
    pub oversold: i64,
}

/// The variant checks, in report order, and what each variant sold (ordinal order).
pub async fn audit(
    db: &PgPool,
    projection: &Projection,
    audited: &AuditedSale,
) -> Result<Audit<Vec<VariantSold>>> {
    let sale = SaleStore::new(db.clone()).get(audited.id).await?;
    let mut checks = Vec::new();

    // Each unit number in exactly one range.
    let mut owners = vec![0u32; sale.unit_count.max(0) as usize + 1];
    for v in &sale.variants {
        for r in &v.units {
            for unit in r.first.max(1)..=r.last.min(sale.unit_count) {
                owners[unit as usize] += 1;
            }
        }
    }
    let unowned: Vec<String> = (1..owners.len())
        .filter(|&u| owners[u] != 1)
        .map(|u| format!("unit {u} (in {} variants)", owners[u]))
        .collect();
    checks.push(Check::from_offenders(
        "each_unit_in_one_variant",
        "every unit 1..=unit_count belongs to exactly one variant",
        format!(
            "{} variant(s), {} units",
            sale.variants.len(),
            sale.unit_count
        ),
        unowned,
    ));

    // Sold per variant, from the guard's rows.
    let sold_units: Vec<i32> =
        sqlx::query_scalar("select unit_no from order_units where sale_id = $1")
            .bind(sale.id.0)
            .fetch_all(db)
            .await?;
    let mut sold: HashMap<i32, i64> = HashMap::new();
    let mut rows_per_unit: HashMap<i32, i64> = HashMap::new();
    for &unit in &sold_units {
        if let Some(v) = variant_of_unit(&sale.variants, unit) {
            *sold.entry(v.ordinal).or_default() += 1;
        }
        *rows_per_unit.entry(unit).or_default() += 1;
    }
    let mut sold_twice: HashMap<i32, i64> = HashMap::new();
    for (&unit, _) in rows_per_unit.iter().filter(|(_, &rows)| rows > 1) {
        if let Some(v) = variant_of_unit(&sale.variants, unit) {
            *sold_twice.entry(v.ordinal).or_default() += 1;
        }
    }
    let figures: Vec<VariantSold> = sale
        .variants
        .iter()
        .map(|v| {
            let units_sold = sold.get(&v.ordinal).copied().unwrap_or(0);
            let twice = sold_twice.get(&v.ordinal).copied().unwrap_or(0);
            VariantSold {
                variant_id: v.id.0,
                sku: v.sku.clone(),
                name: v.name.clone(),
                total: i64::from(v.total),
                units_sold,
                oversold: (units_sold - i64::from(v.total)).max(0) + twice,
            }
        })
        .collect();
    let over: Vec<String> = sale
        .variants
        .iter()
        .filter(|v| sold.get(&v.ordinal).copied().unwrap_or(0) > i64::from(v.total))
        .map(|v| {
            format!(
                "{} ({} sold of {})",
                v.id,
                sold.get(&v.ordinal).copied().unwrap_or(0),
                v.total
            )
        })
        .collect();
    checks.push(Check::from_offenders(
        "variant_units_sold_within_total",
        "no variant sold more units (order_units) than its total",
        format!("{} variant(s)", sale.variants.len()),
        over,
    ));

    if !sale.has_variants() {
        return Ok(Audit { checks, figures });
    }
    let redis = projection.stock_by_variant(&sale).await?;
    let mut offenders = Vec::new();
    match &redis {
        None if audited.over => {}
        None => offenders.push(format!(
            "no Redis state under prefix {:?}",
            projection.prefix()
        )),
        Some((_, per_variant)) => {
            for (v, s) in sale.variants.iter().zip(per_variant) {
                let pg_sold = sold.get(&v.ordinal).copied().unwrap_or(0);
                if s.available + s.held + s.sold != s.total
                    || s.total != i64::from(v.total)
                    || s.sold != pg_sold
                {
                    offenders.push(format!(
                        "{} ({} + {} + {} vs total {}; Postgres total {}, sold {pg_sold})",
                        v.id, s.available, s.held, s.sold, s.total, v.total
                    ));
                }
            }
        }
    }
    checks.push(Check::from_offenders(
        "variant_stock_conserved",
        "for each variant in Redis: available + held + sold = total, total and sold are Postgres'",
        format!("{} variant(s)", sale.variants.len()),
        offenders,
    ));
    let mut conn = projection.connection();
    checks.push(Check::from_offenders(
        "free_units_in_their_variant",
        "every free unit is in the free list of the variant that owns it",
        format!("{} variant(s)", sale.variants.len()),
        misfiled(&mut conn, projection, &sale).await?,
    ));
    Ok(Audit { checks, figures })
}

/// Free units in another variant's free list, as "unit <n> (free in <variant>)".
async fn misfiled(
    conn: &mut RedisConn,
    projection: &Projection,
    sale: &crate::sales::Sale,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for stripe in projection.stripes(sale.id) {
        let keys = projection.varied_keys(stripe);
        for v in &sale.variants {
            let free: Vec<i32> = redis::cmd("LRANGE")
                .arg(keys.variant_free(v.ordinal as u32))
                .arg(0)
                .arg(-1)
                .query_async(conn)
                .await?;
            out.extend(
                free.into_iter()
                    .filter(|&u| variant_of_unit(&sale.variants, u).map(|o| o.id) != Some(v.id))
                    .map(|u| format!("unit {u} (free in variant {})", v.id)),
            );
        }
    }
    Ok(out)
}
