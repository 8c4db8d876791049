//! Reservations: the sale catalogue, stock as numbered units, and holds.
//!
//! This crate owns every rule about units: which are free, held or sold, who holds
//! them and until when. Redis is the fast path (atomic Lua scripts); Postgres is the
//! record and the last line against overselling (`order_units` primary key). When a
//! sale's Redis state is missing, it is rebuilt from Postgres; when Redis comes back
//! older (a restart that lost its last second, a failover), every live sale is
//! reconciled from Postgres.
//!
//! # Layout
//!
//! - [`ids`]: identifier newtypes.
//! - [`sales`]: what a merchant writes (parsed at the edge) and the stored sale: money,
//!   admission settings, create input, edits, the sale and its status, its variants
//!   (v1.1: each unit number belongs to one variant).
//! - [`store`]: sales and units in Postgres.
//! - [`projection`]: a sale's hot state in Redis (keys, scripts and their typed replies,
//!   holds, stock, sweep) and the scripts in `lua/`.
//! - [`redis_conn`]: one connection type for a single Redis or a Redis Cluster.
//! - [`redis_identity`]: which Redis a process talks to (its incarnation).
//! - [`service`]: the operations the HTTP layer calls ([`Sales`]): the catalogue,
//!   shoppers' holds and carts (held all or none), variants, the rebuild from Postgres,
//!   the sweep, and the narrow port the waiting room reads ([`WaitingRoomPort`]).
//! - [`checkout`]: hold → order ([`checkout::Placement`]): the flow, idempotency keys
//!   ([`checkout::idempotency`]), the order transaction, the reconciler of checkouts a
//!   dead process left half done, and the order read model ([`checkout::orders`]).
//! - [`events`]: the domain events ([`events::DomainEvent`]), their names, and
//!   [`events::append`], the one way an event enters the outbox.
//! - [`payment`]: the payment port, the simulated provider, timeout and breaker, and
//!   the parsed [`payment::PaymentToken`].
//! - [`audit`]: the checks `flashsale verify` runs over this crate's tables and keys
//!   (units, stock and holds in Redis, the per-shopper limit, payments).
//! - [`clock`]: the clock port.
//! - [`error`]: the crate's error type.

pub mod audit;
pub mod checkout;
pub mod clock;
pub mod error;
pub mod events;
pub mod ids;
pub mod order_life;
pub mod payment;
pub mod projection;
pub mod redis_conn;
pub mod redis_identity;
pub mod sales;
pub mod service;
pub mod store;

pub use error::{Error, Result};
pub use service::{
    CartLine, Quantity, Reservation, ReservationStatus, Reserved, Sales, ShortLine, WaitingRoomPort,
};
