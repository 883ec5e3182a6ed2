//! The conformance suite: one set of behaviours every `JobStore` backend
//! must show. A backend's tests invoke [`crate::conformance_suite!`] with an
//! async expression that yields a fresh, empty store.

use std::collections::HashMap;
use std::sync::Arc;

use domain::{
    CallbackOutcome, FetchOutcome, Jitter, Job, JobId, JobStatus, NewJob, Payload, ProviderStatus,
    ReceiverTag, RetryPolicy, Target, TenantId, Timestamp, Tried,
};
use rand::SeedableRng;

pub mod events;
pub mod sealing;
pub mod sources;

use crate::{
    ApiKeyRecord, Claim, Fenced, IdempotencyRecord, IdempotentCreate, JobStore, KeyStore, Lease, ListQuery,
    PassOver, Redrive,
};

/// Generates one `#[tokio::test]` per behaviour, each on a fresh store.
/// The expression yields an `Arc` of the store, or a pair of it and a guard
/// kept alive for the test (a temporary directory, say).
#[macro_export]
macro_rules! conformance_suite {
    ($make_store:expr) => {
        $crate::conformance_suite!(@tests $make_store;
            create_is_atomic_and_tenant_scoped,
            due_work_is_oldest_first_and_only_when_due,
            due_work_from_any_start_is_the_same_due_set,
            due_work_passes_over_the_tenants_asked,
            due_work_passes_over_the_receivers_asked,
            claims_are_exclusive_under_sixteen_concurrent_claimers,
            expired_lease_makes_work_due_again,
            write_fenced_on_a_lost_lease_changes_nothing,
            provider_results_are_kept_across_runs,
            terminal_jobs_leave_the_due_set,
            release_makes_work_due_at_once,
            a_lengthened_lease_holds_the_job_until_its_new_expiry,
            a_lengthened_lease_runs_out_at_its_new_expiry,
            a_lease_that_ran_out_is_lengthened_unless_it_was_replaced,
            lengthening_needs_the_lease_on_the_job,
            purge_never_removes_live_jobs,
            listing_is_newest_first_by_status_with_a_cursor,
            redrive_requeues_only_failed_jobs_once,
            an_idempotency_key_creates_one_job_per_window,
            a_create_issued_again_finds_its_own_job,
            attempt_history_is_kept_in_order_and_bounded,
        );
        $crate::conformance_suite!(@keys $make_store;
            api_keys_are_found_by_hash_listed_and_revoked,
            signing_secrets_are_created_once_and_rotated_without_lost_updates,
        );
        $crate::conformance_suite!(@events $make_store;
            event_types_are_created_replaced_listed_and_deleted_per_tenant,
            endpoints_are_versioned_listed_by_owner_and_tenant_scoped,
            fan_out_reads_every_endpoint_of_the_tenant,
            publishing_creates_the_event_and_each_delivery_once,
            a_fan_out_cut_short_is_completed_without_touching_what_it_made,
            an_idempotency_key_publishes_one_event_per_window,
            events_are_listed_newest_first_by_type_and_owner_with_a_cursor,
            a_thin_events_provider_results_are_settled_once_first_writer_wins,
            an_event_held_in_a_blob_is_stored_by_its_reference,
        );
        $crate::conformance_suite!(@sources $make_store;
            sources_are_created_read_updated_and_deleted_by_id,
            sources_are_listed_per_tenant_oldest_first_with_a_cursor,
            source_requests_are_kept_newest_first_per_source_and_tenant,
        );
    };
    (@sources $make_store:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $crate::conformance::events::EventStoreUnderTest::split_events($make_store);
                $crate::conformance::sources::$name(store).await;
            }
        )+
    };
    (@events $make_store:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $crate::conformance::events::EventStoreUnderTest::split_events($make_store);
                $crate::conformance::events::$name(store).await;
            }
        )+
    };
    (@keys $make_store:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $crate::conformance::KeyStoreUnderTest::split_keys($make_store);
                $crate::conformance::$name(store).await;
            }
        )+
    };
    (@tests $make_store:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $crate::conformance::StoreUnderTest::split($make_store);
                $crate::conformance::$name(store).await;
            }
        )+
    };
}

/// What a backend's test hands the suite: the store, and whatever must live
/// as long as the test.
pub trait StoreUnderTest {
    type Guard;
    fn split(self) -> (Arc<dyn JobStore>, Self::Guard);
}

impl<S: JobStore + 'static> StoreUnderTest for Arc<S> {
    type Guard = ();
    fn split(self) -> (Arc<dyn JobStore>, ()) {
        (self, ())
    }
}

impl<S: JobStore + 'static, G> StoreUnderTest for (Arc<S>, G) {
    type Guard = G;
    fn split(self) -> (Arc<dyn JobStore>, G) {
        (self.0, self.1)
    }
}

/// Like [`StoreUnderTest`], for the key half of a backend.
pub trait KeyStoreUnderTest {
    type Guard;
    fn split_keys(self) -> (Arc<dyn KeyStore>, Self::Guard);
}

impl<S: KeyStore + 'static> KeyStoreUnderTest for Arc<S> {
    type Guard = ();
    fn split_keys(self) -> (Arc<dyn KeyStore>, ()) {
        (self, ())
    }
}

impl<S: KeyStore + 'static, G> KeyStoreUnderTest for (Arc<S>, G) {
    type Guard = G;
    fn split_keys(self) -> (Arc<dyn KeyStore>, G) {
        (self.0, self.1)
    }
}

fn t0() -> Timestamp {
    // Far enough in the past that a real clock never interferes, recent
    // enough that TTL attributes are plausible.
    chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("valid constant")
        .with_timezone(&chrono::Utc)
}

/// `seconds` after the suite's fixed start time.
pub fn at(seconds: i64) -> Timestamp {
    t0() + chrono::Duration::seconds(seconds)
}

/// A new job with reproducible id, created (and due) at `created`.
pub fn new_job(tenant: &str, providers: &[&str], created: Timestamp, seed: u64) -> Job {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    new_job_with_id(tenant, providers, created, JobId::generate(created, &mut rng))
}

