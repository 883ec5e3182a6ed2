//! Listings: a page of a tenant's jobs or events, newest first. The whole
//! listing merges the tenant's shard partitions of the table
//! ([`DynamoStore::list_merged`], for any [`Listed`] item), placing an item
//! only once every partition has been read down to it; the jobs' dead
//! letter (`status=failed`) reads the sparse `dead` index and then the
//! jobs.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnConsumedCapacity};
use domain::{Job, JobId, JobStatus, TenantId};
use store::{JobPage, ListQuery, StoreError};
use telemetry::Access;

use crate::DynamoStore;
use crate::attempts::unavailable;
use crate::codec::{Item, job_id, parse_job};
use crate::schema::*;

/// Listing entries one page request reads at most when it filters by
/// status: past this it returns what it found and a cursor.
const MAX_EXAMINED_PER_PAGE: usize = 1_000;

/// Listing queries read about `page / shards` jobs per partition and
/// query again only the partitions that hold the page back; this many more
/// per query keep that to one round for an unfiltered page.
const LISTING_SLACK: usize = 2;

/// The most one listing query reads from a partition.
const MAX_LISTING_QUERY: usize = 256;

/// One shard partition of a tenant's items, as a listing reads through it.
struct Partition<K> {
    pk: String,
    /// Where the next query starts (DynamoDB's `LastEvaluatedKey`).
    start: Option<Item>,
    /// The oldest item read so far; `None` before the first query.
    frontier: Option<K>,
    done: bool,
    /// Items the next query reads: doubles each time the partition holds
    /// the page back (a filter dropping most of what it reads), so a deep
    /// page takes a few queries, not hundreds.
    limit: usize,
}

/// How far every partition has been read: an item at or above it is in its
/// place in the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadDownTo<K> {
    /// Some partition has not been read at all.
    Nothing,
    /// Every partition still holding items has been read down to this one.
    Item(K),
    /// Every partition has been read to its end.
    Everything,
}

fn read_down_to<K: Copy + Ord>(parts: &[Partition<K>]) -> ReadDownTo<K> {
    // The highest frontier: an item at or above it is above every one.
    let mut bound = ReadDownTo::Everything;
    for part in parts.iter().filter(|p| !p.done) {
        match part.frontier {
            None => return ReadDownTo::Nothing,
            Some(id) => {
                bound = match bound {
                    ReadDownTo::Item(other) if other >= id => ReadDownTo::Item(other),
                    _ => ReadDownTo::Item(id),
                }
            }
        }
    }
    bound
}

/// An item a merged listing holds: jobs and events are both kept in a
/// tenant's shard partitions, sorted by their ULID ids.
pub(crate) trait Listed: Sized + Send {
    type Id: Copy + Ord + Send + Sync;
    /// The meter's name for a listing query.
    const OPERATION: &'static str;
    fn listed_id(&self) -> Self::Id;
    fn listed_tenant(&self) -> &TenantId;
    fn from_item(item: &Item) -> Result<Self, StoreError>;
    /// The id an item's key names (a `LastEvaluatedKey`).
    fn id_of_key(key: &Item) -> Result<Self::Id, StoreError>;
}

impl Listed for Job {
    type Id = JobId;
    const OPERATION: &'static str = "query jobs";
    fn listed_id(&self) -> JobId {
        self.id()
    }
    fn listed_tenant(&self) -> &TenantId {
        self.tenant()
    }
    fn from_item(item: &Item) -> Result<Self, StoreError> {
        parse_job(item)
    }
    fn id_of_key(key: &Item) -> Result<JobId, StoreError> {
        job_id(key)
    }
}

/// A listing's `FilterExpression`: equalities, all of which must hold.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    terms: Vec<(String, AttributeValue)>,
}

impl Filter {
    pub(crate) fn equals(mut self, attribute: &str, value: AttributeValue) -> Self {
        self.terms.push((attribute.to_owned(), value));
        self
    }

    pub(crate) fn apply(&self, mut request: QueryFluentBuilder) -> QueryFluentBuilder {
        if self.terms.is_empty() {
            return request;
        }
        let mut expression = Vec::with_capacity(self.terms.len());
        for (n, (attribute, value)) in self.terms.iter().enumerate() {
            expression.push(format!("#f{n} = :f{n}"));
            request = request
                .expression_attribute_names(format!("#f{n}"), attribute)
                .expression_attribute_values(format!(":f{n}"), value.clone());
        }
        request.filter_expression(expression.join(" AND "))
    }
}

/// A page of a merged listing: the items and where the next page starts.
pub(crate) struct Merged<T: Listed> {
    pub(crate) items: Vec<T>,
    pub(crate) next: Option<T::Id>,
}

