//! The network edges: the SSRF guard's default, proxy variables ignored,
//! and the listener's limits (the open-file bound, the command-line flags).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    BIN, ChildGuard, assert_one_line_failure, authed, create_key, dev_api_key, free_port, get_json, hookline,
    job_status, post_job, spawn, wait_healthy, wait_until, with_log,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssrf_guard_is_on_unless_networks_are_allowed() {
    assert_one_line_failure(
        &[
            "intake",
            "--providers",
            "x.toml",
            "--allow-networks",
            "10.0.0.0/33",
        ],
        "is not a network",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = dir.path().join("providers.toml");
    std::fs::write(&providers, "[providers.gas]\nurl = \"http://127.0.0.1:9/gas\"\n").expect("write");
    let store = format!("sqlite://{}", dir.path().join("guard.db").display());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("intake.log");
    let mut command = crate::support::hookline_command();
    command
        .args(["intake", "--store", &store, "--providers"])
        .arg(&providers)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("HOOKLINE_ALLOW_NETWORKS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    let _intake = ChildGuard(command.spawn().expect("spawn"));
    let http = authed(&create_key(&store, "acme"));
    wait_healthy(&http, &base).await;
    let response = http
        .post(format!("{base}/webhook"))
        .json(&json!({"providers": ["gas"], "callbackUrl": "http://127.0.0.1:4000/complete"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 422, "loopback refused by default");
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem["errors"][0]["field"], "callbackUrl", "{problem}");
}

/// A stand-in for a proxy from the environment: counts the requests it is
/// sent and answers each `200 {}`, as an obliging proxy would.
async fn counting_proxy() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut buf = vec![0u8; 16 * 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    (url, seen)
}

/// `HTTP_PROXY` and friends in the processor's environment are ignored: the
/// callback (and the provider fetch) go straight to their targets through
/// the SSRF guard's resolver, never to the proxy, which would resolve and
/// connect on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_in_the_environment_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, proxied) = counting_proxy().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("dev.log");
    let store = format!("sqlite://{}", dir.path().join("dev.db").display());
    let log_file = std::fs::File::create(&log).expect("log file");
    let mut command = crate::support::hookline_command();
    command
        .args(["dev", "--listen", &format!("127.0.0.1:{port}"), "--store", &store])
        .env("HOOKLINE_LOG", "info")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    for variable in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env(variable, &proxy);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("spawn hookline");
    let _dev = ChildGuard(child);
    let direct = reqwest::Client::builder().no_proxy().build().expect("client");
    wait_healthy(&direct, &base).await;
    let http = authed(&dev_api_key(&log));

    let posted = Instant::now();
    let id = post_job(&http, &base, &format!("{base}/mock/complete")).await;
    wait_until(
        Duration::from_secs(10),
        with_log("the job to be complete", &log),
        async || job_status(&http, &base, &id).await == "complete",
    )
    .await;
    let deliveries = get_json(&http, &format!("{base}/mock/deliveries")).await;
    let delivered = deliveries
        .as_array()
        .expect("list")
        .iter()
        .filter(|d| d["body"]["jobId"] == id.as_str())
        .count();
    let through_proxy = proxied.load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "proxy variables set: job complete in {:?}, {delivered} deliveries at the sink, {through_proxy} connections to the proxy",
        posted.elapsed()
    );
    assert_eq!(
        through_proxy, 0,
        "the processor went through the proxy from the environment"
    );
    assert_eq!(delivered, 1, "the sink got the callback itself");
}

/// `--egress-proxy`: the callback goes through that proxy, asked for the
/// checked address (`127.0.0.1:PORT`, never a name), while proxy variables
/// in the environment stay ignored, and the provider fetch goes straight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_go_through_the_egress_proxy_and_never_the_environments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (env_proxy, env_proxied) = counting_proxy().await;
    let egress = testkit::forwardproxy::ForwardProxy::start()
        .await
        .expect("egress proxy");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("dev.log");
    let store = format!("sqlite://{}", dir.path().join("dev.db").display());
    let log_file = std::fs::File::create(&log).expect("log file");
    let mut command = crate::support::hookline_command();
    command
        .args(["dev", "--listen", &format!("127.0.0.1:{port}"), "--store", &store])
        .env("HOOKLINE_EGRESS_PROXY", egress.url())
        .env("HOOKLINE_LOG", "info")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    for variable in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env(variable, &env_proxy);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("spawn hookline");
    let _dev = ChildGuard(child);
    let direct = reqwest::Client::builder().no_proxy().build().expect("client");
    wait_healthy(&direct, &base).await;
    let http = authed(&dev_api_key(&log));

    // Named by a name: the proxy must still be asked for the address.
    let id = post_job(&http, &base, &format!("http://localhost:{port}/mock/complete")).await;
    wait_until(
        Duration::from_secs(10),
        with_log("the job to be complete", &log),
        async || job_status(&http, &base, &id).await == "complete",
    )
    .await;
    assert_eq!(
        egress.connect_targets(),
        [format!("127.0.0.1:{port}")],
        "one tunnel, to the checked address"
    );
    assert_eq!(
        env_proxied.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the processor went through the proxy from the environment"
    );
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(
        logged.contains("egress proxy") && logged.contains(&egress.addr().to_string()),
        "{logged}"
    );
}

