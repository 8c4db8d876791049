//! The payments audit: the simulated provider's ledger against the orders.
//!
//! It checks DESIGN.md's **nobody pays for an order that does not exist**, and its
//! converse: every order has a captured payment of its amount, and no payment is
//! captured — or left authorized past a grace period — for an order that does not
//! exist.
//!
//! A cancelled or refunded order (`crate::order_life`) is not paid but released: its
//! payment must end voided or refunded at the provider (a refund is keyed by the order
//! id, so the provider shows one refund at most), once its release has settled.
//!
//! It also checks the payment attempts (`payment_attempts`, [`crate::checkout`]'s
//! durable record of every authorization asked for) against the provider: every
//! attempt ends committed with its order, voided, or never authorized, and no
//! reservation holds two live authorizations at once.
//!
//! It asks the provider, through the same port checkout uses ([`PaymentGateway::list`]),
//! for every payment created since the sale was, loads them into a temporary table
//! (`provider_payments`, this connection's only) and joins it to `orders` and
//! `payment_attempts`.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{Audit, AuditedSale, Check, Sold};
use crate::payment::{Payment, PaymentGateway, PaymentRef, PaymentState};
use crate::{Error, Result};

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
pub async fn audit(
    db: &PgPool,
    provider: &dyn PaymentGateway,
    sale: &AuditedSale,
    sold: &Sold,
) -> Result<Audit<Vec<Uuid>>> {
    let payments = provider_payments(provider, sale.created_at).await?;
    let mut conn = db.acquire().await?;
    load(&mut conn, &payments).await?;
    let audit = audit_loaded(&mut conn, sale, sold).await;
    sqlx::query("drop table if exists provider_payments")
        .execute(&mut *conn)
        .await?;
    audit
}

/// Every payment the provider created since `since`, page by page.
async fn provider_payments(
    provider: &dyn PaymentGateway,
    since: DateTime<Utc>,
) -> Result<Vec<Payment>> {
    let mut payments = Vec::new();
    let mut after: Option<PaymentRef> = None;
    loop {
        let (page, more) = provider
            .list(since, after.as_ref())
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("asking the provider: {e}")))?;
        after = page.last().map(|p| p.reference.clone());
        payments.extend(page);
        if !more || after.is_none() {
            return Ok(payments);
        }
    }
}

