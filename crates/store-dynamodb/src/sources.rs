//! [`SourceStore`] on DynamoDB: a source is two items written together in
//! one `TransactWriteItems`, its own (`source#{id}`: `POST /in/{id}` reads
//! it by id alone, with one consistent `GetItem`) and its listing item in
//! its tenant's partition (`sources#{tenant}`: one `Query` lists them),
//! so neither needs a Scan or an index. The requests a source received
//! are a partition of their own (`srcreq#{id}`), newest last, each
//! removed by TTL once the retention after it was received runs out.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use domain::{Source, SourceId, SourceRequest, TenantId};
use store::{MAX_PAGE, MAX_SOURCE_REQUESTS, SourcePage, SourceStore, StoreError};

use crate::DynamoStore;
use crate::attempts::WriteAttempts;
use crate::codec::{
    Item, parse_source, parse_source_request, source_id, source_item, source_key, source_listing_item,
    source_listing_key, source_request_item, source_requests_partition,
};
use crate::events::PartitionPage;
use crate::jobs::CONTENDED_SENDS;
use crate::listing::Filter;
use crate::schema::*;
use crate::write::Written;

/// What a source's transaction came to. Its first item is always the
/// source's own, the only one with a condition.
enum Transacted {
    Applied,
    /// The condition on the source's own item failed: what was there, and
    /// whether an attempt of this call may have been applied all the same.
    Refused {
        found: Option<Item>,
        maybe_applied: bool,
    },
}

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Unavailable(format!("build transaction: {e}"))
}

