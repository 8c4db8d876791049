//! Variants of a sale: what a merchant writes for one (parsed at the edge), and the
//! stored variant with the unit ranges it owns.
//!
//! # Decisions
//!
//! - A sale has 1–100 variants. A sale created the v1 way (top-level `sku`, `price`,
//!   `stock`) has exactly one, and **its id is the sale's id** (ordinal 0): a v1 client
//!   never needs to name it, and the migration that introduced variants gave every
//!   existing sale that variant deterministically. A sale created with `variants` gives
//!   every variant an id of its own.
//! - **v1 answers stay byte-identical**: a sale whose only variant has the sale's id
//!   ([`Sale::lists_variants`] false) answers without `variants` (sale, stats, public
//!   page), its v1 holds without `lines`, its orders without `lines`. Every other sale
//!   lists them. The sale's top-level `sku` and `price` describe the first variant and
//!   its `stock` the whole sale.
//! - Units are numbered sale-wide and each unit belongs to one variant by ranges
//!   ([`UnitRange`]): the oversell guard (`order_units (sale_id, unit_no)`) is unchanged
//!   and checkout stays one statement (see the migration `..._variants.sql`).
//! - One currency per sale; a SKU names one variant of a sale; the total of all
//!   variants' stock is at most [`limits::MAX_UNITS`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::input::{parse_bounded, parse_name_of, parse_sku_of};
use super::{invalid, limits, FieldError, Money, Sale, StockInput};
use crate::ids::VariantId;

/// Most variants a sale may have.
pub const MAX_VARIANTS: usize = 100;

/// One variant in a create body or in `POST /v1/admin/sales/{id}/variants`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantInput {
    /// 1–64 of `[A-Za-z0-9._-]`, unique within the sale.
    pub sku: String,
    /// 1–200 characters (default: the SKU).
    #[serde(default)]
    pub name: Option<String>,
    /// Unit price, in the sale's currency.
    pub price: Money,
    /// Units for sale.
    pub stock: StockInput,
    /// 1–100 units of this variant per shopper (default: only the sale's limit).
    #[serde(default)]
    pub per_user_limit: Option<i64>,
}

/// A variant that passed every rule. Only [`VariantSpec::parse`] builds one.
#[derive(Debug, Clone)]
pub struct VariantSpec {
    pub(crate) sku: String,
    pub(crate) name: String,
    pub(crate) price: Money,
    pub(crate) total: i32,
    pub(crate) per_user_limit: Option<i32>,
}

impl VariantSpec {
    /// Validates one variant on its own (the sale-wide rules are in [`check_variants`]).
    pub fn parse(input: VariantInput) -> Result<VariantSpec, FieldError> {
        let sku = parse_sku_of("variants.sku", input.sku)?;
        let name = match input.name {
            Some(name) => parse_name_of("variants.name", name)?,
            None => sku.clone(),
        };
        let price = input.price.parse().map_err(|e| FieldError {
            field: match e.field {
                "price.amount_minor" => "variants.price.amount_minor",
                _ => "variants.price.currency",
            },
            message: e.message,
        })?;
        let total = parse_bounded(
            "variants.stock.total",
            input.stock.total,
            1..=limits::MAX_UNITS,
        )?;
        let per_user_limit = input
            .per_user_limit
            .map(|l| parse_bounded("variants.per_user_limit", l, limits::PER_USER_LIMIT))
            .transpose()?;
        Ok(VariantSpec {
            sku,
            name,
            price,
            total,
            per_user_limit,
        })
    }

    /// Units of this variant.
    pub fn total(&self) -> i32 {
        self.total
    }
}

/// The rules over all of a sale's variants: 1–100 of them, one currency, SKUs unique,
/// at most [`limits::MAX_UNITS`] units in all. `existing` are the sale's stored
/// variants (empty at create).
pub(crate) fn check_variants(
    existing: &[Variant],
    new: &[VariantSpec],
    currency: &str,
) -> Result<(), FieldError> {
    let count = existing.len() + new.len();
    if !(1..=MAX_VARIANTS).contains(&count) {
        return Err(invalid("variants", "a sale has 1–100 variants"));
    }
    if new.iter().any(|v| v.price.currency != currency) {
        return Err(invalid(
            "variants.price.currency",
            "every variant of a sale has the sale's currency",
        ));
    }
    let mut skus: Vec<&str> = existing.iter().map(|v| v.sku.as_str()).collect();
    skus.extend(new.iter().map(|v| v.sku.as_str()));
    skus.sort_unstable();
    if skus.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid("variants.sku", "must be unique within the sale"));
    }
    let units: i64 = existing.iter().map(|v| i64::from(v.total)).sum::<i64>()
        + new.iter().map(|v| i64::from(v.total)).sum::<i64>();
    if units > limits::MAX_UNITS {
        return Err(invalid(
            "variants.stock.total",
            format!("all variants together hold at most {}", limits::MAX_UNITS),
        ));
    }
    Ok(())
}

