//! Checkout: a hold becomes an order. The payment attempt is recorded with the
//! idempotency claim, under an id a retry reuses; the payment is authorized; then ONE
//! Postgres transaction writes the order, one `order_units` row per unit (the oversell
//! guard), the `OrderPlaced` outbox event, the idempotency answer and the attempt's
//! `committed` mark. The money is captured later by a worker reacting to
//! `OrderPlaced`; an attempt that may hold money without an order (an answer lost, a
//! transaction that failed, a dead process) is voided by the completer until the
//! provider confirms it — nobody pays for an order that does not exist.
//!
//! Checkout answers in domain values: [`Placement::Placed`] for the request that placed
//! the order, [`Placement::Replayed`] for a retry with the same idempotency key. What
//! either means in HTTP is the `api` crate's business.
//!
//! # Layout
//!
//! - this module: the flow ([`Checkout::checkout`]): claim the key, take the hold,
//!   authorize, commit, finish the hold in Redis.
//! - [`idempotency`]: claim a key, save the answer, replay it.
//! - `attempts`: the attempt id, the attempt's states, the completer.
//! - `transaction`: the one Postgres transaction of an order.
//! - `commit_outcome`: asks Postgres whether an order whose COMMIT errored exists.
//! - `reconciler`: finishes checkouts a dead process left in `committing`.
//! - [`orders`]: the order read model ([`Order`]) and the order queries.
//! - [`lines`]: an order's lines per variant ([`lines::OrderLine`]), derived from its
//!   units.
//! - [`report`]: a sale's order figures for the post-event report and the orders
//!   export, page by page.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::PgPool;

use crate::ids::{OrderId, ReservationId, SaleId, ShopperId};
use crate::payment::{PaymentError, PaymentGateway, PaymentRef, PaymentState, PaymentToken};
use crate::projection::{BeginCheckout, Finish};
use crate::sales::Money;
use crate::{Error, Result, Sales};

mod attempts;
mod commit_outcome;
pub mod idempotency;
pub mod lines;
pub mod orders;
mod reconciler;
pub mod report;
mod transaction;

pub use orders::{Confirmation, ConfirmationStatus, Order, OrderStatus};

use attempts::NewAttempt;
use commit_outcome::CommitOutcome;
use idempotency::{Claim, IdempotencyKey};
use transaction::{unique_violation, Commit, CommitFailure};

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
    pub payment_token: PaymentToken,
    /// The request id that caused it, carried into the event.
    pub correlation_id: String,
}

impl CheckoutRequest {
    fn key(&self) -> IdempotencyKey<'_> {
        IdempotencyKey {
            shopper: self.shopper,
            key: &self.idempotency_key,
        }
    }
}

/// How a checkout ended well.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// This request placed the order.
    Placed(Order),
    /// An earlier request with the same idempotency key and body placed it; this is
    /// the order as that request answered it.
    Replayed(Order),
}

impl Placement {
    /// The order, placed now or earlier.
    pub fn into_order(self) -> Order {
        match self {
            Placement::Placed(order) | Placement::Replayed(order) => order,
        }
    }
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
    /// How long a payment attempt is presumed in flight before the completer judges it.
    attempt_grace: Duration,
    /// Started sales' variants (prices) and limit ([`Checkout::terms`]).
    terms: Arc<RwLock<HashMap<SaleId, Terms>>>,
}

/// What checkout reads of a sale once it started: variants (prices), currency,
/// per-shopper limit, cancel window (seconds).
type Terms = (Vec<crate::sales::Variant>, String, i32, i32);

