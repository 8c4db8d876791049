//! Attacks from outside: forged and misused tokens, oversized and malformed input,
//! stalled connections, and secrets leaking into logs. Every refusal is a 4xx (a
//! problem+json when the app answers it) and the process keeps serving afterwards.
//!
//! Already covered elsewhere, so not repeated here: `alg: none`, HS256, expired and
//! wrong-issuer/audience merchant tokens, a shopper or operator token on the admin
//! listing, a 64 KiB create body (admin.rs); an admission token of another shopper or
//! sale (reservations.rs); the per-shopper poll limit (shedding.rs).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_case, assert_problem, fresh_database, sale_body_with, spawn_app, spawn_app_with,
    spawn_app_with_token_forge, unsigned_token, Expect, Order, Reservation, Sale, Session, TestApp,
    TokenForge,
};

// ---- helpers ----------------------------------------------------------------------------

/// Asserts the process still serves: `/healthz` answers 200.
async fn assert_healthy(app: &TestApp) {
    let response = app
        .request(Method::GET, "/healthz", None)
        .send()
        .await
        .expect("the server still accepts connections");
    assert_eq!(response.status(), 200, "the process is unharmed");
}

/// Claims the app accepts for a shopper, valid for an hour.
fn shopper_claims(forge: &TokenForge, shopper: Uuid) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "sub": shopper.to_string(), "role": "shopper",
        "iss": forge.issuer, "aud": forge.audience,
        "iat": now, "exp": now + 3600,
    })
}

/// `GET /v1/orders` (a shopper route that touches no sale) with `token`.
async fn my_orders(app: &TestApp, token: &str) -> reqwest::Response {
    app.get("/v1/orders", Some(token)).await
}

/// The `host:port` the app listens on.
fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// What a raw connection saw: the bytes the server sent before it closed the connection
/// or `wait` ran out, and how long that took.
struct Exchange {
    answer: Vec<u8>,
    elapsed: Duration,
    closed: bool,
}

impl Exchange {
    /// The status code of the answer's first line, if it has one.
    fn status(&self) -> Option<u16> {
        let text = String::from_utf8_lossy(&self.answer);
        let line = text.lines().next()?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.answer).into_owned()
    }
}

/// Writes `request` on a fresh TCP connection (and nothing more: the request may be
/// deliberately incomplete), then reads until the server closes or `wait` passes.
/// Blocking I/O on a blocking thread: the bytes on the wire are exactly these.
async fn raw_exchange(addr: String, request: Vec<u8>, wait: Duration) -> Exchange {
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&addr).expect("connect");
        let started = Instant::now();
        // The server may answer and close before it read everything (a 431, a 413):
        // a failed write is part of the exchange, not a test failure.
        let _ = stream.write_all(&request);
        let _ = stream.flush();
        let mut answer = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let mut closed = false;
        loop {
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            stream.set_read_timeout(Some(left)).unwrap();
            match stream.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    break
                }
                Err(_) => {
                    // Reset by the peer: closed, with whatever arrived before.
                    closed = true;
                    break;
                }
            }
        }
        Exchange {
            answer,
            elapsed: started.elapsed(),
            closed,
        }
    })
    .await
    .unwrap()
}

/// A complete HTTP/1.1 request with a JSON body and `Connection: close`.
fn raw_request(method: &str, target: &[u8], token: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut request = Vec::new();
    request.extend_from_slice(method.as_bytes());
    request.push(b' ');
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.extend_from_slice(format!("Authorization: Bearer {token}\r\n").as_bytes());
    }
    if !body.is_empty() {
        request.extend_from_slice(b"Content-Type: application/json\r\n");
    }
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    request
}

/// Asserts an app-made problem+json answer with this status and code in a raw exchange.
fn assert_raw_problem(exchange: &Exchange, status: u16, code: &str) {
    let text = exchange.text();
    assert_eq!(exchange.status(), Some(status), "answer: {text:.400}");
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/problem+json"),
        "problem+json: {text:.400}"
    );
    assert!(
        text.contains(&format!("\"code\":\"{code}\"")),
        "code {code}: {text:.400}"
    );
}

