//! The job routes: `POST /webhook` (alias `POST /v1/jobs`),
//! `GET /v1/jobs/{jobId}`, `GET /v1/jobs` and `POST /v1/jobs/{jobId}/retry`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::{
    Job, JobId, JobStatus, NewJob, Payload, ProviderStatus, ReceiverTag, Target, TenantId, Timestamp,
};
use serde::Serialize;
use store::{IdempotencyRecord, IdempotentCreate, ListQuery, Redrive, StoreError};
use utoipa::ToSchema;

use crate::auth::Tenant;
use crate::idempotency;
use crate::validate::{parse_job_request, require_json};
use crate::{ApiError, AppState, FieldError, MAX_BODY_BYTES, openapi};

use crate::api_time;

/// The answer to an accepted job (and to an idempotent replay of one).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Accepted {
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    job_id: JobId,
    #[schema(value_type = openapi::JobStatusSchema)]
    status: JobStatus,
    providers: Vec<String>,
    #[schema(format = DateTime)]
    created_at: String,
    /// With `sync=true`: the receiver's answer to the first callback
    /// attempt, if one was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = u16, required = false)]
    status_code: Option<u16>,
    /// With `sync=true`: how long that attempt took.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = u64, required = false)]
    duration_ms: Option<u64>,
    /// With `sync=true`: why the first pass failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    error: Option<String>,
}

/// The problems a job submission is refused with, whose
/// `hookline_jobs_rejected_total` series exist from the start (another,
/// should one arise, is counted from its first).
pub(crate) const REJECTIONS: [&str; 10] = [
    "malformed-json",
    "body-too-large",
    "unsupported-media-type",
    "validation",
    "unauthorized",
    "conflict",
    "unavailable",
    "outcome-unknown",
    "callback-lookup-unfinished",
    "internal",
];

