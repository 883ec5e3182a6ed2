//! What can go wrong sealing, opening and keeping keys. No variant carries
//! key material or plaintext: texts name key ids, paths and what is wrong.

use std::io;
use std::path::PathBuf;

/// Why a seal, an open, or a key operation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key service could not answer now (throttled, unavailable, timed
    /// out, not reached); the same call may succeed later.
    #[error("key service unavailable (retryable): {0}")]
    Unavailable(String),
    /// The key service (or the key file) refused: access denied, no such
    /// key, a disabled key, or a wrapped data key it did not make. Retrying
    /// will not help.
    #[error("key service refused: {0}")]
    Refused(String),
    /// The sealed value names a wrapping key this key file does not hold
    /// (one dropped by `KeyFile::without_older`, or another file's).
    #[error(
        "no key {key_id} here to unwrap the data key with: it is not in this key file (dropped after a rotation, or another installation's?)"
    )]
    UnknownKey {
        /// The id of the key the value was sealed under.
        key_id: String,
    },
    /// The ciphertext did not authenticate under the context given: sealed
    /// for another record, or its ciphertext or nonce were altered.
    #[error(
        "sealed value does not open: sealed for another context (record), or its ciphertext or nonce were altered"
    )]
    DoesNotOpen,
    /// The sealed value (or the sealed member of a record) is not in the
    /// sealed form.
    #[error("malformed sealed value: {0}")]
    Malformed(String),
    /// A key file that is not one we may use.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a key file failed.
    #[error("key file {path}: {action}: {source}")]
    Io {
        /// The file (or its temporary sibling).
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The source of random bytes failed.
    #[error("no random bytes: {0}")]
    Random(String),
    /// The AEAD implementation refused an operation that cannot fail with
    /// the lengths used (kept as an error rather than a panic).
    #[error("AES-256-GCM failure: {0}")]
    Crypto(&'static str),
}

impl SealError {
    /// Whether the same call may succeed if made again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SealError::Unavailable(_))
    }

    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        SealError::Io {
            path: path.into(),
            action,
            source,
        }
    }

    pub(crate) fn key_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        SealError::KeyFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
