//! Inbound sources (SPEC section 11): a tenant's URL that providers push
//! their webhooks to. A [`Source`] says how a request is verified
//! ([`Verify`]: the signature is the only authentication, checked over the
//! raw bytes in constant time, failing closed), whether `GET` answers a
//! challenge ([`Challenge`]), and how one body becomes events ([`Split`]).
//! **Holds secrets**: every one is a [`Credential`] (`Debug` shows `***`).
//! Nothing here does I/O: the intake reads the request and the store, and
//! hands the bytes here.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

use crate::endpoint::is_header_name;
use crate::{
    Credential, EventId, EventType, MetadataError, Owner, RawJson, SigningSecret, SourceId, SourceRequestId, TenantId,
    Timestamp,
};

/// Stripe's own default: a signature older (or newer) than this is refused.
pub const STRIPE_TOLERANCE: Duration = Duration::from_secs(300);
/// Standard Webhooks' timestamp tolerance, as its official libraries use.
pub const STANDARD_WEBHOOKS_TOLERANCE: Duration = Duration::from_secs(300);
/// How long a provider's event id is remembered: the same id from the same
/// source within it is ingested once.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Most events one request may split into.
pub const MAX_SPLIT_ITEMS: usize = 1000;
/// Longest provider event id kept.
pub const MAX_PROVIDER_ID: usize = 256;
/// Longest challenge echoed.
pub const MAX_CHALLENGE: usize = 1024;
/// Longest source name.
pub const MAX_SOURCE_NAME: usize = 128;
/// Longest secret, header value or password a source holds.
pub const MAX_SOURCE_SECRET: usize = 1024;


/// A tenant's inbound source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub id: SourceId,
    pub tenant: TenantId,
    pub name: String,
    /// The type of every event it makes, unless [`Split::event_type`]
    /// names one in the item. Required when the split names none.
    pub event_type: Option<EventType>,
    /// The owner of the events it makes (SPEC section 9's `owner`).
    pub owner: Option<Owner>,
    pub verify: Verify,
    pub challenge: Option<Challenge>,
    pub split: Split,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// How a request proves it comes from the provider.
#[derive(Clone, PartialEq, Eq)]
pub enum Verify {
    /// An HMAC of the raw body in `header`, after `prefix`.
    Hmac {
        header: String,
        algorithm: HmacAlgorithm,
        encoding: Encoding,
        prefix: Option<String>,
        secret: Credential,
    },
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature` (a `whsec_` secret).
    StandardWebhooks { secret: Credential },
    /// `x-hub-signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    Github { secret: Credential },
    /// `stripe-signature: t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">`.
    Stripe { secret: Credential, tolerance: Duration },
    /// `x-shopify-hmac-sha256: <base64 HMAC-SHA256 of the body>`.
    Shopify { secret: Credential },
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: Credential },
    /// `<name>: <value>`.
    Header { name: String, value: Credential },
}

impl fmt::Debug for Verify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets are Credentials already; the kind is all that helps.
        write!(f, "Verify({})", self.kind())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl HmacAlgorithm {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

impl Encoding {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "hex" => Some(Self::Hex),
            "base64" => Some(Self::Base64),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hex => "hex",
            Self::Base64 => "base64",
        }
    }

    fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Self::Hex => decode_hex(text),
            Self::Base64 => STANDARD.decode(text).ok(),
        }
    }
}

/// `GET /in/{id}?{query_param}=X` answers `X`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub query_param: String,
}

/// How a body becomes events: JSON pointers (RFC 6901).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// An array in the body: one event per item. `None`: the body is one event.
    pub items: Option<Pointer>,
    /// Into an item (or the body): the provider's event id, for dedup.
    pub id: Option<Pointer>,
    /// Into an item (or the body): the event's type.
    pub event_type: Option<Pointer>,
}

/// A JSON pointer: `""` (the whole value) or `/a/0/b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer(String);

