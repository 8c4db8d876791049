//! The `webhooks` consumer's effect: an event becomes one message and one delivery per
//! subscribed endpoint, in the transaction that records it as processed (see the
//! module docs of [`crate::webhooks`]). No endpoint is called here.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use reservations::events::DomainEvent;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::EventType;
use crate::consumer::ConsumerKind;
use crate::effects::{Applied, Failure};
use crate::error::{Error, Result};

/// An event read from a stream, for the fan-out.
pub(crate) struct Incoming {
    /// The event id (deduplication key).
    pub(crate) event_id: Uuid,
    /// When it happened (the body's `timestamp`).
    pub(crate) occurred_at: DateTime<Utc>,
    /// The event.
    pub(crate) event: DomainEvent,
}

/// The body of a delivery: `{ type, timestamp, data }`, in that order.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    data: serde_json::Value,
}

/// An order as far as its event carries it (API.md's **order**, without the
/// confirmation, which the event precedes).
#[derive(Serialize)]
struct OrderData<'a> {
    order_id: Uuid,
    sale_id: Uuid,
    reservation_id: Uuid,
    quantity: i32,
    amount: &'a reservations::sales::Money,
    status: &'static str,
    created_at: String,
    /// The order's lines (v1.1): variant, SKU, quantity, unit price and amount.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    lines: &'a [reservations::checkout::lines::OrderLine],
}

/// The `data` of `order.cancelled` and `order.refunded`: the order as it left
/// `confirmed`, whether its units went back on sale, and when.
#[derive(Serialize)]
struct ClosedData<'a> {
    order_id: Uuid,
    sale_id: Uuid,
    reservation_id: Uuid,
    quantity: i32,
    amount: &'a reservations::sales::Money,
    status: &'static str,
    restocked: bool,
    closed_at: String,
}

