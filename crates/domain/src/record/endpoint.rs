//! The stored form of an endpoint and of an event type, versioned as jobs
//! are (`{"v":1,...}`): [`decode_endpoint`] reads every version written,
//! the encoders write the newest. **An endpoint's record holds its signing
//! secrets.**

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use url::Url;

use super::{RecordError, invalid, version};
use crate::{
    DisabledReason, Endpoint, EndpointHeaders, EndpointId, EndpointStatus, EventType, EventTypeDef, Owner,
    Subscription, TenantId, TenantSecrets, Timestamp,
};

/// `endpoint` in the newest stored form.
pub fn encode_endpoint(endpoint: &Endpoint) -> String {
    let (status, disabled_reason, disabled_at) = match endpoint.status {
        EndpointStatus::Enabled => ("enabled", None, None),
        EndpointStatus::Disabled { reason, at } => ("disabled", Some(reason.as_str()), Some(at)),
    };
    let record = v1::EndpointOut {
        v: 1,
        id: endpoint.id,
        tenant: &endpoint.tenant,
        url: &endpoint.url,
        description: &endpoint.description,
        owner: endpoint.owner.as_ref().map(Owner::as_str),
        event_types: endpoint.event_types.names(),
        headers: endpoint.headers.as_map(),
        status,
        disabled_reason,
        disabled_at,
        secrets: &endpoint.secrets,
        failing_since: endpoint.failing_since,
        created_at: endpoint.created_at,
        updated_at: endpoint.updated_at,
    };
    serde_json::to_string(&record).unwrap_or_default()
}

