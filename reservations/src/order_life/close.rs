//! The close transaction: the one Postgres transaction in which an order leaves
//! `confirmed` (the module docs of `order_life` list what it writes).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::Closing;
use crate::checkout::idempotency::{self, IdempotencyKey};
use crate::checkout::Order;
use crate::events::{self, DomainEvent, OrderClosed};
use crate::Result;

/// Moves `closed` (the order as it is once closed) out of `confirmed`, with everything
/// that goes with it; false when the guard found it closed already (nothing written).
pub(super) async fn commit(
    pool: &PgPool,
    key: IdempotencyKey<'_>,
    closed: &Order,
    closing: Closing,
    at: DateTime<Utc>,
) -> Result<bool> {
    let restock = closing.restock();
    let mut tx = pool.begin().await?;
    let moved: Option<(uuid::Uuid,)> = sqlx::query_as(
        "update orders set status = $2, closed_at = $3 where id = $1 and status = 'confirmed' \
         returning shopper_id",
    )
    .bind(closed.order_id.0)
    .bind(closed.status.as_str())
    .bind(at)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((shopper,)) = moved else {
        return Ok(false);
    };
    // The units leave the unit guard (so they can be sold again), with a history row.
    let units: Vec<i32> = sqlx::query_scalar(
        "with gone as (delete from order_units where order_id = $1 returning sale_id, unit_no, order_id) \
         insert into released_units (sale_id, unit_no, order_id, restocked) \
         select sale_id, unit_no, order_id, $2 from gone returning unit_no",
    )
    .bind(closed.order_id.0)
    .bind(restock)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "update shopper_units set units = greatest(units - $3, 0) where sale_id = $1 and shopper_id = $2",
    )
    .bind(closed.sale_id.0)
    .bind(shopper)
    .bind(units.len() as i32)
    .execute(&mut *tx)
    .await?;
    if !restock {
        retire(&mut tx, closed, &units).await?;
    }
    let event = OrderClosed {
        order_id: closed.order_id,
        sale_id: closed.sale_id,
        shopper_id: crate::ids::ShopperId(shopper),
        reservation_id: closed.reservation_id,
        quantity: closed.quantity as i32,
        amount: closed.amount.clone(),
        restocked: restock,
        at,
    };
    let event = match closing {
        Closing::Cancel => DomainEvent::OrderCancelled(event),
        Closing::Refund { .. } => DomainEvent::OrderRefunded(event),
    };
    events::append(&mut tx, &event, "").await?;
    // The money's release, recorded before the provider is called (see `release`).
    sqlx::query(
        "insert into payment_releases (order_id, payment_ref) \
         select id, payment_auth_id from orders where id = $1 on conflict do nothing",
    )
    .bind(closed.order_id.0)
    .execute(&mut *tx)
    .await?;
    save_answer(&mut *tx, key, closed).await?;
    tx.commit().await?;
    Ok(true)
}

/// Retires a refunded order's units: they leave the sale, and the sale's and each
/// variant's `total` go down (as a merchant's stock decrease does).
async fn retire(tx: &mut sqlx::PgConnection, closed: &Order, units: &[i32]) -> Result<()> {
    let sale = closed.sale_id.0;
    sqlx::query(
        "insert into retired_units (sale_id, unit_no) select $1, unnest($2::int[]) on conflict do nothing",
    )
    .bind(sale)
    .bind(units)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "update sale_variants v set total = v.total - n.count from ( \
             select r.variant_id, count(*)::int as count from variant_units r \
             join unnest($2::int[]) as u(unit_no) on u.unit_no between r.first_unit and r.last_unit \
             where r.sale_id = $1 group by r.variant_id) n \
         where v.id = n.variant_id",
    )
    .bind(sale)
    .bind(units)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "update sales set total = unit_count - (select count(*) from retired_units where sale_id = $1), \
         version = version + 1, updated_at = now() where id = $1",
    )
    .bind(sale)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Saves `order` as the answer to `key`.
pub(super) async fn save_answer<'e, E>(
    executor: E,
    key: IdempotencyKey<'_>,
    order: &Order,
) -> Result<()>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query("update idempotency_keys set response = $3 where shopper_id = $1 and key = $2")
        .bind(key.shopper.0)
        .bind(key.key)
        .bind(idempotency::answer_json(order)?)
        .execute(executor)
        .await?;
    Ok(())
}
