//! A store that hands every call to the store underneath and times the
//! ones a processor makes: when the first claim was made (the start of a
//! drain as the fan-out scenario times it, first claim to last delivery
//! received), and how long each kind of call took, summed, so a drain's
//! time can be split between the store and the rest (HTTP, processing).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::{
    Endpoint, EndpointId, Event, EventId, EventType, EventTypeDef, Job, JobId, KeyHash, TenantId,
    TenantSecrets, Timestamp,
};
use store::{
    ApiKeyRecord, Claim, DueJob, EndpointPage, EndpointQuery, EventPage, EventQuery, EventStore, Fenced,
    IdempotencyRecord, IdempotentCreate, JobPage, JobStore, KeyStore, Lease, ListQuery, Published, Redrive,
    Store, StoreError,
};

#[derive(Debug)]
pub struct Timed {
    inner: Arc<dyn Store>,
    first_claim: OnceLock<Instant>,
    /// Per operation: calls, and their time summed.
    spent: Mutex<BTreeMap<&'static str, (u64, Duration)>>,
}

impl Timed {
    pub fn over(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            first_claim: OnceLock::new(),
            spent: Mutex::default(),
        }
    }

    /// Per operation the processor called: calls, and their time summed.
    pub fn spent(&self) -> BTreeMap<&'static str, (u64, Duration)> {
        self.spent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn time<T>(&self, operation: &'static str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = call.await;
        let took = started.elapsed();
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        let entry = spent.entry(operation).or_default();
        entry.0 += 1;
        entry.1 += took;
        result
    }

    /// When the first claim was asked for, if one was.
    pub fn first_claim(&self) -> Option<Instant> {
        self.first_claim.get().copied()
    }
}

#[async_trait]
impl JobStore for Timed {
    async fn create_job(&self, job: &Job) -> Result<(), StoreError> {
        self.inner.create_job(job).await
    }

    async fn create_job_idempotent(
        &self,
        job: &Job,
        key: &IdempotencyRecord,
        now: Timestamp,
    ) -> Result<IdempotentCreate, StoreError> {
        self.inner.create_job_idempotent(job, key, now).await
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
        self.time("due_jobs", self.inner.due_jobs(now, limit)).await
    }

    async fn due_jobs_from(
        &self,
        now: Timestamp,
        limit: usize,
        start: u64,
        pass_over: &store::PassOver,
    ) -> Result<Vec<DueJob>, StoreError> {
        self.time(
            "due_jobs_from",
            self.inner.due_jobs_from(now, limit, start, pass_over),
        )
        .await
    }

    async fn claim(
        &self,
        tenant: &TenantId,
        id: JobId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Claim, StoreError> {
        self.first_claim.get_or_init(Instant::now);
        self.time("claim", self.inner.claim(tenant, id, lease, now)).await
    }

    async fn save(&self, job: &Job, lease: &Lease, now: Timestamp) -> Result<Fenced, StoreError> {
        self.time("save", self.inner.save(job, lease, now)).await
    }

    async fn release(&self, tenant: &TenantId, id: JobId, lease: &Lease) -> Result<Fenced, StoreError> {
        self.time("release", self.inner.release(tenant, id, lease)).await
    }

    async fn extend_lease(
        &self,
        tenant: &TenantId,
        id: JobId,
        lease: &Lease,
        until: Timestamp,
    ) -> Result<Fenced, StoreError> {
        self.time("extend_lease", self.inner.extend_lease(tenant, id, lease, until))
            .await
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.time("purge_expired", self.inner.purge_expired(now)).await
    }

    fn max_job_bytes(&self) -> usize {
        self.inner.max_job_bytes()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[async_trait]
impl KeyStore for Timed {
    async fn signing_secrets(&self, tenant: &TenantId) -> Result<Option<(TenantSecrets, u64)>, StoreError> {
        self.time("signing_secrets", self.inner.signing_secrets(tenant))
            .await
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

#[async_trait]
impl EventStore for Timed {
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
        self.time("get_endpoint", self.inner.get_endpoint(tenant, id))
            .await
    }

    async fn update_endpoint(&self, endpoint: &Endpoint, expected: u64) -> Result<bool, StoreError> {
        self.time("update_endpoint", self.inner.update_endpoint(endpoint, expected))
            .await
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
        self.inner.publish(event, key, now).await
    }

    async fn get_event(&self, tenant: &TenantId, id: EventId) -> Result<Option<Event>, StoreError> {
        self.time("get_event", self.inner.get_event(tenant, id)).await
    }

    async fn settle_event_provider(
        &self,
        tenant: &TenantId,
        id: EventId,
        provider: &str,
        settled: &domain::SettledResult,
    ) -> Result<Option<domain::SettledResult>, StoreError> {
        self.time(
            "settle_event_provider",
            self.inner.settle_event_provider(tenant, id, provider, settled),
        )
        .await
    }

    async fn list_events(&self, tenant: &TenantId, query: &EventQuery) -> Result<EventPage, StoreError> {
        self.inner.list_events(tenant, query).await
    }
}

#[async_trait]
impl store::SourceStore for Timed {
    async fn create_source(&self, source: &domain::Source) -> Result<(), StoreError> {
        self.inner.create_source(source).await
    }

    async fn get_source(&self, id: domain::SourceId) -> Result<Option<(domain::Source, u64)>, StoreError> {
        self.time("get_source", self.inner.get_source(id)).await
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
        self.time("record_source_request", self.inner.record_source_request(request))
            .await
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
