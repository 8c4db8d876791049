//! The merchant admin API (`/v1/admin`): creating, listing, reading, editing, stocking
//! and pausing sales, its validation rules, its authentication and the isolation of one
//! merchant's sales from another's.

use std::collections::HashSet;

use futures::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    answer, assert_case, assert_invalid_field, assert_keys, assert_problem, etag, sale_body_with,
    spawn_app, spawn_app_with_token_forge, unsigned_token, Expect, Page, Sale, Stats, Stock,
};

// ---- create ---------------------------------------------------------------------------

#[tokio::test]
async fn create_returns_201_with_the_full_sale_and_etag_v1() {
    let app = spawn_app().await;
    let body = sale_body_with(json!({}));

    let response = app
        .merchant(Method::POST, "/v1/admin/sales")
        .json(&body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 201);
    assert_eq!(etag(&response), "\"v1\"");
    let sale: Value = response.json().await.unwrap();
    assert_keys(
        &sale,
        &[
            "id",
            "name",
            "sku",
            "description",
            "price",
            "stock",
            "per_user_limit",
            "hold_ttl_seconds",
            "cancel_window_seconds",
            "starts_at",
            "ends_at",
            "status",
            "version",
            "admission",
            "access",
            "message",
        ],
    );
    let typed: Sale = serde_json::from_value(sale.clone()).expect("a sale as API.md writes it");
    assert!(!typed.id.is_nil(), "id is a UUID");
    for field in [
        "name",
        "sku",
        "description",
        "price",
        "per_user_limit",
        "hold_ttl_seconds",
    ] {
        assert_eq!(sale[field], body[field], "{field}");
    }
    assert_eq!(typed.stock, Stock::new(500, 500, 0, 0));
    assert_eq!(typed.starts_at, "2031-01-01T10:00:00Z");
    assert_eq!(typed.ends_at, "2031-01-01T12:00:00Z");
    assert_eq!(typed.status, "scheduled");
    assert_eq!(typed.version, 1);
    // The whole admission object, nulls included: a missing key is a contract break.
    assert_eq!(
        sale["admission"],
        json!({ "mode": "auto", "max_active_shoppers": null,
                "max_admit_per_second": null, "checkout_p95_target_ms": 300,
                "proof_difficulty_bits": 0 })
    );
}

/// Create-body overrides with this price.
fn price(amount_minor: i64, currency: &str) -> Value {
    json!({ "price": { "amount_minor": amount_minor, "currency": currency } })
}

#[tokio::test]
async fn create_with_an_invalid_field_returns_422_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({ "name": "" }), "name"),
        (json!({ "name": "n".repeat(201) }), "name"),
        (json!({ "sku": "has space" }), "sku"),
        (json!({ "sku": "s".repeat(65) }), "sku"),
        (json!({ "description": "d".repeat(5001) }), "description"),
        (json!({ "stock": { "total": 0 } }), "stock.total"),
        (json!({ "stock": { "total": 1_000_001 } }), "stock.total"),
        (json!({ "per_user_limit": 0 }), "per_user_limit"),
        (json!({ "per_user_limit": 101 }), "per_user_limit"),
        (json!({ "hold_ttl_seconds": 29 }), "hold_ttl_seconds"),
        (json!({ "hold_ttl_seconds": 3601 }), "hold_ttl_seconds"),
        (price(-1, "EUR"), "price.amount_minor"),
        (price(100_000_001, "EUR"), "price.amount_minor"),
        (price(100, "EURO"), "price.currency"),
        (price(100, "xx"), "price.currency"),
        (json!({ "ends_at": "2031-01-01T10:00:00Z" }), "ends_at"),
        (json!({ "ends_at": "2031-01-01T09:00:00Z" }), "ends_at"),
        (
            json!({ "admission": { "mode": "fixed" } }),
            "admission.max_admit_per_second",
        ),
    ];

    for (overrides, field) in cases {
        let response = app
            .merchant(Method::POST, "/v1/admin/sales")
            .json(&sale_body_with(overrides))
            .send()
            .await
            .unwrap();

        assert_invalid_field(response, field).await;
    }
}

