//! Inbound sources (SPEC section 11): a tenant registers a source, hands
//! its ingest URL (`/in/{sourceId}`) to a provider, and every request the
//! provider sends there is verified over its raw bytes, split into events
//! and published (section 9's fan-out). The ingest routes take no API key:
//! the signature is the authentication, and nothing is stored for a
//! request it does not verify (but the verdict, for the request log).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::record::source::v1::{SplitForm, VerifyForm};
use domain::{
    Challenge, Event, EventId, EventType, HIDDEN, NewEvent, Owner, Source, SourceId, SourceRequest,
    SourceRequestId, Split, TenantId, Verdict, Verify,
};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use store::{IdempotencyRecord, MAX_SOURCE_REQUESTS, StoreError};
use utoipa::ToSchema;

use crate::auth::Tenant;
use crate::events::{Publication, publish_or_replay};
use crate::fields::Fields;
use crate::{ApiError, AppState, FieldError, api_time};

/// Largest body `POST /in/{id}` takes.
pub const MAX_INGEST_BODY_BYTES: usize = 1024 * 1024;
const BODY_LIMIT: usize = 64 * 1024;
const FIELDS: [&str; 6] = ["name", "eventType", "owner", "verify", "challenge", "split"];
/// How many of one request's events are published at once.
const PUBLISH_AT_ONCE: usize = 16;

/// A source as the API shows it: every secret as `***`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SourceView {
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    source_id: SourceId,
    name: String,
    /// Where the provider sends its webhooks: `POST` (and `GET` for the
    /// challenge), no API key.
    #[schema(example = "/in/01J0000000000000000000000")]
    ingest_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    owner: Option<String>,
    /// How requests are verified; the secret shown as `***`.
    #[schema(value_type = VerifySchema)]
    verify: VerifyForm,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = ChallengeSchema, required = false)]
    challenge: Option<ChallengeView>,
    #[schema(value_type = SplitSchema)]
    split: SplitForm,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ChallengeView {
    query_param: String,
}

impl SourceView {
    fn of(source: &Source) -> Self {
        Self {
            source_id: source.id,
            name: source.name.clone(),
            ingest_url: format!("/in/{}", source.id),
            event_type: source.event_type.as_ref().map(|t| t.as_str().to_owned()),
            owner: source.owner.as_ref().map(|o| o.as_str().to_owned()),
            verify: VerifyForm::of(&source.verify, |_| HIDDEN.to_owned()),
            challenge: source.challenge.as_ref().map(|c| ChallengeView {
                query_param: c.query_param.clone(),
            }),
            split: SplitForm::of(&source.split),
            created_at: api_time(source.created_at),
            updated_at: api_time(source.updated_at),
        }
    }
}

