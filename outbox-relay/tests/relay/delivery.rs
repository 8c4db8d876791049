//! Every committed order's `OrderPlaced` reaches every consumer and is applied exactly
//! once: with NOTIFY alone, through poison events, with competing relays, and after
//! Redis loses the stream.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use outbox_relay::consumer::ConsumerKind;
use outbox_relay::event::{dead_letter_key, ORDER_AGGREGATE};
use outbox_relay::relay;
use redis::streams::StreamRangeReply;
use redis::AsyncCommands;
use serde_json::json;
use test_support::outbox::{scalar, Deliveries, TestOrder, PRICE_MINOR};
use test_support::{eventually, wipe_redis};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_each_committed_order_once_and_every_consumer_applies_it_once() {
    // Arrange: orders committed before the relay starts, and more after it listens.
    let app = Deliveries::fresh().await;
    let sale = app.live_sale(10_000, 5).await;
    let mut orders = app.place_orders(sale, 20).await;
    let workers = app.start_workers(app.worker_config()).await;
    // Polling off: the orders placed below can only be found through NOTIFY.
    let mut config = app.relay_config();
    config.poll_interval = Duration::from_secs(3600);
    let relay = app.start_relay(config).await;

    // Act
    for _ in 0..20 {
        let (order_id, event_id) = app.place_order_directly(sale).await;
        let quantity = app.quantity_of(order_id).await;
        orders.push(TestOrder {
            order_id,
            event_id,
            quantity,
        });
    }

    // Assert
    app.wait_until_applied(&orders).await;
    let published = app.stream_event_ids().await;
    assert_eq!(
        published.len(),
        orders.len(),
        "one entry per event, no duplicate"
    );
    assert_eq!(
        published.iter().copied().collect::<HashSet<_>>(),
        orders.iter().map(|o| o.event_id).collect::<HashSet<_>>(),
    );
    assert_eq!(app.unpublished().await, 0);
    let captured = app.provider.count("succeeded") as i64;
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
async fn poison_events_are_dead_lettered_after_max_deliveries_while_later_events_flow() {
    // Arrange: a good order, two poison events, another good order, in stream order.
    let app = Deliveries::fresh().await;
    let sale = app.live_sale(10_000, 5).await;
    let mut good = app.place_orders(sale, 1).await;
    let unparseable = app.insert_raw_event(json!({ "hello": "world" })).await;
    let orphan_order = Uuid::new_v4();
    let dangling = app
        .insert_raw_event(json!({
            "order_id": orphan_order, "sale_id": Uuid::new_v4(), "shopper_id": Uuid::new_v4(),
            "reservation_id": Uuid::new_v4(), "quantity": 1,
            "amount": { "amount_minor": PRICE_MINOR, "currency": "EUR" },
        }))
        .await;
    good.extend(app.place_orders(sale, 1).await);
    let mut config = app.worker_config();
    // Slow retries: the good events must be applied long before the poison gives up.
    config.retry_backoff = Duration::from_millis(500);
    config.max_retry_backoff = Duration::from_secs(2);
    let max_deliveries = config.max_deliveries;
    assert_eq!(max_deliveries, 5, "the default limit");
    let workers = app.start_workers(config).await;
    let relay = app.start_relay(app.relay_config()).await;

    // Act + assert: the good events do not wait for the poison ones.
    let dead = dead_letter_key(&app.prefix, ORDER_AGGREGATE);
    let mut redis = app.redis.clone();
    eventually("the good events are applied", || async {
        app.applied().await == test_support::outbox::Applied::expected(&good)
    })
    .await;
    let dead_so_far: usize = redis.xlen(&dead).await.unwrap();
    assert_eq!(
        dead_so_far, 0,
        "later events flowed while the poison was still being retried"
    );

    eventually("every consumer dead-letters both poison events", || async {
        let dead_count: usize = app.redis.clone().xlen(&dead).await.unwrap();
        dead_count == 2 * ConsumerKind::ALL.len()
    })
    .await;
    app.wait_until_applied(&good).await;
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
    let app = Deliveries::fresh().await;
    let sale = app.live_sale(10_000, 5).await;
    let mut config = app.relay_config();
    config.batch_size = 50;
    let relays = [
        app.start_relay(config.clone()).await,
        app.start_relay(config).await,
    ];
    let workers = app.start_workers(app.worker_config()).await;

    // Act: four writers commit orders while both relays run.
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut placed = Vec::new();
                for _ in 0..10 {
                    placed.extend(app.place_orders(sale, 50).await);
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
    app.wait_until_applied(&orders).await;
    assert_eq!(app.unpublished().await, 0);
    let published: HashSet<Uuid> = app.stream_event_ids().await.into_iter().collect();
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
    let app = Deliveries::fresh().await;
    let sale = app.live_sale(10_000, 5).await;
    let orders = app.place_orders(sale, 300).await;
    let relay = app.start_relay(app.relay_config()).await;
    eventually("the relay publishes every order", || async {
        app.unpublished().await == 0
    })
    .await;
    assert_eq!(app.stream_event_ids().await.len(), orders.len());

    // Act: Redis loses every key of the test, as when it restarts empty: the stream, its
    // groups and the relay's marker. Then the workers start.
    wipe_redis(&app.redis, &app.prefix).await;
    let workers = app.start_workers(app.worker_config()).await;

    // Assert: every event reaches every consumer once, though its first entry is gone.
    app.wait_until_applied(&orders).await;
    assert_eq!(app.unpublished().await, 0);

    relay.stop().await;
    workers.stop().await;
}

#[tokio::test]
async fn stream_entries_lost_while_the_marker_stays_are_published_again_and_applied_once() {
    // Arrange: orders relayed while no worker runs; this relay republishes what is not
    // settled by every consumer within one second.
    let app = Deliveries::fresh().await;
    let sale = app.live_sale(10_000, 5).await;
    let orders = app.place_orders(sale, 200).await;
    let mut config = app.relay_config();
    config.redeliver_after = Duration::from_secs(1);
    config.redeliver_interval = Duration::from_millis(200);
    let relay = app.start_relay(config).await;
    eventually("the relay publishes every order", || async {
        app.unpublished().await == 0
    })
    .await;

    // Act: Redis comes back older, not empty — the entries are gone, the marker and
    // everything else stay (a crash whose AOF missed its last second, a replica promoted
    // before it had them). Then the workers start.
    let mut redis = app.redis.clone();
    let _: i64 = redis
        .xtrim(app.stream(), redis::streams::StreamMaxlen::Equals(0))
        .await
        .unwrap();
    let marker: bool = redis.exists(relay::marker_key(&app.prefix)).await.unwrap();
    assert!(
        marker,
        "the marker survived: the relay's loss check sees nothing"
    );
    let workers = app.start_workers(app.worker_config()).await;

    // Assert: every event reaches every consumer once, and once settled it is left
    // alone (nothing is republished after every group has processed it).
    app.wait_until_applied(&orders).await;
    eventually("every event is settled", || async {
        scalar(
            &app.db,
            "select count(*) from outbox where settled_at is null",
        )
        .await
            == 0
    })
    .await;
    assert_eq!(app.unpublished().await, 0);

    relay.stop().await;
    workers.stop().await;
}

#[tokio::test]
async fn the_order_stream_is_trimmed_to_what_some_consumer_still_owes() {
    // Arrange: events relayed before any worker exists: nothing may be trimmed, since a
    // group created later reads the stream from its beginning.
    let app = Deliveries::fresh().await;
    let sale = app.live_sale(10_000, 5).await;
    let orders = app.place_orders(sale, 100).await;
    let mut config = app.relay_config();
    config.trim_interval = Duration::from_millis(200);
    let relay = app.start_relay(config).await;
    eventually("the relay publishes every order", || async {
        app.unpublished().await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut redis = app.redis.clone();
    let before: usize = redis.xlen(app.stream()).await.unwrap();
    assert_eq!(before, orders.len(), "no group yet: every entry stays");

    // Act: the workers apply and acknowledge everything.
    let workers = app.start_workers(app.worker_config()).await;
    app.wait_until_applied(&orders).await;

    // Assert: the stream keeps at most the last entry every group read.
    eventually("the acknowledged entries are trimmed", || async {
        redis.clone().xlen::<_, usize>(app.stream()).await.unwrap() <= 1
    })
    .await;

    relay.stop().await;
    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_that_fails_three_times_is_retried_until_the_provider_confirms_it() {
    // Arrange: an order whose payment is authorized; the provider's next three captures
    // fail (500, nothing done).
    let app = Deliveries::fresh().await;
    let sale = app.live_sale(100, 5).await;
    let orders = app.place_orders(sale, 1).await;
    let settings = app.provider.simulator.settings();
    app.provider
        .simulator
        .set_settings(payment_simulator::Settings {
            fail_captures: 3,
            ..settings
        });
    let mut config = app.worker_config();
    config.retry_backoff = Duration::from_millis(50);

    // Act
    let workers = app.start_workers(config).await;
    let relay = app.start_relay(app.relay_config()).await;

    // Assert: captured once the failures are spent, recorded once, nothing dead-lettered
    // (a provider failure is retried, never given up on).
    eventually("the order is applied by every consumer", || async {
        app.applied().await == test_support::outbox::Applied::expected(&orders)
    })
    .await;
    assert_eq!(app.provider.count("succeeded"), 1);
    assert_eq!(
        app.provider.simulator.settings().fail_captures,
        0,
        "all three failures were met"
    );
    let dead: usize = app
        .redis
        .clone()
        .xlen(dead_letter_key(&app.prefix, ORDER_AGGREGATE))
        .await
        .unwrap();
    assert_eq!(dead, 0);
    relay.stop().await;
    workers.stop().await;
}
