//! Identifiers: job ids are ULIDs (sortable by creation time, safe in URLs).

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(ulid::Ulid);

#[derive(Debug, thiserror::Error)]
#[error("not a job id: expected a 26-character ULID")]
pub struct ParseJobIdError;

/// Which receiver a job's deliveries go to, as 20 bits of its id: a hash
/// of the endpoint's id, or of a callback URL's origin. The processor's
/// slot sharing counts jobs by it (one slow or failing receiver does not
/// take a tenant's every slot) straight from the due index, which names
/// job ids and nothing else. Different receivers may share a tag (one in
/// about a million pairs): they then share one receiver's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReceiverTag(u32);

impl ReceiverTag {
    const BITS: u32 = 20;
    const MASK: u128 = (1 << Self::BITS) - 1;
    /// Where it sits in a ULID: the top of the 80 random bits.
    const SHIFT: u32 = 80 - Self::BITS;

    fn of(kind: &[u8], bytes: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"hookline receiver\0")
            .chain_update(kind)
            .chain_update(bytes)
            .finalize();
        let top = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        Self(top >> (32 - Self::BITS))
    }

    /// The tag of a registered endpoint.
    pub fn of_endpoint(endpoint: EndpointId) -> Self {
        Self::of(b"endpoint\0", &endpoint.0.to_bytes())
    }

    /// The tag of callbacks to `url`: its origin (scheme, host, port), so
    /// one receiver's paths share it.
    pub fn of_callback(url: &url::Url) -> Self {
        Self::of(b"callback\0", url.origin().ascii_serialization().as_bytes())
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl JobId {
    /// A new id for a job created at `now`; randomness is the caller's so ids
    /// are reproducible in tests.
    pub fn generate(now: Timestamp, rng: &mut dyn RngCore) -> Self {
        let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        let random = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
        Self(ulid::Ulid::from_parts(millis, random))
    }

    /// A new id for a job to `receiver`: random but for the tag it carries.
    pub fn generate_for(receiver: ReceiverTag, now: Timestamp, rng: &mut dyn RngCore) -> Self {
        Self::generate(now, rng).tagged(receiver)
    }

    fn tagged(self, receiver: ReceiverTag) -> Self {
        let mask = ReceiverTag::MASK << ReceiverTag::SHIFT;
        let bits = (self.0.0 & !mask) | (u128::from(receiver.0) << ReceiverTag::SHIFT);
        Self(ulid::Ulid(bits))
    }

    /// The receiver tag the id carries. Ids made before tags (of an earlier
    /// release) carry random bits there: each such job counts as a receiver
    /// of its own.
    pub fn receiver(&self) -> ReceiverTag {
        ReceiverTag(((self.0.0 >> ReceiverTag::SHIFT) & ReceiverTag::MASK) as u32)
    }

    /// A small stable hash of the id, used to spread work over index shards.
    pub fn shard(&self, shards: u16) -> u16 {
        // The low bits of a ULID are random, so they spread evenly.
        (self.0.0 % u128::from(shards.max(1))) as u16
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = ParseJobIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ulid::Ulid::from_string(s).map(Self).map_err(|_| ParseJobIdError)
    }
}

impl TryFrom<String> for JobId {
    type Error = ParseJobIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> Self {
        id.to_string()
    }
}

impl JobId {
    /// The id of `event`'s delivery to `endpoint`: the same for every call,
    /// so a delivery is created only if absent however often its event's
    /// fan-out is written again. It sorts with the event's time and carries
    /// the endpoint's [`ReceiverTag`]; the rest is a SHA-256 of both ids.
    pub fn for_delivery(event: EventId, endpoint: EndpointId) -> Self {
        Self::for_delivery_untagged(event, endpoint).tagged(ReceiverTag::of_endpoint(endpoint))
    }

    /// The id deliveries had before they carried a receiver tag: events
    /// stored by that release keep theirs.
    pub fn for_delivery_untagged(event: EventId, endpoint: EndpointId) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"hookline delivery\0")
            .chain_update(event.0.to_bytes())
            .chain_update(endpoint.0.to_bytes())
            .finalize();
        let mut random = [0u8; 16];
        random.copy_from_slice(&digest[..16]);
        Self(ulid::Ulid::from_parts(
            event.0.timestamp_ms(),
            u128::from_be_bytes(random),
        ))
    }
}

/// Ids other than a job's: ULIDs too, with their own type so one is never
/// taken for another.
macro_rules! ulid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(ulid::Ulid);

        impl $name {
            /// A new id made at `now`, with the caller's randomness.
            pub fn generate(now: Timestamp, rng: &mut dyn RngCore) -> Self {
                let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
                let random = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
                Self(ulid::Ulid::from_parts(millis, random))
            }

            /// When the id was made, to the millisecond.
            pub fn created_millis(&self) -> u64 {
                self.0.timestamp_ms()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                ulid::Ulid::from_string(s).map(Self).map_err(|_| ParseIdError($what))
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseIdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.to_string()
            }
        }
    };
}

