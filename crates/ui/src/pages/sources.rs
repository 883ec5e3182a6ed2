//! Inbound sources: the list, and one source with its configuration (its
//! secrets as the API shows them, `***`) and its recent requests with
//! their verdicts.

use askama::Template;
use axum::extract::{Query, State as Extract};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::{
    Chrome, PAGE_ROWS, State, Ulid, Viewer, cursor_of, data, failure_page, pretty, query, render, text,
    ulid_like,
};

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

#[derive(Template)]
#[template(path = "sources.html")]
struct Sources {
    chrome: Chrome,
    sources: Vec<SourceRow>,
    next: Option<String>,
}

pub(crate) async fn sources(
    Extract(state): Extract<State>,
    Viewer(session): Viewer,
    Query(filter): Query<SourcesQuery>,
) -> Response {
    let cursor = match cursor_of(&session, filter.cursor.as_deref()) {
        Ok(cursor) => cursor,
        Err(response) => return *response,
    };
    let limit = PAGE_ROWS.to_string();
    let path = format!("/v1/sources?{}", query(&[("limit", &limit), ("cursor", &cursor)]));
    match state.api.get(&session, &path).await {
        Ok(page) => render(
            &Sources {
                chrome: Chrome::of("Sources", Some(&session)),
                next: page["nextCursor"]
                    .as_str()
                    .map(|cursor| format!("/ui/sources?{}", query(&[("cursor", cursor)]))),
                sources: data(&page).iter().map(SourceRow::of).collect(),
            },
            StatusCode::OK,
        ),
        Err(failure) => failure_page(Some(&session), failure),
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
