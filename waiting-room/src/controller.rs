//! The admission control law: a pure function from what the controller measured to the
//! admission rate for the next tick, and the reason it changed.
//!
//! # Why this law
//!
//! The checkout path has a capacity nobody knows before the sale (it depends on the
//! payment provider's latency, Postgres, the machines). Like an adaptive concurrency
//! limiter (Netflix's concurrency-limits, AIMD), the controller infers that capacity
//! from latency: while checkout is comfortably under the merchant's target it raises
//! the rate additively (probing for more capacity, a few percent a tick); when it
//! crosses the target — or the outbox backlog grows old, a sign that the order
//! pipeline is saturated — it cuts the rate multiplicatively, which drains the excess
//! in a few ticks. Additive increase / multiplicative decrease converges to a fair
//! share of the capacity and recovers from overload fast, without a model of the system.
//!
//! # Slow is not overloaded
//!
//! A checkout's time has two parts. The payment provider's own call time is not ours to
//! change: admitting fewer shoppers does not make a slow provider faster, it only sells
//! less. Our part — waiting for a pool connection, the work before the provider call,
//! the transaction after it — grows when we admit more than we can serve. So the law
//! holds *our* part ([`Signals::checkout_ours_p95_ms`], the checkout's time minus the
//! provider's, per request) under `checkout_p95_target_ms`, and reads a second sign of
//! queueing straight from Little's law: checkouts doing our part at once (in flight,
//! not waiting for the provider) against the connections that serve them. A provider
//! at 250 ms with capacity to spare moves neither, and the rate holds.
//!
//! When our part does breach, the cut stops at what checkout is completing: the
//! measured completion throughput divided by the buyers expected per admitted shopper
//! is the admission rate checkout sustains, and admitting below it only idles the
//! capacity we have.
//!
//! # A probe that completions confirm
//!
//! Before the first checkout completes the law knows nothing about the capacity, so the
//! rate may rise only to [`PROBE_BLIND_CEILING`]; after that, to [`PROBE_HEADROOM`]
//! times the rate the completions confirm. A blind +8% a tick would be ~1,000/s after
//! 30 s with no evidence that checkout can take it.
//!
//! Little's law links the rate to concurrency: active shoppers ≈ admission rate × the
//! time a shopper spends buying. So the merchant's `max_active_shoppers` ceiling is
//! enforced on the measured active count, and the rate is held at zero while the
//! ceiling is reached.
//!
//! The law also never admits far beyond the stock: when the shoppers already admitted
//! and expected to show up (no-shows discounted) could buy everything that is left, it
//! stops admitting until holds return or shoppers leave. When nothing is left and no
//! hold can return, the sale is sold out and the whole line is told so at once.

/// Lowest rate while admitting: the controller keeps probing even when slow.
pub const MIN_RATE: f64 = 1.0;
/// Rate of a freshly started controller, per second.
pub const INITIAL_RATE: f64 = 10.0;
/// Multiplicative decrease on a breach.
pub const DECREASE: f64 = 0.7;
/// Additive increase per tick: this share of the rate, at least one shopper a second.
pub const INCREASE_SHARE: f64 = 0.08;
/// Our p95 below this share of the target counts as healthy (room to grow).
pub const HEALTHY_SHARE: f64 = 0.8;
/// Outbox events older than this mean the order pipeline is saturated.
pub const BACKLOG_AGE_LIMIT_MS: i64 = 2_000;
/// Admitted shoppers expected to show up may exceed the free units by this factor
/// (some shoppers buy less than the limit, some holds expire).
pub const STOCK_OVERCOMMIT: f64 = 1.5;
/// The highest rate before any checkout has completed (shoppers per second).
pub const PROBE_BLIND_CEILING: f64 = 25.0;
/// Once checkouts complete, the rate may be this many times the rate they confirm.
pub const PROBE_HEADROOM: f64 = 2.0;
/// Our checkouts in flight at this share of the connections serving them: queueing.
pub const BUSY_SHARE: f64 = 0.9;
/// … at this share: near capacity, hold.
pub const NEAR_BUSY_SHARE: f64 = 0.7;
/// On a breach the rate is not cut below this share of the rate checkout sustains
/// (a little under it, so the queue drains).
pub const DRAIN_SHARE: f64 = 0.8;
/// The share of admitted shoppers expected to buy is taken as at least this (a sale
/// whose first cohorts all left must not divide by zero).
pub const MIN_BUYER_SHARE: f64 = 0.1;

