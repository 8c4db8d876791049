//! The sale catalogue: what a merchant may write (parsed once, at the edge), the stored
//! sale, and its derived public status.
//!
//! # Layout
//!
//! - `money`: [`Money`] and the accepted currencies.
//! - `admission`: how the waiting room admits shoppers ([`Admission`]).
//! - `beacon`: the public randomness round the draw mixes in ([`DrawBeacon`]).
//! - `input`: a create body and its parsing into a [`SaleSpec`]; the field rules.
//! - `patch`: an edit ([`SalePatch`]) and the fields frozen once a sale has started.
//! - `line`: who may join the line ([`Access`]) and the message to the line.
//! - `sale`: the stored [`Sale`], its state, public status, stock and transitions.
//! - `variant`: a sale's variants (v1.1): their input, rules and stored form with the
//!   unit ranges each owns ([`Variant`]).

mod admission;
mod beacon;
mod input;
mod line;
mod money;
mod patch;
mod sale;
mod variant;

pub use admission::{Admission, AdmissionMode, MAX_PROOF_DIFFICULTY_BITS};
pub use beacon::{DrawBeacon, QUICKNET, QUICKNET_GENESIS_SECS, QUICKNET_PERIOD_SECS};
pub use input::{SaleInput, SaleSpec, StockInput};
pub use line::{parse_message, Access, MESSAGE_CHARS};
pub use money::Money;
pub use patch::SalePatch;
pub use sale::{Sale, SaleState, SaleStatus, StatusFilter, StockView, Transition};
pub use variant::{
    check_new_variant, lists_variants, variant_of_unit, UnitRange, Variant, VariantInput,
    VariantSpec, MAX_VARIANTS,
};

/// A validation failure naming the offending field (`422 invalid_field`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field's path as the client wrote it, e.g. `stock.total`.
    pub field: &'static str,
    /// What is wrong, in words a merchant understands.
    pub message: String,
}

/// A [`FieldError`] for `field` (for rules checked outside this module, e.g. a cart).
pub fn invalid_field(field: &'static str, message: impl Into<String>) -> FieldError {
    invalid(field, message)
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
    /// How long after an order its shopper may cancel it (v1.1; 0: never).
    pub const CANCEL_WINDOW_SECONDS: std::ops::RangeInclusive<i64> = 0..=86_400;
    /// Admission p95 target in milliseconds.
    pub const P95_TARGET_MS: std::ops::RangeInclusive<i64> = 10..=60_000;
    /// Admission rate and active-shopper caps.
    pub const ADMISSION_CAP: std::ops::RangeInclusive<i64> = 1..=1_000_000;
}
