//! Timeout and circuit breaker around any gateway. A provider that keeps failing is not
//! called for `open_for`: checkout answers 503 at once instead of making every shopper
//! wait for a timeout; then one trial call decides whether it is back.
//!
//! The breaker is shared by every request of the process (and, in `flashsale all`, the
//! capture worker), so nothing a caller does may leave it stuck: a call holds a
//! [`Permit`], and a half-open trial whose caller went away — the client disconnected,
//! the request timeout dropped the handler — gives the trial back when the permit is
//! dropped. The lock around the state is never poisoned into a panic either: the state
//! is a plain value, valid whatever a panicking holder was doing.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use super::layer::{CallLayer, Layered};
use super::{PaymentError, PaymentGateway};

/// Circuit breaker state: closed (counting consecutive failures), open until an
/// instant, then one trial call (half-open) decides.
#[derive(Debug)]
enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// Timeout and circuit breaker around any gateway (see the module docs).
pub type GuardedGateway = Layered<CircuitBreaker>;

/// The timeout and the breaker's state, around each call of a [`GuardedGateway`].
pub struct CircuitBreaker {
    timeout: Duration,
    failure_threshold: u32,
    open_for: Duration,
    state: Mutex<Breaker>,
}

/// The right to make one call through the breaker. Settled with the call's outcome;
/// dropped unsettled (the call's future was dropped), a trial permit re-opens the
/// breaker with a deadline already past, so the next call becomes the trial instead of
/// every call being refused as "trial in flight" for ever.
struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    trial: bool,
    settled: bool,
}

impl Permit<'_> {
    fn settle<T>(mut self, outcome: &Result<T, PaymentError>) {
        self.settled = true;
        self.breaker.record(outcome);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.settled || !self.trial {
            return;
        }
        let mut state = self.breaker.lock();
        if matches!(*state, Breaker::HalfOpen) {
            *state = Breaker::Open {
                until: Instant::now(),
            };
        }
    }
}

impl GuardedGateway {
    /// Wraps `inner`: calls time out after `timeout`; `failure_threshold` consecutive
    /// failures open the breaker for `open_for`.
    pub fn new(
        inner: Arc<dyn PaymentGateway>,
        timeout: Duration,
        failure_threshold: u32,
        open_for: Duration,
    ) -> Self {
        let breaker = CircuitBreaker {
            timeout,
            failure_threshold,
            open_for,
            state: Mutex::new(Breaker::Closed { failures: 0 }),
        };
        Layered::wrap(breaker, inner)
    }

    /// Whether the breaker currently refuses calls.
    pub fn is_open(&self) -> bool {
        matches!(*self.layer().lock(), Breaker::Open { until } if Instant::now() < until)
    }
}

impl CircuitBreaker {
    fn lock(&self) -> MutexGuard<'_, Breaker> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(&self) -> Result<Permit<'_>, PaymentError> {
        let mut state = self.lock();
        let trial = match *state {
            Breaker::Open { until } if Instant::now() < until => {
                return Err(PaymentError::Unavailable(
                    "circuit open: the provider is failing".into(),
                ))
            }
            Breaker::Open { .. } => {
                *state = Breaker::HalfOpen;
                true
            }
            // One trial at a time while half-open.
            Breaker::HalfOpen => {
                return Err(PaymentError::Unavailable(
                    "circuit half-open: trial call in flight".into(),
                ))
            }
            Breaker::Closed { .. } => false,
        };
        Ok(Permit {
            breaker: self,
            trial,
            settled: false,
        })
    }

    fn record<T>(&self, outcome: &Result<T, PaymentError>) {
        let mut state = self.lock();
        let failed = matches!(outcome, Err(PaymentError::Unavailable(_)));
        *state = match (&*state, failed) {
            (_, false) => Breaker::Closed { failures: 0 },
            (Breaker::Closed { failures }, true) if failures + 1 < self.failure_threshold => {
                Breaker::Closed {
                    failures: failures + 1,
                }
            }
            (_, true) => {
                metrics::counter!("flashsale_payment_breaker_opened_total").increment(1);
                tracing::warn!(
                    open_for_ms = self.open_for.as_millis() as u64,
                    "payment circuit breaker opened"
                );
                Breaker::Open {
                    until: Instant::now() + self.open_for,
                }
            }
        };
    }

    async fn guarded<T>(
        &self,
        call: BoxFuture<'_, Result<T, PaymentError>>,
    ) -> Result<T, PaymentError> {
        let permit = self.admit()?;
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(PaymentError::Unavailable("payment call timed out".into())),
        };
        permit.settle(&outcome);
        outcome
    }
}

