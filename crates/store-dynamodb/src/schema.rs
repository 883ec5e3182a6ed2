//! The table's attribute names, and `create_table`, which makes the table
//! [`Layout::needed`] describes, or brings an existing one to it where that
//! is safe.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType, Projection as SdkProjection, ProjectionType,
    ScalarAttributeType, TableDescription, TableStatus as SdkTableStatus, TimeToLiveSpecification,
};

use crate::layout::{Difference, Index, KeyAttribute, Keys, Layout, Projection};

pub(crate) const PK: &str = "pk";
pub(crate) const SK: &str = "sk";
/// A job's sort key is `job#{id}`; ids are ULIDs, so a partition of one
/// tenant's jobs sorts by creation time.
pub(crate) const JOB_SK_PREFIX: &str = "job#";
pub(crate) const TENANT: &str = "tenant";
pub(crate) const STATUS: &str = "status";
pub(crate) const CREATED_AT: &str = "createdAt";
pub(crate) const JOB: &str = "job";
pub(crate) const DUE_SHARD: &str = "dueShard";
pub(crate) const DUE_AT: &str = "dueAt";
pub(crate) const LEASE_ID: &str = "leaseId";
pub(crate) const LEASE_OWNER: &str = "leaseOwner";
pub(crate) const LEASE_UNTIL: &str = "leaseUntil";
pub(crate) const EXPIRES_AT: &str = "expiresAt";
pub(crate) const DUE_INDEX: &str = "due";
/// The partition holding every API key (`sk = key#{sha256 hex}`): keys are
/// few, and intake caches what it reads.
pub(crate) const KEYS_PK: &str = "apikeys";
pub(crate) const REVOKED_AT: &str = "revokedAt";
/// `Idempotency-Key` items: `pk = idem#{tenant}#{sha256 of the key}`,
/// `sk = idem`, removed by TTL (`expiresAt`) after the window.
pub(crate) const IDEM_SK: &str = "idem";
/// Signing secrets: `pk = tenant#{name}`, `sk = secrets`, the JSON in
/// `secrets`, and `version` for compare-and-set rotations.
pub(crate) const SECRETS_SK: &str = "secrets";
pub(crate) const SECRETS: &str = "secrets";
pub(crate) const VERSION: &str = "version";
pub(crate) const IDEM_JOB_ID: &str = "jobId";
pub(crate) const IDEM_FINGERPRINT: &str = "fingerprint";
/// `{tenant}#{shard}`, present only while a job is `failed`: puts it in the
/// `dead` GSI, the dead letter, which costs nothing on the happy path.
pub(crate) const DEAD_KEY: &str = "deadKey";
pub(crate) const DEAD_INDEX: &str = "dead";
/// Event types, endpoints and events (SPEC 9) keep their stored record
/// (`domain::record`) in `body`. Event types: `pk = etype#{tenant}`,
/// `sk = {name}`. Endpoints: `pk = endpoint#{tenant}`, `sk = {id}`, with
/// `version` for compare-and-set updates and `owner` for the listing's
/// filter. Events: `pk = event#{tenant}#NNN` (sharded as jobs are),
/// `sk = {id}`, with `eventType` and `owner` for the listing's filters.
pub(crate) const BODY: &str = "body";
pub(crate) const OWNER: &str = "owner";
pub(crate) const EVENT_TYPE: &str = "eventType";
/// A thin event's provider result, settled once (SPEC section 9):
/// `result#{provider}` on the event's item, its record
/// (`domain::record::event::encode_settled`), written only if absent.
pub(crate) const RESULT_PREFIX: &str = "result#";
/// An event's `Idempotency-Key`: `pk = ekey#{tenant}#{sha256 of the key}`,
/// `sk = ekey`, with `eventId`, `fingerprint` and `expiresAt`; apart from
/// the jobs' keys, so one key names a job or an event, never one for the other.
pub(crate) const EKEY_SK: &str = "ekey";
pub(crate) const IDEM_EVENT_ID: &str = "eventId";
/// Inbound sources (SPEC 11), found by id alone (`POST /in/{id}` names no
/// tenant) and listed per tenant, without a Scan or an index: two items per
/// source, written together in one transaction. The source's own item,
/// `pk = source#{id}`, `sk = source`, with `tenant`, `version` (for
/// compare-and-set updates) and its record in `body`; and its listing item
/// in its tenant's partition, `pk = sources#{tenant}`, `sk = {id}` (ULIDs:
/// oldest first), with the same `body` and `version`. The requests a
/// source received: `pk = srcreq#{source id}`, `sk = {request id}`
/// (newest last), with `tenant`, `body` and `expiresAt` (received plus the
/// retention), removed by TTL.
pub(crate) const SOURCE_SK: &str = "source";

