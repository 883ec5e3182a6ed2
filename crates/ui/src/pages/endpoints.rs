//! Endpoints: the list, creating one (its secret shown once), editing,
//! disabling and enabling, rotating the secret (the new one shown once),
//! and recovering failed deliveries since a time.

use askama::Template;
use axum::extract::{Query, State as Extract};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    Chrome, PAGE_ROWS, Posted, Refusal, State, Ulid, Viewer, after_write, cursor_of, data, failure_page,
    query, render, text,
};
use crate::session::Session;

/// An endpoint as a row or a page shows it: text only, its credentials as
/// the API shows them (`***`).
struct EndpointRow {
    id: String,
    url: String,
    description: String,
    owner: String,
    event_types: String,
    headers: Vec<(String, String)>,
    auth: String,
    timeout: String,
    status: String,
    disabled_reason: String,
    failing_since: String,
    created_at: String,
}

impl EndpointRow {
    fn of(endpoint: &Value) -> Self {
        let list = |value: &Value| {
            value
                .as_array()
                .map(|items| items.iter().map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        };
        Self {
            id: text(&endpoint["endpointId"]),
            url: text(&endpoint["url"]),
            description: text(&endpoint["description"]),
            owner: text(&endpoint["owner"]),
            event_types: list(&endpoint["eventTypes"]),
            headers: endpoint["headers"]
                .as_object()
                .map(|headers| headers.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                .unwrap_or_default(),
            auth: text(&endpoint["auth"]["type"]),
            timeout: text(&endpoint["timeout"]),
            status: text(&endpoint["status"]),
            disabled_reason: text(&endpoint["disabledReason"]),
            failing_since: text(&endpoint["failingSince"]),
            created_at: text(&endpoint["createdAt"]),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct EndpointsQuery {
    owner: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "endpoints.html")]
struct Endpoints {
    chrome: Chrome,
    owner: String,
    endpoints: Vec<EndpointRow>,
    first: String,
    next: Option<String>,
}

pub(crate) async fn endpoints(
    Extract(state): Extract<State>,
    Viewer(session): Viewer,
    Query(filter): Query<EndpointsQuery>,
) -> Response {
    let cursor = match cursor_of(&session, filter.cursor.as_deref()) {
        Ok(cursor) => cursor,
        Err(response) => return *response,
    };
    let owner = filter.owner.unwrap_or_default();
    let limit = PAGE_ROWS.to_string();
    let path = format!(
        "/v1/endpoints?{}",
        query(&[("limit", &limit), ("owner", &owner), ("cursor", &cursor)])
    );
    match state.api.get(&session, &path).await {
        Ok(page) => render(
            &Endpoints {
                chrome: Chrome::of("Endpoints", Some(&session)),
                next: page["nextCursor"].as_str().map(|cursor| {
                    format!(
                        "/ui/endpoints?{}",
                        query(&[("owner", &owner), ("cursor", cursor)])
                    )
                }),
                first: format!("/ui/endpoints?{}", query(&[("owner", &owner)])),
                owner,
                endpoints: data(&page).iter().map(EndpointRow::of).collect(),
            },
            StatusCode::OK,
        ),
        Err(failure) => failure_page(Some(&session), failure),
    }
}

/// What the endpoint form holds, as typed: shown again as it was when the
/// API refuses it, so nothing typed is lost.
#[derive(Deserialize, Default)]
pub(crate) struct EndpointForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    owner: String,
    /// Comma- or space-separated; `*` for every type.
    #[serde(default)]
    event_types: String,
    /// One `name: value` per line (creation only: a stored credential
    /// header reads back as `***` and is changed through the API).
    #[serde(default)]
    headers: String,
    #[serde(default)]
    timeout: String,
}

impl EndpointForm {
    fn of(endpoint: &EndpointRow) -> Self {
        Self {
            url: endpoint.url.clone(),
            description: endpoint.description.clone(),
            owner: endpoint.owner.clone(),
            event_types: endpoint.event_types.clone(),
            timeout: endpoint.timeout.clone(),
            ..Self::default()
        }
    }

    /// The API request body; on an edit, without the headers (kept as they
    /// are) and with an emptied owner or timeout cleared.
    fn body(&self, creating: bool) -> Result<Value, (String, String)> {
        let mut body = Map::new();
        body.insert("url".into(), json!(self.url.trim()));
        body.insert("description".into(), json!(self.description.trim()));
        let event_types: Vec<&str> = self
            .event_types
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .collect();
        body.insert("eventTypes".into(), json!(event_types));
        let optional = |value: &str| {
            let value = value.trim();
            if value.is_empty() {
                Value::Null
            } else {
                json!(value)
            }
        };
        let (owner, timeout) = (optional(&self.owner), optional(&self.timeout));
        if creating {
            let mut headers = Map::new();
            for line in self.headers.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let Some((name, value)) = line.split_once(':') else {
                    return Err(("headers".to_owned(), format!("`{line}` is not `name: value`")));
                };
                headers.insert(name.trim().to_owned(), json!(value.trim()));
            }
            body.insert("headers".into(), Value::Object(headers));
            for (name, value) in [("owner", owner), ("timeout", timeout)] {
                if !value.is_null() {
                    body.insert(name.into(), value);
                }
            }
        } else {
            body.insert("owner".into(), owner);
            body.insert("timeout".into(), timeout);
        }
        Ok(Value::Object(body))
    }
}

carries_csrf!(EndpointForm, EnabledForm, RotateForm, RecoverForm);

#[derive(Template)]
#[template(path = "endpoint_new.html")]
struct NewEndpoint {
    chrome: Chrome,
    form: EndpointForm,
    errors: Vec<(String, String)>,
    problem: String,
}

pub(crate) async fn new_endpoint(Viewer(session): Viewer) -> Response {
    render(
        &NewEndpoint {
            chrome: Chrome::of("New endpoint", Some(&session)),
            form: EndpointForm::default(),
            errors: Vec::new(),
            problem: String::new(),
        },
        StatusCode::OK,
    )
}

#[derive(Template)]
#[template(path = "secret.html")]
struct SecretShown {
    chrome: Chrome,
    endpoint_id: String,
    secret: String,
    rotated: bool,
}

pub(crate) async fn create_endpoint(
    Extract(state): Extract<State>,
    Posted(session, form): Posted<EndpointForm>,
) -> Response {
    let again = |session: &Session, refusal: Refusal<EndpointForm>| {
        render(
            &NewEndpoint {
                chrome: Chrome::of("New endpoint", Some(session)),
                form: refusal.form,
                errors: refusal.errors,
                problem: refusal.problem,
            },
            refusal.status,
        )
    };
    let body = match form.body(true) {
        Ok(body) => body,
        Err((field, message)) => return again(&session, Refusal::field(form, &field, message)),
    };
    match state
        .api
        .send(&session, Method::POST, "/v1/endpoints", Some(body))
        .await
    {
        Ok(created) => render(
            &SecretShown {
                chrome: Chrome::of("Endpoint created", Some(&session)),
                endpoint_id: text(&created["endpointId"]),
                secret: text(&created["secret"]),
                rotated: false,
            },
            StatusCode::CREATED,
        ),
        Err(failure) => match Refusal::of_api(form, failure) {
            Ok(refusal) => again(&session, refusal),
            Err(failure) => failure_page(Some(&session), failure),
        },
    }
}

#[derive(Template)]
#[template(path = "endpoint.html")]
struct EndpointPage {
    chrome: Chrome,
    endpoint: EndpointRow,
    form: EndpointForm,
    errors: Vec<(String, String)>,
    problem: String,
    notice: String,
}

#[derive(Deserialize)]
pub(crate) struct EndpointQuery {
    recovered: Option<u64>,
}

/// The endpoint page, with `form` as the edit form (the stored values, or
/// what was typed and refused).
async fn endpoint_page(
    state: &State,
    session: &Session,
    id: &str,
    edit: Option<Refusal<EndpointForm>>,
    notice: String,
) -> Response {
    let endpoint = match state.api.get(session, &format!("/v1/endpoints/{id}")).await {
        Ok(endpoint) => EndpointRow::of(&endpoint),
        Err(failure) => return failure_page(Some(session), failure),
    };
    let Refusal {
        form,
        status,
        problem,
        errors,
    } = edit.unwrap_or_else(|| Refusal {
        form: EndpointForm::of(&endpoint),
        status: StatusCode::OK,
        problem: String::new(),
        errors: Vec::new(),
    });
    render(
        &EndpointPage {
            chrome: Chrome::of(&format!("Endpoint {}", endpoint.id), Some(session)),
            endpoint,
            form,
            errors,
            problem,
            notice,
        },
        status,
    )
}

pub(crate) async fn endpoint(
    Extract(state): Extract<State>,
    Viewer(session): Viewer,
    Ulid(id): Ulid,
    Query(shown): Query<EndpointQuery>,
) -> Response {
    let notice = shown
        .recovered
        .map(|n| format!("Recovered: {n} failed deliveries are due again."))
        .unwrap_or_default();
    endpoint_page(&state, &session, &id, None, notice).await
}

pub(crate) async fn update_endpoint(
    Extract(state): Extract<State>,
    Ulid(id): Ulid,
    Posted(session, form): Posted<EndpointForm>,
) -> Response {
    let body = match form.body(false) {
        Ok(body) => body,
        Err((field, message)) => {
            let refused = Refusal::field(form, &field, message);
            return endpoint_page(&state, &session, &id, Some(refused), String::new()).await;
        }
    };
    match state
        .api
        .send(
            &session,
            Method::PATCH,
            &format!("/v1/endpoints/{id}"),
            Some(body),
        )
        .await
    {
        Ok(_) => after_write(&format!("/ui/endpoints/{id}")),
        Err(failure) => match Refusal::of_api(form, failure) {
            Ok(refusal) => endpoint_page(&state, &session, &id, Some(refusal), String::new()).await,
            Err(failure) => failure_page(Some(&session), failure),
        },
    }
}

#[derive(Deserialize)]
pub(crate) struct EnabledForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    enabled: bool,
}

/// `POST /ui/endpoints/{id}/status`: disable or enable it.
pub(crate) async fn set_endpoint_enabled(
    Extract(state): Extract<State>,
    Ulid(id): Ulid,
    Posted(session, form): Posted<EnabledForm>,
) -> Response {
    let action = if form.enabled { "enable" } else { "disable" };
    match state
        .api
        .send(
            &session,
            Method::POST,
            &format!("/v1/endpoints/{id}/{action}"),
            None,
        )
        .await
    {
        Ok(_) => after_write(&format!("/ui/endpoints/{id}")),
        Err(failure) => failure_page(Some(&session), failure),
    }
}

#[derive(Deserialize)]
pub(crate) struct RotateForm {
    #[serde(default)]
    csrf: String,
    /// How long the old secret still signs too (`24h`); empty: the API's
    /// default.
    #[serde(default)]
    overlap: String,
}

pub(crate) async fn rotate_secret(
    Extract(state): Extract<State>,
    Ulid(id): Ulid,
    Posted(session, form): Posted<RotateForm>,
) -> Response {
    let overlap = form.overlap.trim();
    let body = if overlap.is_empty() {
        json!({})
    } else {
        json!({"overlap": overlap})
    };
    match state
        .api
        .send(
            &session,
            Method::POST,
            &format!("/v1/endpoints/{id}/secret/rotate"),
            Some(body),
        )
        .await
    {
        Ok(rotated) => render(
            &SecretShown {
                chrome: Chrome::of("Secret rotated", Some(&session)),
                endpoint_id: id,
                secret: text(&rotated["secret"]),
                rotated: true,
            },
            StatusCode::OK,
        ),
        Err(failure) => failure_page(Some(&session), failure),
    }
}

#[derive(Deserialize)]
pub(crate) struct RecoverForm {
    #[serde(default)]
    csrf: String,
    /// RFC 3339.
    #[serde(default)]
    since: String,
}

pub(crate) async fn recover_endpoint(
    Extract(state): Extract<State>,
    Ulid(id): Ulid,
    Posted(session, form): Posted<RecoverForm>,
) -> Response {
    match state
        .api
        .send(
            &session,
            Method::POST,
            &format!("/v1/endpoints/{id}/recover"),
            Some(json!({"since": form.since.trim()})),
        )
        .await
    {
        Ok(answer) => after_write(&format!(
            "/ui/endpoints/{id}?recovered={}",
            answer["redriven"].as_u64().unwrap_or(0)
        )),
        Err(failure) => failure_page(Some(&session), failure),
    }
}
