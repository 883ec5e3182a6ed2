//! Time as a parameter: the processor and intake read "now" from a [`Clock`]
//! so backoff, due times and lease expiry are tested with a [`ManualClock`].

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

/// A point in time, always UTC and truncated to milliseconds: that is the
/// precision every store keeps, so a value survives a round trip unchanged.
pub type Timestamp = DateTime<Utc>;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Utc::now().trunc_subsecs(3)
    }
}

/// A clock that moves only when told to; for tests and simulations.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Mutex::new(start.trunc_subsecs(3)),
        }
    }

    /// Starts at the current wall-clock time, so tokens and TTLs stay realistic.
    pub fn starting_now() -> Self {
        Self::new(Utc::now())
    }

    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).expect("test durations fit in chrono's range");
        let mut now = self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::starting_now();
        let before = clock.now();
        assert_eq!(clock.now(), before);
        clock.advance(Duration::from_millis(1500));
        assert_eq!((clock.now() - before).num_milliseconds(), 1500);
    }

    #[test]
    fn timestamps_have_millisecond_precision() {
        let now = SystemClock.now();
        assert_eq!(now.timestamp_subsec_nanos() % 1_000_000, 0);
    }
}