/// The merchant's settings that bound the controller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// `fixed` mode pins the rate to `max_admit_per_second`.
    pub fixed: bool,
    /// Ceiling (or, when fixed, the rate itself).
    pub max_admit_per_second: Option<f64>,
    /// Ceiling on active shoppers.
    pub max_active_shoppers: Option<i64>,
    /// The checkout p95 — our part of it — the controller keeps under.
    pub checkout_p95_target_ms: f64,
}

/// What the controller measured this tick.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Signals {
    /// Checkout p95 over the last window as shoppers saw it (provider included), all
    /// processes; `None` before any checkout. Shown, not acted on.
    pub checkout_p95_ms: Option<f64>,
    /// p95 of our part of each checkout (its time minus the provider's); `None`
    /// before any checkout completed in the window.
    pub checkout_ours_p95_ms: Option<f64>,
    /// Checkouts completed per second (placed or declined), all processes.
    pub checkouts_per_second: f64,
    /// Checkouts in flight doing our part (not waiting for the provider).
    pub checkouts_ours_in_flight: i64,
    /// Connections that serve checkouts, all processes (0: unknown).
    pub checkout_capacity: i64,
    /// Age of the oldest unpublished outbox event.
    pub outbox_oldest_age_ms: i64,
    /// Admitted shoppers whose admission window is still open.
    pub active_shoppers: i64,
    /// Share of admitted shoppers who never reserved (0–1).
    pub no_show_rate: f64,
    /// Units free plus units held (held units may return).
    pub stock_left: i64,
    /// Units free right now.
    pub free_units: i64,
    /// Shoppers admitted in the current window who have not reserved yet.
    pub admitted_pending: i64,
    /// Shoppers still waiting in line.
    pub waiting: i64,
}

impl Signals {
    /// The admission rate checkout is completing: completions per second over the
    /// buyers expected per admitted shopper. 0 before any completion.
    pub fn sustained_rate(&self) -> f64 {
        let buyers = (1.0 - self.no_show_rate.clamp(0.0, 1.0)).max(MIN_BUYER_SHARE);
        self.checkouts_per_second.max(0.0) / buyers
    }

    /// Our checkouts in flight against the connections serving them (0 when unknown).
    fn busy(&self) -> f64 {
        if self.checkout_capacity <= 0 {
            return 0.0;
        }
        self.checkouts_ours_in_flight.max(0) as f64 / self.checkout_capacity as f64
    }

    /// The highest rate the evidence allows (see "A probe that completions confirm").
    pub fn probe_ceiling(&self) -> f64 {
        if self.checkout_ours_p95_ms.is_none() {
            PROBE_BLIND_CEILING
        } else {
            (PROBE_HEADROOM * self.sustained_rate()).max(PROBE_BLIND_CEILING)
        }
    }
}

/// Why the rate is what it is (shown on the stats endpoint and the dashboard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Nothing left to sell and no hold can return.
    SoldOut,
    /// The merchant pinned the rate.
    FixedRate,
    /// Our part of checkout p95 above target: multiplicative decrease.
    CheckoutSlow,
    /// Our checkouts in flight near the connections serving them: decrease.
    CheckoutBusy,
    /// The outbox backlog is old: multiplicative decrease.
    BacklogOld,
    /// Healthy: additive increase.
    Healthy,
    /// Healthy, but as high as the completed checkouts confirm.
    ProbeCeiling,
    /// Near the target: holding.
    NearTarget,
    /// At the merchant's rate ceiling.
    RateCeiling,
    /// At the merchant's active-shopper ceiling: admitting nobody this tick.
    ActiveCeiling,
    /// The admitted shoppers can already buy everything left: admitting nobody.
    StockCovered,
    /// Nobody is waiting.
    LineEmpty,
}

impl Reason {
    /// The words shown to the merchant.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SoldOut => "sold out: nothing left and no hold can return",
            Reason::FixedRate => "fixed rate set by the merchant",
            Reason::CheckoutSlow => "checkout_p95 above target",
            Reason::CheckoutBusy => "checkouts in flight near capacity",
            Reason::BacklogOld => "outbox backlog older than 2 s",
            Reason::Healthy => "healthy: raising the rate",
            Reason::ProbeCeiling => "healthy: as high as completed checkouts confirm",
            Reason::NearTarget => "checkout_p95 near target: holding the rate",
            Reason::RateCeiling => "at the merchant's max_admit_per_second",
            Reason::ActiveCeiling => "at the merchant's max_active_shoppers",
            Reason::StockCovered => "admitted shoppers can buy every free unit",
            Reason::LineEmpty => "nobody waiting",
        }
    }
}