/// The default grace of a payment attempt: twice the default payment timeout (3 s).
const DEFAULT_ATTEMPT_GRACE: Duration = Duration::from_secs(6);

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
            attempt_grace: DEFAULT_ATTEMPT_GRACE,
            terms: Arc::default(),
        }
    }

    /// Sets how long a payment attempt is presumed in flight (its request may still be
    /// waiting for the provider) before the completer judges it: at least the payment
    /// timeout; twice it by default.
    pub fn with_attempt_grace(mut self, grace: Duration) -> Self {
        self.attempt_grace = grace;
        self
    }

    /// The order's life after the purchase (cancel, refund: `crate::order_life`), over
    /// this checkout's pools and provider.
    pub fn life(&self) -> crate::order_life::OrderLife {
        crate::order_life::OrderLife::new(
            self.clone(),
            self.sales.clone(),
            self.pool.clone(),
            self.payments.clone(),
        )
    }

    /// The payment gateway (the capture worker and tests share it).
    pub fn payments(&self) -> Arc<dyn PaymentGateway> {
        self.payments.clone()
    }

    /// Places the order, or replays the first answer to this idempotency key.
    pub async fn checkout(&self, request: CheckoutRequest) -> Result<Placement> {
        let reservation = request.reservation.to_string();
        let hash = idempotency::request_hash(&[&reservation, request.payment_token.as_str()]);
        let attempt = NewAttempt {
            id: attempts::attempt_id(
                request.reservation,
                request.shopper,
                &request.idempotency_key,
            ),
            reservation: request.reservation,
            grace: self.attempt_grace,
        };
        let retried =
            match idempotency::claim::<Order>(&self.pool, request.key(), &hash, Some(&attempt))
                .await?
            {
                Claim::Answered(order) => return Ok(Placement::Replayed(order)),
                Claim::Claimed { retried } => retried,
            };
        // A retry whose earlier attempt was voided pays under a successor attempt.
        let (attempt, retried) = if retried {
            match self.current_attempt(attempt, request.shopper).await {
                Ok(current) => current,
                Err(e) => {
                    attempts::release(
                        &self.pool,
                        request.key(),
                        attempt.id,
                        true,
                        self.attempt_grace,
                    )
                    .await;
                    return Err(e);
                }
            }
        } else {
            (attempt, false)
        };
        // Whether the provider may hold an authorization of this attempt: then a
        // failure hands it to the completer instead of forgetting it.
        let mut may_be_authorized = retried;
        match self
            .place(&request, attempt.id, retried, &mut may_be_authorized)
            .await
        {
            Ok(order) => {
                metrics::counter!("flashsale_checkouts_total", "outcome" => "confirmed")
                    .increment(1);
                Ok(Placement::Placed(order))
            }
            Err(e) => {
                metrics::counter!("flashsale_checkouts_total", "outcome" => outcome_label(&e))
                    .increment(1);
                // A failed attempt leaves no answer behind: the key may be retried. Its
                // payment attempt goes to the completer when money may be held.
                attempts::release(
                    &self.pool,
                    request.key(),
                    attempt.id,
                    may_be_authorized,
                    self.attempt_grace,
                )
                .await;
                Err(e)
            }
        }
    }

    /// Places the order under `order_id` (the attempt id). `retried`: an earlier try of
    /// the key recorded this attempt, so the provider is asked first; sets
    /// `may_be_authorized` once the provider may hold money for it.
    async fn place(
        &self,
        request: &CheckoutRequest,
        order_id: OrderId,
        retried: bool,
        may_be_authorized: &mut bool,
    ) -> Result<Order> {
        let projection = self.sales.projection();
        let stripe = projection
            .reservation_stripe(request.reservation)
            .await?
            .ok_or(Error::ReservationNotFound)?;
        let sale_id = stripe.sale;
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
            // The id names the hold, Redis does not know it: lost with Redis state.
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

        let (variants, currency, limit, cancel_window) = match self.terms(sale_id).await {
            Ok(terms) => terms,
            Err(e) => {
                abort(Finish::Abort).await?;
                return Err(e);
            }
        };
        // One authorization for the cart: the sum of its lines (each unit priced by
        // the variant it belongs to; a one-variant sale's is price × quantity).
        let lines = lines::lines_of(&variants, &units);
        if lines.iter().map(|l| l.quantity).sum::<i64>() != units.len() as i64 {
            // A unit no variant owns: never charge a partial price for it.
            abort(Finish::Abort).await?;
            return Err(Error::Internal(anyhow::anyhow!(
                "sale {sale_id}: units {units:?} are not all owned by its variants"
            )));
        }
        let amount = lines::total(&lines, &currency);
        let payment = match self
            .authorize(order_id, &amount, request, retried, may_be_authorized)
            .await
        {
            Ok(payment) => payment,
            Err(e) => {
                abort(Finish::Abort).await?;
                return Err(match e {
                    PaymentError::Declined => Error::PaymentDeclined,
                    PaymentError::Unavailable(reason) | PaymentError::Refused(reason) => {
                        tracing::warn!(%reason, order_id = %order_id, "payment authorization failed");
                        Error::PaymentUnavailable
                    }
                });
            }
        };

        let created_at = self.sales.now();
        let order = Order {
            order_id,
            sale_id,
            reservation_id: request.reservation,
            quantity,
            amount,
            // A v1 sale's order keeps the v1 shape; its event carries the line anyway.
            lines: if crate::sales::lists_variants(sale_id, &variants) {
                lines.clone()
            } else {
                Vec::new()
            },
            status: OrderStatus::Confirmed,
            // The window as the sale's terms were cached when it started (the order
            // reads judge by the sale as it is now).
            cancellable_until: (cancel_window > 0)
                .then(|| created_at + chrono::Duration::seconds(cancel_window.into())),
            created_at,
            confirmation: Confirmation {
                status: ConfirmationStatus::Pending,
                sent_at: None,
            },
        };
        let commit = Commit {
            shopper: request.shopper,
            key: request.key(),
            units: &units,
            lines: &lines,
            limit,
            cancel_window,
            correlation_id: &request.correlation_id,
            payment: &payment,
        };
        match transaction::commit(&self.pool, &order, commit).await {
            Ok(()) => {}
            // COMMIT was sent and failed: the order may exist. Postgres says which.
            Err(CommitFailure::Ambiguous { error: e, backend }) => {
                match commit_outcome::resolve(&self.pool, order_id, backend).await {
                    CommitOutcome::Committed => {
                        tracing::warn!(error = %e, order_id = %order_id, "COMMIT failed but the order committed; finishing it");
                    }
                    CommitOutcome::NotCommitted => {
                        self.void(order_id, &payment).await;
                        abort(Finish::Abort).await?;
                        return Err(e);
                    }
                    // Neither void nor finish: the hold stays committing and the
                    // reconciler settles it from Postgres once Postgres answers.
                    CommitOutcome::Unknown => {
                        tracing::warn!(error = %e, order_id = %order_id, "cannot tell whether the order committed; the reconciler finishes it");
                        return Err(e);
                    }
                }
            }
            Err(CommitFailure::Refused(e)) => {
                // Nothing committed: give the money back before anything else.
                self.void(order_id, &payment).await;
                return Err(match unique_violation(&e).as_deref() {
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

    /// The sale's unit price and per-shopper limit. Both are frozen once the sale has
    /// started (the rules shoppers rely on), and a hold is only checked out of a started
    /// sale: read from Postgres once, then kept for the life of the process (a few bytes
    /// per sale; forgotten all at once past 10,000 sales).
    async fn terms(&self, sale: SaleId) -> Result<Terms> {
        if let Some(terms) = self
            .terms
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&sale)
        {
            return Ok(terms.clone());
        }
        let record = self.sales.store().get(sale).await?;
        let terms = (
            record.variants,
            record.price.currency,
            record.per_user_limit,
            record.cancel_window_seconds,
        );
        if record.starts_at <= self.sales.now() {
            let mut known = self.terms.write().unwrap_or_else(|e| e.into_inner());
            if known.len() >= 10_000 {
                known.clear();
            }
            known.insert(sale, terms.clone());
        }
        Ok(terms)
    }

    /// Authorizes `amount` for the attempt and answers the provider's payment. A
    /// retried attempt asks the provider first (the earlier try's answer may have been
    /// lost): an authorization that exists is reused; one voided since
    /// [`Checkout::current_attempt`] looked cannot pay (the next retry of the key pays
    /// under a successor attempt).
    async fn authorize(
        &self,
        order_id: OrderId,
        amount: &Money,
        request: &CheckoutRequest,
        retried: bool,
        may_be_authorized: &mut bool,
    ) -> std::result::Result<PaymentRef, PaymentError> {
        if retried {
            match self.payments.find(order_id).await? {
                None => {}
                Some(payment) if payment.state == PaymentState::Authorized => {
                    return Ok(payment.reference)
                }
                // Declined before: authorizing again under the same idempotency key
                // would only replay the decline.
                Some(payment) if payment.state == PaymentState::Declined => {
                    return Err(PaymentError::Declined)
                }
                Some(payment) => {
                    tracing::warn!(state = payment.state.as_str(), order_id = %order_id, "retried payment attempt settled meanwhile; the next retry pays under a successor attempt");
                    return Err(PaymentError::Unavailable(
                        "the attempt of this key was voided".into(),
                    ));
                }
            }
        }
        *may_be_authorized = true;
        let outcome = self
            .payments
            .authorize(order_id, amount, request.payment_token.as_str())
            .await;
        if matches!(
            outcome,
            Err(PaymentError::Declined | PaymentError::Refused(_))
        ) {
            // A decline or a refusal is definite: nothing is held for this try.
            *may_be_authorized = retried;
        }
        outcome
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

    /// Voids the attempt `order` (its provider payment `payment`) through the durable
    /// path: first hands it to the completer (which asks Postgres whether the order
    /// exists and the provider what it holds, and voids until confirmed, across
    /// restarts), then tries the void at once so the money is usually released before
    /// the answer goes out.
    async fn void(&self, order: OrderId, payment: &PaymentRef) {
        self.hand_over(order).await;
        if let Err(e) = self.payments.void(payment).await {
            tracing::warn!(error = %e, order_id = %order, %payment, "void failed; the completer retries it");
        }
    }

    /// Voids the attempt `order` whose provider payment is not known here (its
    /// request's process died with the answer): hands it to the completer, then finds
    /// the payment by the attempt id and voids it at once when it is authorized.
    async fn void_attempt(&self, order: OrderId) {
        self.hand_over(order).await;
        match self.payments.find(order).await {
            Ok(Some(payment)) if payment.state == PaymentState::Authorized => {
                if let Err(e) = self.payments.void(&payment.reference).await {
                    tracing::warn!(error = %e, order_id = %order, "void failed; the completer retries it");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, order_id = %order, "could not find the payment; the completer retries it")
            }
        }
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
