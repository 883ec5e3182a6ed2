//! Writes whose answer was lost between the intake and DynamoDB
//! (`testkit::faultproxy` in between): every answer is true, and the table
//! holds exactly one job per 202. A lost answer is resolved before the
//! intake answers; only a write it still cannot tell about is a 503 of its
//! own type, after which a retry with the same `Idempotency-Key` is safe.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;

use domain::{
    CallbackOutcome, Clock, Endpoint, EndpointId, Event, EventId, EventType, EventTypeDef, Job, JobId,
    JobStatus, KeyHash, NewJob, RetryPolicy, TenantId, TenantSecrets, Timestamp,
};
use rand::SeedableRng;
use serde_json::{Value, json};
use store::{
    ApiKeyRecord, Claim, DueJob, EndpointPage, EndpointQuery, EventPage, EventQuery, EventStore, Fenced,
    IdempotencyRecord, IdempotentCreate, JobPage, JobStore, KeyStore, Lease, ListQuery, Published, Redrive,
    Store, StoreError,
};
use store_dynamodb::{DynamoConfig, DynamoStore};
use testkit::faultproxy::{Fault, FaultProxy, dynamodb_target};

use crate::helpers::{TestApp, dynamo_store, spawn_app_with_store};

/// An app whose store reaches DynamoDB through a fault proxy, a store on
/// the same table without it (to see what the table holds), and the proxy.
async fn app_behind_proxy() -> (TestApp, DynamoStore, FaultProxy) {
    let proxy = FaultProxy::start(&testkit::dynamodb_endpoint())
        .await
        .expect("start the fault proxy");
    let direct = dynamo_store().await;
    let config = DynamoConfig::new(&direct.config().table).with_endpoint(proxy.endpoint());
    let app = spawn_app_with_store(Arc::new(
        DynamoStore::connect(config, crate::helpers::sealer()).await,
    ))
    .await;
    (app, direct, proxy)
}

/// Every job of tenant `default` in the table.
async fn jobs_in_table(direct: &DynamoStore) -> Vec<String> {
    let query = ListQuery {
        status: None,
        after: None,
        limit: store::MAX_PAGE,
    };
    let page = direct
        .list_jobs(&TenantId::new("default"), &query)
        .await
        .expect("list");
    assert!(page.next.is_none(), "fewer jobs than a page");
    page.jobs.iter().map(|job| job.id().to_string()).collect()
}

async fn post_with_key(app: &TestApp, key: &str) -> reqwest::Response {
    app.http
        .post(format!("{}/webhook", app.base))
        .header("idempotency-key", key)
        .json(&json!({"providers": ["gas"], "callbackUrl": app.callback_url()}))
        .send()
        .await
        .expect("post")
}

