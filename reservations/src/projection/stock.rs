//! A sale's units in Redis: loading every stripe from Postgres (under the per-sale
//! rebuild lock), copying a changed definition, adding, retiring and un-retiring units,
//! and the reads of stock and of who reached the reserve step.

use redis::Script;

use super::keys::{stripe_unit_count, Stripe};
use super::scripts::{
    parse_add_units, parse_sync_meta, parse_unretire_units, LoadReply, RetireReply, StockReply,
};
use super::{stripe_mismatch, variants, Projection};
use crate::ids::{SaleId, ShopperId};
use crate::sales::{Sale, StockView};
use crate::{Error, Result};

/// Compresses sorted unit numbers to "a-b,c-d" ranges for the load script.
pub fn free_ranges(unit_count: i32, taken: &[i32]) -> String {
    let mut ranges = Vec::new();
    let mut next = 1;
    for &unit in taken {
        if unit > next {
            ranges.push(format!("{next}-{}", unit - 1));
        }
        next = next.max(unit + 1);
    }
    if next <= unit_count {
        ranges.push(format!("{next}-{unit_count}"));
    }
    ranges.join(",")
}

/// Splits `count` units to retire over stripes with `free` units each, one unit from
/// each stripe in turn (stripes that run out drop out), so retiring thins every stripe
/// alike. `None` when there are not that many free units in all.
fn retire_shares(free: &[i64], count: i64) -> Option<Vec<i64>> {
    if free.iter().sum::<i64>() < count {
        return None;
    }
    let mut shares = vec![0; free.len()];
    let mut left = count;
    // Whole rounds first (every stripe still holding units gives as many), then one
    // at a time: linear in the number of stripes, not in `count`.
    while left > 0 {
        let open: Vec<usize> = (0..free.len()).filter(|&i| shares[i] < free[i]).collect();
        let n = open.len() as i64;
        let round = open
            .iter()
            .map(|&i| free[i] - shares[i])
            .min()
            .unwrap_or(0)
            .min(left / n);
        if round > 0 {
            for &i in &open {
                shares[i] += round;
            }
            left -= round * n;
        } else {
            for &i in open.iter().take(left as usize) {
                shares[i] += 1;
            }
            left -= left.min(n);
        }
    }
    Some(shares)
}

/// The definition fields every stripe's meta carries, in the scripts' argument order.
fn meta_args(sale: &Sale) -> [String; 5] {
    [
        sale.state.as_str().to_owned(),
        sale.starts_at.timestamp_millis().to_string(),
        sale.ends_at.timestamp_millis().to_string(),
        sale.per_user_limit.to_string(),
        (i64::from(sale.hold_ttl_seconds) * 1000).to_string(),
    ]
}

impl Projection {
    /// Writes the state of every stripe of a sale that is missing. `taken` is sorted
    /// unit numbers that are sold or retired; `sold` the sorted units sold; `bought` the
    /// units each shopper bought, given to every stripe (after a rebuild each stripe
    /// knows all of a shopper's orders: stricter than while running, never looser).
    /// Returns whether this call loaded any stripe.
    pub async fn load(
        &self,
        sale: &Sale,
        taken: &[i32],
        sold: &[i32],
        bought: &[(ShopperId, i64)],
        bought_by_variant: &[(String, i64)],
    ) -> Result<bool> {
        let ranges = variants::free_ranges_by_variant(sale, &free_ranges(sale.unit_count, taken));
        let mut taken_per_stripe = vec![0i64; self.stripes as usize];
        let mut sold_per_stripe = vec![0i64; self.stripes as usize];
        for &unit in taken {
            taken_per_stripe[Stripe::of_unit(sale.id, unit.into(), self.stripes).index as usize] +=
                1;
        }
        for &unit in sold {
            sold_per_stripe[Stripe::of_unit(sale.id, unit.into(), self.stripes).index as usize] +=
                1;
        }
        let by_variant = sale
            .has_variants()
            .then(|| variants::counts_per_stripe(sale, taken, sold, self.stripes));
        self.know_variants(sale.id, sale.variants.len());
        let mut loaded = false;
        for stripe in self.stripes(sale.id) {
            let k = stripe.index as usize;
            // free + sold: a stripe's units that are not retired.
            let units = stripe_unit_count(sale.unit_count.into(), self.stripes, stripe.index);
            // One stripe: the sale's total, exactly as before striping existed.
            let total = if self.stripes == 1 {
                i64::from(sale.total)
            } else {
                units - taken_per_stripe[k] + sold_per_stripe[k]
            };
            let keys = self
                .stripe_keys(stripe)
                .with_variants(sale.variants.len() as u32);
            let mut call = keys.invoke(&self.scripts.load);
            for arg in meta_args(sale) {
                call.arg(arg);
            }
            call.arg(total)
                .arg(sold_per_stripe[k])
                .arg(sale.unit_count)
                .arg(sale.version)
                .arg(&ranges)
                .arg(self.stripes)
                .arg(stripe.index);
            match &by_variant {
                Some(counts) => {
                    let (total, sold) = &counts[k];
                    call.arg(variants::load_arg(sale, total, sold))
                }
                None => call.arg(""),
            };
            for (shopper, units) in bought {
                call.arg(shopper.to_string()).arg(units);
            }
            for (field, units) in bought_by_variant {
                call.arg(field).arg(units);
            }
            match LoadReply::parse(call.invoke_async(&mut self.conn.clone()).await?)? {
                LoadReply::Loaded => loaded = true,
                LoadReply::OtherStripeCount => {
                    let stored: Option<i64> = redis::cmd("HGET")
                        .arg(keys.meta())
                        .arg("stripes")
                        .query_async(&mut self.conn.clone())
                        .await?;
                    return Err(stripe_mismatch(sale.id, stored.unwrap_or(1), self.stripes));
                }
                LoadReply::Present => {}
            }
        }
        Ok(loaded)
    }

