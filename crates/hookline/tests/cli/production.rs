//! What the image and a single server run on: providers from the
//! environment (`HOOKLINE_PROVIDERS_TOML`), `hookline healthcheck`, and
//! `hookline backup` of a live SQLite store, under load, restored and
//! served from.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use providers_mock::{MockState, SignatureVerdict};
use serde_json::{Value, json};

use crate::support::{
    BIN, ChildGuard, LOOPBACK, assert_one_line_failure, authed, free_port, get_json, hookline_with_env,
    job_status, post_job, spawn_with_env, wait_healthy, wait_ready, wait_until, with_log, write_providers,
};

/// The mock's providers as TOML, for the environment.
fn providers_toml(mock: &providers_mock::RunningMock) -> String {
    format!(
        "[providers.gas]\nurl = \"{}\"\ntimeout = \"5s\"\n\n[providers.internet]\nurl = \"{}\"\n",
        mock.url("/providers/gas"),
        mock.url("/providers/internet")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_its_providers_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mock = providers_mock::spawn(listener, MockState::with_seed(21)).expect("mock");
    let store = format!("sqlite://{}", dir.path().join("env.db").display());
    let http = authed(&crate::support::create_key(&store, "acme"));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("serve.log");
    let _server = spawn_with_env(
        &[
            "serve",
            "--store",
            &store,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--schedule",
            "* * * * * *",
        ],
        &log,
        &[("HOOKLINE_PROVIDERS_TOML", providers_toml(&mock))],
    );
    wait_ready(&http, &base).await;
    let id = post_job(&http, &base, &mock.url("/complete")).await;
    wait_until(
        Duration::from_secs(20),
        with_log("the job to be complete", &log),
        async || job_status(&http, &base, &id).await == "complete",
    )
    .await;
    let delivered = mock.state.accepted_deliveries();
    assert_eq!(delivered.len(), 1);
    let results = &delivered[0].body["results"];
    assert_eq!(results.as_array().map(Vec::len), Some(2), "{results}");

    // The healthcheck the image runs: 0 and one line for a live server
    // (found from HOOKLINE_LISTEN, as in the image), 1 and one line for
    // none.
    let healthy = hookline_with_env(
        &["healthcheck"],
        &[("HOOKLINE_LISTEN", format!("0.0.0.0:{port}"))],
    );
    let stdout = String::from_utf8_lossy(&healthy.stdout);
    assert!(
        healthy.status.success(),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );
    assert_eq!(stdout.trim(), format!("http://127.0.0.1:{port}/healthz: 200 OK"));
    let closed = free_port();
    let url = format!("http://127.0.0.1:{closed}/healthz");
    assert_one_line_failure(&["healthcheck", "--url", &url], "no answer");
    assert_eq!(
        hookline_with_env(&["healthcheck", "--url", &url], &[])
            .status
            .code(),
        Some(1)
    );
    let not_found = format!("{base}/nothing-here");
    assert_one_line_failure(&["healthcheck", "--url", &not_found], "answered 404");
    assert_one_line_failure(&["healthcheck", "--url", "ftp://x"], "not an http(s) URL");
    assert_eq!(
        hookline_with_env(&["healthcheck", "--url", "ftp://x"], &[])
            .status
            .code(),
        Some(2)
    );
}

/// The providers come from exactly one place; anything else is one line,
/// exit 2, on every command that takes them, before anything listens.
#[test]
fn providers_from_a_file_or_the_environment_but_not_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("providers.toml");
    let good = "[providers.gas]\nurl = \"http://127.0.0.1:9/gas\"\n";
    std::fs::write(&file, good).expect("write");
    let file = file.to_string_lossy().into_owned();
    let store = format!("sqlite://{}", dir.path().join("p.db").display());
    let commands: [&[&str]; 3] = [
        &["serve", "--listen", "127.0.0.1:0"],
        &["intake", "--listen", "127.0.0.1:0"],
        &["processor", "--once"],
    ];
    let cases: [(Vec<(&str, String)>, &str); 6] = [
        (vec![], "no providers: give --providers FILE"),
        (
            vec![
                ("HOOKLINE_PROVIDERS", file.clone()),
                ("HOOKLINE_PROVIDERS_TOML", good.to_owned()),
            ],
            "not both",
        ),
        (
            vec![(
                "HOOKLINE_PROVIDERS_TOML",
                "[providers.gas]\nurl = \"http://127.0.0.1:9/gas\"\ntimeout = \n".to_owned(),
            )],
            "in HOOKLINE_PROVIDERS_TOML: providers file: line 3, column 11",
        ),
        (
            vec![(
                "HOOKLINE_PROVIDERS_TOML",
                "[providers.gas]\nurl = \"ftp://x/gas\"\n".to_owned(),
            )],
            "in HOOKLINE_PROVIDERS_TOML: provider \"gas\": url \"ftp://x/gas\" must be http or https",
        ),
        (
            vec![("HOOKLINE_PROVIDERS_TOML", "# nothing\n".to_owned())],
            "HOOKLINE_PROVIDERS_TOML configures no providers",
        ),
        (
            vec![("HOOKLINE_PROVIDERS_TOML", "providers = 3\n".to_owned())],
            "in HOOKLINE_PROVIDERS_TOML: providers file:",
        ),
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.extend(["--store", &store]);
        for (env, needle) in &cases {
            let output = hookline_with_env(&args, env);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
            assert!(stderr.starts_with("hookline: "), "{stderr}");
            assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?} {env:?}: {stderr}");
            assert!(stderr.contains(needle), "{args:?} {env:?}: {stderr}");
        }
        // The flags, as the variables: both given is the same error.
        let mut both = args.clone();
        both.extend(["--providers", &file, "--providers-toml", good]);
        assert_one_line_failure(&both, "not both");
        assert_eq!(hookline_with_env(&both, &[]).status.code(), Some(2));
    }
}

