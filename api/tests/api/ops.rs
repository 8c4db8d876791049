//! Operations and edge behaviour: health and readiness, metrics, the OpenAPI document,
//! the public sale page, guest sessions, unknown routes and methods, request ids.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{
    answer, assert_keys, assert_problem, etag, spawn_app, spawn_app_behind_redis_proxy,
    spawn_app_with, PublicStock, SalePage, Session,
};

// ---- health and readiness -------------------------------------------------------------

#[tokio::test]
async fn healthz_returns_200() {
    let app = spawn_app().await;

    let response = app.client.get(app.url("/healthz")).send().await.unwrap();

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn readyz_returns_200_while_redis_and_postgres_answer() {
    let app = spawn_app().await;

    let response = app.client.get(app.url("/readyz")).send().await.unwrap();

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn readyz_returns_503_when_redis_is_unreachable() {
    let (app, redis) = spawn_app_behind_redis_proxy().await;
    let before = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(before.status(), 200, "ready through the proxy");

    redis.cut();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();

    assert!(response.headers().contains_key("retry-after"));
    let problem = answer::<Value>(response).await.unwrap_err();
    problem.assert_is(503, "not_ready", "Redis cut");
    assert_eq!(problem.detail, "not answering: redis");
}

#[tokio::test]
async fn readyz_returns_503_when_postgres_is_unreachable() {
    let app = spawn_app().await;

    // Closing the app's own pool makes Postgres unreachable for this app only.
    app.app_state.db.close().await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();

    assert!(response.headers().contains_key("retry-after"));
    let problem = answer::<Value>(response).await.unwrap_err();
    problem.assert_is(503, "not_ready", "Postgres closed");
    assert_eq!(problem.detail, "not answering: postgres");
}

// ---- metrics and OpenAPI --------------------------------------------------------------

#[tokio::test]
async fn metrics_exposes_request_latency_after_a_request() {
    let app = spawn_app().await;
    let _ = app.client.get(app.url("/healthz")).send().await.unwrap();

    let response = app.client.get(app.url("/metrics")).send().await.unwrap();

    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    assert!(
        text.contains("flashsale_http_request_duration_seconds"),
        "{text}"
    );
    assert!(text.contains(r#"route="/healthz""#), "{text}");
}

#[tokio::test]
async fn invented_methods_share_one_metrics_label_instead_of_adding_series() {
    // Arrange: a client sends 20 requests, each with a method of its own invention.
    let app = spawn_app().await;
    for k in 0..20 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{k}").as_bytes()).unwrap();
        let _ = app
            .client
            .request(method, app.url("/healthz"))
            .send()
            .await
            .unwrap();
    }

    // Act
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // Assert: none of the invented methods is a label; they count under OTHER.
    assert!(!text.contains("INVENTED"), "{text}");
    assert!(text.contains(r#"method="OTHER""#), "{text}");
}

/// Every route of the routers in `api/src/http/*.rs`, as OpenAPI names them.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/sessions"),
    ("get", "/v1/sales/{sale_id}"),
    ("post", "/v1/sales/{sale_id}/challenge"),
    ("post", "/v1/sales/{sale_id}/reservations"),
    ("get", "/v1/reservations/{reservation_id}"),
    ("delete", "/v1/reservations/{reservation_id}"),
    ("post", "/v1/admin/sales"),
    ("get", "/v1/admin/sales"),
    ("get", "/v1/admin/sales/{sale_id}"),
    ("patch", "/v1/admin/sales/{sale_id}"),
    ("post", "/v1/admin/sales/{sale_id}/stock"),
    ("post", "/v1/admin/sales/{sale_id}/pause"),
    ("post", "/v1/admin/sales/{sale_id}/resume"),
    ("post", "/v1/admin/sales/{sale_id}/end"),
    ("get", "/v1/admin/sales/{sale_id}/stats"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

#[tokio::test]
async fn openapi_document_describes_every_route() {
    let app = spawn_app().await;

    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "openapi version {version:?}");
    assert!(doc["info"]["title"].is_string());
    for (method, path) in ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is missing from the OpenAPI paths"
        );
    }
}

// ---- public sale page -----------------------------------------------------------------

#[tokio::test]
async fn public_sale_returns_only_public_fields_with_cache_headers() {
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;

    let response = app
        .client
        .get(app.url(&format!("/v1/sales/{sale}")))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("cache-control"));
    assert!(response.headers().contains_key("etag"));
    let body: Value = response.json().await.unwrap();
    assert_keys(
        &body,
        &[
            "id",
            "name",
            "description",
            "price",
            "starts_at",
            "ends_at",
            "status",
            "per_user_limit",
            "stock",
        ],
    );
    let page: SalePage = serde_json::from_value(body).expect("the public page of API.md");
    assert_eq!(page.id, sale);
    assert_eq!(page.status, "scheduled");
    assert_eq!(
        page.stock,
        PublicStock {
            total: 500,
            available: 500
        }
    );
}

#[tokio::test]
async fn public_sale_with_matching_if_none_match_returns_304() {
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;
    let url = app.url(&format!("/v1/sales/{sale}"));
    let first = app.client.get(&url).send().await.unwrap();

    let response = app
        .client
        .get(&url)
        .header("if-none-match", etag(&first))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 304);
    assert_eq!(etag(&response), etag(&first));
}

#[tokio::test]
async fn public_sale_with_unknown_id_returns_404() {
    let app = spawn_app().await;

    let response = app
        .client
        .get(app.url(&format!("/v1/sales/{}", Uuid::new_v4())))
        .send()
        .await
        .unwrap();

    assert_problem(response, 404, "sale_not_found").await;
}

// ---- sessions -------------------------------------------------------------------------

#[tokio::test]
async fn create_session_returns_201_with_a_shopper_token() {
    let app = spawn_app().await;

    let response = app
        .client
        .post(app.url("/v1/sessions"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_keys(&body, &["token", "shopper_id", "expires_at"]);
    let session: Session = serde_json::from_value(body).expect("a session as API.md writes it");
    assert!(!session.token.is_empty());
    assert!(!session.shopper_id.is_nil(), "shopper_id is a UUID");
    let expires_at = chrono::DateTime::parse_from_rfc3339(&session.expires_at).unwrap();
    assert!(expires_at > chrono::Utc::now(), "expires in the future");
}

// ---- routing edges and request ids ----------------------------------------------------

#[tokio::test]
async fn unknown_route_returns_404_problem() {
    let app = spawn_app().await;

    let response = app.client.get(app.url("/v1/nope")).send().await.unwrap();

    assert_problem(response, 404, "not_found").await;
}

#[tokio::test]
async fn wrong_method_returns_405_problem() {
    let app = spawn_app().await;

    let response = app
        .merchant(Method::DELETE, "/v1/admin/sales")
        .send()
        .await
        .unwrap();

    assert_problem(response, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let requests = [
        app.request(Method::GET, "/healthz", None),
        app.request(Method::GET, "/v1/nope", None),
        app.request(Method::DELETE, "/v1/admin/sales", None),
        app.request(Method::GET, "/v1/admin/sales", None),
        app.merchant(Method::GET, "/v1/admin/sales"),
    ];

    for request in requests {
        let response = request.send().await.unwrap();

        let id = response.headers().get("x-request-id");
        assert!(
            id.is_some_and(|v| !v.is_empty()),
            "{} {} has no x-request-id",
            response.status(),
            response.url()
        );
    }
}

#[tokio::test]
async fn a_client_supplied_request_id_is_echoed_back() {
    let app = spawn_app().await;

    let response = app
        .request(Method::GET, "/healthz", None)
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();

    assert_eq!(response.headers()["x-request-id"], "client-chosen-42");
}

#[tokio::test]
async fn the_service_pools_end_long_statements_and_idle_transactions_at_the_timeout() {
    let app = spawn_app_with(|c| c.db_statement_timeout = Duration::from_millis(700)).await;

    let shown: String = sqlx::query_scalar("show statement_timeout")
        .fetch_one(&app.app_state.db)
        .await
        .unwrap();
    assert_eq!(shown, "700ms");

    // A statement past the limit is cancelled by the server (SQLSTATE 57014) …
    let long = sqlx::query("select pg_sleep(3)")
        .execute(&app.app_state.db)
        .await
        .unwrap_err();
    let code = long.as_database_error().and_then(|e| e.code());
    assert_eq!(code.as_deref(), Some("57014"), "{long}");

    // … and a transaction its caller walked away from is ended instead of holding the
    // connection (and its locks) for ever.
    let mut abandoned = app.app_state.db.begin().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(sqlx::query("select 1")
        .execute(&mut *abandoned)
        .await
        .is_err());
    drop(abandoned);
    let again: i32 = sqlx::query_scalar("select 1")
        .fetch_one(&app.app_state.db)
        .await
        .unwrap();
    assert_eq!(again, 1, "the pool serves on with a fresh connection");
}
