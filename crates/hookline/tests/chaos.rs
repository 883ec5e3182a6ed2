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
//! The events variant (SPEC section 9) runs a `hookline intake` process
//! too: the tenant registers event types and five endpoints over its API
//! (each at the sink with its own `x-endpoint` header, types and owner; one
//! answers `410 Gone`), publishes 400 events over HTTP, each with its own
//! `Idempotency-Key` and retried with it after a cut-off or a 503, while
//! processors are killed as above and the intake twice. Every accepted
//! event must have exactly the fan-out the subscription rule gives it (the
//! 410 endpoint left out only once it had answered 410), one delivery
//! record per endpoint and no other, each delivered (signed with its
//! endpoint's secret) unless its endpoint answered 410 or the sink refused
//! every attempt; duplicates are bounded by the deliveries in flight at the
//! kills, and the 410 endpoint, once disabled, gets only what was in flight.
//!
//! Run `cargo test -p hookline --test chaos -- --nocapture` to see the
//! numbers; `HOOKLINE_CHAOS_SEED` replays a run's kill and fault sequence
//! (as far as timing allows), `HOOKLINE_CHAOS_KEEP_LOGS=1` keeps the
//! processors' logs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, Select};
use domain::{Clock, Job, JobId, NewJob, SystemClock, TenantId};
use providers_mock::{Delivery, Faults, MockState, RunningMock};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
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

/// The key file every process of these tests seals secrets with, and the
/// tests' own stores too: they read what the others sealed.
fn key_file() -> &'static Path {
    static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &FILE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a directory for the key file");
            let path = dir.path().join("chaos.secrets-key");
            seal::KeyFile::generate(&seal::SystemFresh)
                .and_then(|file| file.save_new(&path))
                .expect("a key file");
            (dir, path)
        })
        .1
}

