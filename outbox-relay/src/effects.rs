//! What each consumer does with a batch of `OrderPlaced` events, exactly once per event.
//!
//! Every consumer follows the same three steps:
//!
//! 1. drop events it has already processed (a duplicate in the batch, or a
//!    `processed_events` row from an earlier delivery), so redeliveries cost no
//!    external call;
//! 2. make the external call, if it has one (mail, payment capture). These are
//!    idempotent by order or event id, so a call repeated after a crash is harmless;
//! 3. in ONE transaction, insert the `processed_events` rows (`on conflict do nothing`)
//!    and apply the effect only for the rows actually inserted. A concurrent consumer
//!    that processed the same event meanwhile wins the insert, and this one applies
//!    nothing.
//!
//! Step 3 runs once for the whole batch. When it fails for a reason that will repeat
//! (a foreign key pointing nowhere), the batch is recorded again one event at a time,
//! so the one poison event fails alone and the rest are applied.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use reservations::events::OrderPlaced;
use reservations::payment::{PaymentError, PaymentGateway};
use sqlx::PgPool;
use uuid::Uuid;

use crate::consumer::ConsumerKind;
use crate::error::{Error, Result};
use crate::mailer::{Mailer, OrderConfirmation};

/// An `OrderPlaced` event read from a stream entry.
pub(crate) struct Parsed {
    pub(crate) event_id: Uuid,
    pub(crate) order: OrderPlaced,
    /// The order was cancelled or refunded (an `OrderCancelled` / `OrderRefunded`
    /// event, read as the order it closes): only the sales ledger takes these, and
    /// counts the order's units and revenue down. The confirmation consumer ignores
    /// them (the cancel's answer is the shopper's notice) and the capture consumer too
    /// (`reservations::order_life` releases the money).
    pub(crate) closes: bool,
}

/// How an event that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The effect was applied now.
    Applied,
    /// The effect had been applied before (or the event came twice in the batch).
    Duplicate,
}

/// Why an event was not applied, cloneable so one batch failure can be reported for
/// every event of the batch.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) reason: String,
    pub(crate) transient: bool,
}

impl From<&Error> for Failure {
    fn from(e: &Error) -> Self {
        Failure {
            reason: e.to_string(),
            transient: e.is_transient(),
        }
    }
}

/// The ports and the database every consumer applies its effects through.
pub(crate) struct Effects {
    pub(crate) pool: PgPool,
    pub(crate) payments: Arc<dyn PaymentGateway>,
    pub(crate) mailer: Arc<dyn Mailer>,
    /// Most external calls in flight per batch.
    pub(crate) concurrency: usize,
}

