//! The sale catalogue: what a merchant may write (parsed once, at the edge), the stored
//! sale, and its derived public status.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{MerchantId, SaleId};

/// A validation failure naming the offending field (`422 invalid_field`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field's path as the client wrote it, e.g. `stock.total`.
    pub field: &'static str,
    /// What is wrong, in words a merchant understands.
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Bounds from API.md, in one place.
pub mod limits {
    /// Most units a sale may hold.
    pub const MAX_UNITS: i64 = 1_000_000;
    /// Highest price in minor units.
    pub const MAX_PRICE_MINOR: i64 = 100_000_000;
    /// Name length in characters.
    pub const NAME_CHARS: std::ops::RangeInclusive<usize> = 1..=200;
    /// SKU length in characters.
    pub const SKU_CHARS: std::ops::RangeInclusive<usize> = 1..=64;
    /// Longest description in characters.
    pub const DESCRIPTION_CHARS: usize = 5_000;
    /// Per-shopper limit.
    pub const PER_USER_LIMIT: std::ops::RangeInclusive<i64> = 1..=100;
    /// Hold lifetime in seconds.
    pub const HOLD_TTL_SECONDS: std::ops::RangeInclusive<i64> = 30..=3600;
    /// Admission p95 target in milliseconds.
    pub const P95_TARGET_MS: std::ops::RangeInclusive<i64> = 10..=60_000;
    /// Admission rate and active-shopper caps.
    pub const ADMISSION_CAP: std::ops::RangeInclusive<i64> = 1..=1_000_000;
}

/// Money as minor units of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Amount in the currency's minor unit (cents).
    pub amount_minor: i64,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
}

/// The currencies we accept: ISO 4217 active codes likely on a storefront. A typo such
/// as `EUO` is rejected rather than stored.
const CURRENCIES: &[&str] = &[
    "AED", "AUD", "BGN", "BRL", "CAD", "CHF", "CLP", "CNY", "COP", "CZK", "DKK", "EUR", "GBP",
    "HKD", "HUF", "IDR", "ILS", "INR", "ISK", "JPY", "KRW", "MXN", "MYR", "NOK", "NZD", "PHP",
    "PLN", "RON", "SAR", "SEK", "SGD", "THB", "TRY", "TWD", "UAH", "USD", "ZAR",
];

impl Money {
    fn parse(self) -> Result<Money, FieldError> {
        if !(0..=limits::MAX_PRICE_MINOR).contains(&self.amount_minor) {
            return Err(invalid(
                "price.amount_minor",
                format!("must be between 0 and {}", limits::MAX_PRICE_MINOR),
            ));
        }
        if !CURRENCIES.contains(&self.currency.as_str()) {
            return Err(invalid(
                "price.currency",
                "must be an ISO 4217 currency code such as EUR",
            ));
        }
        Ok(self)
    }
}

/// How the waiting room admits shoppers to this sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdmissionMode {
    /// Feedback-controlled from the measured checkout latency.
    Auto,
    /// A pinned rate (`max_admit_per_second`).
    Fixed,
}

/// Admission settings of a sale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Admission {
    /// `auto` or `fixed`.
    pub mode: AdmissionMode,
    /// Ceiling on admitted shoppers who have not yet finished.
    #[serde(default)]
    pub max_active_shoppers: Option<i64>,
    /// Ceiling on the admission rate (the rate itself in `fixed` mode).
    #[serde(default)]
    pub max_admit_per_second: Option<f64>,
    /// The checkout latency the controller keeps p95 under.
    #[serde(default = "default_p95_target")]
    pub checkout_p95_target_ms: i64,
}

fn default_p95_target() -> i64 {
    300
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            mode: AdmissionMode::Auto,
            max_active_shoppers: None,
            max_admit_per_second: None,
            checkout_p95_target_ms: default_p95_target(),
        }
    }
}

impl Admission {
    fn parse(self) -> Result<Admission, FieldError> {
        let caps = limits::ADMISSION_CAP;
        if let Some(n) = self.max_active_shoppers {
            if !caps.contains(&n) {
                return Err(invalid(
                    "admission.max_active_shoppers",
                    format!("must be between {} and {}", caps.start(), caps.end()),
                ));
            }
        }
        if let Some(rate) = self.max_admit_per_second {
            if !(rate.is_finite() && rate > 0.0 && rate <= *caps.end() as f64) {
                return Err(invalid(
                    "admission.max_admit_per_second",
                    format!("must be above 0 and at most {}", caps.end()),
                ));
            }
        }
        if self.mode == AdmissionMode::Fixed && self.max_admit_per_second.is_none() {
            return Err(invalid(
                "admission.max_admit_per_second",
                "is required when mode is fixed",
            ));
        }
        let target = limits::P95_TARGET_MS;
        if !target.contains(&self.checkout_p95_target_ms) {
            return Err(invalid(
                "admission.checkout_p95_target_ms",
                format!("must be between {} and {}", target.start(), target.end()),
            ));
        }
        Ok(self)
    }
}

