//! The event workers: four consumer groups ([`ConsumerKind`]) on the order stream,
//! each applying every `OrderPlaced` event exactly once, the `webhooks` group on the
//! sale stream too, and the webhook delivery loop ([`crate::webhooks::deliver`]). This module runs the loops
//! (read, claim, retry, acknowledge, dead-letter); what each group does with an event
//! is in `effects.rs`, and the group names in `consumer.rs`; handling one batch (apply,
//! acknowledge, dead-letter, plan the retry) is in `handle.rs`.
//!
//! - `order-confirmation` sends a confirmation through the [`Mailer`] port and records
//!   it in `notifications`;
//! - `payment-capture` captures the authorized payment through the [`PaymentGateway`]
//!   and records it in `payment_captures`;
//! - `sales-ledger` adds each batch's units and revenue to `sales_ledger`, one upsert
//!   per sale per batch;
//! - `webhooks` fans every event merchants hear of out to their endpoints
//!   (`webhook_deliveries`, see [`crate::webhooks`]).
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

use std::sync::Arc;
use std::time::Duration;

use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamInfoConsumersReply,
    StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;
use reservations::payment::PaymentGateway;
use reservations::redis_conn::{RedisConn, RedisTarget};
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::{sleep_or_shutdown, Backoff};
use crate::effects::Effects;
use crate::error::Result;
use crate::event::{dead_letter_key, stream_key, ORDER_AGGREGATE};
use crate::mailer::Mailer;
use crate::webhooks::{self, WebhookConfig};
use reservations::events::SALE_AGGREGATE;

use crate::consumer::ConsumerKind;

mod handle;

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
    /// How the webhook deliveries are sent ([`crate::webhooks`]).
    pub webhooks: WebhookConfig,
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
            webhooks: WebhookConfig::new(),
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

/// Runs the consumers of the order stream, the webhooks consumer of the sale stream
/// and the webhook delivery loop until `shutdown` is cancelled, then returns once each
/// has finished the batch (or the attempts) in hand.
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
    let deliveries = tokio::spawn(webhooks::deliver::run(
        pool.clone(),
        config.webhooks.clone(),
        shutdown.clone(),
    ));
    let effects = Arc::new(Effects {
        pool,
        payments,
        mailer,
        concurrency: config.concurrency,
    });
    let config = Arc::new(config);
    // Every group on the order stream; the webhooks group alone on the sale stream.
    let groups = ConsumerKind::ALL
        .into_iter()
        .map(|kind| (kind, ORDER_AGGREGATE))
        .chain([(ConsumerKind::Webhooks, SALE_AGGREGATE)]);
    let mut tasks: Vec<_> = groups
        .map(|(kind, aggregate)| {
            let consumer = Consumer {
                kind,
                stream: stream_key(&config.prefix, aggregate),
                dead: dead_letter_key(&config.prefix, aggregate),
                config: config.clone(),
                redis: redis.clone(),
                conn: conn.clone(),
                effects: effects.clone(),
            };
            tokio::spawn(consumer.run(shutdown.clone()))
        })
        .collect();
    tasks.push(deliveries);
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
