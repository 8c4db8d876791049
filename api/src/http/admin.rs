//! The merchant admin API: every route under `/v1/admin`. A merchant sees and changes
//! only its own sales; another merchant's sale answers 404 like a missing one.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::http::extract::{AppJson, AppQuery, IdPath, Merchant};
use crate::http::shed::{self, Priority};
use crate::http::AppState;
use crate::signals::RedisSignals;
use reservations::ids::{SaleId, VariantId};
use reservations::sales::{
    Access, Admission, DrawBeacon, Money, Sale, SaleInput, SalePatch, SaleStatus, StatusFilter,
    StockView, Transition, VariantInput,
};
use reservations::store::ListCursor;
use waiting_room::runner::SignalSource;

/// The admin routes.
pub fn router() -> Router<AppState> {
    let routes = Router::new()
        .route("/v1/admin/sales", post(create_sale).get(list_sales))
        .route("/v1/admin/sales/{sale_id}", get(get_sale).patch(patch_sale))
        .route("/v1/admin/sales/{sale_id}/stock", post(change_stock))
        .route("/v1/admin/sales/{sale_id}/variants", post(add_variant))
        .route(
            "/v1/admin/sales/{sale_id}/variants/{variant_id}/stock",
            post(change_variant_stock),
        )
        .route("/v1/admin/sales/{sale_id}/pause", post(pause))
        .route("/v1/admin/sales/{sale_id}/resume", post(resume))
        .route("/v1/admin/sales/{sale_id}/end", post(end))
        .route("/v1/admin/sales/{sale_id}/stats", get(stats));
    shed::classed(routes, Priority::Other)
}

/// A sale as the merchant sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SaleView {
    id: SaleId,
    name: String,
    sku: String,
    description: String,
    price: Money,
    stock: StockView,
    per_user_limit: i32,
    hold_ttl_seconds: i32,
    /// How long after an order its shopper may cancel it (v1.1; 0: never).
    cancel_window_seconds: i32,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    status: SaleStatus,
    version: i32,
    admission: Admission,
    /// The beacon round the draw mixes in; absent when none (a v1 sale looks as before).
    #[serde(skip_serializing_if = "Option::is_none")]
    draw_beacon: Option<DrawBeacon>,
    /// Who may join the line: `public` or `codes`.
    access: Access,
    /// The message to the line (null when none).
    message: Option<String>,
    /// v1.1: every variant with its stock. Absent for a sale created the v1 way (its
    /// top-level `sku`, `price` and `stock` describe its one variant).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    variants: Vec<VariantView>,
}

/// A variant of a sale with its stock (v1.1).
#[derive(Debug, Serialize, ToSchema)]
pub struct VariantView {
    variant_id: VariantId,
    sku: String,
    name: String,
    price: Money,
    stock: StockView,
    per_user_limit: Option<i32>,
}

/// Each variant of `sale` with its stock (`stocks` in ordinal order); none for a v1
/// sale, whose answers keep the v1 shape.
pub fn variant_views(sale: &Sale, stocks: &[StockView]) -> Vec<VariantView> {
    if !sale.lists_variants() {
        return Vec::new();
    }
    sale.variants
        .iter()
        .zip(stocks)
        .map(|(v, stock)| VariantView {
            variant_id: v.id,
            sku: v.sku.clone(),
            name: v.name.clone(),
            price: v.price.clone(),
            stock: *stock,
            per_user_limit: v.per_user_limit,
        })
        .collect()
}

impl SaleView {
    /// The view of a sale with its stock, reading its variants' stock.
    async fn read(state: &AppState, sale: Sale, stock: StockView) -> Result<Self, ApiError> {
        let stocks = state.sales.variant_stock(&sale, &stock).await?;
        Ok(Self::new(sale, stock, &stocks, state.sales.now()))
    }

