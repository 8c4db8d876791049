//! The outbox and its delivery, as the event tests see them: orders committed the way
//! checkout commits them (the payment authorized at the test's own provider, then the
//! order, units and outbox row in one transaction), what the three consumers recorded, the order stream and its groups in
//! Redis, and the relay and workers running in the test's process.
//!
//! The relay's own tests (`outbox-relay/tests`) and the api's crash tests (which kill
//! the real `flashsale` binary) both drive delivery through these, so each of these
//! views has one definition.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outbox_relay::consumer::ConsumerKind;
use outbox_relay::event::stream_key;
use outbox_relay::mailer::SimulatedMailer;
use outbox_relay::relay::{self, RelayConfig};
use outbox_relay::worker::{self, WorkerConfig};
use redis::streams::{
    StreamInfoGroupsReply, StreamInfoStreamReply, StreamPendingReply, StreamRangeReply,
};
use redis::AsyncCommands;
use reservations::events::{ORDER_AGGREGATE, ORDER_PLACED};
use reservations::redis_conn::RedisConn;
use serde_json::json;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::provider::TestProvider;
use crate::{eventually, fresh_database, pool, redis_conn, redis_prefix};

/// The unit price of the orders placed here (that of the api tests' default sale), in
/// cents.
pub const PRICE_MINOR: i64 = 12_900;

/// The stores one event test delivers through: its own database and Redis prefix.
#[derive(Clone)]
pub struct Deliveries {
    /// The URL of the test's database (the relay and workers open their own pools).
    pub url: String,
    /// A pool on the test's database.
    pub db: PgPool,
    /// The test's Redis key prefix.
    pub prefix: String,
    /// A connection to the Redis the suite runs on.
    pub redis: RedisConn,
    /// The test's payment provider: orders are authorized there, the workers capture
    /// there (`FLASHSALE_PAYMENT_URL` of a binary the test starts).
    pub provider: Arc<TestProvider>,
}

/// An order placed by these tests, with its `OrderPlaced` event.
#[derive(Debug, Clone)]
pub struct TestOrder {
    /// The order's id.
    pub order_id: Uuid,
    /// The id of its `OrderPlaced` outbox row.
    pub event_id: Uuid,
    /// Units bought (1–3).
    pub quantity: i32,
}

/// Unit numbers handed out so far: every order's units are distinct, as checkout's are.
static NEXT_UNIT: AtomicI32 = AtomicI32::new(1);

impl Deliveries {
    /// A fresh database and a unique prefix, with nothing running on them.
    pub async fn fresh() -> Deliveries {
        let url = fresh_database().await;
        Deliveries {
            db: pool(&url, 10).await,
            url,
            prefix: redis_prefix(),
            redis: redis_conn().await,
            provider: Arc::new(TestProvider::instant().await),
        }
    }

    /// Stores a live sale with `total` units and `limit` per shopper straight into
    /// `sales`: the orders placed here need a sale to belong to, not the sales API.
    pub async fn live_sale(&self, total: i32, limit: i32) -> Uuid {
        let sale = Uuid::now_v7();
        sqlx::query(
            "insert into sales (id, merchant_id, name, sku, description, price_minor, currency, \
             unit_count, total, per_user_limit, hold_ttl_seconds, starts_at, ends_at, state, admission) \
             values ($1, $2, 'Trail runner — launch edition', 'TR-LE-42', 'Limited run.', $3, 'EUR', \
             $4, $4, $5, 600, now() - interval '1 minute', now() + interval '2 hours', 'active', \
             '{\"mode\": \"auto\", \"checkout_p95_target_ms\": 300}'::jsonb)",
        )
        .bind(sale)
        .bind(Uuid::new_v4())
        .bind(PRICE_MINOR)
        .bind(total)
        .bind(limit)
        .execute(&self.db)
        .await
        .expect("insert a sale");
        sale
    }

