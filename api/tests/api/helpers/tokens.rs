//! Tokens made outside the app, for the authentication tests: a [`TokenForge`] that
//! signs with the app's own keys so one claim or the algorithm can be changed, and an
//! unsigned (`alg: none`) token.

use base64::Engine;
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use uuid::Uuid;

use super::spawn::{spawn_app_with, TestApp};

/// Signs tokens as the app's identity provider would, so a test can change one claim
/// or the algorithm: the app's Ed25519 key, its HMAC secret, its issuer and audience.
pub struct TokenForge {
    signing_key: EncodingKey,
    hmac_key: EncodingKey,
    /// The issuer (`iss`) the app accepts.
    pub issuer: String,
    /// The audience (`aud`) the app accepts.
    pub audience: String,
}

/// Like [`spawn_app`], with a [`TokenForge`] holding the app's keys.
pub async fn spawn_app_with_token_forge() -> (TestApp, TokenForge) {
    let mut seen = None;
    let app = spawn_app_with(|c| {
        seen = Some((c.admin_private_key_file.clone(), c.jwt_audience.clone()));
    })
    .await;
    let (key_file, audience) = seen.expect("spawn_app_with applies the customisation");
    let pem = std::fs::read(key_file).expect("the app generated its admin key");
    let forge = TokenForge {
        signing_key: EncodingKey::from_ed_pem(&pem).expect("an Ed25519 PKCS#8 PEM"),
        hmac_key: EncodingKey::from_secret(app.app_state.auth.hmac_secret()),
        issuer: app.app_state.auth.issuer().to_owned(),
        audience,
    };
    (app, forge)
}

impl TokenForge {
    /// Claims the app accepts for `merchant`, valid for an hour.
    pub fn merchant_claims(&self, merchant: Uuid) -> Value {
        let now = Utc::now().timestamp();
        json!({
            "sub": merchant.to_string(), "role": "merchant",
            "iss": self.issuer, "aud": self.audience,
            "iat": now, "exp": now + 3600,
        })
    }

    /// `claims` signed EdDSA with the app's admin key.
    pub fn sign_eddsa(&self, claims: &Value) -> String {
        let header = Header::new(Algorithm::EdDSA);
        jsonwebtoken::encode(&header, claims, &self.signing_key).unwrap()
    }

    /// `claims` signed HS256 with the app's HMAC secret (the shopper-token key).
    pub fn sign_hs256(&self, claims: &Value) -> String {
        let header = Header::new(Algorithm::HS256);
        jsonwebtoken::encode(&header, claims, &self.hmac_key).unwrap()
    }
}

/// An unsigned token (`"alg": "none"`), built by hand: JWT libraries refuse to make one.
pub fn unsigned_token(claims: &Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT" })),
        b64(claims)
    )
}
