//! The payment port: card payments in the shape real providers have — `authorize`
//! when the shopper checks out, `capture` after the order is committed, `void` when it
//! is not — each idempotent by order id, and `retrieve` to ask what became of one when
//! an answer was lost. A simulated provider stands in for a real one;
//! every call goes through a timeout and a circuit breaker.
//!
//! # Layout
//!
//! - this file: the port ([`PaymentGateway`]), its errors, the parsed [`PaymentToken`].
//! - [`simulator`]: the simulated provider and its settings.
//! - [`breaker`]: the timeout and circuit breaker around any gateway.

mod breaker;
mod simulator;

pub use breaker::GuardedGateway;
pub use simulator::{Latency, SimulatedPayments, SimulatorSettings};

use futures::future::BoxFuture;

use crate::ids::OrderId;
use crate::sales::{FieldError, Money};

/// Why a payment call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The card was declined (`402 payment_declined`).
    #[error("the card was declined")]
    Declined,
    /// The provider failed, timed out, or the breaker is open (`503 payment_unavailable`).
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
}

/// What the provider says a payment is (Stripe's PaymentIntent statuses
/// `requires_capture`, `succeeded` and `canceled`, named after ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentState {
    /// The money is reserved on the card, not taken.
    Authorized,
    /// The money is taken.
    Captured,
    /// The authorization was released.
    Voided,
}

/// A card payment provider.
pub trait PaymentGateway: Send + Sync + 'static {
    /// Reserves `amount` on the card behind `token` for `order`. Idempotent by order.
    fn authorize<'a>(
        &'a self,
        order: OrderId,
        amount: &'a Money,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), PaymentError>>;
    /// Takes the authorized money. Idempotent by order.
    fn capture(&self, order: OrderId) -> BoxFuture<'_, Result<(), PaymentError>>;
    /// Releases an authorization that will not be captured. Idempotent by order.
    fn void(&self, order: OrderId) -> BoxFuture<'_, Result<(), PaymentError>>;
    /// What the provider knows of `order`'s payment; `None` when it never authorized
    /// one. How an ambiguous outcome (a timeout, a lost answer) is resolved.
    fn retrieve(&self, order: OrderId)
        -> BoxFuture<'_, Result<Option<PaymentState>, PaymentError>>;
}

/// A card token as the shopper's client sent it: 1–255 characters. Parsed once at the
/// edge ([`PaymentToken::parse`]); the gateway receives only tokens that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentToken(String);

impl PaymentToken {
    /// The longest token accepted, in characters (API.md).
    pub const MAX_CHARS: usize = 255;

    /// Accepts 1–255 characters; otherwise `422 invalid_field` on `payment_token`.
    pub fn parse(token: String) -> Result<PaymentToken, FieldError> {
        let chars = token.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS {
            return Err(FieldError {
                field: "payment_token",
                message: "must be 1–255 characters".into(),
            });
        }
        Ok(PaymentToken(token))
    }

    /// The token, for the gateway.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_token_is_one_to_255_characters() {
        assert!(PaymentToken::parse("tok_ok".into()).is_ok());
        assert!(PaymentToken::parse("é".repeat(255)).is_ok());
        let too_long = PaymentToken::parse("x".repeat(256)).unwrap_err();
        assert_eq!(
            too_long.to_string(),
            "payment_token: must be 1–255 characters"
        );
        assert!(PaymentToken::parse(String::new()).is_err());
    }
}
