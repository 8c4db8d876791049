//! Exponential backoff with jitter, shared by the relay and the workers.

use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

/// Doubles from `base` up to `max` on every failure; `reset` after a success.
///
/// Jitter (a random 50–100 % of the step) keeps a fleet of relays or workers that
/// failed together from retrying in lockstep against a recovering dependency.
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: 0,
        }
    }

    /// The delay before the next attempt; counts one more failure.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = step(self.base, self.max, self.failures);
        self.failures = self.failures.saturating_add(1);
        jitter(step)
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// `base · 2^exponent`, capped at `max`.
pub(crate) fn step(base: Duration, max: Duration, exponent: u32) -> Duration {
    base.saturating_mul(1u32 << exponent.min(20)).min(max)
}

/// A random 50–100 % of `delay`.
pub(crate) fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// Sleeps for `delay`, or less if `shutdown` is cancelled meanwhile.
pub(crate) async fn sleep_or_shutdown(delay: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(delay) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_double_and_stop_at_the_cap() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(step(base, max, 0), base);
        assert_eq!(step(base, max, 3), Duration::from_millis(800));
        assert_eq!(step(base, max, 4), max);
        assert_eq!(step(base, max, 400), max);
    }

    #[test]
    fn jitter_stays_within_half_and_whole_of_the_step() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for expected in [100, 200, 400, 800, 1000] {
            let delay = backoff.next_delay();
            let step = Duration::from_millis(expected);
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} for step {step:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
