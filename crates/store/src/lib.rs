//! The `JobStore` trait: everything the intake and the processor need from
//! storage, with the outcomes callers branch on (a lost claim, a fenced write)
//! as values rather than errors.
//!
//! Backends live in their own crates and all pass [`conformance`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use async_trait::async_trait;
use domain::{
    Endpoint, EndpointId, Event, EventId, EventType, EventTypeDef, Job, JobId, JobStatus, KeyHash, Owner,
    SettledResult, SigningSecret, Source, SourceId, SourceRequest, TenantId, TenantSecrets, Timestamp,
};

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod sealing;

/// A processor's hold on one job. Every write after a claim is fenced on
/// `id`, so a processor whose lease expired and was taken over cannot
/// overwrite the new owner's work.
#[derive(Clone, PartialEq, Eq)]
pub struct Lease {
    /// Unique per claim, even when the same processor claims the job again.
    pub id: String,
    /// Which processor holds it, for operators reading the store.
    pub owner: String,
    /// When it runs out, unless lengthened first ([`JobStore::extend_lease`]).
    pub until: Timestamp,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("owner", &self.owner)
            .field("until", &self.until)
            .finish_non_exhaustive()
    }
}

/// A job that is due now and not held by a live lease: a candidate to claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueJob {
    pub id: JobId,
    /// Whose job it is: a store may key jobs by tenant, and claims name it.
    pub tenant: TenantId,
    pub due_at: Timestamp,
}

/// The outcome of a claim attempt.
#[derive(Debug)]
pub enum Claim {
    /// The job is ours until the lease runs out. `took_over_from` names the
    /// processor whose lease on the job had expired (it died or stalled
    /// mid-job), if there was one.
    Won {
        job: Box<Job>,
        took_over_from: Option<String>,
    },
    /// Another processor holds it, or it is no longer due.
    Lost,
}

/// The outcome of a write fenced on a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Fenced {
    Written,
    /// The lease was taken over; nothing was changed.
    LeaseLost,
}

/// Due jobs a poll reads past ([`JobStore::due_jobs_from`]): those of
/// tenants, and of receivers within a tenant ([`domain::ReceiverTag`],
/// carried by the job id), that a processor has no slot for now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassOver {
    tenants: BTreeSet<TenantId>,
    receivers: BTreeMap<TenantId, BTreeSet<domain::ReceiverTag>>,
}

impl PassOver {
    /// Passes over every job of `tenant`.
    pub fn tenant(&mut self, tenant: TenantId) {
        self.receivers.remove(&tenant);
        self.tenants.insert(tenant);
    }

    /// Passes over `tenant`'s jobs to `receiver`.
    pub fn receiver(&mut self, tenant: TenantId, receiver: domain::ReceiverTag) {
        if !self.tenants.contains(&tenant) {
            self.receivers.entry(tenant).or_default().insert(receiver);
        }
    }

    pub fn tenants(&self) -> &BTreeSet<TenantId> {
        &self.tenants
    }

    /// The receivers passed over, each with its tenant (whose other jobs
    /// are not).
    pub fn receivers(&self) -> impl Iterator<Item = (&TenantId, domain::ReceiverTag)> {
        self.receivers
            .iter()
            .flat_map(|(tenant, tags)| tags.iter().map(move |tag| (tenant, *tag)))
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty() && self.receivers.is_empty()
    }

    /// Whether a poll reads past `due`.
    pub fn passes(&self, due: &DueJob) -> bool {
        self.tenants.contains(&due.tenant)
            || self
                .receivers
                .get(&due.tenant)
                .is_some_and(|tags| tags.contains(&due.id.receiver()))
    }
}

impl FromIterator<TenantId> for PassOver {
    /// Passes over every job of these tenants.
    fn from_iter<I: IntoIterator<Item = TenantId>>(tenants: I) -> Self {
        let mut pass_over = Self::default();
        for tenant in tenants {
            pass_over.tenant(tenant);
        }
        pass_over
    }
}

