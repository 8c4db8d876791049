//! What a sale's orders contribute to its post-event report: counts by status, units
//! sold per variant and when each variant (and the sale) sold its last unit, revenue,
//! and the orders export one line per order line, read a page at a time.
//!
//! # Decisions
//!
//! - **The same figures as `flashsale verify`**: `orders` counts every order row and
//!   `units_sold` every `order_units` row of the sale, as the stock audit does.
//! - **Revenue is what is kept**: the amounts of `confirmed` orders; cancelled and
//!   refunded orders are counted, not summed.
//! - **Sold out** is when the last sellable unit of a variant was sold: the newest
//!   order holding one of its units, once its units sold reach its total; the sale is
//!   sold out when every variant is, at the latest of theirs.
//! - **The export pages by keyset** (`created_at`, `id`, oldest first), each page one
//!   short statement on the read pool: no transaction spans the export, and memory is
//!   one page whatever the sale's size. Lines are derived from the order's units by
//!   variant, as for the order itself (see [`super::lines`]); an order whose units are
//!   gone (returned to stock) is one line with its own totals and no variant.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Checkout;
use crate::ids::SaleId;
use crate::Result;

/// One variant's sales.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantSales {
    /// The variant.
    pub variant_id: Uuid,
    /// Units of it in orders.
    pub units_sold: i64,
    /// When its last sellable unit was sold; `None` while any is left.
    pub sold_out_at: Option<DateTime<Utc>>,
}

/// The order figures of a sale's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFigures {
    /// Every order of the sale.
    pub orders: i64,
    /// Orders the shopper cancelled.
    pub cancelled: i64,
    /// Orders the merchant refunded.
    pub refunded: i64,
    /// Every unit in an order.
    pub units_sold: i64,
    /// Amounts of the confirmed orders, in minor units of the sale's currency.
    pub revenue_minor: i64,
    /// Per variant, in ordinal order.
    pub variants: Vec<VariantSales>,
    /// When the sale's last unit was sold; `None` while any variant has units left.
    pub sold_out_at: Option<DateTime<Utc>>,
}

/// One line of the orders export.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ExportLine {
    /// The order.
    pub order_id: Uuid,
    /// When it was committed (the page's keyset position with `order_id`).
    pub created_at: DateTime<Utc>,
    /// `confirmed`, `cancelled` or `refunded`.
    pub status: String,
    /// Who bought.
    pub shopper_id: Uuid,
    /// The hold it came from.
    pub reservation_id: Uuid,
    /// The variant (`None` for an order whose units went back to stock).
    pub variant_id: Option<Uuid>,
    /// Its SKU.
    pub sku: Option<String>,
    /// Units of the variant in the order.
    pub quantity: i64,
    /// The variant's price per unit.
    pub unit_price_minor: Option<i64>,
    /// `unit_price_minor` × `quantity` (the order's amount when it has no variant).
    pub amount_minor: i64,
    /// The order's currency.
    pub currency: String,
}

type VariantRow = (Uuid, i32, i64, Option<DateTime<Utc>>);

impl Checkout {
    /// The order figures of `sale` (the merchant has been checked).
    pub async fn order_figures(&self, sale: SaleId) -> Result<OrderFigures> {
        let (orders, cancelled, refunded, revenue_minor, units_sold): (i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "select count(*), \
                    count(*) filter (where status = 'cancelled'), \
                    count(*) filter (where status = 'refunded'), \
                    coalesce(sum(amount_minor) filter (where status = 'confirmed'), 0)::bigint, \
                    (select count(*) from order_units where sale_id = $1) \
                 from orders where sale_id = $1",
            )
            .bind(sale.0)
            .fetch_one(&self.reads)
            .await?;
        let rows: Vec<VariantRow> = sqlx::query_as(
            "select v.id, v.total, count(u.unit_no)::bigint, max(o.created_at) \
             from sale_variants v \
             left join variant_units r on r.variant_id = v.id \
             left join order_units u on u.sale_id = r.sale_id \
               and u.unit_no between r.first_unit and r.last_unit \
             left join orders o on o.id = u.order_id \
             where v.sale_id = $1 \
             group by v.id, v.total, v.ordinal order by v.ordinal",
        )
        .bind(sale.0)
        .fetch_all(&self.reads)
        .await?;
        let variants: Vec<VariantSales> = rows
            .into_iter()
            .map(|(variant_id, total, units_sold, last_sold)| VariantSales {
                variant_id,
                units_sold,
                sold_out_at: last_sold.filter(|_| units_sold >= i64::from(total)),
            })
            .collect();
        let sold_out_at = if variants.iter().all(|v| v.sold_out_at.is_some()) {
            variants.iter().filter_map(|v| v.sold_out_at).max()
        } else {
            None
        };
        Ok(OrderFigures {
            orders,
            cancelled,
            refunded,
            units_sold,
            revenue_minor,
            variants,
            sold_out_at,
        })
    }

    /// The export's lines of the next `limit` orders of `sale` after the keyset
    /// position `after` (oldest first), in order, each order's lines in variant order.
    pub async fn export_page(
        &self,
        sale: SaleId,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<ExportLine>> {
        let lines = sqlx::query_as(
            "with page as ( \
               select id, created_at, status, shopper_id, reservation_id, quantity, \
                      amount_minor, currency from orders \
               where sale_id = $1 \
                 and ($2::timestamptz is null or (created_at, id) > ($2, $3)) \
               order by created_at, id limit $4) \
             select p.id as order_id, p.created_at, p.status, p.shopper_id, p.reservation_id, \
                    v.id as variant_id, v.sku, \
                    case when v.id is null then p.quantity::bigint else count(u.unit_no) end as quantity, \
                    v.price_minor as unit_price_minor, \
                    case when v.id is null then p.amount_minor \
                         else v.price_minor * count(u.unit_no) end as amount_minor, \
                    p.currency::text as currency \
             from page p \
             left join order_units u on u.order_id = p.id \
             left join variant_units r on r.sale_id = u.sale_id \
               and u.unit_no between r.first_unit and r.last_unit \
             left join sale_variants v on v.id = r.variant_id \
             group by p.id, p.created_at, p.status, p.shopper_id, p.reservation_id, \
                      p.quantity, p.amount_minor, p.currency, v.id, v.sku, v.price_minor, v.ordinal \
             order by p.created_at, p.id, v.ordinal",
        )
        .bind(sale.0)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit)
        .fetch_all(&self.reads)
        .await?;
        Ok(lines)
    }
}
