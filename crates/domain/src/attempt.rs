//! A job's attempt history: every provider fetch and callback attempt, kept
//! compact inside the job record and bounded, so an operator can see why a
//! job is late without the store growing past one item.
//!
//! Stored with short keys ([`crate::record`]), so a happy-path attempt
//! costs about 45 bytes of the job's item. A callback attempt keeps the
//! receiver's answer, successes included (SPEC section 10): its body (cut
//! to [`MAX_ATTEMPT_BODY`]) and a few of its headers ([`KEPT_HEADERS`]). A
//! provider fetch keeps the body of a failed answer only: a successful
//! fetch's body is the provider's data, which the job holds until it is
//! delivered.

use std::collections::BTreeMap;

use crate::Timestamp;

/// The most recent attempts a job keeps; older ones are dropped first. A
/// two-provider job going through every default retry makes 20.
pub const MAX_ATTEMPTS_KEPT: usize = 24;

/// A kept response body is cut to this many bytes (at a character boundary).
/// With [`MAX_ATTEMPTS_KEPT`] that bounds the history near 100 KB, well inside
/// DynamoDB's 400 KB item (and processors drop old bodies first when a job
/// would not fit).
pub const MAX_ATTEMPT_BODY: usize = 4096;

/// One provider fetch or callback attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The provider fetched; `None` for a callback attempt.
    pub provider: Option<String>,
    /// When the attempt started.
    pub at: Timestamp,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The HTTP status it got, if it got an answer.
    pub status: Option<u16>,
    /// Why it failed; `None` when it succeeded.
    pub error: Option<String>,
    /// The response body, at most [`MAX_ATTEMPT_BODY`] bytes: a callback's
    /// answer, or a failed fetch's.
    pub body: Option<String>,
    /// The answer's headers of [`KEPT_HEADERS`] (a callback's), each value
    /// at most [`MAX_HEADER_VALUE`] bytes.
    pub headers: BTreeMap<String, String>,
}

/// The response headers an attempt keeps: what explains an answer (its
/// type, where it points, when to come back, what auth it wants) and the
/// receiver's request ids, to find the request in the receiver's logs.
pub const KEPT_HEADERS: [&str; 7] = [
    "content-type",
    "location",
    "retry-after",
    "www-authenticate",
    "x-request-id",
    "request-id",
    "traceparent",
];

/// A kept header value is cut to this many bytes.
pub const MAX_HEADER_VALUE: usize = 256;

/// The headers of an answer an attempt keeps: those of [`KEPT_HEADERS`]
/// that are visible ASCII, cut to [`MAX_HEADER_VALUE`].
pub fn kept_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> BTreeMap<String, String> {
    headers
        .into_iter()
        .filter(|(name, _)| KEPT_HEADERS.contains(name))
        .filter_map(|(name, value)| {
            let value = &value[..value.len().min(MAX_HEADER_VALUE)];
            let text = std::str::from_utf8(value).ok()?;
            text.bytes()
                .all(|b| (0x20..0x7f).contains(&b))
                .then(|| (name.to_owned(), text.to_owned()))
        })
        .collect()
}

impl Attempt {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// `bytes` as text of at most [`MAX_ATTEMPT_BODY`] bytes: invalid UTF-8 is
/// replaced, and the cut falls on a character boundary. `None` for an empty body.
pub fn truncate_body(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    let head = &bytes[..bytes.len().min(MAX_ATTEMPT_BODY)];
    let mut text = String::from_utf8_lossy(head).into_owned();
    if text.len() > MAX_ATTEMPT_BODY {
        let mut cut = MAX_ATTEMPT_BODY;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    // A multi-byte character split by the cut becomes a replacement
    // character; drop it rather than show a character that was not sent.
    if bytes.len() > MAX_ATTEMPT_BODY && text.ends_with('\u{FFFD}') {
        text.pop();
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_cut_to_the_limit_on_a_character_boundary() {
        assert_eq!(truncate_body(b""), None);
        assert_eq!(truncate_body(b"oops").as_deref(), Some("oops"));
        let long = "é".repeat(MAX_ATTEMPT_BODY);
        let cut = truncate_body(long.as_bytes()).expect("text");
        assert!(cut.len() <= MAX_ATTEMPT_BODY);
        assert!(cut.chars().all(|c| c == 'é'), "no half character");
        let binary = vec![0xff; MAX_ATTEMPT_BODY * 2];
        assert!(truncate_body(&binary).expect("text").len() <= MAX_ATTEMPT_BODY);
    }

    #[test]
    fn only_the_headers_that_explain_an_answer_are_kept_and_cut() {
        let long = "x".repeat(MAX_HEADER_VALUE * 2);
        let kept = kept_headers([
            ("content-type", b"application/json".as_slice()),
            ("set-cookie", b"session=secret".as_slice()),
            ("x-request-id", long.as_bytes()),
            ("retry-after", b"bad\x01".as_slice()),
        ]);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!(kept["content-type"], "application/json");
        assert_eq!(kept["x-request-id"].len(), MAX_HEADER_VALUE);
    }
}
