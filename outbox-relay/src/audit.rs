//! The events audit: every order's event, published and consumed, and the effects of
//! its consumers.
//!
//! It checks DESIGN.md's **every committed order has its events published and
//! consumed**: each order has exactly one `OrderPlaced` outbox row (and each such row
//! an order), every row is published, every event has exactly one `processed_events`
//! row per consumer group, the sales ledger (the `sales-ledger` consumer) counts
//! exactly the orders' units and revenue, and every order's confirmation was sent.
//!
//! It reads `outbox`, `processed_events`, `sales_ledger` and `notifications`, joined
//! to `orders`. [`backlog`] is the same pipeline seen as work still to do, which the
//! checker waits on before judging.

use reservations::audit::{ids, Audit, Check, Sold};
use reservations::ids::SaleId;
use sqlx::PgPool;
use uuid::Uuid;

use crate::consumer::ConsumerKind;
use crate::event::{ORDER_AGGREGATE, ORDER_PLACED};
use crate::Result;

/// Events of one sale the pipeline has not finished with.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// `OrderPlaced` rows not yet published.
    pub unpublished: i64,
    /// (published event, consumer group) pairs with no `processed_events` row.
    pub unconsumed: i64,
}

/// What is still moving for `sale`: unpublished events, and published events some
/// consumer group has not processed.
pub async fn backlog(db: &PgPool, sale: SaleId) -> Result<Backlog> {
    let consumers = consumer_groups();
    let (unpublished, unconsumed): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where e.published_at is null), \
                coalesce(sum((select count(*) from unnest($3::text[]) c(consumer) \
                    where not exists (select 1 from processed_events p \
                                      where p.consumer = c.consumer and p.event_id = e.id))) \
                    filter (where e.published_at is not null), 0)::bigint \
         from outbox e join orders o on o.id = e.aggregate_id \
         where o.sale_id = $1 and e.event_type = $2",
    )
    .bind(sale.0)
    .bind(ORDER_PLACED)
    .bind(&consumers)
    .fetch_one(db)
    .await?;
    Ok(Backlog {
        unpublished,
        unconsumed,
    })
}

/// The events audit's checks, in report order (`one_event_per_order`,
/// `events_published`, `events_consumed_once`, `confirmations_sent`,
/// `ledger_matches_orders`). Its figures are the sale's orders that their event or
/// its consumers did not follow: no published `OrderPlaced` row processed by every
/// consumer group, or no confirmation sent.
pub async fn audit(db: &PgPool, sale: SaleId, sold: &Sold) -> Result<Audit<Vec<Uuid>>> {
    let checks = vec![
        one_event_per_order(db, sale, sold).await?,
        events_published(db, sale).await?,
        events_consumed_once(db, sale).await?,
        confirmations_sent(db, sale, sold).await?,
        ledger_matches_orders(db, sale, sold).await?,
    ];
    let consumers = consumer_groups();
    let lost: Vec<Uuid> = sqlx::query_scalar(
        "select o.id from orders o where o.sale_id = $1 and ( \
           not exists (select 1 from outbox e where e.aggregate_id = o.id and e.event_type = $2 \
                       and e.published_at is not null \
                       and (select count(*) from processed_events p \
                            where p.event_id = e.id and p.consumer = any($3)) = cardinality($3)) \
           or not exists (select 1 from notifications n where n.order_id = o.id))",
    )
    .bind(sale.0)
    .bind(ORDER_PLACED)
    .bind(&consumers)
    .fetch_all(db)
    .await?;
    Ok(Audit {
        checks,
        figures: lost,
    })
}

/// The consumer groups every `OrderPlaced` event must reach.
fn consumer_groups() -> Vec<&'static str> {
    ConsumerKind::ALL.iter().map(|k| k.group()).collect()
}

/// Exactly one `OrderPlaced` row per order, and an order for every such row.
async fn one_event_per_order(db: &PgPool, sale: SaleId, sold: &Sold) -> Result<Check> {
    let event_counts: Vec<(Uuid, i64)> = sqlx::query_as(
        "select o.id, count(e.id) from orders o \
         left join outbox e on e.aggregate_id = o.id and e.aggregate_type = $2 and e.event_type = $3 \
         where o.sale_id = $1 group by o.id having count(e.id) <> 1 order by o.id",
    )
    .bind(sale.0)
    .bind(ORDER_AGGREGATE)
    .bind(ORDER_PLACED)
    .fetch_all(db)
    .await?;
    let mut offenders: Vec<String> = event_counts
        .iter()
        .map(|(order, n)| format!("order {order} ({n} events)"))
        .collect();
    let orphans: Vec<Uuid> = sqlx::query_scalar(
        "select e.id from outbox e where e.event_type = $2 and e.payload->>'sale_id' = $1::text \
         and not exists (select 1 from orders o where o.id = e.aggregate_id) order by e.id",
    )
    .bind(sale.0)
    .bind(ORDER_PLACED)
    .fetch_all(db)
    .await?;
    offenders.extend(orphans.iter().map(|e| format!("event {e} (no such order)")));
    Ok(Check::from_offenders(
        "one_event_per_order",
        "every order has exactly one OrderPlaced outbox row, and every such row an order",
        format!("{} orders", sold.orders),
        offenders,
    ))
}