async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("json body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_store_answer_was_lost_is_accepted_once() {
    const ROUNDS: u32 = 5;
    let (app, direct, proxy) = app_behind_proxy().await;
    let put = dynamodb_target("PutItem");
    let mut answers: BTreeMap<u16, u32> = BTreeMap::new();
    let mut accepted = Vec::new();
    for _ in 0..ROUNDS {
        // DynamoDB writes the job; its answer never reaches the intake.
        proxy.arm(&put, Fault::LoseAnswer, 1);
        let response = app.post_job(&["gas"]).await;
        let status = response.status().as_u16();
        *answers.entry(status).or_default() += 1;
        if status == 202 {
            accepted.push(body(response).await["jobId"].as_str().expect("jobId").to_owned());
        }
    }
    let stored = jobs_in_table(&direct).await;

    eprintln!(
        "lost PutItem answers: {} of {} PutItem requests; answers by status: {answers:?}; \
         jobs in the table: {}",
        proxy.fired(&put, Fault::LoseAnswer),
        proxy.seen(&put),
        stored.len()
    );
    assert_eq!(proxy.fired(&put, Fault::LoseAnswer), ROUNDS);
    assert_eq!(answers, BTreeMap::from([(202, ROUNDS)]), "every job was written");
    accepted.sort();
    let mut stored = stored;
    stored.sort();
    assert_eq!(stored, accepted, "exactly one job per 202");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_the_store_could_not_confirm_is_resolved_by_the_intake() {
    let (app, direct, proxy) = app_behind_proxy().await;
    let put = dynamodb_target("PutItem");
    // The first attempt is applied and every retry the SDK makes is lost:
    // the store reports the outcome unknown, and the intake re-issues the
    // create, which finds the job (its id is the intake's own).
    proxy.arm(&put, Fault::LoseAnswer, 1);
    proxy.arm(&put, Fault::LoseRequest, 2);

    let response = app.post_job(&["gas"]).await;

    let status = response.status().as_u16();
    let answer = body(response).await;
    let stored = jobs_in_table(&direct).await;
    eprintln!(
        "PutItem requests {}, answers lost {}, requests lost {}; answer {status}; jobs in the table: {}",
        proxy.seen(&put),
        proxy.fired(&put, Fault::LoseAnswer),
        proxy.fired(&put, Fault::LoseRequest),
        stored.len()
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(stored, vec![answer["jobId"].as_str().expect("jobId").to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_job_whose_store_answer_was_lost_is_accepted_once() {
    let (app, direct, proxy) = app_behind_proxy().await;
    let transact = dynamodb_target("TransactWriteItems");
    proxy.arm(&transact, Fault::LoseAnswer, 1);

    let first = post_with_key(&app, "order-1").await;
    assert_eq!(first.status(), 202);
    let job_id = body(first).await["jobId"].clone();
    let retry = post_with_key(&app, "order-1").await;
    assert_eq!(retry.status(), 200);
    assert_eq!(body(retry).await["jobId"], job_id);

    assert_eq!(proxy.fired(&transact, Fault::LoseAnswer), 1);
    assert_eq!(
        jobs_in_table(&direct).await,
        vec![job_id.as_str().expect("id").to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_outcome_is_a_503_of_its_own_and_a_retry_with_the_key_is_safe() {
    let (app, direct, proxy) = app_behind_proxy().await;
    let transact = dynamodb_target("TransactWriteItems");
    // Written by the first attempt; nothing the intake sends after that
    // gets through until the fault is lifted.
    proxy.arm(&transact, Fault::LoseAnswer, 1);
    proxy.arm(&transact, Fault::LoseRequest, 1_000);

    let started = std::time::Instant::now();
    let unknown = post_with_key(&app, "order-2").await;
    let took = started.elapsed();

    assert_eq!(unknown.status(), 503);
    assert!(unknown.headers().contains_key("retry-after"));
    let problem = body(unknown).await;
    eprintln!(
        "TransactWriteItems requests {} (answers lost {}, requests lost {}); answer 503 after {took:?}: {problem}",
        proxy.seen(&transact),
        proxy.fired(&transact, Fault::LoseAnswer),
        proxy.fired(&transact, Fault::LoseRequest),
    );
    assert_eq!(problem["type"], "urn:hookline:problem:outcome-unknown");
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("same Idempotency-Key is safe"),
        "{problem}"
    );
    let stored = jobs_in_table(&direct).await;
    assert_eq!(stored.len(), 1, "the first attempt wrote the job");

    proxy.disarm();
    let retry = post_with_key(&app, "order-2").await;
    assert_eq!(retry.status(), 200, "the key's job, not a second one");
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(body(retry).await["jobId"], stored[0].as_str());
    assert_eq!(jobs_in_table(&direct).await, stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_the_store_could_not_confirm_is_resolved_by_reading_the_job_back() {
    let (app, direct, proxy) = app_behind_proxy().await;
    // A failed job of tenant `default`, made directly in the table.
    let now = app.clock.now();
    let job = Job::new(
        NewJob {
            id: JobId::generate(now, &mut rand::rng()),
            tenant: TenantId::new("default"),
            target: domain::Target::Callback(url::Url::parse(&app.callback_url()).expect("url")),
            payload: domain::Payload::Results { metadata: None },
            providers: Vec::new(),
        },
        now,
    );
    direct.create_job(&job).await.expect("create");
    let held = Lease {
        id: "lease-1".to_owned(),
        owner: "p1".to_owned(),
        until: app.later(std::time::Duration::from_secs(60)),
    };
    let Claim::Won { job: claimed, .. } = direct
        .claim(job.tenant(), job.id(), &held, now)
        .await
        .expect("claim")
    else {
        panic!("claim lost");
    };
    let mut failed = *claimed;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let tried = domain::Tried {
        at: now,
        took: None,
        body: None,
        headers: Default::default(),
    };
    failed.record_delivery(
        CallbackOutcome::Gone,
        tried,
        now,
        &RetryPolicy::default(),
        &mut rng,
    );
    assert_eq!(failed.status(), JobStatus::Failed);
    assert_eq!(
        direct.save(&failed, &held, now).await.expect("save"),
        Fenced::Written
    );
    // The redrive happens later than the failure, as in life.
    app.advance(std::time::Duration::from_secs(1));
    let put = dynamodb_target("PutItem");
    proxy.arm(&put, Fault::LoseAnswer, 1);
    proxy.arm(&put, Fault::LoseRequest, 1_000);

    let response = app
        .http
        .post(format!("{}/v1/jobs/{}/retry", app.base, job.id()))
        .send()
        .await
        .expect("retry");

    let status = response.status().as_u16();
    let answer = body(response).await;
    eprintln!(
        "redrive: PutItem answers lost {}, requests lost {}; answer {status}",
        proxy.fired(&put, Fault::LoseAnswer),
        proxy.fired(&put, Fault::LoseRequest),
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "delivering");
    let stored = direct
        .get_job(job.tenant(), job.id())
        .await
        .expect("get")
        .expect("job");
    assert_eq!(stored.status(), JobStatus::Delivering);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_the_store_could_not_confirm_is_resolved_by_the_processor() {
    let (app, direct, proxy) = app_behind_proxy().await;
    let id = app.accepted_job(&["gas"]).await;
    let put = dynamodb_target("PutItem");
    // The processor's save lands, its answer and the SDK's retries are
    // lost: the save is indeterminate, saved again, and read back.
    proxy.arm(&put, Fault::LoseAnswer, 1);
    proxy.arm(&put, Fault::LoseRequest, 2);

    let report = app
        .processor("p1")
        .drain(&tokio_util::sync::CancellationToken::new())
        .await;

    eprintln!(
        "save: PutItem answers lost {}, requests lost {}; {report:?}",
        proxy.fired(&put, Fault::LoseAnswer),
        proxy.fired(&put, Fault::LoseRequest),
    );
    assert_eq!(proxy.fired(&put, Fault::LoseRequest), 2);
    assert_eq!(
        (report.delivered, report.fenced, report.store_errors),
        (1, 0, 0),
        "{report:?}"
    );
    assert_eq!(app.mock.state.accepted_deliveries().len(), 1);
    let stored = direct
        .get_job(&TenantId::new("default"), id.parse().expect("job id"))
        .await
        .expect("get")
        .expect("job");
    assert_eq!(stored.status(), JobStatus::Complete);
}

/// A store that applies the next creates and then loses their answers
/// (`Indeterminate`), as a SQLite commit failing at I/O after the commit
/// record reached the WAL would: the intake's resolution on any backend.
#[derive(Debug)]
struct LosesCreateAnswers {
    inner: Arc<dyn Store>,
    left: AtomicU32,
}

impl LosesCreateAnswers {
    fn lost(&self) -> Option<StoreError> {
        self.left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
            .then(|| StoreError::Indeterminate("injected: the commit's answer was lost".to_owned()))
    }
}

#[async_trait]
impl JobStore for LosesCreateAnswers {
    async fn create_job(&self, job: &Job) -> Result<(), StoreError> {
        self.inner.create_job(job).await?;
        self.lost().map_or(Ok(()), Err)
    }

    async fn create_job_idempotent(
        &self,
        job: &Job,
        key: &IdempotencyRecord,
        now: Timestamp,
    ) -> Result<IdempotentCreate, StoreError> {
        let created = self.inner.create_job_idempotent(job, key, now).await?;
        self.lost().map_or(Ok(created), Err)
    }

    async fn get_job(&self, tenant: &TenantId, id: JobId) -> Result<Option<Job>, StoreError> {
        self.inner.get_job(tenant, id).await
    }

    async fn list_jobs(&self, tenant: &TenantId, query: &ListQuery) -> Result<JobPage, StoreError> {
        self.inner.list_jobs(tenant, query).await
    }

    async fn redrive(&self, tenant: &TenantId, id: JobId, now: Timestamp) -> Result<Redrive, StoreError> {
        self.inner.redrive(tenant, id, now).await
    }

    async fn due_jobs(&self, now: Timestamp, limit: usize) -> Result<Vec<DueJob>, StoreError> {
        self.inner.due_jobs(now, limit).await
    }

    async fn claim(
        &self,
        tenant: &TenantId,
        id: JobId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Claim, StoreError> {
        self.inner.claim(tenant, id, lease, now).await
    }

    async fn save(&self, job: &Job, lease: &Lease, now: Timestamp) -> Result<Fenced, StoreError> {
        self.inner.save(job, lease, now).await
    }

    async fn release(&self, tenant: &TenantId, id: JobId, lease: &Lease) -> Result<Fenced, StoreError> {
        self.inner.release(tenant, id, lease).await
    }

    async fn extend_lease(
        &self,
        tenant: &TenantId,
        id: JobId,
        lease: &Lease,
        until: Timestamp,
    ) -> Result<Fenced, StoreError> {
        self.inner.extend_lease(tenant, id, lease, until).await
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.inner.purge_expired(now).await
    }

    fn max_job_bytes(&self) -> usize {
        self.inner.max_job_bytes()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[async_trait]
impl KeyStore for LosesCreateAnswers {
    async fn signing_secrets(&self, tenant: &TenantId) -> Result<Option<(TenantSecrets, u64)>, StoreError> {
        self.inner.signing_secrets(tenant).await
    }

    async fn put_signing_secrets(
        &self,
        tenant: &TenantId,
        secrets: &TenantSecrets,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.inner.put_signing_secrets(tenant, secrets, expected).await
    }

    async fn create_api_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        self.inner.create_api_key(record).await
    }

    async fn find_api_key(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.inner.find_api_key(hash).await
    }

    async fn list_api_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.inner.list_api_keys(tenant).await
    }

    async fn revoke_api_key(&self, key_id: &str, now: Timestamp) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.inner.revoke_api_key(key_id, now).await
    }
}

/// Event writes pass through; a publish loses its answer like a create.
#[async_trait]
impl EventStore for LosesCreateAnswers {
    async fn put_event_type(&self, event_type: &EventTypeDef) -> Result<bool, StoreError> {
        self.inner.put_event_type(event_type).await
    }

    async fn get_event_type(
        &self,
        tenant: &TenantId,
        name: &EventType,
    ) -> Result<Option<EventTypeDef>, StoreError> {
        self.inner.get_event_type(tenant, name).await
    }

    async fn list_event_types(&self, tenant: &TenantId) -> Result<Vec<EventTypeDef>, StoreError> {
        self.inner.list_event_types(tenant).await
    }

    async fn delete_event_type(&self, tenant: &TenantId, name: &EventType) -> Result<bool, StoreError> {
        self.inner.delete_event_type(tenant, name).await
    }

    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        self.inner.create_endpoint(endpoint).await
    }

    async fn get_endpoint(
        &self,
        tenant: &TenantId,
        id: EndpointId,
    ) -> Result<Option<(Endpoint, u64)>, StoreError> {
        self.inner.get_endpoint(tenant, id).await
    }

    async fn update_endpoint(&self, endpoint: &Endpoint, expected: u64) -> Result<bool, StoreError> {
        self.inner.update_endpoint(endpoint, expected).await
    }

    async fn delete_endpoint(&self, tenant: &TenantId, id: EndpointId) -> Result<bool, StoreError> {
        self.inner.delete_endpoint(tenant, id).await
    }

    async fn list_endpoints(
        &self,
        tenant: &TenantId,
        query: &EndpointQuery,
    ) -> Result<EndpointPage, StoreError> {
        self.inner.list_endpoints(tenant, query).await
    }

    async fn tenant_endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError> {
        self.inner.tenant_endpoints(tenant).await
    }

    async fn publish(
        &self,
        event: &Event,
        key: Option<&IdempotencyRecord>,
        now: Timestamp,
    ) -> Result<Published, StoreError> {
        let published = self.inner.publish(event, key, now).await?;
        self.lost().map_or(Ok(published), Err)
    }

    async fn get_event(&self, tenant: &TenantId, id: EventId) -> Result<Option<Event>, StoreError> {
        self.inner.get_event(tenant, id).await
    }

    async fn settle_event_provider(
        &self,
        tenant: &TenantId,
        id: EventId,
        provider: &str,
        settled: &domain::SettledResult,
    ) -> Result<Option<domain::SettledResult>, StoreError> {
        self.inner
            .settle_event_provider(tenant, id, provider, settled)
            .await
    }

    async fn list_events(&self, tenant: &TenantId, query: &EventQuery) -> Result<EventPage, StoreError> {
        self.inner.list_events(tenant, query).await
    }
}

/// A publish whose answer was lost is published again by the intake (the
/// event and its deliveries are created only if absent): one event, one
/// delivery per endpoint, with or without a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_publish_whose_answer_was_lost_is_accepted_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = store_sqlite::SqliteStore::open(
        &dir.path().join("lost.db"),
        Default::default(),
        crate::helpers::sealer(),
    )
    .expect("open sqlite");
    let inner: Arc<dyn Store> = Arc::new(sqlite);
    let store = Arc::new(LosesCreateAnswers {
        inner: Arc::clone(&inner),
        left: AtomicU32::new(0),
    });
    let app = spawn_app_with_store(Arc::clone(&store) as Arc<dyn Store>).await;
    let put = app
        .http
        .put(format!("{}/v1/event-types/invoice.paid", app.base))
        .json(&json!({}))
        .send()
        .await
        .expect("put type");
    assert_eq!(put.status(), 201);
    for _ in 0..2 {
        let created = app
            .http
            .post(format!("{}/v1/endpoints", app.base))
            .json(&json!({"url": app.callback_url(), "eventTypes": ["*"]}))
            .send()
            .await
            .expect("create endpoint");
        assert_eq!(created.status(), 201);
    }
    store.left.store(2, Ordering::SeqCst);
    let event = json!({"type": "invoice.paid", "payload": {"invoiceId": "in_1"}});
    let plain = app
        .http
        .post(format!("{}/v1/events", app.base))
        .json(&event)
        .send()
        .await
        .expect("publish");
    assert_eq!(
        plain.status(),
        202,
        "published again: the same event, found as ours"
    );
    let keyed = app
        .http
        .post(format!("{}/v1/events", app.base))
        .header("idempotency-key", "event-1")
        .json(&event)
        .send()
        .await
        .expect("publish");
    assert_eq!(keyed.status(), 202, "published again: the key names our event");
    assert_eq!(store.left.load(Ordering::SeqCst), 0, "both answers were lost");
    let accepted: Vec<String> = vec![
        body(plain).await["eventId"].as_str().expect("id").to_owned(),
        body(keyed).await["eventId"].as_str().expect("id").to_owned(),
    ];
    let listed = body(app.get("/v1/events").await).await;
    let mut stored: Vec<String> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["eventId"].as_str().expect("id").to_owned())
        .collect();
    stored.sort();
    let mut expected = accepted.clone();
    expected.sort();
    assert_eq!(stored, expected, "exactly one event per 202");
    let due = inner
        .due_jobs(app.later(std::time::Duration::from_secs(1)), 100)
        .await
        .expect("due");
    assert_eq!(due.len(), 4, "two deliveries per event, none twice: {due:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_create_whose_answer_was_lost_is_accepted_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = store_sqlite::SqliteStore::open(
        &dir.path().join("lost.db"),
        Default::default(),
        crate::helpers::sealer(),
    )
    .expect("open sqlite");
    let inner: Arc<dyn Store> = Arc::new(sqlite);
    let store = Arc::new(LosesCreateAnswers {
        inner: Arc::clone(&inner),
        left: AtomicU32::new(0),
    });
    let app = spawn_app_with_store(Arc::clone(&store) as Arc<dyn Store>).await;
    store.left.store(2, Ordering::SeqCst);

    let plain = app.post_job(&["gas"]).await;
    assert_eq!(
        plain.status(),
        202,
        "the re-issued create conflicts on our own id"
    );
    let keyed = post_with_key(&app, "order-3").await;
    assert_eq!(
        keyed.status(),
        202,
        "the re-issued create finds the key naming our job"
    );

    let page = inner
        .list_jobs(
            &TenantId::new("default"),
            &ListQuery {
                status: None,
                after: None,
                limit: store::MAX_PAGE,
            },
        )
        .await
        .expect("list");
    let mut stored: Vec<String> = page.jobs.iter().map(|job| job.id().to_string()).collect();
    let mut accepted = vec![
        body(plain).await["jobId"].as_str().expect("id").to_owned(),
        body(keyed).await["jobId"].as_str().expect("id").to_owned(),
    ];
    stored.sort();
    accepted.sort();
    assert_eq!(store.left.load(Ordering::SeqCst), 0, "both answers were lost");
    assert_eq!(stored, accepted, "exactly one job per 202");
}

#[async_trait]
impl store::SourceStore for LosesCreateAnswers {
    async fn create_source(&self, source: &domain::Source) -> Result<(), StoreError> {
        self.inner.create_source(source).await
    }

    async fn get_source(&self, id: domain::SourceId) -> Result<Option<(domain::Source, u64)>, StoreError> {
        self.inner.get_source(id).await
    }

    async fn update_source(&self, source: &domain::Source, expected: u64) -> Result<bool, StoreError> {
        self.inner.update_source(source, expected).await
    }

    async fn delete_source(&self, tenant: &TenantId, id: domain::SourceId) -> Result<bool, StoreError> {
        self.inner.delete_source(tenant, id).await
    }

    async fn list_sources(
        &self,
        tenant: &TenantId,
        after: Option<domain::SourceId>,
        limit: usize,
    ) -> Result<store::SourcePage, StoreError> {
        self.inner.list_sources(tenant, after, limit).await
    }

    async fn record_source_request(&self, request: &domain::SourceRequest) -> Result<(), StoreError> {
        self.inner.record_source_request(request).await
    }

    async fn source_requests(
        &self,
        tenant: &TenantId,
        source: domain::SourceId,
        limit: usize,
    ) -> Result<Vec<domain::SourceRequest>, StoreError> {
        self.inner.source_requests(tenant, source, limit).await
    }
}