/// A new job with the id given.
pub fn new_job_with_id(tenant: &str, providers: &[&str], created: Timestamp, id: JobId) -> Job {
    Job::new(
        NewJob {
            id,
            tenant: TenantId::new(tenant),
            target: Target::Callback(url::Url::parse("https://client.example/complete").expect("valid")),
            payload: Payload::Results {
                metadata: Some(domain::Metadata::from_json(r#"{"orderId":"A-17"}"#).expect("object")),
            },
            providers: providers.iter().map(|p| (*p).to_owned()).collect(),
        },
        created,
    )
}

/// `job` as the lifecycle leaves it once every provider answered and the
/// callback was delivered at `now`.
pub fn delivered(job: &Job, now: Timestamp) -> Job {
    let mut done = job.clone();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for name in done.providers_due(now) {
        let fetched = FetchOutcome::Ok {
            status: 200,
            data: serde_json::json!([]),
        };
        done.record_fetch(&name, fetched, tried(now), now, &policy(), &mut rng);
    }
    let outcome = CallbackOutcome::Delivered { status: 204 };
    done.record_delivery(outcome, tried(now), now, &policy(), &mut rng);
    done
}

/// How an attempt went, for the lifecycle: started at `at`, no answer kept.
fn tried(at: Timestamp) -> Tried {
    Tried {
        at,
        took: None,
        body: None,
        headers: Default::default(),
    }
}

pub fn lease(owner: &str, until: Timestamp) -> Lease {
    Lease {
        id: format!("{owner}-{}", until.timestamp_millis()),
        owner: owner.to_owned(),
        until,
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        jitter: Jitter::None,
        ..RetryPolicy::default()
    }
}

/// Claims a job with no providers at `at(1)` and records its callback
/// delivered at `at(2)`, under `held`.
async fn deliver(store: &dyn JobStore, job: &Job, held: &Lease) {
    call_back(store, job, held, CallbackOutcome::Delivered { status: 200 }).await;
}

/// Claims a job with no providers at `at(1)` and records `outcome` of its
/// callback at `at(2)`, under `held`.
async fn call_back(store: &dyn JobStore, job: &Job, held: &Lease, outcome: CallbackOutcome) {
    let mut claimed = claim_won(store, job, held, at(1)).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    claimed.record_delivery(outcome, tried(at(2)), at(2), &policy(), &mut rng);
    assert_eq!(
        store.save(&claimed, held, at(2)).await.expect("save"),
        Fenced::Written
    );
}

async fn claim_won(store: &dyn JobStore, job: &Job, lease: &Lease, now: Timestamp) -> Job {
    claim_won_from(store, job, lease, now).await.0
}

/// Like [`claim_won`], also naming whose expired lease the claim replaced.
async fn claim_won_from(
    store: &dyn JobStore,
    job: &Job,
    lease: &Lease,
    now: Timestamp,
) -> (Job, Option<String>) {
    match store
        .claim(job.tenant(), job.id(), lease, now)
        .await
        .expect("claim")
    {
        Claim::Won { job, took_over_from } => (*job, took_over_from),
        Claim::Lost => panic!("expected to win the claim on {}", job.id()),
    }
}

pub async fn create_is_atomic_and_tenant_scoped(store: Arc<dyn JobStore>) {
    let job = new_job("acme", &["gas", "internet"], at(0), 1);
    store.create_job(&job).await.expect("create");
    let read = store.get_job(job.tenant(), job.id()).await.expect("get");
    assert_eq!(read.as_ref(), Some(&job), "a job reads back exactly as written");
    assert!(
        store
            .get_job(&TenantId::new("other"), job.id())
            .await
            .expect("get")
            .is_none(),
        "another tenant's job is invisible"
    );

    let clash = new_job_with_id("acme", &["gas"], at(5), job.id());
    assert!(matches!(
        store.create_job(&clash).await,
        Err(crate::StoreError::Conflict)
    ));
    assert_eq!(
        store.get_job(job.tenant(), job.id()).await.expect("get"),
        Some(job)
    );
}

pub async fn due_work_is_oldest_first_and_only_when_due(store: Arc<dyn JobStore>) {
    let late = new_job("acme", &["gas"], at(20), 1);
    let early = new_job("acme", &["gas"], at(0), 2);
    let middle = new_job("acme", &["gas"], at(10), 3);
    for job in [&late, &early, &middle] {
        store.create_job(job).await.expect("create");
    }
    assert!(store.due_jobs(at(-1), 10).await.expect("due").is_empty());
    let due: Vec<JobId> = store
        .due_jobs(at(15), 10)
        .await
        .expect("due")
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(due, vec![early.id(), middle.id()]);
    let first: Vec<JobId> = store
        .due_jobs(at(60), 1)
        .await
        .expect("due")
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(first, vec![early.id()], "limit keeps the oldest due");
    let all = store.due_jobs(at(60), 10).await.expect("due");
    assert_eq!(
        all.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![early.id(), middle.id(), late.id()]
    );
    assert_eq!(all[2].due_at, at(20));
}

pub async fn due_work_from_any_start_is_the_same_due_set(store: Arc<dyn JobStore>) {
    let jobs: Vec<Job> = (0..24)
        .map(|n| new_job("acme", &["gas"], at(n), 100 + n as u64))
        .collect();
    for job in &jobs {
        store.create_job(job).await.expect("create");
    }
    let later = new_job("acme", &["gas"], at(500), 99);
    store.create_job(&later).await.expect("create");
    let held = &jobs[3];
    claim_won(&*store, held, &lease("p1", at(600)), at(30)).await;
    let mut expected: Vec<JobId> = jobs
        .iter()
        .map(|j| j.id())
        .filter(|id| *id != held.id())
        .collect();
    expected.sort();
    // However a store splits its due set, every start finds work while any
    // is due, only due and unleased jobs, and the starts between them
    // reach every due job.
    let mut reached: Vec<JobId> = Vec::new();
    for start in (0..=256).chain([u64::MAX]) {
        let due = store
            .due_jobs_from(at(30), 100, start, &Default::default())
            .await
            .expect("due");
        assert!(!due.is_empty(), "start {start}: work is due");
        let mut ids: Vec<JobId> = due.iter().map(|d| d.id).collect();
        assert!(
            ids.iter().all(|id| expected.contains(id)),
            "start {start}: only due, unleased jobs"
        );
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), due.len(), "start {start}: no job twice");
        let few = store
            .due_jobs_from(at(30), 2, start, &Default::default())
            .await
            .expect("due");
        assert!((1..=2).contains(&few.len()), "start {start}: the limit holds");
        reached.extend(ids);
    }
    reached.sort();
    reached.dedup();
    assert_eq!(reached, expected, "every due job is reached from some start");
}

/// A poll passing over a busy tenant finds the jobs behind its backlog,
/// from any start, and never returns the busy tenant's.
pub async fn due_work_passes_over_the_tenants_asked(store: Arc<dyn JobStore>) {
    let busy: Vec<Job> = (0..24)
        .map(|n| new_job("busy", &["gas"], at(n), 300 + n as u64))
        .collect();
    for job in &busy {
        store.create_job(job).await.expect("create");
    }
    let quiet: Vec<Job> = (0..2)
        .map(|n| new_job("quiet", &["gas"], at(50 + n), 400 + n as u64))
        .collect();
    for job in &quiet {
        store.create_job(job).await.expect("create");
    }
    let mut expected: Vec<JobId> = quiet.iter().map(|j| j.id()).collect();
    expected.sort();
    let pass_over: PassOver = [TenantId::new("busy")].into_iter().collect();
    let mut reached: Vec<JobId> = Vec::new();
    for start in 0..=64 {
        let due = store
            .due_jobs_from(at(60), 10, start, &pass_over)
            .await
            .expect("due");
        assert!(!due.is_empty(), "start {start}: quiet's jobs are due");
        assert!(
            due.iter().all(|d| d.tenant.as_str() == "quiet"),
            "start {start}: none of busy's: {due:?}"
        );
        reached.extend(due.iter().map(|d| d.id));
    }
    reached.sort();
    reached.dedup();
    assert_eq!(reached, expected, "both of quiet's jobs are reached");
}

