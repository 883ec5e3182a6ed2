//! The stored form of an event, versioned as jobs are. Its deliveries are
//! stored as the endpoints they go to; their ids follow from those
//! ([`JobId::for_delivery`]), so each costs 28 bytes, not 56. Version 2
//! adds the type's providers (a thin event) and derives delivery ids
//! tagged with their endpoint's receiver; a version 1 record is an event
//! without providers whose deliveries keep the untagged ids of the release
//! that stored it ([`JobId::for_delivery_untagged`]).
//!
//! Version 3 holds a payload too large to keep inline as a reference to
//! its blob (`payloadBlob`: sha256 and length, SPEC section 13) instead of
//! `payload`; an inline payload is written as before.
//!
//! A thin event's settled provider results are records of their own
//! ([`encode_settled`]), kept by the store beside the event's record and
//! written once each: the event's record never changes after it is
//! published.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{RecordError, invalid, version};
use crate::{
    BlobRef, DeliveryRef, EndpointId, Event, EventId, EventPayload, EventType, JobId, Owner, RawJson,
    SettledResult, TenantId, Timestamp,
};

/// The version [`encode_event`] writes.
pub const EVENT_VERSION: u64 = 3;

/// `event` in the newest stored form (without its settled results), or in
/// version 1 when it is an event of that version written again (no
/// providers, delivery ids untagged), so its delivery ids never change.
pub fn encode_event(event: &Event) -> String {
    let untagged = event.providers.is_empty()
        && event
            .deliveries
            .iter()
            .any(|d| d.id == JobId::for_delivery_untagged(event.id, d.endpoint));
    let (payload, payload_blob) = match &event.payload {
        EventPayload::Inline(json) => (Some(json), None),
        EventPayload::Blob(blob) => (None, Some(blob)),
    };
    let record = v3::EventOut {
        v: if untagged { 1 } else { EVENT_VERSION },
        id: event.id,
        tenant: &event.tenant,
        event_type: event.event_type.as_str(),
        owner: event.owner.as_ref().map(Owner::as_str),
        created_at: event.created_at,
        endpoints: event.deliveries.iter().map(|d| d.endpoint).collect(),
        providers: &event.providers,
        payload,
        payload_blob,
    };
    serde_json::to_string(&record).unwrap_or_default()
}

/// An event from its stored form, with no settled results (the store adds
/// those it keeps beside it).
pub fn decode_event(text: &str) -> Result<Event, RecordError> {
    let (v, r) = match version(text) {
        1 => {
            let r: v1::Event = serde_json::from_str(text).map_err(|e| invalid(1, &e))?;
            (1, v3::Event::from(v2::Event::from(r)))
        }
        2 => (
            2,
            v3::Event::from(serde_json::from_str::<v2::Event>(text).map_err(|e| invalid(2, &e))?),
        ),
        3 => (
            3,
            serde_json::from_str::<v3::Event>(text).map_err(|e| invalid(3, &e))?,
        ),
        newer => return Err(RecordError::Newer(newer)),
    };
    let bad = |reason: String| RecordError::Invalid { version: v, reason };
    let payload = match (r.payload, r.payload_blob) {
        (Some(json), None) => EventPayload::Inline(json),
        (None, Some(blob)) => EventPayload::Blob(blob),
        (Some(_), Some(_)) => return Err(bad("both a payload and a payloadBlob".to_owned())),
        (None, None) => return Err(bad("neither a payload nor a payloadBlob".to_owned())),
    };
    let delivery_id = if v == 1 {
        JobId::for_delivery_untagged
    } else {
        JobId::for_delivery
    };
    Ok(Event {
        id: r.id,
        tenant: r.tenant,
        event_type: EventType::parse(&r.event_type).map_err(|e| bad(e.to_string()))?,
        owner: r
            .owner
            .map(|o| Owner::parse(&o).map_err(|e| bad(e.to_string())))
            .transpose()?,
        payload,
        created_at: r.created_at,
        deliveries: r
            .endpoints
            .into_iter()
            .map(|endpoint| DeliveryRef {
                id: delivery_id(r.id, endpoint),
                endpoint,
            })
            .collect(),
        providers: r.providers,
        settled: BTreeMap::new(),
    })
}

