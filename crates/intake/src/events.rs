//! The event routes (SPEC section 9): `POST /v1/events` publishes an event
//! to every enabled endpoint of the tenant subscribed to its type (and of
//! its owner, when it names one); `GET /v1/events/{id}` shows each
//! delivery's state; `GET /v1/events` lists them, newest first.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::{
    EndpointId, Event, EventId, EventPayload, EventType, JobId, JobStatus, NewEvent, Owner, RawJson,
    TenantId, Timestamp,
};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::value::RawValue;
use store::{EventQuery, IdempotencyRecord, Published, StoreError};
use utoipa::ToSchema;

use crate::auth::Tenant;
use crate::fields::Fields;
use crate::idempotency;
use crate::{ApiError, AppState, FieldError, api_time, openapi};

/// Largest event payload, serialized (SPEC section 13: 4 MiB): inline up
/// to [`blobs::INLINE_THRESHOLD_BYTES`], above it in the blob store.
pub const MAX_EVENT_PAYLOAD_BYTES: usize = blobs::MAX_PAYLOAD_BYTES;
/// Largest payload kept inline when no blob store is configured: the
/// inline maximum before blobs (SPEC section 9's 256 KiB), so a deployment
/// without `--blobs` takes what it took before, and nothing larger.
pub const MAX_INLINE_PAYLOAD_BYTES: usize = 256 * 1024;
/// Largest `POST /v1/events` body: the payload and room for the rest.
pub const MAX_EVENT_BODY_BYTES: usize = MAX_EVENT_PAYLOAD_BYTES + 4 * 1024;
/// Deliveries of one event read at once for `GET /v1/events/{id}`.
const DELIVERY_READS_IN_FLIGHT: usize = 16;

/// What `POST /v1/events` accepts (documentation; `Fields` parses it).
#[derive(ToSchema)]
#[schema(as = EventRequest)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct EventRequestSchema {
    /// A registered event type.
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$", example = "invoice.paid")]
    event_type: String,
    /// Only this owner's endpoints receive it; without one, every
    /// subscribed endpoint does.
    #[schema(min_length = 1, max_length = 256, example = "company-42")]
    owner: Option<String>,
    /// Any JSON value, at most 4 MiB serialized (over 64 KiB it is kept in
    /// the blob store; without one, at most 256 KiB); delivered as `data`.
    #[schema(value_type = serde_json::Value, example = json!({"invoiceId": "in_1", "amount": 1200}))]
    payload: serde_json::Value,
}

/// One endpoint an event goes to.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveryRefView {
    /// The delivery's id: a job (`GET /v1/jobs/{deliveryId}`).
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    delivery_id: JobId,
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    endpoint_id: EndpointId,
    /// With `sync=true`: the delivery's status after its first attempt
    /// (or as last seen, when the wait ran out first).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = openapi::JobStatusSchema, required = false)]
    status: Option<JobStatus>,
    /// With `sync=true`: the receiver's answer to the first attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = u16, required = false)]
    status_code: Option<u16>,
    /// With `sync=true`: how long the first attempt took.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = u64, required = false)]
    duration_ms: Option<u64>,
    /// With `sync=true`: why the first attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    error: Option<String>,
}

impl DeliveryRefView {
    /// What a synchronous publish shows of `job` (a delivery): its status
    /// and its latest callback attempt.
    fn seen(&mut self, job: &domain::Job) {
        self.status = Some(job.status());
        let callback = job.history().iter().rev().find(|a| a.provider.is_none());
        self.status_code = callback.and_then(|a| a.status);
        self.duration_ms = callback.map(|a| a.duration_ms);
        self.error = callback
            .and_then(|a| a.error.clone())
            .or_else(|| job.delivery().last_error.clone());
    }
}

/// The answer to an accepted event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventAccepted {
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    event_id: EventId,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    owner: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    /// Every endpoint it goes to, fixed now.
    deliveries: Vec<DeliveryRefView>,
}

