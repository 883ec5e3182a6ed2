//! What the tests share: seeded randomness, a sealer over a key file, a
//! wrap with a known data key that counts its calls, and tampering.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use seal::{DataKey, Fresh, KeyFile, KeyWrap, RngFresh, SealError, Sealed, Sealer};
use zeroize::Zeroizing;

pub fn fresh(seed: u64) -> Arc<dyn Fresh> {
    Arc::new(RngFresh::new(StdRng::seed_from_u64(seed)))
}

pub fn key_file(seed: u64) -> KeyFile {
    KeyFile::generate(&*fresh(seed)).expect("a seeded generator never fails")
}

pub async fn sealer_over(file: &KeyFile, seed: u64) -> Sealer {
    Sealer::start(Arc::new(file.clone()), fresh(seed))
        .await
        .expect("a key file makes data keys")
}

/// A wrap whose data keys are known bytes (`[n; 32]` for the n-th made,
/// n from 1), "wrapped" as `b"known:" + n`; it counts what it is asked.
#[derive(Debug, Default)]
pub struct Known {
    pub made: AtomicUsize,
    pub unwrapped: AtomicUsize,
}

impl Known {
    pub fn key_bytes(n: u8) -> [u8; 32] {
        [n; 32]
    }
}

#[async_trait]
impl KeyWrap for Known {
    fn key_id(&self) -> &str {
        "known"
    }

    async fn new_data_key(&self, _fresh: &dyn Fresh) -> Result<(DataKey, Vec<u8>), SealError> {
        let n = u8::try_from(self.made.fetch_add(1, Ordering::SeqCst) + 1).expect("under 256 keys in a test");
        let wrapped = [b"known:".as_slice(), &[n]].concat();
        Ok((
            DataKey::new(Zeroizing::new(Known::key_bytes(n)), &wrapped),
            wrapped,
        ))
    }

    async fn unwrap_key(&self, key_id: &str, wrapped: &[u8]) -> Result<DataKey, SealError> {
        self.unwrapped.fetch_add(1, Ordering::SeqCst);
        // Slow enough that concurrent opens overlap.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        match wrapped.strip_prefix(b"known:".as_slice()) {
            Some([n]) if key_id == "known" => Ok(DataKey::new(Zeroizing::new(Known::key_bytes(*n)), wrapped)),
            _ => Err(SealError::Refused("not a known key".to_owned())),
        }
    }
}

/// `sealed` with one bit of the base64 field `field` flipped.
pub fn tampered(sealed: &Sealed, field: &str) -> Sealed {
    let mut value = sealed.to_value();
    let text = value[field].as_str().expect("a base64 field").to_owned();
    let mut bytes = B64.decode(text).expect("base64");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    value[field] = B64.encode(bytes).into();
    Sealed::from_value(&value).expect("still well-formed")
}

/// The base64 and hex forms of key bytes, none of which may be printed.
pub fn forms_of(key: &[u8]) -> Vec<String> {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    vec![B64.encode(key), hex, format!("{key:?}")]
}

pub fn assert_shows_none(text: &str, keys: &[Vec<u8>]) {
    for key in keys {
        for form in forms_of(key) {
            assert!(!text.contains(&form), "{text:?} shows key material ({form})");
        }
    }
}