#[tokio::test]
async fn create_accepts_every_field_at_its_bounds() {
    let app = spawn_app().await;
    let cases = [
        json!({ "name": "n".repeat(200) }),
        json!({ "sku": format!("Az09._-{}", "s".repeat(57)) }),
        json!({ "description": "d".repeat(5000) }),
        json!({ "stock": { "total": 1 } }),
        json!({ "per_user_limit": 1 }),
        json!({ "per_user_limit": 100 }),
        json!({ "hold_ttl_seconds": 30 }),
        json!({ "hold_ttl_seconds": 3600 }),
        price(0, "EUR"),
        price(100_000_000, "JPY"),
        json!({ "admission": { "mode": "fixed", "max_admit_per_second": 50.0 } }),
    ];

    for overrides in cases {
        let response = app
            .merchant(Method::POST, "/v1/admin/sales")
            .json(&sale_body_with(overrides.clone()))
            .send()
            .await
            .unwrap();

        assert_eq!(response.status(), 201, "{overrides}");
    }
}

/// A create body with `"stock": {"total": <raw>}`, `raw` written verbatim into the JSON.
fn body_with_raw_total(raw: &str) -> String {
    let placeholder = "\"__TOTAL__\"";
    let body = sale_body_with(json!({ "stock": { "total": "__TOTAL__" } }));
    body.to_string().replace(placeholder, raw)
}

