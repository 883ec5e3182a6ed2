//! Inbound sources: the list, creating one, and one source with its
//! configuration (its secrets as the API shows them, `***`) and its recent
//! requests with their verdicts.

use askama::Template;
use axum::extract::{Query, State as Extract};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    Chrome, PAGE_ROWS, Posted, Refusal, State, Ulid, Viewer, after_write, cursor_of, data, failure_page,
    pretty, query, render, text, ulid_like,
};
use crate::session::Session;

/// How many of a source's requests its page shows, newest first.
const RECENT_REQUESTS: usize = 50;

struct SourceRow {
    id: String,
    name: String,
    ingest_url: String,
    event_type: String,
    owner: String,
    verify: String,
    created_at: String,
}

impl SourceRow {
    fn of(source: &Value) -> Self {
        Self {
            id: text(&source["sourceId"]),
            name: text(&source["name"]),
            ingest_url: text(&source["ingestUrl"]),
            event_type: text(&source["eventType"]),
            owner: text(&source["owner"]),
            verify: text(&source["verify"]["type"]),
            created_at: text(&source["createdAt"]),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct SourcesQuery {
    cursor: Option<String>,
}

/// What the new source form holds, as typed.
#[derive(Deserialize)]
pub(crate) struct SourceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    owner: String,
    /// The rest of the source as the API takes it: a JSON object with
    /// `verify` and, optionally, `challenge` and `split`.
    #[serde(default)]
    config: String,
}

carries_csrf!(SourceForm);

impl Default for SourceForm {
    fn default() -> Self {
        Self {
            csrf: String::new(),
            name: String::new(),
            event_type: String::new(),
            owner: String::new(),
            config: EXAMPLE_CONFIG.to_owned(),
        }
    }
}

/// The new source form's starting configuration: a shared-token check,
/// a challenge answered, one event per item.
const EXAMPLE_CONFIG: &str = r#"{
  "verify": {"type": "header", "name": "x-webhook-token", "value": "change-me"},
  "challenge": {"queryParam": "challenge"},
  "split": {"items": "/events", "id": "/id"}
}"#;

#[derive(Template)]
#[template(path = "sources.html")]
struct Sources {
    chrome: Chrome,
    sources: Vec<SourceRow>,
    next: Option<String>,
    types: Vec<String>,
    form: SourceForm,
    problem: String,
    errors: Vec<(String, String)>,
}

pub(crate) async fn sources(
    Extract(state): Extract<State>,
    Viewer(session): Viewer,
    Query(filter): Query<SourcesQuery>,
) -> Response {
    sources_page(&state, &session, filter, None).await
}

async fn sources_page(
    state: &State,
    session: &Session,
    filter: SourcesQuery,
    refused: Option<Refusal<SourceForm>>,
) -> Response {
    let cursor = match cursor_of(session, filter.cursor.as_deref()) {
        Ok(cursor) => cursor,
        Err(response) => return *response,
    };
    let limit = PAGE_ROWS.to_string();
    let path = format!("/v1/sources?{}", query(&[("limit", &limit), ("cursor", &cursor)]));
    let page = match state.api.get(session, &path).await {
        Ok(page) => page,
        Err(failure) => return failure_page(Some(session), failure),
    };
    let types = match state.api.get(session, "/v1/event-types").await {
        Ok(list) => data(&list).iter().map(|t| text(&t["name"])).collect(),
        Err(failure) => return failure_page(Some(session), failure),
    };
    let Refusal {
        form,
        status,
        problem,
        errors,
    } = refused.unwrap_or_else(|| Refusal {
        form: SourceForm::default(),
        status: StatusCode::OK,
        problem: String::new(),
        errors: Vec::new(),
    });
    render(
        &Sources {
            chrome: Chrome::of("Sources", Some(session)),
            next: page["nextCursor"]
                .as_str()
                .map(|cursor| format!("/ui/sources?{}", query(&[("cursor", cursor)]))),
            sources: data(&page).iter().map(SourceRow::of).collect(),
            types,
            form,
            problem,
            errors,
        },
        status,
    )
}

/// `POST /ui/sources`: creates a source; its page shows where providers
/// send to.
pub(crate) async fn create_source(
    Extract(state): Extract<State>,
    Posted(session, form): Posted<SourceForm>,
) -> Response {
    let no_filter = || SourcesQuery { cursor: None };
    let mut body = match serde_json::from_str::<Value>(&form.config) {
        Ok(Value::Object(config)) => config,
        Ok(_) => Map::new(),
        Err(err) => {
            let refused = Refusal::field(form, "config", format!("not JSON: {err}"));
            return sources_page(&state, &session, no_filter(), Some(refused)).await;
        }
    };
    if body.is_empty() {
        let message = "a JSON object with `verify` (and `challenge`, `split` if wanted)".to_owned();
        let refused = Refusal::field(form, "config", message);
        return sources_page(&state, &session, no_filter(), Some(refused)).await;
    }
    body.insert("name".into(), json!(form.name.trim()));
    for (name, value) in [("eventType", &form.event_type), ("owner", &form.owner)] {
        if !value.trim().is_empty() {
            body.insert(name.into(), json!(value.trim()));
        }
    }
    match state
        .api
        .send(
            &session,
            axum::http::Method::POST,
            "/v1/sources",
            Some(Value::Object(body)),
        )
        .await
    {
        Ok(created) => {
            let id = text(&created["sourceId"]);
            if ulid_like(&id) {
                after_write(&format!("/ui/sources/{id}"))
            } else {
                after_write("/ui/sources")
            }
        }
        Err(failure) => match Refusal::of_api(form, failure) {
            Ok(refusal) => sources_page(&state, &session, no_filter(), Some(refusal)).await,
            Err(failure) => failure_page(Some(&session), failure),
        },
    }
}

struct RequestRow {
    received_at: String,
    body_bytes: String,
    verdict: String,
    status: String,
    event_ids: Vec<String>,
    duplicates: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "source.html")]
struct SourcePage {
    chrome: Chrome,
    source: SourceRow,
    config: String,
    requests: Vec<RequestRow>,
}

pub(crate) async fn source(
    Extract(state): Extract<State>,
    Viewer(session): Viewer,
    Ulid(id): Ulid,
) -> Response {
    let source = match state.api.get(&session, &format!("/v1/sources/{id}")).await {
        Ok(source) => source,
        Err(failure) => return failure_page(Some(&session), failure),
    };
    let path = format!("/v1/sources/{id}/requests?limit={RECENT_REQUESTS}");
    let requests = match state.api.get(&session, &path).await {
        Ok(list) => data(&list)
            .iter()
            .map(|r| RequestRow {
                received_at: text(&r["receivedAt"]),
                body_bytes: text(&r["bodyBytes"]),
                verdict: text(&r["verdict"]),
                status: text(&r["status"]),
                event_ids: r["eventIds"]
                    .as_array()
                    .map(|ids| ids.iter().map(text).filter(|id| ulid_like(id)).collect())
                    .unwrap_or_default(),
                duplicates: text(&r["duplicates"]),
                reason: text(&r["reason"]),
            })
            .collect(),
        Err(failure) => return failure_page(Some(&session), failure),
    };
    let config = serde_json::json!({
        "verify": source["verify"],
        "challenge": source["challenge"],
        "split": source["split"],
    });
    let row = SourceRow::of(&source);
    render(
        &SourcePage {
            chrome: Chrome::of(&format!("Source {}", row.name), Some(&session)),
            source: row,
            config: pretty(&config),
            requests,
        },
        StatusCode::OK,
    )
}
