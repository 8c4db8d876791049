//! The pre-queue draw, which anyone can verify.
//!
//! When the first shopper joins before the start, the sale commits to a random 32-byte
//! seed by publishing `commitment = SHA-256(seed)`. At the start the seed is revealed
//! and the pre-queued tickets are ordered by
//!
//! ```text
//! key(ticket) = SHA-256(seed || SHA-256(sorted ticket ids joined by "\n") || ticket id)
//! ```
//!
//! ascending (bytes compared as hex). Ticket ids are random UUIDs, so the published
//! list names no shopper. Anyone with the seed and the ticket ids recomputes the order
//! (see the README, "Checking the draw").
//!
//! A sale that names a drand quicknet round (`draw_beacon`, see `beacon`) mixes the
//! round's 32 randomness bytes in right after the seed:
//!
//! ```text
//! key(ticket) = SHA-256(seed || beacon_randomness || SHA-256(sorted ids joined by "\n") || ticket id)
//! ```
//!
//! The seed was committed before the line opened and the round is signed after the
//! start, so neither the operator nor anyone else could know the keys in advance.
//!
//! What the commitment proves: the seed was fixed before the line opened, so the
//! operator could not pick it after seeing who joined. What it cannot prove alone: an
//! operator who knows the seed could add tickets whose ids sort first ("grinding").
//! Mixing the digest of the whole ticket list into every key makes that expensive and
//! visible: adding or changing any ticket reorders everyone, so a planted ticket cannot
//! be aimed at a place without recomputing the whole draw, and every planted ticket is
//! counted in the published `ticket_count` and listed with the others.
//!
//! Priority-code holders (see `codes`) are drawn ahead of the public pre-queue: the
//! order above is computed over every ticket, then the priority tickets are moved to
//! the front keeping their order ([`priority_first`]).
//!
//! Within each, tickets are taken in rounds by address ([`by_address_rounds`]): every
//! address's first ticket, then every address's second, and so on, each round in key
//! order, so a farm of few addresses gains one early place per address however many
//! sessions it holds. Which of an address's tickets is its first is decided by a second
//! hash, `turn(ticket) = SHA-256(key)`, not by the key: were it the lowest key, an
//! address with twenty tickets would enter round 0 with the lowest of twenty keys —
//! near the front of the round — where one shopper's one ticket lands anywhere. Each
//! ticket's address group is an HMAC tag ([`address_group`]), published beside the
//! ticket in `/draw/tickets` (`groups`), so the rounds are recomputable too.
//!
//! This module also runs the draw on a sale's line ([`Queue::draw`]) and publishes it.
//! The seed and its commitment are recorded in Postgres before the commitment is
//! public, and the drawn order before any position is numbered (`marks`), so a line
//! Redis lost keeps both.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::beacon::{Beacon, BeaconInfo, BeaconPlan};
use crate::queue::Queue;
use crate::Result;
use reservations::ids::SaleId;

/// The algorithm's name as published on the draw endpoint.
pub const ALGORITHM: &str =
    "sha256(seed || sha256(sorted ticket ids joined by \\n) || ticket_id), ascending";

/// The algorithm's name when the draw mixed in a beacon round.
pub const ALGORITHM_WITH_BEACON: &str = "sha256(seed || beacon_randomness || sha256(sorted ticket ids joined by \\n) || ticket_id), ascending";

/// A fresh seed (hex) and its commitment (hex of SHA-256 over the seed's bytes).
pub fn new_seed() -> (String, String) {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    (hex::encode(seed), hex::encode(Sha256::digest(seed)))
}

/// Whether `seed_hex` hashes to `commitment_hex`.
pub fn verify_commitment(seed_hex: &str, commitment_hex: &str) -> bool {
    hex::decode(seed_hex).is_ok_and(|seed| hex::encode(Sha256::digest(seed)) == commitment_hex)
}

/// The drawn order of `tickets` (ids as strings) under `seed_hex` alone.
pub fn draw_order(seed_hex: &str, tickets: &[String]) -> Vec<String> {
    draw_order_with(seed_hex, None, tickets)
}

/// The drawn order of `tickets` under `seed_hex` and, when the sale has one, the
/// beacon round's randomness (32 raw bytes, hashed right after the seed's).
pub fn draw_order_with(
    seed_hex: &str,
    beacon_randomness: Option<&[u8; 32]>,
    tickets: &[String],
) -> Vec<String> {
    draw_keys_with(seed_hex, beacon_randomness, tickets)
        .into_iter()
        .map(|(_, ticket)| ticket)
        .collect()
}