/// `{ "total": N }` in a create body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockInput {
    /// Units for sale.
    pub total: i64,
}

/// The body of `POST /v1/admin/sales`, as the client sent it (not yet validated).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleInput {
    /// 1–200 characters.
    pub name: String,
    /// 1–64 of `[A-Za-z0-9._-]`.
    pub sku: String,
    /// At most 5,000 characters.
    #[serde(default)]
    pub description: String,
    /// Unit price.
    pub price: Money,
    /// Units for sale.
    pub stock: StockInput,
    /// 1–100 units per shopper (default 1).
    #[serde(default = "one")]
    pub per_user_limit: i64,
    /// 30–3600 seconds a hold lasts (default 600).
    #[serde(default = "default_hold_ttl")]
    pub hold_ttl_seconds: i64,
    /// When the sale opens.
    pub starts_at: DateTime<Utc>,
    /// When it closes (after `starts_at`).
    pub ends_at: DateTime<Utc>,
    /// Admission settings (default: auto, 300 ms p95 target).
    #[serde(default)]
    pub admission: Admission,
}

fn one() -> i64 {
    1
}

fn default_hold_ttl() -> i64 {
    600
}

/// A sale definition that passed every rule of API.md. Only `parse` builds one.
#[derive(Debug, Clone)]
pub struct SaleSpec {
    pub(crate) name: String,
    pub(crate) sku: String,
    pub(crate) description: String,
    pub(crate) price: Money,
    pub(crate) total: i32,
    pub(crate) per_user_limit: i32,
    pub(crate) hold_ttl_seconds: i32,
    pub(crate) starts_at: DateTime<Utc>,
    pub(crate) ends_at: DateTime<Utc>,
    pub(crate) admission: Admission,
}

fn parse_name(name: String) -> Result<String, FieldError> {
    let chars = name.trim().chars().count();
    if !limits::NAME_CHARS.contains(&chars) {
        return Err(invalid("name", "must be 1–200 characters"));
    }
    Ok(name.trim().to_owned())
}

fn parse_sku(sku: String) -> Result<String, FieldError> {
    let ok_chars = sku
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !limits::SKU_CHARS.contains(&sku.chars().count()) || !ok_chars {
        return Err(invalid(
            "sku",
            "must be 1–64 characters of A-Z a-z 0-9 . _ -",
        ));
    }
    Ok(sku)
}

fn parse_description(description: String) -> Result<String, FieldError> {
    if description.chars().count() > limits::DESCRIPTION_CHARS {
        return Err(invalid("description", "must be at most 5,000 characters"));
    }
    Ok(description)
}

