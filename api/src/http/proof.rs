//! The door of the line (API.md v1.1, "the line"): a join costs a fresh, single-use
//! proof of work when the sale's `admission.proof_difficulty_bits` is above 0.
//!
//! - `POST /v1/sales/{sale_id}/challenge` issues a challenge: an HMAC-signed token (the
//!   app's HMAC secret, as admission tokens are signed) binding shopper, sale, a random
//!   id, the difficulty and a two-minute expiry. Issuing keeps no state.
//! - A join sends `X-Join-Proof: <challenge>:<nonce>`; it is valid when
//!   `SHA-256(challenge ":" nonce)` has at least the challenge's leading zero bits, the
//!   challenge is unexpired and bound to this shopper and sale, and its id was never
//!   spent (one `SET … NX PX`, expiring with the challenge). Verifying is one hash.
//! - The difficulty adapts: each challenge counts against the client's address and its
//!   /24 (IPv4) or /64 (IPv6) over a sliding minute (one Redis round trip), and a busy
//!   address pays one more bit per doubling over a threshold, at most 8 more. Every
//!   proof-carrying join needs its own challenge, so the count is the joins' too.
//!
//! A shopper who already holds a ticket rejoins without a proof: the ticket read is
//! the one O(1) lookup a poll makes, and it tells a caller only about their own ticket.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, TimeZone, Utc};
use reservations::redis_conn::RedisConn;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::http::extract::{ClientCapped, IdPath, Shopper};
use crate::http::shed::{self, Priority};
use crate::http::AppState;
use reservations::ids::{SaleId, ShopperId};
use reservations::sales::{Sale, SaleState, MAX_PROOF_DIFFICULTY_BITS};
use waiting_room::signer::HmacSigner;

/// The header a join carries its proof in.
pub const PROOF_HEADER: HeaderName = HeaderName::from_static("x-join-proof");

/// How long a challenge may be solved and spent.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(120);

/// The audience of challenges, so no other token of the service passes as one.
const AUDIENCE: &str = "flashsale-join-proof";

/// The window of the per-address challenge counts.
const WINDOW_MS: i64 = 60_000;

/// Challenges a minute one address gets at the sale's base difficulty: a shopper who
/// reloads a few times never pays more.
const ADDRESS_THRESHOLD: i64 = 4;

/// Challenges a minute one /24 or /64 gets at the base: a household, an office or a
/// carrier's NAT pool shares one, so it is allowed more before it rises.
const NETWORK_THRESHOLD: i64 = 64;

/// The most bits the traffic of an address adds to a sale's base difficulty.
const MAX_EXTRA_BITS: u32 = 8;

/// The door's routes.
pub fn router() -> Router<AppState> {
    let routes = Router::new().route("/v1/sales/{sale_id}/challenge", post(challenge));
    shed::classed(routes, Priority::Queue)
}

/// A proof-of-work challenge for one join.
#[derive(Debug, Serialize, ToSchema)]
pub struct Challenge {
    /// Opaque and signed; send it back as `X-Join-Proof: <challenge>:<nonce>`.
    pub challenge: String,
    /// Leading zero bits `SHA-256(challenge ":" nonce)` must have.
    pub difficulty_bits: u32,
    /// Always `sha256`.
    pub algorithm: &'static str,
    /// When the challenge stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// Get a challenge to solve before joining the line.
#[utoipa::path(post, path = "/v1/sales/{sale_id}/challenge", tag = "waiting-room", params(("sale_id" = uuid::Uuid, Path)),
    responses((status = 201, body = Challenge), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem),
        (status = 429, body = crate::error::Problem)), security(("shopper" = [])))]
async fn challenge(
    State(state): State<AppState>,
    _: ClientCapped,
    Shopper(shopper): Shopper,
    IdPath(sale): IdPath,
    ClientAddress(client): ClientAddress,
) -> Result<(StatusCode, axum::Json<Challenge>), ApiError> {
    state.queue_limiter.check(shopper.0)?;
    let sale = SaleId(sale);
    // A closed sale (paused, ended, sold out) answers 409 sale_closed, as its join
    // would: nobody is sent to solve a challenge that cannot be spent.
    let record = state.queue.check_open(sale).await?;
    let base = record.admission.proof_bits(state.door.default_bits);
    let now = state.sales.now();
    let bits = state.door.difficulty(base, client, now).await?;
    let issued = state.door.challenges.issue(shopper, sale, bits, now);
    Ok((StatusCode::CREATED, axum::Json(issued)))
}

/// The client's address as the per-address cap reads it (`None`: not known).
pub struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(ClientAddress(
            state.door.client_address(&parts.headers, peer),
        ))
    }
}

