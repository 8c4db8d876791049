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
//! What the commitment proves: the seed was fixed before the line opened, so the
//! operator could not pick it after seeing who joined. What it cannot prove alone: an
//! operator who knows the seed could add tickets whose ids sort first ("grinding").
//! Mixing the digest of the whole ticket list into every key makes that expensive and
//! visible: adding or changing any ticket reorders everyone, so a planted ticket cannot
//! be aimed at a place without recomputing the whole draw, and every planted ticket is
//! counted in the published `ticket_count` and listed with the others.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The algorithm's name as published on the draw endpoint.
pub const ALGORITHM: &str =
    "sha256(seed || sha256(sorted ticket ids joined by \\n) || ticket_id), ascending";

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

/// The drawn order of `tickets` (ids as strings) under `seed_hex`.
pub fn draw_order(seed_hex: &str, tickets: &[String]) -> Vec<String> {
    let seed = hex::decode(seed_hex).unwrap_or_default();
    let mut sorted: Vec<&str> = tickets.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let list_digest = Sha256::digest(sorted.join("\n").as_bytes());
    let mut keyed: Vec<(String, &String)> = tickets
        .iter()
        .map(|ticket| {
            let mut h = Sha256::new();
            h.update(&seed);
            h.update(list_digest);
            h.update(ticket.as_bytes());
            (hex::encode(h.finalize()), ticket)
        })
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, t)| t.clone()).collect()
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