impl From<&Event> for EventAccepted {
    fn from(event: &Event) -> Self {
        Self {
            event_id: event.id,
            event_type: event.event_type.as_str().to_owned(),
            owner: event.owner.as_ref().map(|o| o.as_str().to_owned()),
            created_at: api_time(event.created_at),
            deliveries: event
                .deliveries
                .iter()
                .map(|d| DeliveryRefView {
                    delivery_id: d.id,
                    endpoint_id: d.endpoint,
                    status: None,
                    status_code: None,
                    duration_ms: None,
                    error: None,
                })
                .collect(),
        }
    }
}

/// One delivery of an event and how far it got.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventDeliveryView {
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    delivery_id: JobId,
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    endpoint_id: EndpointId,
    /// Absent when the delivery's record is not there (any more).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = openapi::JobStatusSchema, required = false)]
    status: Option<JobStatus>,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = u16, required = false)]
    last_status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime, required = false)]
    next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime, required = false)]
    delivered_at: Option<String>,
}

/// An event with each delivery's state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventView {
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    event_id: EventId,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    owner: Option<String>,
    /// As published (without whitespace between tokens). Absent only when
    /// it is kept in the blob store and cannot be read from it:
    /// `payloadUnavailable` says why.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>, required = false)]
    payload: Option<RawJson>,
    /// A payload over 64 KiB: the blob holding it, by sha256 and length
    /// (SPEC section 13). Absent for a payload kept inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<PayloadBlobSchema>, required = false)]
    payload_blob: Option<domain::BlobRef>,
    /// Why the payload is not shown: its blob is missing or altered in the
    /// blob store (its deliveries fail, nothing is sent), or this intake
    /// has no blob store to read it from.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    payload_unavailable: Option<String>,
    /// A thin event's providers (its type's when it was published): each
    /// fetched once for the event; its deliveries are `pending` meanwhile.
    /// Absent for an event delivered as published.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    providers: Vec<String>,
    #[schema(format = DateTime)]
    created_at: String,
    deliveries: Vec<EventDeliveryView>,
}

/// Where a payload kept as a blob is (documentation of `domain::BlobRef`).
#[derive(ToSchema)]
#[schema(as = PayloadBlob)]
#[allow(dead_code)]
pub(crate) struct PayloadBlobSchema {
    /// The payload's sha256, in lowercase hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    sha256: String,
    /// The payload's length in bytes, serialized.
    len: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventList {
    /// Newest first; each without its payload (read one event for it).
    data: Vec<EventAccepted>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$", required = false)]
    next_cursor: Option<EventId>,
}

/// The payload as the client wrote it (numbers keep their digits).
fn raw_payload(body: &[u8]) -> Result<RawJson, String> {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        payload: &'a RawValue,
    }
    let raw: Raw<'_> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    RawJson::from_json(raw.payload.get()).map_err(|e| e.to_string())
}

