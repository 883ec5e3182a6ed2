//! The intake's API, called in the process on the viewer's behalf: every
//! page reads and every form writes through the same routes, checks and
//! tenant scoping an API client gets, with the session's API key.

use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt as _;

use crate::session::Session;

/// The largest API answer a page reads (an event's payload is at most
/// 4 MiB, shown inside its JSON).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// The API router the UI calls.
#[derive(Clone)]
pub(crate) struct Api {
    router: Router,
}

/// An API answer that is not a success, as a page shows it.
#[derive(Debug)]
pub(crate) enum Failure {
    /// 401: the key is unknown or revoked; the viewer signs in again.
    SignedOut,
    /// Any other refusal: its status and its problem+json title and
    /// detail, with each field error.
    Refused {
        status: StatusCode,
        title: String,
        detail: String,
        fields: Vec<(String, String)>,
    },
}

impl Api {
    pub(crate) fn new(router: Router) -> Self {
        Self { router }
    }

    pub(crate) async fn get(&self, session: &Session, path: &str) -> Result<Value, Failure> {
        self.call(session, Method::GET, path, None)
            .await
            .map(|(json, _)| json)
    }

    /// A read's answer, and its body as the API wrote it (for what must be
    /// shown in its own order, such as an event's payload).
    pub(crate) async fn get_raw(
        &self,
        session: &Session,
        path: &str,
    ) -> Result<(Value, axum::body::Bytes), Failure> {
        self.call(session, Method::GET, path, None).await
    }

    pub(crate) async fn send(
        &self,
        session: &Session,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let body = body.map(|json| json.to_string());
        self.call(session, method, path, body).await.map(|(json, _)| json)
    }

    /// As [`Api::send`], with a body of JSON text written by the caller
    /// (whose members must keep their order).
    pub(crate) async fn send_text(
        &self,
        session: &Session,
        method: Method,
        path: &str,
        json: String,
    ) -> Result<Value, Failure> {
        self.call(session, method, path, Some(json))
            .await
            .map(|(json, _)| json)
    }

    async fn call(
        &self,
        session: &Session,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(Value, axum::body::Bytes), Failure> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", session.api_key()));
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json)
            }
            None => Body::empty(),
        };
        let request = match request.body(body) {
            Ok(request) => request,
            // Only a key holding characters no header may: never a session.
            Err(_) => return Err(Failure::SignedOut),
        };
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        // An answer whose body cannot be read is not shown as an empty
        // page: the page says it does not know, and what the API did (a
        // write's outcome) is for the viewer to look up.
        let unreadable = || Failure::Refused {
            status: StatusCode::BAD_GATEWAY,
            title: "Unreadable answer".to_owned(),
            detail: format!("The API answered {status} with a body this page could not read."),
            fields: Vec::new(),
        };
        let Ok(bytes) = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES).await else {
            return Err(unreadable());
        };
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(json) => json,
                Err(_) => return Err(unreadable()),
            }
        };
        if status.is_success() {
            return Ok((json, bytes));
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(Failure::SignedOut);
        }
        let text = |name: &str| json[name].as_str().unwrap_or_default().to_owned();
        let fields = json["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        (
                            e["field"].as_str().unwrap_or_default().to_owned(),
                            e["message"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Err(Failure::Refused {
            status,
            title: text("title"),
            detail: text("detail"),
            fields,
        })
    }
}
