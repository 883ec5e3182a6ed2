//! Scenario `e2e`: jobs of two providers accepted by the intake, then
//! drained by one processor (both in this process) against the mock
//! providers and our own callback receiver: delivered jobs/s, and
//! creation-to-callback latency. Beside it the store's ceiling: raw
//! single-item writes/s (`create_job`, many at once) on a fresh store of the
//! same kind, and how much of it the drain uses (jobs/s x writes per job /
//! ceiling).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use domain::{Clock, SystemClock};
use store::Store;
use tokio_util::sync::CancellationToken;

use crate::Settings;
use crate::report::{Figure, ScenarioReport, number, percentile};
use crate::rig::{self, Dynamo, Sink};

/// Store writes a happy-path job costs: create, claim, final save.
const WRITES_PER_JOB: f64 = 3.0;

struct Drain {
    /// Creation-to-callback latencies of the trickle, microseconds, sorted.
    trickle_us: Vec<u64>,
    accepted_per_s: f64,
    delivered_per_s: f64,
    latencies_us: Vec<u64>,
    ceiling_writes_per_s: f64,
    jobs: usize,
}

pub async fn run(settings: &Settings, dynamo: &Dynamo) -> Result<ScenarioReport> {
    let (sqlite_jobs, dynamo_jobs) = if settings.quick {
        (500, 200)
    } else {
        (10_000, 2_000)
    };
    let mut figures = Vec::new();
    let mut notes = Vec::new();

    let (sqlite, _dir) = rig::sqlite_store()?;
    let (ceiling_sqlite, _ceiling_dir) = rig::sqlite_store()?;
    let on_sqlite = drain(settings, sqlite, ceiling_sqlite, sqlite_jobs).await?;
    let dynamo_store: Arc<dyn Store> = Arc::new(dynamo.fresh_store("e2e").await?);
    let dynamo_ceiling: Arc<dyn Store> = Arc::new(dynamo.fresh_store("e2e-ceiling").await?);
    let on_dynamo = drain(settings, dynamo_store, dynamo_ceiling, dynamo_jobs).await?;

    for (subject, d) in [("sqlite", &on_sqlite), ("dynamodb", &on_dynamo)] {
        let rate = Figure::new(
            "e2e",
            subject,
            &format!("delivered jobs/s ({} jobs)", d.jobs),
            d.delivered_per_s,
            "jobs/s",
        );
        figures.push(if subject == "sqlite" {
            rate.target(">= 2000 jobs/s", d.delivered_per_s >= 2000.0)
        } else {
            rate
        });
        figures.push(Figure::new(
            "e2e",
            subject,
            "accepted jobs/s (intake, before the drain)",
            d.accepted_per_s,
            "jobs/s",
        ));
        figures.push(Figure::new(
            "e2e",
            subject,
            "raw single-item writes/s (ceiling)",
            d.ceiling_writes_per_s,
            "writes/s",
        ));
        figures.push(
            Figure::new(
                "e2e",
                subject,
                "store writes/s used by the drain (jobs/s x 3)",
                d.delivered_per_s * WRITES_PER_JOB,
                "writes/s",
            )
            .against(d.ceiling_writes_per_s),
        );
        for p in [50.0, 99.0] {
            let ms = percentile(&d.latencies_us, p).map_or(f64::NAN, |us| us as f64 / 1000.0);
            figures.push(Figure::new(
                "e2e",
                subject,
                &format!("creation-to-callback p{p}, drain"),
                ms,
                "ms",
            ));
        }
        for p in [50.0, 99.0] {
            let ms = percentile(&d.trickle_us, p).map_or(f64::NAN, |us| us as f64 / 1000.0);
            figures.push(Figure::new(
                "e2e",
                subject,
                &format!(
                    "creation-to-callback p{p}, trickle of {} jobs/s",
                    number(TRICKLE_RATE)
                ),
                ms,
                "ms",
            ));
        }
    }
    notes.push(format!(
        "{sqlite_jobs} jobs on SQLite, {dynamo_jobs} on DynamoDB Local (one JVM on the same cores; \
         fewer jobs to fit the run in 10 minutes). All jobs are accepted first ({} clients), then one \
         processor ({}) drains them; jobs/s is jobs / drain time. \
         Creation-to-callback latency therefore includes the wait in the queue: it measures the drain \
         order, not the latency of a lone job. The trickle is that latency: after the drain, jobs \
         posted one at a time at {} jobs/s ({} of them) to an intake that wakes a processor running \
         beside it, as `hookline serve` does.",
        CLIENTS,
        rig::processor_defaults(),
        number(TRICKLE_RATE),
        if settings.quick { 25 } else { 200 },
    ));
    notes.push(format!(
        "Ceiling: {CEILING_WRITES_NOTE} Store writes per job: {} (create, claim, final save; the \
         processor's due-index queries are reads). Ratio = share of the ceiling's writes/s the drain used.",
        number(WRITES_PER_JOB)
    ));
    Ok(ScenarioReport {
        name: "e2e".to_owned(),
        seconds: 0.0,
        figures,
        notes,
    })
}