/// `POST /v1/events`.
#[utoipa::path(
    post,
    path = "/v1/events",
    operation_id = "publishEvent",
    tag = "events",
    summary = "Publish an event",
    description = "Delivers the event to every enabled endpoint of the tenant subscribed to its type; with \
        `owner`, only to that owner's endpoints. A 202 means the event and the set of endpoints it must \
        reach are durable: each gets exactly one delivery (a job: `GET /v1/jobs/{deliveryId}`), signed \
        with that endpoint's secret, `webhook-id` the event id. An event that matches no endpoint is \
        accepted with no deliveries.",
    request_body(content = EventRequestSchema, content_type = "application/json"),
    params(
        (
            "Idempotency-Key" = Option<String>, Header, nullable = false,
            description = "Makes retries safe: the same key with the same event within 24 hours answers 200 \
                with the original event; with a different one, 409.",
            min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
        ),
        ("sync" = Option<bool>, Query, description = "`true`: answer once every delivery's first attempt has \
            finished (200, each delivery with its `status`, `statusCode`, `durationMs`, `error`), or when \
            `timeout` runs out first (202 with what is known). The first attempts are made under a lease, \
            like a processor's."),
        ("timeout" = Option<String>, Query, description = "How long `sync=true` waits: 1ms to 30s, default 10s",
            example = "10s"),
    ),
    responses(
        (status = 202, description = "Accepted; its deliveries are due at once (with `sync=true`: the wait ran \
            out before every first attempt finished)", body = EventAccepted,
            headers(("Location" = String, description = "`/v1/events/{eventId}`"))),
        (status = 200, description = "An idempotent replay: the event this `Idempotency-Key` published; or, with \
            `sync=true`, every delivery's first attempt finished", body = EventAccepted,
            headers(
                ("Location" = String, description = "`/v1/events/{eventId}`"),
                ("Idempotent-Replayed" = String, description = "`true` on a replay; `false` on a synchronous answer"),
            )),
        (status = 400, description = "The body is not JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 409, description = "The `Idempotency-Key` was used with a different event", body = ApiError,
            content_type = "application/problem+json"),
        (status = 413, description = "The body is over 4 MiB and 4 KiB, or the payload over 4 MiB serialized \
            (type `urn:hookline:problem:body-too-large`), or over 256 KiB when no blob store is configured \
            (type `urn:hookline:problem:no-blob-store`); nothing was stored", body = ApiError,
            content_type = "application/problem+json"),
        (status = 415, description = "The body is not labelled JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "An unregistered or invalid type, a bad owner, no payload, an unknown \
            field, a bad `Idempotency-Key`, `sync` or `timeout`", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable and nothing was written (type \
            `urn:hookline:problem:unavailable`), or the outcome is unknown (type \
            `urn:hookline:problem:outcome-unknown`): the event may exist. Retrying with the same \
            `Idempotency-Key` is safe in every case, and completes an event's fan-out cut short. Type \
            `urn:hookline:problem:blobs-unavailable`: the blob store could not keep the payload; the event \
            was not written.", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn publish_event(
    State(state): State<AppState>,
    tenant: Result<Tenant, ApiError>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Tenant(tenant) = tenant?;
    let sync = crate::sync::wait_for(query.as_deref())?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(MAX_EVENT_BODY_BYTES),
        _ => ApiError::malformed(rejection.body_text()),
    })?;
    let mut fields = Fields::parse(
        &headers,
        Ok(body.clone()),
        MAX_EVENT_BODY_BYTES,
        &["type", "owner", "payload"],
    )?;
    let event_type = fields
        .string("type", true, 64)
        .and_then(|name| match EventType::parse(&name) {
            Ok(t) => Some(t),
            Err(err) => {
                fields.error("type", err.to_string());
                None
            }
        });
    let owner = fields
        .string("owner", false, 256)
        .and_then(|owner| match Owner::parse(&owner) {
            Ok(owner) => Some(owner),
            Err(err) => {
                fields.error("owner", err.to_string());
                None
            }
        });
    let payload_value = fields.take("payload");
    let payload = match &payload_value {
        None => {
            fields.error("payload", "is required: any JSON value");
            None
        }
        Some(_) => match raw_payload(&body) {
            Ok(raw) => Some(raw),
            Err(err) => {
                fields.error("payload", format!("is not valid JSON: {err}"));
                None
            }
        },
    };
    let (Some(event_type), Some(payload), Some(payload_value)) =
        fields.finish((event_type, payload, payload_value))?
    else {
        return Err(ApiError::validation(vec![FieldError::new(
            "",
            "type and payload are required",
        )]));
    };
    if payload.as_json().len() > MAX_EVENT_PAYLOAD_BYTES {
        return Err(ApiError::too_large(MAX_EVENT_PAYLOAD_BYTES));
    }
    if payload.as_json().len() > MAX_INLINE_PAYLOAD_BYTES && state.config.blobs.is_none() {
        return Err(no_blob_store(payload.as_json().len()));
    }
    let registered = state
        .store
        .get_event_type(&tenant, &event_type)
        .await
        .map_err(|err| ApiError::from_store(err, "read event type"))?;
    let Some(registered) = registered else {
        return Err(ApiError::validation(vec![FieldError::new(
            "type",
            format!("{event_type} is not a registered event type (PUT /v1/event-types/{event_type})"),
        )]));
    };
    let now = state.clock.now();
    let key = idempotency::with_fingerprint(
        &headers,
        || {
            idempotency::event_fingerprint(
                event_type.as_str(),
                owner.as_ref().map(Owner::as_str),
                &payload_value,
            )
        },
        now,
    )?;
    let endpoints = state
        .store
        .tenant_endpoints(&tenant)
        .await
        .map_err(|err| ApiError::from_store(err, "read endpoints"))?;
    // The blob is put before the event is written: a blob without its
    // event is harmless (retention removes it), an event without its blob
    // could never be delivered.
    let payload = keep_payload(&state, &tenant, payload).await?;
    let event = Event::fan_out(
        NewEvent {
            id: EventId::generate(now, &mut rand::rng()),
            tenant: tenant.clone(),
            event_type,
            owner,
            payload,
            // A thin event: its deliveries fetch the type's providers.
            providers: registered.providers,
        },
        &endpoints,
        now,
    );
    match publish_or_replay(&state, &event, key.as_ref(), now).await? {
        Publication::Accepted => {
            tracing::info!(event_id = %event.id, deliveries = event.deliveries.len(), "event accepted");
            state.config.metrics.event_published();
            let Some(within) = sync else {
                if !event.deliveries.is_empty() {
                    state.wake_processor();
                }
                return Ok(accepted(StatusCode::ACCEPTED, &event));
            };
            let ids: Vec<JobId> = event.deliveries.iter().map(|d| d.id).collect();
            let (seen, finished) = crate::sync::first_attempts(&state, &tenant, &ids, within).await;
            // Whatever is left (a delivery to retry, one not reached in
            // time) is the processors' now.
            state.wake_processor();
            let mut answer = EventAccepted::from(&event);
            for (view, job) in answer.deliveries.iter_mut().zip(&seen) {
                if let Some(job) = job {
                    view.seen(job);
                }
            }
            let status = if finished {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            tracing::info!(event_id = %event.id, finished, "synchronous publish answered");
            let mut response = (status, Json(answer)).into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("/v1/events/{}", event.id)) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            if finished {
                response
                    .headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("false"));
            }
            Ok(response)
        }
        Publication::Replayed(original) => {
            state.wake_processor();
            tracing::info!(event_id = %original.id, "idempotent retry answered with the original event");
            let mut response = accepted(StatusCode::OK, &original);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(response)
        }
        Publication::KeyReused => Err(ApiError::conflict(
            "this Idempotency-Key was used with a different event in the last 24 hours",
        )),
    }
}

