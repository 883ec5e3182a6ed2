//! The file's shape, in one place: connection settings, the `jobs` table and
//! its indexes, and the migrations `user_version` counts.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use store::StoreError;

use crate::error::sql_error;

/// How long a connection waits for another connection's write lock (another
/// process on the same file, or a checkpoint) before giving up.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema version this build writes; `PRAGMA user_version` holds the
/// file's.
pub(crate) const SCHEMA_VERSION: i64 = 8;

/// Version 1. Times are epoch milliseconds. `due_at` is set exactly while a
/// job needs a processor, so `jobs_due` (partial) holds only live work and
/// finding due work costs the same however many finished jobs the file
/// keeps; `expires_at` is set exactly on finished jobs, for the purge.
const SCHEMA_V1: &str = "
CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    job         TEXT NOT NULL,
    due_at      INTEGER,
    lease_id    TEXT,
    lease_owner TEXT,
    lease_until INTEGER,
    expires_at  INTEGER
);
CREATE INDEX jobs_due ON jobs (due_at, id) WHERE due_at IS NOT NULL;
CREATE INDEX jobs_expires ON jobs (expires_at) WHERE expires_at IS NOT NULL;
";

/// Version 2: listing a tenant's jobs newest first (ids sort by creation
/// time), all of them or one status, from an index alone.
const SCHEMA_V2: &str = "
CREATE INDEX jobs_by_tenant ON jobs (tenant, id);
CREATE INDEX jobs_by_status ON jobs (tenant, status, id);
";

/// Version 3: tenants' API keys, by the SHA-256 of the key (hex).
const SCHEMA_V3: &str = "
CREATE TABLE api_keys (
    hash        TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
";

/// Version 4: `Idempotency-Key`s, per tenant, by the key's SHA-256.
const SCHEMA_V4: &str = "
CREATE TABLE idempotency_keys (
    tenant      TEXT NOT NULL,
    key_hash    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, key_hash)
);
CREATE INDEX idempotency_expires ON idempotency_keys (expires_at);
";

/// Version 5: tenants' callback signing secrets (JSON), versioned so a
/// rotation never overwrites another.
const SCHEMA_V5: &str = "
CREATE TABLE tenant_secrets (
    tenant      TEXT PRIMARY KEY,
    secrets     TEXT NOT NULL,
    version     INTEGER NOT NULL
);
";

/// Version 6: endpoints, event types and events (SPEC section 9), each row
/// its stored record (`domain::record`) in `body` plus the columns lookups
/// and listings need. Endpoint and event ids are ULIDs, unique across
/// tenants like job ids, so they sort by creation time: every listing reads
/// one tenant's range of an index in id order, never another tenant's rows
/// and never a sort. An endpoint's `version` counts its writes, for
/// compare-and-set updates. Events' `Idempotency-Key`s are a namespace of
/// their own: a key used for a job says nothing about an event.
const SCHEMA_V6: &str = "
CREATE TABLE event_types (
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE endpoints (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    owner       TEXT,
    version     INTEGER NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX endpoints_by_tenant ON endpoints (tenant, id);
CREATE INDEX endpoints_by_owner ON endpoints (tenant, owner, id);
CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    owner       TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX events_by_tenant ON events (tenant, id);
CREATE INDEX events_expire ON events (expires_at);
CREATE INDEX events_by_type ON events (tenant, event_type, id);
CREATE INDEX events_by_owner ON events (tenant, owner, id);
CREATE TABLE event_idempotency_keys (
    tenant      TEXT NOT NULL,
    key_hash    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, key_hash)
);
CREATE INDEX event_idempotency_expires ON event_idempotency_keys (expires_at);
";

/// Version 7: the results a thin event's providers settled (SPEC section
/// 9), one row per event and provider, its record
/// (`domain::record::event::encode_settled`) in `body`; the primary key
/// makes the first one written the only one. Purged with their event.
const SCHEMA_V7: &str = "
CREATE TABLE event_results (
    event_id    TEXT NOT NULL,
    provider    TEXT NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (event_id, provider)
) WITHOUT ROWID;
";

/// Version 8: inbound sources (SPEC section 11) and the requests they
/// received. A source is found by its id alone (`POST /in/{id}` names no
/// tenant); its ULID id sorts by creation time, so a tenant's listing is a
/// range of `sources_by_tenant`. Its `version` counts its writes, for
/// compare-and-set updates, as an endpoint's does. A request is keyed by
/// its source and its own ULID, so a source's requests read newest first
/// from the primary key; `expires_at` (its `received_at` plus the store's
/// retention) is for the purge. Deleting a source deletes its requests.
const SCHEMA_V8: &str = "
CREATE TABLE sources (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX sources_by_tenant ON sources (tenant, id);
CREATE TABLE source_requests (
    source_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (source_id, id)
);
CREATE INDEX source_requests_expire ON source_requests (expires_at);
";

/// Opens the writer's connection: creates the file if needed, switches it to
/// WAL and brings the schema up to date.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_error("open database", e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| sql_error("set busy timeout", e))?;
    let mode = enable_wal(&conn)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "{}: journal mode is {mode}, WAL is required",
            path.display()
        )));
    }
    // In WAL mode NORMAL loses at most the last commits on power loss, never
    // consistency; FULL would fsync every group commit.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| sql_error("set synchronous", e))?;
    // A rewritten or deleted row's old bytes are zeroed in the pages a
    // write changes anyway (no extra I/O): a record an earlier release
    // stored with its secrets in the clear leaves no copy in the file once
    // its next write seals it.
    conn.pragma_update(None, "secure_delete", "FAST")
        .map_err(|e| sql_error("set secure_delete", e))?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Switches the file to WAL. Two processes opening a new file at once race
