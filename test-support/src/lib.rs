//! What every crate's integration tests share, in one place: a fresh database (UUID
//! name, every migration of `migrations/` applied), a unique Redis key prefix, the Redis
//! the suite runs on (one server, or the cluster when `REDIS_CLUSTER_URLS` is set), the
//! manual clock, and polling helpers for conditions that other tasks make true.
//!
//! The stores are the local stack's (`scripts/stack up`); `DATABASE_URL`, `REDIS_URL`
//! and `REDIS_CLUSTER_URLS` override them with the same defaults as the app's
//! configuration. Each test gets its own database and prefix, so tests of every crate
//! run in parallel against the same servers.
//!
//! [`private_redis`] starts a Redis server of one test's own, which the test may crash,
//! copy and restart (the shared Redis is never restarted by a test).
//!
//! [`outbox`] holds the event tests' views of the outbox and its delivery, which the
//! relay's tests and the api's crash tests share; [`provider`] a payment provider of the
//! test's own (the simulator on a loopback port).
//!
//! This crate is a dev-dependency only: no production crate may depend on it.

use std::future::Future;
use std::time::Duration;

use reservations::redis_conn::{RedisConn, RedisTarget};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};
use tokio::time::Instant;
use uuid::Uuid;

pub mod outbox;
pub mod private_redis;
pub mod provider;

pub use private_redis::PrivateRedis;

/// Holds expire by this clock: tests move time instead of sleeping.
pub use reservations::clock::ManualClock;

/// Every migration of the workspace, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Longest any [`eventually`] waits: generous, because the suite shares two cores.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The Postgres server the tests use (`DATABASE_URL`, as the app reads it).
pub fn database_url() -> String {
    env_or(
        "DATABASE_URL",
        "postgres://flashsale@127.0.0.1:55432/flashsale",
    )
}

/// A fresh database on the [`database_url`] server with every migration applied;
/// returns its URL.
pub async fn fresh_database() -> String {
    fresh_database_at(&database_url()).await
}

/// A fresh database (UUID name, migrations applied) on the server of `base_url`;
/// returns its URL. The database is left behind: the stack is thrown away whole.
pub async fn fresh_database_at(base_url: &str) -> String {
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

/// `base_url` with its database name replaced by `name`.
pub fn database_url_with(base_url: &str, name: &str) -> String {
    let (server, _) = base_url
        .rsplit_once('/')
        .expect("DATABASE_URL has a database name");
    format!("{server}/{name}")
}

/// A pool of at most `size` connections to the database at `url`.
pub async fn pool(url: &str, size: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(size)
        .connect(url)
        .await
        .expect("connect test database")
}

/// A Redis key prefix no other test uses (the app's keys all start with it).
pub fn redis_prefix() -> String {
    format!("t{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// The single Redis server (`REDIS_URL`), even when the suite runs on a cluster: the
/// tests that put a proxy in front of Redis need one address to proxy.
pub fn single_redis_url() -> String {
    env_or("REDIS_URL", "redis://127.0.0.1:56379")
}

/// The Redis the suite runs on, chosen as the app chooses it: the cluster of
/// `REDIS_CLUSTER_URLS` when that is set, else the single server of `REDIS_URL`.
pub fn redis_target() -> RedisTarget {
    RedisTarget::parse(&single_redis_url(), &env_or("REDIS_CLUSTER_URLS", ""))
        .expect("REDIS_URL / REDIS_CLUSTER_URLS are Redis URLs")
}

/// A connection of its own to [`redis_target`].
pub async fn redis_conn() -> RedisConn {
    redis_target()
        .connect(Duration::from_secs(2))
        .await
        .expect("Redis is up: run scripts/stack up")
}

/// Deletes every key under `prefix`: Redis "restarted empty" for this test only.
pub async fn wipe_redis(conn: &RedisConn, prefix: &str) {
    let mut conn = conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }
}

/// Polls `check` every 50 ms until it holds; fails the test after [`PATIENCE`],
/// naming `what` it waited for.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(
        eventually_within(PATIENCE, check).await,
        "timed out waiting until {what}"
    );
}

/// Polls `check` every 50 ms until it holds or `limit` passes; returns whether it
/// held, for tests whose assertion is that it happens in time.
pub async fn eventually_within<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn env_or(name: &str, default: &str) -> String {
    // As the app's configuration reads it: unset means the default, set means as set.
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}
