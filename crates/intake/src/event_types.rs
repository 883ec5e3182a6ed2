//! The event type routes (SPEC section 9): `PUT /v1/event-types/{name}`,
//! `GET /v1/event-types`, `DELETE /v1/event-types/{name}`. Events must name
//! a registered type; endpoints subscribe to them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::{EventType, EventTypeDef};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Tenant;
use crate::fields::Fields;
use crate::{ApiError, AppState, FieldError, api_time};

/// Longest description of an event type or an endpoint.
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 1000;
const BODY_LIMIT: usize = 16 * 1024;

/// A registered event type.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventTypeView {
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$", example = "invoice.paid")]
    name: String,
    description: String,
    /// Its events are thin: each of these providers is fetched once per
    /// event and every delivery carries their `results`. Empty: events
    /// are delivered as published.
    #[schema(example = json!(["gas"]))]
    providers: Vec<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<&EventTypeDef> for EventTypeView {
    fn from(t: &EventTypeDef) -> Self {
        Self {
            name: t.name.as_str().to_owned(),
            description: t.description.clone(),
            providers: t.providers.clone(),
            created_at: api_time(t.created_at),
            updated_at: api_time(t.updated_at),
        }
    }
}

/// What `PUT /v1/event-types/{name}` accepts (documentation; `Fields`
/// parses the body).
#[derive(ToSchema)]
#[schema(as = EventTypeRequest)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct EventTypeRequestSchema {
    /// What the event means, for people reading the list.
    #[schema(max_length = 1000, example = "An invoice was paid")]
    description: Option<String>,
    /// Configured providers whose data every event of the type carries (a
    /// thin event: each fetched once per event, `GET {provider}?eventId=`,
    /// and delivered as `results` beside `data`). Absent, null or empty:
    /// events are delivered as published.
    #[schema(max_items = 16, example = json!(["gas"]))]
    providers: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventTypeList {
    /// Every type of the tenant, by name.
    data: Vec<EventTypeView>,
}

fn type_from_path(path: Result<Path<String>, PathRejection>) -> Result<EventType, String> {
    let Path(name) = path.map_err(|_| String::new())?;
    EventType::parse(&name).map_err(|_| name)
}

/// `PUT /v1/event-types/{name}`: create or update.
#[utoipa::path(
    put,
    path = "/v1/event-types/{name}",
    operation_id = "putEventType",
    tag = "events",
    summary = "Create or update an event type",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "The type's name (`invoice.paid`)")),
    request_body(content = Option<EventTypeRequestSchema>, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = EventTypeView),
        (status = 200, description = "Updated", body = EventTypeView),
        (status = 400, description = "The body is not JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 413, description = "The body is over 16 KiB", body = ApiError, content_type = "application/problem+json"),
        (status = 415, description = "The body is not labelled JSON", body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "A bad name, description or unknown field, or `providers` naming an \
            unknown or duplicate provider", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable, or the outcome is unknown (retrying is safe)",
            body = ApiError, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn put_event_type(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut fields = Fields::parse_optional(&headers, body, BODY_LIMIT, &["description", "providers"])?;
    let name = match type_from_path(path) {
        Ok(name) => Some(name),
        Err(_) => {
            fields.error(
                "name",
                "event type names are 1-64 characters of A-Z, a-z, 0-9, '_', '.' and '-'",
            );
            None
        }
    };
    let description = fields
        .string("description", false, MAX_DESCRIPTION_CHARS)
        .unwrap_or_default();
    let providers = match fields.take("providers") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) if items.is_empty() => Vec::new(),
        Some(value) => {
            let mut errors = Vec::new();
            let names = crate::validate::providers(Some(value), &state.config.providers, &mut errors);
            for error in errors {
                fields.error(error.field, error.message);
            }
            names.unwrap_or_default()
        }
    };
    let Some(name) = fields.finish(name)? else {
        return Err(ApiError::validation(vec![FieldError::new("name", "is required")]));
    };
    let now = state.clock.now();
    let event_type = EventTypeDef {
        tenant: tenant.clone(),
        name: name.clone(),
        description,
        providers,
        created_at: now,
        updated_at: now,
    };
    let created = state
        .store
        .put_event_type(&event_type)
        .await
        .map_err(|err| ApiError::from_store(err, "put event type"))?;
    let stored = state
        .store
        .get_event_type(&tenant, &name)
        .await
        .map_err(|err| ApiError::from_store(err, "read event type"))?
        .unwrap_or(event_type);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    tracing::info!(event_type = %name, created, "event type saved");
    Ok((status, Json(EventTypeView::from(&stored))).into_response())
}

/// `GET /v1/event-types`.
#[utoipa::path(
    get,
    path = "/v1/event-types",
    operation_id = "listEventTypes",
    tag = "events",
    summary = "List event types",
    responses(
        (status = 200, description = "Every event type of the tenant, by name", body = EventTypeList),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = ApiError,
            content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list_event_types(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<EventTypeList>, ApiError> {
    let types = state
        .store
        .list_event_types(&tenant)
        .await
        .map_err(|err| ApiError::from_store(err, "list event types"))?;
    Ok(Json(EventTypeList {
        data: types.iter().map(EventTypeView::from).collect(),
    }))
}

/// `DELETE /v1/event-types/{name}`: new events of the type are refused;
/// endpoints subscribed to it keep the name.
#[utoipa::path(
    delete,
    path = "/v1/event-types/{name}",
    operation_id = "deleteEventType",
    tag = "events",
    summary = "Delete an event type",
    params(("name" = String, Path, description = "The type's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No, malformed, unknown or revoked API key", body = ApiError,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such event type", body = ApiError, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing internal is shown", body = ApiError,
            content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable, or the outcome is unknown (retrying is safe)",
            body = ApiError, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn delete_event_type(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let name = type_from_path(path)
        .map_err(|name| ApiError::not_found(format!("no event type {}", crate::error::echo(&name))))?;
    let existed = state
        .store
        .delete_event_type(&tenant, &name)
        .await
        .map_err(|err| ApiError::from_store(err, "delete event type"))?;
    if existed {
        tracing::info!(event_type = %name, "event type deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no event type {name}")))
    }
}