/// The binary with nothing of the tests' own sealing: a SQLite store's
/// secrets under the key file beside it, as a server runs it.
fn hookline_plain(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_remove("HOOKLINE_SECRETS_KEY_FILE")
        .env_remove("HOOKLINE_KMS_KEY")
        .env_remove("HOOKLINE_STORE")
        .env_remove("HOOKLINE_BLOBS")
        .env("HOOKLINE_ALLOW_NETWORKS", LOOPBACK)
        .stdin(Stdio::null());
    command
}

fn run_plain(dir: &Path, args: &[&str]) -> Output {
    hookline_plain(dir)
        .env("HOOKLINE_LOG", "warn")
        .args(args)
        .output()
        .expect("run hookline")
}

fn serve_plain(dir: &Path, store: &str, providers: &Path, port: u16, log: &Path) -> ChildGuard {
    let log = std::fs::File::create(log).expect("log file");
    let child = hookline_plain(dir)
        .args([
            "serve",
            "--store",
            store,
            "--providers",
            &providers.to_string_lossy(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--schedule",
            "* * * * * *",
        ])
        .env("HOOKLINE_LOG", "info")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn hookline");
    ChildGuard(child)
}

/// Copies `from` (a file or a directory tree) to `to`, as `cp -a` would.
fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).expect("copy");
    }
}

