//! What an attempt is made with, read when it is made: the URL, headers
//! and secrets of the job's target (a callback URL and its tenant's
//! secrets, or a registered endpoint and its own), and the body, from the
//! job or from the event that holds it. A target that refuses deliveries
//! (deleted, disabled) or a payload that is gone settles the job without
//! sending anything.

use std::sync::Arc;

use domain::{
    CallbackOutcome, Credential, DisabledReason, Endpoint, EndpointAuth, EndpointHeaders, EndpointId, Event,
    EventId, Job, Payload, QueueArn, RawJson, SigningSecret, Target, TenantId, Timestamp,
};
use url::Url;

use crate::Processor;
use crate::fresh::FreshReads;

/// An endpoint as read (with its version), `None` once deleted; the error
/// of a failed read as text, so one answer can be shared.
type EndpointRead = Result<Option<(Arc<Endpoint>, u64)>, String>;
pub(crate) type EndpointReads = FreshReads<(TenantId, EndpointId), EndpointRead>;
pub(crate) type EventReads = FreshReads<(TenantId, EventId), Result<Option<Arc<Event>>, String>>;

/// Where a delivery goes: an HTTP receiver, or an SQS queue (an endpoint
/// whose `url` is a queue's ARN).
pub(crate) enum Destination {
    Http(Url),
    Queue {
        queue: QueueArn,
        /// A FIFO queue's message group: the event's owner, else its
        /// tenant.
        group: String,
    },
}

impl Destination {
    fn of(url: &Url, owner: Option<&domain::Owner>, tenant: &TenantId) -> Self {
        match QueueArn::of_url(url) {
            Some(queue) => Self::Queue {
                queue,
                group: owner.map_or_else(|| tenant.to_string(), ToString::to_string),
            },
            None => Self::Http(url.clone()),
        }
    }
}

/// A delivery ready to send.
pub(crate) struct Prepared {
    pub destination: Destination,
    pub headers: EndpointHeaders,
    pub secrets: Vec<SigningSecret>,
    /// `webhook-id`.
    pub message_id: String,
    pub body: Vec<u8>,
    /// The endpoint it goes to as read for this attempt, with its version,
    /// when it is one.
    pub endpoint: Option<(Arc<Endpoint>, u64)>,
    /// How long the attempt may take: the endpoint's own `timeout`, or
    /// the processor's callback timeout.
    pub timeout: std::time::Duration,
}

/// How long a processor keeps an event it read: events never change.
pub(crate) const EVENTS_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(600);
/// Events one processor keeps, and the largest payload it keeps one for,
/// so the cache stays within 4,096 x 16 KiB.
pub(crate) const EVENTS_CACHE_MAX: usize = 4096;
const EVENTS_CACHE_MAX_PAYLOAD: usize = 16 * 1024;
/// Events with larger inline payloads (up to 256 KiB,
/// `intake::MAX_INLINE_PAYLOAD_BYTES`) one processor keeps, in a cache of
/// their own, so the fan-out of one to many endpoints reads it once
/// (a 64 KiB event is 16 read units a read) within 32 x 256 KiB.
pub(crate) const LARGE_EVENTS_CACHE_MAX: usize = 32;
/// How long a processor keeps a blob payload it read (verified), and how
/// many it keeps: a few events' deliveries to many endpoints share one
/// read, within 16 x 4 MiB ([`blobs::MAX_PAYLOAD_BYTES`]) of memory.
pub(crate) const PAYLOADS_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);
pub(crate) const PAYLOADS_CACHE_MAX: usize = 16;

fn retry_later(error: &str) -> CallbackOutcome {
    CallbackOutcome::Retryable {
        status: None,
        error: error.to_owned(),
        retry_after: None,
    }
}

fn abandon(reason: &str) -> CallbackOutcome {
    CallbackOutcome::Abandoned {
        reason: reason.to_owned(),
    }
}

impl Processor {
    /// The delivery of `job` at `now`, or the outcome of not sending it.
    pub(crate) async fn prepare(&self, job: &Job, now: Timestamp) -> Result<Prepared, CallbackOutcome> {
        let (message_id, event) = match job.payload() {
            Payload::OfEvent(id) => {
                let event = self.event(job.tenant(), *id, now).await?;
                (id.to_string(), Some(self.with_blob_payload(event, now).await?))
            }
            Payload::Results { .. } | Payload::Event { .. } => (job.id().to_string(), None),
        };
        let body = job
            .body(event.as_deref())
            .ok_or_else(|| abandon("eventMissing"))?
            .to_bytes();
        match job.target() {
            Target::Callback(url) => Ok(Prepared {
                destination: Destination::Http(url.clone()),
                headers: EndpointHeaders::default(),
                secrets: self
                    .signing_secrets(job.tenant(), now)
                    .await
                    .map_err(|e| retry_later(&e))?,
                message_id,
                body,
                endpoint: None,
                timeout: self.config.callback_timeout,
            }),
            Target::Endpoint(id) => {
                let (endpoint, version) = self.endpoint(job.tenant(), *id).await?;
                if !endpoint.is_enabled() {
                    return Err(abandon("endpointDisabled"));
                }
                Ok(Prepared {
                    secrets: endpoint.secrets.signing_at(now),
                    destination: Destination::of(
                        &endpoint.url,
                        event.as_ref().and_then(|event| event.owner.as_ref()),
                        job.tenant(),
                    ),
                    headers: endpoint.headers.clone(),
                    message_id,
                    body,
                    timeout: endpoint.timeout.unwrap_or(self.config.callback_timeout),
                    endpoint: Some((endpoint, version)),
                })
            }
        }
    }

