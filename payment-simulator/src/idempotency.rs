//! Idempotency keys, as Stripe keeps them: the first answer of a call is stored under
//! its key and replayed byte for byte to a retry with the same parameters; a retry with
//! other parameters, or while the first call still executes, is refused.
//!
//! A call *claims* its key before doing any work and either *completes* the claim with
//! its answer (once the endpoint executed) or *releases* it (refused before doing work:
//! an injected failure, `tok_error`, the caller gone), so a later retry executes.
//! Answers are kept [`RETENTION_SECS`]; older ones are dropped lazily.
//!
//! The simulator has one secret key, so the contract's key scope (secret key,
//! idempotency key) is the idempotency key alone.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// How long a stored answer is replayed (Stripe: 24 h).
pub(crate) const RETENTION_SECS: u64 = 24 * 60 * 60;
/// How often, at most, a claim sweeps out expired answers.
const SWEEP_EVERY_SECS: u64 = 60;

/// An answer stored under a key: what the call was, and what it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored {
    /// Method, path and sorted parameters of the call that stored it.
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
    /// Unix seconds.
    pub stored_at: u64,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The key is this call's now; the token completes or releases it.
    Fresh(u64),
    /// Answered before, with the same parameters: replay this.
    Replay(Stored),
    /// Another call with this key is still executing.
    InUse,
    /// Answered (or executing) with other parameters.
    Mismatch,
}

#[derive(Debug)]
enum Slot {
    InFlight { fingerprint: String, token: u64 },
    Done(Stored),
}

/// The keys: executing calls and stored answers.
#[derive(Debug, Default)]
pub(crate) struct Idempotency {
    slots: HashMap<String, Slot>,
    next_token: u64,
    last_sweep: u64,
}

impl Idempotency {
    /// Claims `key` for a call with `fingerprint` at unix second `now`.
    pub fn claim(&mut self, key: &str, fingerprint: &str, now: u64) -> Claim {
        if now >= self.last_sweep + SWEEP_EVERY_SECS {
            self.last_sweep = now;
            self.slots.retain(|_, slot| match slot {
                Slot::InFlight { .. } => true,
                Slot::Done(stored) => fresh(stored, now),
            });
        }
        match self.slots.get(key) {
            Some(Slot::Done(stored)) if fresh(stored, now) => {
                return if stored.fingerprint == fingerprint {
                    Claim::Replay(stored.clone())
                } else {
                    Claim::Mismatch
                };
            }
            Some(Slot::InFlight { fingerprint: f, .. }) => {
                return if f == fingerprint {
                    Claim::InUse
                } else {
                    Claim::Mismatch
                };
            }
            // Expired or unknown: the key is free.
            Some(Slot::Done(_)) | None => {}
        }
        self.next_token += 1;
        let token = self.next_token;
        self.slots.insert(
            key.to_owned(),
            Slot::InFlight {
                fingerprint: fingerprint.to_owned(),
                token,
            },
        );
        Claim::Fresh(token)
    }

    /// Gives the key back unanswered, if `token` still holds it.
    pub fn release(&mut self, key: &str, token: u64) {
        if matches!(self.slots.get(key), Some(Slot::InFlight { token: t, .. }) if *t == token) {
            self.slots.remove(key);
        }
    }

    /// Stores the answer of the call holding `key`.
    pub fn complete(&mut self, key: &str, stored: Stored) {
        self.slots.insert(key.to_owned(), Slot::Done(stored));
    }

    /// Puts a journaled answer back (replay at start), unless it has expired.
    pub fn restore(&mut self, key: String, stored: Stored, now: u64) {
        if fresh(&stored, now) {
            self.slots.insert(key, Slot::Done(stored));
        }
    }

    /// Every stored answer still replayed at `now` (to compact the journal).
    pub fn answers(&self, now: u64) -> impl Iterator<Item = (&String, &Stored)> {
        self.slots.iter().filter_map(move |(key, slot)| match slot {
            Slot::Done(stored) if fresh(stored, now) => Some((key, stored)),
            _ => None,
        })
    }
}

fn fresh(stored: &Stored, now: u64) -> bool {
    now < stored.stored_at + RETENTION_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(fingerprint: &str, at: u64) -> Stored {
        Stored {
            fingerprint: fingerprint.into(),
            status: 200,
            body: "{}".into(),
            stored_at: at,
        }
    }

    #[test]
    fn a_key_is_replayed_refused_or_in_use() {
        let mut keys = Idempotency::default();
        let Claim::Fresh(token) = keys.claim("k", "a", 100) else {
            panic!("fresh key")
        };
        assert_eq!(keys.claim("k", "a", 100), Claim::InUse);
        assert_eq!(keys.claim("k", "b", 100), Claim::Mismatch);
        keys.complete("k", stored("a", 100));
        let _ = token;
        assert_eq!(keys.claim("k", "a", 101), Claim::Replay(stored("a", 100)));
        assert_eq!(keys.claim("k", "b", 101), Claim::Mismatch);
    }

    #[test]
    fn a_released_key_executes_again() {
        let mut keys = Idempotency::default();
        let Claim::Fresh(token) = keys.claim("k", "a", 100) else {
            panic!("fresh key")
        };
        keys.release("k", token);
        assert!(matches!(keys.claim("k", "a", 100), Claim::Fresh(_)));
    }

    #[test]
    fn answers_older_than_a_day_are_forgotten() {
        let mut keys = Idempotency::default();
        keys.restore("old".into(), stored("a", 0), 10);
        assert!(matches!(
            keys.claim("old", "b", RETENTION_SECS),
            Claim::Fresh(_)
        ));
        keys.restore("gone".into(), stored("a", 0), RETENTION_SECS + 1);
        assert_eq!(keys.answers(RETENTION_SECS + 1).count(), 0);
    }
}
