//! The crate's one error type.

/// Everything that can go wrong in the waiting room.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sale has ended, is paused or sold out (`409 sale_closed`).
    #[error("the sale is closed: ended, paused or sold out")]
    SaleClosed,
    /// The sale needs an access code to join (`403 access_code_required`).
    #[error("joining this sale needs an access code")]
    AccessCodeRequired,
    /// No such code for this sale (`403 access_code_invalid`).
    #[error("the access code is not valid for this sale")]
    AccessCodeInvalid,
    /// The code has no use left (`409 access_code_used_up`).
    #[error("the access code has been used up")]
    AccessCodeUsedUp,
    /// The line is at its cap (`503 queue_full` + `Retry-After`).
    #[error("the line is full; try again shortly")]
    QueueFull,
    /// The shopper has no ticket for this sale (`404 not_in_queue`).
    #[error("you are not in line for this sale")]
    NotInQueue,
    /// From the sale catalogue (e.g. sale not found).
    #[error(transparent)]
    Sale(#[from] reservations::Error),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Anything else that is our fault.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
