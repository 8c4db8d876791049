//! The crate's one error type, and the line between failures worth retrying and
//! failures that will never succeed.

use reservations::payment::PaymentError;

/// Everything that can go wrong while relaying or consuming an event.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Postgres refused or failed a statement, or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Redis failed a command or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stream entry or its payload is not an event this crate understands.
    #[error("malformed event: {0}")]
    MalformedEvent(String),
    /// The payment provider refused or failed a capture.
    #[error("payment: {0}")]
    Payment(#[from] PaymentError),
    /// The mailer could not send a message.
    #[error("mail: {0}")]
    Mail(String),
    /// A webhook registration names a refused URL or unknown event types; the text is
    /// the `invalid_field` detail (`"<field>: <why>"`).
    #[error("{0}")]
    InvalidWebhook(String),
    /// The merchant has as many webhook endpoints as allowed.
    #[error("a merchant may register at most {0} webhook endpoints")]
    WebhookLimit(i64),
    /// An event points at something that does not exist (its sale): it will never
    /// fan out, however often it is retried.
    #[error("unknown reference: {0}")]
    UnknownReference(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the failure says something about the world rather than about the event:
    /// a lost connection, a pool timeout, a deadlock, a provider outage.
    ///
    /// Workers retry transient failures for as long as it takes and never dead-letter
    /// an event because of one: a five-minute Postgres outage must not send every
    /// order of the sale to the dead-letter stream. Only a failure that would repeat
    /// on every delivery (a payload that does not parse, a foreign key that points
    /// nowhere, a declined capture) counts towards the delivery limit.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Database(e) => match e {
                sqlx::Error::Database(db) => {
                    // By SQLSTATE class, never by message: 08 connection exception,
                    // 40 transaction rollback (serialization failure, deadlock),
                    // 53 insufficient resources, 57 operator intervention (shutdown).
                    let code = db.code().unwrap_or_default();
                    ["08", "40", "53", "57"]
                        .iter()
                        .any(|class| code.starts_with(class))
                }
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                _ => false,
            },
            Error::Redis(_) => true,
            Error::Payment(PaymentError::Unavailable(_)) => true,
            Error::Payment(PaymentError::Declined | PaymentError::Refused(_)) => false,
            Error::Mail(_) => true,
            Error::MalformedEvent(_)
            | Error::InvalidWebhook(_)
            | Error::WebhookLimit(_)
            | Error::UnknownReference(_) => false,
        }
    }
}
