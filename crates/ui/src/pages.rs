//! The pages: each reads what it shows through the API with the viewer's
//! session, and renders it with a template of `templates/`, where every
//! value is escaped as HTML text.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;

use crate::api::{Api, Failure};
use crate::session::Session;

/// How many rows a list page shows.
const PAGE_ROWS: usize = 25;
/// The job statuses a list may be filtered by (SPEC section 5).
const JOB_STATUSES: [&str; 4] = ["pending", "delivering", "complete", "failed"];

#[derive(Clone)]
pub(crate) struct State {
    api: Api,
}

impl State {
    pub(crate) fn new(api: Api) -> Self {
        Self { api }
    }
}

/// What the layout needs: whether someone is signed in, and the token its
/// sign-out form carries.
struct Chrome {
    title: String,
    csrf: String,
    signed_in: bool,
}

impl Chrome {
    fn of(title: &str, session: Option<&Session>) -> Self {
        Self {
            title: title.to_owned(),
            csrf: session.map(Session::csrf_token).unwrap_or_default(),
            signed_in: session.is_some(),
        }
    }
}

fn render(template: &impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "a UI page did not render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// Whether the UI is reached on a loopback address (a cookie cannot be
/// `Secure` on plain HTTP there); anywhere else it must be.
fn secure(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let name = host
        .strip_prefix('[')
        .and_then(|h| h.split_once(']').map(|(name, _)| name))
        .unwrap_or_else(|| host.rsplit_once(':').map_or(host, |(name, _)| name));
    !(name == "localhost" || name == "::1" || name.starts_with("127."))
}

/// A form post from another site: refused whatever it carries (the
/// browser says where a request came from in `Sec-Fetch-Site`, or, in
/// older ones, `Origin`).
fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_none_or(|(_, authority)| authority != host),
        _ => false,
    }
}

fn to_sign_in() -> Response {
    Redirect::to("/ui/sign-in").into_response()
}

#[derive(Template)]
#[template(path = "message.html")]
struct Message {
    chrome: Chrome,
    detail: String,
    fields: Vec<(String, String)>,
}

/// A page for a failure: the API's answer, or ours.
fn failure_page(session: Option<&Session>, failure: Failure) -> Response {
    match failure {
        Failure::SignedOut => to_sign_in(),
        Failure::Refused {
            status,
            title,
            detail,
            fields,
        } => render(
            &Message {
                chrome: Chrome::of(&title, session),
                detail,
                fields,
            },
            status,
        ),
    }
}

pub(crate) async fn not_found() -> Response {
    render(
        &Message {
            chrome: Chrome::of("Not found", None),
            detail: "There is no such page.".to_owned(),
            fields: Vec::new(),
        },
        StatusCode::NOT_FOUND,
    )
}

