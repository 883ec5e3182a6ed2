//! Items and the values they hold: a job's item and its `job` text, due
//! index entries, API key and idempotency key items, event types,
//! endpoints, events and their keys, sources (their items and listing
//! items) and source requests, and the attribute helpers they share. Everything read from the table is checked here:
//! a malformed item is [`StoreError::Corrupt`], never a panic.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use domain::{
    Endpoint, EndpointId, Event, EventId, EventType, EventTypeDef, Job, JobId, JobStatus, KeyHash,
    SettledResult, Source, SourceId, SourceRequest, TenantId, Timestamp,
};
use seal::Sealer;
use store::{ApiKeyRecord, DueJob, StoreError};

use crate::DynamoStore;
use crate::schema::*;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// A job as the text of its `job` attribute. With [`decode_job`], the one
/// place the stored form of a job is decided.
pub(crate) fn encode_job(job: &Job) -> Result<String, StoreError> {
    Ok(domain::record::encode(job))
}

/// A job from the text of its `job` attribute.
pub(crate) fn decode_job(text: &str) -> Result<Job, StoreError> {
    domain::record::decode(text).map_err(|e| StoreError::Corrupt(format!("job attribute: {e}")))
}

impl DynamoStore {
    /// The partition of `tenant`'s jobs that job `id` lives in.
    pub(crate) fn job_partition(&self, tenant: &TenantId, id: JobId) -> String {
        self.partition(tenant, id.shard(self.config().shards))
    }

    /// A tenant's shard partition `shard` of the table.
    pub(crate) fn partition(&self, tenant: &TenantId, shard: u16) -> String {
        format!("job#{tenant}#{shard:03}")
    }

    pub(crate) fn job_key(&self, tenant: &TenantId, id: JobId) -> Item {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(self.job_partition(tenant, id))),
            (SK.to_owned(), AttributeValue::S(format!("{JOB_SK_PREFIX}{id}"))),
        ])
    }

    /// Shard `shard` of the due index.
    pub(crate) fn shard_key(&self, shard: u16) -> String {
        format!("due#{shard:03}")
    }

    /// A tenant's partition `shard` of the dead-letter index.
    pub(crate) fn dead_key(&self, tenant: &TenantId, shard: u16) -> String {
        format!("{tenant}#{shard:03}")
    }

    /// When something finished (a job) or received (a source request) at
    /// `from` expires: `from` plus the store's retention.
    pub(crate) fn retained_until(&self, from: Timestamp) -> Timestamp {
        let retention = chrono::Duration::from_std(self.config().retention).unwrap_or(chrono::Duration::MAX);
        from.checked_add_signed(retention).unwrap_or(from)
    }

    /// The whole item for a job's current state, without a lease.
    pub(crate) fn job_item(&self, job: &Job, now: Timestamp) -> Result<Item, StoreError> {
        let shards = self.config().shards;
        let mut item = self.job_key(job.tenant(), job.id());
        item.insert(TENANT.to_owned(), AttributeValue::S(job.tenant().to_string()));
        item.insert(
            STATUS.to_owned(),
            AttributeValue::S(job.status().as_str().to_owned()),
        );
        item.insert(
            CREATED_AT.to_owned(),
            AttributeValue::S(job.created_at().to_rfc3339()),
        );
        item.insert(JOB.to_owned(), AttributeValue::S(encode_job(job)?));
        if job.status() == JobStatus::Failed {
            item.insert(
                DEAD_KEY.to_owned(),
                AttributeValue::S(self.dead_key(job.tenant(), job.id().shard(shards))),
            );
        }
        match job.due_at() {
            Some(due_at) => {
                item.insert(
                    DUE_SHARD.to_owned(),
                    AttributeValue::S(self.shard_key(job.id().shard(shards))),
                );
                item.insert(DUE_AT.to_owned(), number(due_at.timestamp_millis()));
            }
            None => {
                let expires = self.retained_until(now);
                item.insert(EXPIRES_AT.to_owned(), number(expires.timestamp()));
            }
        }
        Ok(item)
    }

    /// The partition of `tenant`'s events that event `id` lives in: sharded
    /// as jobs are, by the random bits of its ULID.
    pub(crate) fn event_partition(&self, tenant: &TenantId, id: EventId) -> String {
        self.event_shard_partition(tenant, event_shard(id, self.config().shards))
    }

    /// A tenant's shard partition `shard` of its events.
    pub(crate) fn event_shard_partition(&self, tenant: &TenantId, shard: u16) -> String {
        format!("event#{tenant}#{shard:03}")
    }

    pub(crate) fn event_key(&self, tenant: &TenantId, id: EventId) -> Item {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(self.event_partition(tenant, id))),
            (SK.to_owned(), AttributeValue::S(id.to_string())),
        ])
    }

    /// An event's item: its record in `body`, and the attributes the
    /// listing filters on.
    pub(crate) fn event_item(&self, event: &Event) -> Item {
        let mut item = self.event_key(&event.tenant, event.id);
        item.insert(
            BODY.to_owned(),
            AttributeValue::S(domain::record::event::encode_event(event)),
        );
        item.insert(
            EVENT_TYPE.to_owned(),
            AttributeValue::S(event.event_type.as_str().to_owned()),
        );
        if let Some(owner) = &event.owner {
            item.insert(OWNER.to_owned(), AttributeValue::S(owner.as_str().to_owned()));
        }
        // TTL removes it once its deliveries are long gone.
        let expires = store::event_expires_at(event.created_at, self.config().retention);
        item.insert(EXPIRES_AT.to_owned(), number(expires.timestamp()));
        item
    }

    /// The key of a tenant's signing secrets item.
    pub(crate) fn secrets_key(tenant: &TenantId) -> Item {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(format!("tenant#{tenant}"))),
            (SK.to_owned(), AttributeValue::S(SECRETS_SK.to_owned())),
        ])
    }

    /// The key of an API key's item.
    pub(crate) fn key_item_key(hash: &KeyHash) -> Item {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(KEYS_PK.to_owned())),
            (SK.to_owned(), AttributeValue::S(format!("key#{}", hash.to_hex()))),
        ])
    }
}

