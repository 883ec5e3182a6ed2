//! API keys: what a caller presents, and the hash that is all a store keeps.
//!
//! A key is 32 random bytes, base64url, behind an `hl_` prefix. The store
//! holds only its SHA-256 and finds a key by that hash: a key that is
//! leaked from the store's backups is not a key. With 256 bits of entropy a
//! plain, fast hash is the right one (a slow password hash protects guessable
//! secrets, and these are not).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The key a caller presents. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Anything shorter is refused as a key (`hookline dev` accepts a key
    /// from the environment, so keys are not only the ones generated here).
    pub const MIN_LEN: usize = 16;
    pub const MAX_LEN: usize = 256;

    /// A new key: `hl_` and 32 random bytes.
    pub fn generate(rng: &mut dyn RngCore) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(format!("hl_{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A presented key: printable ASCII without spaces, of a plausible length.
    pub fn parse(text: &str) -> Option<Self> {
        let plausible = (Self::MIN_LEN..=Self::MAX_LEN).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_graphic());
        plausible.then(|| Self(text.to_owned()))
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The key itself, for the one moment it is shown to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// SHA-256 of a key: how a store finds and keeps it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
            *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// The key's public name, for listing and revoking: the first 12 hex
    /// digits of its hash, which say nothing about the key.
    pub fn key_id(&self) -> String {
        self.to_hex()[..12].to_owned()
    }

    /// Equality that takes the same time wherever the hashes differ.
    pub fn constant_time_eq(&self, other: &KeyHash) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", self.key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generated_keys_are_long_distinct_and_never_shown_by_debug() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = ApiKey::generate(&mut rng);
        let b = ApiKey::generate(&mut rng);
        assert_ne!(a, b);
        assert!(
            a.expose().starts_with("hl_") && a.expose().len() == 46,
            "{}",
            a.expose()
        );
        assert_eq!(ApiKey::parse(a.expose()), Some(a.clone()));
        let shown = format!("{a:?} {:?}", a.hash());
        assert!(!shown.contains(&a.expose()[3..]), "{shown}");
        assert!(!shown.contains(&a.hash().to_hex()), "{shown}");
    }

    #[test]
    fn hashes_round_trip_and_compare() {
        let key = ApiKey::parse("a-development-key-1234").expect("plausible");
        let hash = key.hash();
        assert_eq!(KeyHash::from_hex(&hash.to_hex()), Some(hash));
        assert!(hash.constant_time_eq(&hash));
        let other = ApiKey::parse("a-development-key-1235").expect("plausible").hash();
        assert!(!hash.constant_time_eq(&other));
        assert_eq!(hash.key_id().len(), 12);
        assert_eq!(KeyHash::from_hex("zz"), None);
    }

    #[test]
    fn implausible_keys_are_refused() {
        for bad in [
            "",
            "short",
            "has a space in it ok",
            &"x".repeat(300),
            "tab\tinside-the-key",
        ] {
            assert_eq!(ApiKey::parse(bad), None, "{bad:?}");
        }
    }
}
