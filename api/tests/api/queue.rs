//! The waiting room over HTTP: the line's answers, admission tokens, sold out for
//! everyone at once. The controller's response to checkout is in `controller.rs`; the
//! line's positions, the draw and the controllers' lease are tested through the domain
//! in `waiting-room/tests/room`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use test_support::eventually_within;
use uuid::Uuid;

use crate::helpers::{
    assert_problem, sale_body_with, spawn_app, spawn_app_with, TestApp, TestShopper,
};

async fn join(app: &TestApp, shopper: &TestShopper, sale: Uuid) -> reqwest::Response {
    app.request(
        Method::POST,
        &format!("/v1/sales/{sale}/queue"),
        Some(&shopper.token),
    )
    .send()
    .await
    .unwrap()
}

async fn me(app: &TestApp, shopper: &TestShopper, sale: Uuid) -> Value {
    let response = app
        .get(&format!("/v1/sales/{sale}/queue/me"), Some(&shopper.token))
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn stats(app: &TestApp, sale: Uuid) -> Value {
    app.merchant(Method::GET, &format!("/v1/admin/sales/{sale}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn scheduled_sale(app: &TestApp, total: i64, starts_in: chrono::Duration) -> Uuid {
    let now = app.clock_now();
    let sale = app
        .create_sale(sale_body_with(json!({
            "stock": { "total": total }, "per_user_limit": 1,
            "starts_at": now + starts_in, "ends_at": now + chrono::Duration::hours(3),
        })))
        .await;
    sale["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_full_line_answers_503_queue_full_with_retry_after() {
    let app = spawn_app_with(|c| c.queue_cap = 3).await;
    let sale = scheduled_sale(&app, 10, chrono::Duration::minutes(5)).await;
    for _ in 0..3 {
        assert_eq!(join(&app, &app.direct_shopper(), sale).await.status(), 201);
    }

    let response = join(&app, &app.direct_shopper(), sale).await;

    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 503, "queue_full").await;
}

#[tokio::test]
async fn leaving_ended_sales_and_strangers_get_clear_answers() {
    let app = spawn_app().await;
    let sale = scheduled_sale(&app, 10, chrono::Duration::minutes(5)).await;
    let shopper = app.direct_shopper();
    let path = format!("/v1/sales/{sale}/queue/me");
    assert_problem(
        app.get(&path, Some(&shopper.token)).await,
        404,
        "not_in_queue",
    )
    .await;
    assert_eq!(join(&app, &shopper, sale).await.status(), 201);

    assert_eq!(
        app.request(Method::DELETE, &path, Some(&shopper.token))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    assert_problem(
        app.get(&path, Some(&shopper.token)).await,
        404,
        "not_in_queue",
    )
    .await;
    let ended = app
        .merchant(Method::POST, &format!("/v1/admin/sales/{sale}/end"))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await; // the line's sale cache
    assert_problem(join(&app, &shopper, sale).await, 409, "sale_closed").await;
    assert_problem(
        join(&app, &shopper, Uuid::new_v4()).await,
        404,
        "sale_not_found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admitted_shopper_gets_a_token_that_reserves_for_them_only() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 1).await;
    let shopper = app.direct_shopper();
    assert_eq!(join(&app, &shopper, sale).await.status(), 201);

    let admitted = eventually_within(Duration::from_secs(10), || async {
        me(&app, &shopper, sale).await["state"] == "admitted"
    })
    .await;

    assert!(admitted, "the controller admits the first shopper");
    let ticket = me(&app, &shopper, sale).await;
    let token = ticket["admission_token"].as_str().unwrap();
    assert!(ticket["admission_expires_at"].is_string());
    let reserve = |who: &TestShopper| {
        app.request(
            Method::POST,
            &format!("/v1/sales/{sale}/reservations"),
            Some(&who.token),
        )
        .header("x-admission-token", token)
        .json(&json!({ "quantity": 1 }))
        .send()
    };
    assert_problem(
        reserve(&app.direct_shopper()).await.unwrap(),
        403,
        "not_admitted",
    )
    .await;
    assert_eq!(reserve(&shopper).await.unwrap().status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_last_unit_sells_every_waiting_ticket_turns_sold_out_within_a_tick() {
    let app = spawn_app().await;
    let sale = app.live_sale(1, 1).await;
    let waiting: Vec<TestShopper> = (0..40).map(|_| app.direct_shopper()).collect();
    for shopper in &waiting {
        join(&app, shopper, sale).await;
    }
    let buyer = app.direct_shopper();
    let hold = app.hold(&buyer, sale, 1).await;
    let order = app.checkout(&buyer, hold, Some("k"), "tok_ok").await;
    assert_eq!(order.status(), 201);

    // One controller tick is 500 ms; allow two.
    tokio::time::sleep(Duration::from_millis(1000)).await;

    for shopper in &waiting {
        assert_eq!(me(&app, shopper, sale).await["state"], "sold_out");
    }
    assert_eq!(
        stats(&app, sale).await["admission"]["last_change_reason"],
        "sold out: nothing left and no hold can return"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_redis_is_emptied_the_place_token_gives_an_admitted_shopper_their_place_back() {
    // Arrange: an admitted shopper, and one waiting behind.
    let app = spawn_app_with(|c| c.queue_cap = 1_000).await;
    let sale = app.live_sale(10, 1).await;
    let first = app.direct_shopper();
    let second = app.direct_shopper();
    assert_eq!(join(&app, &first, sale).await.status(), 201);
    let admitted = eventually_within(Duration::from_secs(10), || async {
        me(&app, &first, sale).await["state"] == "admitted"
    })
    .await;
    assert!(admitted);
    assert_eq!(join(&app, &second, sale).await.status(), 201);
    let before = me(&app, &first, sale).await;
    let waiting = me(&app, &second, sale).await;
    let statement = |t: &Value| t["place_token"].as_str().unwrap().to_owned();
    let path = format!("/v1/sales/{sale}/queue/me");

    // Act: Redis restarts empty.
    app.wipe_redis().await;

    // Assert: without the statement nobody is in line; with it, the place is back,
    // still admitted; the admission token from before still reserves; the header is
    // read on a rejoin too, and a stranger's copy restores nothing.
    assert_problem(
        app.get(&path, Some(&first.token)).await,
        404,
        "not_in_queue",
    )
    .await;
    let poll = |who: &TestShopper, statement: String| {
        app.request(Method::GET, &path, Some(&who.token))
            .header("x-place-token", statement)
            .send()
    };
    assert_problem(
        poll(&app.direct_shopper(), statement(&before))
            .await
            .unwrap(),
        404,
        "not_in_queue",
    )
    .await;
    let after: Value = poll(&first, statement(&before))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["ticket_id"], before["ticket_id"]);
    assert_eq!(after["position"], before["position"]);
    assert_eq!(after["state"], "admitted");
    let rejoined = app
        .request(
            Method::POST,
            &format!("/v1/sales/{sale}/queue"),
            Some(&second.token),
        )
        .header("x-place-token", statement(&waiting))
        .send()
        .await
        .unwrap();
    assert_eq!(rejoined.status(), 200, "the same ticket, not a new one");
    let rejoined: Value = rejoined.json().await.unwrap();
    assert_eq!(rejoined["ticket_id"], waiting["ticket_id"]);
    assert_eq!(rejoined["position"], waiting["position"]);
    let reserve = app
        .request(
            Method::POST,
            &format!("/v1/sales/{sale}/reservations"),
            Some(&first.token),
        )
        .header(
            "x-admission-token",
            before["admission_token"].as_str().unwrap(),
        )
        .json(&json!({ "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(reserve.status(), 201);
}
