//! The embedded SQLite backend of [`store::JobStore`]. The only crate that
//! knows rusqlite.
//!
//! One file in WAL mode, one `jobs` table: a job is one row, its full state
//! as JSON in `job`, plus the few columns conditions and indexes need. Work
//! that is due has a `due_at`, which puts it in the partial `jobs_due` index;
//! a finished job drops it and gets an `expires_at` instead, so finding due
//! work costs the same however many finished jobs the file keeps.
//! Endpoints, event types and events (SPEC section 9) have tables of their
//! own beside it (`events.rs`); a publish writes its event and every
//! delivery job in one transaction. Inbound sources and the requests they
//! received (SPEC section 11) have theirs too (`sources.rs`).
//!
//! Every write goes through one writer thread that commits whatever is
//! queued in one transaction (group commit); reads use their own read-only
//! connections and never wait for it. Several stores, in one process or
//! several, may share a file: SQLite's write lock keeps claims exclusive.
//! [`backup_database`] copies a live file consistently (`VACUUM INTO`).

mod backup;
mod checkpoint;
mod codec;
mod config;
mod error;
mod events;
mod schema;
mod sources;
mod store;
mod writer;

pub use backup::{BackupError, BackupReport, backup_database};
pub use config::{DEFAULT_RETENTION, SqliteConfig, SqliteConfigError, SqliteOptions};
pub use store::{SqliteOpenError, SqliteStore};
