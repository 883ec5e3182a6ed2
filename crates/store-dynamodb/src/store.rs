//! `DynamoStore`: the `JobStore` operations as single-item DynamoDB calls.
//!
//! Write costs on the happy path of a small job, measured (see the cost test
//! and [`CapacityMeter`]): intake put (1 + 1 due index), claim update (1 + 1
//! due index, the projected lease), final put (1 + 1 due index removal): six
//! write units. Jobs are keyed by tenant and shard, so the table itself is the
//! listing and no index entry is written for it. A dead-lettered job adds one
//! for its `dead` index entry, a redrive one to remove it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnConsumedCapacity, ReturnValue,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use domain::{Job, JobId, JobStatus, KeyHash, TenantId, TenantSecrets, Timestamp};
use store::{
    ApiKeyRecord, Claim, DueJob, Fenced, IdempotencyRecord, IdempotentCreate, JobPage, JobStore, KeyStore,
    Lease, ListQuery, PASS_OVER_READS, Redrive, StoreError,
};

use crate::attempts::{WriteAttempts, write_failed};
use crate::schema::*;
use crate::{CapacityMeter, DynamoConfig};
use telemetry::Access;

type Item = HashMap<String, AttributeValue>;

/// Pages of the due index read per shard and poll, at most: bounds a poll's
/// cost when many due items sit behind live leases.
const MAX_PAGES_PER_SHARD: usize = 4;

/// Listing entries one page request reads at most when it filters by
/// status: past this it returns what it found and a cursor.
const MAX_EXAMINED_PER_PAGE: usize = 1_000;

/// Listing queries read about `page / shards` jobs per partition and
/// query again only the partitions that hold the page back; this many more
/// per query keep that to one round for an unfiltered page.
const LISTING_SLACK: usize = 2;

/// The most one listing query reads from a partition.
const MAX_LISTING_QUERY: usize = 256;

/// One shard partition of a tenant's jobs, as a listing reads through it.
struct Partition {
    pk: String,
    /// Where the next query starts (DynamoDB's `LastEvaluatedKey`).
    start: Option<Item>,
    /// The oldest job read so far; `None` before the first query.
    frontier: Option<JobId>,
    done: bool,
    /// Jobs the next query reads: doubles each time the partition holds the
    /// page back (a status filter dropping most of what it reads), so a
    /// deep page takes a few queries, not hundreds.
    limit: usize,
}

/// How far every partition has been read: a job at or above it is in its
/// place in the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadDownTo {
    /// Some partition has not been read at all.
    Nothing,
    /// Every partition still holding jobs has been read down to this one.
    Job(JobId),
    /// Every partition has been read to its end.
    Everything,
}

fn read_down_to(parts: &[Partition]) -> ReadDownTo {
    // The highest frontier: a job at or above it is above every one.
    let mut bound = ReadDownTo::Everything;
    for part in parts.iter().filter(|p| !p.done) {
        match part.frontier {
            None => return ReadDownTo::Nothing,
            Some(id) => {
                bound = match bound {
                    ReadDownTo::Job(other) if other >= id => ReadDownTo::Job(other),
                    _ => ReadDownTo::Job(id),
                }
            }
        }
    }
    bound
}

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    config: DynamoConfig,
    capacity: Arc<CapacityMeter>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.config.table)
            .field("endpoint", &self.config.endpoint)
            .field("shards", &self.config.shards)
            .finish_non_exhaustive()
    }
}

impl DynamoStore {
    pub fn new(client: Client, config: DynamoConfig) -> Self {
        Self {
            client,
            config,
            capacity: Arc::default(),
        }
    }

    /// The capacity units this store's calls have consumed so far.
    pub fn capacity(&self) -> &CapacityMeter {
        &self.capacity
    }

    /// The same meter, to hand to [`telemetry::Metrics::watch_capacity`].
    pub fn capacity_meter(&self) -> Arc<CapacityMeter> {
        Arc::clone(&self.capacity)
    }

