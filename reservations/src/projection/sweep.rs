//! What the sweeper needs from Redis: the set of sales it visits, expiring a stripe's
//! due holds in batches, and the purge of ended sales' keys.
//!
//! # Ended sales' keys go
//!
//! A sale that is over and holds nothing (the sweeper stops visiting it) is put in a
//! sorted set `<prefix>:ended`, scored by when its keys may go (then + the operator's
//! retention). A sweep after that deletes its stripes' keys with `purge.lua`, which
//! checks again that the sale is over and holds nothing (its end may have been moved
//! later since), so only the state of a finished sale is ever deleted. Postgres is not
//! touched: a later read of the sale rebuilds its Redis state as after any loss, and
//! the sweeper then lets it go again after another retention.

use super::keys::Stripe;
use super::scripts::{ExpireReply, Purge};
use super::Projection;
use crate::ids::SaleId;
use crate::Result;

impl Projection {
    /// Expires up to `batch` due holds of one stripe; returns how many, how many holds
    /// are still live in it, and when the sale ends (ms; 0 when the state is missing).
    pub async fn expire(
        &self,
        stripe: Stripe,
        now_ms: i64,
        batch: usize,
    ) -> Result<(i64, i64, i64)> {
        let reply = self
            .invoke_varied(stripe, &self.scripts.expire, |call| {
                call.arg(now_ms).arg(batch);
            })
            .await?;
        let ExpireReply {
            expired,
            live,
            ends_ms,
        } = ExpireReply::parse(reply)?;
        Ok((expired, live, ends_ms))
    }

    /// The set of sales the sweeper visits.
    pub fn sweep_set_key(&self) -> String {
        format!("{}:sweep", self.prefix)
    }

    /// Adds a sale to the sweeper's set.
    pub async fn track_for_sweep(&self, sale: SaleId) -> Result<()> {
        let _: i64 = redis::cmd("SADD")
            .arg(self.sweep_set_key())
            .arg(sale.to_string())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Stops sweeping a sale (it ended and holds nothing).
    pub async fn untrack_for_sweep(&self, sale: SaleId) -> Result<()> {
        let _: i64 = redis::cmd("SREM")
            .arg(self.sweep_set_key())
            .arg(sale.to_string())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Sales the sweeper visits.
    pub async fn swept_sales(&self) -> Result<Vec<SaleId>> {
        let raw: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.sweep_set_key())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(raw.iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// The sorted set of ended sales, scored by when their keys may go (ms).
    fn ended_set_key(&self) -> String {
        format!("{}:ended", self.prefix)
    }

    /// Lets a sale's keys go at `at_ms` (a later call moves the time).
    pub async fn schedule_purge(&self, sale: SaleId, at_ms: i64) -> Result<()> {
        let _: i64 = redis::cmd("ZADD")
            .arg(self.ended_set_key())
            .arg(at_ms)
            .arg(sale.to_string())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Up to `limit` ended sales whose keys may go at `now_ms`.
    pub async fn due_purges(&self, now_ms: i64, limit: usize) -> Result<Vec<SaleId>> {
        let raw: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.ended_set_key())
            .arg("-inf")
            .arg(now_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(raw.iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Forgets a sale's purge (done, or the sale is live again).
    pub async fn unschedule_purge(&self, sale: SaleId) -> Result<()> {
        let _: i64 = redis::cmd("ZREM")
            .arg(self.ended_set_key())
            .arg(sale.to_string())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Deletes one stripe's keys if its sale is over and it holds nothing.
    pub async fn purge(&self, stripe: Stripe, now_ms: i64) -> Result<Purge> {
        let reply = self
            .invoke_varied(stripe, &self.scripts.purge, |call| {
                call.arg(now_ms);
            })
            .await?;
        Purge::parse(reply)
    }
}
