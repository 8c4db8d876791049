//! The reconciler: finishes checkouts a dead process left half done. A hold stays in
//! `committing` while its checkout runs; one that stays there too long lost its
//! process, and Postgres says how it ended. Its payment is voided through the durable
//! path (the attempt goes to the completer), not by a call that may fail unnoticed.

use std::time::Duration;

use uuid::Uuid;

use super::Checkout;
use crate::ids::OrderId;
use crate::projection::{Finish, Stripe};
use crate::Result;

impl Checkout {
    /// Finishes holds stuck in `committing` for longer than `stale_after` (the process
    /// that began their checkout died): completes them from Postgres when the order
    /// committed, otherwise voids the authorization (durably: see `Checkout::void`) and
    /// returns them to `held`.
    pub async fn reconcile_once(&self, stale_after: Duration) -> Result<usize> {
        let projection = self.sales.projection();
        let before = self.sales.now().timestamp_millis() - stale_after.as_millis() as i64;
        let mut finished = 0;
        let stripes: Vec<Stripe> = projection
            .swept_sales()
            .await?
            .into_iter()
            .flat_map(|sale| projection.stripes(sale))
            .collect();
        for stripe in stripes {
            for (id, hold) in projection.stale_commits(stripe, before).await? {
                let attempt = hold.order.unwrap_or_default();
                let committed: Option<(Uuid, Vec<i32>)> = sqlx::query_as(
                    "select o.id, array_agg(u.unit_no) from orders o join order_units u on u.order_id = o.id \
                     where o.reservation_id = $1 group by o.id",
                )
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?;
                match committed {
                    Some((order, units)) => {
                        projection
                            .finish_checkout(stripe, id, OrderId(order), Finish::Sold(&units))
                            .await?
                    }
                    None => {
                        // The provider's answer died with the process: the payment is
                        // found by the attempt id.
                        self.void_attempt(attempt).await;
                        projection
                            .finish_checkout(stripe, id, attempt, Finish::Abort)
                            .await?
                    }
                }
                finished += 1;
            }
        }
        // Closed orders whose units or money a dead process left to return.
        if let Err(e) = self.life().complete_releases(stale_after).await {
            tracing::warn!(error = %e, "could not complete pending payment releases");
        }
        if finished > 0 {
            metrics::counter!("flashsale_checkouts_reconciled_total").increment(finished as u64);
            tracing::warn!(
                finished,
                "finished checkouts left in committing by a dead process"
            );
        }
        Ok(finished)
    }
}
