//! Rows and the values they hold: a job's `job` column text, and an API
//! key's columns. Everything read from the file is checked here: a
//! malformed row is [`StoreError::Corrupt`], never a panic.

use chrono::DateTime;
use domain::{Job, KeyHash, TenantId};
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