/// A sealer over [`key_file`].
async fn sealer() -> Arc<seal::Sealer> {
    hookline::sealer_for(
        "dynamodb://any",
        &hookline::SealArgs {
            secrets_key_file: Some(key_file().to_owned()),
            ..Default::default()
        },
    )
    .await
    .expect("a sealer over the tests' key file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processors_on_dynamodb_deliver_every_job_through_sigkills() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, store, probe) = create_dynamo_table().await;
    give_the_tenant_a_signing_secret(&store).await;
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
    let store =
        store_sqlite::SqliteStore::open(&path, store_sqlite::SqliteOptions::default(), sealer().await)
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

/// The events variant (SPEC section 9): the tenant registers event types
/// and endpoints over a real `hookline intake` process, publishes events
/// over HTTP while processors (and, twice, the intake) are SIGKILLed, and
/// every accepted event must reach exactly the endpoints it was fanned out
/// to: one delivery record each, delivered unless its endpoint answers 410
/// (and is disabled) or the sink refused every attempt, duplicates no more
/// than the deliveries in flight at the kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_fan_out_exactly_once_through_sigkills_of_processors_and_the_intake() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let name = "events";
    let (processes, concurrency, chaos) = (3, 12, Duration::from_secs(25));
    let seed = chaos_seed(name);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, store, probe) = create_dynamo_table().await;
    // Slower than the jobs' sink: a delivery fetches nothing, so this is
    // what keeps deliveries in flight long enough for a kill to catch them.
    let mock = spawn_faulty_mock(seed, EVENT_SINK_LATENCY_MS).await;
    let providers = write_providers(dir.path(), &mock);
    let http = authed(&create_key(&url, EVENTS_TENANT));
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");

    let mut fleet = Fleet::new(name, dir);
    fleet.add_intake(&url, &providers, &listen);
    fleet.spawn_all();
    wait_healthy(&mut fleet, &http, &base).await;
    let endpoints: Arc<[Registered]> = register_endpoints(&http, &base, &mock).await.into();

    fleet.add_processors(processes, &url, &providers, concurrency);
    fleet.spawn_all();
    let publish_over = chaos.mul_f64(0.6);
    let expected = Arc::new(OnceLock::new());
    let publishing = tokio::spawn(publish_events(
        http.clone(),
        base.clone(),
        Arc::clone(&endpoints),
        mock.state.clone(),
        publish_over,
        Arc::clone(&expected),
    ));
    // The intake is killed in the second and fourth rounds, ~5 s and ~10 s
    // in: while events are being published.
    let killed = kill_and_replace(
        Chaos {
            name,
            processes,
            chaos,
            probe: &probe,
            expected: &expected,
            intake_rounds: &[1, 3],
        },
        &mut fleet,
        &mut rng,
    )
    .await;
    let published = publishing.await.expect("the events were all published");
    let expected_rows = *expected.get().expect("set once publishing ends");
    let rows = drain(name, &mut fleet, &probe, expected_rows).await;
    let total = started.elapsed();

    // Nothing is due any more: read what the API says of every event, its
    // deliveries and the endpoints, then stop everything.
    let api = read_back(&http, &base, &published, &endpoints).await;
    let (fenced, store_errors) = stop_fleet(&mut fleet).await;
    drop(store);

    let verdict = judge_events(&EventsRun {
        endpoints: &endpoints,
        published: &published,
        api: &api,
        rows: &rows,
        deliveries: &mock.state.deliveries(),
        kills: &killed.kills,
        slots: processes * concurrency,
    });
    let in_flight_at_kills = in_flight_at(&killed.kills);
    let accepted = published.iter().filter(|p| p.is_ok()).count();
    let retried = published.iter().flatten().filter(|p| p.attempts > 1).count();
    let replayed = published.iter().flatten().filter(|p| p.status == 200).count();
    let empty = published
        .iter()
        .flatten()
        .filter(|p| p.deliveries.is_empty())
        .count();
    println!(
        "[{name}] {EVENTS} events published over {publish_over:.1?} to {} endpoints ({accepted} accepted, {} listed, \
         {empty} with no deliveries; {retried} retried with their key after a cut-off or 503, {replayed} \
         answered as replays), {} deliveries expected to {processes} processes: {} processor kills and {} \
         intake kills in {:.1?}, {in_flight_at_kills} deliveries in flight at the kills; {} missing, {} \
         duplicate deliveries; {} complete, {} failed (callback attempts exhausted: {}; to the 410 endpoint: \
         {}, of which {} reached it, {} after its first 410, and {} settled without a request once it was \
         disabled); {} attempts refused by the sink; healthy processes fenced off {fenced} times, failed to \
         save {store_errors} times; total {total:.1?}",
        endpoints.len(),
        api.listed.len(),
        verdict.expected,
        killed.kills.len(),
        killed.intake_kills,
        killed.took,
        verdict.missing,
        verdict.duplicates,
        verdict.complete,
        verdict.failed,
        verdict.exhausted,
        verdict.to_gone,
        verdict.gone_reached,
        verdict.gone_after_first,
        verdict.gone_skipped,
        verdict.refused,
    );
    assert!(
        verdict.duplicates <= in_flight_at_kills,
        "[{name}] {} duplicate deliveries, but only {in_flight_at_kills} deliveries were in flight at the kills \
         (seed {seed})",
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
    let seed = chaos_seed(name);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let mock = spawn_faulty_mock(seed, SINK_LATENCY_MS).await;
    let providers = write_providers(dir.path(), &mock);

    let (jobs, new_jobs) = plan_jobs(&mock, &mut rng);
    let gone = jobs.iter().filter(|j| j.gone).count();
    let mut fleet = Fleet::new(name, dir);
    fleet.add_processors(processes, &store_url, &providers, concurrency);
    fleet.spawn_all();
    let feed_over = chaos.mul_f64(0.6);
    let feeding = tokio::spawn(feed_jobs(store, new_jobs, feed_over));

    let expected = OnceLock::from(JOBS);
    let killed = kill_and_replace(
        Chaos {
            name,
            processes,
            chaos,
            probe: &probe,
            expected: &expected,
            intake_rounds: &[],
        },
        &mut fleet,
        &mut rng,
    )
    .await;
    let (kills, chaos_time) = (killed.kills, killed.took);
    feeding.await.expect("the jobs were all created");

    let rows = drain(name, &mut fleet, &probe, JOBS).await;
    let total = started.elapsed();
    let (fenced, store_errors) = stop_fleet(&mut fleet).await;

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
        in_flight_at(&kills),
        verdict.duplicates,
        verdict.complete,
        verdict.provider_failed,
        verdict.failed,
        verdict.exhausted,
        gas + internet,
        verdict.refused,
    );
    let in_flight_at_kills = in_flight_at(&kills);
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

/// The run's seed: `HOOKLINE_CHAOS_SEED`, or a random one, printed.
fn chaos_seed(name: &str) -> u64 {
    let seed = std::env::var("HOOKLINE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    println!("[{name}] seed {seed} (HOOKLINE_CHAOS_SEED replays the kills and faults)");
    seed
}

/// A new DynamoDB table made by `hookline table create`: its store URL,
/// the test's own handle on it, and a probe reading it behind the
/// processes' backs.
async fn create_dynamo_table() -> (String, store_dynamodb::DynamoStore, Probe) {
    let table = testkit::unique_table_name("chaos");
    let endpoint = testkit::dynamodb_endpoint();
    let url = format!("dynamodb://{table}?endpoint={endpoint}&region=us-east-1");
    let created = Command::new(BIN)
        .env("HOOKLINE_SECRETS_KEY_FILE", key_file())
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
    let store = store_dynamodb::DynamoStore::connect(config, sealer().await).await;
    let probe = Probe::Dynamo {
        client: store.client().clone(),
        table,
    };
    (url, store, probe)
}

/// The providers file naming the mock's `gas` and `internet`.
fn write_providers(dir: &Path, mock: &RunningMock) -> PathBuf {
    let providers = dir.join("providers.toml");
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
    providers
}

/// What [`kill_and_replace`] works with.
struct Chaos<'a> {
    name: &'static str,
    /// Processor slots `0..processes`; one of them is killed each round.
    processes: usize,
    /// How long processes are killed and restarted.
    chaos: Duration,
    probe: &'a Probe,
    /// How many jobs the store holds once all are created, once known: the
    /// chaos ends early when every one of them is finished.
    expected: &'a OnceLock<usize>,
    /// The rounds (from 0) in which the intake is SIGKILLed too.
    intake_rounds: &'a [usize],
}

struct Killed {
    kills: Vec<Kill>,
    intake_kills: usize,
    took: Duration,
}

/// Chaos: kills a random processor every 2-3 s and starts a new one in its
/// place, reading right after each kill which jobs it still held; in the
/// rounds asked for, kills the intake first and starts it again.
async fn kill_and_replace(chaos: Chaos<'_>, fleet: &mut Fleet, rng: &mut rand::rngs::StdRng) -> Killed {
    let Chaos {
        name,
        processes,
        chaos,
        probe,
        expected,
        intake_rounds,
    } = chaos;
    let started = Instant::now();
    let mut kills = Vec::<Kill>::new();
    let mut intake_kills = 0;
    let mut round = 0;
    while started.elapsed() < chaos {
        let pause = Duration::from_millis(rng.random_range(2000..3000));
        wait_watching(fleet, pause).await;
        if let Some(&expected) = expected.get() {
            let rows = probe.rows().await;
            if rows.len() >= expected && rows.iter().all(|r| is_terminal(&r.status)) {
                break;
            }
        }
        if intake_rounds.contains(&round)
            && let Some(slot) = fleet.intake_slot()
        {
            let owner = fleet.kill(slot);
            println!("[{name}] {:>5.1?} SIGKILL {owner}", started.elapsed());
            intake_kills += 1;
            fleet.spawn(slot);
        }
        let slot = rng.random_range(0..processes);
        let owner = fleet.kill(slot);
        let in_flight = probe.leased_by(&owner).await;
        println!(
            "[{name}] {:>5.1?} SIGKILL {owner}: {} jobs in flight",
            started.elapsed(),
            in_flight.len()
        );
        kills.push(Kill { owner, in_flight });
        fleet.spawn(slot);
        round += 1;
    }
    Killed {
        kills,
        intake_kills,
        took: started.elapsed(),
    }
}

/// Drain: the survivors (and the replacements) finish everything, taking
/// over the killed processes' jobs once their leases run out. Returns the
/// store's jobs once there are `expected` and none is due any more.
async fn drain(name: &str, fleet: &mut Fleet, probe: &Probe, expected: usize) -> Vec<Row> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let rows = probe.rows().await;
        if rows.len() >= expected && rows.iter().all(|r| is_terminal(&r.status)) {
            return rows;
        }
        if Instant::now() > deadline {
            panic!(
                "[{name}] jobs still unfinished 3 minutes after the chaos phase ({expected} expected)\n{}\n{}",
                describe_rows(&rows),
                fleet.log_tails(40)
            );
        }
        wait_watching(fleet, Duration::from_millis(250)).await;
    }
}

