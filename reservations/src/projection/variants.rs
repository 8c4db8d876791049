//! Variants in Redis: the extra keys of a multi-variant sale, the retry that finds
//! how many a caller must pass, the cart reserve, and per-variant stock reads.
//!
//! # Decisions
//!
//! - **A one-variant sale is exactly v1**: the eight keys, the v1 scripts, no extra
//!   meta field and no extra read on the reserve path (the v1 reserve script reads one
//!   more field of the meta it already reads, to answer `variant_required` for a sale
//!   with several variants).
//! - **A multi-variant sale keeps one state per stripe**, as v1: one meta, one holds
//!   hash, one deadline set, one per-shopper hash, in the stripe's hash tag. Only the
//!   free list is split: one per variant (`free` for variant 0, `free:<k>` for k ≥ 1,
//!   same hash tag, passed as KEYS 9..). Per-variant counters (`total:<k>`,
//!   `held:<k>`, `sold:<k>`), the variant's own limit (`limit:<k>`) and the unit ranges
//!   of each variant (`ranges`) live in the meta hash; per-variant per-shopper counts
//!   in `users` under `<shopper>:<k>`. So every hold script keeps working on one hash
//!   tag, and a cart is one script on one slot: every line is checked before any unit
//!   is popped (all or none, nothing held when a line fails, the answer names the
//!   failing lines with what is left).
//! - **A cart lives in one stripe.** With stripes, units of every variant are spread
//!   over the stripes (unit u in stripe (u − 1) mod S), and a cart is tried in the
//!   shopper's home stripe, then in the next stripes in order, until one can serve
//!   every line. What stays exact: conservation and "each unit held or sold once", per
//!   variant and per stripe. What does not: a cart may be refused while its units exist
//!   spread over two stripes (line 1 only in stripe 0, line 2 only in stripe 1); the
//!   refusal then names the home stripe's shortages. Striping is for sales so hot that
//!   this corner (the last few units) costs less than one slot's throughput.
//! - **How many variant keys to pass** is cached per sale in the process (the count
//!   only grows, before the start). A script that moves units of a multi-variant sale
//!   raises `VARIANTS <n>` before any write when it got fewer; the call is made again
//!   with n ([`Projection::invoke_varied`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redis::{Script, ScriptInvocation, Value};

use super::holds::{Reply, ReserveOutcome};
use super::keys::{stripe_unit_count, SaleKeys, Stripe};
use super::scripts::Fields;
use super::{stripe_mismatch, Projection};
use crate::ids::{ReservationId, SaleId, ShopperId};
use crate::sales::{variant_of_unit, Sale, StockView};
use crate::{Error, Result};

/// Variant counts of the sales this process has seen with more than one variant.
#[derive(Clone, Default)]
pub(super) struct VariantCounts(Arc<Mutex<HashMap<SaleId, u32>>>);

impl VariantCounts {
    fn get(&self, sale: SaleId) -> u32 {
        self.0
            .lock()
            .map(|m| m.get(&sale).copied().unwrap_or(1))
            .unwrap_or(1)
    }

    fn set(&self, sale: SaleId, n: u32) {
        if let Ok(mut m) = self.0.lock() {
            let entry = m.entry(sale).or_insert(1);
            *entry = (*entry).max(n);
        }
    }
}

/// The `{ variants }` part of the load script's arguments (see `lua/load.lua`).
pub(super) fn load_arg(sale: &Sale, total: &[i64], sold: &[i64]) -> String {
    if !sale.has_variants() {
        return String::new();
    }
    serde_json::json!({
        "n": sale.variants.len(),
        "ranges": ranges_arg(sale),
        "total": total,
        "sold": sold,
        "limit": sale.variants.iter().map(|v| v.per_user_limit.unwrap_or(0)).collect::<Vec<_>>(),
    })
    .to_string()
}

/// meta.ranges of a multi-variant sale: "a-b:k,..." for every unit range of variant k.
pub(super) fn ranges_arg(sale: &Sale) -> String {
    let ranges: Vec<String> = sale
        .variants
        .iter()
        .flat_map(|v| {
            v.units
                .iter()
                .map(move |r| format!("{}-{}:{}", r.first, r.last, v.ordinal))
        })
        .collect();
    ranges.join(",")
}

