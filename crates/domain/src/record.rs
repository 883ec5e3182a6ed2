//! The stored form of a job: the text a store keeps as the job (DynamoDB's
//! `job` attribute, SQLite's `body` column), separate from [`Job`] so the
//! domain can change without making a stored job unreadable.
//!
//! Each version is a set of types here that never change once released.
//! A record says its version first (`{"v":2,...}`); version 1, written
//! before versions existed, says none. [`decode`] reads every version ever
//! written; [`encode`] writes only [`VERSION`], so a job read in an older
//! form is written in the newest by its next save (read old, write new).
//!
//! A change to what is stored is a new version: new types for the parts
//! that change (the unchanged ones are reused), an arm in [`decode`],
//! [`VERSION`] bumped, and a golden fixture per case in
//! `crates/domain/tests/fixtures/jobs/vN/`. The fixtures of every earlier
//! version stay and must still read, on both stores; the writer's output
//! for the fixture cases must equal the newest fixtures byte for byte, so a
//! renamed field fails a test instead of every stored job.
//!
//! Keys are short where a job repeats them (the attempt history's `p`, `t`,
//! `ms`, `s`, `e`, `b`): a happy-path attempt is about 45 bytes, which keeps
//! a small finished job inside one DynamoDB write unit.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

pub mod endpoint;
pub mod event;
pub mod source;

use crate::{
    Attempt, DeliveryState, EventType, Job, JobId, JobStatus, Metadata, Payload, ProviderState,
    ProviderStatus, RawJson, Target, TenantId, Timestamp,
};

/// The version [`encode`] writes. Version 4 is version 3 with the response
/// headers an attempt keeps (`h`, absent when none), read by version 3's
/// types: its readers took no `h`, and an older release refuses a record
/// of version 4 rather than drop them.
pub const VERSION: u64 = 4;

/// A stored job that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("stored record (format version {version}) is not valid: {reason}")]
    Invalid { version: u64, reason: String },
    #[error("stored record has format version {0}, newer than this release reads")]
    Newer(u64),
}

/// `job` in the newest stored form.
pub fn encode(job: &Job) -> String {
    let record = v3::JobOut::from(job);
    // Serializing cannot fail: every key is a string and every value is
    // already valid JSON.
    serde_json::to_string(&record).unwrap_or_default()
}

/// A job from its stored form, of any version written so far.
pub fn decode(text: &str) -> Result<Job, RecordError> {
    match version(text) {
        1 => serde_json::from_str::<v1::Job>(text)
            .map(Job::from)
            .map_err(|e| invalid(1, &e)),
        2 => serde_json::from_str::<v2::Job>(text)
            .map_err(|e| invalid(2, &e))
            .and_then(Job::try_from),
        version @ (3 | 4) => serde_json::from_str::<v3::Job>(text)
            .map_err(|e| invalid(version, &e))
            .and_then(Job::try_from),
        newer => Err(RecordError::Newer(newer)),
    }
}

pub(crate) fn invalid(version: u64, err: &serde_json::Error) -> RecordError {
    RecordError::Invalid {
        version,
        reason: err.to_string(),
    }
}

