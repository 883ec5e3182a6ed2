//! Synchronous publishing (SPEC section 10): `?sync=true&timeout=10s` on
//! `POST /v1/events` and `POST /webhook` answers once each delivery's first
//! attempt has finished, or when the time runs out, with what is known.
//!
//! The intake makes each first attempt itself when it has an
//! [`AttemptNow`] (a processor in its process): it claims the delivery
//! under a lease like any processor, so processors elsewhere never make it
//! twice. The attempts run as tasks of their own: a client that goes away,
//! or a timeout, does not cut one short; it is saved as a drain would save
//! it. A delivery another processor holds (or an intake without one) is
//! watched in the store until its first attempt is recorded.

use std::time::Duration;

use domain::{Job, JobId, TenantId};

use crate::{ApiError, AppState, FieldError};

/// Makes a job's due attempts now, for a synchronous publish.
#[async_trait::async_trait]
pub trait AttemptNow: Send + Sync {
    /// Claims `tenant`'s job `id` and makes its due attempts: the job as
    /// saved, or `None` if it could not be claimed (another processor
    /// holds it) or its save was not written.
    async fn attempt_now(&self, tenant: &TenantId, id: JobId) -> Option<Job>;
}

/// How long a synchronous publish waits when `timeout` is not given.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest it may wait.
pub const MAX_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a delivery someone else attempts is looked at in the store.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// `sync` and `timeout` from a query: `Some(timeout)` when the caller asks
/// to wait (`sync=true`), `None` when not; a bad value, a repeated or an
/// unknown parameter is a 422 naming it.
pub(crate) fn wait_for(raw: Option<&str>) -> Result<Option<Duration>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let mut errors = Vec::new();
    let (mut sync, mut timeout) = (false, None);
    crate::query::each(raw, &mut errors, |key, value, errors| match key {
        "sync" => match value {
            "true" => sync = true,
            "false" => sync = false,
            _ => errors.push(FieldError::new("sync", "must be true or false")),
        },
        "timeout" => match humantime::parse_duration(value) {
            Ok(t) if !t.is_zero() && t <= MAX_SYNC_TIMEOUT => timeout = Some(t),
            _ => errors.push(FieldError::new(
                "timeout",
                "must be a duration from 1ms to 30s, such as 10s",
            )),
        },
        other => errors.push(FieldError::new(other, "unknown query parameter")),
    });
    if timeout.is_some() && !sync && errors.is_empty() {
        errors.push(FieldError::new("timeout", "is only for sync=true"));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Ok(sync.then(|| timeout.unwrap_or(DEFAULT_SYNC_TIMEOUT)))
}

/// Each job's state once its first attempt has finished, or as last read
/// when `within` ran out first (`None`: not read at all). The bool says
/// whether every one finished.
pub(crate) async fn first_attempts(
    state: &AppState,
    tenant: &TenantId,
    ids: &[JobId],
    within: Duration,
) -> (Vec<Option<Job>>, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let watches = ids.iter().map(|&id| {
        let state = state.clone();
        let tenant = tenant.clone();
        async move {
            let attempt = state.config.attempt_now.clone().map(|now| {
                let tenant = tenant.clone();
                // A task of its own: neither the client leaving nor the
                // timeout cuts the attempt short.
                tokio::spawn(async move { now.attempt_now(&tenant, id).await })
            });
            let made = match attempt {
                Some(task) => tokio::time::timeout_at(deadline, task)
                    .await
                    .ok()
                    .and_then(Result::ok),
                None => None,
            };
            match made {
                Some(Some(job)) => (Some(job), true),
                // Someone else holds it, or nothing here could make it: watch.
                Some(None) | None => watch(&state, &tenant, id, deadline).await,
            }
        }
    });
    let seen: Vec<(Option<Job>, bool)> = futures::future::join_all(watches).await;
    let finished = seen.iter().all(|(_, done)| *done);
    (seen.into_iter().map(|(job, _)| job).collect(), finished)
}

/// Whether `job` has had its first attempt: one is recorded.
fn attempted(job: &Job) -> bool {
    !job.history().is_empty()
}

async fn watch(
    state: &AppState,
    tenant: &TenantId,
    id: JobId,
    deadline: tokio::time::Instant,
) -> (Option<Job>, bool) {
    let mut last = None;
    loop {
        if let Ok(Some(job)) = state.store.get_job(tenant, id).await {
            if attempted(&job) {
                return (Some(job), true);
            }
            last = Some(job);
        }
        if tokio::time::Instant::now() + WATCH_EVERY >= deadline {
            return (last, false);
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}
