//! `hookline dev`: everything in one process on the embedded store.

use std::time::{Duration, Instant};

use crate::support::{
    authed, dev_api_key, free_port, get_json, job_status, post_job, spawn, wait_healthy, wait_until, with_log,
};

/// The real `hookline dev` on the embedded store, with nothing else
/// running: a job posted over HTTP is fetched from its own mock providers,
/// delivered to its own sink and complete. How long that took is printed
/// (a figure, not a bound: this machine is shared); the bound is only there
/// to end the test, and that a new job wakes the processor instead of
/// waiting for its next tick is
/// `serve::a_new_job_wakes_serve_long_before_its_next_tick`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_delivers_a_job_end_to_end_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("dev.log");
    let store = format!("sqlite://{}", dir.path().join("dev.db").display());
    let _dev = spawn(
        &["dev", "--listen", &format!("127.0.0.1:{port}"), "--store", &store],
        &log,
    );
    wait_healthy(&reqwest::Client::new(), &base).await;
    let http = authed(&dev_api_key(&log));

    let posted = Instant::now();
    let id = post_job(&http, &base, &format!("{base}/mock/complete")).await;
    wait_until(
        Duration::from_secs(30),
        with_log("the job to be delivered to the sink and complete", &log),
        async || {
            let deliveries = get_json(&http, &format!("{base}/mock/deliveries")).await;
            let delivered = deliveries
                .as_array()
                .expect("list")
                .iter()
                .any(|d| d["body"]["jobId"] == id.as_str() && d["status"] == 204);
            delivered && job_status(&http, &base, &id).await == "complete"
        },
    )
    .await;
    println!("dev: posted to delivered and complete in {:?}", posted.elapsed());
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        printed.contains("curl -i -X POST"),
        "dev prints a ready curl line:\n{printed}"
    );
    assert!(dir.path().join("dev.db").exists(), "the embedded store is a file");
}
