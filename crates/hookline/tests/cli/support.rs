//! What every area's tests share: the binary and how to run it, the mock
//! providers and a DynamoDB table, HTTP helpers, and [`wait_until`], the one
//! way a test waits for something to happen.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use providers_mock::MockState;
use serde_json::{Value, json};

/// Polls `check` until it holds, every 10 ms; panics with "gave up after
/// {within} waiting for {what}" if it does not within `within`. Checks are
/// sequential: a slow one delays the next, never overlaps it.
pub async fn wait_until(within: Duration, what: impl fmt::Display, mut check: impl AsyncFnMut() -> bool) {
    wait_for(within, what, async || check().await.then_some(())).await;
}

/// Like [`wait_until`], for a check that finds something: the first `Some`.
pub async fn wait_for<T>(
    within: Duration,
    what: impl fmt::Display,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            started.elapsed() < within,
            "gave up after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `what`, followed in a failure message by what the process logged to `log`
/// (read when the message is shown, so it has everything up to the failure).
pub fn with_log<'a>(what: impl fmt::Display + 'a, log: &'a Path) -> impl fmt::Display + 'a {
    struct WithLog<'a, W>(W, &'a Path);
    impl<W: fmt::Display> fmt::Display for WithLog<'_, W> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let logged = std::fs::read_to_string(self.1).unwrap_or_default();
            write!(f, "{}; log:\n{logged}", self.0)
        }
    }
    WithLog(what, log)
}

/// Waits for `child` to exit, for at most `within`: its exit status.
pub async fn wait_for_exit(child: &mut Child, within: Duration, what: &str) -> ExitStatus {
    wait_for(within, what, async || child.try_wait().expect("wait")).await
}

pub const BIN: &str = env!("CARGO_BIN_EXE_hookline");

/// The key file the processes these tests start seal secrets with (one
/// for all of them, so each reads what the others sealed); a test of the
/// default key file beside a SQLite database runs the binary without it.
pub fn key_file() -> &'static Path {
    static FILE: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &FILE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a directory for the key file");
            let path = dir.path().join("cli.secrets-key");
            seal::KeyFile::generate(&seal::SystemFresh)
                .and_then(|file| file.save_new(&path))
                .expect("a key file");
            (dir, path)
        })
        .1
}

/// The mock providers and sink listen on loopback, which the SSRF guard
/// refuses unless allowed.
pub const LOOPBACK: &str = "127.0.0.0/8,::1";

/// Kills the child if a test fails before it is stopped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn hookline(args: &[&str]) -> Output {
    hookline_with_env(args, &[])
}

