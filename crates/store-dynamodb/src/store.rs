//! `DynamoStore`: the `JobStore` operations as single-item DynamoDB calls.
//!
//! Write costs on the happy path of a small job, by design: intake put (1 + 1 index),
//! claim update (1 + 1 index, the projected lease), final put (1 + 1 index
//! removal): six write units.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use domain::{Job, JobId, TenantId, Timestamp};
use store::{Claim, DueJob, Fenced, JobStore, Lease, StoreError};

use crate::DynamoConfig;
use crate::schema::*;

type Item = HashMap<String, AttributeValue>;

/// Pages of the due index read per shard and poll, at most: bounds a poll's
/// cost when many due items sit behind live leases.
const MAX_PAGES_PER_SHARD: usize = 4;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    config: DynamoConfig,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.config.table)
            .field("endpoint", &self.config.endpoint)
            .field("due_shards", &self.config.due_shards)
            .finish_non_exhaustive()
    }
}

impl DynamoStore {
    pub fn new(client: Client, config: DynamoConfig) -> Self {
        Self { client, config }
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

    fn job_key(id: JobId) -> Item {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(format!("job#{id}"))),
            (SK.to_owned(), AttributeValue::S(JOB_SK.to_owned())),
        ])
    }

    fn shard_key(&self, shard: u16) -> String {
        format!("due#{shard:03}")
    }

    /// The whole item for a job's current state, without a lease.
    fn job_item(&self, job: &Job, now: Timestamp) -> Result<Item, StoreError> {
        let body = serde_json::to_string(job).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut item = Self::job_key(job.id);
        item.insert(TENANT.to_owned(), AttributeValue::S(job.tenant.to_string()));
        item.insert(
            STATUS.to_owned(),
            AttributeValue::S(job.status.as_str().to_owned()),
        );
        item.insert(
            CREATED_AT.to_owned(),
            AttributeValue::S(job.created_at.to_rfc3339()),
        );
        item.insert(JOB.to_owned(), AttributeValue::S(body));
        match job.due_at {
            Some(due_at) => {
                item.insert(
                    DUE_SHARD.to_owned(),
                    AttributeValue::S(self.shard_key(job.id.shard(self.config.due_shards))),
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

    async fn query_shard(&self, shard: u16, now: Timestamp, limit: usize) -> Result<Vec<DueJob>, StoreError> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        for _ in 0..MAX_PAGES_PER_SHARD {
            let page = self
                .client
                .query()
                .table_name(&self.config.table)
                .index_name(DUE_INDEX)
                .key_condition_expression("#shard = :shard AND #due <= :now")
                .filter_expression("attribute_not_exists(#until) OR #until < :now")
                .expression_attribute_names("#shard", DUE_SHARD)
                .expression_attribute_names("#due", DUE_AT)
                .expression_attribute_names("#until", LEASE_UNTIL)
                .expression_attribute_values(":shard", AttributeValue::S(self.shard_key(shard)))
                .expression_attribute_values(":now", number(now.timestamp_millis()))
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("query due index", e))?;
            for item in page.items() {
                found.push(due_job(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if found.len() < limit => start = Some(key),
                _ => break,
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl JobStore for DynamoStore {
    async fn create_job(&self, job: &Job) -> Result<(), StoreError> {
        let item = self.job_item(job, job.created_at)?;
        match self
            .client
            .put_item()
            .table_name(&self.config.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.code() == Some("ConditionalCheckFailedException") => Err(StoreError::Conflict),
            Err(err) => Err(write_error("put job", err)),
        }
    }

    async fn get_job(&self, tenant: &TenantId, id: JobId) -> Result<Option<Job>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.config.table)
            .set_key(Some(Self::job_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("get job", e))?;
        let Some(item) = output.item else { return Ok(None) };
        let job = parse_job(&item)?;
        Ok((job.tenant == *tenant).then_some(job))
    }

    async fn due_jobs(&self, now: Timestamp, limit: usize) -> Result<Vec<DueJob>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let shards = (0..self.config.due_shards).map(|shard| self.query_shard(shard, now, limit));
        let mut due = Vec::new();
        for shard in futures::future::join_all(shards).await {
            due.extend(shard?);
        }
        due.sort_by_key(|d| (d.due_at, d.id));
        due.truncate(limit);
        Ok(due)
    }

    async fn claim(&self, id: JobId, lease: &Lease, now: Timestamp) -> Result<Claim, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.config.table)
            .set_key(Some(Self::job_key(id)))
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
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => {
                let item = output
                    .attributes
                    .ok_or_else(|| StoreError::Corrupt(format!("claim on {id} returned no item")))?;
                Ok(Claim::Won(Box::new(parse_job(&item)?)))
            }
            Err(err) if err.code() == Some("ConditionalCheckFailedException") => Ok(Claim::Lost),
            Err(err) => Err(unavailable("claim job", err)),
        }
    }

    async fn save(&self, job: &Job, lease: &Lease, now: Timestamp) -> Result<Fenced, StoreError> {
        let item = self.job_item(job, now)?;
        match self
            .client
            .put_item()
            .table_name(&self.config.table)
            .set_item(Some(item))
            .condition_expression("#lease = :lease")
            .expression_attribute_names("#lease", LEASE_ID)
            .expression_attribute_values(":lease", AttributeValue::S(lease.id.clone()))
            .send()
            .await
        {
            Ok(_) => Ok(Fenced::Written),
            Err(err) if err.code() == Some("ConditionalCheckFailedException") => Ok(Fenced::LeaseLost),
            Err(err) => Err(write_error("save job", err)),
        }
    }

    async fn release(&self, id: JobId, lease: &Lease) -> Result<Fenced, StoreError> {
        match self
            .client
            .update_item()
            .table_name(&self.config.table)
            .set_key(Some(Self::job_key(id)))
            .update_expression("REMOVE #lease, #owner, #until")
            .condition_expression("#lease = :lease")
            .expression_attribute_names("#lease", LEASE_ID)
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_values(":lease", AttributeValue::S(lease.id.clone()))
            .send()
            .await
        {
            Ok(_) => Ok(Fenced::Written),
            Err(err) if err.code() == Some("ConditionalCheckFailedException") => Ok(Fenced::LeaseLost),
            Err(err) => Err(unavailable("release job", err)),
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

fn number(n: i64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn parse_job(item: &Item) -> Result<Job, StoreError> {
    let body = item
        .get(JOB)
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt("job item without a job attribute".to_owned()))?;
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("job attribute: {e}")))
}

fn due_job(item: &Item) -> Result<DueJob, StoreError> {
    let id = item
        .get(PK)
        .and_then(|v| v.as_s().ok())
        .and_then(|pk| pk.strip_prefix("job#"))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| StoreError::Corrupt("due index item without a job key".to_owned()))?;
    let millis: i64 = item
        .get(DUE_AT)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("due index item {id} without dueAt")))?;
    let due_at = chrono::DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| StoreError::Corrupt(format!("due index item {id} has dueAt {millis}")))?;
    Ok(DueJob { id, due_at })
}

fn unavailable<E, R>(operation: &str, err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(format!("{operation}: {}", DisplayErrorContext(&err)))
}

fn write_error<E, R>(operation: &str, err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    let too_large = err.code() == Some("ValidationException")
        && err.message().is_some_and(|m| m.contains("size has exceeded"));
    if too_large {
        StoreError::TooLarge(err.message().unwrap_or_default().to_owned())
    } else {
        unavailable(operation, err)
    }
}