/// Text that is not an id of the kind asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not {0} id: expected a 26-character ULID")]
pub struct ParseIdError(&'static str);

ulid_id!(
    /// A registered endpoint (SPEC section 9).
    EndpointId,
    "an endpoint"
);
ulid_id!(
    /// A published event; its deliveries' `webhook-id`.
    EventId,
    "an event"
);
ulid_id!(
    /// An inbound source (SPEC section 11); its ingest URL is `/in/{id}`.
    SourceId,
    "a source"
);
ulid_id!(
    /// One request a source received (accepted or not).
    SourceRequestId,
    "a source request"
);

/// The owner of a job. Every read and write is scoped to one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(String);

/// A tenant name that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant names are 1-64 characters of a-z, 0-9, '-' and '_'")]
pub struct InvalidTenant;

impl TenantId {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// A name as an operator types it (`keys create --tenant NAME`):
    /// lowercase letters, digits, `-` and `_`, so it is safe in store keys
    /// and log lines.
    pub fn parse(name: &str) -> Result<Self, InvalidTenant> {
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidTenant)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event type's name (`invoice.paid`): a delivery body's `type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(String);

/// A name that cannot be an event type's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event type names are 1-64 characters of A-Z, a-z, 0-9, '_', '.' and '-'")]
pub struct InvalidEventType;

impl EventType {
    /// A name as SPEC section 9 allows it: 1-64 of `A-Za-z0-9_.-`.
    pub fn parse(name: &str) -> Result<Self, InvalidEventType> {
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidEventType)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn event_type_names_are_the_spec_ones() {
        for ok in ["invoice.paid", "a", "A-Z_0.9", &"x".repeat(64)] {
            assert_eq!(
                EventType::parse(ok).map(|t| t.as_str().to_owned()),
                Ok(ok.to_owned())
            );
        }
        for bad in ["", "has space", "slash/no", "é", &"x".repeat(65)] {
            assert_eq!(EventType::parse(bad), Err(InvalidEventType), "{bad:?}");
        }
    }

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let t0 = chrono::Utc::now();
        let a = JobId::generate(t0, &mut rng);
        let b = JobId::generate(t0 + chrono::Duration::milliseconds(1), &mut rng);
        assert!(a < b);
        assert_eq!(a.to_string().parse::<JobId>().ok(), Some(a));
        assert!("not-an-id".parse::<JobId>().is_err());
    }

    #[test]
    fn a_delivery_id_is_the_same_for_its_event_and_endpoint_and_only_theirs() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let now = chrono::Utc::now();
        let (event, other_event) = (EventId::generate(now, &mut rng), EventId::generate(now, &mut rng));
        let (endpoint, other_endpoint) = (
            EndpointId::generate(now, &mut rng),
            EndpointId::generate(now, &mut rng),
        );
        let id = JobId::for_delivery(event, endpoint);
        assert_eq!(id, JobId::for_delivery(event, endpoint));
        assert_ne!(id, JobId::for_delivery(other_event, endpoint));
        assert_ne!(id, JobId::for_delivery(event, other_endpoint));
        // Sorted with its event, as listings of jobs are.
        assert_eq!(id.0.timestamp_ms(), event.created_millis());
        assert_eq!(event.to_string().parse::<EventId>(), Ok(event));
        assert!("nope".parse::<EndpointId>().is_err());
    }

    #[test]
    fn a_delivery_carries_its_endpoint_s_tag_and_a_callback_its_origin_s() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let now = chrono::Utc::now();
        let endpoint = EndpointId::generate(now, &mut rng);
        let tag = ReceiverTag::of_endpoint(endpoint);
        for _ in 0..20 {
            let event = EventId::generate(now, &mut rng);
            let id = JobId::for_delivery(event, endpoint);
            assert_eq!(id.receiver(), tag);
            assert_eq!(id.0.timestamp_ms(), event.created_millis());
            // The earlier release's id differs only in the tag's bits.
            let untagged = JobId::for_delivery_untagged(event, endpoint);
            assert_eq!(untagged.tagged(tag), id);
        }
        let url = |s: &str| url::Url::parse(s).expect("a URL");
        let origin = ReceiverTag::of_callback(&url("https://a.example/hooks/1?x=1"));
        assert_eq!(origin, ReceiverTag::of_callback(&url("https://a.example/other")));
        assert_ne!(
            origin,
            ReceiverTag::of_callback(&url("https://b.example/hooks/1"))
        );
        assert_ne!(
            origin,
            ReceiverTag::of_callback(&url("https://a.example:8443/hooks/1"))
        );
        assert_ne!(origin, ReceiverTag::of_endpoint(endpoint));
        let (a, b) = (
            JobId::generate_for(origin, now, &mut rng),
            JobId::generate_for(origin, now, &mut rng),
        );
        assert_ne!(a, b, "random but for the tag");
        assert_eq!((a.receiver(), b.receiver()), (origin, origin));
        assert_eq!(a.to_string().parse::<JobId>().ok(), Some(a));
        assert!(origin.get() < 1 << 20);
    }

    #[test]
    fn shards_stay_in_range() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let now = chrono::Utc::now();
        for _ in 0..100 {
            assert!(JobId::generate(now, &mut rng).shard(8) < 8);
        }
    }
}
