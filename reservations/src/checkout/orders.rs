//! The order read model: [`Order`] as the API shows it, and the order queries (one
//! order, a shopper's pages, a sale's pages) on the general pool.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Checkout;
use crate::ids::{OrderId, ReservationId, SaleId, ShopperId};
use crate::sales::Money;
use crate::{Error, Result};

/// Whether the worker has sent the confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmationStatus {
    /// Not yet.
    Pending,
    /// Sent (see `sent_at`).
    Sent,
}

/// The confirmation block of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Confirmation {
    /// `pending` until the worker sends it.
    pub status: ConfirmationStatus,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Committed and paid (an order exists only once committed).
    Confirmed,
    /// The shopper cancelled it within the sale's window (see `crate::order_life`).
    Cancelled,
    /// The merchant refunded it.
    Refunded,
}

impl OrderStatus {
    /// The name stored in `orders.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refunded => "refunded",
        }
    }

    fn parse(stored: &str) -> OrderStatus {
        match stored {
            "cancelled" => OrderStatus::Cancelled,
            "refunded" => OrderStatus::Refunded,
            _ => OrderStatus::Confirmed,
        }
    }
}

/// An order as the API shows it. It is also what the idempotency record stores and
/// replays (see [`super::idempotency`]), so its JSON shape is a stored format too:
/// fields may be added, not renamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    /// The order's id.
    pub order_id: OrderId,
    /// Its sale.
    pub sale_id: SaleId,
    /// The hold it came from.
    pub reservation_id: ReservationId,
    /// Units bought.
    pub quantity: i64,
    /// The sum of the lines' amounts (price × quantity for a one-variant sale).
    pub amount: Money,
    /// Per variant: SKU, quantity, unit price, amount (v1.1). Absent from answers
    /// stored before lines existed, which replay without them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<super::lines::OrderLine>,
    /// `confirmed`, then `cancelled` or `refunded` (v1.1).
    pub status: OrderStatus,
    /// Until when the shopper may cancel it (v1.1): `created_at` + the sale's
    /// `cancel_window_seconds`, while that is in the future, the sale has not ended
    /// and the order is `confirmed`; null otherwise. Absent from answers stored
    /// before it existed, which replay it as null.
    #[serde(default)]
    pub cancellable_until: Option<DateTime<Utc>>,
    /// When it was committed.
    pub created_at: DateTime<Utc>,
    /// Filled in by the confirmation worker.
    pub confirmation: Confirmation,
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: Uuid,
    sale_id: Uuid,
    reservation_id: Uuid,
    quantity: i32,
    amount_minor: i64,
    currency: String,
    created_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    status: String,
    cancel_window_seconds: i32,
    sale_ends_at: DateTime<Utc>,
    sale_ended: bool,
}

/// Until when an order made at `created_at` may be cancelled, as of `now` (see
/// [`Order::cancellable_until`]); `crate::order_life` checks a cancel by the same rule.
pub(crate) fn cancellable_until(
    status: OrderStatus,
    created_at: DateTime<Utc>,
    window_seconds: i32,
    sale_ends_at: DateTime<Utc>,
    sale_ended: bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let until = created_at + chrono::Duration::seconds(window_seconds.into());
    (status == OrderStatus::Confirmed
        && window_seconds > 0
        && now < until
        && now < sale_ends_at
        && !sale_ended)
        .then_some(until)
}

impl OrderRow {
    fn into_order(self, now: DateTime<Utc>) -> Order {
        let status = OrderStatus::parse(&self.status);
        let until = cancellable_until(
            status,
            self.created_at,
            self.cancel_window_seconds,
            self.sale_ends_at,
            self.sale_ended,
            now,
        );
        let mut order = Order::from(self);
        order.status = status;
        order.cancellable_until = until;
        order
    }
}

impl From<OrderRow> for Order {
    fn from(r: OrderRow) -> Order {
        Order {
            order_id: OrderId(r.id),
            sale_id: SaleId(r.sale_id),
            reservation_id: ReservationId(r.reservation_id),
            quantity: i64::from(r.quantity),
            amount: Money {
                amount_minor: r.amount_minor,
                currency: r.currency,
            },
            lines: Vec::new(),
            status: OrderStatus::Confirmed,
            cancellable_until: None,
            created_at: r.created_at,
            confirmation: Confirmation {
                status: if r.sent_at.is_some() {
                    ConfirmationStatus::Sent
                } else {
                    ConfirmationStatus::Pending
                },
                sent_at: r.sent_at,
            },
        }
    }
}

