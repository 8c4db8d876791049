//! How the waiting room admits shoppers to a sale, as the merchant sets it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{invalid, limits, FieldError};

/// How the waiting room admits shoppers to this sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdmissionMode {
    /// Feedback-controlled from the measured checkout latency.
    Auto,
    /// A pinned rate (`max_admit_per_second`).
    Fixed,
}

/// Admission settings of a sale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Admission {
    /// `auto` or `fixed`.
    pub mode: AdmissionMode,
    /// Ceiling on admitted shoppers who have not yet finished.
    #[serde(default)]
    pub max_active_shoppers: Option<i64>,
    /// Ceiling on the admission rate (the rate itself in `fixed` mode).
    #[serde(default)]
    pub max_admit_per_second: Option<f64>,
    /// The checkout latency the controller keeps p95 under.
    #[serde(default = "default_p95_target")]
    pub checkout_p95_target_ms: i64,
    /// Leading zero bits a join's proof of work needs (0–26; 0: no proof). Absent in a
    /// body: the operator's default (`FLASHSALE_PROOF_DIFFICULTY_BITS`), filled in by
    /// [`Admission::with_proof_default`] before the sale is stored.
    #[serde(default)]
    pub proof_difficulty_bits: Option<i64>,
}

/// The most leading zero bits a sale may ask of a join's proof (about 67 million
/// hashes: seconds in a browser, the ceiling of the adaptive difficulty too).
pub const MAX_PROOF_DIFFICULTY_BITS: i64 = 26;

fn default_p95_target() -> i64 {
    300
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            mode: AdmissionMode::Auto,
            max_active_shoppers: None,
            max_admit_per_second: None,
            checkout_p95_target_ms: default_p95_target(),
            proof_difficulty_bits: None,
        }
    }
}

impl Admission {
    /// The same settings, with the operator's `default` where the body named no
    /// proof difficulty, so every stored sale states its own.
    pub fn with_proof_default(mut self, default: i64) -> Self {
        self.proof_difficulty_bits.get_or_insert(default);
        self
    }

    /// The proof difficulty of this sale; `default` for a sale stored before the
    /// setting existed.
    pub fn proof_bits(&self, default: i64) -> u32 {
        self.proof_difficulty_bits
            .unwrap_or(default)
            .clamp(0, MAX_PROOF_DIFFICULTY_BITS) as u32
    }

    pub(super) fn parse(self) -> Result<Admission, FieldError> {
        let caps = limits::ADMISSION_CAP;
        if let Some(n) = self.max_active_shoppers {
            if !caps.contains(&n) {
                return Err(invalid(
                    "admission.max_active_shoppers",
                    format!("must be between {} and {}", caps.start(), caps.end()),
                ));
            }
        }
        if let Some(rate) = self.max_admit_per_second {
            if !(rate.is_finite() && rate > 0.0 && rate <= *caps.end() as f64) {
                return Err(invalid(
                    "admission.max_admit_per_second",
                    format!("must be above 0 and at most {}", caps.end()),
                ));
            }
        }
        if self.mode == AdmissionMode::Fixed && self.max_admit_per_second.is_none() {
            return Err(invalid(
                "admission.max_admit_per_second",
                "is required when mode is fixed",
            ));
        }
        let target = limits::P95_TARGET_MS;
        if !target.contains(&self.checkout_p95_target_ms) {
            return Err(invalid(
                "admission.checkout_p95_target_ms",
                format!("must be between {} and {}", target.start(), target.end()),
            ));
        }
        if let Some(bits) = self.proof_difficulty_bits {
            if !(0..=MAX_PROOF_DIFFICULTY_BITS).contains(&bits) {
                return Err(invalid(
                    "admission.proof_difficulty_bits",
                    format!("must be between 0 and {MAX_PROOF_DIFFICULTY_BITS}"),
                ));
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sale_without_a_proof_difficulty_takes_the_operators_and_keeps_its_own() {
        let unset = Admission::default();
        assert_eq!(
            unset.clone().with_proof_default(14).proof_difficulty_bits,
            Some(14)
        );
        assert_eq!(unset.proof_bits(9), 9, "a sale stored before the setting");
        let own = Admission {
            proof_difficulty_bits: Some(0),
            ..Admission::default()
        };
        assert_eq!(
            own.clone().with_proof_default(14).proof_bits(14),
            0,
            "0 stays off"
        );
        assert!(own.parse().is_ok());
    }
}
