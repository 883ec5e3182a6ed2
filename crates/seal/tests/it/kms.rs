//! `Kms` against moto's KMS: data keys made by GenerateDataKey and opened
//! by Decrypt, in this process and another's fresh sealer; a key that does
//! not exist is `Refused`, a server that does not answer `Unavailable`.

use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_kms::config::{Credentials, Region};
use seal::{KeyWrap, Kms, SealError, Sealer, SystemFresh};

use crate::support::tampered;

const CONTEXT: &[u8] = b"tenant\0tenant-a\0secrets";

async fn client(endpoint: &str) -> aws_sdk_kms::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(testkit::moto::REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    aws_sdk_kms::Client::new(&config)
}

async fn moto() -> String {
    tokio::task::spawn_blocking(testkit::moto_endpoint)
        .await
        .expect("the moto launcher")
}

async fn new_key(client: &aws_sdk_kms::Client) -> String {
    let made = client
        .create_key()
        .description("seal's tests")
        .send()
        .await
        .expect("CreateKey");
    made.key_metadata()
        .expect("metadata")
        .arn()
        .expect("an ARN")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_sealed_under_kms_open_here_and_in_another_process() {
    let endpoint = moto().await;
    let client = client(&endpoint).await;
    let arn = new_key(&client).await;

    let kms = Arc::new(Kms::new(client, arn.clone()));
    assert_eq!(kms.key_id(), arn);
    assert!(format!("{kms:?}").contains(&arn));
    let sealer = Sealer::start(kms, Arc::new(SystemFresh))
        .await
        .expect("GenerateDataKey");
    let sealed = sealer.seal(CONTEXT, b"whsec_kms").await.expect("seals");
    assert_eq!(sealed.key_id(), arn);
    assert_eq!(
        sealer.open(CONTEXT, &sealed).await.expect("opens").as_slice(),
        b"whsec_kms"
    );
    let again = sealer.seal(CONTEXT, b"whsec_kms").await.expect("seals");
    assert_eq!(again, sealed, "one data key: the same bytes");

    // Another process: its own client and sealer, nothing cached.
    let other = Sealer::start(
        Arc::new(Kms::new(self::client(&endpoint).await, arn.clone())),
        Arc::new(SystemFresh),
    )
    .await
    .expect("GenerateDataKey");
    assert_ne!(other.data_key_id(), sealer.data_key_id());
    let from_json = seal::Sealed::from_json(&sealed.to_json()).expect("reads");
    assert_eq!(
        other.open(CONTEXT, &from_json).await.expect("Decrypt").as_slice(),
        b"whsec_kms"
    );
    let err = other
        .open(b"another record", &from_json)
        .await
        .expect_err("another context");
    assert!(matches!(err, SealError::DoesNotOpen), "{err:?}");

    // A wrapped key KMS did not make is refused, permanently.
    let fresh = Sealer::start(
        Arc::new(Kms::new(self::client(&endpoint).await, arn.clone())),
        Arc::new(SystemFresh),
    )
    .await
    .expect("GenerateDataKey");
    let err = fresh
        .open(CONTEXT, &tampered(&sealed, "dk"))
        .await
        .expect_err("altered data key");
    assert!(matches!(err, SealError::Refused(_)), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_exist_is_refused() {
    let endpoint = moto().await;
    let missing = format!(
        "arn:aws:kms:{}:{}:key/00000000-0000-4000-8000-000000000000",
        testkit::moto::REGION,
        testkit::moto::ACCOUNT
    );
    let kms = Arc::new(Kms::new(client(&endpoint).await, missing.clone()));
    let err = Sealer::start(kms, Arc::new(SystemFresh))
        .await
        .expect_err("no such key");
    assert!(matches!(err, SealError::Refused(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("GenerateDataKey") && text.contains("NotFound"),
        "{text}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_that_does_not_answer_is_unavailable() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binds")
        .local_addr()
        .expect("addr")
        .port();
    let kms = Arc::new(Kms::new(
        client(&format!("http://127.0.0.1:{port}")).await,
        "arn:aws:kms:us-east-1:1:key/x",
    ));
    let err = Sealer::start(kms, Arc::new(SystemFresh))
        .await
        .expect_err("nothing there");
    assert!(matches!(err, SealError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
}