/// A poll passing over one receiver of a tenant (its tag is in the job
/// ids) finds the tenant's jobs to others behind that receiver's backlog.
pub async fn due_work_passes_over_the_receivers_asked(store: Arc<dyn JobStore>) {
    let url = |s: &str| url::Url::parse(s).expect("a URL");
    let (hung, quick) = (
        ReceiverTag::of_callback(&url("https://hung.example/")),
        ReceiverTag::of_callback(&url("https://quick.example/")),
    );
    let with_tag = |tag, n: i64, seed: u64| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        new_job_with_id("acme", &["gas"], at(n), JobId::generate_for(tag, at(n), &mut rng))
    };
    for n in 0..24 {
        store
            .create_job(&with_tag(hung, n, 500 + n as u64))
            .await
            .expect("create");
    }
    let mut expected = Vec::new();
    for n in 0..2 {
        let job = with_tag(quick, 50 + n, 600 + n as u64);
        store.create_job(&job).await.expect("create");
        expected.push(job.id());
    }
    expected.sort();
    let mut pass_over = PassOver::default();
    pass_over.receiver(TenantId::new("acme"), hung);
    let mut reached: Vec<JobId> = Vec::new();
    for start in 0..=64 {
        let due = store
            .due_jobs_from(at(60), 10, start, &pass_over)
            .await
            .expect("due");
        assert!(!due.is_empty(), "start {start}: quick's jobs are due");
        assert!(
            due.iter().all(|d| d.id.receiver() == quick),
            "start {start}: none of hung's: {due:?}"
        );
        reached.extend(due.iter().map(|d| d.id));
    }
    reached.sort();
    reached.dedup();
    assert_eq!(reached, expected, "both of quick's jobs are reached");
    // Without passing over, the oldest (hung's) come first.
    let all = store.due_jobs(at(60), 10).await.expect("due");
    assert!(all.iter().all(|d| d.id.receiver() == hung), "{all:?}");
}

pub async fn claims_are_exclusive_under_sixteen_concurrent_claimers(store: Arc<dyn JobStore>) {
    claims_are_exclusive_across(&[store]).await;
}

/// Twenty due jobs, sixteen claimers racing for all of them, spread over
/// `stores` (which share one database): every job is won exactly once.
pub async fn claims_are_exclusive_across(stores: &[Arc<dyn JobStore>]) {
    let jobs: Vec<Job> = (0..20)
        .map(|i| new_job("acme", &["gas"], at(i), 100 + i as u64))
        .collect();
    for (i, job) in jobs.iter().enumerate() {
        stores[i % stores.len()].create_job(job).await.expect("create");
    }
    let now = at(100);
    let claimers = (0..16).map(|c| {
        let store = Arc::clone(&stores[c % stores.len()]);
        let ids: Vec<(TenantId, JobId)> = jobs.iter().map(|j| (j.tenant().clone(), j.id())).collect();
        tokio::spawn(async move {
            let lease = lease(&format!("claimer-{c}"), now + chrono::Duration::seconds(60));
            let mut won = Vec::new();
            for (tenant, id) in ids {
                if let Claim::Won { job, .. } = store.claim(&tenant, id, &lease, now).await.expect("claim") {
                    won.push(job.id());
                }
            }
            won
        })
    });
    let mut winners: HashMap<JobId, usize> = HashMap::new();
    for handle in futures::future::join_all(claimers).await {
        for id in handle.expect("claimer task") {
            *winners.entry(id).or_default() += 1;
        }
    }
    assert_eq!(winners.len(), jobs.len(), "every job was claimed");
    assert!(
        winners.values().all(|n| *n == 1),
        "no job was claimed twice: {winners:?}"
    );
    for store in stores {
        assert!(
            store.due_jobs(now, 100).await.expect("due").is_empty(),
            "leased jobs are not due"
        );
    }
}

pub async fn expired_lease_makes_work_due_again(store: Arc<dyn JobStore>) {
    let job = new_job("acme", &["gas"], at(0), 1);
    store.create_job(&job).await.expect("create");
    let first = lease("crashed", at(30));
    let (_, took_over) = claim_won_from(&*store, &job, &first, at(1)).await;
    assert_eq!(took_over, None, "a new job had no lease to take over");
    assert!(store.due_jobs(at(29), 10).await.expect("due").is_empty());
    assert!(matches!(
        store
            .claim(job.tenant(), job.id(), &lease("early", at(90)), at(29))
            .await
            .expect("claim"),
        Claim::Lost
    ));

    let due = store.due_jobs(at(31), 10).await.expect("due");
    assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), vec![job.id()]);
    let rescuer = lease("rescuer", at(90));
    let (claimed, took_over) = claim_won_from(&*store, &job, &rescuer, at(31)).await;
    assert_eq!(
        took_over.as_deref(),
        Some("crashed"),
        "the claim names the processor whose lease expired"
    );

    // A lease given up by a save or a release is not an expiry.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut retried = claimed;
    retried.record_fetch(
        "gas",
        FetchOutcome::Retryable {
            status: Some(503),
            error: "HTTP 503".into(),
            retry_after: None,
        },
        tried(at(32)),
        at(32),
        &policy(),
        &mut rng,
    );
    assert_eq!(
        store.save(&retried, &rescuer, at(32)).await.expect("save"),
        Fenced::Written
    );
    let later = at(32 + 3600);
    let (_, took_over) = claim_won_from(&*store, &job, &lease("next", at(4000)), later).await;
    assert_eq!(took_over, None, "a saved job's lease was given up, not expired");
    assert_eq!(
        store
            .release(job.tenant(), job.id(), &lease("next", at(4000)))
            .await
            .expect("release"),
        Fenced::Written
    );
    let (_, took_over) = claim_won_from(&*store, &job, &lease("after", at(5000)), later).await;
    assert_eq!(took_over, None, "a released lease was given up, not expired");
}

pub async fn write_fenced_on_a_lost_lease_changes_nothing(store: Arc<dyn JobStore>) {
    let job = new_job("acme", &["gas"], at(0), 1);
    store.create_job(&job).await.expect("create");
    let slow = lease("slow", at(30));
    let mut stale = claim_won(&*store, &job, &slow, at(1)).await;
    let rescuer = lease("rescuer", at(100));
    let mut fresh = claim_won(&*store, &job, &rescuer, at(31)).await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    stale.record_fetch(
        "gas",
        FetchOutcome::Permanent {
            status: Some(404),
            error: "stale".into(),
        },
        tried(at(32)),
        at(32),
        &policy(),
        &mut rng,
    );
    assert_eq!(
        store.save(&stale, &slow, at(32)).await.expect("save"),
        Fenced::LeaseLost
    );
    assert_eq!(
        store
            .release(job.tenant(), job.id(), &slow)
            .await
            .expect("release"),
        Fenced::LeaseLost
    );
    let unchanged = store
        .get_job(job.tenant(), job.id())
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(unchanged, job, "the fenced write changed nothing");
    assert!(
        store.due_jobs(at(33), 10).await.expect("due").is_empty(),
        "the rescuer's lease still holds"
    );

    fresh.record_fetch(
        "gas",
        FetchOutcome::Ok {
            status: 200,
            data: serde_json::json!([1]),
        },
        tried(at(33)),
        at(33),
        &policy(),
        &mut rng,
    );
    assert_eq!(
        store.save(&fresh, &rescuer, at(33)).await.expect("save"),
        Fenced::Written
    );
    // The lease is spent once the owner has saved.
    assert_eq!(
        store.save(&fresh, &rescuer, at(34)).await.expect("save"),
        Fenced::LeaseLost
    );
}

