//! Turning a request body into a valid job request, or into every reason it
//! is not one (SPEC section 2).

use std::collections::HashSet;

use axum::http::{HeaderMap, header};
use domain::{Metadata, MetadataError};
use serde_json::Value;
use serde_json::value::RawValue;
use url::Url;

use crate::error::echo;
use crate::{ApiError, FieldError};

pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_METADATA_BYTES: usize = 4 * 1024;
pub const MAX_PROVIDERS: usize = 16;
pub(crate) const MAX_URL_BYTES: usize = 2048;
const FIELDS: [&str; 3] = ["providers", "callbackUrl", "metadata"];

/// A job request that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    pub providers: Vec<String>,
    pub callback_url: Url,
    pub metadata: Option<Metadata>,
}

/// `application/json` or any `application/*+json`, parameters allowed.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return Err(ApiError::unsupported_media_type());
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let is_json = essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type())
    }
}

pub fn parse_job_request(body: &[u8], known_providers: &[String]) -> Result<JobRequest, ApiError> {
    // serde_json refuses nesting deeper than 128 levels, so hostile bodies
    // cannot recurse us off the stack; the body limit bounds the rest.
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::malformed(e.to_string()))?;
    let Value::Object(mut object) = value else {
        return Err(ApiError::validation(vec![FieldError::new(
            "",
            "the body must be a JSON object",
        )]));
    };
    let mut errors = Vec::new();
    for field in object.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        errors.push(FieldError::new(field.clone(), "unknown field"));
    }
    let providers = providers(object.remove("providers"), known_providers, &mut errors);
    let callback_url = http_url("callbackUrl", object.remove("callbackUrl"), &mut errors);
    let metadata = match object.remove("metadata") {
        None | Some(Value::Null) => None,
        Some(_) => metadata(body, &mut errors),
    };
    match (providers, callback_url, errors.is_empty()) {
        (Some(providers), Some(callback_url), true) => Ok(JobRequest {
            providers,
            callback_url,
            metadata,
        }),
        _ => Err(ApiError::validation(errors)),
    }
}

/// A list of distinct configured provider names, 1..=[`MAX_PROVIDERS`] (a
/// job's `providers`, an event type's).
pub(crate) fn providers(
    value: Option<Value>,
    known: &[String],
    errors: &mut Vec<FieldError>,
) -> Option<Vec<String>> {
    let Some(value) = value else {
        errors.push(FieldError::new("providers", "is required"));
        return None;
    };
    let Value::Array(items) = value else {
        errors.push(FieldError::new("providers", "must be an array of provider names"));
        return None;
    };
    if items.is_empty() {
        errors.push(FieldError::new("providers", "must name at least one provider"));
        return None;
    }
    if items.len() > MAX_PROVIDERS {
        errors.push(FieldError::new(
            "providers",
            format!("must name at most {MAX_PROVIDERS} providers"),
        ));
        return None;
    }
    let before = errors.len();
    let mut seen = HashSet::new();
    let mut names = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let field = format!("providers[{i}]");
        let Value::String(name) = item else {
            errors.push(FieldError::new(field, "must be a string"));
            continue;
        };
        if !known.contains(&name) {
            errors.push(FieldError::new(
                field,
                format!(
                    "unknown provider {}; configured: {}",
                    echo(&name),
                    known.join(", ")
                ),
            ));
        } else if !seen.insert(name.clone()) {
            errors.push(FieldError::new(
                field,
                format!("duplicate provider {}", echo(&name)),
            ));
        } else {
            names.push(name);
        }
    }
    (errors.len() == before).then_some(names)
}

/// An absolute http(s) URL with a host and neither credentials nor a
/// fragment (a `callbackUrl`, an endpoint's `url`).
pub(crate) fn http_url(field: &str, value: Option<Value>, errors: &mut Vec<FieldError>) -> Option<Url> {
    let text = match value {
        Some(Value::String(text)) => text,
        Some(_) => {
            errors.push(FieldError::new(field, "must be a string"));
            return None;
        }
        None => {
            errors.push(FieldError::new(field, "is required"));
            return None;
        }
    };
    if text.len() > MAX_URL_BYTES {
        errors.push(FieldError::new(
            field,
            format!("must be at most {MAX_URL_BYTES} bytes"),
        ));
        return None;
    }
    let url = match Url::parse(&text) {
        Ok(url) => url,
        Err(e) => {
            errors.push(FieldError::new(
                field,
                format!("must be an absolute http(s) URL: {e}"),
            ));
            return None;
        }
    };
    let problem = if !matches!(url.scheme(), "http" | "https") {
        Some("must use http or https")
    } else if url.host_str().is_none_or(str::is_empty) {
        Some("must name a host")
    } else if !url.username().is_empty() || url.password().is_some() {
        Some("must not carry credentials")
    } else if url.fragment().is_some() {
        Some("must not have a fragment")
    } else {
        None
    };
    match problem {
        Some(message) => {
            errors.push(FieldError::new(field, message));
            None
        }
        None => Some(url),
    }
}

