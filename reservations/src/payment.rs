//! The payment port: card payments in the shape real providers have — `authorize`
//! when the shopper checks out, `capture` after the order is committed, `void` when it
//! is not — each idempotent by order id. A simulated provider stands in for a real one;
//! every call goes through a timeout and a circuit breaker.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::ids::OrderId;
use crate::sales::{FieldError, Money};

/// Why a payment call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The card was declined (`402 payment_declined`).
    #[error("the card was declined")]
    Declined,
    /// The provider failed, timed out, or the breaker is open (`503 payment_unavailable`).
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
}

/// A card payment provider.
pub trait PaymentGateway: Send + Sync + 'static {
    /// Reserves `amount` on the card behind `token` for `order`. Idempotent by order.
    fn authorize<'a>(
        &'a self,
        order: OrderId,
        amount: &'a Money,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), PaymentError>>;
    /// Takes the authorized money. Idempotent by order.
    fn capture(&self, order: OrderId) -> BoxFuture<'_, Result<(), PaymentError>>;
    /// Releases an authorization that will not be captured. Idempotent by order.
    fn void(&self, order: OrderId) -> BoxFuture<'_, Result<(), PaymentError>>;
}

/// The simulator's latency and failure settings (`/v1/ops/payment-simulator`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulatorSettings {
    /// Latency distribution of every call.
    pub latency_ms: Latency,
    /// Share of calls that fail with a provider error, 0.0–1.0.
    pub failure_rate: f64,
}

/// A latency distribution given by its median and 99th percentile (log-normal).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Median, ms.
    pub p50: u64,
    /// 99th percentile, ms (≥ p50).
    pub p99: u64,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        Self {
            latency_ms: Latency { p50: 5, p99: 20 },
            failure_rate: 0.0,
        }
    }
}

impl SimulatorSettings {
    /// Checks the bounds; returns the offending field.
    pub fn validate(&self) -> Result<(), crate::sales::FieldError> {
        let bad = |field, message: &str| crate::sales::FieldError {
            field,
            message: message.into(),
        };
        if self.latency_ms.p50 > 60_000 || self.latency_ms.p99 > 60_000 {
            return Err(bad("latency_ms", "must be at most 60000 ms"));
        }
        if self.latency_ms.p99 < self.latency_ms.p50 {
            return Err(bad("latency_ms.p99", "must be at least p50"));
        }
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(bad("failure_rate", "must be between 0 and 1"));
        }
        Ok(())
    }

    fn sample_latency(&self) -> Duration {
        let Latency { p50, p99 } = self.latency_ms;
        if p50 == 0 {
            return Duration::ZERO;
        }
        // Log-normal with the given median and p99: sigma = ln(p99/p50) / z(0.99).
        let sigma = ((p99.max(p50) as f64) / p50 as f64).ln() / 2.326;
        let z: f64 = {
            // Box–Muller from two uniforms.
            let mut rng = rand::thread_rng();
            let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        };
        Duration::from_secs_f64((p50 as f64 * (sigma * z).exp()).min(120_000.0) / 1000.0)
    }
}

/// The simulated provider: test tokens of API.md, configurable latency and failures,
/// and its own ledger in Postgres (`sim_payments`) so calls are idempotent across
/// processes.
pub struct SimulatedPayments {
    settings: RwLock<SimulatorSettings>,
    ledger: PgPool,
}

/// How long `tok_slow` takes.
const SLOW_TOKEN_DELAY: Duration = Duration::from_millis(1500);

impl SimulatedPayments {
    /// A simulator with `settings`, keeping its ledger in `ledger`.
    pub fn new(settings: SimulatorSettings, ledger: PgPool) -> Self {
        Self {
            settings: RwLock::new(settings),
            ledger,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> SimulatorSettings {
        *self.settings.read().expect("settings lock")
    }

    /// Replaces the settings (a rehearsal slows payments down mid-sale).
    pub fn set_settings(&self, settings: SimulatorSettings) {
        *self.settings.write().expect("settings lock") = settings;
    }

    async fn behave(&self) -> Result<(), PaymentError> {
        let settings = self.settings();
        tokio::time::sleep(settings.sample_latency()).await;
        if rand::thread_rng().gen_bool(settings.failure_rate) {
            return Err(PaymentError::Unavailable(
                "simulated provider failure".into(),
            ));
        }
        Ok(())
    }

    async fn transition(&self, order: OrderId, to: &str, column: &str) -> Result<(), PaymentError> {
        self.behave().await?;
        // Only from `authorized`: a second capture or void of the same order is a no-op.
        let sql = format!("update sim_payments set status = $2, {column} = now() where order_id = $1 and status = 'authorized'");
        sqlx::query(&sql)
            .bind(order.0)
            .bind(to)
            .execute(&self.ledger)
            .await
            .map_err(|e| PaymentError::Unavailable(e.to_string()))?;
        Ok(())
    }
}

impl PaymentGateway for SimulatedPayments {
    fn authorize<'a>(
        &'a self,
        order: OrderId,
        amount: &'a Money,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(async move {
            match token {
                "tok_declined" => {
                    self.behave().await?;
                    return Err(PaymentError::Declined);
                }
                "tok_error" => {
                    return Err(PaymentError::Unavailable("simulated provider error".into()))
                }
                "tok_slow" => tokio::time::sleep(SLOW_TOKEN_DELAY).await,
                _ => {}
            }
            self.behave().await?;
            sqlx::query(
                "insert into sim_payments (order_id, amount_minor, currency, status) values ($1, $2, $3, 'authorized') \
                 on conflict (order_id) do nothing",
            )
            .bind(order.0)
            .bind(amount.amount_minor)
            .bind(&amount.currency)
            .execute(&self.ledger)
            .await
            .map_err(|e| PaymentError::Unavailable(e.to_string()))?;
            Ok(())
        })
    }

    fn capture(&self, order: OrderId) -> BoxFuture<'_, Result<(), PaymentError>> {
        Box::pin(self.transition(order, "captured", "captured_at"))
    }

    fn void(&self, order: OrderId) -> BoxFuture<'_, Result<(), PaymentError>> {
        Box::pin(self.transition(order, "voided", "voided_at"))
    }
}

