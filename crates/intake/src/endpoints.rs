//! The endpoint routes (SPEC section 9): register, read, list, change,
//! delete, rotate the signing secret, disable and enable. An endpoint's
//! secret is shown when it is created and when it is rotated, never again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::{
    DisabledReason, Endpoint, EndpointAuth, EndpointHeaders, EndpointId, EndpointStatus, EventType, Owner,
    QueueArn, SigningSecret, Subscription, TenantId, TenantSecrets,
};
use serde::Serialize;
use store::{EndpointQuery, StoreError};
use utoipa::ToSchema;

use crate::auth::Tenant;
use crate::endpoint_auth::{self, AuthView};
use crate::event_types::MAX_DESCRIPTION_CHARS;
use crate::fields::Fields;
use crate::validate::http_url;
use crate::{ApiError, AppState, FieldError, api_time};

const BODY_LIMIT: usize = 64 * 1024;
/// Most event types one endpoint names.
pub(crate) const MAX_ENDPOINT_TYPES: usize = 100;
/// Longest overlap of a rotation: receivers have a week to switch.
const MAX_OVERLAP: Duration = Duration::from_secs(7 * 24 * 3600);
const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);
const FIELDS: [&str; 7] = [
    "url",
    "description",
    "owner",
    "eventTypes",
    "headers",
    "auth",
    "timeout",
];

/// An endpoint as the API shows it: never its secret, but in the answer
/// that made it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointView {
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    endpoint_id: EndpointId,
    #[schema(format = "uri")]
    url: String,
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    owner: Option<String>,
    /// The types it receives; `["*"]`: every type.
    event_types: Vec<String>,
    /// Its custom headers; a value whose name looks like a credential
    /// (`authorization`, `x-api-key`, `...token`, `...secret`) is shown as
    /// `***`: it is write-only.
    headers: BTreeMap<String, String>,
    /// How deliveries authenticate; every credential shown as `***`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    auth: Option<AuthView>,
    /// How long one delivery may take (`30s`, `15m`); absent: the
    /// processor's `--callback-timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false, example = "30s")]
    timeout: Option<String>,
    #[schema(pattern = "^(enabled|disabled)$")]
    status: &'static str,
    /// Why it is disabled: `manual`, `gone` (it answered 410) or `failing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, pattern = "^(manual|gone|failing)$", required = false)]
    disabled_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime, required = false)]
    disabled_at: Option<String>,
    /// Since when every delivery attempt has failed; absent while healthy.
    /// Past the processor's `--endpoint-disable-after` (default 5 days) it
    /// is disabled with the reason `failing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime, required = false)]
    failing_since: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// Its signing secret (`whsec_...`): in the answer that created it only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, pattern = "^whsec_", required = false)]
    secret: Option<String>,
}

impl EndpointView {
    fn of(endpoint: &Endpoint) -> Self {
        let (status, disabled_reason, disabled_at) = match endpoint.status {
            EndpointStatus::Enabled => ("enabled", None, None),
            EndpointStatus::Disabled { reason, at } => {
                ("disabled", Some(reason.as_str()), Some(api_time(at)))
            }
        };
        Self {
            endpoint_id: endpoint.id,
            url: endpoint.url.to_string(),
            description: endpoint.description.clone(),
            owner: endpoint.owner.as_ref().map(|o| o.as_str().to_owned()),
            event_types: endpoint.event_types.names(),
            headers: endpoint.headers.shown(),
            auth: endpoint.auth.as_ref().map(AuthView::of),
            timeout: endpoint.timeout.map(endpoint_auth::shown_timeout),
            status,
            disabled_reason,
            disabled_at,
            failing_since: endpoint.failing_since.map(api_time),
            created_at: api_time(endpoint.created_at),
            updated_at: api_time(endpoint.updated_at),
            secret: None,
        }
    }
}