impl Pointer {
    pub fn parse(text: &str) -> Result<Self, InvalidSource> {
        if text.len() > 256 {
            return Err(invalid("is longer than 256 characters"));
        }
        if !(text.is_empty() || text.starts_with('/')) {
            return Err(invalid("is not a JSON pointer: empty or starting with `/`"));
        }
        // `~` must be `~0` or `~1`.
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(invalid("has a `~` that is not `~0` or `~1`"));
            }
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value it points at, as written (numbers keep their digits).
    fn find<'a>(&self, value: &'a RawValue) -> Option<&'a RawValue> {
        let mut at = value;
        for token in self.0.split('/').skip(1) {
            let token = token.replace("~1", "/").replace("~0", "~");
            let text = at.get().trim_start();
            at = if text.starts_with('{') {
                let map: std::collections::HashMap<std::borrow::Cow<'a, str>, &'a RawValue> =
                    serde_json::from_str(at.get()).ok()?;
                map.get(token.as_str()).copied()?
            } else if text.starts_with('[') {
                let index: usize = (token.bytes().all(|b| b.is_ascii_digit())
                    && (token == "0" || !token.starts_with('0')))
                .then(|| token.parse().ok())
                .flatten()?;
                let list: Vec<&'a RawValue> = serde_json::from_str(at.get()).ok()?;
                list.get(index).copied()?
            } else {
                return None;
            };
        }
        Some(at)
    }
}

/// What is wrong with a source's settings (or a field of one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSource(pub String);

fn invalid(problem: impl Into<String>) -> InvalidSource {
    InvalidSource(problem.into())
}

fn checked_secret(text: &str, what: &str) -> Result<Credential, InvalidSource> {
    if text.is_empty() || text.len() > MAX_SOURCE_SECRET {
        return Err(invalid(format!("{what} is 1-{MAX_SOURCE_SECRET} bytes")));
    }
    Ok(Credential::new(text))
}

