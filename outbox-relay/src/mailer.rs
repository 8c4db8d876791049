//! The mailer port: how the `order-confirmation` worker tells a shopper that the order
//! is placed. A real implementation calls an e-mail provider; [`SimulatedMailer`]
//! stands in for one.

use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use uuid::Uuid;

use crate::error::Result;

/// What an order confirmation says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderConfirmation {
    /// The `OrderPlaced` event being confirmed. Passed to the provider as the
    /// idempotency key: a worker that dies after sending and before recording sends
    /// again on redelivery, and a provider that honours the key sends one mail.
    pub event_id: Uuid,
    /// The order.
    pub order_id: Uuid,
    /// The recipient.
    pub shopper_id: Uuid,
    /// The sale bought from.
    pub sale_id: Uuid,
    /// Units bought.
    pub quantity: i32,
    /// Amount paid, minor units.
    pub amount_minor: i64,
    /// Currency of the amount.
    pub currency: String,
}

/// Sends order confirmations.
pub trait Mailer: Send + Sync + 'static {
    /// Sends `confirmation` to its shopper. Should be idempotent by
    /// [`OrderConfirmation::event_id`]; a failure is retried with backoff.
    fn send_order_confirmation<'a>(
        &'a self,
        confirmation: &'a OrderConfirmation,
    ) -> BoxFuture<'a, Result<()>>;
}

/// A mailer that sends nothing: it logs the confirmation and counts it. The durable
/// record of the confirmation is the `notifications` row the worker writes.
#[derive(Debug, Default)]
pub struct SimulatedMailer {
    sent: AtomicU64,
}

impl SimulatedMailer {
    /// A mailer that has sent nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many confirmations this mailer has "sent" (retries included).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Mailer for SimulatedMailer {
    fn send_order_confirmation<'a>(
        &'a self,
        confirmation: &'a OrderConfirmation,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.sent.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                order_id = %confirmation.order_id,
                event_id = %confirmation.event_id,
                "order confirmation sent (simulated)"
            );
            Ok(())
        })
    }
}
