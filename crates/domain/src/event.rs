//! Published events and their fan-out (SPEC section 9): an event is stored
//! once, with the set of endpoints it must reach fixed when it is accepted;
//! each of those gets a delivery, a [`Job`] whose target is the endpoint and
//! whose payload is the event's.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{
    BlobRef, CallbackResult, Endpoint, EndpointId, EventBody, EventId, EventType, FetchOutcome, Job, JobId,
    NewJob, Owner, Payload, ProviderState, ProviderStatus, RawJson, Target, TenantId, Timestamp,
};

/// How one provider of a thin event settled (SPEC section 9: fetched once
/// per event): kept on the event by the first delivery that settles it,
/// and used by every other, so each endpoint gets the same data.
#[derive(Debug, Clone, PartialEq)]
pub enum SettledResult {
    Ok {
        status: u16,
        data: Value,
    },
    /// A permanent failure, or attempts exhausted (`error` says which).
    Failed {
        status: Option<u16>,
        error: String,
    },
}

impl SettledResult {
    /// What a provider's state in a job settled as; `None` while pending.
    pub fn of_provider(state: &ProviderState) -> Option<Self> {
        match state.status {
            ProviderStatus::Pending => None,
            ProviderStatus::Ok => Some(Self::Ok {
                status: state.last_status_code.unwrap_or(200),
                data: state.data.clone().unwrap_or(Value::Null),
            }),
            ProviderStatus::Failed => Some(Self::Failed {
                status: state.last_status_code,
                error: state.last_error.clone().unwrap_or_else(|| "failed".to_owned()),
            }),
        }
    }

    /// The outcome a delivery records for it ([`Job::record_fetch`]): a
    /// failure is permanent, it is settled.
    pub fn to_fetch_outcome(&self) -> FetchOutcome {
        match self {
            Self::Ok { status, data } => FetchOutcome::Ok {
                status: *status,
                data: data.clone(),
            },
            Self::Failed { status, error } => FetchOutcome::Permanent {
                status: *status,
                error: error.clone(),
            },
        }
    }

    /// Itself if its stored form fits in `limit` bytes; otherwise a
    /// failure saying the data was too large to keep, so a large answer is
    /// never a write the store refuses.
    pub fn bounded(self, limit: usize) -> Self {
        let size = crate::record::event::encode_settled(&self).len();
        if size <= limit {
            return self;
        }
        let status = match &self {
            Self::Ok { status, .. } => Some(*status),
            Self::Failed { status, .. } => *status,
        };
        Self::Failed {
            status,
            error: format!("data too large to store (result is {size} bytes; limit {limit})"),
        }
    }
}

/// An event's payload: its JSON inline in the event's record, or, when it
/// is too large for that (SPEC section 13), a reference to the blob holding
/// that JSON's exact bytes (the claim check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPayload {
    Inline(RawJson),
    Blob(BlobRef),
}

impl EventPayload {
    /// The JSON, when it is inline.
    pub fn inline(&self) -> Option<&RawJson> {
        match self {
            Self::Inline(json) => Some(json),
            Self::Blob(_) => None,
        }
    }

    /// The blob holding it, when it is one.
    pub fn blob(&self) -> Option<&BlobRef> {
        match self {
            Self::Inline(_) => None,
            Self::Blob(blob) => Some(blob),
        }
    }

    /// The payload's size in bytes, serialized, wherever it is.
    pub fn len(&self) -> u64 {
        match self {
            Self::Inline(json) => json.as_json().len() as u64,
            Self::Blob(blob) => blob.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

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
    pub payload: EventPayload,
    pub created_at: Timestamp,
    /// Every endpoint it goes to, fixed when it was accepted.
    pub deliveries: Vec<DeliveryRef>,
    /// Its type's providers when it was accepted: a thin event's data is
    /// fetched from each, once per event. Empty for an event given whole.
    pub providers: Vec<String>,
    /// The providers' results settled so far, by provider: kept beside the
    /// event's record by the store ([`crate::record::event::encode_settled`]),
    /// written once each, never part of what was published.
    pub settled: BTreeMap<String, SettledResult>,
}

/// What a client publishes, before it is matched with endpoints.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub tenant: TenantId,
    pub event_type: EventType,
    pub owner: Option<Owner>,
    pub payload: EventPayload,
    /// Its type's providers (a thin event), or none.
    pub providers: Vec<String>,
}

/// Room kept in an event's item, besides its record and results, for the
/// store's own attributes (keys, names, listing and TTL attributes).
const EVENT_ITEM_OVERHEAD: usize = 1024;

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
            providers: new.providers,
            settled: BTreeMap::new(),
        }
    }

    /// Whether `other` is this event as published: the same in everything
    /// but the results settled since.
    pub fn is_published_as(&self, other: &Event) -> bool {
        self.id == other.id
            && self.tenant == other.tenant
            && self.event_type == other.event_type
            && self.owner == other.owner
            && self.payload == other.payload
            && self.created_at == other.created_at
            && self.deliveries == other.deliveries
            && self.providers == other.providers
    }

    /// The most one provider's settled result may take, stored, so the
    /// event with every provider's result fits in `max_item_bytes` (its
    /// store's item limit, [`crate::Job::fit_within`]'s too): what its
    /// record leaves, shared equally by its providers.
    pub fn settled_result_limit(&self, max_item_bytes: usize) -> usize {
        let record = crate::record::event::encode_event(self).len();
        let names: usize = self.providers.iter().map(|p| p.len() + 16).sum();
        max_item_bytes.saturating_sub(record + names + EVENT_ITEM_OVERHEAD) / self.providers.len().max(1)
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
                        providers: self.providers.clone(),
                    },
                    self.created_at,
                )
            })
            .collect()
    }

    /// The body every endpoint receives (SPEC section 9), its `data` the
    /// payload; `None` while the payload is a blob not yet read
    /// ([`Event::with_payload`] gives it).
    pub fn body(&self, results: Option<Vec<CallbackResult>>) -> Option<EventBody> {
        Some(EventBody {
            kind: self.event_type.as_str().to_owned(),
            timestamp: self.created_at,
            data: self.payload.inline()?.clone(),
            results,
        })
    }

    /// This event with `json` as its inline payload: a blob event's JSON,
    /// read from the blob store and verified against its reference.
    pub fn with_payload(&self, json: RawJson) -> Self {
        Self {
            payload: EventPayload::Inline(json),
            ..self.clone()
        }
    }
}
