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
use crate::callback::{DeliveryBody, EventBody};
use crate::retry::RetryPolicy;
use crate::{
    CallbackBody, CallbackResult, EndpointId, Event, EventId, EventType, JobId, Metadata, RawJson, TenantId,
    Timestamp,
};

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

/// One provider's fetch state, as a job holds it (read through
/// [`Job::providers`]; changed only by the job's lifecycle).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderState {
    pub name: String,
    pub status: ProviderStatus,
    pub attempts: u32,
    /// The fetched data, kept until the delivery is acknowledged so a
    /// delivery retry never fetches again.
    pub data: Option<Value>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<Timestamp>,
}

/// A job's delivery state (read through [`Job::delivery`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryState {
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
}

/// Where a job's delivery goes. A new kind of target (a registered
/// endpoint, a queue) is a new variant here, an arm in the processor's
/// delivery and a new stored-format version; the lifecycle does not change.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `POST` to the URL the job was created with (SPEC section 4).
    Callback(Url),
    /// A registered endpoint (SPEC section 9), read when each attempt is
    /// made: its URL, headers, secret and whether it is enabled then.
    Endpoint(EndpointId),
}

/// What a job delivers. A new kind of payload (one held in a blob store,
/// by reference) is a new variant here, its body in [`Job::body`] and a new
/// stored-format version.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// The jobs API's body (SPEC section 4): `job.completed`, the job's
    /// metadata and every provider's result.
    Results { metadata: Option<Metadata> },
    /// Given when the job was made: an event's type and data, delivered as
    /// `{type, timestamp, data}` (SPEC section 9), with every provider's
    /// result when the job fetched any (a thin event).
    Event { event_type: EventType, data: RawJson },
    /// A published event's, stored once with the event (SPEC section 9):
    /// every delivery of the event reads it from there.
    OfEvent(EventId),
}

impl Payload {
    /// The delivery body's `type`; `None` when the event holds it.
    pub fn event_type(&self) -> Option<&str> {
        match self {
            Self::Results { .. } => Some("job.completed"),
            Self::Event { event_type, .. } => Some(event_type.as_str()),
            Self::OfEvent(_) => None,
        }
    }
}

/// What intake accepted, before it becomes a [`Job`].
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub tenant: TenantId,
    pub target: Target,
    pub payload: Payload,
    /// Providers to fetch before delivering; none for a payload given whole.
    pub providers: Vec<String>,
}

/// A job: what to deliver, where, and how far it has got. Its state changes
/// only through the lifecycle methods below (`record_fetch`,
/// `record_delivery`, `redrive`, `fit_within`), which keep `status` and
/// `due_at` consistent with the rest; stores persist it through
/// [`crate::record`].
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub(crate) id: JobId,
    pub(crate) tenant: TenantId,
    pub(crate) status: JobStatus,
    pub(crate) target: Target,
    pub(crate) payload: Payload,
    pub(crate) providers: Vec<ProviderState>,
    pub(crate) delivery: DeliveryState,
    pub(crate) created_at: Timestamp,
    pub(crate) updated_at: Timestamp,
    /// When the job next needs a processor; `None` once it is terminal.
    /// Stores index exactly the jobs that have one.
    pub(crate) due_at: Option<Timestamp>,
    /// The most recent provider fetches and delivery attempts, oldest
    /// first, at most [`MAX_ATTEMPTS_KEPT`].
    pub(crate) history: Vec<Attempt>,
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

impl FetchOutcome {
    /// The HTTP status it got, if it got an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Ok { status, .. } => Some(*status),
            Self::Retryable { status, .. } | Self::Permanent { status, .. } => *status,
        }
    }

    /// Why it failed; `None` when it succeeded.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Ok { .. } => None,
            Self::Retryable { error, .. } | Self::Permanent { error, .. } => Some(error),
        }
    }
}

/// The result of one delivery attempt.
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
    /// Not sent, and never to be: the target is gone or refuses deliveries
    /// (`endpointDeleted`, `endpointDisabled`). The job fails at once.
    Abandoned {
        reason: String,
    },
}