#[tokio::test]
async fn create_with_a_body_of_the_wrong_shape_returns_400_invalid_body() {
    let app = spawn_app().await;
    let unknown_field = sale_body_with(json!({ "colour": "red" })).to_string();
    let wrong_type = sale_body_with(json!({ "stock": "many" })).to_string();
    let cases = [
        ("unknown field", unknown_field),
        ("malformed JSON", r#"{"name": "Trail runner","#.to_owned()),
        ("string for an object", wrong_type),
        ("float for an integer", body_with_raw_total("1e30")),
        (
            "integer beyond i64",
            body_with_raw_total("1000000000000000000000000000000"),
        ),
    ];

    for (case, body) in cases {
        let response = app
            .merchant(Method::POST, "/v1/admin/sales")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();

        assert_eq!(response.status(), 400, "{case}");
        assert_problem(response, 400, "invalid_body").await;
    }
}

#[tokio::test]
async fn a_text_field_with_a_nul_character_is_refused_with_422_not_a_store_error() {
    let app = spawn_app().await;
    for field in ["name", "description"] {
        let body = sale_body_with(json!({ field: "Trail\u{0}runner" }));
        let response = app
            .merchant(Method::POST, "/v1/admin/sales")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(response, 422, "invalid_body").await;
    }
}

#[tokio::test]
async fn create_without_content_type_returns_415() {
    let app = spawn_app().await;

    let response = app
        .merchant(Method::POST, "/v1/admin/sales")
        .body(sale_body_with(json!({})).to_string())
        .send()
        .await
        .unwrap();

    assert_problem(response, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn create_with_a_body_over_64_kib_returns_413() {
    let app = spawn_app().await;
    let body = sale_body_with(json!({ "description": "d".repeat(64 * 1024) }));

    let response = app
        .merchant(Method::POST, "/v1/admin/sales")
        .json(&body)
        .send()
        .await
        .unwrap();

    assert_problem(response, 413, "payload_too_large").await;
}

// ---- authentication -------------------------------------------------------------------

#[tokio::test]
async fn admin_route_without_token_returns_401() {
    let app = spawn_app().await;

    let response = app.get("/v1/admin/sales", None).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn admin_route_with_garbage_token_returns_401() {
    let app = spawn_app().await;

    let response = app.get("/v1/admin/sales", Some("not.a.jwt")).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn admin_route_with_alg_none_token_returns_401() {
    let (app, forge) = spawn_app_with_token_forge().await;
    let token = unsigned_token(&forge.merchant_claims(app.merchant_id));

    let response = app.get("/v1/admin/sales", Some(&token)).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn admin_route_with_hs256_merchant_token_returns_401() {
    let (app, forge) = spawn_app_with_token_forge().await;
    let token = forge.sign_hs256(&forge.merchant_claims(app.merchant_id));

    let response = app.get("/v1/admin/sales", Some(&token)).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn admin_route_with_shopper_session_token_returns_401() {
    let app = spawn_app().await;
    let shopper = app.shopper().await;

    let response = app.get("/v1/admin/sales", Some(&shopper.token)).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn admin_route_with_operator_token_returns_403() {
    let app = spawn_app().await;

    let response = app
        .get("/v1/admin/sales", Some(&app.operator_token()))
        .await;

    assert_problem(response, 403, "forbidden").await;
}

#[tokio::test]
async fn admin_route_with_expired_merchant_token_returns_401() {
    let (app, forge) = spawn_app_with_token_forge().await;
    let mut claims = forge.merchant_claims(app.merchant_id);
    let now = chrono::Utc::now().timestamp();
    claims["iat"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);

    let response = app
        .get("/v1/admin/sales", Some(&forge.sign_eddsa(&claims)))
        .await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn admin_route_with_wrong_issuer_or_audience_returns_401() {
    let (app, forge) = spawn_app_with_token_forge().await;
    let valid = forge.merchant_claims(app.merchant_id);
    let accepted = app
        .get("/v1/admin/sales", Some(&forge.sign_eddsa(&valid)))
        .await;
    assert_eq!(accepted.status(), 200, "the forged valid token is accepted");

    for claim in ["iss", "aud"] {
        let mut claims = valid.clone();
        claims[claim] = json!("someone-else");

        let response = app
            .get("/v1/admin/sales", Some(&forge.sign_eddsa(&claims)))
            .await;

        assert_problem(response, 401, "unauthorized").await;
    }
}

// ---- merchant isolation ---------------------------------------------------------------

#[tokio::test]
async fn another_merchant_cannot_see_or_change_a_sale() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 1).await;
    let intruder = app.other_merchant_token();
    let path = |suffix: &str| format!("/v1/admin/sales/{sale}{suffix}");
    let attempts = [
        (Method::GET, path(""), None),
        (Method::PATCH, path(""), Some(json!({ "name": "mine now" }))),
        (Method::POST, path("/pause"), None),
        (Method::POST, path("/resume"), None),
        (Method::POST, path("/end"), None),
        (Method::POST, path("/stock"), Some(json!({ "delta": 5 }))),
        (Method::GET, path("/stats"), None),
    ];

    for (method, path, body) in attempts {
        let case = format!("{method} {path}");
        let mut request = app.request(method, &path, Some(&intruder));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();

        assert_case(&case, response, Expect::Problem(404, "sale_not_found")).await;
    }

    let untouched = app.admin_get_sale(sale).await;
    assert_eq!(untouched.version, 1);
    assert_eq!(untouched.status, "live");
    assert_eq!(untouched.stock.total, 10);
}

#[tokio::test]
async fn another_merchants_listing_does_not_include_the_sale() {
    let app = spawn_app().await;
    app.scheduled_sale().await;
    let intruder = app.other_merchant_token();

    let page = app.list_sales(&intruder, "").await;

    assert!(page.items.is_empty(), "{page:?}");
    assert_eq!(page.next_cursor, None);
}

// ---- list -----------------------------------------------------------------------------

/// The ids of a page's items.
fn ids(page: &Page<Sale>) -> Vec<Uuid> {
    page.items.iter().map(|sale| sale.id).collect()
}

#[tokio::test]
async fn list_pages_through_every_sale_with_a_cursor() {
    let app = spawn_app().await;
    let mut created = HashSet::new();
    for _ in 0..5 {
        created.insert(app.scheduled_sale().await);
    }

    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let page = app.list_sales(&app.merchant_token, &query).await;
        sizes.push(page.items.len());
        seen.extend(ids(&page));
        match page.next_cursor {
            Some(cursor) => query = format!("limit=2&cursor={cursor}"),
            None => break,
        }
        assert!(sizes.len() < 5, "pagination does not end");
    }

    assert_eq!(sizes, [2, 2, 1]);
    let unique: HashSet<Uuid> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates in {seen:?}");
    assert_eq!(unique, created);
}

#[tokio::test]
async fn list_filters_by_status() {
    let app = spawn_app().await;
    let scheduled = [app.scheduled_sale().await, app.scheduled_sale().await];
    let live = app.live_sale(10, 1).await;
    let paused = app.live_sale(10, 1).await;
    assert_eq!(app.transition(paused, "pause").await.status(), 200);
    let ended = app.live_sale(10, 1).await;
    assert_eq!(app.transition(ended, "end").await.status(), 200);
    let expected = [
        ("scheduled", HashSet::from(scheduled)),
        ("live", HashSet::from([live])),
        ("paused", HashSet::from([paused])),
        ("ended", HashSet::from([ended])),
    ];

    for (status, sales) in expected {
        let page = app
            .list_sales(&app.merchant_token, &format!("status={status}"))
            .await;

        let found: HashSet<Uuid> = ids(&page).into_iter().collect();
        assert_eq!(found, sales, "status={status}");
        for item in &page.items {
            assert_eq!(item.status, status);
        }
    }
}

#[tokio::test]
async fn list_filters_sold_out_sales() {
    let app = spawn_app().await;
    let sold_out = app.live_sale(2, 1).await;
    assert_eq!(app.change_stock(sold_out, -2).await.status(), 200);
    app.live_sale(10, 1).await;

    let path = "/v1/admin/sales?status=sold_out";
    let response = app.merchant(Method::GET, path).send().await.unwrap();

    assert_eq!(response.status(), 200, "sold_out is a status (API.md)");
    let page: Page<Sale> = answer(response).await.expect("a page of sales");
    assert_eq!(ids(&page), [sold_out]);
    assert_eq!(page.items[0].status, "sold_out");
}

#[tokio::test]
async fn list_with_limit_out_of_range_returns_422() {
    let app = spawn_app().await;

    for limit in [0, 101] {
        let path = format!("/v1/admin/sales?limit={limit}");
        let response = app.merchant(Method::GET, &path).send().await.unwrap();

        assert_invalid_field(response, "limit").await;
    }
}

#[tokio::test]
async fn list_with_garbage_cursor_or_unknown_parameter_returns_400() {
    let app = spawn_app().await;

    for query in ["cursor=not-a-cursor", "colour=red"] {
        let path = format!("/v1/admin/sales?{query}");
        let response = app.merchant(Method::GET, &path).send().await.unwrap();

        assert_problem(response, 400, "invalid_query").await;
    }
}

// ---- get ------------------------------------------------------------------------------

#[tokio::test]
async fn get_returns_the_sale_with_etag_of_its_version() {
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;
    let patched = app.patch_sale(sale, json!({ "name": "v2" }), None).await;
    assert_eq!(patched.status(), 200);

    let response = app.admin_sale(Method::GET, sale, "").send().await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(etag(&response), "\"v2\"");
    let body: Sale = answer(response).await.expect("the sale");
    assert_eq!(body.version, 2);
    assert_eq!(body.id, sale);
}

#[tokio::test]
async fn get_with_malformed_or_unknown_id_returns_404() {
    let app = spawn_app().await;

    for id in ["not-a-uuid".to_owned(), Uuid::new_v4().to_string()] {
        let response = app.admin_sale(Method::GET, &id, "").send().await.unwrap();

        assert_problem(response, 404, "sale_not_found").await;
    }
}

// ---- patch ----------------------------------------------------------------------------

#[tokio::test]
async fn patch_changes_name_and_bumps_version() {
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;

    let response = app
        .patch_sale(sale, json!({ "name": "Renamed" }), None)
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(etag(&response), "\"v2\"");
    let body: Sale = answer(response).await.expect("the patched sale");
    assert_eq!(body.name, "Renamed");
    assert_eq!(body.version, 2);
    assert_eq!(app.admin_get_sale(sale).await.name, "Renamed");
}

#[tokio::test]
async fn patch_with_current_if_match_succeeds() {
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;
    let current = etag(&app.admin_sale(Method::GET, sale, "").send().await.unwrap());

    let response = app
        .patch_sale(sale, json!({ "name": "Renamed" }), Some(&current))
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(etag(&response), "\"v2\"");
}

#[tokio::test]
async fn patch_with_stale_if_match_returns_412() {
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;
    let first = app.patch_sale(sale, json!({ "name": "First" }), Some("\"v1\""));
    assert_eq!(first.await.status(), 200);

    let response = app
        .patch_sale(sale, json!({ "name": "Second" }), Some("\"v1\""))
        .await;

    assert_problem(response, 412, "precondition_failed").await;
    assert_eq!(app.admin_get_sale(sale).await.name, "First");
}

#[tokio::test]
async fn concurrent_patches_with_the_same_if_match_let_exactly_one_win() {
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;

    let patches = (0..20).map(|i| {
        let body = json!({ "name": format!("Writer {i}") });
        app.patch_sale(sale, body, Some("\"v1\""))
    });
    let responses = join_all(patches).await;

    let count = |status: u16| responses.iter().filter(|r| r.status() == status).count();
    assert_eq!((count(200), count(412)), (1, 19));
    assert_eq!(app.admin_get_sale(sale).await.version, 2);
}

#[tokio::test]
async fn concurrent_patches_without_if_match_all_succeed() {
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;

    let patches = (0..20).map(|i| {
        let body = json!({ "description": format!("Writer {i}") });
        app.patch_sale(sale, body, None)
    });
    let responses = join_all(patches).await;

    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses, [200; 20],
        "an unconditional PATCH has no precondition to fail"
    );
    assert_eq!(app.admin_get_sale(sale).await.version, 21);
}

#[tokio::test]
async fn pause_and_resume_during_concurrent_edits_succeed() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 1).await;

    for action in ["pause", "resume", "pause", "resume", "pause"] {
        let edits = (0..10).map(|i| {
            let body = json!({ "description": format!("Edit {i}") });
            app.patch_sale(sale, body, None)
        });
        let (response, _) = tokio::join!(app.transition(sale, action), join_all(edits));

        let status = response.status();
        assert_eq!(status, 200, "{action}: {}", response.text().await.unwrap());
    }
    assert_eq!(app.admin_get_sale(sale).await.status, "paused");
}

#[tokio::test]
async fn patch_of_a_locked_field_of_a_live_sale_returns_409() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 1).await;
    let locked = [
        json!({ "price": { "amount_minor": 1, "currency": "EUR" } }),
        json!({ "sku": "OTHER-SKU" }),
        json!({ "starts_at": app.clock_now() - chrono::Duration::hours(1) }),
        json!({ "per_user_limit": 5 }),
    ];

    for patch in locked {
        let case = patch.to_string();
        let response = app.patch_sale(sale, patch, None).await;

        assert_case(&case, response, Expect::Problem(409, "sale_locked")).await;
    }
    assert_eq!(app.admin_get_sale(sale).await.version, 1);
}

#[tokio::test]
async fn patch_of_name_description_and_end_of_a_live_sale_succeeds() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 1).await;
    let ends_at = (app.clock_now() + chrono::Duration::hours(5)).to_rfc3339();

    let response = app
        .patch_sale(
            sale,
            json!({ "name": "Live rename", "description": "New words", "ends_at": ends_at }),
            None,
        )
        .await;

    assert_eq!(response.status(), 200);
    let body: Sale = answer(response).await.expect("the patched sale");
    assert_eq!(body.name, "Live rename");
    assert_eq!(body.description, "New words");
    let parsed = |v: &str| chrono::DateTime::parse_from_rfc3339(v).unwrap();
    assert_eq!(parsed(&body.ends_at), parsed(&ends_at));
    assert_eq!(body.status, "live");
}

