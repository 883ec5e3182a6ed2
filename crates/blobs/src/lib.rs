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
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

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

/// What a record holds instead of a payload: its sha256 and length. In
/// text, `{"sha256":"<64 hex digits>","len":N}`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "BlobRefText", into = "BlobRefText")]
pub struct BlobRef {
    sha256: [u8; 32],
    len: u64,
}

impl BlobRef {
    /// The reference of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            sha256: Sha256::digest(bytes).into(),
            len: bytes.len() as u64,
        }
    }

    pub fn new(sha256: [u8; 32], len: u64) -> Self {
        Self { sha256, len }
    }

    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sha256 in lowercase hex, as keys and records spell it.
    pub fn hex(&self) -> String {
        hex(&self.sha256)
    }

    /// `bytes` if they are exactly what this names, else `Altered`.
    pub fn verify(&self, bytes: Bytes) -> Result<Bytes, BlobError> {
        let found = Self::of(&bytes);
        if found == *self {
            Ok(bytes)
        } else {
            Err(BlobError::Altered {
                expected: *self,
                found_len: found.len,
            })
        }
    }
}

impl fmt::Debug for BlobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobRef(sha256:{}, {} bytes)", self.hex(), self.len)
    }
}

impl fmt::Display for BlobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{} ({} bytes)", self.hex(), self.len)
    }
}

#[derive(Serialize, Deserialize)]
struct BlobRefText {
    sha256: String,
    len: u64,
}

impl From<BlobRef> for BlobRefText {
    fn from(blob: BlobRef) -> Self {
        Self {
            sha256: blob.hex(),
            len: blob.len,
        }
    }
}

impl TryFrom<BlobRefText> for BlobRef {
    type Error = InvalidSha256;

    fn try_from(text: BlobRefText) -> Result<Self, Self::Error> {
        Ok(Self {
            sha256: parse_sha256(&text.sha256)?,
            len: text.len,
        })
    }
}

/// A sha256 that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a blob's sha256 is 64 hex digits")]
pub struct InvalidSha256;

/// 64 hex digits (either case) as the 32 bytes they spell.
pub fn parse_sha256(text: &str) -> Result<[u8; 32], InvalidSha256> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return Err(InvalidSha256);
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(out)
}

fn nibble(digit: u8) -> Result<u8, InvalidSha256> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(InvalidSha256),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
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
    fn a_reference_is_text_of_hex_and_length_and_reads_back() {
        let blob = BlobRef::of(b"abc");
        let text = serde_json::to_string(&blob).expect("serialize");
        assert_eq!(
            text,
            r#"{"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","len":3}"#
        );
        let back: BlobRef = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, blob);
        let upper = text
            .to_uppercase()
            .replace("SHA256", "sha256")
            .replace("LEN", "len");
        assert_eq!(serde_json::from_str::<BlobRef>(&upper).expect("upper hex"), blob);
    }

    #[test]
    fn bad_hex_is_an_error_not_a_panic() {
        for sha in [
            "",
            "ab",
            &"g".repeat(64),
            &"a".repeat(63),
            &"a".repeat(65),
            &"é".repeat(32),
            &format!("{}é", "a".repeat(62)),
        ] {
            let text = format!(r#"{{"sha256":"{sha}","len":3}}"#);
            assert!(serde_json::from_str::<BlobRef>(&text).is_err(), "{sha}");
        }
        assert!(serde_json::from_str::<BlobRef>(r#"{"sha256":"00","len":-1}"#).is_err());
    }

    #[test]
    fn verify_refuses_other_bytes_of_the_same_length() {
        let blob = BlobRef::of(b"abc");
        assert_eq!(
            blob.verify(Bytes::from_static(b"abc")).as_deref(),
            Ok(&b"abc"[..])
        );
        assert!(matches!(
            blob.verify(Bytes::from_static(b"abd")),
            Err(BlobError::Altered { found_len: 3, .. })
        ));
        assert!(matches!(
            blob.verify(Bytes::from_static(b"ab")),
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
