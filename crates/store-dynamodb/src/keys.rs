//! [`KeyStore`] on DynamoDB: API keys in the one `apikeys` partition and
//! each tenant's signing secrets in an item of its own, in the jobs' table.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity, ReturnValue};
use domain::{KeyHash, TenantId, TenantSecrets, Timestamp};
use store::{ApiKeyRecord, KeyStore, StoreError};
use telemetry::Access;

use crate::DynamoStore;
use crate::attempts::{WriteAttempts, unavailable};
use crate::codec::{Item, key_record, number};
use crate::schema::*;
use crate::write::Written;

impl DynamoStore {
    /// Every key item whose sort key starts with `prefix`, all pages.
    async fn query_keys(&self, prefix: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut records = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(&self.config().table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", AttributeValue::S(KEYS_PK.to_owned()))
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                .send()
                .await
                .map_err(|e| unavailable("query API keys", e))?;
            self.capacity()
                .record("query API keys", Access::Read, page.consumed_capacity());
            for item in page.items() {
                records.push(key_record(item)?);
            }
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(records),
            }
        }
    }
}

#[async_trait]
impl KeyStore for DynamoStore {
    async fn signing_secrets(&self, tenant: &TenantId) -> Result<Option<(TenantSecrets, u64)>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(&self.config().table)
            .set_key(Some(Self::secrets_key(tenant)))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(|e| unavailable("get signing secrets", e))?;
        self.capacity()
            .record("get signing secrets", Access::Read, output.consumed_capacity());
        let Some(item) = output.item else { return Ok(None) };
        let corrupt = || StoreError::Corrupt("signing secrets item without secrets or version".to_owned());
        let body = item
            .get(SECRETS)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(corrupt)?;
        let version: u64 = item
            .get(VERSION)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(corrupt)?;
        let secrets = store::sealing::open_signing_secrets(self.sealer(), tenant, body).await?;
        Ok(Some((secrets, version)))
    }

    async fn put_signing_secrets(
        &self,
        tenant: &TenantId,
        secrets: &TenantSecrets,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        let body = store::sealing::seal_signing_secrets(self.sealer(), tenant, secrets).await?;
        let mut item = Self::secrets_key(tenant);
        item.insert(SECRETS.to_owned(), AttributeValue::S(body));
        let put = self.client().put_item().table_name(&self.config().table);
        let put = match expected {
            None => put
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK),
            Some(version) => put
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":expected", AttributeValue::N(version.to_string())),
        };
        let next = expected.map_or(1, |v| v.saturating_add(1));
        item.insert(VERSION.to_owned(), AttributeValue::N(next.to_string()));
        let written = item.get(SECRETS).cloned();
        let put = put.set_item(Some(item));
        match self
            .write("put signing secrets", put, &WriteAttempts::default())
            .await?
        {
            Written::Applied(_) => Ok(true),
            // Our version with our secrets: an attempt whose answer was lost.
            Written::Refused { found, maybe_applied } => Ok(maybe_applied
                && found.is_some_and(|found| {
                    found.get(SECRETS) == written.as_ref()
                        && found.get(VERSION) == Some(&AttributeValue::N(next.to_string()))
                })),
        }
    }

    async fn create_api_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut item = Self::key_item_key(&record.hash);
        item.insert(TENANT.to_owned(), AttributeValue::S(record.tenant.to_string()));
        item.insert(
            CREATED_AT.to_owned(),
            number(record.created_at.timestamp_millis()),
        );
        if let Some(revoked) = record.revoked_at {
            item.insert(REVOKED_AT.to_owned(), number(revoked.timestamp_millis()));
        }
        let hash = item.get(SK).cloned();
        self.put_new(item, "put API key", |found| found.get(SK) == hash.as_ref())
            .await
    }

    async fn find_api_key(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(&self.config().table)
            .set_key(Some(Self::key_item_key(hash)))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(|e| unavailable("get API key", e))?;
        self.capacity()
            .record("get API key", Access::Read, output.consumed_capacity());
        output.item.as_ref().map(key_record).transpose()
    }

    async fn list_api_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut records = self.query_keys("key#").await?;
        records.retain(|r| tenant.is_none_or(|t| r.tenant == *t));
        records.sort_by_key(|r| (r.created_at, r.hash.to_hex()));
        Ok(records)
    }

    async fn revoke_api_key(&self, key_id: &str, now: Timestamp) -> Result<Option<ApiKeyRecord>, StoreError> {
        if !store::is_key_id(key_id) {
            return Ok(None);
        }
        let found = self.query_keys(&format!("key#{key_id}")).await?;
        let [record] = found.as_slice() else {
            // None, or an id two keys share (one in 2^48): revoke neither.
            return Ok(None);
        };
        let update = self
            .client()
            .update_item()
            .table_name(&self.config().table)
            .set_key(Some(Self::key_item_key(&record.hash)))
            .update_expression("SET #revoked = if_not_exists(#revoked, :now)")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#revoked", REVOKED_AT)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":now", number(now.timestamp_millis()))
            .return_values(ReturnValue::AllNew);
        match self
            .write("revoke API key", update, &WriteAttempts::default())
            .await?
        {
            Written::Applied(output) => output.attributes.as_ref().map(key_record).transpose(),
            // The key is gone since it was read (keys are never deleted
            // today, so this is a key that never was): nothing to revoke.
            Written::Refused { .. } => Ok(None),
        }
    }
}