/// The rules for adding `spec` to the stored `sale`.
pub fn check_new_variant(sale: &Sale, spec: &VariantSpec) -> Result<(), FieldError> {
    check_variants(
        &sale.variants,
        std::slice::from_ref(spec),
        &sale.price.currency,
    )
}

/// Units `first..=last` of a sale, all of one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRange {
    /// First unit number.
    pub first: i32,
    /// Last unit number (inclusive).
    pub last: i32,
}

/// A stored variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// Its id (the sale's id for the first variant).
    pub id: VariantId,
    /// 0-based position in the sale; also its index in Redis (see `projection`).
    pub ordinal: i32,
    /// Merchant's SKU.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Unit price (the sale's currency).
    pub price: Money,
    /// Units of this variant one shopper may hold and buy, on top of the sale's limit.
    pub per_user_limit: Option<i32>,
    /// Sellable units: its units minus retired ones.
    pub total: i32,
    /// The unit numbers it owns, ascending.
    pub units: Vec<UnitRange>,
}

impl Variant {
    /// Whether unit `unit` is one of this variant's.
    pub fn owns(&self, unit: i32) -> bool {
        self.units
            .iter()
            .any(|r| (r.first..=r.last).contains(&unit))
    }
}

/// Whether a sale's answers list its variants: not for a sale whose only variant has
/// the sale's id (a v1 sale), whose answers stay exactly the v1 shape.
pub fn lists_variants(sale: crate::ids::SaleId, variants: &[Variant]) -> bool {
    !(variants.len() <= 1 && variants.first().is_none_or(|v| v.id.0 == sale.0))
}

/// The variant that owns `unit`, if any.
pub fn variant_of_unit(variants: &[Variant], unit: i32) -> Option<&Variant> {
    variants.iter().find(|v| v.owns(unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sku: &str, total: i32, currency: &str) -> VariantSpec {
        VariantSpec {
            sku: sku.into(),
            name: sku.into(),
            price: Money {
                amount_minor: 100,
                currency: currency.into(),
            },
            total,
            per_user_limit: None,
        }
    }

    #[test]
    fn the_sale_wide_variant_rules_name_their_field() {
        let ok = [spec("A", 10, "EUR"), spec("B", 10, "EUR")];
        assert!(check_variants(&[], &ok, "EUR").is_ok());
        let cases = [
            (vec![], "variants"),
            (
                vec![spec("A", 1, "EUR"), spec("A", 1, "EUR")],
                "variants.sku",
            ),
            (
                vec![spec("A", 1, "EUR"), spec("B", 1, "USD")],
                "variants.price.currency",
            ),
            (
                vec![spec("A", 600_000, "EUR"), spec("B", 400_001, "EUR")],
                "variants.stock.total",
            ),
            (
                (0..101).map(|i| spec(&format!("S{i}"), 1, "EUR")).collect(),
                "variants",
            ),
        ];
        for (variants, field) in cases {
            assert_eq!(
                check_variants(&[], &variants, "EUR").unwrap_err().field,
                field
            );
        }
    }

    #[test]
    fn a_unit_belongs_to_the_variant_whose_range_holds_it() {
        let variant = |ordinal: i32, ranges: &[(i32, i32)]| Variant {
            id: VariantId::new(),
            ordinal,
            sku: format!("S{ordinal}"),
            name: String::new(),
            price: Money {
                amount_minor: 1,
                currency: "EUR".into(),
            },
            per_user_limit: None,
            total: 0,
            units: ranges
                .iter()
                .map(|&(first, last)| UnitRange { first, last })
                .collect(),
        };
        let variants = [variant(0, &[(1, 5), (11, 12)]), variant(1, &[(6, 10)])];
        let owner = |u| variant_of_unit(&variants, u).map(|v| v.ordinal);
        assert_eq!(
            [1, 5, 6, 10, 11, 12, 13].map(owner),
            [Some(0), Some(0), Some(1), Some(1), Some(0), Some(0), None]
        );
    }
}