/// [`hookline`], with `env` set too; a KMS key there (`HOOKLINE_KMS_KEY`)
/// replaces the tests' [`key_file`].
pub fn hookline_with_env(args: &[&str], env: &[(&str, String)]) -> Output {
    sealing_with(Command::new(BIN).args(args), env)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("HOOKLINE_STORE")
        .env("HOOKLINE_LOG", "warn")
        .env("HOOKLINE_ALLOW_NETWORKS", LOOPBACK)
        .env("HOOKLINE_METRICS_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .output()
        .expect("run hookline")
}

/// The binary, sealing secrets with the tests' [`key_file`].
pub fn hookline_command() -> Command {
    let mut command = Command::new(BIN);
    command.env("HOOKLINE_SECRETS_KEY_FILE", key_file());
    command
}

/// `command` sealing secrets with the tests' [`key_file`], unless `env`
/// names a KMS key instead.
fn sealing_with<'a>(command: &'a mut Command, env: &[(&str, String)]) -> &'a mut Command {
    if env.iter().any(|(name, _)| *name == "HOOKLINE_KMS_KEY") {
        command.env_remove("HOOKLINE_SECRETS_KEY_FILE")
    } else {
        command.env("HOOKLINE_SECRETS_KEY_FILE", key_file())
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct Setup {
    pub endpoint: String,
    pub table: String,
    pub store: String,
    pub providers: PathBuf,
    pub mock: providers_mock::RunningMock,
    pub dir: tempfile::TempDir,
}

pub async fn setup() -> Setup {
    let endpoint = testkit::dynamodb_endpoint();
    let table = testkit::unique_table_name("cli");
    let store = format!("dynamodb://{table}?endpoint={endpoint}&region=us-east-1");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mock = providers_mock::spawn(listener, MockState::with_seed(3)).expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = write_providers(dir.path(), &mock, "5s");
    Setup {
        endpoint,
        table,
        store,
        providers,
        mock,
        dir,
    }
}

/// A providers file in `dir` naming the mock's `gas` and `internet`, each
/// with `timeout`.
pub fn write_providers(dir: &Path, mock: &providers_mock::RunningMock, timeout: &str) -> PathBuf {
    let path = dir.join("providers.toml");
    let text = ["gas", "internet"]
        .iter()
        .map(|name| {
            format!(
                "[providers.{name}]\nurl = \"{}\"\ntimeout = \"{timeout}\"\n\n",
                mock.url(&format!("/providers/{name}"))
            )
        })
        .collect::<String>();
    std::fs::write(&path, text).expect("write providers");
    path
}

pub fn spawn(args: &[&str], log: &Path) -> ChildGuard {
    spawn_with_env(args, log, &[])
}

/// [`spawn`], with `env` set too.
pub fn spawn_with_env(args: &[&str], log: &Path, env: &[(&str, String)]) -> ChildGuard {
    let log = std::fs::File::create(log).expect("log file");
    let child = sealing_with(Command::new(BIN).args(args), env)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("HOOKLINE_LOG", "info")
        .env("HOOKLINE_ALLOW_NETWORKS", LOOPBACK)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn hookline");
    ChildGuard(child)
}

/// `hookline table create` on `store`, which must succeed: what it printed.
pub fn table_create(store: &str) -> String {
    let output = hookline(&["table", "create", "--store", store]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `hookline keys create --tenant TENANT` on `store`: the key it prints.
pub fn create_key(store: &str, tenant: &str) -> String {
    let output = hookline(&["keys", "create", "--tenant", tenant, "--store", store]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    // The first line; a tenant's first key is followed by its new secret.
    stdout.lines().next().expect("the key").trim().to_owned()
}

/// The API key `hookline dev` printed to `log`.
pub fn dev_api_key(log: &Path) -> String {
    let printed = std::fs::read_to_string(log).unwrap_or_default();
    printed
        .lines()
        .find_map(|line| line.strip_prefix("API key (tenant dev): "))
        .unwrap_or_else(|| panic!("dev prints its API key:\n{printed}"))
        .trim()
        .to_owned()
}

/// A client that sends `key` with every request.
pub fn authed(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().expect("header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

pub async fn wait_healthy(http: &reqwest::Client, base: &str) {
    wait_until(
        Duration::from_secs(30),
        format!("{base} to become healthy"),
        async || {
            http.get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|response| response.status() == 200)
        },
    )
    .await;
}

/// Waits until `base` is up, then requires it to be ready (its store answers).
pub async fn wait_ready(http: &reqwest::Client, base: &str) {
    wait_healthy(http, base).await;
    let ready = http.get(format!("{base}/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);
}

pub async fn post_job(http: &reqwest::Client, base: &str, callback: &str) -> String {
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

pub async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let response = http.get(url).send().await.expect("GET");
    response.json().await.expect("JSON body")
}

pub async fn job_status(http: &reqwest::Client, base: &str, id: &str) -> String {
    let job = get_json(http, &format!("{base}/v1/jobs/{id}")).await;
    job["status"].as_str().unwrap_or_default().to_owned()
}

/// Runs `hookline serve` on `store` with the setup's mock providers, posts
/// a job and waits until it is delivered; gives back the running server and
/// its log file.
pub async fn serve_delivers_a_job(setup: &Setup, store: &str) -> (ChildGuard, PathBuf) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = setup.dir.path().join("serve.log");
    let listen = format!("127.0.0.1:{port}");
    let providers = setup.providers.to_string_lossy().into_owned();
    let server = spawn(
        &[
            "serve",
            "--store",
            store,
            "--listen",
            &listen,
            "--providers",
            &providers,
            "--schedule",
            "* * * * * *",
        ],
        &log,
    );
    let http = authed(&create_key(store, "acme"));
    wait_ready(&http, &base).await;

    let id = post_job(&http, &base, &setup.mock.url("/complete")).await;
    wait_until(
        Duration::from_secs(20),
        with_log("the job to be complete", &log),
        async || job_status(&http, &base, &id).await == "complete",
    )
    .await;
    let deliveries = setup.mock.state.accepted_deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].job_id(), Some(id.as_str()));

    (server, log)
}

/// Runs `hookline args` and asserts it fails with one line on stderr that
/// mentions `needle`.
pub fn assert_one_line_failure(args: &[&str], needle: &str) {
    let output = hookline(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} should fail");
    assert!(stderr.starts_with("hookline: "), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
}

/// Sends `request` on a new connection and reads until the server closes.
pub async fn raw_answer(addr: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer))
        .await
        .expect("answered and closed in time")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}
