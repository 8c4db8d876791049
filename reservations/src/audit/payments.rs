//! The payments audit: the simulated provider's ledger against the orders.
//!
//! It checks DESIGN.md's **nobody pays for an order that does not exist**, and its
//! converse: every order has a captured payment of its amount, and no payment is
//! captured — or left authorized past a grace period — for an order that does not
//! exist.
//!
//! It reads `sim_payments` (the ledger of [`crate::payment`]'s simulated provider)
//! joined to `orders`.

use sqlx::PgPool;
use uuid::Uuid;

use super::{Audit, AuditedSale, Check, Sold};
use crate::Result;

/// An authorization younger than this may belong to a checkout still in flight.
const AUTHORIZATION_GRACE_SECS: f64 = 10.0;

/// The payments audit's checks, in report order (`orders_paid`,
/// `no_payment_without_order`). Its figures are the sale's orders that have no
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
