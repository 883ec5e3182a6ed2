//! A consistent copy of a live database file: `VACUUM INTO` on a
//! connection of its own. It reads one snapshot (a read transaction, which
//! under WAL never blocks the writer, nor waits for it), so the copy holds
//! exactly the transactions committed before it began; it is then opened
//! and checked (`PRAGMA integrity_check`) before it is reported made.
//!
//! The database is only part of a store: its key file and its blobs are
//! the caller's to copy, after this (both only ever gain what a later
//! commit may name, so copied afterwards they cover the snapshot).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::schema::BUSY_TIMEOUT;

/// Why [`backup_database`] made no copy; `to` is removed if it was begun.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no database at {}", .0.display())]
    NoDatabase(PathBuf),
    #[error("{} already exists: a backup never overwrites a file", .0.display())]
    Exists(PathBuf),
    #[error("copying {} into {}: {message}", from.display(), to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        message: String,
    },
    #[error("the copy {} fails its integrity check: {message}", to.display())]
    NotIntact { to: PathBuf, message: String },
}

/// What was copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupReport {
    /// The copy's size.
    pub bytes: u64,
    /// Its jobs (deliveries included).
    pub jobs: u64,
}

/// Copies the database at `from` (which another process may be writing)
/// to `to`, a file that must not exist, and checks the copy. Blocking.
pub fn backup_database(from: &Path, to: &Path) -> Result<BackupReport, BackupError> {
    if !from.is_file() {
        return Err(BackupError::NoDatabase(from.to_owned()));
    }
    if to.exists() {
        return Err(BackupError::Exists(to.to_owned()));
    }
    let copied = copy(from, to).and_then(|()| check(to));
    if copied.is_err() {
        let _ = std::fs::remove_file(to);
    }
    copied
}

fn copy(from: &Path, to: &Path) -> Result<(), BackupError> {
    let failed = |message: String| BackupError::Copy {
        from: from.to_owned(),
        to: to.to_owned(),
        message,
    };
    // Read-write without create: a WAL reader may need to write the -shm
    // index, and a missing file must not become an empty database.
    let conn = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| failed(e.to_string()))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| failed(e.to_string()))?;
    let target = to
        .to_str()
        .ok_or_else(|| failed("the path is not UTF-8".to_owned()))?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(|e| failed(e.to_string()))?;
    Ok(())
}

fn check(to: &Path) -> Result<BackupReport, BackupError> {
    let not_intact = |message: String| BackupError::NotIntact {
        to: to.to_owned(),
        message,
    };
    let conn = Connection::open_with_flags(to, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| not_intact(e.to_string()))?;
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(|e| not_intact(e.to_string()))?;
    if verdict != "ok" {
        return Err(not_intact(verdict));
    }
    let jobs: i64 = conn
        .query_row("SELECT count(*) FROM jobs", [], |row| row.get(0))
        .map_err(|e| not_intact(e.to_string()))?;
    drop(conn);
    let bytes = std::fs::metadata(to)
        .map_err(|e| not_intact(e.to_string()))?
        .len();
    Ok(BackupReport {
        bytes,
        jobs: u64::try_from(jobs).unwrap_or_default(),
    })
}
