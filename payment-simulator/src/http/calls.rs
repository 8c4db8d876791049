//! The Stripe endpoints, and the pipeline every call goes through.
//!
//! A POST (create, capture, cancel, refund):
//! 1. the gate: an outage answers `503`, `failure_rate` answers `500`, before anything;
//! 2. its parameters are parsed; a bad one answers `400` and stores nothing;
//! 3. its `Idempotency-Key` is claimed: a stored answer with the same parameters is
//!    replayed (`Idempotent-Replayed: true`), other parameters are `400`, a call still
//!    executing is `409`;
//! 4. it waits its latency (`tok_slow` 1.5 s more) while holding the claim, so a
//!    concurrent retry meets `409`, not a second authorization;
//! 5. `tok_error` and the owed `fail_voids`/`fail_captures` answer `500` and release
//!    the claim, so a retry executes;
//! 6. the work, its answer stored under the key and both journaled — one critical
//!    section;
//! 7. at `lost_answer_rate` the answer is then lost: the connection is dropped.
//!
//! A GET passes the gate, waits its latency and reads.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

use super::error::{json_response, ApiError, FaultTag};
use super::objects;
use super::params::{self, Params};
use crate::faults::{Countdown, Fault};
use crate::idempotency::{Claim, Stored};
use crate::ledger::{Intent, LedgerError, NewIntent, NewRefund};
use crate::{unix_now, Simulator};

/// How long `tok_slow` takes on top of the latency.
const SLOW_TOKEN_DELAY: Duration = Duration::from_millis(1500);

/// The work of one POST.
enum Op {
    Create(NewIntent),
    Capture(String),
    Cancel(String, Option<String>),
    Refund(NewRefund),
}

/// A parsed POST: its work, and whether its answer expands the charge.
struct Call {
    op: Op,
    expand: bool,
}

/// Whether a token is approved (the test tokens of API.md, and Stripe's own).
fn approved(token: &str) -> bool {
    !matches!(token, "tok_declined" | "pm_card_chargeDeclined")
}

impl Op {
    fn delay(&self) -> Duration {
        match self {
            Op::Create(new) if new.payment_method == "tok_slow" => SLOW_TOKEN_DELAY,
            _ => Duration::ZERO,
        }
    }

    /// A fault that refuses this call before it does any work.
    fn refusal(&self, sim: &Simulator) -> Option<Fault> {
        match self {
            Op::Create(new) if new.payment_method == "tok_error" => Some(Fault::ErrorToken),
            Op::Capture(_) => sim.faults().take(Countdown::Captures),
            Op::Cancel(..) => sim.faults().take(Countdown::Voids),
            _ => None,
        }
    }
}

/// An idempotency key held by an executing call. Dropped unanswered (refused before
/// the work, or the caller gone and the call's future with it), it releases the key.
struct ClaimGuard {
    sim: Arc<Simulator>,
    key: String,
    token: u64,
    answered: bool,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        // Never armed while the store is locked: `execute` disarms it under the lock.
        if !self.answered {
            self.sim.store().keys.release(&self.key, self.token);
        }
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= 255 => Ok(Some(key.to_owned())),
        _ => Err(ApiError::invalid(
            "parameter_invalid",
            "Idempotency-Key",
            "Idempotency keys are 1 to 255 printable ASCII characters.",
        )),
    }
}

async fn post(
    sim: Arc<Simulator>,
    headers: &HeaderMap,
    path: &str,
    mut params: Params,
    parse: impl FnOnce(&mut Params) -> Result<Call, ApiError>,
) -> Result<Response, ApiError> {
    if let Some(fault) = sim.faults().gate() {
        return Err(ApiError::fault(fault));
    }
    let fingerprint = params.fingerprint("POST", path);
    let call = parse(&mut params)?;
    params.finish()?;
    let key = idempotency_key(headers)?;
    let mut guard = None;
    if let Some(key) = &key {
        let claim = sim.store().keys.claim(key, &fingerprint, unix_now());
        match claim {
            Claim::Fresh(token) => {
                guard = Some(ClaimGuard {
                    sim: sim.clone(),
                    key: key.clone(),
                    token,
                    answered: false,
                })
            }
            Claim::Replay(stored) => return Ok(replay(stored, key)),
            Claim::InUse => return Err(ApiError::key_in_use()),
            Claim::Mismatch => return Err(ApiError::idempotency_mismatch()),
        }
    }
    tokio::time::sleep(sim.faults().latency() + call.op.delay()).await;
    if let Some(fault) = call.op.refusal(&sim) {
        return Err(ApiError::fault(fault));
    }
    let (status, body) = execute(&sim, call, guard, fingerprint);
    if sim.faults().lose_answer() {
        return Ok(lost_answer(status));
    }
    let mut response = json_response(status, body);
    if let Some(key) = &key {
        set_key_header(&mut response, key);
    }
    Ok(response)
}

