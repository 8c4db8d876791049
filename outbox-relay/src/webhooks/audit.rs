//! The webhooks audit (`flashsale verify`): the fan-out reached every subscriber, and
//! every delivery's record is in a state the delivery loop can leave it in.
//!
//! - `webhooks_fanned_out`: every `OrderPlaced` event of the sale that the `webhooks`
//!   group processed has one delivery to each endpoint of the sale's merchant that
//!   subscribes to `order.placed` and existed when the event was processed (an
//!   endpoint registered later rightly has none);
//! - `webhook_deliveries_consistent`: a delivered delivery has its `delivered_at`, and
//!   only it; a pending one has its `next_attempt_at`; a failed one used every attempt
//!   of the schedule.
//!
//! It reads `outbox`, `processed_events`, `webhook_endpoints` and `webhook_deliveries`
//! of the sale's orders.

use reservations::audit::{Audit, Check};
use reservations::ids::SaleId;
use sqlx::PgPool;
use uuid::Uuid;

use super::{EventType, Schedule};
use crate::consumer::ConsumerKind;
use crate::event::ORDER_PLACED;
use crate::Result;

/// The webhooks audit's checks, in report order; no figures.
pub async fn audit(db: &PgPool, sale: SaleId) -> Result<Audit<()>> {
    let missing: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "select w.id, e.id from outbox e \
         join orders o on o.id = e.aggregate_id \
         join sales s on s.id = o.sale_id \
         join processed_events p on p.event_id = e.id and p.consumer = $3 \
         join webhook_endpoints w on w.merchant_id = s.merchant_id and $4 = any(w.events) \
              and w.created_at < p.processed_at \
         where o.sale_id = $1 and e.event_type = $2 \
           and not exists (select 1 from webhook_deliveries d \
                           where d.endpoint_id = w.id and d.event_id = e.id) \
         order by w.id, e.id",
    )
    .bind(sale.0)
    .bind(ORDER_PLACED)
    .bind(ConsumerKind::Webhooks.group())
    .bind(EventType::OrderPlaced.name())
    .fetch_all(db)
    .await?;
    let inconsistent: Vec<i64> = sqlx::query_scalar(
        "select d.id from webhook_deliveries d join orders o on o.id = d.aggregate_id \
         where o.sale_id = $1 and ( \
               (d.state = 'delivered') <> (d.delivered_at is not null) \
            or (d.state = 'pending' and d.next_attempt_at is null) \
            or (d.state = 'failed' and d.attempts < $2)) \
         order by d.id",
    )
    .bind(sale.0)
    .bind(Schedule::standard().attempts() as i32)
    .fetch_all(db)
    .await?;
    let checks = vec![
        Check::from_offenders(
            "webhooks_fanned_out",
            "every OrderPlaced event has a delivery to each endpoint subscribed to it when it was processed",
            format!("{} missing", missing.len()),
            missing
                .iter()
                .map(|(endpoint, event)| format!("endpoint {endpoint}: event {event}"))
                .collect(),
        ),
        Check::from_offenders(
            "webhook_deliveries_consistent",
            "every delivery is delivered (with its time), pending (with its next attempt) or failed after every attempt",
            format!("{} inconsistent", inconsistent.len()),
            inconsistent.iter().map(|id| format!("delivery {id}")).collect(),
        ),
    ];
    Ok(Audit {
        checks,
        figures: (),
    })
}
