//! The sink's signature verdicts over real HTTP, and the official Standard
//! Webhooks verifier (PyPI `standardwebhooks`) accepting what the sink
//! captured from a sender signing with `domain::signing`.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use domain::signing::{self, SigningSecret};
use providers_mock::{Delivery, MockState, RunningMock, SignatureVerdict};
use rand::SeedableRng;
use serde_json::{Value, json};

async fn spawn_mock(secrets: Vec<SigningSecret>) -> RunningMock {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free loopback port");
    let state = MockState::with_seed(1);
    state.set_signing_secrets(secrets);
    providers_mock::spawn(listener, state).expect("spawn the mock")
}

fn secret(seed: u64) -> SigningSecret {
    SigningSecret::generate(&mut rand::rngs::StdRng::seed_from_u64(seed))
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    i64::try_from(secs).expect("seconds fit in i64")
}

fn callback_body(job_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "job.completed",
        "jobId": job_id,
        "createdAt": "2026-11-23T18:00:00.000Z",
        "metadata": {"orderId": "A-17", "note": "naïve café ✓"},
        "results": [{"provider": "gas", "status": "ok", "data": [{"billedOn": "2026-01-01", "amount": 22.27}]}],
    }))
    .expect("serializes")
}

/// POSTs a callback the way the processor does and returns what the sink
/// recorded for it.
async fn deliver(
    mock: &RunningMock,
    id: &str,
    timestamp: i64,
    signature: Option<&str>,
    body: &[u8],
) -> Delivery {
    let before = mock.state.deliveries().len();
    let mut request = reqwest::Client::new()
        .post(mock.url("/complete"))
        .header("content-type", "application/json")
        .header(signing::HEADER_ID, id)
        .header(signing::HEADER_TIMESTAMP, timestamp.to_string());
    if let Some(signature) = signature {
        request = request.header(signing::HEADER_SIGNATURE, signature);
    }
    let response = request.body(body.to_vec()).send().await.expect("POST /complete");
    // Verdicts are recorded, never acted on: the sink answers as before.
    assert_eq!(response.status().as_u16(), 204);
    let deliveries = mock.state.deliveries();
    assert_eq!(deliveries.len(), before + 1);
    deliveries.last().cloned().expect("one delivery")
}

#[tokio::test]
async fn a_signed_callback_is_valid_and_recorded_byte_for_byte() {
    let key = secret(1);
    let mock = spawn_mock(vec![key.clone()]).await;
    let (id, ts, body) = ("01JSIGNED", now(), callback_body("01JSIGNED"));
    let header = signing::signature_header(std::slice::from_ref(&key), id, ts, &body);

    let delivery = deliver(&mock, id, ts, Some(&header), &body).await;
    assert_eq!(delivery.signature, SignatureVerdict::Valid);
    assert_eq!(delivery.raw_body, body);
    assert_eq!(delivery.job_id(), Some(id));
    assert!(delivery.accepted());

    let listed: Value = reqwest::get(mock.url("/deliveries"))
        .await
        .expect("GET /deliveries")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed[0]["signature"], json!({"verdict": "valid"}));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(listed[0]["rawBody"].as_str().expect("rawBody is a string"))
        .expect("rawBody is base64");
    assert_eq!(raw, body);
}

#[tokio::test]
async fn a_tampered_body_or_a_stale_timestamp_is_invalid() {
    let key = secret(2);
    let mock = spawn_mock(vec![key.clone()]).await;
    let (id, ts, body) = ("01JTAMPER", now(), callback_body("01JTAMPER"));
    let header = signing::sign(&key, id, ts, &body);

    let tampered = String::from_utf8(body.clone())
        .expect("JSON is UTF-8")
        .replace("22.27", "0.01");
    let delivery = deliver(&mock, id, ts, Some(&header), tampered.as_bytes()).await;
    assert_eq!(
        delivery.signature,
        SignatureVerdict::Invalid("no signature matches any secret".to_owned())
    );

    let old = ts - 3600;
    let stale = signing::sign(&key, id, old, &body);
    let delivery = deliver(&mock, id, old, Some(&stale), &body).await;
    assert!(
        matches!(&delivery.signature, SignatureVerdict::Invalid(reason) if reason.contains("webhook-timestamp")),
        "{:?}",
        delivery.signature
    );

    let listed: Value = reqwest::get(mock.url("/deliveries"))
        .await
        .expect("GET /deliveries")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        listed[0]["signature"],
        json!({"verdict": "invalid", "reason": "no signature matches any secret"})
    );
}