const CLIENTS: usize = 32;
const CEILING_WRITES_NOTE: &str = "`create_job` of one-provider jobs, 64 at once, on a fresh store of the same kind \
     (SQLite: one write through its writer thread and group commit; DynamoDB: one conditional PutItem \
     with its two index entries).";

async fn drain(
    settings: &Settings,
    store: Arc<dyn Store>,
    ceiling: Arc<dyn Store>,
    jobs: usize,
) -> Result<Drain> {
    let shutdown = CancellationToken::new();
    let result = drain_on(settings, store, jobs, &shutdown).await;
    shutdown.cancel();
    let mut result = result?;
    // After the drain, so DynamoDB Local's JVM is as warm for the ceiling as for the drain.
    let ceiling_writes = if settings.quick { jobs } else { jobs.min(5_000) };
    result.ceiling_writes_per_s = rig::raw_writes(&*ceiling, ceiling_writes, 64, settings.seed).await?;
    Ok(result)
}

async fn drain_on(
    settings: &Settings,
    store: Arc<dyn Store>,
    jobs: usize,
    shutdown: &CancellationToken,
) -> Result<Drain> {
    let mock = rig::spawn_mock(settings.seed).await?;
    let catalog = rig::catalog(&mock)?;
    let sink = Sink::default();
    let callback = sink.spawn(shutdown).await?;
    let key = rig::api_key(&*store, "bench").await?;
    store::ensure_signing_secrets(
        &*store,
        &domain::TenantId::new("bench"),
        domain::SigningSecret::generate(&mut rand::rng()),
    )
    .await?;
    let clock = Arc::new(SystemClock) as Arc<dyn Clock>;
    let base = rig::spawn_intake(Arc::clone(&store), Arc::clone(&clock), &catalog, shutdown).await?;
    let http = rig::client_with_key(&key)?;
    let started = Instant::now();
    rig::post_jobs(&http, &base, &rig::job_body(&callback), jobs, CLIENTS).await?;
    let accepted_per_s = jobs as f64 / started.elapsed().as_secs_f64();

    let processor = rig::processor(Arc::clone(&store), clock, catalog.clone(), "e2e", settings.seed)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(if settings.quick { 60 } else { 300 });
    while sink.delivered() < jobs && Instant::now() < deadline {
        processor.drain(shutdown).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    if sink.delivered() < jobs {
        bail!(
            "e2e: {} of {jobs} jobs delivered before the deadline",
            sink.delivered()
        );
    }
    eprintln!(
        "  e2e: {jobs} jobs drained at {} jobs/s",
        number(jobs as f64 / seconds)
    );
    let trickle_us = trickle(settings, &store, &catalog, &http, shutdown).await?;
    Ok(Drain {
        trickle_us,
        accepted_per_s,
        delivered_per_s: jobs as f64 / seconds,
        latencies_us: sink.latencies_us(),
        ceiling_writes_per_s: f64::NAN,
        jobs,
    })
}

/// Jobs/s of the trickle: low enough that no queue forms.
const TRICKLE_RATE: f64 = 50.0;

/// A second intake that wakes a processor running beside it (as `hookline
/// serve` does), jobs posted one by one at [`TRICKLE_RATE`]: the
/// creation-to-callback latency of a job that finds no queue.
async fn trickle(
    settings: &Settings,
    store: &Arc<dyn Store>,
    catalog: &processor::ProviderCatalog,
    http: &reqwest::Client,
    shutdown: &CancellationToken,
) -> Result<Vec<u64>> {
    let jobs = if settings.quick { 25 } else { 200 };
    let sink = Sink::default();
    let callback = sink.spawn(shutdown).await?;
    let clock = Arc::new(SystemClock) as Arc<dyn Clock>;
    let wake = Arc::new(tokio::sync::Notify::new());
    let base = rig::spawn_intake_waking(
        Arc::clone(store),
        Arc::clone(&clock),
        catalog,
        Arc::clone(&wake),
        shutdown,
    )
    .await?;
    let processor = Arc::new(rig::processor(
        Arc::clone(store),
        clock,
        catalog.clone(),
        "trickle",
        settings.seed,
    )?);
    let stop = shutdown.child_token();
    let worker = rig::spawn_woken(processor, wake, stop.clone());
    let body = rig::job_body(&callback);
    let period = Duration::from_secs_f64(1.0 / TRICKLE_RATE);
    let mut next = tokio::time::Instant::now();
    let mut posts = Vec::new();
    for _ in 0..jobs {
        tokio::time::sleep_until(next).await;
        next += period;
        let request = http.post(format!("{base}/webhook")).json(&body);
        posts.push(tokio::spawn(async move {
            request.send().await.map(|r| r.status().as_u16())
        }));
    }
    for post in posts {
        let status = post.await??;
        if status != 202 {
            bail!("e2e trickle: POST /webhook answered {status}");
        }
    }
    let delivered = sink.wait_for(jobs, Duration::from_secs(60)).await;
    stop.cancel();
    let _ = worker.await;
    if !delivered {
        bail!("e2e trickle: {} of {jobs} jobs delivered", sink.delivered());
    }
    Ok(sink.latencies_us())
}
