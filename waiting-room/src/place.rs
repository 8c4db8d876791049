//! Place statements: what a shopper holds of their place in line, so a Redis that lost
//! the line can be told it again.
//!
//! Every ticket answer carries a `place_token`, an HMAC-SHA256 JWT (the service's HMAC
//! secret, as admission tokens use, under an audience of its own so neither passes for
//! the other) over the sale, the shopper, the ticket id, the position (0 in the
//! pre-queue) and, once seen, when the shopper was first admitted. The storefront keeps
//! the latest one and sends it back as `X-Place-Token` on its polls and rejoins. When
//! Redis no longer knows the shopper, a valid statement puts the ticket back at its
//! signed place (see `heal`); without one the shopper is simply not in line, as before.
//!
//! A statement has no expiry: a place is worth keeping for the whole sale, and a
//! statement of one sale says nothing about another. It cannot move anyone forward:
//! it states a place the line itself handed out, bound to the shopper it was handed to.

use serde::{Deserialize, Serialize};

use uuid::Uuid;

use crate::signer::HmacSigner;

/// The audience of place statements.
const AUDIENCE: &str = "flashsale-place";

/// What a statement says: this shopper's ticket of this sale stands at this place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    /// The shopper.
    #[serde(rename = "sub")]
    pub shopper: Uuid,
    /// The sale.
    pub sale: Uuid,
    /// The ticket id.
    #[serde(rename = "tid")]
    pub ticket_id: String,
    /// The 1-based position; 0 in the pre-queue (placed by the draw).
    #[serde(rename = "pos")]
    pub position: i64,
    /// When the shopper joined (ms).
    #[serde(rename = "jms")]
    pub joined_ms: i64,
    /// When the shopper first saw themselves admitted (ms): the admission window runs
    /// from then, after a loss too.
    #[serde(rename = "ams", default, skip_serializing_if = "Option::is_none")]
    pub admitted_ms: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(flatten)]
    place: Place,
    iss: String,
    aud: String,
}

/// Signs and checks place statements with the service's HMAC secret.
#[derive(Clone)]
pub struct PlaceStatements {
    signer: HmacSigner,
}

impl PlaceStatements {
    /// Statements signed with `secret` and issued by `issuer`.
    pub fn new(secret: &[u8], issuer: &str) -> Self {
        // A place is kept for the whole sale (see the module docs): no expiry.
        Self {
            signer: HmacSigner::new(secret, issuer, AUDIENCE, &["iss", "aud", "sub"], false),
        }
    }

    /// The statement of `place`.
    pub fn sign(&self, place: &Place) -> String {
        let claims = Claims {
            place: place.clone(),
            iss: self.signer.issuer().to_owned(),
            aud: AUDIENCE.to_owned(),
        };
        self.signer.sign(&claims)
    }

    /// The place `token` states for `shopper` in `sale`; `None` when it is forged,
    /// malformed, or names another shopper or sale.
    pub fn verify(&self, token: &str, shopper: Uuid, sale: Uuid) -> Option<Place> {
        let claims: Claims = self.signer.verify(token).ok()?;
        (claims.place.shopper == shopper && claims.place.sale == sale && claims.place.position >= 0)
            .then_some(claims.place)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn place(shopper: Uuid, sale: Uuid) -> Place {
        Place {
            shopper,
            sale,
            ticket_id: Uuid::new_v4().to_string(),
            position: 42,
            joined_ms: 1_000,
            admitted_ms: None,
        }
    }

    #[test]
    fn a_statement_states_its_place_for_its_shopper_and_sale_only() {
        let statements = PlaceStatements::new(SECRET, "flashsale");
        let (shopper, sale) = (Uuid::new_v4(), Uuid::new_v4());
        let stated = place(shopper, sale);
        let token = statements.sign(&stated);
        assert_eq!(statements.verify(&token, shopper, sale), Some(stated));
        assert_eq!(statements.verify(&token, Uuid::new_v4(), sale), None);
        assert_eq!(statements.verify(&token, shopper, Uuid::new_v4()), None);
        assert_eq!(statements.verify("not-a-token", shopper, sale), None);
    }

    #[test]
    fn forged_statements_and_admission_tokens_are_refused() {
        let statements = PlaceStatements::new(SECRET, "flashsale");
        let (shopper, sale) = (Uuid::new_v4(), Uuid::new_v4());
        let other = PlaceStatements::new(b"another-secret-another-secret-xx", "flashsale");
        let forged = other.sign(&place(shopper, sale));
        assert_eq!(statements.verify(&forged, shopper, sale), None);
        let admission = crate::AdmissionTokens::new(SECRET, "flashsale");
        let (token, _) = admission.issue(
            shopper,
            sale,
            chrono::Utc::now(),
            std::time::Duration::from_secs(60),
        );
        assert_eq!(statements.verify(&token, shopper, sale), None);
    }
}
