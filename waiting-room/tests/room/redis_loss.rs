//! The line survives Redis (issue #15, point 4): emptied or rolled back to an older
//! copy, every shopper who holds a statement of their place keeps it relative to
//! everyone else, the serving position never goes back, the admitted stay admitted,
//! later arrivals come after all of them, and a wiped pre-queue keeps its commitment.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use reservations::ids::{SaleId, ShopperId};
use sha2::{Digest, Sha256};
use waiting_room::{AdmissionCheck, AdmissionTokens, Queue, Ticket, TicketState};

use crate::{Room, ISSUER, SECRET};

/// The five keys of a sale's line.
fn line_keys(room: &Room, sale: SaleId) -> Vec<String> {
    ["meta", "tickets", "pre", "owners", "log"]
        .iter()
        .map(|k| format!("{}:{{sale:{sale}}}:q:{k}", room.prefix))
        .collect()
}

/// Redis emptied: every key of the line goes, and the set of lines with it.
async fn empty_the_line(room: &Room, sale: SaleId) {
    let mut keys = line_keys(room, sale);
    keys.push(format!("{}:lines", room.prefix));
    let _: i64 = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut room.redis.clone())
        .await
        .unwrap();
}

/// A copy of the line's keys as they are now (what a lagging replica holds).
async fn snapshot(room: &Room, sale: SaleId) -> Vec<(String, Option<Vec<u8>>)> {
    let mut copy = Vec::new();
    for key in line_keys(room, sale) {
        let dump: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut room.redis.clone())
            .await
            .unwrap();
        copy.push((key, dump));
    }
    copy
}

/// Redis rolled back to `copy`.
async fn roll_back(room: &Room, copy: &[(String, Option<Vec<u8>>)]) {
    for (key, dump) in copy {
        let _: i64 = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut room.redis.clone())
            .await
            .unwrap();
        if let Some(dump) = dump {
            let _: () = redis::cmd("RESTORE")
                .arg(key)
                .arg(0)
                .arg(dump.as_slice())
                .query_async(&mut room.redis.clone())
                .await
                .unwrap();
        }
    }
}

/// `n` shoppers join at once; their tickets by shopper.
async fn join_all(queue: &Queue, sale: SaleId, n: usize) -> HashMap<ShopperId, Ticket> {
    let shoppers: Vec<ShopperId> = (0..n).map(|_| ShopperId::new()).collect();
    futures::stream::iter(shoppers)
        .map(|shopper| async move {
            let (ticket, created) = queue.join(shopper, sale).await.expect("join");
            assert!(created);
            (shopper, ticket)
        })
        .buffer_unordered(64)
        .collect()
        .await
}

/// Every shopper polls with the statement they hold; their new tickets.
async fn poll_all(
    queue: &Queue,
    sale: SaleId,
    held: &HashMap<ShopperId, Ticket>,
) -> HashMap<ShopperId, Ticket> {
    futures::stream::iter(held.iter())
        .map(|(shopper, ticket)| async move {
            let polled = queue
                .ticket_with(*shopper, sale, Some(&ticket.place_token))
                .await
                .expect("a shopper with a statement is in line");
            (*shopper, polled)
        })
        .buffer_unordered(64)
        .collect()
        .await
}

/// One controller tick that admits `admit` more positions, recorded as the controller
/// records it.
async fn admit(queue: &Queue, room: &Room, sale: SaleId, admit: i64) -> i64 {
    use reservations::clock::Clock;
    let now = room.clock.now().timestamp_millis();
    let serving = queue
        .advance(sale, now, admit, 10.0, "steady", false, 0, 0.0, "{}")
        .await
        .unwrap();
    let line = queue.line_state(sale).await.unwrap();
    queue.keep_marks(sale, &line).await.unwrap();
    serving
}

/// Shoppers in order of their place.
fn order(tickets: &HashMap<ShopperId, Ticket>) -> Vec<ShopperId> {
    let mut by_place: Vec<(i64, ShopperId)> = tickets
        .iter()
        .map(|(s, t)| (t.position.expect("placed"), *s))
        .collect();
    by_place.sort_unstable();
    let positions: Vec<i64> = by_place.iter().map(|(p, _)| *p).collect();
    let mut unique = positions.clone();
    unique.dedup();
    assert_eq!(unique.len(), positions.len(), "no place handed out twice");
    by_place.into_iter().map(|(_, s)| s).collect()
}

