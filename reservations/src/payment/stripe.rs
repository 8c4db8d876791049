//! The adapter for a Stripe PaymentIntents subset: what a flash sale needs of a card
//! provider, spoken over HTTP exactly as Stripe does, so pointing flashsale at Stripe's
//! test mode is a change of base URL and secret key. The project's simulator (crate
//! `payment-simulator`) serves the same subset.
//!
//! | port call | request |
//! |---|---|
//! | `authorize` | `POST /v1/payment_intents` `amount`, `currency`, `capture_method=manual`, `confirm=true`, `payment_method`, `metadata[attempt_id]`; `Idempotency-Key: <attempt id>` |
//! | `capture` | `POST /v1/payment_intents/{id}/capture` |
//! | `void` | `POST /v1/payment_intents/{id}/cancel` |
//! | `refund` | `POST /v1/refunds` `payment_intent`, `amount`; `Idempotency-Key: <key>` |
//! | `retrieve` | `GET /v1/payment_intents/{id}?expand[]=latest_charge` |
//! | `find` | `GET /v1/payment_intents/search?query=metadata['attempt_id']:'<attempt id>'` |
//! | `list` | `GET /v1/payment_intents?created[gte]=…&limit=100&starting_after=…` |
//!
//! Statuses: `requires_capture` is authorized, `succeeded` captured, `canceled` voided,
//! `requires_payment_method` declined; a refund shows as the charge's `amount_refunded`.
//! A capture of a captured intent, or a cancel of a cancelled one, answers Stripe's
//! `400 payment_intent_unexpected_state` with the intent: read as done.
//!
//! Stripe replays a stored answer for an idempotency key, errors included, so only the
//! calls that must merge retries carry a stable key (authorize: the attempt id; refund:
//! the caller's). Capture and cancel are idempotent by the intent's state and send a
//! fresh key each. Stripe's search lags writes by up to a minute (the simulator's does
//! not): `find` is used only for attempts past their grace, which should then be raised
//! to a minute against Stripe itself.

use chrono::{DateTime, TimeZone, Utc};
use futures::future::BoxFuture;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

use super::{Payment, PaymentError, PaymentGateway, PaymentRef, PaymentState};
use crate::ids::OrderId;
use crate::sales::Money;

/// Where the provider is and how to authenticate. The secret key is never logged
/// (`Debug` hides it).
#[derive(Clone)]
pub struct ProviderConfig {
    /// Base URL, e.g. `https://api.stripe.com` or the simulator's `http://127.0.0.1:8099`.
    pub base_url: String,
    /// The secret API key (`sk_test_…`).
    pub secret_key: String,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("base_url", &self.base_url)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// The metadata key carrying flashsale's attempt id on each intent.
const ATTEMPT_METADATA: &str = "attempt_id";

/// The Stripe PaymentIntents adapter (see the module docs).
pub struct StripePayments {
    http: reqwest::Client,
    config: ProviderConfig,
}

impl StripePayments {
    /// An adapter talking to `config`. Its own timeouts are only for connecting: the
    /// whole call is bounded by the [`super::GuardedGateway`] around it.
    pub fn new(config: ProviderConfig) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .expect("an HTTP client with only timeouts set");
        Self { http, config }
    }

    /// The configuration, for the operations endpoint that forwards the simulator's
    /// settings.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// A request to `path` with the secret key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let base = self.config.base_url.trim_end_matches('/');
        self.http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&self.config.secret_key)
    }

    /// Sends `request` and reads the answer: `Ok(body)` on 2xx, the provider's error
    /// otherwise. A connection cut or a truncated body is `Unavailable`.
    async fn send(&self, request: RequestBuilder) -> Result<serde_json::Value, ProviderError> {
        let response = request.send().await.map_err(ProviderError::transport)?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.map_err(ProviderError::transport)?;
        if status.is_success() {
            return Ok(body);
        }
        let error: StripeError = serde_json::from_value(body["error"].clone()).unwrap_or_default();
        Err(ProviderError::Answered { status, error })
    }

    async fn intent(&self, request: RequestBuilder) -> Result<Intent, PaymentError> {
        let body = self
            .send(request)
            .await
            .map_err(ProviderError::into_payment)?;
        Intent::parse(body)
    }

    /// Capture or cancel: `done` is the status that means the call already happened.
    async fn transition(
        &self,
        payment: &PaymentRef,
        verb: &str,
        done: &str,
    ) -> Result<(), PaymentError> {
        let request = self
            .request(
                Method::POST,
                &format!("/v1/payment_intents/{}/{verb}", payment.0),
            )
            .header("idempotency-key", Uuid::new_v4().to_string())
            .form(&[("expand[]", "latest_charge")]);
        match self.send(request).await {
            Ok(_) => Ok(()),
            Err(ProviderError::Answered { error, .. })
                if error.code.as_deref() == Some("payment_intent_unexpected_state") =>
            {
                let status = error
                    .payment_intent
                    .as_ref()
                    .and_then(|i| i["status"].as_str());
                match status {
                    Some(status) if status == done => Ok(()),
                    // Cancelling a declined intent has nothing to release either.
                    Some("requires_payment_method") if verb == "cancel" => Ok(()),
                    other => Err(PaymentError::Refused(format!(
                        "{verb} of a payment in state {}",
                        other.unwrap_or("unknown")
                    ))),
                }
            }
            Err(e) => Err(e.into_payment()),
        }
    }
}

