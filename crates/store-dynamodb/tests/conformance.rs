//! The shared `JobStore` conformance suite on DynamoDB Local, plus what is
//! particular to DynamoDB: the table command and the item size limit.

use std::sync::Arc;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveStatus,
};
use store::JobStore;
use store_dynamodb::{CreateTableError, Difference, DynamoConfig, DynamoStore, TableStatus, create_table};

/// A sealer of its own (stores that share a table share one).
fn sealer() -> std::sync::Arc<seal::Sealer> {
    std::sync::Arc::new(seal::Sealer::ephemeral().expect("an in-memory sealer"))
}

async fn fresh_store() -> DynamoStore {
    let config = DynamoConfig::new(testkit::unique_table_name("conformance"))
        .with_endpoint(testkit::dynamodb_endpoint());
    let store = DynamoStore::connect(config, sealer()).await;
    create_table(store.client(), &store.config().table)
        .await
        .expect("create table");
    store
}

store::conformance_suite!(Arc::new(fresh_store().await));

/// `create_table` on the table it made finds it matches and changes
/// nothing; TTL is on `expiresAt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_create_again_finds_the_table_matches() {
    let store = fresh_store().await;
    let table = &store.config().table;
    assert_eq!(
        create_table(store.client(), table).await.expect("again"),
        TableStatus::Exists { changed: vec![] }
    );
    assert_eq!(
        ttl_attribute(store.client(), table).await.as_deref(),
        Some("expiresAt")
    );
    store.ping().await.expect("ping");
}

/// A table made by hand with hookline's keys and `due` index but no `dead`
/// index and no TTL gets both, and `create_table` says so; run again, it
/// has nothing left to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_create_adds_a_missing_index_and_ttl_to_an_existing_table() {
    let (client, table) = hand_made_table(&[("pk", KeyType::Hash), ("sk", KeyType::Range)], true).await;
    let status = create_table(&client, &table).await.expect("create_table");
    let TableStatus::Exists { changed } = &status else {
        panic!("the table existed: {status:?}");
    };
    let said: Vec<String> = changed.iter().map(ToString::to_string).collect();
    assert_eq!(
        said,
        [
            "index `dead` is missing: would create it keyed deadKey (S) / sk (S), projecting keys only",
            "TTL is off: would enable it on expiresAt",
        ]
    );
    let applied: Vec<String> = changed.iter().map(Difference::applied).collect();
    assert_eq!(
        applied,
        [
            "index `dead` was missing: created it keyed deadKey (S) / sk (S), projecting keys only",
            "TTL was off: enabled it on expiresAt",
        ]
    );

    let described = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("describe");
    let dead = described
        .table()
        .and_then(|t| {
            t.global_secondary_indexes()
                .iter()
                .find(|i| i.index_name() == Some("dead"))
        })
        .expect("the dead index is there");
    assert_eq!(
        dead.projection().and_then(|p| p.projection_type()),
        Some(&ProjectionType::KeysOnly)
    );
    assert_eq!(ttl_attribute(&client, &table).await.as_deref(), Some("expiresAt"));
    assert_eq!(
        create_table(&client, &table).await.expect("again"),
        TableStatus::Exists { changed: vec![] }
    );
}

/// A table keyed `pk`/`id` cannot become hookline's: `create_table` refuses,
/// naming the key schema, and leaves the table as it was (no index, no TTL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_create_refuses_a_table_with_other_keys_and_leaves_it_alone() {
    let (client, table) = hand_made_table(&[("pk", KeyType::Hash), ("id", KeyType::Range)], false).await;
    let err = create_table(&client, &table).await.expect_err("wrong keys");
    let CreateTableError::Unfit { differences, .. } = &err else {
        panic!("refused for its layout: {err}");
    };
    assert_eq!(
        differences.first().map(ToString::to_string).as_deref(),
        Some(
            "key schema is pk (S) / id (S), hookline needs pk (S) / sk (S): a table's keys cannot \
             change; create a new table"
        )
    );
    assert!(differences.iter().any(|d| !d.can_apply()));
    assert!(err.to_string().contains("key schema is pk (S) / id (S)"), "{err}");

    let described = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("describe");
    assert_eq!(
        described.table().map(|t| t.global_secondary_indexes().len()),
        Some(0),
        "no index added"
    );
    assert_eq!(ttl_attribute(&client, &table).await, None, "TTL left off");
}

