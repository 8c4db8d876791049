//! The door of the line (API.md v1.1, "the line"): a join costs a fresh, single-use
//! proof of work; refusals are `403 proof_required` / `proof_invalid` with the next
//! challenge's URL and join nothing; the difficulty rises for a busy address; and the
//! per-address cap holds one client to its share of sessions, joins, holds and
//! checkouts while others are served. Every proof here is solved for real.

use std::time::Duration;

use flashsale::http::proof::{leading_zero_bits, solve};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use test_support::eventually_within;
use uuid::Uuid;

use crate::helpers::assert_session_capped;
use crate::helpers::{assert_problem, sale_body_with, spawn_app_with, TestApp, TestShopper};

/// The operator's default difficulty in these tests: real work, quick in a debug build.
const BITS: u32 = 8;

async fn door_app() -> TestApp {
    spawn_app_with(|c| {
        c.proof_difficulty_bits = BITS;
        c.client_ip_header = Some("x-forwarded-for".parse().unwrap());
    })
    .await
}

/// `POST /v1/sales/{sale}/challenge` from `address`; the answer's JSON.
async fn challenge_from(app: &TestApp, who: &TestShopper, sale: Uuid, address: &str) -> Value {
    let response = app
        .request(
            Method::POST,
            &format!("/v1/sales/{sale}/challenge"),
            Some(&who.token),
        )
        .header("x-forwarded-for", address)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn challenge(app: &TestApp, who: &TestShopper, sale: Uuid) -> Value {
    challenge_from(app, who, sale, "192.0.2.1").await
}

/// A solved `X-Join-Proof` for `challenge`.
fn proof(challenge: &Value) -> String {
    let text = challenge["challenge"].as_str().unwrap();
    let bits = challenge["difficulty_bits"].as_u64().unwrap() as u32;
    format!("{text}:{}", solve(text, bits))
}

async fn join_with(
    app: &TestApp,
    who: &TestShopper,
    sale: Uuid,
    proof: Option<&str>,
) -> reqwest::Response {
    let mut request = app.request(
        Method::POST,
        &format!("/v1/sales/{sale}/queue"),
        Some(&who.token),
    );
    if let Some(proof) = proof {
        request = request.header("x-join-proof", proof);
    }
    request.send().await.unwrap()
}

/// A door refusal: the code, and the next challenge's URL in `detail`.
async fn assert_refused(response: reqwest::Response, code: &str, sale: Uuid) {
    let body = assert_problem(response, 403, code).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("/v1/sales/{sale}/challenge")),
        "{detail}"
    );
}

/// Nothing joined: the shopper has no ticket.
async fn assert_not_in_line(app: &TestApp, who: &TestShopper, sale: Uuid) {
    let response = app
        .get(&format!("/v1/sales/{sale}/queue/me"), Some(&who.token))
        .await;
    assert_eq!(response.status(), 404, "nothing joined");
}

#[tokio::test]
async fn a_join_without_a_proof_is_refused_with_proof_required_and_nothing_joined() {
    let app = door_app().await;
    let sale = app.live_sale(10, 1).await;
    let shopper = app.direct_shopper();

    assert_refused(
        join_with(&app, &shopper, sale, None).await,
        "proof_required",
        sale,
    )
    .await;
    assert_not_in_line(&app, &shopper, sale).await;
}

#[tokio::test]
async fn a_valid_proof_joins_and_a_rejoin_returns_the_ticket_without_one() {
    let app = door_app().await;
    let sale = app.live_sale(10, 1).await;
    let shopper = app.direct_shopper();
    let issued = challenge(&app, &shopper, sale).await;
    assert_eq!(issued["algorithm"], "sha256");
    assert_eq!(issued["difficulty_bits"], BITS);
    assert!(issued["expires_at"].is_string());

    let joined = join_with(&app, &shopper, sale, Some(&proof(&issued))).await;
    assert_eq!(joined.status(), 201);
    let ticket: Value = joined.json().await.unwrap();

    let rejoined = join_with(&app, &shopper, sale, None).await;
    assert_eq!(rejoined.status(), 200, "a rejoin needs no proof");
    let again: Value = rejoined.json().await.unwrap();
    assert_eq!(again["ticket_id"], ticket["ticket_id"]);
}

#[tokio::test]
async fn a_reused_proof_is_refused_and_nothing_joined() {
    let app = door_app().await;
    let sale = app.live_sale(10, 1).await;
    let shopper = app.direct_shopper();
    let once = proof(&challenge(&app, &shopper, sale).await);
    assert_eq!(
        join_with(&app, &shopper, sale, Some(&once)).await.status(),
        201
    );
    let left = app
        .request(
            Method::DELETE,
            &format!("/v1/sales/{sale}/queue/me"),
            Some(&shopper.token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), 204);

    assert_refused(
        join_with(&app, &shopper, sale, Some(&once)).await,
        "proof_invalid",
        sale,
    )
    .await;
    assert_not_in_line(&app, &shopper, sale).await;
}

