//! The line: fair, dense positions under real concurrency, and a pre-queue draw anyone
//! can check from the revealed seed.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use reservations::ids::ShopperId;
use sha2::{Digest, Sha256};
use waiting_room::TicketState;

use crate::Room;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_thousand_concurrent_joins_get_dense_unique_positions_and_rejoining_returns_the_same_ticket(
) {
    let room = Room::fresh().await;
    let sale = room.sale(100, -chrono::Duration::minutes(1)).await;
    let shoppers: Vec<ShopperId> = (0..20_000).map(|_| ShopperId::new()).collect();

    let tickets: Vec<(bool, waiting_room::Ticket)> = futures::stream::iter(shoppers.iter())
        .map(|shopper| {
            let queue = &room.queue;
            async move {
                let (ticket, created) = queue.join(*shopper, sale).await.expect("join");
                (created, ticket)
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;

    assert!(tickets.iter().all(|(created, _)| *created));
    let mut positions: Vec<i64> = tickets.iter().map(|(_, t)| t.position.unwrap()).collect();
    positions.sort_unstable();
    assert_eq!(
        positions,
        (1..=20_000).collect::<Vec<i64>>(),
        "dense and unique"
    );
    for shopper in shoppers.iter().take(200) {
        let first = room.queue.ticket(*shopper, sale).await.unwrap();
        let (again, created) = room.queue.join(*shopper, sale).await.unwrap();
        assert!(!created);
        assert_eq!(
            (&again.ticket_id, &again.position),
            (&first.ticket_id, &first.position)
        );
    }
}

/// The README's recipe, written out independently of the server's code.
fn recompute_draw(seed_hex: &str, tickets: &[String]) -> Vec<String> {
    let seed = hex::decode(seed_hex).unwrap();
    let mut sorted = tickets.to_vec();
    sorted.sort();
    let list_digest = Sha256::digest(sorted.join("\n"));
    let mut keyed: Vec<(String, String)> = tickets
        .iter()
        .map(|t| {
            (
                hex::encode(Sha256::digest(
                    [seed.as_slice(), list_digest.as_slice(), t.as_bytes()].concat(),
                )),
                t.clone(),
            )
        })
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, t)| t).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prequeued_shoppers_are_drawn_verifiably_and_ahead_of_every_later_arrival() {
    // Arrange: 120 shoppers join before the start.
    let room = Room::fresh().await;
    let sale = room.sale(50, chrono::Duration::minutes(1)).await;
    let early: Vec<ShopperId> = (0..120).map(|_| ShopperId::new()).collect();
    let mut arrival = Vec::new();
    for shopper in &early {
        let (ticket, _) = room.queue.join(*shopper, sale).await.unwrap();
        assert_eq!(ticket.state, TicketState::Prequeue);
        assert!(ticket.position.is_none());
        arrival.push(ticket.ticket_id);
    }
    let before = room.queue.draw_info(sale).await.unwrap();
    assert!(
        before.seed.is_none(),
        "the seed stays secret until the start"
    );
    assert_eq!(before.ticket_count, 120);
    let commitment = before.commitment.unwrap();

    // Act: the sale starts; 30 more shoppers arrive one by one.
    room.clock.advance(Duration::from_secs(61));
    let late: Vec<ShopperId> = (0..30).map(|_| ShopperId::new()).collect();
    let mut late_positions = Vec::new();
    for shopper in &late {
        let (ticket, _) = room.queue.join(*shopper, sale).await.unwrap();
        late_positions.push(ticket.position.unwrap());
    }

    // Assert: pre-queued shoppers hold 1..=120 in the drawn order, later arrivals follow
    // first in, first out, and the revealed seed reproduces the order.
    assert_eq!(late_positions, (121..=150).collect::<Vec<i64>>());
    let mut by_position = vec![String::new(); 120];
    for shopper in &early {
        let ticket = room.queue.ticket(*shopper, sale).await.unwrap();
        let position = ticket.position.unwrap();
        assert!((1..=120).contains(&position));
        by_position[position as usize - 1] = ticket.ticket_id;
    }
    assert_eq!(
        by_position.iter().collect::<HashSet<_>>().len(),
        120,
        "nobody lost or duplicated"
    );
    assert_ne!(
        by_position, arrival,
        "arrival before the start gives no edge"
    );
    let after = room.queue.draw_info(sale).await.unwrap();
    let seed = after.seed.unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(hex::decode(&seed).unwrap())),
        commitment
    );
    assert_eq!(after.commitment.as_deref(), Some(commitment.as_str()));
    assert_eq!(recompute_draw(&seed, &arrival), by_position);
    let published = room.queue.drawn_tickets(sale).await.unwrap();
    assert_eq!(published, Some(by_position));
}
