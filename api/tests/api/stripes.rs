//! Hot-sale striping (`FLASHSALE_STOCK_STRIPES` = 4): each sale's stock split over four
//! Redis hash tags. The stock invariants under real concurrency, the fallback from a
//! sold-out home stripe, idempotent retries, release / expiry / checkout away from
//! stripe 0, a rebuild after Redis loses everything or one stripe, stock changes, and
//! the per-shopper limit kept exact over orders. Run with `REDIS_CLUSTER_URLS` set, the
//! stripes live on different cluster nodes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use uuid::Uuid;

use crate::helpers::{assert_problem, spawn_app_with, TestApp, TestShopper};
use crate::reservations::{
    assert_stock_conserved, free_units, free_units_by_stripe, holds, holds_by_stripe, insert_order,
};
use reservations::ids::{ReservationId, SaleId, ShopperId};
use reservations::projection::{home_stripe, ReserveOutcome, Stripe};

const STRIPES: u32 = 4;

async fn spawn_striped_app() -> TestApp {
    spawn_app_with(|c| c.stock_stripes = STRIPES).await
}

/// A shopper whose home stripe is `stripe`.
fn shopper_at_home_in(app: &TestApp, stripe: u32) -> TestShopper {
    loop {
        let shopper = app.direct_shopper();
        if home_stripe(ShopperId(shopper.id), STRIPES) == stripe {
            return shopper;
        }
    }
}

/// The stripe that holds reservation `id`, read from Redis.
async fn stripe_of(app: &TestApp, sale: Uuid, id: Uuid) -> usize {
    let found: Vec<usize> = holds_by_stripe(app, sale)
        .await
        .iter()
        .enumerate()
        .filter(|(_, holds)| holds.contains_key(&id.to_string()))
        .map(|(stripe, _)| stripe)
        .collect();
    assert_eq!(found.len(), 1, "hold {id} lives in exactly one stripe");
    found[0]
}

