//! The one thread that writes. Callers queue [`Request`]s; the thread takes
//! whatever is queued (up to [`MAX_BATCH`]) and applies it in one
//! transaction, so a burst of writes costs one commit (group commit). A
//! request that fails (a taken id) is undone alone and answered with its
//! error, while the others commit: SQLite undoes a failed statement by
//! itself, and a request of more than one statement runs inside its own
//! savepoint. Only those get one: a savepoint copies every page the request
//! touches into the statement journal first.

use std::sync::mpsc::Receiver;

use rusqlite::{Connection, OptionalExtension, params};
use store::StoreError;
use tokio::sync::oneshot;

use crate::checkpoint::{self, Checkpointer};
use crate::error::sql_error;

/// The most requests one transaction applies: bounds how long a commit keeps
/// the file's write lock from other processes.
pub(crate) const MAX_BATCH: usize = 256;

/// Stored text that holds secret material (a tenant's signing secrets):
/// its `Debug` shows only its length.
pub(crate) struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretText({} bytes)", self.0.len())
    }
}

/// A job's columns, computed by the caller so the writer does no JSON work.
#[derive(Debug)]
pub(crate) struct Row {
    pub id: String,
    pub tenant: String,
    pub status: &'static str,
    pub created_at: i64,
    pub body: String,
    pub due_at: Option<i64>,
    pub expires_at: Option<i64>,
}

#[derive(Debug)]
pub(crate) enum Write {
    Create(Row),
    /// Creates the job and records its idempotency key, unless the key is
    /// recorded and unexpired at `now`: then it returns
    /// [`Returned::Replay`], the earlier request's job and fingerprint.
    CreateIdempotent {
        row: Row,
        key_hash: String,
        fingerprint: String,
        expires_at: i64,
        now: i64,
    },
    /// Returns [`Returned::Claimed`] when it wins.
    Claim {
        id: String,
        lease_id: String,
        owner: String,
        until: i64,
        now: i64,
    },
    /// Fenced on `lease_id`; clears the lease.
    Save {
        row: Row,
        lease_id: String,
    },
    /// Fenced on `lease_id`; clears the lease and nothing else.
    Release {
        id: String,
        lease_id: String,
    },
    /// Fenced on `lease_id`; moves the lease's expiry to `until` unless it
    /// is later already, and changes nothing else. Matching the lease
    /// counts as written, whether or not the expiry moved.
    ExtendLease {
        id: String,
        tenant: String,
        lease_id: String,
        until: i64,
    },
    /// Rewrites a job that is not under a lease, only if its stored text is
    /// still `expected` (compare and set).
    Replace {
        row: Row,
        expected: String,
    },
    CreateKey {
        hash: String,
        tenant: String,
        created_at: i64,
    },
    /// Sets `revoked_at` unless it is set already.
    RevokeKey {
        hash: String,
        now: i64,
    },
    /// Writes a tenant's secrets if its version is still `expected` (`None`:
    /// only if it has none).
    PutSecrets {
        tenant: String,
        body: SecretText,
        expected: Option<i64>,
    },
    /// Writes an event type if the stored record is still `expected`
    /// (`None`: only if there is none; compare and set).
    PutEventType {
        tenant: String,
        name: String,
        body: String,
        created_at: i64,
        updated_at: i64,
        expected: Option<String>,
    },
    DeleteEventType {
        tenant: String,
        name: String,
    },
    /// Writes a new endpoint at version 1. An endpoint already there with
    /// exactly this record (our own earlier attempt) counts as written; any
    /// other with its id changes nothing and counts as not.
    CreateEndpoint(EndpointRow),
    /// Rewrites an endpoint if its version is still `expected`, at
    /// `expected + 1`. Finding it exactly as this write leaves it (our own
    /// earlier attempt) counts as written.
    UpdateEndpoint {
        row: EndpointRow,
        expected: i64,
    },
    DeleteEndpoint {
        tenant: String,
        id: String,
    },
    /// An event and its deliveries in one request, in order: the
    /// idempotency key, if any (a live one returns
    /// [`Returned::EventReplay`] and writes nothing), the event (already
    /// there with this record: kept; with another: a conflict, and nothing
    /// is written), then each delivery job unless one with its id exists
    /// (that one is left as it is: a processor may have made it already).
    Publish {
        event: EventRow,
        key: Option<KeyRow>,
        deliveries: Vec<Row>,
        now: i64,
    },
    /// Records a thin event's provider result unless the provider has one
    /// already (or the tenant has no such event): one statement.
    SettleEventProvider {
        tenant: String,
        event_id: String,
        provider: String,
        body: String,
    },
    /// Writes a new source at version 1. A source already there with
    /// exactly this record (our own earlier attempt) counts as written; any
    /// other with its id changes nothing and counts as not.
    CreateSource(SourceRow),
    /// Rewrites a source if its version is still `expected`, at
    /// `expected + 1`. Finding it exactly as this write leaves it (our own
    /// earlier attempt) counts as written.
    UpdateSource {
        row: SourceRow,
        expected: i64,
    },
    /// Deletes the tenant's source and, if it did, the requests the source
    /// received.
    DeleteSource {
        tenant: String,
        id: String,
    },
    /// Keeps a request a source received unless it is kept already.
    RecordSourceRequest(SourceRequestRow),
    /// Deletes up to `limit` finished jobs whose retention ran out by `now`
    /// (and, as many again of each, events, source requests and keys past
    /// theirs).
    PurgeExpired {
        now: i64,
        limit: i64,
    },
}