/// The places, the admitted and the serving position are as before the loss.
fn assert_kept(
    before: &HashMap<ShopperId, Ticket>,
    after: &HashMap<ShopperId, Ticket>,
    sale: SaleId,
) {
    assert_eq!(after.len(), before.len());
    assert_eq!(
        order(after),
        order(before),
        "everyone's place relative to everyone else"
    );
    let tokens = AdmissionTokens::new(SECRET, ISSUER);
    for (shopper, ticket) in before {
        let now = &after[shopper];
        assert_eq!(now.ticket_id, ticket.ticket_id);
        if ticket.state == TicketState::Admitted {
            assert_eq!(
                now.state,
                TicketState::Admitted,
                "the admitted stay admitted"
            );
            assert_eq!(now.admission_expires_at, ticket.admission_expires_at);
            let token = now.admission_token.as_deref();
            assert_eq!(tokens.check(token, shopper.0, sale.0), Ok(()));
            // The token issued before the loss needs nothing of Redis to be accepted.
            let old = ticket.admission_token.as_deref();
            assert_eq!(tokens.check(old, shopper.0, sale.0), Ok(()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_emptied_with_two_thousand_shoppers_in_line_keeps_every_place_and_admission() {
    // Arrange: 2,000 shoppers in line, the first 500 admitted; each polled once, so
    // each holds the latest statement of their place.
    let room = Room::fresh().await;
    let sale = room.sale(100, -chrono::Duration::minutes(1)).await;
    let joined = join_all(&room.queue, sale, 2_000).await;
    assert_eq!(admit(&room.queue, &room, sale, 500).await, 500);
    let before = poll_all(&room.queue, sale, &joined).await;
    let admitted = before
        .values()
        .filter(|t| t.state == TicketState::Admitted)
        .count();
    assert_eq!(admitted, 500);
    let last_place = before.values().filter_map(|t| t.position).max().unwrap();

    // Act: Redis loses the line; a process that remembers nothing of it serves on.
    empty_the_line(&room, sale).await;
    let queue = room.another_process();
    let unknown = ShopperId::new();
    assert!(matches!(
        queue.ticket(unknown, sale).await,
        Err(waiting_room::Error::NotInQueue)
    ));
    let after = poll_all(&queue, sale, &before).await;
    let late = join_all(&queue, sale, 50).await;

    // Assert
    assert_kept(&before, &after, sale);
    let line = queue.line_state(sale).await.unwrap();
    assert!(line.serving >= 500, "serving went back to {}", line.serving);
    assert!(
        late.values().all(|t| t.position.unwrap() > last_place),
        "later arrivals come after every place kept"
    );
    let mut all = after.clone();
    all.extend(late);
    order(&all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_rolled_back_to_an_older_copy_keeps_every_place_and_admission() {
    // Arrange: 1,000 shoppers, 200 admitted; the copy a lagging replica would hold;
    // then 1,000 more, admission up to 900, and everyone's latest statement.
    let room = Room::fresh().await;
    let sale = room.sale(100, -chrono::Duration::minutes(1)).await;
    let mut joined = join_all(&room.queue, sale, 1_000).await;
    admit(&room.queue, &room, sale, 200).await;
    let old_copy = snapshot(&room, sale).await;
    joined.extend(join_all(&room.queue, sale, 1_000).await);
    assert_eq!(admit(&room.queue, &room, sale, 700).await, 900);
    let before = poll_all(&room.queue, sale, &joined).await;
    let last_place = before.values().filter_map(|t| t.position).max().unwrap();

    // Act: Redis comes back older (seconds later); new shoppers arrive before anyone
    // polls.
    room.clock.advance(Duration::from_secs(5));
    roll_back(&room, &old_copy).await;
    assert_eq!(room.queue.line_state(sale).await.unwrap().serving, 200);
    let late = join_all(&room.queue, sale, 50).await;
    let after = poll_all(&room.queue, sale, &before).await;

    // Assert: the later joiners of the lost stretch kept their places too.
    assert_kept(&before, &after, sale);
    assert!(room.queue.line_state(sale).await.unwrap().serving >= 900);
    assert!(late.values().all(|t| t.position.unwrap() > last_place));
    let mut all = after.clone();
    all.extend(late);
    order(&all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_another_process_never_saw_is_noticed_by_the_controllers_record() {
    let room = Room::fresh().await;
    let sale = room.sale(100, -chrono::Duration::minutes(1)).await;
    let first = join_all(&room.queue, sale, 100).await;
    let old_copy = snapshot(&room, sale).await;
    let second = join_all(&room.queue, sale, 100).await;
    admit(&room.queue, &room, sale, 150).await;
    let mut before = poll_all(&room.queue, sale, &first).await;
    before.extend(poll_all(&room.queue, sale, &second).await);

    roll_back(&room, &old_copy).await;
    let queue = room.another_process();
    let line = queue.line_state(sale).await.unwrap();
    assert!(queue.keep_marks(sale, &line).await.unwrap(), "noticed");
    let late = join_all(&queue, sale, 10).await;
    let after = poll_all(&queue, sale, &before).await;

    assert_kept(&before, &after, sale);
    assert!(queue.line_state(sale).await.unwrap().serving >= 150);
    let last_place = before.values().filter_map(|t| t.position).max().unwrap();
    assert!(late.values().all(|t| t.position.unwrap() > last_place));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_prequeue_keeps_its_published_commitment_and_its_drawn_places() {
    // Arrange: 60 shoppers pre-queued and the commitment published.
    let room = Room::fresh().await;
    let sale = room.sale(50, chrono::Duration::minutes(1)).await;
    let early = join_all(&room.queue, sale, 60).await;
    let commitment = room
        .queue
        .draw_info(sale)
        .await
        .unwrap()
        .commitment
        .unwrap();

    // Act 1: Redis loses the pre-queue before the start.
    empty_the_line(&room, sale).await;
    let queue = room.another_process();
    let published = queue.draw_info(sale).await.unwrap();
    assert_eq!(published.commitment.as_deref(), Some(commitment.as_str()));
    assert!(
        published.seed.is_none(),
        "the seed stays secret until the start"
    );
    let back = poll_all(&queue, sale, &early).await;
    assert!(back.values().all(|t| t.state == TicketState::Prequeue));
    let newcomer = join_all(&queue, sale, 1).await;
    assert_eq!(
        queue.draw_info(sale).await.unwrap().commitment.as_deref(),
        Some(commitment.as_str()),
        "never a new commitment"
    );

    // Act 2: the start, the draw, and Redis emptied again after it.
    room.clock.advance(Duration::from_secs(61));
    queue.draw(sale).await.unwrap();
    let drawn = poll_all(&queue, sale, &back).await;
    let drawn_order = queue.drawn_tickets(sale).await.unwrap().unwrap();
    empty_the_line(&room, sale).await;
    let queue = room.another_process();
    // Shoppers who never polled after the draw hold a pre-queue statement: the
    // recorded draw gives them their drawn place.
    let after = poll_all(&queue, sale, &back).await;

    // Assert
    let info = queue.draw_info(sale).await.unwrap();
    assert_eq!(info.commitment.as_deref(), Some(commitment.as_str()));
    let seed = info.seed.expect("revealed after the start");
    assert_eq!(
        hex::encode(Sha256::digest(hex::decode(&seed).unwrap())),
        commitment,
        "the revealed seed hashes to the commitment published before the wipe"
    );
    assert_eq!(info.ticket_count, 61);
    assert_eq!(queue.drawn_tickets(sale).await.unwrap(), Some(drawn_order));
    assert_eq!(order(&after), order(&drawn));
    for (shopper, ticket) in &after {
        assert_eq!(ticket.position, drawn[shopper].position);
    }
    assert!(newcomer.keys().all(|s| !after.contains_key(s)));
}

#[tokio::test]
async fn a_forged_foreign_or_left_statement_restores_no_place() {
    let room = Room::fresh().await;
    let sale = room.sale(10, -chrono::Duration::minutes(1)).await;
    let other_sale = room.sale(10, -chrono::Duration::minutes(1)).await;
    let joined = join_all(&room.queue, sale, 2).await;
    let mut shoppers = joined.iter();
    let (alice, alice_ticket) = shoppers.next().unwrap();
    let (bob, bob_ticket) = shoppers.next().unwrap();
    let stranger = ShopperId::new();
    let forger = waiting_room::PlaceStatements::new(b"another-secret-another-secret-xx", ISSUER);
    let forged = forger.sign(&waiting_room::place::Place {
        shopper: bob.0,
        sale: sale.0,
        ticket_id: bob_ticket.ticket_id.clone(),
        position: 1,
        joined_ms: 0,
        admitted_ms: None,
    });

    empty_the_line(&room, sale).await;
    let not_in_line =
        |r: waiting_room::Result<Ticket>| matches!(r, Err(waiting_room::Error::NotInQueue));

    // Another shopper's statement, a forged one, one of another sale.
    let queue = &room.queue;
    assert!(not_in_line(
        queue
            .ticket_with(stranger, sale, Some(&alice_ticket.place_token))
            .await
    ));
    assert!(not_in_line(
        queue.ticket_with(*bob, sale, Some(&forged)).await
    ));
    assert!(not_in_line(
        queue
            .ticket_with(*alice, other_sale, Some(&alice_ticket.place_token))
            .await
    ));
    let (rejoined, created) = queue
        .join_with(stranger, sale, Some(&alice_ticket.place_token))
        .await
        .unwrap();
    assert!(
        created,
        "a stranger joins at the back, not at Alice's place"
    );
    assert_ne!(rejoined.ticket_id, alice_ticket.ticket_id);
    // Alice's own statement still gives her place back.
    let alice_now = queue
        .ticket_with(*alice, sale, Some(&alice_ticket.place_token))
        .await
        .unwrap();
    assert_eq!(alice_now.position, alice_ticket.position);
    assert!(rejoined.position > alice_ticket.position.max(bob_ticket.position));
}

#[tokio::test]
async fn a_place_left_is_not_given_back_by_its_statement() {
    let room = Room::fresh().await;
    let sale = room.sale(10, -chrono::Duration::minutes(1)).await;
    let joined = join_all(&room.queue, sale, 2).await;
    let (shopper, ticket) = joined.iter().next().unwrap();
    room.queue.leave(*shopper, sale).await.unwrap();

    assert!(matches!(
        room.queue
            .ticket_with(*shopper, sale, Some(&ticket.place_token))
            .await,
        Err(waiting_room::Error::NotInQueue)
    ));
    let (again, created) = room
        .queue
        .join_with(*shopper, sale, Some(&ticket.place_token))
        .await
        .unwrap();
    assert!(created, "joining again after leaving is at the back");
    assert!(again.position > ticket.position);
}