fn visible_ascii(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl Verify {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hmac { .. } => "hmac",
            Self::StandardWebhooks { .. } => "standardWebhooks",
            Self::Github { .. } => "github",
            Self::Stripe { .. } => "stripe",
            Self::Shopify { .. } => "shopify",
            Self::Basic { .. } => "basic",
            Self::Header { .. } => "header",
        }
    }

    /// An HMAC verification, checked.
    pub fn hmac(
        header: &str,
        algorithm: HmacAlgorithm,
        encoding: Encoding,
        prefix: Option<&str>,
        secret: &str,
    ) -> Result<Self, InvalidSource> {
        let header = header.to_ascii_lowercase();
        if !is_header_name(&header) {
            return Err(invalid("header is not an HTTP header name"));
        }
        if let Some(prefix) = prefix
            && (prefix.len() > 64 || !visible_ascii(prefix))
        {
            return Err(invalid("prefix is 1-64 visible ASCII characters"));
        }
        Ok(Self::Hmac {
            header,
            algorithm,
            encoding,
            prefix: prefix.map(str::to_owned),
            secret: checked_secret(secret, "secret")?,
        })
    }

    pub fn standard_webhooks(secret: &str) -> Result<Self, InvalidSource> {
        secret
            .parse::<SigningSecret>()
            .map_err(|e| invalid(format!("secret: {e}")))?;
        Ok(Self::StandardWebhooks {
            secret: Credential::new(secret.trim()),
        })
    }

    pub fn github(secret: &str) -> Result<Self, InvalidSource> {
        Ok(Self::Github {
            secret: checked_secret(secret, "secret")?,
        })
    }

    pub fn stripe(secret: &str, tolerance: Option<Duration>) -> Result<Self, InvalidSource> {
        let tolerance = tolerance.unwrap_or(STRIPE_TOLERANCE);
        if tolerance.is_zero() || tolerance > Duration::from_secs(3600) {
            return Err(invalid("tolerance is 1 s to 1 h"));
        }
        Ok(Self::Stripe {
            secret: checked_secret(secret, "secret")?,
            tolerance,
        })
    }

    pub fn shopify(secret: &str) -> Result<Self, InvalidSource> {
        Ok(Self::Shopify {
            secret: checked_secret(secret, "secret")?,
        })
    }

    pub fn basic(username: &str, password: &str) -> Result<Self, InvalidSource> {
        if username.is_empty() || username.len() > 256 || username.contains(':') || !visible_ascii(username) {
            return Err(invalid(
                "username is 1-256 visible ASCII characters without `:`",
            ));
        }
        Ok(Self::Basic {
            username: username.to_owned(),
            password: checked_secret(password, "password")?,
        })
    }

    pub fn header(name: &str, value: &str) -> Result<Self, InvalidSource> {
        let name = name.to_ascii_lowercase();
        if !is_header_name(&name) {
            return Err(invalid("name is not an HTTP header name"));
        }
        if !visible_ascii(value) || value.len() > MAX_SOURCE_SECRET {
            return Err(invalid(format!(
                "value is 1-{MAX_SOURCE_SECRET} visible ASCII characters"
            )));
        }
        Ok(Self::Header {
            name,
            value: Credential::new(value),
        })
    }

    /// Checks a request: `header` looks a request header up by its
    /// lowercase name, `body` is the raw bytes as received. Fails closed:
    /// anything missing, malformed or not matching is a [`Refused`]. Every
    /// comparison of a secret or signature is constant-time.
    pub fn check<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<(), Refused> {
        let required = |name: &'static str| -> Result<&'h str, Refused> {
            header(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(Refused::Missing(name.to_owned()))
        };
        match self {
            Self::Hmac { header: name, algorithm, encoding, prefix, secret } => {
                let value = header(name)
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| Refused::Missing(name.clone()))?
                    .trim();
                let value = match prefix {
                    Some(prefix) => value
                        .strip_prefix(prefix.as_str())
                        .ok_or_else(|| Refused::Malformed(format!("the {name} header does not start with its prefix")))?,
                    None => value,
                };
                let given = encoding
                    .decode(value)
                    .ok_or_else(|| Refused::Malformed(format!("the {name} header is not {}", encoding.as_str())))?;
                hmac_matches(*algorithm, secret.expose().as_bytes(), &[body], &given)
            }
            Self::Github { secret } => {
                let value = required("x-hub-signature-256")?.trim();
                let given = value
                    .strip_prefix("sha256=")
                    .and_then(decode_hex)
                    .ok_or_else(|| Refused::Malformed("the x-hub-signature-256 header is not sha256=<hex>".into()))?;
                hmac_matches(HmacAlgorithm::Sha256, secret.expose().as_bytes(), &[body], &given)
            }
            Self::Shopify { secret } => {
                let value = required("x-shopify-hmac-sha256")?.trim();
                let given = STANDARD
                    .decode(value)
                    .map_err(|_| Refused::Malformed("the x-shopify-hmac-sha256 header is not base64".into()))?;
                hmac_matches(HmacAlgorithm::Sha256, secret.expose().as_bytes(), &[body], &given)
            }
            Self::Stripe { secret, tolerance } => {
                let value = required("stripe-signature")?;
                let mut timestamp = None;
                let mut candidates = Vec::new();
                for part in value.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
                        Some(("v1", sig)) => candidates.extend(decode_hex(sig)),
                        _ => {}
                    }
                }
                let timestamp = timestamp
                    .ok_or_else(|| Refused::Malformed("the stripe-signature header has no t=<unix seconds>".into()))?;
                if candidates.is_empty() {
                    return Err(Refused::Malformed("the stripe-signature header has no v1 signature".into()));
                }
                let age = i128::from(now.timestamp()) - i128::from(timestamp);
                if age.unsigned_abs() > u128::from(tolerance.as_secs()) {
                    return Err(Refused::Stale { tolerance: *tolerance });
                }
                let signed_at = timestamp.to_string();
                let parts: [&[u8]; 3] = [signed_at.as_bytes(), b".", body];
                if candidates.iter().any(|given| {
                    hmac_matches(HmacAlgorithm::Sha256, secret.expose().as_bytes(), &parts, given).is_ok()
                }) {
                    Ok(())
                } else {
                    Err(Refused::Mismatch)
                }
            }
            Self::StandardWebhooks { secret } => {
                let Ok(secret) = secret.expose().parse::<SigningSecret>() else {
                    return Err(Refused::Mismatch);
                };
                let id = required("webhook-id")?;
                let timestamp = required("webhook-timestamp")?;
                let signature = required("webhook-signature")?;
                crate::signing::verify(
                    &[secret],
                    id,
                    timestamp,
                    signature,
                    body,
                    now.timestamp(),
                    STANDARD_WEBHOOKS_TOLERANCE,
                )
                .map_err(|err| match err {
                    crate::VerifyError::OutsideTolerance { .. } => Refused::Stale {
                        tolerance: STANDARD_WEBHOOKS_TOLERANCE,
                    },
                    crate::VerifyError::NoMatch => Refused::Mismatch,
                    other => Refused::Malformed(other.to_string()),
                })
            }
            Self::Basic { username, password } => {
                let value = required("authorization")?.trim();
                let (scheme, encoded) = value.split_once(' ').unwrap_or((value, ""));
                if !scheme.eq_ignore_ascii_case("basic") {
                    return Err(Refused::Malformed("the authorization header is not Basic".into()));
                }
                let decoded = STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| Refused::Malformed("the authorization header is not Basic base64".into()))?;
                let expected = format!("{username}:{}", password.expose());
                if constant_time_eq(&decoded, expected.as_bytes()) {
                    Ok(())
                } else {
                    Err(Refused::Mismatch)
                }
            }
            Self::Header { name, value } => {
                let given = header(name).ok_or_else(|| Refused::Missing(name.clone()))?;
                if constant_time_eq(given.as_bytes(), value.expose().as_bytes()) {
                    Ok(())
                } else {
                    Err(Refused::Mismatch)
                }
            }
        }
    }

    /// The header a preset names its provider's event id in, used for
    /// dedup when the split names none.
    pub fn delivery_id_header(&self) -> Option<&'static str> {
        match self {
            Self::StandardWebhooks { .. } => Some("webhook-id"),
            Self::Github { .. } => Some("x-github-delivery"),
            Self::Shopify { .. } => Some("x-shopify-webhook-id"),
            _ => None,
        }
    }
}

