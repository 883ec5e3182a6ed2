//! `hookline backup`: a SQLite store copied while it runs, as a store of
//! its own. The database is copied first (a consistent snapshot,
//! `store_sqlite::backup_database`), then its key file and its blobs: a
//! key file only gains keys and a blob is written before any record names
//! it, so copied after the snapshot both hold everything it refers to. The
//! copy is laid out as a store at `--to` looks for its parts (`FILE`,
//! `FILE.secrets-key`, `FILE-blobs/`), and the database file appears last,
//! under its name, only once the rest is in place: a backup that failed
//! halfway leaves nothing that looks whole.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::BackupArgs;
use crate::commands::usage;
use crate::{default_key_file, out};

pub async fn run(args: BackupArgs) -> anyhow::Result<()> {
    let plan = Plan::from_args(&args)?;
    let summary = tokio::task::spawn_blocking(move || plan.carry_out())
        .await
        .context("the backup's thread")??;
    out::show(&summary);
    Ok(())
}

/// What to copy where.
#[derive(Debug)]
struct Plan {
    url: String,
    database: PathBuf,
    /// `None`: sealed under KMS, no file to copy.
    key_file: Option<KeyFile>,
    /// `None`: blobs are on S3 (kept by the bucket, not copied).
    blobs: Option<PathBuf>,
    to: PathBuf,
}

#[derive(Debug)]
struct KeyFile {
    path: PathBuf,
    /// Named by `--secrets-key-file` (else the default beside the database).
    given: bool,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl Plan {
    fn from_args(args: &BackupArgs) -> anyhow::Result<Self> {
        let url = args.store.clone();
        if !url.starts_with("sqlite:") {
            return Err(usage(anyhow::anyhow!(
                "`backup` copies a SQLite store; back a DynamoDB table up with its point-in-time recovery"
            )));
        }
        let config = store_sqlite::SqliteConfig::from_url(&url).map_err(usage)?;
        let key_file = match (&args.kms_key, &args.secrets_key_file) {
            (Some(_), _) => None,
            (None, Some(path)) => Some(KeyFile {
                path: path.clone(),
                given: true,
            }),
            (None, None) => Some(KeyFile {
                path: default_key_file(&config.path),
                given: false,
            }),
        };
        let blobs = match args.blobs.as_deref() {
            Some(text) => {
                match blobs::parse_blobs_url(text).map_err(|err| usage(anyhow::anyhow!("--blobs: {err}")))? {
                    blobs::BlobsUrl::File(dir) => Some(dir),
                    blobs::BlobsUrl::S3 { .. } => None,
                }
            }
            None => match blobs::BlobsUrl::beside_database(&config.path) {
                blobs::BlobsUrl::File(dir) => Some(dir),
                blobs::BlobsUrl::S3 { .. } => None,
            },
        };
        Ok(Self {
            url,
            database: config.path,
            key_file,
            blobs,
            to: args.to.clone(),
        })
    }

    fn key_copy(&self) -> PathBuf {
        with_suffix(&self.to, ".secrets-key")
    }

    fn blobs_copy(&self) -> PathBuf {
        with_suffix(&self.to, "-blobs")
    }

    /// Copies, and says what it copied; on failure removes what it made.
    fn carry_out(&self) -> anyhow::Result<String> {
        if !self.database.is_file() {
            return Err(usage(anyhow::anyhow!(
                "no database at {}",
                self.database.display()
            )));
        }
        for target in [self.to.clone(), self.key_copy(), self.blobs_copy()] {
            if target.symlink_metadata().is_ok() {
                return Err(usage(anyhow::anyhow!(
                    "{} already exists: a backup never overwrites anything",
                    target.display()
                )));
            }
        }
        if let Some(key) = &self.key_file
            && !key.path.is_file()
        {
            let hint = if key.given {
                ""
            } else {
                ": give the key file the store seals with (--secrets-key-file), or --kms-key if it seals under KMS"
            };
            return Err(usage(anyhow::anyhow!(
                "no key file at {}{hint}",
                key.path.display()
            )));
        }
        if let Some(parent) = self.to.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let staged = with_suffix(&self.to, &format!(".partial-{}", std::process::id()));
        let made = self.copy_all(&staged);
        match made {
            Ok(summary) => Ok(summary),
            Err(err) => {
                let _ = std::fs::remove_file(&staged);
                let _ = std::fs::remove_file(self.key_copy());
                let _ = std::fs::remove_dir_all(self.blobs_copy());
                Err(err)
            }
        }
    }

    fn copy_all(&self, staged: &Path) -> anyhow::Result<String> {
        let report = store_sqlite::backup_database(&self.database, staged).map_err(|err| match err {
            store_sqlite::BackupError::NoDatabase(_) | store_sqlite::BackupError::Exists(_) => usage(err),
            other => other.into(),
        })?;
        let mut parts = vec![format!(
            "backed up {} to {}: {} jobs, {} bytes, integrity ok",
            self.url,
            self.to.display(),
            report.jobs,
            report.bytes
        )];
        match &self.key_file {
            Some(key) => {
                copy_private(&key.path, &self.key_copy())
                    .with_context(|| format!("copying the key file {}", key.path.display()))?;
                parts.push(format!("key file {}", self.key_copy().display()));
            }
            None => parts.push("secrets sealed under KMS: no key file to copy".to_owned()),
        }
        match &self.blobs {
            Some(dir) => {
                let count = copy_blobs(dir, &self.blobs_copy())
                    .with_context(|| format!("copying the blobs in {}", dir.display()))?;
                parts.push(format!("{count} blobs in {}", self.blobs_copy().display()));
            }
            None => parts.push("blobs on S3: not copied".to_owned()),
        }
        std::fs::rename(staged, &self.to)
            .with_context(|| format!("renaming the copy to {}", self.to.display()))?;
        sync_parent(&self.to);
        Ok(parts.join("; "))
    }
}

/// Copies `from` to `to` (which must not exist), readable by its owner only
/// (a key file readable by others is refused when loaded), and syncs it.
fn copy_private(from: &Path, to: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(from)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(to)?;
    std::io::Write::write_all(&mut file, &bytes)?;
    file.sync_all()
}

/// Copies the blob tree under `from` (tenants' directories of blobs) to
/// `to`, skipping blobs still being written (`.blob-*.tmp`) and any a
/// purge removes meanwhile. A missing `from` is a store without blobs yet:
/// nothing to copy. The number of blobs copied.
fn copy_blobs(from: &Path, to: &Path) -> std::io::Result<u64> {
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err),
    };
    private_dir(to)?;
    let mut copied = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(".blob-") {
            continue;
        }
        let kind = entry.file_type()?;
        let target = to.join(&name);
        if kind.is_dir() {
            copied += copy_blobs(&entry.path(), &target)?;
        } else if kind.is_file() {
            match copy_private(&entry.path(), &target) {
                Ok(()) => copied += 1,
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(copied)
}

fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Makes a rename durable; a directory that cannot be synced (some file
/// systems) leaves it as durable as the file system makes it.
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
}