/// [`draw_order_with`] with each ticket's key: `(hex key, ticket)` in key order.
pub fn draw_keys_with(
    seed_hex: &str,
    beacon_randomness: Option<&[u8; 32]>,
    tickets: &[String],
) -> Vec<(String, String)> {
    let seed = hex::decode(seed_hex).unwrap_or_default();
    let mut sorted: Vec<&str> = tickets.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let list_digest = Sha256::digest(sorted.join("\n").as_bytes());
    let mut keyed: Vec<(String, String)> = tickets
        .iter()
        .map(|ticket| {
            let mut h = Sha256::new();
            h.update(&seed);
            if let Some(randomness) = beacon_randomness {
                h.update(randomness);
            }
            h.update(list_digest);
            h.update(ticket.as_bytes());
            (hex::encode(h.finalize()), ticket.clone())
        })
        .collect();
    keyed.sort();
    keyed
}

/// The published draw of a sale.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DrawInfo {
    /// SHA-256 of the seed (hex), public from the first pre-queued join.
    pub commitment: Option<String>,
    /// The seed (hex), revealed at the start.
    pub seed: Option<String>,
    /// Tickets that took part in the draw.
    pub ticket_count: i64,
    /// How the order follows from the seed.
    pub algorithm: &'static str,
    /// The beacon round the draw mixed in: null until known (and when the sale names
    /// none, or the round was missed).
    pub beacon: Option<BeaconInfo>,
    /// The round the sale named, when it is due, when the draw stops waiting for it,
    /// and what became of it; null when the sale names none.
    pub draw_beacon: Option<BeaconPlan>,
}

/// Ticket ids one call of the draw script numbers: a few milliseconds of Redis time,
/// so a 200,000-ticket draw is some two hundred short calls and never one over Redis'
/// script time limit (other clients are served between them).
pub const DRAW_CHUNK: usize = 1_000;

/// `order` (the drawn order of every pre-queued ticket, [`draw_order`]) with the
/// tickets of `priority` moved to the front, each group keeping its drawn order.
/// Priority-code holders are drawn ahead of the public pre-queue (API.md v1.1); the
/// key of every ticket is the same as without codes, so the published list is checked
/// by recomputing the order and moving the priority tickets (the first
/// `priority_count` of the published list) ahead.
pub fn priority_first(order: Vec<String>, priority: &HashSet<String>) -> Vec<String> {
    let (mut first, rest): (Vec<String>, Vec<String>) =
        order.into_iter().partition(|t| priority.contains(t));
    first.extend(rest);
    first
}

/// Pre-queue scores: `class * GROUP_SPAN + group`, class 0 for a priority code's holder
/// and 1 for the public, `group` the ticket's address group (0: not known). 2^40 keeps
/// both exact in Redis' double scores.
pub const GROUP_SPAN: f64 = 1_099_511_627_776.0;

/// The address group of a join from `ip` to `sale`: 40 bits of an HMAC (with the app's
/// secret) of the address — the /32 of IPv4, the /64 of IPv6 — and the sale, so the
/// published groups tell which tickets came from one address and nothing else (1..2^40;
/// 0 is "not known").
pub fn address_group(key: &[u8], sale: SaleId, ip: std::net::IpAddr) -> u64 {
    use hmac::{Hmac, Mac};
    let prefix = match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("line-group:{sale}:{prefix}").as_bytes());
    let tag = mac.finalize().into_bytes();
    let value = tag[..5].iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
    value.max(1)
}

/// Published name of a group (10 hex digits; empty for "not known").
pub fn group_name(group: u64) -> String {
    if group == 0 {
        String::new()
    } else {
        format!("{group:010x}")
    }
}