/// Lets a join through the door of its sale, or refuses it with `403 proof_required` /
/// `403 proof_invalid`. No proof is asked where the sale's difficulty is 0, where the
/// sale is over (the join answers `409 sale_closed`), or of a shopper who already holds
/// a ticket (a rejoin).
pub async fn guard(
    state: &AppState,
    shopper: ShopperId,
    record: &Sale,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let sale = record.id;
    let now = state.sales.now();
    if record.admission.proof_bits(state.door.default_bits) == 0
        || record.state == SaleState::Ended
        || now >= record.ends_at
    {
        return Ok(());
    }
    // A sold-out sale answers 409 sale_closed before any proof is asked (the join
    // script refuses it too, where no proof is asked).
    state.queue.check_open(sale).await?;
    let refusal = match headers.get(&PROOF_HEADER) {
        None => Refusal::Required,
        Some(value) => match value.to_str() {
            Err(_) => Refusal::Invalid("the proof is malformed"),
            Ok(proof) => match state.door.challenges.verify(proof, shopper, sale, now) {
                Err(why) => Refusal::Invalid(why),
                Ok(spent) => {
                    if state.door.spend(sale, &spent).await? {
                        return Ok(());
                    }
                    Refusal::Invalid("the challenge was used before")
                }
            },
        },
    };
    if state.queue.ticket(shopper, sale).await.is_ok() {
        return Ok(());
    }
    Err(refusal.into_error(sale))
}

/// Why a join was refused at the door.
enum Refusal {
    Required,
    Invalid(&'static str),
}

impl Refusal {
    fn into_error(self, sale: SaleId) -> ApiError {
        let code = match self {
            Refusal::Required => "proof_required",
            Refusal::Invalid(_) => "proof_invalid",
        };
        metrics::counter!("flashsale_door_refusals_total", "code" => code).increment(1);
        let next = challenge_url(sale);
        match self {
            Refusal::Required => ApiError::client(
                StatusCode::FORBIDDEN,
                "proof_required",
                format!("joining needs a proof of work: solve a challenge from POST {next}"),
            ),
            Refusal::Invalid(why) => ApiError::client(
                StatusCode::FORBIDDEN,
                "proof_invalid",
                format!("{why}: solve a new challenge from POST {next}"),
            ),
        }
    }
}

/// Where a shopper gets the next challenge for `sale`.
pub fn challenge_url(sale: SaleId) -> String {
    format!("/v1/sales/{}/challenge", sale.0)
}

#[derive(Debug, Serialize, Deserialize)]
struct ChallengeClaims {
    sub: Uuid,
    sale: Uuid,
    jti: String,
    bits: u32,
    iss: String,
    aud: String,
    /// Expiry in milliseconds of the app's clock (checked here, not by the JWT crate,
    /// which reads the system clock).
    exp_ms: i64,
}

/// A challenge that passed every stateless check: what spending it needs.
pub struct Solved {
    id: String,
    expires_ms: i64,
    now_ms: i64,
}

/// Issues and verifies challenges: no state, the signature carries everything.
pub struct Challenges {
    signer: HmacSigner,
}

impl Challenges {
    /// Challenges signed with `secret` (the app's HMAC secret) and issued by `issuer`.
    pub fn new(secret: &[u8], issuer: &str) -> Self {
        // Expiry is checked in milliseconds by `verify` (`exp_ms`), not by the signer.
        Self {
            signer: HmacSigner::new(secret, issuer, AUDIENCE, &["iss", "aud", "sub"], false),
        }
    }

    /// A challenge of `bits` for `shopper` joining `sale`, valid for [`CHALLENGE_TTL`].
    pub fn issue(
        &self,
        shopper: ShopperId,
        sale: SaleId,
        bits: u32,
        now: DateTime<Utc>,
    ) -> Challenge {
        let expires_ms = now.timestamp_millis() + CHALLENGE_TTL.as_millis() as i64;
        let claims = ChallengeClaims {
            sub: shopper.0,
            sale: sale.0,
            jti: Uuid::new_v4().simple().to_string(),
            bits,
            iss: self.signer.issuer().to_owned(),
            aud: AUDIENCE.to_owned(),
            exp_ms: expires_ms,
        };
        let challenge = self.signer.sign(&claims);
        Challenge {
            challenge,
            difficulty_bits: bits,
            algorithm: "sha256",
            expires_at: Utc.timestamp_millis_opt(expires_ms).single().unwrap_or(now),
        }
    }

