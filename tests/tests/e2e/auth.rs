//! API keys over HTTP: every job route wants `Authorization: Bearer`, and a
//! key's tenant sees only its own jobs.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Backend, client_with_key, create_key, on_every_store, spawn_app_on};

on_every_store!(
    every_job_route_requires_a_valid_key,
    a_tenant_sees_only_its_own_jobs,
    a_revoked_key_stops_working_within_the_cache_ttl,
);

async fn every_job_route_requires_a_valid_key(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let id = app.accepted_job(&["gas"]).await;
    let anonymous = reqwest::Client::new();
    let routes = [
        ("POST", "/webhook".to_owned()),
        ("POST", "/v1/jobs".to_owned()),
        ("GET", "/v1/jobs".to_owned()),
        ("GET", format!("/v1/jobs/{id}")),
        ("POST", format!("/v1/jobs/{id}/retry")),
    ];
    let credentials = [
        None,
        Some("Basic dXNlcjpwYXNz".to_owned()),
        Some("Bearer".to_owned()),
        Some("Bearer hl_not-a-key-anyone-has-0000000000".to_owned()),
        Some(format!("Token {}", app.key)),
    ];
    for (method, path) in &routes {
        for credential in &credentials {
            let mut request =
                anonymous.request(method.parse().expect("method"), format!("{}{path}", app.base));
            if let Some(value) = credential {
                request = request.header("authorization", value);
            }
            let response = request
                .header("content-type", "application/json")
                .body(r#"{"providers":["gas"],"callbackUrl":"http://127.0.0.1:9/"}"#)
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), 401, "{method} {path} with {credential:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            assert_eq!(response.headers()["content-type"], "application/problem+json");
            let problem: Value = response.json().await.expect("json");
            assert_eq!(problem["type"], "urn:hookline:problem:unauthorized");
        }
    }
    for open in ["/healthz", "/readyz"] {
        let response = anonymous
            .get(format!("{}{open}", app.base))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200, "{open} needs no key");
    }
    // The scheme is case-insensitive (RFC 9110).
    let response = anonymous
        .get(format!("{}/v1/jobs/{id}", app.base))
        .header("authorization", format!("bearer {}", app.key))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
}

async fn a_tenant_sees_only_its_own_jobs(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let ours = app.accepted_job(&["gas"]).await;
    let globex = client_with_key(&create_key(&*app.store, "globex").await);

    let theirs_read = globex
        .get(format!("{}/v1/jobs/{ours}", app.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        theirs_read.status(),
        404,
        "another tenant's job does not exist for you"
    );
    let retry = globex
        .post(format!("{}/v1/jobs/{ours}/retry", app.base))
        .send()
        .await
        .expect("POST");
    assert_eq!(retry.status(), 404);
    let listed: Value = globex
        .get(format!("{}/v1/jobs", app.base))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["data"], serde_json::json!([]));

    let response = globex
        .post(format!("{}/webhook", app.base))
        .json(&serde_json::json!({"providers": ["gas"], "callbackUrl": app.callback_url()}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 202);
    let theirs: Value = response.json().await.expect("json");
    let theirs = theirs["jobId"].as_str().expect("jobId");
    assert_eq!(app.get(&format!("/v1/jobs/{theirs}")).await.status(), 404);
    let mine: Value = app.get("/v1/jobs").await.json().await.expect("json");
    assert_eq!(mine["data"].as_array().expect("data").len(), 1, "{mine}");
    assert_eq!(mine["data"][0]["jobId"], ours.as_str());
}

async fn a_revoked_key_stops_working_within_the_cache_ttl(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let key = create_key(&*app.store, "acme").await;
    let acme = client_with_key(&key);
    let list = || acme.get(format!("{}/v1/jobs", app.base)).send();
    assert_eq!(list().await.expect("GET").status(), 200);

    let key_id = domain::ApiKey::parse(&key).expect("key").hash().key_id();
    let revoked = app
        .store
        .revoke_api_key(&key_id, app.later(Duration::ZERO))
        .await
        .expect("revoke");
    assert!(revoked.is_some());
    app.advance(intake::KEY_CACHE_TTL + Duration::from_secs(1));
    assert_eq!(
        list().await.expect("GET").status(),
        401,
        "revoked keys are refused"
    );
    assert_eq!(app.get("/v1/jobs").await.status(), 200, "other keys still work");
}
