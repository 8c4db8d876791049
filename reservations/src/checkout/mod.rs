//! Checkout: a hold becomes an order. The payment is authorized first; then ONE
//! Postgres transaction writes the order, one `order_units` row per unit (the oversell
//! guard), the `OrderPlaced` outbox row and the idempotency answer. The money is
//! captured later by a worker reacting to `OrderPlaced`; whenever the transaction does
//! not commit, the authorization is voided — nobody pays for an order that does not
//! exist.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ids::{OrderId, ReservationId, SaleId, ShopperId};
use crate::payment::{PaymentError, PaymentGateway};
use crate::projection::{BeginCheckout, Finish, Stripe};
use crate::sales::Money;
use crate::{Error, Result, Sales};

/// How long a claimed idempotency key without an answer is considered in flight; after
/// that its request is presumed dead (process killed) and a retry may take it over.
const ABANDONED_AFTER: Duration = Duration::from_secs(30);
/// How long a retry waits for the first request with the same key to answer: well
/// inside the default 10 s request timeout, so a client retrying a checkout whose
/// process died hears `409 request_in_progress` (and retries again) rather than a
/// `503 request_timeout`. A live first request answers within the payment timeout
/// (3 s) and one transaction.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(5);

/// Whether the worker has sent the confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmationStatus {
    /// Not yet.
    Pending,
    /// Sent (see `sent_at`).
    Sent,
}

/// The confirmation block of an order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Confirmation {
    /// `pending` until the worker sends it.
    pub status: ConfirmationStatus,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
}

/// An order as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Order {
    /// The order's id.
    pub order_id: OrderId,
    /// Its sale.
    pub sale_id: SaleId,
    /// The hold it came from.
    pub reservation_id: ReservationId,
    /// Units bought.
    pub quantity: i64,
    /// Price × quantity.
    pub amount: Money,
    /// Always `confirmed`: an order exists only once committed.
    pub status: &'static str,
    /// When it was committed.
    pub created_at: DateTime<Utc>,
    /// Filled in by the confirmation worker.
    pub confirmation: Confirmation,
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: Uuid,
    sale_id: Uuid,
    reservation_id: Uuid,
    quantity: i32,
    amount_minor: i64,
    currency: String,
    created_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
}

impl From<OrderRow> for Order {
    fn from(r: OrderRow) -> Order {
        Order {
            order_id: OrderId(r.id),
            sale_id: SaleId(r.sale_id),
            reservation_id: ReservationId(r.reservation_id),
            quantity: i64::from(r.quantity),
            amount: Money {
                amount_minor: r.amount_minor,
                currency: r.currency,
            },
            status: "confirmed",
            created_at: r.created_at,
            confirmation: Confirmation {
                status: if r.sent_at.is_some() {
                    ConfirmationStatus::Sent
                } else {
                    ConfirmationStatus::Pending
                },
                sent_at: r.sent_at,
            },
        }
    }
}

/// The order row.
const ORDER_INSERT: &str =
    "insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, currency, payment_auth_id) \
     values ($1, $2, $3, $4, $5, $6, $7, $1::text) returning created_at";

/// The order row, only if the shopper's orders of the sale stay within the per-shopper
/// limit (`$8`); no row means refused.
///
/// Why: with striped stock each stripe enforces the limit only on what it sees, so a
/// shopper who fell back to another stripe may hold more than the limit. Orders stay
/// exact here. Two checkouts of one shopper in one sale are serialised by a transaction
/// advisory lock on (sale, shopper) taken just before, so each sees the other's
/// committed order (READ COMMITTED takes a new snapshot per statement); other shoppers
/// never wait (a hash collision at worst makes two of them take turns). The sum reads
/// the shopper's few orders through `orders_by_shopper`. Unstriped sales skip both
/// statements: Redis already counts the shopper's holds and orders in one place.
const LIMIT_CHECKED_INSERT: &str =
    "insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, currency, payment_auth_id) \
     select $1, $2, $3, $4, $5, $6, $7, $1::text \
     where (select coalesce(sum(quantity), 0) from orders where shopper_id = $3 and sale_id = $2) + $5 <= $8 \
     returning created_at";

