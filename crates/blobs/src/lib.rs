//! The claim-check blob store for large event payloads (SPEC section 13):
//! a payload above [`INLINE_THRESHOLD_BYTES`] is kept as a blob, and the
//! records hold its [`BlobRef`] (sha256 and length) instead of the bytes.
//!
//! Blobs are content-addressed within a tenant: a blob's key is its
//! tenant and its sha256 (`{prefix}{tenant}/{sha256 hex}`), so writing the
//! same payload again (a publish retried after a crash) is the same blob,
//! and two tenants never share one. Every read is verified against the
//! reference: what comes back is exactly the bytes that were put, or an
//! error ([`BlobError::Missing`], [`BlobError::Altered`]); never other
//! bytes.
//!
//! Two stores: [`FileBlobs`] (files under a directory, the embedded default
//! beside the SQLite database) and [`S3Blobs`] (objects in a bucket). Only
//! this crate knows aws-sdk-s3. [`parse_blobs_url`] reads `--blobs`.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

mod file;
mod s3;
mod url;

pub use file::FileBlobs;
pub use s3::S3Blobs;
pub use url::{BlobUrlError, BlobsUrl, parse_blobs_url};

/// The largest event payload hookline takes (SPEC section 13), inline or
/// as a blob. A store refuses to put more ([`BlobError::TooLarge`]).
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;

/// Payloads larger than this go to the blob store; this size and smaller
/// stay inline in the event's record. 64 KiB, from DynamoDB's item limit
/// and the cost of each way (us-east-1 list prices):
///
/// - **Where the bytes are paid for.** An event's payload is stored once,
///   in the event's item, never in its deliveries' items (those are the
///   ones written about 6 times each: create, claim, save; SPEC section 9's
///   `2 + 6N` write units for a 1 KiB event to N endpoints). So inline, a
///   payload of K KiB costs about K write units once: the event's `PutItem`
///   (and K more for each provider result a thin event settles, since an
///   `UpdateItem` is billed on the larger of the item before and after).
/// - **Inline, per event:** K write units at $0.625 per million
///   (on demand) = K × $0.000000625, plus K × 1 KiB of storage at
///   $0.25/GB-month. At 64 KiB: $0.000040 per event, $40 per million.
/// - **As a blob, per event:** one S3 PUT ($0.005 per 1,000 = $0.000005)
///   plus one GET per processor that reads the event ($0.0004 per 1,000,
///   the event is cached, so about one per delivery at worst), plus a
///   reference of about 100 bytes inline; storage at $0.023/GB-month.
///   For N deliveries: $0.000005 + N × $0.0000004.
/// - **Break-even** on requests alone: K = (5 + 0.4 N) / 0.625 ≈ 8 + 0.64 N
///   KiB: about 9 KiB for one endpoint, 14 KiB for ten. So a threshold at
///   the break-even would send most mid-sized events to S3 to save at most
///   $0.000034 per event (a 64 KiB event inline vs as a blob), while
///   putting S3's latency (a PUT at intake, a GET on the delivery path)
///   and a second service's availability in front of them. Webhook
///   payloads are mostly a few KiB; at 64 KiB nearly all of them never
///   touch the blob store, and the extra cost is bounded by $40 per
///   million of the largest inline events.
/// - **Why not 256 KiB** (the old inline maximum): 256 write units per
///   event ($160 per million, 30 times the blob's $5.4), 256 KiB of each
///   event's 400 KB item gone (what is left holds the endpoints the event
///   goes to and a thin event's settled results), and every strongly
///   consistent read of the event costing 64 read units.
/// - **The item limit:** 64 KiB leaves over 330 KB of DynamoDB's 400 KB item
///   for the rest of the event, so no event near the threshold outgrows
///   its item.
pub const INLINE_THRESHOLD_BYTES: usize = 64 * 1024;

pub use domain::{BlobRef, InvalidSha256, parse_sha256};