    /// Copies a changed definition into every stripe; false when a stripe's state is
    /// missing.
    pub async fn sync_meta(&self, sale: &Sale) -> Result<bool> {
        let calls = self.stripes(sale.id).map(|stripe| async move {
            let keys = self.stripe_keys(stripe);
            let mut call = keys.invoke(&self.scripts.sync_meta);
            for arg in meta_args(sale) {
                call.arg(arg);
            }
            call.arg(sale.version);
            parse_sync_meta(call.invoke_async(&mut self.conn.clone()).await?)
        });
        let done = futures::future::try_join_all(calls).await?;
        Ok(done.iter().all(|&d| d))
    }

    /// Frees units up to the sale's `unit_count`, each in its stripe; false when a
    /// stripe's state is missing.
    /// Of a multi-variant sale, the new units are `variant`'s (by ordinal).
    pub async fn add_units(&self, sale: &Sale, variant: Option<u32>) -> Result<bool> {
        self.know_variants(sale.id, sale.variants.len());
        let (ordinal, ranges) = match variant.filter(|_| sale.has_variants()) {
            Some(k) => (k.to_string(), variants::ranges_arg(sale)),
            None => (String::new(), String::new()),
        };
        let (ordinal, ranges) = (&ordinal, &ranges);
        let calls = self.stripes(sale.id).map(|stripe| async move {
            let reply = self
                .invoke_varied(stripe, &self.scripts.add_units, |call| {
                    call.arg(sale.unit_count)
                        .arg(sale.total)
                        .arg(self.stripes)
                        .arg(stripe.index)
                        .arg(ordinal)
                        .arg(ranges);
                })
                .await?;
            parse_add_units(reply)
        });
        let added = futures::future::try_join_all(calls).await?;
        Ok(added.iter().all(Option::is_some))
    }

    /// Takes `count` free units out of sale, all or none, from the stripes in turn.
    /// `Ok(None)` when a stripe's state is missing.
    /// Of a multi-variant sale, `variant`'s units (by ordinal).
    pub async fn retire_units(
        &self,
        sale: SaleId,
        count: i64,
        variant: Option<u32>,
    ) -> Result<Option<Vec<i32>>> {
        if self.stripes == 1 {
            return self.retire_from(Stripe::first(sale), count, variant).await;
        }
        // Free units move while we count them: a stripe may refuse its share; then what
        // was taken goes back and the split is made again from fresh counts.
        let mut free = Vec::new();
        for _ in 0..5 {
            free.clear();
            for stripe in self.stripes(sale) {
                match self.stripe_stock_by_variant(stripe).await? {
                    Some((view, _, variants)) => free.push(match variant {
                        Some(k) => variants.get(k as usize).map_or(0, |v| v.available),
                        None => view.available,
                    }),
                    None => return Ok(None),
                }
            }
            let Some(shares) = retire_shares(&free, count) else {
                break;
            };
            let mut taken = Vec::new();
            let mut refused = None;
            for (stripe, share) in self.stripes(sale).zip(shares) {
                if share == 0 {
                    continue;
                }
                match self.retire_from(stripe, share, variant).await {
                    Ok(Some(units)) => taken.extend(units),
                    other => {
                        refused = Some(other);
                        break;
                    }
                }
            }
            let Some(refused) = refused else {
                return Ok(Some(taken));
            };
            self.unretire_units(sale, &taken).await?;
            match refused {
                Err(Error::InsufficientFreeStock { .. }) => continue,
                other => return other,
            }
        }
        Err(Error::InsufficientFreeStock {
            free: free.iter().sum(),
            asked: count,
        })
    }

    async fn retire_from(
        &self,
        stripe: Stripe,
        count: i64,
        variant: Option<u32>,
    ) -> Result<Option<Vec<i32>>> {
        let reply = self
            .invoke_varied(stripe, &self.scripts.retire_units, |call| {
                call.arg(count);
                if let Some(k) = variant {
                    call.arg(k);
                }
            })
            .await?;
        match RetireReply::parse(reply)? {
            RetireReply::Retired(units) => Ok(Some(units)),
            RetireReply::Insufficient(free) => {
                Err(Error::InsufficientFreeStock { free, asked: count })
            }
            RetireReply::NoState => Ok(None),
        }
    }

