//! Payment attempts: the durable record of every authorization checkout asks for
//! (`payment_attempts`), written before the provider is called so that no outcome is
//! left to a log line. This module owns the attempt id, the attempt's state changes on
//! checkout's own statements, and the completer that settles attempts in doubt.
//!
//! Cost on the buy path: nothing extra. The attempt row is written by the same
//! statement as the idempotency claim, marked `committed` by the order transaction, and
//! a failed checkout marks it in the statement that releases its key.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::idempotency::IdempotencyKey;
use super::Checkout;
use crate::ids::{OrderId, ReservationId, ShopperId};
use crate::payment::{Payment, PaymentState};
use crate::Result;

/// Most attempts the completer settles in one pass (each holds a connection while the
/// provider answers, bounded by the payment timeout).
const BATCH: usize = 32;
/// The longest the completer waits between two checks of one attempt.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The attempt id of a checkout: SHA-256 of (reservation, shopper, idempotency key)
/// made a UUID (version 8, RFC 4122 variant). A retry with the same key gets the same
/// id, which is the order id and the provider's idempotency key: the provider merges
/// the two authorizations instead of holding the card twice.
pub(crate) fn attempt_id(reservation: ReservationId, shopper: ShopperId, key: &str) -> OrderId {
    let mut hash = Sha256::new();
    hash.update(reservation.0.as_bytes());
    hash.update(shopper.0.as_bytes());
    hash.update(key.as_bytes());
    version_8(hash)
}

/// The id a key pays under once its attempt `previous` was voided: derived from it, so
/// every process picks the same successor, and new, so the provider (which keeps a
/// cancelled payment cancelled under its idempotency key) authorizes afresh.
fn successor(previous: OrderId) -> OrderId {
    let mut hash = Sha256::new();
    hash.update(previous.0.as_bytes());
    hash.update(b"next attempt");
    version_8(hash)
}

/// The first 16 bytes of the hash as a UUID of version 8 (RFC 9562's custom version,
/// RFC 4122 variant): an id derived from its inputs, in the format of every other id.
fn version_8(hash: Sha256) -> OrderId {
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    OrderId(Uuid::from_bytes(bytes))
}

/// Most successors one key may go through: each needs a confirmed void, so this is a
/// bound on a pathological loop, not on shoppers.
const MAX_SUCCESSORS: usize = 16;

/// The attempt a claim records, in the claim's own statement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewAttempt {
    /// The attempt id ([`attempt_id`]).
    pub(crate) id: OrderId,
    /// The hold being paid for.
    pub(crate) reservation: ReservationId,
    /// How long the attempt is considered in flight: the completer does not judge it
    /// before (its request may still be waiting for the provider).
    pub(crate) grace: Duration,
}

/// The claim statement with the attempt: `$1..$3` are the key's, `$4..$6` the
/// attempt's (id, reservation, grace in seconds). Answers (claimed, retried): retried
/// when this attempt id was recorded before (an earlier try of the same key), so the
/// provider must be asked before authorizing again. An attempt already `voided`,
/// `committed` or `refunded` is left as it is.
pub(crate) const CLAIM_WITH_ATTEMPT: &str = "\
    with claimed as ( \
        insert into idempotency_keys (shopper_id, key, request_hash) values ($1, $2, $3) \
        on conflict do nothing returning 1 \
    ), prior as ( \
        select 1 from payment_attempts where id = $4 \
    ), attempt as ( \
        insert into payment_attempts (id, reservation_id, shopper_id, state, next_check_at) \
        select $4, $5, $1, 'authorizing', now() + make_interval(secs => $6) from claimed \
        on conflict (id) do update set state = 'authorizing', next_check_at = excluded.next_check_at, updated_at = now() \
        where payment_attempts.state in ('authorizing', 'void_pending', 'done') \
        returning 1 \
    ) \
    select exists (select 1 from claimed), exists (select 1 from prior)";

/// Releases a failed checkout's key and hands its attempt over, in one statement (the
/// release was one commit before attempts existed; it stays one). `may_be_authorized`
/// says whether the provider may hold an authorization: then the attempt becomes
/// `void_pending`, due after the grace; otherwise `done`.
pub(crate) async fn release(
    pool: &PgPool,
    key: IdempotencyKey<'_>,
    attempt: OrderId,
    may_be_authorized: bool,
    grace: Duration,
) {
    let released = sqlx::query(
        "with released as ( \
             delete from idempotency_keys where shopper_id = $1 and key = $2 and response is null \
         ) \
         update payment_attempts set state = $4, next_check_at = now() + make_interval(secs => $5), updated_at = now() \
         where id = $3 and state = 'authorizing'",
    )
    .bind(key.shopper.0)
    .bind(key.key)
    .bind(attempt.0)
    .bind(if may_be_authorized { "void_pending" } else { "done" })
    .bind(grace.as_secs_f64())
    .execute(pool)
    .await;
    if let Err(e) = released {
        // The claim is taken over after 30 s; the attempt is judged after its grace.
        tracing::warn!(error = %e, attempt = %attempt, "could not release a failed checkout; the completer and the key's timeout finish it");
    }
}