/// What `create_table` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableStatus {
    Created,
    /// The table was there already. `changed` is what it lacked and has now
    /// (a missing index, TTL); empty when it matched.
    Exists {
        changed: Vec<Difference>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CreateTableError {
    /// The table exists in a shape hookline cannot use and cannot change it
    /// into; it was left as it was. `differences` holds every way it
    /// differs, the changes that could have been made included.
    #[error(
        "table {table} is not laid out as hookline needs and was left unchanged: {}",
        join(differences)
    )]
    Unfit {
        table: String,
        differences: Vec<Difference>,
    },
    #[error("{0}")]
    Dynamo(String),
}

fn join(differences: &[Difference]) -> String {
    differences
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Makes `table` laid out as [`Layout::needed`] says: creates it (on-demand
/// billing) with its indexes and TTL, or, when it exists, compares it with
/// that layout. Additions are made (a missing index, TTL switched on) and
/// returned in [`TableStatus::Exists`]; if anything else differs (the
/// table's keys, an index's keys or projection, TTL on another attribute)
/// nothing is changed and the answer is [`CreateTableError::Unfit`]. Safe to
/// run again.
pub async fn create_table(client: &Client, table: &str) -> Result<TableStatus, CreateTableError> {
    let needed = Layout::needed();
    let mut create = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(attribute_definitions(&needed.keys, &needed.indexes)?))
        .set_key_schema(Some(key_schema(&needed.keys)?));
    for index in &needed.indexes {
        create = create.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.name)
                .set_key_schema(Some(key_schema(&index.keys)?))
                .projection(projection(&index.projection))
                .build()
                .map_err(build_error)?,
        );
    }
    let created = match create.send().await {
        Ok(_) => true,
        Err(err) if err.code() == Some("ResourceInUseException") => false,
        Err(err) => {
            return Err(dynamo(format!("creating table {table}"), err));
        }
    };
    let existing = wait_until_active(client, table).await?;
    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| dynamo(format!("reading TTL of {table}"), e))?;
    let differences = needed.differences(&Layout::described(&existing, ttl.time_to_live_description()));
    if !differences.iter().all(Difference::can_apply) {
        return Err(CreateTableError::Unfit {
            table: table.to_owned(),
            differences,
        });
    }
    for difference in &differences {
        apply(client, table, difference).await?;
    }
    Ok(if created {
        // A new table's only addition is TTL, which CreateTable cannot set.
        TableStatus::Created
    } else {
        TableStatus::Exists { changed: differences }
    })
}