/// How a source verifies requests (documentation; the handler parses it).
/// Every secret is write-only: answers show `***`, and a `PATCH` giving
/// `***` keeps the stored one.
#[derive(ToSchema)]
#[schema(as = SourceVerify)]
#[serde(tag = "type")]
#[allow(dead_code)]
pub(crate) enum VerifySchema {
    /// An HMAC of the raw body in `header` (after `prefix`, such as `sha256=`).
    #[serde(rename = "hmac")]
    Hmac {
        #[schema(example = "x-nylas-signature", min_length = 1, max_length = 256)]
        header: String,
        #[schema(pattern = "^(sha1|sha256|sha512)$")]
        algorithm: String,
        #[schema(pattern = "^(hex|base64)$")]
        encoding: String,
        #[schema(min_length = 1, max_length = 64)]
        prefix: Option<String>,
        #[schema(min_length = 1, max_length = 1024)]
        secret: String,
    },
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`), 5 min tolerance.
    #[serde(rename = "standardWebhooks")]
    StandardWebhooks {
        #[schema(pattern = "^whsec_")]
        secret: String,
    },
    /// GitHub: `x-hub-signature-256`.
    #[serde(rename = "github")]
    Github {
        #[schema(min_length = 1, max_length = 1024)]
        secret: String,
    },
    /// Stripe: `stripe-signature` (`t=..,v1=..` over `{t}.{body}`), 5 min tolerance by default.
    #[serde(rename = "stripe", rename_all = "camelCase")]
    Stripe {
        #[schema(min_length = 1, max_length = 1024)]
        secret: String,
        #[schema(minimum = 1, maximum = 3600)]
        tolerance_secs: Option<u64>,
    },
    /// Shopify: `x-shopify-hmac-sha256`.
    #[serde(rename = "shopify")]
    Shopify {
        #[schema(min_length = 1, max_length = 1024)]
        secret: String,
    },
    /// `Authorization: Basic ...`.
    #[serde(rename = "basic")]
    Basic {
        #[schema(min_length = 1, max_length = 256)]
        username: String,
        #[schema(min_length = 1, max_length = 1024)]
        password: String,
    },
    /// A header that must carry exactly `value`.
    #[serde(rename = "header")]
    Header {
        #[schema(min_length = 1, max_length = 256)]
        name: String,
        #[schema(min_length = 1, max_length = 1024)]
        value: String,
    },
}

/// `GET /in/{id}?{queryParam}=X` answers `X` as `text/plain`.
#[derive(ToSchema)]
#[schema(as = SourceChallenge)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub(crate) struct ChallengeSchema {
    #[schema(example = "challenge", min_length = 1, max_length = 64)]
    query_param: String,
}

/// How a body becomes events: JSON pointers (RFC 6901).
#[derive(ToSchema)]
#[schema(as = SourceSplit)]
#[allow(dead_code)]
pub(crate) struct SplitSchema {
    /// An array in the body: one event per item; absent: the body is one event.
    #[schema(example = "/deltas", max_length = 256)]
    items: Option<String>,
    /// Into each item: the provider's event id (the same id within 24 h is ingested once).
    #[schema(example = "/id", max_length = 256)]
    id: Option<String>,
    /// Into each item: the event's type (else the source's `eventType`).
    #[serde(rename = "type")]
    #[schema(example = "/type", max_length = 256)]
    event_type: Option<String>,
}

/// What `POST /v1/sources` accepts (documentation; `Fields` parses it).
#[derive(ToSchema)]
#[schema(as = SourceRequestBody)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct SourceRequestSchema {
    #[schema(min_length = 1, max_length = 128, example = "nylas")]
    name: String,
    /// The type of its events, unless `split.type` names one per item.
    #[schema(example = "nylas.delta")]
    event_type: Option<String>,
    /// Its events' owner: they go to that owner's endpoints only.
    #[schema(min_length = 1, max_length = 256)]
    owner: Option<String>,
    verify: VerifySchema,
    challenge: Option<ChallengeSchema>,
    split: Option<SplitSchema>,
}

/// What `PATCH /v1/sources/{id}` accepts: any of these, the rest unchanged.
#[derive(ToSchema)]
#[schema(as = SourcePatch)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct SourcePatchSchema {
    #[schema(min_length = 1, max_length = 128)]
    name: Option<String>,
    #[schema(nullable = true)]
    event_type: Option<String>,
    #[schema(nullable = true)]
    owner: Option<String>,
    verify: Option<VerifySchema>,
    #[schema(nullable = true)]
    challenge: Option<ChallengeSchema>,
    #[schema(nullable = true)]
    split: Option<SplitSchema>,
}

/// A page of sources.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SourceList {
    data: Vec<SourceView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$", required = false)]
    next_cursor: Option<SourceId>,
}

/// One request a source received, and its verdict.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SourceRequestView {
    #[schema(value_type = String, pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    request_id: SourceRequestId,
    #[schema(format = DateTime)]
    received_at: String,
    body_bytes: u64,
    /// `accepted` (durable: its events fan out) or `rejected` (nothing stored).
    #[schema(pattern = "^(accepted|rejected)$")]
    verdict: &'static str,
    /// The status the provider was answered.
    status: u16,
    /// The events it made (and, for a provider event seen before, the one it made then).
    #[schema(value_type = Vec<String>)]
    event_ids: Vec<EventId>,
    /// How many of its items were provider events ingested before.
    duplicates: u32,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    reason: Option<String>,
}

impl SourceRequestView {
    fn of(request: &SourceRequest) -> Self {
        let (verdict, status, event_ids, duplicates, reason) = match &request.verdict {
            Verdict::Accepted { events, duplicates } => ("accepted", 200, events.clone(), *duplicates, None),
            Verdict::Rejected { status, reason } => {
                ("rejected", *status, Vec::new(), 0, Some(reason.clone()))
            }
        };
        Self {
            request_id: request.id,
            received_at: api_time(request.received_at),
            body_bytes: request.body_bytes,
            verdict,
            status,
            event_ids,
            duplicates,
            reason,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SourceRequestList {
    data: Vec<SourceRequestView>,
}

/// What `POST /in/{id}` answers once the request's events are durable.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Ingested {
    #[schema(value_type = String)]
    request_id: SourceRequestId,
    #[schema(value_type = Vec<String>)]
    event_ids: Vec<EventId>,
    duplicates: u32,
}

/// The settings a request gives; `None`: not given (a `PATCH` keeps it).
#[derive(Default)]
struct Changes {
    name: Option<String>,
    event_type: Option<Option<EventType>>,
    owner: Option<Option<Owner>>,
    verify: Option<VerifyForm>,
    challenge: Option<Option<Challenge>>,
    split: Option<Split>,
}

fn changes(mut fields: Fields, creating: bool) -> Result<Changes, ApiError> {
    let mut out = Changes {
        name: fields.string("name", creating, domain::MAX_SOURCE_NAME),
        ..Changes::default()
    };
    if let Some(name) = &out.name
        && (name.is_empty() || name.chars().any(char::is_control))
    {
        fields.error("name", "must be 1-128 characters with no control characters");
    }
    out.event_type = nullable(&mut fields, "eventType", EventType::parse);
    out.owner = nullable(&mut fields, "owner", Owner::parse);
    match fields.take("verify") {
        None | Some(Value::Null) => {
            if creating {
                fields.error(
                    "verify",
                    "is required: a source without verification would take anyone's requests \
                     (hmac, standardWebhooks, github, stripe, shopify, basic or header)",
                );
            } else if fields.has("verify") {
                fields.error("verify", "cannot be removed");
            }
        }
        Some(value @ Value::Object(_)) => match serde_json::from_value::<VerifyForm>(value) {
            Ok(form) => out.verify = Some(form),
            Err(err) => fields.error("verify", verify_problem(&err.to_string())),
        },
        Some(_) => fields.error("verify", "must be an object with a type"),
    }
    match fields.take("challenge") {
        None => {}
        Some(Value::Null) => out.challenge = Some(None),
        Some(Value::Object(mut object)) => {
            let param = object.remove("queryParam");
            if !object.is_empty() {
                fields.error("challenge", "takes only queryParam");
            }
            match param {
                Some(Value::String(name))
                    if (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic()) =>
                {
                    out.challenge = Some(Some(Challenge { query_param: name }));
                }
                _ => fields.error(
                    "challenge.queryParam",
                    "is required: 1-64 visible ASCII characters",
                ),
            }
        }
        Some(_) => fields.error("challenge", "must be an object with queryParam, or null"),
    }
    match fields.take("split") {
        None | Some(Value::Null) => {
            if !creating && fields.has("split") {
                out.split = Some(Split::default());
            }
        }
        Some(value @ Value::Object(_)) => {
            match serde_json::from_value::<SplitForm>(value)
                .map_err(|e| e.to_string())
                .and_then(|form| form.into_split().map_err(|e| e.to_string()))
            {
                Ok(split) => out.split = Some(split),
                Err(err) => fields.error("split", err),
            }
        }
        Some(_) => fields.error("split", "must be an object of JSON pointers (items, id, type)"),
    }
    fields.finish(out)
}

/// A string field that `null` clears: `None` when absent (or invalid, with
/// the error in `fields`), `Some(None)` when `null`.
fn nullable<T, E: std::fmt::Display>(
    fields: &mut Fields,
    name: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Option<Option<T>> {
    match fields.take(name)? {
        Value::Null => Some(None),
        Value::String(text) => match parse(&text) {
            Ok(value) => Some(Some(value)),
            Err(err) => {
                fields.error(name, err.to_string());
                None
            }
        },
        _ => {
            fields.error(name, "must be a string");
            None
        }
    }
}

/// serde's message for a bad `verify`, without echoing the input.
fn verify_problem(message: &str) -> String {
    if message.contains("unknown variant") {
        "type must be hmac, standardWebhooks, github, stripe, shopify, basic or header".to_owned()
    } else if message.contains("missing field") || message.contains("unknown field") {
        // serde names the field, never a value.
        message.split(" at line").next().unwrap_or(message).to_owned()
    } else {
        "has a field of the wrong type".to_owned()
    }
}

/// `form` with each `***` secret taken from `stored`, when it is of the same type.
fn keeping_hidden(form: VerifyForm, stored: Option<&Verify>) -> Result<VerifyForm, FieldError> {
    /// The fields of a `verify` that hold a secret.
    const SECRETS: [&str; 3] = ["secret", "password", "value"];
    let refuse = || {
        FieldError::new(
            "verify",
            "sends `***` for a secret, but no secret of this type is stored: send the secret",
        )
    };
    let Ok(Value::Object(mut given)) = serde_json::to_value(&form) else {
        return Ok(form);
    };
    if !SECRETS
        .iter()
        .any(|name| given.get(*name).is_some_and(|v| v == HIDDEN))
    {
        return Ok(form);
    }
    let stored = stored
        .map(|verify| serde_json::to_value(VerifyForm::of(verify, |c| c.expose().to_owned())))
        .and_then(Result::ok)
        .filter(|stored| stored.get("type") == given.get("type"))
        .ok_or_else(refuse)?;
    for name in SECRETS {
        if let Some(value) = given.get_mut(name)
            && *value == HIDDEN
        {
            *value = stored.get(name).cloned().ok_or_else(refuse)?;
        }
    }
    serde_json::from_value(Value::Object(given)).map_err(|_| refuse())
}

/// Applies `changes` to `source` and checks the whole.
fn apply(mut source: Source, changes: Changes) -> Result<Source, ApiError> {
    if let Some(name) = changes.name {
        source.name = name;
    }
    if let Some(event_type) = changes.event_type {
        source.event_type = event_type;
    }
    if let Some(owner) = changes.owner {
        source.owner = owner;
    }
    if let Some(challenge) = changes.challenge {
        source.challenge = challenge;
    }
    if let Some(split) = changes.split {
        source.split = split;
    }
    source
        .checked()
        .map_err(|err| ApiError::validation(vec![FieldError::new("", err.to_string())]))
}

fn verify_of(form: VerifyForm, stored: Option<&Verify>) -> Result<Verify, ApiError> {
    let form = keeping_hidden(form, stored).map_err(|err| ApiError::validation(vec![err]))?;
    form.into_verify()
        .map_err(|err| ApiError::validation(vec![FieldError::new("verify", err.to_string())]))
}

fn with_location(status: StatusCode, view: SourceView) -> Response {
    let id = view.source_id;
    let mut response = (status, Json(view)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("/v1/sources/{id}")) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `POST /v1/sources`.
#[utoipa::path(
    post,
    path = "/v1/sources",
    operation_id = "createSource",
    tag = "sources",
    summary = "Register an inbound source",
    description = "A URL (`ingestUrl`) for a provider's webhooks: each request is verified over its raw \
        bytes, split into events and published to the tenant's endpoints (SPEC section 11). A source \
        without `verify` is refused: it would take anyone's requests.",
    request_body(content = SourceRequestSchema, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = SourceView,
            headers(("Location" = String, description = "`/v1/sources/{sourceId}`"))),
        (status = 400, description = "The body is not JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 413, description = "The body is over 64 KiB", body = ApiError, content_type = "application/problem+json"),
        (status = 415, description = "The body is not labelled JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "No or a bad `verify`, a bad pointer, type or owner, no event type, an \
            unknown field", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (nothing was written), or the outcome is unknown",
            body = ApiError, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create_source(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let fields = Fields::parse(&headers, body, BODY_LIMIT, &FIELDS)?;
    let mut changes = changes(fields, true)?;
    let (Some(name), Some(form)) = (changes.name.take(), changes.verify.take()) else {
        return Err(ApiError::validation(vec![FieldError::new(
            "",
            "name and verify are required",
        )]));
    };
    let verify = verify_of(form, None)?;
    let now = state.clock.now();
    let source = apply(
        Source {
            id: SourceId::generate(now, &mut rand::rng()),
            tenant,
            name,
            event_type: None,
            owner: None,
            verify,
            challenge: None,
            split: Split::default(),
            created_at: now,
            updated_at: now,
        },
        changes,
    )?;
    require_registered(&state, &source).await?;
    crate::create_resolving("create source", &source.id, || state.store.create_source(&source)).await?;
    tracing::info!(source_id = %source.id, verify = source.verify.kind(), "source registered");
    Ok(with_location(StatusCode::CREATED, SourceView::of(&source)))
}

/// The source's `eventType` must be registered, as an event's type must be
/// (`POST /v1/events`): endpoints subscribe to registered types.
async fn require_registered(state: &AppState, source: &Source) -> Result<(), ApiError> {
    let Some(event_type) = &source.event_type else {
        return Ok(());
    };
    let registered = state
        .store
        .get_event_type(&source.tenant, event_type)
        .await
        .map_err(|err| ApiError::from_store(err, "read event type"))?;
    if registered.is_none() {
        return Err(ApiError::validation(vec![FieldError::new(
            "eventType",
            format!("{event_type} is not a registered event type (PUT /v1/event-types/{event_type})"),
        )]));
    }
    Ok(())
}

fn no_such_source(given: &str) -> ApiError {
    ApiError::not_found(format!("no source {}", crate::error::echo(given)))
}

fn source_id_from(path: Result<Path<String>, PathRejection>) -> Result<SourceId, ApiError> {
    let Path(given) = path.map_err(|_| ApiError::not_found("no such source"))?;
    given.parse().map_err(|_| no_such_source(&given))
}

/// The tenant's source: another tenant's is as absent as a missing one.
async fn read(state: &AppState, tenant: &TenantId, id: SourceId) -> Result<(Source, u64), ApiError> {
    state
        .store
        .get_source(id)
        .await
        .map_err(|err| ApiError::from_store(err, "read source"))?
        .filter(|(source, _)| &source.tenant == tenant)
        .ok_or_else(|| no_such_source(&id.to_string()))
}

/// `GET /v1/sources/{source_id}`.
#[utoipa::path(
    get,
    path = "/v1/sources/{source_id}",
    operation_id = "getSource",
    tag = "sources",
    summary = "Read a source",
    params(("source_id" = String, Path, description = "The source's id (`sourceId`)")),
    responses(
        (status = 200, description = "The source, its secret shown as `***`", body = SourceView),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such source for this tenant", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get_source(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<SourceView>, ApiError> {
    let id = source_id_from(path)?;
    let (source, _) = read(&state, &tenant, id).await?;
    Ok(Json(SourceView::of(&source)))
}

/// `PATCH /v1/sources/{source_id}`.
#[utoipa::path(
    patch,
    path = "/v1/sources/{source_id}",
    operation_id = "updateSource",
    tag = "sources",
    summary = "Change a source",
    description = "Changes the fields given; the others stay. A `verify` replaces the verification \
        whole; a secret given as `***` keeps the stored one (of the same type), so an edited read can \
        be sent back as it is.",
    params(("source_id" = String, Path, description = "The source's id (`sourceId`)")),
    request_body(content = SourcePatchSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "The source as changed", body = SourceView),
        (status = 400, description = "The body is not JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such source for this tenant", body = ApiError, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 64 KiB", body = ApiError, content_type = "application/problem+json"),
        (status = 415, description = "The body is not labelled JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "A bad field or an unknown one", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable, or the outcome is unknown (the same change \
            again is safe)", body = ApiError, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn update_source(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SourceView>, ApiError> {
    let id = source_id_from(path)?;
    let fields = Fields::parse(&headers, body, BODY_LIMIT, &FIELDS)?;
    let given = changes(fields, false)?;
    for _ in 0..5 {
        let (stored, version) = read(&state, &tenant, id).await?;
        let mut source = stored.clone();
        if let Some(form) = given.verify.clone() {
            source.verify = verify_of(form, Some(&stored.verify))?;
        }
        let mut source = apply(
            source,
            Changes {
                name: given.name.clone(),
                event_type: given.event_type.clone(),
                owner: given.owner.clone(),
                verify: None,
                challenge: given.challenge.clone(),
                split: given.split.clone(),
            },
        )?;
        source.updated_at = state.clock.now();
        if source.event_type != stored.event_type {
            require_registered(&state, &source).await?;
        }
        match state.store.update_source(&source, version).await {
            Ok(true) => {
                tracing::info!(source_id = %id, "source changed");
                return Ok(Json(SourceView::of(&source)));
            }
            Ok(false) => {}
            Err(StoreError::Indeterminate(reason)) => {
                tracing::warn!(%reason, source_id = %id, "update source: outcome unknown, reading it back");
                let (now_stored, _) = read(&state, &tenant, id).await?;
                if now_stored == source {
                    return Ok(Json(SourceView::of(&source)));
                }
            }
            Err(err) => return Err(ApiError::from_store(err, "update source")),
        }
    }
    Err(ApiError::unavailable())
}

/// `DELETE /v1/sources/{source_id}`.
#[utoipa::path(
    delete,
    path = "/v1/sources/{source_id}",
    operation_id = "deleteSource",
    tag = "sources",
    summary = "Delete a source",
    description = "Its ingest URL answers 404 from now on; events it made stay, and their deliveries go on.",
    params(("source_id" = String, Path, description = "The source's id (`sourceId`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such source for this tenant", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable, or the outcome is unknown (retrying is safe)",
            body = ApiError, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn delete_source(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = source_id_from(path)?;
    let existed = state
        .store
        .delete_source(&tenant, id)
        .await
        .map_err(|err| ApiError::from_store(err, "delete source"))?;
    if existed {
        tracing::info!(source_id = %id, "source deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_such_source(&id.to_string()))
    }
}

/// `GET /v1/sources?limit=&cursor=`.
#[utoipa::path(
    get,
    path = "/v1/sources",
    operation_id = "listSources",
    tag = "sources",
    summary = "List sources, oldest first",
    params(
        ("limit" = Option<u8>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100; default 50"),
        ("cursor" = Option<String>, Query, pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$",
            description = "`nextCursor` from the previous page"),
    ),
    responses(
        (status = 200, description = "One page of sources", body = SourceList),
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
pub(crate) async fn list_sources(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    RawQuery(query): RawQuery,
) -> Result<Json<SourceList>, ApiError> {
    let mut limit = crate::DEFAULT_PAGE;
    let mut after = None;
    let mut errors = Vec::new();
    crate::query::each(
        query.as_deref().unwrap_or(""),
        &mut errors,
        |key, value, errors| match key {
            "limit" => crate::query::limit(value, &mut limit, errors),
            "cursor" => match value.parse() {
                Ok(id) => after = Some(id),
                Err(_) => errors.push(FieldError::new(
                    "cursor",
                    "must be a nextCursor value from an earlier page",
                )),
            },
            other => errors.push(FieldError::new(
                other,
                "unknown parameter; expected limit or cursor",
            )),
        },
    );
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let page = state
        .store
        .list_sources(&tenant, after, limit)
        .await
        .map_err(|err| ApiError::from_store(err, "list sources"))?;
    Ok(Json(SourceList {
        data: page.sources.iter().map(SourceView::of).collect(),
        next_cursor: page.next,
    }))
}

/// `GET /v1/sources/{source_id}/requests?limit=`.
#[utoipa::path(
    get,
    path = "/v1/sources/{source_id}/requests",
    operation_id = "listSourceRequests",
    tag = "sources",
    summary = "The requests a source received, newest first",
    description = "Each with its verdict: accepted with the events it made, or rejected and why. No \
        header, signature or secret is kept.",
    params(
        ("source_id" = String, Path, description = "The source's id (`sourceId`)"),
        ("limit" = Option<u8>, Query, minimum = 1, maximum = 100, description = "At most this many, 1 to 100; default 50"),
    ),
    responses(
        (status = 200, description = "The latest requests", body = SourceRequestList),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such source for this tenant", body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "An unknown, repeated or invalid query parameter", body = ApiError,
            content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list_source_requests(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<SourceRequestList>, ApiError> {
    let id = source_id_from(path)?;
    let mut limit = crate::DEFAULT_PAGE;
    let mut errors = Vec::new();
    crate::query::each(
        query.as_deref().unwrap_or(""),
        &mut errors,
        |key, value, errors| match key {
            "limit" => crate::query::limit(value, &mut limit, errors),
            other => errors.push(FieldError::new(other, "unknown parameter; expected limit")),
        },
    );
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    read(&state, &tenant, id).await?;
    let requests = state
        .store
        .source_requests(&tenant, id, limit.min(MAX_SOURCE_REQUESTS))
        .await
        .map_err(|err| ApiError::from_store(err, "list source requests"))?;
    Ok(Json(SourceRequestList {
        data: requests.iter().map(SourceRequestView::of).collect(),
    }))
}

/// The source an ingest path names, whatever its tenant (the path is all
/// a provider has).
async fn ingesting(state: &AppState, path: Result<Path<String>, PathRejection>) -> Result<Source, ApiError> {
    let id = source_id_from(path)?;
    state
        .store
        .get_source(id)
        .await
        .map_err(|err| ApiError::from_store(err, "read source"))?
        .map(|(source, _)| source)
        .ok_or_else(|| no_such_source(&id.to_string()))
}

/// `GET /in/{source_id}`.
#[utoipa::path(
    get,
    path = "/in/{source_id}",
    operation_id = "answerChallenge",
    tag = "ingest",
    summary = "Answer a provider's challenge",
    description = "For a source with `challenge`: answers the value of its query parameter exactly, as \
        `text/plain` (no quotes), so a provider can confirm the URL. No API key.",
    params(
        ("source_id" = String, Path, description = "The source's id"),
        ("challenge" = Option<String>, Query, description = "The source's `challenge.queryParam` (any name)"),
    ),
    responses(
        (status = 200, description = "The challenge, exactly", body = String, content_type = "text/plain"),
        (status = 400, description = "The query has no challenge parameter", body = ApiError,
            content_type = "application/problem+json"),
        (status = 404, description = "No such source, or it answers no challenge", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
)]
pub(crate) async fn answer_challenge(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let source = ingesting(&state, path).await?;
    let Some(challenge) = &source.challenge else {
        return Err(ApiError::not_found(
            "this source answers no challenge (it takes POST)",
        ));
    };
    let Some(answer) = source.challenge_answer(query.as_deref()) else {
        return Err(ApiError::malformed(format!(
            "expected the challenge in the query parameter {} (at most {} bytes)",
            crate::error::echo(&challenge.query_param),
            domain::MAX_CHALLENGE
        )));
    };
    tracing::info!(source_id = %source.id, "challenge answered");
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        answer,
    )
        .into_response())
}

/// `POST /in/{source_id}`.
#[utoipa::path(
    post,
    path = "/in/{source_id}",
    operation_id = "ingest",
    tag = "ingest",
    summary = "Receive a provider's webhook",
    description = "No API key: the signature, checked over the raw bytes in constant time, is the \
        authentication. A verified body is split into events (one per `split.items` item) and each is \
        published to the tenant's endpoints; the answer is 200 only once all of them are durable. A \
        provider event id seen from this source within 24 hours is not ingested again.",
    params(("source_id" = String, Path, description = "The source's id")),
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, description = "Verified and durable", body = Ingested),
        (status = 401, description = "Not verified (missing, malformed, stale or wrong signature); nothing stored",
            body = ApiError, content_type = "application/problem+json"),
        (status = 404, description = "No such source", body = ApiError, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 1 MiB, or an event's payload over 256 KiB and no \
            blob store is configured (type `urn:hookline:problem:no-blob-store`); nothing stored", body = ApiError,
            content_type = "application/problem+json"),
        (status = 422, description = "Verified, but the body does not split into events; nothing stored",
            body = ApiError, content_type = "application/problem+json"),
        (status = 503, description = "The store or the blob store is unavailable, or the outcome is unknown: send it again \
            (with provider event ids, nothing is ingested twice)", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
)]
pub(crate) async fn ingest(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let source = ingesting(&state, path).await?;
    let now = state.clock.now();
    let request_id = SourceRequestId::generate(now, &mut rand::rng());
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let (error, reason) = match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => (
                    ApiError::too_large(MAX_INGEST_BODY_BYTES),
                    format!("the body is over {MAX_INGEST_BODY_BYTES} bytes"),
                ),
                _ => (
                    ApiError::malformed(rejection.body_text()),
                    "the body could not be read".to_owned(),
                ),
            };
            reject(&state, &source, request_id, 0, &error, reason).await;
            return Err(error);
        }
    };
    let body_bytes = body.len() as u64;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(refused) = source.verify.check(header, &body, now) {
        let reason = refused.to_string();
        tracing::info!(source_id = %source.id, %reason, "ingest refused");
        state.config.metrics.source_request("unverified");
        let error = ApiError::unverified(format!("the request is not verified: {reason}"));
        reject(&state, &source, request_id, body_bytes, &error, reason).await;
        return Err(error);
    }
    let items = match source.split(&body, header) {
        Ok(items) if source.split.event_type.is_some() => {
            match registered_types(&state, &source, items).await? {
                Ok(items) => items,
                Err(unregistered) => {
                    let reason = format!(
                        "an item's type {unregistered} is not a registered event type, and the source has no eventType"
                    );
                    state.config.metrics.source_request("unsplittable");
                    let error = ApiError::validation(vec![FieldError::new("", reason.clone())]);
                    reject(&state, &source, request_id, body_bytes, &error, reason).await;
                    return Err(error);
                }
            }
        }
        Ok(items) => items,
        Err(unsplittable) => {
            let reason = unsplittable.to_string();
            state.config.metrics.source_request("unsplittable");
            let error = ApiError::validation(vec![FieldError::new("", reason.clone())]);
            reject(&state, &source, request_id, body_bytes, &error, reason).await;
            return Err(error);
        }
    };
    if state.config.blobs.is_none()
        && let Some(index) = items
            .iter()
            .position(|item| item.payload.as_json().len() > crate::MAX_INLINE_PAYLOAD_BYTES)
    {
        let reason = format!(
            "item {index} is over the {} bytes an event's payload may hold inline, and no blob store is configured",
            crate::MAX_INLINE_PAYLOAD_BYTES
        );
        let error = crate::events::no_blob_store(items[index].payload.as_json().len());
        reject(&state, &source, request_id, body_bytes, &error, reason).await;
        return Err(error);
    }
    // Every large payload kept before any event is written: a blob store
    // that fails fails the request (503, the provider sends it again)
    // with nothing of it published. Puts are idempotent (a blob is named
    // by its sha256), so sending it again writes no second blob.
    let (items, payloads): (Vec<_>, Vec<_>) = items
        .into_iter()
        .map(|item| ((item.event_type, item.provider_id), item.payload))
        .unzip();
    let payloads: Vec<domain::EventPayload> = futures::stream::iter(payloads)
        .map(|payload| crate::events::keep_payload(&state, &source.tenant, payload))
        .buffered(PUBLISH_AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let endpoints = state
        .store
        .tenant_endpoints(&source.tenant)
        .await
        .map_err(|err| ApiError::from_store(err, "read endpoints"))?;
    let published: Vec<Result<(EventId, bool), ApiError>> =
        futures::stream::iter(items.into_iter().zip(payloads))
            .map(|((event_type, provider_id), payload)| {
                let event = Event::fan_out(
                    NewEvent {
                        id: EventId::generate(now, &mut rand::rng()),
                        tenant: source.tenant.clone(),
                        event_type,
                        owner: source.owner.clone(),
                        payload,
                        providers: Vec::new(),
                    },
                    &endpoints,
                    now,
                );
                let key = provider_id.as_deref().map(|id| dedup_key(source.id, id, now));
                let state = &state;
                async move {
                    match publish_or_replay(state, &event, key.as_ref(), now).await? {
                        Publication::Accepted => Ok((event.id, false)),
                        Publication::Replayed(original) => Ok((original.id, true)),
                        // The key's fingerprint is the key itself: never another event.
                        Publication::KeyReused => Err(ApiError::internal()),
                    }
                }
            })
            .buffered(PUBLISH_AT_ONCE)
            .collect()
            .await;
    let mut event_ids = Vec::with_capacity(published.len());
    let mut duplicates = 0u32;
    for outcome in published {
        // One item not durable: the provider must send the request again
        // (what is durable already is not made twice when it names ids).
        let (id, duplicate) = outcome?;
        event_ids.push(id);
        duplicates += u32::from(duplicate);
    }
    let fresh = event_ids.len() - duplicates as usize;
    if fresh > 0 {
        state.wake_processor();
    }
    for _ in 0..fresh {
        state.config.metrics.event_published();
    }
    state.config.metrics.source_request("accepted");
    tracing::info!(source_id = %source.id, events = event_ids.len(), duplicates, "ingest accepted");
    record(
        &state,
        SourceRequest {
            id: request_id,
            source: source.id,
            tenant: source.tenant.clone(),
            received_at: now,
            body_bytes,
            verdict: Verdict::Accepted {
                events: event_ids.clone(),
                duplicates,
            },
        },
    )
    .await;
    Ok((
        StatusCode::OK,
        Json(Ingested {
            request_id,
            event_ids,
            duplicates,
        }),
    )
        .into_response())
}

/// The items with each type that is not registered replaced by the
/// source's `eventType` (endpoints subscribe to registered types only);
/// `Err` names one that is not, when the source has none to fall back on.
/// One read of the tenant's types per request (a store failure is a 503:
/// the provider sends it again).
async fn registered_types(
    state: &AppState,
    source: &Source,
    mut items: Vec<domain::Item>,
) -> Result<Result<Vec<domain::Item>, String>, ApiError> {
    let registered: std::collections::HashSet<EventType> = state
        .store
        .list_event_types(&source.tenant)
        .await
        .map_err(|err| ApiError::from_store(err, "read event types"))?
        .into_iter()
        .map(|t| t.name)
        .collect();
    for item in &mut items {
        if !registered.contains(&item.event_type) {
            match &source.event_type {
                Some(fallback) => item.event_type = fallback.clone(),
                None => return Ok(Err(item.event_type.to_string())),
            }
        }
    }
    Ok(Ok(items))
}

/// The key that makes a provider's event id from `source` ingested once
/// within [`domain::DEDUP_WINDOW`]: an event `Idempotency-Key` of its own
/// namespace (no client's key hashes to it), fingerprinted by itself so a
/// repeat is always "the same request".
fn dedup_key(source: SourceId, provider_id: &str, now: domain::Timestamp) -> IdempotencyRecord {
    let digest = Sha256::new()
        .chain_update(b"hookline source event\0")
        .chain_update(source.to_string().as_bytes())
        .chain_update(b"\0")
        .chain_update(provider_id.as_bytes())
        .finalize();
    let hash: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let window = chrono::Duration::from_std(domain::DEDUP_WINDOW).unwrap_or(chrono::Duration::MAX);
    IdempotencyRecord {
        key_hash: hash.clone(),
        fingerprint: hash,
        expires_at: now.checked_add_signed(window).unwrap_or(now),
    }
}

/// Refused requests a source's log keeps per minute, per intake process:
/// anyone can send refused requests, and each logged one is a store write,
/// so a flood is counted (the `source_requests` metric) rather than written.
pub(crate) const LOGGED_REJECTIONS_PER_MINUTE: u32 = 60;

/// Per source, the refused requests logged in the current minute.
#[derive(Debug, Default)]
pub(crate) struct RejectionBudget(std::sync::Mutex<std::collections::HashMap<SourceId, (i64, u32)>>);

impl RejectionBudget {
    /// Whether a refused request of `source` at `now` may be logged.
    fn take(&self, source: SourceId, now: domain::Timestamp) -> bool {
        let minute = now.timestamp().div_euclid(60);
        let mut spent = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if spent.len() >= 10_000 && !spent.contains_key(&source) {
            // Bounded: sources of past minutes are dropped first.
            spent.retain(|_, (at, _)| *at == minute);
            if spent.len() >= 10_000 {
                return false;
            }
        }
        let entry = spent.entry(source).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        entry.1 <= LOGGED_REJECTIONS_PER_MINUTE
    }
}

async fn reject(
    state: &AppState,
    source: &Source,
    id: SourceRequestId,
    body_bytes: u64,
    error: &ApiError,
    reason: String,
) {
    if !state.rejections.take(source.id, state.clock.now()) {
        tracing::debug!(source_id = %source.id, "refused request not logged: this minute's budget is spent");
        return;
    }
    record(
        state,
        SourceRequest {
            id,
            source: source.id,
            tenant: source.tenant.clone(),
            received_at: state.clock.now(),
            body_bytes,
            verdict: Verdict::Rejected {
                status: error.status().as_u16(),
                reason,
            },
        },
    )
    .await;
}

/// Keeps the request's verdict for the request log. Best effort: the
/// answer does not wait on it beyond one try, and a failure is logged.
async fn record(state: &AppState, request: SourceRequest) {
    if let Err(err) = state.store.record_source_request(&request).await {
        tracing::warn!(error = %err, source_id = %request.source, request_id = %request.id,
            "the source request log could not be written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_secrets_are_kept_from_a_stored_verification_of_the_same_type() {
        let stored = Verify::basic("hooks", "s3cret").expect("valid");
        let edited = VerifyForm::Basic {
            username: "renamed".into(),
            password: HIDDEN.into(),
        };
        let kept = keeping_hidden(edited, Some(&stored)).expect("kept");
        assert!(
            matches!(kept, VerifyForm::Basic { ref username, ref password } if username == "renamed" && password == "s3cret")
        );
        let other_type = VerifyForm::Shopify {
            secret: HIDDEN.into(),
        };
        assert!(keeping_hidden(other_type.clone(), Some(&stored)).is_err());
        assert!(keeping_hidden(other_type, None).is_err());
        let given = VerifyForm::Github { secret: "new".into() };
        assert!(
            matches!(keeping_hidden(given, Some(&stored)), Ok(VerifyForm::Github { ref secret }) if secret == "new")
        );
    }

    #[test]
    fn a_flood_of_refused_requests_is_logged_up_to_the_budget_each_minute() {
        let budget = RejectionBudget::default();
        let now = chrono::DateTime::from_timestamp(6_000, 0).expect("valid");
        let source = SourceId::generate(now, &mut rand::rng());
        let other = SourceId::generate(now, &mut rand::rng());
        let logged = (0..100).filter(|_| budget.take(source, now)).count();
        assert_eq!(logged, LOGGED_REJECTIONS_PER_MINUTE as usize);
        assert!(budget.take(other, now), "another source has its own budget");
        let next_minute = now + chrono::Duration::seconds(60);
        assert!(budget.take(source, next_minute));
    }
}
