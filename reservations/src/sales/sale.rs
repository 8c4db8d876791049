//! The stored sale: its state, derived public status, stock counters, transitions and
//! the status filter of listings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Access, Admission, DrawBeacon, Money, Variant};
use crate::ids::{MerchantId, SaleId};

/// What the merchant decided about a sale; the public status also depends on the
/// clock and the stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleState {
    /// Runs between `starts_at` and `ends_at`.
    Active,
    /// Stopped by the merchant; may resume.
    Paused,
    /// Ended by the merchant; final.
    Ended,
}

impl SaleState {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            SaleState::Active => "active",
            SaleState::Paused => "paused",
            SaleState::Ended => "ended",
        }
    }

    pub(crate) fn parse(s: &str) -> SaleState {
        match s {
            "paused" => SaleState::Paused,
            "ended" => SaleState::Ended,
            _ => SaleState::Active,
        }
    }
}

/// The status a client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SaleStatus {
    /// Before `starts_at`.
    Scheduled,
    /// Open for reservations.
    Live,
    /// Paused by the merchant.
    Paused,
    /// No free units and no holds that could return.
    SoldOut,
    /// After `ends_at`, or ended by the merchant.
    Ended,
}

/// Stock counters of a sale. `available + held + sold = total` at every moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StockView {
    /// Sellable units.
    pub total: i64,
    /// Free units.
    pub available: i64,
    /// Units in live holds (including holds being checked out).
    pub held: i64,
    /// Units in confirmed orders.
    pub sold: i64,
}

/// A stored sale.
#[derive(Debug, Clone)]
pub struct Sale {
    /// The sale's id.
    pub id: SaleId,
    /// Its owner.
    pub merchant_id: MerchantId,
    /// Display name.
    pub name: String,
    /// Merchant's SKU.
    pub sku: String,
    /// Display text.
    pub description: String,
    /// Unit price.
    pub price: Money,
    /// Highest unit number ever created (units are 1..=unit_count).
    pub unit_count: i32,
    /// Sellable units: unit_count minus retired units.
    pub total: i32,
    /// Units one shopper may hold and buy.
    pub per_user_limit: i32,
    /// How long a hold lasts.
    pub hold_ttl_seconds: i32,
    /// How long after an order its shopper may cancel it (v1.1; 0: never; see
    /// `crate::order_life`).
    pub cancel_window_seconds: i32,
    /// Opening time.
    pub starts_at: DateTime<Utc>,
    /// Closing time.
    pub ends_at: DateTime<Utc>,
    /// The merchant's decision.
    pub state: SaleState,
    /// Optimistic-concurrency version (ETag).
    pub version: i32,
    /// Admission settings.
    pub admission: Admission,
    /// The beacon round the pre-queue draw mixes in, if any.
    pub draw_beacon: Option<DrawBeacon>,
    /// Who may join the line (API.md v1.1 "access codes").
    pub access: Access,
    /// The merchant's message to the line, shown on every ticket.
    pub message: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Its variants by ordinal (at least one once stored; the first has the sale's id).
    pub variants: Vec<Variant>,
}

impl Sale {
    /// Whether the sale has more than one variant: only then do Redis and the reserve
    /// path deal in variants (a one-variant sale keeps the v1 keys and scripts).
    pub fn has_variants(&self) -> bool {
        self.variants.len() > 1
    }

    /// Whether answers about this sale list its variants (see `sales::variant`: a v1
    /// sale's answers keep the v1 shape).
    pub fn lists_variants(&self) -> bool {
        super::lists_variants(self.id, &self.variants)
    }

    /// The public status at `now`, given the current stock.
    pub fn status(&self, now: DateTime<Utc>, stock: &StockView) -> SaleStatus {
        match self.state {
            SaleState::Ended => SaleStatus::Ended,
            _ if now >= self.ends_at => SaleStatus::Ended,
            SaleState::Paused => SaleStatus::Paused,
            SaleState::Active if now < self.starts_at => SaleStatus::Scheduled,
            SaleState::Active if stock.available + stock.held == 0 => SaleStatus::SoldOut,
            SaleState::Active => SaleStatus::Live,
        }
    }

    /// The state after a merchant's pause / resume / end, or why it is not allowed.
    pub fn transition(&self, action: Transition, now: DateTime<Utc>) -> crate::Result<SaleState> {
        let over = self.state == SaleState::Ended || now >= self.ends_at;
        let next = match (action, self.state) {
            (_, _) if over => None,
            (Transition::Pause, SaleState::Active) => Some(SaleState::Paused),
            (Transition::Resume, SaleState::Paused) => Some(SaleState::Active),
            (Transition::End, _) => Some(SaleState::Ended),
            _ => None,
        };
        next.ok_or_else(|| crate::Error::InvalidTransition {
            action: action.as_str(),
            from: if over {
                "ended".into()
            } else {
                self.state.as_str().into()
            },
        })
    }
}

/// A merchant's state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Stop admitting and reserving.
    Pause,
    /// Undo a pause.
    Resume,
    /// End for good.
    End,
}

impl Transition {
    fn as_str(self) -> &'static str {
        match self {
            Transition::Pause => "pause",
            Transition::Resume => "resume",
            Transition::End => "end",
        }
    }
}

/// Which sales a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    /// Not started.
    Scheduled,
    /// Started, not ended, not paused, units left.
    Live,
    /// Started, not ended, not paused, nothing left to sell.
    SoldOut,
    /// Paused.
    Paused,
    /// Ended.
    Ended,
}

impl StatusFilter {
    /// Whether a sale in `status` belongs to this filter.
    pub fn matches(self, status: SaleStatus) -> bool {
        matches!(
            (self, status),
            (StatusFilter::Scheduled, SaleStatus::Scheduled)
                | (StatusFilter::Live, SaleStatus::Live)
                | (StatusFilter::SoldOut, SaleStatus::SoldOut)
                | (StatusFilter::Paused, SaleStatus::Paused)
                | (StatusFilter::Ended, SaleStatus::Ended)
        )
    }
}
