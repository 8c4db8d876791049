//! The crate's one error type.

/// Everything that can go wrong in the waiting room.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sale has ended (`409 sale_closed`).
    #[error("the sale has ended")]
    SaleClosed,
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
