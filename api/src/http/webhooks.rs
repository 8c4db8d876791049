//! The merchant's webhook endpoints (API.md v1.1 "Webhooks"): register, list, delete,
//! rotate the secret, and read an endpoint's delivery log. The rules (SSRF guard, caps,
//! signing, delivery) are `outbox_relay::webhooks`'; this module maps them to HTTP.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete as delete_route, get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use outbox_relay::webhooks::{DeliveryLogItem, Endpoint, Endpoints};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;
use crate::http::admin::page_limit;
use crate::http::extract::{AppJson, AppQuery, Merchant};
use crate::http::shed::{self, Priority};
use crate::http::AppState;

/// The webhook routes.
pub fn router() -> Router<AppState> {
    let routes = Router::new()
        .route("/v1/admin/webhooks", post(create).get(list))
        .route("/v1/admin/webhooks/{webhook_id}", delete_route(delete))
        .route(
            "/v1/admin/webhooks/{webhook_id}/rotate-secret",
            post(rotate_secret),
        )
        .route(
            "/v1/admin/webhooks/{webhook_id}/deliveries",
            get(deliveries),
        );
    shed::classed(routes, Priority::Other)
}

/// The one place an `outbox_relay` webhook error becomes an answer.
fn refused(e: outbox_relay::Error) -> ApiError {
    match e {
        outbox_relay::Error::InvalidWebhook(detail) => {
            ApiError::client(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", detail)
        }
        e @ outbox_relay::Error::WebhookLimit(_) => {
            ApiError::client(StatusCode::CONFLICT, "webhook_limit_reached", e.to_string())
        }
        e => ApiError::Internal(anyhow::Error::new(e)),
    }
}

fn not_found() -> ApiError {
    ApiError::client(
        StatusCode::NOT_FOUND,
        "webhook_not_found",
        "no such webhook endpoint",
    )
}

/// The endpoint id of the path; a malformed one is a missing endpoint.
fn endpoint_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| not_found())
}

/// Body of a registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where deliveries are POSTed: http or https, at most 2,048 characters, on a
    /// public address unless the operator allows private ones.
    url: String,
    /// The event types to receive: `order.placed`, `order.cancelled`,
    /// `order.refunded`, `sale.started`, `sale.sold_out`, `sale.ended`.
    events: Vec<String>,
}

/// A registered endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    id: Uuid,
    url: String,
    events: Vec<String>,
    /// `whsec_…`: only in the answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl WebhookView {
    fn new(endpoint: Endpoint, secret: Option<String>) -> Self {
        WebhookView {
            id: endpoint.id,
            url: endpoint.url,
            events: endpoint
                .events
                .iter()
                .map(|e| e.name().to_owned())
                .collect(),
            secret,
        }
    }
}

/// The merchant's endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    items: Vec<WebhookView>,
}

/// A new secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    /// `whsec_…`, shown once; the previous secret keeps signing for 24 h.
    secret: String,
}

/// Register an endpoint; the answer carries its secret, the only time it is shown.
#[utoipa::path(post, path = "/v1/admin/webhooks", tag = "webhooks", request_body = CreateWebhook,
    responses((status = 201, body = WebhookView), (status = 409, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("merchant" = [])))]
async fn create(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    AppJson(body): AppJson<CreateWebhook>,
) -> Result<Response, ApiError> {
    let events = Endpoints::parse_events(&body.events).map_err(refused)?;
    let (endpoint, secret) = state
        .webhooks
        .create(merchant.0, &body.url, &events)
        .await
        .map_err(refused)?;
    let view = WebhookView::new(endpoint, Some(secret.expose().to_owned()));
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

/// The merchant's endpoints, oldest first (never their secrets).
#[utoipa::path(get, path = "/v1/admin/webhooks", tag = "webhooks",
    responses((status = 200, body = WebhookList)), security(("merchant" = [])))]
async fn list(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
) -> Result<axum::Json<WebhookList>, ApiError> {
    let endpoints = state.webhooks.list(merchant.0).await.map_err(refused)?;
    Ok(axum::Json(WebhookList {
        items: endpoints
            .into_iter()
            .map(|e| WebhookView::new(e, None))
            .collect(),
    }))
}

/// Delete an endpoint (its pending deliveries go with it).
#[utoipa::path(delete, path = "/v1/admin/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem)),
    security(("merchant" = [])))]
async fn delete(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = endpoint_id(&id)?;
    match state
        .webhooks
        .delete(merchant.0, id)
        .await
        .map_err(refused)?
    {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(not_found()),
    }
}

/// A new secret for the endpoint; the old one keeps signing beside it for 24 h.
#[utoipa::path(post, path = "/v1/admin/webhooks/{webhook_id}/rotate-secret", tag = "webhooks",
    params(("webhook_id" = uuid::Uuid, Path)),
    responses((status = 200, body = RotatedSecret), (status = 404, body = crate::error::Problem)),
    security(("merchant" = [])))]
async fn rotate_secret(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<axum::Json<RotatedSecret>, ApiError> {
    let id = endpoint_id(&id)?;
    match state
        .webhooks
        .rotate(merchant.0, id)
        .await
        .map_err(refused)?
    {
        Some(secret) => Ok(axum::Json(RotatedSecret {
            secret: secret.expose().to_owned(),
        })),
        None => Err(not_found()),
    }
}

/// Query of the delivery log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One delivery of the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The message id: the `webhook-id` header the receiver got.
    webhook_id: String,
    event_type: String,
    attempts: i32,
    /// HTTP status of the last attempt; null before one, or when none came back.
    last_status: Option<i32>,
    /// Null once delivered, or once the schedule ran out (then `delivered_at` is null
    /// too: the delivery failed for good).
    next_attempt_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
}

impl From<DeliveryLogItem> for DeliveryView {
    fn from(item: DeliveryLogItem) -> Self {
        DeliveryView {
            webhook_id: item.webhook_id,
            event_type: item.event_type,
            attempts: item.attempts,
            last_status: item.last_status,
            next_attempt_at: item.next_attempt_at,
            delivered_at: item.delivered_at,
        }
    }
}

/// A page of the delivery log.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    items: Vec<DeliveryView>,
    next_cursor: Option<String>,
}

/// The endpoint's deliveries, newest first, keyset-paginated.
#[utoipa::path(get, path = "/v1/admin/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("webhook_id" = uuid::Uuid, Path), DeliveriesQuery),
    responses((status = 200, body = DeliveryPage), (status = 404, body = crate::error::Problem)),
    security(("merchant" = [])))]
async fn deliveries(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    axum::extract::Path(id): axum::extract::Path<String>,
    AppQuery(query): AppQuery<DeliveriesQuery>,
) -> Result<axum::Json<DeliveryPage>, ApiError> {
    let id = endpoint_id(&id)?;
    let limit = page_limit(query.limit)?;
    let before =
        match query.cursor.as_deref() {
            None => None,
            Some(cursor) => Some(cursor.parse::<i64>().ok().filter(|c| *c > 0).ok_or_else(
                || {
                    ApiError::client(
                        StatusCode::BAD_REQUEST,
                        "invalid_query",
                        "cursor: not a cursor from this API",
                    )
                },
            )?),
        };
    let Some((items, next)) = state
        .webhooks
        .deliveries(merchant.0, id, limit, before)
        .await
        .map_err(refused)?
    else {
        return Err(not_found());
    };
    Ok(axum::Json(DeliveryPage {
        items: items.into_iter().map(DeliveryView::from).collect(),
        next_cursor: next.map(|c| c.to_string()),
    }))
}
