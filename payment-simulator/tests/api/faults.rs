//! The injected faults: lost answers, failing voids and captures, plain failures, an
//! outage; and the settings endpoint that sets them.

use std::time::Duration;

use payment_simulator::{IntentStatus, Settings};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_lost_answer_did_the_work_and_a_retry_with_its_key_replays_it() {
    let provider = spawn(Settings {
        lost_answer_rate: 1.0,
        ..instant()
    })
    .await;
    let key = new_key();
    let attempt = new_key();
    let amount = "12900".to_string();
    let form = create_form(&amount, "tok_ok", &attempt);

    // The caller cannot tell this from a call that did nothing: no answer at all.
    let lost = provider
        .post_request("/v1/payment_intents", &key, &form)
        .send()
        .await;
    match lost {
        Err(_) => {}
        Ok(response) => assert!(
            response.bytes().await.is_err(),
            "a lost answer must not arrive whole"
        ),
    }

    // The work is done: the intent exists, by id and by attempt.
    let intents = provider.sim.intents();
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].status, IntentStatus::RequiresCapture);
    let found = provider
        .get(&format!(
            "/v1/payment_intents/search?query=metadata['attempt_id']:'{attempt}'"
        ))
        .await;
    assert_eq!(found.body["data"][0]["id"], intents[0].id.as_str());
    let fetched = provider
        .get(&format!("/v1/payment_intents/{}", intents[0].id))
        .await;
    assert_eq!(fetched.body["status"], "requires_capture");

    // A retry with the key gets the stored answer (a replay does no work, so it is not
    // lost again).
    let retried = provider.post("/v1/payment_intents", &key, &form).await;
    assert_eq!(retried.status, 200, "{}", retried.raw);
    assert!(retried.replayed);
    assert_eq!(retried.body["id"], intents[0].id.as_str());
    assert_eq!(provider.sim.intents().len(), 1);
}

#[tokio::test]
async fn a_lost_cancel_still_cancels() {
    let provider = spawn(instant()).await;
    let id = provider.authorized(300).await;
    provider
        .put_settings(&json!({"latency_ms": {"p50": 0, "p99": 0}, "failure_rate": 0.0, "lost_answer_rate": 1.0}))
        .await;
    let lost = provider
        .post_request(&format!("/v1/payment_intents/{id}/cancel"), &new_key(), &[])
        .send()
        .await;
    if let Ok(response) = lost {
        assert!(response.bytes().await.is_err());
    }
    assert_eq!(provider.sim.intents()[0].status, IntentStatus::Canceled);
}

#[tokio::test]
async fn three_failing_voids_leave_the_hold_and_the_fourth_cancels() {
    let provider = spawn(Settings {
        fail_voids: 3,
        ..instant()
    })
    .await;
    let id = provider.authorized(300).await;
    let path = format!("/v1/payment_intents/{id}/cancel");
    // The adapter retries a void with the same key; nothing was stored, so each retry
    // executes.
    let key = new_key();
    for left in [2, 1, 0] {
        let failed = provider.post(&path, &key, &[]).await;
        assert_eq!(failed.status, 500, "{}", failed.raw);
        assert_eq!(failed.error().0, "api_error");
        assert!(!failed.replayed);
        assert_eq!(provider.sim.settings().fail_voids, left);
        let fetched = provider.get(&format!("/v1/payment_intents/{id}")).await;
        assert_eq!(fetched.body["status"], "requires_capture");
    }
    let canceled = provider.post(&path, &key, &[]).await;
    assert_eq!(canceled.status, 200, "{}", canceled.raw);
    assert_eq!(canceled.body["status"], "canceled");
}

#[tokio::test]
async fn two_failing_captures_leave_the_hold_and_the_third_captures() {
    let provider = spawn(Settings {
        fail_captures: 2,
        ..instant()
    })
    .await;
    let id = provider.authorized(300).await;
    let path = format!("/v1/payment_intents/{id}/capture");
    let key = new_key();
    for _ in 0..2 {
        let failed = provider.post(&path, &key, &[]).await;
        assert_eq!(failed.status, 500, "{}", failed.raw);
        assert_eq!(
            provider.sim.intents()[0].status,
            IntentStatus::RequiresCapture
        );
    }
    let captured = provider.post(&path, &key, &[]).await;
    assert_eq!(captured.status, 200, "{}", captured.raw);
    assert_eq!(captured.body["status"], "succeeded");
}

#[tokio::test]
async fn a_failure_rate_of_one_refuses_every_call_before_work() {
    let provider = spawn(Settings {
        failure_rate: 1.0,
        ..instant()
    })
    .await;
    let created = provider.create(&new_key(), 100, "tok_ok", &new_key()).await;
    assert_eq!(created.status, 500);
    assert_eq!(created.error().0, "api_error");
    assert!(provider.sim.intents().is_empty());
    let fetched = provider.get("/v1/payment_intents?limit=1").await;
    assert_eq!(fetched.status, 500);
    // The control endpoint is not subject to faults.
    let settings = provider.get("/v1/simulator/settings").await;
    assert_eq!(settings.status, 200);
    assert_eq!(settings.body["failure_rate"], 1.0);
}

#[tokio::test]
async fn an_outage_answers_503_until_it_ends() {
    let provider = spawn(instant()).await;
    let set = provider
        .put_settings(
            &json!({"latency_ms": {"p50": 0, "p99": 0}, "failure_rate": 0.0, "outage_ms": 2000}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.raw);

    let down = provider.create(&new_key(), 100, "tok_ok", &new_key()).await;
    assert_eq!(down.status, 503);
    assert_eq!(down.error().0, "api_error");
    assert_eq!(provider.get("/v1/payment_intents/pi_x").await.status, 503);
    let left = provider.get("/v1/simulator/settings").await.body["outage_ms"]
        .as_u64()
        .unwrap();
    assert!(left > 0 && left <= 2000, "{left}");
    assert!(provider.sim.intents().is_empty());

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let up = provider.create(&new_key(), 100, "tok_ok", &new_key()).await;
    assert_eq!(up.status, 200, "{}", up.raw);
    assert_eq!(
        provider.get("/v1/simulator/settings").await.body["outage_ms"],
        0
    );
}

#[tokio::test]
async fn settings_out_of_bounds_are_422_with_the_field() {
    let provider = spawn(instant()).await;
    let bad = provider
        .put_settings(&json!({"latency_ms": {"p50": 50, "p99": 10}, "failure_rate": 0.0}))
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["error"]["type"], "invalid_request_error");
    assert_eq!(bad.body["error"]["param"], "latency_ms.p99");

    let bad = provider
        .put_settings(
            &json!({"latency_ms": {"p50": 1, "p99": 2}, "failure_rate": 0.0, "fail_voids": 101}),
        )
        .await;
    assert_eq!(bad.body["error"]["param"], "fail_voids");

    let unknown = provider
        .put_settings(&json!({"latency_ms": {"p50": 1, "p99": 2}, "failure_rate": 0.0, "bogus": 1}))
        .await;
    assert_eq!(unknown.status, 422);

    let good = provider
        .put_settings(
            &json!({"latency_ms": {"p50": 1, "p99": 2}, "failure_rate": 0.25, "fail_captures": 4}),
        )
        .await;
    assert_eq!(good.status, 200, "{}", good.raw);
    assert_eq!(good.body["fail_captures"], 4);
    assert_eq!(good.body["fail_voids"], 0);
    assert_eq!(provider.sim.settings().failure_rate, 0.25);
}
