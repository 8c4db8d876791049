//! Stripe's error answers: `{"error":{"type","code","message","param"?,"payment_intent"?}}`,
//! built in one place and turned into a response in one `IntoResponse`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::faults::Fault;

/// Marks a response with the fault that fired, for the call's log line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FaultTag(pub Fault);

/// One error answer of the provider (boxed: it travels in every `Result` of the HTTP
/// layer, and the success side is small).
#[derive(Debug, Clone)]
pub(crate) struct ApiError(Box<Fields>);

#[derive(Debug, Clone)]
struct Fields {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    decline_code: Option<&'static str>,
    message: Option<String>,
    param: Option<String>,
    payment_intent: Option<Value>,
    fault: Option<Fault>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str) -> Self {
        Self(Box::new(Fields {
            status,
            kind,
            code: None,
            decline_code: None,
            message: None,
            param: None,
            payment_intent: None,
            fault: None,
        }))
    }

    /// The HTTP status of this answer.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    fn code(mut self, code: &'static str) -> Self {
        self.0.code = Some(code);
        self
    }

    fn message(mut self, message: impl Into<String>) -> Self {
        self.0.message = Some(message.into());
        self
    }

    fn param(mut self, param: impl Into<String>) -> Self {
        self.0.param = Some(param.into());
        self
    }

    /// `400 invalid_request_error` with `code` about `param`.
    pub fn invalid(code: &'static str, param: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error")
            .code(code)
            .param(param)
            .message(message)
    }

    /// `404 resource_missing`: no `what` with this id.
    pub fn not_found(param: &str, what: &str, id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error")
            .code("resource_missing")
            .param(param)
            .message(format!("No such {what}: '{id}'"))
    }

    /// `404` for a URL this provider does not serve.
    pub fn unknown_url(method: &str, path: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error")
            .message(format!("Unrecognized request URL ({method}: {path})."))
    }

    /// `401`: no key, or not ours.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error")
            .message("Invalid API Key provided")
    }

    /// The answer to an injected fault: `503` for an outage, `500 api_error` otherwise.
    pub fn fault(fault: Fault) -> Self {
        let (status, message) = match fault {
            Fault::Outage => (StatusCode::SERVICE_UNAVAILABLE, "provider down"),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "An unknown error occurred",
            ),
        };
        let mut error = Self::new(status, "api_error").message(message);
        error.0.fault = Some(fault);
        error
    }

    /// `400 idempotency_error`: the key was used with other parameters.
    pub fn idempotency_mismatch() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "idempotency_error").message(
            "Keys for idempotent requests can only be used with the same parameters they were first used with.",
        )
    }

    /// `409 idempotency_key_in_use`: a call with this key is still executing.
    pub fn key_in_use() -> Self {
        Self::new(StatusCode::CONFLICT, "idempotency_error")
            .code("idempotency_key_in_use")
            .message("There is currently another in-progress request using this Idempotency Key. Retry later.")
    }

    /// `402 card_declined`, with the declined intent.
    pub fn declined(intent: Value) -> Self {
        let mut error = Self::new(StatusCode::PAYMENT_REQUIRED, "card_error")
            .code("card_declined")
            .message("Your card was declined.");
        error.0.decline_code = Some("generic_decline");
        error.0.payment_intent = Some(intent);
        error
    }

    /// `400 payment_intent_unexpected_state`, with the intent as it stands.
    pub fn unexpected_state(intent: Value, status: &str, action: &str) -> Self {
        let mut error = Self::invalid(
            "payment_intent_unexpected_state",
            "intent",
            format!(
                "This PaymentIntent could not be {action} because it has a status of {status}."
            ),
        );
        error.0.param = None;
        error.0.payment_intent = Some(intent);
        error
    }

    /// `400 amount_too_large` for a refund.
    pub fn refund_too_large(left: u64) -> Self {
        Self::invalid(
            "amount_too_large",
            "amount",
            format!("Refund amount is greater than the amount left to refund ({left})."),
        )
    }

    /// `400 charge_already_refunded`.
    pub fn already_refunded() -> Self {
        let mut error = Self::invalid(
            "charge_already_refunded",
            "payment_intent",
            "This charge has already been refunded.",
        );
        error.0.param = None;
        error
    }

    /// `422` for simulator settings out of bounds (not a Stripe endpoint).
    pub fn settings_invalid(param: Option<&str>, message: impl Into<String>) -> Self {
        let mut error =
            Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_error").message(message);
        error.0.param = param.map(str::to_owned);
        error
    }

    /// The JSON body, as sent and as stored for an idempotent replay.
    pub fn body(&self) -> String {
        let mut error = Map::new();
        error.insert("type".into(), json!(self.0.kind));
        let optional = [
            ("code", self.0.code.map(Value::from)),
            ("decline_code", self.0.decline_code.map(Value::from)),
            ("message", self.0.message.clone().map(Value::from)),
            ("param", self.0.param.clone().map(Value::from)),
            ("payment_intent", self.0.payment_intent.clone()),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                error.insert(name.into(), value);
            }
        }
        json!({ "error": error }).to_string()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.0.status, self.body());
        if let Some(fault) = self.0.fault {
            response.extensions_mut().insert(FaultTag(fault));
        }
        response
    }
}

/// A JSON answer with `status` and an already serialised `body`.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
