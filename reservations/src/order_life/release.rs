//! After a close committed: the order's units leave `sold` in Redis and its money goes
//! back through the provider, both idempotent, finished by the completer when the
//! process died between (a `payment_releases` row still `pending`).
//!
//! The money: the payment is read from the provider; authorized → void, captured →
//! refund (idempotency key: the order id, so the provider refunds once), already
//! voided or refunded → done. A void the provider refuses because the capture worker
//! captured meanwhile is followed by a second read, which then refunds.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::checkout::Order;
use crate::ids::ReservationId;
use crate::payment::{PaymentGateway, PaymentRef, PaymentState};
use crate::projection::Projection;
use crate::Result;

/// Most pending releases the completer finishes in one pass.
const COMPLETER_BATCH: i64 = 100;

/// Returns the units and releases the money of the order just closed. Failures are
/// logged, never the caller's: the order is closed, and the completer retries.
pub(super) async fn after_commit(
    pool: &PgPool,
    projection: &Projection,
    payments: &dyn PaymentGateway,
    closed: &Order,
    restock: bool,
) {
    let payment = sqlx::query_scalar::<_, String>(
        "select payment_ref from payment_releases where order_id = $1",
    )
    .bind(closed.order_id.0)
    .fetch_optional(pool)
    .await;
    let payment = match payment {
        Ok(Some(payment)) => PaymentRef(payment),
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, order_id = %closed.order_id, "could not read the payment release; the completer finishes it");
            return;
        }
    };
    if let Err(e) = finish(
        pool,
        projection,
        payments,
        closed.order_id.0,
        closed.reservation_id,
        &payment,
        restock,
    )
    .await
    {
        tracing::warn!(error = %e, order_id = %closed.order_id, "could not finish a closed order's release; the completer retries it");
    }
}

/// Units, then money, then the mark.
async fn finish(
    pool: &PgPool,
    projection: &Projection,
    payments: &dyn PaymentGateway,
    order: Uuid,
    reservation: ReservationId,
    payment: &PaymentRef,
    restock: bool,
) -> Result<()> {
    projection.return_units(reservation, restock).await?;
    let state = release_money(payments, order, payment).await?;
    sqlx::query(
        "update payment_releases set state = $2, updated_at = now() where order_id = $1 and state = 'pending'",
    )
    .bind(order)
    .bind(state)
    .execute(pool)
    .await?;
    metrics::counter!("flashsale_payment_releases_total", "state" => state).increment(1);
    Ok(())
}

/// Voids or refunds `payment`; answers the state it ends in (`voided`, `refunded`).
async fn release_money(
    payments: &dyn PaymentGateway,
    order: Uuid,
    payment: &PaymentRef,
) -> Result<&'static str> {
    for _ in 0..3 {
        let now = payments.retrieve(payment).await.map_err(unavailable)?;
        match now.state {
            PaymentState::Voided | PaymentState::Declined => return Ok("voided"),
            PaymentState::Captured if now.refunded_minor > 0 => return Ok("refunded"),
            PaymentState::Captured => {
                payments
                    .refund(payment, None, refund_key(order))
                    .await
                    .map_err(unavailable)?;
                return Ok("refunded");
            }
            PaymentState::Authorized => match payments.void(payment).await {
                Ok(()) => return Ok("voided"),
                // Captured meanwhile (the capture worker raced us): read it again.
                Err(e) => {
                    tracing::info!(error = %e, order_id = %order, "void refused; reading the payment again")
                }
            },
        }
    }
    Err(crate::Error::PaymentUnavailable)
}

/// The refund's idempotency key: derived from the order id (one refund per order,
/// however often asked), never the order id itself, which keyed its authorization.
fn refund_key(order: Uuid) -> Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(order.as_bytes())
        .chain_update(b"order closed")
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid::from_bytes(bytes)
}

fn unavailable(e: crate::payment::PaymentError) -> crate::Error {
    tracing::warn!(error = ?e, "payment release failed at the provider");
    crate::Error::PaymentUnavailable
}

