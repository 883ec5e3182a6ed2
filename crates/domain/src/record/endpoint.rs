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

/// The version [`encode_endpoint`] writes: version 2 adds the endpoint's
/// `auth` (its credentials in the clear, as its signing secrets are) and
/// its `timeoutMs`; a version 1 record is an endpoint with neither.
pub const ENDPOINT_VERSION: u64 = 2;

/// `endpoint` in the newest stored form.
pub fn encode_endpoint(endpoint: &Endpoint) -> String {
    let (status, disabled_reason, disabled_at) = match endpoint.status {
        EndpointStatus::Enabled => ("enabled", None, None),
        EndpointStatus::Disabled { reason, at } => ("disabled", Some(reason.as_str()), Some(at)),
    };
    let record = v2::EndpointOut {
        v: ENDPOINT_VERSION,
        id: endpoint.id,
        tenant: &endpoint.tenant,
        url: &endpoint.url,
        description: &endpoint.description,
        owner: endpoint.owner.as_ref().map(Owner::as_str),
        event_types: endpoint.event_types.names(),
        headers: endpoint.headers.as_map(),
        auth: endpoint.auth.as_ref().map(v2::Auth::of),
        timeout_ms: endpoint
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
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
    let (version, r) = match version(text) {
        1 => {
            let r: v1::Endpoint = serde_json::from_str(text).map_err(|e| invalid(1, &e))?;
            (1, v2::Endpoint::from(r))
        }
        2 => (
            2,
            serde_json::from_str::<v2::Endpoint>(text).map_err(|e| invalid(2, &e))?,
        ),
        newer => return Err(RecordError::Newer(newer)),
    };
    let bad = |reason: String| RecordError::Invalid { version, reason };
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
        auth: r
            .auth
            .map(|a| a.into_auth().checked().map_err(|e| bad(format!("auth: {e}"))))
            .transpose()?,
        timeout: r.timeout_ms.map(std::time::Duration::from_millis),
        status,
        secrets: r.secrets,
        failing_since: r.failing_since,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// Version 1's endpoint, its `auth` and its `timeoutMs`.
mod v2 {
    use super::*;
    use crate::{Credential, EndpointAuth, OAuth2Grant};

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Endpoint {
        #[allow(dead_code, reason = "read by `version` before the record is parsed")]
        #[serde(default)]
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
        #[serde(default)]
        pub auth: Option<Auth>,
        #[serde(default)]
        pub timeout_ms: Option<u64>,
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

    impl From<super::v1::Endpoint> for Endpoint {
        fn from(r: super::v1::Endpoint) -> Self {
            Self {
                v: 1,
                id: r.id,
                tenant: r.tenant,
                url: r.url,
                description: r.description,
                owner: r.owner,
                event_types: r.event_types,
                headers: r.headers,
                auth: None,
                timeout_ms: None,
                status: r.status,
                disabled_reason: r.disabled_reason,
                disabled_at: r.disabled_at,
                secrets: r.secrets,
                failing_since: r.failing_since,
                created_at: r.created_at,
                updated_at: r.updated_at,
            }
        }
    }

    /// An endpoint's auth as stored: `{"type": "basic", ...}`.
    #[derive(Serialize, Deserialize)]
    #[serde(tag = "type", rename_all_fields = "camelCase")]
    pub enum Auth {
        #[serde(rename = "basic")]
        Basic { username: String, password: String },
        #[serde(rename = "bearer")]
        Bearer { token: String },
        #[serde(rename = "header")]
        Header { name: String, value: String },
        #[serde(rename = "oauth2")]
        OAuth2 {
            token_url: Url,
            client_id: String,
            client_secret: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            scope: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            audience: Option<String>,
        },
    }

    impl Auth {
        pub fn of(auth: &EndpointAuth) -> Self {
            match auth {
                EndpointAuth::Basic { username, password } => Self::Basic {
                    username: username.clone(),
                    password: password.expose().to_owned(),
                },
                EndpointAuth::Bearer { token } => Self::Bearer {
                    token: token.expose().to_owned(),
                },
                EndpointAuth::Header { name, value } => Self::Header {
                    name: name.clone(),
                    value: value.expose().to_owned(),
                },
                EndpointAuth::OAuth2(grant) => Self::OAuth2 {
                    token_url: grant.token_url.clone(),
                    client_id: grant.client_id.clone(),
                    client_secret: grant.client_secret.expose().to_owned(),
                    scope: grant.scope.clone(),
                    audience: grant.audience.clone(),
                },
            }
        }

        pub fn into_auth(self) -> EndpointAuth {
            match self {
                Self::Basic { username, password } => EndpointAuth::Basic {
                    username,
                    password: Credential::new(password),
                },
                Self::Bearer { token } => EndpointAuth::Bearer {
                    token: Credential::new(token),
                },
                Self::Header { name, value } => EndpointAuth::Header {
                    name,
                    value: Credential::new(value),
                },
                Self::OAuth2 {
                    token_url,
                    client_id,
                    client_secret,
                    scope,
                    audience,
                } => EndpointAuth::OAuth2(OAuth2Grant {
                    token_url,
                    client_id,
                    client_secret: Credential::new(client_secret),
                    scope,
                    audience,
                }),
            }
        }
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
        #[serde(skip_serializing_if = "Option::is_none")]
        pub auth: Option<Auth>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub timeout_ms: Option<u64>,
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
}

/// The version [`encode_event_type`] writes: version 2 adds the type's
/// providers (a version 1 record is a type without any).
pub const EVENT_TYPE_VERSION: u64 = 2;

/// `event_type` in the newest stored form.
pub fn encode_event_type(event_type: &EventTypeDef) -> String {
    let record = v2_event_type::EventTypeOut {
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
            (1, v2_event_type::EventType::from(r))
        }
        2 => (
            2,
            serde_json::from_str::<v2_event_type::EventType>(text).map_err(|e| invalid(2, &e))?,
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
mod v2_event_type {
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
    fn the_writer_writes_the_newest_endpoint_fixtures_byte_for_byte() {
        let dir = fixtures::dir_of("endpoints").join(format!("v{ENDPOINT_VERSION}"));
        if std::env::var_os(WRITE_NEW_VERSION).is_some() && !dir.exists() {
            std::fs::create_dir_all(&dir).expect("mkdir");
            for (case, endpoint) in fixtures::endpoint_cases() {
                std::fs::write(
                    dir.join(format!("{case}.json")),
                    encode_endpoint(&endpoint) + "\n",
                )
                .expect("write");
            }
        }
        for (case, endpoint) in fixtures::endpoint_cases() {
            let stored = fixtures::record_of("endpoints", ENDPOINT_VERSION, case)
                .unwrap_or_else(|| panic!("no fixture endpoints/v{ENDPOINT_VERSION}/{case}.json"));
            assert_eq!(
                encode_endpoint(&endpoint),
                stored,
                "the writer's output for {case} changed: a change to the stored form is a new version"
            );
        }
    }

    #[test]
    fn every_endpoint_version_written_so_far_reads_as_the_endpoint_it_stored() {
        let mut read = 0;
        for version in 1..=ENDPOINT_VERSION {
            let dir = fixtures::dir_of("endpoints").join(format!("v{version}"));
            assert!(dir.is_dir(), "{} is missing", dir.display());
            for (case, endpoint) in fixtures::endpoint_cases() {
                let Some(stored) = fixtures::record_of("endpoints", version, case) else {
                    continue;
                };
                let back = decode_endpoint(&stored).unwrap_or_else(|e| panic!("v{version}/{case}: {e}"));
                assert_eq!(back, endpoint, "v{version}/{case}");
                assert_eq!(decode_endpoint(&encode_endpoint(&back)).as_ref(), Ok(&endpoint));
                read += 1;
            }
            let files = std::fs::read_dir(&dir).expect("read dir").count();
            let cases = fixtures::endpoint_cases()
                .iter()
                .filter(|(case, _)| fixtures::record_of("endpoints", version, case).is_some())
                .count();
            assert_eq!(files, cases, "endpoints/v{version} holds a file that is no case");
        }
        assert!(read >= 3, "{read} fixtures read");
        assert!(matches!(
            decode_endpoint(&format!(r#"{{"v":{},"tenant":"acme"}}"#, ENDPOINT_VERSION + 1)),
            Err(RecordError::Newer(_))
        ));
    }

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
