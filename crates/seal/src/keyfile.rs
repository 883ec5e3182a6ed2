//! A local key file: the keys that wrap data keys when there is no KMS
//! (`hookline dev`, SQLite installations). The first key wraps new data
//! keys; every key unwraps, so a rotation keeps old seals open until
//! [`KeyFile::without_older`] drops the old keys.
//!
//! ```json
//! {"kind":"hookline-secrets-key","v":1,"keys":[{"id":"local:0123456789abcdef","key":"<base64 of 32 bytes>"}]}
//! ```

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::fresh::draw;
use crate::key::{DATA_KEY_LEN, SEAL_NONCE_LEN, TAG_LEN, gcm_open, gcm_seal, hex};
use crate::{DataKey, Fresh, KeyWrap, SealError};

/// The file's `kind`.
pub const KEY_FILE_KIND: &str = "hookline-secrets-key";
/// The file's `v`.
pub const KEY_FILE_VERSION: u32 = 1;
/// Prefix of a key file key's id.
pub const LOCAL_KEY_PREFIX: &str = "local:";
/// A key file larger than this is not one.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// AAD of a data key wrapped by a file key, before the key's id.
const WRAP_AAD: &[u8] = b"hookline data key\0";
/// Bytes in a data key wrapped by a key file: nonce, key, tag.
pub const WRAPPED_LEN: usize = SEAL_NONCE_LEN + DATA_KEY_LEN + TAG_LEN;

#[derive(Clone)]
struct FileKey {
    id: String,
    key: Zeroizing<[u8; DATA_KEY_LEN]>,
}

/// A key file's keys, newest first (never empty). `Debug` shows ids only.
#[derive(Clone)]
pub struct KeyFile {
    keys: Vec<FileKey>,
}

#[derive(Deserialize)]
struct Header {
    kind: String,
    v: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    kind: String,
    v: u32,
    keys: Vec<WireKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireKey {
    id: String,
    key: String,
}

impl Drop for WireKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl KeyFile {
    /// A key file with one new key.
    pub fn generate(fresh: &dyn Fresh) -> Result<Self, SealError> {
        Ok(KeyFile {
            keys: vec![new_key(fresh)?],
        })
    }

    /// This file with a new key in front: it wraps new data keys, the older
    /// keys still unwrap what they wrapped.
    pub fn rotated(&self, fresh: &dyn Fresh) -> Result<Self, SealError> {
        let mut keys = Vec::with_capacity(self.keys.len() + 1);
        keys.push(new_key(fresh)?);
        keys.extend(self.keys.iter().cloned());
        Ok(KeyFile { keys })
    }

    /// Only the newest key: what older keys wrapped no longer opens (once
    /// every record has been sealed again under the newest).
    pub fn without_older(&self) -> Self {
        KeyFile {
            keys: self.keys.iter().take(1).cloned().collect(),
        }
    }

