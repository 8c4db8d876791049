//! A shopper's holds: reserve (after the caller checked admission), read, release.
//!
//! A reservation id names its sale and stripe (see [`crate::ids`]): a well-formed id
//! whose hold Redis does not know — lost with Redis state, or a reserve that never ran
//! — answers as an expired hold (`ReservationExpired`), since its sale exists and the
//! hold, if it ever was, can no longer be bought. An id that names no sale, and a
//! legacy id whose index entry or hold is gone, is not found.

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::Sales;
use crate::ids::{ReservationId, SaleId, ShopperId};
use crate::projection::{Release, ReserveOutcome};
use crate::sales::limits;
use crate::{Error, Result};

/// Units a shopper asks for: 1..=100 (the highest per-shopper limit), parsed at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(i64);

impl Quantity {
    /// Accepts 1..=100.
    pub fn parse(value: i64) -> Result<Quantity> {
        if limits::PER_USER_LIMIT.contains(&value) {
            Ok(Quantity(value))
        } else {
            Err(Error::InvalidQuantity(format!(
                "quantity must be between 1 and {}",
                limits::PER_USER_LIMIT.end()
            )))
        }
    }

    /// The number of units.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// The status of a reservation as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Units are held for the shopper until `expires_at`.
    Held,
    /// An order was placed for it.
    CheckedOut,
    /// The shopper gave it back.
    Released,
    /// Its deadline passed.
    Expired,
}

/// A hold as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reservation {
    /// The hold's id.
    pub reservation_id: ReservationId,
    /// Its sale.
    pub sale_id: SaleId,
    /// Units held.
    pub quantity: i64,
    /// Where it stands.
    pub status: ReservationStatus,
    /// When it stops holding the units.
    pub expires_at: DateTime<Utc>,
    /// What it holds, per variant (v1.1). Absent for a v1 hold (`{ quantity }` of a
    /// v1 sale), whose answer keeps the v1 shape.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<super::CartLine>,
}

/// Result of a reserve call: the reservation, and whether it was created now (201) or
/// replayed from an idempotency key.
#[derive(Debug, Clone)]
pub struct Reserved {
    /// The reservation.
    pub reservation: Reservation,
    /// False when an earlier request with the same key created it.
    pub created: bool,
}

pub(super) fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl Sales {
    /// Holds `quantity` units of a sale for a shopper. The caller has checked admission.
    pub async fn reserve(
        &self,
        sale: SaleId,
        shopper: ShopperId,
        quantity: Quantity,
        idempotency_key: Option<&str>,
    ) -> Result<Reserved> {
        // Chosen before the script runs, so a lost reply strands nothing: the hold is
        // in the stripe the id names (home, or a fallback the id was moved to after
        // home answered sold out), or it was never made.
        let id = self.projection.new_reservation_id(sale, shopper).await?;
        loop {
            let outcome = self
                .projection
                .reserve(
                    sale,
                    self.now().timestamp_millis(),
                    id,
                    shopper,
                    quantity.get(),
                    idempotency_key,
                )
                .await?;
            return match outcome {
                ReserveOutcome::NoState => {
                    self.rebuild(sale).await?;
                    continue;
                }
                ReserveOutcome::Held {
                    id: held,
                    stripe,
                    deadline_ms,
                } => {
                    // A replay answers the first hold of the key, under another id.
                    let created = held == id.in_stripe(stripe);
                    Ok(Reserved {
                        reservation: Reservation {
                            reservation_id: held,
                            sale_id: sale,
                            quantity: quantity.get(),
                            status: ReservationStatus::Held,
                            expires_at: ms_to_time(deadline_ms),
                            // A v1 reserve answers the v1 shape; a cart fills them in.
                            lines: Vec::new(),
                        },
                        created,
                    })
                }
                ReserveOutcome::IdempotencyMismatch => Err(Error::IdempotencyKeyReused),
                ReserveOutcome::NotLive => Err(Error::SaleNotLive),
                ReserveOutcome::LimitExceeded(limit) => Err(Error::PerUserLimitExceeded(limit)),
                ReserveOutcome::SoldOut | ReserveOutcome::SoldOutLines(_) => Err(Error::SoldOut),
                ReserveOutcome::VariantRequired => Err(Error::VariantRequired),
                ReserveOutcome::VariantLimitExceeded(_, limit) => {
                    Err(Error::PerUserLimitExceeded(limit))
                }
            };
        }
    }

    /// A shopper's own reservation; another shopper's is not found.
    pub async fn reservation(&self, shopper: ShopperId, id: ReservationId) -> Result<Reservation> {
        let stripe = self
            .projection
            .reservation_stripe(id)
            .await?
            .ok_or(Error::ReservationNotFound)?;
        let hold = match self.projection.hold(stripe, id).await? {
            Some(hold) if hold.owner == shopper => hold,
            Some(_) => return Err(Error::ReservationNotFound),
            None => return Err(lost(id)),
        };
        let now_ms = self.now().timestamp_millis();
        let status = match hold.status.as_str() {
            // `returned`: checked out, and its order cancelled or refunded since
            // (`crate::order_life`); the reservation itself was checked out.
            "checked_out" | "returned" => ReservationStatus::CheckedOut,
            "released" => ReservationStatus::Released,
            "expired" => ReservationStatus::Expired,
            // Past its deadline but not yet swept: it can no longer be checked out.
            "held" if hold.deadline_ms <= now_ms => ReservationStatus::Expired,
            _ => ReservationStatus::Held,
        };
        let lines = self.hold_lines(stripe.sale, &hold).await?;
        Ok(Reservation {
            reservation_id: id,
            sale_id: stripe.sale,
            quantity: hold.quantity,
            status,
            expires_at: ms_to_time(hold.deadline_ms),
            lines,
        })
    }

    /// The shopper gives a hold back; its units are free at once.
    pub async fn release(&self, shopper: ShopperId, id: ReservationId) -> Result<()> {
        let stripe = self
            .projection
            .reservation_stripe(id)
            .await?
            .ok_or(Error::ReservationNotFound)?;
        match self.projection.release(stripe, id, shopper).await? {
            Release::Released => Ok(()),
            Release::NotFound => Err(Error::ReservationNotFound),
            Release::Missing => Err(lost(id)),
            Release::NotHeld(status) => Err(Error::ReservationNotHeld(status)),
        }
    }
}

/// The answer for a located reservation whose hold Redis does not have: expired when
/// its id names a sale that exists (it was located, so it does), not found for a
/// legacy id (its answer before ids named their stripe).
fn lost(id: ReservationId) -> Error {
    if id.address().is_some() {
        Error::ReservationExpired
    } else {
        Error::ReservationNotFound
    }
}
