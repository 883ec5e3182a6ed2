//! Delivery guarantees under faults (issue 4): real `hookline processor`
//! processes share one store while the providers fail 30% of fetches, the
//! receiver refuses 20% of callbacks, and the test SIGKILLs a random
//! processor every few seconds and starts a new one in its place.
//!
//! At the end every job is `complete`, or `failed` exactly where the fault
//! plan made that inevitable (its receiver answers `410 Gone`, or refused
//! every callback attempt the schedule allows); every complete job's callback
//! arrived at least once, with the providers' data; and the duplicate
//! deliveries are no more than the jobs in flight at the kills: right after
//! each kill the test reads which jobs the killed process still held leases
//! on, and a job may be delivered again at most once per kill that caught it.
//!
//! Run `cargo test -p hookline --test chaos -- --nocapture` to see the
//! numbers; `HOOKLINE_CHAOS_SEED` replays a run's kill and fault sequence
//! (as far as timing allows), `HOOKLINE_CHAOS_KEEP_LOGS=1` keeps the
//! processors' logs.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, Select};
use domain::{Clock, Job, JobId, NewJob, SystemClock, TenantId};
use providers_mock::{Delivery, Faults, MockState, RunningMock};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use store::JobStore;

const BIN: &str = env!("CARGO_BIN_EXE_hookline");