// ---- tokens -----------------------------------------------------------------------------

#[tokio::test]
async fn shopper_route_with_alg_none_token_returns_401() {
    let (app, forge) = spawn_app_with_token_forge().await;
    let claims = shopper_claims(&forge, Uuid::new_v4());
    assert_eq!(
        my_orders(&app, &forge.sign_hs256(&claims)).await.status(),
        200,
        "the same claims, signed, are accepted"
    );

    let response = my_orders(&app, &unsigned_token(&claims)).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn hs256_token_keyed_with_the_ed25519_public_key_is_refused_on_merchant_and_operator_routes()
{
    // Algorithm confusion: a verifier that took the algorithm from the token would
    // check this HMAC with the public key bytes, which anyone can read.
    let (app, forge) = spawn_app_with_token_forge().await;
    let pem = std::fs::read(&app.config.admin_public_key_file).expect("the public key");
    let trimmed = String::from_utf8(pem.clone()).unwrap().trim().to_owned();
    let mut operator = forge.merchant_claims(app.merchant_id);
    operator["role"] = json!("operator");
    operator["sub"] = json!("operator");

    for secret in [pem.clone(), trimmed.into_bytes()] {
        let key = EncodingKey::from_secret(&secret);
        let sign = |claims: &Value| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
        };
        let merchant = sign(&forge.merchant_claims(app.merchant_id));
        let listing = app.get("/v1/admin/sales", Some(&merchant)).await;
        assert_problem(listing, 401, "unauthorized").await;
        let create = app
            .request(Method::POST, "/v1/admin/sales", Some(&merchant))
            .json(&sale_body_with(json!({})))
            .send()
            .await
            .unwrap();
        assert_problem(create, 401, "unauthorized").await;
        let simulator = app
            .get("/v1/ops/payment-simulator", Some(&sign(&operator)))
            .await;
        assert_problem(simulator, 401, "unauthorized").await;
    }
    let count: i64 = sqlx::query_scalar("select count(*) from sales")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 0, "no sale was created with a forged token");
}

