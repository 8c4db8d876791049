//! Every error the API answers, converted to `application/problem+json` (RFC 9457) in
//! exactly one place. 4xx carry a stable `code` clients branch on; 5xx log the cause
//! chain and answer a generic body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthError;
use reservations::Error as Domain;
use waiting_room::NotAdmitted;

/// The problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem (`/problems/<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time, for a human.
    pub detail: String,
    /// Stable snake_case code for clients to branch on.
    pub code: String,
}

/// An error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A domain rule refused the request, or the domain failed.
    #[error(transparent)]
    Domain(#[from] Domain),
    /// The bearer token was missing, invalid or of another role.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The waiting room refused.
    #[error(transparent)]
    Queue(#[from] waiting_room::Error),
    /// The admission token did not admit this shopper to this sale.
    #[error(transparent)]
    NotAdmitted(#[from] NotAdmitted),
    /// A 4xx the HTTP layer decides (bad body, bad query, unknown route …).
    #[error("{detail}")]
    Client {
        /// The status.
        status: StatusCode,
        /// The stable code.
        code: &'static str,
        /// The explanation.
        detail: String,
    },
    /// This client asks too often: `429` with `Retry-After`.
    #[error("too many requests; slow down")]
    RateLimited {
        /// Seconds to wait.
        retry_after: u32,
    },
    /// Load was shed or a dependency is down: `503` with `Retry-After`.
    #[error("{detail}")]
    Unavailable {
        /// The stable code.
        code: &'static str,
        /// The explanation.
        detail: String,
        /// Seconds to wait.
        retry_after: u32,
    },
    /// Our fault.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// The stable code clients branch on (and metrics label outcomes with).
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    /// A 4xx with a code.
    pub fn client(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Client {
            status,
            code,
            detail: detail.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        use StatusCode as S;
        let detail = self.to_string();
        match self {
            ApiError::Domain(e) => match e {
                Domain::InvalidField(_) => (S::UNPROCESSABLE_ENTITY, "invalid_field", detail),
                Domain::SaleNotFound => (S::NOT_FOUND, "sale_not_found", detail),
                Domain::StaleVersion(_) => (S::PRECONDITION_FAILED, "precondition_failed", detail),
                Domain::SaleLocked(_) => (S::CONFLICT, "sale_locked", detail),
                Domain::InvalidTransition { .. } => (S::CONFLICT, "invalid_transition", detail),
                Domain::InsufficientFreeStock { .. } => {
                    (S::CONFLICT, "insufficient_free_stock", detail)
                }
                Domain::InvalidQuantity(_) => (S::UNPROCESSABLE_ENTITY, "invalid_quantity", detail),
                Domain::SaleNotLive => (S::CONFLICT, "sale_not_live", detail),
                Domain::SoldOut => (S::CONFLICT, "sold_out", detail),
                Domain::PerUserLimitExceeded(_) => (S::CONFLICT, "per_user_limit_exceeded", detail),
                Domain::SoldOutLines(_) => (S::CONFLICT, "sold_out", detail),
                Domain::VariantLimitExceeded { .. } => {
                    (S::CONFLICT, "per_user_limit_exceeded", detail)
                }
                Domain::VariantRequired => (S::UNPROCESSABLE_ENTITY, "variant_required", detail),
                Domain::VariantNotFound => (S::NOT_FOUND, "variant_not_found", detail),
                Domain::IdempotencyKeyReused => {
                    (S::UNPROCESSABLE_ENTITY, "idempotency_key_reused", detail)
                }
                Domain::ReservationNotFound => (S::NOT_FOUND, "reservation_not_found", detail),
                Domain::ReservationExpired => (S::GONE, "reservation_expired", detail),
                Domain::ReservationNotHeld(_) => (S::CONFLICT, "reservation_not_held", detail),
                Domain::PaymentDeclined => (S::PAYMENT_REQUIRED, "payment_declined", detail),
                Domain::PaymentUnavailable => {
                    (S::SERVICE_UNAVAILABLE, "payment_unavailable", detail)
                }
                Domain::UnitUnavailable => (S::CONFLICT, "unit_unavailable", detail),
                Domain::CheckoutInProgress => (S::CONFLICT, "request_in_progress", detail),
                Domain::OrderNotFound => (S::NOT_FOUND, "order_not_found", detail),
                Domain::NotCancellable(_) => (S::CONFLICT, "not_cancellable", detail),
                Domain::NotRefundable(_) => (S::CONFLICT, "not_refundable", detail),
                // Text Postgres cannot hold (a NUL character): the client's input, not
                // a store failure — whichever field it came in.
                Domain::Database(e) if unstorable_text(e) => (
                    S::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    "a text field holds a character that cannot be stored (NUL)".to_owned(),
                ),
                Domain::Redis(_) | Domain::Database(_) => (
                    S::SERVICE_UNAVAILABLE,
                    "dependency_unavailable",
                    String::new(),
                ),
                Domain::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", String::new()),
            },
            ApiError::Queue(e) => match e {
                waiting_room::Error::SaleClosed => (S::CONFLICT, "sale_closed", detail),
                waiting_room::Error::QueueFull => (S::SERVICE_UNAVAILABLE, "queue_full", detail),
                waiting_room::Error::NotInQueue => (S::NOT_FOUND, "not_in_queue", detail),
                waiting_room::Error::AccessCodeRequired => {
                    (S::FORBIDDEN, "access_code_required", detail)
                }
                waiting_room::Error::AccessCodeInvalid => {
                    (S::FORBIDDEN, "access_code_invalid", detail)
                }
                waiting_room::Error::AccessCodeUsedUp => {
                    (S::CONFLICT, "access_code_used_up", detail)
                }
                waiting_room::Error::Sale(Domain::SaleNotFound) => {
                    (S::NOT_FOUND, "sale_not_found", detail)
                }
                waiting_room::Error::Sale(_) | waiting_room::Error::Redis(_) => (
                    S::SERVICE_UNAVAILABLE,
                    "dependency_unavailable",
                    String::new(),
                ),
                waiting_room::Error::Internal(_) => {
                    (S::INTERNAL_SERVER_ERROR, "internal", String::new())
                }
            },
            ApiError::Auth(AuthError::WrongRole) => (S::FORBIDDEN, "forbidden", detail),
            ApiError::Auth(_) => (S::UNAUTHORIZED, "unauthorized", detail),
            ApiError::NotAdmitted(_) => (S::FORBIDDEN, "not_admitted", detail),
            ApiError::Client {
                status,
                code,
                detail,
            } => (*status, code, detail.clone()),
            ApiError::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate_limited", detail),
            ApiError::Unavailable { code, detail, .. } => {
                (S::SERVICE_UNAVAILABLE, code, detail.clone())
            }
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", String::new()),
        }
    }
}

impl ApiError {
    /// Members a problem carries besides the standard five (RFC 9457 extensions), v1.1:
    /// a refused cart's `lines`, and which per-shopper `limit` was hit.
    fn extensions(&self) -> Option<serde_json::Value> {
        match self {
            ApiError::Domain(Domain::SoldOutLines(lines)) => {
                Some(serde_json::json!({ "lines": lines }))
            }
            ApiError::Domain(Domain::PerUserLimitExceeded(limit)) => Some(serde_json::json!({
                "limit": { "scope": "sale", "per_user_limit": limit }
            })),
            ApiError::Domain(Domain::VariantLimitExceeded { variant, limit }) => {
                Some(serde_json::json!({
                    "limit": { "scope": "variant", "variant_id": variant, "per_user_limit": limit }
                }))
            }
            _ => None,
        }
    }
}

/// A problem response with extension members (`extra`, a JSON object) next to the
/// standard ones.
fn problem_with(
    status: StatusCode,
    code: &str,
    detail: &str,
    extra: serde_json::Value,
) -> Response {
    let mut response = problem(status, code, detail);
    let title = status.canonical_reason().unwrap_or("Error").to_owned();
    let mut body = serde_json::json!({
        "type": format!("/problems/{code}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    *response.body_mut() = axum::body::Body::from(body.to_string());
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}

/// Builds a problem response; the one constructor every error path goes through.
pub fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error").to_owned();
    let body = Problem {
        kind: format!("/problems/{code}"),
        title,
        status: status.as_u16(),
        detail: detail.to_owned(),
        code: code.to_owned(),
    };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// Postgres refused a text value (SQLSTATE 22021, a NUL byte; 22P05, untranslatable).
fn unstorable_text(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "22021" || code == "22P05")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, detail) = self.parts();
        let extensions = self.extensions();
        let retry_after = match &self {
            ApiError::Unavailable { retry_after, .. } | ApiError::RateLimited { retry_after } => {
                Some(*retry_after)
            }
            ApiError::Domain(Domain::PaymentUnavailable) => Some(2),
            ApiError::Queue(waiting_room::Error::QueueFull) => Some(5),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(1),
            _ => None,
        };
        // The cause chain goes to the log with the request's span; the client gets no
        // internals. A 503 is a designed answer (a provider down, a breaker open, a store
        // restarting), not a defect: WARN, so ERROR stays the page-worthy level.
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = ?anyhow::Error::from(self), code, "request failed");
        } else if status.is_server_error() {
            tracing::warn!(error = ?anyhow::Error::from(self), code, "request failed");
        }
        let detail = if detail.is_empty() {
            match status {
                StatusCode::SERVICE_UNAVAILABLE => {
                    "a dependency is unavailable; retry shortly".to_owned()
                }
                _ => "an internal error occurred".to_owned(),
            }
        } else {
            detail
        };
        let mut response = match extensions {
            Some(extra) => problem_with(status, code, &detail, extra),
            None => problem(status, code, &detail),
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