/// How the completer settled one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// The order exists: nothing to void.
    Committed,
    /// The provider never authorized it.
    NeverAuthorized,
    /// The provider confirms the void.
    Voided,
    /// Captured without an order, and refunded in full.
    Refunded,
}

impl Settled {
    fn state(self) -> &'static str {
        match self {
            Settled::Committed => "committed",
            Settled::NeverAuthorized => "done",
            Settled::Voided => "voided",
            Settled::Refunded => "refunded",
        }
    }
}

impl Checkout {
    /// For a retried key: the attempt it pays under now, and whether that attempt was
    /// tried before. While the key's attempt may hold money, that is the attempt (the
    /// provider is asked before authorizing again, so a lost answer is not paid twice).
    /// Once its void is confirmed — by the completer, or by the provider now — the money
    /// is back on the card and the key pays again under a successor id, recorded here.
    /// Without it a key whose attempt was voided (a failed order transaction, a lost
    /// answer the completer settled) could never pay for its hold again.
    pub(super) async fn current_attempt(
        &self,
        attempt: NewAttempt,
        shopper: ShopperId,
    ) -> Result<(NewAttempt, bool)> {
        let mut id = attempt.id;
        for _ in 0..MAX_SUCCESSORS {
            let state: Option<String> =
                sqlx::query_scalar("select state from payment_attempts where id = $1")
                    .bind(id.0)
                    .fetch_optional(&self.pool)
                    .await?;
            let voided = match state.as_deref() {
                Some("voided") => true,
                // Tried before: the provider knows whether its void already went through.
                Some("authorizing") => {
                    let voided = matches!(
                        self.payments.find(id).await,
                        Ok(Some(Payment {
                            state: PaymentState::Voided,
                            ..
                        }))
                    );
                    if voided {
                        sqlx::query("update payment_attempts set state = 'voided', updated_at = now() where id = $1")
                            .bind(id.0)
                            .execute(&self.pool)
                            .await?;
                    }
                    voided
                }
                Some(_) => false,
                None => {
                    sqlx::query(
                        "insert into payment_attempts (id, reservation_id, shopper_id, state, next_check_at) \
                         values ($1, $2, $3, 'authorizing', now() + make_interval(secs => $4)) \
                         on conflict (id) do nothing",
                    )
                    .bind(id.0)
                    .bind(attempt.reservation.0)
                    .bind(shopper.0)
                    .bind(attempt.grace.as_secs_f64())
                    .execute(&self.pool)
                    .await?;
                    return Ok((NewAttempt { id, ..attempt }, false));
                }
            };
            if !voided {
                return Ok((NewAttempt { id, ..attempt }, true));
            }
            id = successor(id);
        }
        Err(crate::Error::PaymentUnavailable)
    }

    /// Hands `attempt` to the completer at once: its authorization may exist without an
    /// order (the order transaction failed, or a dead process left its hold
    /// committing). One statement; the completer asks Postgres and the provider.
    pub(super) async fn hand_over(&self, attempt: OrderId) {
        let marked = sqlx::query(
            "update payment_attempts set state = 'void_pending', next_check_at = now(), updated_at = now() \
             where id = $1 and state in ('authorizing', 'done')",
        )
        .bind(attempt.0)
        .execute(&self.pool)
        .await;
        if let Err(e) = marked {
            tracing::warn!(error = %e, attempt = %attempt, "could not hand an attempt to the completer; it is judged after its grace");
        }
    }

    /// Settles the payment attempts that are due: each is claimed with `FOR UPDATE SKIP
    /// LOCKED` (several processes never settle one twice). One still `authorizing`
    /// whose hold is still `committing` under it is left to its request (the
    /// reconciler hands it over once that process is presumed dead). Then Postgres is asked
    /// whether its order exists and the provider what became of its payment. An
    /// authorization without an order is voided until the provider confirms it; a call
    /// that fails is retried after `backoff` × 2^checks (at most 10 min). Returns how
    /// many attempts were settled.
    pub async fn complete_once(&self, backoff: Duration) -> Result<usize> {
        let mut settled = 0;
        for _ in 0..BATCH {
            match self.complete_one(backoff).await? {
                None => break,
                Some(Some(outcome)) => {
                    settled += 1;
                    metrics::counter!("flashsale_payment_attempts_settled_total", "outcome" => outcome.state())
                        .increment(1);
                }
                Some(None) => {}
            }
        }
        Ok(settled)
    }