/// The item of an idempotency key: the job it names and the request's
/// fingerprint.
pub(crate) fn idempotency_item(item: &Item) -> Option<(JobId, String)> {
    let job_id = item.get(IDEM_JOB_ID)?.as_s().ok()?.parse().ok()?;
    let fingerprint = item.get(IDEM_FINGERPRINT)?.as_s().ok()?.clone();
    Some((job_id, fingerprint))
}

pub(crate) fn key_record(item: &Item) -> Result<ApiKeyRecord, StoreError> {
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

pub(crate) fn number(n: i64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// The text of a job item's `job` attribute.
pub(crate) fn job_text(item: &Item) -> Result<&str, StoreError> {
    attribute_s(item, JOB).ok_or_else(|| StoreError::Corrupt("job item without a job attribute".to_owned()))
}

pub(crate) fn parse_job(item: &Item) -> Result<Job, StoreError> {
    decode_job(job_text(item)?)
}

/// The job id of a job item or an index item, from the table's sort key
/// (`job#{id}`), which every index carries.
pub(crate) fn job_id(item: &Item) -> Result<JobId, StoreError> {
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

/// A due index entry.
pub(crate) fn due_job(item: &Item) -> Result<DueJob, StoreError> {
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

pub(crate) fn attribute_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

/// Whether the job item found where `job` was to be created is `job` as
/// its creator wrote it: the same id (a ULID the creator drew) and creation
/// time. Its state may have moved on since (a processor may have claimed or
/// saved it already).
pub(crate) fn is_our_new_job(found: &Item, job: &Job) -> bool {
    parse_job(found).is_ok_and(|found| {
        found.id() == job.id() && found.tenant() == job.tenant() && found.created_at() == job.created_at()
    })
}

/// The shard an event's id picks: an event id is a ULID as a job id is, so
/// its random bits spread a tenant's events as they spread its jobs.
fn event_shard(id: EventId, shards: u16) -> u16 {
    id.to_string()
        .parse::<JobId>()
        .map_or(0, |as_ulid| as_ulid.shard(shards))
}

pub(crate) fn event_type_key(tenant: &TenantId, name: &EventType) -> Item {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(format!("etype#{tenant}"))),
        (SK.to_owned(), AttributeValue::S(name.as_str().to_owned())),
    ])
}

pub(crate) fn event_type_item(event_type: &EventTypeDef) -> Item {
    let mut item = event_type_key(&event_type.tenant, &event_type.name);
    item.insert(
        BODY.to_owned(),
        AttributeValue::S(domain::record::endpoint::encode_event_type(event_type)),
    );
    item
}

pub(crate) fn parse_event_type(item: &Item) -> Result<EventTypeDef, StoreError> {
    let body = body(item, "event type")?;
    domain::record::endpoint::decode_event_type(body)
        .map_err(|e| StoreError::Corrupt(format!("event type body: {e}")))
}

pub(crate) fn endpoint_key(tenant: &TenantId, id: EndpointId) -> Item {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(format!("endpoint#{tenant}"))),
        (SK.to_owned(), AttributeValue::S(id.to_string())),
    ])
}