/// The lock-out: `hookline dev` allowed 256 open files, and 400
/// connections that never send a byte. Its listener keeps its connections
/// below the file limit and closes the longest-waiting one for a newcomer,
/// so `/healthz` still answers at once and accepting never runs out of
/// files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_file_limit_do_not_lock_out_healthz() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("dev.log");
    let store = format!("sqlite://{}", dir.path().join("dev.db").display());
    let log_file = std::fs::File::create(&log).expect("log file");
    let child = Command::new("sh")
        .args(["-c", "ulimit -n 256 && exec \"$0\" \"$@\"", BIN])
        .args(["dev", "--listen", &format!("127.0.0.1:{port}"), "--store", &store])
        .env("HOOKLINE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("spawn hookline");
    let _dev = ChildGuard(child);
    wait_healthy(&reqwest::Client::new(), &base).await;

    let flood = 400;
    let closed = std::sync::Arc::new(AtomicUsize::new(0));
    for _ in 0..flood {
        let mut stream = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .expect("connected within 2 s: the listener still accepts")
        .expect("connect");
        let closed = std::sync::Arc::clone(&closed);
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
        });
    }
    let fresh = reqwest::Client::builder().no_proxy().build().expect("client");
    let asked = Instant::now();
    let status = tokio::time::timeout(
        Duration::from_secs(5),
        fresh.get(format!("{base}/healthz")).send(),
    )
    .await
    .expect("/healthz answered within 5 s")
    .expect("/healthz")
    .status();
    let took = asked.elapsed();
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    println!(
        "ulimit -n 256, {flood} idle connections: /healthz {status} in {:.3} s; {} of them closed to make room; {} accept errors logged",
        took.as_secs_f64(),
        closed.load(Ordering::SeqCst),
        printed.matches("accept").count()
    );
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    assert!(!printed.contains("Too many open files"), "{printed}");
    assert!(!printed.contains("accept failed"), "{printed}");
}

/// The listener's limits are the operator's: `--header-timeout` and
/// `--max-connections` take effect, and a zero timeout is a usage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_limits_are_set_on_the_command_line() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let store = format!("sqlite://{}", dir.path().join("dev.db").display());
    let _dev = spawn(
        &[
            "dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store",
            &store,
            "--header-timeout",
            "300ms",
        ],
        &dir.path().join("dev.log"),
    );
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    wait_healthy(&http, &base).await;

    // Half a request head: closed once the 300 ms are up, not after 10 s.
    let mut half = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let sent = Instant::now();
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(n) = half.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    let took = sent.elapsed();
    assert!(closed.is_ok(), "a half-sent head is still open after 5 s");
    eprintln!(
        "--header-timeout 300ms: a half-sent head closed after {:.2} s",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(3), "{took:?}");

    // 40 idle connections against a bound of 16 (another server, with the
    // default header timeout): the newest are served, the oldest closed.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let store = format!("sqlite://{}", dir.path().join("bounded.db").display());
    let _bounded = spawn(
        &[
            "dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store",
            &store,
            "--max-connections",
            "16",
        ],
        &dir.path().join("bounded.log"),
    );
    wait_healthy(&http, &base).await;
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
        );
    }
    // A new connection: `http`'s pooled one (from `wait_healthy`) is the
    // longest waiting of all, so the bound may close it to make room, and
    // reusing it would meet that reset, not the bound's answer to a newcomer.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let health = tokio::time::timeout(
        Duration::from_secs(5),
        fresh.get(format!("{base}/healthz")).send(),
    )
    .await
    .expect("/healthz answers behind 40 idle connections with --max-connections 16")
    .expect("healthz");
    assert!(health.status().is_success());
    // And the oldest of them were closed to make room: at most 16 stay open.
    let mut closed = 0;
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await {
            closed += 1;
        }
    }
    eprintln!("--max-connections 16: {closed} of 40 idle connections closed to make room");
    assert!(
        closed >= 40 - 16,
        "only {closed} of 40 idle connections were closed"
    );
    drop(idle);

    let output = hookline(&["dev", "--idle-timeout", "0s"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--idle-timeout"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}
