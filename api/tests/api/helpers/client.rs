//! The test client: every route a test calls, by name. Typed routes answer the
//! contract's types ([`Reservation`], [`Order`], [`Sale`], …) or the [`Problem`] of an
//! error; the raw routes (`…_request`, [`TestApp::request`], [`TestApp::checkout`])
//! answer the `reqwest::Response` itself, for tests about headers, status lines or
//! concurrency where only the status counts.

use std::fmt::Display;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use super::assertions::{answer, answer_with_status, sale_id};
use super::spawn::{TestApp, TestShopper};
use super::types::{Order, Page, Problem, Reservation, Sale, Session, Stats, Ticket};

/// A valid create body; `overrides` replaces top-level fields.
pub fn sale_body_with(overrides: Value) -> Value {
    let mut body = json!({
        "name": "Trail runner — launch edition",
        "sku": "TR-LE-42",
        "description": "Limited run.",
        "price": { "amount_minor": 12900, "currency": "EUR" },
        "stock": { "total": 500 },
        "per_user_limit": 2,
        "hold_ttl_seconds": 600,
        "starts_at": "2031-01-01T10:00:00Z",
        "ends_at": "2031-01-01T12:00:00Z",
    });
    for (k, v) in overrides.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

// ---- raw routes ----------------------------------------------------------------------

impl TestApp {
    /// The absolute URL of `path` on this app.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with an optional bearer token.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    /// GET `path` with an optional bearer token; the response, whatever its status.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token).send().await.unwrap()
    }

    /// A request as this app's merchant.
    pub fn merchant(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path, Some(&self.merchant_token))
    }

    /// A request as this app's merchant to `/v1/admin/sales/{sale}{suffix}`.
    pub fn admin_sale(&self, method: Method, sale: impl Display, suffix: &str) -> RequestBuilder {
        self.merchant(method, &format!("/v1/admin/sales/{sale}{suffix}"))
    }

    /// The shopper gives a reservation back (`DELETE`); the response.
    pub async fn release(&self, shopper: &TestShopper, reservation: Uuid) -> Response {
        self.request(
            Method::DELETE,
            &format!("/v1/reservations/{reservation}"),
            Some(&shopper.token),
        )
        .send()
        .await
        .unwrap()
    }

    /// `POST /v1/sales/{sale}/reservations` as an admitted shopper; the response.
    pub async fn reserve_request(
        &self,
        shopper: &TestShopper,
        sale: Uuid,
        quantity: i64,
        key: Option<&str>,
    ) -> Response {
        let mut request = self
            .request(
                Method::POST,
                &format!("/v1/sales/{sale}/reservations"),
                Some(&shopper.token),
            )
            .header("x-admission-token", self.admission_token(shopper.id, sale))
            .json(&json!({ "quantity": quantity }));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.unwrap()
    }

    /// `POST /v1/reservations/{id}/checkout` with a card token and an optional key.
    pub async fn checkout(
        &self,
        shopper: &TestShopper,
        reservation: Uuid,
        key: Option<&str>,
        card: &str,
    ) -> Response {
        let mut request = self
            .request(
                Method::POST,
                &format!("/v1/reservations/{reservation}/checkout"),
                Some(&shopper.token),
            )
            .json(&json!({ "payment_token": card }));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.unwrap()
    }

    /// Creates a sale and returns its JSON.
    pub async fn create_sale(&self, body: Value) -> Value {
        let response = self
            .merchant(Method::POST, "/v1/admin/sales")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            201,
            "create sale: {}",
            response.text().await.unwrap()
        );
        response.json().await.unwrap()
    }

    /// Creates a sale that is live now with `total` units and `limit` per shopper.
    pub async fn live_sale(&self, total: i64, limit: i64) -> Uuid {
        let now = self.clock_now();
        let sale = self
            .create_sale(sale_body_with(json!({
                "stock": { "total": total }, "per_user_limit": limit,
                "starts_at": now - chrono::Duration::minutes(1),
                "ends_at": now + chrono::Duration::hours(2),
            })))
            .await;
        sale_id(&sale)
    }

    /// `PATCH /v1/admin/sales/{sale}`, conditional on `if_match` when given.
    pub async fn patch_sale(&self, sale: Uuid, body: Value, if_match: Option<&str>) -> Response {
        let mut request = self.admin_sale(Method::PATCH, sale, "").json(&body);
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        request.send().await.unwrap()
    }

    /// `POST /v1/admin/sales/{sale}/stock` with this delta.
    pub async fn change_stock(&self, sale: Uuid, delta: i64) -> Response {
        let request = self.admin_sale(Method::POST, sale, "/stock");
        request
            .json(&json!({ "delta": delta }))
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/admin/sales/{sale}/{action}`: `pause`, `resume` or `end`.
    pub async fn transition(&self, sale: Uuid, action: &str) -> Response {
        let path = format!("/{action}");
        self.admin_sale(Method::POST, sale, &path)
            .send()
            .await
            .unwrap()
    }

    /// `count` new shoppers reserve one unit of `sale` at once; their statuses.
    pub async fn reserve_at_once(&self, sale: Uuid, count: usize) -> Vec<u16> {
        futures::future::join_all((0..count).map(|_| async move {
            let shopper = self.direct_shopper();
            self.reserve_request(&shopper, sale, 1, None)
                .await
                .status()
                .as_u16()
        }))
        .await
    }

    /// How many times this process rebuilt `sale`'s Redis state from Postgres after it
    /// went missing: `flashsale_redis_state_rebuilt_total{sale}` on `/metrics` (0 before
    /// the first rebuild). The recorder is shared by every app of the test binary; the
    /// label keeps each test's sale apart.
    pub async fn rebuilds(&self, sale: Uuid) -> u64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let series = format!("flashsale_redis_state_rebuilt_total{{sale=\"{sale}\"}}");
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .map_or(0, |value| value.trim().parse().unwrap())
    }
}

// ---- typed routes --------------------------------------------------------------------

impl TestApp {
    /// A guest shopper session from `POST /v1/sessions`.
    pub async fn shopper(&self) -> TestShopper {
        let session = self.session().await;
        TestShopper {
            id: session.shopper_id,
            token: session.token,
        }
    }

    /// Reserves `quantity` units as an admitted shopper; returns the reservation id.
    pub async fn hold(&self, shopper: &TestShopper, sale: Uuid, quantity: i64) -> Uuid {
        let response = self.reserve_request(shopper, sale, quantity, None).await;
        assert_eq!(response.status(), 201, "reserve");
        answer::<Reservation>(response)
            .await
            .expect("a reservation")
            .reservation_id
    }

    /// Creates a sale that has not started (the default body) and returns its id.
    pub async fn scheduled_sale(&self) -> Uuid {
        sale_id(&self.create_sale(sale_body_with(json!({}))).await)
    }

    /// A sale starting a minute from the app's clock (advance it past to start the
    /// sale and draw its pre-queue).
    pub async fn sale_starting_in_a_minute(&self) -> Uuid {
        let now = self.clock_now();
        let body = sale_body_with(json!({
            "starts_at": now + chrono::Duration::minutes(1),
            "ends_at": now + chrono::Duration::hours(2),
        }));
        sale_id(&self.create_sale(body).await)
    }

    /// The merchant's view of one of its sales (200 expected).
    pub async fn admin_get_sale(&self, sale: Uuid) -> Sale {
        let response = self.admin_sale(Method::GET, sale, "").send().await.unwrap();
        answer(response).await.expect("the merchant reads its sale")
    }

    /// `GET /v1/admin/sales?{query}` with `token` (200 expected); the page.
    pub async fn list_sales(&self, token: &str, query: &str) -> Page<Sale> {
        let path = format!("/v1/admin/sales?{query}");
        let response = self.get(&path, Some(token)).await;
        answer(response).await.expect("the sales list")
    }

    /// A guest session from `POST /v1/sessions` (201 expected), as the contract types it.
    pub async fn session(&self) -> Session {
        let response = self
            .request(Method::POST, "/v1/sessions", None)
            .send()
            .await;
        let (status, session) = answer_with_status(response.unwrap())
            .await
            .expect("a session for anyone");
        assert_eq!(status, 201, "a new session");
        session
    }

    /// The live statistics of one of this merchant's sales.
    pub async fn stats(&self, sale: Uuid) -> Result<Stats, Problem> {
        answer(
            self.admin_sale(Method::GET, sale, "/stats")
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Reserves `quantity` units of `sale` as an admitted shopper (no idempotency key).
    pub async fn reserve(
        &self,
        shopper: &TestShopper,
        sale: Uuid,
        quantity: i64,
    ) -> Result<Reservation, Problem> {
        answer(self.reserve_request(shopper, sale, quantity, None).await).await
    }

    /// Reserves with an idempotency key: `201` for the first answer, `200` for a replay.
    pub async fn reserve_with_key(
        &self,
        shopper: &TestShopper,
        sale: Uuid,
        quantity: i64,
        key: &str,
    ) -> Result<(StatusCode, Reservation), Problem> {
        answer_with_status(
            self.reserve_request(shopper, sale, quantity, Some(key))
                .await,
        )
        .await
    }

    /// The shopper's view of one of their reservations.
    pub async fn reservation(
        &self,
        shopper: &TestShopper,
        reservation: Uuid,
    ) -> Result<Reservation, Problem> {
        let path = format!("/v1/reservations/{reservation}");
        answer(self.get(&path, Some(&shopper.token)).await).await
    }

    /// Pays for a reservation with this card token and idempotency key: the order.
    pub async fn place_order(
        &self,
        shopper: &TestShopper,
        reservation: Uuid,
        key: &str,
        card: &str,
    ) -> Result<Order, Problem> {
        answer(self.checkout(shopper, reservation, Some(key), card).await).await
    }

    /// The shopper's view of one of their orders.
    pub async fn order(&self, shopper: &TestShopper, order: Uuid) -> Result<Order, Problem> {
        answer(
            self.get(&format!("/v1/orders/{order}"), Some(&shopper.token))
                .await,
        )
        .await
    }

    /// Joins the line of `sale`: `201` and a new ticket, or `200` and the same one again.
    pub async fn join_queue(
        &self,
        shopper: &TestShopper,
        sale: Uuid,
    ) -> Result<(StatusCode, Ticket), Problem> {
        let path = format!("/v1/sales/{sale}/queue");
        let request = self.request(Method::POST, &path, Some(&shopper.token));
        answer_with_status(request.send().await.unwrap()).await
    }

    /// The shopper's ticket in the line of `sale`.
    pub async fn my_ticket(&self, shopper: &TestShopper, sale: Uuid) -> Result<Ticket, Problem> {
        let path = format!("/v1/sales/{sale}/queue/me");
        answer(self.get(&path, Some(&shopper.token)).await).await
    }

    /// The shopper's own orders (first page).
    pub async fn my_orders(&self, shopper: &TestShopper) -> Result<Page<Order>, Problem> {
        answer(self.get("/v1/orders", Some(&shopper.token)).await).await
    }

    /// The orders of one of this merchant's sales (first page).
    pub async fn sale_orders(&self, sale: Uuid) -> Result<Page<Order>, Problem> {
        answer(
            self.admin_sale(Method::GET, sale, "/orders")
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// How many orders exist for `reservation` (at most one may, ever).
    pub async fn orders_for(&self, reservation: Uuid) -> i64 {
        sqlx::query_scalar("select count(*) from orders where reservation_id = $1")
            .bind(reservation)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// How many of the provider's payments are in `status`, named as ours
    /// (`authorized`, `captured`, `voided`, `declined`).
    pub async fn payments_with_status(&self, status: &str) -> i64 {
        let stripe = match status {
            "authorized" => "requires_capture",
            "captured" => "succeeded",
            "voided" => "canceled",
            "declined" => "requires_payment_method",
            other => panic!("no payment status {other}"),
        };
        self.provider.count(stripe) as i64
    }
}