    fn new(sale: Sale, stock: StockView, stocks: &[StockView], now: DateTime<Utc>) -> Self {
        SaleView {
            variants: variant_views(&sale, stocks),
            status: sale.status(now, &stock),
            id: sale.id,
            name: sale.name,
            sku: sale.sku,
            description: sale.description,
            price: sale.price,
            stock,
            per_user_limit: sale.per_user_limit,
            hold_ttl_seconds: sale.hold_ttl_seconds,
            cancel_window_seconds: sale.cancel_window_seconds,
            starts_at: sale.starts_at,
            ends_at: sale.ends_at,
            version: sale.version,
            admission: sale.admission,
            draw_beacon: sale.draw_beacon,
            access: sale.access,
            message: sale.message,
        }
    }
}

/// The sale with its `ETag` (the version), as every admin answer that returns one.
pub(crate) async fn sale_response(
    state: &AppState,
    status: StatusCode,
    (sale, stock): (Sale, StockView),
) -> Result<Response, ApiError> {
    let etag = format!("\"v{}\"", sale.version);
    let view = SaleView::read(state, sale, stock).await?;
    let mut response = (status, axum::Json(view)).into_response();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

/// Create a sale.
#[utoipa::path(post, path = "/v1/admin/sales", tag = "admin", request_body = SaleInput,
    responses((status = 201, body = SaleView), (status = 422, body = crate::error::Problem)),
    security(("merchant" = [])))]
async fn create_sale(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    AppJson(input): AppJson<SaleInput>,
) -> Result<Response, ApiError> {
    let created = state.sales.create(merchant, input).await?;
    sale_response(&state, StatusCode::CREATED, created).await
}

/// Query of the sale listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only sales in this status.
    status: Option<StatusFilter>,
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of results.
#[derive(Debug, Serialize, ToSchema)]
pub struct SalePage {
    items: Vec<SaleView>,
    next_cursor: Option<String>,
}

/// Validates a page size: 1–100, default 20.
pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit.unwrap_or(20) {
        n @ 1..=100 => Ok(n),
        _ => Err(ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "limit: must be between 1 and 100",
        )),
    }
}

/// Encodes a keyset position as an opaque cursor.
pub fn encode_cursor(created_at: DateTime<Utc>, id: uuid::Uuid) -> String {
    let raw = format!("{}.{id}", created_at.timestamp_micros());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Decodes a cursor made by [`encode_cursor`].
pub fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, uuid::Uuid), ApiError> {
    let invalid = || {
        ApiError::client(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "cursor: not a cursor from this API",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid())?;
    let (micros, id) = raw.split_once('.').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    let at = Utc.timestamp_micros(micros).single().ok_or_else(invalid)?;
    Ok((at, id.parse().map_err(|_| invalid())?))
}

/// List the merchant's sales, newest first.
#[utoipa::path(get, path = "/v1/admin/sales", tag = "admin", params(ListQuery),
    responses((status = 200, body = SalePage)), security(("merchant" = [])))]
async fn list_sales(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    AppQuery(query): AppQuery<ListQuery>,
) -> Result<axum::Json<SalePage>, ApiError> {
    let limit = page_limit(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(decode_cursor)
        .transpose()?
        .map(|(created_at, id)| ListCursor { created_at, id });
    let (rows, next) = state
        .sales
        .list(merchant, query.status, limit, after)
        .await?;
    let mut items = Vec::with_capacity(rows.len());
    for (sale, stock) in rows {
        items.push(SaleView::read(&state, sale, stock).await?);
    }
    Ok(axum::Json(SalePage {
        items,
        next_cursor: next.map(|c| encode_cursor(c.created_at, c.id)),
    }))
}

/// One sale, with its `ETag`.
#[utoipa::path(get, path = "/v1/admin/sales/{sale_id}", tag = "admin",
    params(("sale_id" = uuid::Uuid, Path)),
    responses((status = 200, body = SaleView), (status = 404, body = crate::error::Problem)),
    security(("merchant" = [])))]
async fn get_sale(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let found = state.sales.get_owned(merchant, SaleId(id)).await?;
    sale_response(&state, StatusCode::OK, found).await
}

/// The version named by `If-Match`, when the header is present. `*` matches any.
fn if_match(headers: &HeaderMap) -> Result<Option<i32>, ApiError> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let stale = || {
        ApiError::client(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "If-Match names no version of this sale",
        )
    };
    let text = raw.to_str().map_err(|_| stale())?.trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .strip_prefix('v')
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(stale)
}