impl Write {
    /// Whether the write changes data with one statement, which SQLite undoes
    /// by itself if it fails (a read before it changes nothing).
    fn is_one_statement(&self) -> bool {
        // The endpoint writes read after their one change, to recognise
        // their own earlier attempt; the read changes nothing.
        !matches!(
            self,
            Self::CreateIdempotent { .. }
                | Self::Publish { .. }
                | Self::DeleteSource { .. }
                | Self::PurgeExpired { .. }
        )
    }

    fn operation(&self) -> &'static str {
        match self {
            Self::Create(_) => "create job",
            Self::CreateIdempotent { .. } => "create job with an idempotency key",
            Self::Claim { .. } => "claim job",
            Self::Save { .. } => "save job",
            Self::Release { .. } => "release job",
            Self::ExtendLease { .. } => "extend lease",
            Self::Replace { .. } => "replace job",
            Self::CreateKey { .. } => "create API key",
            Self::PutSecrets { .. } => "write signing secrets",
            Self::RevokeKey { .. } => "revoke API key",
            Self::PutEventType { .. } => "write event type",
            Self::DeleteEventType { .. } => "delete event type",
            Self::CreateEndpoint(_) => "create endpoint",
            Self::UpdateEndpoint { .. } => "update endpoint",
            Self::DeleteEndpoint { .. } => "delete endpoint",
            Self::Publish { .. } => "publish event",
            Self::SettleEventProvider { .. } => "settle event provider",
            Self::CreateSource(_) => "create source",
            Self::UpdateSource { .. } => "update source",
            Self::DeleteSource { .. } => "delete source",
            Self::RecordSourceRequest(_) => "record source request",
            Self::PurgeExpired { .. } => "purge expired jobs",
        }
    }
}

/// An endpoint's columns.
pub(crate) struct EndpointRow {
    pub id: String,
    pub tenant: String,
    pub owner: Option<String>,
    /// Holds the endpoint's signing secrets: never in `Debug`.
    pub body: String,
}

impl std::fmt::Debug for EndpointRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointRow")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// A source's columns.
pub(crate) struct SourceRow {
    pub id: String,
    pub tenant: String,
    pub created_at: i64,
    /// Holds the source's verification secret: never in `Debug`.
    pub body: String,
}

impl std::fmt::Debug for SourceRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceRow")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// A source request's columns.
#[derive(Debug)]
pub(crate) struct SourceRequestRow {
    pub source_id: String,
    pub id: String,
    pub tenant: String,
    pub received_at: i64,
    /// `received_at` plus the store's retention: when the purge removes it.
    pub expires_at: i64,
    pub body: String,
}

/// An event's columns.
#[derive(Debug)]
pub(crate) struct EventRow {
    pub id: String,
    pub tenant: String,
    pub event_type: String,
    pub owner: Option<String>,
    pub created_at: i64,
    /// When the purge removes it ([`store::event_expires_at`]).
    pub expires_at: i64,
    pub body: String,
}

/// An `Idempotency-Key` to record with what it names.
#[derive(Debug)]
pub(crate) struct KeyRow {
    pub key_hash: String,
    pub fingerprint: String,
    pub expires_at: i64,
}

/// What a write did: the rows it changed and, for a claim or a keyed
/// create, what it found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub changed: usize,
    pub returned: Option<Returned>,
}

/// What a write reads back besides counting rows.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Returned {
    /// A claim won: the job's stored text, and the owner of the expired
    /// lease it replaced, if there was one.
    Claimed {
        job: String,
        previous_owner: Option<String>,
    },
    /// A keyed create whose key is taken: the job the key names and the
    /// fingerprint of the request that recorded it.
    Replay { job_id: String, fingerprint: String },
    /// A publish whose key is taken: the event the key names and the
    /// fingerprint of the request that recorded it.
    EventReplay { event_id: String, fingerprint: String },
}

