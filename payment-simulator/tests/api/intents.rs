//! The life of an intent: authorize, retrieve, capture, cancel, refund; auth.

use base64::Engine as _;
use payment_simulator::IntentStatus;

use crate::helpers::*;

#[tokio::test]
async fn authorize_retrieve_capture_refund_follow_the_contract() {
    let provider = spawn(instant()).await;
    let attempt = new_key();

    let created = provider.create(&new_key(), 12900, "tok_ok", &attempt).await;
    assert_eq!(created.status, 200, "{}", created.raw);
    let intent = &created.body;
    let id = intent["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("pi_") && id.len() == 27, "{id}");
    assert_eq!(intent["object"], "payment_intent");
    assert_eq!(intent["status"], "requires_capture");
    assert_eq!(intent["amount"], 12900);
    assert_eq!(intent["amount_capturable"], 12900);
    assert_eq!(intent["amount_received"], 0);
    assert_eq!(intent["currency"], "eur");
    assert_eq!(intent["capture_method"], "manual");
    assert_eq!(intent["payment_method"], "tok_ok");
    assert_eq!(intent["metadata"]["attempt_id"], attempt.as_str());
    assert_eq!(intent["livemode"], false);
    assert!(intent["latest_charge"].as_str().unwrap().starts_with("ch_"));

    let fetched = provider
        .get(&format!("/v1/payment_intents/{id}?expand[]=latest_charge"))
        .await;
    assert_eq!(fetched.status, 200);
    let charge = &fetched.body["latest_charge"];
    assert_eq!(charge["object"], "charge");
    assert_eq!(charge["captured"], false);
    assert_eq!(charge["payment_intent"], id.as_str());

    let captured = provider
        .post(
            &format!("/v1/payment_intents/{id}/capture"),
            &new_key(),
            &[("expand[]", "latest_charge")],
        )
        .await;
    assert_eq!(captured.status, 200, "{}", captured.raw);
    assert_eq!(captured.body["status"], "succeeded");
    assert_eq!(captured.body["amount_received"], 12900);
    assert_eq!(captured.body["amount_capturable"], 0);
    assert_eq!(captured.body["latest_charge"]["amount_captured"], 12900);
    assert_eq!(captured.body["latest_charge"]["captured"], true);

    let refund = provider
        .post("/v1/refunds", &new_key(), &[("payment_intent", &id)])
        .await;
    assert_eq!(refund.status, 200, "{}", refund.raw);
    assert!(refund.body["id"].as_str().unwrap().starts_with("re_"));
    assert_eq!(refund.body["object"], "refund");
    assert_eq!(refund.body["amount"], 12900);
    assert_eq!(refund.body["currency"], "eur");
    assert_eq!(refund.body["payment_intent"], id.as_str());
    assert_eq!(refund.body["status"], "succeeded");

    let fetched = provider
        .get(&format!("/v1/payment_intents/{id}?expand[]=latest_charge"))
        .await;
    assert_eq!(fetched.body["latest_charge"]["amount_refunded"], 12900);
    assert_eq!(fetched.body["latest_charge"]["refunded"], true);

    let too_much = provider
        .post(
            "/v1/refunds",
            &new_key(),
            &[("payment_intent", &id), ("amount", "1")],
        )
        .await;
    assert_eq!(too_much.status, 400);
    assert_eq!(
        too_much.error(),
        ("invalid_request_error", "amount_too_large")
    );

    let cancel = provider
        .post(&format!("/v1/payment_intents/{id}/cancel"), &new_key(), &[])
        .await;
    assert_eq!(cancel.status, 400);
    assert_eq!(
        cancel.error(),
        ("invalid_request_error", "payment_intent_unexpected_state")
    );
    assert_eq!(cancel.body["error"]["payment_intent"]["id"], id.as_str());
    assert_eq!(
        cancel.body["error"]["payment_intent"]["status"],
        "succeeded"
    );

    let views = provider.sim.intents();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].status, IntentStatus::Succeeded);
    assert_eq!(views[0].amount_refunded, 12900);
    assert_eq!(views[0].attempt_id.as_deref(), Some(attempt.as_str()));
}

#[tokio::test]
async fn a_partial_refund_leaves_the_rest_to_refund() {
    let provider = spawn(instant()).await;
    let id = provider.authorized(1000).await;
    provider
        .post(
            &format!("/v1/payment_intents/{id}/capture"),
            &new_key(),
            &[],
        )
        .await;
    let part = provider
        .post(
            "/v1/refunds",
            &new_key(),
            &[("payment_intent", &id), ("amount", "400")],
        )
        .await;
    assert_eq!(part.body["amount"], 400);
    let rest = provider
        .post("/v1/refunds", &new_key(), &[("payment_intent", &id)])
        .await;
    assert_eq!(rest.body["amount"], 600, "{}", rest.raw);
    let fetched = provider
        .get(&format!("/v1/payment_intents/{id}?expand[]=latest_charge"))
        .await;
    assert_eq!(fetched.body["latest_charge"]["amount_refunded"], 1000);
}

#[tokio::test]
async fn a_refund_of_an_uncaptured_intent_is_refused() {
    let provider = spawn(instant()).await;
    let id = provider.authorized(1000).await;
    let refund = provider
        .post("/v1/refunds", &new_key(), &[("payment_intent", &id)])
        .await;
    assert_eq!(refund.status, 400);
    assert_eq!(refund.error().1, "payment_intent_unexpected_state");
    let unknown = provider
        .post("/v1/refunds", &new_key(), &[("payment_intent", "pi_nope")])
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error().1, "resource_missing");
}