/// Compares in time that depends on the lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Comparing digests keeps even the lengths' difference out of timing.
    use sha2::{Digest, Sha256};
    let a = Sha256::digest(a);
    let b = Sha256::digest(b);
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

fn hmac_matches(algorithm: HmacAlgorithm, key: &[u8], parts: &[&[u8]], given: &[u8]) -> Result<(), Refused> {
    fn check<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]], given: &[u8]) -> bool {
        let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
            return false;
        };
        for part in parts {
            mac.update(part);
        }
        // `verify_slice` compares in constant time.
        mac.verify_slice(given).is_ok()
    }
    let ok = match algorithm {
        HmacAlgorithm::Sha1 => check::<hmac::Hmac<sha1::Sha1>>(key, parts, given),
        HmacAlgorithm::Sha256 => check::<hmac::Hmac<sha2::Sha256>>(key, parts, given),
        HmacAlgorithm::Sha512 => check::<hmac::Hmac<sha2::Sha512>>(key, parts, given),
    };
    if ok { Ok(()) } else { Err(Refused::Mismatch) }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Why a request was not verified. Names what is wrong, never a secret or
/// a signature value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the {0} header is missing")]
    Missing(String),
    #[error("{0}")]
    Malformed(String),
    #[error("the signature's timestamp is more than {} s from now", tolerance.as_secs())]
    Stale { tolerance: Duration },
    #[error("the signature does not match")]
    Mismatch,
}

/// One event a request splits into.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The provider's event id, when the source says where it is.
    pub provider_id: Option<String>,
    pub event_type: EventType,
    pub payload: RawJson,
}

/// Why a verified body makes no events (the request is refused whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsplittable {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("split.items {0:?} is not an array in the body")]
    NoItems(String),
    #[error("the body holds {0} items, more than the {MAX_SPLIT_ITEMS} allowed")]
    TooManyItems(usize),
    #[error("item {index}: {problem}")]
    Item { index: usize, problem: String },
}

impl Source {
    /// Checks what a source needs as a whole: a type for every event.
    pub fn checked(self) -> Result<Self, InvalidSource> {
        if self.name.is_empty() || self.name.chars().count() > MAX_SOURCE_NAME || self.name.chars().any(char::is_control) {
            return Err(invalid(format!(
                "name is 1-{MAX_SOURCE_NAME} characters with no control characters"
            )));
        }
        if self.event_type.is_none() && self.split.event_type.is_none() {
            return Err(invalid(
                "eventType is required unless split.type names each event's type",
            ));
        }
        Ok(self)
    }

    /// The challenge answer for a `GET /in/{id}` with `query` (its raw
    /// query string): the parameter's value, decoded.
    pub fn challenge_answer(&self, query: Option<&str>) -> Option<String> {
        let challenge = self.challenge.as_ref()?;
        url::form_urlencoded::parse(query?.as_bytes())
            .find(|(name, _)| name == challenge.query_param.as_str())
            .map(|(_, value)| value.into_owned())
            .filter(|value| value.len() <= MAX_CHALLENGE)
    }