pub async fn provider_results_are_kept_across_runs(store: Arc<dyn JobStore>) {
    let job = new_job("acme", &["gas", "internet"], at(0), 1);
    store.create_job(&job).await.expect("create");
    let first = lease("p1", at(60));
    let mut claimed = claim_won(&*store, &job, &first, at(1)).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let data = serde_json::json!([{"billedOn": "2026-10-01", "amount": 22.27}]);
    claimed.record_fetch(
        "gas",
        FetchOutcome::Ok {
            status: 200,
            data: data.clone(),
        },
        tried(at(1)),
        at(1),
        &policy(),
        &mut rng,
    );
    claimed.record_fetch(
        "internet",
        FetchOutcome::Retryable {
            status: Some(503),
            error: "HTTP 503".into(),
            retry_after: None,
        },
        tried(at(1)),
        at(1),
        &policy(),
        &mut rng,
    );
    assert_eq!(
        store.save(&claimed, &first, at(1)).await.expect("save"),
        Fenced::Written
    );
    assert!(
        store.due_jobs(at(5), 10).await.expect("due").is_empty(),
        "not due before its backoff"
    );
    let due = store.due_jobs(at(6), 10).await.expect("due");
    assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), vec![job.id()]);

    let again = claim_won(&*store, &job, &lease("p2", at(120)), at(6)).await;
    assert_eq!(again.providers()[0].status, ProviderStatus::Ok);
    assert_eq!(again.providers()[0].data.as_ref(), Some(&data));
    assert_eq!(again.providers_due(at(6)), vec!["internet".to_owned()]);
}

pub async fn terminal_jobs_leave_the_due_set(store: Arc<dyn JobStore>) {
    let job = new_job("acme", &[], at(0), 1);
    assert_eq!(job.status(), JobStatus::Delivering);
    store.create_job(&job).await.expect("create");
    let held = lease("p1", at(60));
    deliver(&*store, &job, &held).await;
    let far_future = at(86_400 * 365);
    assert!(store.due_jobs(far_future, 10).await.expect("due").is_empty());
    assert!(matches!(
        store
            .claim(job.tenant(), job.id(), &lease("p2", far_future), far_future)
            .await
            .expect("claim"),
        Claim::Lost
    ));
    let read = store
        .get_job(job.tenant(), job.id())
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(read.status(), JobStatus::Complete);
    assert_eq!(read.due_at(), None);
}

pub async fn release_makes_work_due_at_once(store: Arc<dyn JobStore>) {
    let job = new_job("acme", &["gas"], at(0), 1);
    store.create_job(&job).await.expect("create");
    let held = lease("shutting-down", at(600));
    claim_won(&*store, &job, &held, at(1)).await;
    assert!(store.due_jobs(at(2), 10).await.expect("due").is_empty());
    assert_eq!(
        store
            .release(job.tenant(), job.id(), &held)
            .await
            .expect("release"),
        Fenced::Written
    );
    let due = store.due_jobs(at(2), 10).await.expect("due");
    assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), vec![job.id()]);
}

/// The ids of the jobs due at `now` (`due_jobs`), checked against what a
/// poll (`due_jobs_from`) finds.
async fn due_ids(store: &dyn JobStore, now: Timestamp) -> Vec<JobId> {
    let due: Vec<JobId> = store
        .due_jobs(now, 10)
        .await
        .expect("due")
        .iter()
        .map(|d| d.id)
        .collect();
    let from: Vec<JobId> = store
        .due_jobs_from(now, 10, 0, &PassOver::default())
        .await
        .expect("due from")
        .iter()
        .map(|d| d.id)
        .collect();
    // A store with due partitions returns one partition's from a start.
    assert!(
        from.iter().all(|id| due.contains(id)) && from.is_empty() == due.is_empty(),
        "due_jobs {due:?} and due_jobs_from {from:?} agree at {now}"
    );
    due
}

/// `held`, lengthened to `until`: the same lease (its id), as its holder
/// keeps it.
fn lengthened(held: &Lease, until: Timestamp) -> Lease {
    Lease {
        until,
        ..held.clone()
    }
}