fn refused(session: Option<&Session>, status: StatusCode, heading: &str, detail: &str) -> Response {
    failure_page(
        session,
        Failure::Refused {
            status,
            title: heading.to_owned(),
            detail: detail.to_owned(),
            fields: Vec::new(),
        },
    )
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignIn {
    chrome: Chrome,
    error: Option<String>,
}

pub(crate) async fn sign_in_form(headers: HeaderMap) -> Response {
    if Session::from_headers(&headers).is_some() {
        return Redirect::to("/ui/").into_response();
    }
    render(
        &SignIn {
            chrome: Chrome::of("Sign in", None),
            error: None,
        },
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    key: String,
}

pub(crate) async fn sign_in(
    Extract(state): Extract<State>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    if cross_site(&headers) {
        return refused(
            None,
            StatusCode::FORBIDDEN,
            "Refused",
            "A sign-in from another site.",
        );
    }
    let session = Session::new(&form.key);
    let again = |error: &str, status| {
        render(
            &SignIn {
                chrome: Chrome::of("Sign in", None),
                error: Some(error.to_owned()),
            },
            status,
        )
    };
    if session.api_key().is_empty() {
        return again("Enter an API key.", StatusCode::UNPROCESSABLE_ENTITY);
    }
    match state.api.get(&session, "/v1/endpoints?limit=1").await {
        Ok(_) => {
            let mut response = Redirect::to("/ui/").into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session.cookie(secure(&headers)));
            response
        }
        Err(Failure::SignedOut) => again("That API key is not valid.", StatusCode::UNAUTHORIZED),
        Err(failure) => failure_page(None, failure),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The session of a form post that may change something: signed in, from
/// our own page (its CSRF token), not from another site.
fn form_session(headers: &HeaderMap, csrf: &str) -> Result<Session, Box<Response>> {
    let Some(session) = Session::from_headers(headers) else {
        return Err(Box::new(to_sign_in()));
    };
    if cross_site(headers) || !session.csrf_matches(csrf) {
        return Err(Box::new(refused(
            Some(&session),
            StatusCode::FORBIDDEN,
            "Refused",
            "This form did not come from this page; reload it and try again.",
        )));
    }
    Ok(session)
}

pub(crate) async fn sign_out(headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    if let Err(response) = form_session(&headers, &form.csrf) {
        return *response;
    }
    let mut response = Redirect::to("/ui/sign-in").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, Session::cleared_cookie(secure(&headers)));
    response
}

/// A job as a row or a page shows it: text only.
struct JobRow {
    id: String,
    status: String,
    target: String,
    attempts: String,
    last_error: String,
    created_at: String,
    next_attempt_at: String,
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

impl JobRow {
    fn of(job: &Value) -> Self {
        let target = if job["endpointId"].is_string() {
            format!("endpoint {}", text(&job["endpointId"]))
        } else {
            text(&job["callbackUrl"])
        };
        Self {
            id: text(&job["jobId"]),
            status: text(&job["status"]),
            target,
            attempts: text(&job["delivery"]["attempts"]),
            last_error: text(&job["delivery"]["lastError"]),
            created_at: text(&job["createdAt"]),
            next_attempt_at: text(&job["nextAttemptAt"]),
        }
    }
}

fn rows(page: &Value) -> Vec<JobRow> {
    page["data"]
        .as_array()
        .map(|jobs| jobs.iter().map(JobRow::of).collect())
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    chrome: Chrome,
    failed: Vec<JobRow>,
    recent: Vec<JobRow>,
}

pub(crate) async fn overview(Extract(state): Extract<State>, headers: HeaderMap) -> Response {
    let Some(session) = Session::from_headers(&headers) else {
        return to_sign_in();
    };
    let failed = match state.api.get(&session, "/v1/jobs?status=failed&limit=10").await {
        Ok(page) => rows(&page),
        Err(failure) => return failure_page(Some(&session), failure),
    };
    let recent = match state.api.get(&session, "/v1/jobs?limit=10").await {
        Ok(page) => rows(&page),
        Err(failure) => return failure_page(Some(&session), failure),
    };
    render(
        &Overview {
            chrome: Chrome::of("Overview", Some(&session)),
            failed,
            recent,
        },
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
pub(crate) struct JobsQuery {
    status: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct Jobs {
    chrome: Chrome,
    statuses: Vec<(&'static str, bool)>,
    status: String,
    jobs: Vec<JobRow>,
    next: Option<String>,
}

/// Whether `id` can be a ULID (a job's, an event's, a cursor): what is put
/// in an API path or query is never more than that.
fn ulid_like(id: &str) -> bool {
    id.len() == 26 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub(crate) async fn jobs(
    Extract(state): Extract<State>,
    headers: HeaderMap,
    Query(query): Query<JobsQuery>,
) -> Response {
    let Some(session) = Session::from_headers(&headers) else {
        return to_sign_in();
    };
    let status = query.status.unwrap_or_default();
    let mut path = format!("/v1/jobs?limit={PAGE_ROWS}");
    if !status.is_empty() {
        if !JOB_STATUSES.contains(&status.as_str()) {
            return refused(
                Some(&session),
                StatusCode::BAD_REQUEST,
                "No such status",
                "Choose a status from the list.",
            );
        }
        path.push_str(&format!("&status={status}"));
    }
    if let Some(cursor) = query.cursor.filter(|c| !c.is_empty()) {
        if !ulid_like(&cursor) {
            return refused(
                Some(&session),
                StatusCode::BAD_REQUEST,
                "Not a page",
                "That page link is not one of ours.",
            );
        }
        path.push_str(&format!("&cursor={cursor}"));
    }
    match state.api.get(&session, &path).await {
        Ok(page) => {
            let next = page["nextCursor"].as_str().map(|cursor| {
                let mut link = format!("/ui/jobs?cursor={cursor}");
                if !status.is_empty() {
                    link.push_str(&format!("&status={status}"));
                }
                link
            });
            render(
                &Jobs {
                    chrome: Chrome::of(
                        if status == "failed" { "Dead letter" } else { "Jobs" },
                        Some(&session),
                    ),
                    statuses: JOB_STATUSES.iter().map(|s| (*s, *s == status)).collect(),
                    status,
                    jobs: rows(&page),
                    next,
                },
                StatusCode::OK,
            )
        }
        Err(failure) => failure_page(Some(&session), failure),
    }
}

struct AttemptRow {
    kind: String,
    provider: String,
    attempted_at: String,
    duration_ms: String,
    succeeded: bool,
    status_code: String,
    error: String,
    body: String,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    chrome: Chrome,
    job: JobRow,
    metadata: String,
    attempts: Vec<AttemptRow>,
    can_retry: bool,
}

pub(crate) async fn job(
    Extract(state): Extract<State>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(session) = Session::from_headers(&headers) else {
        return to_sign_in();
    };
    if !ulid_like(&id) {
        return not_found().await;
    }
    let job = match state.api.get(&session, &format!("/v1/jobs/{id}")).await {
        Ok(job) => job,
        Err(failure) => return failure_page(Some(&session), failure),
    };
    let attempts = match state.api.get(&session, &format!("/v1/jobs/{id}/attempts")).await {
        Ok(list) => list["data"]
            .as_array()
            .map(|attempts| {
                attempts
                    .iter()
                    .map(|a| AttemptRow {
                        kind: text(&a["kind"]),
                        provider: text(&a["provider"]),
                        attempted_at: text(&a["attemptedAt"]),
                        duration_ms: text(&a["durationMs"]),
                        succeeded: a["succeeded"].as_bool().unwrap_or(false),
                        status_code: text(&a["statusCode"]),
                        error: text(&a["error"]),
                        body: text(&a["body"]),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Err(failure) => return failure_page(Some(&session), failure),
    };
    let metadata = if job["metadata"].is_null() {
        String::new()
    } else {
        serde_json::to_string_pretty(&job["metadata"]).unwrap_or_default()
    };
    let row = JobRow::of(&job);
    render(
        &JobPage {
            chrome: Chrome::of(&format!("Job {}", row.id), Some(&session)),
            can_retry: row.status == "failed",
            job: row,
            metadata,
            attempts,
        },
        StatusCode::OK,
    )
}

pub(crate) async fn retry_job(
    Extract(state): Extract<State>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match form_session(&headers, &form.csrf) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    if !ulid_like(&id) {
        return not_found().await;
    }
    match state
        .api
        .send(&session, Method::POST, &format!("/v1/jobs/{id}/retry"), None)
        .await
    {
        Ok(_) => {
            let mut response = Redirect::to(&format!("/ui/jobs/{id}")).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(failure) => failure_page(Some(&session), failure),
    }
}
