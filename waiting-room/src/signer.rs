//! The HS256 signer behind every token the service issues with its HMAC secret:
//! admission tokens ([`crate::admission`]), place statements ([`crate::place`]) and the
//! door's proof-of-work challenges (the api's `proof`). One construction, so each kind
//! pins the algorithm (never taken from a token's header), its own audience (no kind
//! passes for another) and the issuer the same way.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Signs and checks the tokens of one audience.
#[derive(Clone)]
pub struct HmacSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
}

impl HmacSigner {
    /// Tokens of `audience`, signed with `secret` and issued by `issuer`, whose claims
    /// must carry `required` (of `exp`, `iss`, `aud`, `sub`). `expires`: whether the
    /// standard `exp` claim is checked (with no leeway).
    pub fn new(
        secret: &[u8],
        issuer: &str,
        audience: &str,
        required: &[&str],
        expires: bool,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(required);
        validation.validate_exp = expires;
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
        }
    }

    /// The issuer every token names (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The token of `claims`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HMAC signing cannot fail")
    }

    /// The claims of `token`, if its signature, audience, issuer and (where checked)
    /// expiry hold.
    pub fn verify<T: DeserializeOwned>(&self, token: &str) -> jsonwebtoken::errors::Result<T> {
        Ok(jsonwebtoken::decode::<T>(token, &self.decoding, &self.validation)?.claims)
    }
}
