//! moto's server (PyPI `moto[server]`, pinned): S3, KMS and SQS on one
//! local port, for the tests of what hookline asks of AWS beyond DynamoDB.
//! Installed into its own venv in the cache on first use ([`MOTO`]), started
//! once per test binary on 127.0.0.1 and a free port, and tied to this
//! process like DynamoDB Local: a shell watchdog holds a pipe from us and
//! stops the server when it closes, even when we die by SIGKILL.
//!
//! Clients reach it the standard way: [`moto_endpoint`] is what
//! `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_SQS`, `_S3`, `_KMS`) names for
//! a process ([`moto_env`]), or an in-process SDK client's `endpoint_url`,
//! with any credentials.

use std::io::Write as _;
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::python::{PipTool, venv_python};

/// moto with its server's dependencies (Flask, werkzeug), pinned.
pub const MOTO: PipTool = PipTool {
    cache_name: "python-moto-server-5.2.5",
    requirement: "moto[server]==5.2.5",
    probe: &["-c", "import moto.server, flask"],
};

/// The region moto's resources are made in by the tests.
pub const REGION: &str = "us-east-1";
/// The account moto answers for (its default).
pub const ACCOUNT: &str = "123456789012";

#[derive(Debug)]
struct Moto {
    endpoint: String,
    _watchdog: Child,
    // Held open for the life of the test binary: closing it stops moto.
    _lifeline: ChildStdin,
}

static SHARED: OnceLock<Result<Moto, String>> = OnceLock::new();

/// `http://127.0.0.1:PORT` of this test binary's moto server, started on
/// first use. Panics saying what is missing when it cannot start: a test
/// that needs AWS APIs is never skipped.
pub fn moto_endpoint() -> String {
    let shared = SHARED.get_or_init(|| {
        std::thread::spawn(start)
            .join()
            .unwrap_or_else(|_| Err("the moto launcher thread panicked".to_owned()))
    });
    match shared {
        Ok(moto) => moto.endpoint.clone(),
        Err(message) => panic!("no moto server for the tests: {message}"),
    }
}

fn start() -> Result<Moto, String> {
    let venv = MOTO.install()?;
    let mut last = String::new();
    // A port found free can be taken before moto binds it; try a few.
    for _ in 0..3 {
        match start_on(&venv) {
            Ok(moto) => {
                let _ = writeln!(std::io::stderr(), "testkit: moto server at {}", moto.endpoint);
                return Ok(moto);
            }
            Err(err) => last = err,
        }
    }
    Err(last)
}

fn start_on(venv: &std::path::Path) -> Result<Moto, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let script = r#""$0" -m moto.server -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & child=$!
trap 'kill $child 2>/dev/null' EXIT INT TERM
read -r _ignored
"#;
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(venv_python(venv))
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawning sh: {e}"))?;
    let lifeline = watchdog.stdin.take().ok_or("the watchdog has no stdin")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if dynamodb_local::answers(port) {
            return Ok(Moto {
                endpoint: format!("http://127.0.0.1:{port}"),
                _watchdog: watchdog,
                _lifeline: lifeline,
            });
        }
        if let Ok(Some(status)) = watchdog.try_wait() {
            return Err(format!("the moto server exited: {status}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(lifeline);
    let _ = watchdog.wait();
    Err(format!("moto gave no answer on port {port} within 60 s"))
}

/// The environment a `hookline` process needs to reach moto: its endpoint
/// for every AWS service, a region and moto's test credentials.
pub fn moto_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", moto_endpoint()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ]
}

/// An AWS SDK configuration for in-process clients of moto: its endpoint,
/// [`REGION`] and test credentials.
pub async fn moto_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto_endpoint())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_credential_types::Credentials::new(
            "local", "local", None, None, "moto",
        ))
        .load()
        .await
}
