//! Idempotency keys: claim a key, save the answer, replay it. One place for every
//! operation a client may retry (checkout today; cancel and refund next), each storing
//! its own domain answer type as JSON in `idempotency_keys.response`.
//!
//! The row is inserted before the operation does anything with an outside effect (a
//! payment authorization), so concurrent retries wait for the first request instead of
//! acting twice; the answer is saved in the operation's own transaction, so a committed
//! effect always has its answer. A failed attempt releases its claim (checkout's in the
//! same statement that hands its payment attempt over): the key may be retried.
//!
//! A row is answered when `response` is set. The `status_code` column is a leftover of
//! the days when the domain stored an HTTP answer; it is no longer written. Rows written
//! then carry `201` and the same `Order` JSON in `response`, so they replay unchanged.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use super::attempts::{NewAttempt, CLAIM_WITH_ATTEMPT};
use crate::ids::ShopperId;
use crate::{Error, Result};

/// How long a claimed key without an answer is considered in flight; after that its
/// request is presumed dead (process killed) and a retry may take it over.
const ABANDONED_AFTER: Duration = Duration::from_secs(30);
/// How long a retry waits for the first request with the same key to answer: well
/// inside the default 10 s request timeout, so a client retrying a checkout whose
/// process died hears `409 request_in_progress` (and retries again) rather than a
/// `503 request_timeout`. A live first request answers within the payment timeout
/// (3 s) and one transaction.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(5);

/// One client's key: keys are scoped to the shopper who sent them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdempotencyKey<'a> {
    /// Who sent it.
    pub(crate) shopper: ShopperId,
    /// The `Idempotency-Key` header.
    pub(crate) key: &'a str,
}

/// What [`claim`] found.
#[derive(Debug)]
pub(crate) enum Claim<T> {
    /// The key is this request's now: go ahead, then save the answer ([`answer_json`], in the operation's own statement), or release it on failure (checkout: `attempts::release`).
    /// `retried`: the claim's payment attempt was recorded by an earlier try of this
    /// key (its outcome must be asked for before paying again).
    Claimed {
        /// An earlier try of this key recorded the same attempt.
        retried: bool,
    },
    /// An earlier request with this key and body answered this.
    Answered(T),
}

/// The fingerprint of a request's body: a key reused with another body is refused.
pub(crate) fn request_hash(parts: &[&str]) -> String {
    hex::encode(Sha256::digest(parts.join("\n").as_bytes()))
}

/// Claims `key` for a request whose body has `hash`, or returns the first answer to
/// it. A key in flight is waited for (up to 5 s, then `CheckoutInProgress`); a key
/// claimed by a request that died unanswered is taken over; a key used with another
/// body is `IdempotencyKeyReused`. With `attempt`, the claim records the payment
/// attempt in the same statement (one commit for both).
pub(crate) async fn claim<T: DeserializeOwned>(
    pool: &PgPool,
    key: IdempotencyKey<'_>,
    hash: &str,
    attempt: Option<&NewAttempt>,
) -> Result<Claim<T>> {
    let started = tokio::time::Instant::now();
    loop {
        let (claimed, retried): (bool, bool) = match attempt {
            Some(attempt) => {
                sqlx::query_as(CLAIM_WITH_ATTEMPT)
                    .bind(key.shopper.0)
                    .bind(key.key)
                    .bind(hash)
                    .bind(attempt.id.0)
                    .bind(attempt.reservation.0)
                    .bind(attempt.grace.as_secs_f64())
                    .fetch_one(pool)
                    .await?
            }
            None => {
                let claimed = sqlx::query(
                    "insert into idempotency_keys (shopper_id, key, request_hash) values ($1, $2, $3) on conflict do nothing",
                )
                .bind(key.shopper.0)
                .bind(key.key)
                .bind(hash)
                .execute(pool)
                .await?;
                (claimed.rows_affected() == 1, false)
            }
        };
        if claimed {
            return Ok(Claim::Claimed { retried });
        }
        let row: Option<(String, Option<serde_json::Value>, bool)> = sqlx::query_as(
            "select request_hash, response, created_at < now() - make_interval(secs => $3) \
             from idempotency_keys where shopper_id = $1 and key = $2",
        )
        .bind(key.shopper.0)
        .bind(key.key)
        .bind(ABANDONED_AFTER.as_secs_f64())
        .fetch_optional(pool)
        .await?;
        match row {
            // Released between our insert and our select: try to claim it again.
            None => continue,
            Some((stored, _, _)) if stored != hash => return Err(Error::IdempotencyKeyReused),
            Some((_, Some(answer), _)) => {
                let answer = serde_json::from_value(answer).map_err(anyhow::Error::from)?;
                return Ok(Claim::Answered(answer));
            }
            Some((_, None, true)) => {
                // The first request died without answering: take the key over.
                release_on(pool, key).await?;
            }
            Some(_) if started.elapsed() > WAIT_FOR_FIRST => return Err(Error::CheckoutInProgress),
            Some(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// An answer as stored in `idempotency_keys.response` (a statement that saves it
/// together with the operation's writes binds this).
pub(crate) fn answer_json<T: Serialize>(answer: &T) -> Result<serde_json::Value> {
    Ok(serde_json::to_value(answer).map_err(anyhow::Error::from)?)
}

/// Deletes the claim only while it has no answer: an answered key is never lost.
pub(crate) async fn release_on(pool: &PgPool, key: IdempotencyKey<'_>) -> Result<()> {
    sqlx::query(
        "delete from idempotency_keys where shopper_id = $1 and key = $2 and response is null",
    )
    .bind(key.shopper.0)
    .bind(key.key)
    .execute(pool)
    .await?;
    Ok(())
}
