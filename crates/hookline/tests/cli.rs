//! The real `hookline` binary as a child process: the README's DynamoDB
//! path (table create, then serve or intake + processor --once, a job posted
//! over HTTP and delivered), and one-line errors for bad input.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use providers_mock::MockState;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hookline");

/// Kills the child if a test fails before it is stopped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hookline(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("HOOKLINE_STORE")
        .env("HOOKLINE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run hookline")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Setup {
    store: String,
    providers: PathBuf,
    mock: providers_mock::RunningMock,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let endpoint = testkit::dynamodb_endpoint();
    let table = testkit::unique_table_name("cli");
    let store = format!("dynamodb://{table}?endpoint={endpoint}&region=us-east-1");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mock = providers_mock::spawn(listener, MockState::with_seed(3)).expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = dir.path().join("providers.toml");
    std::fs::write(
        &providers,
        format!(
            "[providers.gas]\nurl = \"{}\"\ntimeout = \"5s\"\n\n[providers.internet]\nurl = \"{}\"\n",
            mock.url("/providers/gas"),
            mock.url("/providers/internet")
        ),
    )
    .expect("write providers");
    Setup {
        store,
        providers,
        mock,
        _dir: dir,
    }
}

fn spawn(args: &[&str], log: &Path) -> ChildGuard {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new(BIN)
        .args(args)
        .env("HOOKLINE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn hookline");
    ChildGuard(child)
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = http.get(format!("{base}/healthz")).send().await
            && response.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} never became healthy");
}

