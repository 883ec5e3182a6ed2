//! Every client error of the intake contract, as real HTTP: status,
//! `application/problem+json`, and that nothing was stored.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use store_dynamodb::{DynamoConfig, DynamoStore};

use crate::helpers::{TestApp, spawn_app, spawn_app_with_store};

async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status);
    assert!(
        body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

async fn post_raw(app: &TestApp, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    app.http
        .post(format!("{}/v1/jobs", app.base))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("post")
}

async fn assert_nothing_due(app: &TestApp) {
    let due = app
        .store
        .due_jobs(app.later(Duration::from_secs(3600)), 10)
        .await
        .expect("due");
    assert!(due.is_empty(), "a rejected request stored something: {due:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let body = problem(post_raw(&app, "application/json", "{\"providers\": [").await, 400).await;
    assert!(body["detail"].as_str().expect("detail").contains("EOF"), "{body}");
    problem(post_raw(&app, "application/json", "[".repeat(5000)).await, 400).await;
    // Well-formed but nested past the parser's depth limit: refused, no
    // stack overflow.
    let deep = format!(
        r#"{{"providers":["gas"],"callbackUrl":"{}","metadata":{}1{}}}"#,
        app.callback_url(),
        r#"{"a":"#.repeat(1000),
        "}".repeat(1000)
    );
    problem(post_raw(&app, "application/json", deep).await, 400).await;
    // Ten thousand providers in a small body: a validation error, not work.
    let many = json!({"providers": vec!["gas"; 10_000], "callbackUrl": app.callback_url()});
    problem(post_raw(&app, "application/json", many.to_string()).await, 422).await;
    assert_nothing_due(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_64_kib_is_413() {
    let app = spawn_app().await;
    let big = json!({"providers": ["gas"], "callbackUrl": app.callback_url(), "metadata": {"x": "y".repeat(70_000)}});
    let body = problem(post_raw(&app, "application/json", big.to_string()).await, 413).await;
    assert!(body["detail"].as_str().expect("detail").contains("65536"));
    // However it is labelled.
    problem(post_raw(&app, "text/plain", "z".repeat(100_000)).await, 413).await;
    assert_nothing_due(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    let valid = json!({"providers": ["gas"], "callbackUrl": app.callback_url()}).to_string();
    problem(post_raw(&app, "text/plain", valid.clone()).await, 415).await;
    problem(
        post_raw(&app, "application/x-www-form-urlencoded", "providers=gas").await,
        415,
    )
    .await;
    let missing = app
        .http
        .post(format!("{}/webhook", app.base))
        .body(valid)
        .send()
        .await
        .expect("post");
    problem(missing, 415).await;
    assert_nothing_due(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_jobs_are_422_with_field_errors() {
    let app = spawn_app().await;
    let cb = app.callback_url();
    let cases = [
        (
            json!({"providers": ["water"], "callbackUrl": cb}),
            vec!["providers[0]"],
        ),
        (
            json!({"providers": ["gas", "gas"], "callbackUrl": cb}),
            vec!["providers[1]"],
        ),
        (json!({"providers": [], "callbackUrl": cb}), vec!["providers"]),
        (json!({"callbackUrl": cb}), vec!["providers"]),
        (
            json!({"providers": ["gas"], "callbackUrl": "not a url"}),
            vec!["callbackUrl"],
        ),
        (
            json!({"providers": ["gas"], "callbackUrl": "ftp://files.example/x"}),
            vec!["callbackUrl"],
        ),
        (json!({"providers": ["gas"]}), vec!["callbackUrl"]),
        (
            json!({"providers": ["gas"], "callbackUrl": cb, "metadata": {"big": "m".repeat(5000)}}),
            vec!["metadata"],
        ),
        (
            json!({"providers": ["gas"], "callbackUrl": cb, "metadata": "text"}),
            vec!["metadata"],
        ),
        (
            json!({"providers": ["gas"], "callbackUrl": cb, "callbackURL": cb}),
            vec!["callbackURL"],
        ),
        (json!("just a string"), vec![""]),
    ];
    for (request, expected_fields) in cases {
        let response = post_raw(&app, "application/json", request.to_string()).await;
        let body = problem(response, 422).await;
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .expect("errors array")
            .iter()
            .map(|e| {
                assert!(e["message"].is_string());
                e["field"].as_str().expect("field")
            })
            .collect();
        assert_eq!(fields, expected_fields, "for {request}");
    }
    assert_nothing_due(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_jobs_and_routes_are_404_and_wrong_methods_405() {
    let app = spawn_app().await;
    for path in [
        "/v1/jobs/01JD0000000000000000000000",
        "/v1/jobs/not-an-id",
        "/nowhere",
    ] {
        let response = app.get(path).await;
        problem(response, 404).await;
    }
    let response = app
        .http
        .delete(format!("{}/webhook", app.base))
        .send()
        .await
        .expect("delete");
    problem(response, 405).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_503_and_not_ready() {
    // A table that does not exist: every store call fails.
    let config = DynamoConfig::new("missing-table").with_endpoint(testkit::dynamodb_endpoint());
    let app = spawn_app_with_store(Arc::new(
        DynamoStore::connect(config, crate::helpers::sealer()).await,
    ))
    .await;
    let response = app.post_job(&["gas"]).await;
    assert!(response.headers().contains_key("retry-after"));
    let body = problem(response, 503).await;
    // Refused by the store: nothing was written, and the type says so.
    assert_eq!(body["type"], "urn:hookline:problem:unavailable");
    assert!(
        !body["detail"].as_str().expect("detail").contains("missing-table"),
        "no internals in {body}"
    );

    let ready = app.get("/readyz").await;
    problem(ready, 503).await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_store_is_ready() {
    let app = spawn_app().await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
}