/// What `POST /v1/endpoints` accepts (documentation; `Fields` parses it).
#[derive(ToSchema)]
#[schema(as = EndpointRequest)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct EndpointRequestSchema {
    /// Absolute http(s) URL; the same SSRF guard as a job's callbackUrl.
    #[schema(format = "uri", max_length = 2048, example = "https://client.example/hooks")]
    url: String,
    #[schema(max_length = 1000)]
    description: Option<String>,
    /// A free string grouping endpoints (a company, a user): events with an
    /// owner go to that owner's endpoints only.
    #[schema(min_length = 1, max_length = 256)]
    owner: Option<String>,
    /// Registered event type names, or `["*"]` for every type.
    #[schema(min_items = 1, max_items = 100, example = json!(["invoice.paid"]))]
    event_types: Vec<String>,
    /// Request headers every delivery carries; not `webhook-*`,
    /// `content-type`, `content-length`, `host`, `user-agent` or hop-by-hop
    /// headers.
    #[schema(value_type = Option<Object>, example = json!({"x-team": "billing"}))]
    headers: Option<BTreeMap<String, String>>,
    /// How deliveries authenticate (SPEC section 10); `null`: none.
    #[schema(nullable = true)]
    auth: Option<AuthView>,
    /// How long one delivery may take, `1s` to `15m` (`30s`, `5m`);
    /// `null` or absent: the processor's `--callback-timeout`.
    #[schema(value_type = Option<String>, example = "30s")]
    timeout: Option<String>,
}

/// What `PATCH /v1/endpoints/{id}` accepts: any of these, the rest unchanged.
#[derive(ToSchema)]
#[schema(as = EndpointPatch)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct EndpointPatchSchema {
    #[schema(format = "uri", max_length = 2048, nullable = false)]
    url: Option<String>,
    #[schema(max_length = 1000)]
    description: Option<String>,
    /// `null` removes the owner.
    #[schema(min_length = 1, max_length = 256)]
    owner: Option<String>,
    #[schema(min_items = 1, max_items = 100, nullable = false)]
    event_types: Option<Vec<String>>,
    /// Replaces every custom header.
    #[schema(value_type = Option<Object>)]
    headers: Option<BTreeMap<String, String>>,
    /// Replaces the auth; `null` removes it. A credential given as `***`
    /// keeps the stored one (of the same auth type).
    #[schema(nullable = true)]
    auth: Option<AuthView>,
    /// `null`: back to the processor's `--callback-timeout`.
    #[schema(value_type = Option<String>, example = "30s")]
    timeout: Option<String>,
}

