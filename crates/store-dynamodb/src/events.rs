//! [`EventStore`] on DynamoDB: event types and endpoints in a partition per
//! tenant each, events in the tenant's shard partitions (listed by the same
//! merge as jobs), and `publish`: the event first (with its key, when one
//! is given, in one transaction), then each delivery created as a job only
//! if absent.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnConsumedCapacity, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use domain::{
    Endpoint, EndpointId, Event, EventId, EventType, EventTypeDef, SettledResult, TenantId, Timestamp,
};
use futures::StreamExt;
use store::{
    EndpointPage, EndpointQuery, EventPage, EventQuery, EventStore, IdempotencyRecord, JobStore,
    MAX_EVENT_TYPES, MAX_PAGE, Published, StoreError,
};
use telemetry::Access;

use crate::DynamoStore;
use crate::attempts::{WriteAttempts, unavailable};
use crate::codec::{
    Item, endpoint_id, endpoint_item, endpoint_key, event_id, event_key_item, event_key_record,
    event_type_item, event_type_key, parse_endpoint, parse_event, parse_event_type, parse_settled,
    result_attribute, settled_value,
};
use crate::jobs::CONTENDED_SENDS;
use crate::listing::{Filter, Listed, Merged};
use crate::schema::*;
use crate::write::Written;

/// Deliveries of one event created at once.
const DELIVERIES_IN_FLIGHT: usize = 16;

/// How many times a read-modify-write of an event type is tried while
/// others write the same type.
const EVENT_TYPE_TRIES: usize = 5;

/// Which page of one partition [`DynamoStore::query_page`] reads.
#[derive(Debug)]
pub(crate) struct PartitionPage {
    pub(crate) pk: String,
    /// Continue after this sort key (exclusive), in the direction read.
    pub(crate) after: Option<String>,
    /// At most this many items read.
    pub(crate) limit: usize,
    /// Sort key order, or (`false`) its reverse.
    pub(crate) oldest_first: bool,
}

impl Listed for Event {
    type Id = EventId;
    const OPERATION: &'static str = "query events";
    fn listed_id(&self) -> EventId {
        self.id
    }
    fn listed_tenant(&self) -> &TenantId {
        &self.tenant
    }
    fn from_item(item: &Item) -> Result<Self, StoreError> {
        parse_event(item)
    }
    fn id_of_key(key: &Item) -> Result<EventId, StoreError> {
        event_id(key)
    }
}

/// Whether the event item found where `event` was to be created is
/// `event`: the same id with the same content is the same event (a retry,
/// or a repeated publish), anything else a conflict. The results its
/// providers settled since are not its content.
fn is_our_event(found: Option<&Item>, event: &Event) -> Result<bool, StoreError> {
    match found {
        Some(found) => Ok(parse_event(found)?.is_published_as(event)),
        None => Ok(false),
    }
}

