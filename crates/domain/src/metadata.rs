//! A job's metadata: the client's JSON object, kept exactly as sent (but
//! for whitespace between tokens) and echoed in the callback.
//!
//! Held as JSON text, not as a parsed map: `serde_json::Value` keeps numbers
//! as `u64`, `i64` or `f64`, so `123456789012345678901234567890` would come
//! back as `1.2345678901234568e+29` and `1e2` as `100.0`. A client that put
//! an order number or an amount there gets back the digits it sent.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON object, as the client wrote it.
#[derive(Clone)]
pub struct Metadata(Box<RawValue>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("must be a JSON object")]
    NotAnObject,
    /// Not JSON at all, or nested deeper than serde_json's 128 levels.
    #[error("is not valid JSON: {0}")]
    Invalid(String),
}

impl Metadata {
    /// The object in `json`, with the whitespace between its tokens
    /// removed; strings and numbers are kept byte for byte.
    pub fn from_json(json: &str) -> Result<Self, MetadataError> {
        // Parsing as a value bounds the nesting (serde_json refuses more than
        // 128 levels, which `RawValue` alone does not), so walking it later
        // cannot run off the stack.
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => return Err(MetadataError::NotAnObject),
            Err(e) => return Err(MetadataError::Invalid(e.to_string())),
        }
        let raw = RawValue::from_string(compact(json)).map_err(|e| MetadataError::Invalid(e.to_string()))?;
        Ok(Self(raw))
    }

    /// The object as JSON text.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }

    /// Its size serialized, in bytes.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_json() == "{}"
    }

    /// The same object with every object's keys in order and strings
    /// written the one way serde_json writes them, numbers as sent: two
    /// requests that mean the same metadata have the same canonical text
    /// (for idempotency fingerprints).
    pub fn canonical(&self) -> String {
        let mut out = String::with_capacity(self.len());
        canonical_into(self.as_json(), &mut out);
        out
    }
}

fn canonical_into(json: &str, out: &mut String) {
    use std::collections::BTreeMap;
    if let Ok(object) = serde_json::from_str::<BTreeMap<String, &RawValue>>(json) {
        out.push('{');
        for (i, (key, value)) in object.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::Value::String(key.clone()).to_string());
            out.push(':');
            canonical_into(value.get(), out);
        }
        out.push('}');
    } else if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(json) {
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            canonical_into(item.get(), out);
        }
        out.push(']');
    } else {
        match serde_json::from_str::<serde_json::Value>(json) {
            // A number stays as sent: that is the point of keeping the text.
            Ok(serde_json::Value::Number(_)) | Err(_) => out.push_str(json.trim()),
            Ok(scalar) => out.push_str(&scalar.to_string()),
        }
    }
}

/// `json` (valid JSON) without whitespace outside strings.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json()
    }
}

impl Eq for Metadata {}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Metadata").field(&self.as_json()).finish()
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Reads it from JSON text (a store's record, a request body): serde_json
/// hands over the object's text as written. Records written before
/// metadata was kept as text hold the same object, serialized by serde_json.
impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Metadata::from_json(raw.get()).map_err(serde::de::Error::custom)
    }
}

/// Any JSON value, as its sender wrote it (but for whitespace between
/// tokens): an event's data, delivered byte for byte. Kept as text for the
/// reason [`Metadata`] is.
#[derive(Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// The value in `json`, with the whitespace between its tokens removed.
    pub fn from_json(json: &str) -> Result<Self, MetadataError> {
        // As for metadata: parsing as a value bounds the nesting.
        if let Err(e) = serde_json::from_str::<serde_json::Value>(json) {
            return Err(MetadataError::Invalid(e.to_string()));
        }
        let raw = RawValue::from_string(compact(json)).map_err(|e| MetadataError::Invalid(e.to_string()))?;
        Ok(Self(raw))
    }

    pub fn as_json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json()
    }
}

impl Eq for RawJson {}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawJson").field(&self.as_json()).finish()
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        RawJson::from_json(raw.get()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_kept_as_sent() {
        let sent = r#"{ "big": 123456789012345678901234567890, "exp": 1e2, "neg": -0.0, "f": 22.270 }"#;
        let metadata = Metadata::from_json(sent).expect("object");
        assert_eq!(
            metadata.as_json(),
            r#"{"big":123456789012345678901234567890,"exp":1e2,"neg":-0.0,"f":22.270}"#
        );
        // Through a store's record and back, and into a callback body.
        let stored = serde_json::to_string(&metadata).expect("serializes");
        assert_eq!(stored, metadata.as_json());
        let back: Metadata = serde_json::from_str(&stored).expect("reads");
        assert_eq!(back, metadata);
    }

    #[test]
    fn raw_json_is_any_value_kept_as_sent() {
        for (sent, kept) in [
            ("[1, 2.50]", "[1,2.50]"),
            (" \"a b\" ", "\"a b\""),
            ("1e2", "1e2"),
            ("null", "null"),
        ] {
            let json = RawJson::from_json(sent).expect("json");
            assert_eq!(json.as_json(), kept);
            let back: RawJson =
                serde_json::from_str(&serde_json::to_string(&json).expect("writes")).expect("reads");
            assert_eq!(back, json);
        }
        assert!(RawJson::from_json("{").is_err());
        assert!(RawJson::from_json(&"[".repeat(200)).is_err());
    }

    #[test]
    fn whitespace_inside_strings_is_kept() {
        let metadata = Metadata::from_json("{\"a b\" : \" x \\\" y \", \"t\":\"\\t\"}").expect("object");
        assert_eq!(metadata.as_json(), "{\"a b\":\" x \\\" y \",\"t\":\"\\t\"}");
    }

    #[test]
    fn only_an_object_is_metadata() {
        assert_eq!(Metadata::from_json("[1]"), Err(MetadataError::NotAnObject));
        assert_eq!(Metadata::from_json("3"), Err(MetadataError::NotAnObject));
        assert!(matches!(Metadata::from_json("{"), Err(MetadataError::Invalid(_))));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            Metadata::from_json(&deep),
            Err(MetadataError::Invalid(_))
        ));
    }

    #[test]
    fn canonical_text_sorts_keys_and_keeps_numbers() {
        let a = Metadata::from_json(
            r#"{"z": [1, {"b": 2, "a": "\u0041"}], "a": 123456789012345678901234567890}"#,
        )
        .expect("object");
        let b = Metadata::from_json(r#"{"a":123456789012345678901234567890,"z":[1,{"a":"A","b":2}]}"#)
            .expect("object");
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(
            a.canonical(),
            r#"{"a":123456789012345678901234567890,"z":[1,{"a":"A","b":2}]}"#
        );
        let c = Metadata::from_json(r#"{"a":123456789012345678901234567891,"z":[1,{"a":"A","b":2}]}"#)
            .expect("object");
        assert_ne!(a.canonical(), c.canonical());
    }

    #[test]
    fn a_record_written_from_a_parsed_map_reads_the_same() {
        let old = serde_json::json!({"orderId": "A-17", "n": 5});
        let text = serde_json::to_string(&old).expect("serializes");
        let read: Metadata = serde_json::from_str(&text).expect("reads");
        let value: serde_json::Value = serde_json::from_str(read.as_json()).expect("JSON");
        assert_eq!(value, old);
    }
}