impl DynamoStore {
    /// A page of the tenant's jobs, of one status or all.
    pub(crate) async fn list(&self, tenant: &TenantId, query: &ListQuery) -> Result<JobPage, StoreError> {
        match query.status {
            // The dead letter has its own sparse index: a Query however
            // long the history.
            Some(JobStatus::Failed) => self.list_dead(tenant, query).await,
            _ => self.list_table(tenant, query).await,
        }
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
            .client()
            .query()
            .table_name(&self.config().table)
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
        self.capacity()
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
        let partitions = (0..self.config().shards).map(|shard| self.query_dead(tenant, shard, after, want));
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
    /// table, through [`DynamoStore::list_merged`].
    async fn list_table(&self, tenant: &TenantId, query: &ListQuery) -> Result<JobPage, StoreError> {
        let partitions = (0..self.config().shards)
            .map(|shard| self.partition(tenant, shard))
            .collect();
        let below = query.after.map(|after| format!("{JOB_SK_PREFIX}{after}"));
        let mut filter = Filter::default();
        if let Some(status) = query.status {
            filter = filter.equals(STATUS, AttributeValue::S(status.as_str().to_owned()));
        }
        let merged: Merged<Job> = self
            .list_merged(tenant, partitions, below, &filter, query.page_size())
            .await?;
        Ok(JobPage {
            jobs: merged.items,
            next: merged.next,
        })
    }

    /// A page of the tenant's items (of one kind, matching `filter`) from
    /// its shard `partitions`, newest first, strictly below the sort key
    /// `below`: each partition is read newest first, strongly consistent,
    /// and an item is placed only once every partition has been read down
    /// to it.
    pub(crate) async fn list_merged<T: Listed>(
        &self,
        tenant: &TenantId,
        partitions: Vec<String>,
        below: Option<String>,
        filter: &Filter,
        page: usize,
    ) -> Result<Merged<T>, StoreError> {
        let want = page + 1;
        let per_query = want.div_ceil(partitions.len().max(1)) + LISTING_SLACK;
        let mut parts: Vec<Partition<T::Id>> = partitions
            .into_iter()
            .map(|pk| Partition {
                pk,
                start: None,
                frontier: None,
                done: false,
                limit: per_query,
            })
            .collect();
        let mut found: Vec<T> = Vec::new();
        let mut examined = 0;
        loop {
            // Read on where the page is held back: partitions not read yet,
            // and those read least far down.
            let bound = read_down_to(&parts);
            let reads = parts.iter_mut().filter(|p| {
                !p.done
                    && match bound {
                        ReadDownTo::Nothing => p.frontier.is_none(),
                        ReadDownTo::Item(id) => p.frontier == Some(id),
                        ReadDownTo::Everything => false,
                    }
            });
            let reads = reads.map(|part| self.read_partition::<T>(part, below.as_deref(), filter));
            for result in futures::future::join_all(reads).await {
                let (items, evaluated) = result?;
                examined += evaluated;
                found.extend(items.into_iter().filter(|item| item.listed_tenant() == tenant));
            }
            let bound = read_down_to(&parts);
            let placed = |item: &T| match bound {
                ReadDownTo::Nothing => false,
                ReadDownTo::Item(id) => item.listed_id() >= id,
                ReadDownTo::Everything => true,
            };
            found.sort_unstable_by_key(|item| std::cmp::Reverse(item.listed_id()));
            let ready = found.iter().take_while(|item| placed(item)).count();
            if ready > page {
                found.truncate(page);
                let next = found.last().map(Listed::listed_id);
                return Ok(Merged { items: found, next });
            }
            match bound {
                ReadDownTo::Everything => {
                    return Ok(Merged {
                        items: found,
                        next: None,
                    });
                }
                ReadDownTo::Item(id) if examined >= MAX_EXAMINED_PER_PAGE => {
                    // A rare match deep in a long history: a short page,
                    // and the cursor to read on from where this one stopped.
                    found.truncate(ready);
                    return Ok(Merged {
                        items: found,
                        next: Some(id),
                    });
                }
                _ => {}
            }
        }
    }

    /// The partition's next items below its frontier, those `filter`
    /// keeps, and how many were read.
    async fn read_partition<T: Listed>(
        &self,
        part: &mut Partition<T::Id>,
        below: Option<&str>,
        filter: &Filter,
    ) -> Result<(Vec<T>, usize), StoreError> {
        let limit = part.limit;
        part.limit = (limit * 2).min(MAX_LISTING_QUERY);
        let mut request = self
            .client()
            .query()
            .table_name(&self.config().table)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", AttributeValue::S(part.pk.clone()))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(part.start.take());
        request = match below {
            Some(below) => request
                .key_condition_expression("#pk = :pk AND #sk < :after")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":after", AttributeValue::S(below.to_owned())),
            None => request.key_condition_expression("#pk = :pk"),
        };
        let output = filter
            .apply(request)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(|e| unavailable(T::OPERATION, e))?;
        self.capacity()
            .record(T::OPERATION, Access::Read, output.consumed_capacity());
        let items = output
            .items()
            .iter()
            .map(T::from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let evaluated = usize::try_from(output.scanned_count()).unwrap_or(0);
        match output.last_evaluated_key {
            Some(key) => {
                part.frontier = Some(T::id_of_key(&key)?);
                part.start = Some(key);
            }
            None => part.done = true,
        }
        Ok((items, evaluated))
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
                .client()
                .batch_get_item()
                .request_items(&self.config().table, keys)
                .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                .send()
                .await
                .map_err(|e| unavailable("batch get jobs", e))?;
            self.capacity()
                .record("batch get jobs", Access::Read, output.consumed_capacity());
            for item in output
                .responses
                .unwrap_or_default()
                .remove(&self.config().table)
                .unwrap_or_default()
            {
                let job = parse_job(&item)?;
                found.insert(job.id(), job);
            }
            wanted = output
                .unprocessed_keys
                .and_then(|mut left| left.remove(&self.config().table))
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
