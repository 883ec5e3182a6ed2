//! The job routes: `POST /webhook` (alias `POST /v1/jobs`),
//! `GET /v1/jobs/{jobId}`, `GET /v1/jobs` and `POST /v1/jobs/{jobId}/retry`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::{Job, JobId, JobStatus, NewJob, ProviderStatus, Timestamp};
use serde::Serialize;
use serde_json::{Map, Value};
use store::{IdempotentCreate, ListQuery, MAX_PAGE, Redrive};

use crate::auth::Tenant;
use crate::idempotency;
use crate::validate::{parse_job_request, require_json};
use crate::{ApiError, AppState, FieldError, MAX_BODY_BYTES};

fn api_time(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Accepted {
    job_id: JobId,
    status: JobStatus,
    providers: Vec<String>,
    created_at: String,
}

pub(crate) async fn create_job(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
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
    if let Err(blocked) = state
        .config
        .callback_network
        .check_url(&request.callback_url)
        .await
    {
        return Err(ApiError::validation(vec![FieldError::new(
            "callbackUrl",
            blocked.to_string(),
        )]));
    }

    let now = state.clock.now();
    let idempotency = idempotency::from_headers(&headers, &request, now)?;
    let job = Job::new(
        NewJob {
            id: JobId::generate(now, &mut rand::rng()),
            tenant,
            callback_url: request.callback_url,
            metadata: request.metadata,
            providers: request.providers,
        },
        now,
    );
    let created = match &idempotency {
        None => state
            .store
            .create_job(&job)
            .await
            .map(|()| IdempotentCreate::Created),
        Some(key) => state.store.create_job_idempotent(&job, key, now).await,
    }
    .map_err(|err| ApiError::from_store(err, "store new job"))?;
    match created {
        IdempotentCreate::Created => {
            tracing::info!(job_id = %job.id, providers = job.providers.len(), "job accepted");
            state.wake_processor();
            Ok(accepted(StatusCode::ACCEPTED, &job))
        }
        IdempotentCreate::Replay {
            job_id,
            same_request: true,
        } => {
            let original = state
                .store
                .get_job(&job.tenant, job_id)
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

/// The answer to an accepted job: its id, status, providers and creation
/// time, with `Location`.
fn accepted(status: StatusCode, job: &Job) -> Response {
    let body = Accepted {
        job_id: job.id,
        status: job.status,
        providers: job.providers.iter().map(|p| p.name.clone()).collect(),
        created_at: api_time(job.created_at),
    };
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobView {
    job_id: JobId,
    status: JobStatus,
    callback_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Map<String, Value>>,
    providers: Vec<ProviderView>,
    delivery: DeliveryView,
    /// When a processor will next work on the job; absent once it is finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProviderView {
    name: String,
    status: ProviderStatus,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryView {
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<String>,
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        let delivering = matches!(job.status, JobStatus::Delivering);
        Self {
            job_id: job.id,
            status: job.status,
            callback_url: job.callback_url.to_string(),
            metadata: job.metadata,
            providers: job
                .providers
                .into_iter()
                .map(|p| ProviderView {
                    next_attempt_at: (p.status == ProviderStatus::Pending)
                        .then_some(p.next_attempt_at)
                        .flatten()
                        .map(api_time),
                    name: p.name,
                    status: p.status,
                    attempts: p.attempts,
                    last_status_code: p.last_status_code,
                    last_error: p.last_error,
                })
                .collect(),
            delivery: DeliveryView {
                attempts: job.callback.attempts,
                last_status_code: job.callback.last_status_code,
                last_error: job.callback.last_error,
                next_attempt_at: job.callback.next_attempt_at.filter(|_| delivering).map(api_time),
                delivered_at: job.callback.delivered_at.map(api_time),
            },
            next_attempt_at: job.due_at.map(api_time),
            created_at: api_time(job.created_at),
            updated_at: api_time(job.updated_at),
        }
    }
}

fn no_such_job(job_id: &str) -> ApiError {
    ApiError::not_found(format!("no job {job_id:?}"))
}

pub(crate) async fn get_job(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(job_id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = job_id.parse::<JobId>().map_err(|_| no_such_job(&job_id))?;
    match state.store.get_job(&tenant, id).await {
        Ok(Some(job)) => Ok(Json(job.into())),
        Ok(None) => Err(no_such_job(&job_id)),
        Err(err) => Err(ApiError::from_store(err, "read job")),
    }
}

/// Default page size of `GET /v1/jobs`.
pub const DEFAULT_PAGE: usize = 50;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobList {
    data: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<JobId>,
}

/// `GET /v1/jobs?status=&limit=&cursor=`: the tenant's jobs newest first,
/// one page at a time; `status=failed` is the dead letter.
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
    let mut seen = Vec::new();
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        if seen.contains(&key) {
            errors.push(FieldError::new(key.as_ref(), "given more than once"));
            continue;
        }
        seen.push(key.clone());
        match key.as_ref() {
            "status" => match JobStatus::parse(&value) {
                Some(status) => query.status = Some(status),
                None => errors.push(FieldError::new(
                    "status",
                    "must be one of pending, delivering, complete, failed",
                )),
            },
            "limit" => match value.parse::<usize>() {
                Ok(limit) if (1..=MAX_PAGE).contains(&limit) => query.limit = limit,
                _ => errors.push(FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_PAGE}"),
                )),
            },
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
        }
    }
    if errors.is_empty() {
        Ok(query)
    } else {
        Err(ApiError::validation(errors))
    }
}

/// `POST /v1/jobs/{jobId}/retry`: redrive a failed job from the dead letter.
pub(crate) async fn retry_job(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = job_id.parse::<JobId>().map_err(|_| no_such_job(&job_id))?;
    let now = state.clock.now();
    match state.store.redrive(&tenant, id, now).await {
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