impl DynamoStore {
    /// One consistent `GetItem`.
    pub(crate) async fn get_one(
        &self,
        key: Item,
        operation: &'static str,
    ) -> Result<Option<Item>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(&self.config().table)
            .set_key(Some(key))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(|e| unavailable(operation, e))?;
        self.capacity()
            .record(operation, Access::Read, output.consumed_capacity());
        Ok(output.item)
    }

    /// Every item of partition `pk`, in sort key order, all pages (at most
    /// `most`), strongly consistent.
    async fn query_partition(
        &self,
        pk: String,
        most: usize,
        operation: &'static str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(&self.config().table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                .send()
                .await
                .map_err(|e| unavailable(operation, e))?;
            self.capacity()
                .record(operation, Access::Read, page.consumed_capacity());
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if items.len() < most => start = Some(key),
                _ => {
                    items.truncate(most);
                    return Ok(items);
                }
            }
        }
    }

    /// One page of partition `page.pk` (one strongly consistent `Query`,
    /// `Limit` items read before `filter`), its capacity recorded.
    pub(crate) async fn query_page(
        &self,
        page: PartitionPage,
        filter: &Filter,
        operation: &'static str,
    ) -> Result<QueryOutput, StoreError> {
        let mut request = self
            .client()
            .query()
            .table_name(&self.config().table)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", AttributeValue::S(page.pk))
            .consistent_read(true)
            .scan_index_forward(page.oldest_first)
            .limit(i32::try_from(page.limit).unwrap_or(i32::MAX));
        request = match page.after {
            Some(after) => request
                .key_condition_expression(if page.oldest_first {
                    "#pk = :pk AND #sk > :after"
                } else {
                    "#pk = :pk AND #sk < :after"
                })
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":after", AttributeValue::S(after)),
            None => request.key_condition_expression("#pk = :pk"),
        };
        let output = filter
            .apply(request)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(|e| unavailable(operation, e))?;
        self.capacity()
            .record(operation, Access::Read, output.consumed_capacity());
        Ok(output)
    }

    /// The event item, created only if absent: an event already there with
    /// the same content is this one.
    async fn put_event(&self, event: &Event) -> Result<(), StoreError> {
        let put = self
            .client()
            .put_item()
            .table_name(&self.config().table)
            .set_item(Some(self.event_item(event)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK);
        match self.write("put event", put, &WriteAttempts::default()).await? {
            Written::Applied(_) => Ok(()),
            Written::Refused { found, .. } => {
                if is_our_event(found.as_ref(), event)? {
                    Ok(())
                } else {
                    Err(StoreError::Conflict)
                }
            }
        }
    }

    /// The event and its idempotency key in one transaction, as
    /// `create_job_idempotent` writes a job and its key. `Some` is the
    /// answer when the key was used within its window for another event;
    /// `None` when the event is stored (by this call or an earlier one
    /// with this key) and its fan-out is to be completed.
    async fn put_event_with_key(
        &self,
        event: &Event,
        key: &IdempotencyRecord,
        now: Timestamp,
    ) -> Result<Option<Published>, StoreError> {
        const OPERATION: &str = "put event with idempotency key";
        let build = |e: aws_sdk_dynamodb::error::BuildError| {
            StoreError::Unavailable(format!("build transaction: {e}"))
        };
        let put_event = Put::builder()
            .table_name(&self.config().table)
            .set_item(Some(self.event_item(event)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build)?;
        let put_key = Put::builder()
            .table_name(&self.config().table)
            .set_item(Some(event_key_item(event, key)))
            // A key past its window (TTL deletes it, eventually) is free.
            .condition_expression("attribute_not_exists(#pk) OR #expires <= :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":now", crate::codec::number(now.timestamp()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build)?;
        let attempts = WriteAttempts::default();
        for attempt in 0..CONTENDED_SENDS {
            let transaction = self
                .client()
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put_event.clone()).build())
                .transact_items(TransactWriteItem::builder().put(put_key.clone()).build());
            let reasons = match self.write(OPERATION, transaction, &attempts).await? {
                Written::Applied(_) => return Ok(None),
                Written::Refused { found, .. } => found,
            };
            let failed = |i: usize| {
                reasons
                    .get(i)
                    .filter(|r| r.code() == Some("ConditionalCheckFailed"))
                    .map(|r| r.item())
            };
            if let Some(found_key) = failed(1) {
                let found_key = found_key.ok_or_else(|| {
                    StoreError::Corrupt("event idempotency key refused without its item".to_owned())
                })?;
                let (event_id, fingerprint) = event_key_record(found_key)?;
                let same_request = fingerprint == key.fingerprint;
                // The key names this very event: an earlier attempt (this
                // call's, whose answer was lost, or a publish repeated
                // after a crash) stored it; complete its fan-out.
                if event_id == event.id && same_request {
                    tracing::debug!("{OPERATION}: the key names this event already");
                    return Ok(None);
                }
                return Ok(Some(Published::Replay {
                    event_id,
                    same_request,
                }));
            }
            if let Some(found_event) = failed(0) {
                // The event is there and the key is free: it was published
                // before without this key.
                return if is_our_event(found_event, event)? {
                    Ok(None)
                } else {
                    Err(StoreError::Conflict)
                };
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

    /// Each of the event's deliveries, created as a job if absent, a few
    /// at a time. The event is stored by now, so a failure leaves part of
    /// the fan-out written: it is indeterminate whatever its kind, and the
    /// caller publishes again.
    async fn create_deliveries(&self, event: &Event) -> Result<(), StoreError> {
        let jobs = event.delivery_jobs();
        // The futures made up front (they start only when polled): a
        // stream of closures over borrowed jobs is not `Send` for every
        // lifetime, as `async_trait` needs.
        let creates: Vec<_> = jobs.iter().map(|job| self.create_job(job)).collect();
        let results: Vec<Result<(), StoreError>> = futures::stream::iter(creates)
            .buffer_unordered(DELIVERIES_IN_FLIGHT)
            .collect()
            .await;
        let mut failed = results.into_iter().filter_map(|result| match result {
            // Delivery ids follow from the event and the endpoint: one that
            // exists is this event's, made before (and maybe delivered).
            Ok(()) | Err(StoreError::Conflict) => None,
            Err(err) => Some(err),
        });
        match failed.next() {
            None => Ok(()),
            Some(first) => Err(StoreError::Indeterminate(format!(
                "publish {}: the event is stored, {} of its {} deliveries are not known to be: {first}",
                event.id,
                1 + failed.count(),
                jobs.len()
            ))),
        }
    }
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn put_event_type(&self, event_type: &EventTypeDef) -> Result<bool, StoreError> {
        // A create if absent; otherwise a compare-and-set on the stored
        // body, which keeps its `created_at`.
        let put = self
            .client()
            .put_item()
            .table_name(&self.config().table)
            .set_item(Some(event_type_item(event_type)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK);
        let mut found = match self
            .write("put event type", put, &WriteAttempts::default())
            .await?
        {
            Written::Applied(_) => return Ok(true),
            Written::Refused { found, maybe_applied } => {
                let ours = event_type_item(event_type);
                if maybe_applied && found.as_ref().and_then(|f| f.get(BODY)) == ours.get(BODY) {
                    // Our create, whose answer was lost.
                    return Ok(true);
                }
                found
            }
        };
        for _ in 0..EVENT_TYPE_TRIES {
            let Some(stored) = found.take() else {
                // Deleted since: create it afresh.
                return self.put_event_type(event_type).await;
            };
            let mut replacement = event_type.clone();
            replacement.created_at = parse_event_type(&stored)?.created_at;
            let item = event_type_item(&replacement);
            let written = item.get(BODY).cloned();
            let expected = stored
                .get(BODY)
                .cloned()
                .ok_or_else(|| StoreError::Corrupt("event type item without a body".to_owned()))?;
            let put = self
                .client()
                .put_item()
                .table_name(&self.config().table)
                .set_item(Some(item))
                .condition_expression("#body = :expected")
                .expression_attribute_names("#body", BODY)
                .expression_attribute_values(":expected", expected);
            match self
                .write("replace event type", put, &WriteAttempts::default())
                .await?
            {
                Written::Applied(_) => return Ok(false),
                Written::Refused {
                    found: now_found,
                    maybe_applied,
                } => {
                    if maybe_applied && now_found.as_ref().and_then(|f| f.get(BODY)) == written.as_ref() {
                        return Ok(false);
                    }
                    found = now_found;
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "event type {} changed {EVENT_TYPE_TRIES} times while being replaced; try again",
            event_type.name
        )))
    }

    async fn get_event_type(
        &self,
        tenant: &TenantId,
        name: &EventType,
    ) -> Result<Option<EventTypeDef>, StoreError> {
        self.get_one(event_type_key(tenant, name), "get event type")
            .await?
            .as_ref()
            .map(parse_event_type)
            .transpose()
    }

    async fn list_event_types(&self, tenant: &TenantId) -> Result<Vec<EventTypeDef>, StoreError> {
        // Sort keys are the names: the partition is already in name order.
        self.query_partition(format!("etype#{tenant}"), MAX_EVENT_TYPES, "query event types")
            .await?
            .iter()
            .map(parse_event_type)
            .collect()
    }

    async fn delete_event_type(&self, tenant: &TenantId, name: &EventType) -> Result<bool, StoreError> {
        self.delete_existing(event_type_key(tenant, name), "delete event type")
            .await
    }

    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let item = endpoint_item(self.sealer(), endpoint, 1).await?;
        let put = self
            .client()
            .put_item()
            .table_name(&self.config().table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK);
        match self.write("put endpoint", put, &WriteAttempts::default()).await? {
            Written::Applied(_) => Ok(()),
            // The same endpoint (an earlier attempt of this create) is ours;
            // anything else under its id is a conflict.
            Written::Refused { found, .. } => match found {
                Some(found) if parse_endpoint(self.sealer(), &found).await?.0 == *endpoint => Ok(()),
                _ => Err(StoreError::Conflict),
            },
        }
    }

    async fn get_endpoint(
        &self,
        tenant: &TenantId,
        id: EndpointId,
    ) -> Result<Option<(Endpoint, u64)>, StoreError> {
        let Some(item) = self.get_one(endpoint_key(tenant, id), "get endpoint").await? else {
            return Ok(None);
        };
        let (endpoint, version) = parse_endpoint(self.sealer(), &item).await?;
        Ok((endpoint.tenant == *tenant).then_some((endpoint, version)))
    }

    async fn update_endpoint(&self, endpoint: &Endpoint, expected: u64) -> Result<bool, StoreError> {
        let next = expected.saturating_add(1);
        let item = endpoint_item(self.sealer(), endpoint, next).await?;
        let written = item.get(BODY).cloned();
        let put = self
            .client()
            .put_item()
            .table_name(&self.config().table)
            .set_item(Some(item))
            // A missing item has no version: an endpoint deleted since is
            // not brought back.
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()));
        match self
            .write("update endpoint", put, &WriteAttempts::default())
            .await?
        {
            Written::Applied(_) => Ok(true),
            // Our body at our version: an attempt whose answer was lost.
            Written::Refused { found, maybe_applied } => Ok(maybe_applied
                && found.is_some_and(|found| {
                    found.get(BODY) == written.as_ref()
                        && found.get(VERSION) == Some(&AttributeValue::N(next.to_string()))
                })),
        }
    }

    async fn delete_endpoint(&self, tenant: &TenantId, id: EndpointId) -> Result<bool, StoreError> {
        self.delete_existing(endpoint_key(tenant, id), "delete endpoint")
            .await
    }

    async fn list_endpoints(
        &self,
        tenant: &TenantId,
        query: &EndpointQuery,
    ) -> Result<EndpointPage, StoreError> {
        let mut filter = Filter::default();
        if let Some(owner) = &query.owner {
            filter = filter.equals(OWNER, AttributeValue::S(owner.as_str().to_owned()));
        }
        // `Limit` bounds what is read, before the owner filter: a page may
        // come back short, with a `next`.
        let output = self
            .query_page(
                PartitionPage {
                    pk: format!("endpoint#{tenant}"),
                    after: query.after.map(|after| after.to_string()),
                    limit: query.limit.clamp(1, MAX_PAGE),
                    oldest_first: true,
                },
                &filter,
                "query endpoints",
            )
            .await?;
        let mut endpoints = Vec::with_capacity(output.items().len());
        for item in output.items() {
            endpoints.push(parse_endpoint(self.sealer(), item).await?.0);
        }
        let next = output.last_evaluated_key.as_ref().map(endpoint_id).transpose()?;
        Ok(EndpointPage { endpoints, next })
    }

    async fn tenant_endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError> {
        let items = self
            .query_partition(format!("endpoint#{tenant}"), usize::MAX, "query endpoints")
            .await?;
        let mut endpoints = Vec::with_capacity(items.len());
        for item in &items {
            endpoints.push(parse_endpoint(self.sealer(), item).await?.0);
        }
        Ok(endpoints)
    }

    async fn publish(
        &self,
        event: &Event,
        key: Option<&IdempotencyRecord>,
        now: Timestamp,
    ) -> Result<Published, StoreError> {
        match key {
            Some(key) => {
                if let Some(replay) = self.put_event_with_key(event, key, now).await? {
                    return Ok(replay);
                }
            }
            None => self.put_event(event).await?,
        }
        self.create_deliveries(event).await?;
        Ok(Published::Accepted)
    }

    async fn get_event(&self, tenant: &TenantId, id: EventId) -> Result<Option<Event>, StoreError> {
        let Some(item) = self.get_one(self.event_key(tenant, id), "get event").await? else {
            return Ok(None);
        };
        let event = parse_event(&item)?;
        Ok((event.tenant == *tenant).then_some(event))
    }

    async fn settle_event_provider(
        &self,
        tenant: &TenantId,
        id: EventId,
        provider: &str,
        settled: &SettledResult,
    ) -> Result<Option<SettledResult>, StoreError> {
        let update = self
            .client()
            .update_item()
            .table_name(&self.config().table)
            .set_key(Some(self.event_key(tenant, id)))
            .update_expression("SET #result = :result")
            // Never creates an item: an event purged (or never published)
            // gets no results.
            .condition_expression("attribute_exists(#pk) AND attribute_not_exists(#result)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#result", result_attribute(provider))
            .expression_attribute_values(":result", settled_value(settled));
        match self
            .write("settle event provider", update, &WriteAttempts::default())
            .await?
        {
            Written::Applied(_) => Ok(Some(settled.clone())),
            Written::Refused { found: None, .. } => Ok(None),
            // The first writer's (or, after a lost answer, our own).
            Written::Refused {
                found: Some(item), ..
            } => match item.get(&result_attribute(provider)) {
                Some(value) => parse_settled(value).map(Some),
                None => Err(StoreError::Corrupt(format!(
                    "event {id}: the result of {provider} was refused but is not there"
                ))),
            },
        }
    }

    async fn list_events(&self, tenant: &TenantId, query: &EventQuery) -> Result<EventPage, StoreError> {
        let partitions = (0..self.config().shards)
            .map(|shard| self.event_shard_partition(tenant, shard))
            .collect();
        let mut filter = Filter::default();
        if let Some(event_type) = &query.event_type {
            filter = filter.equals(EVENT_TYPE, AttributeValue::S(event_type.as_str().to_owned()));
        }
        if let Some(owner) = &query.owner {
            filter = filter.equals(OWNER, AttributeValue::S(owner.as_str().to_owned()));
        }
        let page = query.limit.clamp(1, MAX_PAGE);
        let below = query.after.map(|after| after.to_string());
        let merged: Merged<Event> = self.list_merged(tenant, partitions, below, &filter, page).await?;
        Ok(EventPage {
            events: merged.items,
            next: merged.next,
        })
    }
}
