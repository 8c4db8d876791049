//! The consumer groups on the order stream: their names, shared by the workers that
//! run them, the effects they apply, the relay's republish query and `flashsale verify`.
//! `webhooks` also consumes the sale stream (the sale lifecycle events), alone.

/// The consumer groups on the order stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumerKind {
    /// Sends the order confirmation (`notifications`).
    OrderConfirmation,
    /// Captures the payment (`payment_captures`).
    PaymentCapture,
    /// Counts units and revenue per sale (`sales_ledger`).
    SalesLedger,
    /// Fans each event out to the merchants' webhook endpoints (`webhook_deliveries`);
    /// the only group that also reads the sale stream ([`crate::webhooks`]).
    Webhooks,
}

impl ConsumerKind {
    /// Every consumer group, in the order [`crate::worker::run`] starts them.
    pub const ALL: [ConsumerKind; 4] = [
        ConsumerKind::OrderConfirmation,
        ConsumerKind::PaymentCapture,
        ConsumerKind::SalesLedger,
        ConsumerKind::Webhooks,
    ];

    /// The group name, also the `consumer` column of `processed_events` and the
    /// `consumer` label of the metrics.
    pub fn group(self) -> &'static str {
        match self {
            ConsumerKind::OrderConfirmation => "order-confirmation",
            ConsumerKind::PaymentCapture => "payment-capture",
            ConsumerKind::SalesLedger => "sales-ledger",
            ConsumerKind::Webhooks => "webhooks",
        }
    }
}