/// A backup taken while jobs are being created and delivered holds every
/// job acknowledged before it began, passes SQLite's integrity check, and
/// restored elsewhere is a store hookline serves: its secrets open (the key
/// file came along: the callback is validly signed), its blob payloads
/// read (the blobs came along).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_to_a_store_hookline_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).expect("mkdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mock = providers_mock::spawn(listener, MockState::with_seed(22)).expect("mock");
    let providers = write_providers(dir.path(), &mock, "5s");
    let database = live.join("hookline.db");
    let store = format!("sqlite://{}", database.display());

    let created = run_plain(
        dir.path(),
        &["keys", "create", "--tenant", "acme", "--store", &store],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let printed = String::from_utf8(created.stdout).expect("utf-8");
    let mut lines = printed.lines();
    let key = lines.next().expect("key").trim().to_owned();
    let secret = lines.next().expect("secret").trim().to_owned();
    mock.state
        .set_signing_secrets(vec![secret.parse().expect("a whsec_ secret")]);
    assert!(
        live.join("hookline.db.secrets-key").is_file(),
        "the default key file"
    );

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("live.log");
    let server = serve_plain(dir.path(), &store, &providers, port, &log);
    let http = authed(&key);
    wait_ready(&http, &base).await;

    // An event whose payload is a blob (over 64 KiB), before the backup.
    let answer = http
        .put(format!("{base}/v1/event-types/big"))
        .json(&json!({"description": "large"}))
        .send()
        .await
        .expect("event type");
    assert_eq!(answer.status(), 201);
    let answer = http
        .post(format!("{base}/v1/endpoints"))
        .json(&json!({"url": mock.url("/complete"), "eventTypes": ["big"]}))
        .send()
        .await
        .expect("endpoint");
    assert_eq!(answer.status(), 201);
    let payload = json!({"filler": "x".repeat(100 * 1024)});
    let answer = http
        .post(format!("{base}/v1/events"))
        .json(&json!({"type": "big", "payload": payload}))
        .send()
        .await
        .expect("event");
    assert_eq!(answer.status(), 202);
    let event: Value = answer.json().await.expect("json");
    let event_id = event["eventId"].as_str().expect("eventId").to_owned();
    let blobs = live.join("hookline.db-blobs");
    assert!(
        blobs.is_dir(),
        "the payload went to the blob store beside the database"
    );

    // Load: posters creating jobs while the processor delivers them; each
    // remembers when each of its jobs was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let mut posters = Vec::new();
    for _ in 0..4 {
        let (http, base, stop) = (http.clone(), base.clone(), Arc::clone(&stop));
        let callback = mock.url("/complete");
        posters.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let answer = http
                    .post(format!("{base}/webhook"))
                    .json(&json!({"providers": ["gas", "internet"], "callbackUrl": callback}))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(answer.status(), 202);
                let body: Value = answer.json().await.expect("json");
                let id = body["jobId"].as_str().expect("jobId").to_owned();
                acked.push((Instant::now(), id));
            }
            acked
        }));
    }
    wait_until(
        Duration::from_secs(30),
        with_log("deliveries under way", &log),
        async || mock.state.accepted_deliveries().len() >= 20,
    )
    .await;

    let backup = dir.path().join("backups").join("hookline.db");
    let began = Instant::now();
    let delivered_before = mock.state.accepted_deliveries().len();
    let output = {
        let mut command = hookline_plain(dir.path());
        command.env("HOOKLINE_LOG", "warn").args([
            "backup",
            "--store",
            &store,
            "--to",
            &backup.to_string_lossy(),
        ]);
        tokio::task::spawn_blocking(move || command.output().expect("run backup"))
            .await
            .expect("backup thread")
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("integrity ok") && stdout.contains("1 blobs"),
        "{stdout}"
    );
    // The load went on through the backup, and a little after.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut before = BTreeSet::new();
    let mut total = 0;
    for poster in posters {
        for (at, id) in poster.await.expect("poster") {
            total += 1;
            if at < began {
                before.insert(id);
            }
        }
    }
    let delivered_after = mock.state.accepted_deliveries().len();
    println!(
        "backup under load: {} jobs acknowledged before it began, {total} in all; {} deliveries before, {} after",
        before.len(),
        delivered_before,
        delivered_after
    );
    assert!(
        before.len() >= 20,
        "the backup began under load: {}",
        before.len()
    );
    assert!(total > before.len(), "jobs were created while it ran");
    drop(server);

    // A backup never overwrites, and is of SQLite only.
    let again = run_plain(
        dir.path(),
        &["backup", "--store", &store, "--to", &backup.to_string_lossy()],
    );
    assert_eq!(again.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("already exists") && stderr.trim_end().lines().count() == 1,
        "{stderr}"
    );
    let dynamo = run_plain(
        dir.path(),
        &["backup", "--store", "dynamodb://jobs", "--to", "x.db"],
    );
    assert_eq!(dynamo.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dynamo.stderr).contains("point-in-time recovery"));

    // Restored: the backup's three parts copied where a store looks for them.
    let restored_dir = dir.path().join("restored");
    std::fs::create_dir_all(&restored_dir).expect("mkdir");
    let restored = restored_dir.join("jobs.db");
    copy_tree(&backup, &restored);
    copy_tree(&with(&backup, ".secrets-key"), &with(&restored, ".secrets-key"));
    copy_tree(&with(&backup, "-blobs"), &with(&restored, "-blobs"));
    {
        let conn = rusqlite::Connection::open(&restored).expect("the restored file opens");
        let verdict: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity_check");
        assert_eq!(verdict, "ok");
    }

    let restored_store = format!("sqlite://{}", restored.display());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("restored.log");
    let _restored_server = serve_plain(dir.path(), &restored_store, &providers, port, &log);
    wait_healthy(&http, &base).await;
    for id in &before {
        let answer = http
            .get(format!("{base}/v1/jobs/{id}"))
            .send()
            .await
            .expect("GET job");
        assert_eq!(
            answer.status(),
            200,
            "job {id}, acknowledged before the backup, is in it"
        );
    }
    let event = get_json(&http, &format!("{base}/v1/events/{event_id}")).await;
    assert_eq!(
        event["payload"], payload,
        "the blob payload reads from the restored blobs"
    );

    // The restored store's secrets open: a new job's callback is signed
    // with the tenant's secret from before.
    let id = post_job(&http, &base, &mock.url("/complete")).await;
    wait_until(
        Duration::from_secs(30),
        with_log("the restored store to deliver a new job", &log),
        async || job_status(&http, &base, &id).await == "complete",
    )
    .await;
    let delivery = mock
        .state
        .accepted_deliveries()
        .into_iter()
        .find(|d| d.job_id() == Some(id.as_str()))
        .expect("delivered");
    assert!(
        matches!(delivery.signature, SignatureVerdict::Valid),
        "{:?}",
        delivery.signature
    );
}

fn with(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
