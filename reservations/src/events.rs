//! The domain events this crate emits, as one type used on both sides of the outbox.
//!
//! Checkout serialises a [`DomainEvent`] into the `outbox` table with [`append`], in the
//! transaction that causes it; the outbox relay and its workers (crate `outbox-relay`)
//! and `flashsale verify` read the same type back with [`DomainEvent::parse`]. The
//! names stored in `outbox.aggregate_type` / `outbox.event_type` (and carried by the
//! stream entries) are the constants below: nowhere else in the code base spells them.
//!
//! Adding an event (say `OrderCancelled`) is one edit here: a payload struct, a variant,
//! and its arms in the `match`es of [`DomainEvent`] (the compiler lists them). The enum
//! is `#[non_exhaustive]`, so consumers in other crates already have an arm for events
//! they do not handle and keep compiling.

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ids::{OrderId, ReservationId, SaleId, ShopperId};
use crate::payment::PaymentRef;
use crate::sales::Money;
use crate::Result;

/// The aggregate type of orders: `outbox.aggregate_type`, and so the name of the
/// order stream.
pub const ORDER_AGGREGATE: &str = "order";

/// The event type of [`DomainEvent::OrderPlaced`] (`outbox.event_type`, the stream
/// entry's `type`).
pub const ORDER_PLACED: &str = "OrderPlaced";

/// The event type of [`DomainEvent::OrderCancelled`].
pub const ORDER_CANCELLED: &str = "OrderCancelled";

/// The event type of [`DomainEvent::OrderRefunded`].
pub const ORDER_REFUNDED: &str = "OrderRefunded";

/// The aggregate type of sales: `outbox.aggregate_type` of the sale lifecycle events,
/// and so the name of the sale stream.
pub const SALE_AGGREGATE: &str = "sale";

/// The event type of [`DomainEvent::SaleStarted`].
pub const SALE_STARTED: &str = "SaleStarted";

/// The event type of [`DomainEvent::SaleSoldOut`].
pub const SALE_SOLD_OUT: &str = "SaleSoldOut";

/// The event type of [`DomainEvent::SaleEnded`].
pub const SALE_ENDED: &str = "SaleEnded";

/// Every event the domain emits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DomainEvent {
    /// An order committed; its money is authorized and waits for capture.
    OrderPlaced(OrderPlaced),
    /// The shopper cancelled a confirmed order (its units are free again).
    OrderCancelled(OrderClosed),
    /// The merchant refunded a confirmed order (its units restocked or retired).
    OrderRefunded(OrderClosed),
    /// A sale's start time passed (noticed once per sale).
    SaleStarted(SaleMoment),
    /// A live sale sold its last unit (noticed once per sale).
    SaleSoldOut(SaleMoment),
    /// A sale ended: its end time passed or the merchant ended it (once per sale).
    SaleEnded(SaleMoment),
}

/// The payload of [`ORDER_CANCELLED`] and [`ORDER_REFUNDED`]: which order left
/// `confirmed`, what it was worth, and where its units went.
///
/// Stored format, like [`OrderPlaced`]: fields may be added, never renamed or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderClosed {
    /// The order.
    pub order_id: OrderId,
    /// Its sale.
    pub sale_id: SaleId,
    /// Its shopper.
    pub shopper_id: ShopperId,
    /// The hold it came from.
    pub reservation_id: ReservationId,
    /// Units it had.
    pub quantity: i32,
    /// What it was charged.
    pub amount: Money,
    /// Whether its units went back on sale (false: retired).
    pub restocked: bool,
    /// When the status moved.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The payload of the sale lifecycle events ([`SALE_STARTED`], [`SALE_SOLD_OUT`],
/// [`SALE_ENDED`]): which sale, its schedule, and when the moment was noticed.
///
/// Stored format, like [`OrderPlaced`]: fields may be added, never renamed or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleMoment {
    /// The sale.
    pub sale_id: SaleId,
    /// Its scheduled start.
    pub starts_at: chrono::DateTime<chrono::Utc>,
    /// Its scheduled end.
    pub ends_at: chrono::DateTime<chrono::Utc>,
    /// When the moment happened (or was noticed: the lifecycle loop runs every second).
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The payload of [`ORDER_PLACED`]: what the workers need to confirm, capture and count
/// an order without reading it back from Postgres.
///
/// The JSON shape is the stored format of every outbox row and stream entry ever
/// written: fields may be added (with a default), never renamed or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The order.
    pub order_id: OrderId,
    /// The sale it belongs to.
    pub sale_id: SaleId,
    /// Who bought.
    pub shopper_id: ShopperId,
    /// The hold the order was made from.
    pub reservation_id: ReservationId,
    /// Units bought.
    pub quantity: i32,
    /// What the shopper pays.
    pub amount: Money,
    /// The provider's payment to capture (absent from events written before payments
    /// were reached over HTTP: the worker then finds it by the order id, which is the
    /// attempt id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentRef>,
    /// The order's lines per variant (v1.1; absent from events written before carts,
    /// which read as no lines: `quantity` and `amount` are the totals either way).
    #[serde(default)]
    pub lines: Vec<crate::checkout::lines::OrderLine>,
}

