//! The official Standard Webhooks verifier, the PyPI package
//! `standardwebhooks` (pinned), so tests check our signatures against the
//! reference implementation rather than against our own reading of the spec.
//!
//! Installed on first use into a virtual environment in the cache
//! ([`crate::python`]).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::python::{PipTool, venv_python};

use base64::Engine as _;

/// Pinned: the version decides which verifier we agree with.
pub const TOOL: PipTool = PipTool {
    cache_name: "python-standardwebhooks-1.1.0",
    requirement: "standardwebhooks==1.1.0",
    probe: &["-c", "import standardwebhooks"],
};

/// Reads `{"secret", "headers", "body" (base64)}` on stdin so nothing passes
/// through a shell or the command line. Exit 10: the library refused the
/// message (any exception it raised); any other failure is the tool's.
const VERIFY_SCRIPT: &str = r#"
import base64, json, sys
from standardwebhooks import Webhook
request = json.load(sys.stdin)
body = base64.b64decode(request["body"])
try:
    Webhook(request["secret"]).verify(body, request["headers"])
except Exception as exc:
    sys.stderr.write(f"{type(exc).__name__}: {exc}")
    sys.exit(10)
"#;

/// Verifies a message with the official library: `Ok(())` when
/// `Webhook(secret).verify(body, headers)` accepts it, `Err(reason)` when it
/// refuses it (the library's exception, e.g. `WebhookVerificationError: No
/// matching signature found`).
///
/// The library checks `webhook-timestamp` against the current time (five
/// minutes either way), so sign with a real current timestamp.
///
/// Panics, saying what to install, when the verifier cannot be installed or
/// run: a test that needs it is never skipped silently.
pub fn verify_with_official_library<K, V>(
    secret: &str,
    headers: impl IntoIterator<Item = (K, V)>,
    body: &[u8],
) -> Result<(), String>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let python = match python_standardwebhooks() {
        Ok(python) => python,
        Err(message) => panic!("the official Standard Webhooks verifier is unavailable: {message}"),
    };
    let headers: serde_json::Map<String, serde_json::Value> = headers
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().into()))
        .collect();
    let request = serde_json::json!({
        "secret": secret,
        "headers": headers,
        "body": base64::engine::general_purpose::STANDARD.encode(body),
    });
    let mut child = Command::new(&python)
        .args(["-I", "-c", VERIFY_SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(request.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("writing to the verifier: {e}"));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for the verifier: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    match output.status.code() {
        Some(0) => Ok(()),
        Some(10) => Err(stderr),
        _ => panic!("the official verifier failed ({}): {stderr}", output.status),
    }
}

/// The Python interpreter of the environment holding `standardwebhooks`,
/// installing it on first use (once per process; once per machine unless
/// the cache is removed).
pub fn python_standardwebhooks() -> Result<PathBuf, String> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| TOOL.install().map(|venv| venv_python(&venv)))
        .clone()
}
