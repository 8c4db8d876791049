//! The provider's ledger: payment intents, their charge and refunds, and the state
//! machine of the contract (`requires_capture` → `succeeded` | `canceled`,
//! `requires_payment_method` → `canceled`, refunds only of `succeeded`).
//!
//! Plain data behind the simulator's one mutex: every method is synchronous and
//! returns the changed intent, so the caller can journal it and render its answer in
//! the same critical section.

use std::collections::{BTreeMap, HashMap};

use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Where a payment intent stands (Stripe's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    /// Declined: no authorization exists.
    RequiresPaymentMethod,
    /// Authorized: the amount is held, waiting for capture or cancel.
    RequiresCapture,
    /// Captured.
    Succeeded,
    /// Voided (or a declined intent closed).
    Canceled,
}

impl IntentStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            IntentStatus::RequiresPaymentMethod => "requires_payment_method",
            IntentStatus::RequiresCapture => "requires_capture",
            IntentStatus::Succeeded => "succeeded",
            IntentStatus::Canceled => "canceled",
        }
    }
}

/// A payment intent as the ledger keeps (and journals) it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Intent {
    pub id: String,
    /// Creation order, for "newest first" among intents created in one second.
    pub seq: u64,
    pub amount: u64,
    pub currency: String,
    pub status: IntentStatus,
    pub payment_method: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created: u64,
    pub canceled_at: Option<u64>,
    pub cancellation_reason: Option<String>,
    /// The authorization's charge; none when declined.
    pub charge: Option<Charge>,
}

/// The charge of an authorized intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Charge {
    pub id: String,
    pub captured: bool,
    pub amount_refunded: u64,
    pub refunds: Vec<Refund>,
}

/// One refund of a captured intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Refund {
    pub id: String,
    pub amount: u64,
    pub created: u64,
    pub reason: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

impl Intent {
    /// What is held and may still be captured.
    pub fn amount_capturable(&self) -> u64 {
        match self.status {
            IntentStatus::RequiresCapture => self.amount,
            _ => 0,
        }
    }

    /// What was captured.
    pub fn amount_received(&self) -> u64 {
        match self.charge {
            Some(Charge { captured: true, .. }) => self.amount,
            _ => 0,
        }
    }

    /// What was refunded so far.
    pub fn amount_refunded(&self) -> u64 {
        self.charge.as_ref().map_or(0, |c| c.amount_refunded)
    }
}

/// The parameters of a create call the ledger needs (already validated).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewIntent {
    pub amount: u64,
    pub currency: String,
    pub payment_method: String,
    pub metadata: BTreeMap<String, String>,
}

/// The parameters of a refund call (already validated).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewRefund {
    pub payment_intent: String,
    /// `None`: whatever is left.
    pub amount: Option<u64>,
    pub reason: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// Why a transition was refused. Each is the provider's answer to the call, so it is
/// stored under the call's idempotency key like a success.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LedgerError {
    /// No intent with that id.
    NotFound(String),
    /// The intent is not in a state this call accepts; carries it for the answer.
    UnexpectedState(Box<Intent>),
    /// A refund of more than is left.
    AmountTooLarge { left: u64 },
    /// A refund of an intent with nothing left to refund.
    AlreadyRefunded,
}

/// Filters of a list call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CreatedRange {
    pub gte: Option<u64>,
    pub gt: Option<u64>,
    pub lte: Option<u64>,
    pub lt: Option<u64>,
}

impl CreatedRange {
    fn contains(&self, created: u64) -> bool {
        self.gte.is_none_or(|v| created >= v)
            && self.gt.is_none_or(|v| created > v)
            && self.lte.is_none_or(|v| created <= v)
            && self.lt.is_none_or(|v| created < v)
    }
}

/// All intents, by id and by creation order.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    intents: HashMap<String, Intent>,
    by_seq: BTreeMap<u64, String>,
    next_seq: u64,
}

/// A Stripe-style id: the prefix and 24 random alphanumerics.
pub(crate) fn new_id(prefix: &str) -> String {
    let suffix: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    format!("{prefix}{suffix}")
}

