//! The post-event report of a sale (API.md v1.1, "after the purchase"): its figures as
//! JSON, and its orders as CSV, streamed. A merchant sees only its own sales; another
//! merchant's answers 404 like a missing one. The figures come from their homes: the
//! line's from the waiting room (`waiting_room::report`), the orders' from checkout
//! (`reservations::checkout::report`); this module only puts them in the contract's
//! shape. Either can be read "so far", while the sale runs.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::http::extract::{IdPath, Merchant};
use crate::http::shed::{self, Priority};
use crate::http::AppState;
use reservations::checkout::report::ExportLine;
use reservations::checkout::Checkout;
use reservations::ids::SaleId;
use reservations::sales::Money;

/// Orders per page of the export: one short statement each, and all the memory the
/// export takes, whatever the sale's size.
const EXPORT_PAGE: i64 = 500;

/// The export's header line (the column names).
const CSV_HEADER: &str = "order_id,created_at,status,shopper_id,reservation_id,variant_id,sku,\
                          quantity,unit_price_minor,amount_minor,currency\r\n";

/// The report routes.
pub fn router() -> Router<AppState> {
    let routes = Router::new()
        .route("/v1/admin/sales/{sale_id}/report", get(report))
        .route("/v1/admin/sales/{sale_id}/orders.csv", get(orders_csv));
    shed::classed(routes, Priority::Other)
}

/// A sale's post-event report (or the figures so far, while it runs).
#[derive(Debug, Serialize, ToSchema)]
pub struct Report {
    /// Shoppers who were given a ticket.
    joined: i64,
    /// Of them, those who joined the pre-queue (before the draw).
    prequeued: i64,
    /// Places admitted.
    admitted: i64,
    /// Admitted shoppers who never reached the reserve step.
    no_shows: i64,
    /// Shoppers who reached the reserve step (held, or were told sold out).
    reserved: i64,
    /// Every order, whatever its status (as `flashsale verify` counts them).
    orders: i64,
    /// Orders the shopper cancelled.
    cancelled: i64,
    /// Orders the merchant refunded.
    refunded: i64,
    /// Units in orders (as `flashsale verify` counts them).
    units_sold: i64,
    /// Per variant.
    variants: Vec<VariantReport>,
    /// What the confirmed orders paid.
    revenue: Money,
    /// When the last unit of the sale was sold; null while any is left.
    sold_out_at: Option<DateTime<Utc>>,
    /// What shoppers were told at join against what they waited.
    admission_wait_seconds: AdmissionWait,
}

/// One variant's sales.
#[derive(Debug, Serialize, ToSchema)]
pub struct VariantReport {
    /// The variant (a v1 sale's one variant has the sale's id).
    variant_id: Uuid,
    /// Units of it in orders.
    units_sold: i64,
    /// When its last unit was sold; null while any is left.
    sold_out_at: Option<DateTime<Utc>>,
}

/// Admission waits in seconds, estimated at join against actual (join to admission):
/// percentiles from quarter-octave histograms, within about 9% of the exact values;
/// null when no shopper was counted.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdmissionWait {
    /// Median of the waits shoppers were told at join (shoppers who joined after the
    /// draw; the pre-queue is told no wait).
    estimated_p50: Option<f64>,
    /// Median of the waits admitted shoppers had.
    actual_p50: Option<f64>,
    /// 95th percentile of the waits told at join.
    estimated_p95: Option<f64>,
    /// 95th percentile of the waits had.
    actual_p95: Option<f64>,
}

/// The sale's report.
#[utoipa::path(get, path = "/v1/admin/sales/{sale_id}/report", tag = "admin", params(("sale_id" = uuid::Uuid, Path)),
    responses((status = 200, body = Report)), security(("merchant" = [])))]
