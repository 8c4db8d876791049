//! The HTTP surface: one router per area, merged here with the middleware every route
//! shares (request ids, tracing, timeout, body limit, metrics, problem+json safety net).

pub mod admin;
pub mod assets;
pub mod beacon;
pub mod codes;
pub mod extract;
pub mod ops;
pub mod order_life;
pub mod orders;
pub mod pages;
pub mod proof;
pub mod public;
pub mod queue;
pub mod report;
pub mod reservations;
pub mod shed;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, Instant};

use ::reservations::redis_conn::RedisConn;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::auth::Auth;
use crate::error::problem;
use waiting_room::AdmissionCheck;

/// Largest request body (API.md: bodies over 64 KiB are 413).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Largest request head (request line and headers). Tokens and cookies fit many times
/// over; hyper answers a larger head `431` and closes the connection (startup.rs).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// What every handler can reach: one shared [`AppParts`] behind an `Arc`. axum hands
/// each extractor and handler its own copy of the state, so a clone must be a counter
/// increment, not a deep copy of every pool handle, signer and string (profiled: the
/// deep copy and its drop were a large share of a reserve's allocations).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    /// The state over `parts`.
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppParts {
    /// Sales and holds.
    pub sales: ::reservations::Sales,
    /// Checkout and orders.
    pub checkout: ::reservations::checkout::Checkout,
    /// The payment provider, unguarded: the operations endpoints forward the
    /// simulator's settings through it.
    pub provider: Arc<::reservations::payment::StripePayments>,
    /// The payment simulator, when this process runs one (`FLASHSALE_PAYMENT_URL`
    /// unset); tests read its ledger.
    pub simulator: Option<Arc<payment_simulator::Simulator>>,
    /// Token keys.
    pub auth: Arc<Auth>,
    /// The waiting room.
    pub queue: waiting_room::Queue,
    /// This process's latency and in-flight measurements.
    pub signals: Arc<crate::signals::ProcessSignals>,
    /// The admission check of the reserve route.
    pub admission: Arc<dyn AdmissionCheck>,
    /// The general Postgres pool (readiness, listings).
    pub db: PgPool,
    /// The shared multiplexed Redis connection.
    pub redis: RedisConn,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The in-flight limit with priority classes.
    pub shedder: Arc<shed::Shedder>,
    /// Per-shopper rate limit of join and poll.
    pub queue_limiter: Arc<shed::ShopperLimiter>,
    /// The operator's cap per client address (sessions, challenges, join, poll, holds,
    /// checkouts); `None` where the operator turned it off.
    pub client_cap: Option<Arc<shed::ClientCap>>,
    /// The proof of work at the door of the line.
    pub door: Arc<proof::Door>,
    /// Where the storefront and dashboard files are.
    pub static_dir: std::path::PathBuf,
    /// How long a request may run.
    pub request_timeout: Duration,
    /// The merchants' webhook endpoints and delivery logs.
    pub webhooks: outbox_relay::webhooks::Endpoints,
}

/// The OpenAPI document, generated from the handlers and types.
#[derive(OpenApi)]
#[openapi(
    info(title = "flashsale", description = "Flash-sale reservation backend: HTTP contract v1"),
    paths(
        public::create_session, public::get_sale,
        queue::join, queue::me, queue::leave, queue::draw, queue::drawn_tickets, proof::challenge,
        reservations::reserve, reservations::get_reservation, reservations::release,
        orders::checkout, orders::get_order, orders::list_orders, orders::sale_orders,
        order_life::cancel, order_life::refund,
        admin::create_sale, admin::list_sales, admin::get_sale, admin::patch_sale, admin::change_stock,
        admin::add_variant, admin::change_variant_stock,
        admin::pause, admin::resume, admin::end, admin::stats, beacon::supply,
        report::report, report::orders_csv,
        codes::upload_codes, codes::list_codes, codes::set_message,
        webhooks::create, webhooks::list, webhooks::delete, webhooks::rotate_secret, webhooks::deliveries,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi, ops::get_simulator, ops::put_simulator,
    ),
    // StatusFilter: only a query parameter names it, which utoipa does not collect.
    components(schemas(crate::error::Problem, ::reservations::sales::StatusFilter)),
    modifiers(&BearerAuth, &CommonResponses),
)]
pub struct ApiDoc;