#[tokio::test]
async fn expired_shopper_token_returns_401() {
    let (app, forge) = spawn_app_with_token_forge().await;
    let mut claims = shopper_claims(&forge, Uuid::new_v4());
    let now = chrono::Utc::now().timestamp();
    claims["iat"] = json!(now - 7200);
    // Past the 5 s leeway.
    claims["exp"] = json!(now - 60);

    let response = my_orders(&app, &forge.sign_hs256(&claims)).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn tokens_not_valid_before_a_future_time_return_401() {
    let (app, forge) = spawn_app_with_token_forge().await;
    let later = chrono::Utc::now().timestamp() + 3600;
    let mut merchant = forge.merchant_claims(app.merchant_id);
    merchant["nbf"] = json!(later);
    let mut shopper = shopper_claims(&forge, Uuid::new_v4());
    shopper["nbf"] = json!(later);

    let admin = app
        .get("/v1/admin/sales", Some(&forge.sign_eddsa(&merchant)))
        .await;
    let orders = my_orders(&app, &forge.sign_hs256(&shopper)).await;

    assert_problem(admin, 401, "unauthorized").await;
    assert_problem(orders, 401, "unauthorized").await;
}

#[tokio::test]
async fn shopper_token_with_wrong_issuer_or_audience_returns_401() {
    let (app, forge) = spawn_app_with_token_forge().await;
    let valid = shopper_claims(&forge, Uuid::new_v4());

    for claim in ["iss", "aud"] {
        let mut claims = valid.clone();
        claims[claim] = json!("someone-else");

        let response = my_orders(&app, &forge.sign_hs256(&claims)).await;

        assert_problem(response, 401, "unauthorized").await;
    }
}

#[tokio::test]
async fn merchant_and_operator_tokens_cannot_act_as_a_shopper() {
    let (app, forge) = spawn_app_with_token_forge().await;
    let sale = app.live_sale(10, 1).await;
    let join = format!("/v1/sales/{sale}/queue");
    // An HS256 token with the service's own secret but the merchant role: the
    // signature checks out, the role does not.
    let mut merchant_role = shopper_claims(&forge, app.merchant_id);
    merchant_role["role"] = json!("merchant");

    for (case, token, expected) in [
        (
            "merchant",
            app.merchant_token.clone(),
            Expect::Problem(401, "unauthorized"),
        ),
        (
            "operator",
            app.operator_token(),
            Expect::Problem(401, "unauthorized"),
        ),
        (
            "HS256 merchant role",
            forge.sign_hs256(&merchant_role),
            Expect::Problem(403, "forbidden"),
        ),
    ] {
        let response = app
            .request(Method::POST, &join, Some(&token))
            .send()
            .await
            .unwrap();
        assert_case(case, response, expected).await;
    }
    let line = app.stats(sale).await.expect("the merchant's stats");
    assert_eq!(line.queue.waiting, 0, "nobody joined: {:?}", line.queue);
}

#[tokio::test]
async fn shopper_token_is_refused_on_every_admin_and_operator_route() {
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;
    let shopper = app.shopper().await;
    let routes = [
        (
            Method::POST,
            "/v1/admin/sales".to_owned(),
            Some(sale_body_with(json!({}))),
        ),
        (Method::GET, format!("/v1/admin/sales/{sale}"), None),
        (
            Method::PATCH,
            format!("/v1/admin/sales/{sale}"),
            Some(json!({ "name": "pwned" })),
        ),
        (
            Method::POST,
            format!("/v1/admin/sales/{sale}/stock"),
            Some(json!({ "delta": 5 })),
        ),
        (Method::POST, format!("/v1/admin/sales/{sale}/pause"), None),
        (Method::POST, format!("/v1/admin/sales/{sale}/end"), None),
        (Method::GET, format!("/v1/admin/sales/{sale}/stats"), None),
        (Method::GET, format!("/v1/admin/sales/{sale}/orders"), None),
        (Method::GET, "/v1/ops/payment-simulator".to_owned(), None),
        (
            Method::PUT,
            "/v1/ops/payment-simulator".to_owned(),
            Some(json!({ "latency_ms": { "p50": 1, "p99": 2 }, "failure_rate": 1.0 })),
        ),
    ];

    for (method, path, body) in routes {
        let mut request = app.request(method.clone(), &path, Some(&shopper.token));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let case = format!("{method} {path}");
        assert_case(&case, response, Expect::Problem(401, "unauthorized")).await;
    }
    let unchanged = app.admin_get_sale(sale).await;
    assert_eq!(unchanged.version, 1, "the sale is untouched: {unchanged:?}");
    assert_eq!(unchanged.status, "scheduled");
}

/// `token` with its payload replaced by `edit(payload)` and the old signature kept.
fn tampered(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut payload: Value = serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
    edit(&mut payload);
    parts[1] = b64.encode(payload.to_string());
    parts.join(".")
}

#[tokio::test]
async fn a_token_whose_payload_was_edited_without_re_signing_returns_401() {
    let app = spawn_app().await;
    let shopper = app.shopper().await;
    let promoted = tampered(&shopper.token, |claims| claims["role"] = json!("merchant"));
    let impostor = tampered(&shopper.token, |claims| {
        claims["sub"] = json!(Uuid::new_v4().to_string())
    });
    let other_merchant = tampered(&app.merchant_token, |claims| {
        claims["sub"] = json!(Uuid::new_v4().to_string())
    });

    let admin = app.get("/v1/admin/sales", Some(&promoted)).await;
    let as_shopper = my_orders(&app, &promoted).await;
    let as_someone = my_orders(&app, &impostor).await;
    let as_merchant = app.get("/v1/admin/sales", Some(&other_merchant)).await;

    assert_problem(admin, 401, "unauthorized").await;
    assert_problem(as_shopper, 401, "unauthorized").await;
    assert_problem(as_someone, 401, "unauthorized").await;
    assert_problem(as_merchant, 401, "unauthorized").await;
    assert_eq!(
        my_orders(&app, &shopper.token).await.status(),
        200,
        "the original still works"
    );
}

#[tokio::test]
async fn admission_and_session_tokens_cannot_stand_in_for_each_other() {
    // Both are HS256 with the same secret: only the audience and claims tell them apart.
    let app = spawn_app().await;
    let sale = app.live_sale(10, 2).await;
    let shopper = app.shopper().await;
    let admission = app.admission_token(shopper.id, sale);

    let admission_as_bearer = my_orders(&app, &admission).await;
    let session_as_admission = app
        .request(
            Method::POST,
            &format!("/v1/sales/{sale}/reservations"),
            Some(&shopper.token),
        )
        .header("x-admission-token", &shopper.token)
        .json(&json!({ "quantity": 1 }))
        .send()
        .await
        .unwrap();

    assert_problem(admission_as_bearer, 401, "unauthorized").await;
    assert_problem(session_as_admission, 403, "not_admitted").await;
}

// ---- limits -----------------------------------------------------------------------------

#[tokio::test]
async fn a_chunked_body_over_64_kib_without_content_length_returns_413() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 2).await;
    let shopper = app.shopper().await;
    // 80 KiB of a JSON string in 8 KiB chunks: the limit must count streamed bytes,
    // not trust a Content-Length that is not there.
    let mut body = b"{\"quantity\":1,\"pad\":\"".to_vec();
    body.extend(std::iter::repeat_n(b'a', 80 * 1024));
    body.extend_from_slice(b"\"}");
    let mut request = format!(
        "POST /v1/sales/{sale}/reservations HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nX-Admission-Token: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        shopper.token,
        app.admission_token(shopper.id, sale)
    )
    .into_bytes();
    for chunk in body.chunks(8 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");

    let exchange = raw_exchange(addr(&app), request, Duration::from_secs(10)).await;

    assert_raw_problem(&exchange, 413, "payload_too_large");
    assert_healthy(&app).await;
}

