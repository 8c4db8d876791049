//! The outbox relay: moves committed events from the Postgres `outbox` table to Redis
//! Streams.
//!
//! One batch is one Postgres transaction: claim the oldest unpublished rows with
//! `FOR UPDATE SKIP LOCKED`, append them to their streams in one pipeline, mark them
//! published, commit. Consequences:
//!
//! - several relays can run at once: a row locked by one is skipped by the others, so
//!   they share the backlog instead of queueing behind each other;
//! - a relay that dies after the append and before the commit leaves its rows
//!   unpublished (the lock goes with the connection) and they are appended again:
//!   delivery is at-least-once, consumers deduplicate by event id;
//! - rows are never read "after the last id seen": ids and timestamps are taken before
//!   commit, so a slow transaction's row would be skipped forever. The relay always asks
//!   for whatever is unpublished.
//!
//! The relay wakes on `NOTIFY outbox` (a statement trigger on the table) and also polls,
//! because notifications sent while its listening connection is down are lost.
//!
//! Redis is not the durable record: a Redis that restarts empty (or fails over to a
//! replica that was behind) loses the stream entries no consumer had processed yet,
//! although their rows say "published". The relay keeps a marker key next to the order
//! stream (same hash tag, so on a cluster it lives and dies with the stream) and looks
//! for it every poll interval; when it is gone, Redis lost what was appended, and the
//! relay marks every `OrderPlaced` row that some consumer group has not processed as
//! unpublished again, then sets the marker. The next batches append those events once
//! more and the consumers' inbox deduplicates what had in fact been applied.
//!
//! A Redis that comes back *older* (an AOF missing its last second, a replica promoted
//! before it had everything) keeps the marker and loses entries all the same; for that
//! the relay also runs the redelivery rule of [`crate::redelivery`], which republishes
//! whatever no consumer settled within a bound, however Redis lost it.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionLike;
use reservations::redis_conn::{RedisConn, RedisTarget};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::backoff::{sleep_or_shutdown, Backoff};
use crate::consumer::ConsumerKind;
use crate::error::Result;
use crate::event::{stream_key, Event, ORDER_AGGREGATE, ORDER_PLACED};
use crate::redelivery;
use crate::trim;

/// The Postgres channel the outbox trigger notifies.
const CHANNEL: &str = "outbox";

/// Most rows one retention pass deletes: a long-stopped relay catching up on retention
/// must not hold one huge delete (and its locks and WAL) against the checkout path.
const RETENTION_CHUNK: i64 = 10_000;

/// How the relay runs. [`RelayConfig::new`] gives the production defaults.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Prefix of every Redis key (`FLASHSALE_REDIS_PREFIX`).
    pub prefix: String,
    /// Most rows per batch (one transaction, one pipeline).
    pub batch_size: u32,
    /// Approximate cap on each stream's length (`XADD … MAXLEN ~`). Entries older than
    /// the cap are trimmed whether or not every group has read them, so the cap must be
    /// far above what consumers can fall behind by; the durable record is Postgres.
    /// Memory is the price: an `OrderPlaced` entry takes roughly half a kilobyte.
    pub maxlen: usize,
    /// Longest sleep between two looks at the outbox when no notification arrives.
    pub poll_interval: Duration,
    /// How long published rows are kept (for replays and audits) before deletion.
    pub retention: Duration,
    /// How often published rows older than `retention` are deleted.
    pub retention_interval: Duration,
    /// How often the backlog gauges are refreshed.
    pub metrics_interval: Duration,
    /// An event published this long ago and not yet settled by every consumer group is
    /// published again ([`crate::redelivery`]).
    pub redeliver_after: Duration,
    /// How often the settle and redelivery passes run.
    pub redeliver_interval: Duration,
    /// How often the order stream is trimmed to what the consumer groups still owe
    /// ([`crate::trim`]).
    pub trim_interval: Duration,
}

