//! Webhooks: merchants' endpoints hear about their orders and sales, signed the way the
//! Standard Webhooks specification says (API.md v1.1 "after the purchase").
//!
//! # How an event reaches an endpoint
//!
//! - **Fan-out** ([`fanout`]): the `webhooks` consumer group ([`ConsumerKind::Webhooks`])
//!   reads every event of the order stream and of the sale stream, at least once, and
//!   is idempotent by event id like the other groups (`processed_events`). In ONE
//!   transaction it records the event as processed, stores the message (the body,
//!   built once) and inserts one `webhook_deliveries` row per subscribed endpoint
//!   (unique per endpoint and event). Nothing in it waits on an endpoint, so a slow or
//!   dead endpoint never holds up the consumer group, the stream or another endpoint.
//! - **Delivery** ([`deliver`]): a loop takes a *lease* on endpoints that have due
//!   deliveries (`FOR UPDATE SKIP LOCKED` in a short transaction; no transaction stays
//!   open over an HTTP call), then sends each endpoint's due deliveries one at a time:
//!   one in flight per endpoint, oldest first, and a delivery waits while an earlier
//!   one of the same order (or sale) is still pending, so an order's `order.placed`
//!   reaches the receiver before its `order.cancelled`. A POST with a 2xx answer
//!   within the timeout (10 s) is delivered; anything else (another status, a
//!   timeout, a refused connection, a redirect: redirects are not followed) is retried
//!   on the [`schedule`] — about 32 hours over 12 attempts — and then marked `failed`.
//! - **Signing** ([`signing`]): `webhook-id` (the message id, the same on every retry
//!   and endpoint), `webhook-timestamp` (seconds, the time of the attempt) and
//!   `webhook-signature`: `v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>` keyed
//!   with the base64-decoded part of the endpoint's `whsec_` secret. While a rotated
//!   secret is still valid (24 h), the header carries both signatures, space-separated.
//! - **SSRF** ([`ssrf`]): a URL must be http or https, and its host must not resolve
//!   to a loopback, private (RFC 1918, ULA), link-local, unspecified, multicast,
//!   broadcast, reserved or carrier-grade NAT (100.64/10) address, unless the operator
//!   allows private addresses (`FLASHSALE_WEBHOOKS_ALLOW_PRIVATE`; the local stack and
//!   the tests do). The host is resolved at registration and again at every delivery,
//!   by the HTTP client's own resolver, which drops refused addresses: a name that
//!   rebinds to 127.0.0.1 after registration is never connected to.
//! - **Endpoints** ([`store`]): create (the secret is shown once), list, delete,
//!   rotate, and the delivery log (keyset-paginated). At most
//!   [`MAX_ENDPOINTS_PER_MERCHANT`] endpoints per merchant, URLs of at most
//!   [`MAX_URL_LENGTH`] bytes.
//! - **Sale lifecycle** ([`lifecycle`]): the moments a sale starts, sells out and ends
//!   are noticed by a loop every API process runs, once per sale (a unique mark
//!   commits with the outbox row), looking only at sales not ended long ago.
//!
//! What is not covered: the sale stream has no marker key and its events are not in
//! the relay's redelivery rule (both look at `OrderPlaced` only), so a Redis that
//! loses sale events before the `webhooks` group read them loses those webhooks (the
//! outbox rows stay, unsettled, until retention).
//!
//! `flashsale verify` runs [`audit`]: the fan-out reached every subscriber, and every
//! delivery's record is consistent.
//!
//! The delivery log's `last_status` is the HTTP status of the last attempt (null when
//! none came back: a timeout, a refused connection). A delivery that ran out of
//! attempts has neither `next_attempt_at` nor `delivered_at`.
//!
//! [`ConsumerKind::Webhooks`]: crate::consumer::ConsumerKind::Webhooks

use std::time::Duration;

pub mod audit;
pub mod deliver;
pub(crate) mod fanout;
pub mod lifecycle;
pub mod schedule;
pub mod signing;
pub mod ssrf;
pub mod store;
mod types;

pub use schedule::Schedule;
pub use store::{DeliveryLogItem, Endpoint, Endpoints};
pub use types::EventType;

/// Most endpoints one merchant may register.
pub const MAX_ENDPOINTS_PER_MERCHANT: i64 = 20;

/// Longest endpoint URL accepted, in bytes.
pub const MAX_URL_LENGTH: usize = 2048;

/// How webhooks are delivered. [`WebhookConfig::new`] gives the production defaults.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Whether URLs may resolve to loopback, private or link-local addresses
    /// (`FLASHSALE_WEBHOOKS_ALLOW_PRIVATE`): the local stack and the tests, never a
    /// shared deployment.
    pub allow_private: bool,
    /// How long a receiver has to answer a delivery (the contract says 10 s).
    pub timeout: Duration,
    /// When failed deliveries are tried again.
    pub schedule: Schedule,
    /// How often the delivery loop looks for due deliveries.
    pub poll: Duration,
    /// Most endpoints delivered to at once by one process.
    pub max_endpoints_in_flight: usize,
    /// Most deliveries sent to one endpoint under one lease before it is handed back
    /// (so a busy endpoint cannot starve the others of this process's slots).
    pub per_lease: usize,
    /// How long finished deliveries stay in the log (and their messages in Postgres).
    pub retention: Duration,
    /// How often the retention pass runs.
    pub retention_interval: Duration,
}

impl WebhookConfig {
    /// The defaults: private addresses refused, 10 s timeout, the standard schedule, a
    /// look every 500 ms, 64 endpoints at once, 100 deliveries per lease, finished
    /// deliveries kept 30 days.
    pub fn new() -> Self {
        Self {
            allow_private: false,
            timeout: Duration::from_secs(10),
            schedule: Schedule::standard(),
            poll: Duration::from_millis(500),
            max_endpoints_in_flight: 64,
            per_lease: 100,
            retention: Duration::from_secs(30 * 24 * 3600),
            retention_interval: Duration::from_secs(60),
        }
    }

    /// How long an endpoint's lease lasts: past the longest a round of it can take
    /// between renewals (one attempt), with room for the database writes.
    pub(crate) fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(10)
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self::new()
    }
}
