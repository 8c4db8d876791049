//! The merchant's side of the line (API.md v1.1, "the line"): access codes (upload by
//! JSON or CSV, listing) and the message to the line. The rules live in
//! `waiting_room::codes` and the sale catalogue; this wires them to HTTP.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{post, put};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::http::admin::{page_limit, sale_response};
use crate::http::extract::{AppJson, AppQuery, IdPath, Merchant};
use crate::http::shed::{self, Priority};
use crate::http::AppState;
use reservations::ids::SaleId;
use reservations::sales::SalePatch;
use waiting_room::codes::{self, CodeView, NewCode, UploadError, Uploaded};

/// Largest upload of codes: 100,000 codes of up to 128 characters with their fields.
/// The one route allowed past the 64 KiB body limit (a code list is data, not a form).
pub const MAX_UPLOAD_BYTES: usize = 16 * 1024 * 1024;

/// The routes of codes and the message.
pub fn router() -> Router<AppState> {
    let upload = Router::new()
        .route(
            "/v1/admin/sales/{sale_id}/access-codes",
            post(upload_codes).get(list_codes),
        )
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES));
    let message = Router::new().route("/v1/admin/sales/{sale_id}/message", put(set_message));
    shed::classed(upload.merge(message), Priority::Other)
}

/// A JSON upload.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeUpload {
    /// 1–100,000 codes.
    codes: Vec<NewCode>,
}

fn invalid(e: UploadError) -> ApiError {
    ApiError::client(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        e.to_string(),
    )
}

/// Upload access codes: `{ "codes": [...] }` or `text/csv` with a `code,uses,priority`
/// header. Codes the sale has already are counted as duplicates.
#[utoipa::path(post, path = "/v1/admin/sales/{sale_id}/access-codes", tag = "admin",
    params(("sale_id" = uuid::Uuid, Path)), request_body = CodeUpload,
    responses((status = 201, body = Uploaded), (status = 422, body = crate::error::Problem)),
    security(("merchant" = [])))]
async fn upload_codes(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    IdPath(sale): IdPath,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Uploaded>), ApiError> {
    let sale = SaleId(sale);
    state.sales.get_owned(merchant, sale).await?;
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let codes = if media == "text/csv" {
        let text = std::str::from_utf8(&body).map_err(|_| {
            ApiError::client(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "the CSV is not UTF-8",
            )
        })?;
        let codes = codes::parse_csv(text).map_err(invalid)?;
        codes::check_codes(&codes, |i| format!("line {}", i + 2)).map_err(invalid)?;
        codes
    } else {
        let request = axum::http::Request::builder()
            .header(header::CONTENT_TYPE, media)
            .body(axum::body::Body::from(body))
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("rebuilding the request: {e}")))?;
        let AppJson(upload) =
            <AppJson<CodeUpload> as axum::extract::FromRequest<()>>::from_request(request, &())
                .await?;
        codes::check_codes(&upload.codes, |i| format!("codes[{i}]")).map_err(invalid)?;
        upload.codes
    };
    let uploaded = state.queue.codes().upload(sale, &codes).await?;
    Ok((StatusCode::CREATED, axum::Json(uploaded)))
}

/// Query of the code listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct CodeQuery {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of codes.
#[derive(Debug, Serialize, ToSchema)]
pub struct CodePage {
    items: Vec<CodeView>,
    next_cursor: Option<String>,
}

/// List the sale's codes (hashed: only the last 4 characters show), in upload order.
#[utoipa::path(get, path = "/v1/admin/sales/{sale_id}/access-codes", tag = "admin",
    params(("sale_id" = uuid::Uuid, Path), CodeQuery),
    responses((status = 200, body = CodePage)), security(("merchant" = [])))]
async fn list_codes(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    IdPath(sale): IdPath,
    AppQuery(query): AppQuery<CodeQuery>,
) -> Result<axum::Json<CodePage>, ApiError> {
    let sale = SaleId(sale);
    state.sales.get_owned(merchant, sale).await?;
    let limit = page_limit(query.limit)?;
    let cursor = query
        .cursor
        .as_deref()
        .map(|c| {
            uuid::Uuid::try_parse(c).map_err(|_| {
                ApiError::client(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    "cursor: not a cursor from this API",
                )
            })
        })
        .transpose()?;
    let (items, next) = state.queue.codes().list(sale, limit, cursor).await?;
    Ok(axum::Json(CodePage {
        items,
        next_cursor: next.map(|id| id.simple().to_string()),
    }))
}

/// The body of `PUT …/message`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    /// At most 280 characters; null (or blank) clears the message.
    text: Option<String>,
}

/// Set the message every ticket of the sale's line carries.
#[utoipa::path(put, path = "/v1/admin/sales/{sale_id}/message", tag = "admin",
    params(("sale_id" = uuid::Uuid, Path)), request_body = MessageBody,
    responses((status = 200, body = crate::http::admin::SaleView), (status = 422, body = crate::error::Problem)),
    security(("merchant" = [])))]
async fn set_message(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    IdPath(sale): IdPath,
    AppJson(body): AppJson<MessageBody>,
) -> Result<Response, ApiError> {
    let patch = SalePatch {
        message: Some(body.text),
        ..SalePatch::default()
    };
    let saved = state
        .sales
        .patch(merchant, SaleId(sale), patch, None)
        .await?;
    sale_response(&state, StatusCode::OK, saved).await
}