/// The version a record says it is: [`encode`] writes `{"v":N,` first;
/// anything else is version 1.
pub(crate) fn version(text: &str) -> u64 {
    let Some(rest) = text.trim_start().strip_prefix("{\"v\":") else {
        return 1;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().unwrap_or(u64::MAX)
}

/// The parts every version so far stores the same way.
mod common {
    use super::*;

    #[derive(Debug, Clone, Copy, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Status {
        Pending,
        Delivering,
        Complete,
        Failed,
    }

    impl From<Status> for JobStatus {
        fn from(status: Status) -> Self {
            match status {
                Status::Pending => Self::Pending,
                Status::Delivering => Self::Delivering,
                Status::Complete => Self::Complete,
                Status::Failed => Self::Failed,
            }
        }
    }

    impl From<JobStatus> for Status {
        fn from(status: JobStatus) -> Self {
            match status {
                JobStatus::Pending => Self::Pending,
                JobStatus::Delivering => Self::Delivering,
                JobStatus::Complete => Self::Complete,
                JobStatus::Failed => Self::Failed,
            }
        }
    }

    #[derive(Debug, Clone, Copy, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum FetchStatus {
        Pending,
        Ok,
        Failed,
    }

    impl From<FetchStatus> for ProviderStatus {
        fn from(status: FetchStatus) -> Self {
            match status {
                FetchStatus::Pending => Self::Pending,
                FetchStatus::Ok => Self::Ok,
                FetchStatus::Failed => Self::Failed,
            }
        }
    }

    impl From<ProviderStatus> for FetchStatus {
        fn from(status: ProviderStatus) -> Self {
            match status {
                ProviderStatus::Pending => Self::Pending,
                ProviderStatus::Ok => Self::Ok,
                ProviderStatus::Failed => Self::Failed,
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Provider {
        pub name: String,
        pub status: FetchStatus,
        pub attempts: u32,
        #[serde(default)]
        pub data: Option<Value>,
        #[serde(default)]
        pub last_status_code: Option<u16>,
        #[serde(default)]
        pub last_error: Option<String>,
        #[serde(default)]
        pub next_attempt_at: Option<Timestamp>,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ProviderOut<'a> {
        pub name: &'a str,
        pub status: FetchStatus,
        pub attempts: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub data: Option<&'a Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub last_status_code: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub last_error: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub next_attempt_at: Option<Timestamp>,
    }

    impl From<Provider> for ProviderState {
        fn from(p: Provider) -> Self {
            Self {
                name: p.name,
                status: p.status.into(),
                attempts: p.attempts,
                data: p.data,
                last_status_code: p.last_status_code,
                last_error: p.last_error,
                next_attempt_at: p.next_attempt_at,
            }
        }
    }

    impl<'a> From<&'a ProviderState> for ProviderOut<'a> {
        fn from(p: &'a ProviderState) -> Self {
            Self {
                name: &p.name,
                status: p.status.into(),
                attempts: p.attempts,
                data: p.data.as_ref(),
                last_status_code: p.last_status_code,
                last_error: p.last_error.as_deref(),
                next_attempt_at: p.next_attempt_at,
            }
        }
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Delivery {
        pub attempts: u32,
        #[serde(default)]
        pub last_status_code: Option<u16>,
        #[serde(default)]
        pub last_error: Option<String>,
        #[serde(default)]
        pub next_attempt_at: Option<Timestamp>,
        #[serde(default)]
        pub delivered_at: Option<Timestamp>,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct DeliveryOut<'a> {
        pub attempts: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub last_status_code: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub last_error: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub next_attempt_at: Option<Timestamp>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub delivered_at: Option<Timestamp>,
    }

    impl From<Delivery> for DeliveryState {
        fn from(d: Delivery) -> Self {
            Self {
                attempts: d.attempts,
                last_status_code: d.last_status_code,
                last_error: d.last_error,
                next_attempt_at: d.next_attempt_at,
                delivered_at: d.delivered_at,
            }
        }
    }

    impl<'a> From<&'a DeliveryState> for DeliveryOut<'a> {
        fn from(d: &'a DeliveryState) -> Self {
            Self {
                attempts: d.attempts,
                last_status_code: d.last_status_code,
                last_error: d.last_error.as_deref(),
                next_attempt_at: d.next_attempt_at,
                delivered_at: d.delivered_at,
            }
        }
    }

    #[derive(Debug, Deserialize)]
    pub struct Tried {
        #[serde(rename = "p", default)]
        pub provider: Option<String>,
        #[serde(rename = "t", with = "chrono::serde::ts_milliseconds")]
        pub at: Timestamp,
        #[serde(rename = "ms")]
        pub duration_ms: u64,
        #[serde(rename = "s", default)]
        pub status: Option<u16>,
        #[serde(rename = "e", default)]
        pub error: Option<String>,
        #[serde(rename = "b", default)]
        pub body: Option<String>,
        /// Version 4 on.
        #[serde(rename = "h", default)]
        pub headers: std::collections::BTreeMap<String, String>,
    }

    #[derive(Serialize)]
    pub struct TriedOut<'a> {
        #[serde(rename = "p", skip_serializing_if = "Option::is_none")]
        pub provider: Option<&'a str>,
        #[serde(rename = "t", with = "chrono::serde::ts_milliseconds")]
        pub at: Timestamp,
        #[serde(rename = "ms")]
        pub duration_ms: u64,
        #[serde(rename = "s", skip_serializing_if = "Option::is_none")]
        pub status: Option<u16>,
        #[serde(rename = "e", skip_serializing_if = "Option::is_none")]
        pub error: Option<&'a str>,
        #[serde(rename = "b", skip_serializing_if = "Option::is_none")]
        pub body: Option<&'a str>,
        #[serde(rename = "h", skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        pub headers: &'a std::collections::BTreeMap<String, String>,
    }

    impl From<Tried> for Attempt {
        fn from(a: Tried) -> Self {
            Self {
                provider: a.provider,
                at: a.at,
                duration_ms: a.duration_ms,
                status: a.status,
                error: a.error,
                body: a.body,
                headers: a.headers,
            }
        }
    }

    impl<'a> From<&'a Attempt> for TriedOut<'a> {
        fn from(a: &'a Attempt) -> Self {
            Self {
                provider: a.provider.as_deref(),
                at: a.at,
                duration_ms: a.duration_ms,
                status: a.status,
                error: a.error.as_deref(),
                body: a.body.as_deref(),
                headers: &a.headers,
            }
        }
    }
}

