//! Holds: reserve, read, release. Reserving needs the shopper's token and an admission
//! token for this shopper and sale.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::http::extract::{
    AdmissionToken, AppJson, ClientCapped, IdPath, IdempotencyKey, Shopper,
};
use crate::http::shed::{self, Priority};
use crate::http::AppState;
use reservations::ids::{ReservationId, SaleId};
use reservations::{CartLine, Quantity, Reservation};

/// The reservation routes.
pub fn router() -> Router<AppState> {
    // Reserving and releasing are the buy path (a release gives units back to the
    // shoppers still buying); reading a hold is not.
    let buy = Router::new()
        .route("/v1/sales/{sale_id}/reservations", post(reserve))
        .route("/v1/reservations/{reservation_id}", delete(release));
    let read = Router::new().route("/v1/reservations/{reservation_id}", get(get_reservation));
    Router::new()
        .merge(shed::classed(buy, Priority::Buy))
        .merge(shed::classed(read, Priority::Other))
}

/// Body of a reserve call: `{ "quantity": n }` (v1; a one-variant sale) or
/// `{ "lines": [{ "variant_id", "quantity" }, …] }` (v1.1: a cart, 1–20 lines of
/// distinct variants, held all or none). Exactly one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveBody {
    /// Units to hold, 1 up to the sale's per-shopper limit (v1).
    #[schema(minimum = 1, maximum = 100)]
    #[serde(default)]
    quantity: Option<i64>,
    /// The cart's lines (v1.1).
    #[serde(default)]
    lines: Option<Vec<CartLine>>,
}

/// Hold units of a live sale.
#[utoipa::path(post, path = "/v1/sales/{sale_id}/reservations", tag = "reservations", request_body = ReserveBody,
    params(("sale_id" = uuid::Uuid, Path), ("X-Admission-Token" = String, Header), ("Idempotency-Key" = Option<String>, Header,
        pattern = "^[!-~]{1,255}$", description = "1–255 visible ASCII characters")),
    responses((status = 201, body = Reservation), (status = 200, body = Reservation, description = "replayed idempotent request"),
        (status = 403, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem), (status = 429, body = crate::error::Problem)),
    security(("shopper" = [])))]
async fn reserve(
    State(state): State<AppState>,
    _: ClientCapped,
    Shopper(shopper): Shopper,
    IdPath(sale): IdPath,
    IdempotencyKey(key): IdempotencyKey,
    AdmissionToken(admission): AdmissionToken,
    AppJson(body): AppJson<ReserveBody>,
) -> Result<(StatusCode, axum::Json<Reservation>), ApiError> {
    let token = admission.as_ref().and_then(|v| v.to_str().ok());
    state.admission.check(token, shopper.0, sale)?;
    let ask = match (body.quantity, body.lines) {
        (Some(quantity), None) => Ok(Quantity::parse(quantity)?),
        (None, Some(lines)) => Err(lines),
        _ => {
            return Err(ApiError::client(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "give either `quantity` or `lines`",
            ))
        }
    };
    // The controller's reserve signal (`/stats` `reserve_p95_ms`): the hold's own time,
    // whatever it answered, like checkout's.
    let started = std::time::Instant::now();
    let reserved = match ask {
        Ok(quantity) => {
            state
                .sales
                .reserve(SaleId(sale), shopper, quantity, key.as_deref())
                .await
        }
        Err(lines) => {
            state
                .sales
                .reserve_cart(SaleId(sale), shopper, &lines, key.as_deref())
                .await
        }
    };
    state.signals.reserve.record(started.elapsed());
    let reserved = reserved?;
    let status = if reserved.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(reserved.reservation)))
}

/// One of the shopper's reservations.
#[utoipa::path(get, path = "/v1/reservations/{reservation_id}", tag = "reservations",
    params(("reservation_id" = uuid::Uuid, Path)),
    responses((status = 200, body = Reservation), (status = 404, body = crate::error::Problem)),
    security(("shopper" = [])))]
async fn get_reservation(
    State(state): State<AppState>,
    Shopper(shopper): Shopper,
    IdPath(id): IdPath,
) -> Result<axum::Json<Reservation>, ApiError> {
    Ok(axum::Json(
        state.sales.reservation(shopper, ReservationId(id)).await?,
    ))
}

/// Give the units back at once.
#[utoipa::path(delete, path = "/v1/reservations/{reservation_id}", tag = "reservations",
    params(("reservation_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("shopper" = [])))]
async fn release(
    State(state): State<AppState>,
    Shopper(shopper): Shopper,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    state.sales.release(shopper, ReservationId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
