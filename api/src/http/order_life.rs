//! After the purchase (API.md v1.1): the shopper cancels an order, the merchant
//! refunds one. The rules live in `reservations::order_life`; this module is their
//! HTTP face.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::http::extract::{AppJson, IdPath, IdempotencyKey, Merchant, Shopper};
use crate::http::shed::{self, Priority};
use crate::http::AppState;
use reservations::checkout::Order;
use reservations::ids::{OrderId, SaleId};

/// The cancel and refund routes.
pub fn router() -> Router<AppState> {
    let routes = Router::new()
        .route("/v1/orders/{order_id}/cancel", post(cancel))
        .route(
            "/v1/admin/sales/{sale_id}/orders/{order_id}/refund",
            post(refund),
        );
    shed::classed(routes, Priority::Other)
}

fn required(key: Option<String>, what: &str) -> Result<String, ApiError> {
    key.ok_or_else(|| {
        ApiError::client(
            StatusCode::BAD_REQUEST,
            "idempotency_key_required",
            format!("{what} requires an Idempotency-Key header"),
        )
    })
}

/// Cancel your order while `cancellable_until` is in the future: its units go back on
/// sale and the payment is voided (or refunded once captured). A retry with the same
/// `Idempotency-Key` answers the first answer; cancelling a cancelled order answers it.
#[utoipa::path(post, path = "/v1/orders/{order_id}/cancel", tag = "checkout",
    params(("order_id" = uuid::Uuid, Path), ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$")),
    responses((status = 200, body = Order), (status = 400, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("shopper" = [])))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Shopper(shopper): Shopper,
    IdPath(id): IdPath,
    IdempotencyKey(key): IdempotencyKey,
) -> Result<axum::Json<Order>, ApiError> {
    let key = required(key, "cancel")?;
    Ok(axum::Json(
        state
            .checkout
            .life()
            .cancel(shopper, OrderId(id), &key)
            .await?,
    ))
}

/// Body of a refund.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// true: the units go back on sale; false: they leave the sale (retired).
    restock: bool,
}

/// Refund an order of your sale: the payment is refunded (or voided before capture);
/// `restock` says whether its units go back on sale.
#[utoipa::path(post, path = "/v1/admin/sales/{sale_id}/orders/{order_id}/refund", tag = "admin",
    request_body = RefundBody,
    params(("sale_id" = uuid::Uuid, Path), ("order_id" = uuid::Uuid, Path),
        ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$")),
    responses((status = 200, body = Order), (status = 400, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("merchant" = [])))]
pub(crate) async fn refund(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    ids: Result<Path<(Uuid, Uuid)>, PathRejection>,
    IdempotencyKey(key): IdempotencyKey,
    AppJson(body): AppJson<RefundBody>,
) -> Result<axum::Json<Order>, ApiError> {
    // A malformed id names nothing: 404, as every id path answers.
    let Path((sale_id, order_id)) =
        ids.map_err(|_| ApiError::client(StatusCode::NOT_FOUND, "order_not_found", "no such id"))?;
    let key = required(key, "refund")?;
    let sale = state.sales.owned_sale(merchant, SaleId(sale_id)).await?;
    Ok(axum::Json(
        state
            .checkout
            .life()
            .refund(merchant, sale.id, OrderId(order_id), body.restock, &key)
            .await?,
    ))
}