impl RelayConfig {
    /// The defaults: batches of 250, streams capped near one million entries, a poll
    /// every second, published rows kept one day.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            batch_size: 250,
            maxlen: 1_000_000,
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(24 * 3600),
            retention_interval: Duration::from_secs(60),
            metrics_interval: Duration::from_secs(1),
            // Past the 30 s after which a dead worker's entries are claimed by another.
            redeliver_after: Duration::from_secs(60),
            redeliver_interval: Duration::from_secs(5),
            trim_interval: Duration::from_secs(10),
        }
    }
}

/// What one call of [`publish_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This many events were appended and marked published.
    Published(usize),
    /// Nothing unpublished was free to claim.
    Idle,
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: Uuid,
    aggregate_type: String,
    aggregate_id: Uuid,
    event_type: String,
    payload: String,
    correlation_id: String,
    occurred_at: DateTime<Utc>,
}

/// Publishes one batch: claims up to `batch_size` unpublished rows, oldest first,
/// appends each to its stream and marks them published, all in one transaction.
///
/// On any error the transaction rolls back and the rows stay unpublished; entries the
/// pipeline had already appended are appended again by the next attempt.
pub async fn publish_batch<C>(pool: &PgPool, redis: &mut C, config: &RelayConfig) -> Result<Outcome>
where
    C: ConnectionLike + Send,
{
    let mut tx = pool.begin().await?;
    let rows: Vec<OutboxRow> = sqlx::query_as(
        "select id, aggregate_type, aggregate_id, event_type, payload::text as payload, \
                correlation_id, occurred_at \
         from outbox where published_at is null \
         order by occurred_at limit $1 \
         for update skip locked",
    )
    .bind(i64::from(config.batch_size))
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(Outcome::Idle);
    }

    // One pipeline per stream: entries of one stream keep the outbox order, and on a
    // Redis Cluster a pipeline must stay on one slot (each stream has its own hash tag).
    let mut pipes: BTreeMap<String, redis::Pipeline> = BTreeMap::new();
    for row in &rows {
        let event = Event {
            id: row.id,
            event_type: row.event_type.clone(),
            aggregate_type: row.aggregate_type.clone(),
            aggregate_id: row.aggregate_id,
            occurred_at: row.occurred_at,
            correlation_id: row.correlation_id.clone(),
            payload: row.payload.clone(),
        };
        let stream = stream_key(&config.prefix, &event.aggregate_type);
        let pipe = pipes.entry(stream.clone()).or_insert_with(redis::pipe);
        pipe.cmd("XADD")
            .arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(config.maxlen)
            .arg("*");
        for (name, value) in event.to_fields() {
            pipe.arg(name).arg(value);
        }
        pipe.ignore();
    }
    for pipe in pipes.values() {
        pipe.query_async::<()>(redis).await?;
    }

    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    sqlx::query("update outbox set published_at = now() where id = any($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    metrics::counter!("flashsale_outbox_published_total").increment(ids.len() as u64);
    Ok(Outcome::Published(ids.len()))
}

/// The key whose absence tells the relay that Redis lost the order stream:
/// `<prefix>:stream:{order}:relayed`. It shares the stream's hash tag, so a cluster keeps
/// it on the stream's node.
pub fn marker_key(prefix: &str) -> String {
    format!("{}:relayed", stream_key(prefix, ORDER_AGGREGATE))
}

/// Marks every published `OrderPlaced` row that some consumer group has not processed
/// as unpublished again, so the relay appends it once more; returns how many. Rows that
/// every group processed are left alone: their effects are done. Safe to run at any
/// time and from several relays at once: an event appended twice is applied once.
pub async fn republish_unprocessed(pool: &PgPool) -> Result<u64> {
    let groups: Vec<&str> = ConsumerKind::ALL.iter().map(|k| k.group()).collect();
    let reset = sqlx::query(
        "update outbox e set published_at = null \
         where e.published_at is not null and e.event_type = $1 \
           and (select count(*) from processed_events p \
                where p.event_id = e.id and p.consumer = any($2)) < $3",
    )
    .bind(ORDER_PLACED)
    .bind(&groups)
    .bind(groups.len() as i64)
    .execute(pool)
    .await?;
    Ok(reset.rows_affected())
}

