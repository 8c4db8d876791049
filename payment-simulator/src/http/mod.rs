//! The provider over HTTP: every route in one router, behind the secret-key check
//! and one log line per call.
//!
//! - `calls`: the Stripe endpoints and the pipeline of faults and idempotency.
//! - `params`: Stripe's form/query encoding into typed requests.
//! - `objects`: the ledger as Stripe's JSON.
//! - `error`: Stripe's error answers.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;

mod calls;
mod error;
mod objects;
mod params;

use error::{ApiError, FaultTag};

use crate::settings::Settings;
use crate::Simulator;

/// Every route of the simulator: the Stripe subset and `/v1/simulator/settings`.
pub fn router(sim: Arc<Simulator>) -> Router {
    Router::new()
        .route(
            "/v1/payment_intents",
            post(calls::create_intent).get(calls::list_intents),
        )
        .route("/v1/payment_intents/search", get(calls::search_intents))
        .route("/v1/payment_intents/{id}", get(calls::retrieve_intent))
        .route(
            "/v1/payment_intents/{id}/capture",
            post(calls::capture_intent),
        )
        .route(
            "/v1/payment_intents/{id}/cancel",
            post(calls::cancel_intent),
        )
        .route("/v1/refunds", post(calls::create_refund))
        .route(
            "/v1/simulator/settings",
            get(get_settings).put(put_settings),
        )
        .fallback(unknown_url)
        .layer(middleware::from_fn_with_state(sim.clone(), authenticate))
        .layer(middleware::from_fn(log_call))
        .with_state(sim)
}

/// `Authorization: Bearer <key>`, or HTTP Basic with the key as user (Stripe takes both).
fn presented_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let user = decoded.split_once(':').map_or(decoded.as_str(), |(u, _)| u);
        return Some(user.to_owned());
    }
    None
}

async fn authenticate(State(sim): State<Arc<Simulator>>, req: Request, next: Next) -> Response {
    match presented_key(req.headers()) {
        Some(key) if key == sim.secret_key() => next.run(req).await,
        _ => ApiError::unauthorized().into_response(),
    }
}

/// One line per call: method, path, status, idempotency key, replay, the fault that
/// fired — never the `Authorization` header.
async fn log_call(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let started = Instant::now();
    let response = next.run(req).await;
    let fault = response
        .extensions()
        .get::<FaultTag>()
        .map(|f| f.0.as_str());
    let replayed = response.headers().contains_key("idempotent-replayed");
    tracing::info!(
        method = %method,
        path,
        status = response.status().as_u16(),
        idempotency_key = key.as_deref(),
        replayed,
        fault,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "payment simulator call"
    );
    response
}

/// `GET /v1/simulator/settings`: the settings in force, countdowns and outage as left.
async fn get_settings(State(sim): State<Arc<Simulator>>) -> Json<Settings> {
    Json(sim.settings())
}

/// `PUT /v1/simulator/settings`: replaces them all (`422` naming the bad field).
async fn put_settings(
    State(sim): State<Arc<Simulator>>,
    body: Bytes,
) -> Result<Json<Settings>, ApiError> {
    let settings: Settings = serde_json::from_slice(&body)
        .map_err(|e| ApiError::settings_invalid(None, e.to_string()))?;
    settings
        .validate()
        .map_err(|e| ApiError::settings_invalid(Some(e.field), e.message))?;
    sim.set_settings(settings);
    Ok(Json(sim.settings()))
}

async fn unknown_url(method: Method, uri: Uri) -> ApiError {
    ApiError::unknown_url(method.as_str(), uri.path())
}
