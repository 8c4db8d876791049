//! What the sweeper needs from Redis: the set of sales it visits, and expiring a
//! stripe's due holds in batches.

use super::keys::Stripe;
use super::scripts::ExpireReply;
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
            .stripe_keys(stripe)
            .invoke(&self.scripts.expire)
            .arg(now_ms)
            .arg(batch)
            .invoke_async(&mut self.conn.clone())
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
}
