//! Starting the app under test: a fresh database (UUID name, migrations applied), a
//! unique Redis key prefix, its own key folder and a manual clock, then the real
//! application on port 0. Also the identities a test acts as: shoppers, merchants and
//! operators with tokens minted by the app's own keys.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flashsale::auth::Role;
use flashsale::config::{Config, Secret};
use flashsale::Application;
use reservations::clock::ManualClock;
use sqlx::PgPool;
use test_support::provider::TestProvider;
use uuid::Uuid;
use waiting_room::AdmissionTokens;

/// A running app and what a test needs to talk to it.
pub struct TestApp {
    /// The configuration the app runs with (another app can share its stores).
    pub config: Config,
    /// `http://127.0.0.1:<port>` of this app.
    pub base: String,
    /// One HTTP client for every request, so connections are reused as a browser would.
    pub client: reqwest::Client,
    /// The app's internals, for the tests that arrange or check state directly.
    pub app_state: flashsale::http::AppState,
    /// The test's own database.
    pub db: PgPool,
    /// The clock the app reads: tests move time instead of sleeping.
    pub clock: ManualClock,
    /// The Redis key prefix of this app.
    pub prefix: String,
    /// The merchant every admin helper acts as.
    pub merchant_id: Uuid,
    /// A token of that merchant.
    pub merchant_token: String,
    /// The app's payment provider: a simulator of the test's own, outside the app, so
    /// its ledger outlives an app the test restarts on the same configuration.
    pub provider: Arc<TestProvider>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A fresh database with every migration applied; returns its URL (test-support's,
/// which every crate's integration tests share).
pub async fn fresh_database(base_url: &str) -> String {
    test_support::fresh_database_at(base_url).await
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
    config.redis_prefix = test_support::redis_prefix();
    config.data_dir = std::env::temp_dir().join(format!("flashsale-test-{id}"));
    config.admin_public_key_file = config.data_dir.join("keys/admin.pub.pem");
    config.admin_private_key_file = config.data_dir.join("keys/admin.pem");
    config.hmac_secret = None;
    config.db_pool_size = 10;
    config.sweep_interval = Duration::from_millis(50);
    // Tests poll their tickets fast on purpose; the limit has its own test.
    config.queue_rate = (1_000, 1_000);
    // Every test shopper comes from 127.0.0.1: the per-address cap (on by default) is
    // raised out of reach, and sales need no proof of work, except in the tests of the
    // cap and of the door (shedding.rs, door.rs), which set their own.
    config.client_cap = Some((100_000, 100_000));
    config.proof_difficulty_bits = 0;
    customise(&mut config);
    // The provider starts with the (customised) simulator settings of the config.
    let provider = Arc::new(TestProvider::start(config.payment_simulator).await);
    config.payment_url = Some(provider.url.clone());
    start_app(config, provider).await
}

/// Starts the app with exactly this configuration, paying through `provider` (the one
/// its `payment_url` names).
pub async fn start_app(config: Config, provider: Arc<TestProvider>) -> TestApp {
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
        provider,
        shutdown,
    }
}

/// A shopper with a guest session.
#[derive(Clone)]
pub struct TestShopper {
    /// The shopper id the token names.
    pub id: Uuid,
    /// The shopper's bearer token.
    pub token: String,
}

impl TestApp {
    /// The app's clock: what "now" is for holds, deadlines and sales.
    pub fn clock_now(&self) -> DateTime<Utc> {
        use reservations::clock::Clock;
        self.clock.now()
    }

    /// A shopper token minted directly: thousands of shoppers without thousands of
    /// session calls.
    pub fn direct_shopper(&self) -> TestShopper {
        let id = Uuid::new_v4();
        let (token, _) = self.app_state.auth.issue_shopper(id, Utc::now());
        TestShopper { id, token }
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

    /// An operator token of this app.
    pub fn operator_token(&self) -> String {
        let ttl = Duration::from_secs(3600);
        let auth = &self.app_state.auth;
        auth.issue_admin("operator".into(), Role::Operator, ttl)
            .unwrap()
    }

    /// Deletes every Redis key of this app: Redis "restarted empty" for this test only.
    pub async fn wipe_redis(&self) {
        test_support::wipe_redis(&self.app_state.redis, &self.prefix).await;
    }
}