    /// Puts back units whose retirement Postgres did not record, each in its stripe.
    pub async fn unretire_units(&self, sale: SaleId, units: &[i32]) -> Result<()> {
        for stripe in self.stripes(sale) {
            let mine: Vec<i32> = units
                .iter()
                .copied()
                .filter(|&u| Stripe::of_unit(sale, u.into(), self.stripes) == stripe)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let reply = self
                .invoke_varied(stripe, &self.scripts.unretire_units, |call| {
                    for &unit in &mine {
                        call.arg(unit);
                    }
                })
                .await?;
            parse_unretire_units(reply)?;
        }
        Ok(())
    }

    /// The stock counters summed over every stripe, or `None` when a stripe's state is
    /// missing. Each stripe is read atomically and keeps available + held + sold = total
    /// on its own, so the sum keeps it too; it may lag a move in another stripe by the
    /// time of one read.
    pub async fn stock(&self, sale: SaleId) -> Result<Option<StockView>> {
        let reads = self.stripes(sale).map(|stripe| self.stripe_stock(stripe));
        let mut sum = StockView {
            total: 0,
            available: 0,
            held: 0,
            sold: 0,
        };
        for read in futures::future::try_join_all(reads).await? {
            let Some((view, loaded_with)) = read else {
                return Ok(None);
            };
            if loaded_with != i64::from(self.stripes) {
                return Err(stripe_mismatch(sale, loaded_with, self.stripes));
            }
            sum.total += view.total;
            sum.available += view.available;
            sum.held += view.held;
            sum.sold += view.sold;
        }
        Ok(Some(sum))
    }

    /// One stripe's counters and the stripe count its sale was loaded with.
    pub async fn stripe_stock(&self, stripe: Stripe) -> Result<Option<(StockView, i64)>> {
        Ok(self
            .stripe_stock_by_variant(stripe)
            .await?
            .map(|(view, stripes, _)| (view, stripes)))
    }

    /// One stripe's counters, the stripe count, and the counters of each variant of a
    /// multi-variant sale (empty for a one-variant sale).
    pub async fn stripe_stock_by_variant(
        &self,
        stripe: Stripe,
    ) -> Result<Option<(StockView, i64, Vec<StockView>)>> {
        let reply = self
            .invoke_varied(stripe, &self.scripts.stock, |_| {})
            .await?;
        Ok(match StockReply::parse(reply)? {
            StockReply::Counts {
                total,
                available,
                held,
                sold,
                stripes,
                variants,
            } => Some((
                StockView {
                    total,
                    available,
                    held,
                    sold,
                },
                stripes,
                variants,
            )),
            StockReply::NoState => None,
        })
    }

    /// Shoppers who reached the reserve step (held at least once, or were told sold
    /// out), over every stripe (each shopper is recorded in their home stripe only, so
    /// the sets do not overlap).
    pub async fn reserved_shoppers(&self, sale: SaleId) -> Result<i64> {
        let counts = self.stripes(sale).map(|stripe| async move {
            redis::cmd("SCARD")
                .arg(self.stripe_keys(stripe).reserved_shoppers())
                .query_async::<i64>(&mut self.conn.clone())
                .await
        });
        Ok(futures::future::try_join_all(counts).await?.iter().sum())
    }

    /// Takes the per-sale rebuild lock (one for all stripes, under stripe 0's tag) for
    /// `ttl_ms`; false when another process has it.
    pub async fn try_lock_rebuild(&self, sale: SaleId, token: &str, ttl_ms: u64) -> Result<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys(sale).rebuild_lock())
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }

    /// Releases the rebuild lock if this process still holds it.
    pub async fn unlock_rebuild(&self, sale: SaleId, token: &str) -> Result<()> {
        const UNLOCK: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                              return redis.call('DEL', KEYS[1]) else return 0 end";
        let _: i64 = Script::new(UNLOCK)
            .key(self.keys(sale).rebuild_lock())
            .arg(token)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retiring_takes_from_the_stripes_in_turn_and_all_or_nothing() {
        assert_eq!(retire_shares(&[4, 4, 4, 4], 8), Some(vec![2, 2, 2, 2]));
        assert_eq!(retire_shares(&[4, 4, 4, 4], 6), Some(vec![2, 2, 1, 1]));
        assert_eq!(retire_shares(&[0, 5, 1, 3], 7), Some(vec![0, 3, 1, 3]));
        assert_eq!(retire_shares(&[1, 1], 3), None);
        assert_eq!(retire_shares(&[7], 7), Some(vec![7]));
    }

    #[test]
    fn free_ranges_skip_taken_units() {
        assert_eq!(free_ranges(10, &[]), "1-10");
        assert_eq!(free_ranges(10, &[1, 2, 5, 10]), "3-4,6-9");
        assert_eq!(free_ranges(3, &[1, 2, 3]), "");
    }
}