    pub async fn connect(config: DynamoConfig) -> Self {
        let client = config.client().await;
        Self::new(client, config)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn config(&self) -> &DynamoConfig {
        &self.config
    }

    /// The partition of `tenant`'s jobs that job `id` lives in.
    fn job_partition(&self, tenant: &TenantId, id: JobId) -> String {
        self.partition(tenant, id.shard(self.config.shards))
    }

    fn partition(&self, tenant: &TenantId, shard: u16) -> String {
        format!("job#{tenant}#{shard:03}")
    }

    fn job_key(&self, tenant: &TenantId, id: JobId) -> Item {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(self.job_partition(tenant, id))),
            (SK.to_owned(), AttributeValue::S(format!("{JOB_SK_PREFIX}{id}"))),
        ])
    }

    fn shard_key(&self, shard: u16) -> String {
        format!("due#{shard:03}")
    }

    /// Writes an item that must not exist yet: [`StoreError::Conflict`] if
    /// it does, unless an earlier attempt of this call may have written it
    /// and the item there is `ours`: then that attempt did.
    async fn put_new(
        &self,
        item: Item,
        operation: &'static str,
        ours: impl Fn(&Item) -> bool,
    ) -> Result<(), StoreError> {
        let attempts = WriteAttempts::default();
        match self
            .client
            .put_item()
            .table_name(&self.config.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await
        {
            Ok(output) => {
                self.capacity
                    .record(operation, Access::Write, output.consumed_capacity());
                Ok(())
            }
            Err(err) if condition_failed(&err) => {
                if attempts.maybe_applied() && put_refused_item(&err).is_some_and(ours) {
                    tracing::debug!("{operation}: a retried write found its own item");
                    Ok(())
                } else {
                    Err(StoreError::Conflict)
                }
            }
            Err(err) => Err(write_error(operation, &err, &attempts)),
        }
    }

    /// A tenant's partition `shard` of the dead-letter index.
    fn dead_key(&self, tenant: &TenantId, shard: u16) -> String {
        format!("{tenant}#{shard:03}")
    }

    /// The whole item for a job's current state, without a lease.
    fn job_item(&self, job: &Job, now: Timestamp) -> Result<Item, StoreError> {
        let body = domain::record::encode(job);
        let mut item = self.job_key(&job.tenant(), job.id());
        item.insert(TENANT.to_owned(), AttributeValue::S(job.tenant().to_string()));
        item.insert(
            STATUS.to_owned(),
            AttributeValue::S(job.status().as_str().to_owned()),
        );
        item.insert(
            CREATED_AT.to_owned(),
            AttributeValue::S(job.created_at().to_rfc3339()),
        );
        item.insert(JOB.to_owned(), AttributeValue::S(body));
        if job.status() == JobStatus::Failed {
            item.insert(
                DEAD_KEY.to_owned(),
                AttributeValue::S(self.dead_key(&job.tenant(), job.id().shard(self.config.shards))),
            );
        }
        match job.due_at() {
            Some(due_at) => {
                item.insert(
                    DUE_SHARD.to_owned(),
                    AttributeValue::S(self.shard_key(job.id().shard(self.config.shards))),
                );
                item.insert(DUE_AT.to_owned(), number(due_at.timestamp_millis()));
            }
            None => {
                let retention =
                    chrono::Duration::from_std(self.config.retention).unwrap_or(chrono::Duration::MAX);
                let expires = now.checked_add_signed(retention).unwrap_or(now);
                item.insert(EXPIRES_AT.to_owned(), number(expires.timestamp()));
            }
        }
        Ok(item)
    }

    /// Up to `limit` due, unleased jobs of one shard, oldest first, none of
    /// a tenant in `pass_over`. Reads at most [`MAX_PAGES_PER_SHARD`] pages
    /// of `limit` index entries (passing over tenants, one page of
    /// [`PASS_OVER_READS`] times `limit`): the filter (live leases,
    /// passed-over tenants' partition keys) drops entries after they are read.
    async fn query_shard(
        &self,
        shard: u16,
        now: Timestamp,
        limit: usize,
        pass_over: &BTreeSet<TenantId>,
    ) -> Result<Vec<DueJob>, StoreError> {
        let mut filter = "(attribute_not_exists(#until) OR #until < :now)".to_owned();
        for n in 0..pass_over.len() {
            filter.push_str(&format!(" AND NOT begins_with(#pk, :pass{n})"));
        }
        // Passing over tenants, one page as long as the pages otherwise read
        // at most: one query per shard, however long their backlog.
        let (page_size, pages) = if pass_over.is_empty() {
            (limit, MAX_PAGES_PER_SHARD)
        } else {
            (limit.saturating_mul(PASS_OVER_READS), 1)
        };
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        for _ in 0..pages {
            let mut query = self
                .client
                .query()
                .table_name(&self.config.table)
                .index_name(DUE_INDEX)
                .key_condition_expression("#shard = :shard AND #due <= :now")
                .filter_expression(filter.as_str())
                .expression_attribute_names("#shard", DUE_SHARD)
                .expression_attribute_names("#due", DUE_AT)
                .expression_attribute_names("#until", LEASE_UNTIL)
                .expression_attribute_values(":shard", AttributeValue::S(self.shard_key(shard)))
                .expression_attribute_values(":now", number(now.timestamp_millis()));
            if !pass_over.is_empty() {
                query = query.expression_attribute_names("#pk", PK);
            }
            for (n, tenant) in pass_over.iter().enumerate() {
                // Every partition key of the tenant's jobs: `job#{tenant}#NNN`.
                query = query.expression_attribute_values(
                    format!(":pass{n}"),
                    AttributeValue::S(format!("job#{}#", tenant.as_str())),
                );
            }
            let page = query
                .limit(i32::try_from(page_size).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                .send()
                .await
                .map_err(|e| unavailable("query due index", e))?;
            self.capacity
                .record("query due index", Access::Read, page.consumed_capacity());
            for item in page.items() {
                found.push(due_job(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if found.len() < limit => start = Some(key),
                _ => break,
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    /// The job and its stored text, if it exists and belongs to `tenant`.
    async fn get_stored(&self, tenant: &TenantId, id: JobId) -> Result<Option<(Job, String)>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.config.table)
            .set_key(Some(self.job_key(tenant, id)))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(|e| unavailable("get job", e))?;
        self.capacity
            .record("get job", Access::Read, output.consumed_capacity());
        let Some(item) = output.item else { return Ok(None) };
        let body = job_body(&item)?;
        let job: Job = parse_body(body)?;
        Ok((job.tenant() == tenant).then(|| (job, body.to_owned())))
    }

    /// Up to `limit` job ids from one partition of the dead-letter index,
    /// newest first, strictly older than `after`. Returns them and whether
    /// the partition holds more.
    async fn query_dead(
        &self,
        tenant: &TenantId,
        shard: u16,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<(Vec<JobId>, bool), StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.config.table)
            .index_name(DEAD_INDEX)
            .expression_attribute_names("#dead", DEAD_KEY)
            .expression_attribute_values(":dead", AttributeValue::S(self.dead_key(tenant, shard)))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        query = match after {
            Some(after) => query
                .key_condition_expression("#dead = :dead AND #sk < :after")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":after", AttributeValue::S(format!("{JOB_SK_PREFIX}{after}"))),
            None => query.key_condition_expression("#dead = :dead"),
        };
        let page = query
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(|e| unavailable("query dead-letter index", e))?;
        self.capacity
            .record("query dead-letter index", Access::Read, page.consumed_capacity());
        let ids = page.items().iter().map(job_id).collect::<Result<Vec<_>, _>>()?;
        Ok((ids, page.last_evaluated_key.is_some()))
    }

    /// The tenant's newest `want` failed job ids strictly older than
    /// `after`, across the dead-letter index's shard partitions, and whether
    /// it holds older ones.
    async fn newest_dead_ids(
        &self,
        tenant: &TenantId,
        after: Option<JobId>,
        want: usize,
    ) -> Result<(Vec<JobId>, bool), StoreError> {
        // Each partition's newest `want` below the cursor hold the overall
        // newest `want`: merge them and cut.
        let partitions = (0..self.config.shards).map(|shard| self.query_dead(tenant, shard, after, want));
        let mut ids = Vec::new();
        let mut partition_has_more = false;
        for result in futures::future::join_all(partitions).await {
            let (found, more) = result?;
            ids.extend(found);
            partition_has_more |= more;
        }
        // Newest first; an index caught mid-update may list a job twice.
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.dedup();
        let more = ids.len() > want || partition_has_more;
        ids.truncate(want);
        Ok((ids, more))
    }

    /// The dead letter: a page of the tenant's failed jobs from the sparse
    /// `dead` index, read back consistently (a job redriven since the index
    /// was read is left out).
    async fn list_dead(&self, tenant: &TenantId, query: &ListQuery) -> Result<JobPage, StoreError> {
        let page = query.page_size();
        let mut jobs = Vec::with_capacity(page + 1);
        let mut after = query.after;
        let mut examined = 0;
        loop {
            // One more than the page tells whether there is a next one.
            let (ids, more) = self.newest_dead_ids(tenant, after, page + 1 - jobs.len()).await?;
            examined += ids.len();
            jobs.extend(
                self.get_many(tenant, &ids)
                    .await?
                    .into_iter()
                    .filter(|job| job.status() == JobStatus::Failed),
            );
            if jobs.len() > page {
                jobs.truncate(page);
                let next = jobs.last().map(|job| job.id());
                return Ok(JobPage { jobs, next });
            }
            if !more || ids.is_empty() {
                return Ok(JobPage { jobs, next: None });
            }
            after = ids.last().copied().or(after);
            if examined >= MAX_EXAMINED_PER_PAGE {
                return Ok(JobPage { jobs, next: after });
            }
        }
    }

    /// A page of the tenant's jobs (of one status, or all) straight from the
    /// table: each shard partition is read newest first, strongly
    /// consistent, and a job is placed only once every partition has been
    /// read down to it.
    async fn list_table(&self, tenant: &TenantId, query: &ListQuery) -> Result<JobPage, StoreError> {
        let page = query.page_size();
        let want = page + 1;
        let per_query = want.div_ceil(usize::from(self.config.shards)) + LISTING_SLACK;
        let mut parts: Vec<Partition> = (0..self.config.shards)
            .map(|shard| Partition {
                pk: self.partition(tenant, shard),
                start: None,
                frontier: None,
                done: false,
                limit: per_query,
            })
            .collect();
        let mut found: Vec<Job> = Vec::new();
        let mut examined = 0;
        loop {
            // Read on where the page is held back: partitions not read yet,
            // and those read least far down.
            let bound = read_down_to(&parts);
            let reads = parts.iter_mut().filter(|p| {
                !p.done
                    && match bound {
                        ReadDownTo::Nothing => p.frontier.is_none(),
                        ReadDownTo::Job(id) => p.frontier == Some(id),
                        ReadDownTo::Everything => false,
                    }
            });
            let reads = reads.map(|part| self.read_partition(part, query));
            for result in futures::future::join_all(reads).await {
                let (jobs, evaluated) = result?;
                examined += evaluated;
                found.extend(jobs.into_iter().filter(|job| job.tenant() == tenant));
            }
            let bound = read_down_to(&parts);
            let placed = |job: &Job| match bound {
                ReadDownTo::Nothing => false,
                ReadDownTo::Job(id) => job.id() >= id,
                ReadDownTo::Everything => true,
            };
            found.sort_unstable_by_key(|job| std::cmp::Reverse(job.id()));
            let ready = found.iter().take_while(|job| placed(job)).count();
            if ready > page {
                found.truncate(page);
                let next = found.last().map(|job| job.id());
                return Ok(JobPage { jobs: found, next });
            }
            match bound {
                ReadDownTo::Everything => {
                    return Ok(JobPage {
                        jobs: found,
                        next: None,
                    });
                }
                ReadDownTo::Job(id) if examined >= MAX_EXAMINED_PER_PAGE => {
                    // A rare status deep in a long history: a short page,
                    // and the cursor to read on from where this one stopped.
                    found.truncate(ready);
                    return Ok(JobPage {
                        jobs: found,
                        next: Some(id),
                    });
                }
                _ => {}
            }
        }
    }

    /// The partition's next jobs below its frontier, those of the wanted
    /// status, and how many were read.
    async fn read_partition(
        &self,
        part: &mut Partition,
        query: &ListQuery,
    ) -> Result<(Vec<Job>, usize), StoreError> {
        let limit = part.limit;
        part.limit = (limit * 2).min(MAX_LISTING_QUERY);
        let mut request = self
            .client
            .query()
            .table_name(&self.config.table)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", AttributeValue::S(part.pk.clone()))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(part.start.take());
        request = match query.after {
            Some(after) => request
                .key_condition_expression("#pk = :pk AND #sk < :after")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":after", AttributeValue::S(format!("{JOB_SK_PREFIX}{after}"))),
            None => request.key_condition_expression("#pk = :pk"),
        };
        if let Some(status) = query.status {
            request = request
                .filter_expression("#status = :status")
                .expression_attribute_names("#status", STATUS)
                .expression_attribute_values(":status", AttributeValue::S(status.as_str().to_owned()));
        }
        let output = request
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(|e| unavailable("query jobs", e))?;
        self.capacity
            .record("query jobs", Access::Read, output.consumed_capacity());
        let jobs = output
            .items()
            .iter()
            .map(parse_job)
            .collect::<Result<Vec<_>, _>>()?;
        let evaluated = usize::try_from(output.scanned_count()).unwrap_or(0);
        match output.last_evaluated_key {
            Some(key) => {
                part.frontier = Some(job_id(&key)?);
                part.start = Some(key);
            }
            None => part.done = true,
        }
        Ok((jobs, evaluated))
    }

    /// The jobs for `ids`, in that order, read consistently; ids whose item
    /// is gone (expired since the index was read) are skipped.
    async fn get_many(&self, tenant: &TenantId, ids: &[JobId]) -> Result<Vec<Job>, StoreError> {
        let mut found: HashMap<JobId, Job> = HashMap::with_capacity(ids.len());
        // BatchGetItem takes at most 100 keys.
        for chunk in ids.chunks(100) {
            self.get_batch(tenant, chunk, &mut found).await?;
        }
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    async fn get_batch(
        &self,
        tenant: &TenantId,
        ids: &[JobId],
        found: &mut HashMap<JobId, Job>,
    ) -> Result<(), StoreError> {
        let mut wanted = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(ids.iter().map(|id| self.job_key(tenant, *id)).collect()))
                .consistent_read(true)
                .projection_expression("#job")
                .expression_attribute_names("#job", JOB)
                .build()
                .map_err(|e| StoreError::Unavailable(format!("build batch get: {e}")))?,
        );
        // Throttled reads come back as unprocessed keys: ask again, briefly
        // backing off, a bounded number of times.
        for attempt in 0..5u32 {
            let Some(keys) = wanted.take() else { break };
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            }
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.config.table, keys)
                .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                .send()
                .await
                .map_err(|e| unavailable("batch get jobs", e))?;
            self.capacity
                .record("batch get jobs", Access::Read, output.consumed_capacity());
            for item in output
                .responses
                .unwrap_or_default()
                .remove(&self.config.table)
                .unwrap_or_default()
            {
                let job = parse_body(job_body(&item)?)?;
                found.insert(job.id(), job);
            }
            wanted = output
                .unprocessed_keys
                .and_then(|mut left| left.remove(&self.config.table))
                .filter(|left| !left.keys().is_empty());
        }
        if wanted.is_some() {
            return Err(StoreError::Unavailable(
                "batch get jobs: reads still throttled after 5 attempts".to_owned(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl JobStore for DynamoStore {
    async fn create_job(&self, job: &Job) -> Result<(), StoreError> {
        self.put_new(self.job_item(job, job.created_at())?, "put job", |found| {
            is_our_new_job(found, job)
        })
        .await
    }

    async fn create_job_idempotent(
        &self,
        job: &Job,
        key: &IdempotencyRecord,
        now: Timestamp,
    ) -> Result<IdempotentCreate, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| {
            StoreError::Unavailable(format!("build transaction: {e}"))
        };
        let put_job = Put::builder()
            .table_name(&self.config.table)
            .set_item(Some(self.job_item(job, job.created_at())?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build)?;
        let mut idem = HashMap::from([
            (
                PK.to_owned(),
                AttributeValue::S(format!("idem#{}#{}", job.tenant(), key.key_hash)),
            ),
            (SK.to_owned(), AttributeValue::S(IDEM_SK.to_owned())),
        ]);
        idem.insert(IDEM_JOB_ID.to_owned(), AttributeValue::S(job.id().to_string()));
        idem.insert(
            IDEM_FINGERPRINT.to_owned(),
            AttributeValue::S(key.fingerprint.clone()),
        );
        idem.insert(EXPIRES_AT.to_owned(), number(key.expires_at.timestamp()));
        let put_key = Put::builder()
            .table_name(&self.config.table)
            .set_item(Some(idem))
            // A key past its window (TTL deletes it, eventually) is free.
            .condition_expression("attribute_not_exists(#pk) OR #expires <= :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":now", number(now.timestamp()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build)?;
        // One record for every send below: a transaction retried after a
        // lost answer may find the job and key it wrote itself.
        let attempts = WriteAttempts::default();
        for attempt in 0..5u32 {
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put_job.clone()).build())
                .transact_items(TransactWriteItem::builder().put(put_key.clone()).build())
                .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                .customize()
                .interceptor(attempts.clone())
                .send()
                .await;
            let err = match result {
                Ok(output) => {
                    self.capacity.record(
                        "create job with idempotency key",
                        Access::Write,
                        output.consumed_capacity(),
                    );
                    return Ok(IdempotentCreate::Created);
                }
                Err(err) => err,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                err.as_service_error()
            else {
                return Err(write_error("create job with idempotency key", &err, &attempts));
            };
            let reasons = cancelled.cancellation_reasons();
            let code = |i: usize| reasons.get(i).and_then(|r| r.code());
            let earlier_key = reasons.get(1).and_then(|r| r.item()).and_then(idempotency_item);
            let earlier_job = reasons.first().and_then(|r| r.item());
            // Our own transaction, applied by an attempt of this call whose
            // answer was lost: the key names our job (whose id no one else
            // has), or the job there is ours. (Called again later, the same
            // create is a replay naming the job, as on every backend.)
            let key_names_ours = code(1) == Some("ConditionalCheckFailed")
                && earlier_key.as_ref().is_some_and(|(id, _)| *id == job.id());
            let job_is_ours = code(0) == Some("ConditionalCheckFailed")
                && earlier_job.is_some_and(|found| is_our_new_job(found, job));
            let ours = attempts.maybe_applied() && (key_names_ours || job_is_ours);
            if ours {
                tracing::debug!("create job with idempotency key: a retried write found its own job");
                return Ok(IdempotentCreate::Created);
            }
            // The key first: it names the job (ours too, when this create
            // is issued again after it landed).
            if code(1) == Some("ConditionalCheckFailed") {
                let (job_id, fingerprint) = earlier_key.ok_or_else(|| {
                    StoreError::Corrupt("idempotency key item without a job id or fingerprint".to_owned())
                })?;
                return Ok(IdempotentCreate::Replay {
                    job_id,
                    same_request: fingerprint == key.fingerprint,
                });
            }
            if code(0) == Some("ConditionalCheckFailed") {
                return Err(StoreError::Conflict);
            }
            // Another request with the same key is being written right now
            // (TransactionConflict): once it lands, the retry sees its key.
            tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
        }
        let message = "create job with idempotency key: the key stayed contended".to_owned();
        Err(if attempts.maybe_applied() {
            StoreError::Indeterminate(message)
        } else {
            StoreError::Unavailable(message)
        })
    }

    async fn get_job(&self, tenant: &TenantId, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.get_stored(tenant, id).await?.map(|(job, _)| job))
    }

    async fn list_jobs(&self, tenant: &TenantId, query: &ListQuery) -> Result<JobPage, StoreError> {
        match query.status {
            // The dead letter has its own sparse index: a Query however
            // long the history.
            Some(JobStatus::Failed) => self.list_dead(tenant, query).await,
            _ => self.list_table(tenant, query).await,
        }
    }

    async fn redrive(&self, tenant: &TenantId, id: JobId, now: Timestamp) -> Result<Redrive, StoreError> {
        store::redrive_by_compare_and_set(
            now,
            || self.get_stored(tenant, id),
            |job, expected| async move {
                let item = self.job_item(&job, now)?;
                let written = item.get(JOB).cloned();
                let attempts = WriteAttempts::default();
                match self
                    .client
                    .put_item()
                    .table_name(&self.config.table)
                    .set_item(Some(item))
                    .condition_expression("#job = :expected AND attribute_not_exists(#lease)")
                    .expression_attribute_names("#job", JOB)
                    .expression_attribute_names("#lease", LEASE_ID)
                    .expression_attribute_values(":expected", AttributeValue::S(expected))
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                    .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                    .customize()
                    .interceptor(attempts.clone())
                    .send()
                    .await
                {
                    Ok(output) => {
                        self.capacity
                            .record("redrive job", Access::Write, output.consumed_capacity());
                        Ok(true)
                    }
                    // The job as this redrive left it: an attempt whose
                    // answer was lost wrote it.
                    Err(err) if condition_failed(&err) => Ok(attempts.maybe_applied()
                        && put_refused_item(&err).is_some_and(|found| found.get(JOB) == written.as_ref())),
                    Err(err) => Err(write_error("redrive job", &err, &attempts)),
                }
            },
        )
        .await
    }

    async fn due_jobs(&self, now: Timestamp, limit: usize) -> Result<Vec<DueJob>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let none = BTreeSet::new();
        let shards = (0..self.config.shards).map(|shard| self.query_shard(shard, now, limit, &none));
        let mut due = Vec::new();
        for shard in futures::future::join_all(shards).await {
            due.extend(shard?);
        }
        due.sort_by_key(|d| (d.due_at, d.id));
        due.truncate(limit);
        Ok(due)
    }

    async fn due_jobs_from(
        &self,
        now: Timestamp,
        limit: usize,
        start: u64,
        pass_over: &BTreeSet<TenantId>,
    ) -> Result<Vec<DueJob>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let shards = self.config.shards;
        let first = u16::try_from(start % u64::from(shards)).unwrap_or(0);
        // One shard's jobs only: processors starting at different shards
        // then never hold batches that overlap. Usually the start shard has
        // work: one query.
        let due = self.query_shard(first, now, limit, pass_over).await?;
        if !due.is_empty() {
            return Ok(due);
        }
        // Nothing there: the rest of the ring at once, and the first shard
        // in ring order that has work.
        let rest = (1..shards).map(|i| self.query_shard((first + i) % shards, now, limit, pass_over));
        for shard in futures::future::join_all(rest).await {
            let due = shard?;
            if !due.is_empty() {
                return Ok(due);
            }
        }
        Ok(Vec::new())
    }

    async fn claim(
        &self,
        tenant: &TenantId,
        id: JobId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Claim, StoreError> {
        let attempts = WriteAttempts::default();
        let result = self
            .client
            .update_item()
            .table_name(&self.config.table)
            .set_key(Some(self.job_key(tenant, id)))
            .update_expression("SET #lease = :lease, #owner = :owner, #until = :until")
            .condition_expression("#due <= :now AND (attribute_not_exists(#until) OR #until < :now)")
            .expression_attribute_names("#lease", LEASE_ID)
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_names("#due", DUE_AT)
            .expression_attribute_values(":lease", AttributeValue::S(lease.id.clone()))
            .expression_attribute_values(":owner", AttributeValue::S(lease.owner.clone()))
            .expression_attribute_values(":until", number(lease.until.timestamp_millis()))
            .expression_attribute_values(":now", number(now.timestamp_millis()))
            // The item as it was: the claim leaves `job` as it is, and an
            // old lease still on it is one that expired (saves and releases
            // remove theirs).
            .return_values(ReturnValue::AllOld)
            // On a failed condition too: a lease that is ours is a claim
            // whose answer was lost.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await;
        match result {
            Ok(output) => {
                self.capacity
                    .record("claim job", Access::Write, output.consumed_capacity());
                let item = output
                    .attributes
                    .ok_or_else(|| StoreError::Corrupt(format!("claim on {id} returned no item")))?;
                let took_over_from = item.contains_key(LEASE_ID).then(|| {
                    item.get(LEASE_OWNER)
                        .and_then(|owner| owner.as_s().ok())
                        .cloned()
                        .unwrap_or_default()
                });
                Ok(Claim::Won {
                    job: Box::new(parse_job(&item)?),
                    took_over_from,
                })
            }
            Err(err) if condition_failed(&err) => match update_refused_item(&err) {
                // Lease ids are unique per claim: an attempt whose answer
                // was lost won it. Whose expired lease it replaced is no
                // longer on the item.
                Some(item) if attribute_s(item, LEASE_ID) == Some(lease.id.as_str()) => {
                    tracing::debug!(job_id = %id, "claim: a retried write found its own lease");
                    Ok(Claim::Won {
                        job: Box::new(parse_job(item)?),
                        took_over_from: None,
                    })
                }
                _ => Ok(Claim::Lost),
            },
            Err(err) => Err(write_error("claim job", &err, &attempts)),
        }
    }

    async fn save(&self, job: &Job, lease: &Lease, now: Timestamp) -> Result<Fenced, StoreError> {
        let item = self.job_item(job, now)?;
        let written = item.get(JOB).cloned();
        let attempts = WriteAttempts::default();
        match self
            .client
            .put_item()
            .table_name(&self.config.table)
            .set_item(Some(item))
            .condition_expression("#lease = :lease")
            .expression_attribute_names("#lease", LEASE_ID)
            .expression_attribute_values(":lease", AttributeValue::S(lease.id.clone()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await
        {
            Ok(output) => {
                self.capacity
                    .record("save job", Access::Write, output.consumed_capacity());
                Ok(Fenced::Written)
            }
            // Our lease is gone and the job is exactly what we wrote: an
            // attempt whose answer was lost wrote it.
            Err(err) if condition_failed(&err) => {
                let ours = attempts.maybe_applied()
                    && put_refused_item(&err).is_some_and(|found| found.get(JOB) == written.as_ref());
                Ok(if ours { Fenced::Written } else { Fenced::LeaseLost })
            }
            Err(err) => Err(write_error("save job", &err, &attempts)),
        }
    }

    async fn release(&self, tenant: &TenantId, id: JobId, lease: &Lease) -> Result<Fenced, StoreError> {
        let attempts = WriteAttempts::default();
        match self
            .client
            .update_item()
            .table_name(&self.config.table)
            .set_key(Some(self.job_key(tenant, id)))
            .update_expression("REMOVE #lease, #owner, #until")
            .condition_expression("#lease = :lease")
            .expression_attribute_names("#lease", LEASE_ID)
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_values(":lease", AttributeValue::S(lease.id.clone()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await
        {
            Ok(output) => {
                self.capacity
                    .record("release job", Access::Write, output.consumed_capacity());
                Ok(Fenced::Written)
            }
            // No lease left after an attempt that may have removed ours:
            // that attempt did.
            Err(err) if condition_failed(&err) => {
                let ours = attempts.maybe_applied()
                    && update_refused_item(&err).is_some_and(|found| !found.contains_key(LEASE_ID));
                Ok(if ours { Fenced::Written } else { Fenced::LeaseLost })
            }
            Err(err) => Err(write_error("release job", &err, &attempts)),
        }
    }

    async fn purge_expired(&self, _now: Timestamp) -> Result<u64, StoreError> {
        // The table's TTL on `expiresAt` deletes finished jobs, at no write cost.
        Ok(0)
    }

    fn max_job_bytes(&self) -> usize {
        // DynamoDB's item limit is 400 KB including attribute names and the
        // other attributes; keep a margin for them.
        390_000
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.config.table)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| unavailable("describe table", e))
    }
}

impl DynamoStore {
    fn secrets_key(tenant: &TenantId) -> Item {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(format!("tenant#{tenant}"))),
            (SK.to_owned(), AttributeValue::S(SECRETS_SK.to_owned())),
        ])
    }

    fn key_item_key(hash: &KeyHash) -> Item {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(KEYS_PK.to_owned())),
            (SK.to_owned(), AttributeValue::S(format!("key#{}", hash.to_hex()))),
        ])
    }

    /// Every key item whose sort key starts with `prefix`, all pages.
    async fn query_keys(&self, prefix: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut records = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.config.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", AttributeValue::S(KEYS_PK.to_owned()))
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("query API keys", e))?;
            for item in page.items() {
                records.push(key_record(item)?);
            }
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(records),
            }
        }
    }
}

