//! The lines of an order (v1.1): per variant, its SKU, quantity, unit price and amount.
//!
//! # Decision: lines are derived, not stored
//!
//! Every unit number belongs to one variant (`variant_units`), and a variant's price
//! cannot change once the sale has started (before it no hold, so no order, exists).
//! So an order's lines follow from its `order_units` rows: no `order_lines` table, and
//! the order transaction stays the one statement it was (order, units, outbox). The
//! order's `quantity` and `amount` stay the totals; the `OrderPlaced` event carries
//! the lines computed at checkout, so consumers need no lookup.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ids::VariantId;
use crate::sales::{variant_of_unit, Money, Variant};
use crate::Result;

/// One line of an order: the units of one variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    /// The variant.
    pub variant_id: VariantId,
    /// Its SKU.
    pub sku: String,
    /// Units of it.
    pub quantity: i64,
    /// Its price per unit.
    pub unit_price: Money,
    /// `unit_price` × `quantity`.
    pub amount: Money,
}

/// The lines of an order of `units` of a sale with `variants` (ordinal order). A unit
/// no variant claims (none should exist) is priced as the first variant.
pub(crate) fn lines_of(variants: &[Variant], units: &[i32]) -> Vec<OrderLine> {
    let mut counts = vec![0i64; variants.len()];
    for &unit in units {
        let k = variant_of_unit(variants, unit).map_or(0, |v| v.ordinal as usize);
        if let Some(c) = counts.get_mut(k) {
            *c += 1;
        }
    }
    variants
        .iter()
        .zip(counts)
        .filter(|&(_, n)| n > 0)
        .map(|(v, n)| line(v.id, v.sku.clone(), n, v.price.clone()))
        .collect()
}

fn line(variant_id: VariantId, sku: String, quantity: i64, unit_price: Money) -> OrderLine {
    OrderLine {
        variant_id,
        sku,
        quantity,
        amount: Money {
            amount_minor: unit_price.amount_minor * quantity,
            currency: unit_price.currency.clone(),
        },
        unit_price,
    }
}

/// The sum of the lines' amounts in `currency`.
pub(crate) fn total(lines: &[OrderLine], currency: &str) -> Money {
    Money {
        amount_minor: lines.iter().map(|l| l.amount.amount_minor).sum(),
        currency: currency.to_owned(),
    }
}

/// The lines of each of `orders`, read from their units in one query.
pub(crate) async fn lines_for(
    pool: &PgPool,
    orders: &[Uuid],
) -> Result<HashMap<Uuid, Vec<OrderLine>>> {
    let rows: Vec<(Uuid, Uuid, String, i64, i64, String)> = sqlx::query_as(
        "select u.order_id, v.id, v.sku, count(*)::bigint, v.price_minor, s.currency \
         from order_units u \
         join variant_units r on r.sale_id = u.sale_id \
           and u.unit_no between r.first_unit and r.last_unit \
         join sale_variants v on v.id = r.variant_id \
         join sales s on s.id = v.sale_id \
         where u.order_id = any($1) \
         group by u.order_id, v.id, v.sku, v.price_minor, s.currency, v.ordinal \
         order by u.order_id, v.ordinal",
    )
    .bind(orders)
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<Uuid, Vec<OrderLine>> = HashMap::new();
    for (order, variant, sku, quantity, price_minor, currency) in rows {
        let price = Money {
            amount_minor: price_minor,
            currency,
        };
        out.entry(order)
            .or_default()
            .push(line(VariantId(variant), sku, quantity, price));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sales::UnitRange;

    fn variant(ordinal: i32, price: i64, first: i32, last: i32) -> Variant {
        Variant {
            id: VariantId::new(),
            ordinal,
            sku: format!("S{ordinal}"),
            name: String::new(),
            price: Money {
                amount_minor: price,
                currency: "EUR".into(),
            },
            per_user_limit: None,
            total: last - first + 1,
            units: vec![UnitRange { first, last }],
        }
    }

    #[test]
    fn an_orders_lines_count_its_units_per_variant_and_price_each() {
        let variants = [
            variant(0, 100, 1, 10),
            variant(1, 250, 11, 20),
            variant(2, 5, 21, 30),
        ];
        let lines = lines_of(&variants, &[3, 12, 15, 4, 19]);
        let summary: Vec<(String, i64, i64)> = lines
            .iter()
            .map(|l| (l.sku.clone(), l.quantity, l.amount.amount_minor))
            .collect();
        assert_eq!(
            summary,
            [("S0".to_owned(), 2, 200), ("S1".to_owned(), 3, 750)]
        );
        assert_eq!(total(&lines, "EUR").amount_minor, 950);
    }
}