pub(crate) fn no_blob_store(len: usize) -> ApiError {
    ApiError::payload_too_large(
        "urn:hookline:problem:no-blob-store",
        format!(
            "the payload is {len} bytes; payloads over {MAX_INLINE_PAYLOAD_BYTES} bytes are kept in a blob store \
             and none is configured (--blobs s3://BUCKET/PREFIX); nothing was stored"
        ),
    )
}

/// Where a published payload is kept: inline up to
/// [`blobs::INLINE_THRESHOLD_BYTES`] (or up to [`MAX_INLINE_PAYLOAD_BYTES`]
/// when no blob store is configured), else put in the blob store, which
/// gives the reference the event's record holds.
pub(crate) async fn keep_payload(
    state: &AppState,
    tenant: &TenantId,
    payload: RawJson,
) -> Result<EventPayload, ApiError> {
    let len = payload.as_json().len();
    if len <= blobs::INLINE_THRESHOLD_BYTES {
        return Ok(EventPayload::Inline(payload));
    }
    let Some(store) = &state.config.blobs else {
        return if len <= MAX_INLINE_PAYLOAD_BYTES {
            Ok(EventPayload::Inline(payload))
        } else {
            Err(no_blob_store(len))
        };
    };
    let bytes = bytes::Bytes::from(String::from(payload.as_json()));
    match store.put(tenant.as_str(), bytes).await {
        Ok(blob) => Ok(EventPayload::Blob(blob)),
        Err(blobs::BlobError::TooLarge(_)) => Err(ApiError::too_large(MAX_EVENT_PAYLOAD_BYTES)),
        Err(err) if err.is_transient() => {
            tracing::warn!(error = %err, "publish event: the blob store could not keep the payload");
            Err(ApiError::blobs_unavailable(
                "the blob store could not keep the payload; the event was not written, try again shortly",
            ))
        }
        Err(err) => {
            tracing::error!(error = %err, "publish event: the blob store refused the payload");
            Err(ApiError::internal())
        }
    }
}

