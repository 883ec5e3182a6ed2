//! Finding due work: the sparse `due` index, one shard partition per query,
//! oldest first, live leases and passed-over tenants filtered out.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use domain::Timestamp;
use store::{DueJob, PASS_OVER_READS, PassOver, StoreError};
use telemetry::Access;

use crate::DynamoStore;
use crate::attempts::unavailable;
use crate::codec::{Item, due_job, number};
use crate::schema::*;

/// Pages of the due index read per shard and poll, at most: bounds a poll's
/// cost when many due items sit behind live leases.
const MAX_PAGES_PER_SHARD: usize = 4;

impl DynamoStore {
    /// Every shard's due jobs, merged oldest first: `JobStore::due_jobs`.
    pub(crate) async fn due_everywhere(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueJob>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let none = PassOver::default();
        let shards = (0..self.config().shards).map(|shard| self.query_shard(shard, now, limit, &none));
        let mut due = Vec::new();
        for shard in futures::future::join_all(shards).await {
            due.extend(shard?);
        }
        due.sort_by_key(|d| (d.due_at, d.id));
        due.truncate(limit);
        Ok(due)
    }

    /// One shard's due jobs, the first in ring order from `start` that
    /// has any: `JobStore::due_jobs_from`.
    pub(crate) async fn due_from(
        &self,
        now: Timestamp,
        limit: usize,
        start: u64,
        pass_over: &PassOver,
    ) -> Result<Vec<DueJob>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let shards = self.config().shards;
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

    /// Up to `limit` due, unleased jobs of one shard, oldest first, none of
    /// a tenant or receiver in `pass_over`. Reads at most
    /// [`MAX_PAGES_PER_SHARD`] pages of `limit` index entries (passing over,
    /// one page of [`PASS_OVER_READS`] times `limit`): the filter (live
    /// leases, passed-over tenants' partition keys) drops entries after they
    /// are read, and passed-over receivers (whose tag sits inside the job
    /// id, where a filter cannot look) are dropped here.
    async fn query_shard(
        &self,
        shard: u16,
        now: Timestamp,
        limit: usize,
        pass_over: &PassOver,
    ) -> Result<Vec<DueJob>, StoreError> {
        let tenants = pass_over.tenants();
        let mut filter = "(attribute_not_exists(#until) OR #until < :now)".to_owned();
        for n in 0..tenants.len() {
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
                .client()
                .query()
                .table_name(&self.config().table)
                .index_name(DUE_INDEX)
                .key_condition_expression("#shard = :shard AND #due <= :now")
                .filter_expression(filter.as_str())
                .expression_attribute_names("#shard", DUE_SHARD)
                .expression_attribute_names("#due", DUE_AT)
                .expression_attribute_names("#until", LEASE_UNTIL)
                .expression_attribute_values(":shard", AttributeValue::S(self.shard_key(shard)))
                .expression_attribute_values(":now", number(now.timestamp_millis()));
            if !tenants.is_empty() {
                query = query.expression_attribute_names("#pk", PK);
            }
            for (n, tenant) in tenants.iter().enumerate() {
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
            self.capacity()
                .record("query due index", Access::Read, page.consumed_capacity());
            for item in page.items() {
                let due = due_job(item)?;
                if !pass_over.passes(&due) {
                    found.push(due);
                }
            }
            match page.last_evaluated_key {
                Some(key) if found.len() < limit => start = Some(key),
                _ => break,
            }
        }
        found.truncate(limit);
        Ok(found)
    }
}