/// A new table made directly with the SDK, as someone might by hand: the
/// string keys `keys`, on-demand, and the `due` index if `with_due` (no
/// `dead` index, no TTL).
async fn hand_made_table(keys: &[(&str, KeyType)], with_due: bool) -> (aws_sdk_dynamodb::Client, String) {
    let table = testkit::unique_table_name("by-hand");
    let config = DynamoConfig::new(&table).with_endpoint(testkit::dynamodb_endpoint());
    let client = config.client().await;
    let definition = |name: &str, kind| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .expect("attribute")
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    let mut create = client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest);
    for (name, kind) in keys {
        create = create
            .attribute_definitions(definition(name, ScalarAttributeType::S))
            .key_schema(key(name, kind.clone()));
    }
    if with_due {
        create = create
            .attribute_definitions(definition("dueShard", ScalarAttributeType::S))
            .attribute_definitions(definition("dueAt", ScalarAttributeType::N))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name("due")
                    .key_schema(key("dueShard", KeyType::Hash))
                    .key_schema(key("dueAt", KeyType::Range))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::Include)
                            .non_key_attributes("leaseUntil")
                            .build(),
                    )
                    .build()
                    .expect("index"),
            );
    }
    create.send().await.expect("create the table by hand");
    (client, table)
}

/// The attribute TTL is enabled (or being enabled) on, if any.
async fn ttl_attribute(client: &aws_sdk_dynamodb::Client, table: &str) -> Option<String> {
    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .expect("describe ttl");
    ttl.time_to_live_description()
        .filter(|d| {
            matches!(
                d.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            )
        })
        .and_then(|d| d.attribute_name())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_fails_cleanly_without_a_table() {
    let config = DynamoConfig::new("no-such-table").with_endpoint(testkit::dynamodb_endpoint());
    let store = DynamoStore::connect(config, sealer()).await;
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
        let store::Claim::Won { job: claimed, .. } = store
            .claim(job.tenant(), job.id(), &held, at(1))
            .await
            .expect("claim")
        else {
            panic!("claim lost");
        };
        let mut claimed = *claimed;
        let policy = RetryPolicy::default();
        // The attempt history as the processor keeps it: a row per call.
        let tried = |t| domain::Tried {
            at: at(t),
            took: Some(std::time::Duration::from_millis(1234)),
            body: None,
            headers: Default::default(),
        };
        claimed.record_fetch(
            "gas",
            FetchOutcome::Ok {
                status: 200,
                data: serde_json::json!([{"amount": 22.27}]),
            },
            tried(1),
            at(1),
            &policy,
            &mut rng,
        );
        claimed.record_delivery(
            CallbackOutcome::Delivered { status: 204 },
            tried(1),
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
        (1.0, 1.0),
        "the item and its due entry (the table itself is the listing)"
    );
    assert_eq!(
        claim,
        (1.0, 1.0),
        "the item and the lease projected into the due index"
    );
    assert_eq!(save, (1.0, 1.0), "the item and the due entry removed");
    let total = [create, claim, save].iter().map(|(t, i)| t + i).sum::<f64>();
    assert_eq!(total, 6.0);
}

/// Lengthening a lease rewrites the item and the lease projected into the
/// due index: 1 + 1 write units, measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_extension_costs_the_write_units_the_design_says() {
    use store::Fenced;
    use store::conformance::{at, lease, new_job};

    let store = fresh_store().await;
    let job = new_job("acme", &["gas"], at(0), 1);
    store.create_job(&job).await.expect("create");
    let held = lease("p1", at(60));
    assert!(matches!(
        store
            .claim(job.tenant(), job.id(), &held, at(1))
            .await
            .expect("claim"),
        store::Claim::Won { .. }
    ));
    assert_eq!(
        store
            .extend_lease(job.tenant(), job.id(), &held, at(900))
            .await
            .expect("extend"),
        Fenced::Written
    );
    let spent = store.capacity().snapshot();
    let units = spent.get("extend lease").copied().expect("measured");
    assert_eq!(units.calls, 1, "{spent:?}");
    assert_eq!(
        (units.table, units.indexes),
        (1.0, 1.0),
        "the item and the lease projected into the due index"
    );
}

