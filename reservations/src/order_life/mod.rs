//! The order's life after the purchase (API.md v1.1, issue #18): the shopper cancels
//! within the sale's window, the merchant refunds. This module owns both operations,
//! the return of the order's units and the release of its money.
//!
//! # Rules
//!
//! - **The status moves once.** `confirmed` → `cancelled` or `refunded`, in ONE
//!   Postgres transaction guarded by `where status = 'confirmed'` (see `close`): the
//!   order's units leave `order_units` (kept in `released_units`; retired ones also go
//!   to `retired_units`), the shopper's count in `shopper_units` goes down, the
//!   `OrderCancelled` / `OrderRefunded` event is written to the outbox, the payment
//!   release is recorded (`payment_releases`, before any provider call) and the
//!   idempotency answer is saved.
//! - **Idempotency.** A retry with the same `Idempotency-Key` replays the first answer.
//!   Another key on an order already closed by the same operation (cancel after
//!   cancel, refund after refund) answers `200` with the order, as the first call did;
//!   the other operation answers `409 not_cancellable` / `409 not_refundable`. A
//!   refused request saves no answer (the key may be retried).
//! - **Cancel**: the owner only (another shopper's order is `404`), while
//!   `cancellable_until` is set: now < created_at + `cancel_window_seconds`, the window
//!   is not 0, and the sale has not ended (its end time passed or the merchant ended
//!   it): after the sale the units could not be sold again, so a cancel would only be
//!   a refund the merchant did not agree to. A cancel always restocks.
//! - **Refund**: the sale's merchant, any `confirmed` order, at any time; `restock`
//!   true puts the units back on sale, false retires them (they leave the sale: the
//!   sale's and the variant's `total` go down). Conservation holds either way.
//! - **Units in Redis.** After the commit the units leave `sold` through one
//!   idempotent script (`Projection::return_units`): the order's hold moves from
//!   `checked_out` to `returned` exactly once, and only that move pushes the units on
//!   their variants' free lists (or lowers the totals). A Redis rebuilt from Postgres
//!   already finds them free (they are in neither `order_units` nor `retired_units`)
//!   and has no hold, so the script does nothing. A push that failed is retried by the
//!   completer (below). The waiting room reads free units from the same counters, so
//!   it admits the line for the returned units by itself.
//! - **Money** (see `release`): after the commit, through the provider: a payment not
//!   captured yet is voided, a captured one refunded (the refund's idempotency key is
//!   the order id: one refund however often it is asked). The capture worker reads the
//!   order's status before capturing and skips a closed order; if it raced and
//!   captured first, the void is refused and the release, reading the payment again,
//!   refunds it instead. A process that dies between the commit and the provider
//!   leaves the release `pending`; the completer (`OrderLife::complete_releases`, run
//!   by the checkout reconciler) finishes it.
//! - **Sales ledger and confirmation**: the events are consumed by the webhooks
//!   fan-out (`order.cancelled`, `order.refunded`); the confirmation consumer ignores
//!   them (the cancel's `200` is the shopper's notice; no mail is sent).
//!
//! Layout: this module (the two operations), `close` (the transaction), `release`
//! (units and money after the commit, and the completer).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::checkout::idempotency::{self, Claim, IdempotencyKey};
use crate::checkout::{Checkout, Order, OrderStatus};
use crate::ids::{MerchantId, OrderId, SaleId, ShopperId};
use crate::payment::PaymentGateway;
use crate::{Error, Result, Sales};

mod close;
mod release;

/// Cancels and refunds orders (build it with [`Checkout::life`]).
#[derive(Clone)]
pub struct OrderLife {
    checkout: Checkout,
    sales: Sales,
    pool: PgPool,
    payments: Arc<dyn PaymentGateway>,
}

/// Which way an order closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Cancel,
    Refund { restock: bool },
}

impl Closing {
    fn status(self) -> OrderStatus {
        match self {
            Closing::Cancel => OrderStatus::Cancelled,
            Closing::Refund { .. } => OrderStatus::Refunded,
        }
    }

    fn restock(self) -> bool {
        match self {
            Closing::Cancel => true,
            Closing::Refund { restock } => restock,
        }
    }

