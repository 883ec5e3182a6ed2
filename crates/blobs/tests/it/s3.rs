use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use blobs::{BlobError, BlobRef, BlobStore, BlobsUrl, S3Blobs, parse_blobs_url};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::payload;

async fn config(endpoint: String, retries: bool) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"));
    if !retries {
        loader = loader.retry_config(aws_config::retry::RetryConfig::disabled());
    }
    loader.load().await
}

fn client(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

/// A client of moto and a bucket no other test uses.
async fn moto_bucket() -> (aws_sdk_s3::Client, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let endpoint = tokio::task::spawn_blocking(testkit::moto_endpoint)
        .await
        .expect("moto");
    let client = client(&config(endpoint, true).await);
    let bucket = format!(
        "blobs-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    (client, bucket)
}

#[tokio::test]
async fn a_mib_round_trips_through_s3_under_its_content_address() {
    let (client, bucket) = moto_bucket().await;
    let store = S3Blobs::new(client.clone(), &bucket, "payloads");
    let bytes = payload(1024 * 1024, 11);
    let blob = store.put("acme", bytes.clone()).await.expect("put");
    assert_eq!(blob, BlobRef::of(&bytes));
    let read = store.get("acme", &blob).await.expect("get");
    assert!(read == bytes, "the bytes differ");
    assert_eq!(store.describe(), format!("s3://{bucket}/payloads/"));

    // Where it is: the prefix, the tenant, the sha256; and the same bytes
    // put again are the same one object.
    store.put("acme", bytes.clone()).await.expect("put again");
    let listed = client
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec![format!("payloads/acme/{}", blob.hex())]);

    // Another tenant does not see it.
    assert_eq!(store.get("globex", &blob).await, Err(BlobError::Missing(blob)));
}

#[tokio::test]
async fn a_key_that_is_not_there_is_missing() {
    let (client, bucket) = moto_bucket().await;
    let store = S3Blobs::new(client, &bucket, "");
    let blob = BlobRef::of(b"never put");
    assert_eq!(store.get("acme", &blob).await, Err(BlobError::Missing(blob)));
}

#[tokio::test]
async fn a_bucket_that_is_not_there_is_unavailable_not_missing() {
    let (client, bucket) = moto_bucket().await;
    let store = S3Blobs::new(client, format!("{bucket}-absent"), "");
    let blob = BlobRef::of(b"x");
    let err = store.get("acme", &blob).await.expect_err("no bucket");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
}

#[tokio::test]
async fn an_object_overwritten_behind_our_back_is_altered() {
    let (client, bucket) = moto_bucket().await;
    let store = S3Blobs::new(client.clone(), &bucket, "p/");
    let bytes = payload(20_000, 12);
    let blob = store.put("acme", bytes.clone()).await.expect("put");
    let key = store.key("acme", &blob).expect("key");

    let overwrite = |body: Vec<u8>| {
        let client = client.clone();
        let (bucket, key) = (bucket.clone(), key.clone());
        async move {
            client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(body))
                .send()
                .await
                .expect("overwrite");
        }
    };
    let mut flipped = bytes.to_vec();
    flipped[0] ^= 0x80;
    overwrite(flipped).await;
    assert_eq!(
        store.get("acme", &blob).await,
        Err(BlobError::Altered {
            expected: blob,
            found_len: 20_000
        })
    );
    overwrite(bytes[..10_000].to_vec()).await;
    assert_eq!(
        store.get("acme", &blob).await,
        Err(BlobError::Altered {
            expected: blob,
            found_len: 10_000
        })
    );
}

#[tokio::test]
async fn a_deleted_blob_is_missing_and_deleting_it_again_is_fine() {
    let (client, bucket) = moto_bucket().await;
    let store = S3Blobs::new(client, &bucket, "p");
    let blob = store.put("acme", payload(500, 13)).await.expect("put");
    store.delete("acme", &blob).await.expect("delete");
    assert_eq!(store.get("acme", &blob).await, Err(BlobError::Missing(blob)));
    store.delete("acme", &blob).await.expect("delete again");
}