async fn report(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    IdPath(id): IdPath,
) -> Result<axum::Json<Report>, ApiError> {
    let (sale, _) = state.sales.get_owned(merchant, SaleId(id)).await?;
    let line = state.queue.line_report(sale.id).await?;
    let orders = state.checkout.order_figures(sale.id).await?;
    Ok(axum::Json(Report {
        joined: line.joined,
        prequeued: line.prequeued,
        admitted: line.admitted,
        no_shows: line.no_shows,
        reserved: line.reserved,
        orders: orders.orders,
        cancelled: orders.cancelled,
        refunded: orders.refunded,
        units_sold: orders.units_sold,
        variants: orders
            .variants
            .into_iter()
            .map(|v| VariantReport {
                variant_id: v.variant_id,
                units_sold: v.units_sold,
                sold_out_at: v.sold_out_at,
            })
            .collect(),
        revenue: Money {
            amount_minor: orders.revenue_minor,
            currency: sale.price.currency.clone(),
        },
        sold_out_at: orders.sold_out_at,
        admission_wait_seconds: AdmissionWait {
            estimated_p50: line.estimated.quantile(0.5),
            actual_p50: line.actual.quantile(0.5),
            estimated_p95: line.estimated.quantile(0.95),
            actual_p95: line.actual.quantile(0.95),
        },
    }))
}

/// The sale's orders as CSV, one line per order line, oldest first, streamed a page of
/// orders at a time (any size; the answer starts before the last page is read).
#[utoipa::path(get, path = "/v1/admin/sales/{sale_id}/orders.csv", tag = "admin", params(("sale_id" = uuid::Uuid, Path)),
    responses((status = 200, content_type = "text/csv", body = String,
        description = "order_id, created_at, status, shopper_id, reservation_id, variant_id, sku, quantity, unit_price_minor, amount_minor, currency")),
    security(("merchant" = [])))]
async fn orders_csv(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let (sale, _) = state.sales.get_owned(merchant, SaleId(id)).await?;
    let body = Body::from_stream(export(state.checkout.clone(), sale.id));
    let disposition = format!("attachment; filename=\"orders-{}.csv\"", sale.id);
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Where the export stands between pages.
enum Cursor {
    Start,
    After(DateTime<Utc>, Uuid),
    Done,
}

/// The header, then one chunk per page of orders. A page that cannot be read ends the
/// stream with an error, so the client sees a broken download, never a short file that
/// looks whole.
fn export(
    checkout: Checkout,
    sale: SaleId,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::try_unfold(
        (checkout, Some(Cursor::Start)),
        move |(checkout, cursor)| async move {
            let after = match cursor {
                None | Some(Cursor::Done) => return Ok(None),
                Some(Cursor::Start) => None,
                Some(Cursor::After(at, id)) => Some((at, id)),
            };
            let lines = checkout
                .export_page(sale, after, EXPORT_PAGE)
                .await
                .map_err(|e| {
                    tracing::error!(sale_id = %sale, error = %e, "orders export page failed");
                    std::io::Error::other(e.to_string())
                })?;
            let orders = count_orders(&lines);
            let mut chunk = String::with_capacity(lines.len() * 200 + CSV_HEADER.len());
            if after.is_none() {
                chunk.push_str(CSV_HEADER);
            }
            for line in &lines {
                write_line(&mut chunk, line);
            }
            let next = match lines.last() {
                Some(last) if orders == EXPORT_PAGE as usize => {
                    Cursor::After(last.created_at, last.order_id)
                }
                _ => Cursor::Done,
            };
            if chunk.is_empty() {
                return Ok(None);
            }
            Ok(Some((Bytes::from(chunk), (checkout, Some(next)))))
        },
    )
}

/// Distinct orders in a page (its lines are grouped by order).
fn count_orders(lines: &[ExportLine]) -> usize {
    let mut n = 0;
    let mut last = None;
    for line in lines {
        if last != Some(line.order_id) {
            n += 1;
            last = Some(line.order_id);
        }
    }
    n
}

fn write_line(out: &mut String, line: &ExportLine) {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let fields = [
        line.order_id.to_string(),
        line.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        line.status.clone(),
        line.shopper_id.to_string(),
        line.reservation_id.to_string(),
        opt(line.variant_id.map(|v| v.to_string())),
        opt(line.sku.clone()),
        line.quantity.to_string(),
        opt(line.unit_price_minor.map(|p| p.to_string())),
        line.amount_minor.to_string(),
        line.currency.trim().to_owned(),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, field);
    }
    out.push_str("\r\n");
}

/// A field as RFC 4180 writes it: quoted, with quotes doubled, when it holds a comma,
/// a quote or a line break.
fn push_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_they_need_it() {
        let mut out = String::new();
        for f in ["plain", "a,b", "say \"hi\"", "two\nlines"] {
            push_field(&mut out, f);
            out.push('|');
        }
        assert_eq!(out, "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"|");
    }
}