#[tokio::test]
async fn oversized_request_heads_get_431_and_the_process_keeps_serving() {
    // One 100 KiB header, and 480 KiB over sixty headers sent in one burst (hyper's own
    // buffer limit alone lets a head that arrives in one read through).
    let app = spawn_app().await;
    let shopper = app.shopper().await;
    let one_big = format!(
        "GET /v1/orders HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         X-Padding: {}\r\nConnection: close\r\n\r\n",
        shopper.token,
        "a".repeat(100 * 1024)
    );
    let mut many = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..60 {
        many.extend_from_slice(format!("x-pad-{i}: {}\r\n", "b".repeat(8 * 1024)).as_bytes());
    }
    many.extend_from_slice(b"Connection: close\r\n\r\n");

    for request in [one_big.into_bytes(), many] {
        let exchange = raw_exchange(addr(&app), request, Duration::from_secs(10)).await;

        assert!(exchange.closed, "the server closes the connection");
        assert!(
            exchange.elapsed < Duration::from_secs(5),
            "no hang: {:?}",
            exchange.elapsed
        );
        // The 431 may be lost to the reset of a connection closed with unread bytes.
        if let Some(status) = exchange.status() {
            assert_eq!(status, 431, "{:.300}", exchange.text());
        }
    }
    assert_healthy(&app).await;
}

#[tokio::test]
async fn a_head_just_over_the_limit_is_answered_431() {
    // Small enough to be read whole, so the answer is not lost to a reset.
    let app = spawn_app().await;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(flashsale::http::MAX_HEADER_BYTES)
    );
    let fits = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(flashsale::http::MAX_HEADER_BYTES - 200)
    );

    let refused = raw_exchange(addr(&app), request.into_bytes(), Duration::from_secs(10)).await;
    let served = raw_exchange(addr(&app), fits.into_bytes(), Duration::from_secs(10)).await;

    assert_eq!(refused.status(), Some(431), "{:.300}", refused.text());
    assert_eq!(served.status(), Some(200), "{:.300}", served.text());
    assert_healthy(&app).await;
}

