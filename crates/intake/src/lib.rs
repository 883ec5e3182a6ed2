//! The intake HTTP API: accepts jobs, answers job reads and health checks.
//! The only crate that knows HTTP status codes of the API.
//!
//! `router()` builds the axum app; `run()` serves it until shutdown.

mod auth;
mod endpoint_auth;
mod endpoints;
mod error;
mod event_types;
mod events;
mod fields;
mod idempotency;
mod jobs;
mod openapi;
mod query;
mod sources;
mod sync;
mod validate;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, Request};
use axum::routing::{get, post, put};
use domain::Clock;
use netguard::{NetPolicy, Resolver};
use openapi::Health;
use store::Store;
use telemetry::Metrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};

pub use auth::KEY_CACHE_TTL;
pub use error::{ApiError, FieldError};
pub use events::{MAX_EVENT_BODY_BYTES, MAX_EVENT_PAYLOAD_BYTES, MAX_INLINE_PAYLOAD_BYTES};
pub use idempotency::IDEMPOTENCY_WINDOW;
pub use jobs::DEFAULT_PAGE;
pub use openapi::document as openapi_document;
pub use server::Limits as ServerLimits;
pub use sources::MAX_INGEST_BODY_BYTES;
pub use sync::{AttemptNow, DEFAULT_SYNC_TIMEOUT, MAX_SYNC_TIMEOUT};
pub use validate::{MAX_BODY_BYTES, MAX_METADATA_BYTES, MAX_PROVIDERS};

/// What the intake needs to run.
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    /// Names a job may ask for.
    pub providers: Vec<String>,
    /// Which addresses a `callbackUrl` may point at (the SSRF guard).
    pub callback_network: Arc<NetPolicy>,
    /// How a `callbackUrl`'s host name is looked up for that check, and
    /// how long it may take: the system resolver on lookup threads of its
    /// own (not tokio's blocking pool, which store reads use), 2 s.
    pub callback_lookups: Resolver,
    /// Told of every accepted (or redriven) job, so a processor in the same process can
    /// start at once instead of at its next tick.
    pub on_job_created: Option<Arc<tokio::sync::Notify>>,
    /// What `GET /metrics` serves; shared with a processor in the same
    /// process, so one scrape sees both.
    pub metrics: Arc<Metrics>,
    /// Makes the first attempt of a synchronous publish (`?sync=true`)
    /// here; without it, a synchronous publish waits for a processor's.
    pub attempt_now: Option<Arc<dyn AttemptNow>>,
    /// Where event payloads over [`blobs::INLINE_THRESHOLD_BYTES`] are
    /// kept (SPEC section 13); without one, payloads over
    /// [`MAX_INLINE_PAYLOAD_BYTES`] are refused (413).
    pub blobs: Option<Arc<dyn blobs::BlobStore>>,
}

impl std::fmt::Debug for dyn AttemptNow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttemptNow")
    }
}

impl IntakeConfig {
    pub fn new(providers: Vec<String>) -> Self {
        Self {
            providers,
            callback_network: Arc::new(NetPolicy::strict()),
            callback_lookups: Resolver::system(),
            on_job_created: None,
            metrics: Arc::default(),
            attempt_now: None,
            blobs: None,
        }
    }

    /// Keeps large event payloads in `blobs`.
    pub fn with_blobs(mut self, blobs: Option<Arc<dyn blobs::BlobStore>>) -> Self {
        self.blobs = blobs;
        self
    }

    /// Counts into (and serves) `metrics` instead of a registry of its own.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Replaces the strict default SSRF policy.
    pub fn with_callback_network(mut self, policy: Arc<NetPolicy>) -> Self {
        self.callback_network = policy;
        self
    }

    /// Looks callback hosts up with `resolver` (a test's that never answers,
    /// or another time limit).
    pub fn with_callback_lookups(mut self, resolver: Resolver) -> Self {
        self.callback_lookups = resolver;
        self
    }

    pub fn waking(mut self, processor: Arc<tokio::sync::Notify>) -> Self {
        self.on_job_created = Some(processor);
        self
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<IntakeConfig>,
    pub keys: Arc<auth::KeyCache>,
    /// How many refused ingest requests each source may still log this minute.
    pub rejections: Arc<sources::RejectionBudget>,
    /// `GET /openapi.json`, rendered once.
    pub openapi: axum::body::Bytes,
}

impl AppState {
    /// Tells a processor in the same process that there is new work.
    pub(crate) fn wake_processor(&self) {
        if let Some(processor) = &self.config.on_job_created {
            processor.notify_one();
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Debug, Clone, Copy)]
struct UlidRequestId;

impl MakeRequestId for UlidRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        ulid::Ulid::new().to_string().parse().ok().map(RequestId::new)
    }
}