/// Edit a sale. `If-Match` makes the edit conditional on the version read.
#[utoipa::path(patch, path = "/v1/admin/sales/{sale_id}", tag = "admin", request_body = SalePatch,
    params(("sale_id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = SaleView), (status = 409, body = crate::error::Problem),
        (status = 412, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("merchant" = [])))]
async fn patch_sale(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    IdPath(id): IdPath,
    headers: HeaderMap,
    AppJson(patch): AppJson<SalePatch>,
) -> Result<Response, ApiError> {
    let version = if_match(&headers)?;
    let patched = state
        .sales
        .patch(merchant, SaleId(id), patch, version)
        .await?;
    sale_response(&state, StatusCode::OK, patched).await
}

/// Body of a stock change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockDelta {
    /// Units to add (positive) or retire from the free units (negative); not zero.
    #[schema(minimum = -1_000_000, maximum = 1_000_000)]
    delta: i64,
}

/// Add or retire units.
#[utoipa::path(post, path = "/v1/admin/sales/{sale_id}/stock", tag = "admin", request_body = StockDelta,
    params(("sale_id" = uuid::Uuid, Path)),
    responses((status = 200, body = SaleView), (status = 409, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("merchant" = [])))]
async fn change_stock(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    IdPath(id): IdPath,
    AppJson(body): AppJson<StockDelta>,
) -> Result<Response, ApiError> {
    let changed = state
        .sales
        .change_stock(merchant, SaleId(id), body.delta)
        .await?;
    sale_response(&state, StatusCode::OK, changed).await
}

/// Add a variant to a sale before its start (v1.1).
#[utoipa::path(post, path = "/v1/admin/sales/{sale_id}/variants", tag = "admin", request_body = VariantInput,
    params(("sale_id" = uuid::Uuid, Path)),
    responses((status = 201, body = SaleView), (status = 409, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("merchant" = [])))]
async fn add_variant(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    IdPath(id): IdPath,
    AppJson(body): AppJson<VariantInput>,
) -> Result<Response, ApiError> {
    let added = state.sales.add_variant(merchant, SaleId(id), body).await?;
    sale_response(&state, StatusCode::CREATED, added).await
}

/// Add or retire units of one variant (v1.1).
#[utoipa::path(post, path = "/v1/admin/sales/{sale_id}/variants/{variant_id}/stock", tag = "admin",
    request_body = StockDelta,
    params(("sale_id" = uuid::Uuid, Path), ("variant_id" = uuid::Uuid, Path)),
    responses((status = 200, body = SaleView), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("merchant" = [])))]
async fn change_variant_stock(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    ids: Result<
        axum::extract::Path<(uuid::Uuid, uuid::Uuid)>,
        axum::extract::rejection::PathRejection,
    >,
    AppJson(body): AppJson<StockDelta>,
) -> Result<Response, ApiError> {
    // A malformed id names nothing: 404, as every id path answers.
    let axum::extract::Path((sale, variant)) =
        ids.map_err(|_| ApiError::client(StatusCode::NOT_FOUND, "sale_not_found", "no such id"))?;
    let changed = state
        .sales
        .change_variant_stock(merchant, SaleId(sale), VariantId(variant), body.delta)
        .await?;
    sale_response(&state, StatusCode::OK, changed).await
}

async fn transition(
    state: AppState,
    merchant: Merchant,
    id: uuid::Uuid,
    action: Transition,
) -> Result<Response, ApiError> {
    let changed = state
        .sales
        .transition(merchant.0, SaleId(id), action)
        .await?;
    sale_response(&state, StatusCode::OK, changed).await
}

/// Pause a sale.
#[utoipa::path(post, path = "/v1/admin/sales/{sale_id}/pause", tag = "admin", params(("sale_id" = uuid::Uuid, Path)),
    responses((status = 200, body = SaleView), (status = 409, body = crate::error::Problem)), security(("merchant" = [])))]
async fn pause(
    State(state): State<AppState>,
    merchant: Merchant,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    transition(state, merchant, id, Transition::Pause).await
}

