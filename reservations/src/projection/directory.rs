//! Which sale a reservation id names: the map sale ordinal ↔ sale id, the one thing the
//! projection reads from Postgres.
//!
//! A reservation id carries its sale's ordinal (see [`crate::ids`]), so locating a hold
//! needs no Redis round trip, and minting an id needs the ordinal of the sale. Ordinals
//! are assigned once by Postgres (`sales.ordinal`, an identity column) and never change,
//! and sales are created rarely: the map is filled on a miss by one indexed read and
//! cached for the life of the process, never invalidated. Only answers Postgres gave
//! are cached: an unknown ordinal (a forged id, or a sale created a moment ago by
//! another process) is asked again next time — unless it is above the highest ordinal
//! Postgres had a moment ago (read at most once a second): then no sale has it, and a
//! client sending forged ids costs no Postgres read per request. The price: a hold of a
//! sale created less than a second ago by another process may answer 404 for that
//! second.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use crate::ids::{SaleId, SaleOrdinal};
use crate::Result;

/// The cached map sale ordinal ↔ sale id, filled from Postgres on a miss.
#[derive(Clone, Default)]
pub(crate) struct SaleDirectory {
    /// `None` for a projection used without Postgres (the checker, script tests): it
    /// knows no ordinal, so it mints no addressed id and locates holds only by the
    /// legacy index.
    pool: Option<PgPool>,
    known: Arc<RwLock<Known>>,
}

#[derive(Default)]
struct Known {
    ordinals: HashMap<SaleId, SaleOrdinal>,
    sales: HashMap<SaleOrdinal, SaleId>,
    /// The highest ordinal Postgres had, and when it was read.
    highest: Option<(i64, Instant)>,
}

/// How long the highest ordinal read from Postgres is trusted.
const HIGHEST_FRESH_FOR: Duration = Duration::from_secs(1);

impl SaleDirectory {
    /// A directory that reads `sales` in `pool` on a miss.
    pub(crate) fn postgres(pool: PgPool) -> Self {
        Self {
            pool: Some(pool),
            known: Arc::default(),
        }
    }

    /// The ordinal of `sale`, or `None` when no such sale exists.
    pub(crate) async fn ordinal_of(&self, sale: SaleId) -> Result<Option<SaleOrdinal>> {
        if let Some(ordinal) = self.read().ordinals.get(&sale) {
            return Ok(Some(*ordinal));
        }
        let Some(pool) = &self.pool else {
            return Ok(None);
        };
        let row: Option<(i64,)> = sqlx::query_as("select ordinal from sales where id = $1")
            .bind(sale.0)
            .fetch_optional(pool)
            .await?;
        Ok(row.and_then(|(n,)| self.remember(sale, SaleOrdinal::new(n)?)))
    }

    /// The sale with `ordinal`, or `None` when no sale has it.
    pub(crate) async fn sale_of(&self, ordinal: SaleOrdinal) -> Result<Option<SaleId>> {
        if let Some(sale) = self.read().sales.get(&ordinal) {
            return Ok(Some(*sale));
        }
        let Some(pool) = &self.pool else {
            return Ok(None);
        };
        if ordinal.get() > self.highest(pool).await? {
            return Ok(None);
        }
        let row: Option<(Uuid,)> = sqlx::query_as("select id from sales where ordinal = $1")
            .bind(ordinal.get())
            .fetch_optional(pool)
            .await?;
        Ok(row.map(|(id,)| {
            self.remember(SaleId(id), ordinal);
            SaleId(id)
        }))
    }

    /// The highest ordinal of any sale, read again when older than a second.
    async fn highest(&self, pool: &PgPool) -> Result<i64> {
        if let Some((highest, at)) = self.read().highest {
            if at.elapsed() < HIGHEST_FRESH_FOR {
                return Ok(highest);
            }
        }
        let highest: i64 = sqlx::query_scalar("select coalesce(max(ordinal), 0) from sales")
            .fetch_one(pool)
            .await?;
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        known.highest = Some((highest, Instant::now()));
        Ok(highest)
    }

    fn remember(&self, sale: SaleId, ordinal: SaleOrdinal) -> Option<SaleOrdinal> {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        known.ordinals.insert(sale, ordinal);
        known.sales.insert(ordinal, sale);
        Some(ordinal)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Known> {
        // The maps are only ever extended with answers Postgres gave: a panic elsewhere
        // cannot leave them wrong, so a poisoned lock is still good to read.
        self.known.read().unwrap_or_else(|e| e.into_inner())
    }
}