impl DomainEvent {
    /// The event type name stored with it (e.g. [`ORDER_PLACED`]).
    pub fn event_type(&self) -> &'static str {
        match self {
            DomainEvent::OrderPlaced(_) => ORDER_PLACED,
            DomainEvent::OrderCancelled(_) => ORDER_CANCELLED,
            DomainEvent::OrderRefunded(_) => ORDER_REFUNDED,
            DomainEvent::SaleStarted(_) => SALE_STARTED,
            DomainEvent::SaleSoldOut(_) => SALE_SOLD_OUT,
            DomainEvent::SaleEnded(_) => SALE_ENDED,
        }
    }

    /// The kind of thing it happened to (e.g. [`ORDER_AGGREGATE`]); picks the stream.
    pub fn aggregate_type(&self) -> &'static str {
        match self {
            DomainEvent::OrderPlaced(_)
            | DomainEvent::OrderCancelled(_)
            | DomainEvent::OrderRefunded(_) => ORDER_AGGREGATE,
            DomainEvent::SaleStarted(_)
            | DomainEvent::SaleSoldOut(_)
            | DomainEvent::SaleEnded(_) => SALE_AGGREGATE,
        }
    }

    /// Which one it happened to.
    pub fn aggregate_id(&self) -> Uuid {
        match self {
            DomainEvent::OrderPlaced(e) => e.order_id.0,
            DomainEvent::OrderCancelled(e) | DomainEvent::OrderRefunded(e) => e.order_id.0,
            DomainEvent::SaleStarted(e)
            | DomainEvent::SaleSoldOut(e)
            | DomainEvent::SaleEnded(e) => e.sale_id.0,
        }
    }

    /// The payload as stored in `outbox.payload`.
    pub fn payload(&self) -> serde_json::Result<serde_json::Value> {
        match self {
            DomainEvent::OrderPlaced(e) => serde_json::to_value(e),
            DomainEvent::OrderCancelled(e) | DomainEvent::OrderRefunded(e) => {
                serde_json::to_value(e)
            }
            DomainEvent::SaleStarted(e)
            | DomainEvent::SaleSoldOut(e)
            | DomainEvent::SaleEnded(e) => serde_json::to_value(e),
        }
    }

    /// Reads an event back from its type name and payload JSON text. `Ok(None)` for a
    /// type this build does not know (written by a newer one): the caller decides
    /// whether that is a skip or a failure. A known type whose payload does not parse
    /// is an error, and will be one however often it is retried.
    pub fn parse(event_type: &str, payload: &str) -> serde_json::Result<Option<DomainEvent>> {
        Ok(match event_type {
            ORDER_PLACED => Some(DomainEvent::OrderPlaced(serde_json::from_str(payload)?)),
            ORDER_CANCELLED => Some(DomainEvent::OrderCancelled(serde_json::from_str(payload)?)),
            ORDER_REFUNDED => Some(DomainEvent::OrderRefunded(serde_json::from_str(payload)?)),
            SALE_STARTED => Some(DomainEvent::SaleStarted(serde_json::from_str(payload)?)),
            SALE_SOLD_OUT => Some(DomainEvent::SaleSoldOut(serde_json::from_str(payload)?)),
            SALE_ENDED => Some(DomainEvent::SaleEnded(serde_json::from_str(payload)?)),
            _ => None,
        })
    }
}

/// The outbox row of an event: what [`append`] inserts, and what a statement that
/// writes its event together with its cause (checkout's order statement) binds to
/// [`OUTBOX_COLUMNS`].
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// The event id (the consumers' deduplication key), time-ordered.
    pub id: Uuid,
    /// [`DomainEvent::aggregate_type`].
    pub aggregate_type: &'static str,
    /// [`DomainEvent::aggregate_id`].
    pub aggregate_id: Uuid,
    /// [`DomainEvent::event_type`].
    pub event_type: &'static str,
    /// [`DomainEvent::payload`].
    pub payload: serde_json::Value,
}