/// Checks the marker (see [`marker_key`]). When Redis no longer has it, republishes
/// what no consumer finished ([`republish_unprocessed`]) and sets the marker again;
/// returns `Some(rows republished)`, or `None` when the marker was there. The rows are
/// reset before the marker is set: a relay that dies in between leaves the marker
/// missing, and the next look repeats the (idempotent) repair.
pub async fn republish_if_redis_lost_events<C>(
    pool: &PgPool,
    redis: &mut C,
    prefix: &str,
) -> Result<Option<u64>>
where
    C: ConnectionLike + Send,
{
    let key = marker_key(prefix);
    let present: bool = redis::cmd("EXISTS").arg(&key).query_async(redis).await?;
    if present {
        return Ok(None);
    }
    let republished = republish_unprocessed(pool).await?;
    redis::cmd("SET")
        .arg(&key)
        .arg(Utc::now().to_rfc3339())
        .query_async::<()>(redis)
        .await?;
    Ok(Some(republished))
}

/// The outbox backlog for `/stats` and the admission controller: how many events are
/// unpublished, and the age in milliseconds of the oldest (`None` when there is none).
pub async fn backlog(pool: &PgPool) -> Result<(i64, Option<i64>)> {
    // Served by the partial index `outbox_unpublished`: as small as the backlog.
    let figures = sqlx::query_as(
        "select count(*), \
                case when count(*) > 0 then \
                    greatest(0, extract(epoch from now() - min(occurred_at)) * 1000)::bigint \
                end \
         from outbox where published_at is null",
    )
    .fetch_one(pool)
    .await?;
    Ok(figures)
}

/// Deletes up to 10,000 rows published more than `older_than` ago; returns how many.
pub async fn delete_published(pool: &PgPool, older_than: Duration) -> Result<u64> {
    let deleted = sqlx::query(
        "delete from outbox where id in ( \
             select id from outbox \
             where published_at < now() - make_interval(secs => $1) limit $2)",
    )
    .bind(older_than.as_secs_f64())
    .bind(RETENTION_CHUNK)
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}

/// Runs the relay until `shutdown` is cancelled, then returns (a batch in flight is
/// finished first).
///
/// Errors never end it: a failed batch is logged and retried with backoff (Postgres or
/// Redis down), a lost `LISTEN` connection is re-established while polling carries on.
pub async fn run(
    pool: PgPool,
    redis: RedisTarget,
    config: RelayConfig,
    shutdown: CancellationToken,
) {
    tracing::info!(
        batch_size = config.batch_size,
        prefix = %config.prefix,
        "outbox relay started"
    );
    let mut trouble = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut conn: Option<RedisConn> = None;
    let mut listener: Option<PgListener> = None;
    let mut next_listen_attempt = Instant::now();
    let mut next_metrics = Instant::now();
    let mut next_retention = Instant::now();
    let mut next_marker_check = Instant::now();
    let mut next_redelivery = Instant::now();
    let mut next_trim = Instant::now();

    while !shutdown.is_cancelled() {
        let now = Instant::now();
        if now >= next_metrics {
            next_metrics = now + config.metrics_interval;
            refresh_backlog_gauges(&pool).await;
        }
        if now >= next_retention {
            next_retention = now + config.retention_interval;
            match delete_published(&pool, config.retention).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(deleted = n, "published outbox rows past retention deleted")
                }
                Err(e) => tracing::warn!(error = %e, "outbox retention pass failed"),
            }
        }
        if now >= next_redelivery {
            next_redelivery = now + config.redeliver_interval;
            if let Err(e) = redelivery::pass(&pool, config.redeliver_after).await {
                tracing::warn!(error = %e, "outbox redelivery pass failed");
            }
        }
        if listener.is_none() && now >= next_listen_attempt {
            // At most one attempt per poll interval: polling covers the gap anyway.
            next_listen_attempt = now + config.poll_interval;
            match listen(&pool).await {
                Ok(l) => listener = Some(l),
                Err(e) => tracing::warn!(error = %e, "cannot LISTEN on outbox; polling only"),
            }
        }
        let redis_conn = match &mut conn {
            Some(c) => c,
            None => match connect_redis(&redis).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay cannot reach Redis");
                    sleep_or_shutdown(trouble.next_delay(), &shutdown).await;
                    continue;
                }
            },
        };

        if Instant::now() >= next_marker_check {
            next_marker_check = Instant::now() + config.poll_interval;
            match republish_if_redis_lost_events(&pool, redis_conn, &config.prefix).await {
                Ok(None) | Ok(Some(0)) => {}
                Ok(Some(n)) => {
                    metrics::counter!("flashsale_outbox_republished_total").increment(n);
                    tracing::warn!(
                        republished = n,
                        "Redis lost the order stream; events not yet processed by every consumer are published again"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check whether Redis kept the order stream; retrying");
                    next_marker_check = Instant::now();
                    sleep_or_shutdown(trouble.next_delay(), &shutdown).await;
                    continue;
                }
            }
        }

        if Instant::now() >= next_trim {
            next_trim = Instant::now() + config.trim_interval;
            let stream = stream_key(&config.prefix, ORDER_AGGREGATE);
            if let Err(e) = trim::trim_acknowledged(redis_conn, &stream).await {
                tracing::warn!(error = %e, "cannot trim the order stream; retrying later");
            }
        }

        match publish_batch(&pool, redis_conn, &config).await {
            Ok(Outcome::Published(n)) => {
                trouble.reset();
                tracing::debug!(published = n, "outbox batch published");
            }
            Ok(Outcome::Idle) => {
                trouble.reset();
                wait_for_work(&mut listener, config.poll_interval, &shutdown).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox batch failed; retrying");
                sleep_or_shutdown(trouble.next_delay(), &shutdown).await;
            }
        }
    }
    tracing::info!("outbox relay stopped");
}

