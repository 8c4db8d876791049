//! The order transaction: the one Postgres transaction in which an order becomes
//! true — the order row, one `order_units` row per unit (the oversell guard), its
//! `OrderPlaced` outbox event, the idempotency answer and its payment attempt marked
//! `committed`. All or nothing — but when COMMIT itself errors, nobody knows which:
//! [`CommitFailure`] says where it failed.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::idempotency::{self, IdempotencyKey};
use super::orders::Order;
use crate::events::{self, DomainEvent, OrderPlaced};
use crate::ids::ShopperId;
use crate::payment::PaymentRef;
use crate::Error;

/// The order statement: every write of an order in ONE statement of the order
/// transaction (BEGIN, this, COMMIT: three round trips, not one per write). Its
/// data-modifying parts run once each, and each later part reads the rows an earlier one
/// returned, so they happen only when it did:
///
/// 1. `counted`: the shopper's units of the sale (`shopper_units`) grow by the order's
///    quantity, only within the per-shopper limit (`$9`). The row's lock serialises two
///    checkouts of one shopper in one sale (the second sees the first's count); other
///    shoppers never wait. Why Postgres checks the limit although Redis counts every
///    shopper's holds and orders: Redis' count is not the record. With striped stock
///    each stripe sees only its part; a Redis that comes back older (a crash losing its
///    last second, a failover to a lagging replica) has forgotten orders until the sale
///    is reconciled, a second later at most.
/// 2. `placed`: the order row.
/// 3. `units`: one `order_units` row per unit (`$10`), the oversell guard: a unit sold
///    twice is a unique violation of `order_units_pkey`, and fails the whole statement.
/// 4. `event`: the `OrderPlaced` outbox row (`$11..$15`).
/// 5. `attempt`: the payment attempt marked `committed` — only from `authorizing`: an
///    attempt the completer already settled (it judged the request dead and voided it)
///    refuses the order, so an order never stands on a voided payment.
/// 6. `answer`: the idempotency answer (`$16`, with the order's `created_at` set here,
///    and its `cancellable_until`: `created_at` + the sale's cancel window `$19`).
///
/// It answers the order's `created_at` (null: over the limit), whether the attempt was
/// marked, and the backend running the transaction, which an ambiguous COMMIT needs (see
/// [`CommitFailure::Ambiguous`]).
const ORDER_STATEMENT: &str = "\
    with counted as ( \
        insert into shopper_units (sale_id, shopper_id, units) select $2, $3, $5 where $5 <= $9 \
        on conflict (sale_id, shopper_id) do update set units = shopper_units.units + excluded.units \
        where shopper_units.units + excluded.units <= $9 \
        returning 1 \
    ), placed as ( \
        insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, currency, payment_auth_id) \
        select $1, $2, $3, $4, $5, $6, $7, $8 from counted \
        returning created_at \
    ), units as ( \
        insert into order_units (sale_id, unit_no, order_id) select $2, unnest($10::int[]), $1 from placed \
    ), event as ( \
        insert into outbox (OUTBOX_COLUMNS) select $11, $12, $13, $14, $15, $17 from placed \
    ), attempt as ( \
        update payment_attempts set state = 'committed', sale_id = $2, amount_minor = $6, currency = $7, updated_at = now() \
        where id = $1 and state = 'authorizing' and exists (select 1 from placed) \
        returning 1 \
    ), answer as ( \
        update idempotency_keys set response = jsonb_set(jsonb_set($16::jsonb, '{created_at}', to_jsonb(placed.created_at)), \
            '{cancellable_until}', case when $19 > 0 then to_jsonb(placed.created_at + make_interval(secs => $19)) else 'null'::jsonb end) \
        from placed where shopper_id = $3 and key = $18 \
    ) \
    select (select created_at from placed), exists (select 1 from attempt), pg_backend_pid()";

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
    /// The order's lines, for the event (the order itself omits a v1 sale's).
    pub(super) lines: &'a [super::lines::OrderLine],
    /// The sale's per-shopper limit (see [`LIMIT_CHECKED_INSERT`]).
    pub(super) limit: i32,
    /// The sale's cancel window in seconds (0: no cancel), for the saved answer.
    pub(super) cancel_window: i32,
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
    let placed = DomainEvent::OrderPlaced(OrderPlaced {
        order_id: order.order_id,
        sale_id: order.sale_id,
        shopper_id: c.shopper,
        reservation_id: order.reservation_id,
        quantity: order.quantity as i32,
        amount: order.amount.clone(),
        payment: Some(c.payment.clone()),
        lines: c.lines.to_vec(),
    });
    let event = placed.outbox_row()?;
    let answer = idempotency::answer_json(order)?;
    let mut tx = pool.begin().await?;
    let (created_at, marked, backend): (Option<DateTime<Utc>>, bool, i32) =
        sqlx::query_as(&ORDER_STATEMENT.replace("OUTBOX_COLUMNS", events::OUTBOX_COLUMNS))
            .bind(order.order_id.0)
            .bind(order.sale_id.0)
            .bind(c.shopper.0)
            .bind(order.reservation_id.0)
            .bind(order.quantity as i32)
            .bind(order.amount.amount_minor)
            .bind(&order.amount.currency)
            .bind(&c.payment.0)
            .bind(c.limit)
            .bind(c.units)
            .bind(event.id)
            .bind(event.aggregate_type)
            .bind(event.aggregate_id)
            .bind(event.event_type)
            .bind(&event.payload)
            .bind(answer)
            .bind(c.correlation_id)
            .bind(c.key.key)
            .bind(c.cancel_window)
            .fetch_one(&mut *tx)
            .await?;
    if created_at.is_none() {
        return Err(Error::PerUserLimitExceeded(c.limit.into()).into());
    }
    if !marked {
        // The completer judged this attempt dead and settled it: the payment may be
        // voided, so no order may stand on it (the transaction rolls back).
        return Err(Error::PaymentUnavailable.into());
    }
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