/// An endpoint's item at `version`, its record's secrets sealed.
pub(crate) async fn endpoint_item(
    sealer: &Sealer,
    endpoint: &Endpoint,
    version: u64,
) -> Result<Item, StoreError> {
    let mut item = endpoint_key(&endpoint.tenant, endpoint.id);
    item.insert(
        BODY.to_owned(),
        AttributeValue::S(store::sealing::seal_endpoint(sealer, endpoint).await?),
    );
    item.insert(VERSION.to_owned(), AttributeValue::N(version.to_string()));
    if let Some(owner) = &endpoint.owner {
        item.insert(OWNER.to_owned(), AttributeValue::S(owner.as_str().to_owned()));
    }
    Ok(item)
}

/// An endpoint and its version from its item (its secrets sealed, or in
/// the clear as an earlier release stored them).
pub(crate) async fn parse_endpoint(sealer: &Sealer, item: &Item) -> Result<(Endpoint, u64), StoreError> {
    let endpoint = store::sealing::open_endpoint(sealer, body(item, "endpoint")?).await?;
    let version = version(item)
        .ok_or_else(|| StoreError::Corrupt(format!("endpoint item {} without a version", endpoint.id)))?;
    Ok((endpoint, version))
}

/// The `version` of a versioned item (an endpoint's, a source's).
fn version(item: &Item) -> Option<u64> {
    item.get(VERSION)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

/// The endpoint id an endpoint item's key names.
pub(crate) fn endpoint_id(item: &Item) -> Result<EndpointId, StoreError> {
    id_of_sort_key(item, "endpoint")
}

/// The id an item's sort key is (an endpoint's, an event's, a listed
/// source's): `what` names the kind, for the error.
fn id_of_sort_key<T: std::str::FromStr>(item: &Item, what: &str) -> Result<T, StoreError> {
    attribute_s(item, SK)
        .and_then(|sk| sk.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("{what} item without an id in its sort key")))
}

/// An event from its item: its record and the results its providers
/// settled (`result#{provider}`).
pub(crate) fn parse_event(item: &Item) -> Result<Event, StoreError> {
    let mut event = domain::record::event::decode_event(body(item, "event")?)
        .map_err(|e| StoreError::Corrupt(format!("event body: {e}")))?;
    for (name, value) in item {
        if let Some(provider) = name.strip_prefix(RESULT_PREFIX) {
            event.settled.insert(provider.to_owned(), parse_settled(value)?);
        }
    }
    Ok(event)
}

/// The attribute holding `provider`'s settled result on an event's item.
pub(crate) fn result_attribute(provider: &str) -> String {
    format!("{RESULT_PREFIX}{provider}")
}

pub(crate) fn settled_value(settled: &SettledResult) -> AttributeValue {
    AttributeValue::S(domain::record::event::encode_settled(settled))
}

pub(crate) fn parse_settled(value: &AttributeValue) -> Result<SettledResult, StoreError> {
    let text = value
        .as_s()
        .map_err(|_| StoreError::Corrupt("event result that is not a string".to_owned()))?;
    domain::record::event::decode_settled(text).map_err(|e| StoreError::Corrupt(format!("event result: {e}")))
}

/// The event id an event item's key names.
pub(crate) fn event_id(item: &Item) -> Result<EventId, StoreError> {
    id_of_sort_key(item, "event")
}

/// The item of an event's idempotency key: `event`'s id, `key`'s
/// fingerprint and window.
pub(crate) fn event_key_item(event: &Event, key: &store::IdempotencyRecord) -> Item {
    HashMap::from([
        (
            PK.to_owned(),
            AttributeValue::S(format!("ekey#{}#{}", event.tenant, key.key_hash)),
        ),
        (SK.to_owned(), AttributeValue::S(EKEY_SK.to_owned())),
        (IDEM_EVENT_ID.to_owned(), AttributeValue::S(event.id.to_string())),
        (
            IDEM_FINGERPRINT.to_owned(),
            AttributeValue::S(key.fingerprint.clone()),
        ),
        (EXPIRES_AT.to_owned(), number(key.expires_at.timestamp())),
    ])
}

