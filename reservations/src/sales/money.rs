//! Money: minor units of an accepted ISO 4217 currency.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{invalid, limits, FieldError};

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
    pub(super) fn parse(self) -> Result<Money, FieldError> {
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
