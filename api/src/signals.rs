//! The controller's signals. Each process measures its own reserve and checkout
//! latency over a sliding window and publishes a summary to Redis every second (a hash
//! field per process, expiring with the hash); the controller, wherever it runs, reads
//! every fresh summary and takes the worst p95, so it sees all processes together.
//!
//! A checkout is counted as the shopper saw it: one that failed (provider unavailable,
//! a store down) or was cut off (the request timeout fired, the client went away) is a
//! completion that took as long as it ran, never dropped; a fast refusal (expired hold,
//! sold unit, a replayed answer) is no checkout at all and does not pull the p95 down.
//! Each checkout's time is split in two ([`CheckoutTimer`] with [`TimedPayments`]):
//! the payment provider's calls, and the rest — ours (pool wait, Redis, the
//! transaction), the part admission can influence.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use reservations::checkout::Placement;
use reservations::payment::layer::{CallLayer, Layered};
use reservations::payment::{PaymentError, PaymentGateway};
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
    /// Checkouts, each with its provider time (see [`CheckoutTimer`]).
    pub checkout: CheckoutWindow,
    /// Reserve latency.
    pub reserve: LatencyWindow,
    /// Checkouts in flight.
    pub inflight: AtomicI64,
    /// Checkouts in flight that are waiting for the payment provider right now.
    pub provider_inflight: AtomicI64,
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

/// A process's summary in Redis. Fields added later default, so processes of two
/// versions can share a deployment during a rollout.
/// One checkout as the controller counts it.
#[derive(Debug, Clone, Copy)]
struct CheckoutSample {
    at: Instant,
    total_ms: f64,
    provider_ms: f64,
    failed: bool,
}

/// How a checkout ended, for the signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutOutcome {
    /// Placed, or declined by the provider: checkout did its work.
    Completed,
    /// Failed or cut off after doing work: provider unavailable, a store down, the
    /// request timeout fired, the client went away.
    Failed,
    /// A fast refusal or a replayed answer: not a checkout completion at all.
    NotACheckout,
}

impl CheckoutOutcome {
    /// The outcome of a checkout's answer.
    pub fn of(answer: &reservations::Result<Placement>) -> Self {
        use reservations::Error as E;
        match answer {
            Ok(Placement::Placed(_)) | Err(E::PaymentDeclined) => CheckoutOutcome::Completed,
            Err(E::PaymentUnavailable | E::Database(_) | E::Redis(_) | E::Internal(_)) => {
                CheckoutOutcome::Failed
            }
            // A replay reads the first answer: it says nothing about checkout's time.
            Ok(Placement::Replayed(_)) | Err(_) => CheckoutOutcome::NotACheckout,
        }
    }
}

/// What the checkout window shows right now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CheckoutSummary {
    /// Checkouts in the window (completed and failed).
    pub count: usize,
    /// p95 of their time as the shopper saw it.
    pub p95_ms: Option<f64>,
    /// p95 of our part: their time minus the provider's.
    pub ours_p95_ms: Option<f64>,
    /// p95 of the provider's time within them.
    pub provider_p95_ms: Option<f64>,
    /// Completed checkouts per second.
    pub completed_per_second: f64,
    /// Failed or cut-off checkouts per second.
    pub failed_per_second: f64,
}

/// Checkouts over the last [`WINDOW`], each split into the provider's time and ours.
#[derive(Debug, Default)]
pub struct CheckoutWindow {
    inner: Mutex<CheckoutSamples>,
}

#[derive(Debug, Default)]
struct CheckoutSamples {
    samples: VecDeque<CheckoutSample>,
    /// The first checkout this process recorded: rates divide by the time covered,
    /// not by a full window the process has not lived yet.
    since: Option<Instant>,
}

