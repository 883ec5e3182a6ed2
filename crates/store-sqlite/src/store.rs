//! `SqliteStore`: writes go to the writer thread, reads to a small pool of
//! read-only connections on blocking threads, so under WAL a read never waits
//! for a commit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError, mpsc};
use std::thread::JoinHandle;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{Job, JobId, JobStatus, KeyHash, TenantId, TenantSecrets, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use seal::Sealer;
use store::{
    ApiKeyRecord, Claim, DueJob, Fenced, IdempotencyRecord, IdempotentCreate, JobPage, JobStore, KeyStore,
    Lease, ListQuery, Redrive, StoreError,
};
use tokio::sync::oneshot;

use crate::checkpoint::Checkpointer;
use crate::codec::{KeyColumns, decode_job, encode_job, key_columns, key_record};
use crate::config::{SqliteConfig, SqliteConfigError, SqliteOptions};
use crate::error::sql_error;
use crate::schema;
use crate::writer::{self, Outcome, Request, Returned, Row, Write};

/// Read-only connections per store: reads are short index lookups, so a few
/// serve many concurrent callers.
const READERS: usize = 4;

/// Generous, but a bound: a job is read and written whole on every step.
pub(crate) const MAX_JOB_BYTES: usize = 16 * 1024 * 1024;

/// Finished jobs deleted per transaction by `purge_expired`,
/// so a large purge never holds the write lock for long.
const PURGE_CHUNK: i64 = 1_000;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: SqliteOptions,
    /// Seals the secrets in endpoints', sources' and signing secrets'
    /// records, and opens them.
    sealer: Arc<Sealer>,
    /// `None` only while dropping: closing it is what stops the writer.
    writes: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<u64>>,
    readers: Readers,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Readers first, so that the writer's connection is the file's last
        // in this process and closing it checkpoints the WAL.
        self.readers.conns.clear();
        self.writes = None;
        // Waits for the queued writes to commit, so the file is closed
        // cleanly when the last handle on the store is gone.
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "the SQLite writer thread panicked");
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Why [`SqliteStore::open_url`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SqliteOpenError {
    #[error(transparent)]
    Config(#[from] SqliteConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SqliteStore {
    /// Opens the file at `path`, creating it (and its directory) if needed,
    /// and starts the writer thread. Several stores, in one process or many,
    /// may open the same file (with sealers over the same keys, or they
    /// cannot read each other's secrets).
    pub fn open(path: &Path, options: SqliteOptions, sealer: Arc<Sealer>) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!("cannot create the directory {}: {e}", parent.display()))
            })?;
        }
        let conn = schema::open_writer(path)?;
        let readers = (0..READERS)
            .map(|_| schema::open_reader(path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let checkpointer = Checkpointer::start(path)?;
        let (writes, requests) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || writer::run(conn, requests, checkpointer))
            .map_err(|e| StoreError::Unavailable(format!("start the SQLite writer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                options,
                sealer,
                writes: Some(writes),
                writer: Some(writer),
                readers: Readers {
                    conns: readers,
                    next: AtomicUsize::new(0),
                },
            }),
        })
    }

    /// Opens the store a `sqlite://` URL names; see [`SqliteConfig::from_url`].
    pub fn open_url(url: &str, sealer: Arc<Sealer>) -> Result<Self, SqliteOpenError> {
        let config = SqliteConfig::from_url(url)?;
        Ok(Self::open(&config.path, config.options, sealer)?)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn options(&self) -> &SqliteOptions {
        &self.inner.options
    }

    /// What this store seals its records' secrets with.
    pub fn sealer(&self) -> &Arc<Sealer> {
        &self.inner.sealer
    }

    /// Deletes the finished jobs whose retention ran out by `now` (and the
    /// events, source requests and keys past theirs), a chunk per
    /// transaction; returns how many jobs, events and source requests.
    /// Live jobs never expire.
    async fn purge_expired_in_chunks(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut purged = 0;
        loop {
            let outcome = self
                .write(Write::PurgeExpired {
                    now: now.timestamp_millis(),
                    limit: PURGE_CHUNK,
                })
                .await?;
            purged += outcome.changed as u64;
            if (outcome.changed as i64) < PURGE_CHUNK {
                return Ok(purged);
            }
        }
    }

    /// The job and its stored text, if it exists and belongs to `tenant`.
    async fn get_stored(&self, tenant: &TenantId, id: JobId) -> Result<Option<(Job, String)>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let id = id.to_string();
        self.read(move |conn| {
            let body: Option<String> = conn
                .prepare_cached("SELECT job FROM jobs WHERE id = ?1 AND tenant = ?2")
                .and_then(|mut stmt| stmt.query_row(params![id, tenant], |r| r.get(0)).optional())
                .map_err(|e| sql_error("get job", e))?;
            body.map(|body| Ok((decode_job(&body)?, body))).transpose()
        })
        .await
    }

    /// One write through the writer thread. A thread that is gone before
    /// taking the request wrote nothing; one that took it and never
    /// answered (it panicked mid-batch, or the process is going down) may
    /// have committed it.
    pub(crate) async fn write(&self, write: Write) -> Result<Outcome, StoreError> {
        let stopped = || StoreError::Unavailable("the SQLite writer thread has stopped".to_owned());
        let writes = self.inner.writes.as_ref().ok_or_else(stopped)?;
        let (reply, outcome) = oneshot::channel();
        writes.send(Request { write, reply }).map_err(|_| stopped())?;
        outcome.await.map_err(|_| {
            StoreError::Indeterminate("the SQLite writer thread stopped before answering".to_owned())
        })?
    }

    pub(crate) async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.readers.with(read))
            .await
            .map_err(|e| StoreError::Unavailable(format!("SQLite read task: {e}")))?
    }

    /// When something finished (a job) or received (a source request) at
    /// `from` expires: `from` plus the store's retention, in epoch ms.
    pub(crate) fn retained_until(&self, from: Timestamp) -> i64 {
        let retention =
            chrono::Duration::from_std(self.inner.options.retention).unwrap_or(chrono::Duration::MAX);
        from.checked_add_signed(retention)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
            .timestamp_millis()
    }

    /// The job's columns, as of `now` for a finished job's expiry.
    pub(crate) fn row(&self, job: &Job, now: Timestamp) -> Result<Row, StoreError> {
        let body = encode_job(job)?;
        if body.len() > MAX_JOB_BYTES {
            return Err(StoreError::TooLarge(format!(
                "job {} is {} bytes, more than {MAX_JOB_BYTES}",
                job.id(),
                body.len()
            )));
        }
        let expires_at = match job.due_at() {
            Some(_) => None,
            None => Some(self.retained_until(now)),
        };
        Ok(Row {
            id: job.id().to_string(),
            tenant: job.tenant().as_str().to_owned(),
            status: job.status().as_str(),
            created_at: job.created_at().timestamp_millis(),
            body,
            due_at: job.due_at().map(|d| d.timestamp_millis()),
            expires_at,
        })
    }
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn create_job(&self, job: &Job) -> Result<(), StoreError> {
        let row = self.row(job, job.created_at())?;
        self.write(Write::Create(row)).await.map(|_| ())
    }

    async fn create_job_idempotent(
        &self,
        job: &Job,
        key: &IdempotencyRecord,
        now: Timestamp,
    ) -> Result<IdempotentCreate, StoreError> {
        let outcome = self
            .write(Write::CreateIdempotent {
                row: self.row(job, job.created_at())?,
                key_hash: key.key_hash.clone(),
                fingerprint: key.fingerprint.clone(),
                expires_at: key.expires_at.timestamp_millis(),
                now: now.timestamp_millis(),
            })
            .await?;
        match outcome.returned {
            None => Ok(IdempotentCreate::Created),
            Some(Returned::Replay { job_id, fingerprint }) => Ok(IdempotentCreate::Replay {
                job_id: job_id
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("idempotency key row naming job {job_id:?}")))?,
                same_request: fingerprint == key.fingerprint,
            }),
            Some(Returned::Claimed { .. } | Returned::EventReplay { .. }) => {
                Err(mismatched("create job with an idempotency key"))
            }
        }
    }

    async fn get_job(&self, tenant: &TenantId, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.get_stored(tenant, id).await?.map(|(job, _)| job))
    }

    async fn list_jobs(&self, tenant: &TenantId, query: &ListQuery) -> Result<JobPage, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let status = query.status.map(JobStatus::as_str);
        // Ids are never empty, so "" stands for "from the newest".
        let after = query.after.map(|id| id.to_string()).unwrap_or_default();
        let page = query.page_size();
        // One more than the page, to know whether another page follows.
        let fetch = i64::try_from(page + 1).unwrap_or(i64::MAX);
        let bodies: Vec<String> = self
            .read(move |conn| {
                let result = match status {
                    Some(status) => conn.prepare_cached(LIST_BY_STATUS).and_then(|mut stmt| {
                        stmt.query_map(params![tenant, status, after, fetch], |r| r.get(0))?
                            .collect()
                    }),
                    None => conn.prepare_cached(LIST_ALL).and_then(|mut stmt| {
                        stmt.query_map(params![tenant, after, fetch], |r| r.get(0))?
                            .collect()
                    }),
                };
                result.map_err(|e| sql_error("list jobs", e))
            })
            .await?;
        let more = bodies.len() > page;
        let jobs = bodies
            .iter()
            .take(page)
            .map(|body| decode_job(body))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if more {
            jobs.last().map(|job| job.id())
        } else {
            None
        };
        Ok(JobPage { jobs, next })
    }

    async fn redrive(&self, tenant: &TenantId, id: JobId, now: Timestamp) -> Result<Redrive, StoreError> {
        store::redrive_by_compare_and_set(
            now,
            || self.get_stored(tenant, id),
            |job, expected| async move {
                let row = self.row(&job, now)?;
                let outcome = self.write(Write::Replace { row, expected }).await?;
                Ok(outcome.changed == 1)
            },
        )
        .await
    }

    async fn due_jobs(&self, now: Timestamp, limit: usize) -> Result<Vec<DueJob>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = now.timestamp_millis();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let rows: Vec<(String, String, i64)> = conn
                .prepare_cached(DUE_JOBS)
                .and_then(|mut stmt| {
                    stmt.query_map(params![now, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect()
                })
                .map_err(|e| sql_error("query due jobs", e))?;
            rows.into_iter()
                .map(|(id, tenant, due_at)| {
                    let id = id
                        .parse()
                        .map_err(|_| StoreError::Corrupt(format!("job row with id {id:?}")))?;
                    let due_at = DateTime::from_timestamp_millis(due_at)
                        .ok_or_else(|| StoreError::Corrupt(format!("job {id} has due_at {due_at}")))?;
                    Ok(DueJob {
                        id,
                        tenant: TenantId::new(tenant),
                        due_at,
                    })
                })
                .collect()
        })
        .await
    }

    async fn claim(
        &self,
        _tenant: &TenantId,
        id: JobId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Claim, StoreError> {
        let outcome = self
            .write(Write::Claim {
                id: id.to_string(),
                lease_id: lease.id.clone(),
                owner: lease.owner.clone(),
                until: lease.until.timestamp_millis(),
                now: now.timestamp_millis(),
            })
            .await?;
        match outcome.returned {
            Some(Returned::Claimed { job, previous_owner }) => Ok(Claim::Won {
                job: Box::new(decode_job(&job)?),
                took_over_from: previous_owner,
            }),
            None => Ok(Claim::Lost),
            Some(Returned::Replay { .. } | Returned::EventReplay { .. }) => Err(mismatched("claim job")),
        }
    }

    async fn save(&self, job: &Job, lease: &Lease, now: Timestamp) -> Result<Fenced, StoreError> {
        let row = self.row(job, now)?;
        let outcome = self
            .write(Write::Save {
                row,
                lease_id: lease.id.clone(),
            })
            .await?;
        Ok(fenced(&outcome))
    }

    async fn release(&self, _tenant: &TenantId, id: JobId, lease: &Lease) -> Result<Fenced, StoreError> {
        let outcome = self
            .write(Write::Release {
                id: id.to_string(),
                lease_id: lease.id.clone(),
            })
            .await?;
        Ok(fenced(&outcome))
    }

    async fn extend_lease(
        &self,
        tenant: &TenantId,
        id: JobId,
        lease: &Lease,
        until: Timestamp,
    ) -> Result<Fenced, StoreError> {
        let outcome = self
            .write(Write::ExtendLease {
                id: id.to_string(),
                tenant: tenant.as_str().to_owned(),
                lease_id: lease.id.clone(),
                until: until.timestamp_millis(),
            })
            .await?;
        Ok(fenced(&outcome))
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.purge_expired_in_chunks(now).await
    }

    fn max_job_bytes(&self) -> usize {
        MAX_JOB_BYTES
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.inner.writer.as_ref().is_none_or(JoinHandle::is_finished) {
            return Err(StoreError::Unavailable(
                "the SQLite writer thread has stopped".to_owned(),
            ));
        }
        self.read(|conn| {
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
                .map_err(|e| sql_error("ping", e))
        })
        .await
    }
}