#[tokio::test]
async fn a_proof_for_another_sale_or_another_shopper_is_refused_and_nothing_joined() {
    let app = door_app().await;
    let (sale, other_sale) = (app.live_sale(10, 1).await, app.live_sale(10, 1).await);
    let (shopper, other) = (app.direct_shopper(), app.direct_shopper());
    let for_other_sale = proof(&challenge(&app, &shopper, other_sale).await);
    let for_other_shopper = proof(&challenge(&app, &other, sale).await);

    for wrong in [for_other_sale, for_other_shopper] {
        assert_refused(
            join_with(&app, &shopper, sale, Some(&wrong)).await,
            "proof_invalid",
            sale,
        )
        .await;
    }
    assert_not_in_line(&app, &shopper, sale).await;
}

#[tokio::test]
async fn a_proof_with_too_little_work_is_refused_and_nothing_joined() {
    let app = door_app().await;
    let sale = app.live_sale(10, 1).await;
    let shopper = app.direct_shopper();
    let issued = challenge(&app, &shopper, sale).await;
    let text = issued["challenge"].as_str().unwrap();
    // A nonce whose hash has fewer leading zero bits than asked.
    let lazy = (0u64..)
        .map(|n| n.to_string())
        .find(|nonce| leading_zero_bits(&Sha256::digest(format!("{text}:{nonce}"))) < BITS)
        .unwrap();

    let refused = join_with(&app, &shopper, sale, Some(&format!("{text}:{lazy}"))).await;
    assert_refused(refused, "proof_invalid", sale).await;
    assert_not_in_line(&app, &shopper, sale).await;
}

#[tokio::test]
async fn an_expired_or_malformed_proof_is_refused_never_a_500() {
    let app = door_app().await;
    let sale = app.live_sale(10, 1).await;
    let shopper = app.direct_shopper();
    let stale = proof(&challenge(&app, &shopper, sale).await);
    app.clock.advance(Duration::from_secs(121));
    assert_refused(
        join_with(&app, &shopper, sale, Some(&stale)).await,
        "proof_invalid",
        sale,
    )
    .await;

    let fresh = challenge(&app, &shopper, sale).await;
    let text = fresh["challenge"].as_str().unwrap();
    let long_nonce = format!("{text}:{}", "a".repeat(65));
    let odd_nonce = format!("{text}:not-alnum");
    let no_nonce = format!("{text}:");
    for malformed in [
        "",
        ":",
        "garbage",
        "a.b.c:0",
        &long_nonce,
        &odd_nonce,
        &no_nonce,
        text,
    ] {
        assert_refused(
            join_with(&app, &shopper, sale, Some(malformed)).await,
            "proof_invalid",
            sale,
        )
        .await;
    }
    let mut latin1 = app.request(
        Method::POST,
        &format!("/v1/sales/{sale}/queue"),
        Some(&shopper.token),
    );
    latin1 = latin1.header(
        "x-join-proof",
        reqwest::header::HeaderValue::from_bytes(b"caf\xe9:1").unwrap(),
    );
    assert_refused(latin1.send().await.unwrap(), "proof_invalid", sale).await;
    assert_not_in_line(&app, &shopper, sale).await;
}