/// Every `OrderPlaced` row of the sale has `published_at` set.
async fn events_published(db: &PgPool, sale: SaleId) -> Result<Check> {
    let unpublished: Vec<Uuid> = sqlx::query_scalar(
        "select e.id from outbox e join orders o on o.id = e.aggregate_id \
         where o.sale_id = $1 and e.event_type = $2 and e.published_at is null order by e.id",
    )
    .bind(sale.0)
    .bind(ORDER_PLACED)
    .fetch_all(db)
    .await?;
    Ok(Check::from_offenders(
        "events_published",
        "every OrderPlaced row of the sale is published (published_at set)",
        format!("{} unpublished", unpublished.len()),
        ids(&unpublished),
    ))
}

/// Exactly one `processed_events` row per event and consumer group: none missing,
/// none doubled.
async fn events_consumed_once(db: &PgPool, sale: SaleId) -> Result<Check> {
    let consumers = consumer_groups();
    let unconsumed: Vec<(String, Uuid, i64)> = sqlx::query_as(
        "select c.consumer, e.id, count(p.event_id) from outbox e \
         join orders o on o.id = e.aggregate_id \
         cross join unnest($3::text[]) as c(consumer) \
         left join processed_events p on p.event_id = e.id and p.consumer = c.consumer \
         where o.sale_id = $1 and e.event_type = $2 \
         group by c.consumer, e.id having count(p.event_id) <> 1 order by c.consumer, e.id",
    )
    .bind(sale.0)
    .bind(ORDER_PLACED)
    .bind(&consumers)
    .fetch_all(db)
    .await?;
    Ok(Check::from_offenders(
        "events_consumed_once",
        "every OrderPlaced event has exactly one processed_events row per consumer group",
        format!("consumers {}", consumers.join(", ")),
        unconsumed
            .iter()
            .map(|(consumer, event, n)| format!("{consumer}:{event} ({n})"))
            .collect(),
    ))
}

/// Every order has a `notifications` row (the `order-confirmation` consumer's effect).
async fn confirmations_sent(db: &PgPool, sale: SaleId, sold: &Sold) -> Result<Check> {
    let unconfirmed: Vec<Uuid> = sqlx::query_scalar(
        "select o.id from orders o where o.sale_id = $1 \
         and not exists (select 1 from notifications n where n.order_id = o.id) order by o.id",
    )
    .bind(sale.0)
    .fetch_all(db)
    .await?;
    Ok(Check::from_offenders(
        "confirmations_sent",
        "every order's confirmation was sent (notifications)",
        format!(
            "{} of {} sent",
            sold.orders - unconfirmed.len() as i64,
            sold.orders
        ),
        ids(&unconfirmed),
    ))
}

/// The `sales_ledger` row (the `sales-ledger` consumer's effect) counts exactly the
/// confirmed orders' units and revenue (a cancel or refund counts its order down).
async fn ledger_matches_orders(db: &PgPool, sale: SaleId, sold: &Sold) -> Result<Check> {
    let units_sold = sold.units_sold;
    let (revenue,): (i64,) = sqlx::query_as(
        "select coalesce(sum(amount_minor), 0)::bigint from orders where sale_id = $1 and status = 'confirmed'",
    )
    .bind(sale.0)
    .fetch_one(db)
    .await?;
    let ledger: Option<(i64, i64)> =
        sqlx::query_as("select units_sold, revenue_minor from sales_ledger where sale_id = $1")
            .bind(sale.0)
            .fetch_optional(db)
            .await?;
    let (ledger_units, ledger_revenue) = ledger.unwrap_or((0, 0));
    Ok(Check::from_condition(
        "ledger_matches_orders",
        "the sales ledger (sales-ledger consumer) counts exactly the units and revenue of the orders",
        ledger_units == units_sold && ledger_revenue == revenue,
        format!(
            "ledger {ledger_units} units / {ledger_revenue} vs orders {units_sold} units / {revenue}"
        ),
    ))
}