/// Due work, oldest first, read from the partial `jobs_due` index alone
/// (plus the row of each candidate, for its lease).
pub(crate) const DUE_JOBS: &str = "SELECT id, tenant, due_at FROM jobs
     WHERE due_at IS NOT NULL AND due_at <= ?1 AND (lease_until IS NULL OR lease_until < ?1)
     ORDER BY due_at, id
     LIMIT ?2";

#[async_trait]
impl KeyStore for SqliteStore {
    async fn signing_secrets(&self, tenant: &TenantId) -> Result<Option<(TenantSecrets, u64)>, StoreError> {
        let key = tenant.as_str().to_owned();
        let row: Option<(String, i64)> = self
            .read(move |conn| {
                conn.prepare_cached("SELECT secrets, version FROM tenant_secrets WHERE tenant = ?1")
                    .and_then(|mut stmt| {
                        stmt.query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .map_err(|e| sql_error("read signing secrets", e))
            })
            .await?;
        let Some((body, version)) = row else {
            return Ok(None);
        };
        let secrets = store::sealing::open_signing_secrets(self.sealer(), tenant, &body).await?;
        Ok(Some((secrets, u64::try_from(version).unwrap_or_default())))
    }

    async fn put_signing_secrets(
        &self,
        tenant: &TenantId,
        secrets: &TenantSecrets,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        let body = store::sealing::seal_signing_secrets(self.sealer(), tenant, secrets).await?;
        let outcome = self
            .write(Write::PutSecrets {
                tenant: tenant.as_str().to_owned(),
                body: crate::writer::SecretText(body),
                expected: expected.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            })
            .await?;
        Ok(outcome.changed == 1)
    }

    async fn create_api_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        self.write(Write::CreateKey {
            hash: record.hash.to_hex(),
            tenant: record.tenant.as_str().to_owned(),
            created_at: record.created_at.timestamp_millis(),
        })
        .await
        .map(|_| ())
    }

    async fn find_api_key(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        let hash = hash.to_hex();
        self.read(move |conn| {
            conn.prepare_cached(&format!("{SELECT_KEYS} WHERE hash = ?1"))
                .and_then(|mut stmt| stmt.query_row(params![hash], key_columns).optional())
                .map_err(|e| sql_error("find API key", e))?
                .map(key_record)
                .transpose()
        })
        .await
    }

    async fn list_api_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        self.read(move |conn| {
            let rows: Vec<KeyColumns> = conn
                .prepare_cached(&format!(
                    "{SELECT_KEYS} WHERE ?1 IS NULL OR tenant = ?1 ORDER BY created_at, hash"
                ))
                .and_then(|mut stmt| stmt.query_map(params![tenant], key_columns)?.collect())
                .map_err(|e| sql_error("list API keys", e))?;
            rows.into_iter().map(key_record).collect()
        })
        .await
    }