fn parse_bounded(
    field: &'static str,
    value: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i32, FieldError> {
    if !range.contains(&value) {
        return Err(invalid(
            field,
            format!("must be between {} and {}", range.start(), range.end()),
        ));
    }
    Ok(value as i32)
}

fn check_window(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> Result<(), FieldError> {
    if starts_at >= ends_at {
        return Err(invalid("ends_at", "must be after starts_at"));
    }
    Ok(())
}

impl SaleSpec {
    /// Validates a create body against every rule of API.md.
    pub fn parse(input: SaleInput) -> Result<SaleSpec, FieldError> {
        check_window(input.starts_at, input.ends_at)?;
        Ok(SaleSpec {
            name: parse_name(input.name)?,
            sku: parse_sku(input.sku)?,
            description: parse_description(input.description)?,
            price: input.price.parse()?,
            total: parse_bounded("stock.total", input.stock.total, 1..=limits::MAX_UNITS)?,
            per_user_limit: parse_bounded(
                "per_user_limit",
                input.per_user_limit,
                limits::PER_USER_LIMIT,
            )?,
            hold_ttl_seconds: parse_bounded(
                "hold_ttl_seconds",
                input.hold_ttl_seconds,
                limits::HOLD_TTL_SECONDS,
            )?,
            starts_at: input.starts_at,
            ends_at: input.ends_at,
            admission: input.admission.parse()?,
        })
    }
}

/// The body of `PATCH /v1/admin/sales/{id}`: every field optional.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SalePatch {
    /// New name.
    pub name: Option<String>,
    /// New SKU (only before the start).
    pub sku: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New price (only before the start).
    pub price: Option<Money>,
    /// Not writable here: stock changes go through `POST …/stock`.
    #[schema(value_type = Option<Object>)]
    pub stock: Option<serde_json::Value>,
    /// New per-shopper limit (only before the start).
    pub per_user_limit: Option<i64>,
    /// New hold lifetime (applies to new holds).
    pub hold_ttl_seconds: Option<i64>,
    /// New start (only before the start).
    pub starts_at: Option<DateTime<Utc>>,
    /// New end.
    pub ends_at: Option<DateTime<Utc>>,
    /// New admission settings.
    pub admission: Option<Admission>,
}

impl SalePatch {
    /// Applies the patch to `sale`, enforcing validation and the fields frozen once the
    /// sale has started (the rules shoppers rely on: price, SKU, start, limit).
    pub(crate) fn apply(self, sale: &mut Sale, now: DateTime<Utc>) -> crate::Result<()> {
        let started = now >= sale.starts_at;
        let lock = |field: &'static str, changes: bool| -> crate::Result<()> {
            if started && changes {
                Err(crate::Error::SaleLocked(field))
            } else {
                Ok(())
            }
        };
        if self.stock.is_some() {
            return Err(
                invalid("stock", "change stock with POST /v1/admin/sales/{id}/stock").into(),
            );
        }
        if let Some(name) = self.name {
            sale.name = parse_name(name)?;
        }
        if let Some(sku) = self.sku {
            let sku = parse_sku(sku)?;
            lock("sku", sku != sale.sku)?;
            sale.sku = sku;
        }
        if let Some(description) = self.description {
            sale.description = parse_description(description)?;
        }
        if let Some(price) = self.price {
            let price = price.parse()?;
            lock("price", price != sale.price)?;
            sale.price = price;
        }
        if let Some(limit) = self.per_user_limit {
            let limit = parse_bounded("per_user_limit", limit, limits::PER_USER_LIMIT)?;
            lock("per_user_limit", limit != sale.per_user_limit)?;
            sale.per_user_limit = limit;
        }
        if let Some(ttl) = self.hold_ttl_seconds {
            sale.hold_ttl_seconds =
                parse_bounded("hold_ttl_seconds", ttl, limits::HOLD_TTL_SECONDS)?;
        }
        if let Some(starts_at) = self.starts_at {
            lock("starts_at", starts_at != sale.starts_at)?;
            sale.starts_at = starts_at;
        }
        if let Some(ends_at) = self.ends_at {
            sale.ends_at = ends_at;
        }
        check_window(sale.starts_at, sale.ends_at)?;
        if let Some(admission) = self.admission {
            sale.admission = admission.parse()?;
        }
        Ok(())
    }
}

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
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl Sale {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> SaleInput {
        serde_json::from_value(serde_json::json!({
            "name": "Trail runner", "sku": "TR-1",
            "price": { "amount_minor": 12900, "currency": "EUR" },
            "stock": { "total": 500 },
            "starts_at": "2030-01-01T10:00:00Z", "ends_at": "2030-01-01T12:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn a_valid_sale_parses_with_defaults() {
        let spec = SaleSpec::parse(input()).unwrap();
        assert_eq!(spec.per_user_limit, 1);
        assert_eq!(spec.hold_ttl_seconds, 600);
        assert_eq!(spec.admission, Admission::default());
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(&str, Box<dyn Fn(&mut SaleInput)>)> = vec![
            ("name", Box::new(|i| i.name = " ".into())),
            ("name", Box::new(|i| i.name = "x".repeat(201))),
            ("sku", Box::new(|i| i.sku = "has space".into())),
            ("sku", Box::new(|i| i.sku = "x".repeat(65))),
            (
                "description",
                Box::new(|i| i.description = "x".repeat(5001)),
            ),
            ("stock.total", Box::new(|i| i.stock.total = 0)),
            ("stock.total", Box::new(|i| i.stock.total = 1_000_001)),
            ("per_user_limit", Box::new(|i| i.per_user_limit = 101)),
            ("hold_ttl_seconds", Box::new(|i| i.hold_ttl_seconds = 29)),
            (
                "price.amount_minor",
                Box::new(|i| i.price.amount_minor = -1),
            ),
            (
                "price.currency",
                Box::new(|i| i.price.currency = "EURO".into()),
            ),
            ("ends_at", Box::new(|i| i.ends_at = i.starts_at)),
            (
                "admission.max_admit_per_second",
                Box::new(|i| i.admission.mode = AdmissionMode::Fixed),
            ),
        ];
        for (field, mutate) in cases {
            let mut i = input();
            mutate(&mut i);
            let err = SaleSpec::parse(i).unwrap_err();
            assert_eq!(err.field, field);
        }
    }
}