/// The payload `event` was published with, for `GET /v1/events/{id}`: as
/// stored when inline; read from the blob store (verified) when a blob.
/// `Err` only when the blob store is unavailable now (503); a blob that is
/// missing or altered, or no blob store, is said in the view instead.
async fn shown_payload(
    state: &AppState,
    event: &Event,
) -> Result<(Option<RawJson>, Option<String>), ApiError> {
    let blob = match &event.payload {
        EventPayload::Inline(json) => return Ok((Some(json.clone()), None)),
        EventPayload::Blob(blob) => blob,
    };
    let Some(store) = &state.config.blobs else {
        return Ok((
            None,
            Some(format!(
                "the payload is the blob {blob} and this intake has no blob store configured (--blobs)"
            )),
        ));
    };
    match store.get(event.tenant.as_str(), blob).await {
        Ok(bytes) => {
            let json = std::str::from_utf8(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|text| RawJson::from_json(text).map_err(|e| e.to_string()));
            match json {
                Ok(json) => Ok((Some(json), None)),
                Err(err) => Ok((None, Some(format!("the blob {blob} is not JSON: {err}")))),
            }
        }
        Err(err @ (blobs::BlobError::Missing(_) | blobs::BlobError::Altered { .. })) => Ok((
            None,
            Some(format!("{err}; its deliveries fail without sending anything")),
        )),
        Err(err) if err.is_transient() => {
            tracing::warn!(error = %err, event_id = %event.id, "read event: the blob store is unavailable");
            Err(ApiError::blobs_unavailable(
                "the blob store holding the event's payload is unavailable; try again shortly",
            ))
        }
        Err(err) => {
            tracing::error!(error = %err, event_id = %event.id, "read event: the payload's blob cannot be read");
            Err(ApiError::internal())
        }
    }
}

/// What publishing one event came to.
#[derive(Debug)]
pub(crate) enum Publication {
    /// The event and its deliveries are durable.
    Accepted,
    /// Its key published this event within the window; that event's
    /// fan-out is now complete too (its publisher may have been cut short).
    Replayed(Box<Event>),
    /// Its key was used with a different event within the window.
    KeyReused,
}

/// Publishes `event` (with `key`), resolving a lost answer, and completes
/// the fan-out of the event an earlier use of the key published.
pub(crate) async fn publish_or_replay(
    state: &AppState,
    event: &Event,
    key: Option<&IdempotencyRecord>,
    now: Timestamp,
) -> Result<Publication, ApiError> {
    match publish_resolving(state, event, key, now).await? {
        Published::Accepted => Ok(Publication::Accepted),
        Published::Replay {
            event_id,
            same_request: true,
        } => {
            let original = read_event(state, &event.tenant, event_id)
                .await?
                .ok_or_else(|| ApiError::conflict("the event this key published no longer exists"))?;
            publish_resolving(state, &original, None, now).await?;
            Ok(Publication::Replayed(Box::new(original)))
        }
        Published::Replay {
            same_request: false, ..
        } => Ok(Publication::KeyReused),
    }
}