async fn post_job(http: &reqwest::Client, base: &str, callback: &str) -> String {
    let response = http
        .post(format!("{base}/webhook"))
        .json(&json!({"providers": ["gas", "internet"], "callbackUrl": callback}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("json");
    body["jobId"].as_str().expect("jobId").to_owned()
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let response = http.get(url).send().await.expect("GET");
    response.json().await.expect("JSON body")
}

async fn job_status(http: &reqwest::Client, base: &str, id: &str) -> String {
    let job = get_json(http, &format!("{base}/v1/jobs/{id}")).await;
    job["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_create_then_serve_delivers_a_job() {
    let setup = setup().await;
    let created = hookline(&["table", "create", "--store", &setup.store]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(String::from_utf8_lossy(&created.stdout).contains("created table"));
    let again = hookline(&["table", "create", "--store", &setup.store]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already exists"));

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = setup._dir.path().join("serve.log");
    let listen = format!("127.0.0.1:{port}");
    let providers = setup.providers.to_string_lossy().into_owned();
    let mut server = spawn(
        &[
            "serve",
            "--store",
            &setup.store,
            "--listen",
            &listen,
            "--providers",
            &providers,
            "--schedule",
            "* * * * * *",
        ],
        &log,
    );
    let http = reqwest::Client::new();
    wait_healthy(&http, &base).await;
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );

    let id = post_job(&http, &base, &setup.mock.url("/complete")).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while job_status(&http, &base, &id).await != "complete" {
        assert!(
            Instant::now() < deadline,
            "job not complete in time; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deliveries = setup.mock.state.accepted_deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].job_id(), Some(id.as_str()));

    // SIGTERM stops it cleanly.
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "exit {status}; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_then_processor_once_drains_and_exits() {
    let setup = setup().await;
    assert!(
        hookline(&["table", "create", "--store", &setup.store])
            .status
            .success()
    );
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let providers = setup.providers.to_string_lossy().into_owned();
    let _intake = spawn(
        &[
            "intake",
            "--store",
            &setup.store,
            "--listen",
            &listen,
            "--providers",
            &providers,
        ],
        &setup._dir.path().join("intake.log"),
    );
    let http = reqwest::Client::new();
    wait_healthy(&http, &base).await;
    let ids = [
        post_job(&http, &base, &setup.mock.url("/complete")).await,
        post_job(&http, &base, &setup.mock.url("/complete")).await,
    ];

    let once = hookline(&[
        "processor",
        "--once",
        "--store",
        &setup.store,
        "--providers",
        &providers,
    ]);
    let stdout = String::from_utf8_lossy(&once.stdout);
    assert!(
        once.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&once.stderr)
    );
    assert!(stdout.contains("claimed 2 delivered 2"), "{stdout}");
    for id in &ids {
        assert_eq!(job_status(&http, &base, id).await, "complete");
    }
    assert_eq!(setup.mock.state.accepted_deliveries().len(), 2);
}

#[test]
fn bad_input_is_a_one_line_error_and_a_failed_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = dir.path().join("providers.toml");
    std::fs::write(&providers, "[providers.gas]\nurl = \"http://127.0.0.1:9/gas\"\n").expect("write");
    let providers = providers.to_string_lossy().into_owned();
    let missing = dir.path().join("missing.toml").to_string_lossy().into_owned();
    let store = "dynamodb://jobs?endpoint=http://127.0.0.1:9";
    let cases: [(&[&str], &str); 7] = [
        (
            &["serve", "--store", "postgres://x", "--providers", &providers],
            "unknown store URL",
        ),
        (&["table", "create", "--store", "sqlite://x.db"], "for DynamoDB"),
        (
            &["processor", "--store", "dynamodb://ab", "--providers", &providers],
            "table name",
        ),
        (
            &["processor", "--store", store, "--providers", &missing],
            "reading providers file",
        ),
        (
            &[
                "processor",
                "--store",
                store,
                "--providers",
                &providers,
                "--schedule",
                "*/5 * * * *",
            ],
            "cron",
        ),
        (
            &[
                "processor",
                "--store",
                store,
                "--providers",
                &providers,
                "--lease",
                "5s",
            ],
            "lease",
        ),
        (
            &[
                "intake",
                "--store",
                store,
                "--providers",
                &providers,
                "--listen",
                "not-an-address",
            ],
            "cannot listen",
        ),
    ];
    for (args, needle) in cases {
        let output = hookline(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(stderr.starts_with("hookline: "), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }

    // Values clap rejects while parsing: its own one-line error (plus its
    // "try --help" hint) and exit code 2, before anything starts.
    let clap_cases: [(&[&str], &str); 3] = [
        (
            &[
                "processor",
                "--providers",
                &providers,
                "--provider-retries",
                "5s,soon",
            ],
            "--provider-retries",
        ),
        (
            &[
                "processor",
                "--providers",
                &providers,
                "--callback-retries",
                "5s,,1m",
            ],
            "--callback-retries",
        ),
        (
            &["processor", "--providers", &providers, "--lease", "long"],
            "--lease",
        ),
    ];
    for (args, flag) in clap_cases {
        let output = hookline(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: invalid value"), "{args:?}: {stderr}");
        assert!(first.contains(flag), "{args:?}: {stderr}");
    }
    let from_env = Command::new(BIN)
        .args(["processor", "--providers", &providers])
        .env("HOOKLINE_CALLBACK_RETRIES", "1h,forever")
        .env("HOOKLINE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run hookline");
    let stderr = String::from_utf8_lossy(&from_env.stderr);
    assert_eq!(from_env.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--callback-retries"), "{stderr}");
}

/// The bar: the real `hookline dev` on the embedded store, a job
/// posted over HTTP, complete and delivered to the sink in under 2 seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_delivers_a_job_within_two_seconds_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("dev.log");
    let store = format!("sqlite://{}", dir.path().join("dev.db").display());
    let _dev = spawn(
        &["dev", "--listen", &format!("127.0.0.1:{port}"), "--store", &store],
        &log,
    );
    let http = reqwest::Client::new();
    wait_healthy(&http, &base).await;

    let posted = Instant::now();
    let id = post_job(&http, &base, &format!("{base}/mock/complete")).await;
    loop {
        let deliveries = get_json(&http, &format!("{base}/mock/deliveries")).await;
        let delivered = deliveries
            .as_array()
            .expect("list")
            .iter()
            .any(|d| d["body"]["jobId"] == id.as_str() && d["status"] == 204);
        if delivered && job_status(&http, &base, &id).await == "complete" {
            break;
        }
        assert!(
            posted.elapsed() < Duration::from_secs(2),
            "not delivered and complete within 2 s; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("dev: posted to delivered and complete in {:?}", posted.elapsed());
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        printed.contains("curl -i -X POST"),
        "dev prints a ready curl line:\n{printed}"
    );
    assert!(dir.path().join("dev.db").exists(), "the embedded store is a file");
}