/// SIGTERM to every live process, each of which must stop cleanly; none
/// may have panicked. Returns how often healthy processes were fenced off
/// and failed to save: a healthy process never loses a lease; with these
/// timeouts only an overloaded machine could make one. Counted, so a run
/// shows it.
async fn stop_fleet(fleet: &mut Fleet) -> (usize, usize) {
    let name = fleet.name;
    for (owner, status, log) in fleet.terminate_all().await {
        assert!(
            status.success(),
            "[{name}] {owner} did not stop cleanly on SIGTERM: {status}\n{}",
            tail(&log, 40)
        );
    }
    if let Some((log, line)) = fleet.find_in_logs("panicked").first() {
        panic!("[{name}] a process panicked ({}): {line}", log.display());
    }
    let fenced = fleet.find_in_logs("lease was taken over").len();
    let store_errors = fleet.find_in_logs("could not save").len();
    (fenced, store_errors)
}

fn in_flight_at(kills: &[Kill]) -> usize {
    kills.iter().map(|k| k.in_flight.len()).sum()
}

/// Providers failing 30% of calls with 503, a sink refusing 20% with 503,
/// both a little slow (the sink by `sink_latency_ms`).
async fn spawn_faulty_mock(seed: u64, sink_latency_ms: u64) -> RunningMock {
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
        latency_ms: sink_latency_ms,
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
    let created = in_waves(jobs, 20, over, |new| {
        let store = Arc::clone(&store);
        async move { store.create_job(&Job::new(new, SystemClock.now())).await }
    })
    .await;
    for result in created {
        result.expect("create job");
    }
    // Closing the SQLite store waits for its writer thread: not on the runtime.
    tokio::task::spawn_blocking(move || drop(store))
        .await
        .expect("close the test's store");
}

/// Runs `each` on `items`, `wave` at a time at once, the waves' starts
/// spread evenly over `over` (a wave that runs late delays the next ones
/// only as long as it takes); the results in the items' order.
async fn in_waves<T, R, Fut: Future<Output = R>>(
    items: Vec<T>,
    wave: usize,
    over: Duration,
    mut each: impl FnMut(T) -> Fut,
) -> Vec<R> {
    let waves = items.len().div_ceil(wave).max(1);
    let every = over / u32::try_from(waves).expect("a few waves");
    let started = tokio::time::Instant::now();
    let mut items = items.into_iter();
    let mut results = Vec::new();
    for n in 0..waves {
        tokio::time::sleep_until(started + every * u32::try_from(n).expect("a few waves")).await;
        let runs: Vec<Fut> = items.by_ref().take(wave).map(&mut each).collect();
        results.extend(futures::future::join_all(runs).await);
    }
    results
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

// The events variant: what the tenant registers and publishes, and what
// every accepted event must have become.

const EVENTS: usize = 400;
const EVENTS_TENANT: &str = "chaos";
/// Event deliveries fetch nothing: a slower sink keeps them in flight long
/// enough for kills to catch some.
const EVENT_SINK_LATENCY_MS: u64 = 150;
/// Event `n` is of type `EVENT_TYPES[n % 3]` and owner `EVENT_OWNERS[n / 3 % 4]`:
/// every combination, over and over.
const EVENT_TYPES: [&str; 3] = ["invoice.paid", "customer.created", "order.shipped"];
const EVENT_OWNERS: [Option<&str>; 4] = [None, Some("acme"), Some("globex"), Some("initech")];

/// One endpoint the tenant registers; `n` is its `x-endpoint` header.
struct EndpointPlan {
    n: u8,
    owner: &'static str,
    types: &'static [&'static str],
    /// At the mock's `/gone`, which answers `410 Gone`: disabled at its
    /// first delivery.
    gone: bool,
}

