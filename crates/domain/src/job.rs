//! A job and its lifecycle: `pending` (provider data still being fetched) ->
//! `delivering` (all providers settled, callback not yet acknowledged) ->
//! `complete` or `failed`.
//!
//! The transitions are pure functions of the current state, an attempt's
//! outcome, the time and a random source; the processor does the I/O.

use std::time::Duration;

use chrono::SubsecRound;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::attempt::{Attempt, MAX_ATTEMPTS_KEPT};
use crate::retry::RetryPolicy;
use crate::{CallbackBody, CallbackResult, JobId, Metadata, TenantId, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Delivering,
    Complete,
    Failed,
}

impl JobStatus {
    pub const ALL: [JobStatus; 4] = [Self::Pending, Self::Delivering, Self::Complete, Self::Failed];

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Complete | Self::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivering => "delivering",
            Self::Complete => "complete",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderStatus {
    Pending,
    Ok,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderState {
    pub name: String,
    pub status: ProviderStatus,
    pub attempts: u32,
    /// The fetched data, kept until the callback is acknowledged so a
    /// callback retry never fetches again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackState {
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
}

/// What intake accepted, before it becomes a [`Job`].
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub tenant: TenantId,
    pub callback_url: Url,
    pub metadata: Option<Metadata>,
    pub providers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: JobId,
    pub tenant: TenantId,
    pub status: JobStatus,
    pub callback_url: Url,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    pub providers: Vec<ProviderState>,
    pub callback: CallbackState,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the job next needs a processor; `None` once it is terminal. Stores
    /// index exactly the jobs that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
    /// The most recent provider fetches and callback attempts, oldest
    /// first, at most [`MAX_ATTEMPTS_KEPT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Attempt>,
}

/// The result of one provider fetch, as classified by the processor.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchOutcome {
    Ok {
        status: u16,
        data: Value,
    },
    /// Timeouts, connection errors, 408, 429, 5xx.
    Retryable {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// Other 4xx, non-JSON, oversize: trying again cannot help.
    Permanent {
        status: Option<u16>,
        error: String,
    },
}

/// The result of one callback attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum CallbackOutcome {
    Delivered {
        status: u16,
    },
    /// `410 Gone`: the receiver asked us to stop; the job fails at once.
    Gone,
    Retryable {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
}

/// `now + delay`, kept to the millisecond precision every store holds.
fn chrono_after(now: Timestamp, delay: Duration) -> Timestamp {
    let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    now.checked_add_signed(delay).unwrap_or(now).trunc_subsecs(3)
}

impl Job {
    pub fn new(new: NewJob, now: Timestamp) -> Self {
        let providers = new
            .providers
            .into_iter()
            .map(|name| ProviderState {
                name,
                status: ProviderStatus::Pending,
                attempts: 0,
                data: None,
                last_status_code: None,
                last_error: None,
                next_attempt_at: Some(now),
            })
            .collect();
        let mut job = Job {
            id: new.id,
            tenant: new.tenant,
            status: JobStatus::Pending,
            callback_url: new.callback_url,
            metadata: new.metadata,
            providers,
            callback: CallbackState::default(),
            created_at: now,
            updated_at: now,
            due_at: Some(now),
            history: Vec::new(),
        };
        // A job with no providers (a payload given, not fetched) goes straight
        // to delivery.
        job.settle(now);
        job
    }

    /// Names of the providers whose next fetch is due at `now`.
    pub fn providers_due(&self, now: Timestamp) -> Vec<String> {
        if self.status != JobStatus::Pending {
            return Vec::new();
        }
        self.providers
            .iter()
            .filter(|p| p.status == ProviderStatus::Pending)
            .filter(|p| p.next_attempt_at.is_none_or(|at| at <= now))
            .map(|p| p.name.clone())
            .collect()
    }

    pub fn callback_due(&self, now: Timestamp) -> bool {
        self.status == JobStatus::Delivering && self.callback.next_attempt_at.is_none_or(|at| at <= now)
    }