/// How far a poll that passes over some tenants or receivers reads
/// ([`JobStore::due_jobs_from`]): at most this many times its `limit` of
/// due entries per partition. A tenant whose jobs sit behind more of the
/// passed-over tenants' than that is reached once their backlog shrinks
/// (or, on a store with several partitions, from another start).
pub const PASS_OVER_READS: usize = 4;

/// Most jobs one listing page returns.
pub const MAX_PAGE: usize = 100;

/// One page of a tenant's jobs, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only jobs in this status; `None` for all.
    pub status: Option<JobStatus>,
    /// Continue after this job (the previous page's `next`).
    pub after: Option<JobId>,
    /// At most this many jobs, 1..=[`MAX_PAGE`] (larger values are clamped).
    pub limit: usize,
}

impl ListQuery {
    /// `limit` within 1..=[`MAX_PAGE`].
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Where the next page starts, when there may be one.
    pub next: Option<JobId>,
}

/// An `Idempotency-Key` to record with a new job: a later request with the
/// same key (per tenant) within the window gets this job back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// SHA-256 (hex) of the key as the client sent it.
    pub key_hash: String,
    /// SHA-256 (hex) of the request, to tell a retry from a different
    /// request reusing the key.
    pub fingerprint: String,
    /// When the key may be used for a new job again.
    pub expires_at: Timestamp,
}

/// What an idempotent create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotentCreate {
    /// The job and its key were written together.
    Created,
    /// The key was used within its window; nothing was written.
    Replay { job_id: JobId, same_request: bool },
}

/// The outcome of a redrive request.
#[derive(Debug)]
pub enum Redrive {
    /// The job is due again for a fresh round of callback attempts.
    Requeued(Box<Job>),
    /// Only a failed job can be redriven; this one is in another state.
    NotFailed(JobStatus),
    /// No such job for this tenant.
    NotFound,
}

/// A store call that did not give its answer. Errors are split by what the
/// caller can know of a write, as Materialize's persist splits them
/// (determinate and indeterminate): [`StoreError::Indeterminate`] alone says
/// "it may have been written"; every other kind says "nothing was written".
/// A conditional write that the store's client retried and that found its
/// own effect already there (our job id, our lease id, our fenced state)
/// succeeded: the backends answer it as such, never as a conflict.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Determinate: the store could not be reached or refused the request
    /// for now (throttling, a connection refused, a missing table, a write
    /// queue that is gone). Nothing was written; retrying later is safe.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Indeterminate: a write whose answer was lost (a timeout or a dropped
    /// connection after the request may have been sent, a server error, a
    /// commit that failed at I/O). It may have taken effect, and may still.
    /// Every write in this trait is idempotent for its caller once its own
    /// effect is recognised, so the caller resolves it (re-issues the same
    /// write, or reads back) or reports the outcome as unknown, never as a
    /// failure. Reads never return it.
    #[error("store outcome unknown: {0}")]
    Indeterminate(String),
    /// A job with this id already exists.
    #[error("job already exists")]
    Conflict,
    /// The job's state does not fit in one store item.
    #[error("job too large for the store: {0}")]
    TooLarge(String),
    /// The store holds something this version cannot read.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the call is known to have written nothing: every kind but
    /// [`StoreError::Indeterminate`].
    pub fn is_determinate(&self) -> bool {
        !matches!(self, Self::Indeterminate(_))
    }
}

#[async_trait]
pub trait JobStore: Send + Sync + fmt::Debug {
    /// Writes a new job, its provider records and its place in the due set in
    /// one atomic write: afterwards the job exists whole or not at all.
    /// [`StoreError::Conflict`] if a job with its id exists, unless this
    /// call's own earlier attempt wrote it (then `Ok`). After an
    /// [`StoreError::Indeterminate`] the caller may call again with the same
    /// job: since job ids are the caller's own, `Ok` or `Conflict` then both
    /// mean the job is there.
    async fn create_job(&self, job: &Job) -> Result<(), StoreError>;

