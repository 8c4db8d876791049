//! A merchant's edit of a sale, and the fields frozen once it has started.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use super::beacon::present;
use super::input::{check_window, parse_bounded, parse_description, parse_name, parse_sku};
use super::{invalid, limits, parse_message, Access, Admission, DrawBeacon, Money, Sale};

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
    /// New cancel window (v1.1; applies to every order from now on).
    pub cancel_window_seconds: Option<i64>,
    /// New start (only before the start).
    pub starts_at: Option<DateTime<Utc>>,
    /// New end.
    pub ends_at: Option<DateTime<Utc>>,
    /// New admission settings.
    pub admission: Option<Admission>,
    /// New beacon round, or null for none (only before the start).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DrawBeacon>)]
    pub draw_beacon: Option<Option<DrawBeacon>>,
    /// Who may join the line (`public` or `codes`); it may change at any time.
    pub access: Option<Access>,
    /// A new message to the line (`Some(None)` clears it). Not part of the PATCH body:
    /// `PUT …/message` sets it (API.md v1.1), through the same versioned update.
    #[serde(skip)]
    #[schema(ignore)]
    pub message: Option<Option<String>>,
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
            // With several variants the top-level SKU is the first variant's, which
            // this edit does not reach: refused rather than silently disagreeing.
            if sale.has_variants() && sku != sale.sku {
                return Err(invalid(
                    "sku",
                    "a sale with several variants keeps its variants' SKUs",
                )
                .into());
            }
            sale.sku = sku;
        }
        if let Some(description) = self.description {
            sale.description = parse_description(description)?;
        }
        if let Some(price) = self.price {
            let price = price.parse()?;
            lock("price", price != sale.price)?;
            if sale.has_variants() && price != sale.price {
                return Err(invalid(
                    "price",
                    "a sale with several variants keeps its variants' prices",
                )
                .into());
            }
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
        if let Some(window) = self.cancel_window_seconds {
            sale.cancel_window_seconds = parse_bounded(
                "cancel_window_seconds",
                window,
                limits::CANCEL_WINDOW_SECONDS,
            )?;
        }
        if let Some(starts_at) = self.starts_at {
            lock("starts_at", starts_at != sale.starts_at)?;
            sale.starts_at = starts_at;
        }
        if let Some(ends_at) = self.ends_at {
            sale.ends_at = ends_at;
        }
        check_window(sale.starts_at, sale.ends_at)?;
        if let Some(mut admission) = self.admission {
            // An edit that names no proof difficulty keeps the sale's own.
            if admission.proof_difficulty_bits.is_none() {
                admission.proof_difficulty_bits = sale.admission.proof_difficulty_bits;
            }
            sale.admission = admission.parse()?;
        }
        // The draw's beacon: frozen at the start like the rules above. Before it, every
        // round it may name is due after the start, so its randomness is still unknown to
        // everyone whenever it changes; checked again when only the start moved.
        if let Some(beacon) = self.draw_beacon {
            lock("draw_beacon", beacon != sale.draw_beacon)?;
            sale.draw_beacon = beacon;
        }
        if let Some(beacon) = &sale.draw_beacon {
            if !started {
                beacon.check(sale.starts_at)?;
            }
        }
        if let Some(access) = self.access {
            sale.access = access;
        }
        if let Some(message) = self.message {
            sale.message = parse_message(message)?;
        }
        Ok(())
    }
}
