//! Delivery options per endpoint (SPEC section 10) over real HTTP, on every
//! store: each auth type reaches the receiver as it should; an OAuth2
//! token is fetched once for many deliveries, and again once when a
//! receiver refuses it; a failing token endpoint is a retryable failure
//! that says so; credentials are write-only, and a `PATCH` changes them
//! without reading them back; every answer is kept in the attempt
//! history, successes included; a synchronous publish answers with each
//! delivery's first attempt, made once.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, TestApp, on_every_store, spawn_app_on};

on_every_store!(
    each_auth_type_reaches_the_receiver_as_it_should,
    one_oauth2_token_serves_many_deliveries_and_a_401_fetches_a_new_one_once,
    a_failing_token_endpoint_is_a_retryable_failure_that_says_so,
    credentials_are_write_only_and_a_patch_keeps_what_it_does_not_give,
    every_answer_is_kept_successes_included,
    a_synchronous_publish_answers_with_each_first_attempt,
    a_synchronous_publish_out_of_time_answers_202_and_the_attempt_still_lands_once,
    a_synchronous_job_answers_with_its_first_pass,
    a_delivery_longer_than_the_lease_is_made_once_by_two_processors,
);

async fn event_type(app: &TestApp) {
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            "/v1/event-types/invoice.paid",
            Some(json!({"description": "paid"})),
        )
        .await;
    assert!(status == 201 || status == 200, "{status} {body}");
}

