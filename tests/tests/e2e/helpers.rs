//! `spawn_app()`: a real intake on port 0 over a fresh DynamoDB table, mock
//! providers and sink on another port, and a processor the test drives with
//! `run_once()` and a manual clock.

use std::sync::Arc;
use std::time::Duration;

use domain::{Clock, ManualClock};
use processor::{Processor, ProcessorConfig, ProviderCatalog};
use providers_mock::{MockState, RunningMock};
use serde_json::Value;
use store::JobStore;
use store_dynamodb::{DynamoConfig, DynamoStore};
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub base: String,
    pub mock: RunningMock,
    pub clock: Arc<ManualClock>,
    pub store: Arc<dyn JobStore>,
    pub http: reqwest::Client,
    pub catalog: ProviderCatalog,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn dynamo_store() -> DynamoStore {
    let config =
        DynamoConfig::new(testkit::unique_table_name("e2e")).with_endpoint(testkit::dynamodb_endpoint());
    let store = DynamoStore::connect(config).await;
    store_dynamodb::create_table(store.client(), &store.config().table)
        .await
        .expect("create table");
    store
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with_store(Arc::new(dynamo_store().await)).await
}

pub async fn spawn_app_with_store(store: Arc<dyn JobStore>) -> TestApp {
    let mock_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind mock");
    let mock = providers_mock::spawn(mock_listener, MockState::with_seed(1)).expect("spawn mock");
    let base = url::Url::parse(&mock.url("/providers/")).expect("mock url");
    let catalog = ProviderCatalog::at_base_url(&base, &providers_mock::PROVIDERS).expect("catalog");

    let clock = Arc::new(ManualClock::starting_now());
    let app = intake::router(
        Arc::clone(&store),
        Arc::clone(&clock) as Arc<dyn Clock>,
        intake::IntakeConfig::new(catalog.names()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind intake");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(intake::run(listener, app, shutdown.clone()));

    TestApp {
        base: format!("http://{addr}"),
        mock,
        clock,
        store,
        http: reqwest::Client::new(),
        catalog,
        shutdown,
    }
}

impl TestApp {
    pub fn processor(&self, owner: &str) -> Processor {
        Processor::new(
            Arc::clone(&self.store),
            Arc::clone(&self.clock) as Arc<dyn Clock>,
            processor::http_client(),
            self.catalog.clone(),
            ProcessorConfig {
                owner: owner.to_owned(),
                seed: Some(7),
                ..ProcessorConfig::default()
            },
        )
        .expect("valid processor config")
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

    pub async fn get_job(&self, id: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/v1/jobs/{id}", self.base))
            .send()
            .await
            .expect("get job");
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
