//! Holds in Redis: reserve (home stripe first), release, the checkout handshake
//! (begin, finish, stale commits), a hold's record, and where a reservation lives.
//!
//! A reservation's routes name only the hold. Its id says where the hold lives (sale
//! ordinal and stripe, see [`crate::ids`]): the server mints it before the reserve
//! script runs, and a reserve is one script call, one Redis round trip. Whatever
//! becomes of the reply, the hold is in that stripe's hash under that id or it never
//! existed; a lookup costs no Redis round trip (the ordinal map is in process).
//!
//! # Rolling deploy: the legacy index (remove after the deploy)
//!
//! Processes before this layout minted version 4 ids and wrote an index key
//! `<prefix>:resv:{<id>}` → `<sale>[:<stripe>]` after each reserve. A v4 id is looked
//! up there ([`Projection::reservation_stripe`] → `legacy_index_stripe`) for as long as
//! such a hold can live: its sale's hold TTL (at most an hour) after the last old
//! process is gone. After that, delete `legacy_index_stripe`, `reservation_key` and
//! `Stripe::parse_index_value`: a v4 id then simply locates nothing (404). While old
//! and new processes run side by side, an old one answers 404 for a hold a new one
//! made (it reads only the index) until the old ones are gone; the hold itself is
//! untouched, and a retry that reaches a new process finds it.

use serde::Deserialize;

use super::keys::{home_stripe, Stripe};
use super::scripts::{
    parse_note_elsewhere, BeginCheckout, FinishReply, ReleaseReply, ReserveReply,
};
use super::{stripe_mismatch, Projection};
use crate::ids::{OrderId, ReservationId, SaleId, ShopperId};
use crate::{Error, Result};

/// What a reserve decided, over the stripes it visited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// The hold exists (new, or the first answer to this idempotency key).
    Held {
        /// The hold's id.
        id: ReservationId,
        /// The stripe it lives in.
        stripe: u32,
        /// When it expires, in ms since the epoch.
        deadline_ms: i64,
    },
    /// The state of a stripe the reserve visited is not in Redis.
    NoState,
    /// The idempotency key was used with another body.
    IdempotencyMismatch,
    /// Not between start and end, or paused/ended.
    NotLive,
    /// The per-shopper limit would be passed.
    LimitExceeded(i64),
    /// Not enough free units.
    SoldOut,
    /// A cart's lines that its stripe could not serve: (variant ordinal, free units of
    /// that variant there). The home stripe's answer when no stripe could serve it.
    SoldOutLines(Vec<(u32, i64)>),
    /// A variant's own per-shopper limit would be passed: (ordinal, limit).
    VariantLimitExceeded(u32, i64),
    /// A `{ quantity }` reserve of a sale with several variants.
    VariantRequired,
}

/// What a reserve asks for: units of a one-variant sale, or a cart of a multi-variant
/// sale (see `variants`).
#[derive(Debug, Clone, Copy)]
pub enum Ask<'a> {
    /// `quantity` units (the v1 reserve script).
    Units(i64),
    /// Lines (variant ordinal, quantity) with distinct ordinals, of a sale with this
    /// many variants (the cart script).
    Cart {
        /// The lines.
        lines: &'a [(u32, i64)],
        /// The sale's variant count.
        variants: u32,
    },
}

/// A hold as stored in Redis.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct HoldRecord {
    /// Owner.
    #[serde(rename = "o")]
    pub owner: ShopperId,
    /// Number of units.
    #[serde(rename = "q")]
    pub quantity: i64,
    /// The unit numbers.
    #[serde(rename = "u", deserialize_with = "units_or_empty")]
    pub units: Vec<i64>,
    /// Deadline, ms since the epoch.
    #[serde(rename = "d")]
    pub deadline_ms: i64,
    /// `held`, `committing`, `checked_out`, `released` or `expired`.
    #[serde(rename = "s")]
    pub status: String,
    /// The order of the checkout attempt that is (or was) committing it.
    #[serde(rename = "r", default)]
    pub order: Option<OrderId>,
    /// A cart's lines (a multi-variant sale's hold); none for a one-variant sale's.
    #[serde(rename = "l", default, deserialize_with = "lines_or_empty")]
    pub lines: Vec<HoldLine>,
}

/// One line of a cart hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct HoldLine {
    /// The variant's ordinal.
    #[serde(rename = "v")]
    pub ordinal: u32,
    /// Units of it.
    #[serde(rename = "q")]
    pub quantity: i64,
}

