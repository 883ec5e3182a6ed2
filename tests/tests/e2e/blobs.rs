//! Event payloads kept as blobs (SPEC section 13) over real HTTP, on both
//! stores: SQLite with its default `file://` blobs beside the database
//! (as `hookline` opens them without `--blobs`), DynamoDB Local with S3
//! blobs on moto. A 1 MiB payload is delivered byte for byte and verifies
//! with the official Standard Webhooks library; a body over the limit is
//! refused and stores nothing; a blob deleted or altered behind the
//! processor's back fails its delivery for good, saying why, and nothing
//! is sent; a blob store that cannot be reached is retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use blobs::{BlobStore, BlobsUrl};
use domain::{EventId, EventPayload, TenantId};
use netguard::NetPolicy;
use serde_json::{Value, json};
use telemetry::Metrics;
use tokio_util::sync::CancellationToken;

use crate::events::event_type;
use crate::helpers::{Backend, TestApp, dynamo_store, on_every_store, spawn_app_keeping_blobs, spawn_app_on};

on_every_store!(
    a_mib_payload_is_delivered_byte_for_byte_and_signed,
    a_body_over_the_limit_is_refused_and_nothing_is_stored,
    a_blob_deleted_or_altered_fails_its_delivery_for_good_and_nothing_is_sent,
    a_blob_store_out_of_reach_is_retried_not_failed,
    a_sources_large_items_are_kept_as_blobs_and_delivered_byte_for_byte,
);

/// Where a test's blobs are, to tamper with them behind hookline's back.
enum Place {
    Files(std::path::PathBuf),
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
    },
}

struct Rig {
    app: TestApp,
    place: Place,
}

async fn rig(backend: Backend) -> Rig {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = dir.path().join("e2e.db");
            let url = format!("sqlite://{}", db.display());
            let metrics = Arc::new(Metrics::new());
            let store = hookline::open_store(&hookline::StoreArgs::url(&url), &metrics)
                .await
                .expect("open sqlite");
            // No --blobs: the default beside the database.
            let blobs = hookline::open_blobs(None, &url).await.expect("default blobs");
            let place = Place::Files(dir.path().join("e2e.db-blobs"));
            let mut app = spawn_app_keeping_blobs(store, None, loopback(), metrics, None, blobs).await;
            app._dir = Some(dir);
            Rig { app, place }
        }
        Backend::DynamoDb => {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let store = dynamo_store().await;
            let config = testkit::moto::moto_sdk_config().await;
            let client = aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&config)
                    .force_path_style(true)
                    .build(),
            );
            let bucket = format!(
                "e2e-blobs-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            client
                .create_bucket()
                .bucket(&bucket)
                .send()
                .await
                .expect("create bucket");
            let blobs = BlobsUrl::S3 {
                bucket: bucket.clone(),
                prefix: "payloads/".to_owned(),
            }
            .open_with(&config);
            let app = spawn_app_keeping_blobs(
                Arc::new(store),
                None,
                loopback(),
                Arc::new(Metrics::new()),
                None,
                Some(blobs),
            )
            .await;
            Rig {
                app,
                place: Place::S3 { client, bucket },
            }
        }
    }
}

fn loopback() -> Arc<NetPolicy> {
    Arc::new(NetPolicy::loopback_allowed())
}

impl Place {
    /// Every blob kept, as (tenant, sha256 hex).
    async fn blobs(&self) -> Vec<String> {
        match self {
            Self::Files(dir) => {
                let mut found = Vec::new();
                let Ok(tenants) = std::fs::read_dir(dir) else {
                    return found;
                };
                for tenant in tenants {
                    let tenant = tenant.expect("entry");
                    for file in std::fs::read_dir(tenant.path()).expect("tenant dir") {
                        found.push(format!(
                            "{}/{}",
                            tenant.file_name().to_string_lossy(),
                            file.expect("entry").file_name().to_string_lossy()
                        ));
                    }
                }
                found
            }
            Self::S3 { client, bucket } => client
                .list_objects_v2()
                .bucket(bucket)
                .send()
                .await
                .expect("list objects")
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect(),
        }
    }

