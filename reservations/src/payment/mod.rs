//! The payment port: card payments in the shape real providers have — `authorize`
//! when the shopper checks out, `capture` after the order is committed, `void` when it
//! is not, `refund` when a captured payment must go back — each idempotent, and
//! `retrieve`/`find` to ask what became of one when an answer was lost. The provider is
//! reached over HTTP through [`StripePayments`] (a Stripe PaymentIntents subset: Stripe's
//! test mode, or the project's own simulator, crate `payment-simulator`); every call
//! goes through a timeout and a circuit breaker ([`GuardedGateway`]).
//!
//! # Layout
//!
//! - this file: the port ([`PaymentGateway`]), its values and errors, the parsed
//!   [`PaymentToken`].
//! - [`stripe`]: the adapter for the Stripe PaymentIntents subset.
//! - [`breaker`]: the timeout and circuit breaker around any gateway.

mod breaker;
pub mod layer;
mod stripe;

pub use breaker::GuardedGateway;
pub use stripe::{ProviderConfig, StripePayments};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::OrderId;
use crate::sales::{FieldError, Money};

/// Why a payment call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The card was declined (`402 payment_declined`).
    #[error("the card was declined")]
    Declined,
    /// The payment is in a state the call cannot apply to (void of a captured payment,
    /// a refund of more than is left): definite, and retrying does not help.
    #[error("the payment cannot do that in its state: {0}")]
    Refused(String),
    /// The provider failed, timed out, lost the answer, or the breaker is open
    /// (`503 payment_unavailable`): the outcome is unknown until asked.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
}

/// The provider's id of a payment (Stripe: the PaymentIntent id, `pi_…`). Stored as
/// the order's `payment_auth_id` and carried by its `OrderPlaced` event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PaymentRef(pub String);

impl std::fmt::Display for PaymentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the provider says a payment is (Stripe's PaymentIntent statuses
/// `requires_payment_method`, `requires_capture`, `succeeded` and `canceled`, named
/// after ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentState {
    /// The card was declined: nothing is held.
    Declined,
    /// The money is reserved on the card, not taken.
    Authorized,
    /// The money is taken (some or all of it may have been refunded since).
    Captured,
    /// The authorization was released.
    Voided,
}

impl PaymentState {
    /// The name the audits and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::Declined => "declined",
            PaymentState::Authorized => "authorized",
            PaymentState::Captured => "captured",
            PaymentState::Voided => "voided",
        }
    }
}

/// A payment as the provider knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The provider's id.
    pub reference: PaymentRef,
    /// The attempt it was authorized for (its idempotency key; Stripe: metadata), if
    /// flashsale made it.
    pub attempt: Option<OrderId>,
    /// Its state.
    pub state: PaymentState,
    /// The amount authorized.
    pub amount: Money,
    /// How much of a captured payment was refunded, in minor units.
    pub refunded_minor: i64,
    /// When the provider created it.
    pub created_at: DateTime<Utc>,
}

/// A card payment provider. Every call is idempotent: a retry of a call whose answer
/// was lost has the effect of one call.
pub trait PaymentGateway: Send + Sync + 'static {
    /// Reserves `amount` on the card behind `token` for `attempt`, which is the
    /// provider's idempotency key: a second authorize of one attempt returns the first
    /// one's payment instead of holding the card twice.
    fn authorize<'a>(
        &'a self,
        attempt: OrderId,
        amount: &'a Money,
        token: &'a str,
    ) -> BoxFuture<'a, Result<PaymentRef, PaymentError>>;
    /// Takes the authorized money. A payment already captured is `Ok`.
    fn capture<'a>(&'a self, payment: &'a PaymentRef) -> BoxFuture<'a, Result<(), PaymentError>>;
    /// Releases an authorization that will not be captured. A payment already voided
    /// (or declined) is `Ok`; a captured one is [`PaymentError::Refused`].
    fn void<'a>(&'a self, payment: &'a PaymentRef) -> BoxFuture<'a, Result<(), PaymentError>>;
    /// Gives back `amount_minor` of a captured payment (all that is left when `None`),
    /// once per `key`.
    fn refund<'a>(
        &'a self,
        payment: &'a PaymentRef,
        amount_minor: Option<i64>,
        key: Uuid,
    ) -> BoxFuture<'a, Result<(), PaymentError>>;
    /// What the provider knows of `payment`.
    fn retrieve<'a>(
        &'a self,
        payment: &'a PaymentRef,
    ) -> BoxFuture<'a, Result<Payment, PaymentError>>;
    /// The payment authorized for `attempt`, if any: how an authorize whose answer was
    /// lost is resolved (`None` when the provider never made one).
    fn find(&self, attempt: OrderId) -> BoxFuture<'_, Result<Option<Payment>, PaymentError>>;
    /// Every payment created at or after `since`, for the checker: one page of at most
    /// 100, newest first, continuing after `after`; the flag says whether more follow.
    fn list<'a>(
        &'a self,
        since: DateTime<Utc>,
        after: Option<&'a PaymentRef>,
    ) -> BoxFuture<'a, Result<(Vec<Payment>, bool), PaymentError>>;
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