/// for this switch, and SQLite answers the loser "busy" without waiting for
/// the busy timeout: wait and try again, within the same bound.
fn enable_wal(conn: &Connection) -> Result<String, StoreError> {
    let started = std::time::Instant::now();
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0)) {
            Ok(mode) => return Ok(mode),
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::DatabaseBusy && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(err) => return Err(sql_error("enable WAL", err)),
        }
    }
}

/// Opens one of the readers' connections; the file must already be set up by
/// [`open_writer`].
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_error("open database for reading", e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| sql_error("set busy timeout", e))?;
    Ok(conn)
}

/// Idempotent: several processes may open one file at once; the immediate
/// transaction lets one migrate while the others wait and then find nothing
/// to do.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_error("begin migration", e))?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| sql_error("read schema version", e))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "schema version {version} was written by a newer hookline (this one knows up to {SCHEMA_VERSION})"
        )));
    }
    if version < 1 {
        tx.execute_batch(SCHEMA_V1)
            .map_err(|e| sql_error("create schema", e))?;
    }
    if version < 2 {
        tx.execute_batch(SCHEMA_V2)
            .map_err(|e| sql_error("add listing indexes", e))?;
    }
    if version < 3 {
        tx.execute_batch(SCHEMA_V3)
            .map_err(|e| sql_error("add the API key table", e))?;
    }
    if version < 4 {
        tx.execute_batch(SCHEMA_V4)
            .map_err(|e| sql_error("add the idempotency key table", e))?;
    }
    if version < 5 {
        tx.execute_batch(SCHEMA_V5)
            .map_err(|e| sql_error("add the signing secret table", e))?;
    }
    if version < 6 {
        tx.execute_batch(SCHEMA_V6)
            .map_err(|e| sql_error("add the endpoint, event type and event tables", e))?;
    }
    if version < 7 {
        tx.execute_batch(SCHEMA_V7)
            .map_err(|e| sql_error("add the event results table", e))?;
    }
    if version < 8 {
        tx.execute_batch(SCHEMA_V8)
            .map_err(|e| sql_error("add the source and source request tables", e))?;
    }
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| sql_error("write schema version", e))?;
    }
    tx.commit().map_err(|e| sql_error("commit migration", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_file_gains_the_listing_indexes_and_keeps_its_jobs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("v1.db");
        {
            let conn = Connection::open(&path).expect("create");
            conn.execute_batch(SCHEMA_V1).expect("v1 schema");
            conn.execute(
                "INSERT INTO jobs (id, tenant, status, created_at, job) VALUES ('a', 't', 'pending', 0, '{}')",
                [],
            )
            .expect("a v1 row");
            conn.pragma_update(None, "user_version", 1).expect("version");
        }
        let conn = open_writer(&path).expect("migrates");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        let indexes: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'index' AND name LIKE 'jobs_by_%' ORDER BY name",
            )
            .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect())
            .expect("indexes");
        assert_eq!(indexes, ["jobs_by_status", "jobs_by_tenant"]);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 1);
    }
}