    /// The keys' ids, newest first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// Reads the key file at `path`. Refuses one that group or others may
    /// read or write (its mode must be 0600 or stricter), and any other
    /// `kind` or `v`.
    pub fn load(path: &Path) -> Result<Self, SealError> {
        let file = File::open(path).map_err(|e| SealError::io(path, "opening", e))?;
        let meta = file
            .metadata()
            .map_err(|e| SealError::io(path, "reading its metadata", e))?;
        check_private(path, &meta)?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(SealError::key_file(
                path,
                format!("larger than {MAX_FILE_BYTES} bytes: not a key file"),
            ));
        }
        let mut text = Zeroizing::new(Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0)));
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| SealError::io(path, "reading", e))?;
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &[u8]) -> Result<Self, SealError> {
        // serde's messages can quote the input; say only where it failed.
        let where_ = |e: serde_json::Error| {
            format!(
                "not a hookline key file (JSON error at line {}, column {})",
                e.line(),
                e.column()
            )
        };
        let header: Header =
            serde_json::from_slice(text).map_err(|e| SealError::key_file(path, where_(e)))?;
        if header.kind != KEY_FILE_KIND {
            return Err(SealError::key_file(
                path,
                format!("kind is not \"{KEY_FILE_KIND}\""),
            ));
        }
        if header.v != KEY_FILE_VERSION {
            return Err(SealError::key_file(
                path,
                format!(
                    "version {} is not one this hookline reads (it reads {KEY_FILE_VERSION})",
                    header.v
                ),
            ));
        }
        let wire: Wire = serde_json::from_slice(text).map_err(|e| SealError::key_file(path, where_(e)))?;
        if wire.keys.is_empty() {
            return Err(SealError::key_file(path, "it holds no keys"));
        }
        let mut keys: Vec<FileKey> = Vec::with_capacity(wire.keys.len());
        for (i, k) in wire.keys.iter().enumerate() {
            if !valid_id(&k.id) {
                return Err(SealError::key_file(
                    path,
                    format!(
                        "key {} has an id that is not {LOCAL_KEY_PREFIX} and 16 hex digits",
                        i + 1
                    ),
                ));
            }
            if keys.iter().any(|seen| seen.id == k.id) {
                return Err(SealError::key_file(path, format!("key {} appears twice", k.id)));
            }
            let bytes = Zeroizing::new(B64.decode(&k.key).unwrap_or_default());
            let key: [u8; DATA_KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                SealError::key_file(
                    path,
                    format!("key {}: not the base64 of {DATA_KEY_LEN} bytes", k.id),
                )
            })?;
            keys.push(FileKey {
                id: k.id.clone(),
                key: Zeroizing::new(key),
            });
        }
        Ok(KeyFile { keys })
    }

    fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let wire = Wire {
            kind: KEY_FILE_KIND.to_owned(),
            v: KEY_FILE_VERSION,
            keys: self
                .keys
                .iter()
                .map(|k| WireKey {
                    id: k.id.clone(),
                    key: B64.encode(&k.key[..]),
                })
                .collect(),
        };
        // Sized up front so the buffer is not reallocated, leaving copies of
        // the keys behind.
        let mut out = Zeroizing::new(Vec::with_capacity(128 + wire.keys.len() * 96));
        // Writing strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &wire);
        out.push(b'\n');
        out
    }

    /// Writes this key file to `path` (mode 0600), replacing any file
    /// there atomically: a temporary file in the same directory, synced,
    /// then renamed into place.
    pub fn save(&self, path: &Path) -> Result<(), SealError> {
        let temp = self.write_temp(path)?;
        fs::rename(&temp, path).map_err(|e| {
            let _ = fs::remove_file(&temp);
            SealError::io(path, "renaming the temporary file into place", e)
        })?;
        sync_dir(path)
    }

    /// Writes this key file to `path` only if no file is there, safe
    /// against other processes doing the same: the file is written whole
    /// under a temporary name, then hard-linked into place, so `path` is
    /// either absent or complete. Returns the key file now at `path`: this
    /// one, or the one that got there first.
    pub fn save_new(&self, path: &Path) -> Result<KeyFile, SealError> {
        let temp = self.write_temp(path)?;
        let linked = fs::hard_link(&temp, path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                sync_dir(path)?;
                Ok(self.clone())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => KeyFile::load(path),
            Err(e) => Err(SealError::io(path, "linking the new key file into place", e)),
        }
    }

    /// The key file at `path`, made (with one new key) if there is none.
    pub fn load_or_create(path: &Path, fresh: &dyn Fresh) -> Result<KeyFile, SealError> {
        match KeyFile::load(path) {
            Err(SealError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                KeyFile::generate(fresh)?.save_new(path)
            }
            other => other,
        }
    }

    fn write_temp(&self, path: &Path) -> Result<PathBuf, SealError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = parent(path);
        let name = path
            .file_name()
            .ok_or_else(|| SealError::key_file(path, "the path names no file"))?
            .to_string_lossy()
            .into_owned();
        let bytes = self.to_bytes();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let temp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut file = match options.open(&temp) {
                Ok(file) => file,
                // Left by a process that died mid-write with our pid: next name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(SealError::io(temp, "creating a temporary file", e)),
            };
            let written = file.write_all(&bytes).and_then(|()| file.sync_all());
            if let Err(e) = written {
                let _ = fs::remove_file(&temp);
                return Err(SealError::io(temp, "writing a temporary file", e));
            }
            return Ok(temp);
        }
    }

    fn find(&self, key_id: &str) -> Option<&FileKey> {
        self.keys.iter().find(|k| k.id == key_id)
    }

    fn newest(&self) -> &FileKey {
        // Never empty: every constructor makes at least one key.
        &self.keys[0]
    }
}

