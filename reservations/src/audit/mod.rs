//! Audits: each domain checks, after the fact, the invariants of the data it owns.
//!
//! This module is the vocabulary every audit speaks, so that `flashsale verify` only
//! merges reports and owns no rule of its own:
//!
//! - [`Check`]: one named invariant, whether it holds, the figures behind the verdict
//!   and the offending ids;
//! - [`Audit`]: what one domain's audit returns — its checks, in report order, and the
//!   figures it measured on the way (counts the report header shows, orders it lost);
//! - [`AuditedSale`]: the sale row every audit is scoped to; [`Sold`]: what was sold,
//!   counted once by the stock audit and read by the audits that compare against it.
//!
//! The audits themselves live with the tables and keys they read:
//!
//! - [`stock`]: units, Redis stock and holds, the per-shopper limit (this crate's
//!   `sales`, `orders`, `order_units`, `retired_units` and the sale's Redis keys);
//! - [`variants`]: conservation and the unit guard per variant (`sale_variants`,
//!   `variant_units`, a multi-variant sale's free lists and counters), run by the
//!   stock audit;
//! - [`payments`]: the simulated provider's ledger, `sim_payments` (this crate's
//!   [`crate::payment`] module);
//! - `outbox_relay::audit`: outbox rows, `processed_events` per consumer group, the
//!   sales ledger and confirmations.

pub mod payments;
pub mod stock;
pub mod variants;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::ids::SaleId;
use crate::Result;

/// How many offending ids a check keeps at all; [`Check::offender_count`] still
/// counts every one.
pub const KEPT_OFFENDERS: usize = 1_000;

/// One invariant and what the audit found.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable name, e.g. `no_unit_sold_twice`.
    pub name: &'static str,
    /// The invariant in words.
    pub invariant: &'static str,
    /// Whether it holds.
    pub passed: bool,
    /// Figures behind the verdict.
    pub detail: String,
    /// How many offenders there are in all.
    pub offender_count: usize,
    /// The offending ids (orders, units, shoppers, holds, events), at most
    /// [`KEPT_OFFENDERS`].
    pub offenders: Vec<String>,
}

impl Check {
    /// A check that holds when `offenders` is empty.
    pub fn from_offenders(
        name: &'static str,
        invariant: &'static str,
        detail: impl Into<String>,
        offenders: Vec<String>,
    ) -> Check {
        let offender_count = offenders.len();
        let mut offenders = offenders;
        offenders.truncate(KEPT_OFFENDERS);
        Check {
            name,
            invariant,
            passed: offender_count == 0,
            detail: detail.into(),
            offender_count,
            offenders,
        }
    }

    /// A check decided by a condition, with no ids to list.
    pub fn from_condition(
        name: &'static str,
        invariant: &'static str,
        passed: bool,
        detail: impl Into<String>,
    ) -> Check {
        Check {
            name,
            invariant,
            passed,
            detail: detail.into(),
            offender_count: 0,
            offenders: Vec::new(),
        }
    }
}

/// What one domain's audit found: its named checks, in the order the report lists
/// them, and the figures `F` it measured on the way.
#[derive(Debug, Clone)]
pub struct Audit<F> {
    /// The domain's checks, in report order.
    pub checks: Vec<Check>,
    /// What the audit measured besides its verdicts.
    pub figures: F,
}

/// The sale every audit is scoped to, as its row in `sales` says.
#[derive(Debug, Clone)]
pub struct AuditedSale {
    /// The sale.
    pub id: SaleId,
    /// Its name.
    pub name: String,
    /// Sellable units.
    pub total: i64,
    /// Units ever numbered (`1..=unit_count`), retired ones included.
    pub unit_count: i32,
    /// Most units one shopper may buy.
    pub per_user_limit: i64,
    /// When it was created: payments carry no sale id and are scoped by time.
    pub created_at: DateTime<Utc>,
    /// Whether it is over (ended by the merchant, or past its end): its Redis keys may
    /// have been deleted after the retention, Postgres being the record.
    pub over: bool,
}

impl AuditedSale {
    /// The sale's row, or `None` when Postgres has no such sale.
    pub async fn load(db: &PgPool, sale: SaleId) -> Result<Option<AuditedSale>> {
        let row: Option<(String, i32, i32, i32, DateTime<Utc>, bool)> = sqlx::query_as(
            "select name, total, unit_count, per_user_limit, created_at, \
             state = 'ended' or ends_at <= now() from sales where id = $1",
        )
        .bind(sale.0)
        .fetch_optional(db)
        .await?;
        Ok(row.map(
            |(name, total, unit_count, per_user_limit, created_at, over)| AuditedSale {
                id: sale,
                name,
                total: i64::from(total),
                unit_count,
                per_user_limit: i64::from(per_user_limit),
                created_at,
                over,
            },
        ))
    }
}

/// What the sale sold, in Postgres: the audits that compare against it (events,
/// ledger, payments) read the stock audit's count instead of counting again.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sold {
    /// Orders of the sale.
    pub orders: i64,
    /// Rows in `order_units` of the sale.
    pub units_sold: i64,
}

/// Offending ids as the report prints them.
pub fn ids<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(T::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_with_offenders_fails_and_keeps_a_bounded_list() {
        let offenders: Vec<String> = (0..KEPT_OFFENDERS + 5).map(|i| i.to_string()).collect();
        let check = Check::from_offenders("x", "x holds", "", offenders);
        assert!(!check.passed);
        assert_eq!(check.offender_count, KEPT_OFFENDERS + 5);
        assert_eq!(check.offenders.len(), KEPT_OFFENDERS);
        assert!(Check::from_offenders("x", "x holds", "", Vec::new()).passed);
    }
}
