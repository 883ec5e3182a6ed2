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

impl JobId {
    /// A new id for a job created at `now`; randomness is the caller's so ids
    /// are reproducible in tests.
    pub fn generate(now: Timestamp, rng: &mut dyn RngCore) -> Self {
        let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        let random = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
        Self(ulid::Ulid::from_parts(millis, random))
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
    fn shards_stay_in_range() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let now = chrono::Utc::now();
        for _ in 0..100 {
            assert!(JobId::generate(now, &mut rng).shard(8) < 8);
        }
    }
}