impl CallbackOutcome {
    /// The HTTP status it got, if it got an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Delivered { status } => Some(*status),
            Self::Gone => Some(410),
            Self::Retryable { status, .. } => *status,
            Self::Abandoned { .. } => None,
        }
    }

    /// Why it failed, as the attempt history shows it; `None` when it
    /// succeeded.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Delivered { .. } => None,
            Self::Gone => Some("HTTP 410 Gone"),
            Self::Retryable { error, .. } => Some(error),
            Self::Abandoned { reason } => Some(reason),
        }
    }
}

/// How one attempt went, apart from its outcome: when it started, how long
/// it took (`None` when nothing was sent), and the answer's body, kept for
/// a failed attempt only.
#[derive(Debug, Clone, PartialEq)]
pub struct Tried {
    pub at: Timestamp,
    pub took: Option<Duration>,
    pub body: Option<String>,
    /// The answer's headers an attempt keeps ([`crate::kept_headers`]).
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Provider data dropped by [`Job::fit_within`] so the job fits its store.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    pub provider: String,
    /// The job's stored size before it was dropped.
    pub size: usize,
}

/// `now + delay`, kept to the millisecond precision every store holds.
fn chrono_after(now: Timestamp, delay: Duration) -> Timestamp {
    let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    now.checked_add_signed(delay).unwrap_or(now).trunc_subsecs(3)
}

