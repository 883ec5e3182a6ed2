//! Scenario `cost`: what DynamoDB bills. Capacity units per delivered job
//! (index writes included) on the happy path and with one provider retry,
//! per event by payload size with the blob store's requests
//! ([`crate::payload_cost`]),
//! and the cost of one poll for due work as finished history grows, beside
//! the two designs a newcomer would write: a Scan with a status filter, and
//! a Query on a non-sparse `status` index.
//!
//! The job figures come from the real path: jobs POSTed to an in-process
//! intake, drained by a real `Processor` against the mock providers and
//! sink; the store's `CapacityMeter` sums what DynamoDB reports. History is
//! seeded with `BatchWriteItem` straight into the table, in the store's item
//! format (the same attributes `DynamoStore` writes for a finished job).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, PutRequest, ReturnConsumedCapacity, ScalarAttributeType, WriteRequest,
};
use domain::{CallbackOutcome, Clock, FetchOutcome, Job, JobId, ManualClock, NewJob, RetryPolicy, TenantId};
use rand::SeedableRng;
use store::{JobStore, Store};
use store_dynamodb::DynamoStore;
use tokio_util::sync::CancellationToken;

use crate::Settings;
use crate::report::{Figure, ScenarioReport, median};
use crate::rig::{self, Dynamo};

const SCENARIO: &str = "cost";
/// The newcomer's index: every job, keyed by status, finished ones included.
const STATUS_INDEX: &str = "bench-status";
/// Due jobs kept in the table while history grows: what a poll should find.
const DUE_JOBS: usize = 50;
/// Shards of the due and listing indexes (the store's default).
const SHARDS: u16 = 8;

