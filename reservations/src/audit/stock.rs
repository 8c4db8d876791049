//! The stock audit: units, holds and the per-shopper limit of one sale.
//!
//! It checks DESIGN.md's **stock conservation** (`available + held + sold = total` in
//! Redis, confirmed units ≤ total in Postgres) and **Postgres is the last line against
//! overselling** (each sold unit is a real unit of the sale, sold once, and each order
//! has as many unit rows as its quantity), that Redis agrees with Postgres and keeps
//! every unit in one place of its own stripe, that no hold is left `committing` once
//! checkouts have finished, and the per-shopper limit.
//!
//! It reads `orders`, `order_units` and `retired_units` in Postgres, and the sale's
//! Redis keys in every stock stripe: the counters (through [`Projection::stock`]), the
//! free list, the holds hash, the committing set and the per-shopper hash.

use std::collections::{BTreeSet, HashMap};

use sqlx::PgPool;
use uuid::Uuid;

use super::{ids, Audit, AuditedSale, Check, Sold};
use crate::projection::{Projection, SaleKeys};
use crate::redis_conn::RedisConn;
use crate::sales::StockView;
use crate::Result;

/// What the stock audit measured besides its verdicts: the report's header figures.
#[derive(Debug, Clone)]
pub struct StockFigures {
    /// Orders and units sold, in Postgres.
    pub sold: Sold,
    /// Units sold above `total`, plus units sold more than once: 0 unless the sale
    /// was oversold.
    pub oversold: i64,
    /// Redis' counters summed over the stripes, when Redis has the sale's state.
    pub redis: Option<StockView>,
    /// What each variant sold (one entry, the sale's own, for a one-variant sale).
    pub variants: Vec<super::variants::VariantSold>,
}

/// The stock audit's checks, in report order: units, then Redis, then the
/// per-shopper limit.
pub async fn audit(
    db: &PgPool,
    projection: &Projection,
    sale: &AuditedSale,
) -> Result<Audit<StockFigures>> {
    let mut redis = projection.connection();
    let stripes = projection.all_stripe_keys(sale.id);
    let (mut checks, sold, oversold) = unit_checks(db, sale).await?;
    let (redis_checks, stock) =
        redis_checks(projection, &mut redis, &stripes, sale, sold.units_sold).await?;
    checks.extend(redis_checks);
    checks.push(per_user_limit(db, &mut redis, &stripes, sale).await?);
    let variants = super::variants::audit(db, projection, sale).await?;
    checks.extend(variants.checks);
    Ok(Audit {
        checks,
        figures: StockFigures {
            sold,
            oversold,
            redis: stock,
            variants: variants.figures,
        },
    })
}

/// Holds in `committing` across the sale's stripes: checkouts still in flight, which
/// the checker waits for before judging.
pub async fn committing_count(redis: &mut RedisConn, stripes: &[SaleKeys]) -> Result<i64> {
    let mut committing = 0;
    for keys in stripes {
        committing += redis::cmd("ZCARD")
            .arg(keys.committing())
            .query_async::<i64>(redis)
            .await?;
    }
    Ok(committing)
}

/// `available + held + sold = total` in Redis, and Redis' total is the sale's total.
pub fn stock_conserved(stock: &StockView, postgres_total: i64) -> bool {
    stock.available + stock.held + stock.sold == stock.total && stock.total == postgres_total
}