/// The controller's decision for the next tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// The controller's rate (shoppers per second) — its state, kept between ticks.
    pub rate: f64,
    /// The rate actually applied this tick (0 while a ceiling or the stock holds it).
    pub admit_rate: f64,
    /// Why.
    pub reason: Reason,
    /// True once everything is sold and no hold can return.
    pub sold_out: bool,
}

/// The feedback part of the law: the next rate from our latency, our queueing and
/// the outbox (see the module docs).
fn feedback(rate: f64, signals: &Signals, target: f64) -> (f64, Reason) {
    let ours = signals.checkout_ours_p95_ms;
    let busy = signals.busy();
    let breach = if ours.is_some_and(|p95| p95 > target) {
        Some(Reason::CheckoutSlow)
    } else if busy >= BUSY_SHARE {
        Some(Reason::CheckoutBusy)
    } else if signals.outbox_oldest_age_ms > BACKLOG_AGE_LIMIT_MS {
        Some(Reason::BacklogOld)
    } else {
        None
    };
    if let Some(reason) = breach {
        // A checkout breach stops at what checkout is completing (less idles the
        // capacity we have), never above the current rate. An old backlog is the
        // relay falling behind checkout: completions say nothing about its capacity.
        let sustained = if reason == Reason::BacklogOld {
            0.0
        } else {
            (DRAIN_SHARE * signals.sustained_rate()).min(rate)
        };
        return ((rate * DECREASE).max(sustained).max(MIN_RATE), reason);
    }
    if ours.is_some_and(|p95| p95 > target * HEALTHY_SHARE) || busy >= NEAR_BUSY_SHARE {
        return (rate, Reason::NearTarget);
    }
    let ceiling = signals.probe_ceiling();
    let raised = rate + (rate * INCREASE_SHARE).max(1.0);
    if raised >= ceiling {
        // Down to the ceiling too: completions that fell (fewer buyers, a provider
        // failing) bring the rate down with them.
        (ceiling.min(raised).max(MIN_RATE), Reason::ProbeCeiling)
    } else {
        (raised, Reason::Healthy)
    }
}