    /// Checks `proof` (`<challenge>:<nonce>`) for `shopper` joining `sale` at `now`:
    /// signature, binding, expiry and work — everything but single use.
    pub fn verify(
        &self,
        proof: &str,
        shopper: ShopperId,
        sale: SaleId,
        now: DateTime<Utc>,
    ) -> Result<Solved, &'static str> {
        let (challenge, nonce) = proof.rsplit_once(':').ok_or("the proof is malformed")?;
        let nonce_ok =
            (1..=64).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_alphanumeric());
        if !nonce_ok {
            return Err("the nonce must be 1–64 ASCII letters or digits");
        }
        let claims: ChallengeClaims = self
            .signer
            .verify(challenge)
            .map_err(|_| "the challenge is not valid")?;
        if claims.sub != shopper.0 || claims.sale != sale.0 {
            return Err("the challenge was issued to another shopper or for another sale");
        }
        let now_ms = now.timestamp_millis();
        if now_ms >= claims.exp_ms {
            return Err("the challenge has expired");
        }
        if leading_zero_bits(&work(challenge, nonce)) < claims.bits {
            return Err("the proof does not have enough leading zero bits");
        }
        Ok(Solved {
            id: claims.jti,
            expires_ms: claims.exp_ms,
            now_ms,
        })
    }
}

/// The door: challenges, their single use, and the per-address counts.
pub struct Door {
    /// Issues and verifies the challenges.
    pub challenges: Challenges,
    conn: RedisConn,
    prefix: String,
    ip_header: Option<HeaderName>,
    /// The operator's difficulty, for sales stored before the setting existed.
    pub default_bits: i64,
}

impl Door {
    /// A door signing with `secret`, counting in Redis under `prefix`, reading the
    /// client address from `ip_header` (the per-address cap's) or the peer.
    pub fn new(
        secret: &[u8],
        issuer: &str,
        conn: RedisConn,
        prefix: impl Into<String>,
        ip_header: Option<HeaderName>,
        default_bits: i64,
    ) -> Self {
        Self {
            challenges: Challenges::new(secret, issuer),
            conn,
            prefix: prefix.into(),
            ip_header,
            default_bits,
        }
    }

    /// The client's address, read where the per-address cap reads it.
    pub fn client_address(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        shed::client_address(self.ip_header.as_ref(), headers, peer)
    }

    /// Spends a solved challenge: true the first time, false ever after (until it
    /// expires, when the challenge itself is refused).
    pub async fn spend(&self, sale: SaleId, solved: &Solved) -> Result<bool, ApiError> {
        let key = format!("{}:proof:{{{}}}:{}", self.prefix, sale.0, solved.id);
        let ttl = (solved.expires_ms - solved.now_ms).max(1);
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(waiting_room::Error::from)?;
        Ok(set.is_some())
    }

    /// The difficulty of a new challenge from `client` for a sale of `base` bits,
    /// counting this challenge against the address and its network.
    pub async fn difficulty(
        &self,
        base: u32,
        client: Option<IpAddr>,
        now: DateTime<Utc>,
    ) -> Result<u32, ApiError> {
        let Some(client) = client.filter(|_| base > 0) else {
            return Ok(base);
        };
        let now_ms = now.timestamp_millis();
        let window = now_ms.div_euclid(WINDOW_MS);
        // A sliding window from two fixed ones: this minute's count plus the last
        // minute's, weighted by how much of it the sliding minute still covers, so a
        // count never drops to 0 at a minute's boundary.
        let weight = 1.0 - now_ms.rem_euclid(WINDOW_MS) as f64 / WINDOW_MS as f64;
        // Both counters share the network's hash tag: one slot, one round trip.
        let tag = format!("{}:door:{{{}}}", self.prefix, network(client));
        let address_key = |w: i64| format!("{tag}:a:{client}:{w}");
        let network_key = |w: i64| format!("{tag}:n:{w}");
        let (address, address_before, net, net_before): (i64, Option<i64>, i64, Option<i64>) =
            redis::pipe()
                .incr(address_key(window), 1)
                .pexpire(address_key(window), 2 * WINDOW_MS)
                .ignore()
                .get(address_key(window - 1))
                .incr(network_key(window), 1)
                .pexpire(network_key(window), 2 * WINDOW_MS)
                .ignore()
                .get(network_key(window - 1))
                .query_async(&mut self.conn.clone())
                .await
                .map_err(waiting_room::Error::from)?;
        let slide = |current: i64, before: Option<i64>| {
            current + (before.unwrap_or(0) as f64 * weight) as i64
        };
        let (address, net) = (slide(address, address_before), slide(net, net_before));
        Ok(adapted(base, address, net))
    }
}

/// `base` plus one bit per doubling of the recent counts over their thresholds, at
/// most [`MAX_EXTRA_BITS`] more and never over the sale ceiling.
fn adapted(base: u32, address: i64, network: i64) -> u32 {
    let extra = over(address, ADDRESS_THRESHOLD).max(over(network, NETWORK_THRESHOLD));
    (base + extra.min(MAX_EXTRA_BITS)).min(MAX_PROOF_DIFFICULTY_BITS as u32)
}

