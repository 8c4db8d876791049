//! Operations: liveness, readiness, metrics and the OpenAPI document.

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
use reservations::payment::{SimulatedPayments, SimulatorSettings};

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

fn simulator(state: &AppState) -> Result<&std::sync::Arc<SimulatedPayments>, ApiError> {
    state.simulator.as_ref().ok_or_else(|| {
        ApiError::client(
            StatusCode::NOT_FOUND,
            "not_found",
            "a real payment provider is configured",
        )
    })
}

/// The payment simulator's settings in force.
#[utoipa::path(get, path = "/v1/ops/payment-simulator", tag = "ops",
    responses((status = 200, body = SimulatorSettings), (status = 404, body = crate::error::Problem)), security(("operator" = [])))]
async fn get_simulator(
    State(state): State<AppState>,
    _: Operator,
) -> Result<axum::Json<SimulatorSettings>, ApiError> {
    Ok(axum::Json(simulator(&state)?.settings()))
}

/// Change the simulator's latency and failure rate (rehearsals slow payments mid-sale).
#[utoipa::path(put, path = "/v1/ops/payment-simulator", tag = "ops", request_body = SimulatorSettings,
    responses((status = 200, body = SimulatorSettings), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)), security(("operator" = [])))]
async fn put_simulator(
    State(state): State<AppState>,
    _: Operator,
    AppJson(settings): AppJson<SimulatorSettings>,
) -> Result<axum::Json<SimulatorSettings>, ApiError> {
    let simulator = simulator(&state)?;
    settings.validate().map_err(reservations::Error::from)?;
    simulator.set_settings(settings);
    tracing::info!(?settings, "payment simulator settings changed");
    Ok(axum::Json(simulator.settings()))
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
