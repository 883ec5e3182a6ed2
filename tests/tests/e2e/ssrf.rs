//! The SSRF guard over HTTP with the strict (production) policy: intake
//! refuses every reserved address in the table, and a job whose
//! callback host resolves to loopback after intake (DNS rebinding, here a
//! job written straight to the store) is never connected to.

use std::sync::Arc;

use domain::{Clock, JobId, NewJob, TenantId};
use netguard::NetPolicy;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, on_every_store, spawn_app_guarded, spawn_app_on};

on_every_store!(
    intake_refuses_every_reserved_callback_address,
    a_callback_rebound_to_loopback_is_never_connected,
);

const REFUSED: [&str; 14] = [
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://169.254.169.254/",
    "http://[fd00::1]/",
    "http://0.0.0.0/",
    "http://localhost:4000/complete",
];

async fn intake_refuses_every_reserved_callback_address(backend: Backend) {
    let app = spawn_app_guarded(backend, Arc::new(NetPolicy::strict())).await;
    for target in REFUSED {
        let response = app
            .http
            .post(format!("{}/webhook", app.base))
            .json(&json!({"providers": ["gas"], "callbackUrl": target}))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 422, "{target}");
        let problem: Value = response.json().await.expect("json");
        assert_eq!(
            problem["errors"][0]["field"], "callbackUrl",
            "{target}: {problem}"
        );
        assert!(
            problem["detail"]
                .as_str()
                .expect("detail")
                .contains("callbacks may not reach"),
            "{target}: {problem}"
        );
    }
    // A public address is accepted.
    let response = app
        .http
        .post(format!("{}/webhook", app.base))
        .json(&json!({"providers": ["gas"], "callbackUrl": "https://203.0.113.7/hook"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202);
    let listed: Value = app.get("/v1/jobs").await.json().await.expect("json");
    assert_eq!(
        listed["data"].as_array().expect("data").len(),
        1,
        "nothing refused was stored"
    );
}

async fn a_callback_rebound_to_loopback_is_never_connected(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let now = app.clock.now();
    let job = domain::Job::new(
        NewJob {
            id: JobId::generate(now, &mut rand::rng()),
            tenant: TenantId::new("default"),
            target: domain::Target::Callback(
                url::Url::parse(&app.mock.url("/complete").replace("127.0.0.1", "localhost")).expect("url"),
            ),
            payload: domain::Payload::Results { metadata: None },
            providers: vec![],
        },
        now,
    );
    app.store.create_job(&job).await.expect("create");
    let strict = processor::Processor::new(
        Arc::clone(&app.store),
        Arc::clone(&app.clock) as Arc<dyn domain::Clock>,
        processor::http_client(),
        app.catalog.clone(),
        processor::ProcessorConfig {
            owner: "strict".to_owned(),
            seed: Some(1),
            ..processor::ProcessorConfig::default()
        },
    )
    .expect("config");
    let report = strict.drain(&CancellationToken::new()).await;
    assert_eq!(
        (report.claimed, report.delivered, report.retried),
        (1, 0, 1),
        "{report:?}"
    );
    assert!(
        app.mock.state.deliveries().is_empty(),
        "no connection reached the sink"
    );
    let read = app.get_job(&job.id().to_string()).await;
    let error = read["delivery"]["lastError"].as_str().expect("lastError");
    assert!(error.contains("loopback"), "{error}");
}