#[async_trait]
impl KeyStore for DynamoStore {
    async fn signing_secrets(&self, tenant: &TenantId) -> Result<Option<(TenantSecrets, u64)>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.config.table)
            .set_key(Some(Self::secrets_key(tenant)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("get signing secrets", e))?;
        let Some(item) = output.item else { return Ok(None) };
        let corrupt = || StoreError::Corrupt("signing secrets item without secrets or version".to_owned());
        let body = item
            .get(SECRETS)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(corrupt)?;
        let version: u64 = item
            .get(VERSION)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(corrupt)?;
        let secrets =
            serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("signing secrets: {e}")))?;
        Ok(Some((secrets, version)))
    }

    async fn put_signing_secrets(
        &self,
        tenant: &TenantId,
        secrets: &TenantSecrets,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        let body = serde_json::to_string(secrets)
            .map_err(|e| StoreError::Corrupt(format!("serialize signing secrets: {e}")))?;
        let mut item = Self::secrets_key(tenant);
        item.insert(SECRETS.to_owned(), AttributeValue::S(body));
        let put = self.client.put_item().table_name(&self.config.table);
        let put = match expected {
            None => put
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK),
            Some(version) => put
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":expected", AttributeValue::N(version.to_string())),
        };
        let next = expected.map_or(1, |v| v.saturating_add(1));
        item.insert(VERSION.to_owned(), AttributeValue::N(next.to_string()));
        let attempts = WriteAttempts::default();
        let written = item.get(SECRETS).cloned();
        let result = put
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            // Our version with our secrets: an attempt whose answer was lost.
            Err(err) if condition_failed(&err) => Ok(attempts.maybe_applied()
                && put_refused_item(&err).is_some_and(|found| {
                    found.get(SECRETS) == written.as_ref()
                        && found.get(VERSION) == Some(&AttributeValue::N(next.to_string()))
                })),
            Err(err) => Err(write_error("put signing secrets", &err, &attempts)),
        }
    }

    async fn create_api_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut item = Self::key_item_key(&record.hash);
        item.insert(TENANT.to_owned(), AttributeValue::S(record.tenant.to_string()));
        item.insert(
            CREATED_AT.to_owned(),
            number(record.created_at.timestamp_millis()),
        );
        if let Some(revoked) = record.revoked_at {
            item.insert(REVOKED_AT.to_owned(), number(revoked.timestamp_millis()));
        }
        let hash = item.get(SK).cloned();
        self.put_new(item, "put API key", |found| found.get(SK) == hash.as_ref())
            .await
    }

    async fn find_api_key(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.config.table)
            .set_key(Some(Self::key_item_key(hash)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("get API key", e))?;
        output.item.as_ref().map(key_record).transpose()
    }

    async fn list_api_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut records = self.query_keys("key#").await?;
        records.retain(|r| tenant.is_none_or(|t| r.tenant == *t));
        records.sort_by_key(|r| (r.created_at, r.hash.to_hex()));
        Ok(records)
    }

    async fn revoke_api_key(&self, key_id: &str, now: Timestamp) -> Result<Option<ApiKeyRecord>, StoreError> {
        if !store::is_key_id(key_id) {
            return Ok(None);
        }
        let found = self.query_keys(&format!("key#{key_id}")).await?;
        let [record] = found.as_slice() else {
            // None, or an id two keys share (one in 2^48): revoke neither.
            return Ok(None);
        };
        let attempts = WriteAttempts::default();
        let output = self
            .client
            .update_item()
            .table_name(&self.config.table)
            .set_key(Some(Self::key_item_key(&record.hash)))
            .update_expression("SET #revoked = if_not_exists(#revoked, :now)")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#revoked", REVOKED_AT)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":now", number(now.timestamp_millis()))
            .return_values(ReturnValue::AllNew)
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await
            .map_err(|e| write_error("revoke API key", &e, &attempts))?;
        output.attributes.as_ref().map(key_record).transpose()
    }
}

