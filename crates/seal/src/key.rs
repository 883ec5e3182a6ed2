//! Data keys: the AES-256 keys records are sealed under, each wrapped by a
//! [`KeyWrap`](crate::KeyWrap) and stored beside what it sealed; and the
//! AEAD itself (AES-256-GCM with a synthetic nonce).

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::SealError;

/// Bytes in a data key (AES-256).
pub const DATA_KEY_LEN: usize = 32;
/// Bytes in a nonce (96 bits, GCM's).
pub const SEAL_NONCE_LEN: usize = NONCE_LEN;
/// Bytes GCM's tag adds to a ciphertext.
pub const TAG_LEN: usize = 16;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Domain separation: the nonce key is derived from the data key, never the
/// data key itself, so one key is never used by two algorithms.
const NONCE_KEY_LABEL: &[u8] = b"hookline seal synthetic nonce v1";

/// A 32-byte data key, zeroized when dropped. Its `Debug` shows only its
/// id, a fingerprint of its wrapped form (public: it is stored).
pub struct DataKey {
    id: String,
    key: Zeroizing<[u8; DATA_KEY_LEN]>,
    nonce_key: Zeroizing<[u8; 32]>,
}

impl DataKey {
    /// The data key `key`, whose wrapped form is `wrapped` (for its id).
    pub fn new(key: Zeroizing<[u8; DATA_KEY_LEN]>, wrapped: &[u8]) -> Self {
        let digest = Sha256::digest(wrapped);
        let id = format!("dk:{}", hex(&digest[..8]));
        let mut mac = hmac_of(&key[..]);
        mac.update(NONCE_KEY_LABEL);
        let mut nonce_key = Zeroizing::new([0u8; 32]);
        nonce_key.copy_from_slice(&mac.finalize().into_bytes());
        DataKey { id, key, nonce_key }
    }

    /// `dk:` and 16 hex digits of the SHA-256 of the wrapped key: names the
    /// key in logs and errors, reveals nothing of it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The synthetic nonce for `plaintext` under `context`: the first 12
    /// bytes of HMAC-SHA256(nonce key, len(context) as u64 BE || context ||
    /// plaintext). The length prefix keeps (context, plaintext) pairs apart
    /// even when contexts hold NUL bytes (`b"endpoint\0tenant\0id"`), so
    /// distinct pairs never share a nonce, and the same pair always does.
    pub(crate) fn nonce_for(&self, context: &[u8], plaintext: &[u8]) -> [u8; SEAL_NONCE_LEN] {
        let mut mac = hmac_of(&self.nonce_key[..]);
        mac.update(&(context.len() as u64).to_be_bytes());
        mac.update(context);
        mac.update(plaintext);
        let tag = mac.finalize().into_bytes();
        let mut nonce = [0u8; SEAL_NONCE_LEN];
        nonce.copy_from_slice(&tag[..SEAL_NONCE_LEN]);
        nonce
    }

    /// Seals `plaintext` with `context` as AAD: the nonce and the
    /// ciphertext with its tag.
    pub(crate) fn seal(
        &self,
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<([u8; SEAL_NONCE_LEN], Vec<u8>), SealError> {
        let nonce = self.nonce_for(context, plaintext);
        let ct = gcm_seal(&self.key, nonce, context, plaintext)?;
        Ok((nonce, ct))
    }

    /// Opens what [`DataKey::seal`] made under the same context.
    pub(crate) fn open(
        &self,
        context: &[u8],
        nonce: [u8; SEAL_NONCE_LEN],
        ct: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        gcm_open(&self.key, nonce, context, ct).ok_or(SealError::DoesNotOpen)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .field("key", &"[redacted]")
            .finish()
    }
}

fn hmac_of(key: &[u8]) -> HmacSha256 {
    // HMAC zero-pads a key shorter than its block, so the padded block is
    // the same key; `KeyInit::new` on it cannot fail (unlike
    // `new_from_slice`, whose error arm would need an `expect`).
    let block = pad_key(key);
    <HmacSha256 as KeyInit>::new((&*block).into())
}

/// HMAC-SHA256 keys of up to 64 bytes as the 64-byte block HMAC zero-pads
/// them to (the same MAC); our keys are always 32 bytes.
fn pad_key(key: &[u8]) -> Zeroizing<[u8; 64]> {
    let mut block = Zeroizing::new([0u8; 64]);
    let n = key.len().min(64);
    block[..n].copy_from_slice(&key[..n]);
    block
}

fn aead(key: &[u8; DATA_KEY_LEN]) -> Result<LessSafeKey, SealError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| SealError::Crypto("a 32-byte key was refused"))
}

/// AES-256-GCM seal: ciphertext || tag.
pub(crate) fn gcm_seal(
    key: &[u8; DATA_KEY_LEN],
    nonce: [u8; SEAL_NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let key = aead(key)?;
    let mut in_out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    in_out.extend_from_slice(plaintext);
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut in_out)
        .map_err(|_| SealError::Crypto("sealing failed"))?;
    Ok(in_out)
}

/// AES-256-GCM open; `None` when it does not authenticate.
pub(crate) fn gcm_open(
    key: &[u8; DATA_KEY_LEN],
    nonce: [u8; SEAL_NONCE_LEN],
    aad: &[u8],
    ct: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let key = aead(key).ok()?;
    let mut in_out = Zeroizing::new(ct.to_vec());
    let len = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut in_out)
        .ok()?
        .len();
    in_out.truncate(len);
    Some(in_out)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
