//! The draw takes its tickets in rounds by address (issue #16: a farm of a few addresses
//! holding many sessions gets one early place per address, as a crowd of one session per
//! address does), and publishes each ticket's address group so the rounds are
//! recomputable.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::helpers::*;

async fn join_from(app: &TestApp, sale: Uuid, address: &str) -> String {
    let shopper = app.direct_shopper();
    let response = app
        .request(
            Method::POST,
            &format!("/v1/sales/{sale}/queue"),
            Some(&shopper.token),
        )
        .header("x-forwarded-for", address)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let ticket: Value = response.json().await.unwrap();
    ticket["ticket_id"].as_str().unwrap().to_owned()
}

/// The published recipe (README, "Checking the draw"), written apart from the
/// server's code: keys from the seed, the beacon's randomness (empty without one) and
/// the digest; rounds by group, an address's tickets taking them in the order of their
/// turn (SHA-256 of the key's bytes); the order by round, then key.
pub(crate) fn recipe(
    seed: &[u8],
    randomness: &[u8],
    tickets: &[String],
    group_of: &HashMap<String, String>,
) -> Vec<String> {
    let mut sorted = tickets.to_vec();
    sorted.sort();
    let digest = Sha256::digest(sorted.join("\n").as_bytes());
    let key = |t: &String| Sha256::digest([seed, randomness, &digest[..], t.as_bytes()].concat());
    let mut by_turn = tickets.to_vec();
    by_turn.sort_by_key(|t| hex::encode(Sha256::digest(key(t))));
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut round: HashMap<String, usize> = HashMap::new();
    for t in &by_turn {
        let group = group_of.get(t).map(String::as_str).unwrap_or_default();
        let r = if group.is_empty() {
            0
        } else {
            let n = seen.entry(group).or_insert(0);
            *n += 1;
            *n - 1
        };
        round.insert(t.clone(), r);
    }
    let mut order = tickets.to_vec();
    order.sort_by_key(|t| (round[t.as_str()], hex::encode(key(t))));
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_farm_on_one_address_gets_one_early_place_and_the_published_groups_recompute_the_order() {
    // Arrange: a sale starting in a minute; six sessions from one address, one session
    // from each of six others, all pre-queued.
    let app =
        spawn_app_with(|c| c.client_ip_header = Some("x-forwarded-for".parse().unwrap())).await;
    let sale = app.sale_starting_in_a_minute().await;
    let mut farm = Vec::new();
    let mut crowd = Vec::new();
    for i in 1..=6 {
        farm.push(join_from(&app, sale, "198.18.0.7").await);
        crowd.push(join_from(&app, sale, &format!("10.0.{i}.1")).await);
    }

    // Act: the sale starts; a late arrival joins (and the draw runs).
    app.clock.advance(Duration::from_secs(61));
    join_from(&app, sale, "10.9.9.9").await;
    let served: Value = app
        .get(&format!("/v1/sales/{sale}/draw/tickets"), None)
        .await
        .json()
        .await
        .unwrap();
    let info: Value = app
        .get(&format!("/v1/sales/{sale}/draw"), None)
        .await
        .json()
        .await
        .unwrap();

    // Assert: the first seven places hold one farm ticket; the farm's tickets share a
    // group, the crowd's are all different; the published groups recompute the order.
    let tickets: Vec<String> = serde_json::from_value(served["tickets"].clone()).unwrap();
    let groups: Vec<String> = serde_json::from_value(served["groups"].clone()).unwrap();
    assert_eq!(tickets.len(), 12);
    assert_eq!(groups.len(), 12);
    let early_farm = tickets[..7].iter().filter(|t| farm.contains(t)).count();
    assert_eq!(early_farm, 1, "one address, one early place: {tickets:?}");
    let group_of: HashMap<String, String> = tickets
        .iter()
        .cloned()
        .zip(groups.iter().cloned())
        .collect();
    let farm_groups: std::collections::HashSet<&String> =
        farm.iter().map(|t| &group_of[t]).collect();
    assert_eq!(farm_groups.len(), 1, "one address, one group");
    let crowd_groups: std::collections::HashSet<&String> =
        crowd.iter().map(|t| &group_of[t]).collect();
    assert_eq!(crowd_groups.len(), 6);
    assert!(!crowd_groups.contains(farm_groups.iter().next().unwrap()));
    assert!(
        groups.iter().all(|g| g.len() == 10),
        "groups are opaque tags: {groups:?}"
    );
    let seed = info["seed"].as_str().expect("the seed is revealed");
    let seed = hex::decode(seed).unwrap();
    assert_eq!(recipe(&seed, &[], &tickets, &group_of), tickets);
}
