//! The stored form of an event, versioned as jobs are. Its deliveries are
//! stored as the endpoints they go to; their ids follow from those
//! ([`JobId::for_delivery`]), so each costs 28 bytes, not 56. Version 1
//! (before receiver tags) derived them untagged
//! ([`JobId::for_delivery_untagged`]): its events keep those ids.

use serde::{Deserialize, Serialize};

use super::{RecordError, invalid, version};
use crate::{DeliveryRef, EndpointId, Event, EventId, EventType, JobId, Owner, RawJson, TenantId, Timestamp};

/// `event` in the newest stored form, or in version 1 when its delivery
/// ids are that version's (an event stored before receiver tags, written
/// again), so they never change.
pub fn encode_event(event: &Event) -> String {
    let untagged = event
        .deliveries
        .iter()
        .any(|d| d.id != JobId::for_delivery(event.id, d.endpoint));
    let record = v1::EventOut {
        v: if untagged { 1 } else { 2 },
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
        v @ (1 | 2) => {
            let r: v1::Event = serde_json::from_str(text).map_err(|e| invalid(v, &e))?;
            let bad = |reason: String| RecordError::Invalid { version: v, reason };
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
                payload: r.payload,
                created_at: r.created_at,
                deliveries: r
                    .endpoints
                    .into_iter()
                    .map(|endpoint| DeliveryRef {
                        id: delivery_id(r.id, endpoint),
                        endpoint,
                    })
                    .collect(),
            })
        }
        newer => Err(RecordError::Newer(newer)),
    }
}

/// Versions 1 and 2 have one shape; they differ in how delivery ids follow.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An event as the release before receiver tags stored it.
    const V1: &str = include_str!("../../fixtures/events/v1/fanned-out.json");

    #[test]
    fn an_event_of_the_release_before_receiver_tags_keeps_its_delivery_ids() {
        let event = decode_event(V1).expect("the stored event decodes");
        assert_eq!(event.deliveries.len(), 2);
        for delivery in &event.deliveries {
            assert_eq!(
                delivery.id,
                JobId::for_delivery_untagged(event.id, delivery.endpoint)
            );
        }
        assert_eq!(event.event_type.as_str(), "invoice.paid");
        assert_eq!(event.owner.as_ref().map(Owner::as_str), Some("company-42"));
        // Written again (as a store may), it keeps them.
        let again = encode_event(&event);
        assert!(again.starts_with(r#"{"v":1,"#), "{again}");
        assert_eq!(decode_event(&again).expect("decodes"), event);
    }

    #[test]
    fn a_new_event_s_deliveries_carry_their_endpoints_tags() {
        let mut event = decode_event(V1).expect("the stored event decodes");
        for delivery in &mut event.deliveries {
            delivery.id = JobId::for_delivery(event.id, delivery.endpoint);
        }
        let stored = encode_event(&event);
        assert!(stored.starts_with(r#"{"v":2,"#), "{stored}");
        let back = decode_event(&stored).expect("decodes");
        assert_eq!(back, event);
        for delivery in &back.deliveries {
            assert_eq!(
                delivery.id.receiver(),
                crate::ReceiverTag::of_endpoint(delivery.endpoint)
            );
        }
        assert!(matches!(
            decode_event(&stored.replacen(r#""v":2"#, r#""v":9"#, 1)),
            Err(RecordError::Newer(9))
        ));
    }
}