/// `POST /v1/jobs` (and its alias `POST /webhook`, which `openapi.rs`
/// documents from this operation): accept a job.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    operation_id = "createJob",
    tag = "jobs",
    summary = "Create a job",
    description = "Accepts a job: fetch each provider's data, then POST one callback to `callbackUrl`. \
        `POST /webhook` is the same operation.",
    request_body(content = openapi::JobRequestSchema, content_type = "application/json"),
    params(
        (
            "Idempotency-Key" = Option<String>, Header, nullable = false,
            description = "Makes retries safe: the same key with the same request within 24 hours \
                answers 200 with the original job; with a different request, 409.",
            min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$",
        ),
        ("sync" = Option<bool>, Query, description = "`true`: answer once the job's first pass (its \
            providers fetched, its callback attempted) has finished (200 with its `status`, `statusCode`, \
            `durationMs`, `error`), or when `timeout` runs out first (202). The pass is made under a lease, \
            like a processor's."),
        ("timeout" = Option<String>, Query, description = "How long `sync=true` waits: 1ms to 30s, default 10s",
            example = "10s"),
    ),
    responses(
        (status = 202, description = "The job is accepted and due at once (with `sync=true`: the wait ran out \
            before its first pass finished)", body = Accepted,
            headers(("Location" = String, description = "`/v1/jobs/{jobId}`"))),
        (status = 200, description = "An idempotent replay: the job this `Idempotency-Key` created; or, with \
            `sync=true`, its first pass finished", body = Accepted,
            headers(
                ("Location" = String, description = "`/v1/jobs/{jobId}`"),
                ("Idempotent-Replayed" = String, description = "`true` on a replay; `false` on a synchronous answer"),
            )),
        (status = 400, description = "The body is not JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 409, description = "The `Idempotency-Key` was used with a different request \
            (or the job it created is gone)", body = ApiError, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 64 KiB", body = ApiError, content_type = "application/problem+json"),
        (status = 415, description = "The body is not labelled JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "Invalid job: unknown, duplicate or missing providers, a bad callbackUrl \
            (also one that is or resolves to a loopback, private, link-local, multicast or cloud-metadata \
            address the server does not allow), metadata that is not an object or over 4 KiB serialized, \
            unknown fields, or a bad `Idempotency-Key`", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "Nothing was written: the store is unavailable (type \
            `urn:hookline:problem:unavailable`), or the callbackUrl's host name could not be looked up \
            in time (`urn:hookline:problem:callback-lookup-unfinished`). Or the outcome is unknown (type \
            `urn:hookline:problem:outcome-unknown`): the store did not confirm the write and the job \
            may exist. The intake resolves a lost answer before answering and answers 202 when the job \
            exists; it says the outcome is unknown only when it still cannot tell. Retrying with the \
            same `Idempotency-Key` is safe in every case.", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create_job(
    State(state): State<AppState>,
    tenant: Result<Tenant, ApiError>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let metrics = std::sync::Arc::clone(&state.config.metrics);
    let answer = match (tenant, crate::sync::wait_for(query.as_deref())) {
        (Ok(Tenant(tenant)), Ok(sync)) => accept_job(state, tenant, sync, headers, body).await,
        (Err(problem), _) | (_, Err(problem)) => Err(problem),
    };
    match &answer {
        // Counted where it was created.
        Ok(_) => {}
        Err(problem) => metrics.job_rejected(problem.reason()),
    }
    answer
}

async fn accept_job(
    state: AppState,
    tenant: domain::TenantId,
    sync: Option<std::time::Duration>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // The body limit is checked before the content type so an oversize
    // upload is refused however it is labelled.
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(MAX_BODY_BYTES),
        _ => ApiError::malformed(rejection.body_text()),
    })?;
    require_json(&headers)?;
    let request = parse_job_request(&body, &state.config.providers)?;
    match state
        .config
        .callback_network
        .check_url_with(&request.callback_url, &state.config.callback_lookups)
        .await
    {
        Ok(()) => {}
        Err(netguard::CheckError::Blocked(blocked)) => {
            return Err(ApiError::validation(vec![FieldError::new(
                "callbackUrl",
                blocked.to_string(),
            )]));
        }
        Err(netguard::CheckError::Lookup(unfinished)) => {
            return Err(ApiError::lookup_unfinished(&unfinished));
        }
    }

    let now = state.clock.now();
    let idempotency = idempotency::from_headers(&headers, &request, now)?;
    let job = Job::new(
        NewJob {
            id: JobId::generate_for(
                ReceiverTag::of_callback(&request.callback_url),
                now,
                &mut rand::rng(),
            ),
            tenant,
            target: Target::Callback(request.callback_url),
            payload: Payload::Results {
                metadata: request.metadata,
            },
            providers: request.providers,
        },
        now,
    );
    let created = store_new_job(&state, &job, idempotency.as_ref(), now).await?;
    match created {
        IdempotentCreate::Created => {
            tracing::Span::current().record("job_id", tracing::field::display(&job.id()));
            tracing::info!(job_id = %job.id(), providers = job.providers().len(), "job accepted");
            state.config.metrics.job_accepted();
            let Some(within) = sync else {
                state.wake_processor();
                return Ok(accepted(StatusCode::ACCEPTED, &job));
            };
            let (seen, finished) =
                crate::sync::first_attempts(&state, job.tenant(), &[job.id()], within).await;
            state.wake_processor();
            let seen = seen.into_iter().next().flatten();
            let status = if finished {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            tracing::info!(job_id = %job.id(), finished, "synchronous job answered");
            let mut response = accepted_after(status, seen.as_ref().unwrap_or(&job));
            if finished {
                response
                    .headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("false"));
            }
            Ok(response)
        }
        IdempotentCreate::Replay {
            job_id,
            same_request: true,
        } => {
            let original = state
                .store
                .get_job(job.tenant(), job_id)
                .await
                .map_err(|err| ApiError::from_store(err, "read the original job"))?
                .ok_or_else(|| ApiError::conflict("the job this Idempotency-Key created no longer exists"))?;
            tracing::info!(job_id = %job_id, "idempotent retry answered with the original job");
            let mut response = accepted(StatusCode::OK, &original);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(response)
        }
        IdempotentCreate::Replay {
            same_request: false, ..
        } => Err(ApiError::conflict(
            "this Idempotency-Key was used with a different request in the last 24 hours",
        )),
    }
}

use crate::RESOLVE_WITHIN;

/// The detail of a create whose outcome stayed unknown.
const CREATE_OUTCOME_UNKNOWN: &str = "the job store did not confirm the job and it may have been \
    written; retrying with the same Idempotency-Key is safe (without one, a retry may create a \
    second job)";