/// The drawn tickets with every address's first ticket ahead of every address's
/// second, and so on ("rounds"), each round in key order; tickets of no known address
/// (an empty group) are each a round 0 of their own. `keyed` is the draw: `(hex key,
/// ticket)` in key order ([`draw_keys_with`]). An address's tickets take their rounds
/// in the order of their turn, `SHA-256(key)` (module docs), so its round-0 ticket has
/// a key as random as anyone's one ticket. A farm of a few addresses holding many
/// sessions gets one early place per address, as a crowd of one session per address
/// does — its other tickets follow everyone's first. Behind carrier-grade NAT many
/// honest shoppers share an address and are spread over rounds too: the price of
/// bounding what one address gains from many sessions.
pub fn by_address_rounds(
    keyed: Vec<(String, String)>,
    group_of: &HashMap<String, String>,
) -> Vec<String> {
    let group = |ticket: &str| {
        group_of
            .get(ticket)
            .map(String::as_str)
            .filter(|g| !g.is_empty())
    };
    let mut by_turn: Vec<(String, usize)> = keyed
        .iter()
        .enumerate()
        .filter(|(_, (_, ticket))| group(ticket).is_some())
        .map(|(index, (key, _))| (turn(key), index))
        .collect();
    by_turn.sort_unstable();
    let mut round = vec![0usize; keyed.len()];
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (_, index) in by_turn {
        let count = seen
            .entry(group(&keyed[index].1).unwrap_or_default())
            .or_insert(0);
        round[index] = *count;
        *count += 1;
    }
    let mut ranked: Vec<(usize, usize)> =
        round.into_iter().enumerate().map(|(i, r)| (r, i)).collect();
    ranked.sort_unstable();
    ranked
        .into_iter()
        .map(|(_, index)| keyed[index].1.clone())
        .collect()
}

/// A ticket's turn among its address's tickets: the hex SHA-256 of its key's bytes.
fn turn(key_hex: &str) -> String {
    hex::encode(Sha256::digest(hex::decode(key_hex).unwrap_or_default()))
}

/// What one pass of the draw ended with.
enum Drawn {
    /// The draw is complete (now or before).
    Done,
    /// The ceiling must be raised to this position first.
    NeedsCeiling(i64),
}

impl Queue {
    /// Runs the pre-queue draw once: orders the pre-queued tickets from the committed
    /// seed and numbers them 1..n. Safe to call from many processes.
    ///
    /// The order is recorded in Postgres before any position is numbered, and a draw
    /// run again after Redis lost the line numbers by the recorded order. A drawn line
    /// costs one HGET here; in this process one draw runs at a time, so the joins of
    /// the start second wait for it instead of each reading the whole pre-queue.
    /// Returns false while the draw waits for its beacon round (see `beacon`).
    pub async fn draw(&self, sale: SaleId) -> Result<bool> {
        let [meta, ..] = self.keys(sale).0;
        // The order, once read: kept across a raise of the ceiling (it is the recorded
        // one, which never changes), so the pre-queue is read and sorted once.
        let mut order: Option<Vec<String>> = None;
        loop {
            let (drawn, seeded): (Option<i64>, bool) = redis::pipe()
                .hget(&meta, "drawn")
                .hexists(&meta, "seed")
                .query_async(&mut self.connection())
                .await?;
            if drawn == Some(1) {
                return Ok(true);
            }
            // While it waits for its beacon round, a draw reads nothing else: it is
            // asked every tick, and the pre-queue may be long. (Without a seed nobody
            // pre-queued, or Redis lost it and the recorded order is used.)
            let beacon = match self.draw_beacon(sale).await? {
                Some(beacon) => beacon,
                None if seeded => return Ok(false),
                None => None,
            };
            // The lock is not held while healing: a heal may run the draw again.
            let needed = {
                let _one = self.drawing.lock().await;
                let order = match &mut order {
                    Some(order) => order,
                    None => {
                        let randomness = beacon.as_ref().map(|b| &b.randomness);
                        match self.recorded_order(sale, randomness).await? {
                            Some(recorded) => order.insert(recorded),
                            None => return Ok(true),
                        }
                    }
                };
                match self.number(sale, order).await? {
                    Drawn::Done => return Ok(true),
                    Drawn::NeedsCeiling(needed) => needed,
                }
            };
            self.heal(sale, false, Some(needed)).await?;
        }
    }

