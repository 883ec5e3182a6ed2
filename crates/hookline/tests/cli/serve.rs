//! The serving commands as the README runs them: `table create` then
//! `serve` on DynamoDB, stopped by SIGTERM; `intake` with `processor
//! --once`; the scheduled `processor` and its own metrics listener.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use providers_mock::MockState;

use crate::support::{
    LOOPBACK, authed, create_key, free_port, hookline, job_status, post_job, raw_answer,
    serve_delivers_a_job, setup, spawn, table_create, wait_for, wait_for_exit, wait_healthy, wait_ready,
    wait_until, with_log, write_providers,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_create_then_serve_delivers_a_job() {
    let setup = setup().await;
    assert!(table_create(&setup.store).contains("created table"));
    assert!(table_create(&setup.store).contains("already exists"));

    let (mut server, log) = serve_delivers_a_job(&setup, &setup.store).await;

    // SIGTERM stops it cleanly.
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = wait_for_exit(&mut server.0, Duration::from_secs(20), "serve to stop on SIGTERM").await;
    assert!(
        status.success(),
        "exit {status}; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// `serve` wakes its processor for every job its API accepts: with a
/// schedule that ticks once a year, a job posted is delivered within
/// seconds (the bound is generous; what it guards is that the job did not
/// wait for the tick, a year away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_job_wakes_serve_long_before_its_next_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mock = providers_mock::spawn(listener, MockState::with_seed(4)).expect("mock");
    let providers = write_providers(dir.path(), &mock, "5s");
    let providers = providers.to_string_lossy().into_owned();
    let store = format!("sqlite://{}", dir.path().join("wake.db").display());
    let http = authed(&create_key(&store, "acme"));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("serve.log");
    let _server = spawn(
        &[
            "serve",
            "--store",
            &store,
            "--providers",
            &providers,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--schedule",
            "0 0 0 1 1 *",
        ],
        &log,
    );
    wait_ready(&http, &base).await;
    let posted = Instant::now();
    let id = post_job(&http, &base, &mock.url("/complete")).await;
    wait_until(
        Duration::from_secs(30),
        with_log("the job to be complete without a tick", &log),
        async || job_status(&http, &base, &id).await == "complete",
    )
    .await;
    println!(
        "serve, woken by its intake: posted to complete in {:?}",
        posted.elapsed()
    );
    assert_eq!(mock.state.accepted_deliveries().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_then_processor_once_drains_and_exits() {
    let setup = setup().await;
    table_create(&setup.store);
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
        &setup.dir.path().join("intake.log"),
    );
    let http = authed(&create_key(&setup.store, "acme"));
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

/// `processor --once` logs its progress through a long drain and ends with
/// a summary; the scheduled processor serves its own metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_once_reports_progress_and_the_scheduled_one_serves_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("progress.db").display());
    let key = create_key(&store, "acme");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mock = providers_mock::spawn(listener, MockState::with_seed(10)).expect("mock");
    let providers = write_providers(dir.path(), &mock, "5s");
    let providers = providers.to_string_lossy().into_owned();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _intake = spawn(
        &[
            "intake",
            "--store",
            &store,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--providers",
            &providers,
        ],
        &dir.path().join("intake.log"),
    );
    let http = authed(&key);
    wait_healthy(&http, &base).await;
    for _ in 0..4 {
        post_job(&http, &base, &mock.url("/complete")).await;
    }

    let once = crate::support::hookline_command()
        .args([
            "processor",
            "--once",
            "--store",
            &store,
            "--providers",
            &providers,
        ])
        .args(["--batch-size", "1", "--progress-every", "0s"])
        .env("HOOKLINE_LOG", "info")
        .env("HOOKLINE_ALLOW_NETWORKS", LOOPBACK)
        .stdin(Stdio::null())
        .output()
        .expect("run hookline");
    let stdout = String::from_utf8_lossy(&once.stdout);
    let stderr = String::from_utf8_lossy(&once.stderr);
    assert!(once.status.success(), "{stdout}{stderr}");
    let progress = stderr.lines().filter(|l| l.contains("drain in progress")).count();
    assert!(progress >= 4, "a progress line per round of one job: {stderr}");
    assert!(stderr.contains("drain finished"), "{stderr}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("claimed 4 delivered 4 retried 0 dead-lettered 0") && summary.ends_with('s'),
        "{stdout}"
    );

    let metrics_port = free_port();
    let _processor = spawn(
        &[
            "processor",
            "--store",
            &store,
            "--providers",
            &providers,
            "--schedule",
            "* * * * * *",
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
        ],
        &dir.path().join("processor.log"),
    );
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let after_a_drain = wait_for(
        Duration::from_secs(20),
        format!("a drain to show in {url}"),
        async || {
            let response = client.get(&url).send().await.ok()?;
            if response.status() != 200 {
                return None;
            }
            let text = response.text().await.expect("text");
            let runs = text
                .lines()
                .find_map(|l| l.strip_prefix("hookline_processor_runs_total "))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            (runs >= 1).then_some(text)
        },
    )
    .await;
    assert!(
        after_a_drain.contains("hookline_due_backlog 0"),
        "{after_a_drain}"
    );
    // The metrics listener is the API's hardened one: what hyper cannot
    // parse is a problem+json, and a declared body over the limit is
    // refused unread.
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    for (request, status) in [
        (b"\x16\x03\x01 not http\r\n\r\n".to_vec(), "HTTP/1.1 400"),
        (
            b"POST /metrics HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000000000\r\n\r\n".to_vec(),
            "HTTP/1.1 413",
        ),
    ] {
        let answer = raw_answer(&metrics_addr, &request).await;
        assert!(answer.starts_with(status), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
    }
}