    /// Like [`JobStore::create_job`], recording `key` for the job's tenant in
    /// the same atomic write, unless the key was used (and has not expired)
    /// at `now`: then nothing is written and the earlier job is named. Of
    /// concurrent requests with one key, exactly one creates a job. Called
    /// again after an [`StoreError::Indeterminate`], a `Replay` naming this
    /// job's id means the first call created it.
    async fn create_job_idempotent(
        &self,
        job: &Job,
        key: &IdempotencyRecord,
        now: Timestamp,
    ) -> Result<IdempotentCreate, StoreError>;

    /// The job, if it exists and belongs to `tenant`.
    async fn get_job(&self, tenant: &TenantId, id: JobId) -> Result<Option<Job>, StoreError>;

    /// A page of the tenant's jobs, newest first, optionally of one status.
    /// Reads an index of the tenant's jobs, never the whole store. A page
    /// may hold fewer than `limit` jobs and still name a `next` (a store
    /// that filters an index by status bounds what one page reads); the
    /// listing ends when `next` is `None`.
    async fn list_jobs(&self, tenant: &TenantId, query: &ListQuery) -> Result<JobPage, StoreError>;

    /// Puts a `failed` job back in the due set for a fresh round of callback
    /// attempts ([`Job::redrive`]), with one write conditioned on the job
    /// still being failed: of two concurrent redrives, one wins. A write
    /// retried by the store's client that finds the job as this redrive
    /// left it answers `Requeued`.
    async fn redrive(&self, tenant: &TenantId, id: JobId, now: Timestamp) -> Result<Redrive, StoreError>;

    /// Up to `limit` jobs due at `now` and not under a live lease, oldest due
    /// first. Reads only the due set: its cost does not grow with the number
    /// of finished jobs.
    async fn due_jobs(&self, now: Timestamp, limit: usize) -> Result<Vec<DueJob>, StoreError>;

    /// Due work for one of several processors polling the same store, in
    /// the order to claim it. A store that splits its due set into
    /// partitions returns up to `limit` due jobs of one partition, oldest
    /// first: the first, in ring order from partition `start` (modulo their
    /// number), that has any; so processors that start at different places
    /// hold batches that do not overlap, instead of racing for the same
    /// oldest jobs. Empty only when nothing is due. A store with one due
    /// partition (this default) returns `due_jobs`, its order turned to
    /// begin at `start` (modulo their number): processors claiming the same
    /// batch start at different places in it.
    ///
    /// Jobs of the tenants and receivers in `pass_over` (a processor has no
    /// slot for them now) are neither returned nor counted: the poll reads
    /// on past them, to other jobs behind a busy one's backlog, but at most
    /// [`PASS_OVER_READS`] times `limit` due entries per partition, so its
    /// cost stays bounded (and still independent of finished jobs). With
    /// `pass_over` empty it reads as before.
    async fn due_jobs_from(
        &self,
        now: Timestamp,
        limit: usize,
        start: u64,
        pass_over: &PassOver,
    ) -> Result<Vec<DueJob>, StoreError> {
        let mut due = if pass_over.is_empty() {
            self.due_jobs(now, limit).await?
        } else {
            let mut due = self.due_jobs(now, limit.saturating_mul(PASS_OVER_READS)).await?;
            due.retain(|d| !pass_over.passes(d));
            due.truncate(limit);
            due
        };
        if let Some(len) = u64::try_from(due.len()).ok().filter(|len| *len > 0) {
            due.rotate_left(usize::try_from(start % len).unwrap_or(0));
        }
        Ok(due)
    }