#[tokio::test]
async fn during_a_rotation_the_old_secret_alone_verifies_the_two_signature_header() {
    let (old, new) = (secret(3), secret(4));
    let mock = spawn_mock(vec![old.clone()]).await;
    let (id, ts, body) = ("01JROTATE", now(), callback_body("01JROTATE"));
    let header = signing::signature_header(&[new.clone(), old.clone()], id, ts, &body);
    assert_eq!(header.split(' ').count(), 2);

    let delivery = deliver(&mock, id, ts, Some(&header), &body).await;
    assert_eq!(delivery.signature, SignatureVerdict::Valid);

    // A receiver that knows neither secret refuses it.
    mock.state.set_signing_secrets(vec![secret(5)]);
    let delivery = deliver(&mock, id, ts, Some(&header), &body).await;
    assert!(matches!(delivery.signature, SignatureVerdict::Invalid(_)));
}

#[tokio::test]
async fn unsigned_callbacks_are_missing_and_nothing_is_checked_without_secrets() {
    let mock = spawn_mock(Vec::new()).await;
    let (id, ts, body) = ("01JUNSIGNED", now(), callback_body("01JUNSIGNED"));
    let delivery = deliver(&mock, id, ts, None, &body).await;
    assert_eq!(delivery.signature, SignatureVerdict::NotChecked);

    mock.state.set_signing_secrets(vec![secret(6)]);
    let delivery = deliver(&mock, id, ts, None, &body).await;
    assert_eq!(delivery.signature, SignatureVerdict::Missing);
    let listed: Value = reqwest::get(mock.url("/deliveries"))
        .await
        .expect("GET /deliveries")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed[0]["signature"], json!({"verdict": "notChecked"}));
    assert_eq!(listed[1]["signature"], json!({"verdict": "missing"}));
}

/// The acceptance test: what our signer sends, as the sink captured
/// it, verifies with the official library; so does a rotation header with
/// either secret; a tampered body or an unknown secret is refused by it.
#[tokio::test]
async fn a_captured_delivery_verifies_with_the_official_standard_webhooks_library() {
    let (old, new) = (secret(7), secret(8));
    let mock = spawn_mock(vec![old.clone()]).await;
    let ts = now();
    let body = callback_body("01JOFFICIAL");
    let single = signing::signature_header(std::slice::from_ref(&old), "01JOFFICIAL", ts, &body);
    let rotation = signing::signature_header(&[new.clone(), old.clone()], "01JROTATION", ts, &body);
    let signed_once = deliver(&mock, "01JOFFICIAL", ts, Some(&single), &body).await;
    let rotated = deliver(&mock, "01JROTATION", ts, Some(&rotation), &body).await;
    assert_eq!(signed_once.signature, SignatureVerdict::Valid);
    assert_eq!(rotated.signature, SignatureVerdict::Valid);

    // The official verifier blocks on a child process: keep it off the runtime.
    tokio::task::spawn_blocking(move || {
        let official = |secret: &SigningSecret, delivery: &Delivery, body: &[u8]| {
            testkit::verify_with_official_library(&secret.expose_secret(), &delivery.headers, body)
        };
        assert_eq!(official(&old, &signed_once, &signed_once.raw_body), Ok(()));
        assert_eq!(official(&old, &rotated, &rotated.raw_body), Ok(()));
        assert_eq!(official(&new, &rotated, &rotated.raw_body), Ok(()));

        let mut tampered = rotated.raw_body.clone();
        *tampered.last_mut().expect("a body") = b' ';
        let refused = official(&old, &rotated, &tampered).expect_err("a tampered body is refused");
        assert!(refused.starts_with("WebhookVerificationError"), "{refused}");
        let refused = official(&secret(9), &rotated, &rotated.raw_body).expect_err("an unknown secret");
        assert!(refused.starts_with("WebhookVerificationError"), "{refused}");
    })
    .await
    .expect("the official checks ran");
}
