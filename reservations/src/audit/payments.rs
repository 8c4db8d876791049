//! The payments audit: the simulated provider's ledger against the orders.
//!
//! It checks DESIGN.md's **nobody pays for an order that does not exist**, and its
//! converse: every order has a captured payment of its amount, and no payment is
//! captured — or left authorized past a grace period — for an order that does not
//! exist.
//!
//! It also checks the payment attempts (`payment_attempts`, [`crate::checkout`]'s
//! durable record of every authorization asked for) against the provider: every
//! attempt ends committed with its order, voided, or never authorized, and no
//! reservation holds two live authorizations at once.
//!
//! It reads `sim_payments` (the ledger of [`crate::payment`]'s simulated provider)
//! joined to `orders` and `payment_attempts`.

use sqlx::PgPool;
use uuid::Uuid;

use super::{Audit, AuditedSale, Check, Sold};
use crate::Result;

/// An authorization younger than this may belong to a checkout still in flight.
const AUTHORIZATION_GRACE_SECS: f64 = 10.0;
/// An attempt in doubt this long after its last change counts as unsettled: the
/// completer judges attempts after a few seconds' grace and retries voids with backoff,
/// and the checker waits for the ones still moving (see [`attempts_in_doubt`]).
const ATTEMPT_SETTLE_SECS: f64 = 30.0;

/// The payments audit's checks, in report order (`orders_paid`,
/// `no_payment_without_order`, `payment_attempts_settled`,
/// `one_live_authorization_per_reservation`). Its figures are the sale's orders that have no
/// captured payment: orders the pipeline lost track of.
pub async fn audit(db: &PgPool, sale: &AuditedSale, sold: &Sold) -> Result<Audit<Vec<Uuid>>> {
    let orders = sold.orders;
    let mut checks = Vec::new();
    let uncaptured: Vec<(Uuid, Option<String>)> = sqlx::query_as(
        "select o.id, p.status from orders o left join sim_payments p on p.order_id = o.id \
         where o.sale_id = $1 and (p.status is distinct from 'captured' \
               or p.amount_minor <> o.amount_minor or p.currency <> o.currency) order by o.id",
    )
    .bind(sale.id.0)
    .fetch_all(db)
    .await?;
    checks.push(Check::from_offenders(
        "orders_paid",
        "every order has a captured payment of its amount",
        format!("{} of {orders} captured", orders - uncaptured.len() as i64),
        uncaptured
            .iter()
            .map(|(order, status)| {
                format!("{order} ({})", status.as_deref().unwrap_or("no payment"))
            })
            .collect(),
    ));
    // sim_payments carries no sale id: payments are scoped to the sale's lifetime.
    let orphan_payments: Vec<(Uuid, String)> = sqlx::query_as(
        "select p.order_id, p.status from sim_payments p where p.authorized_at >= $1 \
         and (p.status = 'captured' \
              or (p.status = 'authorized' and p.authorized_at < now() - make_interval(secs => $2))) \
         and not exists (select 1 from orders o where o.id = p.order_id) order by p.order_id",
    )
    .bind(sale.created_at)
    .bind(AUTHORIZATION_GRACE_SECS)
    .fetch_all(db)
    .await?;
    checks.push(Check::from_offenders(
        "no_payment_without_order",
        "no payment is captured, or left authorized, for an order that does not exist",
        "payments since the sale was created",
        orphan_payments
            .iter()
            .map(|(order, status)| format!("{order} ({status})"))
            .collect(),
    ));
    // Attempts are scoped to the sale's lifetime, like payments: an attempt that never
    // became an order carries no sale id.
    let unsettled: Vec<(Uuid, String, Option<String>)> = sqlx::query_as(
        "select a.id, a.state, p.status from payment_attempts a \
         left join sim_payments p on p.order_id = a.id \
         where a.created_at >= $1 and ( \
               (a.state in ('authorizing', 'void_pending') \
                and a.updated_at < now() - make_interval(secs => $2)) \
            or a.state = 'orphaned' \
            or (a.state = 'voided' and p.status is distinct from 'voided') \
            or (a.state = 'done' and p.status in ('authorized', 'captured')) \
            or (a.state = 'committed' and not exists (select 1 from orders o where o.id = a.id))) \
         order by a.id",
    )
    .bind(sale.created_at)
    .bind(ATTEMPT_SETTLE_SECS)
    .fetch_all(db)
    .await?;
    checks.push(Check::from_offenders(
        "payment_attempts_settled",
        "every payment attempt ended committed with its order, voided, or never authorized, as the provider says",
        "attempts since the sale was created",
        unsettled
            .iter()
            .map(|(attempt, state, status)| {
                format!("{attempt} ({state}, provider: {})", status.as_deref().unwrap_or("none"))
            })
            .collect(),
    ));
    let doubled: Vec<(Uuid, i64)> = sqlx::query_as(
        "select a.reservation_id, count(*) from payment_attempts a \
         join sim_payments p on p.order_id = a.id \
         where a.created_at >= $1 and p.status in ('authorized', 'captured') \
         group by a.reservation_id having count(*) > 1 order by a.reservation_id",
    )
    .bind(sale.created_at)
    .fetch_all(db)
    .await?;
    checks.push(Check::from_offenders(
        "one_live_authorization_per_reservation",
        "no reservation holds two live authorizations (a retry reuses its attempt)",
        "reservations with attempts since the sale was created",
        doubled
            .iter()
            .map(|(reservation, n)| format!("{reservation} ({n} live)"))
            .collect(),
    ));
    // Only the status counts here, not the amount: an order whose capture happened is
    // not lost, even when `orders_paid` fails it for a wrong amount.
    let unpaid: Vec<Uuid> = sqlx::query_scalar(
        "select o.id from orders o where o.sale_id = $1 \
         and not exists (select 1 from sim_payments p where p.order_id = o.id and p.status = 'captured')",
    )
    .bind(sale.id.0)
    .fetch_all(db)
    .await?;
    Ok(Audit {
        checks,
        figures: unpaid,
    })
}

/// Payment attempts since `sale` was created that the completer has yet to settle
/// (`authorizing` or `void_pending`): work still moving, which the checker waits for.
pub async fn attempts_in_doubt(db: &PgPool, sale: &AuditedSale) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "select count(*) from payment_attempts \
         where created_at >= $1 and state in ('authorizing', 'void_pending')",
    )
    .bind(sale.created_at)
    .fetch_one(db)
    .await?)
}