/// An endpoint from its stored form.
pub fn decode_endpoint(text: &str) -> Result<Endpoint, RecordError> {
    match version(text) {
        1 => {
            let r: v1::Endpoint = serde_json::from_str(text).map_err(|e| invalid(1, &e))?;
            let bad = |reason: String| RecordError::Invalid { version: 1, reason };
            let event_types = if r.event_types.iter().any(|t| t == "*") {
                Subscription::All
            } else {
                Subscription::Only(
                    r.event_types
                        .iter()
                        .map(|t| EventType::parse(t).map_err(|e| bad(e.to_string())))
                        .collect::<Result<_, _>>()?,
                )
            };
            let status = match (r.status.as_str(), r.disabled_reason, r.disabled_at) {
                ("enabled", _, _) => EndpointStatus::Enabled,
                ("disabled", Some(reason), Some(at)) => EndpointStatus::Disabled {
                    reason: DisabledReason::parse(&reason)
                        .ok_or_else(|| bad(format!("disabled reason {reason:?}")))?,
                    at,
                },
                (other, _, _) => return Err(bad(format!("status {other:?}"))),
            };
            Ok(Endpoint {
                id: r.id,
                tenant: r.tenant,
                url: r.url,
                description: r.description,
                owner: r
                    .owner
                    .map(|o| Owner::parse(&o).map_err(|e| bad(e.to_string())))
                    .transpose()?,
                event_types,
                headers: EndpointHeaders::parse(r.headers).map_err(|e| bad(e.to_string()))?,
                status,
                secrets: r.secrets,
                failing_since: r.failing_since,
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
        }
        newer => Err(RecordError::Newer(newer)),
    }
}

/// The version [`encode_event_type`] writes: version 2 adds the type's
/// providers (a version 1 record is a type without any).
pub const EVENT_TYPE_VERSION: u64 = 2;

/// `event_type` in the newest stored form.
pub fn encode_event_type(event_type: &EventTypeDef) -> String {
    let record = v2::EventTypeOut {
        v: EVENT_TYPE_VERSION,
        tenant: &event_type.tenant,
        name: event_type.name.as_str(),
        description: &event_type.description,
        providers: &event_type.providers,
        created_at: event_type.created_at,
        updated_at: event_type.updated_at,
    };
    serde_json::to_string(&record).unwrap_or_default()
}

/// An event type from its stored form.
pub fn decode_event_type(text: &str) -> Result<EventTypeDef, RecordError> {
    let (version, r) = match version(text) {
        1 => {
            let r: v1::EventType = serde_json::from_str(text).map_err(|e| invalid(1, &e))?;
            (1, v2::EventType::from(r))
        }
        2 => (
            2,
            serde_json::from_str::<v2::EventType>(text).map_err(|e| invalid(2, &e))?,
        ),
        newer => return Err(RecordError::Newer(newer)),
    };
    Ok(EventTypeDef {
        tenant: r.tenant,
        name: EventType::parse(&r.name).map_err(|e| RecordError::Invalid {
            version,
            reason: e.to_string(),
        })?,
        description: r.description,
        providers: r.providers,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// Version 1's event type and its providers.
mod v2 {
    use super::*;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct EventType {
        #[allow(dead_code, reason = "read by `version` before the record is parsed")]
        #[serde(default)]
        v: u64,
        pub tenant: TenantId,
        pub name: String,
        #[serde(default)]
        pub description: String,
        #[serde(default)]
        pub providers: Vec<String>,
        pub created_at: Timestamp,
        pub updated_at: Timestamp,
    }

    impl From<super::v1::EventType> for EventType {
        fn from(r: super::v1::EventType) -> Self {
            Self {
                v: 1,
                tenant: r.tenant,
                name: r.name,
                description: r.description,
                providers: Vec::new(),
                created_at: r.created_at,
                updated_at: r.updated_at,
            }
        }
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct EventTypeOut<'a> {
        pub v: u64,
        pub tenant: &'a TenantId,
        pub name: &'a str,
        pub description: &'a str,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        pub providers: &'a [String],
        pub created_at: Timestamp,
        pub updated_at: Timestamp,
    }
}

mod v1 {
    use super::*;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Endpoint {
        #[allow(dead_code, reason = "read by `version` before the record is parsed")]
        v: u64,
        pub id: EndpointId,
        pub tenant: TenantId,
        pub url: Url,
        #[serde(default)]
        pub description: String,
        #[serde(default)]
        pub owner: Option<String>,
        pub event_types: Vec<String>,
        #[serde(default)]
        pub headers: BTreeMap<String, String>,
        pub status: String,
        #[serde(default)]
        pub disabled_reason: Option<String>,
        #[serde(default)]
        pub disabled_at: Option<Timestamp>,
        pub secrets: TenantSecrets,
        #[serde(default)]
        pub failing_since: Option<Timestamp>,
        pub created_at: Timestamp,
        pub updated_at: Timestamp,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct EndpointOut<'a> {
        pub v: u64,
        pub id: EndpointId,
        pub tenant: &'a TenantId,
        pub url: &'a Url,
        pub description: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub owner: Option<&'a str>,
        pub event_types: Vec<String>,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        pub headers: &'a BTreeMap<String, String>,
        pub status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub disabled_reason: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub disabled_at: Option<Timestamp>,
        pub secrets: &'a TenantSecrets,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub failing_since: Option<Timestamp>,
        pub created_at: Timestamp,
        pub updated_at: Timestamp,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct EventType {
        #[allow(dead_code, reason = "read by `version` before the record is parsed")]
        v: u64,
        pub tenant: TenantId,
        pub name: String,
        #[serde(default)]
        pub description: String,
        pub created_at: Timestamp,
        pub updated_at: Timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    const WRITE_NEW_VERSION: &str = "HOOKLINE_WRITE_EVENT_FIXTURES";

    #[test]
    fn the_writer_writes_the_newest_event_type_fixtures_byte_for_byte() {
        let dir = fixtures::dir_of("event-types").join(format!("v{EVENT_TYPE_VERSION}"));
        if std::env::var_os(WRITE_NEW_VERSION).is_some() && !dir.exists() {
            std::fs::create_dir_all(&dir).expect("mkdir");
            for (case, event_type) in fixtures::event_type_cases() {
                std::fs::write(
                    dir.join(format!("{case}.json")),
                    encode_event_type(&event_type) + "\n",
                )
                .expect("write");
            }
        }
        for (case, event_type) in fixtures::event_type_cases() {
            let stored = fixtures::record_of("event-types", EVENT_TYPE_VERSION, case)
                .unwrap_or_else(|| panic!("no fixture event-types/v{EVENT_TYPE_VERSION}/{case}.json"));
            assert_eq!(
                encode_event_type(&event_type),
                stored,
                "the writer's output for {case} changed: a change to the stored form is a new version"
            );
        }
    }

    #[test]
    fn every_event_type_version_written_so_far_reads_as_the_type_it_stored() {
        let mut read = 0;
        for version in 1..=EVENT_TYPE_VERSION {
            let dir = fixtures::dir_of("event-types").join(format!("v{version}"));
            assert!(dir.is_dir(), "{} is missing", dir.display());
            for (case, event_type) in fixtures::event_type_cases() {
                let Some(stored) = fixtures::record_of("event-types", version, case) else {
                    continue;
                };
                let back = decode_event_type(&stored).unwrap_or_else(|e| panic!("v{version}/{case}: {e}"));
                assert_eq!(back, event_type, "v{version}/{case}");
                assert_eq!(
                    decode_event_type(&encode_event_type(&back)).as_ref(),
                    Ok(&event_type)
                );
                read += 1;
            }
            let files = std::fs::read_dir(&dir).expect("read dir").count();
            let cases = fixtures::event_type_cases()
                .iter()
                .filter(|(case, _)| fixtures::record_of("event-types", version, case).is_some())
                .count();
            assert_eq!(
                files, cases,
                "event-types/v{version} holds a file that is no case"
            );
        }
        assert!(read >= 3, "{read} fixtures read");
        assert!(matches!(
            decode_event_type(r#"{"v":3,"tenant":"acme"}"#),
            Err(RecordError::Newer(3))
        ));
    }
}