/// The provider's payments as the temporary table `provider_payments` (attempt id,
/// status, amount, currency, created_at). A payment captured and then refunded in
/// full has status `refunded`.
async fn load(conn: &mut PgConnection, payments: &[Payment]) -> Result<()> {
    sqlx::query(
        "create temporary table if not exists provider_payments \
         (attempt_id uuid, reference text, status text, amount_minor bigint, currency text, created_at timestamptz)",
    )
    .execute(&mut *conn)
    .await?;
    let status = |p: &Payment| match p.state {
        PaymentState::Captured if p.refunded_minor >= p.amount.amount_minor => "refunded",
        state => state.as_str(),
    };
    sqlx::query(
        "insert into provider_payments \
         select * from unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[])",
    )
    .bind(payments.iter().map(|p| p.attempt.map(|a| a.0)).collect::<Vec<_>>())
    .bind(payments.iter().map(|p| p.reference.0.clone()).collect::<Vec<_>>())
    .bind(payments.iter().map(status).collect::<Vec<_>>())
    .bind(payments.iter().map(|p| p.amount.amount_minor).collect::<Vec<_>>())
    .bind(payments.iter().map(|p| p.amount.currency.clone()).collect::<Vec<_>>())
    .bind(payments.iter().map(|p| p.created_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn audit_loaded(
    db: &mut PgConnection,
    sale: &AuditedSale,
    sold: &Sold,
) -> Result<Audit<Vec<Uuid>>> {
    let orders = sold.orders;
    let mut checks = Vec::new();
    let uncaptured: Vec<(Uuid, Option<String>)> = sqlx::query_as(
        "select o.id, p.status from orders o left join provider_payments p on p.attempt_id = o.id \
         where o.sale_id = $1 and o.status = 'confirmed' and (p.status is distinct from 'captured' \
               or p.amount_minor <> o.amount_minor or p.currency <> o.currency) order by o.id",
    )
    .bind(sale.id.0)
    .fetch_all(&mut *db)
    .await?;
    checks.push(Check::from_offenders(
        "orders_paid",
        "every confirmed order has a captured payment of its amount",
        format!("{} of {orders} captured", orders - uncaptured.len() as i64),
        uncaptured
            .iter()
            .map(|(order, status)| {
                format!("{order} ({})", status.as_deref().unwrap_or("no payment"))
            })
            .collect(),
    ));
    let unreleased: Vec<(Uuid, Option<String>, Option<String>)> = sqlx::query_as(
        "select o.id, r.state, p.status from orders o \
         left join payment_releases r on r.order_id = o.id \
         left join provider_payments p on p.attempt_id = o.id \
         where o.sale_id = $1 and o.status <> 'confirmed' \
         and (r.order_id is null or p.status is null or p.status not in ('voided', 'refunded') \
              or (r.state = 'voided') <> (p.status = 'voided')) \
         and (r.state is distinct from 'pending' or r.updated_at < now() - make_interval(secs => $2)) \
         order by o.id",
    )
    .bind(sale.id.0)
    .bind(ATTEMPT_SETTLE_SECS)
    .fetch_all(&mut *db)
    .await?;
    checks.push(Check::from_offenders(
        "closed_orders_released",
        "every cancelled or refunded order's payment was voided or refunded, as its release says",
        "closed orders of the sale",
        unreleased
            .iter()
            .map(|(order, release, status)| {
                format!(
                    "{order} (release: {}, provider: {})",
                    release.as_deref().unwrap_or("none"),
                    status.as_deref().unwrap_or("none")
                )
            })
            .collect(),
    ));
    // The provider's payments carry no sale id: they are scoped to the sale's lifetime.
    let orphan_payments: Vec<(Uuid, String)> = sqlx::query_as(
        "select p.attempt_id, p.status from provider_payments p where p.created_at >= date_trunc('second', $1::timestamptz) \
         and (p.status = 'captured' \
              or (p.status = 'authorized' and p.created_at < now() - make_interval(secs => $2))) \
         and not exists (select 1 from orders o where o.id = p.attempt_id) order by p.attempt_id",
    )
    .bind(sale.created_at)
    .bind(AUTHORIZATION_GRACE_SECS)
    .fetch_all(&mut *db)
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
         left join provider_payments p on p.attempt_id = a.id \
         where a.created_at >= $1 and ( \
               (a.state in ('authorizing', 'void_pending') \
                and a.updated_at < now() - make_interval(secs => $2)) \
            or a.state = 'orphaned' \
            or (a.state = 'refunded' and p.status is distinct from 'refunded') \
            or (a.state = 'voided' and p.status is distinct from 'voided') \
            or (a.state = 'done' and p.status in ('authorized', 'captured')) \
            or (a.state = 'committed' and not exists (select 1 from orders o where o.id = a.id))) \
         order by a.id",
    )
    .bind(sale.created_at)
    .bind(ATTEMPT_SETTLE_SECS)
    .fetch_all(&mut *db)
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
         join provider_payments p on p.attempt_id = a.id \
         where a.created_at >= $1 and p.status in ('authorized', 'captured') \
         group by a.reservation_id having count(*) > 1 order by a.reservation_id",
    )
    .bind(sale.created_at)
    .fetch_all(&mut *db)
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
        "select o.id from orders o where o.sale_id = $1 and o.status = 'confirmed' \
         and not exists (select 1 from provider_payments p where p.attempt_id = o.id and p.status = 'captured')",
    )
    .bind(sale.id.0)
    .fetch_all(&mut *db)
    .await?;
    Ok(Audit {
        checks,
        figures: unpaid,
    })
}

/// Payment attempts since `sale` was created that the completer has yet to settle
/// (`authorizing` or `void_pending`), and the sale's payment releases still `pending`:
/// work still moving, which the checker waits for.
pub async fn attempts_in_doubt(db: &PgPool, sale: &AuditedSale) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "select (select count(*) from payment_attempts \
                 where created_at >= $1 and state in ('authorizing', 'void_pending')) \
              + (select count(*) from payment_releases r join orders o on o.id = r.order_id \
                 where o.sale_id = $2 and r.state = 'pending')",
    )
    .bind(sale.created_at)
    .bind(sale.id.0)
    .fetch_one(db)
    .await?)
}