/// Writes the new job. A write whose answer was lost is not a failure:
/// the job id is ours, so the same conditional create is re-issued until
/// the store tells, for at most [`RESOLVE_WITHIN`]; only then is the
/// outcome reported as unknown.
async fn store_new_job(
    state: &AppState,
    job: &Job,
    key: Option<&IdempotencyRecord>,
    now: Timestamp,
) -> Result<IdempotentCreate, ApiError> {
    let reason = match create_once(state, job, key, now).await {
        Err(StoreError::Indeterminate(reason)) => reason,
        answer => return answer.map_err(|err| ApiError::from_store(err, "store new job")),
    };
    tracing::warn!(%reason, job_id = %job.id(), "store new job: outcome unknown, resolving it");
    match tokio::time::timeout(RESOLVE_WITHIN, resolve_create(state, job, key, now)).await {
        Ok(created) => {
            tracing::info!(job_id = %job.id(), "store new job: outcome resolved");
            Ok(created)
        }
        Err(_) => {
            tracing::warn!(job_id = %job.id(), "store new job: outcome still unknown");
            Err(ApiError::outcome_unknown(CREATE_OUTCOME_UNKNOWN))
        }
    }
}

async fn create_once(
    state: &AppState,
    job: &Job,
    key: Option<&IdempotencyRecord>,
    now: Timestamp,
) -> Result<IdempotentCreate, StoreError> {
    match key {
        None => state
            .store
            .create_job(job)
            .await
            .map(|()| IdempotentCreate::Created),
        Some(key) => state.store.create_job_idempotent(job, key, now).await,
    }
}

/// Re-issues a create whose outcome is unknown until the store tells:
/// created now, or found there already (a conflict on our own job id, or
/// the key naming our job), or the key taken by another request. Retrying
/// is safe because the write is conditional on the id, which is ours.
async fn resolve_create(
    state: &AppState,
    job: &Job,
    key: Option<&IdempotencyRecord>,
    now: Timestamp,
) -> IdempotentCreate {
    let mut pause = std::time::Duration::from_millis(25);
    loop {
        match create_once(state, job, key, now).await {
            Ok(IdempotentCreate::Replay { job_id, .. }) if job_id == job.id() => {
                return IdempotentCreate::Created;
            }
            Ok(created) => return created,
            Err(StoreError::Conflict) => return IdempotentCreate::Created,
            // Still no answer, or none now: the first write may yet be there.
            Err(err) => tracing::debug!(error = %err, job_id = %job.id(), "store new job: still unresolved"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(400));
    }
}

/// The answer to an accepted job: its id, status, providers and creation
/// time, with `Location`.
fn accepted(status: StatusCode, job: &Job) -> Response {
    let body = Accepted {
        job_id: job.id(),
        status: job.status(),
        providers: job.providers().iter().map(|p| p.name.clone()).collect(),
        created_at: api_time(job.created_at()),
        status_code: None,
        duration_ms: None,
        error: None,
    };
    with_job_location(status, body, job)
}

/// [`accepted`] after a synchronous wait: with the latest callback
/// attempt's answer, and why the pass failed if it did.
fn accepted_after(status: StatusCode, job: &Job) -> Response {
    let callback = job.history().iter().rev().find(|a| a.provider.is_none());
    let body = Accepted {
        job_id: job.id(),
        status: job.status(),
        providers: job.providers().iter().map(|p| p.name.clone()).collect(),
        created_at: api_time(job.created_at()),
        status_code: callback.and_then(|a| a.status),
        duration_ms: callback.map(|a| a.duration_ms),
        error: callback
            .and_then(|a| a.error.clone())
            .or_else(|| job.delivery().last_error.clone())
            .or_else(|| job.history().last().and_then(|a| a.error.clone())),
    };
    with_job_location(status, body, job)
}

fn with_job_location(status: StatusCode, body: Accepted, job: &Job) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id())) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A job with its providers' and its callback's state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobView {
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    job_id: JobId,
    #[schema(value_type = openapi::JobStatusSchema)]
    status: JobStatus,
    /// Where the job's callback goes; absent on an event's delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = "uri", required = false)]
    callback_url: Option<String>,
    /// The endpoint an event's delivery goes to.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$", required = false)]
    endpoint_id: Option<domain::EndpointId>,
    /// The event a delivery carries (`GET /v1/events/{eventId}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$", required = false)]
    event_id: Option<domain::EventId>,
    /// The job's metadata, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, required = false)]
    metadata: Option<domain::Metadata>,
    providers: Vec<ProviderView>,
    delivery: DeliveryView,
    /// When a processor will next work on the job; absent once it is finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime, required = false)]
    next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// One provider's fetch state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ProviderView {
    name: String,
    #[schema(value_type = openapi::ProviderStatusSchema)]
    status: ProviderStatus,
    attempts: u32,
    /// The HTTP status of the last fetch, if it got one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = u16, required = false)]
    last_status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    last_error: Option<String>,
    /// When the next fetch is due; only while the provider is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime, required = false)]
    next_attempt_at: Option<String>,
}

