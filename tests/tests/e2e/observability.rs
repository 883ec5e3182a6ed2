//! What operators see: `GET /metrics` moves by exactly what a flow did,
//! and `GET /v1/jobs/{jobId}/attempts` lists the flow's every attempt.

use std::collections::BTreeMap;
use std::time::Duration;

use domain::{Clock, JobId};
use serde_json::Value;
use store::{Claim, Lease};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, TestApp, client_with_key, create_key, on_every_store, spawn_app_on};

on_every_store!(
    a_provider_failure_and_a_callback_failure_move_the_metrics_exactly,
    a_claim_after_an_expired_lease_counts_as_recovered,
    another_tenants_attempts_are_not_found,
);

/// One scrape: every sample line as `name{labels}` -> value.
async fn scrape(app: &TestApp) -> BTreeMap<String, f64> {
    // No key: metrics are for the operator's scraper, like /healthz.
    let response = reqwest::get(format!("{}/metrics", app.base))
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.expect("text");
    assert!(text.ends_with("# EOF\n"), "{text}");
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            (name.to_owned(), value.parse::<f64>().expect("a number"))
        })
        .collect()
}

/// How much each sample moved between two scrapes (absent counts as 0).
fn moved(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, name: &str) -> f64 {
    after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
}

async fn a_provider_failure_and_a_callback_failure_move_the_metrics_exactly(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let before = scrape(&app).await;

    app.mock.state.fail_provider_next("gas", 1, 503);
    app.mock.state.fail_sink_next(1, 500);
    let id = app.accepted_job(&["gas", "internet"]).await;
    let refused = app.post_job(&["no-such-provider"]).await;
    assert_eq!(refused.status(), 422);
    let unauthorized = reqwest::Client::new()
        .post(format!("{}/webhook", app.base))
        .json(&serde_json::json!({"providers": ["gas"], "callbackUrl": app.callback_url()}))
        .send()
        .await
        .expect("POST");
    assert_eq!(unauthorized.status(), 401);

    let processor = app.processor("p1");
    let token = CancellationToken::new();
    let run = || processor.drain(&token);
    // gas 503, internet ok: the job waits for gas's backoff.
    let first = run().await;
    assert_eq!((first.claimed, first.retried), (1, 1), "{first:?}");
    app.advance(Duration::from_secs(7));
    // gas ok, then the callback answered 500.
    let second = run().await;
    assert_eq!((second.claimed, second.retried), (1, 1), "{second:?}");
    app.advance(Duration::from_secs(7));
    let third = run().await;
    assert_eq!((third.claimed, third.delivered), (1, 1), "{third:?}");
    assert_eq!(app.get_job(&id).await["status"], "complete");

    let after = scrape(&app).await;
    let expected = [
        ("hookline_jobs_accepted_total", 1.0),
        ("hookline_jobs_rejected_total{reason=\"validation\"}", 1.0),
        ("hookline_jobs_rejected_total{reason=\"unauthorized\"}", 1.0),
        ("hookline_processor_runs_total", 3.0),
        ("hookline_processor_run_duration_seconds_count", 3.0),
        ("hookline_claims_total{result=\"won\"}", 3.0),
        ("hookline_claims_total{result=\"lost\"}", 0.0),
        ("hookline_lease_expiries_recovered_total", 0.0),
        (
            "hookline_provider_fetches_total{provider=\"gas\",outcome=\"retryable\"}",
            1.0,
        ),
        (
            "hookline_provider_fetches_total{provider=\"gas\",outcome=\"ok\"}",
            1.0,
        ),
        (
            "hookline_provider_fetches_total{provider=\"internet\",outcome=\"ok\"}",
            1.0,
        ),
        (
            "hookline_provider_fetches_total{provider=\"gas\",outcome=\"permanent\"}",
            0.0,
        ),
        (
            "hookline_provider_fetch_duration_seconds_count{provider=\"gas\"}",
            2.0,
        ),
        (
            "hookline_provider_fetch_duration_seconds_count{provider=\"internet\"}",
            1.0,
        ),
        ("hookline_callback_deliveries_total{outcome=\"retryable\"}", 1.0),
        ("hookline_callback_deliveries_total{outcome=\"delivered\"}", 1.0),
        ("hookline_callback_deliveries_total{outcome=\"gone\"}", 0.0),
        ("hookline_callback_duration_seconds_count", 2.0),
        ("hookline_jobs_delivered_total", 1.0),
        ("hookline_jobs_retried_total", 2.0),
        ("hookline_jobs_dead_lettered_total", 0.0),
    ];
    let mut wrong = Vec::new();
    for (name, want) in expected {
        let got = moved(&before, &after, name);
        if got != want {
            wrong.push(format!("{name}: moved {got}, expected {want}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\nafter: {after:#?}");
    assert_eq!(
        after.get("hookline_due_backlog"),
        Some(&0.0),
        "the last poll found nothing due"
    );
    // Every latency landed in a bucket: +Inf equals the count.
    assert_eq!(
        moved(
            &before,
            &after,
            "hookline_provider_fetch_duration_seconds_bucket{le=\"+Inf\",provider=\"gas\"}"
        ),
        2.0,
        "{after:#?}"
    );

    let capacity: Vec<&String> = after.keys().filter(|k| k.contains("capacity_units")).collect();
    match backend {
        Backend::Sqlite => assert!(capacity.is_empty(), "{capacity:?}"),
        Backend::DynamoDb => {
            let write = |operation: &str, target: &str| {
                moved(
                    &before,
                    &after,
                    &format!(
                        "hookline_dynamodb_write_capacity_units_total{{operation=\"{operation}\",target=\"{target}\"}}"
                    ),
                )
            };
            // The job's intake put: the item and its due entry (the table
            // itself is the listing).
            assert_eq!(
                (write("put job", "table"), write("put job", "indexes")),
                (1.0, 1.0)
            );
            // Three claims: the lease projected into the due index is one
            // unit each; the item is billed by its size, which the first
            // round's fetched data and failed attempt (body kept) take past
            // 1 KB, so the later claims cost 2.
            assert_eq!(write("claim job", "indexes"), 3.0, "{capacity:?}");
            let claim_table = write("claim job", "table");
            assert!((3.0..=6.0).contains(&claim_table), "{claim_table}");
            assert!(write("save job", "table") >= 3.0, "{capacity:?}");
            let read = moved(
                &before,
                &after,
                "hookline_dynamodb_read_capacity_units_total{operation=\"query due index\",target=\"indexes\"}",
            ) + moved(
                &before,
                &after,
                "hookline_dynamodb_read_capacity_units_total{operation=\"query due index\",target=\"table\"}",
            );
            assert!(read > 0.0, "polls cost read units: {capacity:?}");
        }
    }

    // The same flow's attempts, in order, with their status codes.
    let response = app.get(&format!("/v1/jobs/{id}/attempts")).await;
    assert_eq!(response.status(), 200);
    let attempts: Value = response.json().await.expect("json");
    assert_eq!(attempts["jobId"], id.as_str());
    let data = attempts["data"].as_array().expect("data");
    let summary: Vec<(String, String, u64, bool)> = data
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().expect("kind").to_owned(),
                a["provider"].as_str().unwrap_or("").to_owned(),
                a["statusCode"].as_u64().expect("statusCode"),
                a["succeeded"].as_bool().expect("succeeded"),
            )
        })
        .collect();
    let row = |kind: &str, provider: &str, status: u64, ok: bool| {
        (kind.to_owned(), provider.to_owned(), status, ok)
    };
    assert_eq!(
        summary,
        vec![
            row("fetch", "gas", 503, false),
            row("fetch", "internet", 200, true),
            row("fetch", "gas", 200, true),
            row("callback", "", 500, false),
            row("callback", "", 204, true),
        ],
        "{attempts:#}"
    );
    let times: Vec<&str> = data
        .iter()
        .map(|a| a["attemptedAt"].as_str().expect("time"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first: {times:?}");
    assert!(times[2] > times[0], "the retry came after its backoff: {times:?}");
    for failed in [&data[0], &data[3]] {
        assert!(
            failed["body"]
                .as_str()
                .expect("a failed attempt keeps its body")
                .contains("injected fault"),
            "{failed}"
        );
        assert!(
            failed["error"].as_str().expect("error").starts_with("HTTP 5"),
            "{failed}"
        );
    }
    assert_eq!(
        data[3]["headers"]["content-type"], "application/problem+json",
        "a callback answer keeps the headers that explain it: {}",
        data[3]
    );
    for ok in [&data[1], &data[2], &data[4]] {
        assert!(ok.get("error").is_none(), "{ok}");
        // Delivered: the job no longer holds the data, and the 204 answer
        // had no body.
        assert!(ok.get("body").is_none(), "{ok}");
    }
}

async fn a_claim_after_an_expired_lease_counts_as_recovered(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let id: JobId = app.accepted_job(&["gas"]).await.parse().expect("job id");
    // A processor that claimed the job and died: its lease runs out.
    let now = app.clock.now();
    let dead = Lease {
        id: "dead-lease".to_owned(),
        owner: "crashed-processor".to_owned(),
        until: now + chrono::Duration::seconds(30),
    };
    assert!(matches!(
        app.store
            .claim(&domain::TenantId::new("default"), id, &dead, now)
            .await
            .expect("claim"),
        Claim::Won { .. }
    ));
    let before = scrape(&app).await;
    let processor = app.processor("rescuer");
    let early = processor.drain(&CancellationToken::new()).await;
    assert_eq!(early.claimed, 0, "the lease is still live");
    app.advance(Duration::from_secs(31));
    let report = processor.drain(&CancellationToken::new()).await;
    assert_eq!(
        (report.claimed, report.recovered, report.delivered),
        (1, 1, 1),
        "{report:?}"
    );
    let after = scrape(&app).await;
    assert_eq!(
        moved(&before, &after, "hookline_lease_expiries_recovered_total"),
        1.0
    );
    assert_eq!(
        moved(&before, &after, "hookline_claims_total{result=\"won\"}"),
        1.0
    );
}

async fn another_tenants_attempts_are_not_found(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let id = app.accepted_job(&["gas"]).await;
    app.processor("p1").drain(&CancellationToken::new()).await;
    let stranger = client_with_key(&create_key(&*app.store, "stranger").await);
    let response = stranger
        .get(format!("{}/v1/jobs/{id}/attempts", app.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let anonymous = reqwest::get(format!("{}/v1/jobs/{id}/attempts", app.base))
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), 401);
    let unknown = app.get("/v1/jobs/not-a-job/attempts").await;
    assert_eq!(unknown.status(), 404);
    let mine = app.get(&format!("/v1/jobs/{id}/attempts")).await;
    assert_eq!(mine.status(), 200);
    let attempts: Value = mine.json().await.expect("json");
    assert_eq!(attempts["data"].as_array().map(Vec::len), Some(2), "{attempts:#}");
}