/// Version 1: a callback job fetched from providers, as stored from the
/// first release (527b233) until versions existed. Read only.
mod v1 {
    use super::common::{Delivery, Provider, Status, Tried};
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Job {
        id: JobId,
        tenant: TenantId,
        status: Status,
        callback_url: Url,
        #[serde(default)]
        metadata: Option<Metadata>,
        providers: Vec<Provider>,
        callback: Delivery,
        created_at: Timestamp,
        updated_at: Timestamp,
        #[serde(default)]
        due_at: Option<Timestamp>,
        #[serde(default)]
        history: Vec<Tried>,
    }

    impl From<Job> for crate::Job {
        fn from(r: Job) -> Self {
            Self {
                id: r.id,
                tenant: r.tenant,
                status: r.status.into(),
                target: Target::Callback(r.callback_url),
                payload: Payload::Results { metadata: r.metadata },
                providers: r.providers.into_iter().map(Into::into).collect(),
                delivery: r.callback.into(),
                created_at: r.created_at,
                updated_at: r.updated_at,
                due_at: r.due_at,
                history: r.history.into_iter().map(Into::into).collect(),
            }
        }
    }
}

/// Version 2: version 1 with `"v":2` first, the delivery state under
/// `delivery`, and room for kinds of target and payload. Each kind is a
/// field of its own, so the common case costs no bytes over version 1 (an
/// item that crosses a kilobyte costs DynamoDB a write unit more): the
/// target is `callbackUrl`; the payload is `metadata` (a job's results,
/// absent without metadata) or `event` (`{type, data}`). A record has
/// exactly one target and at most one payload field.
mod v2 {
    use super::common::{Delivery, Provider, Status, Tried};
    use super::*;

    #[derive(Debug, Deserialize)]
    pub struct Event {
        #[serde(rename = "type")]
        pub event_type: String,
        pub data: RawJson,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Job {
        #[allow(dead_code, reason = "read by `version` before the record is parsed")]
        v: u64,
        id: JobId,
        tenant: TenantId,
        status: Status,
        #[serde(default)]
        callback_url: Option<Url>,
        #[serde(default)]
        metadata: Option<Metadata>,
        #[serde(default)]
        event: Option<Event>,
        #[serde(default)]
        providers: Vec<Provider>,
        delivery: Delivery,
        created_at: Timestamp,
        updated_at: Timestamp,
        #[serde(default)]
        due_at: Option<Timestamp>,
        #[serde(default)]
        history: Vec<Tried>,
    }

    fn invalid(reason: impl Into<String>) -> RecordError {
        RecordError::Invalid {
            version: 2,
            reason: reason.into(),
        }
    }

    impl TryFrom<Job> for crate::Job {
        type Error = RecordError;