/// Per stripe, each variant's (total, sold) in that stripe: its units there, minus
/// its taken units there, plus its sold ones (sold units count in the total).
pub(super) fn counts_per_stripe(
    sale: &Sale,
    taken: &[i32],
    sold: &[i32],
    stripes: u32,
) -> Vec<(Vec<i64>, Vec<i64>)> {
    let n = sale.variants.len();
    let mut out = vec![(vec![0i64; n], vec![0i64; n]); stripes as usize];
    for v in &sale.variants {
        for r in &v.units {
            for (k, (total, _)) in out.iter_mut().enumerate() {
                total[v.ordinal as usize] += stripe_unit_count(r.last.into(), stripes, k as u32)
                    - stripe_unit_count((r.first - 1).into(), stripes, k as u32);
            }
        }
    }
    let stripe_of = |unit: i32| Stripe::of_unit(sale.id, unit.into(), stripes).index as usize;
    for &unit in taken {
        if let Some(v) = variant_of_unit(&sale.variants, unit) {
            out[stripe_of(unit)].0[v.ordinal as usize] -= 1;
        }
    }
    for &unit in sold {
        if let Some(v) = variant_of_unit(&sale.variants, unit) {
            out[stripe_of(unit)].0[v.ordinal as usize] += 1;
            out[stripe_of(unit)].1[v.ordinal as usize] += 1;
        }
    }
    out
}

/// Splits "a-b,c-d" free ranges of a multi-variant sale by the variant owning each
/// unit: "a-x:0,y-b:1,...". A one-variant sale's ranges are left as they are.
pub(super) fn free_ranges_by_variant(sale: &Sale, ranges: &str) -> String {
    if !sale.has_variants() {
        return ranges.to_owned();
    }
    let mut owned: Vec<(i32, i32, i32)> = sale
        .variants
        .iter()
        .flat_map(|v| v.units.iter().map(move |r| (r.first, r.last, v.ordinal)))
        .collect();
    owned.sort_unstable();
    let mut out = Vec::new();
    for range in ranges.split(',').filter(|r| !r.is_empty()) {
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) else {
            continue;
        };
        for &(first, last, ordinal) in &owned {
            let (lo, hi) = (a.max(first), b.min(last));
            if lo <= hi {
                out.push(format!("{lo}-{hi}:{ordinal}"));
            }
        }
    }
    out.join(",")
}

/// What the cart script answered on one stripe.
enum CartReply {
    Held { id: ReservationId, deadline_ms: i64 },
    NoState,
    Stripes(i64),
    Elsewhere(u32),
    IdempotencyMismatch,
    NotLive,
    UnknownVariant,
    SaleLimit(i64),
    VariantLimit(u32, i64),
    SoldOut(Vec<(u32, i64)>),
}

impl CartReply {
    fn parse(reply: Value) -> Result<Self> {
        let fields = Fields::new("reserve_cart", reply)?;
        let ordinal = |i| u32::try_from(fields.int(i)?).map_err(|_| fields.unexpected());
        match fields.tag()?.as_str() {
            "ok" => Ok(Self::Held {
                id: fields
                    .text(1)?
                    .parse()
                    .map_err(|e| Error::Internal(anyhow::anyhow!("hold id: {e}")))?,
                deadline_ms: fields.int(2)?,
            }),
            "no_state" => Ok(Self::NoState),
            "stripes" => Ok(Self::Stripes(fields.int(1)?)),
            "elsewhere" => Ok(Self::Elsewhere(ordinal(1)?)),
            "idem_mismatch" => Ok(Self::IdempotencyMismatch),
            "not_live" => Ok(Self::NotLive),
            "unknown_variant" => fields.int(1).map(|_| Self::UnknownVariant),
            "limit" => match fields.text(1)?.as_str() {
                "sale" => Ok(Self::SaleLimit(fields.int(2)?)),
                "variant" => Ok(Self::VariantLimit(ordinal(2)?, fields.int(3)?)),
                _ => Err(fields.unexpected()),
            },
            "sold_out" if fields.len() >= 3 && fields.len() % 2 == 1 => Ok(Self::SoldOut(
                (1..fields.len())
                    .step_by(2)
                    .map(|i| Ok((ordinal(i)?, fields.int(i + 1)?)))
                    .collect::<Result<_>>()?,
            )),
            _ => Err(fields.unexpected()),
        }
    }
}

