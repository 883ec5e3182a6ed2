//! A payload kept outside its record (SPEC section 13's claim check): a
//! [`BlobRef`] names the bytes by their sha256 and length. The `blobs`
//! crate keeps and reads the bytes; the domain only holds the reference.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

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
}
