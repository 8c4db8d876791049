//! The retry schedule of a delivery that failed: when the next attempt is due.
//!
//! The standard schedule waits 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h,
//! 8 h and 8 h between the 12 attempts: about 31 h 42 min from the first attempt to the
//! last, so a receiver that is down for a day still gets every message. Each wait is
//! lengthened by a random 0–20 % (jitter), so deliveries that failed together (an
//! endpoint that was down) do not all come back in the same second; lengthened, never
//! shortened, so the total stays above 24 h. Tests scale the whole schedule down.

use std::time::Duration;

use rand::Rng;

/// The waits between attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    waits: Vec<Duration>,
}

impl Schedule {
    /// The production schedule (see the module docs).
    pub fn standard() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Schedule {
            waits: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                minutes(2),
                minutes(10),
                minutes(30),
                minutes(60),
                minutes(120),
                minutes(240),
                minutes(480),
                minutes(480),
                minutes(480),
            ],
        }
    }

    /// The standard schedule with every wait multiplied by `factor` (tests: 0.001
    /// makes the first wait 5 ms and the whole schedule under two minutes).
    pub fn scaled(factor: f64) -> Self {
        Schedule {
            waits: Schedule::standard()
                .waits
                .into_iter()
                .map(|w| w.mul_f64(factor))
                .collect(),
        }
    }

    /// Most attempts a delivery gets.
    pub fn attempts(&self) -> u32 {
        self.waits.len() as u32 + 1
    }

    /// The time from the first attempt to the last, without jitter.
    pub fn span(&self) -> Duration {
        self.waits.iter().sum()
    }

    /// The wait after attempt number `attempts_made` (1 for the first) failed, jitter
    /// included; `None` when that was the last attempt.
    pub fn next_wait(&self, attempts_made: u32) -> Option<Duration> {
        let wait = *self.waits.get(attempts_made.checked_sub(1)? as usize)?;
        Some(wait.mul_f64(1.0 + rand::thread_rng().gen_range(0.0..=0.2)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_schedule_retries_for_more_than_a_day_then_gives_up() {
        let schedule = Schedule::standard();
        assert!(schedule.span() >= Duration::from_secs(24 * 3600));
        assert_eq!(schedule.attempts(), 12);
        let first = schedule.next_wait(1).unwrap();
        assert!(first >= Duration::from_secs(5) && first <= Duration::from_secs(6));
        assert!(schedule.next_wait(11).is_some());
        assert_eq!(schedule.next_wait(12), None);
    }
}