#[tokio::test]
async fn a_stalled_body_is_answered_within_the_request_timeout() {
    let app = spawn_app_with(|c| c.request_timeout = Duration::from_millis(500)).await;
    let shopper = app.shopper().await;
    let sale = app.live_sale(10, 2).await;
    // Headers promise 1,000 bytes; ten arrive, then nothing.
    let request = format!(
        "POST /v1/sales/{sale}/reservations HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nX-Admission-Token: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"quantity",
        shopper.token,
        app.admission_token(shopper.id, sale)
    );

    let exchange = raw_exchange(addr(&app), request.into_bytes(), Duration::from_secs(10)).await;

    assert_raw_problem(&exchange, 503, "request_timeout");
    assert!(
        exchange.elapsed < Duration::from_secs(3),
        "answered near the 500 ms timeout, not after {:?}",
        exchange.elapsed
    );
    assert_healthy(&app).await;
}

#[tokio::test]
async fn stalled_headers_are_cut_off_instead_of_holding_the_connection() {
    // Slow-loris: a request line and one header, then silence. A connection that never
    // finishes its headers must not be held open forever.
    let app = spawn_app_with(|c| c.request_timeout = Duration::from_millis(500)).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n".to_vec();

    let exchange = raw_exchange(addr(&app), request, Duration::from_secs(15)).await;

    assert!(
        exchange.closed,
        "the server closes a connection whose headers stall (waited {:?})",
        exchange.elapsed
    );
    if let Some(status) = exchange.status() {
        assert!((400..500).contains(&status), "a 4xx: {}", exchange.text());
    }
    assert_healthy(&app).await;
}

#[tokio::test]
async fn very_long_query_strings_are_refused_with_4xx() {
    let app = spawn_app().await;
    let shopper = app.shopper().await;

    // 16 KiB cursor: reaches the app, which refuses it as a cursor it never made.
    let long = app
        .request(
            Method::GET,
            &format!("/v1/orders?cursor={}", "A".repeat(16 * 1024)),
            Some(&shopper.token),
        )
        .send()
        .await
        .unwrap();
    assert_problem(long, 400, "invalid_query").await;

    // 64 KiB cursor: longer than an HTTP URI may be here; refused before routing.
    let target = format!("/v1/orders?cursor={}", "A".repeat(64 * 1024));
    let exchange = raw_exchange(
        addr(&app),
        raw_request("GET", target.as_bytes(), Some(&shopper.token), b""),
        Duration::from_secs(10),
    )
    .await;
    let status = exchange.status().unwrap_or_default();
    assert!(
        (400..500).contains(&status),
        "a 4xx, not a hang or 5xx: {:.300}",
        exchange.text()
    );
    assert_healthy(&app).await;
}

#[tokio::test]
async fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
    let app = spawn_app().await;
    let arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let objects = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));

    for body in [arrays, objects] {
        let response = app
            .merchant(Method::POST, "/v1/admin/sales")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_problem(response, 400, "invalid_body").await;
    }
    assert_healthy(&app).await;
}

#[tokio::test]
async fn huge_and_negative_page_limits_are_refused() {
    let app = spawn_app().await;
    let shopper = app.shopper().await;

    for (limit, status, code) in [
        ("99999999999999999999", 400, "invalid_query"),
        ("1e3", 400, "invalid_query"),
        ("9223372036854775807", 422, "invalid_field"),
        ("-1", 422, "invalid_field"),
        ("-9223372036854775808", 422, "invalid_field"),
    ] {
        let orders = app
            .get(&format!("/v1/orders?limit={limit}"), Some(&shopper.token))
            .await;
        let expected = Expect::Problem(status, code);
        assert_case(&format!("orders, limit {limit}"), orders, expected).await;
        let sales = app
            .merchant(Method::GET, &format!("/v1/admin/sales?limit={limit}"))
            .send()
            .await
            .unwrap();
        assert_case(&format!("sales, limit {limit}"), sales, expected).await;
    }
    assert_healthy(&app).await;
}

