//! [`PurgeSchedule`]: when a processor asks its store to delete finished
//! jobs past their retention (for stores that do not expire items
//! themselves): at most once per interval per instance.

use std::sync::Mutex;
use std::time::Duration;

use domain::Timestamp;

#[derive(Debug)]
pub(crate) struct PurgeSchedule {
    interval: chrono::Duration,
    last: Mutex<Option<Timestamp>>,
}

impl PurgeSchedule {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval: chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX),
            last: Mutex::new(None),
        }
    }

    /// Whether a purge is due at `now`: none yet, or the last one started
    /// at least the interval ago. If so, one counts as started at `now`,
    /// whatever comes of it (a failed purge waits for the next interval).
    pub fn start_if_due(&self, now: Timestamp) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_some_and(|at| now < at + self.interval) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    #[test]
    fn one_purge_per_interval_the_first_at_once() {
        let schedule = PurgeSchedule::new(Duration::from_secs(600));
        let at = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid time");
        let after = |secs: i64| at + chrono::Duration::seconds(secs);
        assert!(schedule.start_if_due(at), "the first drain purges");
        assert!(!schedule.start_if_due(at));
        assert!(!schedule.start_if_due(after(599)));
        assert!(schedule.start_if_due(after(600)));
        assert!(
            !schedule.start_if_due(after(1_000)),
            "the interval runs from the last purge"
        );
        assert!(schedule.start_if_due(after(1_200)));
    }
}
