//! Checkout: a hold becomes an order exactly once, money is taken only for orders that
//! exist, and every error code of API.md's checkout section.

use std::time::Duration;

use uuid::Uuid;

use crate::helpers::{
    answer, assert_case, assert_problem, spawn_app, spawn_app_with, Expect, Money, Order, TestApp,
    TestShopper,
};
use payment_simulator::Latency;
use reservations::events::ORDER_PLACED;
use reservations::ids::{OrderId, ReservationId, SaleId, ShopperId};
use reservations::projection::Stripe;

async fn count(app: &TestApp, sql: &str, id: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn stock(app: &TestApp, sale: Uuid) -> reservations::sales::StockView {
    app.app_state
        .sales
        .hot_state_for_tests()
        .stock(SaleId(sale))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn checkout_turns_a_hold_into_a_confirmed_order() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 2).await;
    let shopper = app.shopper().await;
    let reservation = app.hold(&shopper, sale, 2).await;

    let order = app
        .place_order(&shopper, reservation, "pay-1", "tok_ok")
        .await
        .expect("the card is approved");

    assert_eq!(order.status, "confirmed");
    assert_eq!(order.quantity, 2);
    assert_eq!(order.amount, Money::eur(25800));
    assert_eq!(order.reservation_id, reservation);
    assert_eq!(order.confirmation.status, "pending");
    let id = order.order_id;
    let read = app.order(&shopper, id).await.expect("the owner reads it");
    assert_eq!(read.order_id, order.order_id);
    let mine = app.my_orders(&shopper).await.expect("the shopper's orders");
    assert_eq!(mine.items.len(), 1);
    let merchants = app.sale_orders(sale).await.expect("the sale's orders");
    assert_eq!(merchants.items[0].order_id, order.order_id);
    let reservation_view = app.reservation(&shopper, reservation).await.unwrap();
    assert_eq!(reservation_view.status, "checked_out");
    let stock = stock(&app, sale).await;
    assert_eq!((stock.available, stock.held, stock.sold), (8, 0, 2));
    assert_eq!(
        count(
            &app,
            &format!("select count(*) from outbox where aggregate_id = $1 and event_type = '{ORDER_PLACED}'"),
            id
        )
        .await,
        1
    );
    assert_eq!(app.payments_with_status("authorized").await, 1);
}

#[tokio::test]
async fn checkout_error_codes_follow_the_contract() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 5).await;
    let shopper = app.shopper().await;
    let stranger = app.shopper().await;
    let reservation = app.hold(&shopper, sale, 1).await;
    let released = app.hold(&shopper, sale, 1).await;
    app.release(&shopper, released).await;
    let expiring = app.hold(&shopper, sale, 1).await;
    let unknown = Uuid::new_v4();
    // Run in order: declined and failed attempts keep the hold, so an approved card
    // still succeeds after them, and then the hold is no longer held.
    let before_expiry = [
        (
            "no key",
            &shopper,
            reservation,
            None,
            "tok_ok",
            Expect::Problem(400, "idempotency_key_required"),
        ),
        (
            "another shopper's hold",
            &stranger,
            reservation,
            Some("k"),
            "tok_ok",
            Expect::Problem(404, "reservation_not_found"),
        ),
        (
            "an unknown hold",
            &shopper,
            unknown,
            Some("k"),
            "tok_ok",
            Expect::Problem(404, "reservation_not_found"),
        ),
        (
            "provider error",
            &shopper,
            reservation,
            Some("k-err"),
            "tok_error",
            Expect::Problem(503, "payment_unavailable"),
        ),
        (
            "declined",
            &shopper,
            reservation,
            Some("k-dec"),
            "tok_declined",
            Expect::Problem(402, "payment_declined"),
        ),
        (
            "approved after those",
            &shopper,
            reservation,
            Some("k-ok"),
            "tok_ok",
            Expect::Status(201),
        ),
        (
            "same key, another body",
            &shopper,
            reservation,
            Some("k-ok"),
            "tok_other",
            Expect::Problem(422, "idempotency_key_reused"),
        ),
        (
            "already checked out",
            &shopper,
            reservation,
            Some("k-2"),
            "tok_ok",
            Expect::Problem(409, "reservation_not_held"),
        ),
        (
            "released",
            &shopper,
            released,
            Some("k-3"),
            "tok_ok",
            Expect::Problem(409, "reservation_not_held"),
        ),
    ];

    for (case, who, hold, key, card, expected) in before_expiry {
        let response = app.checkout(who, hold, key, card).await;
        if case == "provider error" {
            assert!(
                response.headers().contains_key("retry-after"),
                "{case}: Retry-After"
            );
        }
        assert_case(case, response, expected).await;
    }
    app.clock.advance(Duration::from_secs(601));
    let response = app
        .checkout(&shopper, expiring, Some("k-4"), "tok_ok")
        .await;
    assert_case(
        "expired",
        response,
        Expect::Problem(410, "reservation_expired"),
    )
    .await;
    assert_eq!(
        app.payments_with_status("authorized").await,
        1,
        "only the approved checkout holds money"
    );
}

