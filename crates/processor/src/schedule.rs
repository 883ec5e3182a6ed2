//! Runs [`Processor::drain`] on a cron schedule (6 fields, seconds
//! first), never two drains of one instance at once, until shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use crate::{DrainReport, Processor};

pub const DEFAULT_SCHEDULE: &str = "*/5 * * * * *";

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron schedule {schedule:?} (6 fields, seconds first, e.g. \"*/5 * * * * *\"): {reason}")]
    Invalid { schedule: String, reason: String },
    #[error("scheduler: {0}")]
    Scheduler(String),
}

/// Checks a cron expression without starting anything.
pub fn validate_schedule(schedule: &str) -> Result<(), ScheduleError> {
    let fields = schedule.split_whitespace().count();
    if fields != 6 {
        return Err(ScheduleError::Invalid {
            schedule: schedule.to_owned(),
            reason: format!("has {fields} fields"),
        });
    }
    Job::new_async(schedule, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|e| ScheduleError::Invalid {
            schedule: schedule.to_owned(),
            reason: e.to_string(),
        })
}

/// Lets one drain of a processor instance run at a time: a tick that comes
/// while the previous drain is still running is skipped, not queued.
/// tokio-cron-scheduler neither prevents overlapping runs nor waits for them
/// at shutdown; this does both.
#[derive(Debug, Default)]
pub struct DrainGate {
    running: Mutex<()>,
}

impl DrainGate {
    /// Runs one drain, or returns `None` at once if one is already running
    /// or shutdown has begun.
    pub async fn try_drain(
        &self,
        processor: &Processor,
        shutdown: &CancellationToken,
    ) -> Option<DrainReport> {
        let _running = self.running.try_lock().ok()?;
        if shutdown.is_cancelled() {
            return None;
        }
        Some(processor.drain(shutdown).await)
    }

    /// Runs one drain after the one in progress, if any; `None` if shutdown
    /// has begun.
    pub async fn drain_after_current(
        &self,
        processor: &Processor,
        shutdown: &CancellationToken,
    ) -> Option<DrainReport> {
        let _running = self.running.lock().await;
        if shutdown.is_cancelled() {
            return None;
        }
        Some(processor.drain(shutdown).await)
    }

    /// Waits until no drain is running, for at most `grace`; false on timeout.
    pub async fn wait_idle(&self, grace: Duration) -> bool {
        tokio::time::timeout(grace, self.running.lock()).await.is_ok()
    }
}

/// Runs drains on `schedule` until `shutdown` is cancelled, then waits up to
/// `grace` for a drain in progress (which stops claiming at once) to finish,
/// and releases the leases of whatever did not.
/// A notification on `wake` (intake in the same process accepted a job)
/// starts a drain at once; the schedule stays the source of truth.
pub async fn run_scheduled(
    processor: Arc<Processor>,
    schedule: &str,
    shutdown: CancellationToken,
    grace: Duration,
    wake: Option<Arc<Notify>>,
) -> Result<(), ScheduleError> {
    validate_schedule(schedule)?;
    let scheduler_error =
        |e: tokio_cron_scheduler::JobSchedulerError| ScheduleError::Scheduler(e.to_string());
    let mut scheduler = JobScheduler::new().await.map_err(scheduler_error)?;
    let gate = Arc::new(DrainGate::default());
    if let Some(wake) = wake {
        let (gate, processor, shutdown) = (Arc::clone(&gate), Arc::clone(&processor), shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = wake.notified() => {}
                }
                // A job accepted during this drain leaves a permit behind,
                // so it gets a drain of its own right after.
                gate.drain_after_current(&processor, &shutdown).await;
            }
        });
    }
    let job = {
        let (gate, processor, shutdown) = (Arc::clone(&gate), Arc::clone(&processor), shutdown.clone());
        Job::new_async(schedule, move |_, _| {
            let gate = Arc::clone(&gate);
            let processor = Arc::clone(&processor);
            let shutdown = shutdown.clone();
            Box::pin(async move {
                match gate.try_drain(&processor, &shutdown).await {
                    Some(report) if report.claimed > 0 || report.store_errors > 0 => {
                        tracing::info!(?report, "drain finished");
                    }
                    Some(_) => {}
                    None => tracing::debug!("previous drain still running; skipping this tick"),
                }
            })
        })
        .map_err(|e| ScheduleError::Invalid {
            schedule: schedule.to_owned(),
            reason: e.to_string(),
        })?
    };
    scheduler.add(job).await.map_err(scheduler_error)?;
    scheduler.start().await.map_err(scheduler_error)?;
    tracing::info!(schedule, "processor scheduled");

    shutdown.cancelled().await;
    if let Err(err) = scheduler.shutdown().await {
        tracing::warn!(error = %err, "scheduler did not stop cleanly");
    }
    if !gate.wait_idle(grace).await {
        let released = processor.release_in_flight().await;
        tracing::warn!(
            ?grace,
            released,
            "a drain was still running at the end of the grace period"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_six_field_cron() {
        assert!(validate_schedule(DEFAULT_SCHEDULE).is_ok());
        assert!(validate_schedule("0 */1 * * * *").is_ok());
        assert!(validate_schedule("*/5 * * * *").is_err(), "five fields");
        assert!(validate_schedule("every five seconds").is_err());
        assert!(validate_schedule("99 * * * * *").is_err());
    }
}
