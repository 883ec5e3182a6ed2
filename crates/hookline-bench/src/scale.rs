//! Scenario `scale`: 1, 2 and 4 `hookline processor --once` processes
//! draining the same jobs from one DynamoDB Local table: delivered jobs/s
//! (against one processor's, measured in the same run), lost claims per
//! claim attempt (from each process's closing report line), and duplicate
//! deliveries (our receiver counts `webhook-id`s it saw more than once).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use rand::SeedableRng;
use store::Store;
use tokio_util::sync::CancellationToken;

use crate::Settings;
use crate::intake::hookline_bin;
use crate::report::{Figure, ScenarioReport, number};
use crate::rig::{self, Dynamo, Sink};

const PROCESSES: [usize; 3] = [1, 2, 4];

struct Round {
    processes: usize,
    jobs_per_s: f64,
    claimed: u64,
    lost: u64,
    duplicates: u64,
}

pub async fn run(settings: &Settings, dynamo: &Dynamo) -> Result<ScenarioReport> {
    let jobs = if settings.quick { 100 } else { 2_000 };
    let bin = hookline_bin()?;
    let mut rounds = Vec::new();
    for processes in PROCESSES {
        let shutdown = CancellationToken::new();
        let round = round(settings, dynamo, &bin, processes, jobs, &shutdown).await;
        shutdown.cancel();
        let round = round?;
        eprintln!(
            "  scale: {processes} processors, {} jobs/s, {} lost of {} claim attempts, {} duplicates",
            number(round.jobs_per_s),
            round.lost,
            round.claimed + round.lost,
            round.duplicates
        );
        rounds.push(round);
    }
    let one = rounds.first().map_or(f64::NAN, |r| r.jobs_per_s);
    let mut figures = Vec::new();
    for r in &rounds {
        let subject = format!(
            "{} processor{}",
            r.processes,
            if r.processes == 1 { "" } else { "s" }
        );
        let rate = Figure::new("scale", &subject, "delivered jobs/s", r.jobs_per_s, "jobs/s");
        figures.push(match r.processes {
            1 => rate,
            4 => rate
                .against(one)
                .target(">= 90% of 1 processor", r.jobs_per_s >= 0.9 * one),
            _ => rate.against(one),
        });
        let attempts = (r.claimed + r.lost) as f64;
        let lost_share = if attempts > 0.0 {
            r.lost as f64 / attempts
        } else {
            0.0
        };
        figures.push(
            Figure::new(
                "scale",
                &subject,
                "lost claims per claim attempt",
                lost_share * 100.0,
                "%",
            )
            .target("< 5%", lost_share < 0.05),
        );
        figures.push(
            Figure::new("scale", &subject, "duplicate deliveries", r.duplicates as f64, "")
                .target("0", r.duplicates == 0),
        );
    }
    Ok(ScenarioReport {
        name: "scale".to_owned(),
        seconds: 0.0,
        figures,
        notes: vec![format!(
            "{jobs} jobs of 2 providers written to a fresh table (store API), then N `hookline processor \
             --once` processes started together ({} each); jobs/s is \
             jobs / time from the spawn to the last first delivery (process start-up included). \
             DynamoDB Local is one JVM on the same 2 cores as the processors, the mock providers and \
             the receiver: more processes share the same CPUs, so this measures contention and lost \
             claims, not speed-up. No process is killed here: any duplicate is a bug (the chaos tests \
             cover kills).",
            rig::processor_defaults()
        )],
    })
}

async fn round(
    settings: &Settings,
    dynamo: &Dynamo,
    bin: &std::path::Path,
    processes: usize,
    jobs: usize,
    shutdown: &CancellationToken,
) -> Result<Round> {
    let store = dynamo.fresh_store("scale").await?;
    let table = store.config().table.clone();
    let store: Arc<dyn Store> = Arc::new(store);
    let mock = rig::spawn_mock(settings.seed).await?;
    let sink = Sink::default();
    let callback = sink.spawn(shutdown).await?;
    store::ensure_signing_secrets(
        &*store,
        &domain::TenantId::new("bench"),
        domain::SigningSecret::generate(&mut rand::rng()),
    )
    .await?;
    seed_jobs(&*store, &callback, jobs, settings.seed).await?;

    let dir = tempfile::tempdir()?;
    let providers = rig::write_providers(dir.path(), &mock)?;
    let url = format!(
        "dynamodb://{table}?endpoint={}&region=us-east-1",
        dynamo.endpoint().await?
    );

    let key_file = rig::key_file()?;
    let started = Instant::now();
    let children: Vec<_> = (0..processes)
        .map(|n| {
            tokio::process::Command::new(bin)
                .args(["processor", "--once", "--store", &url])
                .arg("--providers")
                .arg(&providers)
                .args([
                    "--allow-networks",
                    "127.0.0.0/8",
                    "--processor-id",
                    &format!("bench-{n}"),
                ])
                .env("HOOKLINE_LOG", "warn")
                .env("HOOKLINE_SECRETS_KEY_FILE", key_file)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {} processor", bin.display()))
        })
        .collect::<Result<_>>()?;
    let delivered = sink.wait_for(jobs, Duration::from_secs(600)).await;
    let seconds = started.elapsed().as_secs_f64();
    let (mut claimed, mut lost) = (0, 0);
    for child in children {
        let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .context("a processor did not exit after its drain")??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "hookline processor failed: {}",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            );
        }
        claimed += report_field(&stdout, "claimed")?;
        lost += report_field(&stdout, "lost")?;
    }
    if !delivered {
        bail!(
            "scale: {} of {jobs} jobs delivered by {processes} processors",
            sink.delivered()
        );
    }
    Ok(Round {
        processes,
        jobs_per_s: jobs as f64 / seconds,
        claimed,
        lost,
        duplicates: sink.duplicates(),
    })
}

/// A number from `processor --once`'s closing line:
/// `claimed N delivered N retried N dead-lettered N lost N fenced N store-errors N`.
fn report_field(stdout: &str, name: &str) -> Result<u64> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("claimed "))
        .context("hookline processor printed no report line")?;
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .with_context(|| format!("no {name} in {line:?}"))
}

async fn seed_jobs(store: &dyn Store, callback: &str, jobs: usize, seed: u64) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let now = chrono::Utc::now() - chrono::Duration::seconds(1);
    let callback = url::Url::parse(callback)?;
    let all: Vec<domain::Job> = (0..jobs)
        .map(|_| {
            domain::Job::new(
                domain::NewJob {
                    id: domain::JobId::generate(now, &mut rng),
                    tenant: domain::TenantId::new("bench"),
                    target: domain::Target::Callback(callback.clone()),
                    payload: domain::Payload::Results { metadata: None },
                    providers: providers_mock::PROVIDERS
                        .iter()
                        .map(|p| (*p).to_owned())
                        .collect(),
                },
                now,
            )
        })
        .collect();
    let results: Vec<Result<(), store::StoreError>> = futures::stream::iter(&all)
        .map(|job| store.create_job(job))
        .buffer_unordered(32)
        .collect()
        .await;
    for result in results {
        result.context("seeding a job")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_processor_report_line() {
        let out = "claimed 120 delivered 118 retried 2 dead-lettered 0 lost 7 fenced 0 store-errors 0\n";
        assert_eq!(report_field(out, "claimed").expect("claimed"), 120);
        assert_eq!(report_field(out, "lost").expect("lost"), 7);
        assert!(report_field("nothing here", "lost").is_err());
    }
}
