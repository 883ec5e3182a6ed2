//! The shared `JobStore` conformance suite on a fresh SQLite file per test,
//! plus what is particular to SQLite: group commit, reopening a file,
//! purging finished jobs, two stores (two processes) on one file, reads that
//! do not wait for writes.

use std::sync::Arc;
use std::time::Duration;

use domain::{Job, JobId, JobStatus, Timestamp};
use seal::Sealer;
use store::conformance::{at, lease};
use store::{Claim, Fenced, JobStore, StoreError};
use store_sqlite::{SqliteOpenError, SqliteOptions, SqliteStore};
use tempfile::TempDir;

/// A store on a file in its own temporary directory, removed once the store
/// is dropped (the store first, so its connections are closed).
#[derive(Debug)]
struct TempStore {
    store: SqliteStore,
    _dir: TempDir,
}

/// A sealer of its own (stores that share a file share one).
fn sealer() -> Arc<Sealer> {
    Arc::new(Sealer::ephemeral().expect("an in-memory sealer"))
}

fn fresh_store() -> TempStore {
    fresh_store_with(SqliteOptions::default())
}

fn fresh_store_with(options: SqliteOptions) -> TempStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("hookline.db"), options, sealer()).expect("open");
    TempStore { store, _dir: dir }
}

impl std::ops::Deref for TempStore {
    type Target = SqliteStore;
    fn deref(&self) -> &SqliteStore {
        &self.store
    }
}

store::conformance_suite!({
    let TempStore { store, _dir } = fresh_store();
    (Arc::new(store), _dir)
});

fn new_job(tenant: &str, created: Timestamp, seed: u64) -> Job {
    store::conformance::new_job(tenant, &["gas"], created, seed)
}

