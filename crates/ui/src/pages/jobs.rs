//! The overview, jobs and deliveries (a delivery is a job), the dead letter
//! and redrive.

use askama::Template;
use axum::extract::{Query, State as Extract};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::{
    Chrome, CsrfForm, PAGE_ROWS, Posted, State, Ulid, Viewer, after_write, cursor_of, data, failure_page,
    pretty, query, refused, render, text, ulid_like,
};
use crate::api::Failure;

/// The job statuses a list may be filtered by (SPEC section 5).
const JOB_STATUSES: [&str; 4] = ["pending", "delivering", "complete", "failed"];
/// Up to how many jobs the overview counts per status ("100+" past it):
/// a count is one list read, never a scan.
const COUNT_UP_TO: usize = 100;
/// How many rows each of the overview's lists shows.
const OVERVIEW_ROWS: usize = 10;
/// The most jobs one "redrive all" goes through: a dead letter larger than
/// that takes another press, each saying how many it redrove.
const REDRIVE_ALL_MAX: usize = 500;

/// A job as a row or a page shows it: text only.
pub(super) struct JobRow {
    pub(super) id: String,
    pub(super) status: String,
    /// The endpoint of a delivery, if it is one.
    pub(super) endpoint_id: String,
    /// A job's callback URL (a delivery's is its endpoint's).
    pub(super) callback_url: String,
    pub(super) attempts: String,
    pub(super) last_error: String,
    pub(super) created_at: String,
    pub(super) next_attempt_at: String,
}

impl JobRow {
    pub(super) fn of(job: &Value) -> Self {
        Self {
            id: text(&job["jobId"]),
            status: text(&job["status"]),
            endpoint_id: text(&job["endpointId"]),
            callback_url: text(&job["callbackUrl"]),
            attempts: text(&job["delivery"]["attempts"]),
            last_error: text(&job["delivery"]["lastError"]),
            created_at: text(&job["createdAt"]),
            next_attempt_at: text(&job["nextAttemptAt"]),
        }
    }
}

fn rows(page: &Value) -> Vec<JobRow> {
    data(page).iter().map(JobRow::of).collect()
}

/// How many jobs of the tenant have a status, as far as the overview
/// counts.
struct Count {
    status: &'static str,
    /// `37`, or `100+` past [`COUNT_UP_TO`].
    shown: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    chrome: Chrome,
    counts: Vec<Count>,
    failed: Vec<JobRow>,
    delivering: Vec<JobRow>,
    recent: Vec<JobRow>,
}

