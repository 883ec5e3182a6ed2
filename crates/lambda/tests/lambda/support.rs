//! A DynamoDB table opened as `hookline lambda` opens it (`open_store`
//! with a key file), a tenant with a key and signing secrets, mock
//! providers and a signature-checking sink on 127.0.0.1, and the fixtures.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use domain::{ApiKey, SigningSecret, TenantId};
use processor::{Processor, ProcessorConfig, ProviderCatalog, ProviderConfig};
use providers_mock::{MockState, RunningMock};
use serde_json::Value;
use store::{ApiKeyRecord, Store};
use telemetry::Metrics;

pub struct Setup {
    pub store: Arc<dyn Store>,
    pub app: hookline::App,
    pub mock: RunningMock,
    /// Tenant `acme`'s API key.
    pub key: String,
    _dir: tempfile::TempDir,
}

/// A fresh table and everything around it, with providers that answer
/// within `provider_timeout`.
pub async fn setup(provider_timeout: Duration) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("secrets-key");
    seal::KeyFile::load_or_create(&key_file, &seal::SystemFresh).expect("key file");
    let table = testkit::unique_table_name("lambda");
    let url = format!(
        "dynamodb://{table}?endpoint={}&region=us-east-1",
        testkit::dynamodb_endpoint()
    );
    let config = store_dynamodb::DynamoConfig::from_url(&url).expect("store URL");
    store_dynamodb::create_table(&config.client().await, &table)
        .await
        .expect("create table");
    let metrics = Arc::new(Metrics::new());
    let args = hookline::StoreArgs {
        store: url.clone(),
        seal: hookline::SealArgs {
            kms_key: None,
            secrets_key_file: Some(key_file),
        },
    };
    let store = hookline::open_store(&args, &metrics).await.expect("open store");
    let blobs = hookline::open_blobs(None, &url).await.expect("blobs");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind mock");
    let mock = providers_mock::spawn(listener, MockState::with_seed(3)).expect("mock");
    let base = url::Url::parse(&mock.url("/providers/")).expect("base");
    let catalog = ProviderCatalog::new(providers_mock::PROVIDERS.iter().map(|name| ProviderConfig {
        name: (*name).to_owned(),
        url: base.join(name).expect("provider URL"),
        timeout: provider_timeout,
    }));
    let app = hookline::App::new(Arc::clone(&store), catalog)
        .with_blobs(blobs)
        .with_callback_network(Arc::new(netguard::NetPolicy::loopback_allowed()))
        .with_metrics(metrics);

    let key = ApiKey::generate(&mut rand::rng());
    store
        .create_api_key(&ApiKeyRecord {
            hash: key.hash(),
            tenant: TenantId::new("acme"),
            created_at: chrono::Utc::now(),
            revoked_at: None,
        })
        .await
        .expect("create key");
    let (secrets, _) = store::ensure_signing_secrets(
        &*store,
        &TenantId::new("acme"),
        SigningSecret::generate(&mut rand::rng()),
    )
    .await
    .expect("signing secrets");
    mock.state.set_signing_secrets(vec![secrets.current.clone()]);
    Setup {
        store,
        app,
        mock,
        key: key.expose().to_owned(),
        _dir: dir,
    }
}

impl Setup {
    /// The API as `hookline lambda intake` builds it: synchronous publishes
    /// attempted by a processor of its own.
    pub fn intake(&self) -> axum::Router {
        let attempts = self.processor(ProcessorConfig {
            owner: "lambda-intake".to_owned(),
            ..ProcessorConfig::default()
        });
        self.app.intake_attempting(None, Some(Arc::new(attempts)))
    }

    pub fn processor(&self, config: ProcessorConfig) -> Processor {
        self.app.processor(config).expect("processor config")
    }

    /// Answers `request` through the Lambda intake handler: status, headers
    /// and the body as JSON (`null` when empty or not JSON).
    pub async fn invoke_intake(&self, request: lambda::Request) -> (u16, axum::http::HeaderMap, Value) {
        let response = lambda::answer_request(self.intake(), request).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            headers,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }

    /// A job for the sink, POSTed as API Gateway sends it.
    pub async fn post_job(&self) -> String {
        let body = serde_json::json!({
            "providers": ["gas"],
            "callbackUrl": self.mock.url("/complete"),
        })
        .to_string();
        let (status, _, answer) = self.invoke_intake(post_webhook(&self.key, &body)).await;
        assert_eq!(status, 202, "{answer}");
        answer["jobId"].as_str().expect("jobId").to_owned()
    }
}

/// `tests/fixtures/{name}`.
pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An API Gateway v2 event as `lambda_http` reads it.
pub fn request(event: &str) -> lambda::Request {
    lambda::request_from_event(event).unwrap_or_else(|e| panic!("not an API Gateway event: {e}"))
}

/// The POST /webhook fixture with `key` and `body` filled in.
pub fn post_webhook(key: &str, body: &str) -> lambda::Request {
    let escaped = serde_json::to_string(body).expect("a string");
    let event = fixture("apigw-v2-post-webhook.json")
        .replace("{{API_KEY}}", key)
        .replace("{{CONTENT_LENGTH}}", &body.len().to_string())
        .replace("\"{{BODY}}\"", &escaped);
    request(&event)
}

/// An invocation context whose deadline is `remaining` from now.
pub fn context_with(remaining: Duration) -> lambda::Context {
    let deadline = SystemTime::now() + remaining;
    let mut context = lambda::Context::default();
    context.request_id = "c0ffee00-0000-4000-8000-000000000001".to_owned();
    context.deadline = u64::try_from(
        deadline
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("millis fit");
    context
}

/// The EventBridge scheduled event, as the runtime hands it over.
pub fn scheduled_event(remaining: Duration) -> lambda::LambdaEvent<Value> {
    let payload: Value = serde_json::from_str(&fixture("eventbridge-scheduled-event.json")).expect("JSON");
    lambda::LambdaEvent::new(payload, context_with(remaining))
}