/// The doublings of `threshold` it takes to reach `count`.
fn over(count: i64, threshold: i64) -> u32 {
    let mut bits = 0;
    while bits < MAX_EXTRA_BITS && threshold << bits < count {
        bits += 1;
    }
    bits
}

/// The /24 of an IPv4 address or the /64 of an IPv6 one.
fn network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// `SHA-256(challenge ":" nonce)`.
fn work(challenge: &str, nonce: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(challenge.as_bytes());
    hash.update(b":");
    hash.update(nonce.as_bytes());
    hash.finalize().into()
}

/// Leading zero bits of `digest`, most significant bit of the first byte first.
pub fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut bits = 0;
    for byte in digest {
        if *byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

/// Solves `challenge` for `bits`: the nonce a client would find (tests and tools).
pub fn solve(challenge: &str, bits: u32) -> String {
    (0u64..)
        .map(|n| format!("{n:x}"))
        .find(|nonce| leading_zero_bits(&work(challenge, nonce)) >= bits)
        .expect("some nonce has enough zero bits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zero_bits_count_from_the_first_byte() {
        assert_eq!(leading_zero_bits(&[0x80, 0]), 0);
        assert_eq!(leading_zero_bits(&[0x01, 0xff]), 7);
        assert_eq!(leading_zero_bits(&[0x00, 0x10]), 11);
        assert_eq!(leading_zero_bits(&[0x00, 0x00, 0x00]), 24);
        assert_eq!(leading_zero_bits(&[0xff; 32]), 0);
        assert_eq!(leading_zero_bits(&[0; 32]), 256);
    }

    #[test]
    fn the_difficulty_rises_one_bit_per_doubling_and_is_capped() {
        assert_eq!(adapted(16, 1, 1), 16, "a first join pays the base");
        assert_eq!(adapted(16, ADDRESS_THRESHOLD, 1), 16);
        assert_eq!(adapted(16, ADDRESS_THRESHOLD + 1, 1), 17);
        assert_eq!(adapted(16, ADDRESS_THRESHOLD * 4, 1), 18);
        assert_eq!(
            adapted(16, 1, NETWORK_THRESHOLD * 2),
            17,
            "the network counts"
        );
        assert_eq!(adapted(10, 1_000_000, 1), 18, "at most 8 bits more");
        assert_eq!(adapted(24, 1_000_000, 1), 26, "never past the ceiling");
    }

    #[test]
    fn networks_are_the_24_and_the_64() {
        assert_eq!(network("10.1.2.3".parse().unwrap()), "10.1.2.0/24");
        assert_eq!(
            network("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_challenge_is_signed_and_bound_to_its_shopper_sale_and_time() {
        let challenges = Challenges::new(SECRET, "flashsale");
        let (shopper, sale, now) = (ShopperId::new(), SaleId(Uuid::new_v4()), Utc::now());
        let issued = challenges.issue(shopper, sale, 4, now);
        assert_eq!(issued.algorithm, "sha256");
        let proof = format!("{}:{}", issued.challenge, solve(&issued.challenge, 4));
        assert!(challenges.verify(&proof, shopper, sale, now).is_ok());
        assert!(challenges
            .verify(&proof, ShopperId::new(), sale, now)
            .is_err());
        assert!(challenges
            .verify(&proof, shopper, SaleId(Uuid::new_v4()), now)
            .is_err());
        let later = now + chrono::Duration::from_std(CHALLENGE_TTL).unwrap();
        assert_eq!(
            challenges.verify(&proof, shopper, sale, later).err(),
            Some("the challenge has expired")
        );
        let forger = Challenges::new(b"another-secret-another-secret-xx", "flashsale");
        let forged = forger.issue(shopper, sale, 0, now);
        assert_eq!(
            challenges
                .verify(&format!("{}:0", forged.challenge), shopper, sale, now)
                .err(),
            Some("the challenge is not valid")
        );
        // One flipped bit of the claims breaks the signature.
        let mut parts: Vec<String> = issued.challenge.split('.').map(str::to_owned).collect();
        parts[2] = parts[2].chars().rev().collect();
        let tampered = format!("{}:{}", parts.join("."), "0");
        assert!(challenges.verify(&tampered, shopper, sale, now).is_err());
        for malformed in [
            "",
            ":",
            "x",
            "abc:",
            ":abc",
            "a.b.c:no-dashes",
            &format!("{}:{}", issued.challenge, "n".repeat(65)),
        ] {
            assert!(
                challenges.verify(malformed, shopper, sale, now).is_err(),
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn solved_nonces_have_the_work_and_every_bit_counts() {
        let nonce = solve("challenge", 8);
        assert!(leading_zero_bits(&work("challenge", &nonce)) >= 8);
        assert_eq!(
            work("a", "b"),
            <[u8; 32]>::from(Sha256::digest(b"a:b")),
            "the hash input is challenge, colon, nonce"
        );
    }
}