const ORDER_SELECT: &str =
    "select o.id, o.sale_id, o.reservation_id, o.quantity, o.amount_minor, o.currency, \
     o.created_at, n.sent_at from orders o left join notifications n on n.order_id = o.id";

/// A checkout request, parsed at the edge.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    /// Who pays.
    pub shopper: ShopperId,
    /// The hold.
    pub reservation: ReservationId,
    /// The required idempotency key.
    pub idempotency_key: String,
    /// The card token.
    pub payment_token: String,
    /// The request id that caused it, carried into the event.
    pub correlation_id: String,
}

/// The answer to a checkout: the first answer to this key, stored as JSON.
#[derive(Debug, Clone)]
pub struct CheckoutAnswer {
    /// HTTP status of the first answer (201).
    pub status: u16,
    /// The order JSON.
    pub body: serde_json::Value,
    /// True when this request placed the order, false when it replayed the first answer.
    pub created: bool,
}

/// Checkout and order reads, on their own Postgres pool (a bulkhead: listings and admin
/// traffic can never take the buy path's connections).
#[derive(Clone)]
pub struct Checkout {
    sales: Sales,
    /// The checkout bulkhead: only the buy path writes through it.
    pool: PgPool,
    /// The general pool: order reads and listings.
    reads: PgPool,
    payments: Arc<dyn PaymentGateway>,
}

fn unique_violation(e: &sqlx::Error) -> Option<String> {
    let db = e.as_database_error()?;
    (db.code().as_deref() == Some("23505")).then(|| db.constraint().unwrap_or_default().to_owned())
}

impl Checkout {
    /// Checkout over `sales`, writing through `pool`, reading orders through `reads`,
    /// paying through `payments`.
    pub fn new(
        sales: Sales,
        pool: PgPool,
        reads: PgPool,
        payments: Arc<dyn PaymentGateway>,
    ) -> Self {
        Self {
            sales,
            pool,
            reads,
            payments,
        }
    }

    /// The payment gateway (the capture worker and tests share it).
    pub fn payments(&self) -> Arc<dyn PaymentGateway> {
        self.payments.clone()
    }

    /// Places the order, or replays the first answer to this idempotency key.
    pub async fn checkout(&self, request: CheckoutRequest) -> Result<CheckoutAnswer> {
        let hash = hex_digest(&format!(
            "{}\n{}",
            request.reservation, request.payment_token
        ));
        if let Some(replay) = self.claim_key(&request, &hash).await? {
            return Ok(replay);
        }
        match self.place(&request).await {
            Ok(order) => {
                metrics::counter!("flashsale_checkouts_total", "outcome" => "confirmed")
                    .increment(1);
                Ok(CheckoutAnswer {
                    status: 201,
                    body: serde_json::to_value(order).map_err(anyhow::Error::from)?,
                    created: true,
                })
            }
            Err(e) => {
                metrics::counter!("flashsale_checkouts_total", "outcome" => outcome_label(&e))
                    .increment(1);
                // A failed attempt leaves no answer behind: the key may be retried.
                let _ = sqlx::query("delete from idempotency_keys where shopper_id = $1 and key = $2 and status_code is null")
                    .bind(request.shopper.0)
                    .bind(&request.idempotency_key)
                    .execute(&self.pool)
                    .await;
                Err(e)
            }
        }
    }

