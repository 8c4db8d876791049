//! Bearer tokens. The algorithm is pinned per kind of token by configuration and never
//! read from the token: merchant and operator tokens are EdDSA (an identity provider
//! may issue them; `flashsale token` does locally), guest shopper tokens are
//! HMAC-SHA256 because the service issues and checks them on the hot path.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Secret};

/// Who a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A shopper (guest session or identity provider).
    Shopper,
    /// A merchant; `sub` is its merchant id.
    Merchant,
    /// An operator of the deployment (operations endpoints).
    Operator,
}

/// The claims of every bearer token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The shopper, merchant or operator id.
    pub sub: String,
    /// The role.
    pub role: Role,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Issued at (seconds).
    pub iat: i64,
    /// Not valid before (seconds), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Expiry (seconds).
    pub exp: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("a bearer token is required")]
    Missing,
    /// Bad signature, algorithm, issuer, audience, expiry or shape.
    #[error("the bearer token is not valid")]
    Invalid,
    /// A valid token of another role.
    #[error("this token's role may not do this")]
    WrongRole,
}

/// Signing and verification keys.
pub struct Auth {
    admin_verify: DecodingKey,
    admin_sign: Option<EncodingKey>,
    hmac_sign: EncodingKey,
    hmac_verify: DecodingKey,
    hmac_secret: Secret<Vec<u8>>,
    issuer: String,
    audience: String,
    shopper_ttl: Duration,
    /// The checks of each kind, built once: a `Validation` holds sets of strings, and
    /// building one per request was a share of every request's allocations (profiled).
    shopper_validation: Validation,
    admin_validation: Validation,
}

impl Auth {
    /// Loads the keys named by the configuration, generating missing local ones when
    /// `generate_keys` is on.
    pub fn from_config(config: &Config) -> anyhow::Result<Auth> {
        if config.generate_keys {
            ensure_admin_keypair(
                &config.admin_private_key_file,
                &config.admin_public_key_file,
            )?;
        }
        let public = std::fs::read(&config.admin_public_key_file).with_context(|| {
            format!(
                "FLASHSALE_ADMIN_JWT_PUBLIC_KEY_FILE: cannot read {}",
                config.admin_public_key_file.display()
            )
        })?;
        let admin_verify = DecodingKey::from_ed_pem(&public)
            .context("FLASHSALE_ADMIN_JWT_PUBLIC_KEY_FILE: not an Ed25519 public key PEM")?;
        let admin_sign = match std::fs::read(&config.admin_private_key_file) {
            Ok(pem) => Some(
                EncodingKey::from_ed_pem(&pem)
                    .context("FLASHSALE_ADMIN_JWT_PRIVATE_KEY_FILE: not an Ed25519 PKCS#8 PEM")?,
            ),
            Err(_) => None,
        };
        let secret = match &config.hmac_secret {
            Some(secret) => secret.expose().as_bytes().to_vec(),
            None => local_hmac_secret(&config.data_dir, config.generate_keys)?,
        };
        let validation = |algorithm| validation(config, algorithm);
        Ok(Auth {
            shopper_validation: validation(Algorithm::HS256),
            admin_validation: validation(Algorithm::EdDSA),
            admin_verify,
            admin_sign,
            hmac_sign: EncodingKey::from_secret(&secret),
            hmac_verify: DecodingKey::from_secret(&secret),
            hmac_secret: Secret::new(secret),
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            shopper_ttl: config.shopper_token_ttl,
        })
    }

    /// The HMAC secret (shared with the admission token issuer).
    pub fn hmac_secret(&self) -> &[u8] {
        self.hmac_secret.expose()
    }

    /// The issuer of this service's tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Verifies a token of `role`: shopper tokens with HS256, others with EdDSA.
    pub fn verify(&self, token: &str, role: Role) -> Result<Claims, AuthError> {
        let (key, validation) = match role {
            Role::Shopper => (&self.hmac_verify, &self.shopper_validation),
            Role::Merchant | Role::Operator => (&self.admin_verify, &self.admin_validation),
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|_| AuthError::Invalid)?
            .claims;
        if claims.role != role {
            return Err(AuthError::WrongRole);
        }
        Ok(claims)
    }

    fn claims(&self, sub: String, role: Role, now: DateTime<Utc>, ttl: Duration) -> Claims {
        Claims {
            sub,
            role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now.timestamp(),
            nbf: None,
            exp: now.timestamp() + ttl.as_secs() as i64,
        }
    }

    /// A guest shopper token (HS256) and its expiry.
    pub fn issue_shopper(&self, shopper: uuid::Uuid, now: DateTime<Utc>) -> (String, i64) {
        let claims = self.claims(shopper.to_string(), Role::Shopper, now, self.shopper_ttl);
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.hmac_sign)
            .expect("HMAC signing cannot fail");
        (token, claims.exp)
    }

    /// A merchant or operator token (EdDSA), for `flashsale token` and tests.
    pub fn issue_admin(&self, sub: String, role: Role, ttl: Duration) -> anyhow::Result<String> {
        let key = self.admin_sign.as_ref().context(
            "no private key: set FLASHSALE_ADMIN_JWT_PRIVATE_KEY_FILE (tokens come from your identity provider otherwise)",
        )?;
        let claims = self.claims(sub, role, Utc::now(), ttl);
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            key,
        )?)
    }
}

/// What a token of `algorithm` must satisfy: this service's issuer and audience,
/// `exp`, `iss`, `aud` and `sub` present, `nbf` checked, 5 s of leeway.
fn validation(config: &Config, algorithm: Algorithm) -> Validation {
    let mut v = Validation::new(algorithm);
    v.set_issuer(&[&config.jwt_issuer]);
    v.set_audience(&[&config.jwt_audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.validate_nbf = true;
    v.leeway = 5;
    v
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// Creates an Ed25519 key pair (PKCS#8 private, SPKI public) if the private key is
/// missing. Written with mode 0600: the private key never leaves the data folder.
fn ensure_admin_keypair(private: &Path, public: &Path) -> anyhow::Result<()> {
    use ring::signature::KeyPair;
    if private.exists() && public.exists() {
        return Ok(());
    }
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("cannot generate an Ed25519 key"))?;
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| anyhow::anyhow!("generated key does not parse"))?;
    // SubjectPublicKeyInfo for Ed25519 is a fixed 12-byte prefix and the 32-byte key.
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(pair.public_key().as_ref());
    write_private(private, pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())?;
    std::fs::write(public, pem("PUBLIC KEY", &spki))?;
    tracing::info!(public_key = %public.display(), "generated a local Ed25519 key pair for merchant and operator tokens");
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // create_new: two processes starting at once cannot overwrite each other's key.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => Ok(file.write_all(bytes)?),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
    }
}

fn local_hmac_secret(data_dir: &Path, generate: bool) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("keys").join("hmac.secret");
    if !path.exists() {
        anyhow::ensure!(
            generate,
            "FLASHSALE_HMAC_SECRET is not set and key generation is off"
        );
        let secret: [u8; 32] = rand::random();
        write_private(&path, hex::encode(secret).as_bytes())?;
    }
    Ok(std::fs::read(&path)?)
}