    /// The drawn order: computed from the pre-queue and recorded (first writer wins),
    /// or the recorded one when the seed is gone from Redis. `None`: drawn already.
    /// `randomness`: the beacon round's, mixed into every key when the sale has one.
    async fn recorded_order(
        &self,
        sale: SaleId,
        randomness: Option<&[u8; 32]>,
    ) -> Result<Option<Vec<String>>> {
        let [meta, _, pre, _, _] = self.keys(sale).0;
        type Read = (Option<i64>, Option<String>, Vec<(String, f64)>);
        let (drawn, seed, tickets): Read = redis::pipe()
            .atomic()
            .hget(&meta, "drawn")
            .hget(&meta, "seed")
            .zrange_withscores(&pre, 0, -1)
            .query_async(&mut self.connection())
            .await?;
        if drawn == Some(1) {
            return Ok(None);
        }
        let order = match seed {
            Some(seed) => {
                let priority: HashSet<String> = tickets
                    .iter()
                    .filter(|(_, score)| *score < GROUP_SPAN)
                    .map(|(t, _)| t.clone())
                    .collect();
                let group_of: HashMap<String, String> = tickets
                    .iter()
                    .map(|(t, score)| (t.clone(), group_name((score % GROUP_SPAN) as u64)))
                    .collect();
                let ids: Vec<String> = tickets.into_iter().map(|(t, _)| t).collect();
                let drawn = draw_keys_with(&seed, randomness, &ids);
                let order = priority_first(by_address_rounds(drawn, &group_of), &priority);
                let groups: Vec<String> = order.iter().map(|t| group_of[t].clone()).collect();
                self.marks.record_draw(sale, &order, &groups).await?
            }
            None => self
                .marks
                .get(sale)
                .await?
                .drawn_tickets
                .unwrap_or_default(),
        };
        Ok(Some(order))
    }

    /// Numbers `order` in chunks of [`DRAW_CHUNK`], from the line's cursor.
    async fn number(&self, sale: SaleId, order: &[String]) -> Result<Drawn> {
        let [meta, ..] = self.keys(sale).0;
        let cursor: Option<i64> = redis::cmd("HGET")
            .arg(&meta)
            .arg("draw_next")
            .query_async(&mut self.connection())
            .await?;
        // Resume where a pass that stopped (a crash, a ceiling to raise) left off.
        let mut offset = (cursor.unwrap_or(0).max(0) as usize).min(order.len());
        loop {
            let end = (offset + DRAW_CHUNK).min(order.len());
            let mut call = self.invoke(sale, &self.scripts.draw);
            call.arg(order.len())
                .arg(offset)
                .arg(i64::from(end == order.len()));
            for ticket in &order[offset..end] {
                call.arg(ticket);
            }
            let reply: Vec<i64> = call.invoke_async(&mut self.connection()).await?;
            match (reply.first().copied().unwrap_or(0), reply.get(1).copied()) {
                (-2, needed) => return Ok(Drawn::NeedsCeiling(needed.unwrap_or(0))),
                (-1 | -3, Some(next)) => offset = (next.max(0) as usize).min(order.len()),
                (drawn, _) => {
                    if drawn > 0 {
                        tracing::info!(sale_id = %sale, tickets = drawn, "pre-queue drawn");
                    }
                    return Ok(Drawn::Done);
                }
            }
        }
    }

    /// The beacon the draw uses: `Some(None)` without one (none named, or missed),
    /// `None` while it waits for the named round.
    async fn draw_beacon(&self, sale: SaleId) -> Result<Option<Option<Beacon>>> {
        match self.sale(sale).await?.draw_beacon.clone() {
            None => Ok(Some(None)),
            Some(named) => {
                let now = self.sales().now();
                self.beacons.for_draw(sale, &named, now).await
            }
        }
    }

    /// The draw as published.
    pub async fn draw_info(&self, sale: SaleId) -> Result<DrawInfo> {
        let mut info = self.draw_info_seed(sale).await?;
        if let Some(named) = self.sale(sale).await?.draw_beacon.clone() {
            let (plan, beacon) = self.beacons.plan(sale, &named).await?;
            if beacon.is_some() {
                info.algorithm = ALGORITHM_WITH_BEACON;
            }
            info.beacon = beacon;
            info.draw_beacon = Some(plan);
        }
        Ok(info)
    }