/// What `POST /v1/endpoints/{id}/secret/rotate` accepts.
#[derive(ToSchema)]
#[schema(as = RotateRequest)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct RotateRequestSchema {
    /// How long the old secret keeps signing beside the new one, as `24h`,
    /// `30m`, `0s`; at most 7 days; default 24 hours.
    #[schema(example = "24h", pattern = "^[0-9]+ ?[a-z]+$")]
    overlap: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RotatedSecret {
    /// The new signing secret (`whsec_...`), shown this once.
    #[schema(pattern = "^whsec_")]
    secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointList {
    data: Vec<EndpointView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$", required = false)]
    next_cursor: Option<EndpointId>,
}

/// The fields an endpoint request may set, validated.
#[derive(Default)]
struct Changes {
    url: Option<url::Url>,
    description: Option<String>,
    /// `Some(None)`: remove the owner.
    owner: Option<Option<Owner>>,
    event_types: Option<Subscription>,
    headers: Option<EndpointHeaders>,
    /// `Some(None)`: remove the auth. Credentials may still be `***`.
    auth: Option<Option<EndpointAuth>>,
    /// `Some(None)`: the processor's default.
    timeout: Option<Option<Duration>>,
}

/// Reads the endpoint fields of `fields`, checking named event types
/// against the tenant's registered ones and the URL against the SSRF guard.
async fn changes(
    state: &AppState,
    tenant: &TenantId,
    mut fields: Fields,
    creating: bool,
) -> Result<Changes, ApiError> {
    let mut changes = Changes::default();
    if creating || fields.has("url") {
        changes.url = endpoint_url(fields.take("url"), &mut fields.errors);
    }
    changes.description = fields.string("description", false, MAX_DESCRIPTION_CHARS);
    if fields.has("owner") {
        changes.owner = match fields.take("owner") {
            Some(serde_json::Value::Null) | None => Some(None),
            Some(serde_json::Value::String(owner)) => match Owner::parse(&owner) {
                Ok(owner) => Some(Some(owner)),
                Err(err) => {
                    fields.error("owner", err.to_string());
                    None
                }
            },
            Some(_) => {
                fields.error("owner", "must be a string or null");
                None
            }
        };
    }
    let names = match fields.take("eventTypes") {
        None if creating => {
            fields.error(
                "eventTypes",
                "is required: registered event type names, or [\"*\"] for every type",
            );
            None
        }
        None => None,
        Some(serde_json::Value::Null) => {
            fields.error(
                "eventTypes",
                "must be an array of event type names, or [\"*\"] for every type",
            );
            None
        }
        Some(value) => fields.strings_of("eventTypes", value, MAX_ENDPOINT_TYPES),
    };
    if let Some(headers) = fields.string_map("headers") {
        match EndpointHeaders::parse(headers) {
            Ok(headers) => changes.headers = Some(headers),
            Err(err) => fields.error("headers", err.to_string()),
        }
    }
    changes.auth = endpoint_auth::auth(&mut fields);
    changes.timeout = endpoint_auth::timeout(&mut fields);
    if let Some(names) = names {
        changes.event_types = subscription(state, tenant, &names, &mut fields).await?;
    }
    let changes = fields.finish(changes)?;
    let token_url = match &changes.auth {
        Some(Some(EndpointAuth::OAuth2(grant))) => Some(&grant.token_url),
        _ => None,
    };
    let http_url = changes.url.as_ref().filter(|url| QueueArn::of_url(url).is_none());
    for (field, url) in [("url", http_url), ("auth.tokenUrl", token_url)] {
        let Some(url) = url else { continue };
        match state
            .config
            .callback_network
            .check_url_with(url, &state.config.callback_lookups)
            .await
        {
            Ok(()) => {}
            Err(netguard::CheckError::Blocked(blocked)) => {
                return Err(ApiError::validation(vec![FieldError::new(
                    field,
                    blocked.to_string(),
                )]));
            }
            Err(netguard::CheckError::Lookup(unfinished)) => {
                return Err(ApiError::lookup_unfinished(&unfinished));
            }
        }
    }
    Ok(changes)
}

/// An endpoint's `url`: an http(s) URL, or an SQS queue's ARN
/// (`arn:aws:sqs:REGION:ACCOUNT:QUEUE`), kept as a URL of scheme `arn`.
fn endpoint_url(value: Option<serde_json::Value>, errors: &mut Vec<FieldError>) -> Option<url::Url> {
    match value {
        Some(serde_json::Value::String(text)) if QueueArn::is_arn(&text) => match QueueArn::parse(&text) {
            Ok(queue) => Some(queue.to_url()),
            Err(err) => {
                errors.push(FieldError::new("url", format!("an SQS queue's ARN {err}")));
                None
            }
        },
        value => http_url("url", value, errors),
    }
}

/// `["*"]`, or registered type names.
async fn subscription(
    state: &AppState,
    tenant: &TenantId,
    names: &[String],
    fields: &mut Fields,
) -> Result<Option<Subscription>, ApiError> {
    if names.is_empty() {
        fields.error(
            "eventTypes",
            "must name at least one event type, or [\"*\"] for every type",
        );
        return Ok(None);
    }
    if names.iter().any(|n| n == "*") {
        if names.len() > 1 {
            fields.error("eventTypes", "\"*\" (every type) stands alone");
            return Ok(None);
        }
        return Ok(Some(Subscription::All));
    }
    let registered: BTreeSet<EventType> = state
        .store
        .list_event_types(tenant)
        .await
        .map_err(|err| ApiError::from_store(err, "list event types"))?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let before = fields.errors.len();
    let mut types = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        match EventType::parse(name) {
            Ok(t) if registered.contains(&t) => {
                types.insert(t);
            }
            Ok(_) => fields.error(
                format!("eventTypes[{i}]"),
                format!(
                    "{} is not a registered event type (PUT /v1/event-types/{{name}})",
                    crate::error::echo(name)
                ),
            ),
            Err(err) => fields.error(format!("eventTypes[{i}]"), err.to_string()),
        }
    }
    Ok((fields.errors.len() == before).then_some(Subscription::Only(types)))
}

