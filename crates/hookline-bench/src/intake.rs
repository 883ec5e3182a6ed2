//! Scenario `intake`: closed-loop `POST /webhook` against the real intake
//! (in this process) on SQLite and on DynamoDB Local, beside the ceiling:
//! the same intake over a store that accepts jobs without writing them
//! ([`NoStore`]). Then SQLite at half its peak rate, open loop, for the p99
//! a caller sees when the server is not saturated.
//!
//! Scenario `memory`: the same closed loop against a spawned `hookline
//! serve` (intake and processor, SQLite, the mock providers and sink in this
//! process), and its peak RSS (`VmHWM` in /proc/PID/status).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use domain::{Clock, SystemClock};
use store::Store;
use tokio_util::sync::CancellationToken;

use crate::Settings;
use crate::load::{self, LoadResult, Request};
use crate::nostore::NoStore;
use crate::report::{Figure, ScenarioReport, field, number};
use crate::rig::{self, Dynamo};

/// How hard and how long each load runs.
struct Shape {
    clients: usize,
    warmup: Duration,
    measure: Duration,
    /// Rounds of the ceiling and SQLite, alternated: the machine's noise
    /// moves both, and the round of median ratio is reported.
    rounds: usize,
}

fn shape(settings: &Settings) -> Shape {
    if settings.quick {
        Shape {
            clients: 16,
            warmup: Duration::from_millis(500),
            measure: Duration::from_secs(2),
            rounds: 1,
        }
    } else {
        Shape {
            clients: 64,
            warmup: Duration::from_secs(2),
            measure: Duration::from_secs(10),
            rounds: 3,
        }
    }
}

/// The job every request asks for; the callback URL is never called here.
fn body() -> Arc<Vec<u8>> {
    Arc::new(
        rig::job_body("http://127.0.0.1:9/complete")
            .to_string()
            .into_bytes(),
    )
}

async fn request_to(store: Arc<dyn Store>, shutdown: &CancellationToken) -> Result<Request> {
    let key = rig::api_key(&*store, "bench").await?;
    let catalog_names = providers_mock::PROVIDERS
        .iter()
        .map(|p| (*p).to_owned())
        .collect();
    let base = rig::spawn_intake_named(
        store,
        Arc::new(SystemClock) as Arc<dyn Clock>,
        catalog_names,
        shutdown,
    )
    .await?;
    Ok(Request {
        client: rig::client_with_key(&key)?,
        url: format!("{base}/webhook"),
        body: body(),
        expected: 202,
    })
}

pub async fn run(settings: &Settings, dynamo: &Dynamo) -> Result<ScenarioReport> {
    let shape = shape(settings);
    let shutdown = CancellationToken::new();
    let result = measure_all(&shape, dynamo, &shutdown).await;
    shutdown.cancel();
    let Measured {
        ceiling,
        sqlite,
        dynamodb,
        half,
        ratios,
    } = result?;

    let mut figures = Vec::new();
    let mut notes = vec![format!(
        "{} keep-alive clients, closed loop, {:.1} s warm-up then {:.0} s measured per subject; the \
         intake runs in this process, so it shares the 2 cores with the load generator (and \
         DynamoDB Local's JVM). Ceiling: the same intake (auth, validation, routing) over a store \
         that accepts jobs without writing them. CPU per request: this process's user + system \
         time in the window (/proc/self/stat) over requests answered; with both cores busy, req/s \
         is about 2 cores / CPU per request, so this says where the time goes.",
        shape.clients,
        shape.warmup.as_secs_f64(),
        shape.measure.as_secs_f64()
    )];
    if ratios.len() > 1 {
        let each: Vec<String> = ratios.iter().map(|r| format!("{:.0}%", r * 100.0)).collect();
        notes.push(format!(
            "The ceiling and SQLite ran {} times, alternated, on one growing SQLite file; the round \
             with the median SQLite / ceiling ratio is reported (latencies from it too). The ratio \
             in each round: {}.",
            ratios.len(),
            each.join(", ")
        ));
    }
    let peak = ceiling.rate();
    for (subject, result) in [
        ("no-store ceiling", &ceiling),
        ("sqlite", &sqlite),
        ("dynamodb", &dynamodb),
    ] {
        let rate = Figure::new("intake", subject, "POST /webhook req/s", result.rate(), "req/s");
        figures.push(match subject {
            "no-store ceiling" => rate,
            "sqlite" => {
                let ratio = result.rate() / peak;
                rate.against(peak).target(">= 50% of ceiling", ratio >= 0.5)
            }
            _ => rate.against(peak),
        });
        for p in [50.0, 99.0, 99.9] {
            figures.push(Figure::new(
                "intake",
                subject,
                &format!("latency p{p}"),
                result.latency_ms(p),
                "ms",
            ));
        }
        figures.push(Figure::new(
            "intake",
            subject,
            "CPU per request (server + load generator)",
            result.cpu_ms_per_request(),
            "ms",
        ));
        errors_note(&mut notes, subject, result);
    }
    let p99 = half.latency_ms(99.0);
    figures.push(Figure::new(
        "intake",
        "sqlite",
        "open loop rate (half of peak)",
        half.rate(),
        "req/s",
    ));
    figures.push(Figure::new(
        "intake",
        "sqlite",
        "latency p50 at half of peak",
        half.latency_ms(50.0),
        "ms",
    ));
    figures.push(
        Figure::new("intake", "sqlite", "latency p99 at half of peak", p99, "ms")
            .target("< 10 ms", p99 < 10.0),
    );
    figures.push(Figure::new(
        "intake",
        "sqlite",
        "latency p99 at half of peak, from the actual send",
        half.sent_latency_ms(99.0),
        "ms",
    ));
    errors_note(&mut notes, "sqlite at half of peak", &half);
    notes.push(format!(
        "Half of peak: SQLite's closed-loop rate ({} req/s) halved, sent open loop over four \
         keep-alive connections per closed-loop client, each on its own schedule (wrk2's way; \
         latency counted from when each request was due; the figure \"from the actual send\" leaves \
         out how late this process sent it, i.e. client-side stalls).",
        number(sqlite.rate())
    ));
    Ok(ScenarioReport {
        name: "intake".to_owned(),
        seconds: 0.0,
        figures,
        notes,
    })
}

