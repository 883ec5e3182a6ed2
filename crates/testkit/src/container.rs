//! DynamoDB Local in a container, started through testcontainers on the
//! Docker engine at `DOCKER_HOST` (Docker, or podman's Docker API).
//!
//! The container publishes its port on 127.0.0.1 only, on a port the engine
//! picks. It is removed when the test binary exits, however it exits: the
//! shared instance lives in a `static` that is never dropped, so a reaper
//! process holds the other end of a pipe and removes the container by name
//! through the Docker API when the pipe closes (as `dynamodb-local` ties its
//! Java process to ours). The reaper is Python, which the tests need anyway.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use testcontainers::bollard::models::PortBinding;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

pub const IMAGE_VAR: &str = "HOOKLINE_TEST_DYNAMODB_IMAGE";
/// The container's network mode (Docker's `NetworkMode`); unset, the
/// engine's default. `.ci/podman` sets `slirp4netns`: no bridge on the host.
pub const NETWORK_VAR: &str = "HOOKLINE_TEST_DOCKER_NETWORK";
const DEFAULT_IMAGE: &str = "amazon/dynamodb-local:latest";
/// Every container the harness starts carries this label, and
/// `{LABEL}.docker-host` naming the engine it was started on, so leftovers
/// (from a binary killed before its reaper started) can be found.
pub const LABEL: &str = "hookline.testkit";
const PORT: u16 = 8000;

/// Removes the container when this process ends, by any means.
const REAPER: &str = r#"
import signal, socket, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
sys.stdin.buffer.read()  # returns when the test binary has gone
host, name = sys.argv[1], sys.argv[2]
try:
    if host.startswith("unix://"):
        conn = socket.socket(socket.AF_UNIX)
        conn.settimeout(60)
        conn.connect(host[len("unix://"):])
    else:
        addr, _, port = host[len("tcp://"):].rpartition(":")
        conn = socket.create_connection((addr, int(port)), timeout=60)
    conn.sendall(("DELETE /containers/%s?force=true&v=true HTTP/1.0\r\nHost: docker\r\n\r\n" % name).encode())
    status = conn.recv(64).split(b" ")[1:2]
    if status not in ([b"200"], [b"204"], [b"404"]):
        raise RuntimeError("the engine answered %r" % status)
except Exception as e:
    print("testkit: removing container %s at %s failed: %s" % (name, host, e), file=sys.stderr)
"#;

/// A running DynamoDB Local container, removed when this process ends.
pub struct DynamoContainer {
    pub endpoint: String,
    pub image: String,
    pub name: String,
    _container: Container<GenericImage>,
    _reaper: Reaper,
}

impl std::fmt::Debug for DynamoContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoContainer")
            .field("endpoint", &self.endpoint)
            .field("image", &self.image)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `DOCKER_HOST`, else Docker's default socket.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|host| !host.trim().is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// Whether a Docker-compatible engine answers `/_ping` at `host`.
pub fn docker_answers(host: &str) -> bool {
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

/// The image the tests run: `HOOKLINE_TEST_DYNAMODB_IMAGE`, else upstream's.
pub fn image() -> String {
    std::env::var(IMAGE_VAR)
        .ok()
        .filter(|image| !image.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_owned())
}

/// Starts DynamoDB Local in a container on the engine at `host` and waits
/// until it answers on 127.0.0.1.
pub fn start(host: &str) -> Result<DynamoContainer, String> {
    let image = image();
    let (repository, tag) = split_image(&image);
    let network = std::env::var(NETWORK_VAR).ok().filter(|n| !n.trim().is_empty());
    let name = format!(
        "hookline-testkit-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    // Before the container exists: a binary killed while it starts leaves nothing.
    let reaper = Reaper::start(host, &name)?;

    let container = GenericImage::new(repository, tag)
        .with_exposed_port(PORT.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Initializing DynamoDB Local"))
        // Both images' entrypoint is `java`, in the jar's directory. No
        // telemetry: the tests reach nothing beyond this machine.
        .with_cmd([
            "-jar",
            "DynamoDBLocal.jar",
            "-inMemory",
            "-disableTelemetry",
            "-port",
            "8000",
        ])
        .with_container_name(&name)
        .with_label(LABEL, "dynamodb-local")
        .with_label(format!("{LABEL}.docker-host"), host)
        .with_startup_timeout(Duration::from_secs(120))
        .with_host_config_modifier(move |config| {
            // Loopback only, on a port the engine picks (testcontainers
            // would publish on every interface).
            config.publish_all_ports = Some(false);
            config.port_bindings = Some(HashMap::from([(
                format!("{PORT}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".to_owned()),
                    host_port: Some(String::new()),
                }]),
            )]));
            if let Some(network) = &network {
                config.network_mode = Some(network.clone());
            }
        })
        .start()
        .map_err(|e| format!("starting {image} through testcontainers at {host}: {e}"))?;
    let port = container
        .get_host_port_ipv4(PORT)
        .map_err(|e| format!("reading the port of {image}: {e}"))?;
    // The log line comes before DynamoDB Local listens, and a port forwarder
    // may accept connections before anything is behind it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dynamodb_local::answers(port) {
        if Instant::now() > deadline {
            return Err(format!("{image} did not answer on 127.0.0.1:{port} within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(DynamoContainer {
        endpoint: format!("http://127.0.0.1:{port}"),
        image,
        name,
        _container: container,
        _reaper: reaper,
    })
}

/// `repository[:tag]`, where a registry's `host:port/` is not a tag.
fn split_image(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (image, "latest"),
    }
}

/// A Python process that removes a container when our end of its stdin
/// closes, which the kernel does when this process ends.
struct Reaper {
    _child: Child,
    _lifeline: ChildStdin,
}

impl Reaper {
    fn start(host: &str, name: &str) -> Result<Self, String> {
        use std::os::unix::process::CommandExt;

        let python = std::env::var(crate::python::PYTHON_VAR).unwrap_or_else(|_| "python3".to_owned());
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(REAPER)
            .arg(host)
            .arg(name)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own process group: a ctrl-c at the terminal stops the
            // tests, not the cleanup after them.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                format!(
                    "starting {python} (it removes the test container when the tests end): {e}; \
                     install Python 3 or set {} to an interpreter",
                    crate::python::PYTHON_VAR
                )
            })?;
        let lifeline = child.stdin.take().expect("stdin was piped");
        Ok(Self {
            _child: child,
            _lifeline: lifeline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_without_a_tag_is_latest() {
        assert_eq!(
            split_image("amazon/dynamodb-local"),
            ("amazon/dynamodb-local", "latest")
        );
        assert_eq!(
            split_image("localhost/hookline-dynamodb-local:11.1.0"),
            ("localhost/hookline-dynamodb-local", "11.1.0")
        );
        assert_eq!(
            split_image("registry.local:5000/dynamodb-local"),
            ("registry.local:5000/dynamodb-local", "latest")
        );
        assert_eq!(
            split_image("registry.local:5000/dynamodb-local:3.3.1"),
            ("registry.local:5000/dynamodb-local", "3.3.1")
        );
    }

    #[test]
    fn nothing_answers_where_no_engine_is() {
        assert!(!docker_answers("unix:///nonexistent/docker.sock"));
        assert!(!docker_answers("ssh://somewhere"));
    }
}
