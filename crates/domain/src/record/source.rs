//! The stored form of an inbound source and of a request it received,
//! versioned as jobs are (`{"v":1,...}`). **A source's record holds its
//! verification secret in the clear**, as an endpoint's holds its signing
//! secrets.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{RecordError, invalid, version};
use crate::{
    Challenge, Encoding, EventId, EventType, HmacAlgorithm, Owner, Pointer, Source, SourceId, SourceRequest,
    SourceRequestId, Split, TenantId, Timestamp, Verdict, Verify,
};

/// The version [`encode_source`] writes.
pub const SOURCE_VERSION: u64 = 1;
/// The version [`encode_source_request`] writes.
pub const SOURCE_REQUEST_VERSION: u64 = 1;

/// `source` in the newest stored form.
pub fn encode_source(source: &Source) -> String {
    let record = v1::Source {
        v: SOURCE_VERSION,
        id: source.id,
        tenant: source.tenant.clone(),
        name: source.name.clone(),
        event_type: source.event_type.as_ref().map(|t| t.as_str().to_owned()),
        owner: source.owner.as_ref().map(|o| o.as_str().to_owned()),
        verify: v1::VerifyForm::of(&source.verify, |c| c.expose().to_owned()),
        challenge: source.challenge.as_ref().map(|c| v1::Challenge {
            query_param: c.query_param.clone(),
        }),
        split: v1::SplitForm::of(&source.split),
        created_at: source.created_at,
        updated_at: source.updated_at,
    };
    serde_json::to_string(&record).unwrap_or_default()
}