/// As [`units_or_empty`]: cjson writes an empty table as `{}`.
fn lines_or_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<HoldLine>, D::Error> {
    use serde::de::Error as _;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Object(map) if map.is_empty() => Ok(Vec::new()),
        other => serde_json::from_value(other).map_err(D::Error::custom),
    }
}

/// How a checkout ended, for `finish_checkout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish<'a> {
    /// The order committed with these units.
    Sold(&'a [i32]),
    /// Nothing committed; the hold returns to `held`.
    Abort,
    /// These units were sold to another order; the hold ends.
    Conflict(&'a [i32]),
    /// Nothing committed and the hold can never be bought (the shopper's orders would
    /// pass the per-shopper limit): it ends and all its units are free again.
    Release,
}

/// What a shopper's release did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// The hold is released; its units are free.
    Released,
    /// The hold had already ended in this status.
    NotHeld(String),
    /// Another shopper's hold.
    NotFound,
    /// Redis has no hold under this id (lost with Redis state, or never made).
    Missing,
}

/// cjson encodes an empty Lua table as `{}`, not `[]`; anything but unit numbers is a
/// corrupt record and an error, never silently dropped.
fn units_or_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    use serde::de::Error as _;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| D::Error::custom(format!("unit {v} is not a number")))
            })
            .collect(),
        serde_json::Value::Object(map) if map.is_empty() => Ok(Vec::new()),
        other => Err(D::Error::custom(format!("units: {other}"))),
    }
}

/// What one stripe's reserve script answered.
pub(super) enum Reply {
    /// An answer to give (or, for `SoldOut`, to fall back on).
    Outcome(ReserveOutcome),
    /// The first answer to this idempotency key is a hold in that stripe.
    Elsewhere(u32),
}

impl Projection {
    /// Holds `quantity` units for a shopper: in their home stripe, or — only when it is
    /// sold out — in the next stripe that can serve the whole quantity, in a fixed order
    /// from home. A quantity that no single stripe can serve is sold out. In stripe k
    /// the hold is made under `id.in_stripe(k)` (see [`Self::new_reservation_id`]), so
    /// its id names the stripe it lives in.
    pub async fn reserve(
        &self,
        sale: SaleId,
        now_ms: i64,
        id: ReservationId,
        shopper: ShopperId,
        quantity: i64,
        idempotency_key: Option<&str>,
    ) -> Result<ReserveOutcome> {
        self.reserve_ask(
            sale,
            now_ms,
            id,
            shopper,
            Ask::Units(quantity),
            idempotency_key,
        )
        .await
    }

    /// [`Self::reserve`] of units or of a cart: a cart too lives wholly in one stripe,
    /// home first, then the next stripes in order while a stripe cannot serve every
    /// line.
    pub async fn reserve_ask(
        &self,
        sale: SaleId,
        now_ms: i64,
        id: ReservationId,
        shopper: ShopperId,
        quantity: Ask<'_>,
        idempotency_key: Option<&str>,
    ) -> Result<ReserveOutcome> {
        let home = home_stripe(shopper, self.stripes);
        let key = idempotency_key.unwrap_or("");
        // A second round happens only when a concurrent request with the same key won
        // (see `note_elsewhere`); the next round replays its answer.
        for _round in 0..3 {
            let mut outcome = ReserveOutcome::SoldOut;
            let mut first_sold_out = None;
            for step in 0..self.stripes {
                let stripe = Stripe::new(sale, (home + step) % self.stripes);
                let reply = self
                    .reserve_in(
                        stripe,
                        now_ms,
                        id.in_stripe(stripe.index),
                        shopper,
                        quantity,
                        key,
                        step == 0,
                    )
                    .await?;
                outcome = match reply {
                    Reply::Outcome(
                        sold_out @ (ReserveOutcome::SoldOut | ReserveOutcome::SoldOutLines(_)),
                    ) => {
                        first_sold_out.get_or_insert(sold_out);
                        outcome = first_sold_out.clone().expect("just set");
                        continue;
                    }
                    Reply::Outcome(outcome) => outcome,
                    Reply::Elsewhere(k) if k < self.stripes => {
                        match self
                            .reserve_in(
                                Stripe::new(sale, k),
                                now_ms,
                                id.in_stripe(k),
                                shopper,
                                quantity,
                                key,
                                false,
                            )
                            .await?
                        {
                            Reply::Outcome(outcome) => outcome,
                            Reply::Elsewhere(_) => ReserveOutcome::IdempotencyMismatch,
                        }
                    }
                    Reply::Elsewhere(_) => ReserveOutcome::IdempotencyMismatch,
                };
                break;
            }
            let ReserveOutcome::Held {
                id: held, stripe, ..
            } = outcome
            else {
                return Ok(outcome);
            };
            let ours = id.in_stripe(stripe);
            if stripe == home || held != ours {
                return Ok(outcome);
            }
            // A new hold away from home: tell the home stripe, unless a concurrent
            // request with the same key already answered there.
            let noted = self
                .stripe_keys(Stripe::new(sale, home))
                .invoke(&self.scripts.note_elsewhere)
                .arg(shopper.to_string())
                .arg(key)
                .arg(stripe)
                .invoke_async(&mut self.conn.clone())
                .await?;
            if parse_note_elsewhere(noted)? {
                return Ok(outcome);
            }
            // Ours is brand new and unseen by anyone: it is still `held`.
            let _ = self
                .release(Stripe::new(sale, stripe), ours, shopper)
                .await?;
        }
        Err(Error::Internal(anyhow::anyhow!(
            "reserve with idempotency key kept losing to concurrent requests"
        )))
    }