/// API keys and signing secrets are paid for like jobs: every KeyStore
/// call shows in the meter, reads as read units and writes as write units.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_store_calls_are_metered_like_job_calls() {
    use domain::{ApiKey, SigningSecret, TenantId, TenantSecrets};
    use rand::SeedableRng;
    use store::conformance::at;
    use store::{ApiKeyRecord, KeyStore};
    use store_dynamodb::Access;

    let store = fresh_store().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let record = ApiKeyRecord {
        hash: ApiKey::generate(&mut rng).hash(),
        tenant: TenantId::new("acme"),
        created_at: at(1),
        revoked_at: None,
    };
    store.create_api_key(&record).await.expect("create key");
    assert_eq!(
        store.find_api_key(&record.hash).await.expect("find"),
        Some(record.clone())
    );
    assert_eq!(store.list_api_keys(None).await.expect("list").len(), 1);
    let revoked = store
        .revoke_api_key(&record.key_id(), at(2))
        .await
        .expect("revoke")
        .expect("the key is there");
    assert_eq!(revoked.revoked_at, Some(at(2)));
    let tenant = TenantId::new("acme");
    let secrets = TenantSecrets::new(SigningSecret::generate(&mut rng));
    assert!(
        store
            .put_signing_secrets(&tenant, &secrets, None)
            .await
            .expect("put")
    );
    let (_, version) = store
        .signing_secrets(&tenant)
        .await
        .expect("read")
        .expect("written");
    assert_eq!(version, 1);

    let spent = store.capacity().snapshot();
    println!("KeyStore capacity: {spent:?}");
    for (operation, access, calls) in [
        ("put API key", Access::Write, 1),
        ("get API key", Access::Read, 1),
        // The listing, then the revoke's lookup by key id.
        ("query API keys", Access::Read, 2),
        ("revoke API key", Access::Write, 1),
        ("put signing secrets", Access::Write, 1),
        ("get signing secrets", Access::Read, 1),
    ] {
        let units = spent
            .get(operation)
            .copied()
            .unwrap_or_else(|| panic!("{operation} was not measured: {spent:?}"));
        assert_eq!(units.access, access, "{operation}");
        assert_eq!(units.calls, calls, "{operation}: {spent:?}");
        assert!(units.total() > 0.0, "{operation} cost something: {units:?}");
    }
}

/// A processor's poll reads one due shard, the one it starts at, with one
/// query while that shard has work: processors starting at different shards
/// claim different jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_reads_the_shard_it_starts_at_alone() {
    use store::conformance::{at, new_job};

    let mut config =
        DynamoConfig::new(testkit::unique_table_name("shards")).with_endpoint(testkit::dynamodb_endpoint());
    config.shards = 4;
    let store = DynamoStore::connect(config, sealer()).await;
    create_table(store.client(), &store.config().table)
        .await
        .expect("create table");
    let jobs: Vec<domain::Job> = (0..48)
        .map(|n| new_job("acme", &["gas"], at(n), 1_000 + n as u64))
        .collect();
    for job in &jobs {
        store.create_job(job).await.expect("create");
    }
    let shard_of = |id: domain::JobId| id.shard(4);
    for start in 0..4u16 {
        let in_shard: Vec<domain::JobId> = jobs
            .iter()
            .map(|j| j.id())
            .filter(|id| shard_of(*id) == start)
            .collect();
        assert!(
            in_shard.len() >= 3,
            "seeded ids fill every shard: {}",
            in_shard.len()
        );
        let before = store
            .capacity()
            .snapshot()
            .get("query due index")
            .map_or(0, |u| u.calls);
        let due = store
            .due_jobs_from(at(100), 3, u64::from(start) + 4 * 1_000, &Default::default())
            .await
            .expect("due");
        let after = store
            .capacity()
            .snapshot()
            .get("query due index")
            .map_or(0, |u| u.calls);
        assert_eq!(after - before, 1, "one query when the first shard has work");
        assert_eq!(due.len(), 3);
        assert!(
            due.iter().all(|d| shard_of(d.id) == start),
            "start {start}: every job from shard {start}"
        );
        // Oldest first within the shard.
        let mut oldest: Vec<_> = jobs.iter().filter(|j| shard_of(j.id()) == start).collect();
        oldest.sort_by_key(|j| (j.due_at(), j.id()));
        let expected: Vec<domain::JobId> = oldest.iter().take(3).map(|j| j.id()).collect();
        assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), expected);
    }
    // An empty start shard hands over to the next in the ring with work.
    let mut config =
        DynamoConfig::new(testkit::unique_table_name("shards")).with_endpoint(testkit::dynamodb_endpoint());
    config.shards = 4;
    let sparse = DynamoStore::connect(config, sealer()).await;
    create_table(sparse.client(), &sparse.config().table)
        .await
        .expect("create table");
    let mut only_shard_2: Vec<domain::JobId> = Vec::new();
    for job in jobs.iter().filter(|j| shard_of(j.id()) == 2) {
        sparse.create_job(job).await.expect("create");
        only_shard_2.push(job.id());
    }
    let due = sparse
        .due_jobs_from(at(100), 100, 0, &Default::default())
        .await
        .expect("due");
    let mut found: Vec<domain::JobId> = due.iter().map(|d| d.id).collect();
    found.sort();
    only_shard_2.sort();
    assert_eq!(found, only_shard_2, "shards 0 and 1 are empty: shard 2's jobs");
}

