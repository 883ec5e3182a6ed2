//! [`JobStore`] on DynamoDB: creates, claims, fenced saves, lease
//! extensions and releases, redrives, each one conditional write of one
//! job item (a keyed create: one transaction with its idempotency key);
//! listings and due work are in `listing.rs` and `due.rs`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnConsumedCapacity, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem,
};
use domain::{Job, JobId, TenantId, Timestamp};
use store::{
    Claim, DueJob, Fenced, IdempotencyRecord, IdempotentCreate, JobPage, JobStore, Lease, ListQuery, Redrive,
    StoreError,
};
use telemetry::Access;

use crate::DynamoStore;
use crate::attempts::{WriteAttempts, unavailable};
use crate::codec::{attribute_s, decode_job, idempotency_item, is_our_new_job, job_text, number, parse_job};
use crate::schema::*;
use crate::write::Written;

/// How many times a keyed create is sent while another request with the
/// same key is being written (`TransactionConflict`).
pub(crate) const CONTENDED_SENDS: u32 = 5;

impl DynamoStore {
    /// The job and its stored text, if it exists and belongs to `tenant`.
    async fn get_stored(&self, tenant: &TenantId, id: JobId) -> Result<Option<(Job, String)>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(&self.config().table)
            .set_key(Some(self.job_key(tenant, id)))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(|e| unavailable("get job", e))?;
        self.capacity()
            .record("get job", Access::Read, output.consumed_capacity());
        let Some(item) = output.item else { return Ok(None) };
        let text = job_text(&item)?;
        let job = decode_job(text)?;
        Ok((job.tenant() == tenant).then(|| (job, text.to_owned())))
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
        const OPERATION: &str = "create job with idempotency key";
        let build = |e: aws_sdk_dynamodb::error::BuildError| {
            StoreError::Unavailable(format!("build transaction: {e}"))
        };
        let put_job = Put::builder()
            .table_name(&self.config().table)
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
            .table_name(&self.config().table)
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
        for attempt in 0..CONTENDED_SENDS {
            let transaction = self
                .client()
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put_job.clone()).build())
                .transact_items(TransactWriteItem::builder().put(put_key.clone()).build());
            let (reasons, maybe_applied) = match self.write(OPERATION, transaction, &attempts).await? {
                Written::Applied(_) => return Ok(IdempotentCreate::Created),
                Written::Refused { found, maybe_applied } => (found, maybe_applied),
            };
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
            if maybe_applied && (key_names_ours || job_is_ours) {
                tracing::debug!("{OPERATION}: a retried write found its own job");
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
        let message = format!("{OPERATION}: the key stayed contended");
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
        self.list(tenant, query).await
    }

    async fn redrive(&self, tenant: &TenantId, id: JobId, now: Timestamp) -> Result<Redrive, StoreError> {
        store::redrive_by_compare_and_set(
            now,
            || self.get_stored(tenant, id),
            |job, expected| async move {
                let item = self.job_item(&job, now)?;
                let written = item.get(JOB).cloned();
                let put = self
                    .client()
                    .put_item()
                    .table_name(&self.config().table)
                    .set_item(Some(item))
                    .condition_expression("#job = :expected AND attribute_not_exists(#lease)")
                    .expression_attribute_names("#job", JOB)
                    .expression_attribute_names("#lease", LEASE_ID)
                    .expression_attribute_values(":expected", AttributeValue::S(expected));
                match self.write("redrive job", put, &WriteAttempts::default()).await? {
                    Written::Applied(_) => Ok(true),
                    // The job as this redrive left it: an attempt whose
                    // answer was lost wrote it.
                    Written::Refused { found, maybe_applied } => {
                        Ok(maybe_applied && found.is_some_and(|found| found.get(JOB) == written.as_ref()))
                    }
                }
            },
        )
        .await
    }

    async fn due_jobs(&self, now: Timestamp, limit: usize) -> Result<Vec<DueJob>, StoreError> {
        self.due_everywhere(now, limit).await
    }

    async fn due_jobs_from(
        &self,
        now: Timestamp,
        limit: usize,
        start: u64,
        pass_over: &store::PassOver,
    ) -> Result<Vec<DueJob>, StoreError> {
        self.due_from(now, limit, start, pass_over).await
    }

    async fn claim(
        &self,
        tenant: &TenantId,
        id: JobId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Claim, StoreError> {
        let update = self
            .client()
            .update_item()
            .table_name(&self.config().table)
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
            // remove theirs). On a failed condition too (the helper asks):
            // a lease that is ours is a claim whose answer was lost.
            .return_values(ReturnValue::AllOld);
        match self.write("claim job", update, &WriteAttempts::default()).await? {
            Written::Applied(output) => {
                let item = output
                    .attributes
                    .ok_or_else(|| StoreError::Corrupt(format!("claim on {id} returned no item")))?;
                let took_over_from = item.contains_key(LEASE_ID).then(|| {
                    attribute_s(&item, LEASE_OWNER)
                        .map(str::to_owned)
                        .unwrap_or_default()
                });
                Ok(Claim::Won {
                    job: Box::new(parse_job(&item)?),
                    took_over_from,
                })
            }
            Written::Refused { found, .. } => match found {
                // Lease ids are unique per claim: an attempt whose answer
                // was lost won it. Whose expired lease it replaced is no
                // longer on the item.
                Some(item) if attribute_s(&item, LEASE_ID) == Some(lease.id.as_str()) => {
                    tracing::debug!(job_id = %id, "claim: a retried write found its own lease");
                    Ok(Claim::Won {
                        job: Box::new(parse_job(&item)?),
                        took_over_from: None,
                    })
                }
                _ => Ok(Claim::Lost),
            },
        }
    }

    async fn save(&self, job: &Job, lease: &Lease, now: Timestamp) -> Result<Fenced, StoreError> {
        let item = self.job_item(job, now)?;
        let written = item.get(JOB).cloned();
        let put = self
            .client()
            .put_item()
            .table_name(&self.config().table)
            .set_item(Some(item))
            .condition_expression("#lease = :lease")
            .expression_attribute_names("#lease", LEASE_ID)
            .expression_attribute_values(":lease", AttributeValue::S(lease.id.clone()));
        match self.write("save job", put, &WriteAttempts::default()).await? {
            Written::Applied(_) => Ok(Fenced::Written),
            // Our lease is gone and the job is exactly what we wrote: an
            // attempt whose answer was lost wrote it.
            Written::Refused { found, maybe_applied } => {
                let ours = maybe_applied && found.is_some_and(|found| found.get(JOB) == written.as_ref());
                Ok(if ours { Fenced::Written } else { Fenced::LeaseLost })
            }
        }
    }

    async fn release(&self, tenant: &TenantId, id: JobId, lease: &Lease) -> Result<Fenced, StoreError> {
        let update = self
            .client()
            .update_item()
            .table_name(&self.config().table)
            .set_key(Some(self.job_key(tenant, id)))
            .update_expression("REMOVE #lease, #owner, #until")
            .condition_expression("#lease = :lease")
            .expression_attribute_names("#lease", LEASE_ID)
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_values(":lease", AttributeValue::S(lease.id.clone()));
        match self
            .write("release job", update, &WriteAttempts::default())
            .await?
        {
            Written::Applied(_) => Ok(Fenced::Written),
            // No lease left after an attempt that may have removed ours:
            // that attempt did.
            Written::Refused { found, maybe_applied } => {
                let ours = maybe_applied && found.is_some_and(|found| !found.contains_key(LEASE_ID));
                Ok(if ours { Fenced::Written } else { Fenced::LeaseLost })
            }
        }
    }

    async fn extend_lease(
        &self,
        tenant: &TenantId,
        id: JobId,
        lease: &Lease,
        until: Timestamp,
    ) -> Result<Fenced, StoreError> {
        // Only `leaseUntil` changes; it is projected into `due`, so the
        // index's filter keeps the job out of polls until then (1 + 1
        // write units). The second half of the condition never shortens.
        let update = self
            .client()
            .update_item()
            .table_name(&self.config().table)
            .set_key(Some(self.job_key(tenant, id)))
            .update_expression("SET #until = :until")
            .condition_expression("#lease = :lease AND (attribute_not_exists(#until) OR #until < :until)")
            .expression_attribute_names("#lease", LEASE_ID)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_values(":lease", AttributeValue::S(lease.id.clone()))
            .expression_attribute_values(":until", number(until.timestamp_millis()));
        match self
            .write("extend lease", update, &WriteAttempts::default())
            .await?
        {
            Written::Applied(_) => Ok(Fenced::Written),
            // Our lease, already lasting at least until then: lengthened
            // before (by an attempt whose answer was lost, say). Lease ids
            // are unique per claim, so this holds whichever call wrote it.
            Written::Refused { found, .. } => {
                let ours =
                    found.is_some_and(|found| attribute_s(&found, LEASE_ID) == Some(lease.id.as_str()));
                Ok(if ours { Fenced::Written } else { Fenced::LeaseLost })
            }
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
        // A control-plane call: DynamoDB reports no capacity for it.
        self.client()
            .describe_table()
            .table_name(&self.config().table)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| unavailable("describe table", e))
    }
}
