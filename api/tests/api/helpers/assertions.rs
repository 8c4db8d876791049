//! Reading answers: a typed value on success or the [`Problem`] of an error, the
//! problem+json checks every error answer must pass, and the rows of table-driven
//! contract tests ([`Expect`], [`assert_case`]).

use std::collections::BTreeSet;

use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::types::Problem;

/// Reads an answer as the contract types it: `T` on a 2xx, else its [`Problem`].
/// An error answer that is not problem+json fails the test: the contract promises one.
pub async fn answer<T: DeserializeOwned>(response: Response) -> Result<T, Problem> {
    answer_with_status(response).await.map(|(_, body)| body)
}

/// Like [`answer`], keeping the status: `201` and `200` tell a first answer from a replay.
pub async fn answer_with_status<T: DeserializeOwned>(
    response: Response,
) -> Result<(StatusCode, T), Problem> {
    let status = response.status();
    if !status.is_success() {
        assert_problem_content_type(&response);
    }
    let text = response.text().await.unwrap();
    if status.is_success() {
        let body = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("a {status} answer that is not the contract's: {e}: {text}")
        });
        return Ok((status, body));
    }
    let problem: Problem = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("a {status} answer that is not a problem: {e}: {text}"));
    assert_eq!(problem.status, status.as_u16(), "problem status: {text}");
    Err(problem)
}

fn assert_problem_content_type(response: &Response) {
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/problem+json"),
        "content type {content_type}"
    );
}

/// Asserts that a new guest session from `address` (as the trusted client-IP header
/// says) is refused `429 rate_limited` with `Retry-After`: the address is at its cap.
pub async fn assert_session_capped(app: &super::TestApp, address: &str) {
    let limited = app
        .request(reqwest::Method::POST, "/v1/sessions", None)
        .header("x-forwarded-for", address)
        .send()
        .await
        .unwrap();
    assert!(limited.headers().contains_key("retry-after"));
    assert_problem(limited, 429, "rate_limited").await;
}

/// Asserts a problem+json answer with this status and code; returns the body, for
/// the tests that read a problem's extra fields.
pub async fn assert_problem(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(
        response.status().as_u16(),
        status,
        "status for expected {code}"
    );
    assert_problem_content_type(&response);
    let body: Value = response.json().await.unwrap();
    let problem =
        Problem::deserialize(&body).unwrap_or_else(|e| panic!("not a problem: {e}: {body}"));
    problem.assert_is(status, code, &format!("body {body}"));
    body
}

/// Asserts `422 invalid_field` whose detail names `field` (`"<field>: <why>"`).
pub async fn assert_invalid_field(response: Response, field: &str) {
    let problem = answer::<Value>(response)
        .await
        .expect_err("an invalid field is refused");
    problem.assert_is(422, "invalid_field", field);
    let detail = problem.detail;
    assert!(
        detail.starts_with(&format!("{field}:")),
        "detail {detail:?} should name {field}"
    );
}

/// What one row of a contract table expects.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// A success with this status.
    Status(u16),
    /// A problem+json with this status and code.
    Problem(u16, &'static str),
}

/// Asserts that `response` answers as `expected`; a failure names the `case`.
pub async fn assert_case(case: &str, response: Response, expected: Expect) {
    let status = response.status().as_u16();
    match expected {
        Expect::Status(want) => {
            let body = response.text().await.unwrap();
            assert_eq!(status, want, "case {case:?}: {body}");
        }
        Expect::Problem(want, code) => {
            match answer::<Value>(response).await {
                Ok(body) => panic!("case {case:?}: expected {want} {code}, got {status}: {body}"),
                Err(problem) => problem.assert_is(want, code, &format!("case {case:?}")),
            };
        }
    }
}

/// The id of a sale as the API returned it.
pub fn sale_id(sale: &Value) -> Uuid {
    sale["id"]
        .as_str()
        .expect("a sale has an id")
        .parse()
        .expect("a UUID")
}

/// The `ETag` header of a response.
pub fn etag(response: &Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

/// Asserts that `value` is an object with exactly these keys.
pub fn assert_keys(value: &Value, expected: &[&str]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"));
    let actual: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = expected.iter().copied().collect();
    assert_eq!(actual, expected, "keys of {value}");
}
