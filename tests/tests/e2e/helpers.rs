//! `spawn_app()`: a real intake on port 0 over a fresh DynamoDB table, mock
//! providers and sink on another port, and a processor the test drives with
//! `drain()` and a manual clock. Intake and processors are built by
//! `hookline::App`, as the binary builds them.

use std::sync::Arc;
use std::time::Duration;

use domain::{ApiKey, SigningSecret, TenantId};
use domain::{Clock, ManualClock};
use netguard::NetPolicy;
use processor::{Processor, ProcessorConfig, ProviderCatalog};
use providers_mock::{MockState, RunningMock};
use serde_json::Value;
use store::{ApiKeyRecord, Store};
use store_dynamodb::{DynamoConfig, DynamoStore};
use telemetry::Metrics;
use tokio_util::sync::CancellationToken;

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    DynamoDb,
    Sqlite,
}

/// Generates, for each named `async fn(Backend)`, one test per store.
macro_rules! on_every_store {
    ($($name:ident),+ $(,)?) => {
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::DynamoDb).await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }
            )+
        }
    };
}
pub(crate) use on_every_store;

pub struct TestApp {
    pub base: String,
    pub mock: RunningMock,
    pub clock: Arc<ManualClock>,
    pub store: Arc<dyn Store>,
    /// Sends the API key of tenant `default` with every request.
    pub http: reqwest::Client,
    /// Tenant `default`'s API key.
    pub key: String,
    /// Tenant `default`'s signing secret.
    pub secret: SigningSecret,
    pub catalog: ProviderCatalog,
    /// What `GET /metrics` serves; every processor from [`TestApp::processor`]
    /// counts into it too, as in one `hookline serve` process.
    pub metrics: Arc<Metrics>,
    /// What built the intake, and builds the processors.
    wiring: hookline::App,
    shutdown: CancellationToken,
    pub(crate) _dir: Option<tempfile::TempDir>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A sealer over a key of its own, for a store made in the test (two stores
/// on one table or file share one).
pub fn sealer() -> Arc<seal::Sealer> {
    Arc::new(seal::Sealer::ephemeral().expect("an in-memory sealer"))
}

pub async fn dynamo_store() -> DynamoStore {
    let config =
        DynamoConfig::new(testkit::unique_table_name("e2e")).with_endpoint(testkit::dynamodb_endpoint());
    let store = DynamoStore::connect(config, sealer()).await;
    store_dynamodb::create_table(store.client(), &store.config().table)
        .await
        .expect("create table");
    store
}

pub async fn spawn_app() -> TestApp {
    spawn_app_on(Backend::DynamoDb).await
}

pub async fn spawn_app_on(backend: Backend) -> TestApp {
    spawn_app_guarded(backend, loopback()).await
}

/// The mock sink is on loopback: tests let the SSRF guard pass it, except
/// those of the guard itself (`ssrf.rs`).
fn loopback() -> Arc<NetPolicy> {
    Arc::new(NetPolicy::loopback_allowed())
}

/// An app whose intake checks callback URLs against `network`.
pub async fn spawn_app_guarded(backend: Backend, network: Arc<NetPolicy>) -> TestApp {
    match backend {
        Backend::DynamoDb => {
            let store = dynamo_store().await;
            let metrics = Arc::new(Metrics::new());
            metrics.watch_capacity(store.capacity_meter());
            spawn_app_metered(Arc::new(store), None, network, metrics).await
        }
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}", dir.path().join("e2e.db").display());
            let metrics = Arc::new(Metrics::new());
            let store = hookline::open_store(&hookline::StoreArgs::url(&url), &metrics)
                .await
                .expect("open sqlite");
            let mut app = spawn_app_metered(store, None, network, metrics).await;
            app._dir = Some(dir);
            app
        }
    }
}

pub async fn spawn_app_with_store(store: Arc<dyn Store>) -> TestApp {
    spawn_app_waking(store, None, loopback()).await
}

/// Like [`spawn_app_with_store`], with the intake notifying `wake` of every
/// accepted job and guarding callback URLs with `network`.
pub async fn spawn_app_waking(
    store: Arc<dyn Store>,
    wake: Option<Arc<tokio::sync::Notify>>,
    network: Arc<NetPolicy>,
) -> TestApp {
    spawn_app_metered(store, wake, network, Arc::new(Metrics::new())).await
}

/// Like [`spawn_app_waking`], counting into `metrics`.
pub async fn spawn_app_metered(
    store: Arc<dyn Store>,
    wake: Option<Arc<tokio::sync::Notify>>,
    network: Arc<NetPolicy>,
    metrics: Arc<Metrics>,
) -> TestApp {
    spawn_app_looking_up(store, wake, network, metrics, None).await
}

/// Like [`spawn_app_metered`], looking callback hosts up with `lookups`
/// instead of the system resolver.
pub async fn spawn_app_looking_up(
    store: Arc<dyn Store>,
    wake: Option<Arc<tokio::sync::Notify>>,
    network: Arc<NetPolicy>,
    metrics: Arc<Metrics>,
    lookups: Option<netguard::Resolver>,
) -> TestApp {
    spawn_app_keeping_blobs(store, wake, network, metrics, lookups, None).await
}