    /// The events a verified body makes. `header` looks a request header
    /// up, for a preset's delivery id when the split names no id.
    pub fn split<'h>(&self, body: &[u8], header: impl Fn(&str) -> Option<&'h str>) -> Result<Vec<Item>, Unsplittable> {
        let text = std::str::from_utf8(body).map_err(|_| Unsplittable::NotJson("it is not UTF-8".into()))?;
        // Parsing as a value first bounds the nesting, as `RawJson` does.
        serde_json::from_str::<serde_json::Value>(text).map_err(|e| Unsplittable::NotJson(e.to_string()))?;
        let whole: &RawValue = serde_json::from_str(text).map_err(|e| Unsplittable::NotJson(e.to_string()))?;
        let delivery_id = self
            .verify
            .delivery_id_header()
            .and_then(&header)
            .map(str::trim)
            .filter(|id| !id.is_empty() && id.len() <= MAX_PROVIDER_ID)
            .map(str::to_owned);
        let items: Vec<&RawValue> = match &self.split.items {
            None => vec![whole],
            Some(pointer) => {
                let list = pointer
                    .find(whole)
                    .filter(|v| v.get().trim_start().starts_with('['))
                    .ok_or_else(|| Unsplittable::NoItems(pointer.as_str().to_owned()))?;
                let list: Vec<&RawValue> =
                    serde_json::from_str(list.get()).map_err(|e| Unsplittable::NotJson(e.to_string()))?;
                if list.len() > MAX_SPLIT_ITEMS {
                    return Err(Unsplittable::TooManyItems(list.len()));
                }
                list
            }
        };
        let many = self.split.items.is_some();
        items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let problem = |problem: String| Unsplittable::Item { index, problem };
                let provider_id = match &self.split.id {
                    Some(pointer) => Some(
                        pointer
                            .find(item)
                            .and_then(scalar_text)
                            .filter(|id| !id.is_empty() && id.len() <= MAX_PROVIDER_ID)
                            .ok_or_else(|| {
                                problem(format!(
                                    "split.id {:?} is not a string or number of 1-{MAX_PROVIDER_ID} characters",
                                    pointer.as_str()
                                ))
                            })?,
                    ),
                    // One delivery of several items: each is the delivery's nth.
                    None if many => delivery_id.as_ref().map(|id| format!("{id}#{index}")),
                    None => delivery_id.clone(),
                };
                let named = match &self.split.event_type {
                    Some(pointer) => pointer
                        .find(item)
                        .and_then(scalar_text)
                        .and_then(|t| EventType::parse(&t).ok()),
                    None => None,
                };
                let event_type = named.or_else(|| self.event_type.clone()).ok_or_else(|| {
                    problem(format!(
                        "split.type {:?} is not an event type, and the source has no eventType",
                        self.split.event_type.as_ref().map(Pointer::as_str).unwrap_or_default()
                    ))
                })?;
                let payload = RawJson::from_json(item.get()).map_err(|e| match e {
                    MetadataError::Invalid(reason) => problem(reason),
                    other => problem(other.to_string()),
                })?;
                Ok(Item {
                    provider_id,
                    event_type,
                    payload,
                })
            })
            .collect()
    }
}

/// A string's text, or a number's digits.
fn scalar_text(value: &RawValue) -> Option<String> {
    let text = value.get().trim();
    if text.starts_with('"') {
        serde_json::from_str::<String>(text).ok()
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Some(text.to_owned())
    } else {
        None
    }
}

/// A request a source received, and what became of it: kept for
/// `GET /v1/sources/{id}/requests`. Holds no header, signature or secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRequest {
    pub id: SourceRequestId,
    pub source: SourceId,
    pub tenant: TenantId,
    pub received_at: Timestamp,
    /// The body's length in bytes.
    pub body_bytes: u64,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Verified and made durable: the events it made, and how many of its
    /// items were provider events ingested before (within the window).
    Accepted { events: Vec<EventId>, duplicates: u32 },
    /// Answered `status`, nothing stored, because of `reason`.
    Rejected { status: u16, reason: String },
}