#[derive(Debug)]
pub(crate) struct Request {
    pub write: Write,
    pub reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// The writer thread's body: runs until every sender is gone, then stops
/// the checkpointer, closes the connection (the file's last in this
/// process, so closing it checkpoints the WAL) and returns how many batches
/// it applied.
pub(crate) fn run(conn: Connection, requests: Receiver<Request>, checkpointer: Checkpointer) -> u64 {
    checkpoint::watch_wal(&conn);
    let mut batches = 0;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = requests.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let outcomes = commit_batch(&conn, batch.iter().map(|r| &r.write));
        batches += 1;
        for (request, outcome) in batch.drain(..).zip(outcomes) {
            // A caller that stopped waiting has no use for its outcome.
            let _ = request.reply.send(outcome);
        }
        // After the answers, so the batch's callers do not wait for it.
        checkpointer.committed(&conn, checkpoint::wal_frames());
    }
    drop(checkpointer);
    drop(conn);
    batches
}

/// Applies `writes` in one transaction and returns one outcome per write, in
/// order. A write's own failure is its outcome; a failure of the transaction
/// itself (the lock not had in time, I/O, the commit) is every write's:
/// determinate when the transaction was rolled back before its commit, and
/// indeterminate when the commit itself failed at I/O (the commit record may
/// already be in the WAL, and then the batch is there when the file is next
/// opened).
pub(crate) fn commit_batch<'a>(
    conn: &Connection,
    writes: impl ExactSizeIterator<Item = &'a Write>,
) -> Vec<Result<Outcome, StoreError>> {
    let count = writes.len();
    // IMMEDIATE takes the write lock up front (waiting out other processes
    // for the busy timeout), so the conditions below read the latest commit.
    if let Err(err) = conn.execute_batch("BEGIN IMMEDIATE") {
        return fail_all(count, &format!("begin write batch: {err}"));
    }
    let mut outcomes = Vec::with_capacity(count);
    for write in writes {
        match apply_isolated(conn, write) {
            Ok(outcome) => outcomes.push(outcome),
            Err(err) => {
                rollback(conn);
                return fail_all(count, &format!("write batch: {err}"));
            }
        }
    }
    if let Err(err) = conn.execute_batch("COMMIT") {
        let message = format!("commit write batch: {err}");
        let unknown = commit_outcome_unknown(&err);
        rollback(conn);
        if unknown {
            return (0..count)
                .map(|_| Err(StoreError::Indeterminate(message.clone())))
                .collect();
        }
        return fail_all(count, &message);
    }
    outcomes
}

/// `Ok(Err(..))` is the write's own failure, already undone; `Err(..)` means
/// the transaction is lost.
fn apply_isolated(conn: &Connection, write: &Write) -> rusqlite::Result<Result<Outcome, StoreError>> {
    if write.is_one_statement() {
        return match apply(conn, write) {
            Ok(outcome) => Ok(Ok(outcome)),
            Err(err) if conn.is_autocommit() => Err(err),
            Err(err) => Ok(Err(sql_error(write.operation(), err))),
        };
    }
    conn.prepare_cached("SAVEPOINT request")?.execute([])?;
    match apply(conn, write) {
        Ok(outcome) => {
            conn.prepare_cached("RELEASE request")?.execute([])?;
            Ok(Ok(outcome))
        }
        // Some errors (I/O, a full disk) make SQLite roll back the whole
        // transaction: the writes before this one are gone too.
        Err(err) if conn.is_autocommit() => Err(err),
        Err(err) => {
            conn.prepare_cached("ROLLBACK TO request")?.execute([])?;
            conn.prepare_cached("RELEASE request")?.execute([])?;
            Ok(Err(sql_error(write.operation(), err)))
        }
    }
}

/// The one statement that writes a new job, with its place in the due set
/// (`due_at`), followed by what to do when its id is taken.
macro_rules! insert_job_sql {
    ($on_conflict:literal) => {
        concat!(
            "INSERT INTO jobs (id, tenant, status, created_at, job, due_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            $on_conflict
        )
    };
}

/// A new job; a taken id fails the statement (a conflict).
fn insert_job(conn: &Connection, row: &Row) -> rusqlite::Result<usize> {
    insert_job_with(conn, insert_job_sql!(""), row)
}

/// A new job unless one with its id exists, which is left untouched;
/// returns 0 then.
fn insert_job_if_absent(conn: &Connection, row: &Row) -> rusqlite::Result<usize> {
    insert_job_with(conn, insert_job_sql!(" ON CONFLICT (id) DO NOTHING"), row)
}

