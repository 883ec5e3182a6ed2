//! A thin event's provider fetches (SPEC section 9: each provider fetched
//! once per event), shared by the event's deliveries in two ways:
//!
//! - within this processor, one fetch in flight per (tenant, event,
//!   provider): deliveries of the event due together wait for it and all
//!   record its outcome ([`ThinFetches`]);
//! - across processors and later attempts, through the event: an outcome
//!   that settles the provider (ok, a permanent failure, attempts
//!   exhausted) is kept on the event once
//!   ([`store::EventStore::settle_event_provider`], first writer wins), and
//!   read (from the store, not the event cache) before any fetch.
//!
//! Two processors fetching one event's provider for the first time at the
//! same moment may each fetch once; the result kept is one, and every
//! delivery carries that one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::{EventId, FetchOutcome, SettledResult, TenantId};

use crate::Processor;
use crate::http::Fetched;

type Key = (TenantId, EventId, String);

/// What a delivery records for one provider fetch: the outcome, the body
/// of a failed answer, and how long the fetch took (`None` when nothing was
/// sent for it: a result the event already held).
#[derive(Debug, Clone)]
pub(crate) struct Flown {
    pub outcome: FetchOutcome,
    pub body: Option<String>,
    pub took: Option<Duration>,
}

impl Flown {
    pub(crate) fn fetched(fetched: Fetched, took: Duration) -> Self {
        Self {
            outcome: fetched.outcome,
            body: fetched.body,
            took: Some(took),
        }
    }

    fn settled(result: &SettledResult) -> Self {
        Self {
            outcome: result.to_fetch_outcome(),
            body: None,
            took: None,
        }
    }
}

/// The fetches of thin events' providers in flight in this processor.
#[derive(Default)]
pub(crate) struct ThinFetches {
    flights: Mutex<HashMap<Key, Arc<tokio::sync::OnceCell<Flown>>>>,
}

impl std::fmt::Debug for ThinFetches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flying = self.flights.lock().map_or(0, |flights| flights.len());
        f.debug_struct("ThinFetches").field("in_flight", &flying).finish()
    }
}

/// What an outcome settles a provider as, if it does on its own (ok, or a
/// permanent failure); a retryable one settles only once a delivery has
/// no attempts left.
fn settles_as(outcome: &FetchOutcome) -> Option<SettledResult> {
    match outcome {
        FetchOutcome::Ok { status, data } => Some(SettledResult::Ok {
            status: *status,
            data: data.clone(),
        }),
        FetchOutcome::Permanent { status, error } => Some(SettledResult::Failed {
            status: *status,
            error: error.clone(),
        }),
        FetchOutcome::Retryable { .. } => None,
    }
}

impl Processor {
    /// `provider`'s outcome for a delivery of thin event `event`: the
    /// result the event holds, or one fetch shared with every delivery of
    /// the event asking at the same time.
    pub(crate) async fn fetch_for_event(
        &self,
        tenant: &TenantId,
        event: EventId,
        provider: String,
        attempt: u32,
    ) -> Flown {
        let key = (tenant.clone(), event, provider.clone());
        let flight = {
            let mut flights = self.thin.flights.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(flights.entry(key.clone()).or_default())
        };
        let flown = flight
            .get_or_init(|| self.fly(tenant, event, provider, attempt))
            .await
            .clone();
        // Done: a later attempt asks again (and finds the result on the
        // event, if it settled).
        let mut flights = self.thin.flights.lock().unwrap_or_else(|p| p.into_inner());
        if flights.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            flights.remove(&key);
        }
        flown
    }

    /// The one fetch of a flight: the event's settled result if it holds
    /// one; otherwise a fetch with `eventId`, kept on the event if it
    /// settles the provider (the result kept is the first writer's).
    async fn fly(&self, tenant: &TenantId, event_id: EventId, provider: String, attempt: u32) -> Flown {
        let event = match self.store.get_event(tenant, event_id).await {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(%event_id, error = %err, "could not read the event's settled results; fetching");
                None
            }
        };
        if let Some(settled) = event.as_ref().and_then(|e| e.settled.get(&provider)) {
            tracing::debug!(%event_id, %provider, "provider result shared from the event");
            return Flown::settled(settled);
        }
        let (_, fetched, took) = self
            .fetch_one(("eventId", event_id.to_string()), provider.clone(), attempt)
            .await;
        let mut flown = Flown::fetched(fetched, took);
        let (Some(event), Some(result)) = (event, settles_as(&flown.outcome)) else {
            return flown;
        };
        let result = result.bounded(event.settled_result_limit(self.store.max_job_bytes()));
        match self
            .store
            .settle_event_provider(tenant, event_id, &provider, &result)
            .await
        {
            Ok(Some(stored)) => flown.outcome = stored.to_fetch_outcome(),
            Ok(None) => flown.outcome = result.to_fetch_outcome(),
            Err(err) => {
                tracing::warn!(%event_id, %provider, error = %err, "could not keep the provider's result on the event");
                flown.outcome = result.to_fetch_outcome();
            }
        }
        flown
    }

    /// A thin event's provider that a delivery settled as failed after its
    /// last attempt: kept on the event (first writer wins); the answer is
    /// what every delivery reports.
    pub(crate) async fn settle_exhausted(
        &self,
        tenant: &TenantId,
        event_id: EventId,
        provider: &str,
        failed: SettledResult,
    ) -> SettledResult {
        match self
            .store
            .settle_event_provider(tenant, event_id, provider, &failed)
            .await
        {
            Ok(Some(stored)) => stored,
            Ok(None) => failed,
            Err(err) => {
                tracing::warn!(%event_id, %provider, error = %err, "could not keep the provider's failure on the event");
                failed
            }
        }
    }
}
