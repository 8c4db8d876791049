//! The event workers: three consumer groups ([`ConsumerKind`]) on the order stream,
//! each applying every `OrderPlaced` event exactly once. This module runs the loops
//! (read, claim, retry, acknowledge, dead-letter); what each group does with an event
//! is in `effects.rs`, and the group names in `consumer.rs`.
//!
//! - `order-confirmation` sends a confirmation through the [`Mailer`] port and records
//!   it in `notifications`;
//! - `payment-capture` captures the authorized payment through the [`PaymentGateway`]
//!   and records it in `payment_captures`;
//! - `sales-ledger` adds each batch's units and revenue to `sales_ledger`, one upsert
//!   per sale per batch.
//!
//! Delivery rules, per consumer:
//!
//! - an entry is acknowledged (`XACK`) only after its effect has committed, so a worker
//!   that dies leaves its entries pending;
//! - entries pending on another consumer for longer than `claim_idle` are taken over
//!   with `XAUTOCLAIM` (the owner is presumed dead, or too slow to matter);
//! - a failed entry stays pending and is retried with exponential backoff. A failure
//!   that would repeat on every delivery (a payload that does not parse, a foreign key
//!   pointing nowhere) counts against `max_deliveries`, read from the group's delivery
//!   counter (`XPENDING`); at the limit the entry moves to the dead-letter stream and
//!   is acknowledged, so the events behind it keep flowing. Transient failures
//!   (Postgres or Redis down, provider outage) are retried without limit and pause the
//!   consumer's reading instead: an outage must not dead-letter a whole sale.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamInfoConsumersReply,
    StreamPendingCountReply, StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;
use reservations::events::DomainEvent;
use reservations::payment::PaymentGateway;
use reservations::redis_conn::{RedisConn, RedisTarget};
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::{jitter, sleep_or_shutdown, step, Backoff};
use crate::effects::{Applied, Effects, Failure, Parsed};
use crate::error::Result;
use crate::event::{dead_letter_key, stream_key, Event, ORDER_AGGREGATE};
use crate::mailer::Mailer;

use crate::consumer::ConsumerKind;

/// A consumer that has not read for this long and holds no pending entry is removed
/// from its group: every process start adds a consumer name, and dead names would
/// otherwise pile up in `XINFO CONSUMERS`.
const FORGET_CONSUMER_AFTER: Duration = Duration::from_secs(3600);

/// How the workers run. [`WorkerConfig::new`] gives the production defaults.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Prefix of every Redis key (`FLASHSALE_REDIS_PREFIX`).
    pub prefix: String,
    /// This process's consumer name in every group; must be unique among live
    /// processes, or two of them would share (and steal) each other's pending entries.
    pub consumer_name: String,
    /// Most entries per read, and so per effect transaction.
    pub batch_size: usize,
    /// Longest a blocking read waits for new entries.
    pub block: Duration,
    /// How long an entry must have been pending on a consumer before another one
    /// claims it. Longer than the slowest batch, or live consumers steal each other's
    /// work (harmless, the effects are idempotent, but wasted).
    pub claim_idle: Duration,
    /// Deliveries after which an entry that keeps failing goes to the dead letters.
    pub max_deliveries: u64,
    /// Delay before the first retry of a failed entry; doubles with each delivery.
    pub retry_backoff: Duration,
    /// Cap on the retry delay.
    pub max_retry_backoff: Duration,
    /// Most external calls (mail, capture) in flight per consumer.
    pub concurrency: usize,
}

impl WorkerConfig {
    /// The defaults: batches of 100, two-second blocking reads, claims after 30 s idle,
    /// five deliveries before dead-lettering, retries from 200 ms up to 10 s.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            consumer_name: unique_consumer_name(),
            batch_size: 100,
            block: Duration::from_secs(2),
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
            retry_backoff: Duration::from_millis(200),
            max_retry_backoff: Duration::from_secs(10),
            concurrency: 16,
        }
    }
}

/// A consumer name unique to this process: `<hostname>-<pid>-<random>`. The random part
/// keeps a restarted container (same hostname, often the same pid 1) from taking over
/// its predecessor's name and, with it, entries it never finished.
pub fn unique_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Runs the three consumers of the order stream until `shutdown` is cancelled, then
/// returns once each has finished the batch in hand.
///
/// Errors never end it: Redis or Postgres failures are logged and retried with backoff.
pub async fn run(
    pool: PgPool,
    redis: RedisTarget,
    payments: Arc<dyn PaymentGateway>,
    mailer: Arc<dyn Mailer>,
    config: WorkerConfig,
    shutdown: CancellationToken,
) {
    tracing::info!(consumer = %config.consumer_name, prefix = %config.prefix, "event workers started");
    let mut trouble = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let conn = loop {
        if shutdown.is_cancelled() {
            return;
        }
        match redis.connect(Duration::from_secs(5)).await {
            Ok(conn) => break conn,
            Err(e) => {
                tracing::warn!(error = %e, "event workers cannot reach Redis");
                sleep_or_shutdown(trouble.next_delay(), &shutdown).await;
            }
        }
    };
    let effects = Arc::new(Effects {
        pool,
        payments,
        mailer,
        concurrency: config.concurrency,
    });
    let config = Arc::new(config);
    let tasks: Vec<_> = ConsumerKind::ALL
        .into_iter()
        .map(|kind| {
            let consumer = Consumer {
                kind,
                stream: stream_key(&config.prefix, ORDER_AGGREGATE),
                dead: dead_letter_key(&config.prefix, ORDER_AGGREGATE),
                config: config.clone(),
                redis: redis.clone(),
                conn: conn.clone(),
                effects: effects.clone(),
            };
            tokio::spawn(consumer.run(shutdown.clone()))
        })
        .collect();
    for task in tasks {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "an event consumer task panicked");
        }
    }
    tracing::info!("event workers stopped");
}

