//! A gateway wrapped in something that runs around each of its calls — the timeout and
//! circuit breaker ([`super::GuardedGateway`]), the checkout's provider clock in the
//! API — so that each wrapper says only what it does around one call, and the gateway's
//! methods are forwarded once, here.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

use super::{Payment, PaymentError, PaymentGateway, PaymentRef};
use crate::ids::OrderId;
use crate::sales::Money;

/// What runs around one call of the wrapped gateway.
pub trait CallLayer: Send + Sync + 'static {
    /// Runs `call` inside the layer.
    fn around<'a, T: Send + 'a>(
        &'a self,
        call: BoxFuture<'a, Result<T, PaymentError>>,
    ) -> BoxFuture<'a, Result<T, PaymentError>>;

    /// Whether the checker's listing ([`PaymentGateway::list`]) goes through the layer
    /// too, or straight to the gateway.
    fn wraps_list(&self) -> bool {
        true
    }
}

/// `inner` with `layer` around each of its calls.
pub struct Layered<L> {
    layer: L,
    inner: Arc<dyn PaymentGateway>,
}

impl<L: CallLayer> Layered<L> {
    /// Wraps `inner` in `layer`.
    pub fn wrap(layer: L, inner: Arc<dyn PaymentGateway>) -> Self {
        Self { layer, inner }
    }

    /// The layer.
    pub fn layer(&self) -> &L {
        &self.layer
    }
}

impl<L: CallLayer> PaymentGateway for Layered<L> {
    fn authorize<'a>(
        &'a self,
        attempt: OrderId,
        amount: &'a Money,
        token: &'a str,
    ) -> BoxFuture<'a, Result<PaymentRef, PaymentError>> {
        self.layer
            .around(self.inner.authorize(attempt, amount, token))
    }

    fn capture<'a>(&'a self, payment: &'a PaymentRef) -> BoxFuture<'a, Result<(), PaymentError>> {
        self.layer.around(self.inner.capture(payment))
    }

    fn void<'a>(&'a self, payment: &'a PaymentRef) -> BoxFuture<'a, Result<(), PaymentError>> {
        self.layer.around(self.inner.void(payment))
    }

    fn refund<'a>(
        &'a self,
        payment: &'a PaymentRef,
        amount_minor: Option<i64>,
        key: Uuid,
    ) -> BoxFuture<'a, Result<(), PaymentError>> {
        self.layer
            .around(self.inner.refund(payment, amount_minor, key))
    }

    fn retrieve<'a>(
        &'a self,
        payment: &'a PaymentRef,
    ) -> BoxFuture<'a, Result<Payment, PaymentError>> {
        self.layer.around(self.inner.retrieve(payment))
    }

    fn find(&self, attempt: OrderId) -> BoxFuture<'_, Result<Option<Payment>, PaymentError>> {
        self.layer.around(self.inner.find(attempt))
    }

    fn list<'a>(
        &'a self,
        since: DateTime<Utc>,
        after: Option<&'a PaymentRef>,
    ) -> BoxFuture<'a, Result<(Vec<Payment>, bool), PaymentError>> {
        if self.layer.wraps_list() {
            self.layer.around(self.inner.list(since, after))
        } else {
            self.inner.list(since, after)
        }
    }
}