/// Finishes releases left `pending` for longer than `grace`.
pub(super) async fn complete(
    pool: &PgPool,
    projection: &Projection,
    payments: &dyn PaymentGateway,
    grace: Duration,
) -> Result<usize> {
    let pending: Vec<(Uuid, Uuid, String, bool)> = sqlx::query_as(
        "select p.order_id, o.reservation_id, p.payment_ref, \
                coalesce((select bool_and(r.restocked) from released_units r where r.order_id = p.order_id), true) \
         from payment_releases p join orders o on o.id = p.order_id \
         where p.state = 'pending' and p.updated_at < now() - make_interval(secs => $1) \
         order by p.updated_at limit $2",
    )
    .bind(grace.as_secs_f64())
    .bind(COMPLETER_BATCH)
    .fetch_all(pool)
    .await?;
    let mut finished = 0;
    for (order, reservation, payment, restock) in pending {
        match finish(
            pool,
            projection,
            payments,
            order,
            ReservationId(reservation),
            &PaymentRef(payment),
            restock,
        )
        .await
        {
            Ok(()) => finished += 1,
            Err(e) => {
                tracing::warn!(error = %e, order_id = %order, "payment release still pending")
            }
        }
    }
    Ok(finished)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::{DateTime, Utc};
    use futures::future::BoxFuture;

    use super::*;
    use crate::ids::OrderId;
    use crate::payment::{Payment, PaymentError};
    use crate::sales::Money;

    /// A provider holding one payment; its void can lose the race to a capture that
    /// lands between the release's read and its void (the capture worker's).
    struct Racing {
        state: Mutex<(PaymentState, i64)>,
        capture_wins: bool,
        refunds: Mutex<Vec<Uuid>>,
    }

    impl Racing {
        fn new(state: PaymentState, capture_wins: bool) -> Racing {
            Racing {
                state: Mutex::new((state, 0)),
                capture_wins,
                refunds: Mutex::default(),
            }
        }
    }

    impl PaymentGateway for Racing {
        fn authorize<'a>(
            &'a self,
            _: OrderId,
            _: &'a Money,
            _: &'a str,
        ) -> BoxFuture<'a, std::result::Result<PaymentRef, PaymentError>> {
            unreachable!("a release never authorizes")
        }
        fn capture<'a>(
            &'a self,
            _: &'a PaymentRef,
        ) -> BoxFuture<'a, std::result::Result<(), PaymentError>> {
            unreachable!("a release never captures")
        }
        fn void<'a>(
            &'a self,
            _: &'a PaymentRef,
        ) -> BoxFuture<'a, std::result::Result<(), PaymentError>> {
            Box::pin(async move {
                let mut state = self.state.lock().unwrap();
                if self.capture_wins {
                    state.0 = PaymentState::Captured;
                    return Err(PaymentError::Refused("already captured".into()));
                }
                state.0 = PaymentState::Voided;
                Ok(())
            })
        }
        fn refund<'a>(
            &'a self,
            _: &'a PaymentRef,
            _: Option<i64>,
            key: Uuid,
        ) -> BoxFuture<'a, std::result::Result<(), PaymentError>> {
            Box::pin(async move {
                self.refunds.lock().unwrap().push(key);
                self.state.lock().unwrap().1 = 500;
                Ok(())
            })
        }
        fn retrieve<'a>(
            &'a self,
            payment: &'a PaymentRef,
        ) -> BoxFuture<'a, std::result::Result<Payment, PaymentError>> {
            Box::pin(async move {
                let (state, refunded_minor) = *self.state.lock().unwrap();
                Ok(Payment {
                    reference: payment.clone(),
                    attempt: None,
                    state,
                    amount: Money {
                        amount_minor: 500,
                        currency: "EUR".into(),
                    },
                    refunded_minor,
                    created_at: Utc::now(),
                })
            })
        }
        fn find(
            &self,
            _: OrderId,
        ) -> BoxFuture<'_, std::result::Result<Option<Payment>, PaymentError>> {
            Box::pin(async { Ok(None) })
        }
        fn list<'a>(
            &'a self,
            _: DateTime<Utc>,
            _: Option<&'a PaymentRef>,
        ) -> BoxFuture<'a, std::result::Result<(Vec<Payment>, bool), PaymentError>> {
            Box::pin(async { Ok((Vec::new(), false)) })
        }
    }

    fn payment() -> PaymentRef {
        PaymentRef("pi_1".into())
    }

    #[tokio::test]
    async fn an_authorized_payment_is_voided() {
        let provider = Racing::new(PaymentState::Authorized, false);
        let order = Uuid::new_v4();
        assert_eq!(
            release_money(&provider, order, &payment()).await.unwrap(),
            "voided"
        );
        assert!(provider.refunds.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_capture_that_wins_the_race_with_the_void_is_refunded_once() {
        let provider = Racing::new(PaymentState::Authorized, true);
        let order = Uuid::new_v4();
        assert_eq!(
            release_money(&provider, order, &payment()).await.unwrap(),
            "refunded"
        );
        // Asked again (the completer after a lost mark): nothing more is refunded.
        assert_eq!(
            release_money(&provider, order, &payment()).await.unwrap(),
            "refunded"
        );
        assert_eq!(*provider.refunds.lock().unwrap(), vec![refund_key(order)]);
        assert_ne!(
            refund_key(order),
            order,
            "the order id keyed the authorization"
        );
    }
}
