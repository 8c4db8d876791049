//! Rebuilding a sale's Redis state from Postgres (the record), once across every
//! process: the holder of the per-sale lock loads, the others wait for it.

use std::time::Duration;

use super::Sales;
use crate::ids::SaleId;
use crate::{Error, Result};

/// How long one rebuild may hold the per-sale lock.
const REBUILD_LOCK_MS: u64 = 10_000;

/// Why a sale's state is being written to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Load {
    /// A new sale.
    Initial,
    /// The state was missing (Redis restarted empty, keys evicted).
    Recovery,
}

impl Sales {
    /// Rebuilds a sale's Redis state from Postgres, once across all processes: the
    /// holder of the per-sale lock loads every stripe that is missing (the others are
    /// left as they are: units never move between stripes, so a stripe's free units
    /// follow from Postgres alone); the others wait until every stripe is there.
    ///
    /// "Once" has three guards, so that a crowd of requests that all found the state
    /// missing writes it one time: the lock (one loader at a time); the look under the
    /// lock (a request that takes the lock after another's rebuild finds the state
    /// there and reads nothing from Postgres); and `lua/load.lua`, which writes a
    /// stripe only while its meta is absent (a loader whose lock expired mid-load
    /// cannot overwrite what the next one wrote, holds taken since included). Each
    /// write is counted in `flashsale_redis_state_rebuilt_total{sale}`.
    pub async fn rebuild(&self, id: SaleId) -> Result<()> {
        let token = uuid::Uuid::new_v4().to_string();
        for _ in 0..500 {
            if self
                .projection
                .try_lock_rebuild(id, &token, REBUILD_LOCK_MS)
                .await?
            {
                let outcome = match self.projection.stock(id).await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => self.load_from_postgres(id, Load::Recovery).await,
                    Err(e) => Err(e),
                };
                self.projection.unlock_rebuild(id, &token).await?;
                return outcome;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.projection.stock(id).await?.is_some() {
                return Ok(());
            }
        }
        Err(Error::Internal(anyhow::anyhow!(
            "timed out waiting for the rebuild of sale {id}"
        )))
    }

    /// Runs `work` holding the sale's rebuild lock — the lock a rebuild and a
    /// reconciliation hold while they read Postgres and rewrite Redis — so that a
    /// change of the sale's units (added, retired) never lands between their read and
    /// their write (a reconciliation would put retired units back on sale). `work` must
    /// not rebuild (the lock is not re-entrant): [`Sales::rebuild_locked`] is for it.
    pub(super) async fn with_sale_lock<T, F, Fut>(&self, id: SaleId, work: F) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let token = uuid::Uuid::new_v4().to_string();
        for _ in 0..500 {
            if self
                .projection
                .try_lock_rebuild(id, &token, REBUILD_LOCK_MS)
                .await?
            {
                let outcome = work().await;
                self.projection.unlock_rebuild(id, &token).await?;
                return outcome;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::Internal(anyhow::anyhow!(
            "timed out waiting for the lock of sale {id}"
        )))
    }

    /// A rebuild by the holder of the sale's lock ([`Sales::with_sale_lock`]).
    pub(super) async fn rebuild_locked(&self, id: SaleId) -> Result<()> {
        self.load_from_postgres(id, Load::Recovery).await
    }

    pub(super) async fn load_from_postgres(&self, id: SaleId, why: Load) -> Result<()> {
        let sale = self.store.get(id).await?;
        let taken = self.store.taken_units(id).await?;
        let sold_units = self.store.sold_units(id).await?;
        let sold = sold_units.len();
        let bought = self.store.bought_per_shopper(id).await?;
        // Per variant only where a variant has a limit of its own to count against.
        let bought_by_variant = if sale.variants.iter().any(|v| v.per_user_limit.is_some()) {
            self.store.bought_per_shopper_and_variant(id).await?
        } else {
            Vec::new()
        };
        let loaded = self
            .projection
            .load(&sale, &taken, &sold_units, &bought, &bought_by_variant)
            .await?;
        if loaded && why == Load::Recovery {
            metrics::counter!("flashsale_redis_state_rebuilt_total", "sale" => id.to_string())
                .increment(1);
            tracing::warn!(sale_id = %id, sold, "sale state was missing in Redis; rebuilt from Postgres");
        }
        self.projection.track_for_sweep(id).await
    }
}
