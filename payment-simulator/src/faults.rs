//! The faults in force and their bookkeeping: the outage deadline, the countdowns of
//! failing voids and captures, and the dice for plain failures and lost answers.
//!
//! Every decision here is taken *before* the work it spoils, except [`Faults::lose_answer`],
//! which is asked after the work is done and its result stored.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::settings::Settings;

/// A fault that fired on a call; logged with the call, and answered by the HTTP layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The provider is down (`outage_ms`): `503`.
    Outage,
    /// A plain failure (`failure_rate`): `500`, nothing done.
    Failure,
    /// `tok_error`: `500`, nothing done.
    ErrorToken,
    /// One of the `fail_voids` owed: `500`, nothing done.
    FailedVoid,
    /// One of the `fail_captures` owed: `500`, nothing done.
    FailedCapture,
    /// The work was done and stored, then the connection dropped (`lost_answer_rate`).
    AnswerLost,
}

impl Fault {
    /// The name in the call's log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Outage => "outage",
            Fault::Failure => "failure",
            Fault::ErrorToken => "error_token",
            Fault::FailedVoid => "failed_void",
            Fault::FailedCapture => "failed_capture",
            Fault::AnswerLost => "answer_lost",
        }
    }
}

/// Which countdown a call draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Countdown {
    Voids,
    Captures,
}

/// The settings in force plus the outage deadline derived from them.
pub(crate) struct Faults {
    inner: Mutex<State>,
}

struct State {
    /// As last set, with the countdowns decremented as failures are taken.
    /// `outage_ms` is the length given in the `PUT`; `outage_until` is what counts.
    settings: Settings,
    outage_until: Option<Instant>,
}

impl Faults {
    pub(crate) fn new(settings: Settings) -> Self {
        let faults = Self {
            inner: Mutex::new(State {
                settings,
                outage_until: None,
            }),
        };
        faults.set(settings);
        faults
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The settings in force, with `outage_ms` the ms of outage still left.
    pub(crate) fn settings(&self) -> Settings {
        let state = self.lock();
        let mut settings = state.settings;
        settings.outage_ms = state
            .outage_until
            .map(|until| until.saturating_duration_since(Instant::now()))
            .map(|left| left.as_millis() as u64)
            .unwrap_or(0);
        settings
    }

    /// Replaces the settings; an `outage_ms` above zero starts an outage now.
    pub(crate) fn set(&self, settings: Settings) {
        let mut state = self.lock();
        state.settings = settings;
        state.outage_until = (settings.outage_ms > 0)
            .then(|| Instant::now() + Duration::from_millis(settings.outage_ms));
    }

    /// The gate every Stripe call passes first: an outage, or a plain failure.
    pub(crate) fn gate(&self) -> Option<Fault> {
        let state = self.lock();
        if state
            .outage_until
            .is_some_and(|until| Instant::now() < until)
        {
            return Some(Fault::Outage);
        }
        if roll(state.settings.failure_rate) {
            return Some(Fault::Failure);
        }
        None
    }

    /// One call's latency, sampled from the settings in force.
    pub(crate) fn latency(&self) -> Duration {
        self.lock().settings.sample_latency()
    }

    /// Takes one failure owed by `countdown`, if any is left.
    pub(crate) fn take(&self, countdown: Countdown) -> Option<Fault> {
        let mut state = self.lock();
        let (left, fault) = match countdown {
            Countdown::Voids => (&mut state.settings.fail_voids, Fault::FailedVoid),
            Countdown::Captures => (&mut state.settings.fail_captures, Fault::FailedCapture),
        };
        if *left == 0 {
            return None;
        }
        *left -= 1;
        Some(fault)
    }

    /// Asked once the work is done and stored: is this answer lost?
    pub(crate) fn lose_answer(&self) -> bool {
        roll(self.lock().settings.lost_answer_rate)
    }
}

fn roll(rate: f64) -> bool {
    // Validated settings hold 0..=1; clamp anyway so gen_bool cannot panic.
    rand::thread_rng().gen_bool(rate.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdowns_fail_exactly_as_many_calls_as_owed() {
        let faults = Faults::new(Settings {
            fail_voids: 2,
            ..Settings::default()
        });
        assert_eq!(faults.take(Countdown::Voids), Some(Fault::FailedVoid));
        assert_eq!(faults.take(Countdown::Captures), None);
        assert_eq!(faults.settings().fail_voids, 1);
        assert_eq!(faults.take(Countdown::Voids), Some(Fault::FailedVoid));
        assert_eq!(faults.take(Countdown::Voids), None);
    }

    #[test]
    fn an_outage_shows_the_ms_left_and_closes_the_gate() {
        let faults = Faults::new(Settings {
            outage_ms: 60_000,
            ..Settings::default()
        });
        let left = faults.settings().outage_ms;
        assert!(left > 50_000 && left <= 60_000, "{left}");
        assert_eq!(faults.gate(), Some(Fault::Outage));
        faults.set(Settings::default());
        assert_eq!(faults.settings().outage_ms, 0);
        assert_eq!(faults.gate(), None);
    }
}