/// The callback's delivery state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DeliveryView {
    attempts: u32,
    /// The HTTP status the callback URL answered last, if it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = u16, required = false)]
    last_status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    last_error: Option<String>,
    /// When the next callback attempt is due; only while delivering.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime, required = false)]
    next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime, required = false)]
    delivered_at: Option<String>,
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        let delivering = matches!(job.status(), JobStatus::Delivering);
        Self {
            job_id: job.id(),
            status: job.status(),
            callback_url: match job.target() {
                Target::Callback(url) => Some(url.to_string()),
                Target::Endpoint(_) => None,
            },
            endpoint_id: match job.target() {
                Target::Endpoint(id) => Some(*id),
                Target::Callback(_) => None,
            },
            event_id: match job.payload() {
                Payload::OfEvent(id) => Some(*id),
                Payload::Results { .. } | Payload::Event { .. } => None,
            },
            metadata: job.metadata().cloned(),
            providers: job
                .providers()
                .iter()
                .map(|p| ProviderView {
                    next_attempt_at: (p.status == ProviderStatus::Pending)
                        .then_some(p.next_attempt_at)
                        .flatten()
                        .map(api_time),
                    name: p.name.clone(),
                    status: p.status,
                    attempts: p.attempts,
                    last_status_code: p.last_status_code,
                    last_error: p.last_error.clone(),
                })
                .collect(),
            delivery: DeliveryView {
                attempts: job.delivery().attempts,
                last_status_code: job.delivery().last_status_code,
                last_error: job.delivery().last_error.clone(),
                next_attempt_at: job
                    .delivery()
                    .next_attempt_at
                    .filter(|_| delivering)
                    .map(api_time),
                delivered_at: job.delivery().delivered_at.map(api_time),
            },
            next_attempt_at: job.due_at().map(api_time),
            created_at: api_time(job.created_at()),
            updated_at: api_time(job.updated_at()),
        }
    }
}

fn no_such_job(job_id: &str) -> ApiError {
    ApiError::not_found(format!("no job {}", crate::error::echo(job_id)))
}

/// The `{job_id}` of the path and the id it names. A segment that is not a
/// job id (not even UTF-8 once percent-decoded) names no job: 404, like an
/// unknown one, never axum's plain-text 400.
/// The tenant's job the path names: 404 for a malformed id, another
/// tenant's job or none.
async fn tenant_job(
    state: &AppState,
    tenant: &TenantId,
    path: Result<Path<String>, PathRejection>,
) -> Result<Job, ApiError> {
    let (job_id, id) = job_id_from(path)?;
    match state.store.get_job(tenant, id).await {
        Ok(Some(job)) => Ok(job),
        Ok(None) => Err(no_such_job(&job_id)),
        Err(err) => Err(ApiError::from_store(err, "read job")),
    }
}

fn job_id_from(path: Result<Path<String>, PathRejection>) -> Result<(String, JobId), ApiError> {
    let Path(job_id) = path.map_err(|_| ApiError::not_found("no such job"))?;
    let id = job_id.parse::<JobId>().map_err(|_| no_such_job(&job_id))?;
    tracing::Span::current().record("job_id", tracing::field::display(&id));
    Ok((job_id, id))
}

/// `GET /v1/jobs/{job_id}`.
#[utoipa::path(
    get,
    path = "/v1/jobs/{job_id}",
    operation_id = "getJob",
    tag = "jobs",
    summary = "Read a job",
    params(("job_id" = String, Path, description = "The job's id (`jobId`)")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such job for this tenant (another tenant's job included)", body = ApiError,
            content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get_job(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(tenant_job(&state, &tenant, path).await?.into()))
}

/// One provider fetch or callback attempt, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AttemptView {
    /// A provider `fetch` or a `callback`.
    #[schema(value_type = String, pattern = "^(fetch|callback)$")]
    kind: &'static str,
    /// The provider fetched; only on fetches.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    provider: Option<String>,
    #[schema(format = DateTime)]
    attempted_at: String,
    duration_ms: u64,
    /// Whether it succeeded: the provider's data was accepted, or the
    /// receiver answered 2xx.
    succeeded: bool,
    /// The HTTP status, if there was an answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = u16, required = false)]
    status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    error: Option<String>,
    /// The response body, cut to 4 KiB: every callback answer's,
    /// successes included; a failed fetch's; for a successful fetch, the
    /// provider's data while the job still holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    body: Option<String>,
    /// The callback answer's headers that explain it, when it had any:
    /// `content-type`, `location`, `retry-after`, `www-authenticate`,
    /// `x-request-id`, `request-id`, `traceparent` (each cut to 256 bytes).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schema(value_type = Object, required = false)]
    headers: std::collections::BTreeMap<String, String>,
}