/// A source from its stored form.
pub fn decode_source(text: &str) -> Result<Source, RecordError> {
    let r: v1::Source = match version(text) {
        1 => serde_json::from_str(text).map_err(|e| invalid(1, &e))?,
        newer => return Err(RecordError::Newer(newer)),
    };
    let bad = |reason: String| RecordError::Invalid { version: 1, reason };
    Ok(Source {
        id: r.id,
        tenant: r.tenant,
        name: r.name,
        event_type: r
            .event_type
            .map(|t| EventType::parse(&t).map_err(|e| bad(e.to_string())))
            .transpose()?,
        owner: r
            .owner
            .map(|o| Owner::parse(&o).map_err(|e| bad(e.to_string())))
            .transpose()?,
        verify: r.verify.into_verify().map_err(|e| bad(format!("verify: {e}")))?,
        challenge: r.challenge.map(|c| Challenge {
            query_param: c.query_param,
        }),
        split: r.split.into_split().map_err(|e| bad(format!("split: {e}")))?,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// `request` in the newest stored form.
pub fn encode_source_request(request: &SourceRequest) -> String {
    let (verdict, events, duplicates, status, reason) = match &request.verdict {
        Verdict::Accepted { events, duplicates } => ("accepted", events.clone(), *duplicates, None, None),
        Verdict::Rejected { status, reason } => {
            ("rejected", Vec::new(), 0, Some(*status), Some(reason.clone()))
        }
    };
    let record = v1::SourceRequest {
        v: SOURCE_REQUEST_VERSION,
        id: request.id,
        source: request.source,
        tenant: request.tenant.clone(),
        received_at: request.received_at,
        body_bytes: request.body_bytes,
        verdict: verdict.to_owned(),
        events,
        duplicates,
        status,
        reason,
    };
    serde_json::to_string(&record).unwrap_or_default()
}

/// A source request from its stored form.
pub fn decode_source_request(text: &str) -> Result<SourceRequest, RecordError> {
    let r: v1::SourceRequest = match version(text) {
        1 => serde_json::from_str(text).map_err(|e| invalid(1, &e))?,
        newer => return Err(RecordError::Newer(newer)),
    };
    let verdict = match (r.verdict.as_str(), r.status, r.reason) {
        ("accepted", _, _) => Verdict::Accepted {
            events: r.events,
            duplicates: r.duplicates,
        },
        ("rejected", Some(status), Some(reason)) => Verdict::Rejected { status, reason },
        (other, _, _) => {
            return Err(RecordError::Invalid {
                version: 1,
                reason: format!("verdict {other:?}"),
            });
        }
    };
    Ok(SourceRequest {
        id: r.id,
        source: r.source,
        tenant: r.tenant,
        received_at: r.received_at,
        body_bytes: r.body_bytes,
        verdict,
    })
}

/// The first version: never changes once released.
pub mod v1 {
    use super::*;

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Source {
        #[serde(default)]
        pub v: u64,
        pub id: SourceId,
        pub tenant: TenantId,
        pub name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub event_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub owner: Option<String>,
        pub verify: VerifyForm,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub challenge: Option<Challenge>,
        #[serde(default)]
        pub split: SplitForm,
        pub created_at: Timestamp,
        pub updated_at: Timestamp,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Challenge {
        pub query_param: String,
    }

    /// A source's `verify` as stored, and as the API writes it (with
    /// secrets shown as `***`): `{"type": "hmac", ...}`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all_fields = "camelCase", deny_unknown_fields)]
    pub enum VerifyForm {
        #[serde(rename = "hmac")]
        Hmac {
            header: String,
            algorithm: String,
            encoding: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            prefix: Option<String>,
            secret: String,
        },
        #[serde(rename = "standardWebhooks")]
        StandardWebhooks { secret: String },
        #[serde(rename = "github")]
        Github { secret: String },
        #[serde(rename = "stripe")]
        Stripe {
            secret: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            tolerance_secs: Option<u64>,
        },
        #[serde(rename = "shopify")]
        Shopify { secret: String },
        #[serde(rename = "basic")]
        Basic { username: String, password: String },
        #[serde(rename = "header")]
        Header { name: String, value: String },
    }

    impl VerifyForm {
        /// `verify` with each secret as `secret` shows it.
        pub fn of(verify: &crate::Verify, secret: impl Fn(&crate::Credential) -> String) -> Self {
            match verify {
                Verify::Hmac {
                    header,
                    algorithm,
                    encoding,
                    prefix,
                    secret: s,
                } => Self::Hmac {
                    header: header.clone(),
                    algorithm: algorithm.as_str().to_owned(),
                    encoding: encoding.as_str().to_owned(),
                    prefix: prefix.clone(),
                    secret: secret(s),
                },
                Verify::StandardWebhooks { secret: s } => Self::StandardWebhooks { secret: secret(s) },
                Verify::Github { secret: s } => Self::Github { secret: secret(s) },
                Verify::Stripe { secret: s, tolerance } => Self::Stripe {
                    secret: secret(s),
                    tolerance_secs: Some(tolerance.as_secs()),
                },
                Verify::Shopify { secret: s } => Self::Shopify { secret: secret(s) },
                Verify::Basic { username, password } => Self::Basic {
                    username: username.clone(),
                    password: secret(password),
                },
                Verify::Header { name, value } => Self::Header {
                    name: name.clone(),
                    value: secret(value),
                },
            }
        }

        /// The verification it describes, checked as a new one is.
        pub fn into_verify(self) -> Result<Verify, crate::InvalidSource> {
            let unknown = |what: &str, text: &str| {
                crate::InvalidSource(format!("{what} {text:?} is not one of the allowed values"))
            };
            match self {
                Self::Hmac {
                    header,
                    algorithm,
                    encoding,
                    prefix,
                    secret,
                } => Verify::hmac(
                    &header,
                    HmacAlgorithm::parse(&algorithm).ok_or_else(|| unknown("algorithm", &algorithm))?,
                    Encoding::parse(&encoding).ok_or_else(|| unknown("encoding", &encoding))?,
                    prefix.as_deref(),
                    &secret,
                ),
                Self::StandardWebhooks { secret } => Verify::standard_webhooks(&secret),
                Self::Github { secret } => Verify::github(&secret),
                Self::Stripe {
                    secret,
                    tolerance_secs,
                } => Verify::stripe(&secret, tolerance_secs.map(Duration::from_secs)),
                Self::Shopify { secret } => Verify::shopify(&secret),
                Self::Basic { username, password } => Verify::basic(&username, &password),
                Self::Header { name, value } => Verify::header(&name, &value),
            }
        }
    }

    /// A source's `split`, as stored and as the API writes it.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct SplitForm {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub items: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub id: Option<String>,
        #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
        pub event_type: Option<String>,
    }

    impl SplitForm {
        pub fn of(split: &Split) -> Self {
            Self {
                items: split.items.as_ref().map(|p| p.as_str().to_owned()),
                id: split.id.as_ref().map(|p| p.as_str().to_owned()),
                event_type: split.event_type.as_ref().map(|p| p.as_str().to_owned()),
            }
        }

        pub fn into_split(self) -> Result<Split, crate::InvalidSource> {
            let pointer = |what: &str, text: Option<String>| {
                text.map(|t| Pointer::parse(&t).map_err(|e| crate::InvalidSource(format!("{what} {e}"))))
                    .transpose()
            };
            Ok(Split {
                items: pointer("items", self.items)?,
                id: pointer("id", self.id)?,
                event_type: pointer("type", self.event_type)?,
            })
        }
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct SourceRequest {
        #[serde(default)]
        pub v: u64,
        pub id: SourceRequestId,
        pub source: SourceId,
        pub tenant: TenantId,
        pub received_at: Timestamp,
        pub body_bytes: u64,
        pub verdict: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub events: Vec<EventId>,
        #[serde(default, skip_serializing_if = "is_zero")]
        pub duplicates: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub status: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub reason: Option<String>,
    }

    fn is_zero(n: &u32) -> bool {
        *n == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    const WRITE_NEW_VERSION: &str = "HOOKLINE_WRITE_EVENT_FIXTURES";

    /// Writes `kind/v{version}` from `cases` when asked and it does not exist,
    /// then checks the writer's output equals it byte for byte and that every
    /// version's files read back as their cases.
    fn golden<T: PartialEq + std::fmt::Debug>(
        kind: &str,
        version: u64,
        cases: Vec<(&'static str, T)>,
        encode: fn(&T) -> String,
        decode: fn(&str) -> Result<T, RecordError>,
    ) {
        let dir = fixtures::dir_of(kind).join(format!("v{version}"));
        if std::env::var_os(WRITE_NEW_VERSION).is_some() && !dir.exists() {
            std::fs::create_dir_all(&dir).expect("mkdir");
            for (case, value) in &cases {
                std::fs::write(dir.join(format!("{case}.json")), encode(value) + "\n").expect("write");
            }
        }
        for (case, value) in &cases {
            let stored = fixtures::record_of(kind, version, case)
                .unwrap_or_else(|| panic!("no fixture {kind}/v{version}/{case}.json"));
            assert_eq!(
                encode(value),
                stored,
                "the writer's output for {case} changed: a change to the stored form is a new version"
            );
        }
        for v in 1..=version {
            let files = std::fs::read_dir(fixtures::dir_of(kind).join(format!("v{v}")))
                .expect("read dir")
                .count();
            let mut read = 0;
            for (case, value) in &cases {
                if let Some(stored) = fixtures::record_of(kind, v, case) {
                    assert_eq!(
                        &decode(&stored).unwrap_or_else(|e| panic!("v{v}/{case}: {e}")),
                        value
                    );
                    read += 1;
                }
            }
            assert_eq!(files, read, "{kind}/v{v} holds a file that is no case");
        }
    }

    #[test]
    fn sources_are_stored_as_their_golden_records_and_read_back() {
        golden(
            "sources",
            SOURCE_VERSION,
            fixtures::source_cases(),
            encode_source,
            decode_source,
        );
        assert!(matches!(decode_source(r#"{"v":2}"#), Err(RecordError::Newer(2))));
    }

    #[test]
    fn source_requests_are_stored_as_their_golden_records_and_read_back() {
        golden(
            "source-requests",
            SOURCE_REQUEST_VERSION,
            fixtures::source_request_cases(),
            encode_source_request,
            decode_source_request,
        );
    }

    #[test]
    fn a_stored_source_with_a_bad_setting_is_an_error_not_a_panic() {
        let stored = encode_source(&fixtures::source_cases()[0].1).replace("\"sha256\"", "\"md5\"");
        assert!(matches!(decode_source(&stored), Err(RecordError::Invalid { .. })));
    }
}