const ENDPOINTS: [EndpointPlan; 5] = [
    EndpointPlan {
        n: 1,
        owner: "acme",
        types: &["invoice.paid"],
        gone: false,
    },
    EndpointPlan {
        n: 2,
        owner: "acme",
        types: &["*"],
        gone: false,
    },
    EndpointPlan {
        n: 3,
        owner: "globex",
        types: &["invoice.paid", "customer.created"],
        gone: false,
    },
    EndpointPlan {
        n: 4,
        owner: "globex",
        types: &["customer.created"],
        gone: true,
    },
    EndpointPlan {
        n: 5,
        owner: "initech",
        types: &["order.shipped", "invoice.paid"],
        gone: false,
    },
];

impl EndpointPlan {
    /// SPEC section 9's rule: its types (or `*`), and its owner when the
    /// event names one.
    fn subscribes(&self, event_type: &str, owner: Option<&str>) -> bool {
        (self.types == ["*"] || self.types.contains(&event_type)) && owner.is_none_or(|o| o == self.owner)
    }
}

fn event_of(n: usize) -> (&'static str, Option<&'static str>) {
    (EVENT_TYPES[n % 3], EVENT_OWNERS[n / 3 % 4])
}

/// An endpoint as registered: its id and the secret its deliveries must be
/// signed with.
struct Registered {
    plan: &'static EndpointPlan,
    /// `x-endpoint`.
    label: String,
    id: String,
    secret: domain::SigningSecret,
}

