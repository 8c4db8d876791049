//! A create body as the client sent it, its parsing into a [`SaleSpec`], and the
//! field rules an edit shares with it.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use super::variant::{check_variants, VariantInput, VariantSpec};
use super::{invalid, limits, Access, Admission, DrawBeacon, FieldError, Money};

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
    /// 1–64 of `[A-Za-z0-9._-]`. Required unless `variants` is given (then absent, or
    /// the first variant's).
    #[serde(default)]
    pub sku: Option<String>,
    /// At most 5,000 characters.
    #[serde(default)]
    pub description: String,
    /// Unit price. Required unless `variants` is given (then absent, or the first
    /// variant's).
    #[serde(default)]
    pub price: Option<Money>,
    /// Units for sale. Required unless `variants` is given (then absent, or the total of
    /// all variants).
    #[serde(default)]
    pub stock: Option<StockInput>,
    /// 1–100 variants (v1.1), instead of the top-level `sku`, `price` and `stock`.
    #[serde(default)]
    pub variants: Option<Vec<VariantInput>>,
    /// 1–100 units per shopper (default 1).
    #[serde(default = "one")]
    pub per_user_limit: i64,
    /// 30–3600 seconds a hold lasts (default 600).
    #[serde(default = "default_hold_ttl")]
    pub hold_ttl_seconds: i64,
    /// 0–86,400 seconds after an order its shopper may cancel it (v1.1; default 900).
    #[serde(default = "default_cancel_window")]
    pub cancel_window_seconds: i64,
    /// When the sale opens.
    pub starts_at: DateTime<Utc>,
    /// When it closes (after `starts_at`).
    pub ends_at: DateTime<Utc>,
    /// Admission settings (default: auto, 300 ms p95 target).
    #[serde(default)]
    pub admission: Admission,
    /// The beacon round the draw mixes in (default none: the committed seed alone).
    #[serde(default)]
    pub draw_beacon: Option<DrawBeacon>,
    /// Who may join the line: `public` (default) or `codes`.
    #[serde(default)]
    pub access: Access,
}

fn one() -> i64 {
    1
}

fn default_hold_ttl() -> i64 {
    600
}

fn default_cancel_window() -> i64 {
    900
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
    pub(crate) cancel_window_seconds: i32,
    pub(crate) starts_at: DateTime<Utc>,
    pub(crate) ends_at: DateTime<Utc>,
    pub(crate) admission: Admission,
    pub(crate) draw_beacon: Option<DrawBeacon>,
    pub(crate) access: Access,
    /// At least one; the first is described by `sku`, `price` (and `total` is the sum).
    pub(crate) variants: Vec<VariantSpec>,
    /// Whether the body gave `variants` (v1.1) rather than top-level sku/price/stock.
    pub(crate) listed: bool,
}

pub(super) fn parse_name(name: String) -> Result<String, FieldError> {
    parse_name_of("name", name)
}

/// The name rule, for the field `field` (a sale's or a variant's name).
pub(super) fn parse_name_of(field: &'static str, name: String) -> Result<String, FieldError> {
    let chars = name.trim().chars().count();
    if !limits::NAME_CHARS.contains(&chars) {
        return Err(invalid(field, "must be 1–200 characters"));
    }
    Ok(name.trim().to_owned())
}

pub(super) fn parse_sku(sku: String) -> Result<String, FieldError> {
    parse_sku_of("sku", sku)
}

/// The SKU rule, for the field `field` (a sale's or a variant's SKU).
pub(super) fn parse_sku_of(field: &'static str, sku: String) -> Result<String, FieldError> {
    let ok_chars = sku
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !limits::SKU_CHARS.contains(&sku.chars().count()) || !ok_chars {
        return Err(invalid(
            field,
            "must be 1–64 characters of A-Z a-z 0-9 . _ -",
        ));
    }
    Ok(sku)
}

pub(super) fn parse_description(description: String) -> Result<String, FieldError> {
    if description.chars().count() > limits::DESCRIPTION_CHARS {
        return Err(invalid("description", "must be at most 5,000 characters"));
    }
    Ok(description)
}

