//! How long to wait before the next attempt: exponential schedules with
//! jitter, separate for provider fetches and callbacks (SPEC section 3).

use std::time::Duration;

use rand::{Rng, RngCore};

/// The delays between consecutive attempts; `delays.len() + 1` attempts in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

/// Spread applied to every delay so retries from many jobs do not arrive in step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    None,
    /// A delay `d` becomes a uniform pick in `d * (1 - spread) ..= d * (1 + spread)`.
    Spread(f64),
}

impl Jitter {
    pub const DEFAULT: Jitter = Jitter::Spread(0.2);

    fn apply(self, delay: Duration, rng: &mut dyn RngCore) -> Duration {
        match self {
            Jitter::None => delay,
            Jitter::Spread(spread) if spread <= 0.0 => delay,
            Jitter::Spread(spread) => {
                let spread = spread.min(1.0);
                let factor = rng.random_range((1.0 - spread)..=(1.0 + spread));
                delay.mul_f64(factor)
            }
        }
    }
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// Provider fetches: 5 s, 30 s, 2 m, 10 m, 30 m (6 attempts).
    pub fn provider_default() -> Self {
        Self::new(
            [5, 30, 120, 600, 1800]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        )
    }

    /// Callbacks: at once, then 5 s, 5 m, 30 m, 2 h, 5 h, 10 h, 10 h (8 attempts).
    pub fn callback_default() -> Self {
        Self::new(
            [5, 300, 1800, 7200, 18_000, 36_000, 36_000]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        )
    }

    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len() + 1).unwrap_or(u32::MAX)
    }

    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// The longest single delay, useful for validating configuration.
    pub fn longest_delay(&self) -> Duration {
        self.delays.iter().copied().max().unwrap_or_default()
    }

    /// The wait before the next attempt after `attempts_made` failed ones, or
    /// `None` when the schedule is exhausted.
    pub fn next_delay(&self, attempts_made: u32, jitter: Jitter, rng: &mut dyn RngCore) -> Option<Duration> {
        let index = usize::try_from(attempts_made.checked_sub(1)?).ok()?;
        let base = *self.delays.get(index)?;
        Some(jitter.apply(base, rng))
    }
}

/// Everything the lifecycle needs to decide when to try again.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub provider: RetrySchedule,
    pub callback: RetrySchedule,
    pub jitter: Jitter,
    /// A `Retry-After` longer than this is clamped to it, so a hostile or
    /// confused server cannot park a job for days.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            provider: RetrySchedule::provider_default(),
            callback: RetrySchedule::callback_default(),
            jitter: Jitter::DEFAULT,
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The schedule's delay, stretched (never shortened) by a clamped `Retry-After`.
    pub fn delay_with_hint(
        &self,
        schedule: &RetrySchedule,
        attempts_made: u32,
        retry_after: Option<Duration>,
        rng: &mut dyn RngCore,
    ) -> Option<Duration> {
        let delay = schedule.next_delay(attempts_made, self.jitter, rng)?;
        Some(match retry_after {
            Some(hint) => delay.max(hint.min(self.max_retry_after)),
            None => delay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn defaults_match_the_spec() {
        assert_eq!(RetrySchedule::provider_default().max_attempts(), 6);
        assert_eq!(RetrySchedule::callback_default().max_attempts(), 8);
    }

    #[test]
    fn schedule_is_exhausted_after_its_last_delay() {
        let schedule = RetrySchedule::new(vec![Duration::from_secs(1), Duration::from_secs(2)]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        assert_eq!(schedule.next_delay(0, Jitter::None, &mut rng), None);
        assert_eq!(
            schedule.next_delay(1, Jitter::None, &mut rng),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            schedule.next_delay(2, Jitter::None, &mut rng),
            Some(Duration::from_secs(2))
        );
        assert_eq!(schedule.next_delay(3, Jitter::None, &mut rng), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_varies() {
        let schedule = RetrySchedule::provider_default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let delays: Vec<Duration> = (0..200)
            .map(|_| {
                schedule
                    .next_delay(2, Jitter::DEFAULT, &mut rng)
                    .expect("within schedule")
            })
            .collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_secs(24) && *d <= Duration::from_secs(36))
        );
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "jitter should spread delays");
    }

    #[test]
    fn retry_after_stretches_but_is_clamped() {
        let policy = RetryPolicy {
            jitter: Jitter::None,
            ..RetryPolicy::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let s = &policy.provider;
        assert_eq!(
            policy.delay_with_hint(s, 1, Some(Duration::from_secs(1)), &mut rng),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            policy.delay_with_hint(s, 1, Some(Duration::from_secs(60)), &mut rng),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            policy.delay_with_hint(s, 1, Some(Duration::from_secs(86_400 * 7)), &mut rng),
            Some(Duration::from_secs(3600))
        );
    }
}