/// The outbox columns an event's row fills, in [`OutboxRow`]'s order then the
/// correlation id; `occurred_at` is the transaction's time (the column default).
pub const OUTBOX_COLUMNS: &str =
    "id, aggregate_type, aggregate_id, event_type, payload, correlation_id";

impl DomainEvent {
    /// The event's outbox row, under a new event id.
    pub fn outbox_row(&self) -> Result<OutboxRow> {
        Ok(OutboxRow {
            id: Uuid::now_v7(),
            aggregate_type: self.aggregate_type(),
            aggregate_id: self.aggregate_id(),
            event_type: self.event_type(),
            payload: self.payload().map_err(anyhow::Error::from)?,
        })
    }
}

/// Writes `event` to the outbox on `tx`, the transaction that causes it, so the event
/// commits or rolls back with its cause; returns the event id (the consumers'
/// deduplication key). `correlation_id` ties the event to the request behind it.
pub async fn append(
    tx: &mut PgConnection,
    event: &DomainEvent,
    correlation_id: &str,
) -> Result<Uuid> {
    let row = event.outbox_row()?;
    sqlx::query(&format!(
        "insert into outbox ({OUTBOX_COLUMNS}) values ($1, $2, $3, $4, $5, $6)"
    ))
    .bind(row.id)
    .bind(row.aggregate_type)
    .bind(row.aggregate_id)
    .bind(row.event_type)
    .bind(&row.payload)
    .bind(correlation_id)
    .execute(&mut *tx)
    .await?;
    Ok(row.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed() -> DomainEvent {
        DomainEvent::OrderPlaced(OrderPlaced {
            order_id: OrderId::new(),
            sale_id: SaleId::new(),
            shopper_id: ShopperId::new(),
            reservation_id: ReservationId::new(),
            quantity: 2,
            amount: Money {
                amount_minor: 25800,
                currency: "EUR".into(),
            },
            payment: Some(PaymentRef("pi_1".into())),
            lines: Vec::new(),
        })
    }

    #[test]
    fn an_event_written_before_it_named_its_payment_still_reads() {
        let old = r#"{"order_id":"0193c2f8-7a43-7000-8000-000000000001","sale_id":"0193c2f8-7a43-7000-8000-000000000002",
            "shopper_id":"0193c2f8-7a43-7000-8000-000000000003","reservation_id":"0193c2f8-7a43-7000-8000-000000000004",
            "quantity":1,"amount":{"amount_minor":12900,"currency":"EUR"}}"#;
        let Some(DomainEvent::OrderPlaced(event)) = DomainEvent::parse(ORDER_PLACED, old).unwrap()
        else {
            panic!("an OrderPlaced");
        };
        assert_eq!(event.payment, None);
    }

    #[test]
    fn an_event_survives_the_trip_through_its_stored_form() {
        let event = placed();
        let payload = event.payload().unwrap().to_string();
        assert_eq!(
            DomainEvent::parse(event.event_type(), &payload).unwrap(),
            Some(event)
        );
    }

    #[test]
    fn a_sale_lifecycle_event_survives_the_trip_and_goes_to_the_sale_stream() {
        let at = chrono::DateTime::parse_from_rfc3339("2031-01-01T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let moment = SaleMoment {
            sale_id: SaleId::new(),
            starts_at: at,
            ends_at: at + chrono::Duration::hours(2),
            at,
        };
        for event in [
            DomainEvent::SaleStarted(moment.clone()),
            DomainEvent::SaleSoldOut(moment.clone()),
            DomainEvent::SaleEnded(moment.clone()),
        ] {
            assert_eq!(event.aggregate_type(), SALE_AGGREGATE);
            assert_eq!(event.aggregate_id(), moment.sale_id.0);
            let payload = event.payload().unwrap().to_string();
            assert_eq!(
                DomainEvent::parse(event.event_type(), &payload).unwrap(),
                Some(event)
            );
        }
    }

    #[test]
    fn an_unknown_event_type_is_none_and_a_bad_payload_an_error() {
        assert_eq!(DomainEvent::parse("SomethingElse", "{}").unwrap(), None);
        assert!(DomainEvent::parse(ORDER_PLACED, r#"{"hello":"world"}"#).is_err());
    }
}
