//! Idempotency keys: replay, mismatch, a key in use.

use std::time::Duration;

use payment_simulator::Latency;

use crate::helpers::*;

#[tokio::test]
async fn the_same_key_and_parameters_replay_the_first_answer_byte_for_byte() {
    let provider = spawn(instant()).await;
    let key = new_key();
    let attempt = new_key();
    let first = provider.create(&key, 900, "tok_ok", &attempt).await;
    let second = provider.create(&key, 900, "tok_ok", &attempt).await;
    assert!(!first.replayed);
    assert!(second.replayed);
    assert_eq!((second.status, &second.raw), (first.status, &first.raw));
    assert_eq!(provider.sim.intents().len(), 1);
}

#[tokio::test]
async fn the_same_key_with_another_amount_is_an_idempotency_error() {
    let provider = spawn(instant()).await;
    let key = new_key();
    let attempt = new_key();
    provider.create(&key, 900, "tok_ok", &attempt).await;
    let other = provider.create(&key, 901, "tok_ok", &attempt).await;
    assert_eq!(other.status, 400);
    assert_eq!(other.error().0, "idempotency_error");
    // The key belongs to one endpoint too.
    let id = provider.sim.intents()[0].id.clone();
    let capture = provider
        .post(&format!("/v1/payment_intents/{id}/capture"), &key, &[])
        .await;
    assert_eq!(capture.status, 400);
    assert_eq!(capture.error().0, "idempotency_error");
    assert_eq!(provider.sim.intents().len(), 1);
}

#[tokio::test]
async fn concurrent_creates_with_one_key_authorize_once() {
    // Every call waits 200 ms while it holds its key: the others arrive meanwhile.
    let provider = spawn(payment_simulator::Settings {
        latency_ms: Latency { p50: 200, p99: 200 },
        ..instant()
    })
    .await;
    let key = new_key();
    let attempt = new_key();
    let calls = (0..8).map(|_| provider.create(&key, 4200, "tok_ok", &attempt));
    let replies = futures::future::join_all(calls).await;

    let executed: Vec<_> = replies
        .iter()
        .filter(|r| r.status == 200 && !r.replayed)
        .collect();
    assert_eq!(executed.len(), 1, "{replies:?}");
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(reply.status, 409, "{}", reply.raw);
        assert_eq!(
            reply.error(),
            ("idempotency_error", "idempotency_key_in_use")
        );
    }
    assert_eq!(provider.sim.intents().len(), 1);

    // Once it answered, the key replays.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let after = provider.create(&key, 4200, "tok_ok", &attempt).await;
    assert!(after.replayed);
    assert_eq!(after.body["id"], executed[0].body["id"]);
}

#[tokio::test]
async fn a_caller_gone_mid_call_releases_its_key() {
    let provider = spawn(payment_simulator::Settings {
        latency_ms: Latency {
            p50: 1000,
            p99: 1000,
        },
        ..instant()
    })
    .await;
    let key = new_key();
    let attempt = new_key();
    let amount = "100".to_string();
    let form = create_form(&amount, "tok_ok", &attempt);
    // The caller gives up while the call waits its latency: no work, no answer.
    let gone = provider
        .post_request("/v1/payment_intents", &key, &form)
        .timeout(Duration::from_millis(150))
        .send()
        .await;
    assert!(gone.is_err());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(provider.sim.intents().is_empty());

    let retried = provider.create(&key, 100, "tok_ok", &attempt).await;
    assert_eq!(retried.status, 200, "{}", retried.raw);
    assert!(!retried.replayed);
}
