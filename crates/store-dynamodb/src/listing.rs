//! Listings: a page of a tenant's jobs, newest first. The whole listing
//! merges the tenant's shard partitions of the table, placing a job only
//! once every partition has been read down to it; the dead letter
//! (`status=failed`) reads the sparse `dead` index and then the jobs.

use std::collections::HashMap;

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
    /// table: each shard partition is read newest first, strongly
    /// consistent, and a job is placed only once every partition has been
    /// read down to it.
    async fn list_table(&self, tenant: &TenantId, query: &ListQuery) -> Result<JobPage, StoreError> {
        let page = query.page_size();
        let want = page + 1;
        let per_query = want.div_ceil(usize::from(self.config().shards)) + LISTING_SLACK;
        let mut parts: Vec<Partition> = (0..self.config().shards)
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
            .client()
            .query()
            .table_name(&self.config().table)
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
        self.capacity()
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