/// Every method and path [`router`] serves, kept next to it: the tests
/// check that the OpenAPI document describes exactly these and that the
/// router answers each of them.
pub const ROUTES: [(&str, &str); 33] = [
    ("POST", "/webhook"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{job_id}"),
    ("GET", "/v1/jobs/{job_id}/attempts"),
    ("POST", "/v1/jobs/{job_id}/retry"),
    ("PUT", "/v1/event-types/{name}"),
    ("DELETE", "/v1/event-types/{name}"),
    ("GET", "/v1/event-types"),
    ("POST", "/v1/endpoints"),
    ("GET", "/v1/endpoints"),
    ("GET", "/v1/endpoints/{endpoint_id}"),
    ("PATCH", "/v1/endpoints/{endpoint_id}"),
    ("DELETE", "/v1/endpoints/{endpoint_id}"),
    ("POST", "/v1/endpoints/{endpoint_id}/secret/rotate"),
    ("POST", "/v1/endpoints/{endpoint_id}/disable"),
    ("POST", "/v1/endpoints/{endpoint_id}/enable"),
    ("POST", "/v1/endpoints/{endpoint_id}/recover"),
    ("POST", "/v1/events"),
    ("GET", "/v1/events"),
    ("GET", "/v1/events/{event_id}"),
    ("POST", "/v1/sources"),
    ("GET", "/v1/sources"),
    ("GET", "/v1/sources/{source_id}"),
    ("PATCH", "/v1/sources/{source_id}"),
    ("DELETE", "/v1/sources/{source_id}"),
    ("GET", "/v1/sources/{source_id}/requests"),
    ("GET", "/in/{source_id}"),
    ("POST", "/in/{source_id}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

/// The intake's routes with request ids, body limits and problem+json
/// fallbacks.
pub fn router(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: IntakeConfig) -> Router {
    let openapi = serde_json::to_vec(&openapi::document(&config.providers))
        .expect("a serde_json::Value always serializes");
    config.metrics.expect_rejections(&jobs::REJECTIONS);
    let state = AppState {
        store,
        clock,
        config: Arc::new(config),
        keys: Arc::default(),
        rejections: Arc::default(),
        openapi: openapi.into(),
    };
    let api = Router::new()
        .route("/webhook", post(jobs::create_job))
        .route("/v1/jobs", post(jobs::create_job).get(jobs::list_jobs))
        .route("/v1/jobs/{job_id}", get(jobs::get_job))
        .route("/v1/jobs/{job_id}/attempts", get(jobs::list_attempts))
        .route("/v1/jobs/{job_id}/retry", post(jobs::retry_job))
        .route(
            "/v1/event-types/{name}",
            put(event_types::put_event_type).delete(event_types::delete_event_type),
        )
        .route("/v1/event-types", get(event_types::list_event_types))
        .route(
            "/v1/endpoints",
            post(endpoints::create_endpoint).get(endpoints::list_endpoints),
        )
        .route(
            "/v1/endpoints/{endpoint_id}",
            get(endpoints::get_endpoint)
                .patch(endpoints::update_endpoint)
                .delete(endpoints::delete_endpoint),
        )
        .route(
            "/v1/endpoints/{endpoint_id}/secret/rotate",
            post(endpoints::rotate_secret),
        )
        .route(
            "/v1/endpoints/{endpoint_id}/disable",
            post(endpoints::disable_endpoint),
        )
        .route(
            "/v1/endpoints/{endpoint_id}/enable",
            post(endpoints::enable_endpoint),
        )
        .route(
            "/v1/endpoints/{endpoint_id}/recover",
            post(endpoints::recover_endpoint),
        )
        .route(
            "/v1/events",
            post(events::publish_event)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_EVENT_BODY_BYTES))
                .get(events::list_events),
        )
        .route("/v1/events/{event_id}", get(events::get_event))
        .route(
            "/v1/sources",
            post(sources::create_source).get(sources::list_sources),
        )
        .route(
            "/v1/sources/{source_id}",
            get(sources::get_source)
                .patch(sources::update_source)
                .delete(sources::delete_source),
        )
        .route(
            "/v1/sources/{source_id}/requests",
            get(sources::list_source_requests),
        )
        .route(
            "/in/{source_id}",
            post(sources::ingest)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_INGEST_BODY_BYTES))
                .get(sources::answer_challenge),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    // The web UI, a client of the routes above in this process.
    api.clone()
        .merge(ui::router(api))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                // One info line per request, when its answer is sent, with
                // its status and latency; the request's own fields are the
                // span's (no second line for a 5xx: its status says it).
                .on_response(
                    tower_http::trace::DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(tower_http::LatencyUnit::Millis),
                )
                .on_failure(())
                .make_span_with(|request: &Request<_>| {
                    let id = request
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    // The tenant is filled in once the key is checked, a new
                    // job's id once it is accepted; a job route names it at once.
                    let span = tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id = %id,
                        tenant = tracing::field::Empty,
                        job_id = tracing::field::Empty,
                    );
                    if let Some(job_id) = job_in_path(request.uri().path()) {
                        span.record("job_id", tracing::field::display(job_id));
                    }
                    span
                }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, UlidRequestId))
}