/// A client that sends `key` with every request.
fn authed(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().expect("header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// `hookline keys create`: the key it prints first.
fn create_key(store: &str, tenant: &str) -> String {
    let output = Command::new(BIN)
        .env("HOOKLINE_SECRETS_KEY_FILE", key_file())
        .args(["keys", "create", "--tenant", tenant, "--store", store])
        .env("HOOKLINE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run hookline keys create");
    assert!(
        output.status.success(),
        "keys create: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    stdout.lines().next().expect("the key").trim().to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn wait_healthy(fleet: &mut Fleet, http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http.get(format!("{base}/healthz")).send().await;
        if answer.is_ok_and(|a| a.status() == 200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the intake at {base} is not healthy after a minute:\n{}",
            fleet.log_tails(40)
        );
        wait_watching(fleet, Duration::from_millis(200)).await;
    }
}

/// The answer's JSON, which must have `status`.
async fn expect_status(response: reqwest::Response, status: u16, what: &str) -> Value {
    let got = response.status().as_u16();
    let text = response.text().await.expect("answer body");
    assert_eq!(got, status, "{what}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The event types, then [`ENDPOINTS`], over the API; the sink checks
/// nothing itself (the test verifies each delivery with its endpoint's
/// secret).
async fn register_endpoints(http: &reqwest::Client, base: &str, mock: &RunningMock) -> Vec<Registered> {
    for name in EVENT_TYPES {
        let response = http
            .put(format!("{base}/v1/event-types/{name}"))
            .json(&json!({"description": format!("chaos {name}")}))
            .send()
            .await
            .expect("PUT event type");
        expect_status(response, 201, &format!("PUT /v1/event-types/{name}")).await;
    }
    let mut registered = Vec::new();
    for plan in &ENDPOINTS {
        let url = mock.url(if plan.gone { "/gone" } else { "/complete" });
        let response = http
            .post(format!("{base}/v1/endpoints"))
            .json(&json!({
                "url": url,
                "description": format!("chaos endpoint {}", plan.n),
                "owner": plan.owner,
                "eventTypes": plan.types,
                "headers": {"x-endpoint": plan.n.to_string()},
            }))
            .send()
            .await
            .expect("POST endpoint");
        let answer = expect_status(response, 201, "POST /v1/endpoints").await;
        registered.push(Registered {
            plan,
            label: plan.n.to_string(),
            id: answer["endpointId"].as_str().expect("endpointId").to_owned(),
            secret: answer["secret"]
                .as_str()
                .expect("the secret, in the answer that created it")
                .parse()
                .expect("a whsec_ secret"),
        });
    }
    registered
}

/// One event as the intake accepted it.
struct Publish {
    n: usize,
    event_id: String,
    /// 202, or 200 for an idempotent replay.
    status: u16,
    /// POSTs it took: more than one after a cut-off (a kill) or a 503.
    attempts: u32,
    answer: Value,
    /// (deliveryId, endpointId), as the answer lists them.
    deliveries: Vec<(String, String)>,
    /// The answer leaves out the 410 endpoint although it subscribes to
    /// the event, and the sink had answered 410 before the answer came: it
    /// was disabled already.
    gone_disabled_before: bool,
}

/// Publishes [`EVENTS`] events in waves over `over`, each with its own
/// `Idempotency-Key`, retried with it until accepted; then sets `expected`
/// to the deliveries their answers list.
async fn publish_events(
    http: reqwest::Client,
    base: String,
    endpoints: Arc<[Registered]>,
    sink: MockState,
    over: Duration,
    expected: Arc<OnceLock<usize>>,
) -> Vec<Result<Publish, String>> {
    let gone_seen = Arc::new(AtomicBool::new(false));
    let published = in_waves((0..EVENTS).collect(), 10, over, |n| {
        publish_one(
            http.clone(),
            format!("{base}/v1/events"),
            n,
            Arc::clone(&endpoints),
            sink.clone(),
            Arc::clone(&gone_seen),
        )
    })
    .await;
    let deliveries = published.iter().flatten().map(|p| p.deliveries.len()).sum();
    expected.set(deliveries).expect("set once");
    published
}

async fn publish_one(
    http: reqwest::Client,
    url: String,
    n: usize,
    endpoints: Arc<[Registered]>,
    sink: MockState,
    gone_seen: Arc<AtomicBool>,
) -> Result<Publish, String> {
    let (event_type, owner) = event_of(n);
    let mut body = json!({"type": event_type, "payload": {"n": n}});
    if let Some(owner) = owner {
        body["owner"] = json!(owner);
    }
    let key = format!("chaos-event-{n}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = match http
            .post(&url)
            .header("idempotency-key", &key)
            .json(&body)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                match (status, response.text().await) {
                    (200 | 202, Ok(text)) => match serde_json::from_str::<Value>(&text) {
                        Ok(answer) => {
                            break publish_answer(n, status, attempts, answer, &endpoints, &sink, &gone_seen);
                        }
                        Err(err) => format!("{status} with a body that is not JSON ({err}): {text}"),
                    },
                    (_, Err(err)) => format!("{status}, then the body was cut off: {err}"),
                    (503, Ok(text)) => format!("503: {text}"),
                    (other, Ok(text)) => return Err(format!("event {n}: answered {other}: {text}")),
                }
            }
            Err(err) => format!("no answer: {err}"),
        };
        if Instant::now() > deadline {
            return Err(format!(
                "event {n}: not accepted within 2 minutes ({attempts} attempts, the last: {last})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn publish_answer(
    n: usize,
    status: u16,
    attempts: u32,
    answer: Value,
    endpoints: &[Registered],
    sink: &MockState,
    gone_seen: &AtomicBool,
) -> Result<Publish, String> {
    let event_id = answer["eventId"]
        .as_str()
        .ok_or_else(|| format!("event {n}: an answer without eventId: {answer}"))?
        .to_owned();
    let deliveries = answer["deliveries"]
        .as_array()
        .ok_or_else(|| format!("event {n}: an answer without deliveries: {answer}"))?
        .iter()
        .map(|d| {
            let text = |name: &str| d[name].as_str().map(str::to_owned);
            text("deliveryId")
                .zip(text("endpointId"))
                .ok_or_else(|| format!("event {n}: a delivery without its ids: {d}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (event_type, owner) = event_of(n);
    let left_out = endpoints
        .iter()
        .filter(|e| e.plan.gone && e.plan.subscribes(event_type, owner))
        .any(|e| !deliveries.iter().any(|(_, endpoint)| *endpoint == e.id));
    // Once the sink has answered 410 (seen after an answer), any later
    // answer may leave the endpoint out.
    let gone_disabled_before = left_out
        && (gone_seen.load(Ordering::SeqCst) || {
            let seen = sink.deliveries().iter().any(|d| d.status == 410);
            gone_seen.fetch_or(seen, Ordering::SeqCst);
            seen
        });
    Ok(Publish {
        n,
        event_id,
        status,
        attempts,
        answer,
        deliveries,
        gone_disabled_before,
    })
}

/// What the API says once nothing is due: each event (by id), each
/// delivery (by id), each endpoint (by id); `None` for a 404.
struct Api {
    events: HashMap<String, Option<Value>>,
    jobs: HashMap<String, Option<Value>>,
    endpoints: HashMap<String, Option<Value>>,
    /// Every event `GET /v1/events` lists, page after page.
    listed: Vec<String>,
}

async fn read_back(
    http: &reqwest::Client,
    base: &str,
    published: &[Result<Publish, String>],
    endpoints: &[Registered],
) -> Api {
    let accepted: Vec<&Publish> = published.iter().flatten().collect();
    let events = accepted
        .iter()
        .map(|p| (p.event_id.clone(), format!("{base}/v1/events/{}", p.event_id)));
    let jobs = accepted
        .iter()
        .flat_map(|p| &p.deliveries)
        .map(|(delivery, _)| (delivery.clone(), format!("{base}/v1/jobs/{delivery}")));
    let endpoint_urls = endpoints
        .iter()
        .map(|e| (e.id.clone(), format!("{base}/v1/endpoints/{}", e.id)));
    Api {
        events: get_all(http, events.collect()).await,
        jobs: get_all(http, jobs.collect()).await,
        endpoints: get_all(http, endpoint_urls.collect()).await,
        listed: list_events(http, base).await,
    }
}

/// The ids of every event of the tenant, through the listing's pages.
async fn list_events(http: &reqwest::Client, base: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/events?limit=100");
        if let Some(cursor) = &cursor {
            let _ = write!(url, "&cursor={cursor}");
        }
        let response = http.get(&url).send().await.expect("GET /v1/events");
        let page = expect_status(response, 200, &url).await;
        ids.extend(
            page["data"]
                .as_array()
                .expect("data")
                .iter()
                .filter_map(|e| e["eventId"].as_str().map(str::to_owned)),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
}

/// GETs each URL, a few at once: the JSON by its key, `None` for a 404.
async fn get_all(http: &reqwest::Client, urls: Vec<(String, String)>) -> HashMap<String, Option<Value>> {
    use futures::StreamExt as _;
    futures::stream::iter(urls)
        .map(|(key, url)| async move {
            let mut tries = 0;
            loop {
                tries += 1;
                match http.get(&url).send().await {
                    Ok(response) if response.status() == 404 => break (key, None),
                    Ok(response) if response.status() == 200 => {
                        let value = response.json::<Value>().await.expect("JSON");
                        break (key, Some(value));
                    }
                    other if tries >= 5 => panic!("GET {url}: {other:?}"),
                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await
}

struct EventsRun<'a> {
    endpoints: &'a [Registered],
    published: &'a [Result<Publish, String>],
    api: &'a Api,
    rows: &'a [Row],
    deliveries: &'a [Delivery],
    kills: &'a [Kill],
    /// Deliveries the processors make at once, at most.
    slots: usize,
}

#[derive(Default)]
struct EventsVerdict {
    /// Deliveries the accepted events' answers list.
    expected: usize,
    /// Expected deliveries without a record, unfinished, or finished
    /// without reaching the sink though the fault plan allowed it.
    missing: usize,
    duplicates: usize,
    complete: usize,
    failed: usize,
    /// Failed deliveries the sink refused every allowed attempt.
    exhausted: usize,
    /// Deliveries to the 410 endpoint: those that reached it, those whose
    /// 410 came after its first one, those settled without a request.
    to_gone: usize,
    gone_reached: usize,
    gone_after_first: usize,
    gone_skipped: usize,
    refused: usize,
    violations: Vec<String>,
}

/// Holds every accepted event's fan-out, the API's view of it and the
/// sink's record against the subscription rule and the fault plan.
fn judge_events(run: &EventsRun<'_>) -> EventsVerdict {
    let mut verdict = EventsVerdict::default();
    let by_label: HashMap<&str, &Registered> = run.endpoints.iter().map(|e| (e.label.as_str(), e)).collect();
    let by_id: HashMap<&str, &Registered> = run.endpoints.iter().map(|e| (e.id.as_str(), e)).collect();

    // The sink's record, by (event id, endpoint).
    let mut received: HashMap<(&str, &str), Received> = HashMap::new();
    let first_gone = run.deliveries.iter().position(|d| d.status == 410);
    let mut gone_after_first = HashSet::new();
    for (i, delivery) in run.deliveries.iter().enumerate() {
        let header = |name: &str| delivery.headers.get(name).map(String::as_str);
        let (Some(event), Some(label)) = (header("webhook-id"), header("x-endpoint")) else {
            verdict.violations.push(format!(
                "a delivery without webhook-id or x-endpoint: {:?}",
                delivery.headers
            ));
            continue;
        };
        let Some(endpoint) = by_label.get(label) else {
            verdict
                .violations
                .push(format!("{event}: a delivery to an unknown endpoint {label:?}"));
            continue;
        };
        if let Err(problem) = verify_with(&endpoint.secret, delivery) {
            verdict
                .violations
                .push(format!("{event}: its delivery to endpoint {label} {problem}"));
        }
        if endpoint.plan.gone != (delivery.status == 410) {
            verdict.violations.push(format!(
                "{event}: endpoint {label}'s delivery was answered {}",
                delivery.status
            ));
        }
        if endpoint.plan.gone && first_gone.is_some_and(|first| i > first) {
            gone_after_first.insert(event);
        }
        let entry = received.entry((event, label)).or_default();
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
    for kill in run.kills {
        for id in &kill.in_flight {
            caught_by_kills
                .entry(id.as_str())
                .or_default()
                .push(kill.owner.as_str());
        }
    }

    let mut expected_pairs = HashSet::new();
    let mut listed = HashSet::new();
    let mut gone_deliveries = HashSet::new();
    let empty = Received::default();
    for publish in run.published {
        let publish = match publish {
            Ok(publish) => publish,
            Err(problem) => {
                verdict.violations.push(problem.clone());
                continue;
            }
        };
        let (event_type, owner) = event_of(publish.n);
        let event = publish.event_id.as_str();
        if publish.answer["type"] != event_type || publish.answer["owner"].as_str() != owner {
            verdict.violations.push(format!(
                "{event}: event {} ({event_type}, {owner:?}) answered as {}",
                publish.n, publish.answer
            ));
        }

        // The fan-out, against the subscription rule.
        let mut to: BTreeMap<&str, &str> = BTreeMap::new();
        for (delivery, endpoint) in &publish.deliveries {
            if to.insert(endpoint.as_str(), delivery.as_str()).is_some() {
                verdict
                    .violations
                    .push(format!("{event}: two deliveries to endpoint {endpoint}"));
            }
            if !by_id.contains_key(endpoint.as_str()) {
                verdict.violations.push(format!(
                    "{event}: a delivery to an endpoint never registered: {endpoint}"
                ));
            }
        }
        for endpoint in run.endpoints {
            let subscribed = endpoint.plan.subscribes(event_type, owner);
            match (subscribed, to.contains_key(endpoint.id.as_str())) {
                (false, true) => verdict.violations.push(format!(
                    "{event}: fanned out to endpoint {}, which does not subscribe to {event_type} of {owner:?}",
                    endpoint.label
                )),
                // Left out: only the 410 endpoint, once it was disabled.
                (true, false) if !(endpoint.plan.gone && publish.gone_disabled_before) => {
                    verdict.violations.push(format!(
                        "{event}: not fanned out to endpoint {}, which subscribes to it",
                        endpoint.label
                    ))
                }
                _ => {}
            }
        }

        // The API shows the same deliveries.
        match run.api.events.get(event).and_then(Option::as_ref) {
            None => verdict.violations.push(format!(
                "{event}: accepted, but GET /v1/events/{event} finds nothing"
            )),
            Some(view) => {
                let shown: BTreeMap<&str, &str> = view["deliveries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| Some((d["endpointId"].as_str()?, d["deliveryId"].as_str()?)))
                    .collect();
                if shown != to || view["payload"] != json!({"n": publish.n}) {
                    verdict.violations.push(format!(
                        "{event}: its answer listed {to:?}, GET /v1/events shows {view}"
                    ));
                }
            }
        }

        for (&endpoint_id, &delivery) in &to {
            let Some(endpoint) = by_id.get(endpoint_id) else {
                continue;
            };
            verdict.expected += 1;
            expected_pairs.insert((event, endpoint.label.as_str()));
            listed.insert(delivery);
            let job = run.api.jobs.get(delivery).and_then(Option::as_ref);
            let status = job.and_then(|j| j["status"].as_str()).unwrap_or("missing");
            if let Some(job) = job
                && (job["eventId"] != event || job["endpointId"] != endpoint_id)
            {
                verdict.violations.push(format!(
                    "{delivery}: the delivery of {event} to {endpoint_id} reads as {job}"
                ));
            }
            match status {
                "complete" => verdict.complete += 1,
                "failed" => verdict.failed += 1,
                _ => {}
            }
            let got = received.get(&(event, endpoint.label.as_str())).unwrap_or(&empty);
            let extra = got.accepted.len().saturating_sub(1);
            verdict.duplicates += extra;
            let caught = caught_by_kills
                .get(delivery)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if extra > caught.len() {
                verdict.violations.push(format!(
                    "{delivery}: {event} reached endpoint {} {} times, but only {caught:?} were killed holding it",
                    endpoint.label,
                    got.accepted.len()
                ));
            }
            if endpoint.plan.gone {
                gone_deliveries.insert(delivery);
                verdict.to_gone += 1;
                if got.gone == 0 {
                    verdict.gone_skipped += 1;
                } else {
                    verdict.gone_reached += 1;
                }
                if status != "failed" || !got.accepted.is_empty() || got.gone > 1 + caught.len() {
                    verdict.violations.push(format!(
                        "{delivery}: {event} to the 410 endpoint is {status} after {} 410s ({} kills held it)",
                        got.gone,
                        caught.len()
                    ));
                }
                continue;
            }
            match status {
                "complete" if got.accepted.is_empty() => {
                    verdict.missing += 1;
                    verdict.violations.push(format!(
                        "{delivery}: complete, but {event} never reached endpoint {}",
                        endpoint.label
                    ));
                }
                "complete" => {
                    for delivery in &got.accepted {
                        if delivery.body["type"] != event_type
                            || delivery.body["data"] != json!({"n": publish.n})
                        {
                            verdict.violations.push(format!(
                                "{event}: endpoint {} received {}",
                                endpoint.label, delivery.body
                            ));
                        }
                    }
                }
                "failed" if got.accepted.is_empty() && got.refused >= CALLBACK_ATTEMPTS => {
                    verdict.exhausted += 1
                }
                other => {
                    verdict.missing += 1;
                    verdict.violations.push(format!(
                        "{delivery}: {event} to endpoint {} is {other}, after {} accepted and {} refused attempts \
                         (only {CALLBACK_ATTEMPTS} refusals may fail it)",
                        endpoint.label,
                        got.accepted.len(),
                        got.refused
                    ));
                }
            }
        }
    }

    // Exactly one event per accepted publish, retried or not.
    let accepted: HashSet<&str> = run
        .published
        .iter()
        .flatten()
        .map(|p| p.event_id.as_str())
        .collect();
    let listed_events: HashSet<&str> = run.api.listed.iter().map(String::as_str).collect();
    if run.api.listed.len() != accepted.len() || listed_events != accepted {
        verdict.violations.push(format!(
            "GET /v1/events lists {} events ({} distinct), {} publishes were accepted as {} events; not \
             accepted but listed: {:?}",
            run.api.listed.len(),
            listed_events.len(),
            run.published.iter().flatten().count(),
            accepted.len(),
            listed_events.difference(&accepted).take(5).collect::<Vec<_>>()
        ));
    }
    for (event, label) in received.keys() {
        if !expected_pairs.contains(&(*event, *label)) {
            verdict.violations.push(format!(
                "{event}: endpoint {label} received it, but no accepted event's fan-out lists that"
            ));
        }
    }
    // Exactly one record per expected delivery: the store holds those and
    // no other.
    if run.rows.len() != verdict.expected {
        verdict.violations.push(format!(
            "the store holds {} deliveries, the accepted events list {}",
            run.rows.len(),
            verdict.expected
        ));
    }
    for row in run.rows {
        if !listed.contains(row.id.as_str()) {
            verdict.violations.push(format!(
                "{}: a delivery record ({}) no accepted event lists",
                row.id, row.status
            ));
        }
    }
    for endpoint in run.endpoints {
        let view = run.api.endpoints.get(&endpoint.id).and_then(Option::as_ref);
        let state = view.map(|v| (v["status"].as_str(), v["disabledReason"].as_str()));
        let want = if endpoint.plan.gone && verdict.gone_reached > 0 {
            (Some("disabled"), Some("gone"))
        } else {
            (Some("enabled"), None)
        };
        if state != Some(want) {
            verdict.violations.push(format!(
                "endpoint {} ({}) should be {want:?}: {view:?}",
                endpoint.label, endpoint.id
            ));
        }
    }
    // After the first 410 the endpoint is disabled (unless the kill of the
    // process that got it came first), and only deliveries that had read it
    // before may still reach it: at most one per slot.
    verdict.gone_after_first = gone_after_first.len();
    let kills_holding_gone = run
        .kills
        .iter()
        .filter(|k| k.in_flight.iter().any(|id| gone_deliveries.contains(id.as_str())))
        .count();
    let bound = run.slots * (1 + kills_holding_gone);
    if verdict.gone_after_first > bound {
        verdict.violations.push(format!(
            "the 410 endpoint received {} deliveries after its first 410; at most {bound} can have been in flight",
            verdict.gone_after_first
        ));
    }
    verdict
}

/// Whether `delivery` carries a Standard Webhooks signature by `secret`
/// (its own timestamp taken as now: the time is not what is checked).
fn verify_with(secret: &domain::SigningSecret, delivery: &Delivery) -> Result<(), String> {
    use domain::signing;
    let header = |name: &str| {
        delivery
            .headers
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("has no {name} header"))
    };
    let (id, timestamp, signature) = (
        header(signing::HEADER_ID)?,
        header(signing::HEADER_TIMESTAMP)?,
        header(signing::HEADER_SIGNATURE)?,
    );
    let now = timestamp
        .parse()
        .map_err(|_| format!("has a webhook-timestamp that is not a number: {timestamp}"))?;
    signing::verify(
        std::slice::from_ref(secret),
        id,
        timestamp,
        signature,
        &delivery.raw_body,
        now,
        signing::DEFAULT_TOLERANCE,
    )
    .map_err(|err| format!("is not signed with its endpoint's secret: {err}"))
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

/// The processes: processors, one per slot, and the intake, if any, in a
/// slot of its own; each incarnation with its own id and log file. Every
/// live child is killed when this is dropped, so a failing test leaves
/// nothing running; on a panic (or with `HOOKLINE_CHAOS_KEEP_LOGS` set) the
/// logs are kept.
struct Fleet {
    name: &'static str,
    dir: Option<tempfile::TempDir>,
    roles: BTreeMap<usize, Role>,
    live: BTreeMap<usize, Running>,
    generation: HashMap<usize, u32>,
    logs: Vec<PathBuf>,
}

/// What runs in a slot.
struct Role {
    /// Names its incarnations: `{fleet}-{label}-gen{N}`.
    label: String,
    args: Vec<String>,
    /// A processor is told its id (which its leases carry).
    processor: bool,
}

/// The intake's slot, after every processor's.
const INTAKE_SLOT: usize = usize::MAX;

struct Running {
    owner: String,
    child: Child,
    log: PathBuf,
}

impl Fleet {
    fn new(name: &'static str, dir: tempfile::TempDir) -> Self {
        Self {
            name,
            dir: Some(dir),
            roles: BTreeMap::new(),
            live: BTreeMap::new(),
            generation: HashMap::new(),
            logs: Vec::new(),
        }
    }

    /// `hookline processor` in slots `0..processes`.
    fn add_processors(&mut self, processes: usize, store: &str, providers: &Path, concurrency: usize) {
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
        for slot in 0..processes {
            self.roles.insert(
                slot,
                Role {
                    label: (slot + 1).to_string(),
                    args: args.clone(),
                    processor: true,
                },
            );
        }
    }

    /// `hookline intake` listening on `listen`, in [`INTAKE_SLOT`].
    fn add_intake(&mut self, store: &str, providers: &Path, listen: &str) {
        let args = [
            "intake",
            "--store",
            store,
            "--providers",
            &providers.to_string_lossy(),
            "--listen",
            listen,
        ]
        .map(str::to_owned)
        .to_vec();
        self.roles.insert(
            INTAKE_SLOT,
            Role {
                label: "intake".to_owned(),
                args,
                processor: false,
            },
        );
    }

    fn intake_slot(&self) -> Option<usize> {
        self.roles.contains_key(&INTAKE_SLOT).then_some(INTAKE_SLOT)
    }

    /// Starts every slot that has nothing running.
    fn spawn_all(&mut self) {
        let idle: Vec<usize> = self
            .roles
            .keys()
            .filter(|slot| !self.live.contains_key(slot))
            .copied()
            .collect();
        for slot in idle {
            self.spawn(slot);
        }
    }

    fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("the directory lives as long as the fleet")
            .path()
    }

    fn spawn(&mut self, slot: usize) {
        let role = self.roles.get(&slot).expect("a role for the slot");
        let generation = self.generation.entry(slot).or_default();
        *generation += 1;
        let owner = format!("{}-{}-gen{generation}", self.name, role.label);
        let log = self.dir().join(format!("{owner}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(BIN);
        command.env("HOOKLINE_SECRETS_KEY_FILE", key_file());
        command.args(&role.args);
        if role.processor {
            command.args(["--processor-id", &owner]);
        }
        let child = command
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
            .expect("spawn hookline");
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
