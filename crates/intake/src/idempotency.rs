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
        fingerprint: fingerprint(request),
        expires_at: now.checked_add_signed(window).unwrap_or(now),
    }))
}

fn fingerprint(request: &JobRequest) -> String {
    let canonical = serde_json::json!({
        "providers": request.providers,
        "callbackUrl": request.callback_url.as_str(),
        "metadata": request.metadata.clone().map(Value::Object).map(sorted),
    });
    hex(&Sha256::digest(sorted(canonical).to_string().as_bytes()))
}

/// The value with every object's keys in order, whatever order the JSON map
/// keeps (serde_json's `preserve_order` may be switched on by any crate).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
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
            metadata: serde_json::from_str(metadata).expect("object"),
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
}