fn finished(job: &Job, now: Timestamp) -> Job {
    let done = store::conformance::delivered(job, now);
    assert_eq!((done.status(), done.due_at()), (JobStatus::Complete, None));
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_creates_land_and_only_duplicates_fail() {
    let temp = fresh_store();
    let store = temp.store.clone();
    let jobs: Arc<Vec<Job>> = Arc::new((0..500).map(|i| new_job("acme", at(i % 60), i as u64)).collect());
    // 50 tasks create 10 jobs each, and every fifth task also re-creates a
    // job another task creates: each duplicate must fail alone, whatever
    // batch it shares with valid creates.
    let tasks = (0..50).map(|t| {
        let store = store.clone();
        let jobs = Arc::clone(&jobs);
        tokio::spawn(async move {
            let mut conflicts = 0;
            let mut mine: Vec<&Job> = jobs[t * 10..t * 10 + 10].iter().collect();
            if t % 5 == 0 {
                mine.insert(5, &jobs[(t * 10 + 250) % 500]);
            }
            for job in mine {
                match store.create_job(job).await {
                    Ok(()) => {}
                    Err(StoreError::Conflict) => conflicts += 1,
                    Err(err) => panic!("create {}: {err}", job.id()),
                }
            }
            conflicts
        })
    });
    let conflicts: usize = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .sum();
    assert_eq!(conflicts, 10, "exactly the ten duplicates conflict");

    let reads = jobs.iter().map(|job| {
        let store = store.clone();
        async move { store.get_job(job.tenant(), job.id()).await.expect("get") }
    });
    let read = futures::future::join_all(reads).await;
    for (job, read) in jobs.iter().zip(read) {
        assert_eq!(read.as_ref(), Some(job), "job {} landed whole", job.id());
    }
    let due = store.due_jobs(at(3600), 1000).await.expect("due");
    assert_eq!(due.len(), 500);
    assert!(
        due.windows(2)
            .all(|w| (w[0].due_at, w[0].id) <= (w[1].due_at, w[1].id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_a_file_keeps_jobs_and_leases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data").join("hookline.db");
    let job = new_job("acme", at(0), 1);
    let other = new_job("acme", at(5), 2);
    let held = lease("p1", at(60));
    let sealer = sealer();
    {
        let store = SqliteStore::open(&path, SqliteOptions::default(), sealer.clone())
            .expect("open, making the directory");
        store.create_job(&job).await.expect("create");
        store.create_job(&other).await.expect("create");
        assert!(matches!(
            store
                .claim(job.tenant(), job.id(), &held, at(1))
                .await
                .expect("claim"),
            Claim::Won { .. }
        ));
    }
    let store = SqliteStore::open(&path, SqliteOptions::default(), sealer).expect("reopen");
    assert_eq!(
        store.get_job(job.tenant(), job.id()).await.expect("get"),
        Some(job.clone())
    );
    let due: Vec<JobId> = store
        .due_jobs(at(10), 10)
        .await
        .expect("due")
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(due, vec![other.id()], "the lease survived the reopen");
    assert_eq!(
        store
            .release(job.tenant(), job.id(), &held)
            .await
            .expect("release"),
        Fenced::Written
    );
    assert!(matches!(store.create_job(&job).await, Err(StoreError::Conflict)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_only_finished_jobs_past_retention() {
    let temp = fresh_store_with(SqliteOptions {
        retention: Duration::from_secs(3600),
    });
    let store = &temp.store;
    let live = new_job("acme", at(0), 1);
    let early = new_job("acme", at(0), 2);
    let late = new_job("acme", at(0), 3);
    for job in [&live, &early, &late] {
        store.create_job(job).await.expect("create");
    }
    for (job, done_at) in [(&early, at(10)), (&late, at(1000))] {
        let held = lease("p1", done_at + chrono::Duration::seconds(60));
        assert!(matches!(
            store
                .claim(job.tenant(), job.id(), &held, done_at)
                .await
                .expect("claim"),
            Claim::Won { .. }
        ));
        assert_eq!(
            store
                .save(&finished(job, done_at), &held, done_at)
                .await
                .expect("save"),
            Fenced::Written
        );
    }

    assert_eq!(
        store.purge_expired(at(3609)).await.expect("purge"),
        0,
        "kept until retention runs out"
    );
    assert_eq!(store.purge_expired(at(3610)).await.expect("purge"), 1);
    assert!(
        store
            .get_job(early.tenant(), early.id())
            .await
            .expect("get")
            .is_none()
    );
    let kept = store
        .get_job(late.tenant(), late.id())
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(kept.status(), JobStatus::Complete);

    let far_future = at(86_400 * 365 * 10);
    assert_eq!(store.purge_expired(far_future).await.expect("purge"), 1);
    assert_eq!(
        store.get_job(live.tenant(), live.id()).await.expect("get"),
        Some(live.clone()),
        "a job with work left never expires"
    );
}

/// An event is purged a grace period after its deliveries' retention
/// (`store::event_expires_at`), not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_purged_once_their_deliveries_are_long_gone() {
    use store::EventStore;
    let temp = fresh_store_with(SqliteOptions {
        retention: Duration::from_secs(3600),
    });
    let store = &temp.store;
    let event = store::conformance::events::event("acme", 1, "invoice.paid", None, &[], at(0));
    store.publish(&event, None, at(0)).await.expect("publish");
    let expires = store::event_expires_at(at(0), Duration::from_secs(3600));
    let before = expires - chrono::Duration::seconds(1);
    store.purge_expired(before).await.expect("purge");
    assert!(
        store
            .get_event(&event.tenant, event.id)
            .await
            .expect("get")
            .is_some(),
        "kept until a week past the retention"
    );
    assert_eq!(store.purge_expired(expires).await.expect("purge"), 1);
    assert_eq!(store.get_event(&event.tenant, event.id).await.expect("get"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_works_through_more_than_one_chunk() {
    let temp = fresh_store_with(SqliteOptions {
        retention: Duration::ZERO,
    });
    let store = &temp.store;
    let jobs: Vec<Job> = (0..2_500)
        .map(|i| finished(&new_job("acme", at(0), i), at(1)))
        .collect();
    let creates = jobs.iter().map(|job| store.create_job(job));
    for created in futures::future::join_all(creates).await {
        created.expect("create");
    }
    assert_eq!(store.purge_expired(at(1)).await.expect("purge"), 2_500);
    assert_eq!(store.purge_expired(at(1)).await.expect("purge"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_give_exclusive_claims() {
    let temp = fresh_store();
    let second: Arc<dyn JobStore> = Arc::new(
        SqliteStore::open(
            temp.store.path(),
            SqliteOptions::default(),
            Arc::clone(temp.store.sealer()),
        )
        .expect("second store"),
    );
    let first: Arc<dyn JobStore> = Arc::new(temp.store.clone());
    store::conformance::claims_are_exclusive_across(&[first, second]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_do_not_wait_for_a_held_write_lock() {
    let temp = fresh_store();
    let store = temp.store.clone();
    let job = new_job("acme", at(0), 1);
    store.create_job(&job).await.expect("create");

    // Another process holds the write lock.
    let blocker = rusqlite::Connection::open(store.path()).expect("open");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let pending = new_job("acme", at(1), 2);
    let create = tokio::spawn({
        let store = store.clone();
        let pending = pending.clone();
        async move { store.create_job(&pending).await }
    });

    let read = tokio::time::timeout(Duration::from_secs(2), async {
        let got = store.get_job(job.tenant(), job.id()).await.expect("get");
        let due = store.due_jobs(at(10), 10).await.expect("due");
        store.ping().await.expect("ping");
        (got, due)
    })
    .await
    .expect("reads answer while a write waits for the lock");
    assert_eq!(read.0, Some(job.clone()));
    assert_eq!(read.1.iter().map(|d| d.id).collect::<Vec<_>>(), vec![job.id()]);
    assert!(!create.is_finished(), "the write waits for the lock");

    blocker.execute_batch("ROLLBACK").expect("unlock");
    create.await.expect("task").expect("create once the lock is free");
    assert_eq!(
        store.get_job(pending.tenant(), pending.id()).await.expect("get"),
        Some(pending)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_job_is_refused_as_too_large() {
    let temp = fresh_store();
    let store = &temp.store;
    let padding = "x".repeat(store.max_job_bytes());
    let metadata =
        domain::Metadata::from_json(&serde_json::json!({ "padding": padding }).to_string()).expect("object");
    let job = Job::new(
        domain::NewJob {
            id: new_job("acme", at(0), 1).id(),
            tenant: domain::TenantId::new("acme"),
            target: domain::Target::Callback("https://client.example/complete".parse().expect("url")),
            payload: domain::Payload::Results {
                metadata: Some(metadata),
            },
            providers: vec!["gas".to_owned()],
        },
        at(0),
    );
    assert!(matches!(
        store.create_job(&job).await,
        Err(StoreError::TooLarge(_))
    ));
    assert!(
        store
            .get_job(job.tenant(), job.id())
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_by_url_and_shows_only_its_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("by-url.db");
    let url = format!("sqlite://{}?retention=7d", path.display());
    assert!(url.starts_with("sqlite:///"), "an absolute path: {url}");
    let store = SqliteStore::open_url(&url, sealer()).expect("open");
    assert_eq!(store.path(), path);
    assert_eq!(store.options().retention, Duration::from_secs(7 * 86_400));
    store.ping().await.expect("ping");
    assert_eq!(
        format!("{store:?}"),
        format!("SqliteStore {{ path: {path:?}, .. }}")
    );
    assert!(matches!(
        SqliteStore::open_url("sqlite://", sealer()),
        Err(SqliteOpenError::Config(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("newer.db");
    drop(SqliteStore::open(&path, SqliteOptions::default(), sealer()).expect("create"));
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.pragma_update(None, "user_version", 99)
        .expect("bump version");
    drop(conn);
    let err = SqliteStore::open(&path, SqliteOptions::default(), sealer()).expect_err("newer schema");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("99"), "{err}");
}

/// Processes started together (two processors, or a processor and
/// `keys create`) open a new file at once: none of them may fail.
#[test]
fn many_openers_of_a_new_file_all_succeed() {
    let dir = tempfile::tempdir().expect("temp dir");
    for round in 0..20 {
        let path = dir.path().join(format!("race-{round}.db"));
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    SqliteStore::open(&path, SqliteOptions::default(), sealer()).map(|_| ())
                })
            })
            .collect();
        for opener in openers {
            opener.join().expect("no panic").expect("every opener succeeds");
        }
    }
}

/// Every stored-format version's golden jobs, written into the table row
/// for row as that release wrote them (`jobs`: id, tenant, status, created
/// and due in epoch ms, the record as text), read back through the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_jobs_of_every_version_read_through_the_store() {
    for version in 1..=domain::record::VERSION {
        let temp = fresh_store();
        {
            let conn = rusqlite::Connection::open(temp.store.path()).expect("open");
            for (case, job) in domain::fixtures::cases() {
                let Some(text) = domain::fixtures::record(version, case) else {
                    continue;
                };
                let expires_at = job
                    .due_at()
                    .is_none()
                    .then(|| (job.updated_at() + chrono::Duration::days(30)).timestamp_millis());
                conn.execute(
                    "INSERT INTO jobs (id, tenant, status, created_at, job, due_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    rusqlite::params![
                        job.id().to_string(),
                        job.tenant().as_str(),
                        job.status().as_str(),
                        job.created_at().timestamp_millis(),
                        text,
                        job.due_at().map(|d| d.timestamp_millis()),
                        expires_at,
                    ],
                )
                .unwrap_or_else(|e| panic!("v{version}/{case}: {e}"));
            }
        }
        store::conformance::stored_jobs_of_a_version_read_back(&temp.store, version).await;
    }
}

/// Events and event types an earlier release stored (every version's
/// golden records, written into their rows as that release wrote them)
/// read back through the store, and an old event published again (an
/// `Idempotency-Key` replay after an upgrade) is the same event, not a
/// conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_events_and_event_types_of_every_version_read_through_the_store() {
    use store::{EventStore, Published};
    for version in 1..=domain::record::event::EVENT_VERSION {
        let temp = fresh_store();
        let mut cases = Vec::new();
        {
            let conn = rusqlite::Connection::open(temp.store.path()).expect("open");
            for (case, event) in domain::fixtures::event_cases_as_of(version) {
                let Some(text) = domain::fixtures::record_of("events", version, case) else {
                    continue;
                };
                conn.execute(
                    "INSERT INTO events (id, tenant, event_type, owner, created_at, expires_at, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    rusqlite::params![
                        event.id.to_string(),
                        event.tenant.as_str(),
                        event.event_type.as_str(),
                        event.owner.as_ref().map(|o| o.as_str().to_owned()),
                        event.created_at.timestamp_millis(),
                        (event.created_at + chrono::Duration::days(3650)).timestamp_millis(),
                        text,
                    ],
                )
                .unwrap_or_else(|e| panic!("v{version}/{case}: {e}"));
                cases.push(event);
            }
            for (case, event_type) in domain::fixtures::event_type_cases() {
                let Some(text) = domain::fixtures::record_of("event-types", version, case) else {
                    continue;
                };
                conn.execute(
                    "INSERT INTO event_types (tenant, name, body, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    rusqlite::params![
                        event_type.tenant.as_str(),
                        event_type.name.as_str(),
                        text,
                        event_type.created_at.timestamp_millis(),
                        event_type.updated_at.timestamp_millis(),
                    ],
                )
                .unwrap_or_else(|e| panic!("v{version}/{case}: {e}"));
                let read = temp
                    .store
                    .get_event_type(&event_type.tenant, &event_type.name)
                    .await
                    .expect("read");
                assert_eq!(read, Some(event_type), "v{version}/{case}");
            }
        }
        assert!(!cases.is_empty(), "v{version} has events");
        for event in cases {
            let read = temp.store.get_event(&event.tenant, event.id).await.expect("read");
            assert_eq!(read.as_ref(), Some(&event), "v{version}/{}", event.id);
            assert_eq!(
                temp.store
                    .publish(&event, None, at(0))
                    .await
                    .expect("published again"),
                Published::Accepted,
                "v{version}/{}: the same event",
                event.id
            );
        }
    }
}

/// A source request is kept until its `received_at` plus the store's
/// retention, and the purge removes it then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_requests_are_purged_once_their_retention_runs_out() {
    let retention = Duration::from_secs(3600);
    let temp = fresh_store_with(SqliteOptions { retention });
    store::conformance::sources::source_requests_are_purged_after_the_retention(
        Arc::new(temp.store.clone()),
        retention,
    )
    .await;
}

/// Deleting a source deletes the requests it received with it (in one
/// write), and only its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_source_deletes_the_requests_it_received() {
    use store::SourceStore;
    use store::conformance::sources::{source, source_request};

    let temp = fresh_store();
    let store = &temp.store;
    let gone = source("acme", 1, "gone", at(0));
    let kept = source("acme", 2, "kept", at(0));
    for s in [&gone, &kept] {
        store.create_source(s).await.expect("create");
        for seed in 0..3 {
            store
                .record_source_request(&source_request(
                    s,
                    seed,
                    at(10 + i64::try_from(seed).expect("small")),
                ))
                .await
                .expect("record");
        }
    }
    let rows = |id: domain::SourceId| -> i64 {
        let conn = rusqlite::Connection::open(temp.store.path()).expect("open");
        conn.query_row(
            "SELECT count(*) FROM source_requests WHERE source_id = ?1",
            [id.to_string()],
            |r| r.get(0),
        )
        .expect("count")
    };
    assert_eq!((rows(gone.id), rows(kept.id)), (3, 3));
    assert!(
        !store
            .delete_source(&domain::TenantId::new("globex"), gone.id)
            .await
            .expect("delete as another tenant")
    );
    assert_eq!(rows(gone.id), 3, "another tenant's delete removes nothing");
    assert!(store.delete_source(&gone.tenant, gone.id).await.expect("delete"));
    assert_eq!((rows(gone.id), rows(kept.id)), (0, 3));
    assert!(
        store
            .source_requests(&gone.tenant, gone.id, 10)
            .await
            .expect("read")
            .is_empty()
    );
}

/// Everything the store at `path` holds: the bytes of its database file
/// and of its WAL, read while the store is open.
fn file_and_wal(path: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).expect("read the database file");
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    bytes.extend(std::fs::read(&wal).expect("read the WAL (the store is open)"));
    bytes
}

/// SPEC 13 on SQLite: no secret written through the store is anywhere in
/// the database file or its WAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_stored_sealed_in_the_file_and_its_wal() {
    let temp = fresh_store();
    let path = temp.path().to_owned();
    store::conformance::sealing::secrets_are_stored_sealed(Arc::new(temp.store.clone()), async || {
        file_and_wal(&path)
    })
    .await;
}

/// Three stores on one file: the writer, another with its sealer, and one
/// with a sealer of other keys, which reads sealed records as corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_secrets_open_only_with_the_same_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hookline.db");
    let keys = sealer();
    let open =
        |sealer: Arc<Sealer>| SqliteStore::open(&path, SqliteOptions::default(), sealer).expect("open");
    let (store, same_keys, other_keys) = (open(keys.clone()), open(keys), open(sealer()));
    store::conformance::sealing::sealed_secrets_open_only_with_the_same_keys(
        Arc::new(store),
        Arc::new(same_keys),
        Arc::new(other_keys),
    )
    .await;
}

/// What the rows of the tables holding secrets hold, read with `raw`.
fn live_rows(raw: &rusqlite::Connection) -> Vec<u8> {
    let mut text = String::new();
    for query in [
        "SELECT body FROM endpoints",
        "SELECT body FROM sources",
        "SELECT secrets FROM tenant_secrets",
    ] {
        let mut stmt = raw.prepare(query).expect("prepare");
        for body in stmt.query_map([], |r| r.get::<_, String>(0)).expect("query") {
            text.push_str(&body.expect("row"));
            text.push('\n');
        }
    }
    text.into_bytes()
}

/// Rows as the release before sealing wrote them (the writer's columns,
/// version 1, the record in the clear), inserted raw: read as they are,
/// and sealed by their next write, after which no row holds their secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_rows_of_an_earlier_release_are_read_and_sealed_by_their_next_write() {
    plaintext_rows_are_sealed_by_their_next_write(false).await;
}

/// The same, searching the database file and its WAL once the WAL has
/// been checkpointed and truncated: their secrets should be nowhere in
/// either. Not so yet, although the writer sets `secure_delete = FAST`:
/// copies of the plaintext rows remain in the file's pages (left by page
/// rebalancing or freed pages, which FAST does not zero). Rows sealed from
/// the start never had plaintext to leave (`secrets_are_stored_sealed_in_the_file_and_its_wal`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known gap: an upgraded SQLite file keeps remnants of its plaintext rows after they are re-sealed (VACUUM removes them)"]
async fn plaintext_rows_once_sealed_are_nowhere_in_the_file_or_its_wal() {
    plaintext_rows_are_sealed_by_their_next_write(true).await;
}

async fn plaintext_rows_are_sealed_by_their_next_write(in_the_files: bool) {
    use store::conformance::sealing::Plaintext;

    for version in 1..=domain::record::endpoint::ENDPOINT_VERSION {
        let temp = fresh_store();
        let path = temp.path().to_owned();
        let raw = rusqlite::Connection::open(&path).expect("open");
        let insert = async |record: Plaintext| {
            let inserted = match record {
                Plaintext::Endpoint { endpoint, text } => raw.execute(
                    "INSERT INTO endpoints (id, tenant, owner, version, body) VALUES (?1, ?2, ?3, 1, ?4)",
                    rusqlite::params![
                        endpoint.id.to_string(),
                        endpoint.tenant.as_str(),
                        endpoint.owner.as_ref().map(|o| o.as_str()),
                        text
                    ],
                ),
                Plaintext::Source { source, text } => raw.execute(
                    "INSERT INTO sources (id, tenant, version, created_at, body) VALUES (?1, ?2, 1, ?3, ?4)",
                    rusqlite::params![
                        source.id.to_string(),
                        source.tenant.as_str(),
                        source.created_at.timestamp_millis(),
                        text
                    ],
                ),
                Plaintext::SigningSecrets { tenant, text } => raw.execute(
                    "INSERT INTO tenant_secrets (tenant, secrets, version) VALUES (?1, ?2, 1)",
                    rusqlite::params![tenant.as_str(), text],
                ),
            };
            assert_eq!(inserted.expect("insert"), 1);
        };
        store::conformance::sealing::plaintext_records_are_read_and_sealed_by_their_next_write(
            Arc::new(temp.store.clone()),
            version,
            insert,
            async || {
                if in_the_files {
                    raw.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                        .expect("checkpoint");
                    file_and_wal(&path)
                } else {
                    live_rows(&raw)
                }
            },
        )
        .await;
    }
}
