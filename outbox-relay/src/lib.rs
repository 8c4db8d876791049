//! Delivery of committed events: from the Postgres outbox to Redis Streams, and from
//! the streams to the workers that act on them.
//!
//! This crate owns the guarantee "every committed order has its events published and
//! consumed". Checkout writes an order and its `outbox` row in one transaction; from
//! there on:
//!
//! - the **relay** claims unpublished rows with `FOR UPDATE SKIP LOCKED`, appends them
//!   to one stream per aggregate type and marks them published in the same
//!   transaction. A relay that dies between the append and the commit publishes the
//!   batch again: delivery is at-least-once, and duplicates in a stream are expected;
//! - the **workers** read the streams through consumer groups and make every effect
//!   idempotent by event id: the effect and a `processed_events` row commit in one
//!   transaction, so a duplicate or a redelivery changes nothing. Entries left pending
//!   by a dead worker are claimed by a live one; an entry that keeps failing goes to a
//!   dead-letter stream after a bounded number of deliveries, so one poison event never
//!   holds up the events behind it.
//!
//! # Layout
//!
//! - [`event`]: the event as it travels (stream fields) and the stream key names. The
//!   events themselves (names, payloads) are one type owned by the domain that emits
//!   them, `reservations::events::DomainEvent`, re-exported here.
//! - [`consumer`]: the consumer groups `order-confirmation`, `payment-capture`,
//!   `sales-ledger` and `webhooks` ([`consumer::ConsumerKind`]), named once for the workers, the
//!   relay and the audits.
//! - [`relay`]: the outbox relay ([`relay::run`]) and the backlog figures for `/stats`.
//! - [`redelivery`]: the rule that republishes events not settled by every consumer
//!   group within a bound, whatever Redis lost.
//! - [`trim`]: keeps the order stream to the entries some consumer group still owes.
//! - [`worker`]: the loops that run each consumer group ([`worker::run`]); what each
//!   group does with an event is in the private `effects` module.
//! - [`mailer`]: the mailer port the confirmation worker sends through, and its
//!   simulated implementation.
//! - [`webhooks`]: merchants' webhook endpoints, the `webhooks` consumer's fan-out to
//!   them, the signed delivery loop with its retry schedule, the SSRF guard, and the
//!   loop that announces a sale's start, sell-out and end as events.
//! - [`audit`]: the checks `flashsale verify` runs over the outbox, the consumers'
//!   inbox, the sales ledger and the confirmations.
//! - [`error`]: the crate's error type.

#![warn(missing_docs)]

pub mod audit;
pub mod consumer;
pub mod error;
pub mod event;
pub mod mailer;
pub mod redelivery;
pub mod relay;
pub mod trim;
pub mod webhooks;
pub mod worker;

mod backoff;
mod effects;

pub use error::{Error, Result};
pub use event::{dead_letter_key, stream_key};
