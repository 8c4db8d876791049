//! Public routes: guest sessions and the cacheable sale page data.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::http::extract::{ClientCapped, IdPath};
use crate::http::shed::{self, Priority};
use crate::http::AppState;
use reservations::ids::{SaleId, ShopperId};
use reservations::sales::{Money, SaleStatus};

/// The public routes.
pub fn router() -> Router<AppState> {
    // A guest session is how a shopper enters the line: shedding it with the other
    // traffic would turn a crowd away before it can even queue.
    let entry = Router::new().route("/v1/sessions", post(create_session));
    let page = Router::new().route("/v1/sales/{sale_id}", get(get_sale));
    Router::new()
        .merge(shed::classed(entry, Priority::Queue))
        .merge(shed::classed(page, Priority::Other))
}

/// A guest shopper session.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    token: String,
    shopper_id: ShopperId,
    expires_at: DateTime<Utc>,
}

/// Start a guest session: a shopper token for the waiting room and checkout.
#[utoipa::path(post, path = "/v1/sessions", tag = "public", responses((status = 201, body = Session),
    (status = 429, body = crate::error::Problem)))]
async fn create_session(
    State(state): State<AppState>,
    _: ClientCapped,
) -> (StatusCode, axum::Json<Session>) {
    let shopper = ShopperId::new();
    let (token, exp) = state.auth.issue_shopper(shopper.0, state.sales.now());
    let session = Session {
        token,
        shopper_id: shopper,
        expires_at: Utc.timestamp_opt(exp, 0).single().unwrap_or_default(),
    };
    (StatusCode::CREATED, axum::Json(session))
}

/// Stock as the public sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicStock {
    total: i64,
    available: i64,
}

/// A sale as the storefront shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicSale {
    id: SaleId,
    name: String,
    description: String,
    price: Money,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    status: SaleStatus,
    per_user_limit: i32,
    stock: PublicStock,
    /// v1.1: each variant with its public stock (absent for a v1 sale).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    variants: Vec<PublicVariant>,
}

/// A variant as the storefront shows it (v1.1).
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicVariant {
    variant_id: reservations::ids::VariantId,
    sku: String,
    name: String,
    price: Money,
    stock: PublicStock,
    per_user_limit: Option<i32>,
}

/// The sale page's data; cacheable for a second, with an `ETag`.
#[utoipa::path(get, path = "/v1/sales/{sale_id}", tag = "public", params(("sale_id" = uuid::Uuid, Path)),
    responses((status = 200, body = PublicSale), (status = 304), (status = 404, body = crate::error::Problem)))]
async fn get_sale(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (sale, stock) = state.sales.get(SaleId(id)).await?;
    let stocks = state.sales.variant_stock(&sale, &stock).await?;
    let listed = sale.lists_variants();
    let status = sale.status(state.sales.now(), &stock);
    // A multi-variant sale's tag names each variant's availability: units may move
    // between variants' holds while the sale's sum stays the same.
    let per_variant: String = match sale.has_variants() {
        true => stocks.iter().map(|s| format!("-{}", s.available)).collect(),
        false => String::new(),
    };
    let etag = format!(
        "W/\"v{}-{}{per_variant}-{:?}\"",
        sale.version, stock.available, status
    );
    let cache = HeaderValue::from_static("public, max-age=1, stale-while-revalidate=5");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        axum::Json(PublicSale {
            id: sale.id,
            name: sale.name,
            description: sale.description,
            price: sale.price,
            starts_at: sale.starts_at,
            ends_at: sale.ends_at,
            status,
            per_user_limit: sale.per_user_limit,
            stock: PublicStock {
                total: stock.total,
                available: stock.available,
            },
            variants: sale
                .variants
                .iter()
                .filter(|_| listed)
                .zip(&stocks)
                .map(|(v, s)| PublicVariant {
                    variant_id: v.id,
                    sku: v.sku.clone(),
                    name: v.name.clone(),
                    price: v.price.clone(),
                    stock: PublicStock {
                        total: s.total,
                        available: s.available,
                    },
                    per_user_limit: v.per_user_limit,
                })
                .collect(),
        })
        .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, cache);
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    Ok(response)
}
