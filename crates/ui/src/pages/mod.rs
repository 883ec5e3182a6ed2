//! The pages: each reads what it shows through the API with the viewer's
//! session, and renders it with a template of `templates/`, where every
//! value is escaped as HTML text. One module per kind of thing shown.

/// Lets a form type be read by [`Posted`]: it carries its page's CSRF
/// token in a `csrf` field.
macro_rules! carries_csrf {
    ($($form:ty),+ $(,)?) => {
        $(impl $crate::pages::CarriesCsrf for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })+
    };
}

mod endpoints;
mod events;
mod jobs;
mod sources;

use askama::Template;
use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State as Extract};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{Api, Failure};
use crate::session::Session;

pub(crate) use endpoints::{
    create_endpoint, endpoint, endpoints, new_endpoint, recover_endpoint, rotate_secret,
    set_endpoint_enabled, update_endpoint,
};
pub(crate) use events::{delete_event_type, event, event_types, events, publish_event, put_event_type};
pub(crate) use jobs::{job, jobs, overview, retry_all, retry_job};
pub(crate) use sources::{create_source, source, sources};

/// How many rows a list page shows.
const PAGE_ROWS: usize = 25;

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
    not_found_page()
}

fn not_found_page() -> Response {
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
        return Redirect::to("/ui").into_response();
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
            let mut response = Redirect::to("/ui").into_response();
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

/// The answer to a form that changed something: back to `to` (a 303, so
/// a reload does not post again).
fn after_write(to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A value as text: a string as it is, anything else as its JSON.
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A JSON value laid out for reading, or nothing for null.
fn pretty(value: &Value) -> String {
    if value.is_null() {
        String::new()
    } else {
        serde_json::to_string_pretty(value).unwrap_or_default()
    }
}

/// Whether `id` can be a ULID (a job's, an event's, a cursor): what is put
/// in an API path or query is never more than that.
fn ulid_like(id: &str) -> bool {
    id.len() == 26 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A list query's parameters, in order, the empty ones left out: for the
/// API's query string and for our own page links alike.
fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs.iter().filter(|(_, value)| !value.is_empty()) {
        out.append_pair(name, value);
    }
    out.finish()
}

/// The cursor of a page link, if it is one of ours.
fn cursor_of(session: &Session, cursor: Option<&str>) -> Result<String, Box<Response>> {
    match cursor.filter(|c| !c.is_empty()) {
        None => Ok(String::new()),
        Some(cursor) if ulid_like(cursor) => Ok(cursor.to_owned()),
        Some(_) => Err(Box::new(refused(
            Some(session),
            StatusCode::BAD_REQUEST,
            "Not a page",
            "That page link is not one of ours.",
        ))),
    }
}

/// Each item of a list answer's `data`.
fn data(page: &Value) -> &[Value] {
    page["data"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A form the API (or this page) refused: shown again as it was typed,
/// with why, so nothing typed is lost.
struct Refusal<F> {
    form: F,
    status: StatusCode,
    problem: String,
    errors: Vec<(String, String)>,
}

impl<F> Refusal<F> {
    /// One field's error, found before asking the API.
    fn field(form: F, field: &str, message: String) -> Self {
        Self {
            form,
            status: StatusCode::UNPROCESSABLE_ENTITY,
            problem: String::new(),
            errors: vec![(field.to_owned(), message)],
        }
    }

    /// The API's refusal of `form`, if it is the client's to fix (4xx but
    /// a missing thing); any other failure is shown as a failure.
    fn of_api(form: F, failure: Failure) -> Result<Self, Failure> {
        match failure {
            Failure::Refused {
                status,
                title,
                detail,
                fields,
            } if status.is_client_error() && status != StatusCode::NOT_FOUND => Ok(Self {
                form,
                status,
                problem: if detail.is_empty() { title } else { detail },
                errors: fields,
            }),
            other => Err(other),
        }
    }
}

/// The signed-in viewer of a page; anyone else is sent to sign in.
pub(crate) struct Viewer(Session);

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        Session::from_headers(&parts.headers)
            .map(Viewer)
            .ok_or_else(to_sign_in)
    }
}

/// A form with its page's CSRF token.
pub(crate) trait CarriesCsrf {
    fn csrf(&self) -> &str;
}

carries_csrf!(CsrfForm);

/// A form post that may change something, and who sent it: signed in,
/// from our own page (its CSRF token), not from another site. Anything
/// else is answered before the handler runs.
pub(crate) struct Posted<F>(Session, F);

impl<S: Send + Sync, F: DeserializeOwned + CarriesCsrf + 'static> FromRequest<S> for Posted<F> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let headers = request.headers().clone();
        let Form(form) = Form::<F>::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let session = form_session(&headers, form.csrf()).map_err(|response| *response)?;
        Ok(Self(session, form))
    }
}

/// A path's id that can be a ULID (a job's, an endpoint's, an event's, a
/// source's): what is put in an API path is never more; anything else is
/// no page of ours.
pub(crate) struct Ulid(String);

impl<S: Send + Sync> FromRequestParts<S> for Ulid {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) if ulid_like(&id) => Ok(Self(id)),
            _ => Err(not_found_page()),
        }
    }
}