/// A provider's settled result for a thin event, stored (version 1).
pub fn encode_settled(settled: &SettledResult) -> String {
    let record = match settled {
        SettledResult::Ok { status, data } => settled_v1::SettledOut {
            v: 1,
            status: "ok",
            code: Some(*status),
            data: Some(data),
            error: None,
        },
        SettledResult::Failed { status, error } => settled_v1::SettledOut {
            v: 1,
            status: "failed",
            code: *status,
            data: None,
            error: Some(error),
        },
    };
    serde_json::to_string(&record).unwrap_or_default()
}

/// A settled result from its stored form.
pub fn decode_settled(text: &str) -> Result<SettledResult, RecordError> {
    match version(text) {
        1 => {
            let r: settled_v1::Settled = serde_json::from_str(text).map_err(|e| invalid(1, &e))?;
            let bad = |reason: &str| RecordError::Invalid {
                version: 1,
                reason: reason.to_owned(),
            };
            match r.status.as_str() {
                "ok" => Ok(SettledResult::Ok {
                    status: r
                        .code
                        .ok_or_else(|| bad("an ok result without its status code"))?,
                    data: r.data.unwrap_or(Value::Null),
                }),
                "failed" => Ok(SettledResult::Failed {
                    status: r.code,
                    error: r.error.ok_or_else(|| bad("a failed result without its error"))?,
                }),
                other => Err(bad(&format!("result status {other:?}"))),
            }
        }
        newer => Err(RecordError::Newer(newer)),
    }
}

mod v1 {
    use super::*;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Event {
        #[allow(dead_code, reason = "read by `version` before the record is parsed")]
        v: u64,
        pub id: EventId,
        pub tenant: TenantId,
        #[serde(rename = "type")]
        pub event_type: String,
        #[serde(default)]
        pub owner: Option<String>,
        pub created_at: Timestamp,
        #[serde(default)]
        pub endpoints: Vec<EndpointId>,
        pub payload: RawJson,
    }
}

/// Version 1 and the type's providers.
mod v2 {
    use super::*;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Event {
        #[allow(dead_code, reason = "read by `version` before the record is parsed")]
        #[serde(default)]
        v: u64,
        pub id: EventId,
        pub tenant: TenantId,
        #[serde(rename = "type")]
        pub event_type: String,
        #[serde(default)]
        pub owner: Option<String>,
        pub created_at: Timestamp,
        #[serde(default)]
        pub endpoints: Vec<EndpointId>,
        #[serde(default)]
        pub providers: Vec<String>,
        pub payload: RawJson,
    }

    impl From<super::v1::Event> for Event {
        fn from(r: super::v1::Event) -> Self {
            Self {
                v: 1,
                id: r.id,
                tenant: r.tenant,
                event_type: r.event_type,
                owner: r.owner,
                created_at: r.created_at,
                endpoints: r.endpoints,
                providers: Vec::new(),
                payload: r.payload,
            }
        }
    }
}

/// Version 2 with the payload inline (`payload`) or as a reference to its
/// blob (`payloadBlob`), exactly one of them.
mod v3 {
    use super::*;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Event {
        #[allow(dead_code, reason = "read by `version` before the record is parsed")]
        #[serde(default)]
        v: u64,
        pub id: EventId,
        pub tenant: TenantId,
        #[serde(rename = "type")]
        pub event_type: String,
        #[serde(default)]
        pub owner: Option<String>,
        pub created_at: Timestamp,
        #[serde(default)]
        pub endpoints: Vec<EndpointId>,
        #[serde(default)]
        pub providers: Vec<String>,
        /// Present (even as JSON `null`, a payload like any other) or absent.
        #[serde(default, deserialize_with = "present")]
        pub payload: Option<RawJson>,
        #[serde(default)]
        pub payload_blob: Option<BlobRef>,
    }

    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<RawJson>, D::Error> {
        RawJson::deserialize(d).map(Some)
    }

    impl From<super::v2::Event> for Event {
        fn from(r: super::v2::Event) -> Self {
            Self {
                v: 2,
                id: r.id,
                tenant: r.tenant,
                event_type: r.event_type,
                owner: r.owner,
                created_at: r.created_at,
                endpoints: r.endpoints,
                providers: r.providers,
                payload: Some(r.payload),
                payload_blob: None,
            }
        }
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct EventOut<'a> {
        pub v: u64,
        pub id: EventId,
        pub tenant: &'a TenantId,
        #[serde(rename = "type")]
        pub event_type: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub owner: Option<&'a str>,
        pub created_at: Timestamp,
        pub endpoints: Vec<EndpointId>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        pub providers: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        pub payload: Option<&'a RawJson>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub payload_blob: Option<&'a BlobRef>,
    }
}

