//! A draw nobody controls (issue #16, point 4): a sale names a drand quicknet round,
//! the draw mixes its verified randomness in, and anyone recomputes the served order
//! from what `GET /draw` publishes. Real HTTP, real Redis and Postgres; the drand
//! endpoint is a small local server serving a real recorded quicknet round.
//!
//! The recorded round is from 2023, and a sale created through the API must name a
//! round due after its start, so the tests that use it write the setting straight into
//! Postgres after creating the sale (the setting's own rules have their test here).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::helpers::*;

/// quicknet round 657413 as drand published it.
const ROUND: u64 = 657_413;
const SIGNATURE: &str = "b713718a38ae728dfd477991af2822e08d2f305e47718cef9f7848ce4050e7be41076862b98fad56e91a6b85b89cd97b";
const RANDOMNESS: &str = "fc1873a13f3545aeade8401532ef5519920652eee6b0d2b19ca12643b87b3587";
/// quicknet round 123's signature: valid, but for another round.
const ROUND_123_SIGNATURE: &str = "b75c69d0b72a5d906e854e808ba7e2accb1542ac355ae486d591aa9d43765482e26cd02df835d3546d23c4b13e0dfc92";
const CHAIN_HASH: &str = "52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971";
const GENESIS: i64 = 1_692_803_367;

/// A sale starting in a minute whose draw names `round` (written directly: see above).
async fn beacon_sale(app: &TestApp, round: u64) -> Uuid {
    let sale = app.sale_starting_in_a_minute().await;
    sqlx::query("update sales set draw_beacon = $1 where id = $2")
        .bind(json!({ "chain": "drand-quicknet", "round": round }))
        .bind(sale)
        .execute(&app.db)
        .await
        .unwrap();
    sale
}

/// `n` shoppers pre-queued in `sale`; their ticket ids.
async fn prequeue(app: &TestApp, sale: Uuid, n: usize) -> Vec<(TestShopper, String)> {
    let mut joined = Vec::new();
    for _ in 0..n {
        let shopper = app.direct_shopper();
        let (_, ticket) = app.join_queue(&shopper, sale).await.expect("join");
        assert_eq!(ticket.state, "prequeue");
        joined.push((shopper, ticket.ticket_id.to_string()));
    }
    joined
}

async fn draw(app: &TestApp, sale: Uuid) -> Value {
    let response = app.get(&format!("/v1/sales/{sale}/draw"), None).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The served order and each ticket's published address group.
async fn drawn_tickets(app: &TestApp, sale: Uuid) -> (Vec<String>, HashMap<String, String>) {
    let response = app
        .get(&format!("/v1/sales/{sale}/draw/tickets"), None)
        .await;
    let body: Value = response.json().await.unwrap();
    let tickets: Vec<String> = serde_json::from_value(body["tickets"].clone()).unwrap();
    let groups: Vec<String> = serde_json::from_value(body["groups"].clone()).unwrap();
    let group_of = tickets.iter().cloned().zip(groups).collect();
    (tickets, group_of)
}

async fn post_beacon(app: &TestApp, sale: Uuid, round: u64, signature: &str) -> reqwest::Response {
    app.admin_sale(Method::POST, sale, "/draw/beacon")
        .json(&json!({ "round": round, "signature": signature }))
        .send()
        .await
        .unwrap()
}

async fn stored_beacons(app: &TestApp) -> i64 {
    let (n,): (i64,) = sqlx::query_as("select count(*) from draw_beacons")
        .fetch_one(&app.db)
        .await
        .unwrap();
    n
}

/// The README's recipe in code, written apart from the server's: commitment, beacon
/// randomness = SHA-256(signature), then the keys, the rounds and their order.
fn recompute(draw: &Value, tickets: &[String], group_of: &HashMap<String, String>) -> Vec<String> {
    let seed = hex::decode(draw["seed"].as_str().unwrap()).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&seed)),
        draw["commitment"].as_str().unwrap(),
        "the seed matches its commitment"
    );
    let randomness = match &draw["beacon"] {
        Value::Null => Vec::new(),
        beacon => {
            let signature = hex::decode(beacon["signature"].as_str().unwrap()).unwrap();
            let randomness = Sha256::digest(&signature).to_vec();
            assert_eq!(
                hex::encode(&randomness),
                beacon["randomness"].as_str().unwrap()
            );
            randomness
        }
    };
    crate::draw_rounds::recipe(&seed, &randomness, tickets, group_of)
}

