//! The crate's one error type. The HTTP layer maps each variant to a status and a
//! stable `code`; variants carry what the shopper or merchant needs to act on.

use crate::sales::FieldError;

/// Everything that can go wrong in sales, holds and checkout.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of a sale failed validation (`422 invalid_field`).
    #[error("{0}")]
    InvalidField(#[from] FieldError),
    /// No such sale, or not this merchant's.
    #[error("sale not found")]
    SaleNotFound,
    /// The `If-Match` version is not the current one.
    #[error("the sale changed since version {0} was read")]
    StaleVersion(i32),
    /// A field that cannot change once the sale has started.
    #[error("{0} cannot change once the sale has started")]
    SaleLocked(&'static str),
    /// pause / resume / end from a state that does not allow it.
    #[error("cannot {action} a sale that is {from}")]
    InvalidTransition {
        /// What was asked.
        action: &'static str,
        /// The state the sale is in.
        from: String,
    },
    /// A negative stock delta larger than the free units.
    #[error("only {free} units are free; cannot retire {asked}")]
    InsufficientFreeStock {
        /// Units free right now.
        free: i64,
        /// Units the merchant asked to retire.
        asked: i64,
    },
    /// The quantity is not within 1..=per_user_limit.
    #[error("{0}")]
    InvalidQuantity(String),
    /// Reserve on a sale that is scheduled, paused or ended.
    #[error("the sale is not live")]
    SaleNotLive,
    /// No free units (or fewer than asked).
    #[error("sold out")]
    SoldOut,
    /// held + bought + requested would exceed the sale's per-shopper limit.
    #[error("at most {0} units per shopper")]
    PerUserLimitExceeded(i64),
    /// A cart's lines that could not be served; nothing was held (v1.1, `409 sold_out`
    /// with `lines`).
    #[error("not every line of the cart can be served; nothing was held")]
    SoldOutLines(Vec<crate::service::ShortLine>),
    /// held + bought + requested of one variant would exceed its own per-shopper limit.
    #[error("at most {limit} units of variant {variant} per shopper")]
    VariantLimitExceeded {
        /// The variant whose limit was hit.
        variant: crate::ids::VariantId,
        /// Its limit.
        limit: i64,
    },
    /// A `{ "quantity": n }` reserve of a sale with several variants (`422
    /// variant_required`).
    #[error("this sale has several variants: reserve with lines naming them")]
    VariantRequired,
    /// No such variant in this sale.
    #[error("variant not found")]
    VariantNotFound,
    /// The same idempotency key was sent with a different body.
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    /// No such reservation, or another shopper's.
    #[error("reservation not found")]
    ReservationNotFound,
    /// The hold expired, or was lost with Redis state.
    #[error("the reservation expired")]
    ReservationExpired,
    /// Released, or checked out under another key.
    #[error("the reservation is {0}")]
    ReservationNotHeld(String),
    /// The card was declined; the hold stays until its deadline.
    #[error("the card was declined; the reservation is kept until it expires, so you may try another card")]
    PaymentDeclined,
    /// The payment provider failed, timed out, or its circuit is open.
    #[error("payments are unavailable right now; the reservation is kept, retry shortly")]
    PaymentUnavailable,
    /// Postgres refused a unit already sold to another order (after Redis lost state).
    #[error("a unit of this reservation was already sold; nothing was charged")]
    UnitUnavailable,
    /// A request with this idempotency key is still being processed.
    #[error("a checkout with this Idempotency-Key is still in progress; retry shortly")]
    CheckoutInProgress,
    /// No such order, or another shopper's.
    #[error("order not found")]
    OrderNotFound,
    /// The order cannot be cancelled (its window passed, the sale ended, or it was
    /// refunded).
    #[error("{0}")]
    NotCancellable(String),
    /// The order cannot be refunded (it was cancelled).
    #[error("{0}")]
    NotRefundable(String),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Postgres failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Anything else that is our fault.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