/// The work of a call, its answer stored under its key, both journaled: one critical
/// section, so a replay can never see the work without its answer.
fn execute(
    sim: &Simulator,
    call: Call,
    mut guard: Option<ClaimGuard>,
    fingerprint: String,
) -> (StatusCode, String) {
    let now = unix_now();
    let mut store = sim.store();
    let ledger = &mut store.ledger;
    // The answer, and the intent as the work left it (journaled with the answer).
    let (answered, changed): (Result<Value, ApiError>, Option<Intent>) = match call.op {
        Op::Create(new) => {
            let ok = approved(&new.payment_method);
            let intent = ledger.create(new, ok, now);
            let answer = if ok {
                Ok(objects::intent(&intent, call.expand))
            } else {
                // A decline is an answer like a success: the intent exists, and the
                // 402 is stored under the key.
                Err(ApiError::declined(objects::intent(&intent, false)))
            };
            (answer, Some(intent))
        }
        Op::Capture(id) => split(
            ledger.capture(&id),
            |intent| objects::intent(intent, call.expand),
            "captured",
        ),
        Op::Cancel(id, reason) => split(
            ledger.cancel(&id, reason, now),
            |intent| objects::intent(intent, call.expand),
            "canceled",
        ),
        Op::Refund(new) => match ledger.refund(new, now) {
            Ok((refund, intent)) => (Ok(objects::refund(&refund, &intent)), Some(intent)),
            Err(LedgerError::NotFound(id)) => (
                Err(ApiError::not_found("payment_intent", "payment_intent", &id)),
                None,
            ),
            Err(e) => (Err(ledger_error(e, "refunded")), None),
        },
    };
    let (status, body) = match answered {
        Ok(value) => (StatusCode::OK, value.to_string()),
        Err(error) => (error.status(), error.body()),
    };
    let answer = guard.as_mut().map(|guard| {
        guard.answered = true;
        let stored = Stored {
            fingerprint,
            status: status.as_u16(),
            body: body.clone(),
            stored_at: now,
        };
        store.keys.complete(&guard.key, stored.clone());
        (guard.key.clone(), stored)
    });
    if changed.is_some() || answer.is_some() {
        store.record(
            changed.as_ref(),
            answer.as_ref().map(|(key, stored)| (key.as_str(), stored)),
        );
    }
    drop(store);
    (status, body)
}

/// A transition's outcome as (answer, changed intent).
fn split(
    outcome: Result<Intent, LedgerError>,
    render: impl FnOnce(&Intent) -> Value,
    action: &str,
) -> (Result<Value, ApiError>, Option<Intent>) {
    match outcome {
        Ok(intent) => (Ok(render(&intent)), Some(intent)),
        Err(e) => (Err(ledger_error(e, action)), None),
    }
}

fn ledger_error(error: LedgerError, action: &str) -> ApiError {
    match error {
        LedgerError::NotFound(id) => ApiError::not_found("intent", "payment_intent", &id),
        LedgerError::UnexpectedState(intent) => ApiError::unexpected_state(
            objects::intent(&intent, false),
            intent.status.as_str(),
            action,
        ),
        LedgerError::AmountTooLarge { left } => ApiError::refund_too_large(left),
        LedgerError::AlreadyRefunded => ApiError::already_refunded(),
    }
}

fn set_key_header(response: &mut Response, key: &str) {
    if let Ok(value) = HeaderValue::from_str(key) {
        response.headers_mut().insert("idempotency-key", value);
    }
}