impl Projection {
    /// Remembers that `sale` has `variants` variants (from Postgres), so the next calls
    /// pass all its free lists at once.
    pub fn know_variants(&self, sale: SaleId, variants: usize) {
        if variants > 1 {
            self.variant_counts.set(sale, variants as u32);
        }
    }

    /// The keys of a stripe with every variant free list this process knows of.
    pub fn varied_keys(&self, stripe: Stripe) -> SaleKeys {
        self.stripe_keys(stripe)
            .with_variants(self.variant_counts.get(stripe.sale))
    }

    /// Runs `script` on a stripe with the variant keys; when the script answers that
    /// the sale has more variants than were passed (`VARIANTS <n>`, raised before any
    /// write), learns n and runs it again.
    pub(super) async fn invoke_varied(
        &self,
        stripe: Stripe,
        script: &Script,
        build: impl Fn(&mut ScriptInvocation<'_>),
    ) -> Result<Value> {
        for _ in 0..3 {
            let keys = self.varied_keys(stripe);
            let mut call = keys.invoke(script);
            build(&mut call);
            match call.invoke_async::<Value>(&mut self.conn.clone()).await {
                Err(e) if e.code() == Some("VARIANTS") => {
                    let n = e
                        .detail()
                        .and_then(|d| d.split_whitespace().next())
                        .and_then(|n| n.parse::<u32>().ok())
                        .ok_or_else(|| Error::Internal(anyhow::anyhow!("script error: {e}")))?;
                    self.variant_counts.set(stripe.sale, n);
                }
                other => return Ok(other?),
            }
        }
        Err(Error::Internal(anyhow::anyhow!(
            "sale {} kept answering with more variants than passed",
            stripe.sale
        )))
    }

    /// Runs the cart script on one stripe.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn reserve_cart_in(
        &self,
        stripe: Stripe,
        now_ms: i64,
        id: ReservationId,
        shopper: ShopperId,
        lines: &[(u32, i64)],
        variants: u32,
        key: &str,
        home: bool,
    ) -> Result<Reply> {
        self.variant_counts.set(stripe.sale, variants);
        let reply = self
            .invoke_varied(stripe, &self.scripts.reserve_cart, |call| {
                call.arg(now_ms)
                    .arg(id.to_string())
                    .arg(shopper.to_string())
                    .arg(key)
                    .arg(self.stripes)
                    .arg(if home { "1" } else { "0" });
                for &(ordinal, quantity) in lines {
                    call.arg(ordinal).arg(quantity);
                }
            })
            .await?;
        Ok(Reply::Outcome(match CartReply::parse(reply)? {
            CartReply::Held { id, deadline_ms } => ReserveOutcome::Held {
                id,
                stripe: stripe.index,
                deadline_ms,
            },
            CartReply::NoState => ReserveOutcome::NoState,
            CartReply::Stripes(loaded) => {
                return Err(stripe_mismatch(stripe.sale, loaded, self.stripes))
            }
            CartReply::Elsewhere(k) => return Ok(Reply::Elsewhere(k)),
            CartReply::IdempotencyMismatch => ReserveOutcome::IdempotencyMismatch,
            CartReply::NotLive => ReserveOutcome::NotLive,
            // The caller mapped variant ids to ordinals from Postgres; Redis knowing
            // fewer means its state predates a variant: rebuild it.
            CartReply::UnknownVariant => ReserveOutcome::NoState,
            CartReply::SaleLimit(limit) => ReserveOutcome::LimitExceeded(limit),
            CartReply::VariantLimit(ordinal, limit) => {
                ReserveOutcome::VariantLimitExceeded(ordinal, limit)
            }
            CartReply::SoldOut(lines) => ReserveOutcome::SoldOutLines(lines),
        }))
    }

    /// Deletes every stripe's state of a sale that has not started (its variants
    /// changed), for a load from Postgres to write it anew. Only before the start: a
    /// hold's record would go with it.
    pub async fn drop_state(&self, sale: &Sale) -> Result<()> {
        self.know_variants(sale.id, sale.variants.len());
        for stripe in self.stripes(sale.id) {
            let keys = self
                .stripe_keys(stripe)
                .with_variants(sale.variants.len() as u32);
            let mut del = redis::cmd("DEL");
            for key in keys.all().iter() {
                del.arg(key);
            }
            for k in 1..sale.variants.len() as u32 {
                del.arg(keys.variant_free(k));
            }
            let _: i64 = del.query_async(&mut self.conn.clone()).await?;
        }
        Ok(())
    }