/// Registers an endpoint marked `mark` (an `x-endpoint` header) at `path`
/// of the mock with `auth`; its id.
async fn endpoint(app: &TestApp, mark: &str, path: &str, auth: Value) -> String {
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/v1/endpoints",
            Some(json!({
                "url": app.mock.url(path),
                "eventTypes": ["invoice.paid"],
                "headers": {"x-endpoint": mark},
                "auth": auth,
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["endpointId"].as_str().expect("id").to_owned()
}

async fn publish(app: &TestApp, n: u64) {
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/v1/events",
            Some(json!({"type": "invoice.paid", "payload": {"n": n}})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
}

async fn drain(app: &TestApp) -> processor::DrainReport {
    app.processor("p1").drain(&CancellationToken::new()).await
}

/// The sink's deliveries by their `x-endpoint` mark.
fn by_endpoint(app: &TestApp) -> BTreeMap<String, Vec<providers_mock::Delivery>> {
    let mut marked: BTreeMap<String, Vec<providers_mock::Delivery>> = BTreeMap::new();
    for delivery in app.mock.state.deliveries() {
        let mark = delivery.headers.get("x-endpoint").cloned().unwrap_or_default();
        marked.entry(mark).or_default().push(delivery);
    }
    marked
}

fn oauth2(app: &TestApp, secret: &str) -> Value {
    json!({
        "type": "oauth2",
        "tokenUrl": app.mock.url("/oauth2/token"),
        "clientId": "hookline-mock",
        "clientSecret": secret,
        "scope": "webhooks",
        "audience": "https://receiver.example",
    })
}

async fn each_auth_type_reaches_the_receiver_as_it_should(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_type(&app).await;
    endpoint(
        &app,
        "basic",
        "/complete",
        json!({"type": "basic", "username": "Aladdin", "password": "open sesame"}),
    )
    .await;
    endpoint(
        &app,
        "bearer",
        "/complete",
        json!({"type": "bearer", "token": "bearer-t0ken"}),
    )
    .await;
    endpoint(
        &app,
        "header",
        "/complete",
        json!({"type": "header", "name": "X-Api-Key", "value": "k3y-value"}),
    )
    .await;
    endpoint(&app, "oauth2", "/protected", oauth2(&app, "mock-client-secret")).await;
    endpoint(&app, "none", "/complete", Value::Null).await;
    for n in 0..3 {
        publish(&app, n).await;
    }
    let report = drain(&app).await;
    assert_eq!(report.delivered, 15, "{report:?}");

    let marked = by_endpoint(&app);
    let basic = base64::engine::general_purpose::STANDARD.encode("Aladdin:open sesame");
    for (mark, expected) in [
        ("basic", Some(("authorization", format!("Basic {basic}")))),
        (
            "bearer",
            Some(("authorization", "Bearer bearer-t0ken".to_owned())),
        ),
        ("header", Some(("x-api-key", "k3y-value".to_owned()))),
        ("none", None),
    ] {
        let deliveries = &marked[mark];
        assert_eq!(deliveries.len(), 3, "{mark}");
        for delivery in deliveries {
            assert_eq!(delivery.status, 204, "{mark}");
            match &expected {
                Some((name, value)) => {
                    assert_eq!(delivery.credential(name), Some(value.as_str()), "{mark}");
                    assert_eq!(delivery.headers[*name], "***", "the sink's listing hides it");
                }
                None => assert_eq!(delivery.credential("authorization"), None, "{mark}"),
            }
        }
    }
    let protected = &marked["oauth2"];
    assert_eq!(protected.len(), 3);
    assert!(
        protected.iter().all(|d| d.status == 204),
        "every token was honoured"
    );
    assert_eq!(
        app.mock.state.tokens_issued(),
        1,
        "one token for three deliveries"
    );
    let asked = app.mock.state.token_requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["grant_type"], "client_credentials");
    assert_eq!(asked[0]["scope"], "webhooks");
    assert_eq!(asked[0]["audience"], "https://receiver.example");
    assert!(
        protected
            .iter()
            .all(|d| d.credential("authorization") == Some("Bearer mock-token-1"))
    );
}

async fn one_oauth2_token_serves_many_deliveries_and_a_401_fetches_a_new_one_once(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_type(&app).await;
    endpoint(&app, "oauth2", "/protected", oauth2(&app, "mock-client-secret")).await;
    // One processor throughout: its tokens are its own.
    let processor = app.processor("p1");
    let drain = async || processor.drain(&CancellationToken::new()).await;
    for n in 0..4 {
        publish(&app, n).await;
    }
    assert_eq!(drain().await.delivered, 4);
    assert_eq!(app.mock.state.tokens_issued(), 1);

    // The authorization server revokes it: the next delivery is refused
    // once, gets a new token and is delivered in the same attempt.
    app.mock.state.revoke_tokens();
    publish(&app, 9).await;
    let report = drain().await;
    assert_eq!(report.delivered, 1, "{report:?}");
    assert_eq!(app.mock.state.tokens_issued(), 2, "one new token");
    let statuses: Vec<u16> = app.mock.state.deliveries().iter().map(|d| d.status).collect();
    assert_eq!(statuses, [204, 204, 204, 204, 401, 204]);
    let (_, events) = app.send(reqwest::Method::GET, "/v1/events?limit=1", None).await;
    let delivery = events["data"][0]["deliveries"][0]["deliveryId"]
        .as_str()
        .expect("a delivery")
        .to_owned();
    let job = app.get_job(&delivery).await;
    assert_eq!(job["status"], "complete", "{job}");
    assert_eq!(
        job["delivery"]["attempts"], 1,
        "the retry after a 401 is the same attempt: {job}"
    );

    // A token past its lifetime (less the margin) is fetched again.
    app.advance(Duration::from_secs(3600));
    publish(&app, 10).await;
    assert_eq!(drain().await.delivered, 1);
    assert_eq!(app.mock.state.tokens_issued(), 3, "expired: fetched again");
}

async fn a_failing_token_endpoint_is_a_retryable_failure_that_says_so(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_type(&app).await;
    endpoint(&app, "oauth2", "/protected", oauth2(&app, "not-the-secret")).await;
    publish(&app, 1).await;
    let report = drain(&app).await;
    assert_eq!((report.delivered, report.retried), (0, 1), "{report:?}");
    assert!(
        app.mock.state.deliveries().is_empty(),
        "nothing was sent without a token"
    );
    let (_, events) = app.send(reqwest::Method::GET, "/v1/events?limit=1", None).await;
    let delivery = events["data"][0]["deliveries"][0]["deliveryId"]
        .as_str()
        .expect("a delivery")
        .to_owned();
    let job = app.get_job(&delivery).await;
    assert_eq!(job["status"], "delivering", "due again later: {job}");
    let text = job.to_string();
    assert!(
        text.contains("the OAuth2 token endpoint answered HTTP 401 (invalid_client)"),
        "{text}"
    );
    assert!(!text.contains("not-the-secret"), "{text}");
}

async fn credentials_are_write_only_and_a_patch_keeps_what_it_does_not_give(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_type(&app).await;
    let id = endpoint(
        &app,
        "basic",
        "/complete",
        json!({"type": "basic", "username": "user", "password": "first-pa55"}),
    )
    .await;
    let path = format!("/v1/endpoints/{id}");
    let (_, shown) = app.send(reqwest::Method::GET, &path, None).await;
    assert_eq!(
        shown["auth"],
        json!({"type": "basic", "username": "user", "password": "***"})
    );
    assert!(!shown.to_string().contains("first-pa55"), "{shown}");
    let (_, listed) = app.send(reqwest::Method::GET, "/v1/endpoints", None).await;
    assert!(!listed.to_string().contains("first-pa55"), "{listed}");

    // What a read showed, sent back with a new username: the password stays.
    let (status, patched) = app
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(
                json!({"auth": {"type": "basic", "username": "renamed", "password": "***"}, "timeout": "2m"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["auth"]["username"], "renamed");
    assert_eq!(patched["timeout"], "2m");
    publish(&app, 1).await;
    assert_eq!(drain(&app).await.delivered, 1);
    let basic = |pair: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
    assert_eq!(
        app.mock.state.deliveries()[0].credential("authorization"),
        Some(basic("renamed:first-pa55").as_str())
    );

    // A new password, without reading the old one.
    let (status, _) = app
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"auth": {"type": "basic", "username": "renamed", "password": "second-pa55"}})),
        )
        .await;
    assert_eq!(status, 200);
    publish(&app, 2).await;
    assert_eq!(drain(&app).await.delivered, 1);
    assert_eq!(
        app.mock.state.deliveries()[1].credential("authorization"),
        Some(basic("renamed:second-pa55").as_str())
    );

    // Refused, changing nothing: `***` for a credential of another type,
    // a header the auth sets too, an unknown type or field, timeouts out
    // of bounds.
    for (body, field) in [
        (json!({"auth": {"type": "bearer", "token": "***"}}), "auth.token"),
        (json!({"headers": {"authorization": "Bearer x"}}), "headers"),
        (json!({"auth": {"type": "digest"}}), "auth.type"),
        (
            json!({"auth": {"type": "bearer", "token": "t", "extra": 1}}),
            "auth.\"extra\"",
        ),
        (json!({"auth": {"type": "bearer"}}), "auth.token"),
        (
            json!({"auth": {"type": "header", "name": "webhook-id", "value": "v"}}),
            "auth.name",
        ),
        (json!({"timeout": "0s"}), "timeout"),
        (json!({"timeout": "16m"}), "timeout"),
        (json!({"timeout": 30}), "timeout"),
    ] {
        let (status, problem) = app.send(reqwest::Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(status, 422, "{body}: {problem}");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{body}: {problem}");
    }
    let (status, problem) = app
        .send(
            reqwest::Method::POST,
            "/v1/endpoints",
            Some(json!({"url": app.callback_url(), "eventTypes": ["*"],
            "auth": {"type": "bearer", "token": "***"}})),
        )
        .await;
    assert_eq!(status, 422, "`***` keeps nothing on a new endpoint: {problem}");

    // Removed: deliveries carry no auth.
    let (status, removed) = app
        .send(reqwest::Method::PATCH, &path, Some(json!({"auth": null})))
        .await;
    assert_eq!(status, 200);
    assert!(removed.get("auth").is_none(), "{removed}");
    publish(&app, 3).await;
    assert_eq!(drain(&app).await.delivered, 1);
    assert_eq!(app.mock.state.deliveries()[2].credential("authorization"), None);
}

async fn every_answer_is_kept_successes_included(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_type(&app).await;
    endpoint(&app, "accepted", "/accepted", Value::Null).await;
    publish(&app, 1).await;
    assert_eq!(drain(&app).await.delivered, 1);
    let (_, events) = app.send(reqwest::Method::GET, "/v1/events?limit=1", None).await;
    let delivery = events["data"][0]["deliveries"][0]["deliveryId"]
        .as_str()
        .expect("a delivery")
        .to_owned();
    let (status, attempts) = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/jobs/{delivery}/attempts"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{attempts}");
    let attempt = &attempts["data"][0];
    assert_eq!(attempt["succeeded"], true, "{attempt}");
    assert_eq!(attempt["statusCode"], 200);
    assert!(attempt["durationMs"].is_u64(), "{attempt}");
    let body: Value = serde_json::from_str(attempt["body"].as_str().expect("the 2xx body is kept"))
        .expect("the body as sent");
    assert_eq!(body, json!({"received": true, "n": 1}));
    assert_eq!(
        attempt["headers"],
        json!({"content-type": "application/json", "x-request-id": "sink-1"}),
        "the headers that explain it, and no others (no date, no content-length)"
    );
}

async fn a_synchronous_publish_answers_with_each_first_attempt(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_type(&app).await;
    let accepted = endpoint(&app, "accepted", "/accepted", Value::Null).await;
    let gone = endpoint(&app, "gone", "/gone", Value::Null).await;
    let (status, answer) = app
        .send(
            reqwest::Method::POST,
            "/v1/events?sync=true&timeout=10s",
            Some(json!({"type": "invoice.paid", "payload": {"n": 1}})),
        )
        .await;
    assert_eq!(status, 200, "every first attempt finished: {answer}");
    let deliveries = answer["deliveries"].as_array().expect("deliveries");
    let of = |endpoint: &str| {
        deliveries
            .iter()
            .find(|d| d["endpointId"] == endpoint)
            .unwrap_or_else(|| panic!("no delivery to {endpoint}: {answer}"))
    };
    assert_eq!(of(&accepted)["status"], "complete", "{answer}");
    assert_eq!(of(&accepted)["statusCode"], 200);
    assert!(of(&accepted)["durationMs"].is_u64(), "{answer}");
    assert!(of(&accepted).get("error").is_none(), "{answer}");
    assert_eq!(of(&gone)["status"], "failed", "410 settles it: {answer}");
    assert_eq!(of(&gone)["statusCode"], 410);
    assert!(of(&gone)["error"].is_string(), "{answer}");
    // Made once: a processor finds nothing left, and each receiver saw one.
    assert_eq!(drain(&app).await.claimed, 0);
    assert_eq!(app.mock.state.deliveries().len(), 2);

    // Bad waits are refused before anything is published.
    for query in [
        "sync=maybe",
        "sync=true&timeout=31s",
        "sync=true&timeout=soon",
        "timeout=5s",
        "wait=1",
    ] {
        let (status, problem) = app
            .send(
                reqwest::Method::POST,
                &format!("/v1/events?{query}"),
                Some(json!({"type": "invoice.paid", "payload": {"n": 2}})),
            )
            .await;
        assert_eq!(status, 422, "{query}: {problem}");
    }
    let (_, events) = app.send(reqwest::Method::GET, "/v1/events", None).await;
    assert_eq!(
        events["data"].as_array().expect("events").len(),
        1,
        "nothing more was published"
    );
}

async fn a_synchronous_publish_out_of_time_answers_202_and_the_attempt_still_lands_once(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_type(&app).await;
    endpoint(&app, "slow", "/complete", Value::Null).await;
    app.mock.state.set_sink_faults(providers_mock::Faults {
        latency_ms: 1500,
        ..providers_mock::Faults::default()
    });
    let (status, answer) = app
        .send(
            reqwest::Method::POST,
            "/v1/events?sync=true&timeout=200ms",
            Some(json!({"type": "invoice.paid", "payload": {"n": 1}})),
        )
        .await;
    assert_eq!(status, 202, "the wait ran out first: {answer}");
    let delivery = answer["deliveries"][0]["deliveryId"]
        .as_str()
        .expect("a delivery")
        .to_owned();
    assert_ne!(answer["deliveries"][0]["status"], "complete", "{answer}");
    // The attempt the intake began goes on without the client, and lands.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let job = app.get_job(&delivery).await;
        if job["status"] == "complete" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never delivered: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(drain(&app).await.claimed, 0, "nothing left for a processor");
    assert_eq!(app.mock.state.deliveries().len(), 1, "delivered once");
}

async fn a_synchronous_job_answers_with_its_first_pass(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let response = app
        .http
        .post(format!("{}/webhook?sync=true", app.base))
        .json(&json!({"providers": ["gas"], "callbackUrl": app.callback_url()}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["status"], "complete", "{answer}");
    assert_eq!(answer["statusCode"], 204);
    assert!(answer["durationMs"].is_u64(), "{answer}");
    assert_eq!(drain(&app).await.claimed, 0);
    assert_eq!(app.mock.state.accepted_deliveries().len(), 1);
}

/// An endpoint's `timeout` (10 minutes) past the processors' lease (60 s):
/// while one processor's delivery is still being answered, the clock
/// passes the lease it claimed with; a second processor draining then
/// must not claim it, because the first lengthened its lease to outlast
/// the delivery before sending it.
async fn a_delivery_longer_than_the_lease_is_made_once_by_two_processors(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_type(&app).await;
    let id = endpoint(&app, "slow", "/complete", Value::Null).await;
    let (status, patched) = app
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/endpoints/{id}"),
            Some(json!({"timeout": "10m"})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    app.mock.state.set_sink_faults(providers_mock::Faults {
        latency_ms: 1500,
        ..providers_mock::Faults::default()
    });
    publish(&app, 1).await;
    let first = app.processor("p1");
    let lease = processor::ProcessorConfig::default().lease;
    let slow = tokio::spawn(async move { first.drain(&CancellationToken::new()).await });
    // Within half a second p1 has claimed and sent (the receiver takes
    // 1.5 s to answer, and records the delivery only then).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(app.mock.state.deliveries().is_empty(), "still being answered");
    app.advance(lease + Duration::from_secs(60));
    let second = app.processor("p2").drain(&CancellationToken::new()).await;
    assert_eq!(second.claimed, 0, "p1's lease outlasts its delivery: {second:?}");
    let first = slow.await.expect("p1 drains");
    assert_eq!(first.delivered, 1, "{first:?}");
    assert_eq!(app.mock.state.deliveries().len(), 1, "delivered once");
}
