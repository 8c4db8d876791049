//! The admission controllers: one per sale with a line, across all processes. Each
//! process ticks every sale it can lease; the lease (a Redis key with a short expiry,
//! renewed every tick) makes exactly one process advance a sale's line, and when the
//! holder dies another takes over once the lease expires.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use redis::Script;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::controller::{self, Limits, Signals};
use crate::queue::Queue;
use crate::Result;
use reservations::ids::SaleId;
use reservations::sales::{AdmissionMode, SaleState};

/// What the process measured, aggregated over every process (see the api crate's
/// signal publisher).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Measured {
    /// Checkout p95 over the last window as shoppers saw it (checkouts cut off or
    /// failed included); `None` when no checkout completed.
    pub checkout_p95_ms: Option<f64>,
    /// p95 of our part of each checkout: its time minus the payment provider's.
    pub checkout_ours_p95_ms: Option<f64>,
    /// p95 of the payment provider's time within each checkout.
    pub provider_p95_ms: Option<f64>,
    /// Checkouts completed per second (placed or declined), all processes.
    pub checkouts_per_second: f64,
    /// Checkouts per second that failed or were cut off (timeout, client gone,
    /// provider unavailable), all processes.
    pub checkouts_failed_per_second: f64,
    /// Checkouts in flight that are doing our part (not waiting for the provider).
    pub checkouts_ours_in_flight: i64,
    /// Connections serving checkouts, all processes.
    pub checkout_capacity: i64,
    /// Reserve p95 over the last window.
    pub reserve_p95_ms: Option<f64>,
    /// Time to get a checkout connection from the pool.
    pub pool_wait_ms: f64,
    /// Checkouts in flight.
    pub inflight_checkouts: i64,
    /// Unpublished outbox events.
    pub outbox_backlog: i64,
    /// Age of the oldest unpublished event.
    pub outbox_oldest_age_ms: i64,
}

/// Where the controller reads the system's signals.
pub trait SignalSource: Send + Sync + 'static {
    /// The latest aggregated signals.
    fn measure(&self) -> BoxFuture<'_, anyhow::Result<Measured>>;
}

/// The controller's lease renewal: take the lease if free, keep it if ours.
const LEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
   else \
     local ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) \
     if ok then return 1 else return 0 end \
   end";

/// Settings of the controllers.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How often each sale is ticked.
    pub tick: Duration,
    /// How long a lease lasts without renewal (a dead holder is replaced after this).
    pub lease: Duration,
    /// This process's name in leases.
    pub holder: String,
}

/// Runs the controllers until shutdown.
pub async fn run(
    queue: Queue,
    signals: Arc<dyn SignalSource>,
    config: ControllerConfig,
    shutdown: CancellationToken,
) {
    let mut controllers = Controllers {
        queue,
        signals,
        config,
        carry: HashMap::new(),
        lease: Script::new(LEASE),
    };
    let mut ticker = tokio::time::interval(controllers.config.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                if let Err(e) = controllers.tick_all().await {
                    tracing::warn!(error = %e, "admission controller tick failed; retrying next tick");
                }
            }
        }
    }
}

struct Controllers {
    queue: Queue,
    signals: Arc<dyn SignalSource>,
    config: ControllerConfig,
    /// Fractions of a shopper carried to the next tick, per sale.
    carry: HashMap<SaleId, f64>,
    lease: Script,
}

