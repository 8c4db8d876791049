//! `POST /v1/admin/sales/{sale_id}/draw/beacon`: the merchant supplies the drand
//! quicknet round their sale's draw names (when the server cannot fetch it, or before
//! it does). The round is verified against quicknet's public key before anything is
//! stored; what the draw then uses is published in `GET /v1/sales/{sale_id}/draw`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::http::extract::{AppJson, IdPath, Merchant};
use crate::http::shed::{self, Priority};
use crate::http::AppState;
use reservations::ids::SaleId;
use waiting_room::beacon::{BeaconInfo, Refusal};

/// The beacon route.
pub fn router() -> Router<AppState> {
    let routes = Router::new().route("/v1/admin/sales/{sale_id}/draw/beacon", post(supply));
    shed::classed(routes, Priority::Other)
}

/// A quicknet round as drand publishes it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SuppliedBeacon {
    /// The round the sale's `draw_beacon` names.
    round: u64,
    /// Its BLS signature (hex, 48 bytes).
    signature: String,
}

/// Supply the draw's beacon round (verified; `422 invalid_beacon` when it is not the
/// named round's valid signature; `409 sale_locked` when the draw already fell back to
/// the seed alone). Posting the recorded round again answers it again.
#[utoipa::path(post, path = "/v1/admin/sales/{sale_id}/draw/beacon", tag = "admin",
    params(("sale_id" = uuid::Uuid, Path)), request_body = SuppliedBeacon,
    responses((status = 200, body = BeaconInfo), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("merchant" = [])))]
async fn supply(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    IdPath(sale): IdPath,
    AppJson(body): AppJson<SuppliedBeacon>,
) -> Result<axum::Json<BeaconInfo>, ApiError> {
    let (sale, _) = state.sales.get_owned(merchant, SaleId(sale)).await?;
    let supplied = state
        .queue
        .beacons()
        .supply(
            sale.id,
            sale.draw_beacon.as_ref(),
            body.round,
            &body.signature,
        )
        .await?;
    match supplied {
        Ok(beacon) => Ok(axum::Json(BeaconInfo::from(&beacon))),
        Err(Refusal::Invalid(detail)) => Err(ApiError::Client {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_beacon",
            detail,
        }),
        Err(Refusal::Missed) => Err(ApiError::Client {
            status: StatusCode::CONFLICT,
            code: "sale_locked",
            detail: "the draw already fell back to the committed seed alone".into(),
        }),
    }
}
