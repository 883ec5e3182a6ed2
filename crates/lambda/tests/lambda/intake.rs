//! `hookline lambda intake`: API Gateway HTTP API events through the
//! handler.

use std::time::Duration;

use domain::{JobId, JobStatus, TenantId};

use crate::support::{fixture, post_webhook, request, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_posted_through_api_gateway_is_accepted_and_stored() {
    let setup = setup(Duration::from_secs(5)).await;
    let body = serde_json::json!({
        "providers": ["gas", "internet"],
        "callbackUrl": setup.mock.url("/complete"),
        "metadata": {"orderId": 12345678901234567890_u64},
    })
    .to_string();
    let (status, headers, answer) = setup.invoke_intake(post_webhook(&setup.key, &body)).await;
    assert_eq!(status, 202, "{answer}");
    assert!(headers.contains_key("x-request-id"), "{headers:?}");
    let id: JobId = answer["jobId"]
        .as_str()
        .expect("jobId")
        .parse()
        .expect("a job id");
    let job = setup
        .store
        .get_job(&TenantId::new("acme"), id)
        .await
        .expect("read")
        .expect("the job is stored");
    assert_eq!(job.status(), JobStatus::Pending);
    match job.target() {
        domain::Target::Callback(url) => assert_eq!(url.as_str(), setup.mock.url("/complete")),
        other => panic!("a callback job, not {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_api_key_is_401_problem_json() {
    let setup = setup(Duration::from_secs(5)).await;
    // AWS's base64 body (isBase64Encoded), a key nobody was given.
    let (status, headers, answer) = setup
        .invoke_intake(request(&fixture("apigw-v2-post-webhook-bad-key.json")))
        .await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    assert_eq!(answer["status"], 401, "{answer}");
    assert!(
        answer["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:hookline:problem:")),
        "{answer}"
    );
    assert!(
        !answer.to_string().contains("hl_not_a_key"),
        "the key is not echoed: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_through_api_gateway() {
    let setup = setup(Duration::from_secs(5)).await;
    let (status, _, answer) = setup
        .invoke_intake(request(&fixture("apigw-v2-get-healthz.json")))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ok", "{answer}");
}
