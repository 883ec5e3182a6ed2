//! Published events and their fan-out (SPEC section 9): an event is stored
//! once, with the set of endpoints it must reach fixed when it is accepted;
//! each of those gets a delivery, a [`Job`] whose target is the endpoint and
//! whose payload is the event's.

use crate::{
    CallbackResult, Endpoint, EndpointId, EventBody, EventId, EventType, Job, JobId, NewJob, Owner, Payload,
    RawJson, Target, TenantId, Timestamp,
};

/// One endpoint an event must reach and the id of its delivery there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRef {
    pub id: JobId,
    pub endpoint: EndpointId,
}

/// A published event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub tenant: TenantId,
    pub event_type: EventType,
    pub owner: Option<Owner>,
    pub payload: RawJson,
    pub created_at: Timestamp,
    /// Every endpoint it goes to, fixed when it was accepted.
    pub deliveries: Vec<DeliveryRef>,
}

/// What a client publishes, before it is matched with endpoints.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub tenant: TenantId,
    pub event_type: EventType,
    pub owner: Option<Owner>,
    pub payload: RawJson,
}

impl Event {
    /// The event, going to every one of `endpoints` that
    /// [`Endpoint::receives`] it, in the order given.
    pub fn fan_out<'a>(
        new: NewEvent,
        endpoints: impl IntoIterator<Item = &'a Endpoint>,
        now: Timestamp,
    ) -> Self {
        let deliveries = endpoints
            .into_iter()
            .filter(|endpoint| {
                endpoint.tenant == new.tenant && endpoint.receives(&new.event_type, new.owner.as_ref())
            })
            .map(|endpoint| DeliveryRef {
                id: JobId::for_delivery(new.id, endpoint.id),
                endpoint: endpoint.id,
            })
            .collect();
        Self {
            id: new.id,
            tenant: new.tenant,
            event_type: new.event_type,
            owner: new.owner,
            payload: new.payload,
            created_at: now,
            deliveries,
        }
    }

    /// Its deliveries as new jobs, the same on every call (ids, times,
    /// content), so writing them again creates only those absent.
    pub fn delivery_jobs(&self) -> Vec<Job> {
        self.deliveries
            .iter()
            .map(|delivery| {
                Job::new(
                    NewJob {
                        id: delivery.id,
                        tenant: self.tenant.clone(),
                        target: Target::Endpoint(delivery.endpoint),
                        payload: Payload::OfEvent(self.id),
                        providers: Vec::new(),
                    },
                    self.created_at,
                )
            })
            .collect()
    }

    /// The body every endpoint receives (SPEC section 9).
    pub fn body(&self, results: Option<Vec<CallbackResult>>) -> EventBody {
        EventBody {
            kind: self.event_type.as_str().to_owned(),
            timestamp: self.created_at,
            data: self.payload.clone(),
            results,
        }
    }
}
