//! The project's own extractors: malformed input gets the project's problem+json with
//! a stable code, never the framework's plain-text rejection.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::auth::{AuthError, Role};
use crate::error::ApiError;
use crate::http::AppState;
use reservations::ids::{MerchantId, ShopperId};

/// A JSON body: strict (unknown fields rejected by the types, and the body must be a
/// JSON object), with project errors.
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::client(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| json_rejection(JsonRejection::BytesRejection(e)))?;
        // serde fills a struct from a JSON array too (`[1]` as `{"quantity": 1}`), past
        // `deny_unknown_fields`; every body of this API is an object.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::client(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "the body must be a JSON object",
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(AppJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `application/json` or any `application/*+json`, as axum's own `Json` accepts.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence
        .strip_prefix("application/")
        .is_some_and(|subtype| subtype == "json" || subtype.ends_with("+json"))
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::client(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is larger than 64 KiB",
            )
        }
        other => ApiError::client(StatusCode::BAD_REQUEST, "invalid_body", other.body_text()),
    }
}

/// Query parameters, with project errors.
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| AppQuery(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::client(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
            })
    }
}

/// A UUID path segment. A malformed id cannot name anything, so it answers 404 with
/// the route's not-found code rather than a parse error.
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // The code is chosen up front (a static string: no copy of the path per request).
        let path = parts.uri.path();
        let code = if path.starts_with("/v1/reservations") {
            "reservation_not_found"
        } else if path.starts_with("/v1/orders") {
            "order_not_found"
        } else {
            "sale_not_found"
        };
        let not_found = || ApiError::client(StatusCode::NOT_FOUND, code, "no such id");
        match axum::extract::Path::<Uuid>::from_request_parts(parts, state).await {
            Ok(path) => Ok(IdPath(path.0)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => Err(not_found()),
            Err(e) => Err(ApiError::client(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                e.body_text(),
            )),
        }
    }
}

fn bearer(parts: &Parts) -> Result<&str, AuthError> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Invalid)?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)
}

fn verified(parts: &Parts, state: &AppState, role: Role) -> Result<String, ApiError> {
    let token = bearer(parts)?;
    Ok(state.auth.verify(token, role)?.sub)
}

/// The merchant a request acts for (EdDSA token, role `merchant`).
pub struct Merchant(pub MerchantId);

impl FromRequestParts<AppState> for Merchant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let sub = verified(parts, state, Role::Merchant)?;
        sub.parse()
            .map(Merchant)
            .map_err(|_| AuthError::Invalid.into())
    }
}

/// The shopper a request acts for (HS256 token, role `shopper`).
pub struct Shopper(pub ShopperId);

impl FromRequestParts<AppState> for Shopper {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let sub = verified(parts, state, Role::Shopper)?;
        sub.parse()
            .map(Shopper)
            .map_err(|_| AuthError::Invalid.into())
    }
}

/// An operator of the deployment (EdDSA token, role `operator`).
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        verified(parts, state, Role::Operator).map(|_| Operator)
    }
}

/// The `Idempotency-Key` header: 1–255 visible ASCII characters, when present.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(raw) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let bytes = raw.as_bytes();
        let visible = bytes.iter().all(|b| (0x21..=0x7e).contains(b));
        if bytes.is_empty() || bytes.len() > 255 || !visible {
            return Err(ApiError::client(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1–255 visible ASCII characters",
            ));
        }
        Ok(IdempotencyKey(Some(
            String::from_utf8_lossy(bytes).into_owned(),
        )))
    }
}

/// The `X-Admission-Token` header, when present: the reserve handler reads the one
/// header it needs instead of a copy of the whole map (axum's `HeaderMap` extractor
/// clones it on every request).
pub struct AdmissionToken(pub Option<axum::http::HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for AdmissionToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(AdmissionToken(
            parts.headers.get("x-admission-token").cloned(),
        ))
    }
}

/// Counts the request against the operator's cap per client address (on unless
/// `FLASHSALE_IP_RATE_PER_SECOND` is 0); `429 rate_limited` past it.
pub struct ClientCapped;

impl FromRequestParts<AppState> for ClientCapped {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(cap) = &state.client_cap {
            let peer = parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip());
            cap.check(&parts.headers, peer)?;
        }
        Ok(ClientCapped)
    }
}
