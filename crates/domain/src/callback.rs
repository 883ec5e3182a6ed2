//! The bodies a delivery carries: a job's results (SPEC section 4) and an
//! event (section 9).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{JobId, Metadata, RawJson, Timestamp};

/// What a delivery's body is, by its payload ([`crate::Payload`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DeliveryBody {
    Results(CallbackBody),
    Event(EventBody),
}

impl DeliveryBody {
    /// The body as sent and signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing these types cannot fail: every key is a string and
        // every value already valid JSON.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// An event's body (SPEC section 9, Standard Webhooks' recommended shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventBody {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(with = "crate::callback::millis")]
    pub timestamp: Timestamp,
    pub data: RawJson,
    /// Every provider's result, for a thin event (its type has providers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<CallbackResult>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub job_id: JobId,
    #[serde(with = "crate::callback::millis")]
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    pub results: Vec<CallbackResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum CallbackResult {
    Ok { provider: String, data: Value },
    Failed { provider: String, error: String },
}

/// RFC 3339 with exactly three fractional digits and a `Z`, the form the
/// API shows everywhere (`2026-11-23T10:00:00.000Z`).
pub mod millis {
    use chrono::SecondsFormat;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::Timestamp;

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        chrono::DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_documented_shape() {
        let created = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .expect("valid")
            .with_timezone(&chrono::Utc);
        let id: JobId = "01JD0000000000000000000000".parse().expect("valid id");
        let body = CallbackBody {
            kind: "job.completed".into(),
            job_id: id,
            created_at: created,
            metadata: Some(crate::Metadata::from_json(r#"{"orderId": "A-17"}"#).expect("object")),
            results: vec![
                CallbackResult::Ok {
                    provider: "gas".into(),
                    data: serde_json::json!([{"billedOn": "2026-10-01", "amount": 22.27}]),
                },
                CallbackResult::Failed {
                    provider: "internet".into(),
                    error: "HTTP 503 after 6 attempts".into(),
                },
            ],
        };
        assert_eq!(
            serde_json::to_value(&body).expect("serializes"),
            serde_json::json!({
                "type": "job.completed",
                "jobId": "01JD0000000000000000000000",
                "createdAt": "2026-11-23T10:00:00.000Z",
                "metadata": {"orderId": "A-17"},
                "results": [
                    {"provider": "gas", "status": "ok", "data": [{"billedOn": "2026-10-01", "amount": 22.27}]},
                    {"provider": "internet", "status": "failed", "error": "HTTP 503 after 6 attempts"}
                ]
            })
        );
    }
}