fn p95_of(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((values.len() as f64) * 0.95).ceil() as usize - 1;
    let (_, p95, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
    Some(*p95)
}

impl CheckoutWindow {
    fn record(&self, total: Duration, provider: Duration, failed: bool) {
        let mut inner = self.inner.lock().expect("checkout window lock");
        let now = Instant::now();
        inner.since.get_or_insert(now);
        inner.samples.push_back(CheckoutSample {
            at: now,
            total_ms: total.as_secs_f64() * 1000.0,
            provider_ms: provider.min(total).as_secs_f64() * 1000.0,
            failed,
        });
        if inner.samples.len() > 50_000 {
            inner.samples.pop_front();
        }
    }

    /// The window's p95s and rates, dropping older samples.
    pub fn summary(&self) -> CheckoutSummary {
        let mut inner = self.inner.lock().expect("checkout window lock");
        while inner
            .samples
            .front()
            .is_some_and(|s| s.at.elapsed() > WINDOW)
        {
            inner.samples.pop_front();
        }
        let covered = inner
            .since
            .map_or(WINDOW, |since| since.elapsed().min(WINDOW))
            .max(Duration::from_secs(1))
            .as_secs_f64();
        let samples = &inner.samples;
        let failed = samples.iter().filter(|s| s.failed).count();
        CheckoutSummary {
            count: samples.len(),
            p95_ms: p95_of(samples.iter().map(|s| s.total_ms).collect()),
            ours_p95_ms: p95_of(samples.iter().map(|s| s.total_ms - s.provider_ms).collect()),
            provider_p95_ms: p95_of(samples.iter().map(|s| s.provider_ms).collect()),
            completed_per_second: (samples.len() - failed) as f64 / covered,
            failed_per_second: failed as f64 / covered,
        }
    }
}

/// The provider's share of one checkout: time spent in finished calls, and the start
/// of the call in progress.
#[derive(Debug, Default)]
struct ProviderClock {
    spent: Mutex<(Duration, Option<Instant>)>,
}

impl ProviderClock {
    fn enter(&self) {
        self.spent.lock().expect("provider clock").1 = Some(Instant::now());
    }

    fn leave(&self) {
        let mut spent = self.spent.lock().expect("provider clock");
        if let Some(since) = spent.1.take() {
            spent.0 += since.elapsed();
        }
    }

    /// The provider's time so far, a call in progress included (a checkout cut off
    /// while waiting for the provider waited for the provider).
    fn total(&self) -> Duration {
        let spent = self.spent.lock().expect("provider clock");
        spent.0 + spent.1.map_or(Duration::ZERO, |since| since.elapsed())
    }
}

tokio::task_local! {
    /// The clock of the checkout this task is running, for [`TimedPayments`].
    static PROVIDER_CLOCK: Arc<ProviderClock>;
}

/// Times one checkout request and records it when it ends — also when it never
/// answers: a timer dropped unfinished (the request timeout fired, the client went
/// away) records a failed checkout of the time it ran.
pub struct CheckoutTimer {
    signals: Arc<ProcessSignals>,
    clock: Arc<ProviderClock>,
    started: Instant,
    finished: bool,
}

impl CheckoutTimer {
    /// Starts timing a checkout (and counting it in flight).
    pub fn start(signals: &Arc<ProcessSignals>) -> Self {
        signals.inflight.fetch_add(1, Ordering::Relaxed);
        Self {
            signals: signals.clone(),
            clock: Arc::default(),
            started: Instant::now(),
            finished: false,
        }
    }

    /// Runs the checkout, the provider calls it makes through [`TimedPayments`]
    /// counted as the provider's time.
    pub async fn time<F: Future>(&self, checkout: F) -> F::Output {
        PROVIDER_CLOCK.scope(self.clock.clone(), checkout).await
    }

    /// Records the checkout's answer.
    pub fn finish(mut self, answer: &reservations::Result<Placement>) {
        self.finished = true;
        match CheckoutOutcome::of(answer) {
            CheckoutOutcome::Completed => self.record(false),
            CheckoutOutcome::Failed => self.record(true),
            CheckoutOutcome::NotACheckout => {}
        }
    }

    fn record(&self, failed: bool) {
        self.signals
            .checkout
            .record(self.started.elapsed(), self.clock.total(), failed);
    }
}

impl Drop for CheckoutTimer {
    fn drop(&mut self) {
        if !self.finished {
            self.record(true);
        }
        self.signals.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A payment gateway that counts its calls made for a checkout (inside
/// [`CheckoutTimer::time`]) as that checkout's provider time, and the checkouts
/// waiting for the provider. Calls outside a checkout (the capture worker, the
/// completer) pass through untimed; the checker's listing is never timed.
pub type TimedPayments = Layered<ProviderTime>;

/// Times `inner`'s calls into `signals` (see [`TimedPayments`]).
pub fn timed_payments(
    inner: Arc<dyn PaymentGateway>,
    signals: Arc<ProcessSignals>,
) -> TimedPayments {
    Layered::wrap(ProviderTime { signals }, inner)
}

/// The clock around each call of a [`TimedPayments`].
pub struct ProviderTime {
    signals: Arc<ProcessSignals>,
}

impl ProviderTime {
    async fn timed<T>(&self, call: BoxFuture<'_, T>) -> T {
        let Ok(clock) = PROVIDER_CLOCK.try_with(Arc::clone) else {
            return call.await;
        };
        clock.enter();
        let waiting = InFlight::start(&self.signals.provider_inflight);
        let out = call.await;
        drop(waiting);
        clock.leave();
        out
    }
}

impl CallLayer for ProviderTime {
    fn around<'a, T: Send + 'a>(
        &'a self,
        call: BoxFuture<'a, Result<T, PaymentError>>,
    ) -> BoxFuture<'a, Result<T, PaymentError>> {
        Box::pin(self.timed(call))
    }

    fn wraps_list(&self) -> bool {
        false
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
    #[serde(default)]
    checkout_ours_p95_ms: Option<f64>,
    #[serde(default)]
    provider_p95_ms: Option<f64>,
    #[serde(default)]
    checkouts_per_second: f64,
    #[serde(default)]
    checkouts_failed_per_second: f64,
    #[serde(default)]
    provider_inflight: i64,
    #[serde(default)]
    checkout_connections: i64,
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
        let checkouts = signals.checkout.summary();
        let (reserve_p95_ms, reserve_n) = signals.reserve.p95();
        let summary = Summary {
            at_ms: chrono::Utc::now().timestamp_millis(),
            checkout_p95_ms: checkouts.p95_ms,
            checkout_n: checkouts.count,
            reserve_p95_ms,
            reserve_n,
            inflight: signals.inflight.load(Ordering::Relaxed),
            pool_wait_ms,
            checkout_ours_p95_ms: checkouts.ours_p95_ms,
            provider_p95_ms: checkouts.provider_p95_ms,
            checkouts_per_second: checkouts.completed_per_second,
            checkouts_failed_per_second: checkouts.failed_per_second,
            provider_inflight: signals.provider_inflight.load(Ordering::Relaxed),
            checkout_connections: i64::from(checkout_pool.options().get_max_connections()),
        };
        metrics::gauge!("flashsale_checkouts_in_flight").set(summary.inflight as f64);
        // The split the controller acts on (see the module docs), for dashboards and
        // the slowdown rehearsal.
        for (part, p95) in [
            ("total", checkouts.p95_ms),
            ("ours", checkouts.ours_p95_ms),
            ("provider", checkouts.provider_p95_ms),
        ] {
            metrics::gauge!("flashsale_checkout_p95_ms", "part" => part).set(p95.unwrap_or(0.0));
        }
        for (outcome, rate) in [
            ("completed", checkouts.completed_per_second),
            ("failed", checkouts.failed_per_second),
        ] {
            metrics::gauge!("flashsale_checkouts_per_second", "outcome" => outcome).set(rate);
        }
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
            let sum = |f: fn(&Summary) -> f64| fresh.iter().map(f).sum::<f64>();
            Ok(Measured {
                checkout_p95_ms: worst(|s| s.checkout_p95_ms.filter(|_| s.checkout_n > 0)),
                checkout_ours_p95_ms: worst(|s| {
                    s.checkout_ours_p95_ms.filter(|_| s.checkout_n > 0)
                }),
                provider_p95_ms: worst(|s| s.provider_p95_ms.filter(|_| s.checkout_n > 0)),
                checkouts_per_second: sum(|s| s.checkouts_per_second),
                checkouts_failed_per_second: sum(|s| s.checkouts_failed_per_second),
                checkouts_ours_in_flight: fresh
                    .iter()
                    .map(|s| (s.inflight - s.provider_inflight).max(0))
                    .sum(),
                checkout_capacity: fresh.iter().map(|s| s.checkout_connections).sum(),
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

    #[tokio::test]
    async fn a_checkout_cut_off_counts_as_a_failed_one_and_a_fast_refusal_not_at_all() {
        let signals = Arc::new(ProcessSignals::default());
        // Cut off while waiting for the provider (the request timeout dropped it).
        let timer = CheckoutTimer::start(&signals);
        assert_eq!(signals.inflight.load(Ordering::Relaxed), 1);
        let cut = tokio::time::timeout(
            Duration::from_millis(50),
            timer.time(async {
                PROVIDER_CLOCK.with(|clock| clock.enter());
                std::future::pending::<()>().await
            }),
        )
        .await;
        assert!(cut.is_err());
        drop(timer);
        assert_eq!(signals.inflight.load(Ordering::Relaxed), 0);
        // A refusal: not a checkout.
        let refused = CheckoutTimer::start(&signals);
        refused.finish(&Err(reservations::Error::ReservationExpired));
        let summary = signals.checkout.summary();
        assert_eq!(summary.count, 1, "only the cut-off one counts");
        assert!(summary.failed_per_second > 0.0);
        assert_eq!(summary.completed_per_second, 0.0);
        assert!(summary.p95_ms.unwrap() >= 50.0, "as long as it ran");
        // It waited for the provider: the provider's time, not ours.
        assert!(summary.provider_p95_ms.unwrap() >= 50.0);
        assert!(summary.ours_p95_ms.unwrap() < 20.0);
    }

    #[tokio::test]
    async fn our_part_of_a_checkout_is_its_time_minus_the_providers() {
        let signals = Arc::new(ProcessSignals::default());
        let timer = CheckoutTimer::start(&signals);
        timer
            .time(async {
                tokio::time::sleep(Duration::from_millis(30)).await; // ours
                PROVIDER_CLOCK.with(|clock| clock.enter());
                tokio::time::sleep(Duration::from_millis(60)).await; // the provider's
                PROVIDER_CLOCK.with(|clock| clock.leave());
            })
            .await;
        timer.finish(&Err(reservations::Error::PaymentDeclined));
        let summary = signals.checkout.summary();
        assert_eq!(summary.count, 1, "a decline is a completed checkout");
        let (ours, provider) = (
            summary.ours_p95_ms.unwrap(),
            summary.provider_p95_ms.unwrap(),
        );
        // Sleeps only overshoot (a loaded machine): bounds from below, and the parts
        // add up to the whole.
        assert!(
            ours >= 30.0 && provider >= 60.0,
            "ours {ours}, provider {provider}"
        );
        assert!((summary.p95_ms.unwrap() - ours - provider).abs() < 1e-6);
        assert!(summary.completed_per_second > 0.0);
    }
}