fn millis(took: Option<Duration>) -> u64 {
    took.map_or(0, |t| t.as_millis().try_into().unwrap_or(u64::MAX))
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
            target: new.target,
            payload: new.payload,
            providers,
            delivery: DeliveryState::default(),
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

    pub fn id(&self) -> JobId {
        self.id
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn status(&self) -> JobStatus {
        self.status
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// The job's metadata, for a payload that has it.
    pub fn metadata(&self) -> Option<&Metadata> {
        match &self.payload {
            Payload::Results { metadata } => metadata.as_ref(),
            Payload::Event { .. } | Payload::OfEvent(_) => None,
        }
    }

    pub fn providers(&self) -> &[ProviderState] {
        &self.providers
    }

    pub fn delivery(&self) -> &DeliveryState {
        &self.delivery
    }

    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }

    /// When the job next needs a processor; `None` once it is terminal.
    pub fn due_at(&self) -> Option<Timestamp> {
        self.due_at
    }

    /// The most recent attempts, oldest first.
    pub fn history(&self) -> &[Attempt] {
        &self.history
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

    pub fn delivery_due(&self, now: Timestamp) -> bool {
        self.status == JobStatus::Delivering && self.delivery.next_attempt_at.is_none_or(|at| at <= now)
    }

    /// Records one fetch of `provider`, in the history and in the
    /// provider's state, settled at `now`.
    pub fn record_fetch(
        &mut self,
        provider: &str,
        outcome: FetchOutcome,
        tried: Tried,
        now: Timestamp,
        policy: &RetryPolicy,
        rng: &mut dyn RngCore,
    ) {
        self.record_attempt(Attempt {
            provider: Some(provider.to_owned()),
            at: tried.at,
            duration_ms: millis(tried.took),
            status: outcome.status(),
            error: outcome.error().map(str::to_owned),
            body: tried.body,
            headers: tried.headers,
        });
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

    /// Records one delivery attempt, in the history and in the delivery
    /// state, settled at `now`.
    pub fn record_delivery(
        &mut self,
        outcome: CallbackOutcome,
        tried: Tried,
        now: Timestamp,
        policy: &RetryPolicy,
        rng: &mut dyn RngCore,
    ) {
        self.record_attempt(Attempt {
            provider: None,
            at: tried.at,
            duration_ms: millis(tried.took),
            status: outcome.status(),
            error: outcome.error().map(str::to_owned),
            body: tried.body,
            headers: tried.headers,
        });
        if self.status != JobStatus::Delivering {
            return;
        }
        let delivery = &mut self.delivery;
        // Nothing was sent when abandoned: not an attempt.
        if !matches!(outcome, CallbackOutcome::Abandoned { .. }) {
            delivery.attempts += 1;
        }
        match outcome {
            CallbackOutcome::Delivered { status } => {
                delivery.last_status_code = Some(status);
                delivery.last_error = None;
                delivery.next_attempt_at = None;
                delivery.delivered_at = Some(now);
                self.status = JobStatus::Complete;
                // The receiver has the data now; a finished job keeps its
                // per-provider state but not the payload, so it stays small.
                for provider in &mut self.providers {
                    provider.data = None;
                }
            }
            CallbackOutcome::Gone => {
                delivery.last_status_code = Some(410);
                delivery.last_error = Some("callback answered 410 Gone".to_owned());
                delivery.next_attempt_at = None;
                self.status = JobStatus::Failed;
            }
            CallbackOutcome::Abandoned { reason } => {
                delivery.last_error = Some(reason);
                delivery.next_attempt_at = None;
                self.status = JobStatus::Failed;
            }
            CallbackOutcome::Retryable {
                status,
                error,
                retry_after,
            } => {
                delivery.last_status_code = status;
                match policy.delay_with_hint(&policy.callback, delivery.attempts, retry_after, rng) {
                    Some(delay) => {
                        delivery.last_error = Some(error);
                        delivery.next_attempt_at = Some(chrono_after(now, delay));
                    }
                    None => {
                        delivery.last_error = Some(exhausted(&error, delivery.attempts));
                        delivery.next_attempt_at = None;
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
    fn record_attempt(&mut self, attempt: Attempt) {
        self.history.push(attempt);
        if self.history.len() > MAX_ATTEMPTS_KEPT {
            let excess = self.history.len() - MAX_ATTEMPTS_KEPT;
            self.history.drain(..excess);
        }
    }

    /// Settles a job not yet finished as `failed` with `reason`, nothing
    /// sent and nothing more fetched: its target refuses deliveries (a
    /// delivery whose endpoint is disabled or deleted, found before its
    /// providers are fetched). Not an attempt; kept in the history as one
    /// that sent nothing. Returns `false`, changing nothing, for a finished
    /// job.
    pub fn abandon(&mut self, reason: &str, now: Timestamp) -> bool {
        if matches!(self.status, JobStatus::Complete | JobStatus::Failed) {
            return false;
        }
        self.record_attempt(Attempt {
            provider: None,
            at: now,
            duration_ms: millis(None),
            status: None,
            error: Some(reason.to_owned()),
            body: None,
            headers: Default::default(),
        });
        self.delivery.last_error = Some(reason.to_owned());
        self.delivery.next_attempt_at = None;
        self.status = JobStatus::Failed;
        self.updated_at = now;
        self.settle(now);
        true
    }

    /// Redrive from the dead letter: a `failed` job gets a fresh round of
    /// delivery attempts, due at once. The fetched provider results are
    /// kept, so nothing is fetched again (one abandoned before its
    /// providers settled fetches those still pending first); the last error
    /// stays visible until the next attempt. Returns `false`, changing
    /// nothing, unless the job is failed.
    pub fn redrive(&mut self, now: Timestamp) -> bool {
        if self.status != JobStatus::Failed {
            return false;
        }
        self.status = if self.providers.iter().any(|p| p.status == ProviderStatus::Pending) {
            JobStatus::Pending
        } else {
            JobStatus::Delivering
        };
        self.delivery.attempts = 0;
        self.delivery.next_attempt_at = Some(now);
        self.updated_at = now;
        self.settle(now);
        true
    }

    /// Makes the job fit in `limit` bytes of its stored form
    /// ([`crate::record`]): old attempts' response bodies go first (they
    /// only explain the past), then the largest fetched payloads, each
    /// marking its provider failed with a clear error, so a too-large
    /// answer is never a job its store refuses to save. Returns the
    /// providers whose data was dropped.
    pub fn fit_within(&mut self, limit: usize) -> Vec<Dropped> {
        let mut dropped = Vec::new();
        loop {
            let size = crate::record::encode(self).len();
            if size <= limit {
                return dropped;
            }
            if let Some(attempt) = self.history.iter_mut().find(|a| a.body.is_some()) {
                attempt.body = None;
                continue;
            }
            let largest = self
                .providers
                .iter_mut()
                .filter(|p| p.data.is_some())
                .max_by_key(|p| p.data.as_ref().map(|d| d.to_string().len()).unwrap_or(0));
            let Some(provider) = largest else {
                return dropped;
            };
            provider.data = None;
            provider.status = ProviderStatus::Failed;
            provider.last_error = Some(format!(
                "data too large to store (job is {size} bytes; limit {limit})"
            ));
            dropped.push(Dropped {
                provider: provider.name.clone(),
                size,
            });
        }
    }

    /// Moves a pending job whose providers are all settled to `delivering`
    /// and recomputes when the job is next due.
    fn settle(&mut self, now: Timestamp) {
        if self.status == JobStatus::Pending
            && self.providers.iter().all(|p| p.status != ProviderStatus::Pending)
        {
            self.status = JobStatus::Delivering;
            self.delivery.next_attempt_at = Some(now);
        }
        self.due_at = match self.status {
            JobStatus::Pending => self
                .providers
                .iter()
                .filter(|p| p.status == ProviderStatus::Pending)
                .map(|p| p.next_attempt_at.unwrap_or(now))
                .min(),
            JobStatus::Delivering => Some(self.delivery.next_attempt_at.unwrap_or(now)),
            JobStatus::Complete | JobStatus::Failed => None,
        };
    }

    /// Every provider's result, as a body carries them.
    fn results(&self) -> Vec<CallbackResult> {
        self.providers
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
            .collect()
    }

    /// The delivery's body: SPEC section 4 for a job's results, section 9
    /// for an event. A payload its event holds ([`Payload::OfEvent`]) needs
    /// that event: `None` without it (or given another).
    pub fn body(&self, event: Option<&Event>) -> Option<DeliveryBody> {
        Some(match &self.payload {
            Payload::Results { metadata } => DeliveryBody::Results(CallbackBody {
                kind: "job.completed".to_owned(),
                job_id: self.id,
                created_at: self.created_at,
                metadata: metadata.clone(),
                results: self.results(),
            }),
            Payload::Event { event_type, data } => DeliveryBody::Event(EventBody {
                kind: event_type.as_str().to_owned(),
                timestamp: self.created_at,
                data: data.clone(),
                results: (!self.providers.is_empty()).then(|| self.results()),
            }),
            Payload::OfEvent(id) => {
                let event = event.filter(|event| event.id == *id && event.tenant == self.tenant)?;
                DeliveryBody::Event(event.body((!self.providers.is_empty()).then(|| self.results()))?)
            }
        })
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
                target: Target::Callback(Url::parse("https://client.example/complete").expect("valid")),
                payload: Payload::Results { metadata: None },
                providers: providers.iter().map(|p| (*p).to_owned()).collect(),
            },
            now,
        )
    }

    fn tried(at: Timestamp) -> Tried {
        Tried {
            at,
            took: None,
            body: None,
            headers: Default::default(),
        }
    }

    fn ok(data: Value) -> FetchOutcome {
        FetchOutcome::Ok { status: 200, data }
    }

    #[test]
    fn a_job_abandoned_before_its_providers_settle_fetches_nothing_until_redriven() {
        let now = chrono::Utc::now();
        let mut job = job(&["gas"], now);
        assert_eq!(job.status(), JobStatus::Pending);
        assert!(job.abandon("endpointDisabled", now));
        assert_eq!(job.status(), JobStatus::Failed);
        assert_eq!(job.due_at(), None, "nothing is due: nothing is fetched");
        assert_eq!(job.delivery().attempts, 0, "nothing was sent");
        assert_eq!(job.delivery().last_error.as_deref(), Some("endpointDisabled"));
        assert_eq!(job.history().len(), 1);
        assert!(
            !job.abandon("endpointDeleted", now),
            "a finished job stays as it is"
        );
        // Redriven, it fetches what it had not before it delivers.
        assert!(job.redrive(now));
        assert_eq!(job.status(), JobStatus::Pending);
        assert_eq!(job.providers_due(now), vec!["gas"]);
        assert_eq!(job.due_at(), Some(now));
    }

    #[test]
    fn happy_path_moves_pending_to_delivering_to_complete() {
        let now = SystemClock.now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut job = job(&["gas", "internet"], now);
        assert_eq!(job.status, JobStatus::Pending);
        assert_eq!(job.due_at, Some(now));
        assert_eq!(job.providers_due(now), vec!["gas", "internet"]);

        job.record_fetch(
            "gas",
            ok(serde_json::json!([1])),
            tried(now),
            now,
            &policy(),
            &mut rng,
        );
        assert_eq!(job.status, JobStatus::Pending);
        job.record_fetch(
            "internet",
            ok(serde_json::json!([2])),
            tried(now),
            now,
            &policy(),
            &mut rng,
        );
        assert_eq!(job.status, JobStatus::Delivering);
        assert!(job.delivery_due(now));
        let Some(DeliveryBody::Results(body)) = job.body(None) else {
            panic!("a job's results");
        };
        assert_eq!(body.results.len(), 2);

        job.record_delivery(
            CallbackOutcome::Delivered { status: 204 },
            tried(now),
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
        job.record_fetch("gas", fail(), tried(now), now, &policy(), &mut rng);
        assert_eq!(job.due_at, Some(now + chrono::Duration::seconds(5)));
        assert!(job.providers_due(now).is_empty());
        for _ in 1..6 {
            job.record_fetch("gas", fail(), tried(now), now, &policy(), &mut rng);
        }
        let gas = &job.providers[0];
        assert_eq!(gas.status, ProviderStatus::Failed);
        assert_eq!(gas.last_error.as_deref(), Some("HTTP 503 after 6 attempts"));
        // The callback still goes out, reporting the failure.
        assert_eq!(job.status, JobStatus::Delivering);
        let Some(DeliveryBody::Results(body)) = job.body(None) else {
            panic!("a job's results");
        };
        match &body.results[0] {
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
        gone.record_delivery(CallbackOutcome::Gone, tried(now), now, &policy(), &mut rng);
        assert_eq!(gone.status, JobStatus::Failed);
        assert_eq!(gone.due_at, None);

        let mut flaky = job(&[], now);
        for attempt in 1..=8 {
            assert_eq!(flaky.status, JobStatus::Delivering, "attempt {attempt}");
            flaky.record_delivery(
                CallbackOutcome::Retryable {
                    status: Some(500),
                    error: "HTTP 500".to_owned(),
                    retry_after: None,
                },
                tried(now),
                now,
                &policy(),
                &mut rng,
            );
        }
        assert_eq!(flaky.status, JobStatus::Failed);
        assert_eq!(flaky.delivery.attempts, 8);
    }

    #[test]
    fn redrive_gives_a_failed_job_a_fresh_round_of_callbacks_and_nothing_else() {
        let now = SystemClock.now().trunc_subsecs(3);
        let later = now + chrono::Duration::hours(1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut job = job(&["gas"], now);
        job.record_fetch(
            "gas",
            ok(serde_json::json!([1])),
            tried(now),
            now,
            &policy(),
            &mut rng,
        );
        assert!(!job.clone().redrive(later), "a delivering job is not redriven");
        job.record_delivery(CallbackOutcome::Gone, tried(now), now, &policy(), &mut rng);
        assert_eq!(job.status, JobStatus::Failed);

        assert!(job.redrive(later));
        assert_eq!(job.status, JobStatus::Delivering);
        assert_eq!(job.delivery.attempts, 0);
        assert_eq!(job.due_at, Some(later));
        assert!(job.delivery_due(later));
        assert!(
            job.providers_due(later).is_empty(),
            "fetched data is kept, not fetched again"
        );
        assert_eq!(job.providers[0].data, Some(serde_json::json!([1])));
        assert_eq!(
            job.delivery.last_status_code,
            Some(410),
            "the last error stays visible"
        );

        job.record_delivery(
            CallbackOutcome::Delivered { status: 200 },
            tried(later),
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
                headers: Default::default(),
            });
        }
        assert_eq!(job.history.len(), crate::MAX_ATTEMPTS_KEPT);
        let kept: Vec<u64> = job.history.iter().map(|a| a.duration_ms).collect();
        let expected: Vec<u64> = (5..total as u64).collect();
        assert_eq!(kept, expected, "the oldest went first");
        let back = crate::record::decode(&crate::record::encode(&job)).expect("reads");
        assert_eq!(back, job);
    }

    fn event(providers: &[&str], now: Timestamp) -> Job {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        Job::new(
            NewJob {
                id: JobId::generate(now, &mut rng),
                tenant: TenantId::new("t"),
                target: Target::Callback(Url::parse("https://client.example/events").expect("valid")),
                payload: Payload::Event {
                    event_type: EventType::parse("invoice.paid").expect("valid"),
                    data: RawJson::from_json(r#"{"invoiceId": "in_1", "amount": 1200.50}"#).expect("json"),
                },
                providers: providers.iter().map(|p| (*p).to_owned()).collect(),
            },
            now,
        )
    }

    #[test]
    fn a_given_payload_is_delivered_as_its_event_with_the_same_lifecycle() {
        let now = SystemClock.now().trunc_subsecs(3);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut job = event(&[], now);
        assert_eq!(job.status(), JobStatus::Delivering, "nothing to fetch");
        assert!(job.delivery_due(now));
        let body = serde_json::to_value(job.body(None)).expect("json");
        assert_eq!(
            body,
            serde_json::json!({
                "type": "invoice.paid",
                "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "data": {"invoiceId": "in_1", "amount": 1200.50},
            })
        );
        assert!(
            String::from_utf8(job.body(None).expect("inline").to_bytes())
                .expect("utf-8")
                .contains("1200.50"),
            "data as sent"
        );
        // Backoff, dead letter and redrive are the jobs' own.
        job.record_delivery(
            CallbackOutcome::Retryable {
                status: Some(503),
                error: "HTTP 503".to_owned(),
                retry_after: None,
            },
            tried(now),
            now,
            &policy(),
            &mut rng,
        );
        assert_eq!(job.due_at(), Some(now + chrono::Duration::seconds(5)));
        job.record_delivery(CallbackOutcome::Gone, tried(now), now, &policy(), &mut rng);
        assert_eq!(job.status(), JobStatus::Failed);
        assert!(job.redrive(now));
        assert!(job.delivery_due(now));
        assert_eq!(job.history().len(), 2);
    }

    #[test]
    fn a_thin_event_carries_its_providers_results() {
        let now = SystemClock.now().trunc_subsecs(3);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut job = event(&["gas"], now);
        assert_eq!(job.providers_due(now), vec!["gas"]);
        job.record_fetch(
            "gas",
            ok(serde_json::json!({"reading": 1})),
            tried(now),
            now,
            &policy(),
            &mut rng,
        );
        let body = serde_json::to_value(job.body(None)).expect("json");
        assert_eq!(body["type"], "invoice.paid");
        assert_eq!(
            body["results"],
            serde_json::json!([{"provider": "gas", "status": "ok", "data": {"reading": 1}}])
        );
    }

    #[test]
    fn each_outcome_is_recorded_once_in_the_history_and_the_state() {
        let now = SystemClock.now().trunc_subsecs(3);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut job = job(&[], now);
        let took = Tried {
            at: now,
            took: Some(Duration::from_millis(12)),
            body: Some("bye".to_owned()),
            headers: Default::default(),
        };
        job.record_delivery(CallbackOutcome::Gone, took, now, &policy(), &mut rng);
        let attempt = &job.history()[0];
        assert_eq!(
            (attempt.status, attempt.error.as_deref()),
            (Some(410), Some("HTTP 410 Gone"))
        );
        assert_eq!((attempt.duration_ms, attempt.body.as_deref()), (12, Some("bye")));
        assert_eq!(job.delivery().last_status_code, Some(410));
        assert_eq!(job.status(), JobStatus::Failed);
    }

    #[test]
    fn a_job_too_large_to_store_drops_old_bodies_then_the_largest_data() {
        let now = SystemClock.now().trunc_subsecs(3);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut job = job(&["big", "small"], now);
        let failed = FetchOutcome::Retryable {
            status: Some(503),
            error: "HTTP 503".to_owned(),
            retry_after: None,
        };
        let with_body = Tried {
            at: now,
            took: None,
            body: Some("x".repeat(2000)),
            headers: Default::default(),
        };
        job.record_fetch("small", failed, with_body, now, &policy(), &mut rng);
        job.record_fetch(
            "big",
            ok(serde_json::json!("y".repeat(5000))),
            tried(now),
            now,
            &policy(),
            &mut rng,
        );
        let stored = crate::record::encode(&job).len();
        assert!(job.fit_within(stored).is_empty(), "it fits already");

        assert!(job.fit_within(stored - 100).is_empty(), "the old body was enough");
        assert!(job.history().iter().all(|a| a.body.is_none()));
        let dropped = job.fit_within(1000);
        assert_eq!(
            dropped.iter().map(|d| d.provider.as_str()).collect::<Vec<_>>(),
            ["big"]
        );
        let big = &job.providers()[0];
        assert_eq!((big.status, big.data.is_none()), (ProviderStatus::Failed, true));
        assert!(
            big.last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("data too large to store"))
        );
        assert!(crate::record::encode(&job).len() <= 1000);
    }
}
