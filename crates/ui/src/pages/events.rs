//! Event types (registering, describing, deleting), events (publishing,
//! the list by type and owner, one event with its payload and each
//! endpoint's delivery).

use askama::Template;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Chrome, CsrfForm, PAGE_ROWS, Posted, Refusal, State, Ulid, Viewer, after_write, cursor_of, data,
    failure_page, not_found, query, render, text, ulid_like,
};
use crate::session::Session;

struct EventTypeRow {
    name: String,
    description: String,
    providers: String,
    updated_at: String,
}

impl EventTypeRow {
    fn of(t: &Value) -> Self {
        Self {
            name: text(&t["name"]),
            description: text(&t["description"]),
            providers: t["providers"]
                .as_array()
                .map(|p| p.iter().map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            updated_at: text(&t["updatedAt"]),
        }
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct EventTypeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

carries_csrf!(EventTypeForm, PublishForm);

#[derive(Template)]
#[template(path = "event_types.html")]
struct EventTypes {
    chrome: Chrome,
    types: Vec<EventTypeRow>,
    form: EventTypeForm,
    problem: String,
    errors: Vec<(String, String)>,
}

async fn event_types_page(
    state: &State,
    session: &Session,
    refused: Option<Refusal<EventTypeForm>>,
) -> Response {
    let types = match state.api.get(session, "/v1/event-types").await {
        Ok(list) => data(&list).iter().map(EventTypeRow::of).collect(),
        Err(failure) => return failure_page(Some(session), failure),
    };
    let Refusal {
        form,
        status,
        problem,
        errors,
    } = refused.unwrap_or_else(|| Refusal {
        form: EventTypeForm::default(),
        status: StatusCode::OK,
        problem: String::new(),
        errors: Vec::new(),
    });
    render(
        &EventTypes {
            chrome: Chrome::of("Event types", Some(session)),
            types,
            form,
            problem,
            errors,
        },
        status,
    )
}

pub(crate) async fn event_types(Extract(state): Extract<State>, Viewer(session): Viewer) -> Response {
    event_types_page(&state, &session, None).await
}

/// `POST /ui/event-types`: registers a type, or describes it anew (its
/// providers are kept as they are).
pub(crate) async fn put_event_type(
    Extract(state): Extract<State>,
    Posted(session, form): Posted<EventTypeForm>,
) -> Response {
    let name = form.name.trim().to_owned();
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !valid {
        let message = "1 to 64 of A-Z, a-z, 0-9, `_`, `.` and `-`".to_owned();
        let refused = Refusal::field(form, "name", message);
        return event_types_page(&state, &session, Some(refused)).await;
    }
    // The providers stay what they were: this form does not name them.
    let existing = match state.api.get(&session, "/v1/event-types").await {
        Ok(list) => data(&list)
            .iter()
            .find(|t| t["name"] == name.as_str())
            .map(|t| t["providers"].clone()),
        Err(failure) => return failure_page(Some(&session), failure),
    };
    let mut body = json!({"description": form.description.trim()});
    if let Some(providers) = existing.filter(|p| p.as_array().is_some_and(|p| !p.is_empty())) {
        body["providers"] = providers;
    }
    match state
        .api
        .send(
            &session,
            Method::PUT,
            &format!("/v1/event-types/{name}"),
            Some(body),
        )
        .await
    {
        Ok(_) => after_write("/ui/event-types"),
        Err(failure) => match Refusal::of_api(form, failure) {
            Ok(refusal) => event_types_page(&state, &session, Some(refusal)).await,
            Err(failure) => failure_page(Some(&session), failure),
        },
    }
}

pub(crate) async fn delete_event_type(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Posted(session, _): Posted<CsrfForm>,
) -> Response {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return not_found().await;
    }
    match state
        .api
        .send(&session, Method::DELETE, &format!("/v1/event-types/{name}"), None)
        .await
    {
        Ok(_) => after_write("/ui/event-types"),
        Err(failure) => failure_page(Some(&session), failure),
    }
}

struct EventRow {
    id: String,
    event_type: String,
    owner: String,
    deliveries: usize,
    created_at: String,
}

impl EventRow {
    fn of(event: &Value) -> Self {
        Self {
            id: text(&event["eventId"]),
            event_type: text(&event["type"]),
            owner: text(&event["owner"]),
            deliveries: event["deliveries"].as_array().map_or(0, Vec::len),
            created_at: text(&event["createdAt"]),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    owner: Option<String>,
    cursor: Option<String>,
}

/// What the publish form holds, as typed.
#[derive(Deserialize, Default)]
pub(crate) struct PublishForm {
    #[serde(default)]
    csrf: String,
    #[serde(default, rename = "type")]
    event_type: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    payload: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct Events {
    chrome: Chrome,
    event_type: String,
    owner: String,
    types: Vec<String>,
    events: Vec<EventRow>,
    first: String,
    next: Option<String>,
    form: PublishForm,
    problem: String,
    errors: Vec<(String, String)>,
}

async fn events_page(
    state: &State,
    session: &Session,
    filter: EventsQuery,
    refused: Option<Refusal<PublishForm>>,
) -> Response {
    let cursor = match cursor_of(session, filter.cursor.as_deref()) {
        Ok(cursor) => cursor,
        Err(response) => return *response,
    };
    let event_type = filter.event_type.unwrap_or_default();
    let owner = filter.owner.unwrap_or_default();
    let limit = PAGE_ROWS.to_string();
    let path = format!(
        "/v1/events?{}",
        query(&[
            ("limit", &limit),
            ("type", &event_type),
            ("owner", &owner),
            ("cursor", &cursor)
        ])
    );
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
        form: PublishForm {
            payload: "{}".to_owned(),
            ..PublishForm::default()
        },
        status: StatusCode::OK,
        problem: String::new(),
        errors: Vec::new(),
    });
    render(
        &Events {
            chrome: Chrome::of("Events", Some(session)),
            next: page["nextCursor"].as_str().map(|cursor| {
                format!(
                    "/ui/events?{}",
                    query(&[("type", &event_type), ("owner", &owner), ("cursor", cursor)])
                )
            }),
            first: format!(
                "/ui/events?{}",
                query(&[("type", &event_type), ("owner", &owner)])
            ),
            event_type,
            owner,
            types,
            events: data(&page).iter().map(EventRow::of).collect(),
            form,
            problem,
            errors,
        },
        status,
    )
}

pub(crate) async fn events(
    Extract(state): Extract<State>,
    Viewer(session): Viewer,
    Query(filter): Query<EventsQuery>,
) -> Response {
    events_page(&state, &session, filter, None).await
}

/// `POST /ui/events`: publishes an event (an operator's test event, or a
/// real one) and shows it with its deliveries.
pub(crate) async fn publish_event(
    Extract(state): Extract<State>,
    Posted(session, form): Posted<PublishForm>,
) -> Response {
    let no_filter = || EventsQuery {
        event_type: None,
        owner: None,
        cursor: None,
    };
    // The payload goes as typed (its members in their order), once it
    // is known to be JSON.
    let payload: Box<serde_json::value::RawValue> = match serde_json::from_str(&form.payload) {
        Ok(payload) => payload,
        Err(err) => {
            let refused = Refusal::field(form, "payload", format!("not JSON: {err}"));
            return events_page(&state, &session, no_filter(), Some(refused)).await;
        }
    };
    let mut body = format!("{{\"type\":{}", json!(form.event_type.trim()));
    if !form.owner.trim().is_empty() {
        body.push_str(&format!(",\"owner\":{}", json!(form.owner.trim())));
    }
    body.push_str(&format!(",\"payload\":{}}}", payload.get()));
    match state
        .api
        .send_text(&session, Method::POST, "/v1/events", body)
        .await
    {
        Ok(accepted) => {
            let id = text(&accepted["eventId"]);
            if ulid_like(&id) {
                after_write(&format!("/ui/events/{id}"))
            } else {
                after_write("/ui/events")
            }
        }
        Err(failure) => match Refusal::of_api(form, failure) {
            Ok(refusal) => events_page(&state, &session, no_filter(), Some(refusal)).await,
            Err(failure) => failure_page(Some(&session), failure),
        },
    }
}

struct DeliveryRow {
    id: String,
    endpoint_id: String,
    status: String,
    attempts: String,
    last_status_code: String,
    last_error: String,
    next_attempt_at: String,
    delivered_at: String,
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    chrome: Chrome,
    event: EventRow,
    payload: String,
    payload_unavailable: String,
    providers: String,
    deliveries: Vec<DeliveryRow>,
    settled: bool,
}

pub(crate) async fn event(
    Extract(state): Extract<State>,
    Viewer(session): Viewer,
    Ulid(id): Ulid,
) -> Response {
    let (event, raw) = match state.api.get_raw(&session, &format!("/v1/events/{id}")).await {
        Ok(answer) => answer,
        Err(failure) => return failure_page(Some(&session), failure),
    };
    // The payload as published, its members in their order, laid out.
    #[derive(Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        payload: Option<&'a serde_json::value::RawValue>,
    }
    let payload = serde_json::from_slice::<Raw<'_>>(&raw)
        .ok()
        .and_then(|raw| raw.payload)
        .map(|payload| indent(payload.get()))
        .unwrap_or_default();
    let deliveries: Vec<DeliveryRow> = event["deliveries"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|d| DeliveryRow {
                    id: text(&d["deliveryId"]),
                    endpoint_id: text(&d["endpointId"]),
                    status: text(&d["status"]),
                    attempts: text(&d["attempts"]),
                    last_status_code: text(&d["lastStatusCode"]),
                    last_error: text(&d["lastError"]),
                    next_attempt_at: text(&d["nextAttemptAt"]),
                    delivered_at: text(&d["deliveredAt"]),
                })
                .collect()
        })
        .unwrap_or_default();
    render(
        &EventPage {
            chrome: Chrome::of(&format!("Event {id}"), Some(&session)),
            settled: deliveries
                .iter()
                .all(|d| matches!(d.status.as_str(), "complete" | "failed")),
            deliveries,
            payload,
            payload_unavailable: text(&event["payloadUnavailable"]),
            providers: event["providers"]
                .as_array()
                .map(|p| p.iter().map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            event: EventRow::of(&event),
        },
        StatusCode::OK,
    )
}

/// JSON text laid out two spaces per level, every token as it was, in its
/// order (a payload is shown as published, not as a map would sort it).
fn indent(json: &str) -> String {
    fn newline(out: &mut String, depth: usize) {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    }
    let mut out = String::with_capacity(json.len() + json.len() / 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                if let Some(close) = chars.next_if(|c| matches!(c, '}' | ']')) {
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::indent;

    #[test]
    fn a_payload_is_laid_out_in_its_own_order_every_token_kept() {
        let raw = r#"{"z":1,"a":[1,2.50,{}],"s":"a \"q\" {x:[y]}, \\","e":[],"n":null}"#;
        let shown = indent(raw);
        assert_eq!(
            shown,
            "{\n  \"z\": 1,\n  \"a\": [\n    1,\n    2.50,\n    {}\n  ],\n  \"s\": \"a \\\"q\\\" {x:[y]}, \\\\\",\n  \"e\": [],\n  \"n\": null\n}"
        );
        // Nothing but whitespace was added: the same JSON, the same order.
        let again: serde_json::Value = serde_json::from_str(&shown).expect("JSON");
        assert_eq!(
            again,
            serde_json::from_str::<serde_json::Value>(raw).expect("JSON")
        );
        assert_eq!(indent("7"), "7");
        assert_eq!(indent(r#""<script>""#), r#""<script>""#);
    }
}