pub async fn run(settings: &Settings, dynamo: &Dynamo) -> Result<ScenarioReport> {
    let mut figures = Vec::new();
    let mut notes = Vec::new();
    let jobs = if settings.quick { 20 } else { 200 };

    let happy = delivered_job_cost(settings, dynamo, jobs, false).await?;
    let retry = delivered_job_cost(settings, dynamo, jobs, true).await?;
    for (label, cost) in [("happy path", &happy), ("one provider retry", &retry)] {
        let write = Figure::new(
            SCENARIO,
            "dynamodb",
            &format!("write units per delivered job, {label}"),
            cost.write_units,
            "WCU",
        );
        figures.push(if label == "happy path" {
            write.target("<= 6", cost.write_units <= 6.0)
        } else {
            write
        });
        figures.push(Figure::new(
            SCENARIO,
            "dynamodb",
            &format!("read units per delivered job, {label}"),
            cost.read_units,
            "RCU",
        ));
        notes.push(format!(
            "{label}, {jobs} jobs of 2 providers, per job by operation (table + indexes): {}",
            cost.breakdown
        ));
    }
    notes.push(
        "Metered: every call `DynamoStore` reports ConsumedCapacity for (put, claim, save, \
         the due-index query). Not metered: the API-key GetItem (cached 30 s per intake) and the \
         signing-secret GetItem (cached 60 s per processor), amortised to ~0 per job at any load."
            .to_owned(),
    );

    let levels: &[usize] = if settings.quick {
        &[1_000, 3_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    let polls = poll_cost(settings, dynamo, levels).await?;
    for poll in &polls {
        let n = poll.finished;
        figures.push(Figure::new(
            SCENARIO,
            "hookline (sparse due index)",
            &format!("poll read units, {n} finished"),
            poll.hookline_units,
            "RCU",
        ));
        figures.push(Figure::new(
            SCENARIO,
            "scan + status filter",
            &format!("poll read units, {n} finished"),
            poll.scan_units,
            "RCU",
        ));
        figures.push(Figure::new(
            SCENARIO,
            "query on status index",
            &format!("poll read units, {n} finished"),
            poll.status_index_units,
            "RCU",
        ));
        figures.push(Figure::new(
            SCENARIO,
            "hookline (sparse due index)",
            &format!("poll time, {n} finished"),
            poll.hookline_ms,
            "ms",
        ));
        figures.push(Figure::new(
            SCENARIO,
            "scan + status filter",
            &format!("poll time, {n} finished"),
            poll.scan_ms,
            "ms",
        ));
        figures.push(Figure::new(
            SCENARIO,
            "query on status index",
            &format!("poll time, {n} finished"),
            poll.status_index_ms,
            "ms",
        ));
        figures.push(Figure::new(
            SCENARIO,
            "query on status index",
            &format!("index entries, {n} finished"),
            (n + DUE_JOBS) as f64,
            "items",
        ));
        figures.push(Figure::new(
            SCENARIO,
            "hookline (sparse due index)",
            &format!("index entries, {n} finished"),
            DUE_JOBS as f64,
            "items",
        ));
    }
    if let (Some(low), Some(high)) = (polls.first(), polls.last()) {
        let growth = high.hookline_units / low.hookline_units;
        figures.push(
            Figure::new(
                SCENARIO,
                "hookline (sparse due index)",
                &format!("poll cost at {} vs {} finished", high.finished, low.finished),
                growth,
                "x",
            )
            .target("within 10% (<= 1.10x)", growth <= 1.10),
        );
        figures.push(Figure::new(
            SCENARIO,
            "scan + status filter",
            &format!("poll cost at {} vs {} finished", high.finished, low.finished),
            high.scan_units / low.scan_units,
            "x",
        ));
    }
    // After the polls: DynamoDB Local, once these cases have run, was seen
    // not to finish adding the newcomer's index to an empty table (still
    // CREATING after 2 minutes); run first, the polls are unaffected.
    let (payload_figures, payload_notes) = crate::payload_cost::run(settings, dynamo).await?;
    figures.extend(payload_figures);
    notes.extend(payload_notes);
    notes.push(format!(
        "Poll: {DUE_JOBS} due jobs among the finished history; each design's poll read three times, \
         median shown. hookline queries its {SHARDS} due-index shards (`due_jobs(now, 50)`); the Scan \
         reads every page of the table with `status IN (pending, delivering)` as a filter (a filter \
         does not lower the units billed); the status-index Query reads `status = pending` from a \
         GSI holding every job. The status-index poll's reads stay flat too, but its index keeps \
         every finished job (storage, and two index writes on every status change), all due work \
         sits in one partition key (a hot partition), and without claims two pollers deliver the \
         same job twice."
    ));
    Ok(ScenarioReport {
        name: SCENARIO.to_owned(),
        seconds: 0.0,
        figures,
        notes,
    })
}

struct JobCost {
    write_units: f64,
    read_units: f64,
    breakdown: String,
}

/// Posts `jobs` jobs through the intake and drains them with one processor;
/// with `retry`, each job's first `gas` fetch answers 503 and the processor
/// runs again once the retry is due (a manual clock moves time on).
async fn delivered_job_cost(
    settings: &Settings,
    dynamo: &Dynamo,
    jobs: usize,
    retry: bool,
) -> Result<JobCost> {
    let dynamo_store = dynamo.fresh_store("cost").await?;
    let store: Arc<dyn Store> = Arc::new(dynamo_store.clone());
    let mock = rig::spawn_mock(settings.seed).await?;
    let catalog = rig::catalog(&mock)?;
    let key = rig::tenant(&*store, &mock, "bench").await?;
    let clock = Arc::new(ManualClock::starting_now());
    let shutdown = CancellationToken::new();
    let base = rig::spawn_intake(
        Arc::clone(&store),
        Arc::clone(&clock) as Arc<dyn Clock>,
        &catalog,
        &shutdown,
    )
    .await?;
    let http = rig::client_with_key(&key)?;
    // What setting up the tenant cost is not a job's.
    let before = dynamo_store.capacity().snapshot();
    if retry {
        mock.state.fail_provider_next("gas", u32::try_from(jobs)?, 503);
    }
    rig::post_jobs(&http, &base, &rig::job_body(&mock.url("/complete")), jobs, 16).await?;
    let processor = rig::processor(
        Arc::clone(&store),
        Arc::clone(&clock) as Arc<dyn Clock>,
        catalog,
        "cost",
        settings.seed,
    )?;
    let mut delivered = 0;
    for _ in 0..5 {
        let report = processor.drain(&shutdown).await;
        delivered += report.delivered;
        if delivered >= jobs as u64 {
            break;
        }
        // The first provider retry is due after 5 s +-20%.
        clock.advance(Duration::from_secs(60));
    }
    shutdown.cancel();
    if delivered != jobs as u64 {
        bail!("cost: {delivered} of {jobs} jobs delivered");
    }
    let after = dynamo_store.capacity().snapshot();
    let mut write = 0.0;
    let mut read = 0.0;
    let mut parts = Vec::new();
    for (operation, units) in &after {
        let (base_table, base_indexes, base_calls) = before
            .get(operation)
            .map_or((0.0, 0.0, 0), |b| (b.table, b.indexes, b.calls));
        let (table, indexes) = (units.table - base_table, units.indexes - base_indexes);
        let calls = units.calls - base_calls;
        if calls == 0 {
            continue;
        }
        let per_job = |x: f64| x / jobs as f64;
        match units.access {
            store_dynamodb::Access::Read => read += per_job(table + indexes),
            store_dynamodb::Access::Write => write += per_job(table + indexes),
        }
        parts.push(format!(
            "{operation} {:.2} + {:.2} ({:.2} calls)",
            per_job(table),
            per_job(indexes),
            per_job(calls as f64)
        ));
    }
    Ok(JobCost {
        write_units: write,
        read_units: read,
        breakdown: parts.join("; "),
    })
}

struct PollCost {
    finished: usize,
    hookline_units: f64,
    hookline_ms: f64,
    scan_units: f64,
    scan_ms: f64,
    status_index_units: f64,
    status_index_ms: f64,
}

async fn poll_cost(settings: &Settings, dynamo: &Dynamo, levels: &[usize]) -> Result<Vec<PollCost>> {
    let store = dynamo.fresh_store("poll").await?;
    add_status_index(store.client(), &store.config().table).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(settings.seed);
    let start = chrono::Utc::now() - chrono::Duration::hours(1);
    // The due work a poll must find: pending jobs created through the store.
    for n in 0..DUE_JOBS {
        let job = new_job(start + chrono::Duration::milliseconds(n as i64), &mut rng);
        store.create_job(&job).await.context("seeding a due job")?;
    }
    let now = chrono::Utc::now();
    let mut seeded = 0;
    let mut results = Vec::new();
    for &level in levels {
        let started = Instant::now();
        seed_finished(&store, level - seeded, start, &mut rng).await?;
        eprintln!(
            "  cost: seeded {} finished jobs in {:.1} s",
            level - seeded,
            started.elapsed().as_secs_f64()
        );
        seeded = level;
        let (mut hu, mut hm, mut su, mut sm, mut iu, mut im) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..3 {
            let (units, ms) = hookline_poll(&store, now).await?;
            hu.push(units);
            hm.push(ms);
            let (units, ms) = scan_poll(&store).await?;
            su.push(units);
            sm.push(ms);
            let (units, ms) = status_index_poll(&store).await?;
            iu.push(units);
            im.push(ms);
        }
        results.push(PollCost {
            finished: level,
            hookline_units: median(&mut hu),
            hookline_ms: median(&mut hm),
            scan_units: median(&mut su),
            scan_ms: median(&mut sm),
            status_index_units: median(&mut iu),
            status_index_ms: median(&mut im),
        });
    }
    Ok(results)
}

fn new_job(created: domain::Timestamp, rng: &mut rand::rngs::StdRng) -> Job {
    Job::new(
        NewJob {
            id: JobId::generate(created, rng),
            tenant: TenantId::new("bench"),
            target: domain::Target::Callback(
                url::Url::parse("http://127.0.0.1:9/complete").expect("a valid constant URL"),
            ),
            payload: domain::Payload::Results {
                metadata: domain::Metadata::from_json(r#"{"orderId": "A-17"}"#).ok(),
            },
            providers: providers_mock::PROVIDERS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
        },
        created,
    )
}

/// A job as the processor leaves it after a delivered callback.
fn finished_job(created: domain::Timestamp, rng: &mut rand::rngs::StdRng) -> Job {
    let mut job = new_job(created, rng);
    let policy = RetryPolicy::default();
    let later = created + chrono::Duration::seconds(1);
    let tried = |at| domain::Tried {
        at,
        took: Some(std::time::Duration::from_millis(100)),
        body: None,
        headers: Default::default(),
    };
    for provider in providers_mock::PROVIDERS {
        let data = providers_mock::billing_data(provider, &job.id().to_string());
        job.record_fetch(
            provider,
            FetchOutcome::Ok { status: 200, data },
            tried(later),
            later,
            &policy,
            rng,
        );
    }
    job.record_delivery(
        CallbackOutcome::Delivered { status: 204 },
        tried(later),
        later,
        &policy,
        rng,
    );
    job
}

/// The item `DynamoStore` writes for a finished job (no due attributes,
/// `expiresAt` for TTL), so the history is what production would hold.
fn finished_item(job: &Job) -> Result<HashMap<String, AttributeValue>> {
    let s = |v: String| AttributeValue::S(v);
    let shard = job.id().shard(SHARDS);
    let expires = (job.created_at() + chrono::Duration::days(30)).timestamp();
    Ok(HashMap::from([
        ("pk".to_owned(), s(format!("job#{}#{shard:03}", job.tenant()))),
        ("sk".to_owned(), s(format!("job#{}", job.id()))),
        ("tenant".to_owned(), s(job.tenant().to_string())),
        ("status".to_owned(), s(job.status().as_str().to_owned())),
        ("createdAt".to_owned(), s(job.created_at().to_rfc3339())),
        ("job".to_owned(), s(domain::record::encode(job))),
        ("expiresAt".to_owned(), AttributeValue::N(expires.to_string())),
    ]))
}

/// Writes `count` finished jobs, 25 to a `BatchWriteItem`, a few batches at once.
async fn seed_finished(
    store: &DynamoStore,
    count: usize,
    start: domain::Timestamp,
    rng: &mut rand::rngs::StdRng,
) -> Result<()> {
    use futures::StreamExt;
    let mut batches = Vec::new();
    let mut batch = Vec::with_capacity(25);
    for n in 0..count {
        let job = finished_job(start + chrono::Duration::milliseconds(n as i64), rng);
        batch.push(
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(finished_item(&job)?))
                        .build()?,
                )
                .build(),
        );
        if batch.len() == 25 {
            batches.push(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    let client = store.client();
    let table = &store.config().table;
    let results: Vec<Result<()>> = futures::stream::iter(batches)
        .map(|batch| write_batch(client, table, batch))
        .buffer_unordered(4)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn write_batch(client: &Client, table: &str, mut batch: Vec<WriteRequest>) -> Result<()> {
    for _ in 0..20 {
        let output = client
            .batch_write_item()
            .request_items(table, batch)
            .send()
            .await
            .context("BatchWriteItem")?;
        match output.unprocessed_items.and_then(|mut u| u.remove(table)) {
            Some(left) if !left.is_empty() => {
                batch = left;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => return Ok(()),
        }
    }
    bail!("BatchWriteItem kept items unprocessed")
}

/// Adds the newcomer's non-sparse index: every job by `status`, newest first.
async fn add_status_index(client: &Client, table: &str) -> Result<()> {
    client
        .update_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("status")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("createdAt")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder()
                .create(
                    aws_sdk_dynamodb::types::CreateGlobalSecondaryIndexAction::builder()
                        .index_name(STATUS_INDEX)
                        .key_schema(
                            KeySchemaElement::builder()
                                .attribute_name("status")
                                .key_type(KeyType::Hash)
                                .build()?,
                        )
                        .key_schema(
                            KeySchemaElement::builder()
                                .attribute_name("createdAt")
                                .key_type(KeyType::Range)
                                .build()?,
                        )
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::KeysOnly)
                                .build(),
                        )
                        .build()?,
                )
                .build(),
        )
        .send()
        .await
        .context("adding the status index")?;
    // DynamoDB Local backfills the index in the background: seconds on a
    // quiet machine, much longer on a loaded one.
    for _ in 0..480 {
        let described = client.describe_table().table_name(table).send().await?;
        let active = described
            .table()
            .map(|t| t.global_secondary_indexes())
            .unwrap_or_default()
            .iter()
            .any(|g| g.index_name() == Some(STATUS_INDEX) && g.index_status() == Some(&IndexStatus::Active));
        if active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("the status index did not become active within 2 minutes")
}

/// hookline's own poll, through the store: read units from its meter.
async fn hookline_poll(store: &DynamoStore, now: domain::Timestamp) -> Result<(f64, f64)> {
    let units = |s: &BTreeMap<&'static str, store_dynamodb::Units>| {
        s.get("query due index").map(|u| u.total()).unwrap_or_default()
    };
    let before = units(&store.capacity().snapshot());
    let started = Instant::now();
    let due = store.due_jobs(now, DUE_JOBS).await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if due.len() != DUE_JOBS {
        bail!("hookline's poll found {} of {DUE_JOBS} due jobs", due.len());
    }
    Ok((units(&store.capacity().snapshot()) - before, ms))
}

/// The newcomer's Scan: every page of the table, filtered to unfinished jobs.
async fn scan_poll(store: &DynamoStore) -> Result<(f64, f64)> {
    let started = Instant::now();
    let mut units = 0.0;
    let mut found = 0;
    let mut start = None;
    loop {
        let page = store
            .client()
            .scan()
            .table_name(&store.config().table)
            .filter_expression("#s IN (:p, :d)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":p", AttributeValue::S("pending".to_owned()))
            .expression_attribute_values(":d", AttributeValue::S("delivering".to_owned()))
            .set_exclusive_start_key(start)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .context("Scan")?;
        units += page
            .consumed_capacity()
            .and_then(|c| c.capacity_units())
            .unwrap_or_default();
        found += page.items().len();
        match page.last_evaluated_key {
            Some(key) => start = Some(key),
            None => break,
        }
    }
    if found != DUE_JOBS {
        bail!("the Scan found {found} of {DUE_JOBS} due jobs");
    }
    Ok((units, started.elapsed().as_secs_f64() * 1000.0))
}

/// The newcomer's Query on the status index: oldest pending jobs first.
async fn status_index_poll(store: &DynamoStore) -> Result<(f64, f64)> {
    let started = Instant::now();
    let page = store
        .client()
        .query()
        .table_name(&store.config().table)
        .index_name(STATUS_INDEX)
        .key_condition_expression("#s = :p")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":p", AttributeValue::S("pending".to_owned()))
        .limit(i32::try_from(DUE_JOBS)?)
        .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
        .send()
        .await
        .context("Query on the status index")?;
    let units = page
        .consumed_capacity()
        .and_then(|c| c.capacity_units())
        .unwrap_or_default();
    if page.items().len() != DUE_JOBS {
        bail!(
            "the status-index Query found {} of {DUE_JOBS} due jobs",
            page.items().len()
        );
    }
    Ok((units, started.elapsed().as_secs_f64() * 1000.0))
}
