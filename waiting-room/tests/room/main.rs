//! Integration tests of the waiting room through its domain API ([`waiting_room::Queue`]):
//! the line, the pre-queue draw and the admission controllers against the real Redis and Postgres of the local stack
//! (`scripts/stack up`), each test with its own database and Redis prefix and a manual
//! clock (`test_support`). What the HTTP endpoints answer is tested in `api/tests`.

mod controller;
mod line;
mod line_holes;
mod redis_loss;

use std::sync::Arc;
use std::time::Duration;

use reservations::ids::SaleId;
use reservations::projection::Projection;
use reservations::service::Sales;
use reservations::store::SaleStore;
use sqlx::PgPool;
use test_support::ManualClock;
use uuid::Uuid;
use waiting_room::{AdmissionTokens, Queue};

/// A waiting room on its own database and Redis prefix, with a clock the test moves.
pub struct Room {
    pub db: PgPool,
    pub clock: ManualClock,
    pub queue: Queue,
    /// The Redis prefix of this room's keys.
    pub prefix: String,
    /// The Redis connection.
    pub redis: reservations::redis_conn::RedisConn,
    sales: Sales,
}

/// The secret and issuer every room signs with.
pub const SECRET: &[u8] = b"test-support hmac secret of 32 bytes!";
/// See [`SECRET`].
pub const ISSUER: &str = "flashsale-test";

impl Room {
    /// A fresh database and prefix, and the waiting room over them as the app builds it
    /// (the default line cap of one million and five-minute admission window).
    pub async fn fresh() -> Room {
        let url = test_support::fresh_database().await;
        let db = test_support::pool(&url, 10).await;
        let redis = test_support::redis_conn().await;
        let prefix = test_support::redis_prefix();
        let clock = ManualClock::new();
        let sales = Sales::new(
            SaleStore::new(db.clone()),
            Projection::new(redis.clone(), prefix.clone()),
            Arc::new(clock.clone()),
        );
        let queue = Room::queue_over(&db, &redis, &prefix, &sales);
        Room {
            db,
            clock,
            queue,
            prefix,
            redis,
            sales,
        }
    }

    fn queue_over(
        db: &PgPool,
        redis: &reservations::redis_conn::RedisConn,
        prefix: &str,
        sales: &Sales,
    ) -> Queue {
        Queue::new(
            redis.clone(),
            prefix,
            sales.waiting_room_port(),
            AdmissionTokens::new(SECRET, ISSUER),
            waiting_room::LineMarks::new(db.clone()),
            Duration::from_secs(300),
            1_000_000,
        )
    }

    /// The waiting room of another process over the same Postgres and Redis (nothing
    /// remembered in memory): a process started after the loss, or one that saw none
    /// of the line.
    pub fn another_process(&self) -> Queue {
        Room::queue_over(&self.db, &self.redis, &self.prefix, &self.sales)
    }

    /// Stores an active sale of `total` units, one per shopper, starting `starts_in`
    /// from now (negative: already started) and ending in three hours, with the default
    /// admission (auto, 300 ms p95 target). Straight into `sales`: the waiting room
    /// reads the sale, it does not create it.
    pub async fn sale(&self, total: i32, starts_in: chrono::Duration) -> SaleId {
        let auto = serde_json::json!({ "mode": "auto", "checkout_p95_target_ms": 300 });
        self.sale_with(total, starts_in, auto).await
    }

    /// Like [`Room::sale`], with these admission settings (a sale's `admission` JSON).
    pub async fn sale_with(
        &self,
        total: i32,
        starts_in: chrono::Duration,
        admission: serde_json::Value,
    ) -> SaleId {
        use reservations::clock::Clock;
        let now = self.clock.now();
        let sale = Uuid::now_v7();
        sqlx::query(
            "insert into sales (id, merchant_id, name, sku, description, price_minor, currency, \
             unit_count, total, per_user_limit, hold_ttl_seconds, starts_at, ends_at, state, admission) \
             values ($1, $2, 'Trail runner — launch edition', 'TR-LE-42', 'Limited run.', 12900, 'EUR', \
             $3, $3, 1, 600, $4, $5, 'active', $6::jsonb)",
        )
        .bind(sale)
        .bind(Uuid::new_v4())
        .bind(total)
        .bind(now + starts_in)
        .bind(now + chrono::Duration::hours(3))
        .bind(admission.to_string())
        .execute(&self.db)
        .await
        .expect("insert a sale");
        SaleId(sale)
    }
}
