//! The waiting room: join the line, read your ticket, leave; and the published draw.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::http::extract::{ClientCapped, IdPath, Shopper};
use crate::http::proof::{self, ClientAddress};
use crate::http::shed::{self, Priority};
use crate::http::AppState;
use reservations::ids::SaleId;
use waiting_room::queue::DrawInfo;
use waiting_room::Ticket;

/// The waiting-room routes.
pub fn router() -> Router<AppState> {
    let line = Router::new()
        .route("/v1/sales/{sale_id}/queue", post(join))
        .route("/v1/sales/{sale_id}/queue/me", get(me).delete(leave));
    let draw = Router::new()
        .route("/v1/sales/{sale_id}/draw", get(draw))
        .route("/v1/sales/{sale_id}/draw/tickets", get(drawn_tickets));
    Router::new()
        .merge(shed::classed(line, Priority::Queue))
        .merge(shed::classed(draw, Priority::Other))
}

/// The header a shopper sends their latest `place_token` in: a place the line lost is
/// given back (waiting_room's `heal`).
const PLACE_TOKEN: &str = "x-place-token";

fn place_token(headers: &HeaderMap) -> Option<&str> {
    headers.get(PLACE_TOKEN).and_then(|v| v.to_str().ok())
}

/// The optional body of a join.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    /// An access code: needed on a `codes` sale; a priority code moves its holder
    /// ahead of the public pre-queue.
    access_code: Option<String>,
}

/// The join body, when there is one (a join with no body is a join without a code).
fn join_body(headers: &HeaderMap, body: &Bytes) -> Result<JoinBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(JoinBody::default());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !json {
        return Err(ApiError::client(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ));
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::client(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::client(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()))
}

/// Join the line: 201 the first time, 200 with the same ticket after. Where the sale
/// asks for it, a first join carries a proof of work (`X-Join-Proof`, see `proof.rs`).
/// A closed sale (paused, ended, sold out) answers `409 sale_closed` before any proof
/// is asked; the access code is checked after the proof (an index probe, but the
/// proof and the caps meter who may ask).
#[utoipa::path(post, path = "/v1/sales/{sale_id}/queue", tag = "waiting-room", params(("sale_id" = uuid::Uuid, Path),
        ("X-Join-Proof" = Option<String>, Header, description = "`<challenge>:<nonce>` when the sale asks for a proof of work"),
        ("X-Place-Token" = Option<String>, Header, description = "the latest place_token")),
    request_body(content = Option<JoinBody>, description = "optional: `{ \"access_code\": \"…\" }`"),
    responses((status = 201, body = Ticket), (status = 200, body = Ticket), (status = 409, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 429, body = crate::error::Problem),
        (status = 503, body = crate::error::Problem)), security(("shopper" = [])))]
async fn join(
    State(state): State<AppState>,
    _: ClientCapped,
    Shopper(shopper): Shopper,
    IdPath(sale): IdPath,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Ticket>), ApiError> {
    state.queue_limiter.check(shopper.0)?;
    let body = join_body(&headers, &body)?;
    let record = state.queue.open_sale(SaleId(sale)).await?;
    proof::guard(&state, shopper, &record, &headers).await?;
    let (ticket, created) = state
        .queue
        .join_open(
            shopper,
            &record,
            place_token(&headers),
            body.access_code.as_deref(),
            address,
        )
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(ticket)))
}

/// The shopper's ticket: state, position, wait, and the admission token once admitted.
#[utoipa::path(get, path = "/v1/sales/{sale_id}/queue/me", tag = "waiting-room",
    params(("sale_id" = uuid::Uuid, Path), ("X-Place-Token" = Option<String>, Header, description = "the latest place_token")),
    responses((status = 200, body = Ticket), (status = 404, body = crate::error::Problem),
        (status = 429, body = crate::error::Problem)), security(("shopper" = [])))]
async fn me(
    State(state): State<AppState>,
    _: ClientCapped,
    Shopper(shopper): Shopper,
    IdPath(sale): IdPath,
    headers: HeaderMap,
) -> Result<axum::Json<Ticket>, ApiError> {
    state.queue_limiter.check(shopper.0)?;
    let ticket = state
        .queue
        .ticket_with(shopper, SaleId(sale), place_token(&headers))
        .await?;
    Ok(axum::Json(ticket))
}

/// Leave the line.
#[utoipa::path(delete, path = "/v1/sales/{sale_id}/queue/me", tag = "waiting-room", params(("sale_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem)), security(("shopper" = [])))]
async fn leave(
    State(state): State<AppState>,
    Shopper(shopper): Shopper,
    IdPath(sale): IdPath,
) -> Result<StatusCode, ApiError> {
    state.queue.leave(shopper, SaleId(sale)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The pre-queue lottery: the commitment before the start, the seed after; with the
/// sale's beacon round (`beacon`, null until known) and what became of it (`draw_beacon`).
#[utoipa::path(get, path = "/v1/sales/{sale_id}/draw", tag = "waiting-room", params(("sale_id" = uuid::Uuid, Path)),
    responses((status = 200, body = DrawInfo), (status = 404, body = crate::error::Problem)))]
async fn draw(
    State(state): State<AppState>,
    IdPath(sale): IdPath,
) -> Result<axum::Json<DrawInfo>, ApiError> {
    Ok(axum::Json(state.queue.draw_info(SaleId(sale)).await?))
}

/// The pre-queued ticket ids in drawn order.
#[derive(Debug, Serialize, ToSchema)]
pub struct DrawnTickets {
    /// Ticket ids, first place first (priority-code holders ahead); empty before the
    /// start.
    tickets: Vec<String>,
}

/// The pre-queued tickets in drawn order (after the start), to check the draw. The body
/// is rendered once after the draw and served from the process's cache.
#[utoipa::path(get, path = "/v1/sales/{sale_id}/draw/tickets", tag = "waiting-room", params(("sale_id" = uuid::Uuid, Path)),
    responses((status = 200, body = DrawnTickets), (status = 404, body = crate::error::Problem)))]
async fn drawn_tickets(
    State(state): State<AppState>,
    IdPath(sale): IdPath,
) -> Result<Response, ApiError> {
    let body = state.queue.drawn_tickets_body(SaleId(sale)).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(Bytes::from_owner(ArcStr(body))),
    )
        .into_response())
}

/// A cached body handed to hyper without copying it.
struct ArcStr(std::sync::Arc<str>);

impl AsRef<[u8]> for ArcStr {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}