#[tokio::test]
async fn a_hold_lost_with_redis_state_answers_410_at_checkout() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 2).await;
    let shopper = app.shopper().await;
    let reservation = app.hold(&shopper, sale, 1).await;
    // Redis loses the sale's state; the reservation id still names its sale and stripe.
    app.wipe_redis().await;
    app.app_state.sales.rebuild(SaleId(sale)).await.unwrap(); // another request rebuilt the sale

    assert_problem(
        app.checkout(&shopper, reservation, Some("k"), "tok_ok")
            .await,
        410,
        "reservation_expired",
    )
    .await;
    assert_eq!(app.payments_with_status("authorized").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_retries_with_one_key_place_one_order_and_authorize_once() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 2).await;
    let shopper = app.shopper().await;
    let reservation = app.hold(&shopper, sale, 1).await;

    let responses = futures::future::join_all(
        (0..20).map(|_| app.checkout(&shopper, reservation, Some("same-key"), "tok_ok")),
    )
    .await;

    let mut orders = std::collections::HashSet::new();
    for response in responses {
        assert_eq!(response.status(), 201);
        let order: Order = answer(response).await.expect("an order");
        orders.insert(order.order_id);
    }
    assert_eq!(orders.len(), 1, "every retry answers the same order");
    assert_eq!(app.orders_for(reservation).await, 1);
    assert_eq!(
        app.payments_with_status("authorized").await + app.payments_with_status("captured").await,
        1,
        "one authorization"
    );
    assert_eq!(stock(&app, sale).await.sold, 1);
}

#[tokio::test]
async fn a_transaction_that_fails_after_authorization_leaves_no_order_and_voids_the_payment() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 2).await;
    let shopper = app.shopper().await;
    let reservation = app.hold(&shopper, sale, 1).await;
    // Postgres refuses the order (as a failing disk or a constraint would).
    sqlx::raw_sql(
        "create function refuse_orders() returns trigger language plpgsql as $$ begin raise exception 'refused'; end $$; \
         create trigger refuse_orders before insert on orders for each row execute function refuse_orders();",
    )
    .execute(&app.db)
    .await
    .unwrap();

    let response = app
        .checkout(&shopper, reservation, Some("k"), "tok_ok")
        .await;

    assert_problem(response, 503, "dependency_unavailable").await;
    assert_eq!(app.orders_for(reservation).await, 0);
    assert_eq!(
        app.payments_with_status("voided").await,
        1,
        "the authorization was voided"
    );
    assert_eq!(app.payments_with_status("authorized").await, 0);
    let view = app.reservation(&shopper, reservation).await.unwrap();
    assert_eq!(view.status, "held", "the hold stays until its deadline");
}

