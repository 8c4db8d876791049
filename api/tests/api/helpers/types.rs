//! The contract as a client sees it: the answers of API.md written down as test-side
//! types. They are deliberately not the server's own types, so a server change that
//! breaks the contract fails a test instead of changing both sides at once.
//!
//! Unknown fields are accepted (v1.1 adds fields to v1 answers); a field the contract
//! promises is required, so its absence fails the test that reads the answer. Times
//! stay strings: several tests assert their exact RFC 3339 form.

// Each type mirrors a whole answer of the contract; not every test reads every field.
#![allow(dead_code)]

use serde::Deserialize;
use uuid::Uuid;

/// `{ "amount_minor": 1999, "currency": "EUR" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

impl Money {
    /// An amount in euro cents, as the default sale body prices its units.
    pub fn eur(amount_minor: i64) -> Money {
        Money {
            amount_minor,
            currency: "EUR".to_owned(),
        }
    }
}

/// The stock of a sale as the merchant sees it: every unit is in one of three places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Stock {
    pub total: i64,
    pub available: i64,
    pub held: i64,
    pub sold: i64,
}

impl Stock {
    /// `total` units of which `available` are free, `held` held and `sold` sold.
    pub fn new(total: i64, available: i64, held: i64, sold: i64) -> Stock {
        Stock {
            total,
            available,
            held,
            sold,
        }
    }
}

/// The admission settings of a sale.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Admission {
    pub mode: String,
    pub max_active_shoppers: Option<i64>,
    pub max_admit_per_second: Option<f64>,
    pub checkout_p95_target_ms: Option<i64>,
}

/// A **sale** as the merchant admin API answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct Sale {
    pub id: Uuid,
    pub name: String,
    /// Absent when the sale's variants carry the SKUs (v1.1).
    pub sku: Option<String>,
    pub description: String,
    pub price: Option<Money>,
    pub stock: Stock,
    pub per_user_limit: i64,
    pub hold_ttl_seconds: i64,
    pub starts_at: String,
    pub ends_at: String,
    pub status: String,
    pub version: i64,
    pub admission: Admission,
}

/// The public stock of a sale page. Exactly these two fields: held and sold counts are
/// the merchant's business, so one appearing on the public page breaks the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicStock {
    pub total: i64,
    pub available: i64,
}

/// The public sale page data (`GET /v1/sales/{id}`).
#[derive(Debug, Clone, Deserialize)]
pub struct SalePage {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub price: Option<Money>,
    pub starts_at: String,
    pub ends_at: String,
    pub status: String,
    pub per_user_limit: i64,
    pub stock: PublicStock,
}

/// The waiting room's counters in **stats**.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueStats {
    pub prequeue: i64,
    pub waiting: i64,
    pub serving_position: i64,
    pub admitted_total: i64,
}

/// The admission controller's state in **stats**.
#[derive(Debug, Clone, Deserialize)]
pub struct AdmissionStats {
    pub mode: String,
    pub rate_per_second: f64,
    pub active_shoppers: i64,
    pub no_show_rate: f64,
    pub last_change_reason: Option<String>,
}

/// The signals the controller reads, in **stats**.
#[derive(Debug, Clone, Deserialize)]
pub struct SignalStats {
    pub checkout_p95_ms: f64,
    pub reserve_p95_ms: f64,
    pub pool_wait_ms: f64,
    pub outbox_backlog: i64,
    pub outbox_oldest_age_ms: i64,
}

/// Orders and revenue in **stats**.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderStats {
    pub count: i64,
    pub revenue: Money,
}

/// **stats**: the live statistics of a sale.
#[derive(Debug, Clone, Deserialize)]
pub struct Stats {
    pub sale_id: Uuid,
    pub at: String,
    pub status: String,
    pub stock: Stock,
    pub queue: QueueStats,
    pub admission: AdmissionStats,
    pub signals: SignalStats,
    pub orders: OrderStats,
}

/// A **reservation** (a hold).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Reservation {
    pub reservation_id: Uuid,
    pub sale_id: Uuid,
    pub quantity: i64,
    /// `held`, `checked_out`, `released` or `expired`.
    pub status: String,
    pub expires_at: String,
}

/// Whether the confirmation mail of an order went out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Confirmation {
    /// `pending` or `sent`.
    pub status: String,
    pub sent_at: Option<String>,
}

/// An **order**.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Order {
    pub order_id: Uuid,
    pub sale_id: Uuid,
    pub reservation_id: Uuid,
    pub quantity: i64,
    pub amount: Money,
    pub status: String,
    pub created_at: String,
    pub confirmation: Confirmation,
}

/// A waiting-room **ticket**.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Ticket {
    pub ticket_id: Uuid,
    pub sale_id: Uuid,
    /// `prequeue`, `waiting`, `admitted`, `sold_out`, `expired` or `closed`.
    pub state: String,
    pub position: Option<i64>,
    pub ahead: Option<i64>,
    pub estimated_wait_seconds: Option<i64>,
    pub poll_after_ms: i64,
    pub admission_token: Option<String>,
    pub admission_expires_at: Option<String>,
}

/// The pre-queue lottery of a sale (`GET /v1/sales/{id}/draw`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Draw {
    pub commitment: String,
    /// Null until the sale starts.
    pub seed: Option<String>,
    pub ticket_count: i64,
    pub algorithm: String,
}

/// A guest shopper session (`POST /v1/sessions`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Session {
    pub token: String,
    pub shopper_id: Uuid,
    pub expires_at: String,
}

/// One page of a list: `{ items, next_cursor }`.
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// An RFC 9457 problem, as every 4xx and 5xx answer carries it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong this time, for a human (every problem carries one).
    pub detail: String,
    /// The stable snake_case string a client branches on.
    pub code: String,
}

impl Problem {
    /// Asserts this is the problem `status code`; `case` names what was asked.
    pub fn assert_is(&self, status: u16, code: &str, case: &str) {
        assert_eq!(
            (self.status, self.code.as_str()),
            (status, code),
            "{case}: {self:?}"
        );
    }
}
