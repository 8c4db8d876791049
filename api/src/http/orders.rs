//! Checkout and orders: the shopper's checkout and order history, the merchant's
//! order listing of a sale.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::http::admin::{decode_cursor, encode_cursor, page_limit};
use crate::http::extract::{
    AppJson, AppQuery, ClientCapped, IdPath, IdempotencyKey, Merchant, Shopper,
};
use crate::http::shed::{self, Priority};
use crate::http::AppState;
use reservations::checkout::{CheckoutRequest, Order, Placement};
use reservations::ids::{OrderId, ReservationId, SaleId};
use reservations::payment::PaymentToken;
use reservations::Error as Domain;

/// The checkout and order routes.
pub fn router() -> Router<AppState> {
    let buy = Router::new().route("/v1/reservations/{reservation_id}/checkout", post(checkout));
    let history = Router::new()
        .route("/v1/orders/{order_id}", get(get_order))
        .route("/v1/orders", get(list_orders))
        .route("/v1/admin/sales/{sale_id}/orders", get(sale_orders));
    Router::new()
        .merge(shed::classed(buy, Priority::Buy))
        .merge(shed::classed(history, Priority::Other))
}

/// Body of a checkout.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    /// A card token; the simulator understands `tok_ok`, `tok_declined`, `tok_slow`, `tok_error`.
    #[schema(min_length = 1, max_length = 255)]
    payment_token: String,
}

/// Pay for a held reservation. `Idempotency-Key` is required: a retry with the same key
/// and body returns the first answer and never charges twice. When the deployment
/// stripes its stock (`FLASHSALE_STOCK_STRIPES` > 1), an order that would take the
/// shopper's orders of the sale past `per_user_limit` is `409 per_user_limit_exceeded`
/// (nothing is charged and the hold is released).
#[utoipa::path(post, path = "/v1/reservations/{reservation_id}/checkout", tag = "checkout", request_body = CheckoutBody,
    params(("reservation_id" = uuid::Uuid, Path), ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$",
        description = "1–255 visible ASCII characters; a retry with the same key returns the first answer")),
    responses((status = 201, body = Order), (status = 400, body = crate::error::Problem),
        (status = 402, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
        (status = 410, body = crate::error::Problem), (status = 422, body = crate::error::Problem),
        (status = 429, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("shopper" = [])))]
async fn checkout(
    State(state): State<AppState>,
    _: ClientCapped,
    Shopper(shopper): Shopper,
    IdPath(reservation): IdPath,
    IdempotencyKey(key): IdempotencyKey,
    headers: HeaderMap,
    AppJson(body): AppJson<CheckoutBody>,
) -> Result<Response, ApiError> {
    let key = key.ok_or_else(|| {
        ApiError::client(
            StatusCode::BAD_REQUEST,
            "idempotency_key_required",
            "checkout requires an Idempotency-Key header",
        )
    })?;
    let payment_token = PaymentToken::parse(body.payment_token).map_err(Domain::from)?;
    let correlation_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // Recorded however it ends, a cut-off included (the timer's drop).
    let timer = crate::signals::CheckoutTimer::start(&state.signals);
    let answer = timer
        .time(state.checkout.checkout(CheckoutRequest {
            shopper,
            reservation: ReservationId(reservation),
            idempotency_key: key,
            payment_token,
            correlation_id,
        }))
        .await;
    timer.finish(&answer);
    let (status, order) = match answer? {
        Placement::Placed(order) => (StatusCode::CREATED, order),
        // A replay answers what the first request answered (API.md: "a retry with the
        // same key and body returns the first result"), its status included.
        Placement::Replayed(order) => (StatusCode::CREATED, order),
    };
    Ok((status, axum::Json(order)).into_response())
}

/// One of the shopper's orders.
#[utoipa::path(get, path = "/v1/orders/{order_id}", tag = "checkout", params(("order_id" = uuid::Uuid, Path)),
    responses((status = 200, body = Order), (status = 404, body = crate::error::Problem)), security(("shopper" = [])))]
async fn get_order(
    State(state): State<AppState>,
    Shopper(shopper): Shopper,
    IdPath(id): IdPath,
) -> Result<axum::Json<Order>, ApiError> {
    Ok(axum::Json(
        state.checkout.order(shopper, OrderId(id)).await?,
    ))
}

/// Paging query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    items: Vec<Order>,
    next_cursor: Option<String>,
}

/// Fetches one more row than asked to know whether a next page exists.
async fn paged<F, Fut>(query: PageQuery, fetch: F) -> Result<axum::Json<OrderPage>, ApiError>
where
    F: FnOnce(i64, Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>) -> Fut,
    Fut: std::future::Future<Output = reservations::Result<Vec<Order>>>,
{
    let limit = page_limit(query.limit)?;
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut items = fetch(limit + 1, after).await?;
    let next_cursor = (items.len() as i64 > limit).then(|| {
        items.truncate(limit as usize);
        let last = items.last().expect("a full page has a last row");
        encode_cursor(last.created_at, last.order_id.0)
    });
    Ok(axum::Json(OrderPage { items, next_cursor }))
}

/// The shopper's orders, newest first.
#[utoipa::path(get, path = "/v1/orders", tag = "checkout", params(PageQuery),
    responses((status = 200, body = OrderPage)), security(("shopper" = [])))]
async fn list_orders(
    State(state): State<AppState>,
    Shopper(shopper): Shopper,
    AppQuery(query): AppQuery<PageQuery>,
) -> Result<axum::Json<OrderPage>, ApiError> {
    paged(query, |limit, after| {
        state.checkout.shopper_orders(shopper, limit, after)
    })
    .await
}

/// A sale's orders, newest first.
#[utoipa::path(get, path = "/v1/admin/sales/{sale_id}/orders", tag = "admin", params(("sale_id" = uuid::Uuid, Path), PageQuery),
    responses((status = 200, body = OrderPage), (status = 404, body = crate::error::Problem)), security(("merchant" = [])))]
async fn sale_orders(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    IdPath(id): IdPath,
    AppQuery(query): AppQuery<PageQuery>,
) -> Result<axum::Json<OrderPage>, ApiError> {
    let sale = state.sales.owned_sale(merchant, SaleId(id)).await?;
    paged(query, |limit, after| {
        state.checkout.sale_orders(sale.id, limit, after)
    })
    .await
}
