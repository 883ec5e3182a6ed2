//! The table's shape, in one place: attribute names, the due and dead-letter indexes, and
//! `create_table`, which makes the table, its indexes and TTL idempotently.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus as SdkTableStatus, TimeToLiveSpecification,
    TimeToLiveStatus,
};

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

/// What `create_table` found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableStatus {
    Created,
    AlreadyExisted,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CreateTableError(String);

/// Creates the table with its due and dead-letter indexes (on-demand billing) and enables TTL
/// on `expiresAt`. Safe to run again: an existing table is left as it is and
/// only TTL is switched on if it is off.
pub async fn create_table(client: &Client, table: &str) -> Result<TableStatus, CreateTableError> {
    let status = match client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(PK, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(SK, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(DUE_SHARD, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(DUE_AT, ScalarAttributeType::N)?)
        .attribute_definitions(attribute(DEAD_KEY, ScalarAttributeType::S)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(DUE_INDEX)
                .key_schema(key(DUE_SHARD, KeyType::Hash)?)
                .key_schema(key(DUE_AT, KeyType::Range)?)
                // The poll reads only ids, due times and leases; projecting
                // nothing else keeps index writes at one unit.
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .non_key_attributes(LEASE_UNTIL)
                        .build(),
                )
                .build()
                .map_err(build_error)?,
        )
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(DEAD_INDEX)
                // `{tenant}#{shard}` of failed jobs only (sparse): the dead
                // letter is a Query however long the history.
                .key_schema(key(DEAD_KEY, KeyType::Hash)?)
                .key_schema(key(SK, KeyType::Range)?)
                .projection(keys_only())
                .build()
                .map_err(build_error)?,
        )
        .send()
        .await
    {
        Ok(_) => TableStatus::Created,
        Err(err) if err.code() == Some("ResourceInUseException") => TableStatus::AlreadyExisted,
        Err(err) => {
            return Err(CreateTableError(format!(
                "creating table {table}: {}",
                DisplayErrorContext(&err)
            )));
        }
    };
    wait_until_active(client, table).await?;
    enable_ttl(client, table).await?;
    Ok(status)
}

async fn wait_until_active(client: &Client, table: &str) -> Result<(), CreateTableError> {
    for _ in 0..120 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| {
                CreateTableError(format!("describing table {table}: {}", DisplayErrorContext(&e)))
            })?;
        let active = described
            .table()
            .and_then(|t| t.table_status())
            .is_some_and(|s| *s == SdkTableStatus::Active);
        if active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(CreateTableError(format!(
        "table {table} did not become active within a minute"
    )))
}

async fn enable_ttl(client: &Client, table: &str) -> Result<(), CreateTableError> {
    let current = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| CreateTableError(format!("reading TTL of {table}: {}", DisplayErrorContext(&e))))?;
    let enabled = current.time_to_live_description().is_some_and(|d| {
        d.attribute_name() == Some(EXPIRES_AT)
            && matches!(
                d.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            )
    });
    if enabled {
        return Ok(());
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(EXPIRES_AT)
                .build()
                .map_err(build_error)?,
        )
        .send()
        .await
        .map_err(|e| CreateTableError(format!("enabling TTL on {table}: {}", DisplayErrorContext(&e))))?;
    Ok(())
}

fn keys_only() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::KeysOnly)
        .build()
}

fn attribute(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, CreateTableError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .map_err(build_error)
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, CreateTableError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(build_error)
}

fn build_error(err: aws_sdk_dynamodb::error::BuildError) -> CreateTableError {
    CreateTableError(format!("building the table definition: {err}"))
}