#[async_trait]
impl KeyWrap for KeyFile {
    fn key_id(&self) -> &str {
        &self.newest().id
    }

    async fn new_data_key(&self, fresh: &dyn Fresh) -> Result<(DataKey, Vec<u8>), SealError> {
        let file_key = self.newest();
        let key = Zeroizing::new(draw::<DATA_KEY_LEN>(fresh)?);
        // A random nonce: a file key wraps one data key per process start
        // and per 2^20 seals, far below GCM's bound for random nonces.
        let nonce = draw::<SEAL_NONCE_LEN>(fresh)?;
        let ct = gcm_seal(&file_key.key, nonce, &wrap_aad(&file_key.id), &key[..])?;
        let mut wrapped = Vec::with_capacity(WRAPPED_LEN);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&ct);
        Ok((DataKey::new(key, &wrapped), wrapped))
    }

    async fn unwrap_key(&self, key_id: &str, wrapped: &[u8]) -> Result<DataKey, SealError> {
        let file_key = self.find(key_id).ok_or_else(|| SealError::UnknownKey {
            key_id: key_id.to_owned(),
        })?;
        let refused = || {
            SealError::Refused(format!(
                "the data key does not unwrap under {key_id}: its wrapped form was altered, or another key wrapped it"
            ))
        };
        if wrapped.len() != WRAPPED_LEN {
            return Err(refused());
        }
        let (nonce, ct) = wrapped.split_at(SEAL_NONCE_LEN);
        let nonce: [u8; SEAL_NONCE_LEN] = nonce.try_into().map_err(|_| refused())?;
        let plain = gcm_open(&file_key.key, nonce, &wrap_aad(&file_key.id), ct).ok_or_else(refused)?;
        let key: [u8; DATA_KEY_LEN] = plain.as_slice().try_into().map_err(|_| refused())?;
        Ok(DataKey::new(Zeroizing::new(key), wrapped))
    }
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFile").field("keys", &self.key_ids()).finish()
    }
}

fn new_key(fresh: &dyn Fresh) -> Result<FileKey, SealError> {
    let id = format!("{LOCAL_KEY_PREFIX}{}", hex(&draw::<8>(fresh)?));
    Ok(FileKey {
        id,
        key: Zeroizing::new(draw::<DATA_KEY_LEN>(fresh)?),
    })
}

fn valid_id(id: &str) -> bool {
    id.strip_prefix(LOCAL_KEY_PREFIX)
        .is_some_and(|digits| digits.len() == 16 && digits.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn wrap_aad(key_id: &str) -> Vec<u8> {
    [WRAP_AAD, key_id.as_bytes()].concat()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Makes a rename or link into `path`'s directory durable.
fn sync_dir(path: &Path) -> Result<(), SealError> {
    #[cfg(unix)]
    {
        let dir = parent(path);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| SealError::io(dir, "syncing the directory", e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), SealError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SealError::key_file(
            path,
            format!(
                "group or others may access it (mode {mode:04o}); only its owner may: run `chmod 600 {}`",
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &fs::Metadata) -> Result<(), SealError> {
    Ok(())
}