#[tokio::test]
async fn cancel_voids_an_authorization_once() {
    let provider = spawn(instant()).await;
    let id = provider.authorized(500).await;
    let path = format!("/v1/payment_intents/{id}/cancel");

    let canceled = provider
        .post(&path, &new_key(), &[("cancellation_reason", "abandoned")])
        .await;
    assert_eq!(canceled.status, 200, "{}", canceled.raw);
    assert_eq!(canceled.body["status"], "canceled");
    assert!(canceled.body["canceled_at"].is_u64());
    assert_eq!(canceled.body["cancellation_reason"], "abandoned");
    assert_eq!(canceled.body["amount_capturable"], 0);

    let again = provider.post(&path, &new_key(), &[]).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.error().1, "payment_intent_unexpected_state");
    assert_eq!(again.body["error"]["payment_intent"]["status"], "canceled");

    let capture = provider
        .post(
            &format!("/v1/payment_intents/{id}/capture"),
            &new_key(),
            &[],
        )
        .await;
    assert_eq!(capture.status, 400);
    assert_eq!(capture.error().1, "payment_intent_unexpected_state");
}

#[tokio::test]
async fn an_unknown_intent_is_resource_missing() {
    let provider = spawn(instant()).await;
    let fetched = provider.get("/v1/payment_intents/pi_unknown").await;
    assert_eq!(fetched.status, 404);
    assert_eq!(
        fetched.error(),
        ("invalid_request_error", "resource_missing")
    );
    assert_eq!(fetched.body["error"]["param"], "intent");
    let capture = provider
        .post("/v1/payment_intents/pi_unknown/capture", &new_key(), &[])
        .await;
    assert_eq!(capture.status, 404);
}

#[tokio::test]
async fn a_declined_token_answers_402_and_replays_it() {
    let provider = spawn(instant()).await;
    let key = new_key();
    let declined = provider.create(&key, 700, "tok_declined", &new_key()).await;
    assert_eq!(declined.status, 402, "{}", declined.raw);
    let error = &declined.body["error"];
    assert_eq!(error["type"], "card_error");
    assert_eq!(error["code"], "card_declined");
    assert_eq!(error["decline_code"], "generic_decline");
    assert_eq!(error["payment_intent"]["status"], "requires_payment_method");
    assert!(error["payment_intent"]["latest_charge"].is_null());

    // The same call again: the stored 402, not a second intent.
    let attempt = error["payment_intent"]["metadata"]["attempt_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = provider.create(&key, 700, "tok_declined", &attempt).await;
    assert_eq!(again.status, 402);
    assert!(again.replayed);
    assert_eq!(again.raw, declined.raw);
    assert_eq!(provider.sim.intents().len(), 1);

    let stripe_declined = provider
        .create(&new_key(), 700, "pm_card_chargeDeclined", &new_key())
        .await;
    assert_eq!(stripe_declined.status, 402);
}

#[tokio::test]
async fn tok_error_stores_nothing_so_a_retry_with_the_key_executes() {
    let provider = spawn(instant()).await;
    let key = new_key();
    let attempt = new_key();
    let failed = provider.create(&key, 700, "tok_error", &attempt).await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.error().0, "api_error");
    assert!(provider.sim.intents().is_empty());

    let again = provider.create(&key, 700, "tok_error", &attempt).await;
    assert_eq!(again.status, 500);
    assert!(!again.replayed);

    // Had the first call stored its answer, other parameters would be an
    // idempotency_error; it did not, so this executes.
    let retried = provider.create(&key, 700, "tok_ok", &attempt).await;
    assert_eq!(retried.status, 200, "{}", retried.raw);
    assert!(!retried.replayed);
    assert_eq!(provider.sim.intents().len(), 1);
}

#[tokio::test]
async fn tok_slow_is_approved_after_its_delay() {
    let provider = spawn(instant()).await;
    let started = std::time::Instant::now();
    let slow = provider
        .create(&new_key(), 100, "tok_slow", &new_key())
        .await;
    assert_eq!(slow.status, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500));
}

#[tokio::test]
async fn bad_parameters_are_400_and_store_nothing() {
    let provider = spawn(instant()).await;
    let key = new_key();
    let missing = provider
        .post("/v1/payment_intents", &key, &[("currency", "eur")])
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.error(),
        ("invalid_request_error", "parameter_missing")
    );
    assert_eq!(missing.body["error"]["param"], "amount");

    let attempt = new_key();
    let mut form = create_form("12.5", "tok_ok", &attempt);
    let not_integer = provider.post("/v1/payment_intents", &key, &form).await;
    assert_eq!(not_integer.error().1, "parameter_invalid_integer");

    form[0].1 = "100";
    form.push(("colour", "blue"));
    let unknown = provider.post("/v1/payment_intents", &key, &form).await;
    assert_eq!(unknown.error().1, "parameter_unknown");
    assert_eq!(unknown.body["error"]["param"], "colour");

    form.pop();
    let fine = provider.post("/v1/payment_intents", &key, &form).await;
    assert_eq!(fine.status, 200, "{}", fine.raw);
    assert!(!fine.replayed);
}

#[tokio::test]
async fn calls_without_the_secret_key_are_401() {
    let provider = spawn(instant()).await;
    let url = format!("{}/v1/payment_intents/pi_x", provider.base);
    for request in [
        provider.client.get(&url),
        provider.client.get(&url).bearer_auth("sk_test_wrong"),
        provider
            .client
            .get(&url)
            .basic_auth("sk_test_wrong", Some("")),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["message"], "Invalid API Key provided");
    }
    // HTTP Basic with the key as user is accepted, as Stripe accepts it.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SECRET_KEY}:"));
    let response = provider
        .client
        .get(&url)
        .header("Authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}