/// A job's attempt history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AttemptList {
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    job_id: JobId,
    /// The most recent attempts, oldest first (at most 24 are kept).
    data: Vec<AttemptView>,
}

impl From<Job> for AttemptList {
    fn from(job: Job) -> Self {
        let data = job
            .history()
            .iter()
            .map(|attempt| {
                // A successful fetch's body is the provider's data, held
                // (not copied) until the callback is acknowledged.
                let body = attempt.body.clone().or_else(|| {
                    let provider = attempt.provider.as_deref()?;
                    if !attempt.succeeded() {
                        return None;
                    }
                    let data = job
                        .providers()
                        .iter()
                        .find(|p| p.name == provider)?
                        .data
                        .as_ref()?;
                    domain::truncate_body(data.to_string().as_bytes())
                });
                AttemptView {
                    kind: if attempt.provider.is_some() {
                        "fetch"
                    } else {
                        "callback"
                    },
                    provider: attempt.provider.clone(),
                    attempted_at: api_time(attempt.at),
                    duration_ms: attempt.duration_ms,
                    succeeded: attempt.succeeded(),
                    status_code: attempt.status,
                    error: attempt.error.clone(),
                    body,
                    headers: attempt.headers.clone(),
                }
            })
            .collect();
        Self {
            job_id: job.id(),
            data,
        }
    }
}

