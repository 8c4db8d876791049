//! The sweep: expiring due holds of every tracked sale, so their units are free again.

use super::Sales;
use crate::Result;

impl Sales {
    /// Expires due holds of every tracked sale, stripe by stripe; returns how many were
    /// expired. A sale that has ended and holds nothing any more in any stripe is no
    /// longer visited.
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
                self.projection.untrack_for_sweep(sale).await?;
            }
        }
        if expired > 0 {
            metrics::counter!("flashsale_holds_expired_total").increment(expired as u64);
        }
        Ok(expired)
    }
}