    /// Why a delivery to `job`'s endpoint may not be made now, if it may
    /// not (deleted, disabled): checked before its providers are fetched,
    /// so a thin event's delivery that will not be sent fetches nothing. A
    /// failed read says nothing here; the attempt's own read decides.
    pub(crate) async fn refused_by_target(&self, job: &Job) -> Option<String> {
        let Target::Endpoint(id) = job.target() else {
            return None;
        };
        match self.endpoint(job.tenant(), *id).await {
            Ok((endpoint, _)) if !endpoint.is_enabled() => Some("endpointDisabled".to_owned()),
            Err(CallbackOutcome::Abandoned { reason }) => Some(reason),
            Ok(_) | Err(_) => None,
        }
    }

    /// The header carrying `endpoint`'s auth for an attempt, if it has
    /// any: its static header, or an OAuth2 token (not `stale`, a token a
    /// receiver just refused). The error says why none could be had.
    pub(crate) async fn auth_header(
        &self,
        endpoint: &Endpoint,
        stale: Option<&Credential>,
    ) -> Result<Option<(String, Credential)>, CallbackOutcome> {
        let Some(auth) = &endpoint.auth else {
            return Ok(None);
        };
        if let Some((name, value)) = auth.static_header() {
            return Ok(Some((name, Credential::new(value))));
        }
        let EndpointAuth::OAuth2(grant) = auth else {
            return Ok(None);
        };
        let key = (endpoint.tenant.clone(), endpoint.id);
        match self
            .tokens
            .token(
                &key,
                grant,
                stale,
                &self.callback_http,
                &self.config.callback_network,
                self.clock.now(),
            )
            .await
        {
            Ok(token) => Ok(Some((
                "authorization".to_owned(),
                Credential::new(format!("Bearer {}", token.expose())),
            ))),
            Err(error) => Err(retry_later(&error)),
        }
    }

    /// The endpoint as stored now: read for every attempt (by a read that
    /// began after the attempt asked, shared with the other deliveries to
    /// it asking meanwhile), so one disabled or deleted gets nothing more.
    async fn endpoint(
        &self,
        tenant: &TenantId,
        id: EndpointId,
    ) -> Result<(Arc<Endpoint>, u64), CallbackOutcome> {
        let read = self
            .endpoint_reads
            .read(&(tenant.clone(), id), || async {
                match self.store.get_endpoint(tenant, id).await {
                    Ok(found) => Ok(found.map(|(endpoint, version)| (Arc::new(endpoint), version))),
                    Err(err) => Err(err.to_string()),
                }
            })
            .await;
        match read {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(abandon("endpointDeleted")),
            Err(err) => {
                tracing::warn!(endpoint_id = %id, error = %err, "could not read the endpoint");
                Err(retry_later("the endpoint could not be read; will retry"))
            }
        }
    }

    /// The event holding a delivery's payload, read once per
    /// [`EVENTS_CACHE_TTL`] by this processor (its deliveries to several
    /// endpoints share the read).
    async fn event(
        &self,
        tenant: &TenantId,
        id: EventId,
        now: Timestamp,
    ) -> Result<Arc<Event>, CallbackOutcome> {
        let key = (tenant.clone(), id);
        let cached = || {
            self.events
                .get(&key, now)
                .or_else(|| self.large_events.get(&key, now))
        };
        if let Some(event) = cached() {
            return Ok(event);
        }
        let read = self
            .event_reads
            .read(&key, || async {
                // A caller that waited for its turn may find it cached.
                if let Some(event) = cached() {
                    return Ok(Some(event));
                }
                let event = self
                    .store
                    .get_event(tenant, id)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(event.map(|event| {
                    let event = Arc::new(event);
                    // A blob event is small: its record holds the reference.
                    if event.payload.len() <= EVENTS_CACHE_MAX_PAYLOAD as u64
                        || event.payload.blob().is_some()
                    {
                        self.events.insert(key.clone(), Arc::clone(&event), now);
                    } else {
                        self.large_events.insert(key.clone(), Arc::clone(&event), now);
                    }
                    event
                }))
            })
            .await;
        match read {
            Ok(Some(event)) => Ok(event),
            Ok(None) => Err(abandon("eventMissing")),
            Err(err) => {
                tracing::warn!(event_id = %id, error = %err, "could not read the event");
                Err(retry_later("the event could not be read; will retry"))
            }
        }
    }

