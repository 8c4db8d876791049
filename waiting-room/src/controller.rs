//! The admission control law: a pure function from what the controller measured to the
//! admission rate for the next tick, and the reason it changed.
//!
//! # Why this law
//!
//! The checkout path has a capacity nobody knows before the sale (it depends on the
//! payment provider's latency, Postgres, the machines). Like an adaptive concurrency
//! limiter (Netflix's concurrency-limits, AIMD), the controller infers that capacity
//! from latency: while checkout p95 is comfortably under the merchant's target it
//! raises the rate additively (probing for more capacity, a few percent a tick); when
//! p95 crosses the target — or the outbox backlog grows old, a sign that the order
//! pipeline is saturated — it cuts the rate multiplicatively, which drains the excess
//! in a few ticks. Additive increase / multiplicative decrease converges to a fair
//! share of the capacity and recovers from overload fast, without a model of the system.
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
/// p95 below this share of the target counts as healthy (room to grow).
pub const HEALTHY_SHARE: f64 = 0.8;
/// Outbox events older than this mean the order pipeline is saturated.
pub const BACKLOG_AGE_LIMIT_MS: i64 = 2_000;
/// Admitted shoppers expected to show up may exceed the free units by this factor
/// (some shoppers buy less than the limit, some holds expire).
pub const STOCK_OVERCOMMIT: f64 = 1.5;

/// The merchant's settings that bound the controller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// `fixed` mode pins the rate to `max_admit_per_second`.
    pub fixed: bool,
    /// Ceiling (or, when fixed, the rate itself).
    pub max_admit_per_second: Option<f64>,
    /// Ceiling on active shoppers.
    pub max_active_shoppers: Option<i64>,
    /// The checkout p95 the controller keeps under.
    pub checkout_p95_target_ms: f64,
}

/// What the controller measured this tick.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Signals {
    /// Checkout p95 over the last window, all processes; `None` before any checkout.
    pub checkout_p95_ms: Option<f64>,
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

/// Why the rate is what it is (shown on the stats endpoint and the dashboard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Nothing left to sell and no hold can return.
    SoldOut,
    /// The merchant pinned the rate.
    FixedRate,
    /// Checkout p95 above target: multiplicative decrease.
    CheckoutSlow,
    /// The outbox backlog is old: multiplicative decrease.
    BacklogOld,
    /// Healthy: additive increase.
    Healthy,
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
            Reason::BacklogOld => "outbox backlog older than 2 s",
            Reason::Healthy => "healthy: raising the rate",
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
        let target = limits.checkout_p95_target_ms;
        match signals.checkout_p95_ms {
            Some(p95) if p95 > target => ((rate * DECREASE).max(MIN_RATE), Reason::CheckoutSlow),
            _ if signals.outbox_oldest_age_ms > BACKLOG_AGE_LIMIT_MS => {
                ((rate * DECREASE).max(MIN_RATE), Reason::BacklogOld)
            }
            Some(p95) if p95 > target * HEALTHY_SHARE => (rate, Reason::NearTarget),
            _ => (rate + (rate * INCREASE_SHARE).max(1.0), Reason::Healthy),
        }
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

    fn healthy() -> Signals {
        Signals {
            checkout_p95_ms: Some(50.0),
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
                let signals = Signals {
                    checkout_p95_ms: Some(p95(rate)),
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
        let slow = Signals {
            checkout_p95_ms: Some(900.0),
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
}