/// Like [`spawn_app_looking_up`], keeping large event payloads in `blobs`
/// (intake and processors alike, as `--blobs` does).
pub async fn spawn_app_keeping_blobs(
    store: Arc<dyn Store>,
    wake: Option<Arc<tokio::sync::Notify>>,
    network: Arc<NetPolicy>,
    metrics: Arc<Metrics>,
    lookups: Option<netguard::Resolver>,
    blobs: Option<Arc<dyn blobs::BlobStore>>,
) -> TestApp {
    let mock_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind mock");
    let mock = providers_mock::spawn(mock_listener, MockState::with_seed(1)).expect("spawn mock");
    let base = url::Url::parse(&mock.url("/providers/")).expect("mock url");
    let catalog = ProviderCatalog::at_base_url(&base, &providers_mock::PROVIDERS).expect("catalog");

    let clock = Arc::new(ManualClock::starting_now());
    let mut wiring = hookline::App::new(Arc::clone(&store), catalog.clone())
        .with_clock(Arc::clone(&clock) as Arc<dyn Clock>)
        .with_callback_network(network)
        .with_metrics(Arc::clone(&metrics))
        .with_blobs(blobs);
    if let Some(lookups) = lookups {
        wiring = wiring.with_callback_lookups(lookups);
    }
    // Synchronous publishes make their first attempts with a processor of
    // the intake's own, as `hookline serve` does with its processor.
    let attempts = wiring
        .clone()
        .with_callback_network(loopback())
        .processor(ProcessorConfig {
            owner: "intake".to_owned(),
            seed: Some(11),
            ..ProcessorConfig::default()
        })
        .expect("valid processor config");
    let app = wiring.intake_attempting(wake, Some(Arc::new(attempts)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind intake");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(intake::run(listener, app, shutdown.clone()));

    // A store that cannot even take the key (the unreachable-store test)
    // answers every request 503 from the key lookup, as it would in life.
    let key = ApiKey::generate(&mut rand::rng());
    let _ = store.create_api_key(&key_record(&key, "default")).await;
    let key = key.expose().to_owned();
    // Tenant `default`'s signing secret, which the sink checks callbacks with.
    let secret = SigningSecret::generate(&mut rand::rng());
    if let Ok((secrets, _)) =
        store::ensure_signing_secrets(&*store, &TenantId::new("default"), secret.clone()).await
    {
        mock.state.set_signing_secrets(vec![secrets.current.clone()]);
    }
    TestApp {
        base: format!("http://{addr}"),
        mock,
        clock,
        store,
        http: client_with_key(&key),
        key,
        secret,
        catalog,
        metrics,
        wiring,
        shutdown,
        _dir: None,
    }
}

/// A new API key of `tenant`, stored, and a signing secret for the tenant
/// if it has none yet (as `hookline keys create` does).
pub async fn create_key(store: &dyn Store, tenant: &str) -> String {
    let key = ApiKey::generate(&mut rand::rng());
    store
        .create_api_key(&key_record(&key, tenant))
        .await
        .expect("create key");
    store::ensure_signing_secrets(
        store,
        &TenantId::new(tenant),
        SigningSecret::generate(&mut rand::rng()),
    )
    .await
    .expect("signing secret");
    key.expose().to_owned()
}

fn key_record(key: &ApiKey, tenant: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        hash: key.hash(),
        tenant: TenantId::parse(tenant).expect("tenant name"),
        created_at: chrono::Utc::now(),
        revoked_at: None,
    }
}

/// An HTTP client that authenticates every request with `key`.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).expect("header");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

impl TestApp {
    /// Processors made from now on read blob payloads from `blobs`.
    pub fn read_blobs_from(&mut self, blobs: Option<Arc<dyn blobs::BlobStore>>) {
        self.wiring = self.wiring.clone().with_blobs(blobs);
    }

    /// Processors made from now on send to SQS endpoints with `queues`.
    pub fn send_to_queues(&mut self, queues: Arc<sqs::Queues>) {
        self.wiring = self.wiring.clone().with_queues(queues);
    }

    pub fn processor(&self, owner: &str) -> Processor {
        self.processor_with(owner, self.catalog.clone())
    }

    /// A processor with its own provider catalog (timeouts, say).
    /// Its callbacks may reach loopback (the sink) whatever the intake's
    /// guard refuses.
    pub fn processor_with(&self, owner: &str, catalog: ProviderCatalog) -> Processor {
        self.configured_processor(
            catalog,
            ProcessorConfig {
                owner: owner.to_owned(),
                seed: Some(7),
                ..ProcessorConfig::default()
            },
        )
    }

    /// A processor with `config` (its slots, say) and this app's catalog.
    pub fn processor_configured(&self, config: ProcessorConfig) -> Processor {
        self.configured_processor(self.catalog.clone(), config)
    }

    fn configured_processor(&self, catalog: ProviderCatalog, config: ProcessorConfig) -> Processor {
        self.wiring
            .clone()
            .with_providers(catalog)
            .with_callback_network(loopback())
            .processor(config)
            .expect("valid processor config")
    }

    /// `method path` with `body` as JSON, with tenant `default`'s key: the
    /// status and the body as JSON (a JSON string when it is not JSON,
    /// `null` when empty).
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub fn callback_url(&self) -> String {
        self.mock.url("/complete")
    }

    pub async fn post_job(&self, providers: &[&str]) -> reqwest::Response {
        self.http
            .post(format!("{}/webhook", self.base))
            .json(&serde_json::json!({
                "providers": providers,
                "callbackUrl": self.callback_url(),
                "metadata": {"orderId": "A-17"},
            }))
            .send()
            .await
            .expect("post job")
    }

    /// Posts a job that must be accepted, and returns its id.
    pub async fn accepted_job(&self, providers: &[&str]) -> String {
        let response = self.post_job(providers).await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.expect("json");
        body["jobId"].as_str().expect("jobId").to_owned()
    }

    /// `GET {base}{path}`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
    }

    pub async fn get_job(&self, id: &str) -> Value {
        let response = self.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    /// The test clock's time plus `by`.
    pub fn later(&self, by: Duration) -> domain::Timestamp {
        self.clock.now() + chrono::Duration::from_std(by).expect("fits")
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}