const PUBLISH_OUTCOME_UNKNOWN: &str = "the store did not confirm the event and it may have been written; \
    retrying with the same Idempotency-Key is safe (without one, a retry may publish it twice)";

/// Publishes; a write whose answer was lost is issued again (the event's
/// id and its deliveries' are ours, and each is created only if absent)
/// for at most [`crate::RESOLVE_WITHIN`] before the outcome is reported
/// unknown.
async fn publish_resolving(
    state: &AppState,
    event: &Event,
    key: Option<&IdempotencyRecord>,
    now: Timestamp,
) -> Result<Published, ApiError> {
    let deadline = tokio::time::Instant::now() + crate::RESOLVE_WITHIN;
    let mut pause = std::time::Duration::from_millis(25);
    let mut unknown = false;
    loop {
        match state.store.publish(event, key, now).await {
            Ok(Published::Replay { event_id, .. }) if unknown && event_id == event.id => {
                // Our own first attempt recorded the key: finish its fan-out.
                return publish_resolving_plain(state, event, now, deadline).await;
            }
            Ok(published) => return Ok(published),
            Err(StoreError::Conflict) if unknown => return Ok(Published::Accepted),
            Err(StoreError::Indeterminate(reason)) => {
                tracing::warn!(%reason, event_id = %event.id, "publish event: outcome unknown, resolving it");
                unknown = true;
            }
            Err(err) if unknown && err.is_determinate() => {
                tracing::debug!(error = %err, event_id = %event.id, "publish event: still unresolved");
            }
            Err(err) => return Err(ApiError::from_store(err, "publish event")),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::outcome_unknown(PUBLISH_OUTCOME_UNKNOWN));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(400));
    }
}

async fn publish_resolving_plain(
    state: &AppState,
    event: &Event,
    now: Timestamp,
    deadline: tokio::time::Instant,
) -> Result<Published, ApiError> {
    let mut pause = std::time::Duration::from_millis(25);
    loop {
        match state.store.publish(event, None, now).await {
            Ok(_) => return Ok(Published::Accepted),
            Err(err) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %err, event_id = %event.id, "publish event: still unresolved");
            }
            Err(_) => return Err(ApiError::outcome_unknown(PUBLISH_OUTCOME_UNKNOWN)),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(400));
    }
}

fn accepted(status: StatusCode, event: &Event) -> Response {
    let mut response = (status, Json(EventAccepted::from(event))).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("/v1/events/{}", event.id)) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

async fn read_event(state: &AppState, tenant: &TenantId, id: EventId) -> Result<Option<Event>, ApiError> {
    state
        .store
        .get_event(tenant, id)
        .await
        .map_err(|err| ApiError::from_store(err, "read event"))
}