    async fn draw_info_seed(&self, sale: SaleId) -> Result<DrawInfo> {
        self.sale(sale).await?;
        let [meta, _, pre, _, _] = self.keys(sale).0;
        let (commitment, seed, drawn, drawn_count, pre_count): (
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            i64,
        ) = redis::pipe()
            .atomic()
            .hget(&meta, "commitment")
            .hget(&meta, "seed")
            .hget(&meta, "drawn")
            .hget(&meta, "drawn_count")
            .zcard(&pre)
            .query_async(&mut self.connection())
            .await?;
        if commitment.is_none() {
            // Nobody pre-queued, or Redis lost the line: Postgres has what was published.
            let marks = self.marks.get(sale).await?;
            let drawn = marks.drawn_tickets.as_ref().map(|t| t.len() as i64);
            return Ok(DrawInfo {
                commitment: marks.commitment,
                seed: drawn.and(marks.seed),
                ticket_count: drawn.unwrap_or(pre_count),
                algorithm: ALGORITHM,
                beacon: None,
                draw_beacon: None,
            });
        }
        // After the draw, the tickets it took (the pre-queue list may be a rebuilt one).
        let drawn = drawn == Some(1);
        Ok(DrawInfo {
            commitment,
            seed: if drawn { seed } else { None },
            ticket_count: drawn.then_some(drawn_count).flatten().unwrap_or(pre_count),
            algorithm: ALGORITHM,
            beacon: None,
            draw_beacon: None,
        })
    }

    /// The pre-queued ticket ids in drawn order (after the start), so anyone can check
    /// it: the order recorded in Postgres at the draw, whatever Redis lost since.
    pub async fn drawn_tickets(&self, sale: SaleId) -> Result<Option<Vec<String>>> {
        self.sale(sale).await?;
        Ok(self.marks.get(sale).await?.drawn_tickets)
    }

    /// `GET /draw/tickets` as a JSON body, `{"tickets": [...]}`: rendered once after
    /// the draw and served from this process's cache (the recorded order never
    /// changes, first writer wins), so twenty clients fetching a 200,000-ticket list
    /// cost no Postgres read and no serialisation each. Before the draw: an empty list,
    /// not cached.
    pub async fn drawn_tickets_body(&self, sale: SaleId) -> Result<Arc<str>> {
        if let Some(body) = self.drawn_bodies.lock().expect("draw cache").get(&sale) {
            return Ok(body.clone());
        }
        // One fill at a time: a burst of misses right after the draw reads it once.
        let _fill = self.drawing.lock().await;
        if let Some(body) = self.drawn_bodies.lock().expect("draw cache").get(&sale) {
            return Ok(body.clone());
        }
        let Some(tickets) = self.drawn_tickets(sale).await? else {
            return Ok(Arc::from(r#"{"tickets":[]}"#));
        };
        // Draws recorded before groups existed publish an empty group for each ticket.
        let groups = self
            .marks
            .drawn_groups(sale)
            .await?
            .filter(|g| g.len() == tickets.len())
            .unwrap_or_else(|| vec![String::new(); tickets.len()]);
        let body: Arc<str> = serde_json::json!({ "tickets": tickets, "groups": groups })
            .to_string()
            .into();
        self.drawn_bodies
            .lock()
            .expect("draw cache")
            .insert(sale, body.clone());
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revealed_seed_matches_its_commitment_and_fixes_the_order() {
        let (seed, commitment) = new_seed();
        assert!(verify_commitment(&seed, &commitment));
        assert!(!verify_commitment(&new_seed().0, &commitment));
        let tickets: Vec<String> = (0..50).map(|i| format!("ticket-{i:02}")).collect();
        let order = draw_order(&seed, &tickets);
        assert_eq!(order, draw_order(&seed, &tickets), "deterministic");
        assert_ne!(order, tickets, "shuffled");
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, tickets, "nobody lost or duplicated");
    }

    #[test]
    fn the_beacon_randomness_reorders_the_draw_and_follows_the_published_formula() {
        let (seed, _) = new_seed();
        let tickets: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
        let randomness = [7u8; 32];
        let with = draw_order_with(&seed, Some(&randomness), &tickets);
        assert_ne!(with, draw_order(&seed, &tickets));
        // The formula as the README writes it, byte for byte.
        let mut sorted = tickets.clone();
        sorted.sort();
        let digest = Sha256::digest(sorted.join("\n").as_bytes());
        let key = |t: &String| {
            let mut bytes = hex::decode(&seed).unwrap();
            bytes.extend_from_slice(&randomness);
            bytes.extend_from_slice(&digest);
            bytes.extend_from_slice(t.as_bytes());
            hex::encode(Sha256::digest(&bytes))
        };
        let mut expected = tickets.clone();
        expected.sort_by_key(key);
        assert_eq!(with, expected);
    }

    /// Groups for `tickets`: the first `farm` share the group "farm", the others have a
    /// group each, and the last has none.
    fn groups(tickets: &[String], farm: usize) -> HashMap<String, String> {
        tickets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let group = match i {
                    i if i < farm => "farm".to_owned(),
                    i if i + 1 == tickets.len() => String::new(),
                    i => format!("a{i}"),
                };
                (t.clone(), group)
            })
            .collect()
    }

