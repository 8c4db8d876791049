//! The drand quicknet beacon the pre-queue draw may mix in: the chain's constants, the
//! check of a round's BLS signature, the fetcher, and what the draw used.
//!
//! A sale may name a quicknet round due after its start (`draw_beacon`). The round's
//! randomness is `SHA-256(signature)`, and nobody — the operator included — knows it
//! before the League of Entropy's nodes sign the round, so a seed committed before the
//! line opened cannot be chosen to favour anyone once it is mixed with that randomness
//! (`draw`, README "Checking the draw").
//!
//! quicknet (`bls-unchained-g1-rfc9380`): the signature of round `r` is a BLS
//! signature on G1 (48 bytes compressed) of `SHA-256(r as 8 bytes big-endian)`, hashed
//! to the curve with the DST `BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_`, under the
//! group public key on G2 below (96 bytes compressed). Verification is noislabs'
//! `drand-verify` (its `G2PubkeyRfc` is exactly this scheme).
//!
//! A late round: the line cannot be drawn without it, so the draw at the start waits.
//! Meanwhile the pre-queue stays open (tickets read `prequeue`; a join lands in it and
//! takes part in the draw, since the randomness is still unknown), the server asks the
//! configured drand endpoint again with a backoff, and the merchant may post the round.
//! After [`LATE_BOUND`] past the round's due time the draw falls back to the committed
//! seed alone and publishes that choice (`draw_beacon.status = "missed"` in
//! `GET /draw`): nobody can stall a sale by withholding the beacon. Whichever comes
//! first — the verified round or the fallback — is recorded once in `draw_beacons` and
//! never replaced.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use drand_verify::{derive_randomness, G2PubkeyRfc, Pubkey};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::Result;
use reservations::ids::SaleId;
use reservations::sales::{DrawBeacon, QUICKNET};

/// quicknet's chain hash (the path segment of its HTTP API).
pub const QUICKNET_CHAIN_HASH: &str =
    "52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971";
/// quicknet's group public key (G2, compressed), from its chain info.
pub const QUICKNET_PUBLIC_KEY: &str = "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a";
/// How long after a round is due the draw waits for it before falling back to the
/// committed seed alone. drand publishes a round within seconds; ten minutes covers a
/// relay outage and a merchant posting the round by hand, and is short enough that a
/// withheld beacon delays a sale, never stops it.
pub const LATE_BOUND: Duration = Duration::from_secs(600);
/// First and longest wait between two fetches of a round that is not there yet.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(15));
/// Longest one fetch may take: the draw runs in the controller's tick.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// A verified quicknet round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beacon {
    /// The round number.
    pub round: u64,
    /// The BLS signature (48 bytes).
    pub signature: Vec<u8>,
    /// `SHA-256(signature)`: the bytes the draw key mixes in.
    pub randomness: [u8; 32],
}

/// Verifies `signature_hex` as quicknet's signature of `round`; the round with its
/// randomness when it is one, `None` for anything else (bad hex, not a curve point,
/// another round's signature, a flipped byte).
pub fn verify(round: u64, signature_hex: &str) -> Option<Beacon> {
    let signature = hex::decode(signature_hex.trim()).ok()?;
    if signature.len() != 48 {
        return None;
    }
    let key: [u8; 96] = hex::decode(QUICKNET_PUBLIC_KEY).ok()?.try_into().ok()?;
    let key = G2PubkeyRfc::from_fixed(key).ok()?;
    if !key.verify(round, b"", &signature).unwrap_or(false) {
        return None;
    }
    Some(Beacon {
        round,
        randomness: derive_randomness(&signature),
        signature,
    })
}

/// The beacon as `GET /draw` publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BeaconInfo {
    /// `drand-quicknet`.
    pub chain: String,
    /// The round.
    pub round: u64,
    /// `SHA-256(signature)` (hex).
    pub randomness: String,
    /// The round's BLS signature (hex), to check against quicknet's public key.
    pub signature: String,
}

impl From<&Beacon> for BeaconInfo {
    fn from(b: &Beacon) -> Self {
        BeaconInfo {
            chain: QUICKNET.into(),
            round: b.round,
            randomness: hex::encode(b.randomness),
            signature: hex::encode(&b.signature),
        }
    }
}

/// Where the draw stands with the round its sale names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BeaconStatus {
    /// Not obtained yet; the draw waits for it (until `fallback_at`).
    Pending,
    /// Verified: the draw mixes its randomness in.
    Verified,
    /// Not obtained by `fallback_at`: the draw used the committed seed alone.
    Missed,
}

/// The named round and what became of it, as `GET /draw` publishes it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BeaconPlan {
    /// `drand-quicknet`.
    pub chain: String,
    /// The round the sale named.
    pub round: u64,
    /// When the round is due.
    pub due_at: DateTime<Utc>,
    /// When the draw stops waiting for it and uses the committed seed alone.
    pub fallback_at: DateTime<Utc>,
    /// `pending`, `verified` or `missed`.
    pub status: BeaconStatus,
}

/// What the draw has of its beacon, once recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The verified round.
    Verified(Beacon),
    /// The round was missed: the seed alone.
    Missed,
}