/// A lease lengthened before it runs out keeps the job out of the due set
/// and away from other claims until its new expiry; a shorter lengthening
/// keeps the longer expiry, the same lengthening issued again is written
/// again, and a save fenced on the lease still writes.
pub async fn a_lengthened_lease_holds_the_job_until_its_new_expiry(store: Arc<dyn JobStore>) {
    let job = new_job("acme", &["gas"], at(0), 1);
    store.create_job(&job).await.expect("create");
    let held = lease("slow-receiver", at(30));
    let mut claimed = claim_won(&*store, &job, &held, at(1)).await;
    assert_eq!(
        store
            .extend_lease(job.tenant(), job.id(), &held, at(300))
            .await
            .expect("extend"),
        Fenced::Written
    );
    assert_eq!(
        store
            .extend_lease(job.tenant(), job.id(), &held, at(300))
            .await
            .expect("extend again"),
        Fenced::Written,
        "issued again (after an unknown outcome), it finds its own effect"
    );
    assert_eq!(
        store
            .extend_lease(job.tenant(), job.id(), &held, at(100))
            .await
            .expect("extend less"),
        Fenced::Written,
        "our lease, lasting longer already"
    );
    for now in [at(31), at(150), at(300)] {
        assert!(due_ids(&*store, now).await.is_empty(), "still leased at {now}");
    }
    for now in [at(31), at(150), at(300)] {
        assert!(
            matches!(
                store
                    .claim(job.tenant(), job.id(), &lease("eager", at(900)), now)
                    .await
                    .expect("claim"),
                Claim::Lost
            ),
            "a claim past the old expiry but not the new one loses at {now}"
        );
    }
    assert_eq!(
        store.get_job(job.tenant(), job.id()).await.expect("get"),
        Some(job.clone()),
        "lengthening changes nothing of the job"
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    claimed.record_fetch(
        "gas",
        FetchOutcome::Ok {
            status: 200,
            data: serde_json::json!([1]),
        },
        tried(at(200)),
        at(200),
        &policy(),
        &mut rng,
    );
    assert_eq!(
        store
            .save(&claimed, &lengthened(&held, at(300)), at(200))
            .await
            .expect("save"),
        Fenced::Written,
        "a save fenced on the lengthened lease writes"
    );
    assert_eq!(
        store.get_job(job.tenant(), job.id()).await.expect("get"),
        Some(claimed.clone())
    );
    assert_eq!(
        store
            .extend_lease(job.tenant(), job.id(), &held, at(600))
            .await
            .expect("extend"),
        Fenced::LeaseLost,
        "the save spent the lease"
    );
}

/// A lengthened lease runs out at its new expiry like any other: the job
/// is due again and another claim takes it over, after which the old
/// holder's writes, a lengthening among them, change nothing.
pub async fn a_lengthened_lease_runs_out_at_its_new_expiry(store: Arc<dyn JobStore>) {
    let job = new_job("acme", &["gas"], at(0), 1);
    store.create_job(&job).await.expect("create");
    let held = lease("stalled", at(30));
    claim_won(&*store, &job, &held, at(1)).await;
    assert_eq!(
        store
            .extend_lease(job.tenant(), job.id(), &held, at(300))
            .await
            .expect("extend"),
        Fenced::Written
    );
    assert!(due_ids(&*store, at(300)).await.is_empty());
    assert_eq!(
        due_ids(&*store, at(301)).await,
        vec![job.id()],
        "due again once it ran out"
    );
    let rescuer = lease("rescuer", at(400));
    let (_, took_over) = claim_won_from(&*store, &job, &rescuer, at(301)).await;
    assert_eq!(took_over.as_deref(), Some("stalled"), "its expiry is an expiry");

    assert_eq!(
        store
            .extend_lease(job.tenant(), job.id(), &held, at(900))
            .await
            .expect("extend"),
        Fenced::LeaseLost,
        "the old holder's lease was replaced"
    );
    assert_eq!(
        store
            .save(&job, &lengthened(&held, at(300)), at(302))
            .await
            .expect("save"),
        Fenced::LeaseLost
    );
    assert!(
        due_ids(&*store, at(400)).await.is_empty(),
        "the rescuer's lease is as it took it"
    );
    assert_eq!(due_ids(&*store, at(401)).await, vec![job.id()]);
}

/// A lease that ran out while nobody claimed the job is still the only one
/// on it, and is lengthened; once another claim replaced it, lengthening
/// it is `LeaseLost` and leaves the new lease and the job as they were.
pub async fn a_lease_that_ran_out_is_lengthened_unless_it_was_replaced(store: Arc<dyn JobStore>) {
    let late = new_job("acme", &["gas"], at(0), 1);
    store.create_job(&late).await.expect("create");
    let held = lease("late", at(30));
    claim_won(&*store, &late, &held, at(1)).await;
    assert_eq!(due_ids(&*store, at(40)).await, vec![late.id()], "it ran out");
    assert_eq!(
        store
            .extend_lease(late.tenant(), late.id(), &held, at(200))
            .await
            .expect("extend"),
        Fenced::Written,
        "nobody replaced it"
    );
    assert!(due_ids(&*store, at(40)).await.is_empty(), "held again");
    assert!(matches!(
        store
            .claim(late.tenant(), late.id(), &lease("other", at(900)), at(40))
            .await
            .expect("claim"),
        Claim::Lost
    ));
    assert_eq!(
        store
            .release(late.tenant(), late.id(), &lengthened(&held, at(200)))
            .await
            .expect("release"),
        Fenced::Written,
        "still ours to give back"
    );

    let replaced = new_job("acme", &["gas"], at(0), 2);
    store.create_job(&replaced).await.expect("create");
    let slow = lease("slow", at(30));
    claim_won(&*store, &replaced, &slow, at(1)).await;
    let rescuer = lease("rescuer", at(90));
    claim_won(&*store, &replaced, &rescuer, at(31)).await;
    assert_eq!(
        store
            .extend_lease(replaced.tenant(), replaced.id(), &slow, at(600))
            .await
            .expect("extend"),
        Fenced::LeaseLost
    );
    assert_eq!(
        store
            .get_job(replaced.tenant(), replaced.id())
            .await
            .expect("get"),
        Some(replaced.clone()),
        "the refused lengthening changed nothing"
    );
    let due: Vec<JobId> = due_ids(&*store, at(91))
        .await
        .into_iter()
        .filter(|id| *id == replaced.id())
        .collect();
    assert_eq!(
        due,
        vec![replaced.id()],
        "the rescuer's lease runs out when it did"
    );
    assert_eq!(
        store
            .release(replaced.tenant(), replaced.id(), &rescuer)
            .await
            .expect("release"),
        Fenced::Written,
        "the rescuer's lease is still on the job"
    );
}

/// Lengthening is fenced as a save is: without our lease on the job (no
/// such job, another tenant's id, a lease given up by a release) it is
/// `LeaseLost` and writes nothing.
pub async fn lengthening_needs_the_lease_on_the_job(store: Arc<dyn JobStore>) {
    let missing = new_job("acme", &["gas"], at(0), 1);
    let held = lease("p1", at(60));
    assert_eq!(
        store
            .extend_lease(missing.tenant(), missing.id(), &held, at(600))
            .await
            .expect("extend"),
        Fenced::LeaseLost,
        "no such job"
    );
    assert_eq!(
        store.get_job(missing.tenant(), missing.id()).await.expect("get"),
        None,
        "lengthening made no job"
    );

    let job = new_job("acme", &["gas"], at(0), 2);
    store.create_job(&job).await.expect("create");
    assert_eq!(
        store
            .extend_lease(job.tenant(), job.id(), &held, at(600))
            .await
            .expect("extend"),
        Fenced::LeaseLost,
        "an unclaimed job"
    );
    assert_eq!(due_ids(&*store, at(1)).await, vec![job.id()], "still due");
    claim_won(&*store, &job, &held, at(1)).await;
    assert_eq!(
        store
            .extend_lease(&TenantId::new("other"), job.id(), &held, at(600))
            .await
            .expect("extend"),
        Fenced::LeaseLost,
        "another tenant's job"
    );
    assert_eq!(
        due_ids(&*store, at(61)).await,
        vec![job.id()],
        "the lease runs out when it did"
    );
    assert_eq!(
        store
            .release(job.tenant(), job.id(), &held)
            .await
            .expect("release"),
        Fenced::Written
    );
    assert_eq!(
        store
            .extend_lease(job.tenant(), job.id(), &held, at(600))
            .await
            .expect("extend"),
        Fenced::LeaseLost,
        "a released lease"
    );
    assert_eq!(due_ids(&*store, at(2)).await, vec![job.id()], "due at once");
}

pub async fn purge_never_removes_live_jobs(store: Arc<dyn JobStore>) {
    let live = new_job("acme", &["gas"], at(0), 1);
    let finished = new_job("acme", &[], at(0), 2);
    store.create_job(&live).await.expect("create");
    store.create_job(&finished).await.expect("create");
    let held = lease("p1", at(60));
    deliver(&*store, &finished, &held).await;

    let ten_years = at(86_400 * 3650);
    let purged = store.purge_expired(ten_years).await.expect("purge");
    assert!(purged <= 1, "only the finished job may go; purged {purged}");
    let still = store.get_job(live.tenant(), live.id()).await.expect("get");
    assert_eq!(still, Some(live), "a live job is never purged");
    assert_eq!(store.due_jobs(ten_years, 10).await.expect("due").len(), 1);
}

/// Every page of a listing, followed to the end; asserts no page is larger
/// than asked and that the walk terminates.
async fn list_all(
    store: &dyn JobStore,
    tenant: &TenantId,
    status: Option<JobStatus>,
    limit: usize,
) -> Vec<JobId> {
    let mut ids = Vec::new();
    let mut after = None;
    for _ in 0..100 {
        let page = store
            .list_jobs(tenant, &ListQuery { status, after, limit })
            .await
            .expect("list");
        assert!(page.jobs.len() <= limit, "a page holds at most {limit} jobs");
        for job in &page.jobs {
            assert_eq!(job.tenant(), tenant, "listing is tenant-scoped");
            if let Some(status) = status {
                assert_eq!(job.status(), status, "listing filters by status");
            }
        }
        ids.extend(page.jobs.iter().map(|j| j.id()));
        match page.next {
            Some(next) => after = Some(next),
            None => return ids,
        }
    }
    panic!("listing did not end within 100 pages");
}

pub async fn listing_is_newest_first_by_status_with_a_cursor(store: Arc<dyn JobStore>) {
    let acme = TenantId::new("acme");
    // Seven jobs created a second apart (before the claims at `at(1)`): ids
    // sort by creation time.
    let jobs: Vec<Job> = (0..7)
        .map(|i| {
            let providers: &[&str] = if i < 3 { &[] } else { &["gas"] };
            new_job(
                "acme",
                providers,
                at(i - 10),
                100 + u64::try_from(i).expect("small"),
            )
        })
        .collect();
    for job in &jobs {
        store.create_job(job).await.expect("create");
    }
    store
        .create_job(&new_job("other", &["gas"], at(3), 7))
        .await
        .expect("create");
    // jobs[0] and jobs[1] complete, jobs[2] failed (410), the rest pending.
    deliver(&*store, &jobs[0], &lease("p1", at(60))).await;
    deliver(&*store, &jobs[1], &lease("p1", at(60))).await;
    call_back(&*store, &jobs[2], &lease("p1", at(60)), CallbackOutcome::Gone).await;

    let newest_first =
        |picked: &[usize]| -> Vec<JobId> { picked.iter().rev().map(|&i| jobs[i].id()).collect() };
    let everything = newest_first(&[0, 1, 2, 3, 4, 5, 6]);
    for limit in [1, 3, 7, 50] {
        assert_eq!(
            list_all(&*store, &acme, None, limit).await,
            everything,
            "limit {limit}"
        );
    }
    assert_eq!(
        list_all(&*store, &acme, Some(JobStatus::Complete), 1).await,
        newest_first(&[0, 1])
    );
    assert_eq!(
        list_all(&*store, &acme, Some(JobStatus::Failed), 10).await,
        newest_first(&[2])
    );
    assert_eq!(
        list_all(&*store, &acme, Some(JobStatus::Pending), 2).await,
        newest_first(&[3, 4, 5, 6])
    );
    assert!(
        list_all(&*store, &acme, Some(JobStatus::Delivering), 10)
            .await
            .is_empty()
    );
    assert!(
        list_all(&*store, &TenantId::new("nobody"), None, 10)
            .await
            .is_empty()
    );

    // A full last page says there is nothing more only when that is known:
    // exactly as many jobs as the limit ends without a cursor.
    let page = store
        .list_jobs(
            &acme,
            &ListQuery {
                status: None,
                after: None,
                limit: 7,
            },
        )
        .await
        .expect("list");
    assert_eq!(page.jobs.len(), 7);
    assert_eq!(page.next, None);
    // A cursor continues strictly after the job it names.
    let page = store
        .list_jobs(
            &acme,
            &ListQuery {
                status: None,
                after: Some(jobs[4].id()),
                limit: 2,
            },
        )
        .await
        .expect("list");
    assert_eq!(
        page.jobs.iter().map(|j| j.id()).collect::<Vec<_>>(),
        newest_first(&[2, 3])
    );
    assert_eq!(page.next, Some(jobs[2].id()));
    // Pages carry whole jobs, as `get_job` reads them.
    let first = store
        .list_jobs(
            &acme,
            &ListQuery {
                status: Some(JobStatus::Failed),
                after: None,
                limit: 1,
            },
        )
        .await
        .expect("list");
    let read = store.get_job(&acme, jobs[2].id()).await.expect("get");
    assert_eq!(first.jobs.first(), read.as_ref());
}

pub async fn redrive_requeues_only_failed_jobs_once(store: Arc<dyn JobStore>) {
    let acme = TenantId::new("acme");
    let failed = new_job("acme", &[], at(0), 1);
    let waiting = new_job("acme", &["gas"], at(0), 2);
    store.create_job(&failed).await.expect("create");
    store.create_job(&waiting).await.expect("create");
    call_back(&*store, &failed, &lease("p1", at(60)), CallbackOutcome::Gone).await;

    let redrive = |tenant: TenantId, id: JobId| {
        let store = Arc::clone(&store);
        async move { store.redrive(&tenant, id, at(100)).await.expect("redrive") }
    };
    assert!(matches!(
        redrive(TenantId::new("other"), failed.id()).await,
        Redrive::NotFound
    ));
    assert!(matches!(
        redrive(acme.clone(), new_job("acme", &[], at(0), 3).id()).await,
        Redrive::NotFound
    ));
    assert!(matches!(
        redrive(acme.clone(), waiting.id()).await,
        Redrive::NotFailed(JobStatus::Pending)
    ));

    // Eight operators press the button at once: one redrive wins.
    let attempts = futures::future::join_all((0..8).map(|_| redrive(acme.clone(), failed.id()))).await;
    let requeued: Vec<&Job> = attempts
        .iter()
        .filter_map(|r| match r {
            Redrive::Requeued(job) => Some(&**job),
            _ => None,
        })
        .collect();
    assert_eq!(
        requeued.len(),
        1,
        "exactly one of concurrent redrives wins: {attempts:?}"
    );
    assert!(
        attempts.iter().all(|r| matches!(
            r,
            Redrive::Requeued(_) | Redrive::NotFailed(JobStatus::Delivering)
        )),
        "the others see the job already requeued: {attempts:?}"
    );
    let read = store
        .get_job(&acme, failed.id())
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        Some(&read),
        requeued.first().copied(),
        "the winner returns what was stored"
    );
    assert_eq!(read.status(), JobStatus::Delivering);
    assert_eq!(read.delivery().attempts, 0);
    assert_eq!(read.due_at(), Some(at(100)));

    // Back in the due set, out of the dead letter, and no longer expiring.
    let due = store.due_jobs(at(100), 10).await.expect("due");
    assert!(
        due.iter().any(|d| d.id == failed.id()),
        "redriven job is due: {due:?}"
    );
    assert!(
        list_all(&*store, &acme, Some(JobStatus::Failed), 10)
            .await
            .is_empty()
    );
    assert_eq!(
        list_all(&*store, &acme, Some(JobStatus::Delivering), 10).await,
        vec![failed.id()]
    );
    store.purge_expired(at(86_400 * 3650)).await.expect("purge");
    assert!(
        store.get_job(&acme, failed.id()).await.expect("get").is_some(),
        "a redriven job is live again: retention no longer applies"
    );
    claim_won(&*store, &failed, &lease("p2", at(160)), at(100)).await;
}