/// How a batch of entries was read: fresh entries are on their first delivery; the
/// others' delivery counts are asked of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Fresh,
    Redelivered,
}

/// What a handled batch asks of the loop: when to retry the entries left pending, and
/// whether reading new entries should wait until then (a transient failure).
#[derive(Debug, Default)]
struct Report {
    retry_in: Option<Duration>,
    transient: bool,
}

impl Report {
    /// Combines the reports of two batches: the earlier retry wins.
    fn merge(&mut self, other: Report) {
        self.retry_in = match (self.retry_in, other.retry_in) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.transient |= other.transient;
    }
}

/// When the consumer retries its own pending entries.
#[derive(Debug, Default)]
struct RetryPlan {
    at: Option<Instant>,
    /// Set by a transient failure: read nothing new until the retry.
    paused: bool,
}

impl RetryPlan {
    fn absorb(&mut self, report: Report) {
        if let Some(delay) = report.retry_in {
            let at = Instant::now() + delay;
            self.at = Some(self.at.map_or(at, |current| current.min(at)));
        }
        self.paused |= report.transient;
    }

    fn due(&self, now: Instant) -> bool {
        self.at.is_some_and(|at| at <= now)
    }
}

/// One consumer group's loop.
struct Consumer {
    kind: ConsumerKind,
    stream: String,
    dead: String,
    config: Arc<WorkerConfig>,
    redis: RedisTarget,
    /// The shared multiplexed connection, for every command that does not block.
    conn: RedisConn,
    effects: Arc<Effects>,
}

