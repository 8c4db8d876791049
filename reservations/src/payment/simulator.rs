//! The simulated provider: the test tokens of API.md, configurable latency and
//! failures (`/v1/ops/payment-simulator`), and a ledger in Postgres (`sim_payments`) so
//! its calls are idempotent across processes. Besides plain failures it has the faults
//! real providers have: an answer lost after the work is done (`lost_answer_rate`) and
//! voids that fail a number of times (`fail_voids`).

use std::sync::RwLock;
use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::{PaymentError, PaymentGateway, PaymentState};
use crate::ids::OrderId;
use crate::sales::Money;

/// The simulator's latency and failure settings (`/v1/ops/payment-simulator`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulatorSettings {
    /// Latency distribution of every call.
    pub latency_ms: Latency,
    /// Share of calls that fail with a provider error, 0.0–1.0.
    pub failure_rate: f64,
    /// Share of authorize, capture and void calls that do their work and then lose the
    /// answer (the caller hears `Unavailable("answer lost")`), 0.0–1.0.
    #[serde(default)]
    pub lost_answer_rate: f64,
    /// The next this many void calls fail before doing anything, counting down
    /// (0–100).
    #[serde(default)]
    pub fail_voids: u32,
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
            lost_answer_rate: 0.0,
            fail_voids: 0,
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
        if !(0.0..=1.0).contains(&self.lost_answer_rate) {
            return Err(bad("lost_answer_rate", "must be between 0 and 1"));
        }
        if self.fail_voids > 100 {
            return Err(bad("fail_voids", "must be between 0 and 100"));
        }
        Ok(())
    }

    pub(crate) fn sample_latency(&self) -> Duration {
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

    /// After the work is done: loses the answer at `lost_answer_rate` (the caller cannot
    /// tell this from a call that did nothing; only `retrieve` can).
    fn answer(&self) -> Result<(), PaymentError> {
        if rand::thread_rng().gen_bool(self.settings().lost_answer_rate) {
            return Err(PaymentError::Unavailable("answer lost".into()));
        }
        Ok(())
    }

    /// Takes one of the `fail_voids` failures still owed, if any.
    fn owed_void_failure(&self) -> bool {
        let mut settings = self.settings.write().expect("settings lock");
        if settings.fail_voids == 0 {
            return false;
        }
        settings.fail_voids -= 1;
        true
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
        self.answer()
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
            self.answer()
        })
    }

    fn capture(&self, order: OrderId) -> BoxFuture<'_, Result<(), PaymentError>> {
        Box::pin(self.transition(order, "captured", "captured_at"))
    }

    fn void(&self, order: OrderId) -> BoxFuture<'_, Result<(), PaymentError>> {
        Box::pin(async move {
            if self.owed_void_failure() {
                return Err(PaymentError::Unavailable("simulated void failure".into()));
            }
            self.transition(order, "voided", "voided_at").await
        })
    }

    fn retrieve(
        &self,
        order: OrderId,
    ) -> BoxFuture<'_, Result<Option<PaymentState>, PaymentError>> {
        Box::pin(async move {
            self.behave().await?;
            let status: Option<String> =
                sqlx::query_scalar("select status from sim_payments where order_id = $1")
                    .bind(order.0)
                    .fetch_optional(&self.ledger)
                    .await
                    .map_err(|e| PaymentError::Unavailable(e.to_string()))?;
            Ok(status.map(|status| match status.as_str() {
                "captured" => PaymentState::Captured,
                "voided" => PaymentState::Voided,
                _ => PaymentState::Authorized,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_latency_follows_its_median() {
        let settings = SimulatorSettings {
            latency_ms: Latency { p50: 100, p99: 400 },
            ..SimulatorSettings::default()
        };
        let mut samples: Vec<Duration> = (0..2001).map(|_| settings.sample_latency()).collect();
        samples.sort();
        let median = samples[1000].as_millis();
        assert!((80..=125).contains(&median), "median {median} ms");
    }
}