#[tokio::test]
async fn the_difficulty_rises_for_one_address_in_a_loop_while_another_stays_at_the_base() {
    let app = door_app().await;
    let sale = app.live_sale(10, 1).await;

    let mut seen = Vec::new();
    for _ in 0..40 {
        let shopper = app.direct_shopper();
        let issued = challenge_from(&app, &shopper, sale, "203.0.113.9").await;
        seen.push(issued["difficulty_bits"].as_u64().unwrap());
    }
    let neighbour = app.direct_shopper();
    let theirs = challenge_from(&app, &neighbour, sale, "198.51.100.20").await;

    assert_eq!(seen[0], BITS as u64, "a first join pays the base: {seen:?}");
    assert!(*seen.last().unwrap() >= BITS as u64 + 3, "{seen:?}");
    assert!(*seen.last().unwrap() <= BITS as u64 + 8, "capped: {seen:?}");
    assert_eq!(
        theirs["difficulty_bits"], BITS,
        "another address stays at the base"
    );
    // The harder challenge is still one a shopper can solve and join with.
    let last = app.direct_shopper();
    let hard = challenge_from(&app, &last, sale, "203.0.113.9").await;
    assert_eq!(
        join_with(&app, &last, sale, Some(&proof(&hard)))
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn a_sale_sets_its_own_difficulty_and_zero_turns_the_proof_off() {
    let app = door_app().await;
    let now = app.clock_now();
    let create = |bits: Value| {
        sale_body_with(json!({
            "starts_at": now - chrono::Duration::minutes(1),
            "ends_at": now + chrono::Duration::hours(2),
            "admission": { "mode": "auto", "proof_difficulty_bits": bits },
        }))
    };
    let open = app.create_sale(create(json!(0))).await;
    assert_eq!(open["admission"]["proof_difficulty_bits"], 0);
    let open: Uuid = open["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        join_with(&app, &app.direct_shopper(), open, None)
            .await
            .status(),
        201
    );

    let defaulted = app.create_sale(sale_body_with(json!({}))).await;
    assert_eq!(
        defaulted["admission"]["proof_difficulty_bits"], BITS,
        "the operator's default"
    );

    for bad in [json!(27), json!(-1)] {
        let response = app
            .merchant(Method::POST, "/v1/admin/sales")
            .json(&create(bad))
            .send()
            .await
            .unwrap();
        let body = assert_problem(response, 422, "invalid_field").await;
        assert!(
            body.to_string().contains("admission.proof_difficulty_bits"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn an_edit_of_the_admission_keeps_the_sales_difficulty_unless_it_names_one() {
    let app = door_app().await;
    let sale = app.scheduled_sale().await;
    let admission = |body: Value| json!({ "admission": body });

    let kept = app
        .patch_sale(
            sale,
            admission(json!({ "mode": "auto", "checkout_p95_target_ms": 400 })),
            None,
        )
        .await;
    assert_eq!(kept.status(), 200);
    let kept: Value = kept.json().await.unwrap();
    assert_eq!(kept["admission"]["proof_difficulty_bits"], BITS);

    let off = app
        .patch_sale(
            sale,
            admission(json!({ "mode": "auto", "proof_difficulty_bits": 0 })),
            None,
        )
        .await;
    assert_eq!(off.status(), 200);
    let off: Value = off.json().await.unwrap();
    assert_eq!(off["admission"]["proof_difficulty_bits"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shopper_who_solves_the_door_is_admitted_reserves_and_checks_out() {
    let app = door_app().await;
    let now = app.clock_now();
    let sale = app
        .create_sale(sale_body_with(json!({
            "stock": { "total": 5 }, "per_user_limit": 1,
            "starts_at": now - chrono::Duration::minutes(1),
            "ends_at": now + chrono::Duration::hours(2),
            "admission": { "mode": "auto", "proof_difficulty_bits": 12 },
        })))
        .await;
    let sale: Uuid = sale["id"].as_str().unwrap().parse().unwrap();
    let session = app.session().await;
    let shopper = TestShopper {
        id: session.shopper_id,
        token: session.token,
    };
    let issued = challenge(&app, &shopper, sale).await;
    assert_eq!(issued["difficulty_bits"], 12);
    assert_eq!(
        join_with(&app, &shopper, sale, Some(&proof(&issued)))
            .await
            .status(),
        201
    );

    let ticket = || async {
        app.get(&format!("/v1/sales/{sale}/queue/me"), Some(&shopper.token))
            .await
            .json::<Value>()
            .await
            .unwrap()
    };
    let admitted = eventually_within(Duration::from_secs(10), || async {
        ticket().await["state"] == "admitted"
    })
    .await;
    assert!(admitted, "the controller admits the shopper");
    let token = ticket().await["admission_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let held = app
        .request(
            Method::POST,
            &format!("/v1/sales/{sale}/reservations"),
            Some(&shopper.token),
        )
        .header("x-admission-token", token)
        .json(&json!({ "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 201);
    let reservation: Value = held.json().await.unwrap();
    let reservation: Uuid = reservation["reservation_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let paid = app
        .checkout(&shopper, reservation, Some("door-e2e"), "tok_ok")
        .await;
    assert_eq!(paid.status(), 201);
}

/// Session, challenge and join from `address` with a fresh session each time; the
/// status of each step that answered (a 429 ends the attempt).
async fn mint_and_join(app: &TestApp, sale: Uuid, address: &str) -> Vec<u16> {
    let session = app
        .request(Method::POST, "/v1/sessions", None)
        .header("x-forwarded-for", address)
        .send()
        .await
        .unwrap();
    if session.status() != 201 {
        return vec![session.status().as_u16()];
    }
    let session: Value = session.json().await.unwrap();
    let token = session["token"].as_str().unwrap();
    let issued = app
        .request(
            Method::POST,
            &format!("/v1/sales/{sale}/challenge"),
            Some(token),
        )
        .header("x-forwarded-for", address)
        .send()
        .await
        .unwrap();
    if issued.status() != 201 {
        return vec![201, issued.status().as_u16()];
    }
    let issued: Value = issued.json().await.unwrap();
    let joined = app
        .request(
            Method::POST,
            &format!("/v1/sales/{sale}/queue"),
            Some(token),
        )
        .header("x-forwarded-for", address)
        .header("x-join-proof", proof(&issued))
        .send()
        .await
        .unwrap();
    vec![201, 201, joined.status().as_u16()]
}

#[tokio::test]
async fn one_address_minting_sessions_and_joining_in_a_loop_is_held_to_its_cap_while_another_is_served(
) {
    let app = spawn_app_with(|c| {
        c.proof_difficulty_bits = 4;
        c.client_cap = Some((1, 12));
        c.client_ip_header = Some("x-forwarded-for".parse().unwrap());
    })
    .await;
    let sale = app.live_sale(10, 1).await;

    // Rounds of session, challenge and join until the address is refused: the burst of
    // 12 covers 4 rounds, and a refill of 1 a second barely more.
    let mut farm = Vec::new();
    while farm.len() < 30 {
        let steps = mint_and_join(&app, sale, "198.51.100.7").await;
        let refused = steps.last() == Some(&429);
        farm.push(steps);
        if refused {
            break;
        }
    }
    let neighbour = mint_and_join(&app, sale, "192.0.2.44").await;

    assert_eq!(farm.last().unwrap().last(), Some(&429), "{farm:?}");
    let joined = farm
        .iter()
        .filter(|steps| steps.get(2) == Some(&201))
        .count();
    assert!((4..=6).contains(&joined), "held to its cap: {farm:?}");
    assert_eq!(neighbour, vec![201, 201, 201], "another address is served");
    assert_session_capped(&app, "198.51.100.7").await;
}

#[tokio::test]
async fn holds_and_checkouts_are_capped_per_address_across_sessions() {
    let app = spawn_app_with(|c| {
        c.client_cap = Some((1, 4));
        c.client_ip_header = Some("x-forwarded-for".parse().unwrap());
    })
    .await;
    let sale = app.live_sale(50, 1).await;
    let reserve = |who: TestShopper, address: &'static str| {
        let app = &app;
        async move {
            app.request(
                Method::POST,
                &format!("/v1/sales/{sale}/reservations"),
                Some(&who.token),
            )
            .header("x-admission-token", app.admission_token(who.id, sale))
            .header("x-forwarded-for", address)
            .json(&json!({ "quantity": 1 }))
            .send()
            .await
            .unwrap()
        }
    };
    let checkout = |who: TestShopper, reservation: Uuid, address: &'static str| {
        let app = &app;
        async move {
            app.request(
                Method::POST,
                &format!("/v1/reservations/{reservation}/checkout"),
                Some(&who.token),
            )
            .header("x-forwarded-for", address)
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({ "payment_token": "tok_ok" }))
            .send()
            .await
            .unwrap()
        }
    };

    // Four holds from one address, each by another shopper: the burst.
    let mut holders = Vec::new();
    for _ in 0..4 {
        let who = app.direct_shopper();
        let held = reserve(who.clone(), "198.51.100.7").await;
        assert_eq!(held.status(), 201);
        let id: Value = held.json().await.unwrap();
        holders.push((
            who,
            id["reservation_id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap(),
        ));
    }
    // More holds from that address, by yet other shoppers, until it is refused; the
    // checkout right after finds the address's allowance spent too.
    let mut refused = None;
    for _ in 0..10 {
        let more = reserve(app.direct_shopper(), "198.51.100.7").await;
        if more.status() == 429 {
            refused = Some(more);
            break;
        }
    }
    let refused = refused.expect("the address is held to its cap");
    let (who, reservation) = holders[0].clone();
    let paid = checkout(who.clone(), reservation, "198.51.100.7").await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_problem(refused, 429, "rate_limited").await;
    assert_problem(paid, 429, "rate_limited").await;

    // Another address holds and checks out meanwhile.
    let other = app.direct_shopper();
    let held = reserve(other.clone(), "192.0.2.44").await;
    assert_eq!(held.status(), 201);
    let id: Value = held.json().await.unwrap();
    let id: Uuid = id["reservation_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(checkout(other, id, "192.0.2.44").await.status(), 201);
    // The first shopper's checkout is served from another address too: the cap is the
    // address's, not the shopper's.
    assert_eq!(checkout(who, reservation, "192.0.2.45").await.status(), 201);
}