impl Consumer {
    fn group(&self) -> &'static str {
        self.kind.group()
    }

    fn name(&self) -> &str {
        &self.config.consumer_name
    }

    async fn run(self, shutdown: CancellationToken) {
        let claim_every = (self.config.claim_idle / 2).max(Duration::from_millis(50));
        let mut trouble = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut group_ready = false;
        // The blocking reads' own connection: a blocked XREADGROUP would hold up every
        // command queued behind it on a shared multiplexed connection.
        let mut reader: Option<RedisConn> = None;
        let mut retry = RetryPlan::default();
        // Claim at once: a restarted fleet picks up what its predecessors left pending.
        let mut next_claim = Instant::now();

        while !shutdown.is_cancelled() {
            let outcome: Result<()> = async {
                if !group_ready {
                    self.ensure_group().await?;
                    group_ready = true;
                }
                let now = Instant::now();
                if now >= next_claim {
                    next_claim = now + claim_every;
                    let report = self.claim_round().await?;
                    retry.absorb(report);
                    return Ok(());
                }
                if retry.due(now) {
                    retry = RetryPlan::default();
                    let report = self.retry_pass().await?;
                    retry.absorb(report);
                    return Ok(());
                }
                let wake = retry.at.map_or(next_claim, |at| at.min(next_claim));
                if retry.paused {
                    sleep_or_shutdown(wake - now, &shutdown).await;
                    return Ok(());
                }
                // BLOCK 0 would mean "forever": never less than a millisecond.
                let block = (wake - now)
                    .min(self.config.block)
                    .max(Duration::from_millis(1));
                let entries = tokio::select! {
                    // Entries delivered by a read cut short stay pending on this name
                    // and are claimed by another consumer after `claim_idle`.
                    _ = shutdown.cancelled() => return Ok(()),
                    entries = self.read_new(&mut reader, block) => entries?,
                };
                let report = self.handle(entries, Source::Fresh).await?;
                retry.absorb(report);
                Ok(())
            }
            .await;

            match outcome {
                Ok(()) => trouble.reset(),
                Err(e) => {
                    let delay = trouble.next_delay();
                    tracing::warn!(consumer = self.group(), error = %e, "event consumer failed; retrying");
                    // Whatever was being handled may still be pending: look again later.
                    retry.absorb(Report {
                        retry_in: Some(delay),
                        transient: false,
                    });
                    reader = None;
                    group_ready = false;
                    sleep_or_shutdown(delay, &shutdown).await;
                }
            }
        }
    }

    /// Creates the group (and the stream) if missing. From id `0`: events the relay
    /// published before the first worker ever started are consumed too.
    async fn ensure_group(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        match conn
            .xgroup_create_mkstream::<_, _, _, ()>(&self.stream, self.group(), "0")
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Up to `batch_size` entries never delivered to this group, waiting up to `block`.
    async fn read_new(
        &self,
        reader: &mut Option<RedisConn>,
        block: Duration,
    ) -> Result<Vec<StreamId>> {
        let conn = match reader {
            Some(conn) => conn,
            None => reader.insert(
                // Longer than any BLOCK, or a quiet stream would read as a timeout.
                self.redis
                    .connect(self.config.block + Duration::from_secs(5))
                    .await?,
            ),
        };
        let options = StreamReadOptions::default()
            .group(self.group(), self.name())
            .count(self.config.batch_size)
            .block(block.as_millis() as usize);
        let reply: Option<StreamReadReply> = conn
            .xread_options(&[&self.stream], &[">"], &options)
            .await?;
        Ok(entries_of(reply))
    }

    /// Retries this consumer's own pending entries (its history in the group), page by
    /// page: each entry is tried once per pass, and the backoff applies between passes.
    async fn retry_pass(&self) -> Result<Report> {
        let options = StreamReadOptions::default()
            .group(self.group(), self.name())
            .count(self.config.batch_size);
        let mut report = Report::default();
        let mut after = "0".to_owned();
        loop {
            let reply: Option<StreamReadReply> = self
                .conn
                .clone()
                .xread_options(&[&self.stream], &[&after], &options)
                .await?;
            let entries = entries_of(reply);
            let last = match entries.last() {
                Some(last) if entries.len() >= self.config.batch_size => Some(last.id.clone()),
                _ => None,
            };
            report.merge(self.handle(entries, Source::Redelivered).await?);
            match last {
                Some(last) => after = last,
                None => return Ok(report),
            }
        }
    }

    /// Claims and handles every entry pending on any consumer for longer than
    /// `claim_idle`, then forgets consumers long gone.
    async fn claim_round(&self) -> Result<Report> {
        let mut conn = self.conn.clone();
        let mut report = Report::default();
        let mut cursor = "0-0".to_owned();
        loop {
            let reply: StreamAutoClaimReply = conn
                .xautoclaim_options(
                    &self.stream,
                    self.group(),
                    self.name(),
                    self.config.claim_idle.as_millis() as u64,
                    &cursor,
                    StreamAutoClaimOptions::default().count(self.config.batch_size),
                )
                .await?;
            if !reply.deleted_ids.is_empty() {
                // MAXLEN trimmed them before anyone processed them: their content is
                // gone from Redis; the outbox rows (if not yet past retention) hold it.
                tracing::error!(
                    consumer = self.group(),
                    entries = ?reply.deleted_ids,
                    "pending entries were trimmed from the stream before being processed"
                );
            }
            if !reply.claimed.is_empty() {
                tracing::info!(
                    consumer = self.group(),
                    claimed = reply.claimed.len(),
                    "claimed entries left pending by another consumer"
                );
                report.merge(self.handle(reply.claimed, Source::Redelivered).await?);
            }
            if reply.next_stream_id == "0-0" {
                break;
            }
            cursor = reply.next_stream_id;
        }
        self.forget_departed_consumers().await?;
        Ok(report)
    }

    async fn forget_departed_consumers(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let info: StreamInfoConsumersReply =
            conn.xinfo_consumers(&self.stream, self.group()).await?;
        for consumer in info.consumers {
            let idle = Duration::from_millis(consumer.idle as u64);
            if consumer.name != self.name() && consumer.pending == 0 && idle > FORGET_CONSUMER_AFTER
            {
                conn.xgroup_delconsumer::<_, _, _, ()>(&self.stream, self.group(), &consumer.name)
                    .await?;
                tracing::info!(consumer = self.group(), name = %consumer.name, "departed consumer forgotten");
            }
        }
        Ok(())
    }

    /// Delivery counts of `entries` in this group (`XPENDING` extended form), asked one
    /// id at a time in one pipeline: a range query with a count could stop short on
    /// other pending entries that fall inside the range.
    async fn delivery_counts(&self, entries: &[StreamId]) -> Result<HashMap<String, u64>> {
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
    async fn handle(&self, entries: Vec<StreamId>, source: Source) -> Result<Report> {
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
                    });
                    parsed_at.push(i);
                }
                // Another event type on the order stream: not this consumer's business.
                Ok(_) => verdicts[i] = Some(Verdict::Done("ignored")),
                Err(e) => verdicts[i] = Some(Verdict::Failed(Failure::from(&e))),
            }
        }
        let outcomes = self.effects.apply(self.kind, &parsed).await;
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
    async fn dead_letter(&self, entry: &StreamId, reason: &str, delivered: u64) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("XADD").arg(&self.dead).arg("*");
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

    fn count(&self, outcome: &'static str) {
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

fn entries_of(reply: Option<StreamReadReply>) -> Vec<StreamId> {
    reply
        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_differ_between_calls() {
        assert_ne!(unique_consumer_name(), unique_consumer_name());
    }
}
