//! The simulator's knobs (`GET`/`PUT /v1/simulator/settings`, and flashsale's
//! `/v1/ops/payment-simulator`): latency, failures, lost answers, failing voids and
//! captures, an outage. Bounds are those of the contract's "Settings JSON".

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The settings in force. In a `GET`, the countdowns (`fail_voids`, `fail_captures`)
/// and `outage_ms` show what is still left.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Latency distribution of every Stripe call.
    pub latency_ms: Latency,
    /// Share of Stripe calls refused with `500 api_error` before doing work, 0.0–1.0.
    pub failure_rate: f64,
    /// Share of POST calls (create, capture, cancel, refund) that do their work, store
    /// their idempotent result and then drop the connection, 0.0–1.0.
    #[serde(default)]
    pub lost_answer_rate: f64,
    /// The next this many cancel calls answer `500 api_error` before doing work,
    /// counting down (0–100).
    #[serde(default)]
    pub fail_voids: u32,
    /// The next this many capture calls answer `500 api_error` before doing work,
    /// counting down (0–100).
    #[serde(default)]
    pub fail_captures: u32,
    /// From the `PUT` on, every Stripe call answers `503 api_error` for this many ms
    /// (0–600000).
    #[serde(default)]
    pub outage_ms: u64,
}

/// A latency distribution given by its median and 99th percentile (log-normal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Median, ms.
    pub p50: u64,
    /// 99th percentile, ms (≥ p50).
    pub p99: u64,
}

/// A setting out of bounds: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    /// The offending field, as in the JSON (`latency_ms.p99`).
    pub field: &'static str,
    /// What the field must be.
    pub message: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            latency_ms: Latency { p50: 5, p99: 20 },
            failure_rate: 0.0,
            lost_answer_rate: 0.0,
            fail_voids: 0,
            fail_captures: 0,
            outage_ms: 0,
        }
    }
}

/// The longest latency either percentile may ask for.
const MAX_LATENCY_MS: u64 = 60_000;
/// The longest outage one `PUT` may start.
const MAX_OUTAGE_MS: u64 = 600_000;
/// The most failures one countdown may owe.
const MAX_COUNTDOWN: u32 = 100;

impl Settings {
    /// Checks the bounds; names the first offending field.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |field, message: &str| {
            Err(SettingsError {
                field,
                message: message.into(),
            })
        };
        if self.latency_ms.p50 > MAX_LATENCY_MS {
            return bad("latency_ms.p50", "must be at most 60000 ms");
        }
        if self.latency_ms.p99 > MAX_LATENCY_MS {
            return bad("latency_ms.p99", "must be at most 60000 ms");
        }
        if self.latency_ms.p99 < self.latency_ms.p50 {
            return bad("latency_ms.p99", "must be at least p50");
        }
        // `contains` is false for NaN too.
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return bad("failure_rate", "must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&self.lost_answer_rate) {
            return bad("lost_answer_rate", "must be between 0 and 1");
        }
        if self.fail_voids > MAX_COUNTDOWN {
            return bad("fail_voids", "must be between 0 and 100");
        }
        if self.fail_captures > MAX_COUNTDOWN {
            return bad("fail_captures", "must be between 0 and 100");
        }
        if self.outage_ms > MAX_OUTAGE_MS {
            return bad("outage_ms", "must be between 0 and 600000");
        }
        Ok(())
    }

    /// One call's latency: log-normal with the configured median and p99.
    pub(crate) fn sample_latency(&self) -> Duration {
        let Latency { p50, p99 } = self.latency_ms;
        if p50 == 0 {
            return Duration::ZERO;
        }
        // sigma = ln(p99/p50) / z(0.99), so that the 99th percentile lands on p99.
        let sigma = ((p99.max(p50) as f64) / p50 as f64).ln() / 2.326;
        let z: f64 = {
            // Box–Muller from two uniforms.
            let mut rng = rand::thread_rng();
            let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        };
        // Capped at twice the largest p99 so one unlucky sample cannot stall a caller
        // for minutes.
        let ms = (p50 as f64 * (sigma * z).exp()).min(2.0 * MAX_LATENCY_MS as f64);
        Duration::from_secs_f64(ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_latency_follows_its_median() {
        let settings = Settings {
            latency_ms: Latency { p50: 100, p99: 400 },
            ..Settings::default()
        };
        let mut samples: Vec<Duration> = (0..2001).map(|_| settings.sample_latency()).collect();
        samples.sort();
        let median = samples[1000].as_millis();
        assert!((80..=125).contains(&median), "median {median} ms");
    }

    #[test]
    fn settings_out_of_bounds_name_their_field() {
        let s = Settings {
            latency_ms: Latency { p50: 30, p99: 10 },
            ..Settings::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "latency_ms.p99");
        let s = Settings {
            outage_ms: 600_001,
            ..Settings::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "outage_ms");
        let s = Settings {
            lost_answer_rate: 1.5,
            ..Settings::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "lost_answer_rate");
        assert!(Settings::default().validate().is_ok());
    }

    #[test]
    fn settings_json_defaults_the_optional_fields_and_denies_unknown_ones() {
        let s: Settings =
            serde_json::from_str(r#"{"latency_ms":{"p50":1,"p99":2},"failure_rate":0.5}"#).unwrap();
        assert_eq!(s.fail_voids, 0);
        assert_eq!(s.outage_ms, 0);
        assert!(serde_json::from_str::<Settings>(
            r#"{"latency_ms":{"p50":1,"p99":2},"failure_rate":0,"bogus":1}"#
        )
        .is_err());
    }
}
