//! Load shedding. Two mechanisms, both answering before any work is done:
//!
//! - **A global in-flight limit with priority classes (brownout).** Every request holds
//!   a slot while it runs. The buy path (reserve, checkout) may use every slot; queue
//!   traffic (guest sessions, join, poll, leave) only while fewer than 80% are taken; everything else
//!   (order history, merchant listings, public pages) only below 60%. Under overload
//!   the lowest class is refused first with `503 overloaded` + `Retry-After`, so the
//!   shoppers who are buying keep their capacity. Operations routes are never shed.
//!   Each area's router gives its routes their class with [`classed`]; this module only
//!   counts slots.
//! - **Per-shopper rate limits** on join and poll (`429 rate_limited` + `Retry-After`):
//!   one client polling in a loop cannot crowd out the rest of the line.
//! - **A cap per client address** (on by default, sized for carrier-grade NAT: see
//!   `config.rs`) on guest sessions, challenges, join, poll, holds and checkouts, for
//!   the client that mints a guest session per request to dodge the per-shopper limit.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::{problem, ApiError};

/// How a request ranks when slots are scarce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Reserve and checkout: shoppers spending money.
    Buy,
    /// Join, poll, leave: shoppers waiting.
    Queue,
    /// Everything else that does work.
    Other,
    /// Health, readiness, metrics: never shed.
    Exempt,
}

impl Priority {
    /// Share of the slots this class may fill.
    fn ceiling(self) -> f64 {
        match self {
            Priority::Buy | Priority::Exempt => 1.0,
            Priority::Queue => 0.8,
            Priority::Other => 0.6,
        }
    }
}

/// The in-flight limit shared by every request of the process.
#[derive(Debug)]
pub struct Shedder {
    in_flight: AtomicUsize,
    capacity: usize,
}

impl Shedder {
    /// A limit of `capacity` requests in flight.
    pub fn new(capacity: usize) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Takes a slot for a request of `priority`, or refuses.
    fn admit(&self, priority: Priority) -> Option<Slot<'_>> {
        let limit = ((self.capacity as f64) * priority.ceiling()) as usize;
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit || priority == Priority::Exempt).then_some(n + 1)
            })
            .is_ok();
        // `then`, not `then_some`: a refused request must not build (and so drop) a
        // slot, whose drop would release a place it never took.
        taken.then(|| Slot(&self.in_flight))
    }
}

struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Gives every route of `router` the shedding class `priority`. Each area's router
/// declares the class of its routes where it lists them (`http/*.rs`), so a new route
/// is classed where it is written, never by matching path strings here. The shared
/// [`Shedder`] reaches the check through a request extension that [`provide`] sets on
/// the whole application; a route without a class is not limited.
pub fn classed<S>(router: Router<S>, priority: Priority) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.route_layer(middleware::from_fn(move |req: Request, next: Next| {
        shed_load(priority, req, next)
    }))
}

/// Makes the process's [`Shedder`] available to the per-route checks of [`classed`].
pub fn provide(shedder: Arc<Shedder>) -> axum::Extension<Arc<Shedder>> {
    axum::Extension(shedder)
}

/// Refuses a request whose class has no slot left; otherwise holds a slot while it runs.
async fn shed_load(priority: Priority, req: Request, next: Next) -> Response {
    let Some(shedder) = req.extensions().get::<Arc<Shedder>>().cloned() else {
        return next.run(req).await;
    };
    let Some(_slot) = shedder.admit(priority) else {
        metrics::counter!("flashsale_requests_shed_total", "class" => format!("{priority:?}"))
            .increment(1);
        let mut response = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the service is shedding load; retry shortly",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1));
        return response;
    };
    next.run(req).await
}

/// A request rate per key: per shopper on the waiting room's routes, and per client
/// address where the operator enables an IP cap.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
}