/// A status-filtered page reads a bounded part of the tenant's listing: a
/// rare status far down a long history comes back over a few short pages,
/// each with the cursor to read on, never by reading the whole history at
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rare_status_deep_in_history_is_reached_by_following_the_cursor() {
    use futures::StreamExt;
    use store::ListQuery;
    use store::conformance::{at, new_job};

    let store = fresh_store().await;
    // No providers: the oldest job starts out `delivering`.
    let rare = new_job("acme", &[], at(0), 1);
    store.create_job(&rare).await.expect("create");
    let newer: Vec<domain::Job> = (0..1_200)
        .map(|n| new_job("acme", &["gas"], at(1 + n), 10 + n as u64))
        .collect();
    let created: Vec<_> = futures::stream::iter(&newer)
        .map(|job| store.create_job(job))
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(created.iter().all(Result::is_ok));

    let tenant = domain::TenantId::new("acme");
    let mut query = ListQuery {
        status: Some(domain::JobStatus::Delivering),
        after: None,
        limit: 10,
    };
    let mut pages = 0;
    let mut found = Vec::new();
    loop {
        let page = store.list_jobs(&tenant, &query).await.expect("list");
        pages += 1;
        found.extend(page.jobs.iter().map(|j| j.id()));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
        assert!(pages < 10, "the cursor makes progress");
    }
    assert_eq!(found, vec![rare.id()]);
    assert!(pages >= 2, "the first page stopped short of the whole history");
}

/// The listing reads the tenant's shard partitions of the table itself:
/// paging through with a small page gives every job once, newest first,
/// with or without a status filter, and none of another tenant's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_through_many_partitions_lists_every_job_once_newest_first() {
    use store::conformance::{at, lease, new_job};
    use store::{Fenced, ListQuery};

    let store = fresh_store().await;
    let mut jobs: Vec<domain::Job> = (0..90)
        .map(|n| new_job("acme", &["gas"], at(n), 5_000 + n as u64))
        .collect();
    let other = new_job("globex", &["gas"], at(45), 4_999);
    store.create_job(&other).await.expect("create");
    for job in &jobs {
        store.create_job(job).await.expect("create");
    }
    // Every third job delivered: `complete`, out of the due set.
    for job in jobs.iter_mut().step_by(3) {
        let held = lease("p1", at(200));
        let store::Claim::Won { job: claimed, .. } = store
            .claim(job.tenant(), job.id(), &held, at(100))
            .await
            .expect("claim")
        else {
            panic!("claim lost");
        };
        let claimed = store::conformance::delivered(&claimed, at(101));
        assert_eq!(
            store.save(&claimed, &held, at(101)).await.expect("save"),
            Fenced::Written
        );
        *job = claimed;
    }
    let tenant = domain::TenantId::new("acme");
    for status in [
        None,
        Some(domain::JobStatus::Complete),
        Some(domain::JobStatus::Pending),
    ] {
        let mut expected: Vec<domain::JobId> = jobs
            .iter()
            .filter(|j| status.is_none_or(|s| s == j.status()))
            .map(|j| j.id())
            .collect();
        expected.sort_by(|a, b| b.cmp(a));
        let mut query = ListQuery {
            status,
            after: None,
            limit: 7,
        };
        let mut listed = Vec::new();
        loop {
            let page = store.list_jobs(&tenant, &query).await.expect("list");
            assert!(page.jobs.len() <= 7);
            listed.extend(page.jobs.iter().map(|j| j.id()));
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        assert_eq!(listed, expected, "status {status:?}");
    }
}