fn idempotency_item(item: &Item) -> Option<(JobId, String)> {
    let job_id = item.get(IDEM_JOB_ID)?.as_s().ok()?.parse().ok()?;
    let fingerprint = item.get(IDEM_FINGERPRINT)?.as_s().ok()?.clone();
    Some((job_id, fingerprint))
}

fn key_record(item: &Item) -> Result<ApiKeyRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("API key item without {what}"));
    let hash = item
        .get(SK)
        .and_then(|v| v.as_s().ok())
        .and_then(|sk| sk.strip_prefix("key#"))
        .and_then(KeyHash::from_hex)
        .ok_or_else(|| corrupt("a key hash"))?;
    let tenant = item
        .get(TENANT)
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| corrupt("a tenant"))?;
    let millis = |name: &str| -> Result<Option<Timestamp>, StoreError> {
        item.get(name)
            .map(|v| {
                v.as_n()
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .ok_or_else(|| corrupt(name))
            })
            .transpose()
    };
    Ok(ApiKeyRecord {
        hash,
        tenant: TenantId::new(tenant.as_str()),
        created_at: millis(CREATED_AT)?.ok_or_else(|| corrupt(CREATED_AT))?,
        revoked_at: millis(REVOKED_AT)?,
    })
}

fn number(n: i64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn job_body(item: &Item) -> Result<&str, StoreError> {
    item.get(JOB)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| StoreError::Corrupt("job item without a job attribute".to_owned()))
}

