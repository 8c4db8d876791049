//! Resolving an ambiguous COMMIT: when the order transaction's COMMIT errors (the
//! connection was cut, the server restarted), the order may or may not exist, and
//! only Postgres knows. Guessing "nothing committed" voids the payment of a confirmed
//! order; guessing "committed" sells a hold nobody paid for. So checkout asks.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::ids::OrderId;

/// How many times Postgres is asked before the answer is left to the reconciler.
const ATTEMPTS: u32 = 5;
/// The wait before the second question; it doubles after each (Postgres may be
/// restarting, a terminated backend takes a moment to go: 50 + 100 + 200 + 400 ms).
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// How long one question may take, connecting included: a cut network must not hold
/// the shopper's request for long.
const QUESTION_TIMEOUT: Duration = Duration::from_millis(500);

/// What Postgres says about an order whose COMMIT had no clear answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommitOutcome {
    /// The order exists: the transaction committed.
    Committed,
    /// No such order: nothing committed.
    NotCommitted,
    /// Postgres did not answer: the hold stays `committing` and the reconciler,
    /// which asks the same question later, finishes it either way.
    Unknown,
}

/// Asks Postgres whether `order` exists, on fresh connections (the pool's may have
/// died with the one that was cut), a few times with a short backoff.
///
/// The answer counts only once `backend`, the server process that ran the
/// transaction, is gone or idle: while it is still inside the transaction (the server
/// has not noticed the cut yet, or is still reading the COMMIT), "no order" could turn
/// into an order a moment later. Such a backend is terminated — its transaction then
/// either committed already or never will — and the question is asked again.
pub(super) async fn resolve(pool: &PgPool, order: OrderId, backend: i32) -> CommitOutcome {
    let options = pool.connect_options();
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        match tokio::time::timeout(QUESTION_TIMEOUT, ask(&options, order, backend)).await {
            Ok(Ok(Some(true))) => return CommitOutcome::Committed,
            Ok(Ok(Some(false))) => return CommitOutcome::NotCommitted,
            Ok(Ok(None)) => {
                tracing::debug!(order_id = %order, backend, attempt, "the cut transaction's backend is still in it; ended it, asking again")
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, order_id = %order, attempt, "cannot ask Postgres whether the order committed")
            }
            Err(_) => {
                tracing::warn!(order_id = %order, attempt, "Postgres did not say in time whether the order committed")
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    CommitOutcome::Unknown
}

/// One question on one fresh connection: `Some(exists)` once the transaction is over,
/// `None` while its backend is still in it (then it is terminated).
async fn ask(
    options: &PgConnectOptions,
    order: OrderId,
    backend: i32,
) -> sqlx::Result<Option<bool>> {
    let mut conn = options.connect().await?;
    let state: Option<Option<String>> =
        sqlx::query_scalar("select state from pg_stat_activity where pid = $1")
            .bind(backend)
            .fetch_optional(&mut conn)
            .await?;
    let answer = match state.as_ref().map(|s| s.as_deref()) {
        // Gone, or idle outside any transaction: it committed or rolled back for good.
        None | Some(Some("idle")) => Some(
            sqlx::query_scalar::<_, i32>("select 1 from orders where id = $1")
                .bind(order.0)
                .fetch_optional(&mut conn)
                .await?
                .is_some(),
        ),
        _ => {
            sqlx::query("select pg_terminate_backend($1)")
                .bind(backend)
                .execute(&mut conn)
                .await?;
            None
        }
    };
    // The answer is in; a failed goodbye changes nothing.
    let _ = conn.close().await;
    Ok(answer)
}
