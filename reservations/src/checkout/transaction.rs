//! The order transaction: the one Postgres transaction in which an order becomes
//! true — the order row, one `order_units` row per unit (the oversell guard), its
//! `OrderPlaced` outbox event, the idempotency answer and its payment attempt marked
//! `committed`. All or nothing — but when COMMIT itself errors, nobody knows which:
//! [`CommitFailure`] says where it failed.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::attempts::MARK_COMMITTED;
use super::idempotency::{self, IdempotencyKey};
use super::orders::Order;
use crate::events::{self, DomainEvent, OrderPlaced};
use crate::ids::ShopperId;
use crate::payment::PaymentRef;
use crate::Error;

/// The order row, only if the shopper's orders of the sale stay within the per-shopper
/// limit (`$9`); no row means refused. It also returns the backend running the
/// transaction, which an ambiguous COMMIT needs (see [`CommitFailure::Ambiguous`]) at no
/// extra round trip.
///
/// Why Postgres checks the limit although Redis counts every shopper's holds and
/// orders: Redis' count is not the record. With striped stock each stripe sees only its
/// own part; and a Redis that comes back older (a crash losing its last second, a
/// failover to a lagging replica) has forgotten orders until the sale is reconciled, a
/// second later at most. Two checkouts of one shopper in one sale are serialised by a
/// transaction advisory lock on (sale, shopper) taken just before, so each sees the
/// other's committed order (READ COMMITTED takes a new snapshot per statement); other
/// shoppers never wait (a hash collision at worst makes two of them take turns). The
/// sum reads the shopper's few orders through `orders_by_shopper`.
const LIMIT_CHECKED_INSERT: &str =
    "insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, currency, payment_auth_id) \
     select $1, $2, $3, $4, $5, $6, $7, $8 \
     where (select coalesce(sum(quantity), 0) from orders where shopper_id = $3 and sale_id = $2) + $5 <= $9 \
     returning created_at, pg_backend_pid()";

/// Why the order transaction did not (knowingly) commit, by the step that failed.
#[derive(Debug)]
pub(super) enum CommitFailure {
    /// A step before COMMIT failed (Postgres refused a statement, or no connection):
    /// nothing committed.
    Refused(Error),
    /// COMMIT was sent and no success came back (a connection cut after the server
    /// committed reads the same as one before): the order may exist. Only Postgres
    /// can say (see `commit_outcome`).
    Ambiguous {
        /// What COMMIT answered.
        error: Error,
        /// The Postgres backend (`pg_backend_pid()`) that ran the transaction.
        backend: i32,
    },
}

impl From<Error> for CommitFailure {
    fn from(e: Error) -> Self {
        CommitFailure::Refused(e)
    }
}

impl From<sqlx::Error> for CommitFailure {
    fn from(e: sqlx::Error) -> Self {
        CommitFailure::Refused(e.into())
    }
}

/// What the transaction writes besides the order itself.
pub(super) struct Commit<'a> {
    /// Who pays.
    pub(super) shopper: ShopperId,
    /// The claimed key the answer is saved under.
    pub(super) key: IdempotencyKey<'a>,
    /// The units Redis handed out, one `order_units` row each.
    pub(super) units: &'a [i32],
    /// The sale's per-shopper limit (see [`LIMIT_CHECKED_INSERT`]).
    pub(super) limit: i32,
    /// The request behind it, carried into the event.
    pub(super) correlation_id: &'a str,
    /// The provider's payment: the order's `payment_auth_id`, carried by the event so
    /// the capture worker needs no lookup.
    pub(super) payment: &'a PaymentRef,
}

/// Commits `order`: order, units, event, idempotency answer and attempt in one
/// transaction (the attempt must still be `authorizing`, else `PaymentUnavailable`).
/// The saved answer carries the commit's `created_at`. A shopper past the limit is
/// [`Error::PerUserLimitExceeded`]; a unit sold twice or a hold ordered twice surface
/// as the database's unique violations (see [`unique_violation`]); all of these are
/// [`CommitFailure::Refused`]. An error from COMMIT is [`CommitFailure::Ambiguous`].
pub(super) async fn commit(
    pool: &PgPool,
    order: &Order,
    c: Commit<'_>,
) -> std::result::Result<(), CommitFailure> {
    let mut tx = pool.begin().await?;
    sqlx::query("select pg_advisory_xact_lock(hashtextextended($1::text || $2::text, 0))")
        .bind(order.sale_id.0)
        .bind(c.shopper.0)
        .execute(&mut *tx)
        .await?;
    let insert = sqlx::query_as(LIMIT_CHECKED_INSERT)
        .bind(order.order_id.0)
        .bind(order.sale_id.0)
        .bind(c.shopper.0)
        .bind(order.reservation_id.0)
        .bind(order.quantity as i32)
        .bind(order.amount.amount_minor)
        .bind(&order.amount.currency)
        .bind(&c.payment.0)
        .bind(c.limit);
    let inserted: Option<(DateTime<Utc>, i32)> = insert.fetch_optional(&mut *tx).await?;
    let Some((created_at, backend)) = inserted else {
        return Err(Error::PerUserLimitExceeded(c.limit.into()).into());
    };
    sqlx::query(
        "insert into order_units (sale_id, unit_no, order_id) select $1, unnest($2::int[]), $3",
    )
    .bind(order.sale_id.0)
    .bind(c.units)
    .bind(order.order_id.0)
    .execute(&mut *tx)
    .await?;
    let placed = DomainEvent::OrderPlaced(OrderPlaced {
        order_id: order.order_id,
        sale_id: order.sale_id,
        shopper_id: c.shopper,
        reservation_id: order.reservation_id,
        quantity: order.quantity as i32,
        amount: order.amount.clone(),
        payment: Some(c.payment.clone()),
    });
    events::append(&mut tx, &placed, c.correlation_id).await?;
    let marked = sqlx::query(MARK_COMMITTED)
        .bind(order.order_id.0)
        .bind(order.sale_id.0)
        .bind(order.amount.amount_minor)
        .bind(&order.amount.currency)
        .execute(&mut *tx)
        .await?;
    if marked.rows_affected() != 1 {
        // The completer judged this attempt dead and settled it: the payment may be
        // voided, so no order may stand on it.
        return Err(Error::PaymentUnavailable.into());
    }
    let mut answer = order.clone();
    answer.created_at = created_at;
    idempotency::save(&mut tx, c.key, &answer).await?;
    tx.commit().await.map_err(|e| CommitFailure::Ambiguous {
        error: e.into(),
        backend,
    })
}

/// The constraint a unique violation (SQLSTATE 23505) names, if `e` is one.
pub(super) fn unique_violation(e: &Error) -> Option<String> {
    let Error::Database(e) = e else {
        return None;
    };
    let db = e.as_database_error()?;
    (db.code().as_deref() == Some("23505")).then(|| db.constraint().unwrap_or_default().to_owned())
}
