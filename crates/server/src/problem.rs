//! The answers the listener gives itself, as problem+json (RFC 9457) like
//! every other hookline error.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use hyper::body::Incoming;

use crate::Limits;

/// The request id an answer carries, as the intake's own answers do: the
/// client's `x-request-id` if it sent one, else a new ULID.
pub(crate) const REQUEST_ID: &str = "x-request-id";

fn new_request_id() -> String {
    ulid::Ulid::new().to_string()
}

fn problem(
    status: StatusCode,
    kind: &str,
    title: &str,
    detail: String,
    request_id: Option<&HeaderValue>,
) -> Response {
    let body = serde_json::json!({
        "type": format!("urn:hookline:problem:{kind}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    // The rest of the request is not read: the connection cannot be reused.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let id = match request_id {
        Some(id) => id.clone(),
        None => HeaderValue::try_from(new_request_id()).unwrap_or(HeaderValue::from_static("-")),
    };
    headers.insert(REQUEST_ID, id);
    response
}

/// A refusal of a request whose head breaks a limit, before anything reads
/// its body or checks its key.
pub(crate) fn refuse_head(request: &http::Request<Incoming>, limits: &Limits) -> Option<Response> {
    let id = request.headers().get(REQUEST_ID);
    let uri = request.uri();
    let target = uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if target > limits.max_uri_bytes {
        return Some(problem(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            "Request target too long",
            format!(
                "the request target must be at most {} bytes",
                limits.max_uri_bytes
            ),
            id,
        ));
    }
    let headers = request.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > limits.max_headers || header_bytes > limits.max_header_bytes {
        return Some(problem(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            "Request headers too large",
            format!(
                "at most {} header fields of at most {} bytes together",
                limits.max_headers, limits.max_header_bytes
            ),
            id,
        ));
    }
    let max_body = limits.max_body_bytes?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())?;
    (declared > max_body).then(|| {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            format!("the body must be at most {max_body} bytes"),
            id,
        )
    })
}

pub(crate) fn body_timeout(timeout: Duration, request_id: Option<&HeaderValue>) -> Response {
    problem(
        StatusCode::REQUEST_TIMEOUT,
        "body-timeout",
        "Request body too slow",
        format!(
            "the body must arrive within {} s of the request's head",
            timeout.as_secs_f64()
        ),
        request_id,
    )
}

/// The whole answer, as bytes, to a head hyper could not parse (`status`
/// is the one hyper chose): the same problem+json as everything else, where
/// hyper would send an empty body.
pub(crate) fn unparsable_head(status: u16) -> Vec<u8> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let (kind, title, detail) = match status {
        StatusCode::URI_TOO_LONG => (
            "uri-too-long",
            "Request target too long",
            "the request target is too long",
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "headers-too-large",
            "Request headers too large",
            "the request's headers are too large",
        ),
        _ => (
            "malformed-request",
            "Malformed request",
            "the request line or a header is not valid HTTP/1.1",
        ),
    };
    let body = serde_json::json!({
        "type": format!("urn:hookline:problem:{kind}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    })
    .to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n{REQUEST_ID}: {}\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Bad Request"),
        body.len(),
        new_request_id()
    )
    .into_bytes()
}