/// Every stored-format version's golden jobs, written as the item that
/// release wrote (the key layout of ARCHITECTURE.md's table section: `pk`
/// `job#{tenant}#NNN`, `sk` `job#{id}`, the readable copies, `dueShard`
/// and `dueAt` while due, `deadKey` while failed, `expiresAt` once
/// finished; the record in `job`), read back through the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_jobs_of_every_version_read_through_the_store() {
    use aws_sdk_dynamodb::types::AttributeValue;

    for version in 1..=domain::record::VERSION {
        let store = fresh_store().await;
        let shards = store.config().shards;
        for (case, job) in domain::fixtures::cases() {
            let Some(text) = domain::fixtures::record(version, case) else {
                continue;
            };
            let s = |v: String| AttributeValue::S(v);
            let shard = job.id().shard(shards);
            let mut put = store
                .client()
                .put_item()
                .table_name(&store.config().table)
                .item("pk", s(format!("job#{}#{shard:03}", job.tenant())))
                .item("sk", s(format!("job#{}", job.id())))
                .item("tenant", s(job.tenant().to_string()))
                .item("status", s(job.status().as_str().to_owned()))
                .item("createdAt", s(job.created_at().to_rfc3339()))
                .item("job", s(text));
            put = match job.due_at() {
                Some(due) => put
                    .item("dueShard", s(format!("due#{shard:03}")))
                    .item("dueAt", AttributeValue::N(due.timestamp_millis().to_string())),
                None => put.item(
                    "expiresAt",
                    AttributeValue::N(
                        (job.updated_at() + chrono::Duration::days(30))
                            .timestamp()
                            .to_string(),
                    ),
                ),
            };
            if job.status() == domain::JobStatus::Failed {
                put = put.item("deadKey", s(format!("{}#{shard:03}", job.tenant())));
            }
            put.send()
                .await
                .unwrap_or_else(|e| panic!("v{version}/{case}: {e:?}"));
        }
        store::conformance::stored_jobs_of_a_version_read_back(&store, version).await;
    }
}