pub async fn api_keys_are_found_by_hash_listed_and_revoked(store: Arc<dyn KeyStore>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let record = |tenant: &str, at_s: i64, rng: &mut rand::rngs::StdRng| ApiKeyRecord {
        hash: domain::ApiKey::generate(rng).hash(),
        tenant: TenantId::new(tenant),
        created_at: at(at_s),
        revoked_at: None,
    };
    let acme = record("acme", 1, &mut rng);
    let acme2 = record("acme", 2, &mut rng);
    let globex = record("globex", 3, &mut rng);
    for key in [&acme, &acme2, &globex] {
        store.create_api_key(key).await.expect("create key");
    }
    assert!(matches!(
        store.create_api_key(&acme).await,
        Err(crate::StoreError::Conflict)
    ));
    assert_eq!(
        store.find_api_key(&acme.hash).await.expect("find"),
        Some(acme.clone())
    );
    let unknown = domain::ApiKey::generate(&mut rng).hash();
    assert_eq!(store.find_api_key(&unknown).await.expect("find"), None);

    let all = store.list_api_keys(None).await.expect("list");
    assert_eq!(
        all,
        vec![acme.clone(), acme2.clone(), globex.clone()],
        "oldest first"
    );
    let acme_only = store
        .list_api_keys(Some(&TenantId::new("acme")))
        .await
        .expect("list");
    assert_eq!(acme_only, vec![acme.clone(), acme2.clone()]);

    let revoked = store
        .revoke_api_key(&acme.key_id(), at(10))
        .await
        .expect("revoke")
        .expect("known key");
    assert_eq!(revoked.revoked_at, Some(at(10)));
    assert!(!revoked.is_active());
    let again = store
        .revoke_api_key(&acme.key_id(), at(20))
        .await
        .expect("revoke")
        .expect("known");
    assert_eq!(again.revoked_at, Some(at(10)), "the first revocation stands");
    assert_eq!(store.find_api_key(&acme.hash).await.expect("find"), Some(revoked));
    assert!(
        store
            .find_api_key(&acme2.hash)
            .await
            .expect("find")
            .expect("kept")
            .is_active()
    );
    for bad in [unknown.key_id(), "not-a-key-id".to_owned(), String::new()] {
        assert_eq!(
            store.revoke_api_key(&bad, at(30)).await.expect("revoke"),
            None,
            "{bad:?}"
        );
    }
}