impl PaymentGateway for StripePayments {
    fn authorize<'a>(
        &'a self,
        attempt: OrderId,
        amount: &'a Money,
        token: &'a str,
    ) -> BoxFuture<'a, Result<PaymentRef, PaymentError>> {
        Box::pin(async move {
            let attempt = attempt.to_string();
            let request = self
                .request(Method::POST, "/v1/payment_intents")
                .header("idempotency-key", &attempt)
                .form(&[
                    ("amount", amount.amount_minor.to_string().as_str()),
                    ("currency", amount.currency.to_ascii_lowercase().as_str()),
                    ("capture_method", "manual"),
                    ("confirm", "true"),
                    ("payment_method", token),
                    ("metadata[attempt_id]", attempt.as_str()),
                ]);
            match self.send(request).await {
                Ok(body) => Ok(Intent::parse(body)?.reference()),
                Err(ProviderError::Answered { status, .. })
                    if status == StatusCode::PAYMENT_REQUIRED =>
                {
                    Err(PaymentError::Declined)
                }
                Err(e) => Err(e.into_payment()),
            }
        })
    }

    fn capture<'a>(&'a self, payment: &'a PaymentRef) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(self.transition(payment, "capture", "succeeded"))
    }

    fn void<'a>(&'a self, payment: &'a PaymentRef) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(self.transition(payment, "cancel", "canceled"))
    }

    fn refund<'a>(
        &'a self,
        payment: &'a PaymentRef,
        amount_minor: Option<i64>,
        key: Uuid,
    ) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(async move {
            let mut form = vec![("payment_intent", payment.0.clone())];
            if let Some(amount) = amount_minor {
                form.push(("amount", amount.to_string()));
            }
            let request = self
                .request(Method::POST, "/v1/refunds")
                .header("idempotency-key", key.to_string())
                .form(&form);
            self.send(request)
                .await
                .map(drop)
                .map_err(ProviderError::into_payment)
        })
    }

    fn retrieve<'a>(
        &'a self,
        payment: &'a PaymentRef,
    ) -> BoxFuture<'a, Result<Payment, PaymentError>> {
        Box::pin(async move {
            let request = self
                .request(Method::GET, &format!("/v1/payment_intents/{}", payment.0))
                .query(&[("expand[]", "latest_charge")]);
            self.intent(request).await?.into_payment()
        })
    }

    fn find(&self, attempt: OrderId) -> BoxFuture<'_, Result<Option<Payment>, PaymentError>> {
        Box::pin(async move {
            let query = format!("metadata['{ATTEMPT_METADATA}']:'{attempt}'");
            let request = self
                .request(Method::GET, "/v1/payment_intents/search")
                .query(&[
                    ("query", query.as_str()),
                    ("expand[]", "data.latest_charge"),
                ]);
            let page = self.page(request).await?;
            // One intent per attempt (its idempotency key); should the key have been
            // reused after the provider forgot it, the live one is what matters.
            Ok(page
                .0
                .into_iter()
                .min_by_key(|p| matches!(p.state, PaymentState::Voided | PaymentState::Declined)))
        })
    }

    fn list<'a>(
        &'a self,
        since: DateTime<Utc>,
        after: Option<&'a PaymentRef>,
    ) -> BoxFuture<'a, Result<(Vec<Payment>, bool), PaymentError>> {
        Box::pin(async move {
            let mut query = vec![
                ("limit", "100".to_owned()),
                ("created[gte]", since.timestamp().to_string()),
                ("expand[]", "data.latest_charge".to_owned()),
            ];
            if let Some(after) = after {
                query.push(("starting_after", after.0.clone()));
            }
            self.page(
                self.request(Method::GET, "/v1/payment_intents")
                    .query(&query),
            )
            .await
        })
    }
}

