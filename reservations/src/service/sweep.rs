//! The sweep: expiring due holds of every tracked sale, so their units are free again,
//! and letting an ended sale's Redis keys go once its retention has passed (see
//! `projection::sweep`).

use super::Sales;
use crate::projection::Purge;
use crate::Result;

/// Most ended sales purged by one sweep (the rest wait for the next).
const PURGES_PER_SWEEP: usize = 10;

impl Sales {
    /// Expires due holds of every tracked sale, stripe by stripe; returns how many were
    /// expired. A sale that has ended and holds nothing any more in any stripe is no
    /// longer visited, and its keys go after the ended-sale retention.
    pub async fn sweep_once(&self, batch: usize) -> Result<i64> {
        let now_ms = self.now().timestamp_millis();
        let mut expired = 0;
        for sale in self.projection.swept_sales().await? {
            let (mut live_in_sale, mut ends_ms) = (0, 0);
            for stripe in self.projection.stripes(sale) {
                loop {
                    let (n, live, ends) = self.projection.expire(stripe, now_ms, batch).await?;
                    expired += n;
                    if (n as usize) < batch {
                        live_in_sale += live;
                        ends_ms = ends_ms.max(ends);
                        break;
                    }
                }
            }
            if live_in_sale == 0 && ends_ms > 0 && now_ms >= ends_ms {
                let retention = self.ended_sale_retention.as_millis() as i64;
                self.projection
                    .schedule_purge(sale, now_ms.saturating_add(retention))
                    .await?;
                self.projection.untrack_for_sweep(sale).await?;
            }
        }
        if expired > 0 {
            metrics::counter!("flashsale_holds_expired_total").increment(expired as u64);
        }
        self.purge_ended(now_ms).await?;
        Ok(expired)
    }

    /// Deletes the Redis keys of ended sales whose retention has passed. A sale found
    /// live again (its end moved later, so it is tracked again) is only unscheduled:
    /// the sweep schedules it anew when it is over.
    async fn purge_ended(&self, now_ms: i64) -> Result<()> {
        for sale in self.projection.due_purges(now_ms, PURGES_PER_SWEEP).await? {
            let mut purged = false;
            for stripe in self.projection.stripes(sale) {
                purged |= self.projection.purge(stripe, now_ms).await? == Purge::Purged;
            }
            self.projection.unschedule_purge(sale).await?;
            if purged {
                metrics::counter!("flashsale_ended_sales_purged_total").increment(1);
                tracing::info!(sale_id = %sale, "ended sale's Redis keys deleted after its retention");
            }
        }
        Ok(())
    }
}
