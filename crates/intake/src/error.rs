//! One error type for the API, rendered as `application/problem+json`
//! (RFC 9457). Client errors carry what the client can fix; server errors
//! carry nothing internal and are logged with the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One invalid part of a request: a body field (`providers[2]`), a query
/// parameter or a header (`Idempotency-Key`); empty for the body as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    /// A field named by the client (an unknown body field or query
    /// parameter) is cut to [`MAX_ECHO_CHARS`].
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: shorten(field.into(), MAX_ECHO_CHARS),
            message: shorten(message.into(), MAX_DETAIL_CHARS),
        }
    }
}

/// Most characters of the client's own input an error repeats back.
pub const MAX_ECHO_CHARS: usize = 64;
/// Most characters of any detail or message: a backstop, so no input makes
/// an error answer large.
const MAX_DETAIL_CHARS: usize = 1024;

/// The client's input, quoted for an error message and cut to
/// [`MAX_ECHO_CHARS`] (saying how long it was).
pub fn echo(input: &str) -> String {
    let count = input.chars().count();
    if count <= MAX_ECHO_CHARS {
        format!("{input:?}")
    } else {
        let head: String = input.chars().take(MAX_ECHO_CHARS).collect();
        format!("{head:?}... ({count} characters)")
    }
}

fn shorten(mut text: String, max_chars: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// A problem (RFC 9457), sent as `application/problem+json` for every error.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub struct ApiError {
    /// Identifies the kind of problem: `urn:hookline:problem:...`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "urn:hookline:problem:validation")]
    kind: &'static str,
    #[schema(value_type = String)]
    title: &'static str,
    /// The HTTP status code of the response.
    #[serde(serialize_with = "serialize_status")]
    #[schema(value_type = u16, minimum = 400, maximum = 599)]
    status: StatusCode,
    detail: String,
    /// Every invalid field, parameter or header; only on validation problems (422).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
    #[serde(skip)]
    retry_after_secs: Option<u32>,
}

fn serialize_status<S: serde::Serializer>(status: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(status.as_u16())
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            title,
            status,
            detail: shorten(detail.into(), MAX_DETAIL_CHARS),
            errors: Vec::new(),
            retry_after_secs: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The problem type's short name (`validation`, `unauthorized`, ...):
    /// a small fixed set, fit for a metric label.
    pub fn reason(&self) -> &'static str {
        self.kind
            .strip_prefix("urn:hookline:problem:")
            .unwrap_or(self.kind)
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "urn:hookline:problem:malformed-json",
            "Malformed JSON",
            detail,
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "urn:hookline:problem:body-too-large",
            "Request body too large",
            format!("the body must be at most {limit} bytes"),
        )
    }

    /// An event payload over what may be kept (`detail` says which limit).
    pub fn payload_too_large(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, kind, "Payload too large", detail)
    }

    /// The blob store could not keep or read a payload now; nothing of
    /// the event was written.
    pub fn blobs_unavailable(detail: impl Into<String>) -> Self {
        Self {
            retry_after_secs: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "urn:hookline:problem:blobs-unavailable",
                "Blob store unavailable",
                detail,
            )
        }
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "urn:hookline:problem:unsupported-media-type",
            "Unsupported media type",
            "send the job as JSON with Content-Type: application/json",
        )
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        Self {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "urn:hookline:problem:validation",
                "The request is invalid",
                detail,
            )
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "urn:hookline:problem:unauthorized",
            "Unauthorized",
            detail,
        )
    }

    /// An inbound source's request whose signature did not verify: a 401
    /// without a `WWW-Authenticate` challenge (no API key would help).
    pub fn unverified(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "urn:hookline:problem:unverified",
            "The request is not verified",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "urn:hookline:problem:not-found",
            "Not found",
            detail,
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "urn:hookline:problem:method-not-allowed",
            "Method not allowed",
            "this route does not accept that method",
        )
    }

    /// The job is not in a state that allows the request.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "urn:hookline:problem:conflict",
            "Conflict with the job's state",
            detail,
        )
    }

    /// What a store failure becomes: 503 when the store is unavailable
    /// (nothing was written; logged as a warning), 503 outcome-unknown when
    /// a write may have been applied (a route that can resolve that does so
    /// first), otherwise 500 with the cause logged, never shown.
    pub fn from_store(err: store::StoreError, operation: &str) -> Self {
        match err {
            store::StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "{operation}: store unavailable");
                Self::unavailable()
            }
            store::StoreError::Indeterminate(reason) => {
                tracing::warn!(%reason, "{operation}: outcome unknown");
                Self::outcome_unknown(
                    "the job store did not confirm the write and it may have been applied; \
                     retrying is safe",
                )
            }
            err => {
                tracing::error!(error = %err, "{operation} failed");
                Self::internal()
            }
        }
    }

    /// The store cannot take the request now; nothing was written.
    pub fn unavailable() -> Self {
        Self {
            retry_after_secs: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "urn:hookline:problem:unavailable",
                "Service unavailable",
                "the job store is unavailable; try again shortly",
            )
        }
    }

    /// A write the store may have applied, and that could not be resolved
    /// in time: the request may or may not have taken effect. Unlike
    /// [`ApiError::unavailable`], this does not say nothing was written.
    pub fn outcome_unknown(detail: impl Into<String>) -> Self {
        Self {
            retry_after_secs: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "urn:hookline:problem:outcome-unknown",
                "Outcome unknown",
                detail,
            )
        }
    }

    /// The callback host's addresses were not known in time, so the SSRF
    /// check could not be made; nothing was written.
    pub fn lookup_unfinished(err: &netguard::LookupError) -> Self {
        tracing::warn!(error = %err, "callbackUrl lookup did not finish");
        Self {
            retry_after_secs: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "urn:hookline:problem:callback-lookup-unfinished",
                "Callback host lookup did not finish",
                format!("callbackUrl: {err}; nothing was written, try again shortly"),
            )
        }
    }

    /// Anything unexpected. The cause is logged by the caller, never shown.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "urn:hookline:problem:internal",
            "Internal error",
            "something went wrong on our side; quote the x-request-id header when reporting it",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.kind == "urn:hookline:problem:unauthorized" {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
