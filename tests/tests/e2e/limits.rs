//! Size limits on what providers send: an oversize answer, or data that would
//! outgrow one store item, is a permanent provider failure reported in the
//! callback; the job still completes.

use tokio_util::sync::CancellationToken;

use crate::helpers::spawn_app;

fn result<'a>(body: &'a serde_json::Value, provider: &str) -> &'a serde_json::Value {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["provider"] == provider)
        .expect("a result per provider")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_provider_answer_fails_that_provider_only() {
    let app = spawn_app().await;
    app.mock.state.pad_provider("gas", 300 * 1024);
    let id = app.accepted_job(&["gas", "internet"]).await;
    let report = app.processor("p1").drain(&CancellationToken::new()).await;
    assert_eq!(report.delivered, 1, "{report:?}");

    let deliveries = app.mock.state.accepted_deliveries();
    let body = &deliveries[0].body;
    assert_eq!(result(body, "gas")["status"], "failed");
    assert_eq!(result(body, "gas")["error"], "response body over 262144 bytes");
    assert_eq!(result(body, "internet")["status"], "ok");
    let job = app.get_job(&id).await;
    assert_eq!(job["status"], "complete");
    assert_eq!(
        job["providers"][0]["attempts"], 1,
        "a permanent failure is not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_too_large_for_one_store_item_is_dropped_not_lost() {
    let app = spawn_app().await;
    // Each answer is under the response limit; together they exceed
    // DynamoDB's 400 KB item limit.
    app.mock.state.pad_provider("gas", 230 * 1024);
    app.mock.state.pad_provider("internet", 200 * 1024);
    app.mock.state.fail_sink_next(1, 503);
    let id = app.accepted_job(&["gas", "internet"]).await;
    let processor = app.processor("p1");

    let first = processor.drain(&CancellationToken::new()).await;
    assert_eq!(
        (first.retried, first.store_errors),
        (1, 0),
        "the job was saved: {first:?}"
    );
    let job = app.get_job(&id).await;
    assert_eq!(job["status"], "delivering");
    assert_eq!(job["providers"][0]["status"], "failed");
    assert!(
        job["providers"][0]["lastError"]
            .as_str()
            .expect("error")
            .starts_with("data too large to store")
    );
    assert_eq!(job["providers"][1]["status"], "ok");

    app.advance(std::time::Duration::from_secs(7));
    let second = processor.drain(&CancellationToken::new()).await;
    assert_eq!(second.delivered, 1, "{second:?}");
    let deliveries = app.mock.state.accepted_deliveries();
    let body = &deliveries[0].body;
    assert_eq!(result(body, "gas")["status"], "failed");
    assert_eq!(result(body, "internet")["status"], "ok");
    assert!(result(body, "internet")["data"].as_array().expect("bills").len() > 1000);
    assert_eq!(app.mock.state.provider_calls("internet"), 1);
}