/// `bytes` if they are exactly what `blob` names, else `Altered`.
pub fn verify(blob: &BlobRef, bytes: Bytes) -> Result<Bytes, BlobError> {
    let found = BlobRef::of(&bytes);
    if found == *blob {
        Ok(bytes)
    } else {
        Err(BlobError::Altered {
            expected: *blob,
            found_len: found.len(),
        })
    }
}

/// Why a blob could not be put, read or deleted. `Missing`, `Altered`,
/// `TooLarge` and `InvalidTenant` are permanent (trying again gives the
/// same answer); `Unavailable` is worth trying again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("the payload's blob {0} is not in the blob store")]
    Missing(BlobRef),
    #[error(
        "the payload's blob {expected} was altered in the blob store \
         (found {found_len} bytes that do not match its sha256 and length)"
    )]
    Altered { expected: BlobRef, found_len: u64 },
    #[error("a payload of {0} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit")]
    TooLarge(u64),
    #[error("{0:?} cannot name a tenant's blobs (1-128 of A-Z, a-z, 0-9, '-' and '_')")]
    InvalidTenant(String),
    #[error("the blob store is unavailable: {0}")]
    Unavailable(String),
}

impl BlobError {
    /// Whether trying again could give another answer.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Where payloads too large to keep inline are kept. Every method is
/// scoped to a tenant: a reference read under another tenant is `Missing`.
#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// Keeps `bytes` and returns their reference. Idempotent: the same
    /// bytes for the same tenant are the same blob, however often put.
    async fn put(&self, tenant: &str, bytes: Bytes) -> Result<BlobRef, BlobError>;

    /// The bytes `blob` names, verified against its sha256 and length.
    async fn get(&self, tenant: &str, blob: &BlobRef) -> Result<Bytes, BlobError>;

    /// Removes the blob; one already gone is not an error.
    async fn delete(&self, tenant: &str, blob: &BlobRef) -> Result<(), BlobError>;

    /// Removes the blobs past the store's own expiry and says how many,
    /// for a store that keeps one ([`FileBlobs::expiring_after`]); S3's
    /// blobs expire by the bucket's lifecycle rule, so this does nothing
    /// there. A blob expires a fixed time after it was last put, and every
    /// publish puts its payload again, so a blob outlives every event that
    /// refers to it when that time is past the events' retention.
    async fn purge_expired(&self) -> Result<u64, BlobError> {
        Ok(0)
    }

    /// Where the blobs are, for logs: `s3://bucket/prefix`, `file:///dir`.
    fn describe(&self) -> String;
}

/// Tenant ids are restricted by the domain already; this refuses anything
/// that could leave its own directory or key prefix (`/`, `..`, NUL, ...)
/// rather than trust that.
fn check_tenant(tenant: &str) -> Result<(), BlobError> {
    let valid = (1..=128).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        let shown: String = tenant.chars().take(64).collect();
        Err(BlobError::InvalidTenant(shown))
    }
}

fn check_size(bytes: &[u8]) -> Result<(), BlobError> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        Err(BlobError::TooLarge(bytes.len() as u64))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_refuses_other_bytes_of_the_same_length() {
        let blob = BlobRef::of(b"abc");
        assert_eq!(
            verify(&blob, Bytes::from_static(b"abc")).as_deref(),
            Ok(&b"abc"[..])
        );
        assert!(matches!(
            verify(&blob, Bytes::from_static(b"abd")),
            Err(BlobError::Altered { found_len: 3, .. })
        ));
        assert!(matches!(
            verify(&blob, Bytes::from_static(b"ab")),
            Err(BlobError::Altered { found_len: 2, .. })
        ));
    }

    #[test]
    fn tenants_that_could_leave_their_place_are_refused() {
        for bad in ["", "..", "a/b", "../x", "a\0b", "a.b", "a\\b", &"a".repeat(129)] {
            assert!(check_tenant(bad).is_err(), "{bad:?}");
        }
        for good in ["acme", "Acme_2", "tenant-42"] {
            assert!(check_tenant(good).is_ok(), "{good}");
        }
    }
}