fn parse_body(body: &str) -> Result<Job, StoreError> {
    domain::record::decode(body).map_err(|e| StoreError::Corrupt(format!("job attribute: {e}")))
}

fn parse_job(item: &Item) -> Result<Job, StoreError> {
    parse_body(job_body(item)?)
}

/// The job id of a job item or an index item, from the table's sort key
/// (`job#{id}`), which every index carries.
fn job_id(item: &Item) -> Result<JobId, StoreError> {
    item.get(SK)
        .and_then(|v| v.as_s().ok())
        .and_then(|sk| sk.strip_prefix(JOB_SK_PREFIX))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| StoreError::Corrupt("item without a job key".to_owned()))
}

/// The tenant of a job item or an index item, from the table's partition
/// key (`job#{tenant}#{shard}`).
fn job_tenant(item: &Item) -> Result<TenantId, StoreError> {
    item.get(PK)
        .and_then(|v| v.as_s().ok())
        .and_then(|pk| pk.strip_prefix("job#"))
        .and_then(|rest| rest.rsplit_once('#'))
        .map(|(tenant, _shard)| TenantId::new(tenant))
        .ok_or_else(|| StoreError::Corrupt("item without a job partition key".to_owned()))
}

fn due_job(item: &Item) -> Result<DueJob, StoreError> {
    let id = job_id(item)?;
    let tenant = job_tenant(item)?;
    let millis: i64 = item
        .get(DUE_AT)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("due index item {id} without dueAt")))?;
    let due_at = chrono::DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| StoreError::Corrupt(format!("due index item {id} has dueAt {millis}")))?;
    Ok(DueJob { id, tenant, due_at })
}