    async fn delete(&self, tenant: &str, sha: &str) {
        match self {
            Self::Files(dir) => std::fs::remove_file(dir.join(tenant).join(sha)).expect("remove blob"),
            Self::S3 { client, bucket } => {
                client
                    .delete_object()
                    .bucket(bucket)
                    .key(format!("payloads/{tenant}/{sha}"))
                    .send()
                    .await
                    .expect("delete object");
            }
        }
    }

    /// Replaces the blob with other bytes of the same length.
    async fn alter(&self, tenant: &str, sha: &str, len: usize) {
        let other = vec![b' '; len];
        match self {
            Self::Files(dir) => std::fs::write(dir.join(tenant).join(sha), other).expect("overwrite blob"),
            Self::S3 { client, bucket } => {
                client
                    .put_object()
                    .bucket(bucket)
                    .key(format!("payloads/{tenant}/{sha}"))
                    .body(other.into())
                    .send()
                    .await
                    .expect("overwrite object");
            }
        }
    }
}

/// A payload of exactly `len` bytes serialized (at least 100), compact
/// (as hookline keeps payloads), with escapes, digits and characters a
/// reformatting would change.
fn payload_text(len: usize, seed: u32) -> String {
    let head = format!(
        r#"{{"amount":1200.50,"big":12345678901234567890,"note":"caf\u00e9 ✓","seed":{seed},"filler":""#
    );
    let tail = r#""}"#;
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let filler: String = (0..len.saturating_sub(head.len() + tail.len()))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    format!("{head}{filler}{tail}")
}