    pub fn record_fetch(
        &mut self,
        provider: &str,
        outcome: FetchOutcome,
        now: Timestamp,
        policy: &RetryPolicy,
        rng: &mut dyn RngCore,
    ) {
        let Some(state) = self.providers.iter_mut().find(|p| p.name == provider) else {
            return;
        };
        if state.status != ProviderStatus::Pending {
            return;
        }
        state.attempts += 1;
        match outcome {
            FetchOutcome::Ok { status, data } => {
                state.status = ProviderStatus::Ok;
                state.data = Some(data);
                state.last_status_code = Some(status);
                state.last_error = None;
                state.next_attempt_at = None;
            }
            FetchOutcome::Retryable {
                status,
                error,
                retry_after,
            } => {
                state.last_status_code = status;
                match policy.delay_with_hint(&policy.provider, state.attempts, retry_after, rng) {
                    Some(delay) => {
                        state.last_error = Some(error);
                        state.next_attempt_at = Some(chrono_after(now, delay));
                    }
                    None => {
                        state.status = ProviderStatus::Failed;
                        state.last_error = Some(exhausted(&error, state.attempts));
                        state.next_attempt_at = None;
                    }
                }
            }
            FetchOutcome::Permanent { status, error } => {
                state.status = ProviderStatus::Failed;
                state.last_status_code = status;
                state.last_error = Some(error);
                state.next_attempt_at = None;
            }
        }
        self.updated_at = now;
        self.settle(now);
    }

    pub fn record_callback(
        &mut self,
        outcome: CallbackOutcome,
        now: Timestamp,
        policy: &RetryPolicy,
        rng: &mut dyn RngCore,
    ) {
        if self.status != JobStatus::Delivering {
            return;
        }
        let callback = &mut self.callback;
        callback.attempts += 1;
        match outcome {
            CallbackOutcome::Delivered { status } => {
                callback.last_status_code = Some(status);
                callback.last_error = None;
                callback.next_attempt_at = None;
                callback.delivered_at = Some(now);
                self.status = JobStatus::Complete;
                // The receiver has the data now; a finished job keeps its
                // per-provider state but not the payload, so it stays small.
                for provider in &mut self.providers {
                    provider.data = None;
                }
            }
            CallbackOutcome::Gone => {
                callback.last_status_code = Some(410);
                callback.last_error = Some("callback answered 410 Gone".to_owned());
                callback.next_attempt_at = None;
                self.status = JobStatus::Failed;
            }
            CallbackOutcome::Retryable {
                status,
                error,
                retry_after,
            } => {
                callback.last_status_code = status;
                match policy.delay_with_hint(&policy.callback, callback.attempts, retry_after, rng) {
                    Some(delay) => {
                        callback.last_error = Some(error);
                        callback.next_attempt_at = Some(chrono_after(now, delay));
                    }
                    None => {
                        callback.last_error = Some(exhausted(&error, callback.attempts));
                        callback.next_attempt_at = None;
                        self.status = JobStatus::Failed;
                    }
                }
            }
        }
        self.updated_at = now;
        self.settle(now);
    }

    /// Adds an attempt to the history, dropping the oldest past
    /// [`MAX_ATTEMPTS_KEPT`].
    pub fn record_attempt(&mut self, attempt: Attempt) {
        self.history.push(attempt);
        if self.history.len() > MAX_ATTEMPTS_KEPT {
            let excess = self.history.len() - MAX_ATTEMPTS_KEPT;
            self.history.drain(..excess);
        }
    }

    /// Redrive from the dead letter: a `failed` job gets a fresh round of
    /// callback attempts, due at once. The fetched provider results are
    /// kept, so nothing is fetched again; the last error stays visible until
    /// the next attempt. Returns `false`, changing nothing, unless the job
    /// is failed.
    pub fn redrive(&mut self, now: Timestamp) -> bool {
        if self.status != JobStatus::Failed {
            return false;
        }
        self.status = JobStatus::Delivering;
        self.callback.attempts = 0;
        self.callback.next_attempt_at = Some(now);
        self.updated_at = now;
        self.settle(now);
        true
    }