async fn listen(pool: &PgPool) -> Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

async fn connect_redis(target: &RedisTarget) -> Result<RedisConn> {
    // The response timeout bounds how long a batch keeps its rows locked if Redis stops
    // answering.
    Ok(target.connect(Duration::from_secs(5)).await?)
}

async fn refresh_backlog_gauges(pool: &PgPool) {
    match backlog(pool).await {
        Ok((count, age_ms)) => {
            metrics::gauge!("flashsale_outbox_backlog").set(count as f64);
            metrics::gauge!("flashsale_outbox_oldest_age_seconds")
                .set(age_ms.unwrap_or(0) as f64 / 1000.0);
        }
        Err(e) => tracing::warn!(error = %e, "cannot measure the outbox backlog"),
    }
}

/// What ended a wait for work.
enum Woken {
    Notified,
    TimedOut,
    ListenerLost,
    ListenerFailed(sqlx::Error),
}

/// Sleeps until a notification, the poll interval, or shutdown, whichever comes first.
async fn wait_for_work(
    listener: &mut Option<PgListener>,
    poll: Duration,
    shutdown: &CancellationToken,
) {
    let woken = match listener.as_mut() {
        None => {
            sleep_or_shutdown(poll, shutdown).await;
            return;
        }
        Some(l) => tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(poll) => Woken::TimedOut,
            received = l.try_recv() => match received {
                Ok(Some(_)) => Woken::Notified,
                Ok(None) => Woken::ListenerLost,
                Err(e) => Woken::ListenerFailed(e),
            },
        },
    };
    match woken {
        Woken::Notified => {
            // One batch looks at everything committed so far: the notifications that
            // queued up meanwhile carry no extra information.
            if let Some(l) = listener.as_mut() {
                while l.next_buffered().is_some() {}
            }
        }
        Woken::TimedOut => {}
        // Notifications sent while the connection was down are gone; the batch that
        // follows finds their rows anyway. `try_recv` reconnects on the next call.
        Woken::ListenerLost => tracing::info!("outbox LISTEN connection lost; reconnecting"),
        Woken::ListenerFailed(e) => {
            tracing::warn!(error = %e, "outbox LISTEN failed; polling until it is back");
            *listener = None;
        }
    }
}
