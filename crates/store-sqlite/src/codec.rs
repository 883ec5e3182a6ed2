//! Rows and the values they hold: a job's `job` column text, the `body`
//! text of event types, events and source requests, and an API key's
//! columns (endpoints' and sources' bodies hold secrets, sealed by
//! `store::sealing`). Everything read from the file is checked here: a
//! malformed row is [`StoreError::Corrupt`], never a panic.

use chrono::DateTime;
use domain::{Event, EventTypeDef, Job, KeyHash, SettledResult, SourceRequest, TenantId};
use store::{ApiKeyRecord, StoreError};

/// A job as the text of its `job` column. With [`decode_job`], the one
/// place the stored form of a job is decided.
pub(crate) fn encode_job(job: &Job) -> Result<String, StoreError> {
    Ok(domain::record::encode(job))
}

/// A job from the text of its `job` column.
pub(crate) fn decode_job(text: &str) -> Result<Job, StoreError> {
    domain::record::decode(text).map_err(|e| StoreError::Corrupt(format!("job column: {e}")))
}

pub(crate) fn encode_event_type(event_type: &EventTypeDef) -> String {
    domain::record::endpoint::encode_event_type(event_type)
}

pub(crate) fn decode_event_type(text: &str) -> Result<EventTypeDef, StoreError> {
    domain::record::endpoint::decode_event_type(text)
        .map_err(|e| StoreError::Corrupt(format!("event type body column: {e}")))
}

pub(crate) fn encode_event(event: &Event) -> String {
    domain::record::event::encode_event(event)
}

pub(crate) fn decode_event(text: &str) -> Result<Event, StoreError> {
    domain::record::event::decode_event(text)
        .map_err(|e| StoreError::Corrupt(format!("event body column: {e}")))
}

/// An event from its `body` column and its `event_results` rows
/// (provider, body).
pub(crate) fn decode_event_with_results(
    text: &str,
    results: Vec<(String, String)>,
) -> Result<Event, StoreError> {
    let mut event = decode_event(text)?;
    for (provider, body) in results {
        event.settled.insert(provider, decode_settled(&body)?);
    }
    Ok(event)
}

pub(crate) fn encode_settled(settled: &SettledResult) -> String {
    domain::record::event::encode_settled(settled)
}

pub(crate) fn decode_settled(text: &str) -> Result<SettledResult, StoreError> {
    domain::record::event::decode_settled(text)
        .map_err(|e| StoreError::Corrupt(format!("event result body column: {e}")))
}

pub(crate) fn encode_source_request(request: &SourceRequest) -> String {
    domain::record::source::encode_source_request(request)
}

pub(crate) fn decode_source_request(text: &str) -> Result<SourceRequest, StoreError> {
    domain::record::source::decode_source_request(text)
        .map_err(|e| StoreError::Corrupt(format!("source request body column: {e}")))
}

/// An API key row: hash, tenant, created and revoked (epoch ms).
pub(crate) type KeyColumns = (String, String, i64, Option<i64>);

pub(crate) fn key_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyColumns> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

pub(crate) fn key_record(
    (hash, tenant, created_at, revoked_at): KeyColumns,
) -> Result<ApiKeyRecord, StoreError> {
    let time = |ms: i64| {
        DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| StoreError::Corrupt(format!("API key row with time {ms}")))
    };
    Ok(ApiKeyRecord {
        hash: KeyHash::from_hex(&hash)
            .ok_or_else(|| StoreError::Corrupt("API key row with a malformed hash".to_owned()))?,
        tenant: TenantId::new(tenant),
        created_at: time(created_at)?,
        revoked_at: revoked_at.map(time).transpose()?,
    })
}
