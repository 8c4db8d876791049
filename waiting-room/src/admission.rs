//! Admission tokens: HMAC-SHA256 JWTs bound to one shopper and one sale, with a short
//! expiry. HMAC rather than Ed25519 because the reserve path verifies this token and
//! the shopper's on every request: an Ed25519 verify costs about 60 µs on the target
//! hardware, an HMAC about one.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use uuid::Uuid;

use crate::place::PlaceStatements;
use crate::signer::HmacSigner;

/// The audience of admission tokens, so no other token of the service passes as one.
const AUDIENCE: &str = "flashsale-admission";

/// Why a reservation was refused at the door (`403 not_admitted`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAdmitted {
    /// No `X-Admission-Token` header.
    #[error("an admission token is required: join the waiting room first")]
    Missing,
    /// Bad signature, malformed, wrong algorithm or audience.
    #[error("the admission token is not valid")]
    Invalid,
    /// The admission window passed.
    #[error("the admission token has expired: rejoin the waiting room")]
    Expired,
    /// Issued to another shopper or for another sale.
    #[error("the admission token was issued to another shopper or for another sale")]
    WrongHolder,
}

/// The check the reservation endpoint runs before holding units.
pub trait AdmissionCheck: Send + Sync + 'static {
    /// Accepts `token` for `shopper` reserving in `sale`, or says why not.
    fn check(&self, token: Option<&str>, shopper: Uuid, sale: Uuid) -> Result<(), NotAdmitted>;
}

#[derive(Debug, Serialize, Deserialize)]
struct AdmissionClaims {
    sub: Uuid,
    sale: Uuid,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// Issues and verifies admission tokens with the service's HMAC secret.
#[derive(Clone)]
pub struct AdmissionTokens {
    signer: HmacSigner,
    places: PlaceStatements,
    /// The key access codes are hashed with: SHA-256 of the secret under its own label,
    /// so the stored hashes are no MAC any token could be forged from.
    code_key: Vec<u8>,
}

impl AdmissionTokens {
    /// Tokens signed with `secret` and issued by `issuer`.
    pub fn new(secret: &[u8], issuer: &str) -> Self {
        Self {
            signer: HmacSigner::new(
                secret,
                issuer,
                AUDIENCE,
                &["exp", "iss", "aud", "sub"],
                true,
            ),
            places: PlaceStatements::new(secret, issuer),
            code_key: {
                use sha2::{Digest, Sha256};
                let mut h = Sha256::new();
                h.update(b"flashsale access codes\n");
                h.update(secret);
                h.finalize().to_vec()
            },
        }
    }

    /// The key access codes are hashed with (derived from the secret).
    pub fn access_code_key(&self) -> Vec<u8> {
        self.code_key.clone()
    }

    /// Place statements signed with the same secret (under their own audience, so
    /// neither passes for the other).
    pub fn place_statements(&self) -> PlaceStatements {
        self.places.clone()
    }

    /// A token admitting `shopper` to `sale` until `now + window`.
    pub fn issue(
        &self,
        shopper: Uuid,
        sale: Uuid,
        now: DateTime<Utc>,
        window: Duration,
    ) -> (String, DateTime<Utc>) {
        let expires = now + chrono::Duration::from_std(window).unwrap_or_default();
        let claims = AdmissionClaims {
            sub: shopper,
            sale,
            iss: self.signer.issuer().to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now.timestamp(),
            exp: expires.timestamp(),
        };
        let token = self.signer.sign(&claims);
        (
            token,
            Utc.timestamp_opt(expires.timestamp(), 0)
                .single()
                .unwrap_or(expires),
        )
    }
}

impl AdmissionCheck for AdmissionTokens {
    fn check(&self, token: Option<&str>, shopper: Uuid, sale: Uuid) -> Result<(), NotAdmitted> {
        let token = token.ok_or(NotAdmitted::Missing)?;
        let claims: AdmissionClaims = self.signer.verify(token).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => NotAdmitted::Expired,
            _ => NotAdmitted::Invalid,
        })?;
        if claims.sub != shopper || claims.sale != sale {
            return Err(NotAdmitted::WrongHolder);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_admits_only_its_shopper_to_its_sale() {
        let tokens = AdmissionTokens::new(SECRET, "flashsale");
        let (shopper, sale) = (Uuid::new_v4(), Uuid::new_v4());
        let (token, _) = tokens.issue(shopper, sale, Utc::now(), Duration::from_secs(60));
        assert_eq!(tokens.check(Some(&token), shopper, sale), Ok(()));
        assert_eq!(
            tokens.check(Some(&token), Uuid::new_v4(), sale),
            Err(NotAdmitted::WrongHolder)
        );
        assert_eq!(
            tokens.check(Some(&token), shopper, Uuid::new_v4()),
            Err(NotAdmitted::WrongHolder)
        );
        assert_eq!(tokens.check(None, shopper, sale), Err(NotAdmitted::Missing));
    }

    #[test]
    fn expired_and_foreign_tokens_are_refused() {
        let tokens = AdmissionTokens::new(SECRET, "flashsale");
        let (shopper, sale) = (Uuid::new_v4(), Uuid::new_v4());
        let past = Utc::now() - chrono::Duration::seconds(120);
        let (old, _) = tokens.issue(shopper, sale, past, Duration::from_secs(60));
        assert_eq!(
            tokens.check(Some(&old), shopper, sale),
            Err(NotAdmitted::Expired)
        );
        let other = AdmissionTokens::new(b"another-secret-another-secret-xx", "flashsale");
        let (forged, _) = other.issue(shopper, sale, Utc::now(), Duration::from_secs(60));
        assert_eq!(
            tokens.check(Some(&forged), shopper, sale),
            Err(NotAdmitted::Invalid)
        );
    }
}
