//! The operations the HTTP layer calls: sales for merchants, holds for shoppers. Each
//! one keeps Postgres (the record) and Redis (the hot state) in step, and rebuilds a
//! sale's Redis state from Postgres when it finds it missing.
//!
//! [`Sales`] is one facade; each of its jobs lives in its own file:
//!
//! - `catalogue`: a merchant's sales: create, read, list, edit, pause/resume/end,
//!   stock changes, and the stock read every answer carries.
//! - `holds`: a shopper's holds: reserve, read, release ([`Quantity`], [`Reservation`]).
//! - `carts`: the v1.1 reserve of a cart of lines (variant, quantity), all or none,
//!   and the variants a merchant adds or restocks ([`CartLine`], [`ShortLine`]).
//! - `rebuild`: loading a sale's Redis state from Postgres, once across processes.
//! - `reconcile`: noticing that Redis came back older and reconciling live sales
//!   from Postgres ([`RedisWatcher`]).
//! - `sweep`: expiring due holds, and deleting ended sales' keys after a retention.
//! - `variants`: a merchant's variants: add one before the start, change one's stock,
//!   and the per-variant stock sale answers list.
//! - [`port`]: the narrow view the waiting room reads ([`WaitingRoomPort`]).

mod carts;
mod catalogue;
mod holds;
pub mod port;
mod rebuild;
mod reconcile;
mod sweep;
mod variants;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::projection::Projection;
use crate::store::SaleStore;

pub use carts::{CartLine, ShortLine, MAX_CART_LINES};
pub use holds::{Quantity, Reservation, ReservationStatus, Reserved};
pub use port::WaitingRoomPort;
pub use reconcile::{RedisWatcher, WATCH_INTERVAL};

/// How long an ended sale's Redis keys stay after its last hold settled, unless the
/// operator sets another retention ([`Sales::with_ended_sale_retention`]).
pub const DEFAULT_ENDED_SALE_RETENTION: Duration = Duration::from_secs(3600);

/// Sales and holds.
#[derive(Clone)]
pub struct Sales {
    store: SaleStore,
    projection: Projection,
    clock: Arc<dyn Clock>,
    ended_sale_retention: Duration,
    /// The proof-of-work difficulty a new sale gets when its body names none.
    proof_default: i64,
}

impl Sales {
    /// The service over a store, a projection and a clock.
    pub fn new(store: SaleStore, projection: Projection, clock: Arc<dyn Clock>) -> Self {
        // Reservation ids name their sale by its ordinal, read from the same database.
        let projection = projection.with_postgres(store.pool().clone());
        Self {
            store,
            projection,
            clock,
            ended_sale_retention: DEFAULT_ENDED_SALE_RETENTION,
            proof_default: 0,
        }
    }

    /// The same, giving a new sale whose body names no `admission.proof_difficulty_bits`
    /// the operator's `bits` (0 unless set: no proof of work).
    pub fn with_proof_difficulty_default(mut self, bits: i64) -> Self {
        self.proof_default = bits;
        self
    }

    /// The operator's default proof-of-work difficulty of new sales.
    pub fn proof_difficulty_default(&self) -> i64 {
        self.proof_default
    }

    /// The same, keeping an ended sale's Redis keys for `retention` after its last hold
    /// settled (the sweeper deletes them then; Postgres keeps the sale).
    pub fn with_ended_sale_retention(mut self, retention: Duration) -> Self {
        self.ended_sale_retention = retention;
        self
    }

    /// The Redis side, for checkout inside this crate.
    pub(crate) fn projection(&self) -> &Projection {
        &self.projection
    }

    /// The Postgres side, for checkout inside this crate.
    pub(crate) fn store(&self) -> &SaleStore {
        &self.store
    }

    /// The Redis side, for the API's integration tests only (they inspect and break
    /// the hot state on purpose). Not part of the API: code uses the named methods.
    #[doc(hidden)]
    pub fn hot_state_for_tests(&self) -> &Projection {
        &self.projection
    }

    /// The current time by this service's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The prefix every Redis key of this deployment lives under (for readers of other
    /// keys under it, such as the admission signals).
    pub fn redis_prefix(&self) -> &str {
        self.projection.prefix()
    }

    /// The narrow view of sales the waiting room needs.
    pub fn waiting_room_port(&self) -> WaitingRoomPort {
        WaitingRoomPort::new(self.clone())
    }
}