impl CallLayer for CircuitBreaker {
    fn around<'a, T: Send + 'a>(
        &'a self,
        call: BoxFuture<'a, Result<T, PaymentError>>,
    ) -> BoxFuture<'a, Result<T, PaymentError>> {
        Box::pin(self.guarded(call))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU8, Ordering};

    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::ids::OrderId;
    use crate::payment::{Payment, PaymentRef};
    use crate::sales::Money;

    fn money() -> Money {
        Money {
            amount_minor: 1,
            currency: "EUR".into(),
        }
    }

    /// A breaker (threshold 3, open for 50 ms) over `provider`, opened by three failed
    /// authorizations and left until its open period has passed: the next call is the
    /// half-open trial.
    async fn half_open(provider: Arc<Scripted>, timeout: Duration) -> GuardedGateway {
        provider.0.store(FAIL, Ordering::SeqCst);
        let guarded = GuardedGateway::new(provider, timeout, 3, Duration::from_millis(50));
        for _ in 0..3 {
            assert!(guarded
                .authorize(OrderId::new(), &money(), "tok_ok")
                .await
                .is_err());
        }
        assert!(guarded.is_open());
        tokio::time::sleep(Duration::from_millis(60)).await;
        guarded
    }

    #[tokio::test]
    async fn the_breaker_opens_after_consecutive_failures_and_closes_after_a_good_trial() {
        let provider = Arc::new(Scripted(AtomicU8::new(FAIL)));
        let guarded = half_open(provider, Duration::from_secs(1)).await;
        // Half-open: the trial (a capture, which succeeds) closes the breaker.
        assert_eq!(guarded.capture(&PaymentRef("pi_1".into())).await, Ok(()));
        assert!(!guarded.is_open());
    }

    /// A provider that fails, hangs or answers, as the test says.
    struct Scripted(AtomicU8);

    const FAIL: u8 = 0;
    const HANG: u8 = 1;
    const ANSWER: u8 = 2;

    impl PaymentGateway for Scripted {
        fn authorize<'a>(
            &'a self,
            _: OrderId,
            _: &'a Money,
            _: &'a str,
        ) -> BoxFuture<'a, Result<PaymentRef, PaymentError>> {
            let mode = self.0.load(Ordering::SeqCst);
            Box::pin(async move {
                match mode {
                    FAIL => Err(PaymentError::Unavailable("down".into())),
                    HANG => futures::future::pending().await,
                    _ => Ok(PaymentRef("pi_scripted".into())),
                }
            })
        }
        fn capture<'a>(&'a self, _: &'a PaymentRef) -> BoxFuture<'a, Result<(), PaymentError>> {
            Box::pin(async { Ok(()) })
        }
        fn void<'a>(&'a self, _: &'a PaymentRef) -> BoxFuture<'a, Result<(), PaymentError>> {
            Box::pin(async { Ok(()) })
        }
        fn refund<'a>(
            &'a self,
            _: &'a PaymentRef,
            _: Option<i64>,
            _: Uuid,
        ) -> BoxFuture<'a, Result<(), PaymentError>> {
            Box::pin(async { Ok(()) })
        }
        fn retrieve<'a>(
            &'a self,
            _: &'a PaymentRef,
        ) -> BoxFuture<'a, Result<Payment, PaymentError>> {
            Box::pin(async { Err(PaymentError::Unavailable("not scripted".into())) })
        }
        fn find(&self, _: OrderId) -> BoxFuture<'_, Result<Option<Payment>, PaymentError>> {
            Box::pin(async { Ok(None) })
        }
        fn list<'a>(
            &'a self,
            _: DateTime<Utc>,
            _: Option<&'a PaymentRef>,
        ) -> BoxFuture<'a, Result<(Vec<Payment>, bool), PaymentError>> {
            Box::pin(async { Ok((Vec::new(), false)) })
        }
    }

    #[tokio::test]
    async fn a_trial_call_dropped_while_half_open_lets_the_next_call_through() {
        let provider = Arc::new(Scripted(AtomicU8::new(FAIL)));
        let guarded = half_open(provider.clone(), Duration::from_secs(5)).await;
        let money = money();

        // The trial hangs and its caller goes away (a client disconnect, the request
        // timeout): the future is dropped long before the gateway's own timeout.
        provider.0.store(HANG, Ordering::SeqCst);
        let trial = guarded.authorize(OrderId::new(), &money, "tok_ok");
        assert!(tokio::time::timeout(Duration::from_millis(20), trial)
            .await
            .is_err());

        provider.0.store(ANSWER, Ordering::SeqCst);
        assert_eq!(
            guarded.authorize(OrderId::new(), &money, "tok_ok").await,
            Ok(PaymentRef("pi_scripted".into())),
            "the next call is the new trial, not refused as 'trial in flight'"
        );
        assert!(!guarded.is_open());
    }
}