/// What a caller whose create had an unknown outcome relies on when it
/// issues the same create again: the job, if the first call wrote it, is
/// found, never duplicated or changed. A plain create answers `Conflict`
/// (or `Ok`), an idempotent one a replay naming the job.
pub async fn a_create_issued_again_finds_its_own_job(store: Arc<dyn JobStore>) {
    let job = new_job("acme", &["gas"], at(0), 1);
    store.create_job(&job).await.expect("create");
    match store.create_job(&job).await {
        Ok(()) | Err(crate::StoreError::Conflict) => {}
        other => panic!("the same create again: {other:?}"),
    }

    let keyed = new_job("acme", &["gas"], at(1), 2);
    let key = IdempotencyRecord {
        key_hash: "b".repeat(64),
        fingerprint: "f".repeat(64),
        expires_at: at(100),
    };
    assert_eq!(
        store
            .create_job_idempotent(&keyed, &key, at(1))
            .await
            .expect("create"),
        IdempotentCreate::Created
    );
    assert_eq!(
        store
            .create_job_idempotent(&keyed, &key, at(2))
            .await
            .expect("again"),
        IdempotentCreate::Replay {
            job_id: keyed.id(),
            same_request: true
        }
    );

    let query = ListQuery {
        status: None,
        after: None,
        limit: 10,
    };
    let page = store.list_jobs(job.tenant(), &query).await.expect("list");
    assert_eq!(page.jobs, vec![keyed, job], "each job once, unchanged");
}

pub async fn an_idempotency_key_creates_one_job_per_window(store: Arc<dyn JobStore>) {
    let key = |fingerprint: &str, expires: i64| IdempotencyRecord {
        key_hash: "a".repeat(64),
        fingerprint: fingerprint.to_owned(),
        expires_at: at(expires),
    };
    // Sixteen clients retry one request at once: one job.
    let attempts = futures::future::join_all((0..16u64).map(|seed| {
        let store = Arc::clone(&store);
        async move {
            let job = new_job("acme", &["gas"], at(0), 500 + seed);
            let outcome = store.create_job_idempotent(&job, &key("same", 100), at(0)).await;
            (job.id(), outcome.expect("create"))
        }
    }))
    .await;
    let created: Vec<JobId> = attempts
        .iter()
        .filter(|(_, outcome)| *outcome == IdempotentCreate::Created)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(created.len(), 1, "{attempts:?}");
    let original = created[0];
    for (id, outcome) in &attempts {
        if *id != original {
            assert_eq!(
                *outcome,
                IdempotentCreate::Replay {
                    job_id: original,
                    same_request: true
                }
            );
            assert!(
                store
                    .get_job(&TenantId::new("acme"), *id)
                    .await
                    .expect("get")
                    .is_none()
            );
        }
    }
    // A different request under the same key is told apart.
    let other = new_job("acme", &["gas"], at(1), 600);
    assert_eq!(
        store
            .create_job_idempotent(&other, &key("different", 100), at(1))
            .await
            .expect("create"),
        IdempotentCreate::Replay {
            job_id: original,
            same_request: false
        }
    );
    // Keys are per tenant.
    let globex = new_job("globex", &["gas"], at(1), 601);
    assert_eq!(
        store
            .create_job_idempotent(&globex, &key("same", 100), at(1))
            .await
            .expect("create"),
        IdempotentCreate::Created
    );
    // After the window the key starts over.
    let later = new_job("acme", &["gas"], at(200), 602);
    assert_eq!(
        store
            .create_job_idempotent(&later, &key("same", 300), at(200))
            .await
            .expect("create"),
        IdempotentCreate::Created
    );
    assert!(
        store
            .get_job(&TenantId::new("acme"), later.id())
            .await
            .expect("get")
            .is_some()
    );
    // A job id that exists is still a conflict, key or not.
    let clash = new_job_with_id("acme", &["gas"], at(201), later.id());
    let fresh_key = IdempotencyRecord {
        key_hash: "b".repeat(64),
        ..key("x", 400)
    };
    assert!(matches!(
        store.create_job_idempotent(&clash, &fresh_key, at(201)).await,
        Err(crate::StoreError::Conflict)
    ));
    assert_eq!(
        store
            .create_job_idempotent(&new_job("acme", &["gas"], at(202), 604), &fresh_key, at(202))
            .await
            .expect("create"),
        IdempotentCreate::Created,
        "a failed create does not use up its key"
    );
}

pub async fn signing_secrets_are_created_once_and_rotated_without_lost_updates(store: Arc<dyn KeyStore>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let acme = TenantId::new("acme");
    assert_eq!(store.signing_secrets(&acme).await.expect("read"), None);
    let first = domain::SigningSecret::generate(&mut rng);
    let (created, fresh) = crate::ensure_signing_secrets(&*store, &acme, first.clone())
        .await
        .expect("ensure");
    assert!(fresh);
    assert_eq!(created.current, first);
    let (again, fresh) =
        crate::ensure_signing_secrets(&*store, &acme, domain::SigningSecret::generate(&mut rng))
            .await
            .expect("ensure");
    assert!(!fresh, "an existing secret is kept");
    assert_eq!(again.current, first);

    // A write against a stale version changes nothing.
    let (_, version) = store.signing_secrets(&acme).await.expect("read").expect("exists");
    let stale = domain::TenantSecrets::new(domain::SigningSecret::generate(&mut rng));
    assert!(
        !store
            .put_signing_secrets(&acme, &stale, Some(version + 1))
            .await
            .expect("put")
    );
    assert!(!store.put_signing_secrets(&acme, &stale, None).await.expect("put"));

    // Concurrent rotations all land, one after another.
    let nexts: Vec<domain::SigningSecret> = (0..4)
        .map(|_| domain::SigningSecret::generate(&mut rng))
        .collect();
    let results = futures::future::join_all(nexts.iter().map(|next| {
        let store = Arc::clone(&store);
        let acme = acme.clone();
        let next = next.clone();
        async move {
            crate::rotate_signing_secret(&*store, &acme, next, at(10), std::time::Duration::from_secs(60))
                .await
        }
    }))
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let (stored, final_version) = store.signing_secrets(&acme).await.expect("read").expect("exists");
    assert_eq!(final_version, version + 4, "four rotations, four versions");
    assert!(nexts.contains(&stored.current));
    assert_eq!(
        stored.signing_at(at(10)).len(),
        2,
        "the previous secret still signs"
    );
    assert_eq!(stored.signing_at(at(70)).len(), 1, "until the overlap ends");
    let globex = TenantId::new("globex");
    assert_eq!(
        store.signing_secrets(&globex).await.expect("read"),
        None,
        "secrets are per tenant"
    );
}