/// An event with a payload of `bytes` (serialized) for `endpoints`.
fn event_of_size(bytes: usize, endpoints: &[domain::Endpoint], seed: u64) -> domain::Event {
    use rand::SeedableRng;
    use store::conformance::at;

    let filler = "x".repeat(bytes.saturating_sub(r#"{"blob":""}"#.len()));
    let payload = domain::RawJson::from_json(&format!(r#"{{"blob":"{filler}"}}"#)).expect("json");
    assert_eq!(payload.as_json().len(), bytes);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    domain::Event::fan_out(
        domain::NewEvent {
            id: domain::EventId::generate(at(1), &mut rng),
            tenant: domain::TenantId::new("acme"),
            event_type: domain::EventType::parse("invoice.paid").expect("type"),
            owner: None,
            payload: domain::EventPayload::Inline(payload),
            providers: Vec::new(),
        },
        endpoints,
        at(1),
    )
}

fn endpoints_for_cost(n: u64) -> Vec<domain::Endpoint> {
    (1..=n)
        .map(|seed| {
            store::conformance::events::endpoint("acme", seed, None, &["*"], store::conformance::at(0))
        })
        .collect()
}

/// SPEC 9's cost bound, measured: an event with a 1 KiB payload to N
/// endpoints costs at most 2 + 6N write units on the happy path (the event
/// item, then each delivery created, claimed and saved delivered as a job).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_event_costs_the_write_units_the_design_says() {
    use store::conformance::{at, delivered, lease};
    use store::{EventStore, Fenced, Published};

    let store = fresh_store().await;
    const ENDPOINTS: u64 = 3;
    let event = event_of_size(1024, &endpoints_for_cost(ENDPOINTS), 70);
    assert_eq!(event.deliveries.len(), 3);
    assert_eq!(
        store.publish(&event, None, at(1)).await.expect("publish"),
        Published::Accepted
    );
    for job in event.delivery_jobs() {
        let held = lease("p1", at(60));
        let store::Claim::Won { job: claimed, .. } = store
            .claim(job.tenant(), job.id(), &held, at(2))
            .await
            .expect("claim")
        else {
            panic!("claim lost");
        };
        let done = delivered(&claimed, at(2));
        assert_eq!(
            store.save(&done, &held, at(2)).await.expect("save"),
            Fenced::Written
        );
    }
    let spent = store.capacity().snapshot();
    let units = |operation: &str| {
        spent
            .get(operation)
            .copied()
            .unwrap_or_else(|| panic!("{operation} was not measured: {spent:?}"))
    };
    let (put_event, create, claim, save) = (
        units("put event"),
        units("put job"),
        units("claim job"),
        units("save job"),
    );
    println!(
        "1 KiB to {ENDPOINTS} endpoints, write units (table + indexes): event {:?}, creates {:?}, claims {:?}, saves {:?}",
        (put_event.table, put_event.indexes),
        (create.table, create.indexes),
        (claim.table, claim.indexes),
        (save.table, save.indexes),
    );
    assert_eq!(put_event.calls, 1);
    assert!(put_event.total() <= 2.0, "the event item: {put_event:?}");
    for units in [create, claim, save] {
        assert_eq!(units.calls, ENDPOINTS);
        assert_eq!(
            units.total(),
            2.0 * ENDPOINTS as f64,
            "1 + 1 per delivery: {units:?}"
        );
    }
    let total: f64 = [put_event, create, claim, save].iter().map(|u| u.total()).sum();
    println!("total {total} write units, bound {}", 2 + 6 * ENDPOINTS);
    assert!(total <= (2 + 6 * ENDPOINTS) as f64, "{total}: {spent:?}");
}

/// The payload is stored once per event: a 64 KiB payload costs the event
/// item's units once, and each delivery's create stays 1 + 1 (a delivery
/// holds only the event's id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_payload_is_paid_for_once_not_per_delivery() {
    use store::conformance::at;
    use store::{EventStore, Published};

    let store = fresh_store().await;
    const ENDPOINTS: u64 = 3;
    let event = event_of_size(64 * 1024, &endpoints_for_cost(ENDPOINTS), 71);
    assert_eq!(
        store.publish(&event, None, at(1)).await.expect("publish"),
        Published::Accepted
    );
    let spent = store.capacity().snapshot();
    let put_event = spent.get("put event").copied().expect("measured");
    let create = spent.get("put job").copied().expect("measured");
    println!(
        "64 KiB to {ENDPOINTS} endpoints, write units: event {} ({} call), creates {} + {} ({} calls)",
        put_event.table, put_event.calls, create.table, create.indexes, create.calls
    );
    assert_eq!(put_event.calls, 1);
    assert!(
        (64.0..=67.0).contains(&put_event.total()),
        "the payload's size, once: {put_event:?}"
    );
    assert_eq!(create.calls, ENDPOINTS);
    assert_eq!(
        (create.table, create.indexes),
        (ENDPOINTS as f64, ENDPOINTS as f64),
        "1 + 1 per delivery, whatever the payload's size"
    );
}

/// Every version's golden events and event types, written as the item that
/// release wrote (events: `pk` `event#{tenant}#NNN` by the id's shard, `sk`
/// the id, the record in `body`, `eventType`, `owner`; event types: `pk`
/// `etype#{tenant}`, `sk` the name, the record in `body`), read back through
/// the store; an old event published again is the same event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_events_and_event_types_of_every_version_read_through_the_store() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use store::{EventStore, Published};

    for version in 1..=domain::record::event::EVENT_VERSION {
        let store = fresh_store().await;
        let shards = store.config().shards;
        let s = |v: String| AttributeValue::S(v);
        let mut events = Vec::new();
        for (case, event) in domain::fixtures::event_cases_as_of(version) {
            let Some(text) = domain::fixtures::record_of("events", version, case) else {
                continue;
            };
            let shard = event
                .id
                .to_string()
                .parse::<domain::JobId>()
                .expect("a ULID")
                .shard(shards);
            let mut put = store
                .client()
                .put_item()
                .table_name(&store.config().table)
                .item("pk", s(format!("event#{}#{shard:03}", event.tenant)))
                .item("sk", s(event.id.to_string()))
                .item("body", s(text))
                .item("eventType", s(event.event_type.as_str().to_owned()));
            if let Some(owner) = &event.owner {
                put = put.item("owner", s(owner.as_str().to_owned()));
            }
            put.send()
                .await
                .unwrap_or_else(|e| panic!("v{version}/{case}: {e:?}"));
            events.push(event);
        }
        assert!(!events.is_empty(), "v{version} has events");
        for event in events {
            let read = store.get_event(&event.tenant, event.id).await.expect("read");
            assert_eq!(read.as_ref(), Some(&event), "v{version}/{}", event.id);
            assert_eq!(
                store
                    .publish(&event, None, store::conformance::at(0))
                    .await
                    .expect("published again"),
                Published::Accepted,
                "v{version}/{}: the same event",
                event.id
            );
        }
        for (case, event_type) in domain::fixtures::event_type_cases() {
            let Some(text) = domain::fixtures::record_of("event-types", version, case) else {
                continue;
            };
            store
                .client()
                .put_item()
                .table_name(&store.config().table)
                .item("pk", s(format!("etype#{}", event_type.tenant)))
                .item("sk", s(event_type.name.as_str().to_owned()))
                .item("body", s(text))
                .send()
                .await
                .unwrap_or_else(|e| panic!("v{version}/{case}: {e:?}"));
            let read = store
                .get_event_type(&event_type.tenant, &event_type.name)
                .await
                .expect("read");
            assert_eq!(read, Some(event_type), "v{version}/{case}");
        }
    }
}

/// A source is two items (ARCHITECTURE.md's table section): its own,
/// `source#{id}` / `source`, with `tenant`, `version` and the record in
/// `body`, and its listing item `sources#{tenant}` / `{id}` with the same
/// body and version; a request it received is `srcreq#{source}` /
/// `{request id}` with `tenant` and `expiresAt` (received plus the
/// retention, in epoch seconds) for TTL. Deleting the source removes both
/// of its items and leaves its requests to TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_is_two_items_and_its_requests_expire_by_ttl() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use store::SourceStore;
    use store::conformance::at;
    use store::conformance::sources::{source, source_request};

    let store = fresh_store().await;
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let get = |pk: String, sk: String| {
        let store = &store;
        async move {
            store
                .client()
                .get_item()
                .table_name(&store.config().table)
                .key("pk", AttributeValue::S(pk))
                .key("sk", AttributeValue::S(sk))
                .consistent_read(true)
                .send()
                .await
                .expect("get item")
                .item
        }
    };
    let created = source("acme", 1, "github", at(0));
    store.create_source(&created).await.expect("create");
    let own = get(format!("source#{}", created.id), "source".to_owned())
        .await
        .expect("the source's item");
    let listed = get("sources#acme".to_owned(), created.id.to_string())
        .await
        .expect("its listing item");
    assert_eq!(own.get("tenant"), Some(&s("acme")));
    assert_eq!(own.get("version"), Some(&AttributeValue::N("1".to_owned())));
    assert_eq!(own.get("body"), listed.get("body"));
    assert_eq!(own.get("version"), listed.get("version"));

    let (_, version) = store.get_source(created.id).await.expect("get").expect("found");
    let mut renamed = created.clone();
    renamed.name = "renamed".to_owned();
    assert!(store.update_source(&renamed, version).await.expect("update"));
    let listed = get("sources#acme".to_owned(), created.id.to_string())
        .await
        .expect("its listing item");
    assert_eq!(
        listed.get("version"),
        Some(&AttributeValue::N("2".to_owned())),
        "updated with it"
    );
    assert_eq!(
        store
            .list_sources(&created.tenant, None, 10)
            .await
            .expect("list")
            .sources,
        [renamed.clone()]
    );

    let request = source_request(&created, 2, at(10));
    store.record_source_request(&request).await.expect("record");
    let item = get(format!("srcreq#{}", created.id), request.id.to_string())
        .await
        .expect("the request's item");
    let expires = at(10) + chrono::Duration::from_std(store.config().retention).expect("retention");
    assert_eq!(
        item.get("expiresAt"),
        Some(&AttributeValue::N(expires.timestamp().to_string()))
    );
    assert_eq!(item.get("tenant"), Some(&s("acme")));

    assert!(
        store
            .delete_source(&created.tenant, created.id)
            .await
            .expect("delete")
    );
    assert!(
        get(format!("source#{}", created.id), "source".to_owned())
            .await
            .is_none()
    );
    assert!(
        get("sources#acme".to_owned(), created.id.to_string())
            .await
            .is_none()
    );
    assert!(
        get(format!("srcreq#{}", created.id), request.id.to_string())
            .await
            .is_some(),
        "left to TTL"
    );
}