/// Connections of the open loop per closed-loop client: enough that one
/// slow answer seldom holds back the next request on its connection, so
/// the figure is the server's latency rather than the connections' queue.
const OPEN_LOOP_CONNECTIONS_PER_CLIENT: usize = 4;

/// What the intake scenario measured.
struct Measured {
    ceiling: LoadResult,
    sqlite: LoadResult,
    dynamodb: LoadResult,
    half: LoadResult,
    /// SQLite / ceiling req/s, round by round.
    ratios: Vec<f64>,
}

/// The round (ceiling, SQLite) of median ratio: both halves of a ratio
/// come from the same minute of the machine.
fn median_round(mut rounds: Vec<(LoadResult, LoadResult)>) -> (LoadResult, LoadResult) {
    let ratio = |(ceiling, sqlite): &(LoadResult, LoadResult)| sqlite.rate() / ceiling.rate();
    rounds.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    let middle = rounds.len() / 2;
    rounds.swap_remove(middle)
}

async fn measure_all(shape: &Shape, dynamo: &Dynamo, shutdown: &CancellationToken) -> Result<Measured> {
    let (sqlite, _dir) = rig::sqlite_store()?;
    let (ceiling_store, _ceiling_dir) = rig::sqlite_store()?;
    let ceiling_store: Arc<dyn Store> = Arc::new(NoStore::over(ceiling_store));
    let ceiling_request = request_to(ceiling_store, shutdown).await?;
    let sqlite_request = request_to(sqlite, shutdown).await?;
    let (mut rounds, mut ratios) = (Vec::new(), Vec::new());
    for _ in 0..shape.rounds.max(1) {
        let ceiling = load::closed_loop(&ceiling_request, shape.clients, shape.warmup, shape.measure).await;
        let on_sqlite = load::closed_loop(&sqlite_request, shape.clients, shape.warmup, shape.measure).await;
        eprintln!(
            "  intake: ceiling {} req/s, sqlite {} req/s",
            number(ceiling.rate()),
            number(on_sqlite.rate())
        );
        ratios.push(on_sqlite.rate() / ceiling.rate());
        rounds.push((ceiling, on_sqlite));
    }
    let (ceiling, on_sqlite) = median_round(rounds);

    // Right after SQLite's closed loop, before DynamoDB Local's JVM has
    // been worked (its garbage collector and compiler go on after a run).
    let half = load::open_loop(
        &sqlite_request,
        on_sqlite.rate() / 2.0,
        shape.warmup,
        shape.measure,
        shape.clients * OPEN_LOOP_CONNECTIONS_PER_CLIENT,
    )
    .await;

    let dynamo_store: Arc<dyn Store> = Arc::new(dynamo.fresh_store("intake").await?);
    let dynamo_request = request_to(dynamo_store, shutdown).await?;
    let on_dynamo = load::closed_loop(&dynamo_request, shape.clients, shape.warmup, shape.measure).await;
    eprintln!("  intake: dynamodb {} req/s", number(on_dynamo.rate()));

    Ok(Measured {
        ceiling,
        sqlite: on_sqlite,
        dynamodb: on_dynamo,
        half,
        ratios,
    })
}

