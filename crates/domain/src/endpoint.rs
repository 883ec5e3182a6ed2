//! Registered endpoints and event types (SPEC section 9): where a tenant's
//! events go, and which events there are.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use url::Url;

use crate::{EndpointAuth, EndpointId, EventType, TenantId, TenantSecrets, Timestamp};

/// An event type a tenant registered: events must name one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypeDef {
    pub tenant: TenantId,
    pub name: EventType,
    pub description: String,
    /// Providers whose data an event of this type carries (a thin event:
    /// each fetched once per event); none for events given whole.
    pub providers: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Which events an endpoint receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// `["*"]`: every type, those registered later included.
    All,
    Only(BTreeSet<EventType>),
}

impl Subscription {
    pub fn includes(&self, event_type: &EventType) -> bool {
        match self {
            Self::All => true,
            Self::Only(types) => types.contains(event_type),
        }
    }

    /// As the API shows it: `["*"]` or the names.
    pub fn names(&self) -> Vec<String> {
        match self {
            Self::All => vec!["*".to_owned()],
            Self::Only(types) => types.iter().map(|t| t.as_str().to_owned()).collect(),
        }
    }
}

/// Why an endpoint is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisabledReason {
    /// An operator disabled it.
    Manual,
    /// A delivery was answered `410 Gone`.
    Gone,
    /// Every delivery failed for too long.
    Failing,
}

impl DisabledReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Gone => "gone",
            Self::Failing => "failing",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "manual" => Some(Self::Manual),
            "gone" => Some(Self::Gone),
            "failing" => Some(Self::Failing),
            _ => None,
        }
    }
}

/// Whether an endpoint gets deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointStatus {
    Enabled,
    Disabled { reason: DisabledReason, at: Timestamp },
}

/// A group of endpoints (the seeds' company or user): 1-256 printable
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an owner is 1-256 characters with no control characters")]
pub struct InvalidOwner;