#[tokio::test]
async fn patch_with_stock_returns_422() {
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;

    let response = app
        .patch_sale(sale, json!({ "stock": { "total": 900 } }), None)
        .await;

    assert_invalid_field(response, "stock").await;
}

#[tokio::test]
async fn patch_ending_before_the_start_returns_422() {
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;

    let response = app
        .patch_sale(sale, json!({ "ends_at": "2031-01-01T10:00:00Z" }), None)
        .await;

    assert_invalid_field(response, "ends_at").await;
}

// ---- stock ----------------------------------------------------------------------------

#[tokio::test]
async fn stock_delta_adds_and_retires_units() {
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;

    let added: Sale = answer(app.change_stock(sale, 100).await)
        .await
        .expect("units added");
    let retired: Sale = answer(app.change_stock(sale, -50).await)
        .await
        .expect("units retired");

    assert_eq!((added.stock.total, added.stock.available), (600, 600));
    assert_eq!((retired.stock.total, retired.stock.available), (550, 550));
}

#[tokio::test]
async fn retiring_more_than_the_free_units_returns_409() {
    let app = spawn_app().await;
    let sale = app.live_sale(3, 2).await;
    let shopper = app.shopper().await;
    app.reserve(&shopper, sale, 2)
        .await
        .expect("two units are free");

    let response = app.change_stock(sale, -2).await;

    assert_problem(response, 409, "insufficient_free_stock").await;
    assert_eq!(app.admin_get_sale(sale).await.stock, Stock::new(3, 1, 2, 0));
}