#[tokio::test]
async fn a_unit_redis_handed_out_twice_is_sold_once_and_the_second_checkout_is_409() {
    let app = spawn_app().await;
    let sale = app.live_sale(1, 1).await;
    let shopper = app.shopper().await;
    let reservation = app.hold(&shopper, sale, 1).await;
    // Another order already owns unit 1 (Redis lost that sale and handed it out again).
    let other = Uuid::new_v4();
    sqlx::query("insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, currency, payment_auth_id) values ($1, $2, $3, $4, 1, 0, 'EUR', 'x')")
        .bind(other).bind(sale).bind(Uuid::new_v4()).bind(Uuid::new_v4()).execute(&app.db).await.unwrap();
    sqlx::query("insert into order_units (sale_id, unit_no, order_id) values ($1, 1, $2)")
        .bind(sale)
        .bind(other)
        .execute(&app.db)
        .await
        .unwrap();

    let response = app
        .checkout(&shopper, reservation, Some("k"), "tok_ok")
        .await;

    assert_problem(response, 409, "unit_unavailable").await;
    assert_eq!(
        count(
            &app,
            "select count(*) from order_units where sale_id = $1",
            sale
        )
        .await,
        1
    );
    assert_eq!(app.payments_with_status("voided").await, 1);
    let stock = stock(&app, sale).await;
    assert_eq!(
        (stock.available, stock.held),
        (0, 0),
        "the sold unit is not handed out a third time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkout_racing_expiry_sells_or_frees_each_hold_never_both_never_neither() {
    let app = spawn_app().await;
    let sale = app.live_sale(60, 1).await;
    let mut holds = Vec::new();
    for _ in 0..60 {
        let shopper = app.shopper().await;
        let id = app.hold(&shopper, sale, 1).await;
        holds.push((shopper, id));
    }
    // The deadline passes while the checkouts are in flight.
    app.clock.advance(Duration::from_millis(600_000 - 30));
    let checkouts = futures::future::join_all(
        holds
            .iter()
            .map(|(shopper, id)| app.checkout(shopper, *id, Some("k"), "tok_ok")),
    );
    let expiry = async {
        for _ in 0..20 {
            app.clock.advance(Duration::from_millis(5));
            app.app_state.sales.sweep_once(10).await.unwrap();
            tokio::task::yield_now().await;
        }
    };
    let (responses, ()) = tokio::join!(checkouts, expiry);
    app.clock.advance(Duration::from_secs(1));
    app.app_state.sales.sweep_once(100).await.unwrap();

    let mut sold = 0;
    for ((shopper, id), response) in holds.iter().zip(responses) {
        let status = response.status().as_u16();
        assert!(status == 201 || status == 410, "status {status}");
        let orders = app.orders_for(*id).await;
        let view = app.reservation(shopper, *id).await.unwrap();
        match status {
            201 => assert_eq!((orders, view.status.as_str()), (1, "checked_out")),
            _ => assert_eq!((orders, view.status.as_str()), (0, "expired")),
        }
        sold += orders;
    }
    let stock = stock(&app, sale).await;
    assert_eq!(stock.sold, sold);
    assert_eq!(
        (stock.available + stock.held + stock.sold, stock.held),
        (60, 0)
    );
    assert_eq!(
        count(
            &app,
            "select count(*) from order_units where sale_id = $1",
            sale
        )
        .await,
        sold
    );
}

#[tokio::test]
async fn the_reconciler_finishes_checkouts_a_dead_process_left_committing() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 2).await;
    let projection = app.app_state.sales.hot_state_for_tests();
    let now = app.clock_now().timestamp_millis();
    // Two shoppers whose checkout process died after begin_checkout: one before its
    // transaction (payment authorized, no order), one after it (order committed).
    let (a, b) = (app.shopper().await, app.shopper().await);
    let (hold_a, hold_b) = (app.hold(&a, sale, 1).await, app.hold(&b, sale, 1).await);
    let (order_a, order_b) = (OrderId::new(), OrderId::new());
    for (shopper, id, order) in [(&a, hold_a, order_a), (&b, hold_b, order_b)] {
        projection
            .begin_checkout(
                Stripe::first(SaleId(sale)),
                ReservationId(id),
                ShopperId(shopper.id),
                now,
                order,
            )
            .await
            .unwrap();
    }
    app.provider.authorize(order_a.0, 12_900).await;
    let units: Vec<i64> = app
        .app_state
        .sales
        .hot_state_for_tests()
        .hold(Stripe::first(SaleId(sale)), ReservationId(hold_b))
        .await
        .unwrap()
        .unwrap()
        .units;
    sqlx::query("insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, currency, payment_auth_id) values ($1, $2, $3, $4, 1, 12900, 'EUR', 'x')")
        .bind(order_b.0).bind(sale).bind(b.id).bind(hold_b).execute(&app.db).await.unwrap();
    sqlx::query("insert into order_units (sale_id, unit_no, order_id) values ($1, $2, $3)")
        .bind(sale)
        .bind(units[0] as i32)
        .bind(order_b.0)
        .execute(&app.db)
        .await
        .unwrap();

    let finished = app
        .app_state
        .checkout
        .reconcile_once(Duration::ZERO)
        .await
        .unwrap();

    assert_eq!(finished, 2);
    let status = |shopper: TestShopper, id: Uuid| {
        let app = &app;
        async move {
            app.reservation(&shopper, id)
                .await
                .expect("the owner reads it")
                .status
        }
    };
    assert_eq!(
        status(a.clone(), hold_a).await,
        "held",
        "no order: back to held, to expire or be paid again"
    );
    assert_eq!(status(b.clone(), hold_b).await, "checked_out");
    assert_eq!(app.payments_with_status("voided").await, 1);
    let stock = stock(&app, sale).await;
    assert_eq!((stock.available, stock.held, stock.sold), (8, 1, 1));
}

#[tokio::test]
async fn a_retry_while_the_first_checkout_is_still_in_flight_answers_409_request_in_progress() {
    // Arrange: a provider that takes 6.5 s, longer than a retry waits for the first
    // attempt (5 s) and shorter than the request timeout (10 s).
    let app = spawn_app_with(|c| {
        c.payment_timeout = Duration::from_secs(9);
        c.payment_simulator.latency_ms = Latency {
            p50: 6_500,
            p99: 6_500,
        };
    })
    .await;
    let sale = app.live_sale(10, 1).await;
    let shopper = app.shopper().await;
    let reservation = app.hold(&shopper, sale, 1).await;

    // Act: the first attempt is in flight when the retry with its key arrives.
    let first = app.checkout(&shopper, reservation, Some("k-slow"), "tok_ok");
    let retry = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.checkout(&shopper, reservation, Some("k-slow"), "tok_ok")
            .await
    };
    let (first, retry) = tokio::join!(first, retry);

    // Assert: the retry is told to come back (not a timeout, not a second charge), and
    // a later retry gets the first attempt's order.
    assert_problem(retry, 409, "request_in_progress").await;
    assert_eq!(first.status(), 201);
    let order: Order = answer(first).await.expect("the first attempt's order");
    let replay = app
        .checkout(&shopper, reservation, Some("k-slow"), "tok_ok")
        .await;
    assert_eq!(replay.status(), 201);
    let replayed: Order = answer(replay).await.expect("the same order");
    assert_eq!(replayed.order_id, order.order_id);
}