    /// Claims the key for this request (`None`), or returns the first answer to it.
    /// Concurrent retries wait for the first request instead of paying twice.
    async fn claim_key(
        &self,
        request: &CheckoutRequest,
        hash: &str,
    ) -> Result<Option<CheckoutAnswer>> {
        let started = tokio::time::Instant::now();
        loop {
            let claimed = sqlx::query(
                "insert into idempotency_keys (shopper_id, key, request_hash) values ($1, $2, $3) on conflict do nothing",
            )
            .bind(request.shopper.0)
            .bind(&request.idempotency_key)
            .bind(hash)
            .execute(&self.pool)
            .await?;
            if claimed.rows_affected() == 1 {
                return Ok(None);
            }
            let row: Option<(String, Option<i32>, Option<serde_json::Value>, bool)> = sqlx::query_as(
                "select request_hash, status_code, response, created_at < now() - make_interval(secs => $3) \
                 from idempotency_keys where shopper_id = $1 and key = $2",
            )
            .bind(request.shopper.0)
            .bind(&request.idempotency_key)
            .bind(ABANDONED_AFTER.as_secs_f64())
            .fetch_optional(&self.pool)
            .await?;
            match row {
                None => continue,
                Some((stored, _, _, _)) if stored != hash => {
                    return Err(Error::IdempotencyKeyReused)
                }
                Some((_, Some(status), Some(body), _)) => {
                    return Ok(Some(CheckoutAnswer {
                        status: status as u16,
                        body,
                        created: false,
                    }))
                }
                Some((_, _, _, true)) => {
                    // The first request died without answering: take the key over.
                    sqlx::query("delete from idempotency_keys where shopper_id = $1 and key = $2 and status_code is null")
                        .bind(request.shopper.0)
                        .bind(&request.idempotency_key)
                        .execute(&self.pool)
                        .await?;
                }
                Some(_) if started.elapsed() > WAIT_FOR_FIRST => {
                    return Err(Error::CheckoutInProgress)
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
    }

    async fn place(&self, request: &CheckoutRequest) -> Result<Order> {
        let projection = self.sales.projection();
        let stripe = projection
            .reservation_stripe(request.reservation)
            .await?
            .ok_or(Error::ReservationNotFound)?;
        let sale_id = stripe.sale;
        let order_id = OrderId::new();
        let now_ms = self.sales.now().timestamp_millis();
        let begun = projection
            .begin_checkout(
                stripe,
                request.reservation,
                request.shopper,
                now_ms,
                order_id,
            )
            .await?;
        let (quantity, units) = match begun {
            BeginCheckout::Committing {
                quantity, units, ..
            } => (quantity, units),
            // The index knows the hold, Redis does not: it was lost with Redis state.
            BeginCheckout::Missing | BeginCheckout::Expired => {
                return Err(Error::ReservationExpired)
            }
            BeginCheckout::NotFound => return Err(Error::ReservationNotFound),
            BeginCheckout::AlreadyCommitting => {
                return Err(Error::ReservationNotHeld("being checked out".into()))
            }
            BeginCheckout::NotHeld(status) if status == "expired" => {
                return Err(Error::ReservationExpired)
            }
            BeginCheckout::NotHeld(status) => return Err(Error::ReservationNotHeld(status)),
        };
        let abort =
            |finish| projection.finish_checkout(stripe, request.reservation, order_id, finish);

        let (price, limit) = match self.sales.store().get(sale_id).await {
            Ok(sale) => (sale.price, sale.per_user_limit),
            Err(e) => {
                abort(Finish::Abort).await?;
                return Err(e);
            }
        };
        let amount = Money {
            amount_minor: price.amount_minor * quantity,
            currency: price.currency,
        };
        if let Err(e) = self
            .payments
            .authorize(order_id, &amount, &request.payment_token)
            .await
        {
            abort(Finish::Abort).await?;
            return Err(match e {
                PaymentError::Declined => Error::PaymentDeclined,
                PaymentError::Unavailable(reason) => {
                    tracing::warn!(%reason, order_id = %order_id, "payment authorization failed");
                    Error::PaymentUnavailable
                }
            });
        }

        let order = Order {
            order_id,
            sale_id,
            reservation_id: request.reservation,
            quantity,
            amount,
            status: "confirmed",
            created_at: self.sales.now(),
            confirmation: Confirmation {
                status: ConfirmationStatus::Pending,
                sent_at: None,
            },
        };
        match self.commit(request, &order, &units, limit).await {
            Ok(()) => {}
            Err(e) => {
                // Nothing committed: give the money back before anything else.
                self.void(order_id).await;
                let constraint = match &e {
                    Error::Database(db) => unique_violation(db),
                    _ => None,
                };
                return Err(match constraint.as_deref() {
                    Some("order_units_pkey") => {
                        let sold = self
                            .sold_among(sale_id, &units)
                            .await
                            .unwrap_or_else(|_| units.clone());
                        tracing::warn!(sale_id = %sale_id, ?sold, "unit handed out twice by Redis; Postgres refused the second sale");
                        metrics::counter!("flashsale_oversell_prevented_total").increment(1);
                        abort(Finish::Conflict(&sold)).await?;
                        Error::UnitUnavailable
                    }
                    Some("orders_reservation_unique") => {
                        Error::ReservationNotHeld("checked_out".into())
                    }
                    // The shopper's orders would pass the limit: this hold can never
                    // be bought, so its units go back to the other shoppers now.
                    _ if matches!(e, Error::PerUserLimitExceeded(_)) => {
                        abort(Finish::Release).await?;
                        e
                    }
                    _ => {
                        abort(Finish::Abort).await?;
                        e
                    }
                });
            }
        }
        if let Err(e) = projection
            .finish_checkout(stripe, request.reservation, order_id, Finish::Sold(&units))
            .await
        {
            // The order is committed; the reconciler moves the hold to checked_out later.
            tracing::warn!(error = %e, order_id = %order_id, "order committed but Redis not updated; the reconciler will finish it");
        }
        Ok(order)
    }

    /// The one transaction: order, its units, its event, and the idempotency answer.
    /// With striped stock it also keeps the per-shopper `limit` exact over orders (see
    /// [`LIMIT_CHECKED_INSERT`]).
    async fn commit(
        &self,
        request: &CheckoutRequest,
        order: &Order,
        units: &[i32],
        limit: i32,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let striped = self.sales.projection().stripe_count() > 1;
        if striped {
            sqlx::query("select pg_advisory_xact_lock(hashtextextended($1::text || $2::text, 0))")
                .bind(order.sale_id.0)
                .bind(request.shopper.0)
                .execute(&mut *tx)
                .await?;
        }
        let mut insert = sqlx::query_scalar(if striped {
            LIMIT_CHECKED_INSERT
        } else {
            ORDER_INSERT
        })
        .bind(order.order_id.0)
        .bind(order.sale_id.0)
        .bind(request.shopper.0)
        .bind(order.reservation_id.0)
        .bind(order.quantity as i32)
        .bind(order.amount.amount_minor)
        .bind(&order.amount.currency);
        if striped {
            insert = insert.bind(limit);
        }
        let created_at: Option<DateTime<Utc>> = insert.fetch_optional(&mut *tx).await?;
        let Some(created_at) = created_at else {
            return Err(Error::PerUserLimitExceeded(limit.into()));
        };
        sqlx::query(
            "insert into order_units (sale_id, unit_no, order_id) select $1, unnest($2::int[]), $3",
        )
        .bind(order.sale_id.0)
        .bind(units)
        .bind(order.order_id.0)
        .execute(&mut *tx)
        .await?;
        let payload = serde_json::json!({
            "order_id": order.order_id, "sale_id": order.sale_id, "shopper_id": request.shopper,
            "reservation_id": order.reservation_id, "quantity": order.quantity, "amount": order.amount,
        });
        sqlx::query(
            "insert into outbox (id, aggregate_type, aggregate_id, event_type, payload, correlation_id) \
             values ($1, 'order', $2, 'OrderPlaced', $3, $4)",
        )
        .bind(Uuid::now_v7())
        .bind(order.order_id.0)
        .bind(&payload)
        .bind(&request.correlation_id)
        .execute(&mut *tx)
        .await?;
        let mut answer = order.clone();
        answer.created_at = created_at;
        sqlx::query("update idempotency_keys set status_code = 201, response = $3 where shopper_id = $1 and key = $2")
            .bind(request.shopper.0)
            .bind(&request.idempotency_key)
            .bind(serde_json::to_value(&answer).map_err(anyhow::Error::from)?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn sold_among(&self, sale: SaleId, units: &[i32]) -> Result<Vec<i32>> {
        Ok(sqlx::query_scalar(
            "select unit_no from order_units where sale_id = $1 and unit_no = any($2)",
        )
        .bind(sale.0)
        .bind(units)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn void(&self, order: OrderId) {
        if let Err(e) = self.payments.void(order).await {
            // The reconciler voids it later: the order does not exist, so it finds
            // nothing committed for this hold.
            tracing::warn!(error = %e, order_id = %order, "void failed; the reconciler retries");
        }
    }

    /// Finishes holds stuck in `committing` for longer than `stale_after` (the process
    /// that began their checkout died): completes them from Postgres when the order
    /// committed, otherwise voids the authorization and returns them to `held`.
    pub async fn reconcile_once(&self, stale_after: Duration) -> Result<usize> {
        let projection = self.sales.projection();
        let before = self.sales.now().timestamp_millis() - stale_after.as_millis() as i64;
        let mut finished = 0;
        let stripes: Vec<Stripe> = projection
            .swept_sales()
            .await?
            .into_iter()
            .flat_map(|sale| projection.stripes(sale))
            .collect();
        for stripe in stripes {
            for (id, hold) in projection.stale_commits(stripe, before).await? {
                let attempt = hold.order.unwrap_or_default();
                let committed: Option<(Uuid, Vec<i32>)> = sqlx::query_as(
                    "select o.id, array_agg(u.unit_no) from orders o join order_units u on u.order_id = o.id \
                     where o.reservation_id = $1 group by o.id",
                )
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?;
                match committed {
                    Some((order, units)) => {
                        projection
                            .finish_checkout(stripe, id, OrderId(order), Finish::Sold(&units))
                            .await?
                    }
                    None => {
                        self.void(attempt).await;
                        projection
                            .finish_checkout(stripe, id, attempt, Finish::Abort)
                            .await?
                    }
                }
                finished += 1;
            }
        }
        if finished > 0 {
            metrics::counter!("flashsale_checkouts_reconciled_total").increment(finished as u64);
            tracing::warn!(
                finished,
                "finished checkouts left in committing by a dead process"
            );
        }
        Ok(finished)
    }

    /// A shopper's own order.
    pub async fn order(&self, shopper: ShopperId, id: OrderId) -> Result<Order> {
        let sql = format!("{ORDER_SELECT} where o.id = $1 and o.shopper_id = $2");
        let row: Option<OrderRow> = sqlx::query_as(&sql)
            .bind(id.0)
            .bind(shopper.0)
            .fetch_optional(&self.reads)
            .await?;
        row.map(Order::from).ok_or(Error::OrderNotFound)
    }

    /// A page of a shopper's orders, newest first, after the keyset position `after`.
    pub async fn shopper_orders(
        &self,
        shopper: ShopperId,
        limit: i64,
        after: Option<(DateTime<Utc>, Uuid)>,
    ) -> Result<Vec<Order>> {
        self.page("o.shopper_id", shopper.0, limit, after).await
    }

    /// A page of a sale's orders, newest first (the merchant has been checked).
    pub async fn sale_orders(
        &self,
        sale: SaleId,
        limit: i64,
        after: Option<(DateTime<Utc>, Uuid)>,
    ) -> Result<Vec<Order>> {
        self.page("o.sale_id", sale.0, limit, after).await
    }

    async fn page(
        &self,
        column: &str,
        value: Uuid,
        limit: i64,
        after: Option<(DateTime<Utc>, Uuid)>,
    ) -> Result<Vec<Order>> {
        let sql = format!(
            "{ORDER_SELECT} where {column} = $1 and ($2::timestamptz is null or (o.created_at, o.id) < ($2, $3)) \
             order by o.created_at desc, o.id desc limit $4"
        );
        let rows: Vec<OrderRow> = sqlx::query_as(&sql)
            .bind(value)
            .bind(after.map(|a| a.0))
            .bind(after.map(|a| a.1))
            .bind(limit)
            .fetch_all(&self.reads)
            .await?;
        Ok(rows.into_iter().map(Order::from).collect())
    }
}

fn outcome_label(e: &Error) -> &'static str {
    match e {
        Error::PaymentDeclined => "declined",
        Error::PaymentUnavailable => "payment_unavailable",
        Error::ReservationExpired => "expired",
        Error::UnitUnavailable => "unit_unavailable",
        Error::PerUserLimitExceeded(_) => "limit_exceeded",
        Error::Database(_) | Error::Redis(_) => "unavailable",
        _ => "rejected",
    }
}

fn hex_digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}