const ORDER_SELECT: &str =
    "select o.id, o.sale_id, o.reservation_id, o.quantity, o.amount_minor, o.currency, \
     o.created_at, n.sent_at, o.status, s.cancel_window_seconds, s.ends_at as sale_ends_at, \
     s.state = 'ended' as sale_ended \
     from orders o join sales s on s.id = o.sale_id left join notifications n on n.order_id = o.id";

impl Checkout {
    /// A shopper's own order.
    pub async fn order(&self, shopper: ShopperId, id: OrderId) -> Result<Order> {
        let sql = format!("{ORDER_SELECT} where o.id = $1 and o.shopper_id = $2");
        let row: Option<OrderRow> = sqlx::query_as(&sql)
            .bind(id.0)
            .bind(shopper.0)
            .fetch_optional(&self.reads)
            .await?;
        let now = self.sales.now();
        let order = row.map(|r| r.into_order(now)).ok_or(Error::OrderNotFound)?;
        Ok(self.with_lines(vec![order]).await?.remove(0))
    }

    /// An order of `sale` (the merchant has been checked).
    pub(crate) async fn order_of_sale(&self, sale: SaleId, id: OrderId) -> Result<Order> {
        let sql = format!("{ORDER_SELECT} where o.id = $1 and o.sale_id = $2");
        let row: Option<OrderRow> = sqlx::query_as(&sql)
            .bind(id.0)
            .bind(sale.0)
            .fetch_optional(&self.reads)
            .await?;
        let now = self.sales.now();
        let order = row.map(|r| r.into_order(now)).ok_or(Error::OrderNotFound)?;
        Ok(self.with_lines(vec![order]).await?.remove(0))
    }

    /// The orders with their lines (one query for all of them).
    pub(crate) async fn with_lines(&self, mut orders: Vec<Order>) -> Result<Vec<Order>> {
        let ids: Vec<Uuid> = orders.iter().map(|o| o.order_id.0).collect();
        let mut lines = super::lines::lines_for(&self.reads, &ids).await?;
        for order in &mut orders {
            let of_order = lines.remove(&order.order_id.0).unwrap_or_default();
            // A v1 sale's order (its one variant has the sale's id) keeps the v1 shape.
            let v1 = of_order.len() == 1 && of_order[0].variant_id.0 == order.sale_id.0;
            order.lines = if v1 { Vec::new() } else { of_order };
        }
        Ok(orders)
    }

    /// A page of a shopper's orders, newest first, after the keyset position `after`.
    pub async fn shopper_orders(
        &self,
        shopper: ShopperId,
        limit: i64,
        after: Option<(DateTime<Utc>, Uuid)>,
    ) -> Result<Vec<Order>> {
        self.page("o.shopper_id", shopper.0, limit, after).await
    }

    /// A page of a sale's orders, newest first (the merchant has been checked).
    pub async fn sale_orders(
        &self,
        sale: SaleId,
        limit: i64,
        after: Option<(DateTime<Utc>, Uuid)>,
    ) -> Result<Vec<Order>> {
        self.page("o.sale_id", sale.0, limit, after).await
    }

    async fn page(
        &self,
        column: &str,
        value: Uuid,
        limit: i64,
        after: Option<(DateTime<Utc>, Uuid)>,
    ) -> Result<Vec<Order>> {
        let sql = format!(
            "{ORDER_SELECT} where {column} = $1 and ($2::timestamptz is null or (o.created_at, o.id) < ($2, $3)) \
             order by o.created_at desc, o.id desc limit $4"
        );
        let rows: Vec<OrderRow> = sqlx::query_as(&sql)
            .bind(value)
            .bind(after.map(|a| a.0))
            .bind(after.map(|a| a.1))
            .bind(limit)
            .fetch_all(&self.reads)
            .await?;
        let now = self.sales.now();
        self.with_lines(rows.into_iter().map(|r| r.into_order(now)).collect())
            .await
    }
}