/// A drand relay on a loopback port: serves `ROUND` as recorded and, for every other
/// round, round 123's signature (a valid point, not that round's signature: what a
/// broken or hostile relay might serve); counts the requests.
struct Relay {
    url: String,
    asked: Arc<AtomicUsize>,
}

async fn relay() -> Relay {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::routing::get;
    let asked = Arc::new(AtomicUsize::new(0));
    async fn public(
        State(asked): State<Arc<AtomicUsize>>,
        Path((chain, round)): Path<(String, u64)>,
    ) -> Result<axum::Json<Value>, StatusCode> {
        asked.fetch_add(1, Ordering::SeqCst);
        if chain != CHAIN_HASH {
            return Err(StatusCode::NOT_FOUND);
        }
        let signature = if round == ROUND {
            SIGNATURE
        } else {
            ROUND_123_SIGNATURE
        };
        let randomness = hex::encode(Sha256::digest(hex::decode(signature).unwrap()));
        Ok(axum::Json(
            json!({ "round": round, "randomness": randomness, "signature": signature }),
        ))
    }
    let app = axum::Router::new()
        .route("/{chain}/public/{round}", get(public))
        .with_state(asked.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Relay { url, asked }
}

/// Polls `GET /draw` until `done` holds (the controller draws on its own tick).
async fn draw_when(app: &TestApp, sale: Uuid, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let info = draw(app, sale).await;
        if done(&info) {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the draw never got there: {}", draw(app, sale).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recorded_quicknet_round_verifies_is_published_with_its_signature_and_the_recipe_reproduces_the_served_order(
) {
    // Arrange: a sale naming the recorded round, 40 shoppers pre-queued; no relay, so
    // the merchant posts the round.
    let app = spawn_app_with(|c| c.drand_url = None).await;
    let sale = beacon_sale(&app, ROUND).await;
    let shoppers = prequeue(&app, sale, 40).await;
    let before = draw(&app, sale).await;
    assert_eq!(before["beacon"], Value::Null, "null until known");
    assert_eq!(before["draw_beacon"]["round"], ROUND);
    assert_eq!(before["draw_beacon"]["status"], "pending");

    // Act: the merchant posts the round; the sale starts; a late shopper arrives.
    let posted = post_beacon(&app, sale, ROUND, SIGNATURE).await;
    assert_eq!(posted.status(), 200);
    let posted: Value = posted.json().await.unwrap();
    assert_eq!(posted["randomness"], RANDOMNESS);
    let again = post_beacon(&app, sale, ROUND, SIGNATURE).await;
    assert_eq!(again.status(), 200, "posting the recorded round again");
    app.clock.advance(Duration::from_secs(61));
    let late = app.direct_shopper();
    let (_, late_ticket) = app.join_queue(&late, sale).await.unwrap();

    // Assert: /draw publishes the round with its signature, and the recipe recomputes
    // the served order from the seed, the beacon, the digest and the ticket ids.
    assert_eq!(
        late_ticket.position,
        Some(41),
        "later arrivals follow the drawn"
    );
    let info = draw(&app, sale).await;
    assert_eq!(
        info["beacon"],
        json!({ "chain": "drand-quicknet", "round": ROUND, "randomness": RANDOMNESS,
                "signature": SIGNATURE })
    );
    assert_eq!(info["draw_beacon"]["status"], "verified");
    assert!(info["algorithm"]
        .as_str()
        .unwrap()
        .contains("beacon_randomness"));
    let (served, groups) = drawn_tickets(&app, sale).await;
    let ids: Vec<String> = shoppers.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(recompute(&info, &ids, &groups), served);
    for (shopper, id) in &shoppers {
        let ticket = app.my_ticket(shopper, sale).await.unwrap();
        let place = served.iter().position(|t| t == id).unwrap() as i64 + 1;
        assert_eq!(ticket.position, Some(place));
    }
    let mut seed_alone = info.clone();
    seed_alone["beacon"] = Value::Null;
    assert_ne!(
        recompute(&seed_alone, &ids, &groups),
        served,
        "the beacon moved the order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_beacon_is_refused_with_invalid_beacon_and_nothing_is_stored() {
    let app = spawn_app_with(|c| c.drand_url = None).await;
    let sale = beacon_sale(&app, ROUND).await;
    let mut flipped = hex::decode(SIGNATURE).unwrap();
    flipped[30] ^= 0x02;
    let cases = [
        ("a flipped byte", ROUND, hex::encode(flipped)),
        (
            "another round's signature",
            ROUND,
            ROUND_123_SIGNATURE.to_owned(),
        ),
        (
            "a round the sale does not name",
            123,
            ROUND_123_SIGNATURE.to_owned(),
        ),
        ("not hex", ROUND, "zz".repeat(48)),
        ("too short", ROUND, SIGNATURE[..90].to_owned()),
    ];
    for (case, round, signature) in cases {
        let response = post_beacon(&app, sale, round, &signature).await;
        let problem: Problem = answer::<Value>(response).await.unwrap_err();
        problem.assert_is(422, "invalid_beacon", case);
    }
    assert_eq!(stored_beacons(&app).await, 0, "nothing stored");
    assert_eq!(draw(&app, sale).await["beacon"], Value::Null);
    assert_eq!(draw(&app, sale).await["draw_beacon"]["status"], "pending");

    // A sale that names no round takes none; another merchant's sale is not found.
    let plain = app.scheduled_sale().await;
    let response = post_beacon(&app, plain, ROUND, SIGNATURE).await;
    answer::<Value>(response)
        .await
        .unwrap_err()
        .assert_is(422, "invalid_beacon", "no round named");
    let response = app
        .request(
            Method::POST,
            &format!("/v1/admin/sales/{sale}/draw/beacon"),
            Some(&app.other_merchant_token()),
        )
        .json(&json!({ "round": ROUND, "signature": SIGNATURE }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(stored_beacons(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_draw_fetches_its_round_from_the_configured_drand_endpoint() {
    // Arrange: a relay serving the recorded round; 12 shoppers pre-queued.
    let relay = relay().await;
    let url = relay.url.clone();
    let app = spawn_app_with(move |c| c.drand_url = Some(url)).await;
    let sale = beacon_sale(&app, ROUND).await;
    let shoppers = prequeue(&app, sale, 12).await;
    assert_eq!(
        relay.asked.load(Ordering::SeqCst),
        0,
        "nothing asked before the start"
    );

    // Act: the sale starts; a late shopper arrives.
    app.clock.advance(Duration::from_secs(61));
    let late = app.direct_shopper();
    let (_, late_ticket) = app.join_queue(&late, sale).await.unwrap();

    // Assert: the server fetched and verified the round, drew with it and publishes it.
    assert_eq!(late_ticket.position, Some(13));
    assert!(
        relay.asked.load(Ordering::SeqCst) >= 1,
        "the relay was asked"
    );
    let info = draw(&app, sale).await;
    assert_eq!(info["draw_beacon"]["status"], "verified");
    assert_eq!(info["beacon"]["signature"], SIGNATURE);
    assert_eq!(info["beacon"]["randomness"], RANDOMNESS);
    let (served, groups) = drawn_tickets(&app, sale).await;
    let ids: Vec<String> = shoppers.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(recompute(&info, &ids, &groups), served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_round_that_never_comes_holds_the_draw_until_its_bound_then_the_seed_alone_draws_and_says_so(
) {
    // Arrange: a relay that serves a signature that is not the round's; a sale (through
    // the API) naming the round due 30 s after its start.
    let relay = relay().await;
    let url = relay.url.clone();
    let app = spawn_app_with(move |c| c.drand_url = Some(url)).await;
    let now = app.clock_now();
    let starts_at = now + chrono::Duration::minutes(1);
    let round = ((starts_at.timestamp() + 30 - GENESIS) / 3 + 1) as u64;
    let created = app
        .create_sale(sale_body_with(json!({
            "starts_at": starts_at, "ends_at": now + chrono::Duration::hours(2),
            "draw_beacon": { "chain": "drand-quicknet", "round": round },
        })))
        .await;
    assert_eq!(created["draw_beacon"]["round"], round);
    let sale = sale_id(&created);
    let shoppers = prequeue(&app, sale, 10).await;

    // Act 1: past the start and the round's time, well within the bound.
    app.clock.advance(Duration::from_secs(60 + 30 + 60));
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Assert 1: nobody is placed, the relay's forgery is not used, a shopper arriving
    // now still joins the pre-queue, and the wait is published.
    assert!(
        relay.asked.load(Ordering::SeqCst) >= 1,
        "the relay was asked"
    );
    assert_eq!(
        stored_beacons(&app).await,
        0,
        "a forged round is not stored"
    );
    let late = app.direct_shopper();
    let (_, late_ticket) = app.join_queue(&late, sale).await.unwrap();
    assert_eq!(
        (late_ticket.state.as_str(), late_ticket.position),
        ("prequeue", None)
    );
    for (shopper, _) in &shoppers {
        let ticket = app.my_ticket(shopper, sale).await.unwrap();
        assert_eq!((ticket.state.as_str(), ticket.position), ("prequeue", None));
    }
    let waiting = draw(&app, sale).await;
    assert_eq!(waiting["draw_beacon"]["status"], "pending");
    assert_eq!(waiting["seed"], Value::Null);
    let fallback_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(waiting["draw_beacon"]["fallback_at"].clone()).unwrap();
    let due_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(waiting["draw_beacon"]["due_at"].clone()).unwrap();
    assert_eq!(fallback_at - due_at, chrono::Duration::minutes(10));

    // Act 2: past the bound.
    app.clock.advance(Duration::from_secs(10 * 60));

    // Assert 2: the draw used the seed alone, says so, and the recipe reproduces it.
    let info = draw_when(&app, sale, |d| {
        d["draw_beacon"]["status"] == "missed" && d["seed"] != Value::Null
    })
    .await;
    assert_eq!(info["beacon"], Value::Null);
    assert!(!info["algorithm"].as_str().unwrap().contains("beacon"));
    let (served, groups) = drawn_tickets(&app, sale).await;
    let mut ids: Vec<String> = shoppers.iter().map(|(_, id)| id.clone()).collect();
    ids.push(late_ticket.ticket_id.to_string());
    assert_eq!(
        served.len(),
        11,
        "the shopper who came while it waited was drawn too"
    );
    assert_eq!(recompute(&info, &ids, &groups), served);
    // The first drawn may be any of the eleven, the late shopper included.
    let late_id = late_ticket.ticket_id.to_string();
    let first = shoppers
        .iter()
        .map(|(s, id)| (s, id))
        .chain(std::iter::once((&late, &late_id)))
        .find(|(_, id)| **id == served[0])
        .map(|(s, _)| s)
        .unwrap();
    assert_eq!(app.my_ticket(first, sale).await.unwrap().position, Some(1));
}

#[tokio::test]
async fn the_draw_beacon_setting_names_a_quicknet_round_due_after_the_start_and_is_frozen_at_it() {
    let app = spawn_app_with(|c| c.drand_url = None).await;
    let now = app.clock_now();
    let starts_at = now + chrono::Duration::minutes(1);
    let due_round = |secs_after_start: i64| {
        ((starts_at.timestamp() + secs_after_start - GENESIS) / 3 + 1) as u64
    };
    let body = |beacon: Value| {
        sale_body_with(json!({
            "starts_at": starts_at, "ends_at": now + chrono::Duration::hours(2),
            "draw_beacon": beacon,
        }))
    };
    for (case, beacon, field) in [
        (
            "due before the start",
            json!({ "chain": "drand-quicknet", "round": due_round(-30) }),
            "draw_beacon.round",
        ),
        (
            "another chain",
            json!({ "chain": "drand-mainnet", "round": due_round(60) }),
            "draw_beacon.chain",
        ),
    ] {
        let response = app
            .merchant(Method::POST, "/v1/admin/sales")
            .json(&body(beacon))
            .send()
            .await
            .unwrap();
        let problem = answer::<Value>(response).await.unwrap_err();
        problem.assert_is(422, "invalid_field", case);
        assert!(problem.detail.contains(field), "{case}: {}", problem.detail);
    }
    let created = app.create_sale(body(Value::Null)).await;
    assert_eq!(created["draw_beacon"], Value::Null);
    let sale = sale_id(&created);
    let named = json!({ "chain": "drand-quicknet", "round": due_round(90) });
    let response = app
        .patch_sale(sale, json!({ "draw_beacon": named }), None)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["draw_beacon"],
        named
    );
    let moved = app
        .patch_sale(
            sale,
            json!({ "starts_at": starts_at + chrono::Duration::minutes(5) }),
            None,
        )
        .await;
    answer::<Value>(moved).await.unwrap_err().assert_is(
        422,
        "invalid_field",
        "a start moved past the round",
    );

    app.clock.advance(Duration::from_secs(61));
    let later = json!({ "chain": "drand-quicknet", "round": due_round(600) });
    let response = app
        .patch_sale(sale, json!({ "draw_beacon": later }), None)
        .await;
    answer::<Value>(response).await.unwrap_err().assert_is(
        409,
        "sale_locked",
        "changed after the start",
    );
    let response = app
        .patch_sale(sale, json!({ "draw_beacon": null }), None)
        .await;
    answer::<Value>(response).await.unwrap_err().assert_is(
        409,
        "sale_locked",
        "removed after the start",
    );
    let unchanged = app
        .patch_sale(sale, json!({ "draw_beacon": named }), None)
        .await;
    assert_eq!(
        unchanged.status(),
        200,
        "naming the same round again changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_round_posted_after_the_draw_fell_back_is_refused_and_the_fallback_stands() {
    // Arrange: the recorded round is long past its bound and nothing fetches it.
    let app = spawn_app_with(|c| c.drand_url = None).await;
    let sale = beacon_sale(&app, ROUND).await;
    let shoppers = prequeue(&app, sale, 5).await;

    // Act: the sale starts (the draw falls back at once); then the merchant posts it.
    app.clock.advance(Duration::from_secs(61));
    let late = app.direct_shopper();
    let (_, late_ticket) = app.join_queue(&late, sale).await.unwrap();
    let response = post_beacon(&app, sale, ROUND, SIGNATURE).await;

    // Assert: 409, and /draw keeps publishing the seed-only draw it served.
    assert_eq!(late_ticket.position, Some(6));
    answer::<Value>(response).await.unwrap_err().assert_is(
        409,
        "sale_locked",
        "posted after the fallback",
    );
    let info = draw(&app, sale).await;
    assert_eq!(info["draw_beacon"]["status"], "missed");
    assert_eq!(info["beacon"], Value::Null);
    let ids: Vec<String> = shoppers.iter().map(|(_, id)| id.clone()).collect();
    let (served, groups) = drawn_tickets(&app, sale).await;
    assert_eq!(recompute(&info, &ids, &groups), served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sale_nobody_prequeued_for_does_not_wait_for_its_round() {
    let app = spawn_app_with(|c| c.drand_url = None).await;
    let now = app.clock_now();
    let starts_at = now + chrono::Duration::minutes(1);
    let round = ((starts_at.timestamp() + 300 - GENESIS) / 3 + 1) as u64;
    let created = app
        .create_sale(sale_body_with(json!({
            "starts_at": starts_at, "ends_at": now + chrono::Duration::hours(2),
            "draw_beacon": { "chain": "drand-quicknet", "round": round },
        })))
        .await;
    let sale = sale_id(&created);

    app.clock.advance(Duration::from_secs(61));
    let shopper = app.direct_shopper();
    let (_, ticket) = app.join_queue(&shopper, sale).await.unwrap();

    assert_eq!(
        (ticket.state.as_str(), ticket.position),
        ("waiting", Some(1))
    );
}

#[tokio::test]
async fn the_openapi_document_describes_the_beacon_route_and_fields() {
    let app = spawn_app_with(|c| c.drand_url = None).await;
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    assert!(doc["paths"]["/v1/admin/sales/{sale_id}/draw/beacon"]["post"].is_object());
    let draw = &doc["components"]["schemas"]["DrawInfo"]["properties"];
    assert!(
        draw["beacon"].is_object() && draw["draw_beacon"].is_object(),
        "{draw}"
    );
}
