//! The dead letter over HTTP: failed jobs are listed (`GET /v1/jobs`,
//! cursor-paginated) and redriven (`POST /v1/jobs/{id}/retry`).

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, TestApp, on_every_store, spawn_app_on};

on_every_store!(
    a_dead_lettered_job_is_listed_and_redriven_to_delivery,
    listing_pages_newest_first_by_status,
    bad_listing_queries_are_refused_by_name,
);

impl TestApp {
    async fn list(&self, query: &str) -> Value {
        let response = self.get(&format!("/v1/jobs?{query}")).await;
        assert_eq!(response.status(), 200, "GET /v1/jobs?{query}");
        response.json().await.expect("json")
    }

    async fn retry(&self, id: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/jobs/{id}/retry", self.base))
            .send()
            .await
            .expect("POST retry")
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|job| job["jobId"].as_str().expect("jobId").to_owned())
        .collect()
}

async fn a_dead_lettered_job_is_listed_and_redriven_to_delivery(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let id = app.accepted_job(&["gas"]).await;
    // The receiver answers 410 Gone once: the job fails at once.
    app.mock.state.fail_sink_next(1, 410);
    let report = app.processor("p1").drain(&CancellationToken::new()).await;
    assert_eq!(report.dead_lettered, 1, "{report:?}");

    let dead = app.list("status=failed").await;
    assert_eq!(ids(&dead), vec![id.clone()]);
    assert_eq!(dead["data"][0]["status"], "failed");
    assert_eq!(dead["data"][0]["delivery"]["lastStatusCode"], 410);
    assert!(dead.get("nextCursor").is_none(), "one page: {dead}");
    assert!(ids(&app.list("status=pending").await).is_empty());

    let response = app.retry(&id).await;
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["location"], format!("/v1/jobs/{id}").as_str());
    let requeued: Value = response.json().await.expect("json");
    assert_eq!(requeued["status"], "delivering");
    assert_eq!(requeued["delivery"]["attempts"], 0);

    // Retrying what is not failed is a conflict, as problem+json.
    let again = app.retry(&id).await;
    assert_eq!(again.status(), 409);
    assert_eq!(again.headers()["content-type"], "application/problem+json");
    let problem: Value = again.json().await.expect("json");
    assert_eq!(problem["type"], "urn:hookline:problem:conflict");
    assert!(
        problem["detail"].as_str().expect("detail").contains("delivering"),
        "{problem}"
    );
    for unknown in ["01KDVDNBYG2G5GJBN0235ABBVQ", "not-an-id"] {
        assert_eq!(app.retry(unknown).await.status(), 404, "{unknown}");
    }

    let report = app.processor("p2").drain(&CancellationToken::new()).await;
    assert_eq!(report.delivered, 1, "{report:?}");
    assert_eq!(
        app.mock.state.provider_calls("gas"),
        1,
        "a redrive does not fetch again"
    );
    let accepted = app.mock.state.accepted_deliveries();
    assert_eq!(accepted.len(), 1);
    assert_eq!(
        accepted[0].body["results"][0]["status"], "ok",
        "the kept data is delivered"
    );
    assert!(ids(&app.list("status=failed").await).is_empty());
    assert_eq!(ids(&app.list("status=complete").await), vec![id.clone()]);
    assert_eq!(app.get_job(&id).await["status"], "complete");
}

async fn listing_pages_newest_first_by_status(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut posted = Vec::new();
    for _ in 0..5 {
        posted.push(app.accepted_job(&["gas"]).await);
        app.advance(Duration::from_millis(5));
    }
    let newest_first: Vec<String> = posted.iter().rev().cloned().collect();

    let mut walked = Vec::new();
    let mut query = "limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = app.list(&query).await;
        pages += 1;
        walked.extend(ids(&page));
        match page["nextCursor"].as_str() {
            Some(cursor) => query = format!("limit=2&cursor={cursor}"),
            None => break,
        }
        assert!(pages < 10, "listing never ended");
    }
    assert_eq!(walked, newest_first);
    assert_eq!(pages, 3);

    assert_eq!(
        ids(&app.list("").await),
        newest_first,
        "default page holds them all"
    );
    assert_eq!(ids(&app.list("status=pending&limit=100").await), newest_first);
    assert!(ids(&app.list("status=complete").await).is_empty());
    let listed = &app.list("limit=1").await["data"][0];
    assert_eq!(
        listed,
        &app.get_job(&newest_first[0]).await,
        "a listed job reads as GET shows it"
    );
}

async fn bad_listing_queries_are_refused_by_name(backend: Backend) {
    let app = spawn_app_on(backend).await;
    for (query, field) in [
        ("status=lost", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=page-2", "cursor"),
        ("state=failed", "state"),
        ("status=failed&status=pending", "status"),
    ] {
        let response = app.get(&format!("/v1/jobs?{query}")).await;
        assert_eq!(response.status(), 422, "{query}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let problem: Value = response.json().await.expect("json");
        assert_eq!(problem["type"], "urn:hookline:problem:validation", "{query}");
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
}
