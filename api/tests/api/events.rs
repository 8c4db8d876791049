//! Event delivery: every committed order's `OrderPlaced` reaches every consumer and is
//! applied exactly once, through relay crashes, worker crashes, poison events and
//! competing relays. Real Postgres and Redis; the crash tests kill the real `flashsale`
//! binary with SIGKILL.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flashsale::config::Config;
use outbox_relay::event::{dead_letter_key, stream_key, ORDER_AGGREGATE};
use outbox_relay::mailer::SimulatedMailer;
use outbox_relay::relay::{self, RelayConfig};
use outbox_relay::worker::{self, ConsumerKind, WorkerConfig};
use redis::streams::{
    StreamInfoGroupsReply, StreamInfoStreamReply, StreamPendingReply, StreamRangeReply,
};
use redis::AsyncCommands;
use reservations::payment::{Latency, SimulatedPayments, SimulatorSettings};
use reservations::redis_conn::RedisTarget;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{spawn_app, TestApp};

/// The unit price of the default sale body (`sale_body_with`), in cents.
const PRICE_MINOR: i64 = 12_900;

/// Longest any wait of these tests may take: generous, the suite shares two cores.
const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_each_committed_order_once_and_every_consumer_applies_it_once() {
    // Arrange: orders committed before the relay starts, and more after it listens.
    let app = spawn_app().await;
    let url = database_url(&app).await;
    let sale = app.live_sale(10_000, 5).await;
    let mut orders = place_orders(&app.db, sale, 20).await;
    let workers = start_workers(&url, worker_config(&app)).await;
    // Polling off: the orders placed below can only be found through NOTIFY.
    let mut config = relay_config(&app);
    config.poll_interval = Duration::from_secs(3600);
    let relay = start_relay(&url, config).await;

    // Act
    for _ in 0..20 {
        let (order_id, event_id) = place_order_directly(&app, sale).await;
        let quantity = quantity_of(&app.db, order_id).await;
        orders.push(TestOrder {
            order_id,
            event_id,
            quantity,
        });
    }

    // Assert
    wait_until_applied(&app, &orders).await;
    let published = stream_event_ids(&app).await;
    assert_eq!(
        published.len(),
        orders.len(),
        "one entry per event, no duplicate"
    );
    assert_eq!(
        published.iter().copied().collect::<HashSet<_>>(),
        orders.iter().map(|o| o.event_id).collect::<HashSet<_>>(),
    );
    assert_eq!(unpublished(&app.db).await, 0);
    let captured: i64 = scalar(
        &app.db,
        "select count(*) from sim_payments where status = 'captured'",
    )
    .await;
    assert_eq!(
        captured,
        orders.len() as i64,
        "every authorization was captured"
    );
    let confirmed: HashSet<Uuid> = sqlx::query_scalar("select event_id from notifications")
        .fetch_all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(confirmed, orders.iter().map(|o| o.event_id).collect());
    let (backlog, oldest) = relay::backlog(&app.db).await.unwrap();
    assert_eq!((backlog, oldest), (0, None));

    relay.stop().await;
    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_mid_batch_republishes_and_each_consumer_applies_every_event_once() {
    // Arrange
    let app = spawn_app().await;
    let url = database_url(&app).await;
    let sale = app.live_sale(10_000, 5).await;
    let orders = place_orders(&app.db, sale, 3_000).await;
    let stream = stream_key(&app.prefix, ORDER_AGGREGATE);
    let mut redis = app.app_state.redis.clone();

    // Act: kill the relay process once it has committed a batch and has appended the
    // next one without committing it yet (the stream is read before the table: the
    // stream only grows, so more entries than committed rows means a batch in flight).
    let mut first = spawn_role(&app, &url, "relay");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let appended: usize = redis.xlen(&stream).await.unwrap();
        let committed = 3_000 - unpublished(&app.db).await as usize;
        if committed > 0 && appended > committed {
            break;
        }
        assert!(
            committed < 3_000,
            "the relay finished before a batch could be caught in flight"
        );
        assert!(
            Instant::now() < deadline,
            "the relay process never published"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    first.kill();
    let appended: usize = redis.xlen(&stream).await.unwrap();
    let left = unpublished(&app.db).await;
    eprintln!(
        "relay killed: {appended} entries appended, {} rows marked published",
        3_000 - left
    );
    assert!(
        left > 0,
        "the relay was killed before it had published everything"
    );

    let mut second = spawn_role(&app, &url, "relay");
    eventually("the restarted relay publishes the rest", || async {
        unpublished(&app.db).await == 0
    })
    .await;
    second.kill();
    let workers = start_workers(&url, worker_config(&app)).await;

    // Assert: at least once in the stream, exactly once in effect.
    wait_until_applied(&app, &orders).await;
    let published = stream_event_ids(&app).await;
    let distinct: HashSet<Uuid> = published.iter().copied().collect();
    assert_eq!(distinct, orders.iter().map(|o| o.event_id).collect());
    eprintln!(
        "{} entries for {} events ({} duplicates)",
        published.len(),
        distinct.len(),
        published.len() - distinct.len()
    );

    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_with_pending_entries_has_them_claimed_and_applied_once_by_another() {
    // Arrange: a worker process that has set up its groups.
    let app = spawn_app().await;
    let url = database_url(&app).await;
    let sale = app.live_sale(10_000, 5).await;
    let mut doomed = spawn_role(&app, &url, "worker");
    eventually("the worker process creates its groups", || async {
        groups(&app).await.len() == ConsumerKind::ALL.len()
    })
    .await;
    let orders = place_orders(&app.db, sale, 1_500).await;
    let relay = start_relay(&url, relay_config(&app)).await;
    // Every consumer until the survivor starts is the doomed process's.
    let survivor_name = format!("survivor-{}", Uuid::new_v4().simple());

    // Act: SIGKILL the worker while it holds entries it has not acknowledged.
    let deadline = Instant::now() + PATIENCE;
    let started = || async {
        let processed = scalar(&app.db, "select count(*) from processed_events").await;
        processed > 0 && pending_except(&app, &survivor_name).await > 0
    };
    while !started().await {
        assert!(
            Instant::now() < deadline,
            "the worker process never got going"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    doomed.kill();
    let orphaned = pending_except(&app, &survivor_name).await;
    eprintln!("worker killed holding {orphaned} unacknowledged entries");
    assert!(orphaned > 0, "the dead worker left entries pending");
    let mut config = worker_config(&app);
    config.consumer_name = survivor_name.clone();
    let survivor = start_workers(&url, config).await;

    // Assert: claimed (nothing else could move them), applied once.
    wait_until_applied(&app, &orders).await;
    assert_eq!(
        pending_except(&app, &survivor_name).await,
        0,
        "the dead worker's entries were claimed"
    );

    survivor.stop().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_are_dead_lettered_after_max_deliveries_while_later_events_flow() {
    // Arrange: a good order, two poison events, another good order, in stream order.
    let app = spawn_app().await;
    let url = database_url(&app).await;
    let sale = app.live_sale(10_000, 5).await;
    let mut good = place_orders(&app.db, sale, 1).await;
    let unparseable = insert_raw_event(&app.db, json!({ "hello": "world" })).await;
    let orphan_order = Uuid::new_v4();
    let dangling = insert_raw_event(
        &app.db,
        json!({
            "order_id": orphan_order, "sale_id": Uuid::new_v4(), "shopper_id": Uuid::new_v4(),
            "reservation_id": Uuid::new_v4(), "quantity": 1,
            "amount": { "amount_minor": PRICE_MINOR, "currency": "EUR" },
        }),
    )
    .await;
    good.extend(place_orders(&app.db, sale, 1).await);
    let mut config = worker_config(&app);
    // Slow retries: the good events must be applied long before the poison gives up.
    config.retry_backoff = Duration::from_millis(500);
    config.max_retry_backoff = Duration::from_secs(2);
    let max_deliveries = config.max_deliveries;
    assert_eq!(max_deliveries, 5, "the default limit");
    let workers = start_workers(&url, config).await;
    let relay = start_relay(&url, relay_config(&app)).await;

    // Act + assert: the good events do not wait for the poison ones.
    let dead = dead_letter_key(&app.prefix, ORDER_AGGREGATE);
    let mut redis = app.app_state.redis.clone();
    eventually("the good events are applied", || async {
        applied(&app.db).await == Applied::expected(&good)
    })
    .await;
    let dead_so_far: usize = redis.xlen(&dead).await.unwrap();
    assert_eq!(
        dead_so_far, 0,
        "later events flowed while the poison was still being retried"
    );

    eventually("every consumer dead-letters both poison events", || async {
        let dead_count: usize = app.app_state.redis.clone().xlen(&dead).await.unwrap();
        dead_count == 2 * ConsumerKind::ALL.len()
    })
    .await;
    wait_until_applied(&app, &good).await;
    let letters: StreamRangeReply = redis.xrange_all(&dead).await.unwrap();
    let mut seen: HashMap<Uuid, HashSet<String>> = HashMap::new();
    for letter in &letters.ids {
        let event: Uuid = letter.get::<String>("id").unwrap().parse().unwrap();
        let deliveries: u64 = letter.get::<String>("deliveries").unwrap().parse().unwrap();
        assert_eq!(
            deliveries, max_deliveries,
            "dead-lettered after exactly N tries"
        );
        assert!(letter.get::<String>("error").is_some_and(|e| !e.is_empty()));
        assert!(
            letter.get::<String>("payload").is_some(),
            "the original fields are kept"
        );
        seen.entry(event)
            .or_default()
            .insert(letter.get::<String>("consumer").unwrap());
    }
    let every_group: HashSet<String> = ConsumerKind::ALL
        .iter()
        .map(|k| k.group().to_owned())
        .collect();
    assert_eq!(seen.get(&unparseable), Some(&every_group));
    assert_eq!(seen.get(&dangling), Some(&every_group));
    let poisoned: i64 =
        sqlx::query_scalar("select count(*) from processed_events where event_id = any($1)")
            .bind(vec![unparseable, dangling])
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(
        poisoned, 0,
        "no consumer recorded a poison event as processed"
    );

    relay.stop().await;
    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_at_once_lose_nothing_and_each_event_is_applied_once() {
    // Arrange: two relays with small batches, so they keep meeting on the same rows.
    let app = spawn_app().await;
    let url = database_url(&app).await;
    let sale = app.live_sale(10_000, 5).await;
    let mut config = relay_config(&app);
    config.batch_size = 50;
    let relays = [
        start_relay(&url, config.clone()).await,
        start_relay(&url, config).await,
    ];
    let workers = start_workers(&url, worker_config(&app)).await;

    // Act: four writers commit orders while both relays run.
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let db = app.db.clone();
            tokio::spawn(async move {
                let mut placed = Vec::new();
                for _ in 0..10 {
                    placed.extend(place_orders(&db, sale, 50).await);
                }
                placed
            })
        })
        .collect();
    let mut orders = Vec::new();
    for writer in writers {
        orders.extend(writer.await.unwrap());
    }

    // Assert
    wait_until_applied(&app, &orders).await;
    assert_eq!(unpublished(&app.db).await, 0);
    let published: HashSet<Uuid> = stream_event_ids(&app).await.into_iter().collect();
    assert_eq!(published, orders.iter().map(|o| o.event_id).collect());

    for relay in relays {
        relay.stop().await;
    }
    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_lost_with_redis_before_any_consumer_read_them_are_published_again_and_applied_once()
{
    // Arrange: orders relayed into the stream while no worker runs.
    let app = spawn_app().await;
    let url = database_url(&app).await;
    let sale = app.live_sale(10_000, 5).await;
    let orders = place_orders(&app.db, sale, 300).await;
    let relay = start_relay(&url, relay_config(&app)).await;
    eventually("the relay publishes every order", || async {
        unpublished(&app.db).await == 0
    })
    .await;
    assert_eq!(stream_event_ids(&app).await.len(), orders.len());

    // Act: Redis loses every key of the app, as when it restarts empty: the stream, its
    // groups and the relay's marker. Then the workers start.
    app.wipe_redis().await;
    let workers = start_workers(&url, worker_config(&app)).await;

    // Assert: every event reaches every consumer once, though its first entry is gone.
    wait_until_applied(&app, &orders).await;
    assert_eq!(unpublished(&app.db).await, 0);

    relay.stop().await;
    workers.stop().await;
}

// ---------------------------------------------------------------- orders, placed directly

/// An order placed by these tests, with its `OrderPlaced` event.
#[derive(Debug, Clone)]
struct TestOrder {
    order_id: Uuid,
    event_id: Uuid,
    quantity: i32,
}

/// Unit numbers handed out so far: every order's units are distinct, as checkout's are.
static NEXT_UNIT: AtomicI32 = AtomicI32::new(1);

/// Places one order the way checkout commits it, in one transaction: the order, its
/// units, the authorized payment and the outbox row. Returns (order id, event id).
pub async fn place_order_directly(app: &TestApp, sale: Uuid) -> (Uuid, Uuid) {
    let order = place_orders(&app.db, sale, 1).await.remove(0);
    (order.order_id, order.event_id)
}

/// Places `count` orders of 1–3 units each in one transaction (see
/// [`place_order_directly`]).
async fn place_orders(db: &PgPool, sale: Uuid, count: usize) -> Vec<TestOrder> {
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
    let payloads: Vec<String> = orders
        .iter()
        .zip(&shoppers)
        .zip(&reservations)
        .map(|((o, shopper), reservation)| {
            json!({
                "order_id": o.order_id, "sale_id": sale, "shopper_id": shopper,
                "reservation_id": reservation, "quantity": o.quantity,
                "amount": { "amount_minor": PRICE_MINOR * i64::from(o.quantity), "currency": "EUR" },
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
         select o, $2, s, r, q, q * $3, 'EUR', 'auth_' || o \
         from unnest($1::uuid[], $4::uuid[], $5::uuid[], $6::int[]) as t(o, s, r, q)",
    )
    .bind(&ids)
    .bind(sale)
    .bind(PRICE_MINOR)
    .bind(&shoppers)
    .bind(&reservations)
    .bind(&quantities)
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
        "insert into sim_payments (order_id, amount_minor, currency, status) \
         select o, q * $3, 'EUR', 'authorized' from unnest($1::uuid[], $2::int[]) as t(o, q)",
    )
    .bind(&ids)
    .bind(&quantities)
    .bind(PRICE_MINOR)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "insert into outbox (id, aggregate_type, aggregate_id, event_type, payload, correlation_id) \
         select e, 'order', o, 'OrderPlaced', p::jsonb, 'test-' || o \
         from unnest($1::uuid[], $2::uuid[], $3::text[]) as t(e, o, p)",
    )
    .bind(&events)
    .bind(&ids)
    .bind(&payloads)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    orders
}

/// An `OrderPlaced` outbox row with this payload and no order behind it.
async fn insert_raw_event(db: &PgPool, payload: serde_json::Value) -> Uuid {
    let event = Uuid::new_v4();
    sqlx::query(
        "insert into outbox (id, aggregate_type, aggregate_id, event_type, payload, correlation_id) \
         values ($1, 'order', $2, 'OrderPlaced', $3::jsonb, 'test-poison')",
    )
    .bind(event)
    .bind(Uuid::new_v4())
    .bind(payload.to_string())
    .execute(db)
    .await
    .unwrap();
    event
}

async fn quantity_of(db: &PgPool, order: Uuid) -> i32 {
    sqlx::query_scalar("select quantity from orders where id = $1")
        .bind(order)
        .fetch_one(db)
        .await
        .unwrap()
}

// ---------------------------------------------------------------- what the consumers did

/// Everything the three consumers have recorded.
#[derive(Debug, PartialEq, Eq)]
struct Applied {
    processed: [i64; 3],
    notifications: i64,
    captures: i64,
    units_sold: i64,
    revenue_minor: i64,
}

impl Applied {
    /// What applying each of `orders` exactly once by every consumer records.
    fn expected(orders: &[TestOrder]) -> Applied {
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

/// Waits until every consumer has applied `orders` and has nothing left to do (every
/// group has read the whole stream and acknowledged everything), then checks the
/// records once more: nothing arrived late and counted twice.
async fn wait_until_applied(app: &TestApp, orders: &[TestOrder]) {
    let expected = Applied::expected(orders);
    eventually(
        "every consumer applies every event and drains the stream",
        || async { applied(&app.db).await == expected && drained(app).await },
    )
    .await;
    assert_eq!(
        applied(&app.db).await,
        expected,
        "each event applied exactly once"
    );
}

/// Whether every group has been delivered the last entry and acknowledged everything.
async fn drained(app: &TestApp) -> bool {
    let stream = stream_key(&app.prefix, ORDER_AGGREGATE);
    let mut redis = app.app_state.redis.clone();
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

// ---------------------------------------------------------------- Redis views

/// The event ids of every entry of the order stream, duplicates included.
async fn stream_event_ids(app: &TestApp) -> Vec<Uuid> {
    let stream = stream_key(&app.prefix, ORDER_AGGREGATE);
    let entries: StreamRangeReply = app
        .app_state
        .redis
        .clone()
        .xrange_all(&stream)
        .await
        .unwrap();
    entries
        .ids
        .iter()
        .map(|entry| entry.get::<String>("id").unwrap().parse().unwrap())
        .collect()
}

/// The consumer groups of the order stream (none if it does not exist yet).
async fn groups(app: &TestApp) -> Vec<String> {
    let stream = stream_key(&app.prefix, ORDER_AGGREGATE);
    let mut redis = app.app_state.redis.clone();
    match redis
        .xinfo_groups::<_, StreamInfoGroupsReply>(&stream)
        .await
    {
        Ok(reply) => reply.groups.into_iter().map(|g| g.name).collect(),
        Err(_) => Vec::new(),
    }
}

/// Entries pending on any consumer but `name`, over every group.
async fn pending_except(app: &TestApp, name: &str) -> usize {
    let stream = stream_key(&app.prefix, ORDER_AGGREGATE);
    let mut redis = app.app_state.redis.clone();
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

// ---------------------------------------------------------------- relay and workers

/// A relay or worker running in this process.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    /// Cancels it and checks that it returns promptly.
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("stops on shutdown")
            .expect("did not panic");
    }
}

fn relay_config(app: &TestApp) -> RelayConfig {
    let mut config = RelayConfig::new(app.prefix.clone());
    config.poll_interval = Duration::from_millis(200);
    config
}

fn worker_config(app: &TestApp) -> WorkerConfig {
    let mut config = WorkerConfig::new(app.prefix.clone());
    config.block = Duration::from_millis(500);
    config.claim_idle = Duration::from_millis(500);
    config.retry_backoff = Duration::from_millis(20);
    config.max_retry_backoff = Duration::from_millis(200);
    config
}

fn redis_client() -> RedisTarget {
    let config = Config::from_env().expect("test configuration");
    flashsale::startup::redis_target(&config).unwrap()
}

async fn pool(url: &str, size: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(size)
        .connect(url)
        .await
        .unwrap()
}

async fn start_relay(url: &str, config: RelayConfig) -> Running {
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay::run(
        pool(url, 3).await,
        redis_client(),
        config,
        stop.clone(),
    ));
    Running { stop, task }
}

async fn start_workers(url: &str, config: WorkerConfig) -> Running {
    let db = pool(url, 6).await;
    // An instant provider: these tests are about delivery, not payment latency.
    let instant = SimulatorSettings {
        latency_ms: Latency { p50: 0, p99: 0 },
        failure_rate: 0.0,
    };
    let payments = Arc::new(SimulatedPayments::new(instant, db.clone()));
    let mailer = Arc::new(SimulatedMailer::new());
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker::run(
        db,
        redis_client(),
        payments,
        mailer,
        config,
        stop.clone(),
    ));
    Running { stop, task }
}

/// `flashsale <role>` running as a child process. Killed with SIGKILL when dropped, so a
/// failing test leaves no process behind. (`std::process`: the workspace's tokio is built
/// without its `process` feature; `Child::kill` is SIGKILL all the same.)
struct RoleProcess(Child);

impl RoleProcess {
    /// SIGKILL, and reap the process.
    fn kill(&mut self) {
        self.0.kill().expect("SIGKILL the process");
        self.0.wait().expect("reap the process");
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `flashsale <role>` against this app's database and Redis prefix.
fn spawn_role(app: &TestApp, database_url: &str, role: &str) -> RoleProcess {
    let config = Config::from_env().expect("test configuration");
    let data_dir: PathBuf =
        std::env::temp_dir().join(format!("flashsale-events-{}", Uuid::new_v4().simple()));
    let child = Command::new(env!("CARGO_BIN_EXE_flashsale"))
        .arg(role)
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", config.redis_url.expose())
        .env("FLASHSALE_REDIS_PREFIX", &app.prefix)
        .env("FLASHSALE_DATA_DIR", &data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the flashsale binary starts");
    RoleProcess(child)
}

// ---------------------------------------------------------------- small things

/// The URL of the app's own database (the app keeps its configuration to itself).
async fn database_url(app: &TestApp) -> String {
    let name: String = scalar_text(&app.db, "select current_database()").await;
    let base = Config::from_env().expect("test configuration").database_url;
    let (server, _) = base.expose().rsplit_once('/').expect("a database name");
    format!("{server}/{name}")
}

async fn unpublished(db: &PgPool) -> i64 {
    scalar(db, "select count(*) from outbox where published_at is null").await
}

async fn scalar(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

async fn scalar_text(db: &PgPool, sql: &str) -> String {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

/// Polls `check` every 50 ms until it holds; fails the test after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