/// `changes` made to `endpoint`: refused (422) when a credential given as
/// `***` has no stored one to keep, or when the auth sets a header the
/// custom headers set too.
fn apply(endpoint: &mut Endpoint, changes: Changes) -> Result<(), ApiError> {
    if let Some(url) = changes.url {
        endpoint.url = url;
    }
    if let Some(description) = changes.description {
        endpoint.description = description;
    }
    if let Some(owner) = changes.owner {
        endpoint.owner = owner;
    }
    if let Some(types) = changes.event_types {
        endpoint.event_types = types;
    }
    if let Some(headers) = changes.headers {
        endpoint.headers = headers;
    }
    if let Some(auth) = changes.auth {
        endpoint.auth = auth
            .map(|auth| {
                auth.keeping_hidden(endpoint.auth.as_ref())
                    .and_then(EndpointAuth::checked)
                    .map_err(|err| {
                        ApiError::validation(vec![FieldError::new(
                            format!("auth.{}", err.field),
                            err.problem,
                        )])
                    })
            })
            .transpose()?;
    }
    if let Some(timeout) = changes.timeout {
        endpoint.timeout = timeout;
    }
    if QueueArn::of_url(&endpoint.url).is_some() {
        // A queue is reached with the processor's AWS credentials, and a
        // message carries only the webhook-* attributes.
        let field = if endpoint.auth.is_some() {
            Some("auth")
        } else if !endpoint.headers.as_map().is_empty() {
            Some("headers")
        } else {
            None
        };
        if let Some(field) = field {
            return Err(ApiError::validation(vec![FieldError::new(
                field,
                "applies to http(s) endpoints only: an SQS queue is sent to with the processor's AWS \
                 credentials, its messages carrying the webhook-* values as attributes",
            )]));
        }
    }
    if let Some(auth) = &endpoint.auth
        && endpoint
            .headers
            .iter()
            .any(|(name, _)| name == auth.header_name())
    {
        return Err(ApiError::validation(vec![FieldError::new(
            "headers",
            format!(
                "sets {:?}, which the endpoint's auth sets: give it in one place",
                auth.header_name()
            ),
        )]));
    }
    Ok(())
}

