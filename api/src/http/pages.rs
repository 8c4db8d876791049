//! The storefront and the merchant dashboard: static HTML, CSS and ES modules from
//! `api/static/`, served by `tower_http::services::ServeDir`. The pages are the same for
//! every visitor (they talk to the API from the browser), so a CDN or the browser may
//! cache them; nothing here renders per shopper.
//!
//! | path | file |
//! |---|---|
//! | `/` | `index.html` — what the storefront is, a link to a sale |
//! | `/sales/{sale_id}` | `sale.html` — the sale page, waiting room, checkout, confirmation |
//! | `/merchant` | `merchant.html` — the merchant dashboard |
//! | `/static/…` | everything in the folder (CSS, JS, vendored files) |

use std::path::Path;

use axum::http::{header, HeaderValue};
use axum::routing::get_service;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::http::shed::{self, Priority};
use crate::http::AppState;

/// Pages may be cached briefly and then revalidated (`Last-Modified`): a release shows
/// up within a minute, and a launch-minute crowd is served from caches meanwhile.
const PAGE_CACHE: &str = "public, max-age=60, stale-while-revalidate=600";
/// Assets are not fingerprinted, so they are cached for as long as the pages are.
const ASSET_CACHE: &str = "public, max-age=60, stale-while-revalidate=600";
/// The pages load only their own scripts and styles and talk only to this origin.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// The page and asset routes, serving files from `dir` (`FLASHSALE_STATIC_DIR`).
pub fn router(dir: &Path) -> Router<AppState> {
    let page = |file: &str| {
        get_service(
            ServiceBuilder::new()
                .layer(SetResponseHeaderLayer::overriding(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(PAGE_CACHE),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("same-origin"),
                ))
                .service(ServeFile::new(dir.join(file))),
        )
    };
    let assets = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static(ASSET_CACHE),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .service(ServeDir::new(dir));
    let pages = Router::new()
        .route("/", page("index.html"))
        .route("/sales/{sale_id}", page("sale.html"))
        .route("/merchant", page("merchant.html"))
        .nest_service("/static", assets);
    shed::classed(pages, Priority::Other)
}