impl Ledger {
    /// Puts an intent back as journaled (replay at start): the last record of an id wins.
    pub fn restore(&mut self, intent: Intent) {
        self.next_seq = self.next_seq.max(intent.seq + 1);
        self.by_seq.insert(intent.seq, intent.id.clone());
        self.intents.insert(intent.id.clone(), intent);
    }

    /// An intent by id.
    pub fn get(&self, id: &str) -> Option<&Intent> {
        self.intents.get(id)
    }

    /// Every intent, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &Intent> {
        self.by_seq.values().filter_map(|id| self.intents.get(id))
    }

    /// Creates and confirms an intent: authorized when `approved`, else declined
    /// (`requires_payment_method`, no charge). Either way it exists afterwards.
    pub fn create(&mut self, new: NewIntent, approved: bool, now: u64) -> Intent {
        let seq = self.next_seq;
        self.next_seq += 1;
        let intent = Intent {
            id: new_id("pi_"),
            seq,
            amount: new.amount,
            currency: new.currency,
            status: if approved {
                IntentStatus::RequiresCapture
            } else {
                IntentStatus::RequiresPaymentMethod
            },
            // A declined confirmation detaches the payment method, as Stripe's does.
            payment_method: approved.then_some(new.payment_method),
            metadata: new.metadata,
            created: now,
            canceled_at: None,
            cancellation_reason: None,
            charge: approved.then(|| Charge {
                id: new_id("ch_"),
                captured: false,
                amount_refunded: 0,
                refunds: Vec::new(),
            }),
        };
        self.restore(intent.clone());
        intent
    }

    fn get_mut(&mut self, id: &str) -> Result<&mut Intent, LedgerError> {
        self.intents
            .get_mut(id)
            .ok_or_else(|| LedgerError::NotFound(id.to_owned()))
    }

    /// `requires_capture` → `succeeded`; the charge is captured for the full amount.
    pub fn capture(&mut self, id: &str) -> Result<Intent, LedgerError> {
        let intent = self.get_mut(id)?;
        if intent.status != IntentStatus::RequiresCapture {
            return Err(LedgerError::UnexpectedState(Box::new(intent.clone())));
        }
        intent.status = IntentStatus::Succeeded;
        if let Some(charge) = intent.charge.as_mut() {
            charge.captured = true;
        }
        Ok(intent.clone())
    }

    /// `requires_capture` or `requires_payment_method` → `canceled`.
    pub fn cancel(
        &mut self,
        id: &str,
        reason: Option<String>,
        now: u64,
    ) -> Result<Intent, LedgerError> {
        let intent = self.get_mut(id)?;
        if !matches!(
            intent.status,
            IntentStatus::RequiresCapture | IntentStatus::RequiresPaymentMethod
        ) {
            return Err(LedgerError::UnexpectedState(Box::new(intent.clone())));
        }
        intent.status = IntentStatus::Canceled;
        intent.canceled_at = Some(now);
        intent.cancellation_reason = reason;
        Ok(intent.clone())
    }

    /// Refunds part or all of what is left of a `succeeded` intent.
    pub fn refund(&mut self, new: NewRefund, now: u64) -> Result<(Refund, Intent), LedgerError> {
        let intent = self.get_mut(&new.payment_intent)?;
        let unexpected = |intent: &Intent| LedgerError::UnexpectedState(Box::new(intent.clone()));
        if intent.status != IntentStatus::Succeeded {
            return Err(unexpected(intent));
        }
        let amount = intent.amount;
        let Some(charge) = intent.charge.as_mut() else {
            return Err(unexpected(intent));
        };
        let left = amount - charge.amount_refunded;
        let wanted = match new.amount {
            None if left == 0 => return Err(LedgerError::AlreadyRefunded),
            None => left,
            Some(wanted) if wanted > left => return Err(LedgerError::AmountTooLarge { left }),
            Some(wanted) => wanted,
        };
        let refund = Refund {
            id: new_id("re_"),
            amount: wanted,
            created: now,
            reason: new.reason,
            metadata: new.metadata,
        };
        charge.amount_refunded += wanted;
        charge.refunds.push(refund.clone());
        Ok((refund, intent.clone()))
    }

    /// Intents in `created`, newest first, after `starting_after` (an intent id),
    /// at most `limit`; and whether more follow.
    pub fn list(
        &self,
        created: CreatedRange,
        starting_after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<&Intent>, bool), LedgerError> {
        let below = match starting_after {
            Some(id) => {
                self.get(id)
                    .ok_or_else(|| LedgerError::NotFound(id.to_owned()))?
                    .seq
            }
            None => u64::MAX,
        };
        let mut matching = self
            .by_seq
            .range(..below)
            .rev()
            .filter_map(|(_, id)| self.intents.get(id))
            .filter(|intent| created.contains(intent.created));
        let page: Vec<&Intent> = matching.by_ref().take(limit).collect();
        let has_more = matching.next().is_some();
        Ok((page, has_more))
    }

    /// Intents whose metadata `key` is `value`, newest first.
    pub fn search_metadata(&self, key: &str, value: &str) -> Vec<&Intent> {
        self.by_seq
            .values()
            .rev()
            .filter_map(|id| self.intents.get(id))
            .filter(|intent| intent.metadata.get(key).map(String::as_str) == Some(value))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_intent(amount: u64) -> NewIntent {
        NewIntent {
            amount,
            currency: "eur".into(),
            payment_method: "tok_ok".into(),
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn ids_carry_their_prefix_and_24_alphanumerics() {
        let id = new_id("pi_");
        assert_eq!(id.len(), 27);
        assert!(id[3..].chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn a_captured_intent_refuses_cancel_and_a_second_capture() {
        let mut ledger = Ledger::default();
        let id = ledger.create(new_intent(100), true, 1).id;
        assert_eq!(ledger.capture(&id).unwrap().amount_received(), 100);
        assert!(matches!(
            ledger.capture(&id),
            Err(LedgerError::UnexpectedState(_))
        ));
        assert!(matches!(
            ledger.cancel(&id, None, 2),
            Err(LedgerError::UnexpectedState(_))
        ));
    }

    #[test]
    fn refunds_never_exceed_the_captured_amount() {
        let mut ledger = Ledger::default();
        let id = ledger.create(new_intent(100), true, 1).id;
        let refund = |amount| NewRefund {
            payment_intent: id.clone(),
            amount,
            reason: None,
            metadata: BTreeMap::new(),
        };
        assert!(matches!(
            ledger.refund(refund(None), 2),
            Err(LedgerError::UnexpectedState(_))
        ));
        ledger.capture(&id).unwrap();
        assert_eq!(ledger.refund(refund(Some(30)), 2).unwrap().0.amount, 30);
        assert_eq!(
            ledger.refund(refund(Some(71)), 2),
            Err(LedgerError::AmountTooLarge { left: 70 })
        );
        assert_eq!(ledger.refund(refund(None), 2).unwrap().0.amount, 70);
        assert_eq!(
            ledger.refund(refund(None), 2),
            Err(LedgerError::AlreadyRefunded)
        );
    }

    #[test]
    fn lists_run_newest_first_across_pages() {
        let mut ledger = Ledger::default();
        let ids: Vec<String> = (0..5)
            .map(|i| ledger.create(new_intent(1), true, 10 + i).id)
            .collect();
        let (page, more) = ledger.list(CreatedRange::default(), None, 2).unwrap();
        assert!(more);
        assert_eq!(page[0].id, ids[4]);
        let (page, more) = ledger
            .list(CreatedRange::default(), Some(&ids[1]), 10)
            .unwrap();
        assert!(!more);
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].id, ids[0]);
        let range = CreatedRange {
            gte: Some(13),
            ..CreatedRange::default()
        };
        assert_eq!(ledger.list(range, None, 10).unwrap().0.len(), 2);
    }
}