/// `GET /v1/events/{event_id}`.
#[utoipa::path(
    get,
    path = "/v1/events/{event_id}",
    operation_id = "getEvent",
    tag = "events",
    summary = "Read an event and its deliveries",
    params(("event_id" = String, Path, description = "The event's id (`eventId`)")),
    responses(
        (status = 200, description = "The event, with each delivery's status, attempts, last status code and \
            next attempt", body = EventView),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such event for this tenant", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable, or the blob store holding the payload is \
            (type `urn:hookline:problem:blobs-unavailable`)", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get_event(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EventView>, ApiError> {
    let Path(given) = path.map_err(|_| ApiError::not_found("no such event"))?;
    let no_such = || ApiError::not_found(format!("no event {}", crate::error::echo(&given)));
    let id: EventId = given.parse().map_err(|_| no_such())?;
    let event = read_event(&state, &tenant, id).await?.ok_or_else(no_such)?;
    let (payload, payload_unavailable) = shown_payload(&state, &event).await?;
    let ids: Vec<JobId> = event.deliveries.iter().map(|d| d.id).collect();
    let reads = ids.into_iter().map(|id| {
        let (store, tenant) = (std::sync::Arc::clone(&state.store), tenant.clone());
        async move { store.get_job(&tenant, id).await }
    });
    let jobs: Vec<_> = futures::stream::iter(reads)
        .buffered(DELIVERY_READS_IN_FLIGHT)
        .collect()
        .await;
    let mut deliveries = Vec::with_capacity(jobs.len());
    for (delivery, job) in event.deliveries.iter().zip(jobs) {
        let job = job.map_err(|err| ApiError::from_store(err, "read delivery"))?;
        let view = match job {
            Some(job) => EventDeliveryView {
                delivery_id: delivery.id,
                endpoint_id: delivery.endpoint,
                status: Some(job.status()),
                attempts: job.delivery().attempts,
                last_status_code: job.delivery().last_status_code,
                last_error: job.delivery().last_error.clone(),
                next_attempt_at: job.due_at().map(api_time),
                delivered_at: job.delivery().delivered_at.map(api_time),
            },
            None => EventDeliveryView {
                delivery_id: delivery.id,
                endpoint_id: delivery.endpoint,
                status: None,
                attempts: 0,
                last_status_code: None,
                last_error: None,
                next_attempt_at: None,
                delivered_at: None,
            },
        };
        deliveries.push(view);
    }
    Ok(Json(EventView {
        event_id: event.id,
        event_type: event.event_type.as_str().to_owned(),
        owner: event.owner.as_ref().map(|o| o.as_str().to_owned()),
        payload,
        payload_blob: event.payload.blob().copied(),
        payload_unavailable,
        providers: event.providers.clone(),
        created_at: api_time(event.created_at),
        deliveries,
    }))
}

/// `GET /v1/events?type=&owner=&limit=&cursor=`.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "listEvents",
    tag = "events",
    summary = "List events, newest first",
    description = "The tenant's events, newest first, one page at a time, optionally of one type or owner \
        (a company's call history). A filtered page may hold fewer than `limit` and still carry \
        `nextCursor`; the listing ends when `nextCursor` is absent.",
    params(
        ("type" = Option<String>, Query, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "Only events of this type"),
        ("owner" = Option<String>, Query, min_length = 1, max_length = 256, description = "Only this owner's events"),
        ("limit" = Option<u8>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100; default 50"),
        ("cursor" = Option<String>, Query, pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$",
            description = "`nextCursor` from the previous page"),
    ),
    responses(
        (status = 200, description = "One page of events", body = EventList),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 422, description = "An unknown, repeated or invalid query parameter", body = ApiError,
            content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list_events(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    RawQuery(query): RawQuery,
) -> Result<Json<EventList>, ApiError> {
    let mut parsed = EventQuery {
        event_type: None,
        owner: None,
        after: None,
        limit: crate::DEFAULT_PAGE,
    };
    let mut errors = Vec::new();
    crate::query::each(
        query.as_deref().unwrap_or(""),
        &mut errors,
        |key, value, errors| match key {
            "type" => match EventType::parse(value) {
                Ok(t) => parsed.event_type = Some(t),
                Err(err) => errors.push(FieldError::new("type", err.to_string())),
            },
            "owner" => match Owner::parse(value) {
                Ok(owner) => parsed.owner = Some(owner),
                Err(err) => errors.push(FieldError::new("owner", err.to_string())),
            },
            "limit" => crate::query::limit(value, &mut parsed.limit, errors),
            "cursor" => match value.parse() {
                Ok(after) => parsed.after = Some(after),
                Err(_) => errors.push(FieldError::new(
                    "cursor",
                    "must be a nextCursor value from an earlier page",
                )),
            },
            other => errors.push(FieldError::new(
                other,
                "unknown parameter; expected type, owner, limit or cursor",
            )),
        },
    );
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let page = state
        .store
        .list_events(&tenant, &parsed)
        .await
        .map_err(|err| ApiError::from_store(err, "list events"))?;
    Ok(Json(EventList {
        data: page.events.iter().map(EventAccepted::from).collect(),
        next_cursor: page.next,
    }))
}