/// The answers routes share because the extractors and middleware give them, added to
/// every operation so the document lists each status a client can meet (schemathesis
/// checks this in `scripts/fuzz`), and every problem answer documented as
/// `application/problem+json`, which is what the API sends.
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

        let problem_ref = Ref::from_schema_name("Problem");
        let problem = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/problem+json",
                        ContentBuilder::new()
                            .schema(Some(problem_ref.clone()))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let params = operation.parameters.clone().unwrap_or_default();
                let has_param_in =
                    |place: ParameterIn| params.iter().any(|p| p.parameter_in == place);
                let mut shared = Vec::new();
                if operation.security.is_some() {
                    shared.push((
                        "401",
                        "unauthorized: the bearer token is missing or not valid",
                    ));
                    shared.push(("403", "forbidden: the token's role may not do this"));
                }
                if operation.request_body.is_some() {
                    shared.push((
                        "400",
                        "invalid_body: malformed JSON, a wrong type or an unknown field",
                    ));
                    shared.push(("413", "payload_too_large: the body is over 64 KiB"));
                    shared.push((
                        "415",
                        "unsupported_media_type: the body is not application/json",
                    ));
                }
                if has_param_in(ParameterIn::Query) {
                    shared.push(("400", "invalid_query: a malformed parameter or cursor"));
                }
                if params.iter().any(|p| p.name == "limit") {
                    shared.push(("422", "invalid_field: limit out of range"));
                }
                if has_param_in(ParameterIn::Path) {
                    shared.push(("404", "no such resource (or another owner's)"));
                }
                if !matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
                    shared.push((
                        "503",
                        "overloaded or request_timeout (with Retry-After), or a dependency is down",
                    ));
                }
                let responses = &mut operation.responses.responses;
                for (status, description) in shared {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem(description));
                }
                // Problem answers are documented as application/json by the annotations.
                for response in responses.values_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    let content = std::mem::take(&mut response.content);
                    response.content = content
                        .into_iter()
                        .map(|(media, content)| {
                            let is_problem = matches!(
                                &content.schema,
                                Some(RefOr::Ref(r)) if r.ref_location == problem_ref.ref_location
                            );
                            if is_problem && media == "application/json" {
                                ("application/problem+json".to_owned(), content)
                            } else {
                                (media, content)
                            }
                        })
                        .collect();
                }
            }
        }
    }
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["shopper", "merchant", "operator"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
        }
    }
}

/// Every route, with the shared middleware.
pub fn router(state: AppState) -> Router {
    let timeout = state.request_timeout;
    Router::new()
        .merge(public::router())
        .merge(queue::router())
        .merge(proof::router())
        .merge(reservations::router())
        .merge(orders::router())
        .merge(order_life::router())
        .merge(admin::router())
        .merge(report::router())
        .merge(beacon::router())
        .merge(codes::router())
        .merge(webhooks::router())
        .merge(ops::router())
        .merge(pages::router(&state.static_dir))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not accept that method")
        })
        .layer(shed::provide(state.shedder.clone()))
        .layer(middleware::from_fn(record_metrics))
        .layer(middleware::from_fn_with_state(timeout, enforce_timeout))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        // 5xx causes are logged once, with their cause chain, where they
                        // arise (error.rs); shed 503s are counted in metrics, not logged
                        // one line each (a shedding process must not also flood its disk).
                        .on_failure(()).make_span_with(|req: &Request| {
                        let id = req
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        // Path only: headers carry tokens and never reach the log.
                        tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                    }),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(middleware::from_fn(problem_safety_net))
                .layer(CatchPanicLayer::custom(|_| {
                    problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", "an internal error occurred")
                })),
        )
        .with_state(state)
}

/// Answers 503 `request_timeout` when a request runs longer than configured.
async fn enforce_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "request_timeout",
                "the request took too long; retry shortly",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
            response
        }
    }
}

/// Records request latency by route and status.
async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = metric_method(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    latency_histogram(route, method, response.status().as_u16())
        .record(started.elapsed().as_secs_f64());
    response
}

/// The request's method as a label: one of the standard methods, else `OTHER`, so a
/// client inventing methods (HTTP allows any token) cannot add series without end.
fn metric_method(method: &Method) -> Method {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    if STANDARD.contains(method) {
        method.clone()
    } else {
        Method::from_bytes(b"OTHER").expect("a method token")
    }
}

/// The latency histograms by route, then by (method, status): each handle is looked up
/// in the recorder once, not built from three label strings on every request
/// (profiled: the label strings and the registry lookup were a share of each request).
type Histograms = HashMap<String, HashMap<(Method, u16), metrics::Histogram>>;

fn latency_histogram(route: &str, method: Method, status: u16) -> metrics::Histogram {
    static HANDLES: LazyLock<RwLock<Histograms>> = LazyLock::new(Default::default);
    let key = (method, status);
    if let Some(found) = HANDLES
        .read()
        .expect("histograms lock")
        .get(route)
        .and_then(|by| by.get(&key))
    {
        return found.clone();
    }
    let histogram = metrics::histogram!(
        "flashsale_http_request_duration_seconds",
        "route" => route.to_owned(),
        "method" => key.0.to_string(),
        "status" => status.to_string(),
    );
    HANDLES
        .write()
        .expect("histograms lock")
        .entry(route.to_owned())
        .or_default()
        .insert(key, histogram.clone());
    histogram
}

/// Any error answer that is not already problem+json (a framework rejection we did
/// not anticipate) is rewritten as one, so clients never see plain text or HTML.
async fn problem_safety_net(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if status.as_u16() < 400 || is_problem {
        return response;
    }
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let mut rewritten = problem(status, code, status.canonical_reason().unwrap_or("error"));
    if let Some(retry) = response.headers().get(header::RETRY_AFTER) {
        rewritten
            .headers_mut()
            .insert(header::RETRY_AFTER, retry.clone());
    }
    rewritten
}
