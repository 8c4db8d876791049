//! Every route of the line honours the sale's state (API.md v1.1, "the line"): joining
//! a paused, ended or sold-out sale, or asking it for a challenge, answers
//! `409 sale_closed` (before any proof of work is asked), tickets read `closed` or
//! `sold_out`, and an ended sale refuses reserves; and the published draw is served
//! from a cache once drawn, not recomputed per request.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_problem, sale_body_with, spawn_app, spawn_app_with, TestApp, TestShopper,
};

async fn join(app: &TestApp, who: &TestShopper, sale: Uuid) -> reqwest::Response {
    app.request(
        Method::POST,
        &format!("/v1/sales/{sale}/queue"),
        Some(&who.token),
    )
    .send()
    .await
    .unwrap()
}

async fn me(app: &TestApp, who: &TestShopper, sale: Uuid) -> Value {
    let response = app
        .get(&format!("/v1/sales/{sale}/queue/me"), Some(&who.token))
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn joining_a_paused_sale_is_409_sale_closed_before_any_proof_and_tickets_read_closed() {
    // A sale that asks for a proof: a paused sale must not answer proof_required.
    let app = spawn_app_with(|c| c.proof_difficulty_bits = 8).await;
    let sale = app.live_sale(10, 1).await;
    let holder = app.direct_shopper();
    let challenge: Value = app
        .request(
            Method::POST,
            &format!("/v1/sales/{sale}/challenge"),
            Some(&holder.token),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = challenge["challenge"].as_str().unwrap();
    let bits = challenge["difficulty_bits"].as_u64().unwrap() as u32;
    let proof = format!("{text}:{}", flashsale::http::proof::solve(text, bits));
    let joined = app
        .request(
            Method::POST,
            &format!("/v1/sales/{sale}/queue"),
            Some(&holder.token),
        )
        .header("x-join-proof", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), 201);

    assert_eq!(app.transition(sale, "pause").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await; // the line's sale cache

    assert_problem(
        join(&app, &app.direct_shopper(), sale).await,
        409,
        "sale_closed",
    )
    .await;
    assert_problem(join(&app, &holder, sale).await, 409, "sale_closed").await;
    assert_eq!(me(&app, &holder, sale).await["state"], "closed");
    let challenge = app
        .request(
            Method::POST,
            &format!("/v1/sales/{sale}/challenge"),
            Some(&holder.token),
        )
        .send()
        .await
        .unwrap();
    assert_problem(challenge, 409, "sale_closed").await;
}

#[tokio::test]
async fn an_ended_sale_refuses_joins_and_reserves_and_its_tickets_read_closed() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 1).await;
    let holder = app.direct_shopper();
    assert_eq!(join(&app, &holder, sale).await.status(), 201);
    let admitted = app.direct_shopper();
    let token = app.admission_token(admitted.id, sale);

    assert_eq!(app.transition(sale, "end").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await; // the line's sale cache

    assert_problem(
        join(&app, &app.direct_shopper(), sale).await,
        409,
        "sale_closed",
    )
    .await;
    assert_eq!(me(&app, &holder, sale).await["state"], "closed");
    let reserve = app
        .request(
            Method::POST,
            &format!("/v1/sales/{sale}/reservations"),
            Some(&admitted.token),
        )
        .header("x-admission-token", token)
        .json(&json!({ "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert_problem(reserve, 409, "sale_not_live").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joining_a_sold_out_sale_is_409_sale_closed_and_tickets_read_sold_out() {
    let app = spawn_app().await;
    let sale = app.live_sale(1, 1).await;
    let waiting = app.direct_shopper();
    assert_eq!(join(&app, &waiting, sale).await.status(), 201);
    let buyer = app.direct_shopper();
    let hold = app.hold(&buyer, sale, 1).await;
    assert_eq!(
        app.checkout(&buyer, hold, Some("k"), "tok_ok")
            .await
            .status(),
        201
    );

    let sold_out = test_support::eventually_within(Duration::from_secs(5), || async {
        me(&app, &waiting, sale).await["state"] == "sold_out"
    })
    .await;

    assert!(sold_out, "the controller declares the sale sold out");
    assert_problem(
        join(&app, &app.direct_shopper(), sale).await,
        409,
        "sale_closed",
    )
    .await;
}

#[tokio::test]
async fn the_drawn_tickets_are_served_from_a_cache_once_drawn() {
    let app = spawn_app().await;
    let now = app.clock_now();
    let sale: Uuid = app
        .create_sale(sale_body_with(json!({
            "stock": { "total": 10 }, "per_user_limit": 1,
            "starts_at": now + chrono::Duration::minutes(1),
            "ends_at": now + chrono::Duration::hours(2),
        })))
        .await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for _ in 0..5 {
        assert_eq!(join(&app, &app.direct_shopper(), sale).await.status(), 201);
    }
    let path = format!("/v1/sales/{sale}/draw/tickets");
    let before: Value = app.get(&path, None).await.json().await.unwrap();
    assert_eq!(before, json!({ "tickets": [] }));
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(join(&app, &app.direct_shopper(), sale).await.status(), 201); // draws

    let first = app.get(&path, None).await;
    assert_eq!(first.status(), 200);
    assert!(first.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["tickets"].as_array().unwrap().len(), 5);
    // The recorded order is changed behind the app's back: the answer does not move,
    // so it is not read (or rendered) again per request.
    sqlx::query("update line_marks set drawn_tickets = '{}' where sale_id = $1")
        .bind(sale)
        .execute(&app.db)
        .await
        .unwrap();
    let again: Value = app.get(&path, None).await.json().await.unwrap();
    assert_eq!(again, first);
}