mod settled_v1 {
    use super::*;

    #[derive(Deserialize)]
    pub struct Settled {
        #[allow(dead_code, reason = "read by `version` before the record is parsed")]
        v: u64,
        pub status: String,
        #[serde(default)]
        pub code: Option<u16>,
        #[serde(default)]
        pub data: Option<Value>,
        #[serde(default)]
        pub error: Option<String>,
    }

    #[derive(Serialize)]
    pub struct SettledOut<'a> {
        pub v: u64,
        pub status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub code: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub data: Option<&'a Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub error: Option<&'a str>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    /// Set to write the newest version's fixtures for a new version (never
    /// to make a released version's files match a changed writer).
    const WRITE_NEW_VERSION: &str = "HOOKLINE_WRITE_EVENT_FIXTURES";

    #[test]
    fn the_writer_writes_the_newest_fixtures_byte_for_byte() {
        let dir = fixtures::dir_of("events").join(format!("v{EVENT_VERSION}"));
        if std::env::var_os(WRITE_NEW_VERSION).is_some() && !dir.exists() {
            std::fs::create_dir_all(&dir).expect("mkdir");
            for (case, event) in fixtures::event_cases() {
                std::fs::write(dir.join(format!("{case}.json")), encode_event(&event) + "\n").expect("write");
            }
        }
        for (case, event) in fixtures::event_cases() {
            let stored = fixtures::record_of("events", EVENT_VERSION, case)
                .unwrap_or_else(|| panic!("no fixture events/v{EVENT_VERSION}/{case}.json"));
            assert_eq!(
                encode_event(&event),
                stored,
                "the writer's output for {case} changed: a change to the stored form is a new version \
                 ({WRITE_NEW_VERSION}=1 writes its fixtures); released versions' files stay as they are"
            );
        }
    }

    #[test]
    fn every_version_written_so_far_reads_as_the_event_it_stored() {
        let mut read = 0;
        for version in 1..=EVENT_VERSION {
            let dir = fixtures::dir_of("events").join(format!("v{version}"));
            assert!(dir.is_dir(), "{} is missing", dir.display());
            for (case, event) in fixtures::event_cases_as_of(version) {
                let Some(stored) = fixtures::record_of("events", version, case) else {
                    continue;
                };
                let back = decode_event(&stored).unwrap_or_else(|e| panic!("v{version}/{case}: {e}"));
                assert_eq!(back, event, "v{version}/{case}");
                assert_eq!(decode_event(&encode_event(&back)).as_ref(), Ok(&event));
                read += 1;
            }
            let files = std::fs::read_dir(&dir).expect("read dir").count();
            let cases = fixtures::event_cases()
                .iter()
                .filter(|(case, _)| fixtures::record_of("events", version, case).is_some())
                .count();
            assert_eq!(files, cases, "events/v{version} holds a file that is no case");
        }
        assert!(read >= 5, "{read} fixtures read");
    }

