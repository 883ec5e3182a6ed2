//! The intake's ceiling: a store that accepts every new job without writing
//! it, and hands everything else (API keys above all) to a real store. The
//! intake in front of it is the real one, routes, auth, validation and all,
//! so the difference between the two is what storing a job costs.

use std::sync::Arc;

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
pub struct NoStore {
    inner: Arc<dyn Store>,
}

impl NoStore {
    pub fn over(inner: Arc<dyn Store>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl JobStore for NoStore {
    async fn create_job(&self, _job: &Job) -> Result<(), StoreError> {
        Ok(())
    }

    async fn create_job_idempotent(
        &self,
        _job: &Job,
        _key: &IdempotencyRecord,
        _now: Timestamp,
    ) -> Result<IdempotentCreate, StoreError> {
        Ok(IdempotentCreate::Created)
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
impl KeyStore for NoStore {
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

/// Events like jobs: writes are dropped (a publish is accepted at once),
/// reads go to the store underneath.
#[async_trait]
impl EventStore for NoStore {
    async fn put_event_type(&self, _event_type: &EventTypeDef) -> Result<bool, StoreError> {
        Ok(true)
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

    async fn delete_event_type(&self, _tenant: &TenantId, _name: &EventType) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn create_endpoint(&self, _endpoint: &Endpoint) -> Result<(), StoreError> {
        Ok(())
    }

    async fn get_endpoint(
        &self,
        tenant: &TenantId,
        id: EndpointId,
    ) -> Result<Option<(Endpoint, u64)>, StoreError> {
        self.inner.get_endpoint(tenant, id).await
    }

    async fn update_endpoint(&self, _endpoint: &Endpoint, _expected: u64) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn delete_endpoint(&self, _tenant: &TenantId, _id: EndpointId) -> Result<bool, StoreError> {
        Ok(true)
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
        _event: &Event,
        _key: Option<&IdempotencyRecord>,
        _now: Timestamp,
    ) -> Result<Published, StoreError> {
        Ok(Published::Accepted)
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

#[async_trait]
impl store::SourceStore for NoStore {
    async fn create_source(&self, _source: &domain::Source) -> Result<(), StoreError> {
        Ok(())
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

    async fn record_source_request(&self, _request: &domain::SourceRequest) -> Result<(), StoreError> {
        Ok(())
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