fn errors_note(notes: &mut Vec<String>, subject: &str, result: &LoadResult) {
    if result.errors > 0 {
        notes.push(format!(
            "{subject}: {} requests not answered 202 (first: {}); not counted in req/s or latency.",
            result.errors,
            result.first_error.as_deref().unwrap_or("?")
        ));
    }
}

/// The `hookline` binary: `HOOKLINE_BIN`, or the one built beside this bench.
pub fn hookline_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("HOOKLINE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let me = std::env::current_exe().context("finding this binary")?;
    let bin = me.with_file_name("hookline");
    if !bin.exists() {
        bail!(
            "no hookline binary at {}: build it with the same profile (`cargo build [--release] -p hookline`) or set HOOKLINE_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

/// A spawned `hookline` process, killed when dropped.
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

pub async fn memory(settings: &Settings) -> Result<ScenarioReport> {
    let shape = shape(settings);
    let bin = hookline_bin()?;
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("serve.db").display());
    let mock = rig::spawn_mock(settings.seed).await?;
    let providers = rig::write_providers(dir.path(), &mock)?;
    let created = tokio::process::Command::new(&bin)
        .args(["keys", "create", "--tenant", "bench", "--store", &store_url])
        .env("HOOKLINE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {} keys create", bin.display()))?;
    if !created.status.success() {
        bail!(
            "hookline keys create: {}",
            String::from_utf8_lossy(&created.stderr).trim()
        );
    }
    let key = String::from_utf8_lossy(&created.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let child = Child(
        tokio::process::Command::new(&bin)
            .args(["serve", "--store", &store_url, "--listen", &listen])
            .arg("--providers")
            .arg(&providers)
            .args(["--allow-networks", "127.0.0.0/8"])
            .env("HOOKLINE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} serve", bin.display()))?,
    );
    let pid = child.0.id().context("hookline serve has no pid")?;
    let base = format!("http://{listen}");
    wait_healthy(&base).await?;
    let idle = rss_kib(pid, "VmRSS")?;
    let request = Request {
        client: rig::client_with_key(&key)?,
        url: format!("{base}/webhook"),
        body: Arc::new(rig::job_body(&mock.url("/complete")).to_string().into_bytes()),
        expected: 202,
    };
    let result = load::closed_loop(&request, shape.clients, shape.warmup, shape.measure).await;
    let peak = rss_kib(pid, "VmHWM")?;
    let after = rss_kib(pid, "VmRSS")?;
    drop(child);
    let delivered = mock.state.accepted_deliveries().len();
    let mut notes = vec![format!(
        "A spawned `hookline serve` (intake + processor, SQLite) under the intake scenario's load \
         ({} clients, {:.0} s); its processor delivered {delivered} of the {} accepted jobs to the \
         mock sink meanwhile. RSS read from /proc/{{pid}}/status: VmRSS before the load, VmHWM \
         (peak) after it.",
        shape.clients,
        shape.measure.as_secs_f64(),
        result.ok
    )];
    errors_note(&mut notes, "hookline serve", &result);
    Ok(ScenarioReport {
        name: "memory".to_owned(),
        seconds: 0.0,
        figures: vec![
            Figure::new(
                "memory",
                "hookline serve (sqlite)",
                "RSS idle",
                idle as f64 / 1024.0,
                "MiB",
            ),
            Figure::new(
                "memory",
                "hookline serve (sqlite)",
                "peak RSS under load",
                peak as f64 / 1024.0,
                "MiB",
            ),
            Figure::new(
                "memory",
                "hookline serve (sqlite)",
                "RSS after load",
                after as f64 / 1024.0,
                "MiB",
            ),
            Figure::new(
                "memory",
                "hookline serve (sqlite)",
                "POST /webhook req/s",
                result.rate(),
                "req/s",
            ),
            Figure::new(
                "memory",
                "hookline serve (sqlite)",
                "latency p99",
                result.latency_ms(99.0),
                "ms",
            ),
        ],
        notes,
    })
}

async fn wait_healthy(base: &str) -> Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("hookline serve did not answer {base}/healthz within 30 s")
}

/// A `kB` line of /proc/PID/status, in KiB.
fn rss_kib(pid: u32, name: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    field(&status, name)
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {name} in /proc/{pid}/status"))
}
