//! Blobs as files under a directory: `{dir}/{tenant}/{sha256 hex}`, the
//! embedded default beside the SQLite database.

use std::io::{ErrorKind, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{BlobError, BlobRef, BlobStore, check_size, check_tenant};

/// Blobs as files under `dir`. A put writes a temporary file in the
/// tenant's directory, syncs it and renames it into place (then syncs the
/// directory), so a blob's file is whole or absent, never half written;
/// files are readable by their owner only (0600).
#[derive(Debug, Clone)]
pub struct FileBlobs {
    dir: PathBuf,
    expire_after: Option<Duration>,
}

impl FileBlobs {
    /// Blobs under `dir`, made (with the tenants' directories in it) at the
    /// first put; kept until deleted.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            expire_after: None,
        }
    }

    /// [`BlobStore::purge_expired`] removes each blob whose file was last
    /// written (put) more than `age` ago by the system clock: a put writes
    /// the file again, so a blob shared by two events lasts `age` from the
    /// later one's put.
    #[must_use]
    pub fn expiring_after(self, age: Duration) -> Self {
        Self {
            expire_after: Some(age),
            ..self
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tenant_dir(&self, tenant: &str) -> Result<PathBuf, BlobError> {
        check_tenant(tenant)?;
        Ok(self.dir.join(tenant))
    }

    fn path(&self, tenant: &str, blob: &BlobRef) -> Result<PathBuf, BlobError> {
        Ok(self.tenant_dir(tenant)?.join(blob.hex()))
    }
}

#[async_trait]
impl BlobStore for FileBlobs {
    async fn put(&self, tenant: &str, bytes: Bytes) -> Result<BlobRef, BlobError> {
        check_size(&bytes)?;
        let dir = self.tenant_dir(tenant)?;
        blocking(move || {
            let blob = BlobRef::of(&bytes);
            write_atomically(&dir, &blob.hex(), &bytes).map_err(|err| unavailable("writing", &dir, &err))?;
            Ok(blob)
        })
        .await
    }

    async fn get(&self, tenant: &str, blob: &BlobRef) -> Result<Bytes, BlobError> {
        let path = self.path(tenant, blob)?;
        let blob = *blob;
        blocking(move || {
            let file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(err) if err.kind() == ErrorKind::NotFound => return Err(BlobError::Missing(blob)),
                Err(err) => return Err(unavailable("opening", &path, &err)),
            };
            let found_len = file
                .metadata()
                .map_err(|err| unavailable("reading", &path, &err))?
                .len();
            // A file of another length is altered: say so without reading
            // what may be far more than any payload.
            if found_len != blob.len() {
                return Err(BlobError::Altered {
                    expected: blob,
                    found_len,
                });
            }
            let mut bytes = Vec::with_capacity(usize::try_from(found_len).unwrap_or(0));
            // One byte past the expected length shows a file that grew
            // since its length was read.
            file.take(found_len.saturating_add(1))
                .read_to_end(&mut bytes)
                .map_err(|err| unavailable("reading", &path, &err))?;
            crate::verify(&blob, Bytes::from(bytes))
        })
        .await
    }

    async fn delete(&self, tenant: &str, blob: &BlobRef) -> Result<(), BlobError> {
        let path = self.path(tenant, blob)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
            Err(err) => Err(unavailable("removing", &path, &err)),
        }
    }

    async fn purge_expired(&self) -> Result<u64, BlobError> {
        let Some(age) = self.expire_after else {
            return Ok(0);
        };
        let dir = self.dir.clone();
        blocking(move || {
            let Some(before) = SystemTime::now().checked_sub(age) else {
                return Ok(0);
            };
            purge_older(&dir, before).map_err(|err| unavailable("purging", &dir, &err))
        })
        .await
    }

    fn describe(&self) -> String {
        let dir = std::path::absolute(&self.dir).unwrap_or_else(|_| self.dir.clone());
        format!("file://{}", dir.display())
    }
}

/// Removes every blob (and temporary file a crashed put left) under `dir`
/// last written before `before`; the count of blobs removed. A blob put
/// again while it is being removed stays: it is moved aside first, and put
/// back (the same bytes as any newer put's, content-addressed) when the
/// file moved turns out to be that newer put's.
fn purge_older(dir: &Path, before: SystemTime) -> std::io::Result<u64> {
    let tenants = match std::fs::read_dir(dir) {
        Ok(tenants) => tenants,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err),
    };
    let old = |path: &Path| -> std::io::Result<Option<bool>> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.modified()? < before)),
            Ok(_) => Ok(None),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    };
    let mut removed = 0;
    for tenant in tenants {
        let tenant = tenant?;
        if !tenant.file_type()?.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(tenant.path())? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if old(&path)? != Some(true) {
                continue;
            }
            if name.starts_with(".blob-") {
                // A put that never finished.
                remove_if_there(&path)?;
                continue;
            }
            if crate::parse_sha256(&name).is_err() {
                continue;
            }
            let aside = path.with_file_name(format!(".expired-{name}"));
            match std::fs::rename(&path, &aside) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            }
            if old(&aside)? == Some(false) {
                // A put landed between the look and the move: keep it.
                std::fs::rename(&aside, &path)?;
                continue;
            }
            remove_if_there(&aside)?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// `bytes` as `dir/name`, through a synced temporary file in `dir` renamed
/// over it (a blob already there is replaced by the same bytes, which also
/// mends one altered on disk).
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    create_private_dir(dir)?;
    // tempfile makes the file 0600 and removes it if we fail before persist.
    let mut temp = tempfile::Builder::new()
        .prefix(".blob-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(dir.join(name)).map_err(|err| err.error)?;
    // The rename is durable once the directory is.
    std::fs::File::open(dir)?.sync_all()
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| BlobError::Unavailable(format!("the blob file task failed: {err}")))?
}

fn unavailable(doing: &str, path: &Path, err: &std::io::Error) -> BlobError {
    BlobError::Unavailable(format!("{doing} {}: {err}", path.display()))
}