        fn try_from(r: Job) -> Result<Self, RecordError> {
            let target = match r.callback_url {
                Some(url) => crate::Target::Callback(url),
                None => return Err(invalid("no target")),
            };
            let payload = match (r.event, r.metadata) {
                (None, metadata) => crate::Payload::Results { metadata },
                (Some(event), None) => crate::Payload::Event {
                    event_type: EventType::parse(&event.event_type).map_err(|e| invalid(e.to_string()))?,
                    data: event.data,
                },
                (Some(_), Some(_)) => return Err(invalid("both an event and metadata")),
            };
            Ok(Self {
                id: r.id,
                tenant: r.tenant,
                status: r.status.into(),
                target,
                payload,
                providers: r.providers.into_iter().map(Into::into).collect(),
                delivery: r.delivery.into(),
                created_at: r.created_at,
                updated_at: r.updated_at,
                due_at: r.due_at,
                history: r.history.into_iter().map(Into::into).collect(),
            })
        }
    }
}

/// Version 3: version 2 with two more kinds of target and payload, a
/// registered endpoint (`endpoint`, in place of `callbackUrl`) and an
/// event's payload held by the event (`ofEvent`).
mod v3 {
    use super::common::{Delivery, DeliveryOut, Provider, ProviderOut, Status, Tried, TriedOut};
    use super::*;
    use crate::{EndpointId, EventId};

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Job {
        #[allow(dead_code, reason = "read by `version` before the record is parsed")]
        v: u64,
        id: JobId,
        tenant: TenantId,
        status: Status,
        #[serde(default)]
        callback_url: Option<Url>,
        #[serde(default)]
        endpoint: Option<EndpointId>,
        #[serde(default)]
        metadata: Option<Metadata>,
        #[serde(default)]
        event: Option<super::v2::Event>,
        #[serde(default)]
        of_event: Option<EventId>,
        #[serde(default)]
        providers: Vec<Provider>,
        delivery: Delivery,
        created_at: Timestamp,
        updated_at: Timestamp,
        #[serde(default)]
        due_at: Option<Timestamp>,
        #[serde(default)]
        history: Vec<Tried>,
    }

    #[derive(Serialize)]
    pub struct EventOut<'a> {
        #[serde(rename = "type")]
        event_type: &'a str,
        data: &'a RawJson,
    }