    /// Runs the reserve script (or the cart script) on one stripe.
    #[allow(clippy::too_many_arguments)]
    async fn reserve_in(
        &self,
        stripe: Stripe,
        now_ms: i64,
        id: ReservationId,
        shopper: ShopperId,
        quantity: Ask<'_>,
        key: &str,
        home: bool,
    ) -> Result<Reply> {
        let quantity = match quantity {
            Ask::Units(quantity) => quantity,
            Ask::Cart { lines, variants } => {
                return self
                    .reserve_cart_in(stripe, now_ms, id, shopper, lines, variants, key, home)
                    .await
            }
        };
        let reply = self
            .stripe_keys(stripe)
            .evalsha(&self.scripts.reserve, &mut self.conn.clone(), |call| {
                call.arg(now_ms)
                    .arg(id.to_string())
                    .arg(shopper.to_string())
                    .arg(quantity)
                    .arg(key)
                    .arg(self.stripes)
                    .arg(if home { "1" } else { "0" });
            })
            .await?;
        Ok(Reply::Outcome(match ReserveReply::parse(reply)? {
            ReserveReply::Held { id, deadline_ms } => ReserveOutcome::Held {
                id,
                stripe: stripe.index,
                deadline_ms,
            },
            ReserveReply::NoState => ReserveOutcome::NoState,
            ReserveReply::Stripes(loaded) => {
                return Err(stripe_mismatch(stripe.sale, loaded, self.stripes))
            }
            ReserveReply::Elsewhere(k) => return Ok(Reply::Elsewhere(k)),
            ReserveReply::IdempotencyMismatch => ReserveOutcome::IdempotencyMismatch,
            ReserveReply::NotLive => ReserveOutcome::NotLive,
            ReserveReply::Limit(limit) => ReserveOutcome::LimitExceeded(limit),
            ReserveReply::SoldOut => ReserveOutcome::SoldOut,
            ReserveReply::VariantRequired => ReserveOutcome::VariantRequired,
        }))
    }

    /// The shopper releases a hold.
    pub async fn release(
        &self,
        stripe: Stripe,
        id: ReservationId,
        shopper: ShopperId,
    ) -> Result<Release> {
        let reply = self
            .invoke_varied(stripe, &self.scripts.release, |call| {
                call.arg(id.to_string()).arg(shopper.to_string());
            })
            .await?;
        Ok(match ReleaseReply::parse(reply)? {
            ReleaseReply::Released => Release::Released,
            ReleaseReply::NotHeld(status) => Release::NotHeld(status),
            ReleaseReply::NotFound => Release::NotFound,
            ReleaseReply::Missing => Release::Missing,
        })
    }