async fn endpoint(app: &TestApp) -> (String, String) {
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/v1/endpoints",
            Some(json!({"url": app.callback_url(), "eventTypes": ["*"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["endpointId"].as_str().expect("id").to_owned(),
        body["secret"].as_str().expect("secret").to_owned(),
    )
}

/// Publishes `payload` (JSON text, sent as it is) of type `report.ready`.
async fn publish_text(app: &TestApp, payload: &str) -> (u16, Value) {
    let body = format!(r#"{{"type":"report.ready","payload":{payload}}}"#);
    let response = app
        .http
        .post(format!("{}/v1/events", app.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("publish");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status >= 400 {
        assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{value}"
        );
    }
    (status, value)
}

/// [`publish_text`] of a payload the server refuses before reading it
/// whole: it answers 413 on the announced length and closes, which can
/// reset the connection while the client is still sending, and the client
/// then never sees the answer. Sent again (a few times at most) until the
/// answer arrives.
async fn publish_refused(app: &TestApp, payload: &str) -> (u16, Value) {
    let body = format!(r#"{{"type":"report.ready","payload":{payload}}}"#);
    for _ in 0..8 {
        let sent = app
            .http
            .post(format!("{}/v1/events", app.base))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            // Reset while sending the body: the answer was lost, not refused.
            Err(err) if err.is_request() => continue,
            Err(err) => panic!("publish: {err}"),
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_owned());
        let Ok(text) = response.text().await else { continue };
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{value}"
        );
        return (status, value);
    }
    panic!("eight publishes of an oversized body, and no answer arrived");
}

async fn drain(app: &TestApp) -> processor::DrainReport {
    app.processor("p1").drain(&CancellationToken::new()).await
}

async fn stored_payload(app: &TestApp, event: &Value) -> EventPayload {
    let id: EventId = event["eventId"]
        .as_str()
        .expect("eventId")
        .parse()
        .expect("an event id");
    app.store
        .get_event(&TenantId::new("default"), id)
        .await
        .expect("read event")
        .expect("the event")
        .payload
}

async fn a_mib_payload_is_delivered_byte_for_byte_and_signed(backend: Backend) {
    let Rig { app, place } = rig(backend).await;
    event_type(&app, "report.ready").await;
    let (_, secret) = endpoint(&app).await;
    let payload = payload_text(1024 * 1024, 1);
    let (status, event) = publish_text(&app, &payload).await;
    assert_eq!(status, 202, "{event}");

    // The record holds the reference; the blob store holds the bytes.
    let EventPayload::Blob(blob) = stored_payload(&app, &event).await else {
        panic!("a 1 MiB payload is kept as a blob");
    };
    assert_eq!(blob, domain::BlobRef::of(payload.as_bytes()));
    assert_eq!(place.blobs().await.len(), 1);
    // A small one stays inline.
    let (status, small) = publish_text(&app, r#"{"small":true}"#).await;
    assert_eq!(status, 202, "{small}");
    assert!(matches!(
        stored_payload(&app, &small).await,
        EventPayload::Inline(_)
    ));
    assert_eq!(place.blobs().await.len(), 1, "no blob for an inline payload");

    let report = drain(&app).await;
    assert_eq!((report.delivered, report.dead_lettered), (2, 0), "{report:?}");
    let deliveries = app.mock.state.accepted_deliveries();
    let delivery = deliveries
        .iter()
        .find(|d| d.headers["webhook-id"] == event["eventId"].as_str().expect("id"))
        .expect("the large event's delivery");
    let body = std::str::from_utf8(&delivery.raw_body).expect("utf-8");
    assert!(
        body.starts_with(r#"{"type":"report.ready","timestamp":""#),
        "{}",
        &body[..80]
    );
    assert!(
        body.ends_with(&format!(r#","data":{payload}}}"#)),
        "the payload's bytes are the body's data, byte for byte"
    );
    testkit::verify_with_official_library(&secret, delivery.headers.iter(), &delivery.raw_body)
        .expect("the official library verifies the delivery");

    // Reading the event shows the payload, read from the blob store.
    let (status, shown) = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/events/{}", event["eventId"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(status, 200, "{shown}");
    let expected: Value = serde_json::from_str(&payload).expect("json");
    assert_eq!(shown["payload"], expected);
    assert_eq!(shown["payloadBlob"]["len"], payload.len());
    assert_eq!(shown["payloadBlob"]["sha256"], blob.hex());
    assert!(
        shown.get("payloadUnavailable").is_none(),
        "{}",
        shown["payloadUnavailable"]
    );
}

/// An inbound source's items take the same path as published payloads:
/// over the inline threshold, a blob (the ingest body is at most 1 MiB).
async fn a_sources_large_items_are_kept_as_blobs_and_delivered_byte_for_byte(backend: Backend) {
    let Rig { app, place } = rig(backend).await;
    event_type(&app, "report.ready").await;
    let (_, secret) = endpoint(&app).await;
    let (status, source) = app
        .send(
            reqwest::Method::POST,
            "/v1/sources",
            Some(json!({
                "name": "reports",
                "eventType": "report.ready",
                "verify": {"type": "header", "name": "x-webhook-token", "value": "tok_blobs"},
                "split": {"items": "/items"},
            })),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    let ingest_url = format!("{}{}", app.base, source["ingestUrl"].as_str().expect("ingestUrl"));
    // Two items: one over the threshold (a blob), one small (inline).
    let large = payload_text(300 * 1024, 7);
    let small = r#"{"small":true}"#;
    let body = format!(r#"{{"items":[{large},{small}]}}"#);
    let response = reqwest::Client::new()
        .post(&ingest_url)
        .header("content-type", "application/json")
        .header("x-webhook-token", "tok_blobs")
        .body(body.clone())
        .send()
        .await
        .expect("ingest");
    assert_eq!(response.status(), 200);
    let ingested: Value = response.json().await.expect("json");
    let ids: Vec<String> = ingested["eventIds"]
        .as_array()
        .expect("eventIds")
        .iter()
        .map(|id| id.as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{ingested}");
    let large_event = json!({"eventId": ids[0]});
    let EventPayload::Blob(blob) = stored_payload(&app, &large_event).await else {
        panic!("a 300 KiB item is kept as a blob");
    };
    assert_eq!(blob, domain::BlobRef::of(large.as_bytes()));
    assert!(matches!(
        stored_payload(&app, &json!({"eventId": ids[1]})).await,
        EventPayload::Inline(_)
    ));
    assert_eq!(place.blobs().await.len(), 1);

    // The same body again is the same blob (named by its sha256), not a second one.
    let again = reqwest::Client::new()
        .post(&ingest_url)
        .header("content-type", "application/json")
        .header("x-webhook-token", "tok_blobs")
        .body(body)
        .send()
        .await
        .expect("ingest again");
    assert_eq!(again.status(), 200);
    assert_eq!(place.blobs().await.len(), 1, "one blob per distinct payload");

    let report = drain(&app).await;
    assert_eq!((report.delivered, report.dead_lettered), (4, 0), "{report:?}");
    let deliveries = app.mock.state.accepted_deliveries();
    let delivery = deliveries
        .iter()
        .find(|d| d.headers["webhook-id"] == ids[0].as_str())
        .expect("the large item's delivery");
    let delivered = std::str::from_utf8(&delivery.raw_body).expect("utf-8");
    assert!(
        delivered.ends_with(&format!(r#","data":{large}}}"#)),
        "the item's bytes are the body's data, byte for byte"
    );
    testkit::verify_with_official_library(&secret, delivery.headers.iter(), &delivery.raw_body)
        .expect("the official library verifies the delivery");
}

async fn a_body_over_the_limit_is_refused_and_nothing_is_stored(backend: Backend) {
    let Rig { app, place } = rig(backend).await;
    event_type(&app, "report.ready").await;
    endpoint(&app).await;
    // A 5 MiB body, and a payload just over 4 MiB in a body within the limit.
    for len in [5 * 1024 * 1024, blobs::MAX_PAYLOAD_BYTES + 1] {
        let (status, problem) = publish_refused(&app, &payload_text(len, 2)).await;
        assert_eq!(status, 413, "{len}: {problem}");
        assert_eq!(problem["status"], 413, "{problem}");
    }
    let (_, listed) = app.send(reqwest::Method::GET, "/v1/events", None).await;
    assert_eq!(listed["data"], json!([]), "no event was stored");
    assert_eq!(place.blobs().await, Vec::<String>::new(), "no blob was stored");
    // The largest payload taken: exactly 4 MiB.
    let largest = payload_text(blobs::MAX_PAYLOAD_BYTES, 3);
    assert_eq!(largest.len(), blobs::MAX_PAYLOAD_BYTES);
    let (status, accepted) = publish_text(&app, &largest).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(
        stored_payload(&app, &accepted).await,
        EventPayload::Blob(domain::BlobRef::of(largest.as_bytes()))
    );
    assert_eq!(place.blobs().await.len(), 1);
}

async fn a_blob_deleted_or_altered_fails_its_delivery_for_good_and_nothing_is_sent(backend: Backend) {
    let Rig { app, place } = rig(backend).await;
    event_type(&app, "report.ready").await;
    endpoint(&app).await;
    let deleted = payload_text(200_000, 4);
    let altered = payload_text(200_000, 5);
    let (_, gone) = publish_text(&app, &deleted).await;
    let (_, changed) = publish_text(&app, &altered).await;
    place
        .delete("default", &domain::BlobRef::of(deleted.as_bytes()).hex())
        .await;
    place
        .alter(
            "default",
            &domain::BlobRef::of(altered.as_bytes()).hex(),
            altered.len(),
        )
        .await;

    let report = drain(&app).await;
    assert_eq!((report.delivered, report.dead_lettered), (0, 2), "{report:?}");
    assert!(
        app.mock.state.accepted_deliveries().is_empty(),
        "nothing was sent"
    );
    for (event, code, says) in [
        (&gone, "payloadMissing", "is not in the blob store"),
        (&changed, "payloadAltered", "was altered in the blob store"),
    ] {
        let delivery = event["deliveries"][0]["deliveryId"].as_str().expect("delivery");
        let job = app.get_job(delivery).await;
        assert_eq!(job["status"], "failed", "{job}");
        let error = job["delivery"]["lastError"].as_str().unwrap_or_default();
        assert!(error.starts_with(code) && error.contains(says), "{job}");
        let (status, shown) = app
            .send(
                reqwest::Method::GET,
                &format!("/v1/events/{}", event["eventId"].as_str().expect("id")),
                None,
            )
            .await;
        assert_eq!(status, 200, "{shown}");
        assert!(shown.get("payload").is_none(), "{shown}");
        assert!(
            shown["payloadUnavailable"]
                .as_str()
                .unwrap_or_default()
                .contains(says),
            "{shown}"
        );
    }
}

async fn a_blob_store_out_of_reach_is_retried_not_failed(backend: Backend) {
    let Rig { mut app, .. } = rig(backend).await;
    event_type(&app, "report.ready").await;
    endpoint(&app).await;
    let (_, event) = publish_text(&app, &payload_text(100_000, 6)).await;
    // A processor whose blob store nobody answers for.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("x", "x", None, None, "test"))
        .load()
        .await;
    let unreachable: Arc<dyn BlobStore> = Arc::new(
        blobs::S3Blobs::new(
            aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&config)
                    .force_path_style(true)
                    .build(),
            ),
            "nowhere",
            "",
        )
        .with_timeout(std::time::Duration::from_secs(5)),
    );
    app.read_blobs_from(Some(unreachable));
    let report = drain(&app).await;
    assert_eq!(
        (report.delivered, report.dead_lettered, report.retried),
        (0, 0, 1),
        "{report:?}"
    );
    let job = app
        .get_job(event["deliveries"][0]["deliveryId"].as_str().expect("delivery"))
        .await;
    assert_eq!(job["status"], "delivering", "{job}");
    assert!(
        job["delivery"]["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("blob store is unavailable"),
        "{job}"
    );
    assert!(app.mock.state.accepted_deliveries().is_empty());
}

/// On DynamoDB without a blob store, payloads stay inline up to 256 KiB
/// as before; a larger one is refused saying no blob store is configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_blob_store_dynamodb_takes_what_it_took_before_and_refuses_more() {
    let app = spawn_app_on(Backend::DynamoDb).await;
    event_type(&app, "report.ready").await;
    endpoint(&app).await;
    let (status, inline) = publish_text(&app, &payload_text(200_000, 7)).await;
    assert_eq!(status, 202, "{inline}");
    assert!(matches!(
        stored_payload(&app, &inline).await,
        EventPayload::Inline(_)
    ));
    let (status, problem) = publish_text(&app, &payload_text(300_000, 8)).await;
    assert_eq!(status, 413, "{problem}");
    assert_eq!(problem["type"], "urn:hookline:problem:no-blob-store", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap_or_default().contains("--blobs"),
        "{problem}"
    );
    // A source's item over 256 KiB is refused the same way, and nothing of its body is stored.
    let (status, source) = app
        .send(
            reqwest::Method::POST,
            "/v1/sources",
            Some(json!({
                "name": "reports",
                "eventType": "report.ready",
                "verify": {"type": "header", "name": "x-webhook-token", "value": "tok_blobs"},
            })),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    let response = reqwest::Client::new()
        .post(format!(
            "{}{}",
            app.base,
            source["ingestUrl"].as_str().expect("ingestUrl")
        ))
        .header("content-type", "application/json")
        .header("x-webhook-token", "tok_blobs")
        .body(payload_text(300_000, 9))
        .send()
        .await
        .expect("ingest");
    assert_eq!(response.status(), 413);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["type"], "urn:hookline:problem:no-blob-store", "{problem}");
    let (_, listed) = app.send(reqwest::Method::GET, "/v1/events", None).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");

    let report = drain(&app).await;
    assert_eq!(report.delivered, 1, "{report:?}");
}