fn insert_job_with(conn: &Connection, sql: &str, row: &Row) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params![
        row.id,
        row.tenant,
        row.status,
        row.created_at,
        row.body,
        row.due_at,
        row.expires_at
    ])
}

fn apply(conn: &Connection, write: &Write) -> rusqlite::Result<Outcome> {
    match write {
        Write::Create(row) => Ok(Outcome {
            changed: insert_job(conn, row)?,
            ..Outcome::default()
        }),
        Write::CreateIdempotent {
            row,
            key_hash,
            fingerprint,
            expires_at,
            now,
        } => {
            let earlier = conn
                .prepare_cached(
                    "SELECT job_id, fingerprint FROM idempotency_keys
                     WHERE tenant = ?1 AND key_hash = ?2 AND expires_at > ?3",
                )?
                .query_row(params![row.tenant, key_hash, now], |r| {
                    Ok(Returned::Replay {
                        job_id: r.get(0)?,
                        fingerprint: r.get(1)?,
                    })
                })
                .optional()?;
            if earlier.is_some() {
                return Ok(Outcome {
                    changed: 0,
                    returned: earlier,
                });
            }
            // The job first: a taken id fails the savepoint before the key
            // is recorded, so a failed create does not use up its key.
            let changed = insert_job(conn, row)?;
            conn.prepare_cached(
                "INSERT OR REPLACE INTO idempotency_keys (tenant, key_hash, fingerprint, job_id, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![row.tenant, key_hash, fingerprint, row.id, expires_at])?;
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::Claim {
            id,
            lease_id,
            owner,
            until,
            now,
        } => {
            // A lease still on the row is one that expired: saves and
            // releases clear theirs. Same transaction, so it is the one
            // this claim replaces.
            let previous_owner: Option<String> = conn
                .prepare_cached("SELECT lease_owner FROM jobs WHERE id = ?1 AND lease_id IS NOT NULL")?
                .query_row(params![id], |r| r.get::<_, Option<String>>(0))
                .optional()?
                .map(Option::unwrap_or_default);
            let won: Option<String> = conn
                .prepare_cached(
                    "UPDATE jobs SET lease_id = ?2, lease_owner = ?3, lease_until = ?4
                     WHERE id = ?1 AND due_at IS NOT NULL AND due_at <= ?5
                       AND (lease_until IS NULL OR lease_until < ?5)
                     RETURNING job",
                )?
                .query_row(params![id, lease_id, owner, until, now], |r| r.get(0))
                .optional()?;
            Ok(Outcome {
                changed: usize::from(won.is_some()),
                returned: won.map(|job| Returned::Claimed { job, previous_owner }),
            })
        }
        Write::Save { row, lease_id } => {
            let changed = conn
                .prepare_cached(
                    "UPDATE jobs SET tenant = ?2, status = ?3, created_at = ?4, job = ?5, due_at = ?6,
                         expires_at = ?7, lease_id = NULL, lease_owner = NULL, lease_until = NULL
                     WHERE id = ?1 AND lease_id = ?8",
                )?
                .execute(params![
                    row.id,
                    row.tenant,
                    row.status,
                    row.created_at,
                    row.body,
                    row.due_at,
                    row.expires_at,
                    lease_id
                ])?;
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::Replace { row, expected } => {
            let changed = conn
                .prepare_cached(
                    "UPDATE jobs SET status = ?3, job = ?4, due_at = ?5, expires_at = ?6
                     WHERE id = ?1 AND tenant = ?2 AND job = ?7 AND lease_id IS NULL",
                )?
                .execute(params![
                    row.id,
                    row.tenant,
                    row.status,
                    row.body,
                    row.due_at,
                    row.expires_at,
                    expected
                ])?;
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::CreateKey {
            hash,
            tenant,
            created_at,
        } => {
            let changed = conn
                .prepare_cached("INSERT INTO api_keys (hash, tenant, created_at) VALUES (?1, ?2, ?3)")?
                .execute(params![hash, tenant, created_at])?;
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::PutSecrets {
            tenant,
            body: SecretText(body),
            expected,
        } => {
            let changed = match expected {
                None => conn
                    .prepare_cached(
                        "INSERT INTO tenant_secrets (tenant, secrets, version) VALUES (?1, ?2, 1)
                         ON CONFLICT (tenant) DO NOTHING",
                    )?
                    .execute(params![tenant, body])?,
                Some(version) => conn
                    .prepare_cached(
                        "UPDATE tenant_secrets SET secrets = ?2, version = version + 1
                         WHERE tenant = ?1 AND version = ?3",
                    )?
                    .execute(params![tenant, body, version])?,
            };
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::RevokeKey { hash, now } => {
            let changed = conn
                .prepare_cached("UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE hash = ?1")?
                .execute(params![hash, now])?;
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::Release { id, lease_id } => {
            let changed = conn
                .prepare_cached(
                    "UPDATE jobs SET lease_id = NULL, lease_owner = NULL, lease_until = NULL
                     WHERE id = ?1 AND lease_id = ?2",
                )?
                .execute(params![id, lease_id])?;
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::ExtendLease {
            id,
            tenant,
            lease_id,
            until,
        } => {
            // SQLite counts every row the WHERE matched as changed, so a
            // lease already lasting longer (an earlier attempt of this
            // extension) is written too.
            let changed = conn
                .prepare_cached(
                    "UPDATE jobs SET lease_until = max(coalesce(lease_until, ?4), ?4)
                     WHERE id = ?1 AND tenant = ?2 AND lease_id = ?3",
                )?
                .execute(params![id, tenant, lease_id, until])?;
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::PutEventType {
            tenant,
            name,
            body,
            created_at,
            updated_at,
            expected,
        } => {
            let changed = match expected {
                None => conn
                    .prepare_cached(
                        "INSERT INTO event_types (tenant, name, body, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (tenant, name) DO NOTHING",
                    )?
                    .execute(params![tenant, name, body, created_at, updated_at])?,
                Some(expected) => conn
                    .prepare_cached(
                        "UPDATE event_types SET body = ?3, updated_at = ?4
                         WHERE tenant = ?1 AND name = ?2 AND body = ?5",
                    )?
                    .execute(params![tenant, name, body, updated_at, expected])?,
            };
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::DeleteEventType { tenant, name } => {
            let changed = conn
                .prepare_cached("DELETE FROM event_types WHERE tenant = ?1 AND name = ?2")?
                .execute(params![tenant, name])?;
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::CreateEndpoint(row) => {
            let mut changed = conn
                .prepare_cached(
                    "INSERT INTO endpoints (id, tenant, owner, version, body) VALUES (?1, ?2, ?3, 1, ?4)
                     ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![row.id, row.tenant, row.owner, row.body])?;
            if changed == 0 {
                changed = endpoint_is(conn, row, None)?;
            }
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::UpdateEndpoint { row, expected } => {
            let mut changed = conn
                .prepare_cached(
                    "UPDATE endpoints SET owner = ?3, body = ?4, version = version + 1
                     WHERE id = ?1 AND tenant = ?2 AND version = ?5",
                )?
                .execute(params![row.id, row.tenant, row.owner, row.body, expected])?;
            if changed == 0 {
                changed = endpoint_is(conn, row, expected.checked_add(1))?;
            }
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::DeleteEndpoint { tenant, id } => {
            let changed = conn
                .prepare_cached("DELETE FROM endpoints WHERE id = ?1 AND tenant = ?2")?
                .execute(params![id, tenant])?;
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::Publish {
            event,
            key,
            deliveries,
            now,
        } => publish(conn, event, key.as_ref(), deliveries, *now),
        Write::SettleEventProvider {
            tenant,
            event_id,
            provider,
            body,
        } => {
            let changed = conn
                .prepare_cached(
                    "INSERT INTO event_results (event_id, provider, body)
                     SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM events WHERE id = ?1 AND tenant = ?4)
                     ON CONFLICT (event_id, provider) DO NOTHING",
                )?
                .execute(params![event_id, provider, body, tenant])?;
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::CreateSource(row) => {
            let mut changed = conn
                .prepare_cached(
                    "INSERT INTO sources (id, tenant, version, created_at, body) VALUES (?1, ?2, 1, ?3, ?4)
                     ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![row.id, row.tenant, row.created_at, row.body])?;
            if changed == 0 {
                changed = source_is(conn, row, None)?;
            }
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::UpdateSource { row, expected } => {
            let mut changed = conn
                .prepare_cached(
                    "UPDATE sources SET body = ?3, version = version + 1
                     WHERE id = ?1 AND tenant = ?2 AND version = ?4",
                )?
                .execute(params![row.id, row.tenant, row.body, expected])?;
            if changed == 0 {
                changed = source_is(conn, row, expected.checked_add(1))?;
            }
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::DeleteSource { tenant, id } => {
            let changed = conn
                .prepare_cached("DELETE FROM sources WHERE id = ?1 AND tenant = ?2")?
                .execute(params![id, tenant])?;
            if changed == 1 {
                conn.prepare_cached("DELETE FROM source_requests WHERE source_id = ?1")?
                    .execute(params![id])?;
            }
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::RecordSourceRequest(row) => {
            let changed = conn
                .prepare_cached(
                    "INSERT INTO source_requests (source_id, id, tenant, received_at, expires_at, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (source_id, id) DO NOTHING",
                )?
                .execute(params![
                    row.source_id,
                    row.id,
                    row.tenant,
                    row.received_at,
                    row.expires_at,
                    row.body
                ])?;
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
        Write::PurgeExpired { now, limit } => {
            // Source requests are counted with the jobs and events, as
            // events are: a chunk of any keeps the purge going.
            let requests = conn
                .prepare_cached(
                    "DELETE FROM source_requests WHERE rowid IN (
                         SELECT rowid FROM source_requests WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2
                     )",
                )?
                .execute(params![now, limit])?;
            conn.prepare_cached(
                "DELETE FROM event_idempotency_keys WHERE rowid IN (
                     SELECT rowid FROM event_idempotency_keys WHERE expires_at <= ?1 LIMIT ?2
                 )",
            )?
            .execute(params![now, limit])?;
            conn.prepare_cached(
                "DELETE FROM idempotency_keys WHERE rowid IN (
                     SELECT rowid FROM idempotency_keys WHERE expires_at <= ?1 LIMIT ?2
                 )",
            )?
            .execute(params![now, limit])?;
            // Events are counted with the jobs: a chunk of either keeps the
            // purge going.
            // An event's settled results go with it: the same events,
            // chosen in the same (index) order.
            conn.prepare_cached(
                "DELETE FROM event_results WHERE event_id IN (
                     SELECT id FROM events WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2
                 )",
            )?
            .execute(params![now, limit])?;
            let events = conn
                .prepare_cached(
                    "DELETE FROM events WHERE rowid IN (
                         SELECT rowid FROM events WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2
                     )",
                )?
                .execute(params![now, limit])?;
            let changed = requests
                + events
                + conn
                    .prepare_cached(
                        "DELETE FROM jobs WHERE rowid IN (
                         SELECT rowid FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2
                     )",
                    )?
                    .execute(params![now, limit])?;
            Ok(Outcome {
                changed,
                returned: None,
            })
        }
    }
}

/// 1 if the endpoint is stored exactly as `row` (at `version`, if given),
/// else 0.
fn endpoint_is(conn: &Connection, row: &EndpointRow, version: Option<i64>) -> rusqlite::Result<usize> {
    stored_as(conn, "endpoints", (&row.id, &row.tenant, &row.body), version)
}

/// 1 if the source is stored exactly as `row` (at `version`, if given),
/// else 0.
fn source_is(conn: &Connection, row: &SourceRow, version: Option<i64>) -> rusqlite::Result<usize> {
    stored_as(conn, "sources", (&row.id, &row.tenant, &row.body), version)
}

/// 1 if `table` (one of the versioned tables: `endpoints`, `sources`)
/// holds the row (id, tenant, body) at `version`, if given, else 0: how a
/// create or update recognises its own earlier attempt.
fn stored_as(
    conn: &Connection,
    table: &'static str,
    (id, tenant, body): (&str, &str, &str),
    version: Option<i64>,
) -> rusqlite::Result<usize> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT 1 FROM {table}
             WHERE id = ?1 AND tenant = ?2 AND body = ?3 AND (?4 IS NULL OR version = ?4)"
        ))?
        .query_row(params![id, tenant, body, version], |_| Ok(()))
        .optional()?;
    Ok(usize::from(found.is_some()))
}

/// Whether two records of an event are one event: the same text, or (a
/// record an earlier release wrote in an older version, published again
/// after an upgrade) the same event read.
fn same_event(stored: &str, ours: &str) -> bool {
    stored == ours
        || matches!(
            (domain::record::event::decode_event(stored), domain::record::event::decode_event(ours)),
            (Ok(stored), Ok(ours)) if stored.is_published_as(&ours)
        )
}

/// [`Write::Publish`], inside its own savepoint: an error undoes all of it.
fn publish(
    conn: &Connection,
    event: &EventRow,
    key: Option<&KeyRow>,
    deliveries: &[Row],
    now: i64,
) -> rusqlite::Result<Outcome> {
    if let Some(key) = key {
        let earlier = conn
            .prepare_cached(
                "SELECT event_id, fingerprint FROM event_idempotency_keys
                 WHERE tenant = ?1 AND key_hash = ?2 AND expires_at > ?3",
            )?
            .query_row(params![event.tenant, key.key_hash, now], |r| {
                Ok(Returned::EventReplay {
                    event_id: r.get(0)?,
                    fingerprint: r.get(1)?,
                })
            })
            .optional()?;
        if earlier.is_some() {
            return Ok(Outcome {
                changed: 0,
                returned: earlier,
            });
        }
    }
    let stored: Option<(String, String)> = conn
        .prepare_cached("SELECT tenant, body FROM events WHERE id = ?1")?
        .query_row(params![event.id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let mut changed = 0;
    match stored {
        None => {
            changed += conn
                .prepare_cached(
                    "INSERT INTO events (id, tenant, event_type, owner, created_at, expires_at, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    event.id,
                    event.tenant,
                    event.event_type,
                    event.owner,
                    event.created_at,
                    event.expires_at,
                    event.body
                ])?;
        }
        // Our own event, written by an earlier call: its fan-out goes on.
        Some((tenant, body)) if tenant == event.tenant && same_event(&body, &event.body) => {}
        Some(_) => return Err(id_taken("another event has this id")),
    }
    if let Some(key) = key {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO event_idempotency_keys (tenant, key_hash, fingerprint, event_id, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![event.tenant, key.key_hash, key.fingerprint, event.id, key.expires_at])?;
    }
    for row in deliveries {
        changed += insert_job_if_absent(conn, row)?;
    }
    Ok(Outcome {
        changed,
        returned: None,
    })
}

/// The error of a taken primary key, which [`sql_error`] answers as a
/// conflict.
fn id_taken(message: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY),
        Some(message.to_owned()),
    )
}

fn rollback(conn: &Connection) {
    if !conn.is_autocommit()
        && let Err(err) = conn.execute_batch("ROLLBACK")
    {
        tracing::warn!(error = %err, "rolling back a failed SQLite write batch");
    }
}

/// Whether a failed `COMMIT` may have committed: an I/O error (writing or
/// syncing the WAL) leaves that unknown; anything else (busy, a full disk
/// before the commit record) leaves the transaction open, and it is rolled
/// back.
fn commit_outcome_unknown(err: &rusqlite::Error) -> bool {
    !matches!(
        err.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::DiskFull
                | rusqlite::ErrorCode::OutOfMemory
                | rusqlite::ErrorCode::ReadOnly
        )
    )
}

/// Every write of a batch rolled back before its commit: nothing written.
fn fail_all(count: usize, message: &str) -> Vec<Result<Outcome, StoreError>> {
    (0..count)
        .map(|_| Err(StoreError::Unavailable(message.to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_failing_at_io_is_indeterminate_and_a_busy_one_is_not() {
        let failure = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        assert!(commit_outcome_unknown(&failure(
            rusqlite::ffi::SQLITE_IOERR_FSYNC
        )));
        assert!(commit_outcome_unknown(&failure(
            rusqlite::ffi::SQLITE_IOERR_WRITE
        )));
        assert!(!commit_outcome_unknown(&failure(rusqlite::ffi::SQLITE_BUSY)));
        assert!(!commit_outcome_unknown(&failure(rusqlite::ffi::SQLITE_FULL)));
    }

    fn fresh() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = crate::schema::open_writer(&dir.path().join("w.db")).expect("open");
        (dir, conn)
    }

    fn row(id: &str, due_at: Option<i64>) -> Row {
        Row {
            id: id.to_owned(),
            tenant: "acme".to_owned(),
            status: "pending",
            created_at: 0,
            body: format!("{{\"id\":\"{id}\"}}"),
            due_at,
            expires_at: None,
        }
    }

    fn create(id: &str, due_at: Option<i64>) -> Write {
        Write::Create(row(id, due_at))
    }

    fn ids(conn: &Connection) -> Vec<String> {
        let mut stmt = conn.prepare("SELECT id FROM jobs ORDER BY id").expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    #[test]
    fn a_failed_write_is_undone_alone_and_the_batch_commits() {
        let (_dir, conn) = fresh();
        let writes = [
            create("a", Some(1)),
            create("a", Some(2)),
            create("b", Some(3)),
            Write::Release {
                id: "b".to_owned(),
                lease_id: "nobody".to_owned(),
            },
        ];
        let outcomes = commit_batch(&conn, writes.iter());
        assert_eq!(outcomes.len(), 4);
        assert!(matches!(outcomes[0], Ok(Outcome { changed: 1, .. })));
        assert!(
            matches!(outcomes[1], Err(StoreError::Conflict)),
            "{:?}",
            outcomes[1]
        );
        assert!(matches!(outcomes[2], Ok(Outcome { changed: 1, .. })));
        assert!(
            matches!(outcomes[3], Ok(Outcome { changed: 0, .. })),
            "a fenced miss is an outcome"
        );
        assert!(conn.is_autocommit(), "the batch was committed");
        assert_eq!(ids(&conn), vec!["a", "b"]);
        let due: i64 = conn
            .query_row("SELECT due_at FROM jobs WHERE id = 'a'", [], |r| r.get(0))
            .expect("a");
        assert_eq!(due, 1, "the conflicting create changed nothing");
    }

    #[test]
    fn a_claim_returns_the_job_it_won_once() {
        let (_dir, conn) = fresh();
        let claim = |lease: &str| Write::Claim {
            id: "a".to_owned(),
            lease_id: lease.to_owned(),
            owner: "p".to_owned(),
            until: 100,
            now: 10,
        };
        let writes = [create("a", Some(5)), claim("first"), claim("second")];
        let outcomes = commit_batch(&conn, writes.iter());
        let outcomes: Vec<Outcome> = outcomes.into_iter().map(|o| o.expect("ok")).collect();
        assert_eq!(
            outcomes[1].returned,
            Some(Returned::Claimed {
                job: "{\"id\":\"a\"}".to_owned(),
                previous_owner: None
            })
        );
        assert_eq!(
            outcomes[2],
            Outcome::default(),
            "the second claim in the batch sees the first"
        );
    }

    #[test]
    fn a_keyed_create_whose_key_is_taken_returns_the_job_it_names() {
        let (_dir, conn) = fresh();
        let keyed = |id: &str, fingerprint: &str| Write::CreateIdempotent {
            row: row(id, Some(1)),
            key_hash: "k".to_owned(),
            fingerprint: fingerprint.to_owned(),
            expires_at: 100,
            now: 10,
        };
        let writes = [keyed("a", "first"), keyed("b", "second")];
        let outcomes: Vec<Outcome> = commit_batch(&conn, writes.iter())
            .into_iter()
            .map(|o| o.expect("ok"))
            .collect();
        assert_eq!(
            outcomes[0],
            Outcome {
                changed: 1,
                returned: None
            }
        );
        assert_eq!(
            outcomes[1],
            Outcome {
                changed: 0,
                returned: Some(Returned::Replay {
                    job_id: "a".to_owned(),
                    fingerprint: "first".to_owned()
                })
            }
        );
        assert_eq!(ids(&conn), vec!["a"]);
    }

    #[test]
    fn a_publish_whose_event_id_is_taken_writes_nothing_and_keeps_its_key_unused() {
        let (_dir, conn) = fresh();
        let publish = |body: &str, fingerprint: &str| Write::Publish {
            event: EventRow {
                id: "e".to_owned(),
                tenant: "acme".to_owned(),
                event_type: "invoice.paid".to_owned(),
                owner: None,
                created_at: 0,
                expires_at: 0,
                body: body.to_owned(),
            },
            key: Some(KeyRow {
                key_hash: format!("k-{fingerprint}"),
                fingerprint: fingerprint.to_owned(),
                expires_at: 100,
            }),
            deliveries: vec![row(&format!("d-{fingerprint}"), Some(1))],
            now: 10,
        };
        let writes = [
            create("d-second", Some(7)),
            publish("{\"first\":1}", "first"),
            publish("{\"other\":1}", "second"),
        ];
        let outcomes = commit_batch(&conn, writes.iter());
        assert!(matches!(outcomes[1], Ok(Outcome { changed: 2, .. })));
        assert!(
            matches!(outcomes[2], Err(StoreError::Conflict)),
            "{:?}",
            outcomes[2]
        );
        assert_eq!(ids(&conn), vec!["d-first", "d-second"]);
        let keys: i64 = conn
            .query_row("SELECT count(*) FROM event_idempotency_keys", [], |r| r.get(0))
            .expect("count");
        assert_eq!(keys, 1, "the refused publish did not use up its key");
        let jobs_keys: i64 = conn
            .query_row("SELECT count(*) FROM idempotency_keys", [], |r| r.get(0))
            .expect("count");
        assert_eq!(jobs_keys, 0, "events' keys are not jobs' keys");
    }

    #[test]
    fn the_writer_drains_the_queue_in_bounded_batches() {
        let (dir, conn) = fresh();
        let (sender, receiver) = std::sync::mpsc::channel();
        let mut replies = Vec::new();
        for i in 0..(MAX_BATCH + 44) {
            let (reply, outcome) = oneshot::channel();
            sender
                .send(Request {
                    write: create(&format!("job-{i:04}"), Some(1)),
                    reply,
                })
                .expect("queued");
            replies.push(outcome);
        }
        drop(sender);
        let checkpointer = Checkpointer::start(&dir.path().join("w.db")).expect("checkpointer");
        assert_eq!(
            run(conn, receiver, checkpointer),
            2,
            "one full batch, then the rest"
        );
        for reply in replies {
            assert!(matches!(
                reply.blocking_recv(),
                Ok(Ok(Outcome { changed: 1, .. }))
            ));
        }
    }
}