/// `GET /v1/jobs/{job_id}/attempts`: why a job is where it is.
#[utoipa::path(
    get,
    path = "/v1/jobs/{job_id}/attempts",
    operation_id = "listAttempts",
    tag = "jobs",
    summary = "List a job's attempts",
    description = "Every provider fetch and callback attempt of the job, oldest first: when, how long, \
        the status code, the error, and the response body cut to 4 KiB. The most recent 24 are kept.",
    params(("job_id" = String, Path, description = "The job's id (`jobId`)")),
    responses(
        (status = 200, description = "The job's attempts", body = AttemptList),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such job for this tenant (another tenant's job included)", body = ApiError,
            content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list_attempts(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AttemptList>, ApiError> {
    Ok(Json(tenant_job(&state, &tenant, path).await?.into()))
}

/// Default page size of `GET /v1/jobs`.
pub const DEFAULT_PAGE: usize = 50;

/// One page of a listing, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobList {
    data: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$", required = false)]
    next_cursor: Option<JobId>,
}

/// `GET /v1/jobs?status=&limit=&cursor=`: the tenant's jobs newest first,
/// one page at a time; `status=failed` is the dead letter.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    operation_id = "listJobs",
    tag = "jobs",
    summary = "List jobs, newest first",
    description = "The caller's jobs, newest first, one page at a time; `status=failed` is the dead letter. \
        A filtered page may hold fewer than `limit` jobs and still carry `nextCursor`; the listing ends \
        when `nextCursor` is absent. Any other parameter, or one given twice, is a 422.",
    params(
        ("status" = Option<openapi::JobStatusSchema>, Query, description = "Only jobs in this status"),
        ("limit" = Option<u8>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100; default 50"),
        ("cursor" = Option<String>, Query, pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$",
            description = "`nextCursor` from the previous page"),
    ),
    responses(
        (status = 200, description = "One page of jobs", body = JobList),
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
pub(crate) async fn list_jobs(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    RawQuery(query): RawQuery,
) -> Result<Json<JobList>, ApiError> {
    let query = parse_list_query(query.as_deref().unwrap_or(""))?;
    let page = state
        .store
        .list_jobs(&tenant, &query)
        .await
        .map_err(|err| ApiError::from_store(err, "list jobs"))?;
    Ok(Json(JobList {
        data: page.jobs.into_iter().map(JobView::from).collect(),
        next_cursor: page.next,
    }))
}

/// Strict, like the job body: an unknown parameter or a bad value is a 422
/// naming it, never a silently unfiltered listing.
fn parse_list_query(raw: &str) -> Result<ListQuery, ApiError> {
    let mut query = ListQuery {
        status: None,
        after: None,
        limit: DEFAULT_PAGE,
    };
    let mut errors = Vec::new();
    crate::query::each(raw, &mut errors, |key, value, errors| match key {
        "status" => match JobStatus::parse(value) {
            Some(status) => query.status = Some(status),
            None => errors.push(FieldError::new(
                "status",
                "must be one of pending, delivering, complete, failed",
            )),
        },
        "limit" => crate::query::limit(value, &mut query.limit, errors),
        "cursor" => match value.parse::<JobId>() {
            Ok(after) => query.after = Some(after),
            Err(_) => errors.push(FieldError::new(
                "cursor",
                "must be a nextCursor value from an earlier page",
            )),
        },
        other => errors.push(FieldError::new(
            other,
            "unknown parameter; expected status, limit or cursor",
        )),
    });
    if errors.is_empty() {
        Ok(query)
    } else {
        Err(ApiError::validation(errors))
    }
}

/// `POST /v1/jobs/{jobId}/retry`: redrive a failed job from the dead letter.
#[utoipa::path(
    post,
    path = "/v1/jobs/{job_id}/retry",
    operation_id = "retryJob",
    tag = "jobs",
    summary = "Redrive a failed job",
    description = "Re-queues a `failed` job (from the dead letter) for a fresh round of callback attempts \
        with the provider results it already has.",
    params(("job_id" = String, Path, description = "The job's id (`jobId`)")),
    responses(
        (status = 202, description = "The job, due again at once", body = JobView,
            headers(("Location" = String, description = "`/v1/jobs/{jobId}`"))),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such job for this tenant", body = ApiError,
            content_type = "application/problem+json"),
        (status = 409, description = "The job is not failed", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "Either the store is unavailable and nothing was written (type \
            `urn:hookline:problem:unavailable`), or the outcome is unknown (type \
            `urn:hookline:problem:outcome-unknown`): the store did not confirm the redrive, the intake \
            could not tell by reading the job back, and it may have been applied (a retry then answers \
            409).", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn retry_job(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (job_id, id) = job_id_from(path)?;
    let now = state.clock.now();
    let redrive = match state.store.redrive(&tenant, id, now).await {
        Err(StoreError::Indeterminate(reason)) => {
            tracing::warn!(%reason, "redrive job: outcome unknown, resolving it");
            match tokio::time::timeout(RESOLVE_WITHIN, resolve_redrive(&state, &tenant, id, now)).await {
                Ok(Some(redrive)) => Ok(redrive),
                Ok(None) | Err(_) => {
                    tracing::warn!("redrive job: outcome still unknown");
                    return Err(ApiError::outcome_unknown(
                        "the job store did not confirm the redrive and it may have been applied; \
                         read the job to see, or retry: a redrive that was applied answers 409",
                    ));
                }
            }
        }
        redrive => redrive,
    };
    match redrive {
        Ok(Redrive::Requeued(job)) => {
            tracing::info!(job_id = %id, "failed job redriven");
            state.wake_processor();
            let mut response = (StatusCode::ACCEPTED, Json(JobView::from(*job))).into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("/v1/jobs/{id}")) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            Ok(response)
        }
        Ok(Redrive::NotFailed(status)) => Err(ApiError::conflict(format!(
            "job {id} is {}; only a failed job can be retried",
            status.as_str()
        ))),
        Ok(Redrive::NotFound) => Err(no_such_job(&job_id)),
        Err(err) => Err(ApiError::from_store(err, "redrive job")),
    }
}

/// Resolves a redrive at `now` whose outcome is unknown by reading the job
/// back: still failed, it is redriven again (the write is conditioned on
/// the failed state read, so it cannot apply twice); requeued at `now`, our
/// redrive landed. `None` when the job moved on and whose redrive it was
/// cannot be told.
async fn resolve_redrive(state: &AppState, tenant: &TenantId, id: JobId, now: Timestamp) -> Option<Redrive> {
    let mut pause = std::time::Duration::from_millis(25);
    loop {
        match state.store.get_job(tenant, id).await {
            Ok(None) => return Some(Redrive::NotFound),
            Ok(Some(job)) if job.status() == JobStatus::Failed => {
                match state.store.redrive(tenant, id, now).await {
                    Ok(Redrive::NotFailed(_)) | Err(_) => {}
                    Ok(redrive) => return Some(redrive),
                }
            }
            // What our redrive wrote (`Job::redrive` stamps `now`).
            Ok(Some(job)) if job.updated_at() == now => return Some(Redrive::Requeued(Box::new(job))),
            Ok(Some(_)) => return None,
            Err(err) => tracing::debug!(error = %err, "redrive job: still unresolved"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(400));
    }
}