/// Whether a conditional write was refused because its condition failed.
fn condition_failed<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

fn unavailable<E, R>(operation: &str, err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(format!("{operation}: {}", DisplayErrorContext(&err)))
}

/// A failed write: too large, or determinate or not as [`write_failed`]
/// says from the error and the operation's attempts.
fn write_error<E>(operation: &str, err: &SdkError<E, HttpResponse>, attempts: &WriteAttempts) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    let too_large = err.code() == Some("ValidationException")
        && err.message().is_some_and(|m| m.contains("size has exceeded"));
    if too_large {
        StoreError::TooLarge(err.message().unwrap_or_default().to_owned())
    } else {
        write_failed(operation, err, attempts)
    }
}

/// The item a `PutItem` found when its condition failed (asked for with
/// `ReturnValuesOnConditionCheckFailure::AllOld`).
fn put_refused_item(err: &SdkError<PutItemError, HttpResponse>) -> Option<&Item> {
    match err.as_service_error()? {
        PutItemError::ConditionalCheckFailedException(failed) => failed.item(),
        _ => None,
    }
}

/// The item an `UpdateItem` found when its condition failed.
fn update_refused_item(err: &SdkError<UpdateItemError, HttpResponse>) -> Option<&Item> {
    match err.as_service_error()? {
        UpdateItemError::ConditionalCheckFailedException(failed) => failed.item(),
        _ => None,
    }
}

fn attribute_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

/// Whether the job item found where `job` was to be created is `job` as
/// its creator wrote it: the same id (a ULID the creator drew) and creation
/// time. Its state may have moved on since (a processor may have claimed or
/// saved it already).
fn is_our_new_job(found: &Item, job: &Job) -> bool {
    parse_job(found).is_ok_and(|found| {
        found.id() == job.id() && found.tenant() == job.tenant() && found.created_at() == job.created_at()
    })
}
