//! Holds: the stock invariants under real concurrency and real Redis faults, and every
//! error code of API.md's reservation section.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{assert_case, assert_problem, spawn_app, Expect, Stock, TestApp, TestShopper};
use reservations::ids::SaleId;
use reservations::projection::HoldRecord;

/// Every hold of a sale (of every stripe), read straight from Redis.
pub async fn holds(app: &TestApp, sale: Uuid) -> HashMap<String, HoldRecord> {
    holds_by_stripe(app, sale)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The holds of each stripe of a sale, stripe 0 first.
pub async fn holds_by_stripe(app: &TestApp, sale: Uuid) -> Vec<HashMap<String, HoldRecord>> {
    let mut stripes = Vec::new();
    for keys in app
        .app_state
        .sales
        .hot_state_for_tests()
        .all_stripe_keys(SaleId(sale))
    {
        let raw: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(keys.holds())
            .query_async(&mut app.app_state.redis.clone())
            .await
            .unwrap();
        stripes.push(
            raw.into_iter()
                .map(|(id, json)| (id, serde_json::from_str(&json).unwrap()))
                .collect(),
        );
    }
    stripes
}

/// The free unit numbers of a sale, stripe after stripe.
pub async fn free_units(app: &TestApp, sale: Uuid) -> Vec<i64> {
    free_units_by_stripe(app, sale)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The free unit numbers of each stripe of a sale, stripe 0 first.
pub async fn free_units_by_stripe(app: &TestApp, sale: Uuid) -> Vec<Vec<i64>> {
    let mut stripes = Vec::new();
    for keys in app
        .app_state
        .sales
        .hot_state_for_tests()
        .all_stripe_keys(SaleId(sale))
    {
        stripes.push(
            redis::cmd("LRANGE")
                .arg(keys.free())
                .arg(0)
                .arg(-1)
                .query_async(&mut app.app_state.redis.clone())
                .await
                .unwrap(),
        );
    }
    stripes
}

/// Stock conservation in the Redis view: every unit is in exactly one place (free,
/// held, sold) and the counters agree with the places. Returns the stock.
pub async fn assert_stock_conserved(app: &TestApp, sale: Uuid) -> reservations::sales::StockView {
    let stock = app
        .app_state
        .sales
        .hot_state_for_tests()
        .stock(SaleId(sale))
        .await
        .unwrap()
        .expect("state present");
    assert_eq!(
        stock.available + stock.held + stock.sold,
        stock.total,
        "available + held + sold = total: {stock:?}"
    );
    let stripes = app.app_state.sales.hot_state_for_tests().stripe_count() as i64;
    let in_stripe = |unit: i64, stripe: usize| (unit - 1).rem_euclid(stripes) == stripe as i64;
    let mut free = Vec::new();
    let mut seen: HashSet<i64> = HashSet::new();
    for (stripe, units) in free_units_by_stripe(app, sale)
        .await
        .into_iter()
        .enumerate()
    {
        for unit in units {
            assert!(seen.insert(unit), "unit {unit} is free twice");
            assert!(
                in_stripe(unit, stripe),
                "unit {unit} free in stripe {stripe}"
            );
            free.push(unit);
        }
    }
    let mut held = 0;
    for (stripe, holds) in holds_by_stripe(app, sale).await.into_iter().enumerate() {
        for (id, hold) in holds {
            if matches!(hold.status.as_str(), "held" | "committing") {
                held += hold.quantity;
                for unit in &hold.units {
                    assert!(
                        seen.insert(*unit),
                        "unit {unit} of hold {id} is also free or in another hold"
                    );
                    assert!(
                        in_stripe(*unit, stripe),
                        "unit {unit} held in stripe {stripe}"
                    );
                }
            }
        }
    }
    assert_eq!(free.len() as i64, stock.available);
    assert_eq!(held, stock.held);
    stock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_thousand_concurrent_reserves_hold_each_unit_once_and_respect_the_limit() {
    // Arrange: 1,000 units, limit 2, 2,000 shoppers making 5,000 calls of 1 or 2 units.
    let app = spawn_app().await;
    let sale = app.live_sale(1000, 2).await;
    let shoppers: Vec<TestShopper> = (0..2000).map(|_| app.direct_shopper()).collect();
    let calls: Vec<(TestShopper, i64)> = (0..5000)
        .map(|i| (shoppers[i % 2000].clone(), 1 + (i as i64 % 2)))
        .collect();

    // Act
    let results: Vec<(Uuid, i64, u16)> = futures::stream::iter(calls)
        .map(|(shopper, qty)| {
            let app = &app;
            async move {
                (
                    shopper.id,
                    qty,
                    app.reserve_request(&shopper, sale, qty, None)
                        .await
                        .status()
                        .as_u16(),
                )
            }
        })
        .buffer_unordered(200)
        .collect()
        .await;

    // Assert: exactly 1,000 units held, none twice, nobody above the limit.
    let held_by_responses: i64 = results.iter().filter(|r| r.2 == 201).map(|r| r.1).sum();
    assert_eq!(held_by_responses, 1000);
    assert!(
        results.iter().all(|r| [201, 409].contains(&r.2)),
        "only 201 or 409"
    );
    let mut per_shopper: HashMap<String, i64> = HashMap::new();
    for hold in holds(&app, sale).await.values() {
        *per_shopper.entry(hold.owner.to_string()).or_default() += hold.quantity;
    }
    assert!(
        per_shopper.values().all(|&n| n <= 2),
        "a shopper holds more than the limit"
    );
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!((stock.available, stock.held, stock.sold), (0, 1000, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_and_expiry_racing_return_each_hold_exactly_once() {
    // Arrange: 300 one-unit holds whose deadline has passed.
    let app = spawn_app().await;
    let sale = app.live_sale(300, 1).await;
    let mut held = Vec::new();
    for _ in 0..300 {
        let shopper = app.direct_shopper();
        let hold = app
            .reserve(&shopper, sale, 1)
            .await
            .expect("a unit is free");
        held.push((shopper, hold.reservation_id));
    }
    app.clock.advance(Duration::from_secs(601));

    // Act: every owner releases while several sweepers expire the same holds.
    let releases =
        futures::future::join_all(held.iter().map(|(shopper, id)| app.release(shopper, *id)));
    let sweeps = futures::future::join_all((0..4).map(|_| app.app_state.sales.sweep_once(7)));
    let (releases, sweeps) = tokio::join!(releases, sweeps);

    // Assert: each hold ended once — released or expired — and every unit is free once.
    let released = releases.iter().filter(|r| r.status() == 204).count() as i64;
    let expired: i64 = sweeps.into_iter().map(|r| r.unwrap()).sum();
    let background_expired = holds(&app, sale)
        .await
        .values()
        .filter(|h| h.status == "expired")
        .count() as i64;
    assert_eq!(
        released + background_expired,
        300,
        "released {released}, expired {background_expired}"
    );
    assert!(expired <= background_expired);
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!((stock.available, stock.held), (300, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_wiped_mid_run_rebuilds_once_from_postgres_and_keeps_every_unit_once() {
    // Arrange: a sale with some holds, and one unit already sold in Postgres.
    let app = spawn_app().await;
    let sale = app.live_sale(100, 2).await;
    for _ in 0..10 {
        assert_eq!(
            app.reserve_request(&app.direct_shopper(), sale, 2, None)
                .await
                .status(),
            201
        );
    }
    let buyer = Uuid::new_v4();
    insert_order(&app, sale, buyer, &[7]).await.unwrap();

    // Act: Redis loses everything, then 60 shoppers reserve at once.
    app.wipe_redis().await;
    let statuses = app.reserve_at_once(sale, 60).await;

    // Assert: rebuilt once (counted, and no unit listed twice), holds lost with Redis
    // are gone, the sold unit is not free, and every new reservation succeeded.
    assert!(statuses.iter().all(|&s| s == 201), "{statuses:?}");
    assert_eq!(app.rebuilds(sale).await, 1);
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!(
        (stock.total, stock.sold, stock.held, stock.available),
        (100, 1, 60, 39)
    );
    let free = free_units(&app, sale).await;
    assert!(!free.contains(&7), "a sold unit came back as free");
}

/// Inserts an order with its units, as checkout does; returns the database error if
/// Postgres refuses it.
pub async fn insert_order(
    app: &TestApp,
    sale: Uuid,
    shopper: Uuid,
    units: &[i32],
) -> Result<Uuid, sqlx::Error> {
    let order = Uuid::new_v4();
    let mut tx = app.db.begin().await?;
    sqlx::query(
        "insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, currency, payment_auth_id) \
         values ($1, $2, $3, $4, $5, 0, 'EUR', 'test')",
    )
    .bind(order)
    .bind(sale)
    .bind(shopper)
    .bind(Uuid::new_v4())
    .bind(units.len() as i32)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "insert into order_units (sale_id, unit_no, order_id) select $1, unnest($2::int[]), $3",
    )
    .bind(sale)
    .bind(units)
    .bind(order)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(order)
}

#[tokio::test]
async fn postgres_refuses_to_sell_a_unit_twice_even_when_redis_hands_it_out_twice() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 2).await;
    insert_order(&app, sale, Uuid::new_v4(), &[3])
        .await
        .unwrap();

    let second = insert_order(&app, sale, Uuid::new_v4(), &[3])
        .await
        .unwrap_err();

    let db_error = second.as_database_error().expect("a database error");
    assert_eq!(db_error.code().as_deref(), Some("23505"));
    assert_eq!(db_error.constraint(), Some("order_units_pkey"));
    let sold: i64 = sqlx::query_scalar("select count(*) from order_units where sale_id = $1")
        .bind(sale)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(
        sold, 1,
        "confirmed order units ≤ total: the duplicate left nothing behind"
    );
}

#[tokio::test]
async fn reserving_returns_a_held_reservation_the_owner_can_read_and_release() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 2).await;
    let shopper = app.shopper().await;

    let hold = app
        .reserve(&shopper, sale, 2)
        .await
        .expect("units are free");
    assert_eq!(hold.status, "held");
    assert_eq!(hold.quantity, 2);
    assert_eq!(hold.sale_id, sale);
    let id = hold.reservation_id;

    assert_eq!(app.reservation(&shopper, id).await, Ok(hold.clone()));
    assert_eq!(app.release(&shopper, id).await.status(), 204);
    let read = app
        .reservation(&shopper, id)
        .await
        .expect("the owner reads it");
    assert_eq!(read.status, "released");
    assert_eq!(
        app.admin_get_sale(sale).await.stock,
        Stock::new(10, 10, 0, 0)
    );
}

#[tokio::test]
async fn an_expired_hold_reports_expired_and_its_units_return() {
    let app = spawn_app().await;
    let sale = app.live_sale(5, 1).await;
    let shopper = app.shopper().await;
    let hold = app
        .reserve(&shopper, sale, 1)
        .await
        .expect("a unit is free");

    app.clock.advance(Duration::from_secs(601));
    app.app_state.sales.sweep_once(100).await.unwrap();

    let read = app
        .reservation(&shopper, hold.reservation_id)
        .await
        .expect("the owner reads it");
    assert_eq!(read.status, "expired");
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!(stock.available, 5);
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_hold_and_another_body_is_422() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 2).await;
    let shopper = app.shopper().await;

    let (status, first) = app
        .reserve_with_key(&shopper, sale, 1, "k-1")
        .await
        .unwrap();
    assert_eq!(status, 201);
    let (status, again) = app
        .reserve_with_key(&shopper, sale, 1, "k-1")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(again.reservation_id, first.reservation_id);

    app.reserve_with_key(&shopper, sale, 2, "k-1")
        .await
        .unwrap_err()
        .assert_is(422, "idempotency_key_reused", "same key, another body");
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!(stock.held, 1);
}

#[tokio::test]
async fn reserving_without_a_valid_admission_token_is_403_not_admitted() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 2).await;
    let other_sale = app.live_sale(10, 2).await;
    let shopper = app.shopper().await;
    let someone_else = app.shopper().await;
    let path = format!("/v1/sales/{sale}/reservations");
    let expired = waiting_room::AdmissionTokens::new(
        app.app_state.auth.hmac_secret(),
        app.app_state.auth.issuer(),
    )
    .issue(
        shopper.id,
        sale,
        chrono::Utc::now() - chrono::Duration::hours(1),
        Duration::from_secs(60),
    )
    .0;
    let cases = [
        ("no token", None),
        ("not a token", Some("not-a-token".to_owned())),
        ("expired", Some(expired)),
        (
            "another shopper's",
            Some(app.admission_token(someone_else.id, sale)),
        ),
        (
            "another sale's",
            Some(app.admission_token(shopper.id, other_sale)),
        ),
    ];

    for (case, token) in cases {
        let mut request = app
            .request(Method::POST, &path, Some(&shopper.token))
            .json(&json!({ "quantity": 1 }));
        if let Some(token) = token {
            request = request.header("x-admission-token", token);
        }
        let response = request.send().await.unwrap();
        assert_case(case, response, Expect::Problem(403, "not_admitted")).await;
    }
    assert_eq!(assert_stock_conserved(&app, sale).await.held, 0);
}

#[tokio::test]
async fn reserve_error_codes_follow_the_contract() {
    let app = spawn_app().await;
    let sale = app.live_sale(3, 2).await;
    let (first, second, third) = (
        app.shopper().await,
        app.shopper().await,
        app.shopper().await,
    );
    let unknown = Uuid::new_v4();
    // Run in order: each row sees the stock the rows above it left (3 units, limit 2).
    let cases = [
        (
            "zero units",
            &first,
            sale,
            0,
            Expect::Problem(422, "invalid_quantity"),
        ),
        (
            "negative units",
            &first,
            sale,
            -1,
            Expect::Problem(422, "invalid_quantity"),
        ),
        (
            "above any limit",
            &first,
            sale,
            101,
            Expect::Problem(422, "invalid_quantity"),
        ),
        ("up to the limit", &first, sale, 2, Expect::Status(201)),
        (
            "past the limit",
            &first,
            sale,
            1,
            Expect::Problem(409, "per_user_limit_exceeded"),
        ),
        (
            "more than is left",
            &second,
            sale,
            2,
            Expect::Problem(409, "sold_out"),
        ),
        ("the last unit", &second, sale, 1, Expect::Status(201)),
        (
            "nothing left",
            &third,
            sale,
            1,
            Expect::Problem(409, "sold_out"),
        ),
        (
            "an unknown sale",
            &first,
            unknown,
            1,
            Expect::Problem(404, "sale_not_found"),
        ),
    ];

    for (case, shopper, sale, quantity, expected) in cases {
        let response = app.reserve_request(shopper, sale, quantity, None).await;
        assert_case(case, response, expected).await;
    }
}

#[tokio::test]
async fn reserving_in_a_scheduled_or_paused_sale_is_409_sale_not_live() {
    let app = spawn_app().await;
    let scheduled = app.scheduled_sale().await;
    let paused = app.live_sale(5, 1).await;
    assert_eq!(app.transition(paused, "pause").await.status(), 200);
    let shopper = app.shopper().await;

    for (case, sale) in [("scheduled", scheduled), ("paused", paused)] {
        app.reserve(&shopper, sale, 1)
            .await
            .unwrap_err()
            .assert_is(409, "sale_not_live", case);
    }
}

#[tokio::test]
async fn another_shoppers_reservation_is_404_and_a_double_release_is_409() {
    let app = spawn_app().await;
    let sale = app.live_sale(5, 1).await;
    let owner = app.shopper().await;
    let stranger = app.shopper().await;
    let hold = app.reserve(&owner, sale, 1).await.expect("a unit is free");
    let path = format!("/v1/reservations/{}", hold.reservation_id);

    for method in [Method::GET, Method::DELETE] {
        let response = app
            .request(method, &path, Some(&stranger.token))
            .send()
            .await
            .unwrap();
        assert_problem(response, 404, "reservation_not_found").await;
    }
    let unknown = app.request(
        Method::GET,
        &format!("/v1/reservations/{}", Uuid::new_v4()),
        Some(&owner.token),
    );
    assert_problem(unknown.send().await.unwrap(), 404, "reservation_not_found").await;
    let malformed = app.request(Method::GET, "/v1/reservations/nope", Some(&owner.token));
    assert_problem(
        malformed.send().await.unwrap(),
        404,
        "reservation_not_found",
    )
    .await;

    assert_eq!(app.release(&owner, hold.reservation_id).await.status(), 204);
    let again = app.release(&owner, hold.reservation_id).await;
    assert_problem(again, 409, "reservation_not_held").await;
    assert_eq!(assert_stock_conserved(&app, sale).await.available, 5);
}

#[tokio::test]
async fn an_ended_sale_is_swept_until_its_last_hold_returns_then_no_longer_visited() {
    let app = spawn_app().await;
    let sale = app.live_sale(5, 1).await;
    let shopper = app.direct_shopper();
    app.hold(&shopper, sale, 1).await;
    assert_eq!(app.transition(sale, "end").await.status(), 200);
    let tracked = || async {
        app.app_state
            .sales
            .hot_state_for_tests()
            .swept_sales()
            .await
            .unwrap()
            .contains(&SaleId(sale))
    };
    app.app_state.sales.sweep_once(100).await.unwrap();
    assert!(tracked().await, "ended, but a hold is still out");
    app.clock.advance(Duration::from_secs(3 * 3600));

    app.app_state.sales.sweep_once(100).await.unwrap();

    assert!(
        !tracked().await,
        "nothing left to return: the sweeper stops visiting it"
    );
    assert_eq!(
        assert_stock_conserved(&app, sale).await.available,
        5,
        "the last hold came back first"
    );
}

/// How many of the sale's Redis keys (every stripe) exist.
async fn sale_keys_present(app: &TestApp, sale: Uuid) -> i64 {
    let mut exists = redis::cmd("EXISTS");
    for keys in app
        .app_state
        .sales
        .hot_state_for_tests()
        .all_stripe_keys(SaleId(sale))
    {
        for key in keys.all() {
            exists.arg(key);
        }
    }
    exists
        .query_async(&mut app.app_state.redis.clone())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_ended_sale_s_keys_go_after_the_retention_and_the_sale_stays_readable() {
    // Arrange: a sale with one order and one hold still out when the merchant ends it;
    // a retention of ten minutes.
    let app = crate::helpers::spawn_app_with(|c| {
        c.ended_sale_retention = Duration::from_secs(600);
    })
    .await;
    let sale = app.live_sale(5, 2).await;
    let shopper = app.direct_shopper();
    let bought = app.hold(&shopper, sale, 1).await;
    let order = app
        .place_order(&shopper, bought, "k", "tok_ok")
        .await
        .expect("an order");
    app.hold(&shopper, sale, 1).await;
    assert_eq!(app.transition(sale, "end").await.status(), 200);
    let sales = &app.app_state.sales;

    // Act / Assert: the hold out keeps the keys; once it has expired, they stay for the
    // retention, then the sweep deletes every one of them.
    sales.sweep_once(100).await.unwrap();
    app.clock.advance(Duration::from_secs(601)); // the hold's TTL
    sales.sweep_once(100).await.unwrap();
    assert!(sale_keys_present(&app, sale).await > 0, "settled just now");
    app.clock.advance(Duration::from_secs(599));
    sales.sweep_once(100).await.unwrap();
    assert!(
        sale_keys_present(&app, sale).await > 0,
        "within the retention"
    );
    app.clock.advance(Duration::from_secs(2));
    sales.sweep_once(100).await.unwrap();
    assert_eq!(sale_keys_present(&app, sale).await, 0, "past the retention");

    // Postgres kept everything: the sale, its stock and its order still read the same.
    assert_eq!(app.admin_get_sale(sale).await.stock, Stock::new(5, 4, 0, 1));
    let public = app.get(&format!("/v1/sales/{sale}"), None).await;
    assert_eq!(public.status(), 200);
    assert_eq!(
        app.order(&shopper, order.order_id).await.unwrap().status,
        "confirmed"
    );
}

#[tokio::test]
async fn a_sale_whose_end_moves_later_keeps_its_keys_past_the_old_retention() {
    // Arrange: a sale past its end (its purge is scheduled), then the merchant moves
    // the end later.
    let app = crate::helpers::spawn_app_with(|c| {
        c.ended_sale_retention = Duration::from_secs(600);
    })
    .await;
    let sale = app.live_sale(3, 1).await;
    app.clock.advance(Duration::from_secs(2 * 3600 + 1));
    app.app_state.sales.sweep_once(100).await.unwrap();
    let later = app.clock_now() + chrono::Duration::hours(2);
    let patched = app
        .patch_sale(sale, json!({ "ends_at": later }), None)
        .await;
    assert_eq!(patched.status(), 200);
    let present = sale_keys_present(&app, sale).await;
    assert!(present >= 2, "meta and free units at least");

    // Act: the old retention passes.
    app.clock.advance(Duration::from_secs(601));
    app.app_state.sales.sweep_once(100).await.unwrap();

    // Assert: the live sale kept its state and still sells.
    assert_eq!(sale_keys_present(&app, sale).await, present);
    let shopper = app.direct_shopper();
    assert_eq!(
        app.reserve_request(&shopper, sale, 1, None).await.status(),
        201
    );
}

#[tokio::test]
async fn a_shopper_told_sold_out_counts_for_the_waiting_room_as_having_had_their_turn() {
    // Arrange: one unit, held by the first shopper.
    let app = spawn_app().await;
    let sale = app.live_sale(1, 1).await;
    let (buyer, late) = (app.direct_shopper(), app.direct_shopper());
    app.hold(&buyer, sale, 1).await;

    // Act
    let refused = app.reserve(&late, sale, 1).await;

    // Assert: the late shopper is no longer a buyer to come, so a unit that returns
    // later is offered to the line rather than kept for them.
    refused
        .unwrap_err()
        .assert_is(409, "sold_out", "the late shopper");
    let reached = app
        .app_state
        .sales
        .hot_state_for_tests()
        .reserved_shoppers(SaleId(sale))
        .await
        .unwrap();
    assert_eq!(reached, 2);
}