/// The first answer again, byte for byte.
fn replay(stored: Stored, key: &str) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = json_response(status, stored.body);
    set_key_header(&mut response, key);
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// A response whose body fails at once: hyper aborts the connection, and the caller
/// sees it closed before the message completed — the work done, its answer lost.
fn lost_answer(status: StatusCode) -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "answer lost (simulated)",
        ))
    });
    let mut response = Response::new(Body::from_stream(failing));
    *response.status_mut() = status;
    response
        .extensions_mut()
        .insert(FaultTag(Fault::AnswerLost));
    response
}

/// `POST /v1/payment_intents`: authorize.
pub(crate) async fn create_intent(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    post(sim, &headers, "/v1/payment_intents", params, |p| {
        let (new, expand) = params::create(p)?;
        Ok(Call {
            op: Op::Create(new),
            expand,
        })
    })
    .await
}

/// `POST /v1/payment_intents/{id}/capture`.
pub(crate) async fn capture_intent(
    State(sim): State<Arc<Simulator>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let path = format!("/v1/payment_intents/{id}/capture");
    post(sim, &headers, &path, params, |p| {
        Ok(Call {
            expand: params::expand_only(p)?,
            op: Op::Capture(id),
        })
    })
    .await
}

/// `POST /v1/payment_intents/{id}/cancel`: void.
pub(crate) async fn cancel_intent(
    State(sim): State<Arc<Simulator>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let path = format!("/v1/payment_intents/{id}/cancel");
    post(sim, &headers, &path, params, |p| {
        let (reason, expand) = params::cancel(p)?;
        Ok(Call {
            op: Op::Cancel(id, reason),
            expand,
        })
    })
    .await
}

/// `POST /v1/refunds`.
pub(crate) async fn create_refund(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    post(sim, &headers, "/v1/refunds", params, |p| {
        Ok(Call {
            op: Op::Refund(params::refund(p)?),
            expand: false,
        })
    })
    .await
}

/// The gate and the latency of a GET; then its parameters.
async fn get(sim: &Simulator, uri: &Uri) -> Result<Params, ApiError> {
    if let Some(fault) = sim.faults().gate() {
        return Err(ApiError::fault(fault));
    }
    let params = Params::from_query(uri)?;
    tokio::time::sleep(sim.faults().latency()).await;
    Ok(params)
}

fn ok(value: Value) -> Response {
    json_response(StatusCode::OK, value.to_string())
}

/// `GET /v1/payment_intents/{id}`.
pub(crate) async fn retrieve_intent(
    State(sim): State<Arc<Simulator>>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let mut params = get(&sim, &uri).await?;
    let expand = params::expand_only(&mut params)?;
    params.finish()?;
    let store = sim.store();
    let intent = store
        .ledger
        .get(&id)
        .ok_or_else(|| ApiError::not_found("intent", "payment_intent", &id))?;
    Ok(ok(objects::intent(intent, expand)))
}

/// `GET /v1/payment_intents`: newest first, paged.
pub(crate) async fn list_intents(
    State(sim): State<Arc<Simulator>>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let mut params = get(&sim, &uri).await?;
    let query = params::list(&mut params)?;
    params.finish()?;
    let store = sim.store();
    let (page, has_more) = store
        .ledger
        .list(query.created, query.starting_after.as_deref(), query.limit)
        .map_err(|e| match e {
            LedgerError::NotFound(id) => {
                ApiError::not_found("starting_after", "payment_intent", &id)
            }
            e => ledger_error(e, "listed"),
        })?;
    let data = page
        .into_iter()
        .map(|intent| objects::intent(intent, query.expand))
        .collect();
    Ok(ok(objects::list(data, has_more)))
}

/// `GET /v1/payment_intents/search`: by one metadata value.
pub(crate) async fn search_intents(
    State(sim): State<Arc<Simulator>>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let mut params = get(&sim, &uri).await?;
    let query = params::search(&mut params)?;
    params.finish()?;
    let store = sim.store();
    let found = store.ledger.search_metadata(&query.key, &query.value);
    let has_more = found.len() > query.limit;
    let data = found
        .into_iter()
        .take(query.limit)
        .map(|intent| objects::intent(intent, query.expand))
        .collect();
    Ok(ok(objects::search(data, has_more)))
}