/// An attribute value's text, every part of it (a string's or a number's
/// as it is, a binary's bytes as UTF-8, lossily, a map's names and values,
/// a list's or a set's members).
fn attribute_text(value: &aws_sdk_dynamodb::types::AttributeValue, out: &mut String) {
    use aws_sdk_dynamodb::types::AttributeValue;
    match value {
        AttributeValue::S(text) | AttributeValue::N(text) => out.push_str(text),
        AttributeValue::B(bytes) => out.push_str(&String::from_utf8_lossy(bytes.as_ref())),
        AttributeValue::Ss(texts) | AttributeValue::Ns(texts) => out.push_str(&texts.join(" ")),
        AttributeValue::Bs(all) => {
            for bytes in all {
                out.push_str(&String::from_utf8_lossy(bytes.as_ref()));
                out.push(' ');
            }
        }
        AttributeValue::M(members) => {
            for (name, value) in members {
                out.push_str(name);
                out.push('=');
                attribute_text(value, out);
                out.push(' ');
            }
        }
        AttributeValue::L(values) => {
            for value in values {
                attribute_text(value, out);
                out.push(' ');
            }
        }
        AttributeValue::Bool(b) => out.push_str(&b.to_string()),
        AttributeValue::Null(_) => out.push_str("null"),
        other => panic!("an attribute value this test cannot read: {other:?}"),
    }
}

