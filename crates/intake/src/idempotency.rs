//! `Idempotency-Key` (SPEC section 2): a client that retries a POST with
//! the same key within [`IDEMPOTENCY_WINDOW`] gets the original job (200)
//! instead of a second one; the same key with a different request is a 409.
//!
//! "The same request" means the same providers, callback URL and metadata,
//! compared on a canonical form (object keys sorted, no whitespace), so a
//! client library that reorders JSON keys on a retry is still recognised.

use std::time::Duration;

use axum::http::HeaderMap;
use domain::Timestamp;
use serde_json::Value;
use sha2::{Digest, Sha256};
use store::IdempotencyRecord;

use crate::validate::JobRequest;
use crate::{ApiError, FieldError};

/// How long a key names its job.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

pub(crate) const HEADER: &str = "idempotency-key";

/// Longest key accepted (Stripe's bound).
const MAX_KEY_LEN: usize = 255;

/// The record to store with the job, if the request carries a key.
pub(crate) fn from_headers(
    headers: &HeaderMap,
    request: &JobRequest,
    now: Timestamp,
) -> Result<Option<IdempotencyRecord>, ApiError> {
    with_fingerprint(headers, || fingerprint(request), now)
}

/// The record for a request whose canonical form hashes to `fingerprint`
/// (an event's: [`event_fingerprint`]), if it carries a key.
pub(crate) fn with_fingerprint(
    headers: &HeaderMap,
    fingerprint: impl FnOnce() -> String,
    now: Timestamp,
) -> Result<Option<IdempotencyRecord>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::validation(vec![FieldError::new(
                "Idempotency-Key",
                format!("must be 1-{MAX_KEY_LEN} printable ASCII characters without spaces"),
            )])
        })?;
    let window = chrono::Duration::from_std(IDEMPOTENCY_WINDOW).unwrap_or(chrono::Duration::MAX);
    Ok(Some(IdempotencyRecord {
        key_hash: hex(&Sha256::digest(key.as_bytes())),
        fingerprint: fingerprint(),
        expires_at: now.checked_add_signed(window).unwrap_or(now),
    }))
}

/// SHA-256 of the request in one canonical JSON text: keys in order at
/// every level, metadata numbers as sent. Byte for byte what earlier
/// releases hashed for the same request (a `serde_json::Value` with sorted
/// keys), so keys recorded before an upgrade still replay.
fn fingerprint(request: &JobRequest) -> String {
    let metadata = request
        .metadata
        .as_ref()
        .map_or_else(|| "null".to_owned(), |m| m.canonical());
    let canonical = format!(
        r#"{{"callbackUrl":{},"metadata":{metadata},"providers":{}}}"#,
        Value::String(request.callback_url.as_str().to_owned()),
        Value::from(request.providers.clone()),
    );
    hex(&Sha256::digest(canonical.as_bytes()))
}

/// SHA-256 of an event request (`POST /v1/events`) in one canonical text:
/// its type, owner and payload, the payload's keys sorted at every level.
pub(crate) fn event_fingerprint(event_type: &str, owner: Option<&str>, payload: &Value) -> String {
    let canonical = serde_json::json!({"owner": owner, "payload": payload, "type": event_type});
    hex(&Sha256::digest(canonical.to_string().as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(metadata: &str) -> JobRequest {
        JobRequest {
            providers: vec!["gas".to_owned()],
            callback_url: url::Url::parse("https://client.example/hook").expect("url"),
            metadata: (metadata != "null").then(|| domain::Metadata::from_json(metadata).expect("object")),
        }
    }

    #[test]
    fn key_order_and_whitespace_do_not_change_the_fingerprint() {
        let a = fingerprint(&request(r#"{"a": 1, "b": {"y": 2, "x": [3, {"q": 1, "p": 2}]}}"#));
        let b = fingerprint(&request(r#"{"b":{"x":[3,{"p":2,"q":1}],"y":2},"a":1}"#));
        assert_eq!(a, b);
        assert_ne!(a, fingerprint(&request(r#"{"a": 2, "b": {"y": 2, "x": [3]}}"#)));
        assert_ne!(a, fingerprint(&request("null")));
    }

    /// Keys recorded by the release that fingerprinted a sorted
    /// `serde_json::Value` must still replay after an upgrade.
    #[test]
    fn the_fingerprint_is_the_one_earlier_releases_recorded() {
        assert_eq!(
            fingerprint(&request(r#"{"a": 1, "b": {"y": 2, "x": [3, {"q": 1, "p": 2}]}}"#)),
            "124763fb444c3598be878a9e941fd718ed0f9456cffd2aee41de391ec6646050"
        );
    }

    #[test]
    fn metadata_numbers_that_differ_past_f64_are_different_requests() {
        assert_ne!(
            fingerprint(&request(r#"{"n": 123456789012345678901234567890}"#)),
            fingerprint(&request(r#"{"n": 123456789012345678901234567891}"#))
        );
    }
}
