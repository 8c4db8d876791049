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
    let (prefix, _) = base.rsplit_once('/').expect("DATABASE_URL has a database name");
    format!("{prefix}/{name}")
}

/// A fresh database with every migration applied; returns its URL.
pub async fn fresh_database(base_url: &str) -> String {
    let name = format!("test_{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(base_url).await.expect("Postgres is up: run scripts/stack up");
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
    customise(&mut config);
    let prefix = config.redis_prefix.clone();
    let db = PgPool::connect(config.database_url.expose()).await.unwrap();
    let clock = ManualClock::new();
    let app = Application::build(config, Arc::new(clock.clone())).await.expect("app starts");
    let base = format!("http://{}", app.addr());
    let app_state = app.state().clone();
    let shutdown = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    let merchant_id = Uuid::new_v4();
    let merchant_token = app_state
        .auth
        .issue_admin(merchant_id.to_string(), Role::Merchant, Duration::from_secs(3600))
        .unwrap();
    TestApp {
        base,
        client: reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap(),
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

    /// A request as this app's merchant.
    pub fn merchant(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path, Some(&self.merchant_token))
    }

    /// A token for another merchant.
    pub fn other_merchant_token(&self) -> String {
        self.app_state
            .auth
            .issue_admin(Uuid::new_v4().to_string(), Role::Merchant, Duration::from_secs(3600))
            .unwrap()
    }

    /// Creates a sale and returns its JSON.
    pub async fn create_sale(&self, body: Value) -> Value {
        let response = self.merchant(Method::POST, "/v1/admin/sales").json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201, "create sale: {}", response.text().await.unwrap());
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
        let response = self.client.post(self.url("/v1/sessions")).send().await.unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        TestShopper {
            id: body["shopper_id"].as_str().unwrap().parse().unwrap(),
            token: body["token"].as_str().unwrap().to_owned(),
        }
    }

    /// An admission token for this shopper and sale, as the waiting room issues them.
    pub fn admission_token(&self, shopper: Uuid, sale: Uuid) -> String {
        let tokens = AdmissionTokens::new(self.app_state.auth.hmac_secret(), self.app_state.auth.issuer());
        tokens.issue(shopper, sale, Utc::now(), Duration::from_secs(600)).0
    }

    /// `POST /v1/sales/{sale}/reservations` as an admitted shopper.
    pub async fn reserve(&self, shopper: &TestShopper, sale: Uuid, quantity: i64, key: Option<&str>) -> Response {
        let mut request = self
            .request(Method::POST, &format!("/v1/sales/{sale}/reservations"), Some(&shopper.token))
            .header("x-admission-token", self.admission_token(shopper.id, sale))
            .json(&json!({ "quantity": quantity }));
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
            let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
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
    assert_eq!(response.status().as_u16(), status, "status for expected {code}");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/problem+json"), "content type {content_type}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "body {body}");
    assert_eq!(body["status"], status);
    body
}