pub(crate) async fn overview(Extract(state): Extract<State>, Viewer(session): Viewer) -> Response {
    // Per status, one page of up to COUNT_UP_TO jobs, newest first: its
    // length is the count, its head the overview's rows.
    let mut counts = Vec::new();
    let (mut failed, mut delivering) = (Vec::new(), Vec::new());
    for status in JOB_STATUSES {
        let path = format!("/v1/jobs?status={status}&limit={COUNT_UP_TO}");
        let page = match state.api.get(&session, &path).await {
            Ok(page) => page,
            Err(failure) => return failure_page(Some(&session), failure),
        };
        let jobs = data(&page);
        counts.push(Count {
            status,
            shown: if page["nextCursor"].is_string() {
                format!("{COUNT_UP_TO}+")
            } else {
                jobs.len().to_string()
            },
        });
        let head = || jobs.iter().take(OVERVIEW_ROWS).map(JobRow::of).collect();
        match status {
            "failed" => failed = head(),
            "delivering" => delivering = head(),
            _ => {}
        }
    }
    let recent = match state
        .api
        .get(&session, &format!("/v1/jobs?limit={OVERVIEW_ROWS}"))
        .await
    {
        Ok(page) => rows(&page),
        Err(failure) => return failure_page(Some(&session), failure),
    };
    render(
        &Overview {
            chrome: Chrome::of("Overview", Some(&session)),
            counts,
            failed,
            delivering,
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
    csrf: String,
    statuses: Vec<(&'static str, bool)>,
    status: String,
    jobs: Vec<JobRow>,
    first: String,
    next: Option<String>,
}

/// The status a list is filtered by: none, or one of [`JOB_STATUSES`].
fn status_filter(status: Option<String>) -> Option<String> {
    let status = status.unwrap_or_default();
    (status.is_empty() || JOB_STATUSES.contains(&status.as_str())).then_some(status)
}

pub(crate) async fn jobs(
    Extract(state): Extract<State>,
    Viewer(session): Viewer,
    Query(filter): Query<JobsQuery>,
) -> Response {
    let Some(status) = status_filter(filter.status) else {
        return refused(
            Some(&session),
            StatusCode::BAD_REQUEST,
            "No such status",
            "Choose a status from the list.",
        );
    };
    let cursor = match cursor_of(&session, filter.cursor.as_deref()) {
        Ok(cursor) => cursor,
        Err(response) => return *response,
    };
    let limit = PAGE_ROWS.to_string();
    let path = format!(
        "/v1/jobs?{}",
        query(&[("limit", &limit), ("status", &status), ("cursor", &cursor)])
    );
    match state.api.get(&session, &path).await {
        Ok(page) => {
            let next = page["nextCursor"]
                .as_str()
                .map(|cursor| format!("/ui/jobs?{}", query(&[("status", &status), ("cursor", cursor)])));
            render(
                &Jobs {
                    chrome: Chrome::of(
                        if status == "failed" { "Dead letter" } else { "Jobs" },
                        Some(&session),
                    ),
                    csrf: session.csrf_token(),
                    statuses: JOB_STATUSES.iter().map(|s| (*s, *s == status)).collect(),
                    first: format!("/ui/jobs?{}", query(&[("status", &status)])),
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

impl AttemptRow {
    fn of(attempt: &Value) -> Self {
        Self {
            kind: text(&attempt["kind"]),
            provider: text(&attempt["provider"]),
            attempted_at: text(&attempt["attemptedAt"]),
            duration_ms: text(&attempt["durationMs"]),
            succeeded: attempt["succeeded"].as_bool().unwrap_or(false),
            status_code: text(&attempt["statusCode"]),
            error: text(&attempt["error"]),
            body: text(&attempt["body"]),
        }
    }
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    chrome: Chrome,
    job: JobRow,
    event_id: String,
    metadata: String,
    attempts: Vec<AttemptRow>,
    can_retry: bool,
}

pub(crate) async fn job(Extract(state): Extract<State>, Viewer(session): Viewer, Ulid(id): Ulid) -> Response {
    let job = match state.api.get(&session, &format!("/v1/jobs/{id}")).await {
        Ok(job) => job,
        Err(failure) => return failure_page(Some(&session), failure),
    };
    let attempts = match state.api.get(&session, &format!("/v1/jobs/{id}/attempts")).await {
        Ok(list) => data(&list).iter().map(AttemptRow::of).collect(),
        Err(failure) => return failure_page(Some(&session), failure),
    };
    let row = JobRow::of(&job);
    render(
        &JobPage {
            chrome: Chrome::of(
                &format!(
                    "{} {}",
                    if row.endpoint_id.is_empty() {
                        "Job"
                    } else {
                        "Delivery"
                    },
                    row.id
                ),
                Some(&session),
            ),
            can_retry: row.status == "failed",
            event_id: text(&job["eventId"]),
            metadata: pretty(&job["metadata"]),
            job: row,
            attempts,
        },
        StatusCode::OK,
    )
}

pub(crate) async fn retry_job(
    Extract(state): Extract<State>,
    Ulid(id): Ulid,
    Posted(session, _): Posted<CsrfForm>,
) -> Response {
    match state
        .api
        .send(&session, Method::POST, &format!("/v1/jobs/{id}/retry"), None)
        .await
    {
        Ok(_) => after_write(&format!("/ui/jobs/{id}")),
        Err(failure) => failure_page(Some(&session), failure),
    }
}

#[derive(Template)]
#[template(path = "redriven.html")]
struct Redriven {
    chrome: Chrome,
    redriven: usize,
    refused: Vec<(String, String)>,
    unknown: Vec<String>,
    more: bool,
}

/// `POST /ui/jobs/retry-all`: every job of the dead letter, oldest page
/// last, up to [`REDRIVE_ALL_MAX`], each through the API's own retry; the
/// page says how many went, which were refused and why, and which answers
/// were lost (their outcome unknown: look them up).
pub(crate) async fn retry_all(
    Extract(state): Extract<State>,
    Posted(session, _): Posted<CsrfForm>,
) -> Response {
    let mut redriven = 0;
    let mut refused = Vec::new();
    let mut unknown = Vec::new();
    let mut cursor = String::new();
    let mut seen = 0;
    let more = loop {
        let path = format!(
            "/v1/jobs?{}",
            query(&[("status", "failed"), ("limit", "100"), ("cursor", &cursor)])
        );
        let page = match state.api.get(&session, &path).await {
            Ok(page) => page,
            Err(failure) => return failure_page(Some(&session), failure),
        };
        for job in data(&page) {
            if seen == REDRIVE_ALL_MAX {
                break;
            }
            seen += 1;
            let id = text(&job["jobId"]);
            if !ulid_like(&id) {
                continue;
            }
            match state
                .api
                .send(&session, Method::POST, &format!("/v1/jobs/{id}/retry"), None)
                .await
            {
                Ok(_) => redriven += 1,
                Err(Failure::SignedOut) => return failure_page(Some(&session), Failure::SignedOut),
                Err(Failure::Refused {
                    status,
                    title,
                    detail,
                    ..
                }) => {
                    if status.is_server_error() {
                        unknown.push(id);
                    } else {
                        refused.push((id, if detail.is_empty() { title } else { detail }));
                    }
                }
            }
        }
        match page["nextCursor"].as_str() {
            Some(next) if seen < REDRIVE_ALL_MAX => cursor = next.to_owned(),
            Some(_) => break true,
            None => break false,
        }
    };
    render(
        &Redriven {
            chrome: Chrome::of("Dead letter redriven", Some(&session)),
            redriven,
            refused,
            unknown,
            more,
        },
        StatusCode::OK,
    )
}