    /// Takes a lease on a due job (`tenant`'s job `id`, as [`DueJob`] names
    /// it) with one conditional write. A retried write that finds `lease`
    /// on the job won it.
    async fn claim(
        &self,
        tenant: &TenantId,
        id: JobId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Claim, StoreError>;

    /// Writes the job's new state and gives up the lease, fenced on it. A job
    /// with a `due_at` stays in the due set; a terminal job leaves it and is
    /// kept for the store's retention period. A retried write that finds
    /// the job exactly as `job` (and the lease gone) was written.
    async fn save(&self, job: &Job, lease: &Lease, now: Timestamp) -> Result<Fenced, StoreError>;

    /// Lengthens a lease we hold to `until` (`tenant`'s job `id`, fenced
    /// on `lease.id`) with one conditional write, changing nothing else:
    /// the job stays out of the due set, and other claims lose, until then.
    /// For a delivery that outlasts the lease it was claimed with.
    /// `LeaseLost` if another lease, or none, is on the job (it was taken
    /// over, saved, released, or does not exist); a lease that ran out but
    /// that nobody replaced is still ours and is lengthened (nobody acted
    /// on it). Never shortens: a stored expiry later than `until` is kept
    /// (and answers `Written`). A retried write that finds `lease` on the
    /// job with an expiry of at least `until` was written, so the call can
    /// be re-issued after an [`StoreError::Indeterminate`]. Whether the
    /// lease ran out does not matter here, only whether it was replaced,
    /// so there is no `now`.
    async fn extend_lease(
        &self,
        tenant: &TenantId,
        id: JobId,
        lease: &Lease,
        until: Timestamp,
    ) -> Result<Fenced, StoreError>;

    /// Gives up a lease without changing the job, so it is due again at once.
    /// A retried write that finds no lease on the job was written.
    async fn release(&self, tenant: &TenantId, id: JobId, lease: &Lease) -> Result<Fenced, StoreError>;

    /// Deletes finished jobs whose retention ran out by `now`, events
    /// past theirs ([`event_expires_at`]) and source requests past theirs
    /// ([`SourceStore::record_source_request`]); returns how many. A store whose database expires items itself (DynamoDB's TTL)
    /// has nothing to do here.
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// The largest serialized job, in bytes, that one item can hold.
    fn max_job_bytes(&self) -> usize;

    /// Whether the store answers; for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The redrive protocol every backend shares: read the job, apply
/// [`Job::redrive`], and write it back only if the stored record is still
/// exactly what was read (`read` returns a token for that, such as the
/// stored text; `write` returns whether its condition held). A redrive that
/// loses a race to another writer reads again, so it answers with the job's
/// newest state.
pub async fn redrive_by_compare_and_set<T, Read, ReadFut, Write, WriteFut>(
    now: Timestamp,
    read: Read,
    write: Write,
) -> Result<Redrive, StoreError>
where
    Read: Fn() -> ReadFut,
    ReadFut: Future<Output = Result<Option<(Job, T)>, StoreError>>,
    Write: Fn(Job, T) -> WriteFut,
    WriteFut: Future<Output = Result<bool, StoreError>>,
{
    const TRIES: usize = 5;
    for _ in 0..TRIES {
        let Some((mut job, token)) = read().await? else {
            return Ok(Redrive::NotFound);
        };
        if !job.redrive(now) {
            return Ok(Redrive::NotFailed(job.status()));
        }
        if write(job.clone(), token).await? {
            return Ok(Redrive::Requeued(Box::new(job)));
        }
    }
    Err(StoreError::Unavailable(format!(
        "the job changed {TRIES} times while being redriven; try again"
    )))
}

/// An API key as stored: its hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub hash: KeyHash,
    pub tenant: TenantId,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

impl ApiKeyRecord {
    /// The key's public name (a prefix of its hash).
    pub fn key_id(&self) -> String {
        self.hash.key_id()
    }

    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// Tenants' credentials, kept next to the jobs (same table, same file):
/// API keys (hashes only) and callback signing secrets.
#[async_trait]
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// The tenant's signing secrets and their version, if it has any.
    async fn signing_secrets(&self, tenant: &TenantId) -> Result<Option<(TenantSecrets, u64)>, StoreError>;

    /// Writes the tenant's secrets if the stored version is still
    /// `expected` (`None`: only if it has none yet); returns whether it did.
    /// The written version is `expected + 1` (or 1).
    async fn put_signing_secrets(
        &self,
        tenant: &TenantId,
        secrets: &TenantSecrets,
        expected: Option<u64>,
    ) -> Result<bool, StoreError>;

    /// Stores a new key; [`StoreError::Conflict`] if its hash is taken.
    async fn create_api_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError>;

    /// The key with this hash, revoked or not: one keyed read.
    async fn find_api_key(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Every key, or one tenant's, oldest first. For operators: keys are few.
    async fn list_api_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Revokes the key whose [`ApiKeyRecord::key_id`] is `key_id` and returns
    /// it; `None` if there is no such key. Revoking again keeps the first
    /// revocation time.
    async fn revoke_api_key(&self, key_id: &str, now: Timestamp) -> Result<Option<ApiKeyRecord>, StoreError>;
}

/// Everything a backend provides: jobs, tenants' keys, endpoints and
/// events.
pub trait Store: JobStore + KeyStore + EventStore + SourceStore {}

impl<T: JobStore + KeyStore + EventStore + SourceStore> Store for T {}

/// Whether `key_id` looks like one ([`KeyHash::key_id`]): 12 lowercase hex
/// digits. Backends refuse anything else before asking the database.
pub fn is_key_id(key_id: &str) -> bool {
    key_id.len() == 12
        && key_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The tenant's signing secrets, creating them with `fresh` if it has none
/// yet; returns them and whether they were created.
pub async fn ensure_signing_secrets(
    store: &dyn KeyStore,
    tenant: &TenantId,
    fresh: SigningSecret,
) -> Result<(TenantSecrets, bool), StoreError> {
    if let Some((secrets, _)) = store.signing_secrets(tenant).await? {
        return Ok((secrets, false));
    }
    let secrets = TenantSecrets::new(fresh);
    if store.put_signing_secrets(tenant, &secrets, None).await? {
        return Ok((secrets, true));
    }
    // Created at the same moment by someone else: theirs stands.
    let (secrets, _) = store
        .signing_secrets(tenant)
        .await?
        .ok_or_else(|| StoreError::Unavailable("signing secrets vanished while being created".to_owned()))?;
    Ok((secrets, false))
}

/// Makes `next` the tenant's current secret, keeping the old one signing
/// for `overlap` after `now` (or starting with `next` if it had none).
/// Retries a write that raced another rotation.
pub async fn rotate_signing_secret(
    store: &dyn KeyStore,
    tenant: &TenantId,
    next: SigningSecret,
    now: Timestamp,
    overlap: std::time::Duration,
) -> Result<TenantSecrets, StoreError> {
    for _ in 0..5 {
        let (secrets, expected) = match store.signing_secrets(tenant).await? {
            Some((current, version)) => (current.rotated(next.clone(), now, overlap), Some(version)),
            None => (TenantSecrets::new(next.clone()), None),
        };
        if store.put_signing_secrets(tenant, &secrets, expected).await? {
            return Ok(secrets);
        }
    }
    Err(StoreError::Unavailable(
        "the signing secrets kept changing during the rotation; try again".to_owned(),
    ))
}

/// One page of a tenant's endpoints, oldest first (as registered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointQuery {
    /// Only this owner's endpoints; `None` for all.
    pub owner: Option<Owner>,
    /// Continue after this endpoint (the previous page's `next`).
    pub after: Option<EndpointId>,
    /// At most this many, 1..=[`MAX_PAGE`] (larger values are clamped).
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPage {
    pub endpoints: Vec<Endpoint>,
    /// Where the next page starts, when there may be one.
    pub next: Option<EndpointId>,
}

/// One page of a tenant's events, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    pub event_type: Option<EventType>,
    pub owner: Option<Owner>,
    /// Continue after this event (the previous page's `next`).
    pub after: Option<EventId>,
    /// At most this many, 1..=[`MAX_PAGE`] (larger values are clamped).
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Where the next page starts, when there may be one. As for jobs, a
    /// filtered page may hold fewer than `limit` and still name a `next`.
    pub next: Option<EventId>,
}

/// What [`EventStore::publish`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    /// The event and every one of its deliveries exist (this call wrote
    /// what was missing).
    Accepted,
    /// The `Idempotency-Key` was used within its window for `event_id`;
    /// nothing was written. With `same_request`, the caller completes
    /// that event's fan-out ([`EventStore::publish`] again with the stored
    /// event, no key) and answers with it.
    Replay { event_id: EventId, same_request: bool },
}

/// Endpoints, event types and events (SPEC section 9), beside the jobs
/// (same table, same file). An event's deliveries are jobs
/// ([`domain::Event::delivery_jobs`]): [`JobStore`] claims and saves them.
#[async_trait]
pub trait EventStore: Send + Sync + fmt::Debug {
    /// Creates or replaces the type; returns whether it was created.
    /// Replacing keeps `created_at` as stored.
    async fn put_event_type(&self, event_type: &EventTypeDef) -> Result<bool, StoreError>;

    async fn get_event_type(
        &self,
        tenant: &TenantId,
        name: &EventType,
    ) -> Result<Option<EventTypeDef>, StoreError>;

    /// Every type of the tenant, by name (a tenant has tens, not millions:
    /// at most [`MAX_EVENT_TYPES`] are returned).
    async fn list_event_types(&self, tenant: &TenantId) -> Result<Vec<EventTypeDef>, StoreError>;

    /// Returns whether it existed.
    async fn delete_event_type(&self, tenant: &TenantId, name: &EventType) -> Result<bool, StoreError>;

    /// Writes a new endpoint. [`StoreError::Conflict`] if one with its id
    /// exists, unless this call's own earlier attempt wrote it (then `Ok`).
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError>;

    /// The endpoint and its version (for [`EventStore::update_endpoint`]).
    /// Strongly consistent: a processor reads it before every delivery, so
    /// a disabled endpoint gets nothing more.
    async fn get_endpoint(
        &self,
        tenant: &TenantId,
        id: EndpointId,
    ) -> Result<Option<(Endpoint, u64)>, StoreError>;

    /// Replaces the endpoint if its stored version is still `expected`;
    /// returns whether it did (`false` also when it no longer exists). A
    /// retried write that finds the endpoint exactly as `endpoint` (at
    /// `expected + 1`) wrote it.
    async fn update_endpoint(&self, endpoint: &Endpoint, expected: u64) -> Result<bool, StoreError>;

    /// Returns whether it existed.
    async fn delete_endpoint(&self, tenant: &TenantId, id: EndpointId) -> Result<bool, StoreError>;

    /// A page of the tenant's endpoints, oldest first, optionally one
    /// owner's. Reads the tenant's endpoints only, never the whole store.
    async fn list_endpoints(
        &self,
        tenant: &TenantId,
        query: &EndpointQuery,
    ) -> Result<EndpointPage, StoreError>;

    /// Every endpoint of the tenant, for fan-out: a Query of the tenant's
    /// endpoints (all pages), never a Scan.
    async fn tenant_endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError>;

    /// Makes `event` and its deliveries durable: the event (with the set of
    /// endpoints it goes to) first, then each delivery created only if
    /// absent, so a call repeated after a crash or an
    /// [`StoreError::Indeterminate`] completes the same fan-out and
    /// duplicates nothing. `Ok(Accepted)` only once all of it exists. An
    /// event already stored with the same id and content is this event
    /// (`Conflict` when the content differs). With `key`, as
    /// [`JobStore::create_job_idempotent`]: a key used within its window
    /// writes nothing and names the earlier event.
    async fn publish(
        &self,
        event: &Event,
        key: Option<&IdempotencyRecord>,
        now: Timestamp,
    ) -> Result<Published, StoreError>;

    /// The event, with the results its providers settled so far
    /// ([`Event::settled`]). Strongly consistent: a processor reads it
    /// before fetching a thin event's provider, to use a result another
    /// delivery of the event settled.
    async fn get_event(&self, tenant: &TenantId, id: EventId) -> Result<Option<Event>, StoreError>;

    /// Keeps `settled` as `provider`'s result for thin event `id`, unless
    /// the event holds one for that provider already: the first writer
    /// wins, and every caller is answered the result stored (its own, or
    /// the first writer's), so each of the event's deliveries carries the
    /// same data. `Ok(None)`: the tenant has no such event (purged, or
    /// never published); nothing is written. A call repeated after
    /// [`StoreError::Indeterminate`] finds its own result or the first
    /// writer's, as any call does. The result counts toward the event's
    /// stored size: callers bound it first ([`Event::settled_result_limit`]).
    async fn settle_event_provider(
        &self,
        tenant: &TenantId,
        id: EventId,
        provider: &str,
        settled: &SettledResult,
    ) -> Result<Option<SettledResult>, StoreError>;

    /// A page of the tenant's events, newest first, optionally of one type
    /// or owner. Reads an index of the tenant's events, never the whole
    /// store.
    async fn list_events(&self, tenant: &TenantId, query: &EventQuery) -> Result<EventPage, StoreError>;
}

/// How much longer than the store's retention of finished jobs an event is
/// kept (from its creation): its deliveries finish within the callback
/// schedule (days at most), and each is kept for the retention after it
/// finishes, so every delivery still finds its event. A delivery redriven
/// after its event is gone fails with `eventMissing`.
pub const EVENT_RETENTION_GRACE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// When an event created at `created_at` expires, for a store that keeps
/// finished jobs for `retention`.
pub fn event_expires_at(created_at: Timestamp, retention: std::time::Duration) -> Timestamp {
    let kept = retention.saturating_add(EVENT_RETENTION_GRACE);
    created_at
        .checked_add_signed(chrono::Duration::from_std(kept).unwrap_or(chrono::Duration::MAX))
        .unwrap_or(created_at)
}

/// Most event types one tenant may register.
pub const MAX_EVENT_TYPES: usize = 1000;

/// One page of a tenant's sources, oldest first (as created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePage {
    pub sources: Vec<Source>,
    /// Where the next page starts, when there may be one.
    pub next: Option<SourceId>,
}

/// Most requests [`SourceStore::source_requests`] returns at once.
pub const MAX_SOURCE_REQUESTS: usize = 100;

/// Inbound sources (SPEC section 11) and the requests they received. A
/// source is found by its id alone (`POST /in/{id}` carries no tenant);
/// every tenant-scoped caller checks [`Source::tenant`]. The events a
/// source makes are published through [`EventStore::publish`].
#[async_trait]
pub trait SourceStore: Send + Sync + fmt::Debug {
    /// Writes a new source. [`StoreError::Conflict`] if one with its id
    /// exists, unless this call's own earlier attempt wrote it (then `Ok`).
    async fn create_source(&self, source: &Source) -> Result<(), StoreError>;