/// The metadata object as the client wrote it: numbers keep their digits
/// (`serde_json::Value` would turn `123456789012345678901234567890` into
/// `1.2345678901234568e+29`), so it is read again from the body as text.
fn metadata(body: &[u8], errors: &mut Vec<FieldError>) -> Option<Metadata> {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        metadata: &'a RawValue,
    }
    let parsed = serde_json::from_slice::<Raw<'_>>(body)
        .map_err(|e| MetadataError::Invalid(e.to_string()))
        .and_then(|raw| Metadata::from_json(raw.metadata.get()));
    match parsed {
        Ok(metadata) if metadata.len() > MAX_METADATA_BYTES => {
            errors.push(FieldError::new(
                "metadata",
                format!(
                    "must be at most {MAX_METADATA_BYTES} bytes serialized (got {})",
                    metadata.len()
                ),
            ));
            None
        }
        Ok(metadata) => Some(metadata),
        Err(MetadataError::NotAnObject) => {
            errors.push(FieldError::new("metadata", "must be a JSON object"));
            None
        }
        Err(MetadataError::Invalid(e)) => {
            errors.push(FieldError::new("metadata", format!("is not valid JSON: {e}")));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn known() -> Vec<String> {
        vec!["gas".into(), "internet".into()]
    }

    fn parse(body: Value) -> Result<JobRequest, ApiError> {
        parse_job_request(&serde_json::to_vec(&body).expect("json"), &known())
    }

    fn fields(body: Value) -> Vec<String> {
        let err = parse(body).expect_err("invalid");
        assert_eq!(err.status().as_u16(), 422);
        let value = serde_json::to_value(&err).expect("serializes");
        value["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| e["field"].as_str().expect("field").to_owned())
            .collect()
    }

    #[test]
    fn accepts_a_valid_job() {
        let job = parse(json!({
            "providers": ["gas", "internet"],
            "callbackUrl": "https://client.example/complete?x=1",
            "metadata": {"orderId": "A-17"}
        }))
        .expect("valid");
        assert_eq!(job.providers, vec!["gas", "internet"]);
        assert_eq!(job.callback_url.as_str(), "https://client.example/complete?x=1");
        assert_eq!(job.metadata.expect("metadata").as_json(), r#"{"orderId":"A-17"}"#);
    }

    #[test]
    fn reports_every_problem_with_its_field() {
        assert_eq!(fields(json!({})), vec!["providers", "callbackUrl"]);
        assert_eq!(
            fields(json!({"providers": ["gas", "gas", "water", 3], "callbackUrl": "ftp://x", "extra": 1})),
            vec![
                "extra",
                "providers[1]",
                "providers[2]",
                "providers[3]",
                "callbackUrl"
            ]
        );
        assert_eq!(
            fields(json!({"providers": [], "callbackUrl": "https://a.example"})),
            vec!["providers"]
        );
        let seventeen: Vec<String> = (0..17).map(|i| format!("p{i}")).collect();
        assert_eq!(
            fields(json!({"providers": seventeen, "callbackUrl": "https://a.example"})),
            vec!["providers"]
        );
        assert_eq!(
            fields(json!({"providers": "gas", "callbackUrl": "/relative"})),
            vec!["providers", "callbackUrl"]
        );
        assert_eq!(
            fields(json!({"providers": ["gas"], "callbackUrl": "https://u:p@a.example", "metadata": [1]})),
            vec!["callbackUrl", "metadata"]
        );
        assert_eq!(fields(json!([1, 2])), vec![""]);
    }

    #[test]
    fn metadata_is_limited_to_four_kib() {
        let big = "x".repeat(MAX_METADATA_BYTES);
        assert_eq!(
            fields(json!({"providers": ["gas"], "callbackUrl": "https://a.example", "metadata": {"k": big}})),
            vec!["metadata"]
        );
    }

    #[test]
    fn errors_echo_at_most_a_little_of_the_input() {
        let long = "p".repeat(50_000);
        let err =
            parse(json!({"providers": [long], "callbackUrl": "https://a.example", &"f".repeat(10_000): 1}))
                .expect_err("invalid");
        let text = serde_json::to_string(&err).expect("serializes");
        assert!(text.len() < 1_000, "{} bytes: {text}", text.len());
        assert!(text.contains("(50000 characters)"), "{text}");
    }

    #[test]
    fn metadata_numbers_keep_their_digits() {
        let body = br#"{"providers":["gas"],"callbackUrl":"https://a.example","metadata":{"n": 123456789012345678901234567890, "e": 1e2}}"#;
        let job = parse_job_request(body, &known()).expect("valid");
        assert_eq!(
            job.metadata.expect("metadata").as_json(),
            r#"{"n":123456789012345678901234567890,"e":1e2}"#
        );
    }

    #[test]
    fn malformed_and_deeply_nested_json_is_a_400() {
        assert_eq!(
            parse_job_request(b"{\"providers\":", &known())
                .expect_err("bad")
                .status()
                .as_u16(),
            400
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            parse_job_request(deep.as_bytes(), &known())
                .expect_err("deep")
                .status()
                .as_u16(),
            400
        );
    }

    #[test]
    fn content_type_must_be_json() {
        let mut headers = HeaderMap::new();
        assert!(require_json(&headers).is_err());
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().expect("header"));
        assert!(require_json(&headers).is_err());
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().expect("header"),
        );
        assert!(require_json(&headers).is_ok());
        headers.insert(
            header::CONTENT_TYPE,
            "application/merge-patch+json".parse().expect("header"),
        );
        assert!(require_json(&headers).is_ok());
    }
}
