//! The variant audit (v1.1): conservation and the unit guard per variant.
//!
//! In Postgres: every unit number belongs to exactly one variant (`variant_units`
//! ranges do not overlap and cover 1..=unit_count), every sold unit is a unit of a
//! variant, and no variant sold more than its total. In Redis (a multi-variant sale
//! only; a one-variant sale's variant is the sale, audited by [`super::stock`]):
//! `available + held + sold = total` for each variant, each variant's total and sold
//! are Postgres', and every free unit is in its own variant's free list.

use std::collections::HashMap;

use sqlx::PgPool;

use super::{AuditedSale, Check};
use crate::projection::Projection;
use crate::redis_conn::RedisConn;
use crate::sales::variant_of_unit;
use crate::store::SaleStore;
use crate::Result;

/// The variant checks, in report order.
pub async fn audit(
    db: &PgPool,
    projection: &Projection,
    audited: &AuditedSale,
) -> Result<Vec<Check>> {
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
    for &unit in &sold_units {
        if let Some(v) = variant_of_unit(&sale.variants, unit) {
            *sold.entry(v.ordinal).or_default() += 1;
        }
    }
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
        return Ok(checks);
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
    Ok(checks)
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