    /// The source and its version (for [`SourceStore::update_source`]),
    /// whatever its tenant. Strongly consistent: a deleted source or a
    /// changed secret takes effect for the next request.
    async fn get_source(&self, id: SourceId) -> Result<Option<(Source, u64)>, StoreError>;

    /// Replaces the source if its stored version is still `expected`;
    /// returns whether it did (`false` also when it no longer exists). A
    /// retried write that finds the source exactly as `source` (at
    /// `expected + 1`) wrote it.
    async fn update_source(&self, source: &Source, expected: u64) -> Result<bool, StoreError>;

    /// Removes the source of `tenant` (and the requests it received);
    /// returns whether it existed.
    async fn delete_source(&self, tenant: &TenantId, id: SourceId) -> Result<bool, StoreError>;

    /// A page of the tenant's sources, oldest first. Reads the tenant's
    /// sources only, never the whole store.
    async fn list_sources(
        &self,
        tenant: &TenantId,
        after: Option<SourceId>,
        limit: usize,
    ) -> Result<SourcePage, StoreError>;

    /// Keeps `request` until its `received_at` plus the store's retention.
    /// Writing it again (a retry after an unknown outcome) changes nothing.
    async fn record_source_request(&self, request: &SourceRequest) -> Result<(), StoreError>;

    /// The latest requests `source` of `tenant` received, newest first, at
    /// most `limit` (clamped to 1..=[`MAX_SOURCE_REQUESTS`]).
    async fn source_requests(
        &self,
        tenant: &TenantId,
        source: SourceId,
        limit: usize,
    ) -> Result<Vec<SourceRequest>, StoreError>;
}
