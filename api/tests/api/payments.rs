//! Money exactly once when an answer is lost: every payment attempt is recorded before
//! the provider is called, a retry reuses its id, and the completer settles what no
//! request finished — against the real Postgres and Redis and the simulated provider's
//! faults ("answer lost after the work is done", "voids fail N times").

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use test_support::eventually_within;
use uuid::Uuid;

use crate::helpers::{
    answer, assert_problem, spawn_app_with, start_app, Order, TestApp, TestShopper,
};
use reservations::ids::{OrderId, ReservationId, SaleId, ShopperId};
use reservations::payment::PaymentGateway;
use reservations::projection::Stripe;

/// An app whose completer looks every 50 ms and judges attempts after `grace` (at
/// least twice the payment timeout, here 250 ms).
async fn spawn_completing_app(grace: Duration) -> TestApp {
    spawn_app_with(|c| {
        c.payment_timeout = Duration::from_millis(250);
        c.completer_interval = Duration::from_millis(50);
        c.completer_grace = grace;
    })
    .await
}

/// Sets the simulator's faults (fast, otherwise healthy).
async fn faults(app: &TestApp, lost_answer_rate: f64, fail_voids: u32) {
    let response = app
        .request(
            Method::PUT,
            "/v1/ops/payment-simulator",
            Some(&app.operator_token()),
        )
        .json(&json!({
            "latency_ms": { "p50": 1, "p99": 2 },
            "failure_rate": 0.0,
            "lost_answer_rate": lost_answer_rate,
            "fail_voids": fail_voids,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// The provider's ledger: every payment's attempt id and status (ours: `authorized`,
/// `captured`, `voided`, `declined`), oldest first.
async fn ledger(app: &TestApp) -> Vec<(Uuid, String)> {
    app.provider
        .simulator
        .intents()
        .into_iter()
        .map(|intent| {
            let status = match intent.status.as_str() {
                "requires_capture" => "authorized",
                "succeeded" => "captured",
                "canceled" => "voided",
                _ => "declined",
            };
            let attempt = intent.attempt_id.and_then(|a| a.parse().ok());
            (
                attempt.expect("flashsale's payments carry their attempt"),
                status.to_owned(),
            )
        })
        .collect()
}

/// The payment attempts of a reservation: (id, state, checks).
async fn attempts(app: &TestApp, reservation: Uuid) -> Vec<(Uuid, String, i32)> {
    sqlx::query_as(
        "select id, state, checks from payment_attempts where reservation_id = $1 order by created_at",
    )
    .bind(reservation)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// Whether the one payment of the ledger reads voided and its attempt says so.
async fn voided(app: &TestApp, reservation: Uuid) -> bool {
    let payments = ledger(app).await;
    let attempts = attempts(app, reservation).await;
    payments.len() == 1
        && payments[0].1 == "voided"
        && attempts.len() == 1
        && attempts[0].1 == "voided"
}

/// Waits until the completer has voided the reservation's one payment and its attempt
/// says so.
async fn assert_voided_eventually(app: &TestApp, reservation: Uuid) {
    assert!(
        eventually_within(Duration::from_secs(15), || voided(app, reservation)).await,
        "voided: ledger {:?}, attempts {:?}",
        ledger(app).await,
        attempts(app, reservation).await
    );
}

/// A shopper holding one unit whose checkout (key `pay-1`) the provider authorized
/// but whose answer was lost (503); faults set to `lost_answer_rate` 1.0 and
/// `fail_voids` as given, left in place.
async fn a_lost_answer(app: &TestApp, fail_voids: u32) -> (TestShopper, Uuid) {
    let sale = app.live_sale(10, 2).await;
    let shopper = app.shopper().await;
    let reservation = app.hold(&shopper, sale, 1).await;
    faults(app, 1.0, fail_voids).await;
    let lost = app
        .checkout(&shopper, reservation, Some("pay-1"), "tok_ok")
        .await;
    assert_problem(lost, 503, "payment_unavailable").await;
    (shopper, reservation)
}

/// Heals the provider and retries the checkout with key `pay-1`: it places the one
/// order of the reservation, which is returned.
async fn retry_places_the_order(app: &TestApp, shopper: &TestShopper, reservation: Uuid) -> Order {
    faults(app, 0.0, 0).await;
    let retry = app
        .checkout(shopper, reservation, Some("pay-1"), "tok_ok")
        .await;
    assert_eq!(retry.status(), 201);
    let order: Order = answer(retry).await.unwrap();
    assert_eq!(app.orders_for(reservation).await, 1);
    order
}

#[tokio::test]
async fn an_authorization_whose_answer_is_lost_and_is_retried_with_the_same_key_places_one_order_and_authorizes_once(
) {
    // Arrange: a grace long enough that the completer leaves the retry alone.
    let app = spawn_completing_app(Duration::from_secs(5)).await;

    // Act: the provider authorizes, the answer is lost; the shopper retries.
    let (shopper, reservation) = a_lost_answer(&app, 0).await;
    let order = retry_places_the_order(&app, &shopper, reservation).await;

    // Assert: one order, standing on the one authorization the first try made.
    let payments = ledger(&app).await;
    assert_eq!(payments.len(), 1, "authorized once: {payments:?}");
    assert_eq!(payments[0].0, order.order_id, "the order is the attempt");
    assert!(
        ["authorized", "captured"].contains(&payments[0].1.as_str()),
        "{payments:?}"
    );
    let attempts = attempts(&app, reservation).await;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(
        (attempts[0].0, attempts[0].1.as_str()),
        (order.order_id, "committed")
    );
}

#[tokio::test]
async fn an_authorization_whose_answer_is_lost_and_never_retried_is_voided_by_the_completer() {
    // Arrange: every answer is lost (the voids' are not).
    let app = spawn_completing_app(Duration::from_millis(200)).await;

    // Act: the answer is lost and the shopper never comes back.
    let (_, reservation) = a_lost_answer(&app, 0).await;

    // Assert: the completer voids the authorization and confirms it by asking.
    assert_voided_eventually(&app, reservation).await;
    assert_eq!(app.orders_for(reservation).await, 0);
}

#[tokio::test]
async fn a_retry_after_the_attempt_was_voided_pays_under_a_fresh_attempt_once() {
    // Arrange: the answer is lost, the shopper does not retry in time, and the
    // completer voids the authorization.
    let app = spawn_completing_app(Duration::from_millis(200)).await;
    let (shopper, reservation) = a_lost_answer(&app, 0).await;
    assert_voided_eventually(&app, reservation).await;

    // Act: the shopper's client retries with the same key, as a 503 invites.
    let order = retry_places_the_order(&app, &shopper, reservation).await;

    // Assert: one order, on a second authorization; the first stays voided (the card
    // never carries two holds at once), and a further retry replays the order.
    let attempts = attempts(&app, reservation).await;
    let states: Vec<&str> = attempts
        .iter()
        .map(|(_, state, _)| state.as_str())
        .collect();
    assert_eq!(states, ["voided", "committed"], "{attempts:?}");
    assert_eq!(attempts[1].0, order.order_id);
    let payments = ledger(&app).await;
    assert_eq!(payments.len(), 2, "{payments:?}");
    assert_eq!(payments[0].1, "voided");
    assert_eq!(payments[1].0, order.order_id);
    let again = app
        .checkout(&shopper, reservation, Some("pay-1"), "tok_ok")
        .await;
    let replayed: Order = answer(again).await.unwrap();
    assert_eq!(replayed.order_id, order.order_id);
}

#[tokio::test]
async fn a_void_that_fails_three_times_is_retried_until_voided_even_across_a_restart() {
    // Arrange: the authorization's answer is lost; the next three voids fail.
    let first = spawn_completing_app(Duration::from_millis(200)).await;
    let (_, reservation) = a_lost_answer(&first, 3).await;

    // Act: two voids fail in the first process; it stops; another process on the same
    // database and Redis prefix takes over, where the third void fails too.
    assert!(
        eventually_within(Duration::from_secs(15), || async {
            attempts(&first, reservation)
                .await
                .first()
                .is_some_and(|(_, _, checks)| *checks >= 2)
        })
        .await,
        "two checks in the first process: {:?}",
        attempts(&first, reservation).await
    );
    let (config, provider) = (first.config.clone(), first.provider.clone());
    drop(first);
    let second = start_app(config, provider).await;
    faults(&second, 0.0, 1).await;

    // Assert
    assert!(
        eventually_within(Duration::from_secs(20), || voided(&second, reservation)).await,
        "voided: ledger {:?}, attempts {:?}",
        ledger(&second).await,
        attempts(&second, reservation).await
    );
    let (_, _, checks) = attempts(&second, reservation).await[0].clone();
    assert!(
        checks >= 4,
        "three failed voids, then the one confirmed: {checks}"
    );
    assert_eq!(second.orders_for(reservation).await, 0);
}

#[tokio::test]
async fn an_attempt_whose_hold_is_still_committing_is_left_to_its_request_until_the_reconciler_hands_it_over(
) {
    // Arrange: a checkout whose process died after authorizing: its hold is committing
    // under its attempt, the attempt is due, the provider holds the money. The
    // background completer is slowed down so the test drives it.
    let app = spawn_app_with(|c| c.completer_interval = Duration::from_secs(60)).await;
    let sale = app.live_sale(10, 2).await;
    let shopper = app.shopper().await;
    let reservation = app.hold(&shopper, sale, 1).await;
    let attempt = OrderId::new();
    app.app_state
        .sales
        .hot_state_for_tests()
        .begin_checkout(
            Stripe::first(SaleId(sale)),
            ReservationId(reservation),
            ShopperId(shopper.id),
            app.clock_now().timestamp_millis(),
            attempt,
        )
        .await
        .unwrap();
    sqlx::query(
        "insert into payment_attempts (id, reservation_id, shopper_id, state, next_check_at) \
         values ($1, $2, $3, 'authorizing', now())",
    )
    .bind(attempt.0)
    .bind(reservation)
    .bind(shopper.id)
    .execute(&app.db)
    .await
    .unwrap();
    app.provider.authorize(attempt.0, 12_900).await;
    let checkout = &app.app_state.checkout;

    // Act 1: the completer finds it due while the hold is still committing.
    checkout
        .complete_once(Duration::from_millis(10))
        .await
        .unwrap();

    // Assert 1: not judged; the money stays authorized.
    assert_eq!(
        ledger(&app).await,
        vec![(attempt.0, "authorized".to_owned())]
    );
    assert_eq!(attempts(&app, reservation).await[0].1, "authorizing");

    // Act 2: the reconciler presumes the process dead; the completer settles it.
    assert_eq!(checkout.reconcile_once(Duration::ZERO).await.unwrap(), 1);
    checkout
        .complete_once(Duration::from_millis(10))
        .await
        .unwrap();

    // Assert 2: voided, confirmed, no order.
    assert!(
        voided(&app, reservation).await,
        "{:?}",
        attempts(&app, reservation).await
    );
    assert_eq!(app.orders_for(reservation).await, 0);
}

#[tokio::test]
async fn an_attempt_captured_without_an_order_is_refunded_by_the_completer_once() {
    // Arrange: an attempt in doubt whose payment the provider captured, though no
    // order exists (a capture sent by mistake, an operator's slip): the money was taken.
    // It is not due until the test drives the completer (whose background loop ticks
    // once at start).
    let app = spawn_app_with(|c| c.completer_interval = Duration::from_secs(60)).await;
    let (attempt, reservation, shopper) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    sqlx::query(
        "insert into payment_attempts (id, reservation_id, shopper_id, state, next_check_at) \
         values ($1, $2, $3, 'void_pending', now() + interval '1 hour')",
    )
    .bind(attempt)
    .bind(reservation)
    .bind(shopper)
    .execute(&app.db)
    .await
    .unwrap();
    let payment = app.provider.authorize(attempt, 12_900).await;
    app.provider.gateway.capture(&payment).await.unwrap();

    // Act: the completer refunds it but the refund's answer is lost; it runs again.
    let healthy = app.provider.lose_every_answer();
    let due = || {
        sqlx::query("update payment_attempts set next_check_at = now() where id = $1")
            .bind(attempt)
            .execute(&app.db)
    };
    due().await.unwrap();
    let checkout = &app.app_state.checkout;
    // A backoff long enough that this pass does not retry it.
    checkout
        .complete_once(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(attempts(&app, reservation).await[0].1, "void_pending");
    app.provider.simulator.set_settings(healthy);
    due().await.unwrap();
    checkout
        .complete_once(Duration::from_millis(10))
        .await
        .unwrap();

    // Assert: refunded in full, once; the attempt says so and is settled.
    let intents = app.provider.simulator.intents();
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].amount_refunded, 12_900, "{intents:?}");
    assert_eq!(attempts(&app, reservation).await[0].1, "refunded");
}