/// Units in Postgres: sold ≤ total, sold units exist, none sold twice, and each order
/// has its quantity of unit rows. Also returns what was sold and the oversold figure.
async fn unit_checks(db: &PgPool, sale: &AuditedSale) -> Result<(Vec<Check>, Sold, i64)> {
    let total = sale.total;
    let mut checks = Vec::new();
    let (orders, units_sold): (i64, i64) = sqlx::query_as(
        "select (select count(*) from orders where sale_id = $1 and status = 'confirmed'), \
                (select count(*) from order_units where sale_id = $1)",
    )
    .bind(sale.id.0)
    .fetch_one(db)
    .await?;
    let oversold = (units_sold - total).max(0);
    checks.push(Check::from_condition(
        "units_sold_within_total",
        "units sold (order_units) ≤ the sale's total",
        units_sold <= total,
        format!("{units_sold} sold of {total}"),
    ));
    let bogus: Vec<i32> = sqlx::query_scalar(
        "select u.unit_no from order_units u where u.sale_id = $1 \
         and (u.unit_no < 1 or u.unit_no > $2 \
              or exists (select 1 from retired_units r where r.sale_id = u.sale_id and r.unit_no = u.unit_no)) \
         order by u.unit_no",
    )
    .bind(sale.id.0)
    .bind(sale.unit_count)
    .fetch_all(db)
    .await?;
    checks.push(Check::from_offenders(
        "sold_units_exist",
        "every sold unit is one of the sale's units 1..=unit_count and not retired",
        format!("units 1..={}", sale.unit_count),
        ids(&bogus),
    ));
    let twice: Vec<i32> = sqlx::query_scalar(
        "select unit_no from order_units where sale_id = $1 group by unit_no having count(*) > 1 order by unit_no",
    )
    .bind(sale.id.0)
    .fetch_all(db)
    .await?;
    let sold_twice = twice.len() as i64;
    checks.push(Check::from_offenders(
        "no_unit_sold_twice",
        "each unit appears in at most one order",
        format!("{units_sold} unit rows"),
        ids(&twice),
    ));
    let mismatched: Vec<Uuid> = sqlx::query_scalar(
        "select o.id from orders o left join order_units u on u.order_id = o.id \
         where o.sale_id = $1 and o.status = 'confirmed' group by o.id, o.quantity \
         having count(u.unit_no) <> o.quantity or bool_or(u.sale_id <> o.sale_id) order by o.id",
    )
    .bind(sale.id.0)
    .fetch_all(db)
    .await?;
    checks.push(Check::from_offenders(
        "order_units_match_quantity",
        "every confirmed order has exactly `quantity` unit rows, all of its own sale",
        format!("{orders} orders"),
        ids(&mismatched),
    ));
    // A cancelled or refunded order (`crate::order_life`) holds no unit: each of its
    // units left `order_units` with a `released_units` row, and a retired one is in
    // `retired_units` (so it is neither sold nor free).
    let unreleased: Vec<Uuid> = sqlx::query_scalar(
        "select o.id from orders o where o.sale_id = $1 and o.status <> 'confirmed' and ( \
             exists (select 1 from order_units u where u.order_id = o.id) \
          or (select count(*) from released_units r where r.order_id = o.id) <> o.quantity \
          or exists (select 1 from released_units r where r.order_id = o.id and not r.restocked \
                     and not exists (select 1 from retired_units t where t.sale_id = r.sale_id and t.unit_no = r.unit_no))) \
         order by o.id",
    )
    .bind(sale.id.0)
    .fetch_all(db)
    .await?;
    checks.push(Check::from_offenders(
        "closed_orders_released_units",
        "every cancelled or refunded order's units left it: back on sale, or retired",
        "closed orders",
        ids(&unreleased),
    ));
    let sold = Sold { orders, units_sold };
    Ok((checks, sold, oversold + sold_twice))
}

/// Redis against itself and against Postgres: counters conserved, `sold` agreeing,
/// no hold committing, every unit in one place of its own stripe. Also returns the
/// summed counters.
async fn redis_checks(
    projection: &Projection,
    redis: &mut RedisConn,
    stripes: &[SaleKeys],
    sale: &AuditedSale,
    units_sold: i64,
) -> Result<(Vec<Check>, Option<StockView>)> {
    let total = sale.total;
    let mut checks = Vec::new();
    let stock = projection.stock(sale.id).await?;
    if stock.is_none() && sale.over {
        // An ended sale's keys go after the retention (the sweeper): nothing left in
        // Redis to contradict Postgres.
        checks.push(Check::from_condition(
            "redis_stock_conserved",
            "Redis available + held + sold = total, and Redis' total is Postgres' total",
            true,
            "the sale is over and its Redis keys were deleted: Postgres is the record",
        ));
        return Ok((checks, None));
    }
    checks.push(match &stock {
        Some(s) => Check::from_condition(
            "redis_stock_conserved",
            "Redis available + held + sold = total, and Redis' total is Postgres' total",
            stock_conserved(s, total),
            format!(
                "{} + {} + {} = {} (Redis total {}, Postgres total {total})",
                s.available,
                s.held,
                s.sold,
                s.available + s.held + s.sold,
                s.total
            ),
        ),
        None => Check::from_condition(
            "redis_stock_conserved",
            "Redis available + held + sold = total, and Redis' total is Postgres' total",
            false,
            format!(
                "no Redis state for the sale under prefix {:?}",
                projection.prefix()
            ),
        ),
    });
    checks.push(Check::from_condition(
        "redis_sold_matches_postgres",
        "Redis `sold` equals the count of order_units in Postgres",
        stock.is_some_and(|s| s.sold == units_sold),
        format!(
            "Redis {} vs Postgres {units_sold}",
            stock.map_or("-".to_owned(), |s| s.sold.to_string())
        ),
    ));
    let mut committing = Vec::new();
    for keys in stripes {
        committing.extend(committing_holds(redis, keys.committing(), keys.holds()).await?);
    }
    checks.push(Check::from_offenders(
        "no_hold_committing",
        "no hold is left in `committing` once checkouts have finished",
        format!("{} committing", committing.len()),
        committing,
    ));
    let misplaced = misplaced_units(redis, stripes).await?;
    checks.push(Check::from_offenders(
        "units_in_one_place",
        "every free or held unit is in its own stock stripe ((unit - 1) mod stripes) and \
         in one place only: one free list entry or one live hold",
        format!("{} stripe(s)", stripes.len()),
        misplaced,
    ));
    Ok((checks, stock))
}