    /// Moves a pending job whose providers are all settled to `delivering`
    /// and recomputes when the job is next due.
    fn settle(&mut self, now: Timestamp) {
        if self.status == JobStatus::Pending
            && self.providers.iter().all(|p| p.status != ProviderStatus::Pending)
        {
            self.status = JobStatus::Delivering;
            self.callback.next_attempt_at = Some(now);
        }
        self.due_at = match self.status {
            JobStatus::Pending => self
                .providers
                .iter()
                .filter(|p| p.status == ProviderStatus::Pending)
                .map(|p| p.next_attempt_at.unwrap_or(now))
                .min(),
            JobStatus::Delivering => Some(self.callback.next_attempt_at.unwrap_or(now)),
            JobStatus::Complete | JobStatus::Failed => None,
        };
    }

    /// The callback body (SPEC section 4).
    pub fn callback_body(&self) -> CallbackBody {
        CallbackBody {
            kind: "job.completed".to_owned(),
            job_id: self.id,
            created_at: self.created_at,
            metadata: self.metadata.clone(),
            results: self
                .providers
                .iter()
                .map(|p| match p.status {
                    ProviderStatus::Ok => CallbackResult::Ok {
                        provider: p.name.clone(),
                        data: p.data.clone().unwrap_or(Value::Null),
                    },
                    ProviderStatus::Failed | ProviderStatus::Pending => CallbackResult::Failed {
                        provider: p.name.clone(),
                        error: p.last_error.clone().unwrap_or_else(|| "not fetched".to_owned()),
                    },
                })
                .collect(),
        }
    }
}

fn exhausted(error: &str, attempts: u32) -> String {
    format!("{error} after {attempts} attempts")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clock, Jitter, SystemClock};
    use rand::SeedableRng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            jitter: Jitter::None,
            ..RetryPolicy::default()
        }
    }

    fn job(providers: &[&str], now: Timestamp) -> Job {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        Job::new(
            NewJob {
                id: JobId::generate(now, &mut rng),
                tenant: TenantId::new("t"),
                callback_url: Url::parse("https://client.example/complete").expect("valid"),
                metadata: None,
                providers: providers.iter().map(|p| (*p).to_owned()).collect(),
            },
            now,
        )
    }

    fn ok(data: Value) -> FetchOutcome {
        FetchOutcome::Ok { status: 200, data }
    }

    #[test]
    fn happy_path_moves_pending_to_delivering_to_complete() {
        let now = SystemClock.now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut job = job(&["gas", "internet"], now);
        assert_eq!(job.status, JobStatus::Pending);
        assert_eq!(job.due_at, Some(now));
        assert_eq!(job.providers_due(now), vec!["gas", "internet"]);

        job.record_fetch("gas", ok(serde_json::json!([1])), now, &policy(), &mut rng);
        assert_eq!(job.status, JobStatus::Pending);
        job.record_fetch("internet", ok(serde_json::json!([2])), now, &policy(), &mut rng);
        assert_eq!(job.status, JobStatus::Delivering);
        assert!(job.callback_due(now));
        let body = job.callback_body();
        assert_eq!(body.results.len(), 2);

        job.record_callback(
            CallbackOutcome::Delivered { status: 204 },
            now,
            &policy(),
            &mut rng,
        );
        assert_eq!(job.status, JobStatus::Complete);
        assert_eq!(job.due_at, None);
        assert!(job.providers.iter().all(|p| p.data.is_none()));
    }

    #[test]
    fn retryable_fetch_waits_for_backoff_then_exhausts() {
        let now = SystemClock.now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut job = job(&["gas"], now);
        let fail = || FetchOutcome::Retryable {
            status: Some(503),
            error: "HTTP 503".to_owned(),
            retry_after: None,
        };
        job.record_fetch("gas", fail(), now, &policy(), &mut rng);
        assert_eq!(job.due_at, Some(now + chrono::Duration::seconds(5)));
        assert!(job.providers_due(now).is_empty());
        for _ in 1..6 {
            job.record_fetch("gas", fail(), now, &policy(), &mut rng);
        }
        let gas = &job.providers[0];
        assert_eq!(gas.status, ProviderStatus::Failed);
        assert_eq!(gas.last_error.as_deref(), Some("HTTP 503 after 6 attempts"));
        // The callback still goes out, reporting the failure.
        assert_eq!(job.status, JobStatus::Delivering);
        match &job.callback_body().results[0] {
            CallbackResult::Failed { error, .. } => assert_eq!(error, "HTTP 503 after 6 attempts"),
            other => panic!("expected a failed result, got {other:?}"),
        }
    }

    #[test]
    fn gone_fails_at_once_and_exhaustion_dead_letters() {
        let now = SystemClock.now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut gone = job(&[], now);
        assert_eq!(gone.status, JobStatus::Delivering);
        gone.record_callback(CallbackOutcome::Gone, now, &policy(), &mut rng);
        assert_eq!(gone.status, JobStatus::Failed);
        assert_eq!(gone.due_at, None);

        let mut flaky = job(&[], now);
        for attempt in 1..=8 {
            assert_eq!(flaky.status, JobStatus::Delivering, "attempt {attempt}");
            flaky.record_callback(
                CallbackOutcome::Retryable {
                    status: Some(500),
                    error: "HTTP 500".to_owned(),
                    retry_after: None,
                },
                now,
                &policy(),
                &mut rng,
            );
        }
        assert_eq!(flaky.status, JobStatus::Failed);
        assert_eq!(flaky.callback.attempts, 8);
    }

    #[test]
    fn redrive_gives_a_failed_job_a_fresh_round_of_callbacks_and_nothing_else() {
        let now = SystemClock.now().trunc_subsecs(3);
        let later = now + chrono::Duration::hours(1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut job = job(&["gas"], now);
        job.record_fetch("gas", ok(serde_json::json!([1])), now, &policy(), &mut rng);
        assert!(!job.clone().redrive(later), "a delivering job is not redriven");
        job.record_callback(CallbackOutcome::Gone, now, &policy(), &mut rng);
        assert_eq!(job.status, JobStatus::Failed);

        assert!(job.redrive(later));
        assert_eq!(job.status, JobStatus::Delivering);
        assert_eq!(job.callback.attempts, 0);
        assert_eq!(job.due_at, Some(later));
        assert!(job.callback_due(later));
        assert!(
            job.providers_due(later).is_empty(),
            "fetched data is kept, not fetched again"
        );
        assert_eq!(job.providers[0].data, Some(serde_json::json!([1])));
        assert_eq!(
            job.callback.last_status_code,
            Some(410),
            "the last error stays visible"
        );

        job.record_callback(
            CallbackOutcome::Delivered { status: 200 },
            later,
            &policy(),
            &mut rng,
        );
        assert_eq!(job.status, JobStatus::Complete);
        assert!(!job.redrive(later), "a complete job is not redriven");
    }

    #[test]
    fn the_attempt_history_keeps_the_most_recent_in_order() {
        let now = SystemClock.now().trunc_subsecs(3);
        let mut job = job(&["gas"], now);
        let total = crate::MAX_ATTEMPTS_KEPT + 5;
        for n in 0..total {
            job.record_attempt(crate::Attempt {
                provider: Some("gas".to_owned()),
                at: now,
                duration_ms: n as u64,
                status: Some(503),
                error: Some("HTTP 503".to_owned()),
                body: None,
            });
        }
        assert_eq!(job.history.len(), crate::MAX_ATTEMPTS_KEPT);
        let kept: Vec<u64> = job.history.iter().map(|a| a.duration_ms).collect();
        let expected: Vec<u64> = (5..total as u64).collect();
        assert_eq!(kept, expected, "the oldest went first");
        let text = serde_json::to_string(&job).expect("serializes");
        let back: Job = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(back, job);
    }

    #[test]
    fn job_survives_a_json_round_trip() {
        let now = SystemClock.now();
        let job = job(&["gas"], now);
        let text = serde_json::to_string(&job).expect("serializes");
        let back: Job = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(back, job);
    }
}