impl Owner {
    pub fn parse(text: &str) -> Result<Self, InvalidOwner> {
        let valid = (1..=256).contains(&text.chars().count()) && !text.chars().any(char::is_control);
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidOwner)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Request headers an endpoint's deliveries carry: names are lowercase
/// HTTP tokens, values visible ASCII, and none of the headers hookline
/// sets itself or that belong to the connection (SPEC section 10). A value
/// may be a credential (an `authorization` or `x-api-key` header): `Debug`
/// shows only the names, and [`EndpointHeaders::shown`] hides the values
/// of names that look like one.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EndpointHeaders(BTreeMap<String, String>);

impl fmt::Debug for EndpointHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// What a header's value is shown as when its name looks like a credential.
pub const HIDDEN_HEADER_VALUE: &str = crate::HIDDEN;

/// Whether a header's name says its value is a credential.
fn is_sensitive(name: &str) -> bool {
    [
        "auth",
        "token",
        "secret",
        "key",
        "password",
        "passwd",
        "cookie",
        "signature",
        "credential",
        "session",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// Most custom headers one endpoint may have.
pub const MAX_ENDPOINT_HEADERS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHeader {
    #[error("{0:?} is not a header name")]
    Name(String),
    #[error("the value of {0:?} must be 1-4096 visible ASCII characters or spaces")]
    Value(String),
    #[error("{0:?} is set by hookline and cannot be overridden")]
    Reserved(String),
    #[error("at most {MAX_ENDPOINT_HEADERS} headers")]
    TooMany,
}

/// Whether `name` is an HTTP header name (RFC 9110's token), at most 256
/// characters.
pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Headers a delivery sets itself, or that describe the connection.
pub(crate) fn is_reserved_header(name: &str) -> bool {
    name.starts_with("webhook-")
        || matches!(
            name,
            "content-type"
                | "content-length"
                | "host"
                | "user-agent"
                | "connection"
                | "keep-alive"
                | "proxy-authenticate"
                | "proxy-authorization"
                | "proxy-connection"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
        )
}

impl EndpointHeaders {
    pub fn parse(given: BTreeMap<String, String>) -> Result<Self, InvalidHeader> {
        if given.len() > MAX_ENDPOINT_HEADERS {
            return Err(InvalidHeader::TooMany);
        }
        let mut headers = BTreeMap::new();
        for (name, value) in given {
            let lower = name.to_ascii_lowercase();
            if !is_header_name(&lower) {
                return Err(InvalidHeader::Name(name));
            }
            if is_reserved_header(&lower) {
                return Err(InvalidHeader::Reserved(lower));
            }
            let visible =
                (1..=4096).contains(&value.len()) && value.bytes().all(|b| (0x20..0x7f).contains(&b));
            if !visible || value.trim() != value {
                return Err(InvalidHeader::Value(lower));
            }
            headers.insert(lower, value);
        }
        Ok(Self(headers))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The headers as an API answer shows them: a value whose name looks
    /// like a credential (`authorization`, `x-api-key`, `x-auth-token`, ...)
    /// as [`HIDDEN_HEADER_VALUE`].
    pub fn shown(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(name, value)| {
                let value = if is_sensitive(name) {
                    HIDDEN_HEADER_VALUE
                } else {
                    value
                };
                (name.clone(), value.to_owned())
            })
            .collect()
    }
}

/// A registered endpoint. **Holds secret material** (`secrets`); its
/// `Debug` shows none of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: EndpointId,
    pub tenant: TenantId,
    pub url: Url,
    pub description: String,
    pub owner: Option<Owner>,
    pub event_types: Subscription,
    pub headers: EndpointHeaders,
    /// How its deliveries authenticate; **holds credentials** (their
    /// `Debug` shows `***`).
    pub auth: Option<EndpointAuth>,
    /// How long one delivery may take; `None`: the processor's
    /// `--callback-timeout`.
    pub timeout: Option<std::time::Duration>,
    pub status: EndpointStatus,
    /// What its deliveries are signed with (`whsec_...`), rotatable.
    pub secrets: TenantSecrets,
    /// Since when every delivery attempt to it has failed; `None` while the
    /// last one succeeded (or none was made).
    pub failing_since: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Endpoint {
    pub fn is_enabled(&self) -> bool {
        self.status == EndpointStatus::Enabled
    }

    /// Whether an event of `event_type` (for `owner`, if it names one) is
    /// delivered here: the endpoint is enabled and subscribed to the type,
    /// and an event with an owner goes only to that owner's endpoints.
    pub fn receives(&self, event_type: &EventType, owner: Option<&Owner>) -> bool {
        self.is_enabled()
            && self.event_types.includes(event_type)
            && owner.is_none_or(|owner| self.owner.as_ref() == Some(owner))
    }

    /// Stops deliveries here (a no-op when already disabled: the first
    /// reason stands).
    pub fn disable(&mut self, reason: DisabledReason, now: Timestamp) {
        if self.is_enabled() {
            self.status = EndpointStatus::Disabled { reason, at: now };
            self.updated_at = now;
        }
    }

    pub fn enable(&mut self, now: Timestamp) {
        if !self.is_enabled() {
            self.status = EndpointStatus::Enabled;
            self.failing_since = None;
            self.updated_at = now;
        }
    }

    /// What one delivery attempt's outcome (`succeeded` or not) at `now`
    /// changes in its health: a success ends a failing streak; the first
    /// failure starts one; a streak longer than `disable_after` disables
    /// it ([`DisabledReason::Failing`]). `None` when nothing changes, so a
    /// store is written only when the health does.
    pub fn after_attempt(
        &self,
        succeeded: bool,
        now: Timestamp,
        disable_after: std::time::Duration,
    ) -> Option<Self> {
        if !self.is_enabled() {
            return None;
        }
        let mut next = self.clone();
        match (succeeded, self.failing_since) {
            (true, None) => return None,
            (true, Some(_)) => next.failing_since = None,
            (false, None) => next.failing_since = Some(now),
            (false, Some(since)) => {
                let limit = chrono::Duration::from_std(disable_after).unwrap_or(chrono::Duration::MAX);
                if now.signed_duration_since(since) < limit {
                    return None;
                }
                next.disable(DisabledReason::Failing, now);
            }
        }
        next.updated_at = now;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn headers(pairs: &[(&str, &str)]) -> Result<EndpointHeaders, InvalidHeader> {
        EndpointHeaders::parse(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn custom_headers_cannot_override_what_hookline_sets() {
        assert_eq!(
            headers(&[("X-Team", "billing")]).map(|h| h.as_map().clone()),
            Ok(BTreeMap::from([("x-team".to_owned(), "billing".to_owned())]))
        );
        for reserved in [
            "Webhook-Signature",
            "webhook-id",
            "Content-Type",
            "host",
            "Content-Length",
            "Transfer-Encoding",
            "connection",
        ] {
            assert!(
                matches!(headers(&[(reserved, "x")]), Err(InvalidHeader::Reserved(_))),
                "{reserved}"
            );
        }
        assert!(matches!(
            headers(&[("bad name", "x")]),
            Err(InvalidHeader::Name(_))
        ));
        assert!(matches!(
            headers(&[("x-a", "line\nbreak")]),
            Err(InvalidHeader::Value(_))
        ));
        assert!(matches!(headers(&[("x-a", "")]), Err(InvalidHeader::Value(_))));
        let many: Vec<(String, String)> = (0..=MAX_ENDPOINT_HEADERS)
            .map(|i| (format!("x-{i}"), "v".to_owned()))
            .collect();
        assert_eq!(
            EndpointHeaders::parse(many.into_iter().collect()),
            Err(InvalidHeader::TooMany)
        );
    }

    #[test]
    fn a_failing_streak_past_the_limit_disables_and_a_success_ends_it() {
        let t = |s: i64| chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).expect("a time");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let endpoint = Endpoint {
            id: EndpointId::generate(t(0), &mut rng),
            tenant: TenantId::new("acme"),
            url: Url::parse("https://client.example/hooks").expect("url"),
            description: String::new(),
            owner: None,
            event_types: Subscription::All,
            headers: EndpointHeaders::default(),
            auth: None,
            timeout: None,
            status: EndpointStatus::Enabled,
            secrets: TenantSecrets::new(crate::SigningSecret::generate(&mut rng)),
            failing_since: None,
            created_at: t(0),
            updated_at: t(0),
        };
        let limit = std::time::Duration::from_secs(100);
        assert_eq!(
            endpoint.after_attempt(true, t(1), limit),
            None,
            "healthy stays healthy unwritten"
        );
        let failing = endpoint
            .after_attempt(false, t(10), limit)
            .expect("a streak starts");
        assert_eq!(failing.failing_since, Some(t(10)));
        assert_eq!(
            failing.after_attempt(false, t(50), limit),
            None,
            "within the limit: unchanged"
        );
        let disabled = failing
            .after_attempt(false, t(110), limit)
            .expect("past the limit");
        assert_eq!(
            disabled.status,
            EndpointStatus::Disabled {
                reason: DisabledReason::Failing,
                at: t(110)
            }
        );
        let recovered = failing
            .after_attempt(true, t(60), limit)
            .expect("a success ends it");
        assert_eq!(recovered.failing_since, None);
        let mut enabled = disabled.clone();
        enabled.enable(t(200));
        assert_eq!(enabled.failing_since, None, "enabled again, it starts afresh");
    }

    #[test]
    fn header_values_that_look_like_credentials_are_never_shown() {
        let h = headers(&[
            ("Authorization", "Bearer s3cr3t"),
            ("x-api-key", "k3y"),
            ("x-team", "billing"),
        ])
        .expect("valid");
        assert_eq!(
            h.shown(),
            BTreeMap::from([
                ("authorization".to_owned(), "***".to_owned()),
                ("x-api-key".to_owned(), "***".to_owned()),
                ("x-team".to_owned(), "billing".to_owned()),
            ])
        );
        let debug = format!("{h:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("k3y") && !debug.contains("billing"),
            "{debug}"
        );
        assert!(debug.contains("authorization"), "{debug}");
    }

    #[test]
    fn owners_are_printable_and_bounded() {
        assert!(Owner::parse("company-42").is_ok());
        assert!(Owner::parse("Zoë & co").is_ok());
        assert_eq!(Owner::parse(""), Err(InvalidOwner));
        assert_eq!(Owner::parse("a\tb"), Err(InvalidOwner));
        assert_eq!(Owner::parse(&"x".repeat(257)), Err(InvalidOwner));
    }
}