    /// The stock of a sale and of each of its variants (in ordinal order; one entry,
    /// equal to the sale's, for a one-variant sale), summed over the stripes; `None`
    /// when a stripe's state is missing.
    pub async fn stock_by_variant(
        &self,
        sale: &Sale,
    ) -> Result<Option<(StockView, Vec<StockView>)>> {
        self.know_variants(sale.id, sale.variants.len());
        let reads = self
            .stripes(sale.id)
            .map(|stripe| self.stripe_stock_by_variant(stripe));
        let mut sum = StockView::default();
        let mut per_variant = vec![StockView::default(); sale.variants.len().max(1)];
        for read in futures::future::try_join_all(reads).await? {
            let Some((view, loaded_with, variants)) = read else {
                return Ok(None);
            };
            if loaded_with != i64::from(self.stripes) {
                return Err(stripe_mismatch(sale.id, loaded_with, self.stripes));
            }
            add(&mut sum, &view);
            if sale.has_variants() {
                if variants.len() != per_variant.len() {
                    // Loaded before a variant was added: the caller rebuilds.
                    return Ok(None);
                }
                for (total, v) in per_variant.iter_mut().zip(&variants) {
                    add(total, v);
                }
            }
        }
        if !sale.has_variants() {
            per_variant[0] = sum;
        }
        Ok(Some((sum, per_variant)))
    }
}

fn add(sum: &mut StockView, view: &StockView) {
    sum.total += view.total;
    sum.available += view.available;
    sum.held += view.held;
    sum.sold += view.sold;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{MerchantId, VariantId};
    use crate::sales::{Admission, Money, SaleState, UnitRange, Variant};

    fn sale(ranges: &[&[(i32, i32)]]) -> Sale {
        let now = chrono::Utc::now();
        Sale {
            id: SaleId::new(),
            merchant_id: MerchantId::new(),
            name: "s".into(),
            sku: "S0".into(),
            description: String::new(),
            price: Money {
                amount_minor: 1,
                currency: "EUR".into(),
            },
            unit_count: 0,
            total: 0,
            per_user_limit: 1,
            hold_ttl_seconds: 60,
            cancel_window_seconds: 900,
            starts_at: now,
            ends_at: now,
            state: SaleState::Active,
            version: 1,
            admission: Admission::default(),
            created_at: now,
            draw_beacon: None,
            access: Default::default(),
            message: None,
            variants: ranges
                .iter()
                .enumerate()
                .map(|(k, units)| Variant {
                    id: VariantId::new(),
                    ordinal: k as i32,
                    sku: format!("S{k}"),
                    name: String::new(),
                    price: Money {
                        amount_minor: 1,
                        currency: "EUR".into(),
                    },
                    per_user_limit: None,
                    total: 0,
                    units: units
                        .iter()
                        .map(|&(first, last)| UnitRange { first, last })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn free_ranges_are_split_by_the_variant_owning_each_unit() {
        let two = sale(&[&[(1, 4), (9, 10)], &[(5, 8)]]);
        assert_eq!(
            free_ranges_by_variant(&two, "2-6,8-10"),
            "2-4:0,5-6:1,8-8:1,9-10:0"
        );
        let one = sale(&[&[(1, 10)]]);
        assert_eq!(free_ranges_by_variant(&one, "2-6"), "2-6");
        assert_eq!(load_arg(&one, &[10], &[0]), "");
    }

    #[test]
    fn a_cart_sold_out_reply_names_each_short_line() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![bulk("sold_out"), Value::Int(1), Value::Int(0)]);
        assert!(matches!(
            CartReply::parse(reply).unwrap(),
            CartReply::SoldOut(lines) if lines == vec![(1, 0)]
        ));
        assert!(CartReply::parse(Value::Array(vec![bulk("sold_out")])).is_err());
        assert!(CartReply::parse(Value::Array(vec![bulk("nope")])).is_err());
    }
}
