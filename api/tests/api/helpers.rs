//! `spawn_app()`: a fresh database (UUID name, migrations applied), a unique Redis key
//! prefix, its own key folder and a manual clock, then the real application on port 0.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flashsale::auth::Role;
use flashsale::config::{Config, Secret};
use flashsale::startup::MIGRATOR;
use flashsale::Application;
use reqwest::{Method, RequestBuilder, Response};
use reservations::clock::ManualClock;
use serde_json::{json, Value};
use sqlx::{Connection, PgPool};
use uuid::Uuid;
use waiting_room::AdmissionTokens;

/// A running app and what a test needs to talk to it.
pub struct TestApp {
    /// The configuration the app runs with (another app can share its stores).
    pub config: Config,
    pub base: String,
    pub client: reqwest::Client,
    pub app_state: flashsale::http::AppState,
    pub db: PgPool,
    pub clock: ManualClock,
    pub prefix: String,
    pub merchant_id: Uuid,
    pub merchant_token: String,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn database_url_with(base: &str, name: &str) -> String {
    let (prefix, _) = base
        .rsplit_once('/')
        .expect("DATABASE_URL has a database name");
    format!("{prefix}/{name}")
}

/// A fresh database with every migration applied; returns its URL.
pub async fn fresh_database(base_url: &str) -> String {
    let name = format!("test_{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(base_url)
        .await
        .expect("Postgres is up: run scripts/stack up");
    sqlx::query(&format!(r#"create database "{name}""#))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let url = database_url_with(base_url, &name);
    let pool = PgPool::connect(&url).await.expect("connect test database");
    MIGRATOR.run(&pool).await.expect("migrations apply");
    pool.close().await;
    url
}

/// Starts the app on port 0 with its own database, Redis prefix and keys.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with a chance to change the configuration first.
pub async fn spawn_app_with(customise: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::from_env().expect("test configuration");
    let id = Uuid::new_v4().simple().to_string();
    config.bind_addr = "127.0.0.1:0".parse().unwrap();
    config.database_url = Secret::new(fresh_database(config.database_url.expose()).await);
    config.redis_prefix = format!("t{}", &id[..12]);
    config.data_dir = std::env::temp_dir().join(format!("flashsale-test-{id}"));
    config.admin_public_key_file = config.data_dir.join("keys/admin.pub.pem");
    config.admin_private_key_file = config.data_dir.join("keys/admin.pem");
    config.hmac_secret = None;
    config.db_pool_size = 10;
    config.sweep_interval = Duration::from_millis(50);
    // Tests poll their tickets fast on purpose; the limit has its own test.
    config.queue_rate = (1_000, 1_000);
    customise(&mut config);
    start_app(config).await
}

/// Another process of the same deployment: same database, Redis prefix and keys.
pub async fn spawn_app_like(other: &TestApp) -> TestApp {
    let mut config = other.config.clone();
    config.bind_addr = "127.0.0.1:0".parse().unwrap();
    start_app(config).await
}

/// Starts the app with exactly this configuration.
pub async fn start_app(config: Config) -> TestApp {
    let prefix = config.redis_prefix.clone();
    let db = PgPool::connect(config.database_url.expose()).await.unwrap();
    let clock = ManualClock::new();
    let app = Application::build(
        config.clone(),
        Arc::new(clock.clone()),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("app starts");
    let base = format!("http://{}", app.addr());
    let app_state = app.state().clone();
    let shutdown = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    let merchant_id = Uuid::new_v4();
    let merchant_token = app_state
        .auth
        .issue_admin(
            merchant_id.to_string(),
            Role::Merchant,
            Duration::from_secs(3600),
        )
        .unwrap();
    TestApp {
        config,
        base,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap(),
        app_state,
        db,
        clock,
        prefix,
        merchant_id,
        merchant_token,
        shutdown,
    }
}

/// A shopper with a guest session.
#[derive(Clone)]
pub struct TestShopper {
    pub id: Uuid,
    pub token: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with an optional bearer token.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    /// GET `path` with an optional bearer token; the response, whatever its status.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token).send().await.unwrap()
    }

    /// The shopper gives a reservation back (`DELETE`); the response.
    pub async fn release(&self, shopper: &TestShopper, reservation: Uuid) -> Response {
        self.request(
            Method::DELETE,
            &format!("/v1/reservations/{reservation}"),
            Some(&shopper.token),
        )
        .send()
        .await
        .unwrap()
    }

    /// `count` new shoppers reserve one unit of `sale` at once; their statuses.
    pub async fn reserve_at_once(&self, sale: Uuid, count: usize) -> Vec<u16> {
        futures::future::join_all((0..count).map(|_| async move {
            let shopper = self.direct_shopper();
            self.reserve(&shopper, sale, 1, None)
                .await
                .status()
                .as_u16()
        }))
        .await
    }

    /// A request as this app's merchant.
    pub fn merchant(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path, Some(&self.merchant_token))
    }

    /// A token for another merchant.
    pub fn other_merchant_token(&self) -> String {
        self.app_state
            .auth
            .issue_admin(
                Uuid::new_v4().to_string(),
                Role::Merchant,
                Duration::from_secs(3600),
            )
            .unwrap()
    }

    /// Creates a sale and returns its JSON.
    pub async fn create_sale(&self, body: Value) -> Value {
        let response = self
            .merchant(Method::POST, "/v1/admin/sales")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            201,
            "create sale: {}",
            response.text().await.unwrap()
        );
        response.json().await.unwrap()
    }

    /// Creates a sale that is live now with `total` units and `limit` per shopper.
    pub async fn live_sale(&self, total: i64, limit: i64) -> Uuid {
        let now = self.clock_now();
        let sale = self
            .create_sale(sale_body_with(json!({
                "stock": { "total": total }, "per_user_limit": limit,
                "starts_at": now - chrono::Duration::minutes(1),
                "ends_at": now + chrono::Duration::hours(2),
            })))
            .await;
        sale["id"].as_str().unwrap().parse().unwrap()
    }

    pub fn clock_now(&self) -> DateTime<Utc> {
        use reservations::clock::Clock;
        self.clock.now()
    }

    /// A guest shopper session from `POST /v1/sessions`.
    pub async fn shopper(&self) -> TestShopper {
        let response = self
            .client
            .post(self.url("/v1/sessions"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        TestShopper {
            id: body["shopper_id"].as_str().unwrap().parse().unwrap(),
            token: body["token"].as_str().unwrap().to_owned(),
        }
    }

    /// An admission token for this shopper and sale, as the waiting room issues them.
    pub fn admission_token(&self, shopper: Uuid, sale: Uuid) -> String {
        let tokens = AdmissionTokens::new(
            self.app_state.auth.hmac_secret(),
            self.app_state.auth.issuer(),
        );
        tokens
            .issue(shopper, sale, Utc::now(), Duration::from_secs(600))
            .0
    }

    /// `POST /v1/sales/{sale}/reservations` as an admitted shopper.
    pub async fn reserve(
        &self,
        shopper: &TestShopper,
        sale: Uuid,
        quantity: i64,
        key: Option<&str>,
    ) -> Response {
        let mut request = self
            .request(
                Method::POST,
                &format!("/v1/sales/{sale}/reservations"),
                Some(&shopper.token),
            )
            .header("x-admission-token", self.admission_token(shopper.id, sale))
            .json(&json!({ "quantity": quantity }));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.unwrap()
    }

    /// A shopper token minted directly: thousands of shoppers without thousands of
    /// session calls.
    pub fn direct_shopper(&self) -> TestShopper {
        let id = Uuid::new_v4();
        let (token, _) = self.app_state.auth.issue_shopper(id, Utc::now());
        TestShopper { id, token }
    }

    /// `GET path` with a bearer token, as JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        self.request(Method::GET, path, Some(token))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Reserves `quantity` units as an admitted shopper; returns the reservation id.
    pub async fn hold(&self, shopper: &TestShopper, sale: Uuid, quantity: i64) -> Uuid {
        let response = self.reserve(shopper, sale, quantity, None).await;
        assert_eq!(response.status(), 201, "reserve");
        let body: Value = response.json().await.unwrap();
        body["reservation_id"].as_str().unwrap().parse().unwrap()
    }

    /// `POST /v1/reservations/{id}/checkout` with a card token and an optional key.
    pub async fn checkout(
        &self,
        shopper: &TestShopper,
        reservation: Uuid,
        key: Option<&str>,
        card: &str,
    ) -> Response {
        let mut request = self
            .request(
                Method::POST,
                &format!("/v1/reservations/{reservation}/checkout"),
                Some(&shopper.token),
            )
            .json(&json!({ "payment_token": card }));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.unwrap()
    }

    /// Deletes every Redis key of this app: Redis "restarted empty" for this test only.
    pub async fn wipe_redis(&self) {
        let mut conn = self.app_state.redis.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
}

/// A valid create body; `overrides` replaces top-level fields.
pub fn sale_body_with(overrides: Value) -> Value {
    let mut body = json!({
        "name": "Trail runner — launch edition",
        "sku": "TR-LE-42",
        "description": "Limited run.",
        "price": { "amount_minor": 12900, "currency": "EUR" },
        "stock": { "total": 500 },
        "per_user_limit": 2,
        "hold_ttl_seconds": 600,
        "starts_at": "2031-01-01T10:00:00Z",
        "ends_at": "2031-01-01T12:00:00Z",
    });
    for (k, v) in overrides.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// Asserts a problem+json answer with this status and code; returns the body.
pub async fn assert_problem(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(
        response.status().as_u16(),
        status,
        "status for expected {code}"
    );
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/problem+json"),
        "content type {content_type}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "body {body}");
    assert_eq!(body["status"], status);
    body
}

// Helpers of the admin and operations tests (admin.rs, ops.rs): admin requests, key-set
// checks, forged tokens, and a dependency one test can take down on its own.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::net::SocketAddr;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio_util::sync::CancellationToken;

/// The id of a sale as the API returned it.
pub fn sale_id(sale: &Value) -> Uuid {
    sale["id"]
        .as_str()
        .expect("a sale has an id")
        .parse()
        .expect("a UUID")
}

/// The `ETag` header of a response.
pub fn etag(response: &Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

/// Asserts that `value` is an object with exactly these keys.
pub fn assert_keys(value: &Value, expected: &[&str]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"));
    let actual: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = expected.iter().copied().collect();
    assert_eq!(actual, expected, "keys of {value}");
}

/// Asserts `422 invalid_field` whose detail names `field` (`"<field>: <why>"`).
pub async fn assert_invalid_field(response: Response, field: &str) {
    let body = assert_problem(response, 422, "invalid_field").await;
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with(&format!("{field}:")),
        "detail {detail:?} should name {field}"
    );
}

impl TestApp {
    /// A request as this app's merchant to `/v1/admin/sales/{sale}{suffix}`.
    pub fn admin_sale(&self, method: Method, sale: impl Display, suffix: &str) -> RequestBuilder {
        self.merchant(method, &format!("/v1/admin/sales/{sale}{suffix}"))
    }

    /// Creates a sale that has not started (the default body) and returns its id.
    pub async fn scheduled_sale(&self) -> Uuid {
        sale_id(&self.create_sale(sale_body_with(json!({}))).await)
    }

    /// The merchant's view of one of its sales (200 expected).
    pub async fn admin_get_sale(&self, sale: Uuid) -> Value {
        let response = self.admin_sale(Method::GET, sale, "").send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "get sale: {}",
            response.text().await.unwrap()
        );
        response.json().await.unwrap()
    }

    /// `PATCH /v1/admin/sales/{sale}`, conditional on `if_match` when given.
    pub async fn patch_sale(&self, sale: Uuid, body: Value, if_match: Option<&str>) -> Response {
        let mut request = self.admin_sale(Method::PATCH, sale, "").json(&body);
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        request.send().await.unwrap()
    }

    /// `POST /v1/admin/sales/{sale}/stock` with this delta.
    pub async fn change_stock(&self, sale: Uuid, delta: i64) -> Response {
        let request = self.admin_sale(Method::POST, sale, "/stock");
        request
            .json(&json!({ "delta": delta }))
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/admin/sales/{sale}/{action}`: `pause`, `resume` or `end`.
    pub async fn transition(&self, sale: Uuid, action: &str) -> Response {
        let path = format!("/{action}");
        self.admin_sale(Method::POST, sale, &path)
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/admin/sales?{query}` with `token` (200 expected); the page.
    pub async fn list_sales(&self, token: &str, query: &str) -> Value {
        let path = format!("/v1/admin/sales?{query}");
        let response = self
            .request(Method::GET, &path, Some(token))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "list: {}",
            response.text().await.unwrap()
        );
        response.json().await.unwrap()
    }

    /// An operator token of this app.
    pub fn operator_token(&self) -> String {
        let ttl = Duration::from_secs(3600);
        let auth = &self.app_state.auth;
        auth.issue_admin("operator".into(), Role::Operator, ttl)
            .unwrap()
    }
}

/// Signs tokens as the app's identity provider would, so a test can change one claim
/// or the algorithm: the app's Ed25519 key, its HMAC secret, its issuer and audience.
pub struct TokenForge {
    signing_key: EncodingKey,
    hmac_key: EncodingKey,
    pub issuer: String,
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

/// A TCP proxy in front of a dependency, so a test can make it unreachable for its own
/// app without stopping the stack every other test uses.
pub struct CuttableProxy {
    pub addr: SocketAddr,
    cut: CancellationToken,
}

impl CuttableProxy {
    /// Forwards every connection on a free loopback port to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = CancellationToken::new();
        let stop = cut.clone();
        tokio::spawn(async move {
            // Returning drops the listener: new connections are refused.
            while let Some(Ok((mut inbound, _))) = stop.run_until_cancelled(listener.accept()).await
            {
                let (stop, upstream) = (stop.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let forward = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let _ = stop.run_until_cancelled(forward).await;
                });
            }
        });
        CuttableProxy { addr, cut }
    }

    /// Closes every forwarded connection and stops listening: the dependency is down.
    pub fn cut(&self) {
        self.cut.cancel();
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut.cancel();
    }
}

/// Like [`spawn_app`], with the app's Redis reached through a proxy the test can cut.
/// The app uses the single Redis (`REDIS_URL`) even when the suite runs on a cluster:
/// a cluster client learns every node's address from the cluster and would bypass a
/// proxy in front of one seed node.
pub async fn spawn_app_behind_redis_proxy() -> (TestApp, CuttableProxy) {
    let config = Config::from_env().expect("test configuration");
    let url = config.redis_url.expose().clone();
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL is a Redis URL");
    let redis::ConnectionAddr::Tcp(host, port) = &client.get_connection_info().addr else {
        panic!("REDIS_URL must be a plain TCP address for this test");
    };
    let upstream = format!("{host}:{port}");
    assert!(url.contains(&upstream), "REDIS_URL {url} names its port");
    let proxy = CuttableProxy::start(upstream.clone()).await;
    let proxied = url.replacen(&upstream, &proxy.addr.to_string(), 1);
    // A cluster client follows the nodes' own addresses, past any proxy: these tests
    // cut a single server's connection, also when the suite runs on a cluster.
    let app = spawn_app_with(|c| {
        c.redis_url = Secret::new(proxied);
        c.redis_cluster_urls = Secret::new(String::new());
    })
    .await;
    (app, proxy)
}