    #[test]
    fn every_address_s_first_ticket_comes_before_any_address_s_second() {
        let (seed, _) = new_seed();
        let tickets: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
        let group_of = groups(&tickets, 4);
        let keyed = draw_keys_with(&seed, None, &tickets);
        let key_of: HashMap<String, String> =
            keyed.iter().map(|(k, t)| (t.clone(), k.clone())).collect();
        let order = by_address_rounds(keyed, &group_of);
        // Round 0: the farm's ticket of the lowest turn and every other ticket, in key
        // order; then the farm's other three, one round each, in turn order.
        let mut farm: Vec<&String> = tickets[..4].iter().collect();
        farm.sort_by_key(|t| turn(&key_of[*t]));
        let mut first_round: Vec<&String> = std::iter::once(farm[0]).chain(&tickets[4..]).collect();
        first_round.sort_by_key(|t| key_of[*t].clone());
        let expected: Vec<&String> = first_round
            .into_iter()
            .chain(farm[1..].iter().copied())
            .collect();
        assert_eq!(order.iter().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn an_address_with_twenty_tickets_enters_round_0_at_a_random_place_not_near_the_front() {
        // A farm address with 20 tickets among 200 addresses of one ticket each. Were
        // its round-0 ticket its lowest key, it would sit at about 1/21 of round 0; its
        // turn is independent of its key, so its place is uniform: 0.5 on average.
        let tickets: Vec<String> = (0..220).map(|i| format!("ticket-{i:03}")).collect();
        let group_of = groups(&tickets, 20);
        let draws = 300;
        let mut places = 0.0;
        for _ in 0..draws {
            let (seed, _) = new_seed();
            let order = by_address_rounds(draw_keys_with(&seed, None, &tickets), &group_of);
            let first_farm = order.iter().position(|t| group_of[t] == "farm").unwrap();
            places += first_farm as f64 / 201.0;
        }
        let mean = places / draws as f64;
        assert!(
            (0.4..0.6).contains(&mean),
            "the farm's round-0 place averaged {mean:.3} of the round (0.5 is fair)"
        );
    }

    #[test]
    fn address_groups_are_per_sale_per_address_and_per_64() {
        let key = [7u8; 32];
        let sale = SaleId::new();
        let a = address_group(&key, sale, "198.18.0.7".parse().unwrap());
        assert_eq!(a, address_group(&key, sale, "198.18.0.7".parse().unwrap()));
        assert_ne!(a, address_group(&key, sale, "198.18.0.8".parse().unwrap()));
        assert_ne!(
            a,
            address_group(&key, SaleId::new(), "198.18.0.7".parse().unwrap())
        );
        assert!(a > 0 && (a as f64) < GROUP_SPAN);
        let v6 = |s: &str| address_group(&key, sale, s.parse().unwrap());
        assert_eq!(v6("2001:db8:1:2::1"), v6("2001:db8:1:2:ffff::9"), "one /64");
    }

    #[test]
    fn priority_tickets_move_ahead_and_each_group_keeps_its_drawn_order() {
        let (seed, _) = new_seed();
        let tickets: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
        let order = draw_order(&seed, &tickets);
        let priority: HashSet<String> = tickets.iter().step_by(5).cloned().collect();

        let drawn = priority_first(order.clone(), &priority);

        assert!(drawn[..8].iter().all(|t| priority.contains(t)));
        let keep = |want: bool| -> Vec<String> {
            order
                .iter()
                .filter(|t| priority.contains(*t) == want)
                .cloned()
                .collect()
        };
        assert_eq!(drawn[..8], keep(true)[..]);
        assert_eq!(drawn[8..], keep(false)[..]);
    }

    #[test]
    fn adding_one_ticket_reorders_everyone_else() {
        let (seed, _) = new_seed();
        let tickets: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
        let before = draw_order(&seed, &tickets);
        let mut planted = tickets.clone();
        planted.push("planted".into());
        let after: Vec<String> = draw_order(&seed, &planted)
            .into_iter()
            .filter(|t| t != "planted")
            .collect();
        assert_ne!(before, after);
    }
}
