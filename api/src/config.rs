//! Configuration from environment variables, validated at start-up. The defaults match
//! the local stack (`scripts/stack up`); a bad value stops the process with a message
//! that names the variable. Every variable is listed in the README.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A value that must never be printed (signing secrets). `Debug` shows `[redacted]`.
#[derive(Clone)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A configuration error, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {var}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Everything the process needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `FLASHSALE_BIND_ADDR`: where the HTTP server listens (port 0 picks a free one).
    pub bind_addr: SocketAddr,
    /// `DATABASE_URL`: Postgres.
    pub database_url: Secret<String>,
    /// `REDIS_URL`: Redis (one server).
    pub redis_url: Secret<String>,
    /// `REDIS_CLUSTER_URLS`: comma-separated nodes of a Redis Cluster; when set, it is
    /// used instead of `REDIS_URL`.
    pub redis_cluster_urls: Secret<String>,
    /// `FLASHSALE_REDIS_PREFIX`: prefix of every Redis key (tests use a unique one).
    pub redis_prefix: String,
    /// `FLASHSALE_DB_POOL_SIZE`: connections for everything but checkout.
    pub db_pool_size: u32,
    /// `FLASHSALE_CHECKOUT_POOL_SIZE`: connections reserved for checkout (a bulkhead:
    /// listings and admin traffic cannot take them).
    pub checkout_pool_size: u32,
    /// `FLASHSALE_PAYMENT_TIMEOUT_MS`: longest a payment call may take.
    pub payment_timeout: Duration,
    /// `FLASHSALE_PAYMENT_URL`: the payment provider's base URL — Stripe's
    /// `https://api.stripe.com`, or the simulator run on its own
    /// (`payment-simulator`, e.g. `http://127.0.0.1:8099`). Unset: `flashsale all` and
    /// `serve` start the simulator inside the process, on a loopback port of its own
    /// (the laptop default); the other roles need it set.
    pub payment_url: Option<String>,
    /// `FLASHSALE_PAYMENT_SECRET_KEY`: the provider's secret API key (Stripe:
    /// `sk_test_…`); the simulator's default key when unset.
    pub payment_secret_key: Secret<String>,
    /// `FLASHSALE_PAYMENT_LATENCY_P50_MS` / `_P99_MS` / `FLASHSALE_PAYMENT_FAILURE_RATE`:
    /// the in-process simulator's behaviour at start (changeable at run time).
    pub payment_simulator: payment_simulator::Settings,
    /// `FLASHSALE_RECONCILE_AFTER_MS`: a checkout still committing after this long is
    /// presumed dead and finished by the reconciler (well above request + payment timeouts).
    pub reconcile_after: Duration,
    /// `FLASHSALE_COMPLETER_INTERVAL_MS`: how often the payment completer looks for
    /// attempts in doubt; also the first backoff of a failed void (doubling after).
    pub completer_interval: Duration,
    /// `FLASHSALE_COMPLETER_GRACE_MS`: how long a payment attempt is presumed in flight
    /// before the completer judges it; never less than twice the payment timeout.
    pub completer_grace: Duration,
    /// `FLASHSALE_ADMISSION_WINDOW_SECS`: how long an admitted shopper may take to reserve.
    pub admission_window: Duration,
    /// `FLASHSALE_QUEUE_CAP`: most shoppers waiting in one sale's line (then 503 queue_full).
    pub queue_cap: i64,
    /// `FLASHSALE_CONTROLLER_TICK_MS`: how often the admission controller decides.
    pub controller_tick: Duration,
    /// `FLASHSALE_MAX_IN_FLIGHT`: requests one process serves at once before shedding
    /// (buy path up to all of it, queue traffic 80%, the rest 60%).
    pub max_in_flight: usize,
    /// `FLASHSALE_QUEUE_RATE_PER_SECOND` / `FLASHSALE_QUEUE_BURST`: join and poll
    /// requests one shopper may make (then 429).
    pub queue_rate: (u32, u32),
    /// `FLASHSALE_IP_RATE_PER_SECOND` / `FLASHSALE_IP_BURST`: guest sessions,
    /// challenges, joins, polls, holds and checkouts one client address may make,
    /// whatever sessions it holds (then 429); rate 0: no cap per address.
    ///
    /// On by default at 200 a second with a burst of 2,000, sized for carrier-grade
    /// NAT, where one public IPv4 address fronts hundreds of subscribers: 500 shoppers
    /// behind one address each make a session, a challenge, a join and a first poll in
    /// the opening second (2,000 requests: the burst), then poll every 1–30 s as their
    /// ticket says (about one poll every 2–3 s each on average: under 200 a second),
    /// and the few who are admitted hold and check out once. One client minting a
    /// session per request gets no more than those 200 a second, however many sessions
    /// it holds, and pays the rising proof of work on each join. Behind a load
    /// balancer, set `FLASHSALE_CLIENT_IP_HEADER`: otherwise every shopper comes from
    /// the balancer's address and shares one cap.
    pub client_cap: Option<(u32, u32)>,
    /// `FLASHSALE_PROOF_DIFFICULTY_BITS`: the proof-of-work difficulty (leading zero
    /// bits of SHA-256, 0–26) a new sale gets when the merchant names none; 0 turns the
    /// proof off. Default 14: 16,384 hashes on average. `crypto.subtle` in a Web Worker
    /// (the storefront's solver, batched) ran about 35,000 a second on a loaded 2-core
    /// test box, so about half a second there and far less on a current phone or
    /// laptop: well under a second, once per join. 16 bits would cost that box about 2 s.
    /// A farm's native hashing pays little for the base; what it pays is the adaptive
    /// rise (up to 8 bits more, 256× the work) on an address that joins in a loop.
    pub proof_difficulty_bits: u32,
    /// `FLASHSALE_CLIENT_IP_HEADER`: the header where a trusted load balancer appends
    /// the client's address (e.g. `x-forwarded-for`; its last entry is used); empty: the
    /// connection's peer address.
    pub client_ip_header: Option<axum::http::HeaderName>,
    /// `FLASHSALE_STATIC_DIR`: the storefront and dashboard files (default: `api/static`
    /// of the source tree the binary was built from; set it when shipping the binary).
    pub static_dir: PathBuf,
    /// `FLASHSALE_DATA_DIR`: where local keys are generated.
    pub data_dir: PathBuf,
    /// `FLASHSALE_ADMIN_JWT_PUBLIC_KEY_FILE`: Ed25519 public key (PEM) that verifies
    /// merchant and operator tokens.
    pub admin_public_key_file: PathBuf,
    /// `FLASHSALE_ADMIN_JWT_PRIVATE_KEY_FILE`: the matching private key, used only by
    /// `flashsale token` (an external identity provider keeps its own).
    pub admin_private_key_file: PathBuf,
    /// `FLASHSALE_HMAC_SECRET`: secret for the tokens the service issues and checks
    /// itself (guest shopper, admission); at least 32 bytes. When unset, one is
    /// generated into the data folder on first run.
    pub hmac_secret: Option<Secret<String>>,
    /// `FLASHSALE_GENERATE_KEYS`: create missing local keys (true for development; set
    /// false in production so a missing key is an error, not a new identity).
    pub generate_keys: bool,
    /// `FLASHSALE_JWT_ISSUER`: `iss` of every token.
    pub jwt_issuer: String,
    /// `FLASHSALE_JWT_AUDIENCE`: `aud` of shopper, merchant and operator tokens.
    pub jwt_audience: String,
    /// `FLASHSALE_SHOPPER_TOKEN_TTL_SECS`: lifetime of guest shopper tokens.
    pub shopper_token_ttl: Duration,
    /// `FLASHSALE_REQUEST_TIMEOUT_MS`: longest a request may take before a 503.
    pub request_timeout: Duration,
    /// `FLASHSALE_DB_STATEMENT_TIMEOUT_MS`: longest statement, and longest idle
    /// transaction, on every pool but the migrations' (default 15 s: past the request
    /// timeout, so the server ends only what no request waits for any more).
    pub db_statement_timeout: Duration,
    /// `FLASHSALE_SHUTDOWN_GRACE_MS`: how long shutdown waits for requests to drain.
    pub shutdown_grace: Duration,
    /// `FLASHSALE_SWEEP_INTERVAL_MS`: how often expired holds are returned.
    pub sweep_interval: Duration,
    /// `FLASHSALE_STOCK_STRIPES`: how many stripes each sale's stock is split into in
    /// Redis (1..=64; 1, the default, is the unstriped layout). Every process of a
    /// deployment must use the same value; see the README, "Hot-sale striping".
    pub stock_stripes: u32,
    /// `FLASHSALE_ENDED_SALE_RETENTION_SECS`: how long an ended sale's Redis keys stay
    /// after its last hold settled (default 3600); then the sweeper deletes them and
    /// Postgres alone keeps the sale.
    pub ended_sale_retention: Duration,
    /// `FLASHSALE_WEBHOOKS_ALLOW_PRIVATE`: whether webhook URLs may resolve to
    /// loopback, private or link-local addresses (default false: refused, no SSRF).
    /// The local stack and the tests allow them, their receivers being on 127.0.0.1.
    pub webhooks_allow_private: bool,
    /// `FLASHSALE_LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
    /// `FLASHSALE_DRAND_URL`: the drand HTTP endpoint the draw fetches a sale's beacon
    /// round from (`GET {url}/{chain hash}/public/{round}`); default drand's public
    /// `https://api.drand.sh`. Empty: nothing is fetched and merchants post the round
    /// (`POST /v1/admin/sales/{id}/draw/beacon`). Any relay will do: only a round whose
    /// signature verifies is used.
    pub drand_url: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".into()),
        }
    }
}