    /// Moves a hold to `committing` for the checkout attempt of `order`.
    pub async fn begin_checkout(
        &self,
        stripe: Stripe,
        id: ReservationId,
        shopper: ShopperId,
        now_ms: i64,
        order: OrderId,
    ) -> Result<BeginCheckout> {
        let reply = self
            .stripe_keys(stripe)
            .invoke(&self.scripts.begin_checkout)
            .arg(id.to_string())
            .arg(shopper.to_string())
            .arg(now_ms)
            .arg(order.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        BeginCheckout::parse(reply)
    }

    /// Ends a committing hold by what Postgres did. The script's answer (done, nothing
    /// to do, state missing) needs no action here: a missing state is rebuilt from
    /// Postgres, where the order already is or is not.
    pub async fn finish_checkout(
        &self,
        stripe: Stripe,
        id: ReservationId,
        order: OrderId,
        finish: Finish<'_>,
    ) -> Result<()> {
        let (outcome, units): (&str, &[i32]) = match finish {
            Finish::Sold(units) => ("sold", units),
            Finish::Abort => ("abort", &[]),
            Finish::Conflict(units) => ("conflict", units),
            Finish::Release => ("release", &[]),
        };
        let reply = self
            .invoke_varied(stripe, &self.scripts.finish_checkout, |call| {
                call.arg(id.to_string()).arg(outcome).arg(order.to_string());
                for unit in units {
                    call.arg(unit);
                }
            })
            .await?;
        let _: FinishReply = FinishReply::parse(reply)?;
        Ok(())
    }

    /// Holds of a stripe that began checkout before `before_ms` and are still committing.
    pub async fn stale_commits(
        &self,
        stripe: Stripe,
        before_ms: i64,
    ) -> Result<Vec<(ReservationId, HoldRecord)>> {
        let keys = self.stripe_keys(stripe);
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(keys.committing())
            .arg("-inf")
            .arg(before_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(100)
            .query_async(&mut self.conn.clone())
            .await?;
        let mut stale = Vec::with_capacity(ids.len());
        for raw in ids {
            let Ok(id) = raw.parse::<ReservationId>() else {
                continue;
            };
            if let Some(hold) = self.hold(stripe, id).await? {
                stale.push((id, hold));
            }
        }
        Ok(stale)
    }

    /// A hold's record, if Redis has it.
    pub async fn hold(&self, stripe: Stripe, id: ReservationId) -> Result<Option<HoldRecord>> {
        let raw: Option<String> = redis::cmd("HGET")
            .arg(self.stripe_keys(stripe).holds())
            .arg(id.to_string())
            .query_async(&mut self.conn.clone())
            .await?;
        raw.map(|raw| {
            serde_json::from_str(&raw)
                .map_err(|e| Error::Internal(anyhow::anyhow!("hold record {id}: {e}")))
        })
        .transpose()
    }

    /// A fresh id for a hold of `shopper` in `sale`, naming the sale and the shopper's
    /// home stripe, where the reserve tries first (a fallback to another stripe moves
    /// the id there, see [`Self::reserve`]). No Redis round trip: the sale's ordinal
    /// comes from the in-process map (Postgres on the first use of a sale here).
    pub async fn new_reservation_id(
        &self,
        sale: SaleId,
        shopper: ShopperId,
    ) -> Result<ReservationId> {
        let ordinal = self
            .directory
            .ordinal_of(sale)
            .await?
            .ok_or(Error::SaleNotFound)?;
        Ok(ReservationId::mint(
            ordinal,
            home_stripe(shopper, self.stripes),
        ))
    }

    /// The sale and stripe of a reservation: decoded from its id, the sale found by its
    /// ordinal (no Redis round trip). `None` when the id names no sale of this
    /// deployment, or a stripe the sale does not have. An id of another layout is
    /// looked up in the legacy index (see the module doc).
    pub async fn reservation_stripe(&self, id: ReservationId) -> Result<Option<Stripe>> {
        let Some(address) = id.address() else {
            return self.legacy_index_stripe(id).await;
        };
        if address.stripe >= self.stripes {
            return Ok(None);
        }
        Ok(self
            .directory
            .sale_of(address.sale)
            .await?
            .map(|sale| Stripe::new(sale, address.stripe)))
    }

    /// Legacy (remove after the rolling deploy, see the module doc): the index entry an
    /// older process wrote for a version 4 id.
    async fn legacy_index_stripe(&self, id: ReservationId) -> Result<Option<Stripe>> {
        let raw: Option<String> = redis::cmd("GET")
            .arg(self.reservation_key(id))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(raw.and_then(|s| Stripe::parse_index_value(&s)))
    }

    /// Legacy (remove with `legacy_index_stripe`): the index key of a version 4 id.
    fn reservation_key(&self, id: ReservationId) -> String {
        format!("{}:resv:{{{id}}}", self.prefix)
    }
}