    fn refused(self, why: &str) -> Error {
        match self {
            Closing::Cancel => {
                Error::NotCancellable(format!("this order cannot be cancelled: {why}"))
            }
            Closing::Refund { .. } => {
                Error::NotRefundable(format!("this order cannot be refunded: {why}"))
            }
        }
    }
}

impl OrderLife {
    /// Over `checkout`'s order reads, writing through `pool`, releasing money through
    /// `payments`.
    pub(crate) fn new(
        checkout: Checkout,
        sales: Sales,
        pool: PgPool,
        payments: Arc<dyn PaymentGateway>,
    ) -> Self {
        Self {
            checkout,
            sales,
            pool,
            payments,
        }
    }

    /// The shopper cancels their order (see the module docs for the rules).
    pub async fn cancel(&self, shopper: ShopperId, id: OrderId, key: &str) -> Result<Order> {
        let key = IdempotencyKey { shopper, key };
        let hash = idempotency::request_hash(&["cancel", &id.to_string()]);
        self.close(key, &hash, Closing::Cancel, || {
            self.checkout.order(shopper, id)
        })
        .await
    }

    /// The merchant refunds an order of their sale (the merchant owns the sale: the
    /// caller checked). Idempotency keys of merchants share the table of shoppers'
    /// keys, scoped by the merchant's id (ids are random UUIDs: they never collide).
    pub async fn refund(
        &self,
        merchant: MerchantId,
        sale: SaleId,
        id: OrderId,
        restock: bool,
        key: &str,
    ) -> Result<Order> {
        let key = IdempotencyKey {
            shopper: ShopperId(merchant.0),
            key,
        };
        let hash = idempotency::request_hash(&["refund", &id.to_string(), &restock.to_string()]);
        self.close(key, &hash, Closing::Refund { restock }, || {
            self.checkout.order_of_sale(sale, id)
        })
        .await
    }

    async fn close<F, Fut>(
        &self,
        key: IdempotencyKey<'_>,
        hash: &str,
        closing: Closing,
        read: F,
    ) -> Result<Order>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Order>>,
    {
        if let Claim::Answered(order) =
            idempotency::claim::<Order>(&self.pool, key, hash, None).await?
        {
            return Ok(order);
        }
        match self.close_claimed(key, closing, &read).await {
            Ok(order) => Ok(order),
            Err(e) => {
                // A refused request leaves no answer behind: the key may be retried.
                if let Err(release) = idempotency::release_on(&self.pool, key).await {
                    tracing::warn!(error = %release, "could not release an idempotency key; it times out");
                }
                Err(e)
            }
        }
    }

    async fn close_claimed<F, Fut>(
        &self,
        key: IdempotencyKey<'_>,
        closing: Closing,
        read: &F,
    ) -> Result<Order>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Order>>,
    {
        // Twice at most: a concurrent close between our read and our transaction makes
        // the guard refuse, and the order is judged again as it is now.
        for _ in 0..2 {
            let order = read().await?;
            match order.status {
                status if status == closing.status() => {
                    close::save_answer(&self.pool, key, &order).await?;
                    return Ok(order);
                }
                OrderStatus::Confirmed => {}
                OrderStatus::Cancelled => return Err(closing.refused("it was cancelled")),
                OrderStatus::Refunded => return Err(closing.refused("it was refunded")),
            }
            if closing == Closing::Cancel && order.cancellable_until.is_none() {
                return Err(closing.refused(
                    "its cancel window has passed, the sale has ended, or the sale allows no cancels",
                ));
            }
            let mut closed = order.clone();
            closed.status = closing.status();
            closed.cancellable_until = None;
            let at = self.sales.now();
            if close::commit(&self.pool, key, &closed, closing, at).await? {
                release::after_commit(
                    &self.pool,
                    self.sales.projection(),
                    self.payments.as_ref(),
                    &closed,
                    closing.restock(),
                )
                .await;
                return Ok(closed);
            }
        }
        Err(closing.refused("it is being closed by another request"))
    }

    /// Finishes payment releases (and unit returns) a process left `pending` for
    /// longer than `grace`; the checkout reconciler runs it. Returns how many it
    /// finished.
    pub async fn complete_releases(&self, grace: Duration) -> Result<usize> {
        release::complete(
            &self.pool,
            self.sales.projection(),
            self.payments.as_ref(),
            grace,
        )
        .await
    }
}
