//! `hookline table create` on tables it did not make: one missing an index
//! and TTL gets them, each addition on its own line; one with other keys is
//! refused, a line per problem on stderr, exit 1.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

use crate::support::{hookline, setup, table_create};

/// A table made by hand with the string keys `pk` and `sort`, on-demand,
/// with no index and no TTL.
async fn hand_made_table(endpoint: &str, table: &str, sort: &str) {
    let client = store_dynamodb::DynamoConfig::new(table)
        .with_endpoint(endpoint)
        .client()
        .await;
    let mut create = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for (name, kind) in [("pk", KeyType::Hash), (sort, KeyType::Range)] {
        create = create
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()
                    .expect("key"),
            );
    }
    create.send().await.expect("create the table by hand");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_create_adds_what_an_existing_table_lacks_and_says_so() {
    let setup = setup().await;
    hand_made_table(&setup.endpoint, &setup.table, "sk").await;
    let table = &setup.table;
    assert_eq!(
        table_create(&setup.store),
        format!(
            "table {table} already exists; added what it lacked:\n\
             \x20 index `due` was missing: created it keyed dueShard (S) / dueAt (N), projecting leaseUntil\n\
             \x20 index `dead` was missing: created it keyed deadKey (S) / sk (S), projecting keys only\n\
             \x20 TTL was off: enabled it on expiresAt\n"
        )
    );
    assert_eq!(
        table_create(&setup.store),
        format!("table {table} already exists and matches what hookline needs\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_create_refuses_a_table_with_other_keys() {
    let setup = setup().await;
    hand_made_table(&setup.endpoint, &setup.table, "id").await;
    let table = &setup.table;
    let output = hookline(&["table", "create", "--store", &setup.store]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "hookline: table {table}: key schema is pk (S) / id (S), hookline needs pk (S) / sk (S): \
             a table's keys cannot change; create a new table\n\
             hookline: table {table} is not laid out as hookline needs; left it unchanged\n"
        )
    );
}