#[tokio::test]
async fn negative_and_overflowing_quantities_are_refused() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 2).await;
    let shopper = app.shopper().await;

    for (raw, status, code) in [
        ("-1", 422, "invalid_quantity"),
        ("0", 422, "invalid_quantity"),
        ("9223372036854775807", 422, "invalid_quantity"),
        ("-9223372036854775808", 422, "invalid_quantity"),
        ("9223372036854775808", 400, "invalid_body"),
        ("1e308", 400, "invalid_body"),
        ("1.5", 400, "invalid_body"),
        ("\"1\"", 400, "invalid_body"),
    ] {
        let response = app
            .request(
                Method::POST,
                &format!("/v1/sales/{sale}/reservations"),
                Some(&shopper.token),
            )
            .header("x-admission-token", app.admission_token(shopper.id, sale))
            .header("content-type", "application/json")
            .body(format!("{{\"quantity\":{raw}}}"))
            .send()
            .await
            .unwrap();
        let expected = Expect::Problem(status, code);
        assert_case(&format!("quantity {raw}"), response, expected).await;
    }
    let view = app.admin_get_sale(sale).await;
    assert_eq!(view.stock.available, 10, "nothing was held: {view:?}");
    assert_healthy(&app).await;
}

#[tokio::test]
async fn extreme_stock_deltas_and_sale_numbers_are_refused() {
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;

    for delta in [i64::MIN, i64::MIN + 1, i64::MAX, -1_000_001, 1_000_000] {
        let response = app.change_stock(sale, delta).await;
        let expected = Expect::Problem(422, "invalid_field");
        assert_case(&format!("delta {delta}"), response, expected).await;
    }
    for raw in ["9223372036854775808", "1e308", "-1e308"] {
        let response = app
            .admin_sale(Method::POST, sale, "/stock")
            .header("content-type", "application/json")
            .body(format!("{{\"delta\":{raw}}}"))
            .send()
            .await
            .unwrap();
        let expected = Expect::Problem(400, "invalid_body");
        assert_case(&format!("delta {raw}"), response, expected).await;
    }
    for (field, value) in [
        (
            "price",
            json!({ "amount_minor": i64::MAX, "currency": "EUR" }),
        ),
        ("price", json!({ "amount_minor": -1, "currency": "EUR" })),
        ("stock", json!({ "total": i64::MAX })),
        ("stock", json!({ "total": -1 })),
        ("per_user_limit", json!(i64::MIN)),
        ("hold_ttl_seconds", json!(i64::MAX)),
    ] {
        let response = app
            .merchant(Method::POST, "/v1/admin/sales")
            .json(&sale_body_with(json!({ field: value })))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{field} = {value}");
    }
    let view = app.admin_get_sale(sale).await;
    assert_eq!(view.stock.total, 500, "stock unchanged: {view:?}");
    assert_eq!(view.version, 1);
    assert_healthy(&app).await;
}

#[tokio::test]
async fn a_json_array_is_not_taken_for_an_object_body() {
    // serde would read `[5]` as `{"delta": 5}`; the contract's bodies are objects
    // (found by scripts/fuzz).
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;

    for body in ["[5]", " \n[5]", "5", "\"x\"", "null"] {
        let response = app
            .admin_sale(Method::POST, sale, "/stock")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let expected = Expect::Problem(400, "invalid_body");
        assert_case(&format!("body {body}"), response, expected).await;
    }
    let view = app.admin_get_sale(sale).await;
    assert_eq!(view.stock.total, 500, "stock unchanged: {view:?}");
    let accepted = app
        .admin_sale(Method::POST, sale, "/stock")
        .header(
            "content-type",
            "application/vnd.flashsale+json; charset=utf-8",
        )
        .body(" {\"delta\": 5}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        accepted.status(),
        200,
        "an object with a +json type is still accepted"
    );
}

