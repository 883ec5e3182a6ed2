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

/// The happy path's write cost, as DynamoDB reports it (index writes
/// included): what ARCHITECTURE.md states, measured. A job with one
/// provider is created, claimed, and saved complete in one write, its
/// attempt history included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_job_costs_the_write_units_the_design_says() {
    use domain::{CallbackOutcome, FetchOutcome, RetryPolicy};
    use rand::SeedableRng;
    use store::Fenced;
    use store::conformance::{at, lease, new_job};

    let store = fresh_store().await;
    const JOBS: u32 = 5;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for n in 0..JOBS {
        let job = new_job("acme", &["gas"], at(0), u64::from(n));
        store.create_job(&job).await.expect("create");
        let held = lease("p1", at(60));
        let store::Claim::Won { job: claimed, .. } = store.claim(job.id, &held, at(1)).await.expect("claim")
        else {
            panic!("claim lost");
        };
        let mut claimed = *claimed;
        let policy = RetryPolicy::default();
        // The attempt history as the processor keeps it: a row per call.
        for (provider, status) in [(Some("gas"), 200), (None, 204)] {
            claimed.record_attempt(domain::Attempt {
                provider: provider.map(str::to_owned),
                at: at(1),
                duration_ms: 1234,
                status: Some(status),
                error: None,
                body: None,
            });
        }
        claimed.record_fetch(
            "gas",
            FetchOutcome::Ok {
                status: 200,
                data: serde_json::json!([{"amount": 22.27}]),
            },
            at(1),
            &policy,
            &mut rng,
        );
        claimed.record_callback(
            CallbackOutcome::Delivered { status: 204 },
            at(2),
            &policy,
            &mut rng,
        );
        assert_eq!(
            store.save(&claimed, &held, at(2)).await.expect("save"),
            Fenced::Written
        );
    }
    let spent = store.capacity().snapshot();
    let per_job = |operation: &str| {
        let units = spent
            .get(operation)
            .copied()
            .unwrap_or_else(|| panic!("{operation} was not measured: {spent:?}"));
        assert_eq!(units.calls, u64::from(JOBS), "{operation}: {spent:?}");
        (units.table / f64::from(JOBS), units.indexes / f64::from(JOBS))
    };
    let (create, claim, save) = (per_job("put job"), per_job("claim job"), per_job("save job"));
    println!(
        "write units per delivered job (table + indexes): create {create:?}, claim {claim:?}, save {save:?}"
    );
    assert_eq!(
        create,
        (1.0, 2.0),
        "the item, its due entry and its listing entry"
    );
    assert_eq!(
        claim,
        (1.0, 1.0),
        "the item and the lease projected into the due index"
    );
    assert_eq!(
        save,
        (1.0, 3.0),
        "the item, the due entry removed, the listing entry moved"
    );
    let total = [create, claim, save].iter().map(|(t, i)| t + i).sum::<f64>();
    assert_eq!(total, 9.0);
}
