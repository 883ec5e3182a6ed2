//! The sealed form of a secret, as stored: key id, wrapped data key, nonce
//! and ciphertext, a small JSON object of base64 strings.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::SealError;
use crate::key::{SEAL_NONCE_LEN, TAG_LEN};

/// A sealed secret: `{"kid":..,"dk":..,"n":..,"ct":..}`. Holds nothing
/// secret (the data key is wrapped), so it may be stored anywhere; it opens
/// only under the context it was sealed with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Wire", into = "Wire")]
pub struct Sealed {
    kid: String,
    dk: Vec<u8>,
    n: [u8; SEAL_NONCE_LEN],
    ct: Vec<u8>,
}

/// The stored form; field order is the order written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    kid: String,
    dk: String,
    n: String,
    ct: String,
}

impl Sealed {
    pub(crate) fn new(kid: String, dk: Vec<u8>, n: [u8; SEAL_NONCE_LEN], ct: Vec<u8>) -> Self {
        Sealed { kid, dk, n, ct }
    }

    /// The id of the key the data key is wrapped under (a KMS key ARN, or a
    /// key file's `local:…`).
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The wrapped data key.
    pub fn wrapped_key(&self) -> &[u8] {
        &self.dk
    }

    /// The nonce.
    pub fn nonce(&self) -> &[u8; SEAL_NONCE_LEN] {
        &self.n
    }

    /// The ciphertext and its 16-byte tag.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ct
    }

    /// The stored text.
    pub fn to_json(&self) -> String {
        // Built by hand so it cannot fail: base64 needs no escaping, and a
        // `Value`'s `Display` escapes the key id.
        format!(
            r#"{{"kid":{},"dk":"{}","n":"{}","ct":"{}"}}"#,
            serde_json::Value::String(self.kid.clone()),
            B64.encode(&self.dk),
            B64.encode(self.n),
            B64.encode(&self.ct)
        )
    }

    /// Reads [`Sealed::to_json`]'s text; anything else is `Malformed`.
    pub fn from_json(text: &str) -> Result<Self, SealError> {
        serde_json::from_str(text).map_err(|e| SealError::Malformed(bounded(&e.to_string())))
    }

    /// The value of a record's member.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, SealError> {
        Sealed::deserialize(value).map_err(|e| SealError::Malformed(bounded(&e.to_string())))
    }

    /// As a JSON value (a record's member).
    pub fn to_value(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("kid".to_owned(), self.kid.clone().into());
        map.insert("dk".to_owned(), B64.encode(&self.dk).into());
        map.insert("n".to_owned(), B64.encode(self.n).into());
        map.insert("ct".to_owned(), B64.encode(&self.ct).into());
        serde_json::Value::Object(map)
    }
}

impl TryFrom<Wire> for Sealed {
    type Error = String;

    fn try_from(wire: Wire) -> Result<Self, String> {
        if wire.kid.is_empty() {
            return Err("kid is empty".to_owned());
        }
        let decode = |name: &str, text: &str| B64.decode(text).map_err(|_| format!("{name} is not base64"));
        let dk = decode("dk", &wire.dk)?;
        if dk.is_empty() {
            return Err("dk is empty".to_owned());
        }
        let n = decode("n", &wire.n)?
            .try_into()
            .map_err(|v: Vec<u8>| format!("n is {} bytes, not {SEAL_NONCE_LEN}", v.len()))?;
        let ct = decode("ct", &wire.ct)?;
        if ct.len() < TAG_LEN {
            return Err(format!(
                "ct is {} bytes, shorter than its {TAG_LEN}-byte tag",
                ct.len()
            ));
        }
        Ok(Sealed {
            kid: wire.kid,
            dk,
            n,
            ct,
        })
    }
}

impl From<Sealed> for Wire {
    fn from(sealed: Sealed) -> Self {
        Wire {
            kid: sealed.kid,
            dk: B64.encode(&sealed.dk),
            n: B64.encode(sealed.n),
            ct: B64.encode(&sealed.ct),
        }
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("kid", &self.kid)
            .field("dk_len", &self.dk.len())
            .field("ct_len", &self.ct.len())
            .finish_non_exhaustive()
    }
}

/// Errors about sealed values echo at most this much of serde's text.
fn bounded(text: &str) -> String {
    const MAX: usize = 160;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