/// The control law. `rate` is the previous decision's rate.
pub fn decide(rate: f64, signals: &Signals, limits: &Limits) -> Decision {
    // While admission is held nobody new reaches checkout, so the latency says nothing
    // about more load: keep any decrease, never grow the rate (else a line refilling
    // after an idle spell would be let in at whatever the rate drifted up to).
    let hold = |next: f64, reason| Decision {
        rate: next.min(rate),
        admit_rate: 0.0,
        reason,
        sold_out: false,
    };
    if signals.stock_left <= 0 {
        return Decision {
            rate,
            admit_rate: 0.0,
            reason: Reason::SoldOut,
            sold_out: true,
        };
    }
    let (mut next, mut reason) = if limits.fixed {
        (
            limits.max_admit_per_second.unwrap_or(MIN_RATE),
            Reason::FixedRate,
        )
    } else {
        feedback(rate, signals, limits.checkout_p95_target_ms)
    };
    if let Some(ceiling) = limits.max_admit_per_second {
        if next >= ceiling {
            next = ceiling;
            if !limits.fixed {
                reason = Reason::RateCeiling;
            }
        }
    }
    if signals.waiting == 0 {
        return hold(next, Reason::LineEmpty);
    }
    if limits
        .max_active_shoppers
        .is_some_and(|cap| signals.active_shoppers >= cap)
    {
        return hold(next, Reason::ActiveCeiling);
    }
    let expected_buyers =
        signals.admitted_pending as f64 * (1.0 - signals.no_show_rate.clamp(0.0, 1.0));
    // Held units are not offered: while every unit left is in someone's hold, the line
    // waits for the ones that come back rather than being let in to hear "sold out".
    if expected_buyers >= signals.free_units as f64 * STOCK_OVERCOMMIT {
        return hold(next, Reason::StockCovered);
    }
    Decision {
        rate: next,
        admit_rate: next,
        reason,
        sold_out: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto(target: f64) -> Limits {
        Limits {
            fixed: false,
            max_admit_per_second: None,
            max_active_shoppers: None,
            checkout_p95_target_ms: target,
        }
    }

    /// Checkout fast, completing far more than any rate below (no probe ceiling).
    fn healthy() -> Signals {
        Signals {
            checkout_p95_ms: Some(50.0),
            checkout_ours_p95_ms: Some(50.0),
            checkouts_per_second: 1_000.0,
            checkout_capacity: 16,
            stock_left: 1_000,
            free_units: 1_000,
            waiting: 10_000,
            ..Signals::default()
        }
    }

    /// Runs the law for `ticks` with p95 given by `p95(rate)`, a crude plant: latency
    /// grows once the rate passes the checkout's capacity.
    fn run(
        mut rate: f64,
        ticks: usize,
        limits: &Limits,
        p95: impl Fn(f64) -> f64,
    ) -> Vec<Decision> {
        (0..ticks)
            .map(|_| {
                // Every admitted shopper checks out: completions follow the rate.
                let signals = Signals {
                    checkout_p95_ms: Some(p95(rate)),
                    checkout_ours_p95_ms: Some(p95(rate)),
                    checkouts_per_second: rate,
                    ..healthy()
                };
                let d = decide(rate, &signals, limits);
                rate = d.rate;
                d
            })
            .collect()
    }

    #[test]
    fn step_response_climbs_to_capacity_and_settles_under_target() {
        // Capacity 100 shoppers/s: p95 50 ms below it, 600 ms above it.
        let plant = |rate: f64| if rate <= 100.0 { 50.0 + rate } else { 600.0 };
        let decisions = run(INITIAL_RATE, 200, &auto(300.0), plant);
        let tail = &decisions[150..];
        assert!(
            tail.iter().all(|d| d.rate > 50.0 && d.rate < 150.0),
            "oscillates around capacity"
        );
        let mean: f64 = tail.iter().map(|d| d.rate).sum::<f64>() / tail.len() as f64;
        assert!((70.0..=110.0).contains(&mean), "mean rate {mean}");
    }

    #[test]
    fn overload_cuts_the_rate_multiplicatively_and_recovery_raises_it_again() {
        // Our part slow, nothing completing: nothing holds the cut up.
        let slow = Signals {
            checkout_p95_ms: Some(900.0),
            checkout_ours_p95_ms: Some(900.0),
            checkouts_per_second: 0.0,
            ..healthy()
        };
        let d = decide(100.0, &slow, &auto(300.0));
        assert_eq!((d.rate, d.reason), (70.0, Reason::CheckoutSlow));
        let mut rate = 100.0;
        for _ in 0..10 {
            rate = decide(rate, &slow, &auto(300.0)).rate;
        }
        assert!(
            rate < 5.0,
            "ten slow ticks bring the rate near the floor: {rate}"
        );
        assert!(rate >= MIN_RATE);
        let recovered = run(rate, 30, &auto(300.0), |_| 40.0);
        assert!(recovered.iter().all(|d| d.reason == Reason::Healthy));
        assert!(recovered.last().unwrap().rate > 30.0);
    }

    #[test]
    fn an_old_outbox_backlog_also_slows_admission() {
        let signals = Signals {
            outbox_oldest_age_ms: 5_000,
            ..healthy()
        };
        let d = decide(50.0, &signals, &auto(300.0));
        assert_eq!(d.reason, Reason::BacklogOld);
        assert!(d.rate < 50.0);
    }

    #[test]
    fn while_every_unit_left_is_held_the_line_waits_for_units_to_come_back() {
        let all_held = Signals {
            stock_left: 50,
            free_units: 0,
            admitted_pending: 0,
            ..healthy()
        };
        let d = decide(20.0, &all_held, &auto(300.0));
        assert_eq!((d.admit_rate, d.reason), (0.0, Reason::StockCovered));
        assert!(!d.sold_out, "held units may still come back");

        let some_back = Signals {
            free_units: 5,
            ..all_held
        };
        assert!(decide(20.0, &some_back, &auto(300.0)).admit_rate > 0.0);
    }

    #[test]
    fn no_shows_let_more_shoppers_in_before_the_stock_is_covered() {
        // 100 units left, 200 admitted shoppers pending.
        let base = Signals {
            stock_left: 100,
            free_units: 100,
            admitted_pending: 200,
            ..healthy()
        };
        let faithful = decide(
            20.0,
            &Signals {
                no_show_rate: 0.0,
                ..base
            },
            &auto(300.0),
        );
        assert_eq!(
            (faithful.admit_rate, faithful.reason),
            (0.0, Reason::StockCovered)
        );
        let flaky = decide(
            20.0,
            &Signals {
                no_show_rate: 0.5,
                ..base
            },
            &auto(300.0),
        );
        assert!(flaky.admit_rate > 0.0, "half never show up: keep admitting");
    }

    #[test]
    fn the_rate_does_not_drift_up_while_admission_is_held() {
        let idle = Signals {
            waiting: 0,
            ..healthy()
        };
        let mut rate = 20.0;
        for _ in 0..100 {
            rate = decide(rate, &idle, &auto(300.0)).rate;
        }
        assert_eq!(rate, 20.0, "an empty line keeps the rate where it was");
        let at_ceiling = Limits {
            max_active_shoppers: Some(10),
            ..auto(300.0)
        };
        let busy = Signals {
            active_shoppers: 10,
            checkout_p95_ms: Some(900.0),
            checkout_ours_p95_ms: Some(900.0),
            checkouts_per_second: 0.0,
            ..healthy()
        };
        assert_eq!(
            decide(20.0, &busy, &at_ceiling).rate,
            14.0,
            "a breach still cuts it while held"
        );
    }

    #[test]
    fn nothing_left_is_sold_out_for_everyone() {
        let d = decide(
            20.0,
            &Signals {
                stock_left: 0,
                ..healthy()
            },
            &auto(300.0),
        );
        assert!(d.sold_out);
        assert_eq!(d.admit_rate, 0.0);
    }

    #[test]
    fn merchant_ceilings_and_fixed_mode_bound_the_rate() {
        let capped = Limits {
            max_admit_per_second: Some(15.0),
            ..auto(300.0)
        };
        let d = decide(14.5, &healthy(), &capped);
        assert_eq!((d.rate, d.reason), (15.0, Reason::RateCeiling));
        let fixed = Limits {
            fixed: true,
            max_admit_per_second: Some(40.0),
            ..auto(300.0)
        };
        let slow = Signals {
            checkout_p95_ms: Some(5_000.0),
            ..healthy()
        };
        assert_eq!(
            decide(3.0, &slow, &fixed).admit_rate,
            40.0,
            "fixed ignores latency"
        );
        let busy = Limits {
            max_active_shoppers: Some(100),
            ..auto(300.0)
        };
        let d = decide(
            20.0,
            &Signals {
                active_shoppers: 100,
                ..healthy()
            },
            &busy,
        );
        assert_eq!((d.admit_rate, d.reason), (0.0, Reason::ActiveCeiling));
    }

    /// The rehearsal's plant, tick by tick (500 ms ticks): before and after, checkout
    /// is fast; during, the provider takes `provider_ms` and, when `our_ms` is given,
    /// our part takes that too. Completions follow the rate up to `capacity`.
    fn timeline(
        ticks: std::ops::Range<usize>,
        rate: &mut f64,
        capacity: f64,
        during: impl Fn(usize) -> Option<(f64, f64)>,
    ) -> Vec<Decision> {
        ticks
            .map(|t| {
                let (provider_ms, our_ms) = during(t).unwrap_or((5.0, 20.0));
                let signals = Signals {
                    checkout_p95_ms: Some(provider_ms + our_ms),
                    checkout_ours_p95_ms: Some(our_ms),
                    checkouts_per_second: rate.min(capacity),
                    // Little's law: in flight = completions × our time.
                    checkouts_ours_in_flight: (rate.min(capacity) * our_ms / 1000.0) as i64,
                    ..healthy()
                };
                let d = decide(*rate, &signals, &auto(300.0));
                *rate = d.rate;
                d
            })
            .collect()
    }

    #[test]
    fn a_slow_provider_with_our_part_fast_keeps_at_least_half_the_rate() {
        // Provider p95 800 ms for 30 s: checkout as shoppers see it is far above the
        // 300 ms target, our part of it is not, and checkout completes what it gets.
        let mut rate = 80.0;
        let before = rate;
        let slow = timeline(0..60, &mut rate, 1_000.0, |_| Some((800.0, 40.0)));
        assert!(
            slow.iter().all(|d| d.rate >= before * 0.5),
            "the rate holds: {:?}",
            slow.iter().map(|d| d.rate).collect::<Vec<_>>()
        );
        assert!(slow.iter().all(|d| d.reason != Reason::CheckoutSlow));
    }

    #[test]
    fn our_queueing_high_cuts_the_rate_but_not_below_what_checkout_completes() {
        // Our part over target (pool wait, a slow transaction): cut.
        let slow = Signals {
            checkout_ours_p95_ms: Some(600.0),
            checkouts_per_second: 40.0,
            ..healthy()
        };
        let d = decide(100.0, &slow, &auto(300.0));
        assert_eq!((d.rate, d.reason), (70.0, Reason::CheckoutSlow));
        // Cut after cut stops a little under the 40/s checkout completes.
        let mut rate = 100.0;
        for _ in 0..20 {
            rate = decide(rate, &slow, &auto(300.0)).rate;
        }
        assert!(
            (rate - DRAIN_SHARE * 40.0).abs() < 1e-9,
            "floor at the sustained rate: {rate}"
        );
        // Half the shoppers never show up: each admitted one brings half a checkout,
        // so 40 checkouts a second sustain 80 admissions a second.
        let flaky = Signals {
            no_show_rate: 0.5,
            ..slow
        };
        assert!((flaky.sustained_rate() - 80.0).abs() < 1e-9);

        // Our checkouts in flight at the connections serving them: queueing starts,
        // even while the p95 of the window still looks fine.
        let busy = Signals {
            checkouts_ours_in_flight: 15,
            checkout_capacity: 16,
            checkouts_per_second: 0.0,
            ..healthy()
        };
        let d = decide(100.0, &busy, &auto(300.0));
        assert_eq!((d.rate, d.reason), (70.0, Reason::CheckoutBusy));
        let near = Signals {
            checkouts_ours_in_flight: 12,
            ..busy
        };
        assert_eq!(
            decide(100.0, &near, &auto(300.0)).reason,
            Reason::NearTarget
        );
    }

    #[test]
    fn before_the_first_checkout_the_rate_rises_only_to_a_bounded_probe() {
        let blind = Signals {
            checkout_p95_ms: None,
            checkout_ours_p95_ms: None,
            checkouts_per_second: 0.0,
            ..healthy()
        };
        let mut rate = INITIAL_RATE;
        // 30 s of 500 ms ticks without a checkout (the old law: about 1,000/s).
        for _ in 0..60 {
            rate = decide(rate, &blind, &auto(300.0)).rate;
        }
        assert_eq!(rate, PROBE_BLIND_CEILING);
        assert_eq!(
            decide(rate, &blind, &auto(300.0)).reason,
            Reason::ProbeCeiling
        );
        // Completions confirm 20 shoppers a second: the ceiling rises to twice that.
        let confirmed = Signals {
            checkouts_per_second: 20.0,
            ..healthy()
        };
        for _ in 0..60 {
            rate = decide(rate, &confirmed, &auto(300.0)).rate;
        }
        assert_eq!(rate, PROBE_HEADROOM * 20.0);
        // And falls with them: a rate the completions no longer confirm comes down.
        let fewer = Signals {
            checkouts_per_second: 15.0,
            ..healthy()
        };
        assert_eq!(decide(rate, &fewer, &auto(300.0)).rate, 30.0);
    }

    #[test]
    fn the_rate_is_back_within_ten_seconds_after_a_slowdown_ends() {
        // 500 ms ticks. The provider slow for 30 s (ticks 20–80), and our part slow
        // for the first 5 s of it (checkouts piled up): the rate is cut, then holds.
        let mut rate = 60.0;
        let before = timeline(0..20, &mut rate, 200.0, |_| None);
        let healthy_rate = before.last().unwrap().rate;
        let slow = timeline(20..80, &mut rate, 200.0, |t| {
            Some((250.0, if t < 30 { 400.0 } else { 40.0 }))
        });
        assert!(slow.iter().any(|d| d.rate < healthy_rate * 0.9), "cut");
        let after = timeline(80..140, &mut rate, 1_000.0, |_| None);
        let back = after
            .iter()
            .position(|d| d.rate >= healthy_rate * 0.9)
            .expect("the rate comes back");
        assert!(back <= 20, "back after {} ticks of 500 ms", back + 1);
    }
}