async fn reservation_status(app: &TestApp, shopper: &TestShopper, id: Uuid) -> String {
    let hold = app.reservation(shopper, id).await;
    hold.expect("the owner reads it").status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_thousand_concurrent_reserves_over_four_stripes_sell_exactly_the_stock() {
    // Arrange: 1,000 units (250 a stripe), limit 2, 2,000 shoppers making 5,000 calls.
    let app = spawn_striped_app().await;
    let sale = app.live_sale(1000, 2).await;
    let shoppers: Vec<TestShopper> = (0..2000).map(|_| app.direct_shopper()).collect();
    let calls: Vec<TestShopper> = (0..5000).map(|i| shoppers[i % 2000].clone()).collect();

    // Act
    let statuses: Vec<u16> = futures::stream::iter(calls)
        .map(|shopper| {
            let app = &app;
            async move {
                app.reserve_request(&shopper, sale, 1, None)
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(200)
        .collect()
        .await;

    // Assert: every unit held exactly once, each in its own stripe, all stripes used up.
    assert!(
        statuses.iter().all(|s| [201, 409].contains(s)),
        "only 201 or 409"
    );
    assert_eq!(statuses.iter().filter(|&&s| s == 201).count(), 1000);
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!((stock.available, stock.held, stock.sold), (0, 1000, 0));
    for (stripe, holds) in holds_by_stripe(&app, sale).await.iter().enumerate() {
        let units: i64 = holds.values().map(|h| h.quantity).sum();
        assert_eq!(units, 250, "stripe {stripe} sold its share");
    }
    // The limit is per stripe: a shopper who fell back holds at most limit × stripes,
    // and never more than the limit within one stripe.
    for holds in holds_by_stripe(&app, sale).await {
        let mut per_shopper: HashMap<ShopperId, i64> = HashMap::new();
        for hold in holds.values() {
            *per_shopper.entry(hold.owner).or_default() += hold.quantity;
        }
        assert!(per_shopper.values().all(|&n| n <= 2));
    }
    let mut total_per_shopper: HashMap<ShopperId, i64> = HashMap::new();
    for hold in holds(&app, sale).await.values() {
        *total_per_shopper.entry(hold.owner).or_default() += hold.quantity;
    }
    assert!(total_per_shopper.values().all(|&n| n <= 2 * STRIPES as i64));
    // Each shopper counts once for the waiting room, wherever it held, and so does one
    // told sold out: all 2,000 have had their turn.
    let reserved = app
        .app_state
        .sales
        .hot_state_for_tests()
        .reserved_shoppers(SaleId(sale))
        .await
        .unwrap();
    assert_eq!(reserved, 2000);
}

#[tokio::test]
async fn a_shopper_whose_home_stripe_is_sold_out_falls_back_to_the_next_stripe() {
    // Arrange: 8 units, 2 a stripe; the shopper's home stripe is 2.
    let app = spawn_striped_app().await;
    let sale = app.live_sale(8, 10).await;
    let shopper = shopper_at_home_in(&app, 2);
    let first = app.hold(&shopper, sale, 2).await;

    // Act: home (stripe 2) is now sold out.
    let second = app.reserve(&shopper, sale, 2).await;
    let second = second.expect("the next stripe has 2 free").reservation_id;
    let too_many = app.reserve(&shopper, sale, 3).await;

    // Assert: home first, then the next stripe in order; 3 units fit no single stripe
    // (2 each) although 4 are free, so they are sold out.
    assert_eq!(stripe_of(&app, sale, first).await, 2);
    assert_eq!(stripe_of(&app, sale, second).await, 3);
    too_many
        .unwrap_err()
        .assert_is(409, "sold_out", "3 units, 2 a stripe");
    assert_eq!(reservation_status(&app, &shopper, second).await, "held");
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!((stock.available, stock.held), (4, 4));
    // Stripe 3 full too: the fallback wraps around to stripe 0.
    let third = app.hold(&shopper, sale, 1).await;
    assert_eq!(stripe_of(&app, sale, third).await, 0);
    let reserved = app
        .app_state
        .sales
        .hot_state_for_tests()
        .reserved_shoppers(SaleId(sale))
        .await
        .unwrap();
    assert_eq!(reserved, 1, "one shopper, counted once over three stripes");
}

#[tokio::test]
async fn a_retried_reserve_with_the_same_key_meets_its_first_answer_after_a_fallback() {
    // Arrange: the shopper's home stripe 1 is sold out by someone else, so the first
    // reserve with key k-1 lands in stripe 2.
    let app = spawn_striped_app().await;
    let sale = app.live_sale(8, 2).await;
    let neighbour = shopper_at_home_in(&app, 1);
    let blocking = app.hold(&neighbour, sale, 2).await;
    let shopper = shopper_at_home_in(&app, 1);
    let (status, first) = app
        .reserve_with_key(&shopper, sale, 1, "k-1")
        .await
        .unwrap();
    assert_eq!(status, 201);
    let first = first.reservation_id;
    assert_eq!(stripe_of(&app, sale, first).await, 2);

    // Act: home has free units again, then the shopper retries with the same key.
    let released = app.release(&neighbour, blocking).await;
    assert_eq!(released.status(), 204);
    let again = app.reserve_with_key(&shopper, sale, 1, "k-1").await;
    let other_body = app.reserve_with_key(&shopper, sale, 2, "k-1").await;

    // Assert: the first answer, not a second hold in the home stripe; another body 422.
    let (status, again) = again.expect("the first answer again");
    assert_eq!((status.as_u16(), again.reservation_id), (200, first));
    other_body
        .unwrap_err()
        .assert_is(422, "idempotency_key_reused", "same key, another body");
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!((stock.available, stock.held), (7, 1));
}

#[tokio::test]
async fn release_expiry_and_checkout_work_on_a_stripe_other_than_zero() {
    let app = spawn_striped_app().await;
    let sale = app.live_sale(40, 2).await;
    let (releaser, sleeper, buyer) = (
        shopper_at_home_in(&app, 1),
        shopper_at_home_in(&app, 2),
        shopper_at_home_in(&app, 3),
    );
    let released = app.hold(&releaser, sale, 2).await;
    let expiring = app.hold(&sleeper, sale, 1).await;
    let bought = app.hold(&buyer, sale, 2).await;
    assert_eq!(
        (
            stripe_of(&app, sale, released).await,
            stripe_of(&app, sale, expiring).await,
            stripe_of(&app, sale, bought).await,
        ),
        (1, 2, 3)
    );

    // Act
    let release = app.release(&releaser, released).await;
    let checkout = app.checkout(&buyer, bought, Some("pay-1"), "tok_ok").await;
    app.clock.advance(Duration::from_secs(601));
    app.app_state.sales.sweep_once(100).await.unwrap();

    // Assert: each ended in its own stripe, whose units are back (or sold) there.
    assert_eq!(release.status(), 204);
    assert_eq!(checkout.status(), 201, "{}", checkout.text().await.unwrap());
    assert_eq!(
        reservation_status(&app, &releaser, released).await,
        "released"
    );
    assert_eq!(
        reservation_status(&app, &sleeper, expiring).await,
        "expired"
    );
    assert_eq!(
        reservation_status(&app, &buyer, bought).await,
        "checked_out"
    );
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!((stock.available, stock.held, stock.sold), (38, 0, 2));
    let sold: Vec<i32> =
        sqlx::query_scalar("select unit_no from order_units where sale_id = $1 order by 1")
            .bind(sale)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert!(
        sold.iter().all(|u| (u - 1) % STRIPES as i32 == 3),
        "units {sold:?} came from stripe 3"
    );
    let free = free_units_by_stripe(&app, sale).await;
    assert_eq!(
        free.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![10, 10, 10, 8]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_wiped_then_rebuilt_loads_every_stripe_once_from_postgres() {
    // Arrange: holds in every stripe, and unit 7 (stripe 2) sold in Postgres.
    let app = spawn_striped_app().await;
    let sale = app.live_sale(100, 2).await;
    for _ in 0..10 {
        assert_eq!(
            app.reserve_request(&app.direct_shopper(), sale, 2, None)
                .await
                .status(),
            201
        );
    }
    insert_order(&app, sale, Uuid::new_v4(), &[7])
        .await
        .unwrap();

    // Act: Redis loses everything, then 60 shoppers reserve at once.
    app.wipe_redis().await;
    let statuses = app.reserve_at_once(sale, 60).await;

    // Assert: one load of each stripe (no unit twice, each in its stripe), the sold unit
    // is not free, and every new reservation succeeded.
    assert!(statuses.iter().all(|&s| s == 201), "{statuses:?}");
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!(
        (stock.total, stock.sold, stock.held, stock.available),
        (100, 1, 60, 39)
    );
    assert!(!free_units(&app, sale).await.contains(&7));
}

#[tokio::test]
async fn losing_one_stripe_rebuilds_that_stripe_and_keeps_the_holds_of_the_others() {
    // Arrange: one hold in each stripe.
    let app = spawn_striped_app().await;
    let sale = app.live_sale(20, 2).await;
    let mut held = Vec::new();
    for stripe in 0..STRIPES {
        let shopper = shopper_at_home_in(&app, stripe);
        let id = app.hold(&shopper, sale, 2).await;
        held.push((shopper, id));
    }

    // Act: stripe 2's keys vanish (its cluster node came back empty); a reserve that
    // reaches it triggers the rebuild.
    let lost = app
        .app_state
        .sales
        .hot_state_for_tests()
        .stripe_keys(Stripe::new(SaleId(sale), 2));
    let _: i64 = redis::cmd("DEL")
        .arg(lost.all().as_slice())
        .query_async(&mut app.app_state.redis.clone())
        .await
        .unwrap();
    let newcomer = shopper_at_home_in(&app, 2);
    let response = app.reserve_request(&newcomer, sale, 1, None).await;

    // Assert: only stripe 2's hold is gone (410 at checkout); the others still hold.
    assert_eq!(response.status(), 201);
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!((stock.total, stock.held, stock.available), (20, 7, 13));
    for (stripe, (shopper, id)) in held.iter().enumerate() {
        let checkout = app.checkout(shopper, *id, Some("pay"), "tok_ok").await;
        if stripe == 2 {
            assert_problem(checkout, 410, "reservation_expired").await;
        } else {
            assert_eq!(checkout.status(), 201, "stripe {stripe}");
        }
    }
}

#[tokio::test]
async fn added_units_join_their_stripe_and_retired_units_come_from_every_stripe_in_turn() {
    let app = spawn_striped_app().await;
    let sale = app.live_sale(10, 2).await;

    // Act: units 11..=16 are added, then 8 free units are retired.
    assert_eq!(app.change_stock(sale, 6).await.status(), 200);
    let after_add = free_units_by_stripe(&app, sale).await;
    assert_eq!(app.change_stock(sale, -8).await.status(), 200);

    // Assert: 16 units at 4 a stripe; retiring took 2 from each stripe.
    assert_eq!(
        after_add.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![4, 4, 4, 4]
    );
    let after_retire = free_units_by_stripe(&app, sale).await;
    assert_eq!(
        after_retire.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 2, 2]
    );
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!((stock.total, stock.available), (8, 8));
    let view = app.admin_get_sale(sale).await;
    assert_eq!((view.stock.total, view.stock.available), (8, 8));
    // More than is free is refused whole, and nothing moves.
    assert_problem(
        app.change_stock(sale, -9).await,
        409,
        "insufficient_free_stock",
    )
    .await;
    assert_eq!(assert_stock_conserved(&app, sale).await.available, 8);
}

/// A shopper who holds two units in two stripes of a limit-1 sale: the neighbour
/// blocks the shopper's home stripe, the shopper falls back, the neighbour lets go and
/// the shopper reserves at home too. Returns the shopper and both holds.
async fn shopper_over_the_limit(app: &TestApp, sale: Uuid) -> (TestShopper, Uuid, Uuid) {
    let neighbour = shopper_at_home_in(app, 0);
    let blocking = app.hold(&neighbour, sale, 1).await;
    let shopper = shopper_at_home_in(app, 0);
    let away = app.hold(&shopper, sale, 1).await;
    let released = app.release(&neighbour, blocking).await;
    assert_eq!(released.status(), 204);
    let home = app.hold(&shopper, sale, 1).await;
    assert_ne!(
        stripe_of(app, sale, away).await,
        stripe_of(app, sale, home).await
    );
    (shopper, away, home)
}

#[tokio::test]
async fn the_per_shopper_limit_holds_for_orders_across_stripes() {
    // Arrange: 4 units (one a stripe), limit 1, a shopper holding 2 across stripes.
    let app = spawn_striped_app().await;
    let sale = app.live_sale(4, 1).await;
    let (shopper, away, home) = shopper_over_the_limit(&app, sale).await;

    // Act
    let first = app.checkout(&shopper, away, Some("pay-1"), "tok_ok").await;
    let second = app.checkout(&shopper, home, Some("pay-2"), "tok_ok").await;

    // Assert: one order; the second is refused with the reserve's code, its payment
    // voided, its hold released and its unit free for others at once.
    assert_eq!(first.status(), 201);
    assert_problem(second, 409, "per_user_limit_exceeded").await;
    assert_eq!(reservation_status(&app, &shopper, home).await, "released");
    let orders: i64 = sqlx::query_scalar("select count(*) from orders where sale_id = $1")
        .bind(sale)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!((orders, app.payments_with_status("voided").await), (1, 1));
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!((stock.available, stock.held, stock.sold), (3, 0, 1));
    // A retry with the same key gets the same refusal, not an order.
    let retry = app.checkout(&shopper, home, Some("pay-2"), "tok_ok").await;
    assert_eq!(retry.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_checkouts_over_the_limit_place_exactly_one_order() {
    // Arrange: limit 1, one shopper holding a unit in each of two stripes; 10 sales'
    // worth of races, each with both checkouts sent at once.
    let app = spawn_striped_app().await;
    for _ in 0..10 {
        let sale = app.live_sale(4, 1).await;
        let (shopper, away, home) = shopper_over_the_limit(&app, sale).await;

        // Act
        let (a, b) = tokio::join!(
            app.checkout(&shopper, away, Some("pay-away"), "tok_ok"),
            app.checkout(&shopper, home, Some("pay-home"), "tok_ok"),
        );

        // Assert: exactly one order, the other 409 per_user_limit_exceeded.
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [201, 409]);
        let bought: i64 = sqlx::query_scalar(
            "select coalesce(sum(quantity), 0)::bigint from orders where sale_id = $1 and shopper_id = $2",
        )
        .bind(sale)
        .bind(shopper.id)
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert_eq!(bought, 1);
    }
}

#[tokio::test]
async fn reservation_index_entries_without_a_stripe_are_read_as_stripe_zero() {
    // Arrange: holds under version 4 ids, as processes before addressed ids made them,
    // with the index entries they wrote: in stripe 0 the sale id alone (what an
    // unstriped deployment always wrote), in stripe 1 the sale id and the stripe.
    let app = spawn_striped_app().await;
    let sale = app.live_sale(8, 2).await;
    let (zero, one) = (shopper_at_home_in(&app, 0), shopper_at_home_in(&app, 1));
    let projection = app.app_state.sales.hot_state_for_tests();
    let mut redis = app.app_state.redis.clone();
    let mut legacy = Vec::new();
    for (shopper, entry) in [(&zero, sale.to_string()), (&one, format!("{sale}:1"))] {
        let id = ReservationId::new();
        let outcome = projection
            .reserve(
                SaleId(sale),
                app.clock_now().timestamp_millis(),
                id,
                ShopperId(shopper.id),
                1,
                None,
            )
            .await
            .unwrap();
        assert!(matches!(outcome, ReserveOutcome::Held { id: held, .. } if held == id));
        let _: () = redis::cmd("SET")
            .arg(format!("{}:resv:{{{}}}", app.prefix, id))
            .arg(entry)
            .query_async(&mut redis)
            .await
            .unwrap();
        legacy.push((shopper, id.0));
    }

    // Act / Assert: the legacy index still finds them, in their stripes.
    for (shopper, id) in legacy {
        assert_eq!(reservation_status(&app, shopper, id).await, "held");
        let released = app.release(shopper, id).await;
        assert_eq!(released.status(), 204);
    }
    assert_eq!(assert_stock_conserved(&app, sale).await.available, 8);
}

#[tokio::test]
async fn a_process_with_another_stripe_count_refuses_a_sale_loaded_with_four() {
    // Arrange: a striped sale, and another process of the same deployment that was
    // started with the default of one stripe.
    let app = spawn_striped_app().await;
    let sale = app.live_sale(8, 2).await;
    let mut config = app.config.clone();
    config.stock_stripes = 1;
    config.bind_addr = "127.0.0.1:0".parse().unwrap();
    let misconfigured = crate::helpers::start_app(config, app.provider.clone()).await;

    // Act
    let response = misconfigured
        .reserve_request(&misconfigured.direct_shopper(), sale, 1, None)
        .await;

    // Assert: it refuses (500) instead of reading stripe 0 as the whole sale, and the
    // sale is untouched.
    assert_eq!(response.status(), 500);
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!((stock.total, stock.available), (8, 8));
    let distinct: HashSet<i64> = free_units(&app, sale).await.into_iter().collect();
    assert_eq!(distinct.len(), 8);
}