/// Per-shopper request rate on the waiting room's routes.
pub type ShopperLimiter = KeyedLimiter<uuid::Uuid>;

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// `per_second` sustained, `burst` at once, per key.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let quota = Quota::per_second(NonZeroU32::new(per_second.max(1)).expect("non-zero"))
            .allow_burst(NonZeroU32::new(burst.max(1)).expect("non-zero"));
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
        }
    }

    /// Counts one request of `key`, or says how long to wait.
    pub fn check(&self, key: K) -> Result<(), ApiError> {
        self.limiter.check_key(&key).map_err(|not_until| {
            metrics::counter!("flashsale_requests_rate_limited_total").increment(1);
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            ApiError::RateLimited {
                retry_after: wait.as_secs().max(1) as u32,
            }
        })
    }

    /// Forgets keys that have not been seen for a while (bounded memory).
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// The operator's cap per client address on guest sessions, challenges, join, poll,
/// holds and checkouts (`FLASHSALE_IP_RATE_PER_SECOND`): one client minting guest
/// sessions gets fresh per-shopper limits with each, but not a fresh address.
pub struct ClientCap {
    limiter: KeyedLimiter<IpAddr>,
    /// Where a trusted load balancer writes the client's address (its last entry is the
    /// one the balancer appended); `None`: the connection's peer address.
    header: Option<HeaderName>,
}

impl ClientCap {
    /// A cap of `per_second` sustained, `burst` at once, per client address.
    pub fn new(per_second: u32, burst: u32, header: Option<HeaderName>) -> Self {
        Self {
            limiter: KeyedLimiter::new(per_second, burst),
            header,
        }
    }

    /// Counts one request of the client that sent `headers` over a connection from
    /// `peer`. A request whose address cannot be told is counted under the peer.
    pub fn check(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<(), ApiError> {
        match client_address(self.header.as_ref(), headers, peer) {
            Some(ip) => self.limiter.check(ip),
            None => Ok(()),
        }
    }

    /// Forgets clients that have not been seen for a while.
    pub fn prune(&self) {
        self.limiter.prune();
    }
}

/// The client's address: the last entry of `header` (where a trusted load balancer
/// appends it) when configured and readable, else the connection's `peer`. The one
/// reading of it, shared by the per-address cap and the door's difficulty.
pub fn client_address(
    header: Option<&HeaderName>,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Option<IpAddr> {
    let forwarded = header.and_then(|name| {
        let value = headers.get_all(name).iter().last()?.to_str().ok()?;
        value.rsplit(',').next()?.trim().parse::<IpAddr>().ok()
    });
    forwarded.or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_overload_the_buy_path_keeps_slots_the_others_cannot_take() {
        let shedder = Shedder::new(10);
        let others: Vec<_> = (0..10)
            .filter_map(|_| shedder.admit(Priority::Other))
            .collect();
        assert_eq!(others.len(), 6, "other traffic stops at 60%");
        let queue: Vec<_> = (0..10)
            .filter_map(|_| shedder.admit(Priority::Queue))
            .collect();
        assert_eq!(queue.len(), 2, "queue traffic stops at 80%");
        let buy: Vec<_> = (0..10)
            .filter_map(|_| shedder.admit(Priority::Buy))
            .collect();
        assert_eq!(buy.len(), 2, "the buy path fills the rest");
        assert!(
            shedder.admit(Priority::Exempt).is_some(),
            "health checks always answer"
        );
        drop(others);
        assert!(
            shedder.admit(Priority::Other).is_some(),
            "slots return when requests finish"
        );
    }

    #[test]
    fn a_flooding_shopper_is_limited_without_affecting_another() {
        let limiter = ShopperLimiter::new(2, 3);
        let (flooder, neighbour) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let results: Vec<bool> = (0..10).map(|_| limiter.check(flooder).is_ok()).collect();
        assert_eq!(
            results.iter().filter(|ok| **ok).count(),
            3,
            "the burst, then refusals"
        );
        assert!(limiter.check(neighbour).is_ok());
    }
}