impl Effects {
    /// Records in Postgres that `consumer` gave up on `event` (the dead-letter stream is
    /// in Redis and may be lost with it), so the relay's redelivery rule counts the
    /// event as settled for this group instead of republishing a poison event for ever.
    pub(crate) async fn record_dead_letter(
        &self,
        consumer: ConsumerKind,
        event: Uuid,
        reason: &str,
    ) -> Result<()> {
        sqlx::query(
            "insert into dead_lettered_events (consumer, event_id, reason) values ($1, $2, $3) \
             on conflict do nothing",
        )
        .bind(consumer.group())
        .bind(event)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Applies `events` for `kind`; one outcome per event, in order.
    pub(crate) async fn apply(
        &self,
        kind: ConsumerKind,
        events: &[Parsed],
    ) -> Vec<Result<Applied, Failure>> {
        // First occurrence of each event id; later ones in the same batch are duplicates.
        let mut first: HashMap<Uuid, usize> = HashMap::new();
        for (i, event) in events.iter().enumerate() {
            first.entry(event.event_id).or_insert(i);
        }
        let unique: Vec<&Parsed> = events
            .iter()
            .enumerate()
            .filter(|(i, e)| first[&e.event_id] == *i)
            .map(|(_, e)| e)
            .collect();

        let done = if matches!(kind, ConsumerKind::SalesLedger | ConsumerKind::Webhooks)
            || unique.is_empty()
        {
            // No external call to save: the insert in `record` deduplicates.
            HashSet::new()
        } else {
            let ids: Vec<Uuid> = unique.iter().map(|e| e.event_id).collect();
            match self.already_processed(kind, &ids).await {
                Ok(done) => done,
                Err(e) => {
                    let failure = Failure::from(&e);
                    return events.iter().map(|_| Err(failure.clone())).collect();
                }
            }
        };
        let pending: Vec<&Parsed> = unique
            .into_iter()
            .filter(|e| !done.contains(&e.event_id))
            .collect();

        let call_failures = self.call_out(kind, &pending).await;
        let to_record: Vec<&Parsed> = pending
            .into_iter()
            .filter(|e| !call_failures.contains_key(&e.event_id))
            .collect();
        let recorded = self.record_batch_or_each(kind, &to_record).await;

        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                if first[&e.event_id] != i || done.contains(&e.event_id) {
                    return Ok(Applied::Duplicate);
                }
                if let Some(failure) = call_failures.get(&e.event_id) {
                    return Err(failure.clone());
                }
                match recorded.get(&e.event_id) {
                    Some(Ok(true)) => Ok(Applied::Applied),
                    Some(Ok(false)) => Ok(Applied::Duplicate),
                    Some(Err(failure)) => Err(failure.clone()),
                    None => unreachable!("every event to record has a recording outcome"),
                }
            })
            .collect()
    }

    async fn already_processed(&self, kind: ConsumerKind, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        let done: Vec<Uuid> = sqlx::query_scalar(
            "select event_id from processed_events where consumer = $1 and event_id = any($2)",
        )
        .bind(kind.group())
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(done.into_iter().collect())
    }

    /// The external call of `kind` for every event, `concurrency` at a time; returns
    /// the failures by event id.
    async fn call_out(&self, kind: ConsumerKind, events: &[&Parsed]) -> HashMap<Uuid, Failure> {
        if matches!(kind, ConsumerKind::SalesLedger | ConsumerKind::Webhooks) {
            return HashMap::new();
        }
        // A hand-rolled `buffer_unordered`: the combinator's closures trip the compiler's
        // `Send` inference for spawned tasks.
        let mut pending = events.iter().copied();
        let mut in_flight = FuturesUnordered::new();
        let mut failures = HashMap::new();
        loop {
            while in_flight.len() < self.concurrency.max(1) {
                match pending.next() {
                    Some(event) => in_flight.push(self.call_one(kind, event)),
                    None => break,
                }
            }
            match in_flight.next().await {
                Some((id, Err(e))) => {
                    failures.insert(id, Failure::from(&e));
                }
                Some((_, Ok(()))) => {}
                None => break,
            }
        }
        failures
    }

    async fn call_one(&self, kind: ConsumerKind, event: &Parsed) -> (Uuid, Result<()>) {
        let outcome = match kind {
            ConsumerKind::OrderConfirmation => {
                let order = &event.order;
                let confirmation = OrderConfirmation {
                    event_id: event.event_id,
                    order_id: order.order_id.0,
                    shopper_id: order.shopper_id.0,
                    sale_id: order.sale_id.0,
                    quantity: order.quantity,
                    amount_minor: order.amount.amount_minor,
                    currency: order.amount.currency.clone(),
                };
                self.mailer.send_order_confirmation(&confirmation).await
            }
            ConsumerKind::PaymentCapture => self.capture(&event.order).await,
            ConsumerKind::SalesLedger | ConsumerKind::Webhooks => Ok(()),
        };
        (event.event_id, outcome)
    }

    /// Captures an order's payment: the one its event names, or — for events written
    /// before they named it — the one the provider authorized for the order id (the
    /// attempt id).
    ///
    /// A closed order (cancelled or refunded: `reservations::order_life`) is not
    /// captured: its money is being released. Should the close commit between this
    /// read and the capture, the provider serialises the two: a capture after the void
    /// fails (and the retry reads the order closed), a void after the capture is
    /// refused and the release refunds instead.
    async fn capture(&self, order: &OrderPlaced) -> Result<()> {
        let status: Option<String> = sqlx::query_scalar("select status from orders where id = $1")
            .bind(order.order_id.0)
            .fetch_optional(&self.pool)
            .await?;
        if status.as_deref().is_some_and(|s| s != "confirmed") {
            return Ok(());
        }
        let payment = match &order.payment {
            Some(payment) => payment.clone(),
            None => match self.payments.find(order.order_id).await? {
                Some(payment) => payment.reference,
                None => {
                    return Err(PaymentError::Refused(format!(
                        "no payment was authorized for order {}",
                        order.order_id
                    ))
                    .into())
                }
            },
        };
        Ok(self.payments.capture(&payment).await?)
    }

    /// Records the batch in one transaction; if that fails for a reason that will
    /// repeat, records each event on its own so only the guilty one fails. Returns, per
    /// event id, whether this call inserted its `processed_events` row.
    async fn record_batch_or_each(
        &self,
        kind: ConsumerKind,
        events: &[&Parsed],
    ) -> HashMap<Uuid, Result<bool, Failure>> {
        if events.is_empty() {
            return HashMap::new();
        }
        match self.record(kind, events).await {
            Ok(inserted) => events
                .iter()
                .map(|e| (e.event_id, Ok(inserted.contains(&e.event_id))))
                .collect(),
            Err(e) if events.len() > 1 && !e.is_transient() => {
                tracing::info!(
                    consumer = kind.group(),
                    error = %e,
                    events = events.len(),
                    "batch rejected; recording its events one by one to isolate the failure"
                );
                let mut outcomes = HashMap::new();
                for event in events {
                    let outcome = match self.record(kind, std::slice::from_ref(event)).await {
                        Ok(inserted) => Ok(inserted.contains(&event.event_id)),
                        Err(e) => Err(Failure::from(&e)),
                    };
                    outcomes.insert(event.event_id, outcome);
                }
                outcomes
            }
            Err(e) => {
                let failure = Failure::from(&e);
                events
                    .iter()
                    .map(|e| (e.event_id, Err(failure.clone())))
                    .collect()
            }
        }
    }

    /// One transaction: `processed_events` rows, then the effect for the rows inserted.
    async fn record(&self, kind: ConsumerKind, events: &[&Parsed]) -> Result<HashSet<Uuid>> {
        // Sorted, so two consumers recording overlapping batches (duplicates published
        // by a relay that died mid-batch) take their row locks in the same order.
        let mut ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        ids.sort_unstable();
        let mut tx = self.pool.begin().await?;
        let inserted: HashSet<Uuid> = sqlx::query_scalar::<_, Uuid>(
            "insert into processed_events (consumer, event_id) \
             select $1, event_id from unnest($2::uuid[]) as event_id \
             on conflict do nothing returning event_id",
        )
        .bind(kind.group())
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let fresh: Vec<&Parsed> = events
            .iter()
            .copied()
            .filter(|e| inserted.contains(&e.event_id))
            .collect();
        if fresh.is_empty() {
            // Everything was applied by someone else meanwhile: nothing to commit.
            return Ok(inserted);
        }

        match kind {
            // The webhooks group fans out in `crate::webhooks::fanout` (every event
            // type, not only orders); the worker never hands it to these effects.
            ConsumerKind::Webhooks => {}
            ConsumerKind::OrderConfirmation => {
                let orders: Vec<Uuid> = fresh.iter().map(|e| e.order.order_id.0).collect();
                let event_ids: Vec<Uuid> = fresh.iter().map(|e| e.event_id).collect();
                sqlx::query(
                    "insert into notifications (order_id, event_id) \
                     select * from unnest($1::uuid[], $2::uuid[]) \
                     on conflict (order_id) do nothing",
                )
                .bind(&orders)
                .bind(&event_ids)
                .execute(&mut *tx)
                .await?;
            }
            ConsumerKind::PaymentCapture => {
                let orders: Vec<Uuid> = fresh.iter().map(|e| e.order.order_id.0).collect();
                sqlx::query(
                    "insert into payment_captures (order_id) select unnest($1::uuid[]) \
                     on conflict (order_id) do nothing",
                )
                .bind(&orders)
                .execute(&mut *tx)
                .await?;
            }
            ConsumerKind::SalesLedger => {
                // One upsert per sale per batch, never one per event: the ledger row of
                // a hot sale is touched once however many of its orders the batch holds.
                // A BTreeMap orders the sales, so concurrent ledgers lock rows alike.
                let mut totals: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
                for event in &fresh {
                    let sign = if event.closes { -1 } else { 1 };
                    let total = totals.entry(event.order.sale_id.0).or_default();
                    total.0 += sign * i64::from(event.order.quantity);
                    total.1 += sign * event.order.amount.amount_minor;
                }
                let sales: Vec<Uuid> = totals.keys().copied().collect();
                let units: Vec<i64> = totals.values().map(|t| t.0).collect();
                let revenue: Vec<i64> = totals.values().map(|t| t.1).collect();
                sqlx::query(
                    "insert into sales_ledger (sale_id, units_sold, revenue_minor) \
                     select * from unnest($1::uuid[], $2::bigint[], $3::bigint[]) \
                     on conflict (sale_id) do update set \
                         units_sold = sales_ledger.units_sold + excluded.units_sold, \
                         revenue_minor = sales_ledger.revenue_minor + excluded.revenue_minor, \
                         updated_at = now()",
                )
                .bind(&sales)
                .bind(&units)
                .bind(&revenue)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }
}