/// Resume a paused sale.
#[utoipa::path(post, path = "/v1/admin/sales/{sale_id}/resume", tag = "admin", params(("sale_id" = uuid::Uuid, Path)),
    responses((status = 200, body = SaleView), (status = 409, body = crate::error::Problem)), security(("merchant" = [])))]
async fn resume(
    State(state): State<AppState>,
    merchant: Merchant,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    transition(state, merchant, id, Transition::Resume).await
}

/// End a sale for good.
#[utoipa::path(post, path = "/v1/admin/sales/{sale_id}/end", tag = "admin", params(("sale_id" = uuid::Uuid, Path)),
    responses((status = 200, body = SaleView), (status = 409, body = crate::error::Problem)), security(("merchant" = [])))]
async fn end(
    State(state): State<AppState>,
    merchant: Merchant,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    transition(state, merchant, id, Transition::End).await
}

/// The waiting room's counters.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct QueueStats {
    prequeue: i64,
    waiting: i64,
    serving_position: i64,
    admitted_total: i64,
}

/// The admission controller's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdmissionStats {
    mode: reservations::sales::AdmissionMode,
    rate_per_second: f64,
    active_shoppers: i64,
    no_show_rate: f64,
    last_change_reason: Option<String>,
}

/// The signals the controller reads.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct SignalStats {
    checkout_p95_ms: f64,
    reserve_p95_ms: f64,
    pool_wait_ms: f64,
    outbox_backlog: i64,
    outbox_oldest_age_ms: i64,
}

/// Orders and revenue.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderStats {
    count: i64,
    revenue: Money,
}

/// Live statistics of a sale.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    sale_id: SaleId,
    at: DateTime<Utc>,
    status: SaleStatus,
    stock: StockView,
    /// v1.1: each variant with its stock (absent for a v1 sale).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    variants: Vec<VariantView>,
    queue: QueueStats,
    admission: AdmissionStats,
    signals: SignalStats,
    orders: OrderStats,
}

/// Live statistics: stock, line, admission, signals, orders.
#[utoipa::path(get, path = "/v1/admin/sales/{sale_id}/stats", tag = "admin", params(("sale_id" = uuid::Uuid, Path)),
    responses((status = 200, body = Stats)), security(("merchant" = [])))]
async fn stats(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    IdPath(id): IdPath,
) -> Result<axum::Json<Stats>, ApiError> {
    let (sale, stock) = state.sales.get_owned(merchant, SaleId(id)).await?;
    let stocks = state.sales.variant_stock(&sale, &stock).await?;
    let now = state.sales.now();
    let (count, revenue_minor) = state.sales.order_totals(sale.id).await?;
    let line = state.queue.line_state(sale.id).await?;
    let source = RedisSignals::new(
        state.redis.clone(),
        state.db.clone(),
        state.sales.redis_prefix().to_owned(),
    );
    let measured = source.measure().await.map_err(ApiError::Internal)?;
    Ok(axum::Json(Stats {
        sale_id: sale.id,
        at: now,
        status: sale.status(now, &stock),
        stock,
        variants: variant_views(&sale, &stocks),
        queue: QueueStats {
            prequeue: line.prequeue,
            waiting: line.waiting(),
            serving_position: line.serving,
            admitted_total: line.serving,
        },
        admission: AdmissionStats {
            mode: sale.admission.mode,
            rate_per_second: line.rate,
            active_shoppers: line.active,
            no_show_rate: line.no_show,
            last_change_reason: line.reason,
        },
        signals: SignalStats {
            checkout_p95_ms: measured.checkout_p95_ms.unwrap_or(0.0),
            reserve_p95_ms: measured.reserve_p95_ms.unwrap_or(0.0),
            pool_wait_ms: measured.pool_wait_ms,
            outbox_backlog: measured.outbox_backlog,
            outbox_oldest_age_ms: measured.outbox_oldest_age_ms,
        },
        orders: OrderStats {
            count,
            revenue: Money {
                amount_minor: revenue_minor,
                currency: sale.price.currency.clone(),
            },
        },
    }))
}