    async fn revoke_api_key(&self, key_id: &str, now: Timestamp) -> Result<Option<ApiKeyRecord>, StoreError> {
        if !store::is_key_id(key_id) {
            return Ok(None);
        }
        // Hex digits sort below 'g': the ids' range in the primary key.
        let (low, high) = (key_id.to_owned(), format!("{key_id}g"));
        let found: Vec<KeyColumns> = self
            .read(move |conn| {
                conn.prepare_cached(&format!("{SELECT_KEYS} WHERE hash >= ?1 AND hash < ?2 LIMIT 2"))
                    .and_then(|mut stmt| stmt.query_map(params![low, high], key_columns)?.collect())
                    .map_err(|e| sql_error("find API key", e))
            })
            .await?;
        let mut found = found.into_iter();
        let (Some(one), None) = (found.next(), found.next()) else {
            // None, or an id two keys share (one in 2^48): revoke neither.
            return Ok(None);
        };
        let record = key_record(one)?;
        self.write(Write::RevokeKey {
            hash: record.hash.to_hex(),
            now: now.timestamp_millis(),
        })
        .await?;
        self.find_api_key(&record.hash).await
    }
}

const SELECT_KEYS: &str = "SELECT hash, tenant, created_at, revoked_at FROM api_keys";

/// A tenant's jobs newest first, from `jobs_by_tenant` alone; `?2` is the
/// cursor ("" for the first page).
pub(crate) const LIST_ALL: &str = "SELECT job FROM jobs
     WHERE tenant = ?1 AND (?2 = '' OR id < ?2)
     ORDER BY id DESC
     LIMIT ?3";

