//! Reading a JSON object body field by field, collecting every problem
//! with its field (as `validate.rs` does for jobs), for the endpoint, event
//! type and event routes.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use crate::error::echo;
use crate::validate::require_json;
use crate::{ApiError, FieldError};

/// A request's JSON object, its fields taken one by one.
pub(crate) struct Fields {
    object: Map<String, Value>,
    pub errors: Vec<FieldError>,
}

impl Fields {
    /// The body as an object of the `allowed` fields: 413 over `limit`, 415
    /// not labelled JSON, 400 not JSON, 422 not an object; an unknown field
    /// is one of the errors [`Fields::finish`] reports.
    pub fn parse(
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
        limit: usize,
        allowed: &[&str],
    ) -> Result<Self, ApiError> {
        let body = body.map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(limit),
            _ => ApiError::malformed(rejection.body_text()),
        })?;
        require_json(headers)?;
        Self::from_bytes(&body, allowed)
    }

    /// Like [`Fields::parse`] for a body that may be empty (then `{}`).
    pub fn parse_optional(
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
        limit: usize,
        allowed: &[&str],
    ) -> Result<Self, ApiError> {
        match &body {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Self::from_bytes(b"{}", allowed),
            _ => Self::parse(headers, body, limit, allowed),
        }
    }

    fn from_bytes(body: &[u8], allowed: &[&str]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::malformed(e.to_string()))?;
        let Value::Object(object) = value else {
            return Err(ApiError::validation(vec![FieldError::new(
                "",
                "the body must be a JSON object",
            )]));
        };
        let errors = object
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .map(|k| FieldError::new(k.clone(), "unknown field"))
            .collect();
        Ok(Self { object, errors })
    }

    /// How many problems were found so far.
    pub fn errors_len(&self) -> usize {
        self.errors.len()
    }

    pub fn has(&self, name: &str) -> bool {
        self.object.contains_key(name)
    }

    /// The raw value, `None` when absent.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        self.object.remove(name)
    }

    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// A string of at most `max` characters; `None` when absent or null
    /// (and an error when `required`), or when invalid.
    pub fn string(&mut self, name: &str, required: bool, max: usize) -> Option<String> {
        match self.take(name) {
            None | Some(Value::Null) => {
                if required {
                    self.error(name, "is required");
                }
                None
            }
            Some(Value::String(text)) if text.chars().count() <= max => Some(text),
            Some(Value::String(_)) => {
                self.error(name, format!("must be at most {max} characters"));
                None
            }
            Some(_) => {
                self.error(name, "must be a string");
                None
            }
        }
    }

    /// `value` (taken from field `name`) as an array of at most `max`
    /// strings.
    pub fn strings_of(&mut self, name: &str, value: Value, max: usize) -> Option<Vec<String>> {
        match value {
            Value::Array(items) if items.len() <= max => {
                let before = self.errors.len();
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(text) => out.push(text),
                        _ => self.error(format!("{name}[{i}]"), "must be a string"),
                    }
                }
                (self.errors.len() == before).then_some(out)
            }
            Value::Array(_) => {
                self.error(name, format!("must hold at most {max} items"));
                None
            }
            _ => {
                self.error(name, "must be an array of strings");
                None
            }
        }
    }

    /// An object whose values are strings.
    pub fn string_map(&mut self, name: &str) -> Option<BTreeMap<String, String>> {
        match self.take(name) {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => {
                let before = self.errors.len();
                let mut out = BTreeMap::new();
                for (key, value) in map {
                    match value {
                        Value::String(text) => {
                            out.insert(key, text);
                        }
                        _ => self.error(format!("{name}.{}", echo(&key)), "must be a string"),
                    }
                }
                (self.errors.len() == before).then_some(out)
            }
            Some(_) => {
                self.error(name, "must be an object of header names to values");
                None
            }
        }
    }

    /// Every problem at once, or the fields' values.
    pub fn finish<T>(self, value: T) -> Result<T, ApiError> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}
