//! Stops, clean and not: `serve` SIGKILLed with jobs in flight loses none
//! of them, and SIGTERM stops it cleanly after its log reader has gone.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use providers_mock::MockState;

use crate::support::{
    ChildGuard, authed, create_key, free_port, job_status, post_job, spawn, wait_for_exit, wait_healthy,
    wait_until, with_log, write_providers,
};

/// The bar for the embedded store: `hookline serve` on SQLite is
/// SIGKILLed with jobs in flight and restarted; every accepted job is
/// delivered and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_mid_flight_loses_no_accepted_job() {
    use providers_mock::Faults;
    use store::{JobStore, ListQuery};

    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mock = providers_mock::spawn(listener, MockState::with_seed(5)).expect("mock");
    // A slow provider and a slow receiver keep jobs in flight long enough
    // to be killed mid-fetch and mid-callback.
    let slow = |latency_ms| Faults {
        latency_ms,
        ..Faults::default()
    };
    mock.state.set_provider_faults("gas", slow(400));
    mock.state.set_sink_faults(slow(300));
    let providers = write_providers(dir.path(), &mock, "2s");
    let providers = providers.to_string_lossy().into_owned();
    let db = dir.path().join("serve.db");
    let store = format!("sqlite://{}", db.display());
    let serve = |port: u16, log: &str| {
        spawn(
            &[
                "serve",
                "--store",
                &store,
                "--providers",
                &providers,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--schedule",
                "* * * * * *",
                "--lease",
                "9s",
                "--callback-timeout",
                "1s",
            ],
            &dir.path().join(log),
        )
    };

    let http = authed(&create_key(&store, "acme"));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut first = serve(port, "first.log");
    wait_healthy(&http, &base).await;
    let callback = mock.url("/complete");
    let posts = (0..40).map(|_| post_job(&http, &base, &callback));
    let accepted: Vec<String> = futures::future::join_all(posts).await;

    // Kill as soon as the first callback lands: others are then in flight,
    // some answered by the receiver but not yet saved as complete.
    wait_until(
        Duration::from_secs(20),
        "the processor's first delivery",
        async || !mock.state.accepted_deliveries().is_empty(),
    )
    .await;
    first.0.kill().expect("SIGKILL");
    first.0.wait().expect("reap");
    let delivered_before = mock.state.accepted_deliveries().len();

    // What the file says right after the crash: every accepted job is
    // there, and some were cut off mid-flight.
    let unfinished = {
        let file = store_sqlite::SqliteStore::open(
            &db,
            Default::default(),
            std::sync::Arc::new(seal::Sealer::ephemeral().expect("a sealer")),
        )
        .expect("reopen after a crash");
        let page = file
            .list_jobs(
                &domain::TenantId::new("acme"),
                &ListQuery {
                    status: None,
                    after: None,
                    limit: 100,
                },
            )
            .await
            .expect("list");
        assert_eq!(
            page.jobs.len(),
            accepted.len(),
            "every accepted job survived the crash"
        );
        let unfinished = page.jobs.iter().filter(|j| !j.status().is_terminal()).count();
        assert!(unfinished > 0, "the kill should cut jobs off mid-flight");
        println!(
            "killed with {unfinished} of {} jobs unfinished, {delivered_before} delivered",
            accepted.len()
        );
        unfinished
    };

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _second = serve(port, "second.log");
    wait_healthy(&http, &base).await;
    // One minute for them all.
    let deadline = Instant::now() + Duration::from_secs(60);
    let second_log = dir.path().join("second.log");
    for id in &accepted {
        wait_until(
            deadline.saturating_duration_since(Instant::now()),
            with_log(format!("job {id} to be complete after the restart"), &second_log),
            async || job_status(&http, &base, id).await == "complete",
        )
        .await;
    }
    let deliveries = mock.state.accepted_deliveries();
    for id in &accepted {
        assert!(
            deliveries.iter().any(|d| d.job_id() == Some(id.as_str())),
            "job {id} complete but never delivered"
        );
    }
    let duplicates = deliveries.len() - accepted.len();
    println!(
        "all {} accepted jobs delivered; {duplicates} duplicate deliveries (jobs cut off between callback and save)",
        accepted.len(),
    );
    assert!(
        duplicates <= unfinished,
        "only jobs in flight at the kill may be delivered twice"
    );
}

/// `hookline serve 2>&1 | head -5`: once the reader of its logs has gone,
/// it goes on serving and SIGTERM still stops it, cleanly (a log line it
/// cannot write is dropped; it used to panic on the next one, in whatever
/// task was logging, the signal task among them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_serve_after_the_log_reader_has_gone() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = dir.path().join("providers.toml");
    std::fs::write(&providers, "[providers.gas]\nurl = \"http://127.0.0.1:9/gas\"\n").expect("write");
    let store = format!("sqlite://{}", dir.path().join("head.db").display());
    let mut child = ChildGuard(
        crate::support::hookline_command()
            .args([
                "serve",
                "--store",
                &store,
                "--listen",
                "127.0.0.1:0",
                "--providers",
            ])
            .arg(&providers)
            .env("HOOKLINE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hookline serve"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let serving = lines
        .by_ref()
        .take(20)
        .map_while(Result::ok)
        .find(|line| line.contains("hookline serving"))
        .expect("serve says where it serves");
    let addr = serving
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("addr=")
        .to_owned();
    drop(lines);
    // Its scheduled runs and every request go on logging into the closed
    // pipe; it must go on answering.
    let http = reqwest::Client::new();
    for _ in 0..10 {
        let health = http
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .expect("serve still answers after its log reader has gone");
        assert!(health.status().is_success());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The reader is gone (dropped with the BufReader), like `head` exiting.
    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let started = Instant::now();
    let status = wait_for_exit(
        &mut child.0,
        Duration::from_secs(15),
        "serve to stop on SIGTERM with its stderr closed",
    )
    .await;
    assert!(status.success(), "a clean stop, not a panic: {status}");
    eprintln!(
        "serve stopped {:.2} s after SIGTERM with its stderr closed ({status})",
        started.elapsed().as_secs_f64()
    );
}
