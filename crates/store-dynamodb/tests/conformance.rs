//! The shared `JobStore` conformance suite on DynamoDB Local, plus what is
//! particular to DynamoDB: the table command and the item size limit.

use std::sync::Arc;

use store::JobStore;
use store_dynamodb::{DynamoConfig, DynamoStore, TableStatus, create_table};

async fn fresh_store() -> DynamoStore {
    let config = DynamoConfig::new(testkit::unique_table_name("conformance"))
        .with_endpoint(testkit::dynamodb_endpoint());
    let store = DynamoStore::connect(config).await;
    create_table(store.client(), &store.config().table)
        .await
        .expect("create table");
    store
}

store::conformance_suite!(Arc::new(fresh_store().await));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_create_is_idempotent_and_enables_ttl() {
    let store = fresh_store().await;
    let table = &store.config().table;
    assert_eq!(
        create_table(store.client(), table).await.expect("again"),
        TableStatus::AlreadyExisted
    );
    let ttl = store
        .client()
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .expect("describe ttl");
    assert_eq!(
        ttl.time_to_live_description().and_then(|d| d.attribute_name()),
        Some("expiresAt")
    );
    store.ping().await.expect("ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_fails_cleanly_without_a_table() {
    let config = DynamoConfig::new("no-such-table").with_endpoint(testkit::dynamodb_endpoint());
    let store = DynamoStore::connect(config).await;
    let err = store.ping().await.expect_err("no table");
    assert!(err.to_string().contains("store unavailable"), "{err}");
}