/// The attempt history rides in the job record: it reads back in order
/// after a save, survives further claims, keeps only the most recent
/// [`domain::MAX_ATTEMPTS_KEPT`], and a job at the bound with full-size
/// bodies still fits the store.
pub async fn attempt_history_is_kept_in_order_and_bounded(store: Arc<dyn JobStore>) {
    use domain::{Attempt, MAX_ATTEMPT_BODY, MAX_ATTEMPTS_KEPT};

    let job = new_job("acme", &["gas"], at(0), 1);
    store.create_job(&job).await.expect("create");
    let attempt = |n: i64, provider: Option<&str>, status: u16| Attempt {
        provider: provider.map(str::to_owned),
        at: at(n),
        duration_ms: u64::try_from(n).expect("positive"),
        status: Some(status),
        error: (status >= 300).then(|| format!("HTTP {status}")),
        body: (status >= 300).then(|| "x".repeat(MAX_ATTEMPT_BODY)),
        headers: Default::default(),
    };
    // Retried every second, for as many attempts as the test makes.
    let patient = RetryPolicy {
        provider: domain::RetrySchedule::new(vec![std::time::Duration::from_secs(1); 100]),
        ..policy()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut fail = |job: &mut Job, n: i64, provider: Option<&str>, status: u16| {
        let expected = attempt(n, provider, status);
        let tried = Tried {
            at: expected.at,
            took: Some(std::time::Duration::from_millis(expected.duration_ms)),
            body: expected.body.clone(),
            headers: Default::default(),
        };
        let error = format!("HTTP {status}");
        match provider {
            Some(name) => {
                let outcome = FetchOutcome::Retryable {
                    status: Some(status),
                    error,
                    retry_after: None,
                };
                job.record_fetch(name, outcome, tried, at(n), &patient, &mut rng);
            }
            None => {
                let outcome = CallbackOutcome::Retryable {
                    status: Some(status),
                    error,
                    retry_after: None,
                };
                job.record_delivery(outcome, tried, at(n), &patient, &mut rng);
            }
        }
    };
    let held = lease("p1", at(60));
    let mut claimed = claim_won(&*store, &job, &held, at(1)).await;
    fail(&mut claimed, 1, Some("gas"), 503);
    fail(&mut claimed, 2, None, 500);
    assert_eq!(
        store.save(&claimed, &held, at(2)).await.expect("save"),
        Fenced::Written
    );
    let read = store
        .get_job(job.tenant(), job.id())
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        read.history(),
        vec![attempt(1, Some("gas"), 503), attempt(2, None, 500)]
    );

    // Many more attempts over later claims: only the most recent are kept,
    // oldest first, and the job (bodies and all) still fits one item.
    let mut now = 100;
    for _round in 0..4 {
        let held = lease("p1", at(now + 60));
        let mut claimed = claim_won(&*store, &job, &held, at(now.max(3))).await;
        for n in 0..10 {
            fail(&mut claimed, now + n, Some("gas"), 502);
        }
        assert_eq!(
            claimed.due_at(),
            Some(at(now + 10)),
            "due again after the last attempt"
        );
        assert!(
            domain::record::encode(&claimed).len() <= store.max_job_bytes(),
            "a full history fits the store"
        );
        assert_eq!(
            store.save(&claimed, &held, at(now)).await.expect("save"),
            Fenced::Written
        );
        now += 100;
    }
    let read = store
        .get_job(job.tenant(), job.id())
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(read.history().len(), MAX_ATTEMPTS_KEPT);
    let times: Vec<i64> = read.history().iter().map(|a| a.at.timestamp()).collect();
    let mut sorted = times.clone();
    sorted.sort_unstable();
    assert_eq!(times, sorted, "oldest first");
    assert_eq!(
        read.history().last().map(|a| a.at),
        Some(at(now - 100 + 9)),
        "the newest is kept"
    );
}

/// The golden stored jobs of format `version` ([`domain::fixtures`]), which
/// the backend's test has put into `store` as that release wrote them, read
/// back through the store: each is the job it stored, listed, due when it
/// was due, claimed and saved (in the newest form) like any other, and a
/// failed one is redriven. A backend's test runs it for every version from
/// 1 to [`domain::record::VERSION`].
pub async fn stored_jobs_of_a_version_read_back(store: &dyn JobStore, version: u64) {
    let cases: Vec<(&str, Job)> = domain::fixtures::cases()
        .into_iter()
        .filter(|(case, _)| domain::fixtures::record(version, case).is_some())
        .collect();
    assert!(cases.len() >= 5, "v{version} has {} fixtures", cases.len());
    let tenant = TenantId::new("acme");
    for (case, job) in &cases {
        let read = store.get_job(&tenant, job.id()).await.expect("get");
        assert_eq!(
            read.as_ref(),
            Some(job),
            "v{version}/{case} reads as the job it stored"
        );
    }
    let page = store
        .list_jobs(
            &tenant,
            &ListQuery {
                status: None,
                after: None,
                limit: 100,
            },
        )
        .await
        .expect("list");
    let mut listed: Vec<JobId> = page.jobs.iter().map(Job::id).collect();
    let mut stored: Vec<JobId> = cases.iter().map(|(_, job)| job.id()).collect();
    listed.sort_unstable();
    stored.sort_unstable();
    assert_eq!(listed, stored, "v{version}: every stored job is listed");

    let now = at(0) + chrono::Duration::days(400);
    let mut due: Vec<JobId> = store
        .due_jobs(now, 100)
        .await
        .expect("due")
        .iter()
        .map(|d| d.id)
        .collect();
    let mut expected: Vec<JobId> = cases
        .iter()
        .filter(|(_, job)| job.due_at().is_some())
        .map(|(_, job)| job.id())
        .collect();
    due.sort_unstable();
    expected.sort_unstable();
    assert_eq!(due, expected, "v{version}: due exactly when it was due");

    for (case, job) in &cases {
        if job.due_at().is_some() {
            let held = lease("upgrader", now + chrono::Duration::minutes(1));
            let claimed = match store.claim(&tenant, job.id(), &held, now).await.expect("claim") {
                Claim::Won { job, .. } => *job,
                Claim::Lost => panic!("v{version}/{case}: claim lost"),
            };
            assert_eq!(&claimed, job, "v{version}/{case} claimed as stored");
            let saved = store.save(&claimed, &held, now).await.expect("save");
            assert_eq!(saved, Fenced::Written, "v{version}/{case}");
        }
        if job.status() == JobStatus::Failed {
            let redriven = store.redrive(&tenant, job.id(), now).await.expect("redrive");
            assert!(
                matches!(redriven, Redrive::Requeued(_)),
                "v{version}/{case}: {redriven:?}"
            );
        }
    }
    // Written again in the newest form, each still reads as its job.
    for (case, job) in &cases {
        let read = store
            .get_job(&tenant, job.id())
            .await
            .expect("get")
            .expect("kept");
        if job.status() == JobStatus::Failed {
            assert_eq!(read.status(), JobStatus::Delivering, "v{version}/{case} redriven");
        } else {
            assert_eq!(&read, job, "v{version}/{case} after its save");
        }
    }
}
