//! `POST /webhook` (alias `POST /v1/jobs`) and `GET /v1/jobs/{jobId}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::{Job, JobId, JobStatus, NewJob, ProviderStatus, Timestamp};
use serde::Serialize;
use serde_json::{Map, Value};
use store::StoreError;

use crate::validate::{parse_job_request, require_json};
use crate::{ApiError, AppState, MAX_BODY_BYTES};

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

    let now = state.clock.now();
    let job = Job::new(
        NewJob {
            id: JobId::generate(now, &mut rand::rng()),
            tenant: state.config.tenant.clone(),
            callback_url: request.callback_url,
            metadata: request.metadata,
            providers: request.providers,
        },
        now,
    );
    match state.store.create_job(&job).await {
        Ok(()) => {}
        Err(StoreError::Unavailable(reason)) => {
            tracing::warn!(%reason, "job not stored: store unavailable");
            return Err(ApiError::unavailable());
        }
        Err(err) => {
            tracing::error!(error = %err, job_id = %job.id, "job not stored");
            return Err(ApiError::internal());
        }
    }
    tracing::info!(job_id = %job.id, providers = job.providers.len(), "job accepted");
    if let Some(processor) = &state.config.on_job_created {
        processor.notify_one();
    }

    let location = format!("/v1/jobs/{}", job.id);
    let accepted = Accepted {
        job_id: job.id,
        status: job.status,
        providers: job.providers.iter().map(|p| p.name.clone()).collect(),
        created_at: api_time(job.created_at),
    };
    let mut response = (StatusCode::ACCEPTED, Json(accepted)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
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

pub(crate) async fn get_job(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let not_found = || ApiError::not_found(format!("no job {job_id:?}"));
    let Ok(id) = job_id.parse::<JobId>() else {
        return Err(not_found());
    };
    match state.store.get_job(&state.config.tenant, id).await {
        Ok(Some(job)) => Ok(Json(job.into())),
        Ok(None) => Err(not_found()),
        Err(StoreError::Unavailable(reason)) => {
            tracing::warn!(%reason, "job read failed: store unavailable");
            Err(ApiError::unavailable())
        }
        Err(err) => {
            tracing::error!(error = %err, job_id = %id, "job read failed");
            Err(ApiError::internal())
        }
    }
}