/// What an event's idempotency key item names: the event and the request's
/// fingerprint.
pub(crate) fn event_key_record(item: &Item) -> Result<(EventId, String), StoreError> {
    let corrupt =
        || StoreError::Corrupt("event idempotency key without an event id or fingerprint".to_owned());
    let event_id = attribute_s(item, IDEM_EVENT_ID)
        .and_then(|id| id.parse().ok())
        .ok_or_else(corrupt)?;
    let fingerprint = attribute_s(item, IDEM_FINGERPRINT).ok_or_else(corrupt)?;
    Ok((event_id, fingerprint.to_owned()))
}

/// The key of a source's own item, found by its id alone.
pub(crate) fn source_key(id: SourceId) -> Item {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(format!("source#{id}"))),
        (SK.to_owned(), AttributeValue::S(SOURCE_SK.to_owned())),
    ])
}

/// The key of a source's listing item, in its tenant's partition.
pub(crate) fn source_listing_key(tenant: &TenantId, id: SourceId) -> Item {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(format!("sources#{tenant}"))),
        (SK.to_owned(), AttributeValue::S(id.to_string())),
    ])
}

/// A source's own item at `version`: its tenant, version and `body`, its
/// record with the secrets sealed (`store::sealing::seal_source`).
pub(crate) fn source_item(source: &Source, body: &str, version: u64) -> Item {
    let mut item = source_key(source.id);
    item.insert(TENANT.to_owned(), AttributeValue::S(source.tenant.to_string()));
    item.extend(source_body(body, version));
    item
}

/// A source's listing item at `version`: the same record and version.
pub(crate) fn source_listing_item(source: &Source, body: &str, version: u64) -> Item {
    let mut item = source_listing_key(&source.tenant, source.id);
    item.extend(source_body(body, version));
    item
}

fn source_body(body: &str, version: u64) -> [(String, AttributeValue); 2] {
    [
        (BODY.to_owned(), AttributeValue::S(body.to_owned())),
        (VERSION.to_owned(), AttributeValue::N(version.to_string())),
    ]
}

/// A source and its version from its own item or its listing item.
pub(crate) async fn parse_source(sealer: &Sealer, item: &Item) -> Result<(Source, u64), StoreError> {
    let source = store::sealing::open_source(sealer, body(item, "source")?).await?;
    let version = version(item)
        .ok_or_else(|| StoreError::Corrupt(format!("source item {} without a version", source.id)))?;
    Ok((source, version))
}

/// The source id a listing item's key names.
pub(crate) fn source_id(item: &Item) -> Result<SourceId, StoreError> {
    id_of_sort_key(item, "source")
}

/// The item of a request a source received, expiring (TTL) at
/// `expires_at`.
pub(crate) fn source_request_item(request: &SourceRequest, expires_at: Timestamp) -> Item {
    HashMap::from([
        (
            PK.to_owned(),
            AttributeValue::S(source_requests_partition(request.source)),
        ),
        (SK.to_owned(), AttributeValue::S(request.id.to_string())),
        (TENANT.to_owned(), AttributeValue::S(request.tenant.to_string())),
        (
            BODY.to_owned(),
            AttributeValue::S(domain::record::source::encode_source_request(request)),
        ),
        (EXPIRES_AT.to_owned(), number(expires_at.timestamp())),
    ])
}

/// The partition of the requests `source` received.
pub(crate) fn source_requests_partition(source: SourceId) -> String {
    format!("srcreq#{source}")
}

pub(crate) fn parse_source_request(item: &Item) -> Result<SourceRequest, StoreError> {
    domain::record::source::decode_source_request(body(item, "source request")?)
        .map_err(|e| StoreError::Corrupt(format!("source request body: {e}")))
}

/// The `body` text of an event type, endpoint, event, source or source
/// request item.
fn body<'a>(item: &'a Item, what: &str) -> Result<&'a str, StoreError> {
    attribute_s(item, BODY).ok_or_else(|| StoreError::Corrupt(format!("{what} item without a body")))
}