#[tokio::test]
async fn stock_delta_of_zero_returns_422() {
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;

    let response = app.change_stock(sale, 0).await;

    assert_invalid_field(response, "delta").await;
}

// ---- pause / resume / end -------------------------------------------------------------

#[tokio::test]
async fn pause_resume_and_end_move_a_live_sale_through_its_states() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 1).await;

    for (action, status) in [("pause", "paused"), ("resume", "live"), ("end", "ended")] {
        let response = app.transition(sale, action).await;

        assert_eq!(response.status(), 200, "{action}");
        let body: Sale = answer(response).await.expect("the sale");
        assert_eq!(body.status, status, "after {action}");
    }
}

#[tokio::test]
async fn resume_of_a_sale_that_is_not_paused_returns_409() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 1).await;

    let response = app.transition(sale, "resume").await;

    assert_problem(response, 409, "invalid_transition").await;
}

#[tokio::test]
async fn pause_of_an_ended_sale_returns_409() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 1).await;
    assert_eq!(app.transition(sale, "end").await.status(), 200);

    let response = app.transition(sale, "pause").await;

    assert_problem(response, 409, "invalid_transition").await;
}

// ---- stats ----------------------------------------------------------------------------

#[tokio::test]
async fn stats_show_the_reserve_latency_that_the_controller_reads() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 1).await;
    assert_eq!(app.stats(sale).await.unwrap().signals.reserve_p95_ms, 0.0);

    for _ in 0..3 {
        app.reserve(&app.direct_shopper(), sale, 1).await.unwrap();
    }

    // Each process publishes its latency windows every second.
    let measured = test_support::eventually_within(std::time::Duration::from_secs(10), || async {
        app.stats(sale).await.unwrap().signals.reserve_p95_ms > 0.0
    })
    .await;
    assert!(measured, "reserve_p95_ms stayed 0 after three reserves");
}

