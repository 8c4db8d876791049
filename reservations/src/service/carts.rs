//! A shopper's cart (v1.1): one reserve of several lines (variant, quantity), held all
//! or none, and the lines of a hold as the API shows them.
//!
//! A cart of a one-variant sale is the v1 reserve of its one line (same script, same
//! hold record), so a v1 client and a v1.1 client of that sale see the same holds. A
//! cart of a multi-variant sale is one script call on one stripe (see
//! `projection::variants`): every line is checked before any unit is taken. Hold TTL,
//! expiry, release and idempotency apply to the cart as a whole, as to a v1 hold: one
//! hold, one deadline, one release; a retry with the same key and the same lines
//! answers the first hold, with other lines `idempotency_key_reused`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::holds::ms_to_time;
use super::{Quantity, Reservation, ReservationStatus, Reserved, Sales};
use crate::ids::{SaleId, ShopperId, VariantId};
use crate::projection::{Ask, HoldRecord, ReserveOutcome};
use crate::sales::{invalid_field, Sale};
use crate::{Error, Result};

/// Most lines one cart may have.
pub const MAX_CART_LINES: usize = 20;

/// One line of a cart: units of one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CartLine {
    /// The variant.
    pub variant_id: VariantId,
    /// Units of it, 1 up to the per-shopper limits.
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: i64,
}

/// A line of a refused cart: what was asked and what its variant has left (in the
/// stripe the cart was tried in first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct ShortLine {
    /// The variant.
    pub variant_id: VariantId,
    /// Units the line asked for.
    pub requested: i64,
    /// Units of the variant free right now.
    pub available: i64,
}

impl Sales {
    /// Holds every line of a cart for a shopper, all or none. The caller has checked
    /// admission. Lines: 1–20, distinct variants of this sale, each quantity 1–100.
    pub async fn reserve_cart(
        &self,
        sale_id: SaleId,
        shopper: ShopperId,
        lines: &[CartLine],
        idempotency_key: Option<&str>,
    ) -> Result<Reserved> {
        if lines.is_empty() || lines.len() > MAX_CART_LINES {
            return Err(invalid_field("lines", "a cart has 1–20 lines").into());
        }
        let sale = self.store.get(sale_id).await?;
        let mut asked = Vec::with_capacity(lines.len());
        for line in lines {
            let quantity = Quantity::parse(line.quantity)?;
            let ordinal = ordinal_of(&sale, line.variant_id)?;
            if asked.iter().any(|&(k, _)| k == ordinal) {
                return Err(invalid_field("lines", "each variant at most once per cart").into());
            }
            asked.push((ordinal, quantity.get()));
        }
        if !sale.has_variants() {
            // The one line of a one-variant sale: exactly the v1 reserve.
            let mut reserved = self
                .reserve(
                    sale_id,
                    shopper,
                    Quantity::parse(asked[0].1)?,
                    idempotency_key,
                )
                .await?;
            reserved.reservation.lines = lines.to_vec();
            return Ok(reserved);
        }
        let id = self.projection.new_reservation_id(sale_id, shopper).await?;
        let ask = Ask::Cart {
            lines: &asked,
            variants: sale.variants.len() as u32,
        };
        loop {
            let outcome = self
                .projection
                .reserve_ask(
                    sale_id,
                    self.now().timestamp_millis(),
                    id,
                    shopper,
                    ask,
                    idempotency_key,
                )
                .await?;
            return match outcome {
                ReserveOutcome::NoState => {
                    self.rebuild(sale_id).await?;
                    continue;
                }
                ReserveOutcome::Held {
                    id: held,
                    stripe,
                    deadline_ms,
                } => Ok(Reserved {
                    reservation: Reservation {
                        reservation_id: held,
                        sale_id,
                        quantity: asked.iter().map(|&(_, q)| q).sum(),
                        status: ReservationStatus::Held,
                        expires_at: ms_to_time(deadline_ms),
                        lines: lines.to_vec(),
                    },
                    created: held == id.in_stripe(stripe),
                }),
                ReserveOutcome::IdempotencyMismatch => Err(Error::IdempotencyKeyReused),
                ReserveOutcome::NotLive => Err(Error::SaleNotLive),
                ReserveOutcome::LimitExceeded(limit) => Err(Error::PerUserLimitExceeded(limit)),
                ReserveOutcome::VariantLimitExceeded(ordinal, limit) => {
                    Err(Error::VariantLimitExceeded {
                        variant: variant_id_of(&sale, ordinal)?,
                        limit,
                    })
                }
                ReserveOutcome::SoldOutLines(short) => Err(Error::SoldOutLines(
                    short
                        .into_iter()
                        .map(|(ordinal, available)| {
                            let requested = asked
                                .iter()
                                .find(|&&(k, _)| k == ordinal)
                                .map_or(0, |&(_, q)| q);
                            Ok(ShortLine {
                                variant_id: variant_id_of(&sale, ordinal)?,
                                requested,
                                available,
                            })
                        })
                        .collect::<Result<_>>()?,
                )),
                ReserveOutcome::SoldOut => Err(Error::SoldOut),
                ReserveOutcome::VariantRequired => Err(Error::VariantRequired),
            };
        }
    }

    /// A hold's lines by variant id: its cart lines; for a one-variant sale's hold the
    /// one line, or none for a v1 sale (its answers keep the v1 shape).
    pub(super) async fn hold_lines(
        &self,
        sale: SaleId,
        hold: &HoldRecord,
    ) -> Result<Vec<CartLine>> {
        let sale = self.store.get(sale).await?;
        if hold.lines.is_empty() {
            return Ok(match sale.variants.first() {
                Some(first) if sale.lists_variants() => vec![CartLine {
                    variant_id: first.id,
                    quantity: hold.quantity,
                }],
                _ => Vec::new(),
            });
        }
        hold.lines
            .iter()
            .map(|line| {
                Ok(CartLine {
                    variant_id: variant_id_of(&sale, line.ordinal)?,
                    quantity: line.quantity,
                })
            })
            .collect()
    }
}

/// The ordinal of `variant` in `sale`; a variant of no such sale is the client's error.
fn ordinal_of(sale: &Sale, variant: VariantId) -> Result<u32> {
    sale.variants
        .iter()
        .find(|v| v.id == variant)
        .map(|v| v.ordinal as u32)
        .ok_or_else(|| invalid_field("lines.variant_id", "is not a variant of this sale").into())
}

fn variant_id_of(sale: &Sale, ordinal: u32) -> Result<VariantId> {
    sale.variants
        .iter()
        .find(|v| v.ordinal as u32 == ordinal)
        .map(|v| v.id)
        .ok_or_else(|| {
            Error::Internal(anyhow::anyhow!("sale {} has no variant {ordinal}", sale.id))
        })
}