/// Makes one change [`Difference::can_apply`] allows.
async fn apply(client: &Client, table: &str, difference: &Difference) -> Result<(), CreateTableError> {
    match difference {
        Difference::MissingIndex(index) => {
            // DynamoDB builds one index per table at a time: while another
            // is still being built (the table stays ACTIVE meanwhile) it
            // refuses with LimitExceededException, so that is waited out.
            let mut waited = 0;
            loop {
                let sent = client
                    .update_table()
                    .table_name(table)
                    .set_attribute_definitions(Some(attribute_definitions(&index.keys, &[])?))
                    .global_secondary_index_updates(
                        GlobalSecondaryIndexUpdate::builder()
                            .create(
                                CreateGlobalSecondaryIndexAction::builder()
                                    .index_name(&index.name)
                                    .set_key_schema(Some(key_schema(&index.keys)?))
                                    .projection(projection(&index.projection))
                                    .build()
                                    .map_err(build_error)?,
                            )
                            .build(),
                    )
                    .send()
                    .await;
                match sent {
                    Ok(_) => break,
                    Err(err)
                        if err.code() == Some("LimitExceededException") && waited < INDEX_BUILD_WAIT_SECS =>
                    {
                        waited += 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(err) => return Err(dynamo(format!("creating index {} on {table}", index.name), err)),
                }
            }
            wait_until_active(client, table).await?;
        }
        Difference::TtlOff { needed } => {
            client
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(needed)
                        .build()
                        .map_err(build_error)?,
                )
                .send()
                .await
                .map_err(|e| dynamo(format!("enabling TTL on {table}"), e))?;
        }
        other => unreachable!("create_table applies only what can_apply allows, not {other:?}"),
    }
    Ok(())
}

fn dynamo<E: std::error::Error + 'static>(doing: String, err: E) -> CreateTableError {
    CreateTableError::Dynamo(format!("{doing}: {}", DisplayErrorContext(&err)))
}

/// How long `table create` waits for DynamoDB to finish building another
/// index before it adds the next.
const INDEX_BUILD_WAIT_SECS: u32 = 600;

/// The table's description once it is active.
async fn wait_until_active(client: &Client, table: &str) -> Result<TableDescription, CreateTableError> {
    for _ in 0..120 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| dynamo(format!("describing table {table}"), e))?;
        if let Some(description) = described.table
            && description.table_status() == Some(&SdkTableStatus::Active)
        {
            return Ok(description);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(CreateTableError::Dynamo(format!(
        "table {table} did not become active within a minute"
    )))
}

/// The definitions of `keys` and the keys of `indexes`, each attribute once.
fn attribute_definitions(
    keys: &Keys,
    indexes: &[Index],
) -> Result<Vec<AttributeDefinition>, CreateTableError> {
    let mut seen: Vec<&KeyAttribute> = Vec::new();
    for attribute in std::iter::once(keys)
        .chain(indexes.iter().map(|i| &i.keys))
        .flat_map(|k| std::iter::once(&k.partition).chain(k.sort.as_ref()))
    {
        if !seen.iter().any(|s| s.name == attribute.name) {
            seen.push(attribute);
        }
    }
    seen.into_iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(&a.name)
                .attribute_type(ScalarAttributeType::from(a.kind.as_str()))
                .build()
                .map_err(build_error)
        })
        .collect()
}

fn key_schema(keys: &Keys) -> Result<Vec<KeySchemaElement>, CreateTableError> {
    std::iter::once((&keys.partition, KeyType::Hash))
        .chain(keys.sort.as_ref().map(|s| (s, KeyType::Range)))
        .map(|(a, kind)| {
            KeySchemaElement::builder()
                .attribute_name(&a.name)
                .key_type(kind)
                .build()
                .map_err(build_error)
        })
        .collect()
}

fn projection(projection: &Projection) -> SdkProjection {
    match projection {
        Projection::KeysOnly => SdkProjection::builder()
            .projection_type(ProjectionType::KeysOnly)
            .build(),
        Projection::Include(names) => SdkProjection::builder()
            .projection_type(ProjectionType::Include)
            .set_non_key_attributes(Some(names.clone()))
            .build(),
        Projection::All => SdkProjection::builder()
            .projection_type(ProjectionType::All)
            .build(),
    }
}

fn build_error(err: aws_sdk_dynamodb::error::BuildError) -> CreateTableError {
    CreateTableError::Dynamo(format!("building the table definition: {err}"))
}