const JOBS: usize = 1000;
/// One job in this many calls back a receiver that answers `410 Gone`.
const GONE_EVERY: usize = 33;
const PROVIDER_FAILURE: f64 = 0.3;
const SINK_FAILURE: f64 = 0.2;
/// Real services take a moment, which keeps jobs in flight long enough for a
/// kill to catch them.
const PROVIDER_LATENCY_MS: u64 = 150;
const SINK_LATENCY_MS: u64 = 30;
/// Short schedules, so a run takes seconds; same shape as the defaults.
const PROVIDER_RETRIES: &str = "100ms,200ms,400ms,800ms,1s";
const PROVIDER_ATTEMPTS: usize = 6;
const CALLBACK_RETRIES: &str = "100ms,200ms,400ms,800ms,1s,1s,1s";
const CALLBACK_ATTEMPTS: usize = 8;
const PROVIDER_TIMEOUT: &str = "2s";
const CALLBACK_TIMEOUT: &str = "2s";
/// Longer than provider timeout + callback timeout + 5 s, as the binary
/// requires; also how long a killed process's jobs wait to be taken over.
const LEASE: &str = "10s";
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The chaos tests share two cores with everything else: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processors_on_dynamodb_deliver_every_job_through_sigkills() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let table = testkit::unique_table_name("chaos");
    let endpoint = testkit::dynamodb_endpoint();
    let url = format!("dynamodb://{table}?endpoint={endpoint}&region=us-east-1");
    let created = Command::new(BIN)
        .args(["table", "create", "--store", &url])
        .env("HOOKLINE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run hookline table create");
    assert!(
        created.status.success(),
        "table create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let config = store_dynamodb::DynamoConfig::from_url(&url).expect("store URL");
    let store = store_dynamodb::DynamoStore::connect(config).await;
    give_the_tenant_a_signing_secret(&store).await;
    let probe = Probe::Dynamo {
        client: store.client().clone(),
        table,
    };
    run_chaos(Scenario {
        name: "dynamodb",
        dir,
        store_url: url,
        store: Arc::new(store),
        probe,
        processes: 3,
        concurrency: 12,
        chaos: Duration::from_secs(25),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_one_sqlite_file_deliver_every_job_through_sigkills() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chaos.db");
    let store = store_sqlite::SqliteStore::open(&path, store_sqlite::SqliteOptions::default())
        .expect("open SQLite store");
    give_the_tenant_a_signing_secret(&store).await;
    run_chaos(Scenario {
        name: "sqlite",
        store_url: format!("sqlite://{}", path.display()),
        dir,
        store: Arc::new(store),
        probe: Probe::Sqlite { path },
        processes: 2,
        concurrency: 8,
        chaos: Duration::from_secs(20),
    })
    .await;
}

struct Scenario {
    name: &'static str,
    dir: tempfile::TempDir,
    store_url: String,
    /// The test's own handle, used only to create the jobs.
    store: Arc<dyn JobStore>,
    probe: Probe,
    processes: usize,
    /// Jobs each process works on at once: few enough that the processes
    /// stay busy while the jobs arrive, so kills catch work in flight.
    concurrency: usize,
    /// How long processes are killed and restarted; then the survivors drain.
    chaos: Duration,
}

/// One job the test created, and what the fault plan says about it.
struct Planned {
    id: String,
    /// Its receiver answers `410 Gone`: it must end `failed`.
    gone: bool,
}

async fn run_chaos(scenario: Scenario) {
    let Scenario {
        name,
        dir,
        store_url,
        store,
        probe,
        processes,
        concurrency,
        chaos,
    } = scenario;
    let seed = std::env::var("HOOKLINE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    println!("[{name}] seed {seed} (HOOKLINE_CHAOS_SEED replays the kills and faults)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let mock = spawn_faulty_mock(seed).await;
    let providers = dir.path().join("providers.toml");
    std::fs::write(
        &providers,
        format!(
            "[providers.gas]\nurl = \"{}\"\ntimeout = \"{PROVIDER_TIMEOUT}\"\n\n\
             [providers.internet]\nurl = \"{}\"\ntimeout = \"{PROVIDER_TIMEOUT}\"\n",
            mock.url("/providers/gas"),
            mock.url("/providers/internet"),
        ),
    )
    .expect("write providers file");

    let (jobs, new_jobs) = plan_jobs(&mock, &mut rng);
    let gone = jobs.iter().filter(|j| j.gone).count();
    let mut fleet = Fleet::new(name, dir, &store_url, &providers, concurrency);
    for slot in 0..processes {
        fleet.spawn(slot);
    }
    let feed_over = chaos.mul_f64(0.6);
    let feeding = tokio::spawn(feed_jobs(store, new_jobs, feed_over));

    // Chaos: kill a random process every 2-3 s and start a new one in its
    // place, reading right after each kill which jobs it still held.
    let chaos_started = Instant::now();
    let mut kills = Vec::<Kill>::new();
    while chaos_started.elapsed() < chaos {
        let pause = Duration::from_millis(rng.random_range(2000..3000));
        wait_watching(&mut fleet, pause).await;
        let rows = probe.rows().await;
        if rows.len() == JOBS && rows.iter().all(|r| is_terminal(&r.status)) {
            break;
        }
        let slot = rng.random_range(0..processes);
        let owner = fleet.kill(slot);
        let in_flight = probe.leased_by(&owner).await;
        println!(
            "[{name}] {:>5.1?} SIGKILL {owner}: {} jobs in flight",
            chaos_started.elapsed(),
            in_flight.len()
        );
        kills.push(Kill { owner, in_flight });
        fleet.spawn(slot);
    }
    let chaos_time = chaos_started.elapsed();
    feeding.await.expect("the jobs were all created");

    // Drain: the survivors (and the replacements) finish everything, taking
    // over the killed processes' jobs once their leases run out.
    let drain_deadline = Instant::now() + Duration::from_secs(180);
    let rows = loop {
        let rows = probe.rows().await;
        if rows.len() == JOBS && rows.iter().all(|r| is_terminal(&r.status)) {
            break rows;
        }
        if Instant::now() > drain_deadline {
            panic!(
                "[{name}] jobs still unfinished 3 minutes after the chaos phase\n{}\n{}",
                describe_rows(&rows),
                fleet.log_tails(40)
            );
        }
        wait_watching(&mut fleet, Duration::from_millis(250)).await;
    };
    let total = started.elapsed();

    for (owner, status, log) in fleet.terminate_all().await {
        assert!(
            status.success(),
            "[{name}] {owner} did not stop cleanly on SIGTERM: {status}\n{}",
            tail(&log, 40)
        );
    }
    if let Some((log, line)) = fleet.find_in_logs("panicked").first() {
        panic!("[{name}] a processor panicked ({}): {line}", log.display());
    }
    // A healthy process never loses a lease; with these timeouts only an
    // overloaded machine could make one. Counted, so a run shows it.
    let fenced = fleet.find_in_logs("lease was taken over").len();
    let store_errors = fleet.find_in_logs("could not save").len();

    let verdict = judge(&jobs, &rows, &mock.state.deliveries(), &kills);
    let gas = mock.state.provider_calls("gas");
    let internet = mock.state.provider_calls("internet");
    println!(
        "[{name}] {JOBS} jobs ({gone} calling a 410 receiver) fed over {feed_over:.1?} to {processes} processes: \
         {} kills in {chaos_time:.1?}, {} jobs in flight at the kills, \
         {} duplicate deliveries; {} complete ({} reporting a provider that failed {PROVIDER_ATTEMPTS} times), \
         {} failed (410: {gone}, callback attempts exhausted: {}); {} provider calls; {} callbacks refused by \
         the sink; healthy processes fenced off {fenced} times, failed to save {store_errors} times; \
         total {total:.1?}",
        kills.len(),
        kills.iter().map(|k| k.in_flight.len()).sum::<usize>(),
        verdict.duplicates,
        verdict.complete,
        verdict.provider_failed,
        verdict.failed,
        verdict.exhausted,
        gas + internet,
        verdict.refused,
    );
    let in_flight_at_kills: usize = kills.iter().map(|k| k.in_flight.len()).sum();
    assert!(
        verdict.duplicates <= in_flight_at_kills,
        "[{name}] {} duplicate deliveries, but only {in_flight_at_kills} jobs were in flight at the kills (seed {seed})",
        verdict.duplicates
    );
    assert!(
        verdict.violations.is_empty(),
        "[{name}] {} violations (seed {seed}):\n{}\n{}\n{}",
        verdict.violations.len(),
        verdict
            .violations
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        describe_rows(&rows),
        logs_about(&fleet, &verdict.violations)
    );
}

/// Providers failing 30% of calls with 503, a sink refusing 20% with 503,
/// both a little slow.
async fn spawn_faulty_mock(seed: u64) -> RunningMock {
    let state = MockState::with_seed(seed);
    for provider in providers_mock::PROVIDERS {
        state.set_provider_faults(
            provider,
            Faults {
                status: Some(503),
                failure_probability: PROVIDER_FAILURE,
                latency_ms: PROVIDER_LATENCY_MS,
                ..Faults::default()
            },
        );
    }
    state.set_sink_faults(Faults {
        status: Some(503),
        failure_probability: SINK_FAILURE,
        latency_ms: SINK_LATENCY_MS,
        ..Faults::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind mock");
    providers_mock::spawn(listener, state).expect("spawn mock")
}

/// Callbacks are signed: the jobs' tenant needs a secret, as `keys create`
/// would have given it.
async fn give_the_tenant_a_signing_secret(store: &dyn store::KeyStore) {
    store::ensure_signing_secrets(
        store,
        &TenantId::new("default"),
        domain::SigningSecret::generate(&mut rand::rng()),
    )
    .await
    .expect("signing secret");
}

/// The jobs of a run: ~3% call back a receiver that answers `410 Gone`.
fn plan_jobs(mock: &RunningMock, rng: &mut rand::rngs::StdRng) -> (Vec<Planned>, Vec<NewJob>) {
    let now = SystemClock.now();
    let complete = url::Url::parse(&mock.url("/complete")).expect("sink URL");
    let gone = url::Url::parse(&mock.url("/gone")).expect("gone URL");
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|n| {
            let metadata = domain::Metadata::from_json(&format!(r#"{{"n":{n}}}"#)).expect("object");
            NewJob {
                id: JobId::generate(now, rng),
                tenant: TenantId::new("default"),
                target: domain::Target::Callback(if n % GONE_EVERY == GONE_EVERY / 2 {
                    gone.clone()
                } else {
                    complete.clone()
                }),
                payload: domain::Payload::Results {
                    metadata: Some(metadata),
                },
                providers: providers_mock::PROVIDERS
                    .iter()
                    .map(|p| (*p).to_owned())
                    .collect(),
            }
        })
        .collect();
    let planned = jobs
        .iter()
        .map(|job| Planned {
            id: job.id.to_string(),
            gone: job.target == domain::Target::Callback(gone.clone()),
        })
        .collect();
    (planned, jobs)
}

/// Writes the jobs into the store as intake would, in waves spread over
/// `over`, so the processors have work in flight whenever one is killed.
async fn feed_jobs(store: Arc<dyn JobStore>, jobs: Vec<NewJob>, over: Duration) {
    const WAVE: usize = 20;
    let waves = jobs.len().div_ceil(WAVE);
    let every = over / u32::try_from(waves).expect("a few waves");
    let started = tokio::time::Instant::now();
    let mut jobs = jobs.into_iter();
    for wave in 0..waves {
        tokio::time::sleep_until(started + every * u32::try_from(wave).expect("a few waves")).await;
        let writes = jobs.by_ref().take(WAVE).map(|new| {
            let store = Arc::clone(&store);
            async move { store.create_job(&Job::new(new, SystemClock.now())).await }
        });
        for result in futures::future::join_all(writes).await {
            result.expect("create job");
        }
    }
    // Closing the SQLite store waits for its writer thread: not on the runtime.
    tokio::task::spawn_blocking(move || drop(store))
        .await
        .expect("close the test's store");
}

struct Kill {
    owner: String,
    /// Jobs whose lease the killed process still held.
    in_flight: Vec<String>,
}

fn is_terminal(status: &str) -> bool {
    status == "complete" || status == "failed"
}

#[derive(Default)]
struct Verdict {
    complete: usize,
    failed: usize,
    /// Failed non-410 jobs whose receiver refused every allowed attempt.
    exhausted: usize,
    /// Complete jobs whose callback reported a provider as failed.
    provider_failed: usize,
    duplicates: usize,
    /// Callback attempts the sink's fault plan refused.
    refused: usize,
    violations: Vec<String>,
}

#[derive(Default)]
struct Received<'a> {
    accepted: Vec<&'a Delivery>,
    refused: usize,
    gone: usize,
}

/// Holds the final store state and the sink's record against the plan.
fn judge(jobs: &[Planned], rows: &[Row], deliveries: &[Delivery], kills: &[Kill]) -> Verdict {
    let mut verdict = Verdict::default();
    let status: HashMap<&str, &str> = rows.iter().map(|r| (r.id.as_str(), r.status.as_str())).collect();
    let mut received: HashMap<&str, Received> = HashMap::new();
    for delivery in deliveries {
        let Some(id) = delivery.job_id() else {
            verdict
                .violations
                .push(format!("a delivery without a jobId: {:?}", delivery.body));
            continue;
        };
        if delivery.headers.get("webhook-id").map(String::as_str) != Some(id) {
            verdict.violations.push(format!(
                "{id}: webhook-id header {:?} is not the job id",
                delivery.headers.get("webhook-id")
            ));
        }
        let entry = received.entry(id).or_default();
        if delivery.accepted() {
            entry.accepted.push(delivery);
        } else if delivery.status == 410 {
            entry.gone += 1;
        } else {
            entry.refused += 1;
            verdict.refused += 1;
        }
    }
    let mut caught_by_kills: HashMap<&str, Vec<&str>> = HashMap::new();
    for kill in kills {
        for id in &kill.in_flight {
            caught_by_kills
                .entry(id.as_str())
                .or_default()
                .push(kill.owner.as_str());
        }
    }
    if rows.len() != jobs.len() {
        verdict.violations.push(format!(
            "the store holds {} jobs, {} were created",
            rows.len(),
            jobs.len()
        ));
    }
    let empty = Received::default();
    for job in jobs {
        let id = job.id.as_str();
        let got = received.get(id).unwrap_or(&empty);
        let status = status.get(id).copied().unwrap_or("missing");
        let extra = got.accepted.len().saturating_sub(1);
        verdict.duplicates += extra;
        let caught = caught_by_kills.get(id).map(Vec::as_slice).unwrap_or_default();
        if extra > caught.len() {
            verdict.violations.push(format!(
                "{id}: {} accepted deliveries, but only {caught:?} were killed holding it",
                got.accepted.len()
            ));
        }
        match status {
            "failed" => verdict.failed += 1,
            "complete" => verdict.complete += 1,
            _ => {}
        }
        if job.gone {
            if status != "failed" || got.gone == 0 || !got.accepted.is_empty() {
                verdict.violations.push(format!(
                    "{id}: its receiver answers 410, yet it is {status} after {} 410s and {} accepted deliveries",
                    got.gone,
                    got.accepted.len()
                ));
            }
            continue;
        }
        match status {
            "complete" if got.accepted.is_empty() => verdict
                .violations
                .push(format!("{id}: complete, but the sink never accepted its callback")),
            "complete" => {
                for delivery in &got.accepted {
                    match check_results(id, &delivery.body) {
                        Ok(provider_failed) => verdict.provider_failed += usize::from(provider_failed),
                        Err(problem) => verdict.violations.push(problem),
                    }
                }
            }
            "failed" if got.accepted.is_empty() && got.refused >= CALLBACK_ATTEMPTS => verdict.exhausted += 1,
            other => verdict.violations.push(format!(
                "{id}: {other}, after {} accepted and {} refused callbacks (only 410 receivers, or {CALLBACK_ATTEMPTS} \
                 refusals, may fail a job)",
                got.accepted.len(),
                got.refused
            )),
        }
    }
    for id in received.keys() {
        if !status.contains_key(id) {
            verdict
                .violations
                .push(format!("{id}: delivered, but not a job in the store"));
        }
    }
    verdict
}

/// Each provider's result is its data, or a failure after every attempt the
/// schedule allows (the only way the fault plan fails a provider). Returns
/// whether a provider failed.
fn check_results(id: &str, body: &Value) -> Result<bool, String> {
    let results = body["results"]
        .as_array()
        .ok_or_else(|| format!("{id}: callback without results: {body}"))?;
    let mut names: Vec<&str> = results.iter().filter_map(|r| r["provider"].as_str()).collect();
    names.sort_unstable();
    if names != ["gas", "internet"] {
        return Err(format!("{id}: callback results name {names:?}: {body}"));
    }
    let mut failed = false;
    for result in results {
        let provider = result["provider"].as_str().unwrap_or_default();
        match result["status"].as_str() {
            Some("ok") if result["data"] == providers_mock::billing_data(provider, id) => {}
            Some("failed")
                if result["error"]
                    .as_str()
                    .is_some_and(|e| e.ends_with(&format!("after {PROVIDER_ATTEMPTS} attempts"))) =>
            {
                failed = true
            }
            _ => return Err(format!("{id}: unexpected {provider} result {result}")),
        }
    }
    Ok(failed)
}

/// What the processors logged about the first jobs a violation names.
fn logs_about(fleet: &Fleet, violations: &[String]) -> String {
    let mut text = String::new();
    for id in violations.iter().filter_map(|v| v.split(':').next()).take(3) {
        for (log, line) in fleet.find_in_logs(id) {
            let name = log.file_name().unwrap_or_default().to_string_lossy();
            let _ = writeln!(text, "{name}: {line}");
        }
    }
    text
}

fn describe_rows(rows: &[Row]) -> String {
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for row in rows {
        *by_status.entry(row.status.as_str()).or_default() += 1;
    }
    let mut text = format!("store: {} jobs by status {by_status:?}", rows.len());
    for row in rows.iter().filter(|r| !is_terminal(&r.status)).take(10) {
        let _ = write!(
            text,
            "\n  unfinished {} {} lease {:?}",
            row.id, row.status, row.lease_owner
        );
    }
    text
}

/// Waits `pause`, failing at once if a processor exits on its own.
async fn wait_watching(fleet: &mut Fleet, pause: Duration) {
    let until = Instant::now() + pause;
    loop {
        if let Some(problem) = fleet.exited_on_its_own() {
            panic!("{problem}");
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_millis(200))).await;
    }
}

/// One job as the store holds it.
#[derive(Debug)]
struct Row {
    id: String,
    status: String,
    lease_owner: Option<String>,
}

/// Reads the store behind the processors' backs: test-only scans.
enum Probe {
    Dynamo {
        client: aws_sdk_dynamodb::Client,
        table: String,
    },
    Sqlite {
        path: PathBuf,
    },
}

impl Probe {
    async fn rows(&self) -> Vec<Row> {
        match self {
            Probe::Dynamo { client, table } => {
                let mut rows = Vec::new();
                let mut start = None;
                loop {
                    let page = client
                        .scan()
                        .table_name(table)
                        .consistent_read(true)
                        .projection_expression("sk, #status, leaseOwner")
                        .expression_attribute_names("#status", "status")
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .expect("scan the table");
                    for item in page.items() {
                        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
                        // The table holds tenants' keys and secrets too;
                        // a job's sort key is `job#{id}`.
                        let Some(id) = text("sk").and_then(|sk| sk.strip_prefix("job#").map(str::to_owned))
                        else {
                            continue;
                        };
                        rows.push(Row {
                            id,
                            status: text("status").expect("a status"),
                            lease_owner: text("leaseOwner"),
                        });
                    }
                    match page.last_evaluated_key {
                        Some(key) => start = Some(key),
                        None => break rows,
                    }
                }
            }
            Probe::Sqlite { path } => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = sqlite_reader(&path);
                    let mut statement = conn
                        .prepare("SELECT id, status, lease_owner FROM jobs")
                        .expect("prepare");
                    statement
                        .query_map([], |row| {
                            Ok(Row {
                                id: row.get(0)?,
                                status: row.get(1)?,
                                lease_owner: row.get(2)?,
                            })
                        })
                        .expect("query jobs")
                        .collect::<Result<Vec<_>, _>>()
                        .expect("read jobs")
                })
                .await
                .expect("SQLite read")
            }
        }
    }

    /// The jobs whose lease `owner` holds.
    async fn leased_by(&self, owner: &str) -> Vec<String> {
        match self {
            Probe::Dynamo { client, table } => {
                let mut ids = Vec::new();
                let mut start = None;
                loop {
                    let page = client
                        .scan()
                        .table_name(table)
                        .consistent_read(true)
                        .filter_expression("leaseOwner = :owner")
                        .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
                        .projection_expression("sk")
                        .select(Select::SpecificAttributes)
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .expect("scan the table for leases");
                    ids.extend(page.items().iter().filter_map(|item| {
                        item.get("sk")
                            .and_then(|v| v.as_s().ok())
                            .and_then(|sk| sk.strip_prefix("job#"))
                            .map(str::to_owned)
                    }));
                    match page.last_evaluated_key {
                        Some(key) => start = Some(key),
                        None => break ids,
                    }
                }
            }
            Probe::Sqlite { path } => {
                let (path, owner) = (path.clone(), owner.to_owned());
                tokio::task::spawn_blocking(move || {
                    let conn = sqlite_reader(&path);
                    let mut statement = conn
                        .prepare("SELECT id FROM jobs WHERE lease_owner = ?1")
                        .expect("prepare");
                    statement
                        .query_map([owner], |row| row.get(0))
                        .expect("query leases")
                        .collect::<Result<Vec<String>, _>>()
                        .expect("read leases")
                })
                .await
                .expect("SQLite read")
            }
        }
    }
}

fn sqlite_reader(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the SQLite file read-only");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    conn
}

/// The processor processes: one per slot, each incarnation with its own id
/// and log file. Every live child is killed when this is dropped, so a
/// failing test leaves nothing running; on a panic (or with
/// `HOOKLINE_CHAOS_KEEP_LOGS` set) the logs are kept.
struct Fleet {
    name: &'static str,
    dir: Option<tempfile::TempDir>,
    args: Vec<String>,
    live: BTreeMap<usize, Running>,
    generation: HashMap<usize, u32>,
    logs: Vec<PathBuf>,
}

struct Running {
    owner: String,
    child: Child,
    log: PathBuf,
}

impl Fleet {
    fn new(
        name: &'static str,
        dir: tempfile::TempDir,
        store: &str,
        providers: &Path,
        concurrency: usize,
    ) -> Self {
        let args = [
            "processor",
            "--store",
            store,
            "--providers",
            &providers.to_string_lossy(),
            "--schedule",
            "* * * * * *",
            "--lease",
            LEASE,
            "--callback-timeout",
            CALLBACK_TIMEOUT,
            "--provider-retries",
            PROVIDER_RETRIES,
            "--callback-retries",
            CALLBACK_RETRIES,
            "--shutdown-grace",
            &format!("{}s", SHUTDOWN_GRACE.as_secs()),
            "--concurrency",
            &concurrency.to_string(),
            "--batch-size",
            &(2 * concurrency).to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        Self {
            name,
            dir: Some(dir),
            args,
            live: BTreeMap::new(),
            generation: HashMap::new(),
            logs: Vec::new(),
        }
    }

    fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("the directory lives as long as the fleet")
            .path()
    }

    fn spawn(&mut self, slot: usize) {
        let generation = self.generation.entry(slot).or_default();
        *generation += 1;
        let owner = format!("{}-{}-gen{generation}", self.name, slot + 1);
        let log = self.dir().join(format!("{owner}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .args(&self.args)
            .args(["--processor-id", &owner])
            // The mock sink is on loopback, which the SSRF guard refuses
            // unless allowed.
            .args(["--allow-networks", "127.0.0.0/8"])
            // Several processors at once: each its own metrics port.
            .env("HOOKLINE_METRICS_LISTEN", "127.0.0.1:0")
            .env("HOOKLINE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("spawn hookline processor");
        self.logs.push(log.clone());
        self.live.insert(slot, Running { owner, child, log });
    }

    /// SIGKILLs the process in `slot` and waits until it is gone, so nothing
    /// it sent can still be on its way; returns its id.
    fn kill(&mut self, slot: usize) -> String {
        let mut running = self.live.remove(&slot).expect("a live process in the slot");
        running.child.kill().expect("SIGKILL");
        running.child.wait().expect("reap the killed process");
        running.owner
    }

    fn exited_on_its_own(&mut self) -> Option<String> {
        for running in self.live.values_mut() {
            if let Ok(Some(status)) = running.child.try_wait() {
                return Some(format!(
                    "[{}] {} exited on its own ({status}):\n{}",
                    self.name,
                    running.owner,
                    tail(&running.log, 40)
                ));
            }
        }
        None
    }

    /// SIGTERM to every live process; how each one exited, and its log.
    async fn terminate_all(&mut self) -> Vec<(String, ExitStatus, PathBuf)> {
        for running in self.live.values() {
            let pid = running.child.id().to_string();
            let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
            assert!(sent.success(), "SIGTERM to {}", running.owner);
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE + Duration::from_secs(15);
        let mut exits = Vec::new();
        while let Some((slot, running)) = self.live.iter_mut().next() {
            if let Some(status) = running.child.try_wait().expect("wait") {
                let slot = *slot;
                let running = self.live.remove(&slot).expect("just seen");
                exits.push((running.owner, status, running.log));
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] {} did not stop after SIGTERM:\n{}",
                self.name,
                running.owner,
                tail(&running.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        exits
    }

    /// Every log line of every incarnation that contains `needle`.
    fn find_in_logs(&self, needle: &str) -> Vec<(PathBuf, String)> {
        let mut found = Vec::new();
        for log in &self.logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            found.extend(
                text.lines()
                    .filter(|l| l.contains(needle))
                    .map(|l| (log.clone(), l.to_owned())),
            );
        }
        found
    }

    /// The last lines of every live process's log.
    fn log_tails(&self, lines: usize) -> String {
        let mut text = String::new();
        for running in self.live.values() {
            let _ = write!(
                text,
                "--- {} (last {lines} lines)\n{}\n",
                running.owner,
                tail(&running.log, lines)
            );
        }
        text
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for running in self.live.values_mut() {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
        let keep = std::thread::panicking() || std::env::var_os("HOOKLINE_CHAOS_KEEP_LOGS").is_some();
        if keep && let Some(dir) = self.dir.take() {
            eprintln!("[{}] processor logs kept in {}", self.name, dir.keep().display());
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
