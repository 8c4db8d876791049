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
//! | `/static/…` | everything in the folder (CSS, JS, vendored files), also under
//! fingerprinted names (see [`super::assets`]) |
//!
//! Every file is served precompressed (brotli or gzip, by `Accept-Encoding`).
//! Fingerprinted files are cached for a year as `immutable`; pages and plain names are
//! cached for a minute and then revalidated, so a release shows up within a minute.

use std::path::Path;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get_service;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::http::assets::{self, BuiltAssets};
use crate::http::shed::{self, Priority};
use crate::http::AppState;

/// Pages may be cached briefly and then revalidated (`Last-Modified`): a release shows
/// up within a minute, and a launch-minute crowd is served from caches meanwhile.
const PAGE_CACHE: &str = "public, max-age=60, stale-while-revalidate=600";
/// A fingerprinted name never changes its content.
const FINGERPRINTED_CACHE: &str = "public, max-age=31536000, immutable";
/// Plain asset names (pages cached from before a release) follow the pages.
const ASSET_CACHE: &str = "public, max-age=60, stale-while-revalidate=600";

/// The pages load only their own scripts and styles (and the import map whose hash is
/// `import_map`) and talk only to this origin.
fn csp(import_map: &str) -> HeaderValue {
    let policy = format!(
        "default-src 'self'; script-src 'self' {import_map}; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy).expect("a policy of ASCII text")
}

/// The page and asset routes, serving the files of `dir` (`FLASHSALE_STATIC_DIR`) as
/// built by [`assets::build`]. Panics where the folder cannot be read or the build
/// cannot be written: the process cannot serve its pages.
pub fn router(dir: &Path) -> Router<AppState> {
    let built = assets::build(dir).unwrap_or_else(|e| {
        panic!(
            "building the storefront's files from {}: {e}",
            dir.display()
        )
    });
    routes(&built)
}

fn routes(built: &BuiltAssets) -> Router<AppState> {
    let policy = csp(&built.import_map_hash);
    let page = |file: &str| {
        get_service(
            ServiceBuilder::new()
                .layer(SetResponseHeaderLayer::overriding(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(PAGE_CACHE),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::CONTENT_SECURITY_POLICY,
                    policy.clone(),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("same-origin"),
                ))
                .service(
                    ServeFile::new(built.dir.join(file))
                        .precompressed_br()
                        .precompressed_gzip(),
                ),
        )
    };
    let files = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .service(
            ServeDir::new(&built.dir)
                .precompressed_br()
                .precompressed_gzip(),
        );
    let assets = Router::new()
        .fallback_service(files)
        .layer(middleware::from_fn(asset_cache));
    let pages = Router::new()
        .route("/", page("index.html"))
        .route("/sales/{sale_id}", page("sale.html"))
        .route("/merchant", page("merchant.html"))
        .nest("/static", assets);
    shed::classed(pages, Priority::Other)
}

/// `Cache-Control` of an asset: for ever under a fingerprinted name, briefly otherwise.
async fn asset_cache(request: Request, next: Next) -> Response {
    let forever = assets::is_fingerprinted(request.uri().path());
    let mut response = next.run(request).await;
    if response.status().is_success() || response.status() == axum::http::StatusCode::NOT_MODIFIED {
        let value = if forever {
            FINGERPRINTED_CACHE
        } else {
            ASSET_CACHE
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    response
}