/// A message ready to store: its type, the sale whose merchant hears of it, the order
/// or sale it is about, and the body.
struct Message {
    event_id: Uuid,
    kind: EventType,
    sale_id: Uuid,
    aggregate_id: Uuid,
    occurred_at: DateTime<Utc>,
    body: String,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The message of an event; `None` for events merchants do not hear of.
fn message(incoming: &Incoming) -> Result<Option<Message>> {
    let Some(kind) = EventType::of(&incoming.event) else {
        return Ok(None);
    };
    let (sale_id, aggregate_id, data) = match &incoming.event {
        DomainEvent::OrderPlaced(order) => (
            order.sale_id.0,
            order.order_id.0,
            serde_json::to_value(OrderData {
                order_id: order.order_id.0,
                sale_id: order.sale_id.0,
                reservation_id: order.reservation_id.0,
                quantity: order.quantity,
                amount: &order.amount,
                status: "confirmed",
                created_at: rfc3339(incoming.occurred_at),
                lines: &order.lines,
            }),
        ),
        DomainEvent::OrderCancelled(closed) | DomainEvent::OrderRefunded(closed) => (
            closed.sale_id.0,
            closed.order_id.0,
            serde_json::to_value(ClosedData {
                order_id: closed.order_id.0,
                sale_id: closed.sale_id.0,
                reservation_id: closed.reservation_id.0,
                quantity: closed.quantity,
                amount: &closed.amount,
                status: if matches!(incoming.event, DomainEvent::OrderCancelled(_)) {
                    "cancelled"
                } else {
                    "refunded"
                },
                restocked: closed.restocked,
                closed_at: rfc3339(closed.at),
            }),
        ),
        DomainEvent::SaleStarted(moment)
        | DomainEvent::SaleSoldOut(moment)
        | DomainEvent::SaleEnded(moment) => (
            moment.sale_id.0,
            moment.sale_id.0,
            serde_json::to_value(moment),
        ),
        _ => return Ok(None),
    };
    let data = data.map_err(|e| Error::MalformedEvent(e.to_string()))?;
    let body = serde_json::to_string(&Body {
        kind: kind.name(),
        timestamp: rfc3339(incoming.occurred_at),
        data,
    })
    .map_err(|e| Error::MalformedEvent(e.to_string()))?;
    Ok(Some(Message {
        event_id: incoming.event_id,
        kind,
        sale_id,
        aggregate_id,
        occurred_at: incoming.occurred_at,
        body,
    }))
}

/// The `webhook-id` of an event's message: the same on every endpoint and retry.
pub(crate) fn message_id(event_id: Uuid) -> String {
    format!("msg_{}", event_id.simple())
}

/// Fans `events` out; one outcome per event, in order. Events merchants do not hear
/// of are recorded as processed all the same (every group settles every event).
pub(crate) async fn fan_out(pool: &PgPool, events: &[Incoming]) -> Vec<Result<Applied, Failure>> {
    let mut outcomes: Vec<Option<Result<Applied, Failure>>> = vec![None; events.len()];
    let mut first: HashMap<Uuid, usize> = HashMap::new();
    let mut messages: Vec<(usize, Option<Message>)> = Vec::new();
    for (i, incoming) in events.iter().enumerate() {
        if first.contains_key(&incoming.event_id) {
            outcomes[i] = Some(Ok(Applied::Duplicate));
            continue;
        }
        first.insert(incoming.event_id, i);
        match message(incoming) {
            Ok(m) => messages.push((i, m)),
            Err(e) => outcomes[i] = Some(Err(Failure::from(&e))),
        }
    }

    // Whose sale: a sale that does not exist makes a poison event (it fails alone and
    // is dead-lettered at the delivery limit), never a silent drop.
    let sales: Vec<Uuid> = messages
        .iter()
        .filter_map(|(_, m)| m.as_ref().map(|m| m.sale_id))
        .collect();
    let merchants: HashMap<Uuid, Uuid> = match sqlx::query_as::<_, (Uuid, Uuid)>(
        "select id, merchant_id from sales where id = any($1)",
    )
    .bind(&sales)
    .fetch_all(pool)
    .await
    {
        Ok(rows) => rows.into_iter().collect(),
        Err(e) => {
            let failure = Failure::from(&Error::from(e));
            return events.iter().map(|_| Err(failure.clone())).collect();
        }
    };
    let mut to_record = Vec::new();
    for (i, m) in messages {
        match m {
            Some(m) if !merchants.contains_key(&m.sale_id) => {
                let e =
                    Error::UnknownReference(format!("sale {} of event {}", m.sale_id, m.event_id));
                outcomes[i] = Some(Err(Failure::from(&e)));
            }
            m => to_record.push((i, events[i].event_id, m)),
        }
    }

    match record(pool, &to_record, &merchants).await {
        Ok(inserted) => {
            for (i, event_id, _) in &to_record {
                outcomes[*i] = Some(Ok(if inserted.contains(event_id) {
                    Applied::Applied
                } else {
                    Applied::Duplicate
                }));
            }
        }
        Err(e) => {
            let failure = Failure::from(&e);
            for (i, _, _) in &to_record {
                outcomes[*i] = Some(Err(failure.clone()));
            }
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every event has an outcome"))
        .collect()
}

/// One transaction: `processed_events`, then the messages and deliveries of the events
/// this call inserted. Returns the inserted event ids.
async fn record(
    pool: &PgPool,
    events: &[(usize, Uuid, Option<Message>)],
    merchants: &HashMap<Uuid, Uuid>,
) -> Result<std::collections::HashSet<Uuid>> {
    if events.is_empty() {
        return Ok(Default::default());
    }
    // Sorted, so overlapping batches take their row locks in the same order.
    let mut ids: Vec<Uuid> = events.iter().map(|(_, id, _)| *id).collect();
    ids.sort_unstable();
    let mut tx = pool.begin().await?;
    let inserted: std::collections::HashSet<Uuid> = sqlx::query_scalar::<_, Uuid>(
        "insert into processed_events (consumer, event_id) \
         select $1, event_id from unnest($2::uuid[]) as event_id \
         on conflict do nothing returning event_id",
    )
    .bind(ConsumerKind::Webhooks.group())
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let fresh: Vec<&Message> = events
        .iter()
        .filter_map(|(_, id, m)| m.as_ref().filter(|_| inserted.contains(id)))
        .collect();
    if !fresh.is_empty() {
        let event_ids: Vec<Uuid> = fresh.iter().map(|m| m.event_id).collect();
        let message_ids: Vec<String> = fresh.iter().map(|m| message_id(m.event_id)).collect();
        let kinds: Vec<&str> = fresh.iter().map(|m| m.kind.name()).collect();
        let aggregates: Vec<Uuid> = fresh.iter().map(|m| m.aggregate_id).collect();
        let bodies: Vec<&str> = fresh.iter().map(|m| m.body.as_str()).collect();
        let times: Vec<DateTime<Utc>> = fresh.iter().map(|m| m.occurred_at).collect();
        let owners: Vec<Uuid> = fresh.iter().map(|m| merchants[&m.sale_id]).collect();
        sqlx::query(
            // Only messages some endpoint will receive: a merchant without webhooks
            // (or a deployment without any) stores nothing per order.
            "insert into webhook_messages (event_id, message_id, event_type, aggregate_id, body, occurred_at) \
             select f.event_id, f.message_id, f.event_type, f.aggregate_id, f.body, f.occurred_at \
             from unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::timestamptz[], $7::uuid[]) \
                  as f(event_id, message_id, event_type, aggregate_id, body, occurred_at, merchant_id) \
             where exists (select 1 from webhook_endpoints e \
                           where e.merchant_id = f.merchant_id and f.event_type = any(e.events)) \
             on conflict (event_id) do nothing",
        )
        .bind(&event_ids)
        .bind(&message_ids)
        .bind(&kinds)
        .bind(&aggregates)
        .bind(&bodies)
        .bind(&times)
        .bind(&owners)
        .execute(&mut *tx)
        .await?;
        // Served by webhook_endpoints_merchant: one probe per merchant in the batch.
        sqlx::query(
            "insert into webhook_deliveries \
                 (endpoint_id, event_id, event_type, aggregate_id, occurred_at, next_attempt_at) \
             select e.id, f.event_id, f.event_type, f.aggregate_id, f.occurred_at, now() \
             from unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::timestamptz[]) \
                  as f(event_id, merchant_id, event_type, aggregate_id, occurred_at) \
             join webhook_messages m on m.event_id = f.event_id \
             join webhook_endpoints e on e.merchant_id = f.merchant_id and f.event_type = any(e.events) \
             on conflict (endpoint_id, event_id) do nothing",
        )
        .bind(&event_ids)
        .bind(&owners)
        .bind(&kinds)
        .bind(&aggregates)
        .bind(&times)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(inserted)
}