    #[test]
    fn an_event_of_the_release_before_receiver_tags_keeps_its_delivery_ids() {
        let stored = fixtures::record_of("events", 1, "fan-out").expect("a v1 fixture");
        let event = decode_event(&stored).expect("reads");
        assert_eq!(event.deliveries.len(), 2);
        for delivery in &event.deliveries {
            assert_eq!(
                delivery.id,
                JobId::for_delivery_untagged(event.id, delivery.endpoint)
            );
        }
        // Written again (as a store may), it keeps them.
        let again = encode_event(&event);
        assert!(again.starts_with(r#"{"v":1,"#), "{again}");
        assert_eq!(decode_event(&again), Ok(event));
    }

    #[test]
    fn a_new_event_s_deliveries_carry_their_endpoints_tags() {
        for (case, event) in fixtures::event_cases() {
            let stored = encode_event(&event);
            assert!(
                stored.starts_with(&format!(r#"{{"v":{EVENT_VERSION},"#)),
                "{case}: {stored}"
            );
            for delivery in &decode_event(&stored).expect("reads").deliveries {
                assert_eq!(
                    delivery.id.receiver(),
                    crate::ReceiverTag::of_endpoint(delivery.endpoint),
                    "{case}"
                );
            }
        }
    }

    #[test]
    fn a_version_1_event_has_no_providers_and_its_deliveries_fetch_nothing() {
        let stored = fixtures::record_of("events", 1, "fan-out").expect("a v1 fixture");
        let event = decode_event(&stored).expect("reads");
        assert!(event.providers.is_empty());
        assert!(event.delivery_jobs().iter().all(|job| job.providers().is_empty()));
    }

    #[test]
    fn a_thin_events_deliveries_fetch_its_providers() {
        let (_, event) = fixtures::event_cases()
            .into_iter()
            .find(|(case, _)| *case == "thin")
            .expect("the thin case");
        for job in event.delivery_jobs() {
            let names: Vec<&str> = job.providers().iter().map(|p| p.name.as_str()).collect();
            assert_eq!(names, ["gas", "internet"]);
            assert_eq!(job.status(), crate::JobStatus::Pending);
        }
    }

    #[test]
    fn a_blob_event_stores_its_reference_not_its_payload() {
        let (_, event) = fixtures::event_cases()
            .into_iter()
            .find(|(case, _)| *case == "blob")
            .expect("the blob case");
        let stored = encode_event(&event);
        assert!(
            stored.contains(&format!(
                r#""payloadBlob":{{"sha256":"{}","len":1048576}}"#,
                "ab".repeat(32)
            )),
            "{stored}"
        );
        assert!(!stored.contains(r#""payload":"#), "{stored}");
        assert_eq!(decode_event(&stored), Ok(event));
    }

    #[test]
    fn a_version_3_record_holds_exactly_one_payload() {
        let stored = fixtures::record_of("events", 3, "blob").expect("a v3 blob fixture");
        let both = stored.replacen(r#""payloadBlob":"#, r#""payload":{"a":1},"payloadBlob":"#, 1);
        assert!(
            matches!(decode_event(&both), Err(RecordError::Invalid { version: 3, .. })),
            "{both}"
        );
        let start = stored.find(r#","payloadBlob":"#).expect("a blob");
        let neither = format!("{}}}", &stored[..start]);
        assert!(
            matches!(
                decode_event(&neither),
                Err(RecordError::Invalid { version: 3, .. })
            ),
            "{neither}"
        );
        let bad_sha = stored.replace(&"ab".repeat(32), "not hex");
        assert!(matches!(
            decode_event(&bad_sha),
            Err(RecordError::Invalid { version: 3, .. })
        ));
    }

    #[test]
    fn a_null_payload_is_a_payload() {
        let (_, mut event) = fixtures::event_cases().into_iter().next().expect("a case");
        event.payload = EventPayload::Inline(RawJson::from_json("null").expect("json"));
        let stored = encode_event(&event);
        assert!(stored.ends_with(r#""payload":null}"#), "{stored}");
        assert_eq!(decode_event(&stored), Ok(event));
    }

    #[test]
    fn settled_results_round_trip_in_their_documented_form() {
        let ok = SettledResult::Ok {
            status: 200,
            data: serde_json::json!({"amount": 22.27}),
        };
        let failed = SettledResult::Failed {
            status: Some(503),
            error: "HTTP 503 after 6 attempts".to_owned(),
        };
        assert_eq!(
            encode_settled(&ok),
            r#"{"v":1,"status":"ok","code":200,"data":{"amount":22.27}}"#
        );
        assert_eq!(
            encode_settled(&failed),
            r#"{"v":1,"status":"failed","code":503,"error":"HTTP 503 after 6 attempts"}"#
        );
        for settled in [ok, failed] {
            assert_eq!(decode_settled(&encode_settled(&settled)), Ok(settled));
        }
        let timed_out = r#"{"v":1,"status":"failed","error":"timed out after 6 attempts"}"#;
        assert_eq!(
            decode_settled(timed_out),
            Ok(SettledResult::Failed {
                status: None,
                error: "timed out after 6 attempts".to_owned()
            })
        );
        assert!(matches!(
            decode_settled(r#"{"v":1,"status":"maybe"}"#),
            Err(RecordError::Invalid { version: 1, .. })
        ));
        assert_eq!(
            decode_settled(r#"{"v":2,"status":"ok"}"#),
            Err(RecordError::Newer(2))
        );
    }

    #[test]
    fn a_result_too_large_is_kept_as_a_failure_saying_so() {
        let big = SettledResult::Ok {
            status: 200,
            data: serde_json::json!("x".repeat(10_000)),
        };
        let SettledResult::Failed { status, error } = big.clone().bounded(1000) else {
            panic!("not bounded");
        };
        assert_eq!(status, Some(200));
        assert!(error.contains("too large"), "{error}");
        assert_eq!(big.clone().bounded(20_000), big);
    }
}
