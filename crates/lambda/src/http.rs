//! The intake under `lambda_http`: each invocation is one HTTP request,
//! which the intake's router answers as it answers one on a listener.

use std::convert::Infallible;

use axum::Router;
use lambda_http::{Request, service_fn};
use tower::ServiceExt as _;

/// The request an API Gateway (HTTP API payload 2.0 or REST API) or ALB
/// event's JSON makes, as the runtime makes it for [`answer_request`].
pub fn request_from_event(event: &str) -> Result<Request, serde_json::Error> {
    lambda_http::request::from_str(event)
}

/// Answers one request with `api`, the intake's router.
///
/// `lambda_http` has made the request from the invocation's event (API
/// Gateway HTTP API payload 2.0, REST API or ALB; a base64 body decoded)
/// and makes the event's response from the answer. The body is whole by
/// now (API Gateway buffers it), so the listener's timeouts and its early
/// 413 do not apply; each route's own body limit does.
pub async fn answer_request(api: Router, request: Request) -> axum::response::Response {
    let response = match api.oneshot(request.map(axum::body::Body::new)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    // Read whole here: `lambda_http` panics on a body it cannot read. The
    // intake's bodies are in memory, so this never fails; should one, the
    // answer is an empty 500 that keeps the head (its `x-request-id`).
    let (mut parts, body) = response.into_parts();
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => axum::response::Response::from_parts(parts, axum::body::Body::from(bytes)),
        Err(err) => {
            tracing::error!(error = %err, "the intake's answer could not be read; answered 500");
            parts.status = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
            parts.headers.remove(axum::http::header::CONTENT_TYPE);
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            axum::response::Response::from_parts(parts, axum::body::Body::empty())
        }
    }
}

/// Runs the intake's router under the Lambda runtime until the runtime
/// stops (it does not, while the function lives; an error talking to the
/// Runtime API ends it).
pub async fn serve_intake(api: Router) -> Result<(), lambda_http::Error> {
    lambda_http::run(service_fn(move |request: Request| {
        let api = api.clone();
        async move { Ok::<_, Infallible>(answer_request(api, request).await) }
    }))
    .await
}