pub(super) fn parse_bounded(
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

pub(super) fn check_window(
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
) -> Result<(), FieldError> {
    // Compared as Postgres stores them, to the microsecond: an end 271 ns after the
    // start passes a nanosecond comparison, then breaks the table's check constraint
    // (a 503 where the client's input is at fault).
    if starts_at.timestamp_micros() >= ends_at.timestamp_micros() {
        return Err(invalid("ends_at", "must be after starts_at"));
    }
    Ok(())
}

impl SaleSpec {
    /// Validates a create body against every rule of API.md.
    pub fn parse(input: SaleInput) -> Result<SaleSpec, FieldError> {
        check_window(input.starts_at, input.ends_at)?;
        if let Some(beacon) = &input.draw_beacon {
            beacon.check(input.starts_at)?;
        }
        let name = parse_name(input.name)?;
        let listed = input.variants.is_some();
        let (sku, price, total, variants) = match input.variants {
            None => {
                let sku = parse_sku(input.sku.ok_or_else(|| invalid("sku", "is required"))?)?;
                let price = input
                    .price
                    .ok_or_else(|| invalid("price", "is required"))?
                    .parse()?;
                let stock = input
                    .stock
                    .ok_or_else(|| invalid("stock.total", "is required"))?;
                let total = parse_bounded("stock.total", stock.total, 1..=limits::MAX_UNITS)?;
                // The one variant of a v1 sale: the sale's own SKU, name and price.
                let variant = VariantSpec {
                    sku: sku.clone(),
                    name: name.clone(),
                    price: price.clone(),
                    total,
                    per_user_limit: None,
                };
                (sku, price, total, vec![variant])
            }
            Some(given) => {
                let variants = given
                    .into_iter()
                    .map(VariantSpec::parse)
                    .collect::<Result<Vec<_>, _>>()?;
                let first = variants
                    .first()
                    .ok_or_else(|| invalid("variants", "a sale has 1–100 variants"))?
                    .clone();
                check_variants(&[], &variants, &first.price.currency)?;
                let total: i32 = variants.iter().map(|v| v.total).sum();
                // Top-level fields beside `variants` may only repeat what they describe.
                if input.sku.is_some_and(|s| s != first.sku) {
                    return Err(invalid("sku", "must be absent or the first variant's"));
                }
                if input.price.is_some_and(|p| p != first.price) {
                    return Err(invalid("price", "must be absent or the first variant's"));
                }
                if input.stock.is_some_and(|s| s.total != i64::from(total)) {
                    return Err(invalid(
                        "stock.total",
                        "must be absent or the total of all variants",
                    ));
                }
                (first.sku, first.price, total, variants)
            }
        };
        Ok(SaleSpec {
            name,
            sku,
            description: parse_description(input.description)?,
            price,
            total,
            variants,
            listed,
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
            cancel_window_seconds: parse_bounded(
                "cancel_window_seconds",
                input.cancel_window_seconds,
                limits::CANCEL_WINDOW_SECONDS,
            )?,
            starts_at: input.starts_at,
            ends_at: input.ends_at,
            admission: input.admission.parse()?,
            draw_beacon: input.draw_beacon,
            access: input.access,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sales::AdmissionMode;

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
            ("sku", Box::new(|i| i.sku = Some("has space".into()))),
            ("sku", Box::new(|i| i.sku = Some("x".repeat(65)))),
            (
                "description",
                Box::new(|i| i.description = "x".repeat(5001)),
            ),
            (
                "stock.total",
                Box::new(|i| i.stock.as_mut().unwrap().total = 0),
            ),
            (
                "stock.total",
                Box::new(|i| i.stock.as_mut().unwrap().total = 1_000_001),
            ),
            ("per_user_limit", Box::new(|i| i.per_user_limit = 101)),
            ("hold_ttl_seconds", Box::new(|i| i.hold_ttl_seconds = 29)),
            (
                "price.amount_minor",
                Box::new(|i| i.price.as_mut().unwrap().amount_minor = -1),
            ),
            (
                "price.currency",
                Box::new(|i| i.price.as_mut().unwrap().currency = "EURO".into()),
            ),
            ("ends_at", Box::new(|i| i.ends_at = i.starts_at)),
            (
                "ends_at",
                Box::new(|i| i.ends_at = i.starts_at + chrono::Duration::nanoseconds(271)),
            ),
            (
                "admission.max_admit_per_second",
                Box::new(|i| i.admission.mode = AdmissionMode::Fixed),
            ),
            (
                "admission.proof_difficulty_bits",
                Box::new(|i| i.admission.proof_difficulty_bits = Some(27)),
            ),
            (
                "admission.proof_difficulty_bits",
                Box::new(|i| i.admission.proof_difficulty_bits = Some(-1)),
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
