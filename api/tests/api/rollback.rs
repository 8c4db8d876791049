//! Redis that comes back older: a restart from a crash image taken before a checkout
//! (the lost last second), a restart without data loss (what a clean failover looks
//! like to a client), and the cost of noticing. Each test runs the app on a private
//! `redis-server` of its own (test-support's `PrivateRedis`): the shared Redis is
//! never restarted.

use std::time::{Duration, Instant};

use flashsale::config::Secret;
use reservations::ids::SaleId;
use reservations::redis_identity;
use test_support::PrivateRedis;
use uuid::Uuid;

use crate::helpers::*;
use crate::reservations::{assert_stock_conserved, free_units, insert_order};

/// The app on `redis` alone (never a cluster, whatever the suite runs on).
async fn spawn_on(redis: &PrivateRedis) -> TestApp {
    let url = redis.url();
    spawn_app_with(move |config| {
        config.redis_url = Secret::new(url);
        config.redis_cluster_urls = Secret::new(String::new());
    })
    .await
}

/// Waits until the sale is reconciled for the Redis the app talks to now; returns
/// that incarnation's id.
async fn reconciled(app: &TestApp, sale: Uuid) -> String {
    let deadline = Instant::now() + test_support::PATIENCE;
    loop {
        if let Ok(now) = redis_identity::read(&app.app_state.redis).await {
            let marker = app
                .app_state
                .sales
                .hot_state_for_tests()
                .reconciled_for(SaleId(sale))
                .await;
            if matches!(&marker, Ok(Some(m)) if *m == now.id()) {
                return now.id();
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until the sale is reconciled for the Redis the app talks to"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Units Postgres has sold of the sale.
async fn sold_in_postgres(app: &TestApp, sale: Uuid) -> Vec<i32> {
    sqlx::query_scalar("select unit_no from order_units where sale_id = $1 order by 1")
        .bind(sale)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_rolled_back_past_a_checkout_is_reconciled_so_the_shopper_cannot_buy_again() {
    // Arrange: a shopper holds a unit of a sale with a limit of 1; Redis' data is
    // copied while it runs (a crash image); then the shopper checks out.
    let mut redis = PrivateRedis::start().await;
    let app = spawn_on(&redis).await;
    let sale = app.live_sale(2, 1).await;
    let shopper = app.direct_shopper();
    let hold = app.hold(&shopper, sale, 1).await;
    let image = redis.crash_image();
    app.place_order(&shopper, hold, "pay-1", "tok_ok")
        .await
        .expect("the order is placed");

    // Act: Redis stops without saving and starts again from the copy: the checkout
    // never happened as far as Redis knows. Then the hold's TTL passes.
    redis.kill().await;
    redis.restart(Some(&image)).await;
    reconciled(&app, sale).await;
    app.clock.advance(Duration::from_secs(601));
    let sold = sold_in_postgres(&app, sale).await;
    assert_eq!(sold.len(), 1);

    // Assert: the hold is checked out, not held or expired; the shopper can neither
    // hold nor buy again; the sold unit is offered to nobody; Redis agrees with
    // Postgres and conserves its units.
    let seen = app.reservation(&shopper, hold).await.expect("the hold");
    assert_eq!(seen.status, "checked_out");
    let again = app.reserve_request(&shopper, sale, 1, None).await;
    assert_problem(again, 409, "per_user_limit_exceeded").await;
    let twice = app.checkout(&shopper, hold, Some("pay-2"), "tok_ok").await;
    assert_ne!(twice.status(), 201, "a second order of the same hold");
    assert_eq!(app.orders_for(hold).await, 1);
    let free = free_units(&app, sale).await;
    assert!(
        !free.contains(&i64::from(sold[0])),
        "a sold unit is free again: {free:?}"
    );
    let other = app.direct_shopper();
    app.hold(&other, sale, 1).await;
    let late = app
        .reserve_request(&app.direct_shopper(), sale, 1, None)
        .await;
    assert_problem(late, 409, "sold_out").await;
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!(
        (stock.total, stock.sold, stock.held, stock.available),
        (2, sold.len() as i64, 1, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_without_data_loss_is_detected_and_reconciled_and_nothing_changes_for_shoppers() {
    // Arrange: one shopper holds, another has bought.
    let mut redis = PrivateRedis::start().await;
    let app = spawn_on(&redis).await;
    let sale = app.live_sale(5, 2).await;
    let holder = app.direct_shopper();
    let held = app.hold(&holder, sale, 1).await;
    let buyer = app.direct_shopper();
    let bought = app.hold(&buyer, sale, 2).await;
    app.place_order(&buyer, bought, "pay-1", "tok_ok")
        .await
        .expect("the order is placed");
    let before = redis_identity::read(&app.app_state.redis).await.unwrap();
    let stock_before = assert_stock_conserved(&app, sale).await;
    let mut free_before = free_units(&app, sale).await;

    // Act: a clean stop and a start from the same AOF: the same data, a new server
    // (a new run id), as after a failover that lost nothing.
    redis.shutdown().await;
    redis.restart(None).await;
    let after = reconciled(&app, sale).await;

    // Assert: noticed (the sale is reconciled for the new incarnation), and nothing
    // changed: the same stock, the same free units, the hold still held and buyable,
    // the order still checked out.
    assert_ne!(after, before.id(), "a restarted Redis is a new incarnation");
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!(
        (stock.total, stock.available, stock.held, stock.sold),
        (
            stock_before.total,
            stock_before.available,
            stock_before.held,
            stock_before.sold
        )
    );
    let mut free = free_units(&app, sale).await;
    free.sort();
    free_before.sort();
    assert_eq!(free, free_before);
    let bought_now = app
        .reservation(&buyer, bought)
        .await
        .expect("the order's hold");
    assert_eq!(bought_now.status, "checked_out");
    let held_now = app.reservation(&holder, held).await.expect("the hold");
    assert_eq!(held_now.status, "held");
    app.place_order(&holder, held, "pay-2", "tok_ok")
        .await
        .expect("the hold is still bought as before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn noticing_a_new_redis_adds_no_command_to_the_reserve_path() {
    // Arrange: a sale on a private Redis whose command counters start at zero.
    let redis = PrivateRedis::start().await;
    let app = spawn_on(&redis).await;
    let sale = app.live_sale(1000, 1).await;
    let mut conn = redis.conn().await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    let started = Instant::now();

    // Act: 300 shoppers reserve.
    let statuses = app.reserve_at_once(sale, 300).await;
    let elapsed = started.elapsed();

    // Assert: every reserve held, and the INFO calls (the only command the watcher
    // sends) are the watcher's two a second, not one per reserve.
    assert!(statuses.iter().all(|&s| s == 201), "{statuses:?}");
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let calls = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{name}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let info = calls("info");
    let bound = 2 * (elapsed.as_secs() + 2);
    assert!(
        info <= bound,
        "{info} INFO calls during 300 reserves in {elapsed:?} (the watcher sends 2 a second)"
    );
    assert!(calls("evalsha") + calls("eval") >= 300, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconciling_ends_holds_postgres_contradicts_and_counts_orders_redis_never_saw() {
    // Arrange: Redis and Postgres disagree as after a rollback: a live hold whose unit
    // Postgres sold to another order, and an order whose hold Redis never had.
    let app = spawn_app().await;
    let sale = app.live_sale(6, 2).await;
    let free_before = free_units(&app, sale).await;
    let holder = app.direct_shopper();
    let contradicted = app.hold(&holder, sale, 1).await;
    let free_after_hold = free_units(&app, sale).await;
    let held_unit = *free_before
        .iter()
        .find(|u| !free_after_hold.contains(u))
        .expect("the held unit");
    insert_order(&app, sale, Uuid::new_v4(), &[held_unit as i32])
        .await
        .unwrap();
    let lost_buyer = app.direct_shopper();
    let lost_units: Vec<i32> = free_after_hold.iter().take(2).map(|&u| u as i32).collect();
    insert_order(&app, sale, lost_buyer.id, &lost_units)
        .await
        .unwrap();

    // Act (the incarnation read as the watcher reads it: every master when the suite
    // runs on a cluster)
    let incarnation = redis_identity::read(&app.app_state.redis).await.unwrap();
    assert!(incarnation.nodes().iter().all(|n| !n.run_id.is_empty()));
    let reconciled = app
        .app_state
        .sales
        .reconcile(SaleId(sale), "test-incarnation")
        .await
        .unwrap();

    // Assert: the contradicted hold ended, no sold unit is free, the buyer Redis never
    // saw is at the limit, the holder may hold again, and the counts agree with
    // Postgres; a second pass for the same incarnation is skipped.
    assert!(reconciled);
    let seen = app
        .reservation(&holder, contradicted)
        .await
        .expect("the hold");
    assert_eq!(seen.status, "expired");
    let free = free_units(&app, sale).await;
    for unit in std::iter::once(held_unit).chain(lost_units.iter().map(|&u| i64::from(u))) {
        assert!(!free.contains(&unit), "sold unit {unit} is free: {free:?}");
    }
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!(
        (stock.total, stock.sold, stock.held, stock.available),
        (6, 3, 0, 3)
    );
    let over = app.reserve_request(&lost_buyer, sale, 1, None).await;
    assert_problem(over, 409, "per_user_limit_exceeded").await;
    app.hold(&holder, sale, 1).await;
    assert!(!app
        .app_state
        .sales
        .reconcile(SaleId(sale), "test-incarnation")
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconciling_while_shoppers_hold_and_buy_keeps_every_count_exact() {
    // Arrange: a sale; 150 shoppers will hold a unit each and 100 of them buy it.
    let app = spawn_app().await;
    let sale = app.live_sale(300, 1).await;
    let done = std::sync::atomic::AtomicBool::new(false);

    // Act: reconcile again and again (each pass for another incarnation, so none is
    // skipped) while they do, so Postgres is read before commits the script then sees.
    let reconcile = async {
        let mut passes = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let incarnation = format!("pass-{passes}");
            app.app_state
                .sales
                .reconcile(SaleId(sale), &incarnation)
                .await
                .unwrap();
            passes += 1;
        }
        passes
    };
    let shoppers = async {
        futures::future::join_all((0..150).map(|i| {
            let app = &app;
            async move {
                let shopper = app.direct_shopper();
                let hold = app.hold(&shopper, sale, 1).await;
                if i % 3 != 0 {
                    app.place_order(&shopper, hold, &format!("pay-{i}"), "tok_ok")
                        .await
                        .expect("the order is placed");
                }
            }
        }))
        .await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let (passes, ()) = tokio::join!(reconcile, shoppers);

    // Assert: every hold and order counted once, Redis agrees with Postgres, and
    // every shopper's count is their one unit.
    assert!(passes > 1, "the reconciler ran during the traffic");
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!(
        (stock.total, stock.sold, stock.held, stock.available),
        (300, 100, 50, 150)
    );
    assert_eq!(sold_in_postgres(&app, sale).await.len(), 100);
    let projection = app.app_state.sales.hot_state_for_tests();
    if projection.stripe_count() == 1 {
        let users: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(projection.keys(SaleId(sale)).users())
            .query_async(&mut app.app_state.redis.clone())
            .await
            .unwrap();
        assert_eq!(users.len(), 150);
        assert!(users.values().all(|&n| n == 1), "{users:?}");
    }
}