    /// One due attempt: `None` when none is due; `Some(None)` when it must be checked
    /// again later.
    async fn complete_one(&self, backoff: Duration) -> Result<Option<Option<Settled>>> {
        let mut tx = self.pool.begin().await?;
        let due: Option<(Uuid, Uuid, String, i32)> = sqlx::query_as(
            "select id, reservation_id, state, checks from payment_attempts \
             where state in ('authorizing', 'void_pending') and next_check_at <= now() \
             order by next_check_at limit 1 for update skip locked",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, reservation, state, checks)) = due else {
            return Ok(None);
        };
        let attempt = OrderId(id);
        if state == "authorizing"
            && self
                .still_committing(ReservationId(reservation), attempt)
                .await
        {
            // Its request may still be running: the reconciler decides when its process
            // is dead, and hands the attempt over then.
            sqlx::query(
                "update payment_attempts set next_check_at = now() + make_interval(secs => $2), updated_at = now() where id = $1",
            )
            .bind(id)
            .bind(self.attempt_grace.as_secs_f64())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Some(None));
        }
        // The row lock keeps the order transaction of a still-running request from
        // committing meanwhile (it marks this row); so "no order" stays true.
        let ordered: bool =
            sqlx::query_scalar("select exists (select 1 from orders where id = $1)")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        let outcome = if ordered {
            Some(Settled::Committed)
        } else {
            self.settle_payment(attempt).await
        };
        match outcome {
            Some(settled) => {
                sqlx::query(
                    "update payment_attempts set state = $2, checks = checks + 1, updated_at = now() where id = $1",
                )
                .bind(id)
                .bind(settled.state())
                .execute(&mut *tx)
                .await?;
            }
            None => {
                let wait = backoff
                    .saturating_mul(1 << checks.clamp(0, 16))
                    .min(MAX_BACKOFF);
                sqlx::query(
                    "update payment_attempts set state = 'void_pending', checks = checks + 1, \
                     next_check_at = now() + make_interval(secs => $2), updated_at = now() where id = $1",
                )
                .bind(id)
                .bind(wait.as_secs_f64())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(Some(outcome))
    }

    /// Whether the attempt's hold is still `committing` under this attempt (or Redis
    /// cannot say): its checkout may still be running, so the attempt is not judged.
    async fn still_committing(&self, reservation: ReservationId, attempt: OrderId) -> bool {
        let projection = self.sales.projection();
        let stripe = match projection.reservation_stripe(reservation).await {
            Ok(Some(stripe)) => stripe,
            Ok(None) => return false,
            Err(_) => return true,
        };
        match projection.hold(stripe, reservation).await {
            Ok(Some(hold)) => hold.status == "committing" && hold.order == Some(attempt),
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Asks the provider about an attempt without an order and gives back what it
    /// holds: an authorization is voided, a capture (an order that never committed was
    /// captured by mistake) refunded in full, each until the provider confirms it.
    /// `None`: not settled yet (a call failed, or the provider does not confirm).
    async fn settle_payment(&self, attempt: OrderId) -> Option<Settled> {
        let payment = match self.payments.find(attempt).await {
            Ok(Some(payment)) => payment,
            Ok(None) => return Some(Settled::NeverAuthorized),
            Err(e) => {
                tracing::warn!(error = %e, attempt = %attempt, "could not ask the provider about an attempt; retrying later");
                return None;
            }
        };
        let given_back = match payment.state {
            PaymentState::Declined => return Some(Settled::NeverAuthorized),
            PaymentState::Voided => return Some(Settled::Voided),
            PaymentState::Captured if payment.refunded_minor >= payment.amount.amount_minor => {
                return Some(Settled::Refunded)
            }
            PaymentState::Authorized => self.payments.void(&payment.reference).await,
            PaymentState::Captured => {
                tracing::error!(attempt = %attempt, payment = %payment.reference, "payment captured without an order; refunding it");
                let left = payment.amount.amount_minor - payment.refunded_minor;
                self.payments
                    .refund(&payment.reference, Some(left), refund_key(attempt))
                    .await
            }
        };
        if let Err(e) = given_back {
            tracing::warn!(error = %e, attempt = %attempt, payment = %payment.reference, "giving a payment back failed; retrying with backoff");
            return None;
        }
        // Settled only when the provider confirms it.
        match self.payments.retrieve(&payment.reference).await {
            Ok(Payment {
                state: PaymentState::Voided,
                ..
            }) => Some(Settled::Voided),
            Ok(p)
                if p.state == PaymentState::Captured
                    && p.refunded_minor >= p.amount.amount_minor =>
            {
                Some(Settled::Refunded)
            }
            Ok(_) | Err(_) => None,
        }
    }
}

/// The idempotency key of the refund of an attempt captured without an order: one per
/// attempt, so a retried refund never gives the money back twice.
fn refund_key(attempt: OrderId) -> Uuid {
    let mut hash = Sha256::new();
    hash.update(attempt.0.as_bytes());
    hash.update(b"refund without order");
    version_8(hash).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_id_is_the_same_for_a_retry_and_differs_for_another_key() {
        let (reservation, shopper) = (ReservationId::new(), ShopperId::new());
        let first = attempt_id(reservation, shopper, "k1");
        assert_eq!(first, attempt_id(reservation, shopper, "k1"));
        assert_ne!(first, attempt_id(reservation, shopper, "k2"));
        assert_ne!(first, attempt_id(reservation, ShopperId::new(), "k1"));
        assert_eq!(first.0.get_version_num(), 8);
        assert_eq!(first.0.get_variant(), uuid::Variant::RFC4122);
    }
}