#[tokio::test]
async fn stats_returns_every_field_of_the_contract() {
    let app = spawn_app().await;
    let sale = app.live_sale(10, 1).await;

    let response = app
        .admin_sale(Method::GET, sale, "/stats")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let stats: Value = response.json().await.unwrap();
    assert_keys(
        &stats,
        &[
            "sale_id",
            "at",
            "status",
            "stock",
            "queue",
            "admission",
            "signals",
            "orders",
        ],
    );
    // Exactly the contract's keys, nested objects included, then the values typed.
    let typed: Stats = serde_json::from_value(stats.clone()).expect("stats as API.md writes them");
    assert_eq!(typed.sale_id, sale);
    assert_eq!(typed.status, "live");
    assert_keys(&stats["stock"], &["total", "available", "held", "sold"]);
    assert_keys(
        &stats["queue"],
        &["prequeue", "waiting", "serving_position", "admitted_total"],
    );
    assert_keys(
        &stats["admission"],
        &[
            "mode",
            "rate_per_second",
            "active_shoppers",
            "no_show_rate",
            "last_change_reason",
        ],
    );
    assert_keys(
        &stats["signals"],
        &[
            "checkout_p95_ms",
            "reserve_p95_ms",
            "pool_wait_ms",
            "outbox_backlog",
            "outbox_oldest_age_ms",
        ],
    );
    assert_keys(&stats["orders"], &["count", "revenue"]);
    assert_keys(&stats["orders"]["revenue"], &["amount_minor", "currency"]);
    assert_eq!(typed.orders.revenue.currency, "EUR");
}