impl Controllers {
    async fn tick_all(&mut self) -> Result<()> {
        let mut conn = self.queue.connection();
        let lines: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.queue.lines_key())
            .query_async(&mut conn)
            .await?;
        let mut measured = None;
        for sale in lines.iter().filter_map(|s| s.parse::<SaleId>().ok()) {
            if !self.holds_lease(sale).await? {
                self.carry.remove(&sale);
                continue;
            }
            if measured.is_none() {
                measured = Some(self.signals.measure().await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "signals unavailable; deciding on defaults");
                    Measured::default()
                }));
            }
            self.tick(sale, measured.unwrap_or_default()).await?;
        }
        Ok(())
    }

    async fn holds_lease(&self, sale: SaleId) -> Result<bool> {
        let key = format!("{}:{{sale:{sale}}}:q:lease", self.queue_prefix());
        let held: i64 = self
            .lease
            .key(key)
            .arg(&self.config.holder)
            .arg(self.config.lease.as_millis() as u64)
            .invoke_async(&mut self.queue.connection())
            .await?;
        Ok(held == 1)
    }

    fn queue_prefix(&self) -> String {
        self.queue.lines_key().trim_end_matches(":lines").to_owned()
    }

    async fn tick(&mut self, sale_id: SaleId, measured: Measured) -> Result<()> {
        let sale = self.queue.sale(sale_id).await?;
        let now = self.queue.sales().now();
        if sale.state == SaleState::Ended || now >= sale.ends_at {
            // Over for good: keep the line's report figures in Postgres (the reserve
            // step's keys go after the retention), and stop visiting this line
            // (tickets read `closed` from the sale).
            self.queue.snapshot_report(sale_id).await?;
            let _: i64 = redis::cmd("SREM")
                .arg(self.queue.lines_key())
                .arg(sale_id.to_string())
                .query_async(&mut self.queue.connection())
                .await?;
            return Ok(());
        }
        if now < sale.starts_at || sale.state != SaleState::Active {
            return Ok(());
        }
        let mut line = self.queue.line_state(sale_id).await?;
        // Recorded every tick: what a line Redis loses is rebuilt from (see `heal`).
        if self.queue.keep_marks(sale_id, &line).await? {
            line = self.queue.line_state(sale_id).await?;
        }
        if !line.drawn {
            self.queue.draw(sale_id).await?;
            line = self.queue.line_state(sale_id).await?;
        }
        let stock = self.queue.sales().stock(&sale).await?;
        let now_ms = now.timestamp_millis();
        let window_ms = self.queue.window().as_millis() as i64;
        let serving_before = self.queue.serving_at(sale_id, now_ms - window_ms).await?;
        let reserved = self.queue.sales().reserved_shoppers(sale_id).await?;
        // Shoppers admitted before the current window either reached the reserve step
        // (held, or were told sold out) or never will.
        let no_show = if serving_before > 0 {
            (1.0 - reserved as f64 / serving_before as f64).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let expired_no_shows = serving_before - reserved.min(serving_before);
        let pending = (line.serving - reserved - expired_no_shows).max(0);
        let signals = Signals {
            checkout_p95_ms: measured.checkout_p95_ms,
            checkout_ours_p95_ms: measured.checkout_ours_p95_ms,
            checkouts_per_second: measured.checkouts_per_second,
            checkouts_ours_in_flight: measured.checkouts_ours_in_flight,
            checkout_capacity: measured.checkout_capacity,
            outbox_oldest_age_ms: measured.outbox_oldest_age_ms,
            active_shoppers: line.serving - serving_before,
            no_show_rate: no_show,
            stock_left: stock.available + stock.held,
            free_units: stock.available,
            admitted_pending: pending,
            waiting: line.seq - line.serving,
        };
        let limits = Limits {
            fixed: sale.admission.mode == AdmissionMode::Fixed,
            max_admit_per_second: sale.admission.max_admit_per_second,
            max_active_shoppers: sale.admission.max_active_shoppers,
            checkout_p95_target_ms: sale.admission.checkout_p95_target_ms as f64,
        };
        let rate = if line.rate > 0.0 {
            line.rate
        } else {
            controller::INITIAL_RATE
        };
        let decision = controller::decide(rate, &signals, &limits);
        let carry = self.carry.entry(sale_id).or_insert(0.0);
        let due = decision.admit_rate * self.config.tick.as_secs_f64() + *carry;
        let admit = due.floor() as i64;
        *carry = if decision.admit_rate > 0.0 {
            due - admit as f64
        } else {
            0.0
        };
        let signals_json = serde_json::to_string(&measured).unwrap_or_default();
        let serving = self
            .queue
            .advance(
                sale_id,
                now_ms,
                admit,
                decision.rate,
                decision.reason.as_str(),
                decision.sold_out,
                signals.active_shoppers,
                no_show,
                &signals_json,
            )
            .await?;
        let sale_label = sale_id.to_string();
        metrics::gauge!("flashsale_admission_rate", "sale" => sale_label.clone())
            .set(decision.rate);
        metrics::gauge!("flashsale_queue_waiting", "sale" => sale_label.clone())
            .set((line.seq - serving) as f64);
        metrics::gauge!("flashsale_active_shoppers", "sale" => sale_label.clone())
            .set(signals.active_shoppers as f64);
        // What the law read, next to what it decided (the slowdown rehearsal charts them).
        metrics::gauge!("flashsale_admission_probe_ceiling", "sale" => sale_label.clone())
            .set(signals.probe_ceiling());
        metrics::gauge!("flashsale_admission_sustained_rate", "sale" => sale_label)
            .set(signals.sustained_rate());
        if decision.reason.as_str() != line.reason.as_deref().unwrap_or_default() {
            tracing::info!(sale_id = %sale_id, rate = decision.rate, reason = decision.reason.as_str(), "admission rate changed");
        }
        Ok(())
    }
}