impl StripePayments {
    async fn page(&self, request: RequestBuilder) -> Result<(Vec<Payment>, bool), PaymentError> {
        let body = self
            .send(request)
            .await
            .map_err(ProviderError::into_payment)?;
        let page: Page = serde_json::from_value(body).map_err(malformed)?;
        let payments = page
            .data
            .into_iter()
            .map(|intent| {
                serde_json::from_value::<Intent>(intent)
                    .map_err(malformed)?
                    .into_payment()
            })
            .collect::<Result<_, _>>()?;
        Ok((payments, page.has_more))
    }
}

/// What went wrong talking to the provider, before it is read as a [`PaymentError`].
enum ProviderError {
    /// No complete answer: the outcome is unknown.
    Transport(String),
    /// The provider answered with an error.
    Answered {
        status: StatusCode,
        error: StripeError,
    },
}

impl ProviderError {
    fn transport(e: reqwest::Error) -> Self {
        ProviderError::Transport(e.to_string())
    }

    fn into_payment(self) -> PaymentError {
        match self {
            ProviderError::Transport(reason) => PaymentError::Unavailable(reason),
            ProviderError::Answered { status, error } => {
                let reason = format!(
                    "{status} {}: {}",
                    error
                        .code
                        .as_deref()
                        .or(error.kind.as_deref())
                        .unwrap_or("error"),
                    error.message.unwrap_or_default()
                );
                match status {
                    StatusCode::PAYMENT_REQUIRED => PaymentError::Declined,
                    // Ours to retry: the provider failed, throttled, or is still
                    // executing the same key.
                    s if s.is_server_error()
                        || s == StatusCode::TOO_MANY_REQUESTS
                        || s == StatusCode::CONFLICT
                        || s == StatusCode::UNAUTHORIZED =>
                    {
                        if s == StatusCode::UNAUTHORIZED {
                            tracing::error!("the payment provider refused the secret key");
                        }
                        PaymentError::Unavailable(reason)
                    }
                    _ => PaymentError::Refused(reason),
                }
            }
        }
    }
}

/// Stripe's `error` object (the fields read).
#[derive(Debug, Default, Deserialize)]
struct StripeError {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    message: Option<String>,
    payment_intent: Option<serde_json::Value>,
}

/// A list or search result.
#[derive(Deserialize)]
struct Page {
    data: Vec<serde_json::Value>,
    #[serde(default)]
    has_more: bool,
}

/// A PaymentIntent (the fields read).
#[derive(Deserialize)]
struct Intent {
    id: String,
    amount: i64,
    currency: String,
    status: String,
    #[serde(default)]
    metadata: HashMap<String, String>,
    created: i64,
    /// The charge's id, or the charge itself when expanded.
    #[serde(default)]
    latest_charge: Option<serde_json::Value>,
}

impl Intent {
    fn parse(body: serde_json::Value) -> Result<Intent, PaymentError> {
        serde_json::from_value(body).map_err(malformed)
    }

    fn reference(&self) -> PaymentRef {
        PaymentRef(self.id.clone())
    }

    fn into_payment(self) -> Result<Payment, PaymentError> {
        let state = match self.status.as_str() {
            "requires_capture" => PaymentState::Authorized,
            "succeeded" => PaymentState::Captured,
            "canceled" => PaymentState::Voided,
            "requires_payment_method" => PaymentState::Declined,
            other => return Err(malformed(format!("unexpected intent status {other}"))),
        };
        let refunded_minor = self
            .latest_charge
            .as_ref()
            .and_then(|charge| charge["amount_refunded"].as_i64())
            .unwrap_or(0);
        Ok(Payment {
            reference: PaymentRef(self.id),
            attempt: self
                .metadata
                .get(ATTEMPT_METADATA)
                .and_then(|id| id.parse().ok())
                .map(OrderId),
            state,
            amount: Money {
                amount_minor: self.amount,
                currency: self.currency.to_ascii_uppercase(),
            },
            refunded_minor,
            created_at: Utc
                .timestamp_opt(self.created, 0)
                .single()
                .unwrap_or_else(Utc::now),
        })
    }
}

fn malformed(e: impl std::fmt::Display) -> PaymentError {
    PaymentError::Unavailable(format!("unreadable answer from the provider: {e}"))
}