    /// Field for field what [`Job`] reads: the golden fixtures hold the two
    /// together.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct JobOut<'a> {
        v: u64,
        id: JobId,
        tenant: &'a TenantId,
        status: Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        callback_url: Option<&'a Url>,
        #[serde(skip_serializing_if = "Option::is_none")]
        endpoint: Option<EndpointId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        metadata: Option<&'a Metadata>,
        #[serde(skip_serializing_if = "Option::is_none")]
        event: Option<EventOut<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        of_event: Option<EventId>,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        providers: Vec<ProviderOut<'a>>,
        delivery: DeliveryOut<'a>,
        created_at: Timestamp,
        updated_at: Timestamp,
        #[serde(skip_serializing_if = "Option::is_none")]
        due_at: Option<Timestamp>,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        history: Vec<TriedOut<'a>>,
    }

    fn invalid(reason: impl Into<String>) -> RecordError {
        RecordError::Invalid {
            version: 3,
            reason: reason.into(),
        }
    }

    impl TryFrom<Job> for crate::Job {
        type Error = RecordError;

        fn try_from(r: Job) -> Result<Self, RecordError> {
            let target = match (r.callback_url, r.endpoint) {
                (Some(url), None) => crate::Target::Callback(url),
                (None, Some(endpoint)) => crate::Target::Endpoint(endpoint),
                (None, None) => return Err(invalid("no target")),
                (Some(_), Some(_)) => return Err(invalid("two targets")),
            };
            let payload = match (r.event, r.metadata, r.of_event) {
                (None, metadata, None) => crate::Payload::Results { metadata },
                (Some(event), None, None) => crate::Payload::Event {
                    event_type: EventType::parse(&event.event_type).map_err(|e| invalid(e.to_string()))?,
                    data: event.data,
                },
                (None, None, Some(event)) => crate::Payload::OfEvent(event),
                _ => return Err(invalid("more than one payload")),
            };
            Ok(Self {
                id: r.id,
                tenant: r.tenant,
                status: r.status.into(),
                target,
                payload,
                providers: r.providers.into_iter().map(Into::into).collect(),
                delivery: r.delivery.into(),
                created_at: r.created_at,
                updated_at: r.updated_at,
                due_at: r.due_at,
                history: r.history.into_iter().map(Into::into).collect(),
            })
        }
    }

    impl<'a> From<&'a crate::Job> for JobOut<'a> {
        fn from(job: &'a crate::Job) -> Self {
            let (callback_url, endpoint) = match &job.target {
                crate::Target::Callback(url) => (Some(url), None),
                crate::Target::Endpoint(endpoint) => (None, Some(*endpoint)),
            };
            let (metadata, event, of_event) = match &job.payload {
                crate::Payload::Results { metadata } => (metadata.as_ref(), None, None),
                crate::Payload::Event { event_type, data } => (
                    None,
                    Some(EventOut {
                        event_type: event_type.as_str(),
                        data,
                    }),
                    None,
                ),
                crate::Payload::OfEvent(event) => (None, None, Some(*event)),
            };
            Self {
                v: VERSION,
                id: job.id,
                tenant: &job.tenant,
                status: job.status.into(),
                callback_url,
                endpoint,
                metadata,
                event,
                of_event,
                providers: job.providers.iter().map(Into::into).collect(),
                delivery: (&job.delivery).into(),
                created_at: job.created_at,
                updated_at: job.updated_at,
                due_at: job.due_at,
                history: job.history.iter().map(Into::into).collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    /// Set to write the newest version's fixtures for a new version (never
    /// to make a released version's files match a changed writer).
    const WRITE_NEW_VERSION: &str = "HOOKLINE_WRITE_JOB_FIXTURES";

    #[test]
    fn the_writer_writes_the_newest_fixtures_byte_for_byte() {
        let dir = fixtures::dir().join(format!("v{VERSION}"));
        if std::env::var_os(WRITE_NEW_VERSION).is_some() && !dir.exists() {
            std::fs::create_dir_all(&dir).expect("mkdir");
            for (case, job) in fixtures::cases() {
                std::fs::write(dir.join(format!("{case}.json")), encode(&job) + "\n").expect("write");
            }
        }
        for (case, job) in fixtures::cases() {
            let stored = fixtures::record(VERSION, case).unwrap_or_else(|| {
                panic!("no fixture v{VERSION}/{case}.json: every case has one in the newest version")
            });
            assert_eq!(
                encode(&job),
                stored,
                "the writer's output for {case} changed: a change to the stored form is a new version \
                 (new types in record.rs, VERSION + 1, and fixtures/jobs/v{{N}}, written with \
                 {WRITE_NEW_VERSION}=1); version {VERSION}'s files stay as released"
            );
        }
    }

    #[test]
    fn every_version_written_so_far_reads_as_the_job_it_stored() {
        let mut read = 0;
        for version in 1..=VERSION {
            let dir = fixtures::dir().join(format!("v{version}"));
            assert!(dir.is_dir(), "{} is missing", dir.display());
            for (case, job) in fixtures::cases() {
                let Some(stored) = fixtures::record(version, case) else {
                    continue;
                };
                let back = decode(&stored).unwrap_or_else(|e| panic!("v{version}/{case}: {e}"));
                assert_eq!(back, job, "v{version}/{case}");
                // Read old, write new: the next save stores the newest form.
                assert_eq!(
                    decode(&encode(&back)).as_ref(),
                    Ok(&job),
                    "v{version}/{case} rewritten"
                );
                read += 1;
            }
            // Every file is a case: none is left unread.
            let files = std::fs::read_dir(&dir).expect("read dir").count();
            let cases = fixtures::cases()
                .iter()
                .filter(|(case, _)| fixtures::record(version, case).is_some())
                .count();
            assert_eq!(files, cases, "v{version} holds a file that is no case");
        }
        assert!(read >= 12, "{read} fixtures read");
    }

    #[test]
    fn the_version_is_read_from_the_front_of_the_record() {
        assert_eq!(version(r#"{"v":2,"id":"x"}"#), 2);
        assert_eq!(version(r#"{"v":17}"#), 17);
        assert_eq!(version(r#"{"id":"x","v":2}"#), 1, "version 1 has no v");
        assert_eq!(version(r#"{"v":"2"}"#), u64::MAX);
        assert_eq!(version(""), 1);
    }

    #[test]
    fn a_happy_attempt_is_small() {
        let attempt = Attempt {
            provider: Some("internet".to_owned()),
            at: chrono::Utc::now(),
            duration_ms: 1234,
            status: Some(200),
            error: None,
            body: None,
            headers: Default::default(),
        };
        let json = serde_json::to_string(&common::TriedOut::from(&attempt)).expect("json");
        assert!(json.len() <= 60, "{json}");
        let back: common::Tried = serde_json::from_str(&json).expect("parses");
        assert_eq!(
            Attempt::from(back).at.timestamp_millis(),
            attempt.at.timestamp_millis()
        );
    }

    #[test]
    fn a_newer_version_is_refused_by_name() {
        let err = decode(r#"{"v":9,"id":"01JD3X5Q8Z6WJ8M6E4V8K2R9TA"}"#).expect_err("newer");
        assert_eq!(err, RecordError::Newer(9));
        assert!(err.to_string().contains("format version 9"), "{err}");
        assert!(matches!(
            decode("not json"),
            Err(RecordError::Invalid { version: 1, .. })
        ));
        assert!(matches!(
            decode(r#"{"v":2}"#),
            Err(RecordError::Invalid { version: 2, .. })
        ));
    }
}