fn with_location(status: StatusCode, view: EndpointView) -> Response {
    let id = view.endpoint_id;
    let mut response = (status, Json(view)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("/v1/endpoints/{id}")) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `POST /v1/endpoints`.
#[utoipa::path(
    post,
    path = "/v1/endpoints",
    operation_id = "createEndpoint",
    tag = "endpoints",
    summary = "Register an endpoint",
    description = "Registers an endpoint for the tenant's events. The answer carries its signing secret \
        (`whsec_...`), shown only here and in a rotation's answer. Events already accepted do not \
        reach it; new ones of its types (and owner, when the event names one) do.",
    request_body(content = EndpointRequestSchema, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = EndpointView,
            headers(("Location" = String, description = "`/v1/endpoints/{endpointId}`"))),
        (status = 400, description = "The body is not JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 413, description = "The body is over 64 KiB", body = ApiError, content_type = "application/problem+json"),
        (status = 415, description = "The body is not labelled JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "A bad or blocked url, an unregistered event type, a reserved header, \
            an unknown field, a bad auth or timeout, a header the auth sets too", body = ApiError,
            content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (nothing was written), the url's host could \
            not be looked up in time, or the outcome is unknown", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create_endpoint(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let fields = Fields::parse(&headers, body, BODY_LIMIT, &FIELDS)?;
    let changes = changes(&state, &tenant, fields, true).await?;
    let Some(url) = changes.url.clone() else {
        return Err(ApiError::validation(vec![FieldError::new("url", "is required")]));
    };
    let now = state.clock.now();
    let (id, secret) = {
        let mut rng = rand::rng();
        (
            EndpointId::generate(now, &mut rng),
            SigningSecret::generate(&mut rng),
        )
    };
    let mut endpoint = Endpoint {
        id,
        tenant,
        url,
        description: String::new(),
        owner: None,
        event_types: Subscription::All,
        headers: EndpointHeaders::default(),
        auth: None,
        timeout: None,
        status: EndpointStatus::Enabled,
        secrets: TenantSecrets::new(secret.clone()),
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    apply(&mut endpoint, changes)?;
    crate::create_resolving("create endpoint", &endpoint.id, || {
        state.store.create_endpoint(&endpoint)
    })
    .await?;
    tracing::info!(endpoint_id = %endpoint.id, "endpoint registered");
    let mut view = EndpointView::of(&endpoint);
    view.secret = Some(secret.expose_secret());
    Ok(with_location(StatusCode::CREATED, view))
}

fn no_such_endpoint(given: &str) -> ApiError {
    ApiError::not_found(format!("no endpoint {}", crate::error::echo(given)))
}

fn endpoint_id_from(path: Result<Path<String>, PathRejection>) -> Result<EndpointId, ApiError> {
    let Path(given) = path.map_err(|_| ApiError::not_found("no such endpoint"))?;
    given.parse().map_err(|_| no_such_endpoint(&given))
}

async fn read(state: &AppState, tenant: &TenantId, id: EndpointId) -> Result<(Endpoint, u64), ApiError> {
    state
        .store
        .get_endpoint(tenant, id)
        .await
        .map_err(|err| ApiError::from_store(err, "read endpoint"))?
        .ok_or_else(|| no_such_endpoint(&id.to_string()))
}

/// Reads the endpoint, changes it with `change` and writes it back if no
/// one else wrote in between (else again, from what they wrote). A write
/// whose answer was lost is read back: finding our change there, it landed.
async fn update<F>(
    state: &AppState,
    tenant: &TenantId,
    id: EndpointId,
    change: F,
) -> Result<Endpoint, ApiError>
where
    F: Fn(&mut Endpoint) -> Result<(), ApiError>,
{
    for _ in 0..5 {
        let (mut endpoint, version) = read(state, tenant, id).await?;
        change(&mut endpoint)?;
        endpoint.updated_at = state.clock.now();
        match state.store.update_endpoint(&endpoint, version).await {
            Ok(true) => return Ok(endpoint),
            Ok(false) => {}
            Err(StoreError::Indeterminate(reason)) => {
                tracing::warn!(%reason, endpoint_id = %id, "update endpoint: outcome unknown, reading it back");
                let (stored, _) = read(state, tenant, id).await?;
                if stored == endpoint {
                    return Ok(endpoint);
                }
            }
            Err(err) => return Err(ApiError::from_store(err, "update endpoint")),
        }
    }
    Err(ApiError::unavailable())
}

/// `GET /v1/endpoints/{endpoint_id}`.
#[utoipa::path(
    get,
    path = "/v1/endpoints/{endpoint_id}",
    operation_id = "getEndpoint",
    tag = "endpoints",
    summary = "Read an endpoint",
    params(("endpoint_id" = String, Path, description = "The endpoint's id (`endpointId`)")),
    responses(
        (status = 200, description = "The endpoint (without its secret)", body = EndpointView),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such endpoint for this tenant", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get_endpoint(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EndpointView>, ApiError> {
    let id = endpoint_id_from(path)?;
    let (endpoint, _) = read(&state, &tenant, id).await?;
    Ok(Json(EndpointView::of(&endpoint)))
}

/// `PATCH /v1/endpoints/{endpoint_id}`.
#[utoipa::path(
    patch,
    path = "/v1/endpoints/{endpoint_id}",
    operation_id = "updateEndpoint",
    tag = "endpoints",
    summary = "Change an endpoint",
    description = "Changes the fields given; the others stay. The secret changes only by rotation.",
    params(("endpoint_id" = String, Path, description = "The endpoint's id (`endpointId`)")),
    request_body(content = EndpointPatchSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "The endpoint as changed", body = EndpointView),
        (status = 400, description = "The body is not JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such endpoint for this tenant", body = ApiError, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 64 KiB", body = ApiError, content_type = "application/problem+json"),
        (status = 415, description = "The body is not labelled JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "A bad field or an unknown one", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable, the url's host could not be looked up in time, \
            or the outcome is unknown (the same change again is safe)", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn update_endpoint(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EndpointView>, ApiError> {
    let id = endpoint_id_from(path)?;
    let fields = Fields::parse(&headers, body, BODY_LIMIT, &FIELDS)?;
    let changes = changes(&state, &tenant, fields, false).await?;
    let endpoint = update(&state, &tenant, id, |endpoint| {
        apply(
            endpoint,
            Changes {
                url: changes.url.clone(),
                description: changes.description.clone(),
                owner: changes.owner.clone(),
                event_types: changes.event_types.clone(),
                headers: changes.headers.clone(),
                auth: changes.auth.clone(),
                timeout: changes.timeout,
            },
        )
    })
    .await?;
    tracing::info!(endpoint_id = %id, "endpoint changed");
    Ok(Json(EndpointView::of(&endpoint)))
}

/// `DELETE /v1/endpoints/{endpoint_id}`.
#[utoipa::path(
    delete,
    path = "/v1/endpoints/{endpoint_id}",
    operation_id = "deleteEndpoint",
    tag = "endpoints",
    summary = "Delete an endpoint",
    description = "Its deliveries not yet made settle `failed` with the reason `endpointDeleted` when \
        they next fall due; nothing more is sent to it.",
    params(("endpoint_id" = String, Path, description = "The endpoint's id (`endpointId`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such endpoint for this tenant", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable, or the outcome is unknown (retrying is safe)",
            body = ApiError, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn delete_endpoint(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = endpoint_id_from(path)?;
    let existed = state
        .store
        .delete_endpoint(&tenant, id)
        .await
        .map_err(|err| ApiError::from_store(err, "delete endpoint"))?;
    if existed {
        tracing::info!(endpoint_id = %id, "endpoint deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_such_endpoint(&id.to_string()))
    }
}

/// `GET /v1/endpoints?owner=&limit=&cursor=`.
#[utoipa::path(
    get,
    path = "/v1/endpoints",
    operation_id = "listEndpoints",
    tag = "endpoints",
    summary = "List endpoints, oldest first",
    description = "The tenant's endpoints in the order they were registered, one page at a time. A page \
        filtered by owner may hold fewer than `limit` and still carry `nextCursor`.",
    params(
        ("owner" = Option<String>, Query, min_length = 1, max_length = 256, description = "Only this owner's endpoints"),
        ("limit" = Option<u8>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100; default 50"),
        ("cursor" = Option<String>, Query, pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$",
            description = "`nextCursor` from the previous page"),
    ),
    responses(
        (status = 200, description = "One page of endpoints", body = EndpointList),
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
pub(crate) async fn list_endpoints(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    RawQuery(query): RawQuery,
) -> Result<Json<EndpointList>, ApiError> {
    let mut parsed = EndpointQuery {
        owner: None,
        after: None,
        limit: crate::DEFAULT_PAGE,
    };
    let mut errors = Vec::new();
    crate::query::each(
        query.as_deref().unwrap_or(""),
        &mut errors,
        |key, value, errors| match key {
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
                "unknown parameter; expected owner, limit or cursor",
            )),
        },
    );
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let page = state
        .store
        .list_endpoints(&tenant, &parsed)
        .await
        .map_err(|err| ApiError::from_store(err, "list endpoints"))?;
    Ok(Json(EndpointList {
        data: page.endpoints.iter().map(EndpointView::of).collect(),
        next_cursor: page.next,
    }))
}

/// `POST /v1/endpoints/{endpoint_id}/secret/rotate`.
#[utoipa::path(
    post,
    path = "/v1/endpoints/{endpoint_id}/secret/rotate",
    operation_id = "rotateEndpointSecret",
    tag = "endpoints",
    summary = "Rotate an endpoint's signing secret",
    description = "A new secret signs every delivery from now on; during the overlap the old one signs \
        too (both signatures are sent), so the receiver can switch without losing a delivery.",
    params(("endpoint_id" = String, Path, description = "The endpoint's id (`endpointId`)")),
    request_body(content = Option<RotateRequestSchema>, content_type = "application/json"),
    responses(
        (status = 200, description = "The new secret, shown this once", body = RotatedSecret),
        (status = 400, description = "The body is not JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such endpoint for this tenant", body = ApiError, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 64 KiB", body = ApiError, content_type = "application/problem+json"),
        (status = 415, description = "The body is not labelled JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "A bad overlap or an unknown field", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable, or the outcome is unknown", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let id = endpoint_id_from(path)?;
    let mut fields = Fields::parse_optional(&headers, body, BODY_LIMIT, &["overlap"])?;
    let overlap = match fields.string("overlap", false, 32) {
        None => Some(DEFAULT_OVERLAP),
        Some(text) => match humantime::parse_duration(&text) {
            Ok(overlap) if overlap <= MAX_OVERLAP => Some(overlap),
            Ok(_) => {
                fields.error("overlap", "must be at most 7 days");
                None
            }
            Err(_) => {
                fields.error("overlap", "must be a duration such as 24h, 30m or 0s");
                None
            }
        },
    };
    let overlap = fields.finish(overlap)?.unwrap_or(DEFAULT_OVERLAP);
    let next = SigningSecret::generate(&mut rand::rng());
    let now = state.clock.now();
    update(&state, &tenant, id, |endpoint| {
        endpoint.secrets = endpoint.secrets.rotated(next.clone(), now, overlap);
        Ok(())
    })
    .await?;
    tracing::info!(endpoint_id = %id, overlap_secs = overlap.as_secs(), "endpoint secret rotated");
    Ok(Json(RotatedSecret {
        secret: next.expose_secret(),
    }))
}

/// `POST /v1/endpoints/{endpoint_id}/disable`.
#[utoipa::path(
    post,
    path = "/v1/endpoints/{endpoint_id}/disable",
    operation_id = "disableEndpoint",
    tag = "endpoints",
    summary = "Disable an endpoint",
    description = "No new events go to it, and its deliveries not yet made settle `failed` with the reason \
        `endpointDisabled` when they next fall due.",
    params(("endpoint_id" = String, Path, description = "The endpoint's id (`endpointId`)")),
    responses(
        (status = 200, description = "The endpoint, disabled", body = EndpointView),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such endpoint for this tenant", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable, or the outcome is unknown (retrying is safe)",
            body = ApiError, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn disable_endpoint(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EndpointView>, ApiError> {
    let id = endpoint_id_from(path)?;
    let now = state.clock.now();
    let endpoint = update(&state, &tenant, id, |endpoint| {
        endpoint.disable(DisabledReason::Manual, now);
        Ok(())
    })
    .await?;
    tracing::info!(endpoint_id = %id, "endpoint disabled");
    Ok(Json(EndpointView::of(&endpoint)))
}

/// `POST /v1/endpoints/{endpoint_id}/enable`.
#[utoipa::path(
    post,
    path = "/v1/endpoints/{endpoint_id}/enable",
    operation_id = "enableEndpoint",
    tag = "endpoints",
    summary = "Enable an endpoint",
    description = "New events of its types go to it again. Deliveries that failed while it was disabled \
        stay failed; redrive them with `POST /v1/endpoints/{endpointId}/recover`.",
    params(("endpoint_id" = String, Path, description = "The endpoint's id (`endpointId`)")),
    responses(
        (status = 200, description = "The endpoint, enabled", body = EndpointView),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such endpoint for this tenant", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable, or the outcome is unknown (retrying is safe)",
            body = ApiError, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn enable_endpoint(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EndpointView>, ApiError> {
    let id = endpoint_id_from(path)?;
    let now = state.clock.now();
    let endpoint = update(&state, &tenant, id, |endpoint| {
        endpoint.enable(now);
        Ok(())
    })
    .await?;
    tracing::info!(endpoint_id = %id, "endpoint enabled");
    Ok(Json(EndpointView::of(&endpoint)))
}

/// Most failed jobs one recover reads; past them it answers with `more`.
const MAX_RECOVER_EXAMINED: usize = 10_000;

/// What `POST /v1/endpoints/{id}/recover` accepts.
#[derive(ToSchema)]
#[schema(as = RecoverRequest)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct RecoverRequestSchema {
    /// Deliveries of events published at or after this time are redriven.
    #[schema(format = DateTime, example = "2026-12-01T00:00:00Z")]
    since: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Recovered {
    /// Failed deliveries to the endpoint now due again.
    redriven: u64,
    /// The dead letter holds more than one call reads: call again (with
    /// the same `since`) to go on.
    more: bool,
}

/// `POST /v1/endpoints/{endpoint_id}/recover`.
#[utoipa::path(
    post,
    path = "/v1/endpoints/{endpoint_id}/recover",
    operation_id = "recoverEndpoint",
    tag = "endpoints",
    summary = "Redrive an endpoint's failed deliveries",
    description = "Every failed delivery to the endpoint of an event published at or after `since` is due \
        again for a fresh round of attempts (read from the dead letter, newest first). Enable a disabled \
        endpoint first.",
    params(("endpoint_id" = String, Path, description = "The endpoint's id (`endpointId`)")),
    request_body(content = RecoverRequestSchema, content_type = "application/json"),
    responses(
        (status = 202, description = "Redriven", body = Recovered),
        (status = 400, description = "The body is not JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such endpoint for this tenant", body = ApiError, content_type = "application/problem+json"),
        (status = 409, description = "The endpoint is disabled", body = ApiError, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 64 KiB", body = ApiError, content_type = "application/problem+json"),
        (status = 415, description = "The body is not labelled JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "No or a bad `since`, or an unknown field", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (what was redriven stays so; calling again \
            is safe)", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn recover_endpoint(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = endpoint_id_from(path)?;
    let mut fields = Fields::parse(&headers, body, BODY_LIMIT, &["since"])?;
    let since = fields
        .string("since", true, 64)
        .and_then(|text| match chrono::DateTime::parse_from_rfc3339(&text) {
            Ok(t) => Some(t.with_timezone(&chrono::Utc)),
            Err(_) => {
                fields.error("since", "must be an RFC 3339 time such as 2026-12-01T00:00:00Z");
                None
            }
        });
    let Some(since) = fields.finish(since)? else {
        return Err(ApiError::validation(vec![FieldError::new(
            "since",
            "is required",
        )]));
    };
    let (endpoint, _) = read(&state, &tenant, id).await?;
    if !endpoint.is_enabled() {
        return Err(ApiError::conflict(format!(
            "endpoint {id} is disabled; enable it first, or its deliveries fail again at once"
        )));
    }
    let now = state.clock.now();
    let (mut redriven, mut examined, mut after) = (0u64, 0usize, None);
    let more = loop {
        let page = state
            .store
            .list_jobs(
                &tenant,
                &store::ListQuery {
                    status: Some(domain::JobStatus::Failed),
                    after,
                    limit: store::MAX_PAGE,
                },
            )
            .await
            .map_err(|err| ApiError::from_store(err, "list failed deliveries"))?;
        let mut older = false;
        for job in &page.jobs {
            examined += 1;
            if job.created_at() < since {
                older = true;
                break;
            }
            if job.target() != &domain::Target::Endpoint(id) {
                continue;
            }
            match state.store.redrive(&tenant, job.id(), now).await {
                Ok(store::Redrive::Requeued(_)) => redriven += 1,
                // Redriven or changed meanwhile: not ours to count.
                Ok(store::Redrive::NotFailed(_) | store::Redrive::NotFound) => {}
                Err(err) => return Err(ApiError::from_store(err, "redrive delivery")),
            }
        }
        match page.next {
            _ if older => break false,
            None => break false,
            Some(_) if examined >= MAX_RECOVER_EXAMINED => break true,
            Some(next) => after = Some(next),
        }
    };
    if redriven > 0 {
        state.wake_processor();
    }
    tracing::info!(endpoint_id = %id, redriven, examined, more, "endpoint recovered");
    Ok((StatusCode::ACCEPTED, Json(Recovered { redriven, more })).into_response())
}