#[tokio::test]
async fn a_tenant_that_could_leave_its_prefix_is_refused_without_a_call() {
    let (client, bucket) = moto_bucket().await;
    let store = S3Blobs::new(client, &bucket, "p");
    for tenant in ["", "..", "../x", "a/b", "a\0b"] {
        assert!(
            matches!(
                store.put(tenant, payload(3, 14)).await,
                Err(BlobError::InvalidTenant(_))
            ),
            "{tenant:?}"
        );
    }
}

#[tokio::test]
async fn a_url_opens_a_store_on_the_configured_endpoint() {
    let (_client, bucket) = moto_bucket().await;
    let endpoint = tokio::task::spawn_blocking(testkit::moto_endpoint)
        .await
        .expect("moto");
    let url = parse_blobs_url(&format!("s3://{bucket}/events")).expect("url");
    let store = url.open_with(&config(endpoint, true).await);
    assert_eq!(store.describe(), format!("s3://{bucket}/events/"));
    let bytes = payload(70_000, 15);
    let blob = store.put("acme", bytes.clone()).await.expect("put");
    assert_eq!(store.get("acme", &blob).await.expect("get"), bytes);

    let dir = tempfile::tempdir().expect("temp dir");
    let file = BlobsUrl::File(dir.path().to_owned()).open().await;
    let blob = file.put("acme", bytes.clone()).await.expect("file put");
    assert_eq!(file.get("acme", &blob).await.expect("file get"), bytes);
}

#[tokio::test]
async fn an_endpoint_nobody_listens_on_is_unavailable_soon() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = config(format!("http://127.0.0.1:{port}"), true).await;
    let store = S3Blobs::new(client(&config), "bucket", "p").with_timeout(Duration::from_secs(10));
    let started = Instant::now();
    let blob = BlobRef::of(b"x");
    let err = store.get("acme", &blob).await.expect_err("nobody listens");
    assert!(err.is_transient(), "{err}");
    let err = store
        .put("acme", payload(10, 16))
        .await
        .expect_err("nobody listens");
    assert!(err.is_transient(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// A server on loopback answering every request with `answer` (never, when
/// `None`), and a store reaching it without retries.
async fn store_at(answer: Option<&'static str>) -> S3Blobs {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let Some(answer) = answer else { continue };
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    S3Blobs::new(client(&config(endpoint, false).await), "bucket", "p")
}

fn answer(status: &str, code: &str) -> &'static str {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>said {code}</Message></Error>"
    );
    Box::leak(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    )
}

#[tokio::test]
async fn s3_errors_are_missing_or_unavailable() {
    let blob = BlobRef::of(b"x");
    let missing = store_at(Some(answer("404 Not Found", "NoSuchKey"))).await;
    assert_eq!(missing.get("acme", &blob).await, Err(BlobError::Missing(blob)));
    let bare_404 = store_at(Some("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")).await;
    assert_eq!(bare_404.get("acme", &blob).await, Err(BlobError::Missing(blob)));

    for (status, code) in [
        ("503 Slow Down", "SlowDown"),
        ("500 Internal Server Error", "InternalError"),
        ("403 Forbidden", "AccessDenied"),
        ("404 Not Found", "NoSuchBucket"),
    ] {
        let store = store_at(Some(answer(status, code))).await;
        let err = store.get("acme", &blob).await.expect_err(code);
        assert!(err.is_transient(), "{code}: {err}");
        assert!(err.to_string().contains(code), "{err}");
        let err = store.put("acme", payload(10, 17)).await.expect_err(code);
        assert!(err.is_transient(), "{code}: {err}");
        let err = store.delete("acme", &blob).await.expect_err(code);
        assert!(err.is_transient(), "{code}: {err}");
    }
}

#[tokio::test]
async fn an_s3_that_never_answers_is_unavailable_after_the_timeout() {
    let store = store_at(None).await.with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = store
        .get("acme", &BlobRef::of(b"x"))
        .await
        .expect_err("no answer");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("within 300 ms"), "{err}");
}