/// Circuit breaker state: closed (counting consecutive failures), open until an
/// instant, then one trial call (half-open) decides.
#[derive(Debug)]
enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// Timeout and circuit breaker around any gateway. A provider that keeps failing is
/// not called for `open_for`: checkout answers 503 at once instead of making every
/// shopper wait for a timeout.
pub struct GuardedGateway {
    inner: Arc<dyn PaymentGateway>,
    timeout: Duration,
    failure_threshold: u32,
    open_for: Duration,
    state: Mutex<Breaker>,
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
        Self {
            inner,
            timeout,
            failure_threshold,
            open_for,
            state: Mutex::new(Breaker::Closed { failures: 0 }),
        }
    }

    /// Whether the breaker currently refuses calls.
    pub fn is_open(&self) -> bool {
        matches!(*self.state.lock().expect("breaker lock"), Breaker::Open { until } if Instant::now() < until)
    }

    fn admit(&self) -> Result<(), PaymentError> {
        let mut state = self.state.lock().expect("breaker lock");
        match *state {
            Breaker::Open { until } if Instant::now() < until => Err(PaymentError::Unavailable(
                "circuit open: the provider is failing".into(),
            )),
            Breaker::Open { .. } => {
                *state = Breaker::HalfOpen;
                Ok(())
            }
            // One trial at a time while half-open.
            Breaker::HalfOpen => Err(PaymentError::Unavailable(
                "circuit half-open: trial call in flight".into(),
            )),
            Breaker::Closed { .. } => Ok(()),
        }
    }

    fn record(&self, outcome: &Result<(), PaymentError>) {
        let mut state = self.state.lock().expect("breaker lock");
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

    async fn guarded(
        &self,
        call: BoxFuture<'_, Result<(), PaymentError>>,
    ) -> Result<(), PaymentError> {
        self.admit()?;
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(PaymentError::Unavailable("payment call timed out".into())),
        };
        self.record(&outcome);
        outcome
    }
}

impl PaymentGateway for GuardedGateway {
    fn authorize<'a>(
        &'a self,
        order: OrderId,
        amount: &'a Money,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(self.guarded(self.inner.authorize(order, amount, token)))
    }

    fn capture(&self, order: OrderId) -> BoxFuture<'_, Result<(), PaymentError>> {
        Box::pin(self.guarded(self.inner.capture(order)))
    }

    fn void(&self, order: OrderId) -> BoxFuture<'_, Result<(), PaymentError>> {
        Box::pin(self.guarded(self.inner.void(order)))
    }
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

    struct Failing;

    impl PaymentGateway for Failing {
        fn authorize<'a>(
            &'a self,
            _: OrderId,
            _: &'a Money,
            _: &'a str,
        ) -> BoxFuture<'a, Result<(), PaymentError>> {
            Box::pin(async { Err(PaymentError::Unavailable("down".into())) })
        }
        fn capture(&self, _: OrderId) -> BoxFuture<'_, Result<(), PaymentError>> {
            Box::pin(async { Ok(()) })
        }
        fn void(&self, _: OrderId) -> BoxFuture<'_, Result<(), PaymentError>> {
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn the_breaker_opens_after_consecutive_failures_and_closes_after_a_good_trial() {
        let guarded = GuardedGateway::new(
            Arc::new(Failing),
            Duration::from_secs(1),
            3,
            Duration::from_millis(50),
        );
        let money = Money {
            amount_minor: 1,
            currency: "EUR".into(),
        };
        for _ in 0..3 {
            assert!(guarded
                .authorize(OrderId::new(), &money, "tok_ok")
                .await
                .is_err());
        }
        assert!(guarded.is_open());
        tokio::time::sleep(Duration::from_millis(60)).await;
        // Half-open: the trial (a capture, which succeeds) closes the breaker.
        assert_eq!(guarded.capture(OrderId::new()).await, Ok(()));
        assert!(!guarded.is_open());
    }

    #[test]
    fn simulated_latency_follows_its_median() {
        let settings = SimulatorSettings {
            latency_ms: Latency { p50: 100, p99: 400 },
            failure_rate: 0.0,
        };
        let mut samples: Vec<Duration> = (0..2001).map(|_| settings.sample_latency()).collect();
        samples.sort();
        let median = samples[1000].as_millis();
        assert!((80..=125).contains(&median), "median {median} ms");
    }

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