/// Why a merchant's round was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not the named round, or not its valid signature (`422 invalid_beacon`).
    Invalid(String),
    /// The draw already fell back to the seed alone (`409 sale_locked`).
    Missed,
}

/// The draw's beacons: recorded in Postgres (`draw_beacons`), fetched from a drand
/// HTTP endpoint when one is configured.
pub struct Beacons {
    db: PgPool,
    endpoint: Option<(reqwest::Client, String)>,
    /// Per sale: when to ask the endpoint next, and the wait after that.
    backoff: Mutex<HashMap<SaleId, (Instant, Duration)>>,
    /// What was recorded, once read: it never changes, and `GET /draw` would otherwise
    /// read Postgres and check a pairing on every request.
    known: Mutex<HashMap<SaleId, Recorded>>,
}

impl Beacons {
    /// Beacons recorded in `db`, fetched from `url` (`GET {url}/{chain hash}/public/{round}`)
    /// when given; without one the merchant posts the round.
    pub fn new(db: PgPool, url: Option<String>) -> Self {
        let endpoint = url.filter(|u| !u.trim().is_empty()).map(|url| {
            let client = reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .build()
                .unwrap_or_default();
            (client, url.trim_end_matches('/').to_owned())
        });
        Self {
            db,
            endpoint,
            backoff: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// What was recorded for the sale's draw, if anything.
    pub async fn recorded(&self, sale: SaleId) -> Result<Option<Recorded>> {
        if let Some(known) = self.known.lock().expect("known lock").get(&sale) {
            return Ok(Some(known.clone()));
        }
        let row: Option<(String, Option<String>, i64)> =
            sqlx::query_as("select outcome, signature, round from draw_beacons where sale_id = $1")
                .bind(sale.0)
                .fetch_optional(&self.db)
                .await
                .map_err(anyhow::Error::from)?;
        let recorded = row.map(|(outcome, signature, round)| {
            // Only verified signatures are written; verified again on the way in, so a
            // row edited by hand cannot change a draw.
            match (outcome.as_str(), signature) {
                ("verified", Some(sig)) => verify(round as u64, &sig)
                    .map(Recorded::Verified)
                    .unwrap_or(Recorded::Missed),
                _ => Recorded::Missed,
            }
        });
        if let Some(recorded) = &recorded {
            let mut known = self.known.lock().expect("known lock");
            known.insert(sale, recorded.clone());
        }
        Ok(recorded)
    }

    /// Records `outcome` for round `round` unless something is recorded already;
    /// returns what counts.
    async fn record(&self, sale: SaleId, round: u64, outcome: &Recorded) -> Result<Recorded> {
        let (kind, signature, randomness) = match outcome {
            Recorded::Verified(b) => (
                "verified",
                Some(hex::encode(&b.signature)),
                Some(hex::encode(b.randomness)),
            ),
            Recorded::Missed => ("missed", None, None),
        };
        sqlx::query(
            "insert into draw_beacons (sale_id, round, outcome, signature, randomness) \
             values ($1, $2, $3, $4, $5) on conflict (sale_id) do nothing",
        )
        .bind(sale.0)
        .bind(round as i64)
        .bind(kind)
        .bind(signature)
        .bind(randomness)
        .execute(&self.db)
        .await
        .map_err(anyhow::Error::from)?;
        Ok(self.recorded(sale).await?.unwrap_or(Recorded::Missed))
    }

    /// The merchant's round: verified, then recorded (first writer wins).
    pub async fn supply(
        &self,
        sale: SaleId,
        named: Option<&DrawBeacon>,
        round: u64,
        signature_hex: &str,
    ) -> Result<std::result::Result<Beacon, Refusal>> {
        let Some(named) = named else {
            return Ok(Err(Refusal::Invalid(
                "this sale names no draw_beacon round".into(),
            )));
        };
        if round != named.round {
            return Ok(Err(Refusal::Invalid(format!(
                "the sale's draw uses round {}, not {round}",
                named.round
            ))));
        }
        let Some(beacon) = verify(round, signature_hex) else {
            return Ok(Err(Refusal::Invalid(format!(
                "not quicknet's signature of round {round}"
            ))));
        };
        Ok(
            match self
                .record(sale, round, &Recorded::Verified(beacon))
                .await?
            {
                Recorded::Verified(b) => Ok(b),
                Recorded::Missed => Err(Refusal::Missed),
            },
        )
    }

    /// What the draw at `now` uses: `Some(Some(beacon))`, `Some(None)` (the seed alone:
    /// the round was missed), or `None` while it waits for the round.
    pub async fn for_draw(
        &self,
        sale: SaleId,
        named: &DrawBeacon,
        now: DateTime<Utc>,
    ) -> Result<Option<Option<Beacon>>> {
        if let Some(recorded) = self.recorded(sale).await? {
            return Ok(Some(into_draw(recorded)));
        }
        if now < named.due_at() {
            return Ok(None);
        }
        let late = now >= fallback_at(named);
        if let Some(beacon) = self.fetch(sale, named.round, late).await {
            let recorded = self
                .record(sale, named.round, &Recorded::Verified(beacon))
                .await?;
            return Ok(Some(into_draw(recorded)));
        }
        if late {
            tracing::warn!(sale_id = %sale, round = named.round,
                "the draw's beacon round was not obtained in time; drawing from the seed alone");
            let recorded = self.record(sale, named.round, &Recorded::Missed).await?;
            return Ok(Some(into_draw(recorded)));
        }
        Ok(None)
    }

    /// Asks the endpoint for `round` unless this sale's backoff says not yet (`last`:
    /// ask anyway, before falling back). Only a round that verifies is returned.
    async fn fetch(&self, sale: SaleId, round: u64, last: bool) -> Option<Beacon> {
        let (client, url) = self.endpoint.as_ref()?;
        let now = Instant::now();
        {
            let mut backoff = self.backoff.lock().expect("backoff lock");
            let (next, wait) = backoff.entry(sale).or_insert((now, BACKOFF.0));
            if now < *next && !last {
                return None;
            }
            *next = now + *wait;
            *wait = (*wait * 2).min(BACKOFF.1);
        }
        let url = format!("{url}/{QUICKNET_CHAIN_HASH}/public/{round}");
        #[derive(Deserialize)]
        struct Published {
            round: u64,
            signature: String,
        }
        let published: Published = match client.get(&url).send().await {
            Ok(response) if response.status().is_success() => match response.json().await {
                Ok(published) => published,
                Err(e) => {
                    tracing::warn!(sale_id = %sale, error = %e, "drand answered no round");
                    return None;
                }
            },
            Ok(response) => {
                tracing::info!(sale_id = %sale, round, status = %response.status(),
                    "drand round not available yet");
                return None;
            }
            Err(e) => {
                tracing::warn!(sale_id = %sale, round, error = %e, "drand endpoint unreachable");
                return None;
            }
        };
        // The endpoint is only a relay: what counts is the signature.
        let beacon = (published.round == round)
            .then(|| verify(round, &published.signature))
            .flatten();
        if beacon.is_none() {
            tracing::warn!(sale_id = %sale, round, "drand endpoint served a round that does not verify");
        }
        beacon
    }

    /// The named round and its status, for `GET /draw`.
    pub async fn plan(
        &self,
        sale: SaleId,
        named: &DrawBeacon,
    ) -> Result<(BeaconPlan, Option<BeaconInfo>)> {
        let recorded = self.recorded(sale).await?;
        let status = match &recorded {
            None => BeaconStatus::Pending,
            Some(Recorded::Verified(_)) => BeaconStatus::Verified,
            Some(Recorded::Missed) => BeaconStatus::Missed,
        };
        let info = match &recorded {
            Some(Recorded::Verified(b)) => Some(BeaconInfo::from(b)),
            _ => None,
        };
        let plan = BeaconPlan {
            chain: named.chain.clone(),
            round: named.round,
            due_at: named.due_at(),
            fallback_at: fallback_at(named),
            status,
        };
        Ok((plan, info))
    }
}

fn into_draw(recorded: Recorded) -> Option<Beacon> {
    match recorded {
        Recorded::Verified(b) => Some(b),
        Recorded::Missed => None,
    }
}

/// When the draw stops waiting for the named round.
pub fn fallback_at(named: &DrawBeacon) -> DateTime<Utc> {
    named.due_at() + chrono::Duration::from_std(LATE_BOUND).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// quicknet round 657413 as drand served it (cross-checked with py_ecc's pairing
    /// against the public key above).
    const ROUND: u64 = 657_413;
    const SIGNATURE: &str = "b713718a38ae728dfd477991af2822e08d2f305e47718cef9f7848ce4050e7be41076862b98fad56e91a6b85b89cd97b";
    const RANDOMNESS: &str = "fc1873a13f3545aeade8401532ef5519920652eee6b0d2b19ca12643b87b3587";
    /// quicknet round 123.
    const OTHER_SIGNATURE: &str = "b75c69d0b72a5d906e854e808ba7e2accb1542ac355ae486d591aa9d43765482e26cd02df835d3546d23c4b13e0dfc92";

    #[test]
    fn a_recorded_quicknet_round_verifies_and_yields_its_randomness() {
        let beacon = verify(ROUND, SIGNATURE).expect("verifies");
        assert_eq!(hex::encode(beacon.randomness), RANDOMNESS);
        assert!(verify(123, OTHER_SIGNATURE).is_some());
    }

    #[test]
    fn a_forged_or_misplaced_signature_is_refused() {
        let mut flipped = hex::decode(SIGNATURE).unwrap();
        flipped[20] ^= 0x01;
        assert!(
            verify(ROUND, &hex::encode(flipped)).is_none(),
            "a flipped byte"
        );
        assert!(verify(ROUND, OTHER_SIGNATURE).is_none(), "another round's");
        assert!(verify(ROUND + 1, SIGNATURE).is_none(), "for another round");
        assert!(verify(ROUND, "zz").is_none(), "not hex");
        assert!(verify(ROUND, &SIGNATURE[..94]).is_none(), "too short");
    }
}
