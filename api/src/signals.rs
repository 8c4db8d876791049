//! The controller's signals. Each process measures its own reserve and checkout
//! latency over a sliding window and publishes a summary to Redis every second (a hash
//! field per process, expiring with the hash); the controller, wherever it runs, reads
//! every fresh summary and takes the worst p95, so it sees all processes together.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use reservations::redis_conn::RedisConn;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use waiting_room::runner::{Measured, SignalSource};

/// How far back a p95 looks.
const WINDOW: Duration = Duration::from_secs(10);
/// A process summary older than this is ignored (its process is gone or stuck).
const STALE_MS: i64 = 5_000;

/// Latencies of one kind of request over the last [`WINDOW`].
#[derive(Debug, Default)]
pub struct LatencyWindow {
    samples: Mutex<VecDeque<(Instant, f64)>>,
}

impl LatencyWindow {
    /// Records one request's latency.
    pub fn record(&self, elapsed: Duration) {
        let mut samples = self.samples.lock().expect("latency lock");
        samples.push_back((Instant::now(), elapsed.as_secs_f64() * 1000.0));
        // Bounded memory under any load: the p95 of the newest 50k is plenty.
        if samples.len() > 50_000 {
            samples.pop_front();
        }
    }

    /// The p95 in ms and the sample count of the window, dropping older samples.
    pub fn p95(&self) -> (Option<f64>, usize) {
        let mut samples = self.samples.lock().expect("latency lock");
        while samples.front().is_some_and(|(at, _)| at.elapsed() > WINDOW) {
            samples.pop_front();
        }
        if samples.is_empty() {
            return (None, 0);
        }
        let mut values: Vec<f64> = samples.iter().map(|(_, ms)| *ms).collect();
        let rank = ((values.len() as f64) * 0.95).ceil() as usize - 1;
        let (_, p95, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
        (Some(*p95), samples.len())
    }
}

/// This process's measurements.
#[derive(Debug, Default)]
pub struct ProcessSignals {
    /// Checkout latency.
    pub checkout: LatencyWindow,
    /// Reserve latency.
    pub reserve: LatencyWindow,
    /// Checkouts in flight.
    pub inflight: AtomicI64,
}

/// Counts a checkout in flight until dropped.
pub struct InFlight<'a>(&'a AtomicI64);

impl<'a> InFlight<'a> {
    /// Starts counting.
    pub fn start(counter: &'a AtomicI64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Summary {
    at_ms: i64,
    checkout_p95_ms: Option<f64>,
    checkout_n: usize,
    reserve_p95_ms: Option<f64>,
    reserve_n: usize,
    inflight: i64,
    pool_wait_ms: f64,
}

fn signals_key(prefix: &str) -> String {
    format!("{prefix}:signals")
}

/// Publishes this process's summary every second until shutdown.
pub async fn publish(
    signals: Arc<ProcessSignals>,
    mut redis: RedisConn,
    checkout_pool: PgPool,
    general_pool: PgPool,
    prefix: String,
    process: String,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // Pool wait: how long a checkout would wait for a connection right now.
        let started = Instant::now();
        let pool_wait_ms =
            match tokio::time::timeout(Duration::from_secs(1), checkout_pool.acquire()).await {
                Ok(Ok(_conn)) => started.elapsed().as_secs_f64() * 1000.0,
                _ => 1000.0,
            };
        let (checkout_p95_ms, checkout_n) = signals.checkout.p95();
        let (reserve_p95_ms, reserve_n) = signals.reserve.p95();
        let summary = Summary {
            at_ms: chrono::Utc::now().timestamp_millis(),
            checkout_p95_ms,
            checkout_n,
            reserve_p95_ms,
            reserve_n,
            inflight: signals.inflight.load(Ordering::Relaxed),
            pool_wait_ms,
        };
        metrics::gauge!("flashsale_checkouts_in_flight").set(summary.inflight as f64);
        for (name, pool) in [("checkout", &checkout_pool), ("general", &general_pool)] {
            let idle = pool.num_idle() as f64;
            metrics::gauge!("flashsale_db_pool_connections", "pool" => name, "state" => "idle")
                .set(idle);
            metrics::gauge!("flashsale_db_pool_connections", "pool" => name, "state" => "in_use")
                .set(f64::from(pool.size()) - idle);
        }
        metrics::gauge!("flashsale_checkout_pool_wait_ms").set(pool_wait_ms);
        let json = serde_json::to_string(&summary).unwrap_or_default();
        let key = signals_key(&prefix);
        let published: redis::RedisResult<()> = redis::pipe()
            .hset(&key, &process, json)
            .ignore()
            .expire(&key, 30)
            .ignore()
            .query_async(&mut redis)
            .await;
        if let Err(e) = published {
            tracing::warn!(error = %e, "could not publish signals");
        }
    }
}

/// Reads every process's summary and the outbox backlog.
pub struct RedisSignals {
    redis: RedisConn,
    db: PgPool,
    prefix: String,
}

impl RedisSignals {
    /// A source reading under `prefix`, with the outbox in `db`.
    pub fn new(redis: RedisConn, db: PgPool, prefix: String) -> Self {
        Self { redis, db, prefix }
    }
}

impl SignalSource for RedisSignals {
    fn measure(&self) -> BoxFuture<'_, anyhow::Result<Measured>> {
        Box::pin(async move {
            let raw: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
                .arg(signals_key(&self.prefix))
                .query_async(&mut self.redis.clone())
                .await?;
            let now = chrono::Utc::now().timestamp_millis();
            let fresh: Vec<Summary> = raw
                .values()
                .filter_map(|json| serde_json::from_str::<Summary>(json).ok())
                .filter(|s| now - s.at_ms <= STALE_MS)
                .collect();
            let worst =
                |f: fn(&Summary) -> Option<f64>| fresh.iter().filter_map(f).reduce(f64::max);
            let (backlog, oldest) = outbox_relay::relay::backlog(&self.db).await?;
            Ok(Measured {
                checkout_p95_ms: worst(|s| s.checkout_p95_ms.filter(|_| s.checkout_n > 0)),
                reserve_p95_ms: worst(|s| s.reserve_p95_ms.filter(|_| s.reserve_n > 0)),
                pool_wait_ms: worst(|s| Some(s.pool_wait_ms)).unwrap_or(0.0),
                inflight_checkouts: fresh.iter().map(|s| s.inflight).sum(),
                outbox_backlog: backlog,
                outbox_oldest_age_ms: oldest.unwrap_or(0),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_of_a_window() {
        let window = LatencyWindow::default();
        for ms in 1..=100 {
            window.record(Duration::from_millis(ms));
        }
        assert_eq!(window.p95(), (Some(95.0), 100));
        assert_eq!(LatencyWindow::default().p95(), (None, 0));
    }
}
