//! Operations: liveness, readiness, metrics, the OpenAPI document and the payment
//! simulator's settings.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;

use crate::error::{problem, ApiError};
use crate::http::extract::{AppJson, Operator};
use crate::http::shed::{self, Priority};
use crate::http::AppState;
use payment_simulator::Settings;

/// The operations routes.
pub fn router() -> Router<AppState> {
    // Probes and scrapes must answer under overload, or a shedding process looks dead.
    let probes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    let other = Router::new().route("/openapi.json", get(openapi)).route(
        "/v1/ops/payment-simulator",
        get(get_simulator).put(put_simulator),
    );
    Router::new()
        .merge(shed::classed(probes, Priority::Exempt))
        .merge(shed::classed(other, Priority::Other))
}

/// Asks the provider's simulator control API (`/v1/simulator/settings`): the same for
/// a simulator in this process and one run on its own. A real provider has no such
/// route: `404`.
async fn simulator_settings(
    state: &AppState,
    change: Option<&Settings>,
) -> Result<axum::Json<Settings>, ApiError> {
    let method = if change.is_some() {
        reqwest::Method::PUT
    } else {
        reqwest::Method::GET
    };
    let mut request = state
        .provider
        .request(method, payment_simulator::SETTINGS_PATH)
        .timeout(Duration::from_secs(5));
    if let Some(settings) = change {
        request = request.json(settings);
    }
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, "the payment simulator's control API did not answer");
        ApiError::Unavailable {
            code: "dependency_unavailable",
            detail: "the payment provider did not answer".into(),
            retry_after: 1,
        }
    };
    let response = request.send().await.map_err(|e| unavailable(&e))?;
    if response.status() == StatusCode::NOT_FOUND {
        return Err(ApiError::client(
            StatusCode::NOT_FOUND,
            "not_found",
            "a real payment provider is configured",
        ));
    }
    let response = response.error_for_status().map_err(|e| unavailable(&e))?;
    Ok(axum::Json(
        response.json().await.map_err(|e| unavailable(&e))?,
    ))
}

/// The payment simulator's settings in force.
#[utoipa::path(get, path = "/v1/ops/payment-simulator", tag = "ops",
    responses((status = 200, body = Settings), (status = 404, body = crate::error::Problem)), security(("operator" = [])))]
async fn get_simulator(
    State(state): State<AppState>,
    _: Operator,
) -> Result<axum::Json<Settings>, ApiError> {
    simulator_settings(&state, None).await
}

/// Change the simulator's latency, failures and faults (rehearsals slow payments
/// mid-sale, lose answers, take the provider down).
#[utoipa::path(put, path = "/v1/ops/payment-simulator", tag = "ops", request_body = Settings,
    responses((status = 200, body = Settings), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)), security(("operator" = [])))]
async fn put_simulator(
    State(state): State<AppState>,
    _: Operator,
    AppJson(settings): AppJson<Settings>,
) -> Result<axum::Json<Settings>, ApiError> {
    settings.validate().map_err(|e| {
        reservations::Error::from(reservations::sales::FieldError {
            field: e.field,
            message: e.message,
        })
    })?;
    let applied = simulator_settings(&state, Some(&settings)).await?;
    tracing::info!(settings = ?applied.0, "payment simulator settings changed");
    Ok(applied)
}

/// 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200)))]
async fn healthz() -> &'static str {
    "ok"
}

/// 200 when Redis and Postgres answer (each within a second), else 503.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200), (status = 503, body = crate::error::Problem)))]
async fn readyz(State(state): State<AppState>) -> Response {
    let limit = Duration::from_secs(1);
    let redis = tokio::time::timeout(limit, async {
        let mut conn = state.redis.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await
    });
    let postgres = tokio::time::timeout(limit, sqlx::query("select 1").execute(&state.db));
    let (redis, postgres) = tokio::join!(redis, postgres);
    let down: Vec<&str> = [
        ("redis", matches!(redis, Ok(Ok(_)))),
        ("postgres", matches!(postgres, Ok(Ok(_)))),
    ]
    .into_iter()
    .filter(|(_, up)| !up)
    .map(|(name, _)| name)
    .collect();
    if down.is_empty() {
        "ready".into_response()
    } else {
        let mut response = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            &format!("not answering: {}", down.join(", ")),
        );
        response.headers_mut().insert(header::RETRY_AFTER, 1.into());
        response
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI 3 document of every route.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200)))]
async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(crate::http::ApiDoc::openapi())
}
