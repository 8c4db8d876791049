//! The sale setting `draw_beacon`: which future round of a public randomness beacon the
//! pre-queue draw mixes into its keys (API.md, "A draw nobody controls"), and when that
//! round is due. Verifying and fetching the round is the waiting room's (`beacon`).

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{invalid, FieldError};

/// The one beacon chain a sale may name: drand's `quicknet` (League of Entropy).
pub const QUICKNET: &str = "drand-quicknet";
/// Unix time of quicknet's round 1 (its chain info's `genesis_time`).
pub const QUICKNET_GENESIS_SECS: i64 = 1_692_803_367;
/// Seconds between two quicknet rounds (its chain info's `period`).
pub const QUICKNET_PERIOD_SECS: i64 = 3;

/// `{ "chain": "drand-quicknet", "round": N }`: the round whose randomness the draw mixes
/// in. The round must be due after `starts_at`, so nobody — the merchant included —
/// can know its randomness while the setting can still change (it is frozen at the
/// start, like the other rules shoppers rely on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrawBeacon {
    /// `drand-quicknet`.
    pub chain: String,
    /// The round number (1 is quicknet's first round).
    pub round: u64,
}

impl DrawBeacon {
    /// When the round is due: `genesis_time + (round - 1) × period`.
    pub fn due_at(&self) -> DateTime<Utc> {
        let round = i64::try_from(self.round).unwrap_or(i64::MAX / 4).max(1);
        let secs = round
            .saturating_sub(1)
            .saturating_mul(QUICKNET_PERIOD_SECS)
            .saturating_add(QUICKNET_GENESIS_SECS);
        Utc.timestamp_opt(secs, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Checks the setting against the sale's start.
    pub(super) fn check(&self, starts_at: DateTime<Utc>) -> Result<(), FieldError> {
        if self.chain != QUICKNET {
            return Err(invalid("draw_beacon.chain", "must be \"drand-quicknet\""));
        }
        if self.round == 0 || self.due_at() <= starts_at {
            return Err(invalid(
                "draw_beacon.round",
                format!(
                    "must be a round due after starts_at (round {} is due at {})",
                    self.round,
                    self.due_at().to_rfc3339()
                ),
            ));
        }
        Ok(())
    }
}

/// Deserialises a present field as `Some(value)`, so that an edit tells "set to null"
/// (`Some(None)`) from "not named" (`None`).
pub(super) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beacon(round: u64) -> DrawBeacon {
        DrawBeacon {
            chain: QUICKNET.into(),
            round,
        }
    }

    #[test]
    fn a_round_is_due_three_seconds_after_the_one_before() {
        assert_eq!(beacon(1).due_at().timestamp(), QUICKNET_GENESIS_SECS);
        assert_eq!(beacon(657_413).due_at().timestamp(), 1_694_775_603);
    }

    #[test]
    fn the_round_must_be_due_after_the_start_and_on_quicknet() {
        let start = beacon(1_000).due_at();
        assert!(beacon(1_001).check(start).is_ok());
        assert_eq!(
            beacon(1_000).check(start).unwrap_err().field,
            "draw_beacon.round"
        );
        assert_eq!(
            beacon(0).check(start).unwrap_err().field,
            "draw_beacon.round"
        );
        let other = DrawBeacon {
            chain: "drand-mainnet".into(),
            round: 2_000,
        };
        assert_eq!(other.check(start).unwrap_err().field, "draw_beacon.chain");
    }
}