/// The per-shopper limit: exact in Postgres (bought), per stripe in Redis (held +
/// bought; striping makes the Redis side approximate across stripes).
async fn per_user_limit(
    db: &PgPool,
    redis: &mut RedisConn,
    stripes: &[SaleKeys],
    sale: &AuditedSale,
) -> Result<Check> {
    let limit = sale.per_user_limit;
    let mut over_limit: Vec<String> = sqlx::query_as::<_, (Uuid, i64)>(
        "select shopper_id, sum(quantity)::bigint from orders where sale_id = $1 \
         group by shopper_id having sum(quantity) > $2 order by shopper_id",
    )
    .bind(sale.id.0)
    .bind(limit)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|(shopper, bought)| format!("{shopper} (bought {bought})"))
    .collect();
    for (index, keys) in stripes.iter().enumerate() {
        let redis_users = hash_entries(redis, keys.users()).await?;
        over_limit.extend(
            redis_users
                .iter()
                .filter(|(_, units)| units.parse::<i64>().unwrap_or(0) > limit)
                .map(|(shopper, units)| {
                    format!("{shopper} (Redis holds + bought {units} in stripe {index})")
                }),
        );
    }
    Ok(Check::from_offenders(
        "per_user_limit_respected",
        "no shopper bought (Postgres) more than per_user_limit, nor holds + bought more \
         than it in any one stripe (Redis)",
        format!("limit {limit}"),
        over_limit,
    ))
}

/// Every field of a Redis hash, read in pages (a sale may have a million holds).
async fn hash_entries(redis: &mut RedisConn, key: &str) -> Result<Vec<(String, String)>> {
    let mut cursor: u64 = 0;
    let mut entries = Vec::new();
    loop {
        let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(key)
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await?;
        entries.extend(page);
        if next == 0 {
            return Ok(entries);
        }
        cursor = next;
    }
}

/// Units out of place, as "unit <n> (<why>)": a free or held unit in a stripe it does
/// not belong to, or one that is in two places (free twice, free and held, two holds).
/// Free lists are read in pages; a sale has at most a million units.
async fn misplaced_units(redis: &mut RedisConn, stripes: &[SaleKeys]) -> Result<Vec<String>> {
    const PAGE: i64 = 10_000;
    let count = stripes.len() as i64;
    // unit → every (stripe, place) it was found in
    let mut places: HashMap<i64, Vec<(i64, String)>> = HashMap::new();
    for (index, keys) in stripes.iter().enumerate() {
        let mut start = 0;
        loop {
            let page: Vec<i64> = redis::cmd("LRANGE")
                .arg(keys.free())
                .arg(start)
                .arg(start + PAGE - 1)
                .query_async(redis)
                .await?;
            for unit in &page {
                places
                    .entry(*unit)
                    .or_default()
                    .push((index as i64, format!("free in stripe {index}")));
            }
            if (page.len() as i64) < PAGE {
                break;
            }
            start += PAGE;
        }
        for (id, raw) in hash_entries(redis, keys.holds()).await? {
            let Ok(hold) = serde_json::from_str::<serde_json::Value>(&raw) else {
                continue;
            };
            let live = matches!(
                hold.get("s").and_then(|s| s.as_str()),
                Some("held" | "committing")
            );
            let units = hold.get("u").and_then(|u| u.as_array());
            for unit in units.into_iter().flatten().filter(|_| live) {
                if let Some(unit) = unit.as_i64() {
                    places
                        .entry(unit)
                        .or_default()
                        .push((index as i64, format!("hold {id} in stripe {index}")));
                }
            }
        }
    }
    let mut misplaced: Vec<(i64, String)> = places
        .into_iter()
        .filter(|(unit, at)| at.len() > 1 || at[0].0 != (unit - 1).rem_euclid(count))
        .map(|(unit, at)| {
            let at: Vec<String> = at.into_iter().map(|(_, place)| place).collect();
            (unit, format!("unit {unit} ({})", at.join(", ")))
        })
        .collect();
    misplaced.sort();
    Ok(misplaced.into_iter().map(|(_, text)| text).collect())
}

/// Holds in `committing`: those in the committing set, and any hold record whose
/// status says so (the two must agree; either is a violation once traffic stopped).
async fn committing_holds(
    redis: &mut RedisConn,
    committing_key: &str,
    holds_key: &str,
) -> Result<Vec<String>> {
    let mut ids: BTreeSet<String> = redis::cmd("ZRANGE")
        .arg(committing_key)
        .arg(0)
        .arg(-1)
        .query_async::<Vec<String>>(redis)
        .await?
        .into_iter()
        .collect();
    for (id, raw) in hash_entries(redis, holds_key).await? {
        let status = serde_json::from_str::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| v.get("s").and_then(|s| s.as_str()).map(str::to_owned));
        if status.as_deref() == Some("committing") {
            ids.insert(id);
        }
    }
    Ok(ids.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_is_conserved_only_when_the_parts_add_up_to_the_sale_total() {
        let stock = StockView {
            total: 10,
            available: 6,
            held: 1,
            sold: 3,
        };
        assert!(stock_conserved(&stock, 10));
        assert!(!stock_conserved(&StockView { held: 2, ..stock }, 10));
        assert!(
            !stock_conserved(&stock, 11),
            "Redis and Postgres disagree on total"
        );
    }
}