/// Reads `name` from the environment, or `default` when unset.
fn var<T: FromStr>(name: &'static str, default: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let raw = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    raw.parse().map_err(|e: T::Err| ConfigError {
        var: name,
        message: format!("{e} (got {raw:?})"),
    })
}

fn millis(
    name: &'static str,
    default: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    let ms: u64 = var(name, default)?;
    if !range.contains(&ms) {
        return Err(ConfigError {
            var: name,
            message: format!("must be between {} and {}", range.start(), range.end()),
        });
    }
    Ok(Duration::from_millis(ms))
}

impl Config {
    /// Reads and validates the configuration.
    pub fn from_env() -> Result<Config, ConfigError> {
        let data_dir: PathBuf = var("FLASHSALE_DATA_DIR", ".data")?;
        let keys = data_dir.join("keys");
        let db_pool_size: u32 = var("FLASHSALE_DB_POOL_SIZE", "16")?;
        if !(1..=500).contains(&db_pool_size) {
            return Err(ConfigError {
                var: "FLASHSALE_DB_POOL_SIZE",
                message: "must be between 1 and 500".into(),
            });
        }
        let checkout_pool_size: u32 = var("FLASHSALE_CHECKOUT_POOL_SIZE", "16")?;
        if !(1..=500).contains(&checkout_pool_size) {
            return Err(ConfigError {
                var: "FLASHSALE_CHECKOUT_POOL_SIZE",
                message: "must be between 1 and 500".into(),
            });
        }
        let payment_simulator = payment_simulator::Settings {
            latency_ms: payment_simulator::Latency {
                p50: var("FLASHSALE_PAYMENT_LATENCY_P50_MS", "5")?,
                p99: var("FLASHSALE_PAYMENT_LATENCY_P99_MS", "20")?,
            },
            failure_rate: var("FLASHSALE_PAYMENT_FAILURE_RATE", "0")?,
            ..Default::default()
        };
        payment_simulator.validate().map_err(|e| ConfigError {
            var: "FLASHSALE_PAYMENT_LATENCY_P50_MS / _P99_MS / FLASHSALE_PAYMENT_FAILURE_RATE",
            message: e.to_string(),
        })?;
        let hmac_secret = std::env::var("FLASHSALE_HMAC_SECRET").ok();
        if let Some(secret) = &hmac_secret {
            if secret.len() < 32 {
                return Err(ConfigError {
                    var: "FLASHSALE_HMAC_SECRET",
                    message: "must be at least 32 bytes".into(),
                });
            }
        }
        let prefix: String = var("FLASHSALE_REDIS_PREFIX", "fs")?;
        if prefix.is_empty() || prefix.contains(['{', '}', ' ']) {
            return Err(ConfigError {
                var: "FLASHSALE_REDIS_PREFIX",
                message: "must be non-empty, without braces or spaces".into(),
            });
        }
        let proof_difficulty_bits: u32 = var("FLASHSALE_PROOF_DIFFICULTY_BITS", "14")?;
        let max_bits = reservations::sales::MAX_PROOF_DIFFICULTY_BITS as u32;
        if proof_difficulty_bits > max_bits {
            return Err(ConfigError {
                var: "FLASHSALE_PROOF_DIFFICULTY_BITS",
                message: format!("must be between 0 and {max_bits}"),
            });
        }
        let shopper_ttl_secs: u64 = var("FLASHSALE_SHOPPER_TOKEN_TTL_SECS", "86400")?;
        let stock_stripes: u32 = var("FLASHSALE_STOCK_STRIPES", "1")?;
        let max_stripes = reservations::projection::MAX_STRIPES;
        if !(1..=max_stripes).contains(&stock_stripes) {
            return Err(ConfigError {
                var: "FLASHSALE_STOCK_STRIPES",
                message: format!("must be between 1 and {max_stripes}"),
            });
        }
        Ok(Config {
            bind_addr: var("FLASHSALE_BIND_ADDR", "127.0.0.1:8080")?,
            database_url: Secret::new(var(
                "DATABASE_URL",
                "postgres://flashsale@127.0.0.1:55432/flashsale",
            )?),
            redis_url: Secret::new(var("REDIS_URL", "redis://127.0.0.1:56379")?),
            redis_cluster_urls: Secret::new(var("REDIS_CLUSTER_URLS", "")?),
            redis_prefix: prefix,
            db_pool_size,
            checkout_pool_size,
            payment_timeout: millis("FLASHSALE_PAYMENT_TIMEOUT_MS", "3000", 10..=60_000)?,
            payment_simulator,
            payment_url: Some(var::<String>("FLASHSALE_PAYMENT_URL", "")?)
                .filter(|url| !url.is_empty()),
            payment_secret_key: Secret::new(var(
                "FLASHSALE_PAYMENT_SECRET_KEY",
                payment_simulator::DEFAULT_SECRET_KEY,
            )?),
            admission_window: Duration::from_secs(
                var::<u64>("FLASHSALE_ADMISSION_WINDOW_SECS", "300")?.clamp(10, 86_400),
            ),
            queue_cap: var::<i64>("FLASHSALE_QUEUE_CAP", "1000000")?.clamp(1, 100_000_000),
            controller_tick: millis("FLASHSALE_CONTROLLER_TICK_MS", "500", 50..=1_000)?,
            max_in_flight: var::<usize>("FLASHSALE_MAX_IN_FLIGHT", "1024")?.clamp(8, 1_000_000),
            queue_rate: (
                var::<u32>("FLASHSALE_QUEUE_RATE_PER_SECOND", "2")?.clamp(1, 10_000),
                var::<u32>("FLASHSALE_QUEUE_BURST", "10")?.clamp(1, 10_000),
            ),
            client_cap: match var::<u32>("FLASHSALE_IP_RATE_PER_SECOND", "200")?.min(100_000) {
                0 => None,
                rate => Some((
                    rate,
                    var::<u32>("FLASHSALE_IP_BURST", "2000")?.clamp(1, 100_000),
                )),
            },
            proof_difficulty_bits,
            client_ip_header: match var::<String>("FLASHSALE_CLIENT_IP_HEADER", "")?.trim() {
                "" => None,
                name => Some(name.parse().map_err(|_| ConfigError {
                    var: "FLASHSALE_CLIENT_IP_HEADER",
                    message: format!("not a header name (got {name:?})"),
                })?),
            },
            reconcile_after: millis("FLASHSALE_RECONCILE_AFTER_MS", "30000", 100..=3_600_000)?,
            completer_interval: millis("FLASHSALE_COMPLETER_INTERVAL_MS", "1000", 10..=60_000)?,
            completer_grace: millis("FLASHSALE_COMPLETER_GRACE_MS", "6000", 10..=3_600_000)?,
            admin_public_key_file: var(
                "FLASHSALE_ADMIN_JWT_PUBLIC_KEY_FILE",
                &keys.join("admin-ed25519.pub.pem").to_string_lossy(),
            )?,
            admin_private_key_file: var(
                "FLASHSALE_ADMIN_JWT_PRIVATE_KEY_FILE",
                &keys.join("admin-ed25519.pem").to_string_lossy(),
            )?,
            data_dir,
            static_dir: var(
                "FLASHSALE_STATIC_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/static"),
            )?,
            hmac_secret: hmac_secret.map(Secret::new),
            generate_keys: var("FLASHSALE_GENERATE_KEYS", "true")?,
            jwt_issuer: var("FLASHSALE_JWT_ISSUER", "flashsale")?,
            jwt_audience: var("FLASHSALE_JWT_AUDIENCE", "flashsale")?,
            shopper_token_ttl: Duration::from_secs(shopper_ttl_secs.clamp(60, 30 * 86400)),
            request_timeout: millis("FLASHSALE_REQUEST_TIMEOUT_MS", "10000", 100..=600_000)?,
            db_statement_timeout: millis(
                "FLASHSALE_DB_STATEMENT_TIMEOUT_MS",
                "15000",
                100..=3_600_000,
            )?,
            shutdown_grace: millis("FLASHSALE_SHUTDOWN_GRACE_MS", "10000", 0..=600_000)?,
            sweep_interval: millis("FLASHSALE_SWEEP_INTERVAL_MS", "250", 10..=60_000)?,
            stock_stripes,
            ended_sale_retention: Duration::from_secs(var(
                "FLASHSALE_ENDED_SALE_RETENTION_SECS",
                "3600",
            )?),
            webhooks_allow_private: var("FLASHSALE_WEBHOOKS_ALLOW_PRIVATE", "false")?,
            log_format: var("FLASHSALE_LOG_FORMAT", "text")?,
            drand_url: Some(var::<String>(
                "FLASHSALE_DRAND_URL",
                "https://api.drand.sh",
            )?)
            .filter(|url| !url.trim().is_empty()),
        })
    }
}