/// A tenant's jobs of one status newest first, from `jobs_by_status` alone.
pub(crate) const LIST_BY_STATUS: &str = "SELECT job FROM jobs
     WHERE tenant = ?1 AND status = ?2 AND (?3 = '' OR id < ?3)
     ORDER BY id DESC
     LIMIT ?4";

/// The writer answered a write with another kind's reply: a bug, and what
/// it did is unknown.
pub(crate) fn mismatched(operation: &str) -> StoreError {
    StoreError::Indeterminate(format!(
        "{operation}: the SQLite writer answered another write's reply"
    ))
}

fn fenced(outcome: &Outcome) -> Fenced {
    if outcome.changed == 1 {
        Fenced::Written
    } else {
        Fenced::LeaseLost
    }
}

/// A few read-only connections, each behind its own lock: a read takes a
/// free one if there is one, or waits its turn on one of them.
struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    fn with<T>(&self, read: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        for conn in &self.conns {
            match conn.try_lock() {
                Ok(guard) => return read(&guard),
                // A read that panicked left the connection as good as any.
                Err(TryLockError::Poisoned(poisoned)) => return read(&poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let guard = self.conns[index].lock().unwrap_or_else(PoisonError::into_inner);
        read(&guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_work_is_found_through_the_partial_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = schema::open_writer(&dir.path().join("plan.db")).expect("open");
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {DUE_JOBS}"))
            .and_then(|mut stmt| {
                stmt.query_map(params![0, 10], |r| r.get::<_, String>(3))?
                    .collect()
            })
            .expect("plan");
        let plan = plan.join("\n");
        assert!(plan.contains("USING INDEX jobs_due"), "{plan}");
        assert!(
            !plan.contains("TEMP B-TREE"),
            "sorted by the index itself: {plan}"
        );
    }

    #[test]
    fn listings_read_an_index_and_never_sort_or_scan() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = schema::open_writer(&dir.path().join("plan.db")).expect("open");
        let plan_of = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> String {
            conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .and_then(|mut stmt| stmt.query_map(params, |r| r.get::<_, String>(3))?.collect())
                .map(|lines: Vec<String>| lines.join("\n"))
                .expect("plan")
        };
        let all = plan_of(LIST_ALL, params![&"acme", &"", &10]);
        let by_status = plan_of(LIST_BY_STATUS, params![&"acme", &"failed", &"01J", &10]);
        for (plan, index) in [(all, "jobs_by_tenant"), (by_status, "jobs_by_status")] {
            assert!(
                plan.contains(&format!("USING COVERING INDEX {index}"))
                    || plan.contains(&format!("USING INDEX {index}")),
                "{plan}"
            );
            assert!(
                !plan.contains("TEMP B-TREE"),
                "sorted by the index itself: {plan}"
            );
            assert!(!plan.contains("SCAN jobs"), "{plan}");
        }
    }
}