/// Everything the store's table holds: a consistent Scan of all of it,
/// each item's attributes by name with their values' text.
async fn scanned_text(store: &DynamoStore) -> Vec<u8> {
    let mut text = String::new();
    let mut start = None;
    loop {
        let page = store
            .client()
            .scan()
            .table_name(&store.config().table)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("scan");
        for item in page.items() {
            for (name, value) in item {
                text.push_str(name);
                text.push('=');
                attribute_text(value, &mut text);
                text.push('\t');
            }
            text.push('\n');
        }
        match page.last_evaluated_key {
            Some(key) => start = Some(key),
            None => return text.into_bytes(),
        }
    }
}

/// SPEC 13 on DynamoDB: no secret written through the store is in any
/// attribute of any item of its table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_stored_sealed_in_every_item() {
    let store = Arc::new(fresh_store().await);
    store::conformance::sealing::secrets_are_stored_sealed(store.clone(), async || {
        scanned_text(&store).await
    })
    .await;
}

/// Three stores on one table: the writer, another with its sealer, and one
/// with a sealer of other keys, which reads sealed records as corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_secrets_open_only_with_the_same_keys() {
    let store = fresh_store().await;
    let same_keys = DynamoStore::connect(store.config().clone(), Arc::clone(store.sealer())).await;
    let other_keys = DynamoStore::connect(store.config().clone(), sealer()).await;
    store::conformance::sealing::sealed_secrets_open_only_with_the_same_keys(
        Arc::new(store),
        Arc::new(same_keys),
        Arc::new(other_keys),
    )
    .await;
}

/// Items as the release before sealing wrote them (the codec's keys and
/// attributes, version 1, the record in the clear in `body` or `secrets`;
/// a source's own item and its listing item), put raw: read as they are,
/// sealed by their next write, after which no item holds their secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_items_of_an_earlier_release_are_read_and_sealed_by_their_next_write() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use store::conformance::sealing::Plaintext;

    let s = |v: String| AttributeValue::S(v);
    let one = || AttributeValue::N("1".to_owned());
    for version in 1..=domain::record::endpoint::ENDPOINT_VERSION {
        let store = Arc::new(fresh_store().await);
        let insert = async |record: Plaintext| {
            let items = match record {
                Plaintext::Endpoint { endpoint, text } => {
                    let mut item = std::collections::HashMap::from([
                        ("pk".to_owned(), s(format!("endpoint#{}", endpoint.tenant))),
                        ("sk".to_owned(), s(endpoint.id.to_string())),
                        ("body".to_owned(), s(text)),
                        ("version".to_owned(), one()),
                    ]);
                    if let Some(owner) = &endpoint.owner {
                        item.insert("owner".to_owned(), s(owner.as_str().to_owned()));
                    }
                    vec![item]
                }
                Plaintext::Source { source, text } => vec![
                    std::collections::HashMap::from([
                        ("pk".to_owned(), s(format!("source#{}", source.id))),
                        ("sk".to_owned(), s("source".to_owned())),
                        ("tenant".to_owned(), s(source.tenant.to_string())),
                        ("body".to_owned(), s(text.clone())),
                        ("version".to_owned(), one()),
                    ]),
                    std::collections::HashMap::from([
                        ("pk".to_owned(), s(format!("sources#{}", source.tenant))),
                        ("sk".to_owned(), s(source.id.to_string())),
                        ("body".to_owned(), s(text)),
                        ("version".to_owned(), one()),
                    ]),
                ],
                Plaintext::SigningSecrets { tenant, text } => vec![std::collections::HashMap::from([
                    ("pk".to_owned(), s(format!("tenant#{tenant}"))),
                    ("sk".to_owned(), s("secrets".to_owned())),
                    ("secrets".to_owned(), s(text)),
                    ("version".to_owned(), one()),
                ])],
            };
            for item in items {
                store
                    .client()
                    .put_item()
                    .table_name(&store.config().table)
                    .set_item(Some(item))
                    .send()
                    .await
                    .expect("put item");
            }
        };
        store::conformance::sealing::plaintext_records_are_read_and_sealed_by_their_next_write(
            store.clone(),
            version,
            insert,
            async || scanned_text(&store).await,
        )
        .await;
    }
}
