//! The stored form of an event, versioned as jobs are. Its deliveries are
//! stored as the endpoints they go to; their ids follow from those
//! ([`JobId::for_delivery`]), so each costs 28 bytes, not 56.

use serde::{Deserialize, Serialize};

use super::{RecordError, invalid, version};
use crate::{DeliveryRef, EndpointId, Event, EventId, EventType, JobId, Owner, RawJson, TenantId, Timestamp};

/// `event` in the newest stored form.
pub fn encode_event(event: &Event) -> String {
    let record = v1::EventOut {
        v: 1,
        id: event.id,
        tenant: &event.tenant,
        event_type: event.event_type.as_str(),
        owner: event.owner.as_ref().map(Owner::as_str),
        created_at: event.created_at,
        endpoints: event.deliveries.iter().map(|d| d.endpoint).collect(),
        payload: &event.payload,
    };
    serde_json::to_string(&record).unwrap_or_default()
}

/// An event from its stored form.
pub fn decode_event(text: &str) -> Result<Event, RecordError> {
    match version(text) {
        1 => {
            let r: v1::Event = serde_json::from_str(text).map_err(|e| invalid(1, &e))?;
            let bad = |reason: String| RecordError::Invalid { version: 1, reason };
            Ok(Event {
                id: r.id,
                tenant: r.tenant,
                event_type: EventType::parse(&r.event_type).map_err(|e| bad(e.to_string()))?,
                owner: r
                    .owner
                    .map(|o| Owner::parse(&o).map_err(|e| bad(e.to_string())))
                    .transpose()?,
                payload: r.payload,
                created_at: r.created_at,
                deliveries: r
                    .endpoints
                    .into_iter()
                    .map(|endpoint| DeliveryRef {
                        id: JobId::for_delivery(r.id, endpoint),
                        endpoint,
                    })
                    .collect(),
            })
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
        pub payload: &'a RawJson,
    }
}
