//! Handling one batch of a consumer group's entries: apply each event through the
//! group's effects, acknowledge what succeeded, dead-letter what failed for the last
//! time (or can never succeed), and report when to retry the rest.

use std::collections::HashMap;

use redis::streams::{StreamId, StreamPendingCountReply};
use redis::AsyncCommands;
use reservations::events::DomainEvent;

use super::{Consumer, Report, Source};
use crate::backoff::{jitter, step};
use crate::consumer::ConsumerKind;
use crate::effects::{Applied, Failure, Parsed};
use crate::error::Result;
use crate::event::Event;
use crate::webhooks::fanout::{fan_out, Incoming};

/// About how many entries the dead-letter stream keeps (the newest).
const DEAD_LETTER_MAXLEN: u64 = 100_000;

impl Consumer {
    /// Delivery counts of `entries` in this group (`XPENDING` extended form), asked one
    /// id at a time in one pipeline: a range query with a count could stop short on
    /// other pending entries that fall inside the range.
    pub(super) async fn delivery_counts(
        &self,
        entries: &[StreamId],
    ) -> Result<HashMap<String, u64>> {
        let mut pipe = redis::pipe();
        for entry in entries {
            pipe.cmd("XPENDING")
                .arg(&self.stream)
                .arg(self.group())
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let replies: Vec<StreamPendingCountReply> =
            pipe.query_async(&mut self.conn.clone()).await?;
        Ok(replies
            .into_iter()
            .flat_map(|reply| reply.ids)
            .map(|p| (p.id, p.times_delivered as u64))
            .collect())
    }

    /// Applies a batch, acknowledges what succeeded, dead-letters what failed for the
    /// last time, and reports when to retry the rest.
    pub(super) async fn handle(&self, entries: Vec<StreamId>, source: Source) -> Result<Report> {
        if entries.is_empty() {
            return Ok(Report::default());
        }
        let deliveries = match source {
            Source::Fresh => HashMap::new(),
            Source::Redelivered => self.delivery_counts(&entries).await?,
        };

        let mut verdicts: Vec<Option<Verdict>> = vec![None; entries.len()];
        let mut parsed = Vec::new();
        let mut parsed_at = Vec::new();
        // The webhooks group takes every event type merchants hear of (orders and
        // sales alike) to its own fan-out instead of the order effects.
        let mut fanned = Vec::new();
        let mut fanned_at = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            if entry.map.is_empty() {
                // Read from history after MAXLEN trimmed it: nothing left to retry.
                verdicts[i] = Some(Verdict::DeadLetter(
                    "the entry was trimmed from the stream before it was processed".into(),
                ));
                continue;
            }
            let event = match Event::from_fields(&entry.map) {
                Ok(event) => event,
                Err(e) => {
                    verdicts[i] = Some(Verdict::Failed(Failure::from(&e)));
                    continue;
                }
            };
            match event.decode() {
                Ok(Some(domain)) if self.kind == ConsumerKind::Webhooks => {
                    fanned.push(Incoming {
                        event_id: event.id,
                        occurred_at: event.occurred_at,
                        event: domain,
                    });
                    fanned_at.push(i);
                }
                Ok(Some(DomainEvent::OrderPlaced(order))) => {
                    // Commit-to-consumed lag: from the order's transaction to this consumer.
                    let lag = (chrono::Utc::now() - event.occurred_at)
                        .num_milliseconds()
                        .max(0);
                    metrics::histogram!("flashsale_event_lag_seconds", "consumer" => self.group())
                        .record(lag as f64 / 1000.0);
                    parsed.push(Parsed {
                        event_id: event.id,
                        order,
                        closes: false,
                    });
                    parsed_at.push(i);
                }
                // A closed order counts down in the sales ledger (see `Parsed::closes`).
                Ok(Some(
                    DomainEvent::OrderCancelled(closed) | DomainEvent::OrderRefunded(closed),
                )) if self.kind == ConsumerKind::SalesLedger => {
                    parsed.push(Parsed {
                        event_id: event.id,
                        order: reservations::events::OrderPlaced {
                            order_id: closed.order_id,
                            sale_id: closed.sale_id,
                            shopper_id: closed.shopper_id,
                            reservation_id: closed.reservation_id,
                            quantity: closed.quantity,
                            amount: closed.amount,
                            payment: None,
                            lines: Vec::new(),
                        },
                        closes: true,
                    });
                    parsed_at.push(i);
                }
                // Another event type on the order stream: not this consumer's business.
                Ok(_) => verdicts[i] = Some(Verdict::Done("ignored")),
                Err(e) => verdicts[i] = Some(Verdict::Failed(Failure::from(&e))),
            }
        }
        let mut outcomes = self.effects.apply(self.kind, &parsed).await;
        parsed_at.extend(fanned_at);
        if !fanned.is_empty() {
            outcomes.extend(fan_out(&self.effects.pool, &fanned).await);
        }
        for (i, outcome) in parsed_at.into_iter().zip(outcomes) {
            verdicts[i] = Some(match outcome {
                Ok(Applied::Applied) => Verdict::Done("applied"),
                Ok(Applied::Duplicate) => Verdict::Done("duplicate"),
                Err(failure) => Verdict::Failed(failure),
            });
        }

        let mut acks = Vec::new();
        let mut report = Report::default();
        let mut failed = 0usize;
        let mut first_failure = None;
        for (entry, verdict) in entries.iter().zip(verdicts) {
            let delivered = deliveries.get(&entry.id).copied().unwrap_or(1);
            match verdict.expect("every entry has a verdict") {
                Verdict::Done(outcome) => {
                    self.count(outcome);
                    acks.push(entry.id.as_str());
                }
                Verdict::DeadLetter(reason) => self.dead_letter(entry, &reason, delivered).await?,
                Verdict::Failed(failure)
                    if !failure.transient && delivered >= self.config.max_deliveries =>
                {
                    self.dead_letter(entry, &failure.reason, delivered).await?;
                }
                Verdict::Failed(failure) => {
                    self.count("failed");
                    failed += 1;
                    let delay = jitter(step(
                        self.config.retry_backoff,
                        self.config.max_retry_backoff,
                        delivered.saturating_sub(1).min(32) as u32,
                    ));
                    report.retry_in = Some(report.retry_in.map_or(delay, |d| d.min(delay)));
                    report.transient |= failure.transient;
                    first_failure.get_or_insert((entry.id.clone(), delivered, failure));
                }
            }
        }
        if let Some((entry_id, delivered, failure)) = first_failure {
            tracing::warn!(
                consumer = self.group(),
                failed,
                entry_id,
                deliveries = delivered,
                transient = failure.transient,
                reason = %failure.reason,
                "events failed; left pending for a retry"
            );
        }
        if !acks.is_empty() {
            self.conn
                .clone()
                .xack::<_, _, _, ()>(&self.stream, self.group(), &acks)
                .await?;
        }
        Ok(report)
    }