impl DynamoStore {
    /// Sends a source's transaction through [`DynamoStore::write`], again
    /// while another transaction is writing the same items
    /// (`TransactionConflict`), with one record of its attempts.
    async fn transact_source(
        &self,
        operation: &'static str,
        items: Vec<TransactWriteItem>,
    ) -> Result<Transacted, StoreError> {
        let attempts = WriteAttempts::default();
        for attempt in 0..CONTENDED_SENDS {
            let transaction = self
                .client()
                .transact_write_items()
                .set_transact_items(Some(items.clone()));
            let (reasons, maybe_applied) = match self.write(operation, transaction, &attempts).await? {
                Written::Applied(_) => return Ok(Transacted::Applied),
                Written::Refused { found, maybe_applied } => (found, maybe_applied),
            };
            if let Some(failed) = reasons
                .first()
                .filter(|r| r.code() == Some("ConditionalCheckFailed"))
            {
                return Ok(Transacted::Refused {
                    found: failed.item().cloned(),
                    maybe_applied,
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
        }
        let message = format!("{operation}: the source stayed contended");
        Err(if attempts.maybe_applied() {
            StoreError::Indeterminate(message)
        } else {
            StoreError::Unavailable(message)
        })
    }

    /// The put of a source's listing item: unconditional, as the
    /// transaction's condition on the source's own item decides.
    fn put_listing(
        &self,
        source: &Source,
        body: &str,
        version: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.config().table)
            .set_item(Some(source_listing_item(source, body, version)))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

#[async_trait]
impl SourceStore for DynamoStore {
    async fn create_source(&self, source: &Source) -> Result<(), StoreError> {
        let body = store::sealing::seal_source(self.sealer(), source).await?;
        let put_source = Put::builder()
            .table_name(&self.config().table)
            .set_item(Some(source_item(source, &body, 1)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let items = vec![
            TransactWriteItem::builder().put(put_source).build(),
            self.put_listing(source, &body, 1)?,
        ];
        match self.transact_source("put source", items).await? {
            Transacted::Applied => Ok(()),
            // The same source (an earlier attempt of this create) is ours;
            // anything else under its id is a conflict.
            Transacted::Refused { found, .. } => match found {
                Some(found) if parse_source(self.sealer(), &found).await?.0 == *source => Ok(()),
                _ => Err(StoreError::Conflict),
            },
        }
    }

    async fn get_source(&self, id: SourceId) -> Result<Option<(Source, u64)>, StoreError> {
        match self.get_one(source_key(id), "get source").await? {
            Some(item) => Ok(Some(parse_source(self.sealer(), &item).await?)),
            None => Ok(None),
        }
    }

    async fn update_source(&self, source: &Source, expected: u64) -> Result<bool, StoreError> {
        let next = expected.saturating_add(1);
        let body = store::sealing::seal_source(self.sealer(), source).await?;
        let item = source_item(source, &body, next);
        let written = item.get(BODY).cloned();
        let put_source = Put::builder()
            .table_name(&self.config().table)
            .set_item(Some(item))
            // A missing item has no version: a source deleted since is not
            // brought back; nor is another tenant's replaced.
            .condition_expression("#version = :expected AND #tenant = :tenant")
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_names("#tenant", TENANT)
            .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()))
            .expression_attribute_values(":tenant", AttributeValue::S(source.tenant.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let items = vec![
            TransactWriteItem::builder().put(put_source).build(),
            self.put_listing(source, &body, next)?,
        ];
        match self.transact_source("update source", items).await? {
            Transacted::Applied => Ok(true),
            // Our body at our version: an attempt whose answer was lost.
            Transacted::Refused { found, maybe_applied } => Ok(maybe_applied
                && found.is_some_and(|found| {
                    found.get(BODY) == written.as_ref()
                        && found.get(VERSION) == Some(&AttributeValue::N(next.to_string()))
                })),
        }
    }

    /// Deletes the source's two items in one transaction. **The requests
    /// it received are left to TTL**: they are many, in a partition of
    /// their own, each expiring within the retention; nothing reads them
    /// without the source, whose id is never reused (a ULID).
    async fn delete_source(&self, tenant: &TenantId, id: SourceId) -> Result<bool, StoreError> {
        let delete_source = Delete::builder()
            .table_name(&self.config().table)
            .set_key(Some(source_key(id)))
            .condition_expression("attribute_exists(#pk) AND #tenant = :tenant")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#tenant", TENANT)
            .expression_attribute_values(":tenant", AttributeValue::S(tenant.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let delete_listing = Delete::builder()
            .table_name(&self.config().table)
            .set_key(Some(source_listing_key(tenant, id)))
            .build()
            .map_err(build_error)?;
        let items = vec![
            TransactWriteItem::builder().delete(delete_source).build(),
            TransactWriteItem::builder().delete(delete_listing).build(),
        ];
        match self.transact_source("delete source", items).await? {
            Transacted::Applied => Ok(true),
            // Nothing there after an attempt that may have been applied:
            // that attempt deleted it. Another tenant's source stays.
            Transacted::Refused { found, maybe_applied } => Ok(maybe_applied && found.is_none()),
        }
    }

    async fn list_sources(
        &self,
        tenant: &TenantId,
        after: Option<SourceId>,
        limit: usize,
    ) -> Result<SourcePage, StoreError> {
        let output = self
            .query_page(
                PartitionPage {
                    pk: format!("sources#{tenant}"),
                    after: after.map(|id| id.to_string()),
                    limit: limit.clamp(1, MAX_PAGE),
                    oldest_first: true,
                },
                &Filter::default(),
                "query sources",
            )
            .await?;
        let mut sources = Vec::with_capacity(output.items().len());
        for item in output.items() {
            sources.push(parse_source(self.sealer(), item).await?.0);
        }
        let next = output.last_evaluated_key.as_ref().map(source_id).transpose()?;
        Ok(SourcePage { sources, next })
    }

    async fn record_source_request(&self, request: &SourceRequest) -> Result<(), StoreError> {
        let item = source_request_item(request, self.retained_until(request.received_at));
        let put = self
            .client()
            .put_item()
            .table_name(&self.config().table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK);
        match self
            .write("put source request", put, &WriteAttempts::default())
            .await?
        {
            Written::Applied(_) => Ok(()),
            // Request ids are the intake's own ULIDs: one already there is
            // this request, written before (a retry after a lost answer).
            Written::Refused { .. } => Ok(()),
        }
    }

    async fn source_requests(
        &self,
        tenant: &TenantId,
        source: SourceId,
        limit: usize,
    ) -> Result<Vec<SourceRequest>, StoreError> {
        // Every request of a source is its tenant's: another tenant's
        // filter passes none of them.
        let filter = Filter::default().equals(TENANT, AttributeValue::S(tenant.to_string()));
        let output = self
            .query_page(
                PartitionPage {
                    pk: source_requests_partition(source),
                    after: None,
                    limit: limit.clamp(1, MAX_SOURCE_REQUESTS),
                    oldest_first: false,
                },
                &filter,
                "query source requests",
            )
            .await?;
        output.items().iter().map(parse_source_request).collect()
    }
}