/// The job a `/v1/jobs/{jobId}...` path names, if it is a job id.
fn job_in_path(path: &str) -> Option<domain::JobId> {
    path.strip_prefix("/v1/jobs/")?.split('/').next()?.parse().ok()
}

/// `GET /metrics` alone, for a process without the API (`hookline
/// processor`): the same text the intake serves.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(metrics): State<Arc<Metrics>>| async move { metrics_response(&metrics) }),
        )
        .fallback(|| async { ApiError::not_found("no such route; metrics are at /metrics") })
        .with_state(metrics)
}

fn metrics_response(metrics: &Metrics) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, telemetry::CONTENT_TYPE)],
        metrics.encode(),
    )
        .into_response()
}

/// `GET /metrics`: Prometheus metrics of this process.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "This process's metrics in the OpenMetrics text format Prometheus scrapes: jobs accepted \
        and rejected, due backlog (an estimate), drains, claims, provider fetches and callbacks with \
        latency histograms, dead-lettered jobs, and DynamoDB consumed capacity.",
    responses((status = 200, description = "OpenMetrics text", body = String,
        content_type = "application/openmetrics-text")),
)]
async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    metrics_response(&state.config.metrics)
}

/// Serves `app` on `listener` with [`server_limits`] until `shutdown` is
/// cancelled, then finishes in-flight requests.
pub async fn run(listener: TcpListener, app: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    run_with(listener, app, server_limits(), shutdown).await
}

/// [`run`] with other limits (tests shorten the timeouts).
pub async fn run_with(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    server::serve(listener, app, limits, shutdown).await
}

/// The listener's production limits for the API: `server`'s defaults, and
/// a body declared over the largest any route takes ([`MAX_INGEST_BODY_BYTES`],
/// an inbound source's) refused (413) before it is read or the key is
/// checked; each route then holds its body to its own limit
/// ([`MAX_BODY_BYTES`] for jobs, [`MAX_EVENT_BODY_BYTES`] for events).
pub fn server_limits() -> ServerLimits {
    ServerLimits::default().with_max_body_bytes(MAX_INGEST_BODY_BYTES.max(MAX_EVENT_BODY_BYTES) as u64)
}

pub(crate) fn api_time(t: domain::Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How long a write whose outcome the store could not tell is resolved
/// (re-issued, or read back) before the answer says the outcome is unknown.
pub(crate) const RESOLVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Creates a record whose id is ours (an endpoint, a source): a write
/// whose answer was lost is issued again for [`RESOLVE_WITHIN`], and a
/// `Conflict` then is our own earlier attempt, found written.
pub(crate) async fn create_resolving<Create, Written>(
    operation: &'static str,
    id: &(dyn std::fmt::Display + Sync),
    create: Create,
) -> Result<(), ApiError>
where
    Create: Fn() -> Written,
    Written: std::future::Future<Output = Result<(), store::StoreError>>,
{
    let mut pause = std::time::Duration::from_millis(25);
    let deadline = tokio::time::Instant::now() + RESOLVE_WITHIN;
    loop {
        match create().await {
            Ok(()) => return Ok(()),
            Err(store::StoreError::Indeterminate(reason)) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%reason, %id, "{operation}: outcome unknown, resolving it");
            }
            // Our own id: an earlier attempt of ours wrote it.
            Err(store::StoreError::Conflict) => return Ok(()),
            Err(err) => return Err(ApiError::from_store(err, operation)),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(400));
    }
}

/// `GET /healthz`: the process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    summary = "The process is up",
    responses((status = 200, description = "Always `{\"status\": \"ok\"}`", body = Health)),
)]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// `GET /readyz`: the store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    summary = "The store is reachable",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`", body = Health),
        (status = 503, description = "The store is unavailable", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
)]
async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    match state.store.ping().await {
        Ok(()) => Ok(axum::Json(Health { status: "ready" })),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            Err(ApiError::unavailable())
        }
    }
}