    /// Copies the entry to the dead-letter stream and acknowledges it, atomically: a
    /// crash in between cannot leave it both dead-lettered and pending. The copy keeps
    /// every original field and adds `consumer`, `entry_id`, `deliveries` and `error`.
    pub(super) async fn dead_letter(
        &self,
        entry: &StreamId,
        reason: &str,
        delivered: u64,
    ) -> Result<()> {
        // Postgres first: should Redis lose the dead-letter stream, the redelivery rule
        // still knows this group has settled the event. An entry without an event id
        // is not an event of ours and has nothing to settle.
        if let Some(event) = entry
            .get::<String>("id")
            .and_then(|id| id.parse::<uuid::Uuid>().ok())
        {
            self.effects
                .record_dead_letter(self.kind, event, reason)
                .await?;
        }
        let mut pipe = redis::pipe();
        // Bounded: a flood of poison events must not grow Redis without limit. The
        // record of each give-up is in Postgres (above); the stream is for looking.
        pipe.atomic()
            .cmd("XADD")
            .arg(&self.dead)
            .arg("MAXLEN")
            .arg("~")
            .arg(DEAD_LETTER_MAXLEN)
            .arg("*");
        for (name, value) in &entry.map {
            if let Ok(bytes) = redis::from_redis_value::<Vec<u8>>(value) {
                pipe.arg(name).arg(bytes);
            }
        }
        pipe.arg("consumer")
            .arg(self.group())
            .arg("entry_id")
            .arg(&entry.id)
            .arg("deliveries")
            .arg(delivered)
            .arg("error")
            .arg(reason)
            .ignore();
        pipe.cmd("XACK")
            .arg(&self.stream)
            .arg(self.group())
            .arg(&entry.id)
            .ignore();
        pipe.query_async::<()>(&mut self.conn.clone()).await?;

        self.count("dead_lettered");
        metrics::counter!("flashsale_worker_dead_lettered_total", "consumer" => self.group())
            .increment(1);
        let event_id = entry
            .get::<String>("id")
            .unwrap_or_else(|| "unknown".into());
        tracing::warn!(
            consumer = self.group(),
            event_id,
            entry_id = %entry.id,
            deliveries = delivered,
            reason,
            "event moved to the dead-letter stream"
        );
        Ok(())
    }

    pub(super) fn count(&self, outcome: &'static str) {
        metrics::counter!(
            "flashsale_worker_events_total",
            "consumer" => self.group(),
            "outcome" => outcome
        )
        .increment(1);
    }
}

/// What becomes of one entry.
#[derive(Debug, Clone)]
enum Verdict {
    /// Acknowledge; the label is the metric's outcome.
    Done(&'static str),
    /// Failed; retried, or dead-lettered at the delivery limit.
    Failed(Failure),
    /// Dead-letter now: retrying cannot help.
    DeadLetter(String),
}