#[tokio::test]
async fn non_utf8_bytes_in_a_body_or_a_path_are_refused() {
    let app = spawn_app().await;
    let token = app.merchant_token.clone();

    // Invalid UTF-8 inside a JSON string, and a body that is nothing but such bytes.
    let mut in_string = br#"{"name":""#.to_vec();
    in_string.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    in_string.extend_from_slice(br#"","sku":"X"}"#);
    for body in [in_string, vec![0xff, 0xfe, 0xfd]] {
        let exchange = raw_exchange(
            addr(&app),
            raw_request("POST", b"/v1/admin/sales", Some(&token), &body),
            Duration::from_secs(10),
        )
        .await;
        assert_raw_problem(&exchange, 400, "invalid_body");
    }

    // Percent-encoded invalid UTF-8 in an id segment names nothing.
    let encoded = app
        .merchant(Method::GET, "/v1/admin/sales/%FF%FE")
        .send()
        .await
        .unwrap();
    assert_eq!(encoded.status(), 404);
    assert_problem(encoded, 404, "sale_not_found").await;

    // Raw bytes above 0x7f in the request target.
    let exchange = raw_exchange(
        addr(&app),
        raw_request("GET", b"/v1/sales/\xff\xfe", None, b""),
        Duration::from_secs(10),
    )
    .await;
    let status = exchange.status().unwrap_or_default();
    assert!(
        (400..500).contains(&status),
        "a 4xx, not a hang or 5xx: {:.300}",
        exchange.text()
    );
    assert_healthy(&app).await;
}

// ---- logs -------------------------------------------------------------------------------

/// The real binary as a child process; killed when dropped.
struct ChildApp {
    child: Child,
    log: PathBuf,
    base: String,
}

impl Drop for ChildApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildApp {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts `flashsale all` with `env`, its stdout and stderr in one file, and waits for
/// its "listening" line (JSON logs) to learn the port.
async fn start_binary(env: &[(&str, String)], dir: &std::path::Path) -> ChildApp {
    let log = dir.join("flashsale.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_flashsale"))
        .arg("all")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .expect("the flashsale binary starts");
    let mut app = ChildApp {
        child,
        log,
        base: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let listening = app.log_text().lines().find_map(|line| {
            let entry: Value = serde_json::from_str(line).ok()?;
            (entry["message"] == "listening").then(|| entry["addr"].as_str().map(str::to_owned))?
        });
        if let Some(addr) = listening {
            app.base = format!("http://{addr}");
            return app;
        }
        if let Ok(Some(status)) = app.child.try_wait() {
            panic!("flashsale exited with {status}: {}", app.log_text());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("flashsale did not start: {}", app.log_text());
}

#[tokio::test]
async fn logs_never_contain_tokens_or_card_data() {
    // Arrange: the real binary, debug logging, its own database, prefix and keys.
    let base = flashsale::config::Config::from_env().expect("test configuration");
    let id = Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("flashsale-logs-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let hmac_secret = format!("log-test-secret-{id}");
    let env = [
        ("FLASHSALE_BIND_ADDR", "127.0.0.1:0".to_owned()),
        (
            "DATABASE_URL",
            fresh_database(base.database_url.expose()).await,
        ),
        ("REDIS_URL", base.redis_url.expose().clone()),
        ("FLASHSALE_REDIS_PREFIX", format!("l{}", &id[..12])),
        ("FLASHSALE_DATA_DIR", dir.display().to_string()),
        ("FLASHSALE_HMAC_SECRET", hmac_secret.clone()),
        ("FLASHSALE_LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "debug".to_owned()),
        ("NO_COLOR", "1".to_owned()),
    ];
    let child = start_binary(&env, &dir).await;
    let mut config = base.clone();
    config.data_dir = dir.clone();
    config.admin_public_key_file = dir.join("keys/admin-ed25519.pub.pem");
    config.admin_private_key_file = dir.join("keys/admin-ed25519.pem");
    config.hmac_secret = Some(flashsale::config::Secret::new(hmac_secret.clone()));
    let auth = flashsale::auth::Auth::from_config(&config).unwrap();
    let merchant = auth
        .issue_admin(
            Uuid::new_v4().to_string(),
            flashsale::auth::Role::Merchant,
            Duration::from_secs(600),
        )
        .unwrap();
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", child.base);

    // Act: a sale, a session, a hold and checkouts that succeed, fail and decline.
    let now = chrono::Utc::now();
    let sale: Sale = http
        .post(url("/v1/admin/sales"))
        .bearer_auth(&merchant)
        .json(&sale_body_with(json!({
            "stock": { "total": 10 }, "per_user_limit": 2,
            "starts_at": now - chrono::Duration::minutes(1),
            "ends_at": now + chrono::Duration::hours(1),
        })))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sale_id = sale.id;
    let session: Session = http
        .post(url("/v1/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (shopper_token, shopper) = (session.token, session.shopper_id);
    let admission = waiting_room::AdmissionTokens::new(hmac_secret.as_bytes(), auth.issuer())
        .issue(shopper, sale_id, now, Duration::from_secs(600))
        .0;
    let hold: Reservation = http
        .post(url(&format!("/v1/sales/{sale_id}/reservations")))
        .bearer_auth(&shopper_token)
        .header("x-admission-token", &admission)
        .json(&json!({ "quantity": 1 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let checkout = format!("/v1/reservations/{}/checkout", hold.reservation_id);
    let mut order = None;
    for (key, card) in [
        ("k1", "tok_declined"),
        ("k2", "tok_error"),
        ("k3", "tok_ok"),
    ] {
        let response = http
            .post(url(&checkout))
            .bearer_auth(&shopper_token)
            .header("idempotency-key", key)
            .json(&json!({ "payment_token": card }))
            .send()
            .await
            .unwrap();
        if card == "tok_ok" {
            assert_eq!(response.status(), 201, "checkout");
            order = Some(response.json::<Order>().await.unwrap());
        }
    }
    let garbage = format!("not.a.token-{id}");
    let refused = http
        .get(url("/v1/orders"))
        .bearer_auth(&garbage)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // Let the workers capture the payment and send the confirmation (and log about it).
    let order = order.expect("the tok_ok checkout placed an order");
    let order_path = format!("/v1/orders/{}", order.order_id);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let current: Order = http
            .get(url(&order_path))
            .bearer_auth(&shopper_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if current.confirmation.status == "sent" || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Assert: debug logging was on, and no secret made it into the log.
    let log = child.log_text();
    drop(child);
    assert!(
        log.contains("\"level\":\"DEBUG\""),
        "debug lines were logged"
    );
    assert!(log.contains("/checkout"), "the requests were logged");
    for (what, secret) in [
        ("merchant token", merchant.as_str()),
        ("shopper token", shopper_token.as_str()),
        ("admission token", admission.as_str()),
        ("refused token", garbage.as_str()),
        ("HMAC secret", hmac_secret.as_str()),
        ("card token", "tok_"),
    ] {
        // A JWT's signature alone identifies it: check that part too.
        let signature = secret.rsplit('.').next().unwrap_or(secret);
        for needle in [secret, signature] {
            if let Some(at) = log.find(needle) {
                let line = log[..at].rsplit('\n').next().unwrap_or_default();
                let rest = log[at..].split('\n').next().unwrap_or_default();
                panic!("the log contains the {what}: {line}{rest}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- the document the fuzzer reads ------------------------------------------------------

/// Every `$ref` string anywhere under `value`.
fn refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(target)) => found.push(target.clone()),
                    _ => refs(item, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
        _ => {}
    }
}

#[test]
fn openapi_document_resolves_every_ref_and_places_every_parameter_where_it_is_read() {
    // scripts/fuzz generates requests from this document: a dangling reference makes
    // an operation untestable, and a query parameter documented `in: path` sends
    // generated clients to URLs that do not exist (both were found this way).
    use utoipa::OpenApi;
    let doc = serde_json::to_value(flashsale::http::ApiDoc::openapi()).unwrap();
    let mut found = Vec::new();
    refs(&doc, &mut found);
    for target in found {
        let pointer = target.trim_start_matches('#');
        assert!(
            doc.pointer(pointer).is_some(),
            "dangling reference {target}"
        );
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let params = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for param in params {
                let name = param["name"].as_str().unwrap();
                let in_template = path.contains(&format!("{{{name}}}"));
                let is_path = param["in"] == "path";
                assert_eq!(is_path, in_template, "{method} {path}: parameter {param}");
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let content = response["content"].as_object().cloned().unwrap_or_default();
                    assert!(
                        content
                            .keys()
                            .all(|media| media == "application/problem+json"),
                        "{method} {path} {status} documents {:?}",
                        content.keys().collect::<Vec<_>>()
                    );
                }
            }
        }
    }
}