    /// Places one order the way checkout commits it (see [`Deliveries::place_orders`]).
    /// Returns (order id, event id).
    pub async fn place_order_directly(&self, sale: Uuid) -> (Uuid, Uuid) {
        let order = place_orders(&self.db, &self.provider, sale, 1)
            .await
            .remove(0);
        (order.order_id, order.event_id)
    }

    /// Places `count` orders of 1–3 units each in one transaction.
    pub async fn place_orders(&self, sale: Uuid, count: usize) -> Vec<TestOrder> {
        place_orders(&self.db, &self.provider, sale, count).await
    }

    /// The quantity of a stored order.
    pub async fn quantity_of(&self, order: Uuid) -> i32 {
        sqlx::query_scalar("select quantity from orders where id = $1")
            .bind(order)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// An `OrderPlaced` outbox row with this payload and no order behind it.
    pub async fn insert_raw_event(&self, payload: serde_json::Value) -> Uuid {
        let event = Uuid::new_v4();
        sqlx::query(
            "insert into outbox (id, aggregate_type, aggregate_id, event_type, payload, correlation_id) \
             values ($1, $4, $2, $5, $3::jsonb, 'test-poison')",
        )
        .bind(event)
        .bind(Uuid::new_v4())
        .bind(payload.to_string())
        .bind(ORDER_AGGREGATE)
        .bind(ORDER_PLACED)
        .execute(&self.db)
        .await
        .unwrap();
        event
    }

    /// Outbox rows not yet marked published.
    pub async fn unpublished(&self) -> i64 {
        scalar(
            &self.db,
            "select count(*) from outbox where published_at is null",
        )
        .await
    }

    /// Everything the three consumers have recorded.
    pub async fn applied(&self) -> Applied {
        applied(&self.db).await
    }

    /// Waits until every consumer has applied `orders` and has nothing left to do (every
    /// group has read the whole stream and acknowledged everything), then checks the
    /// records once more: nothing arrived late and counted twice.
    pub async fn wait_until_applied(&self, orders: &[TestOrder]) {
        let expected = Applied::expected(orders);
        eventually(
            "every consumer applies every event and drains the stream",
            || async { self.applied().await == expected && self.drained().await },
        )
        .await;
        assert_eq!(
            self.applied().await,
            expected,
            "each event applied exactly once"
        );
    }

    /// Whether every group has been delivered the last entry and acknowledged everything.
    pub async fn drained(&self) -> bool {
        let stream = self.stream();
        let mut redis = self.redis.clone();
        let (Ok(info), Ok(groups)) = (
            redis
                .xinfo_stream::<_, StreamInfoStreamReply>(&stream)
                .await,
            redis
                .xinfo_groups::<_, StreamInfoGroupsReply>(&stream)
                .await,
        ) else {
            return false;
        };
        groups.groups.len() == ConsumerKind::ALL.len()
            && groups
                .groups
                .iter()
                .all(|g| g.pending == 0 && g.last_delivered_id == info.last_generated_id)
    }

    /// The key of the order stream.
    pub fn stream(&self) -> String {
        stream_key(&self.prefix, ORDER_AGGREGATE)
    }

    /// The event ids of every entry of the order stream, duplicates included.
    pub async fn stream_event_ids(&self) -> Vec<Uuid> {
        let entries: StreamRangeReply = self.redis.clone().xrange_all(self.stream()).await.unwrap();
        entries
            .ids
            .iter()
            .map(|entry| entry.get::<String>("id").unwrap().parse().unwrap())
            .collect()
    }

    /// The consumer groups of the order stream (none if it does not exist yet).
    pub async fn groups(&self) -> Vec<String> {
        match self
            .redis
            .clone()
            .xinfo_groups::<_, StreamInfoGroupsReply>(self.stream())
            .await
        {
            Ok(reply) => reply.groups.into_iter().map(|g| g.name).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Entries pending on any consumer but `name`, over every group.
    pub async fn pending_except(&self, name: &str) -> usize {
        let stream = self.stream();
        let mut redis = self.redis.clone();
        let mut total = 0;
        for kind in ConsumerKind::ALL {
            let reply: StreamPendingReply = redis.xpending(&stream, kind.group()).await.unwrap();
            if let StreamPendingReply::Data(data) = reply {
                total += data
                    .consumers
                    .iter()
                    .filter(|c| c.name != name)
                    .map(|c| c.pending)
                    .sum::<usize>();
            }
        }
        total
    }

    /// The relay settings of these tests: the default ones, polling every 200 ms.
    pub fn relay_config(&self) -> RelayConfig {
        let mut config = RelayConfig::new(self.prefix.clone());
        config.poll_interval = Duration::from_millis(200);
        // The tests count the stream's entries; the one about trimming sets its own.
        config.trim_interval = Duration::from_secs(3600);
        config
    }

    /// The worker settings of these tests: short blocks, claims and retries.
    pub fn worker_config(&self) -> WorkerConfig {
        let mut config = WorkerConfig::new(self.prefix.clone());
        config.block = Duration::from_millis(500);
        config.claim_idle = Duration::from_millis(500);
        config.retry_backoff = Duration::from_millis(20);
        config.max_retry_backoff = Duration::from_millis(200);
        config
    }

    /// A relay running in this process with its own pool.
    pub async fn start_relay(&self, config: RelayConfig) -> Running {
        let stop = CancellationToken::new();
        let task = tokio::spawn(relay::run(
            pool(&self.url, 3).await,
            crate::redis_target(),
            config,
            stop.clone(),
        ));
        Running { stop, task }
    }

    /// The three workers running in this process, against the test's instant provider
    /// (these tests are about delivery, not payment latency).
    pub async fn start_workers(&self, config: WorkerConfig) -> Running {
        let db = pool(&self.url, 6).await;
        let payments = self.provider.gateway.clone();
        let mailer = Arc::new(SimulatedMailer::new());
        let stop = CancellationToken::new();
        let task = tokio::spawn(worker::run(
            db,
            crate::redis_target(),
            payments,
            mailer,
            config,
            stop.clone(),
        ));
        Running { stop, task }
    }
}

/// Everything the three consumers have recorded.
#[derive(Debug, PartialEq, Eq)]
pub struct Applied {
    /// `processed_events` rows of each consumer (confirmation, capture, ledger).
    pub processed: [i64; 3],
    /// Confirmations sent.
    pub notifications: i64,
    /// Payments captured.
    pub captures: i64,
    /// Units in the sales ledger.
    pub units_sold: i64,
    /// Revenue in the sales ledger, in cents.
    pub revenue_minor: i64,
}

impl Applied {
    /// What applying each of `orders` exactly once by every consumer records.
    pub fn expected(orders: &[TestOrder]) -> Applied {
        let n = orders.len() as i64;
        let units: i64 = orders.iter().map(|o| i64::from(o.quantity)).sum();
        Applied {
            processed: [n; 3],
            notifications: n,
            captures: n,
            units_sold: units,
            revenue_minor: units * PRICE_MINOR,
        }
    }
}

async fn applied(db: &PgPool) -> Applied {
    let processed = |kind: ConsumerKind| {
        sqlx::query_scalar::<_, i64>("select count(*) from processed_events where consumer = $1")
            .bind(kind.group())
            .fetch_one(db)
    };
    Applied {
        processed: [
            processed(ConsumerKind::OrderConfirmation).await.unwrap(),
            processed(ConsumerKind::PaymentCapture).await.unwrap(),
            processed(ConsumerKind::SalesLedger).await.unwrap(),
        ],
        notifications: scalar(db, "select count(*) from notifications").await,
        captures: scalar(db, "select count(*) from payment_captures").await,
        units_sold: scalar(
            db,
            "select coalesce(sum(units_sold), 0)::bigint from sales_ledger",
        )
        .await,
        revenue_minor: scalar(
            db,
            "select coalesce(sum(revenue_minor), 0)::bigint from sales_ledger",
        )
        .await,
    }
}

/// Places `count` orders of 1–3 units each, the way checkout does: each payment
/// authorized at `provider` under the order id, then the orders, their units and
/// outbox rows in one transaction.
pub async fn place_orders(
    db: &PgPool,
    provider: &TestProvider,
    sale: Uuid,
    count: usize,
) -> Vec<TestOrder> {
    let orders: Vec<TestOrder> = (0..count)
        .map(|i| TestOrder {
            order_id: Uuid::new_v4(),
            event_id: Uuid::new_v4(),
            quantity: (i % 3) as i32 + 1,
        })
        .collect();
    let ids: Vec<Uuid> = orders.iter().map(|o| o.order_id).collect();
    let events: Vec<Uuid> = orders.iter().map(|o| o.event_id).collect();
    let quantities: Vec<i32> = orders.iter().map(|o| o.quantity).collect();
    let shoppers: Vec<Uuid> = orders.iter().map(|_| Uuid::new_v4()).collect();
    let reservations: Vec<Uuid> = orders.iter().map(|_| Uuid::new_v4()).collect();
    let mut payments: Vec<String> = Vec::with_capacity(orders.len());
    for chunk in orders.chunks(16) {
        let authorized = futures::future::join_all(
            chunk
                .iter()
                .map(|o| provider.authorize(o.order_id, PRICE_MINOR * i64::from(o.quantity))),
        )
        .await;
        payments.extend(authorized.into_iter().map(|payment| payment.0));
    }
    let payloads: Vec<String> = orders
        .iter()
        .zip(&shoppers)
        .zip(&reservations)
        .zip(&payments)
        .map(|(((o, shopper), reservation), payment)| {
            json!({
                "order_id": o.order_id, "sale_id": sale, "shopper_id": shopper,
                "reservation_id": reservation, "quantity": o.quantity,
                "amount": { "amount_minor": PRICE_MINOR * i64::from(o.quantity), "currency": "EUR" },
                "payment": payment,
            })
            .to_string()
        })
        .collect();
    let mut unit_orders = Vec::new();
    let mut unit_numbers = Vec::new();
    for o in &orders {
        let first = NEXT_UNIT.fetch_add(o.quantity, Ordering::Relaxed);
        for unit in first..first + o.quantity {
            unit_orders.push(o.order_id);
            unit_numbers.push(unit);
        }
    }

    let mut tx = db.begin().await.unwrap();
    sqlx::query(
        "insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, \
                             currency, payment_auth_id) \
         select o, $2, s, r, q, q * $3, 'EUR', p \
         from unnest($1::uuid[], $4::uuid[], $5::uuid[], $6::int[], $7::text[]) as t(o, s, r, q, p)",
    )
    .bind(&ids)
    .bind(sale)
    .bind(PRICE_MINOR)
    .bind(&shoppers)
    .bind(&reservations)
    .bind(&quantities)
    .bind(&payments)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "insert into order_units (sale_id, unit_no, order_id) \
         select $1, u, o from unnest($2::int[], $3::uuid[]) as t(u, o)",
    )
    .bind(sale)
    .bind(&unit_numbers)
    .bind(&unit_orders)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "insert into outbox (id, aggregate_type, aggregate_id, event_type, payload, correlation_id) \
         select e, $4, o, $5, p::jsonb, 'test-' || o \
         from unnest($1::uuid[], $2::uuid[], $3::text[]) as t(e, o, p)",
    )
    .bind(&events)
    .bind(&ids)
    .bind(&payloads)
    .bind(ORDER_AGGREGATE)
    .bind(ORDER_PLACED)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    orders
}

/// One `bigint` from `sql`.
pub async fn scalar(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

/// A relay or the workers, running in this process.
pub struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    /// Cancels it and checks that it returns promptly.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("stops on shutdown")
            .expect("did not panic");
    }
}