    /// `event` with its payload in hand: as it is when inline, else with
    /// its blob's bytes, read from the blob store (verified against the
    /// reference by [`blobs::BlobStore::get`]) or from the few this
    /// processor read last. A blob that is missing or altered fails the
    /// delivery for good, saying so (nothing is sent: never other bytes);
    /// a blob store that fails, or none configured, is retried later.
    async fn with_blob_payload(
        &self,
        event: Arc<Event>,
        now: Timestamp,
    ) -> Result<Arc<Event>, CallbackOutcome> {
        let Some(blob) = event.payload.blob().copied() else {
            return Ok(event);
        };
        let key = (event.tenant.clone(), blob);
        if let Some(json) = self.payloads.get(&key, now) {
            return Ok(Arc::new(event.with_payload(RawJson::clone(&json))));
        }
        let Some(store) = &self.blobs else {
            tracing::warn!(event_id = %event.id, %blob, "an event's payload is a blob and no blob store is configured");
            return Err(retry_later(&format!(
                "the event's payload is the blob {blob} and this processor has no blob store (--blobs); will retry"
            )));
        };
        let bytes = match store.get(event.tenant.as_str(), &blob).await {
            Ok(bytes) => bytes,
            Err(err @ (blobs::BlobError::Missing(_) | blobs::BlobError::Altered { .. })) => {
                tracing::warn!(event_id = %event.id, error = %err, "the event's payload cannot be delivered");
                let code = match err {
                    blobs::BlobError::Missing(_) => "payloadMissing",
                    _ => "payloadAltered",
                };
                return Err(abandon(&format!("{code}: {err}; nothing was sent")));
            }
            Err(err) if err.is_transient() => {
                tracing::warn!(event_id = %event.id, error = %err, "could not read the event's payload");
                return Err(retry_later(&format!("{err}; will retry")));
            }
            Err(err) => {
                tracing::warn!(event_id = %event.id, error = %err, "the event's payload cannot be read");
                return Err(abandon(&format!("payloadUnreadable: {err}; nothing was sent")));
            }
        };
        // What was put was the payload's JSON text: verified bytes that are
        // not are a payload that was never publishable, not a retry.
        let json = std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|text| RawJson::from_json(text).map_err(|e| e.to_string()))
            .map_err(|err| {
                abandon(&format!(
                    "payloadInvalid: the blob {blob} is not JSON ({err}); nothing was sent"
                ))
            })?;
        self.payloads.insert(key, Arc::new(json.clone()), now);
        Ok(Arc::new(event.with_payload(json)))
    }

    /// What an attempt's outcome changes in its endpoint's health: `410
    /// Gone` disables it at once (Standard Webhooks' advice), so its other
    /// deliveries are not attempted again; a success ends a failing streak;
    /// a failure starts one, or, past [`crate::ProcessorConfig::endpoint_disable_after`],
    /// disables it. Written only when the health changes, compared and set
    /// on the version read (again from the newest on a race).
    pub(crate) async fn record_health(
        &self,
        read: (Arc<Endpoint>, u64),
        outcome: &CallbackOutcome,
        now: Timestamp,
    ) {
        let disable_after = self.config.endpoint_disable_after;
        let change = |endpoint: &Endpoint| -> Option<Endpoint> {
            match outcome {
                CallbackOutcome::Gone => endpoint.is_enabled().then(|| {
                    let mut next = endpoint.clone();
                    next.disable(DisabledReason::Gone, now);
                    next
                }),
                CallbackOutcome::Delivered { .. } => endpoint.after_attempt(true, now, disable_after),
                CallbackOutcome::Retryable { .. } => endpoint.after_attempt(false, now, disable_after),
                CallbackOutcome::Abandoned { .. } => None,
            }
        };
        let (endpoint, mut version) = read;
        let mut endpoint = Arc::unwrap_or_clone(endpoint);
        for _ in 0..5 {
            let Some(next) = change(&endpoint) else {
                return;
            };
            match self.store.update_endpoint(&next, version).await {
                Ok(true) => {
                    if let domain::EndpointStatus::Disabled { reason, .. } = next.status
                        && endpoint.is_enabled()
                    {
                        tracing::warn!(endpoint_id = %next.id, reason = reason.as_str(), "endpoint disabled");
                    }
                    return;
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(endpoint_id = %endpoint.id, error = %err, "could not record the endpoint's health");
                    return;
                }
            }
            match self.store.get_endpoint(&endpoint.tenant, endpoint.id).await {
                Ok(Some(found)) => (endpoint, version) = found,
                Ok(None) => return,
                Err(err) => {
                    tracing::warn!(endpoint_id = %endpoint.id, error = %err, "could not record the endpoint's health");
                    return;
                }
            }
        }
        tracing::warn!(endpoint_id = %endpoint.id, "the endpoint kept changing; its health was not recorded");
    }
}
