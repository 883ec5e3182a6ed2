//! `Idempotency-Key` over HTTP on both stores: a retried POST returns the
//! original job, a different request under the same key is a 409, and
//! concurrent retries create one job.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, client_with_key, create_key, on_every_store, spawn_app_on};

on_every_store!(
    a_retried_post_returns_the_original_job,
    concurrent_retries_create_one_job,
);

async fn post(app: &TestApp, http: &reqwest::Client, key: &str, body: &Value) -> reqwest::Response {
    http.post(format!("{}/webhook", app.base))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("post")
}

async fn job_id(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("json");
    body["jobId"].as_str().expect("jobId").to_owned()
}

async fn a_retried_post_returns_the_original_job(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let body = json!({"providers": ["gas"], "callbackUrl": app.callback_url(), "metadata": {"a": 1, "b": 2}});
    let first = post(&app, &app.http, "order-17", &body).await;
    assert_eq!(first.status(), 202);
    let original = job_id(first).await;

    // The same request, its metadata keys in another order.
    let reordered =
        json!({"metadata": {"b": 2, "a": 1}, "callbackUrl": app.callback_url(), "providers": ["gas"]});
    let retry = post(&app, &app.http, "order-17", &reordered).await;
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(
        retry.headers()["location"],
        format!("/v1/jobs/{original}").as_str()
    );
    assert_eq!(job_id(retry).await, original);

    let different = json!({"providers": ["internet"], "callbackUrl": app.callback_url()});
    let conflict = post(&app, &app.http, "order-17", &different).await;
    assert_eq!(conflict.status(), 409);
    let problem: Value = conflict.json().await.expect("json");
    assert_eq!(problem["type"], "urn:hookline:problem:conflict");

    // Keys belong to a tenant: another tenant's same key is its own.
    let globex = client_with_key(&create_key(&*app.store, "globex").await);
    let theirs = post(&app, &globex, "order-17", &body).await;
    assert_eq!(theirs.status(), 202);
    assert_ne!(job_id(theirs).await, original);

    // After the window the key makes a new job.
    app.advance(intake::IDEMPOTENCY_WINDOW + Duration::from_secs(1));
    let later = post(&app, &app.http, "order-17", &body).await;
    assert_eq!(later.status(), 202);
    assert_ne!(job_id(later).await, original);

    for bad in ["has spaces in it", &"k".repeat(256)] {
        let response = post(&app, &app.http, bad, &body).await;
        assert_eq!(response.status(), 422, "{bad:?}");
        let problem: Value = response.json().await.expect("json");
        assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    }
    let listed: Value = app.get("/v1/jobs").await.json().await.expect("json");
    assert_eq!(listed["data"].as_array().expect("data").len(), 2, "{listed}");
}

async fn concurrent_retries_create_one_job(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let body = json!({"providers": ["gas"], "callbackUrl": app.callback_url()});
    let responses = futures::future::join_all((0..12).map(|_| post(&app, &app.http, "burst", &body))).await;
    let mut created = 0;
    let mut ids = Vec::new();
    for response in responses {
        match response.status().as_u16() {
            202 => created += 1,
            200 => {}
            other => panic!("unexpected {other}"),
        }
        ids.push(job_id(response).await);
    }
    assert_eq!(created, 1, "one request creates the job");
    ids.dedup();
    assert_eq!(ids.len(), 1, "every answer names the same job: {ids:?}");
    let listed: Value = app.get("/v1/jobs").await.json().await.expect("json");
    assert_eq!(listed["data"].as_array().expect("data").len(), 1);
}
