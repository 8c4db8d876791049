//! The journal: a simulator re-created from its file keeps its ledger and its answers.

use std::path::PathBuf;

use payment_simulator::{IntentStatus, Simulator};

use crate::helpers::*;

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn a_simulator_recreated_from_its_journal_keeps_intents_and_answers() {
    let file = TempFile(std::env::temp_dir().join(format!("payment-sim-{}.jsonl", new_key())));
    let sim = Simulator::with_journal(SECRET_KEY, instant(), &file.0).unwrap();
    let provider = spawn_with(sim).await;

    let captured = provider.authorized(1000).await;
    provider
        .post(
            &format!("/v1/payment_intents/{captured}/capture"),
            &new_key(),
            &[],
        )
        .await;
    provider
        .post(
            "/v1/refunds",
            &new_key(),
            &[("payment_intent", &captured), ("amount", "300")],
        )
        .await;
    let canceled = provider.authorized(2000).await;
    provider
        .post(
            &format!("/v1/payment_intents/{canceled}/cancel"),
            &new_key(),
            &[],
        )
        .await;
    let held_key = new_key();
    let held_attempt = new_key();
    let held = provider
        .create(&held_key, 3000, "tok_ok", &held_attempt)
        .await;
    provider
        .create(&new_key(), 4000, "tok_declined", &new_key())
        .await;
    let before = provider.sim.intents();
    assert_eq!(before.len(), 4);
    provider.stop().await;

    let sim = Simulator::with_journal(SECRET_KEY, instant(), &file.0).unwrap();
    assert_eq!(sim.intents(), before);
    let statuses: Vec<IntentStatus> = before.iter().map(|i| i.status).collect();
    assert_eq!(
        statuses,
        [
            IntentStatus::Succeeded,
            IntentStatus::Canceled,
            IntentStatus::RequiresCapture,
            IntentStatus::RequiresPaymentMethod
        ]
    );
    assert_eq!(before[0].amount_refunded, 300);

    let provider = spawn_with(sim).await;
    let replayed = provider
        .create(&held_key, 3000, "tok_ok", &held_attempt)
        .await;
    assert!(replayed.replayed);
    assert_eq!(replayed.raw, held.raw);
    let newest = provider.authorized(5000).await;
    let listed = provider.get("/v1/payment_intents?limit=1").await;
    assert_eq!(listed.body["data"][0]["id"], newest.as_str());
    provider.stop().await;

    // Compacted on each start, and appended to after: a third life sees all five.
    let sim = Simulator::with_journal(SECRET_KEY, instant(), &file.0).unwrap();
    assert_eq!(sim.intents().len(), 5);
    assert_eq!(sim.intents()[..4], before[..]);
}
