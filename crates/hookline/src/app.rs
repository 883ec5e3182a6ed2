//! Wiring shared by the binary and the tests: a store from its URL, the
//! intake and processors of one process over the same parts, and the API
//! served beside the scheduled processor.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use domain::{Clock, SystemClock};
use netguard::NetPolicy;
use processor::{ConfigError, Processor, ProcessorConfig, ProviderCatalog};
use store::Store;
use store_dynamodb::{DynamoConfig, DynamoStore};
use store_sqlite::{SqliteOpenError, SqliteStore};
use telemetry::Metrics;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::commands::usage;

/// Opens the store a URL names: `sqlite://PATH` or `dynamodb://TABLE?...`.
/// A DynamoDB store's consumed capacity shows in `metrics`. A URL that is
/// wrong is a [`crate::UsageError`].
pub async fn open_store(url: &str, metrics: &Metrics) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        let opened = tokio::task::spawn_blocking({
            let url = url.to_owned();
            move || SqliteStore::open_url(&url)
        })
        .await
        .context("opening the SQLite store")?;
        match opened {
            Ok(store) => Ok(Arc::new(store)),
            Err(SqliteOpenError::Config(err)) => Err(usage(err)),
            Err(SqliteOpenError::Store(err)) => {
                Err(anyhow::Error::new(err).context(format!("cannot open {url}")))
            }
        }
    } else if url.starts_with("dynamodb:") {
        let store = DynamoStore::connect(dynamo_config(url)?).await;
        metrics.watch_capacity(store.capacity_meter());
        Ok(Arc::new(store))
    } else {
        Err(usage(anyhow::anyhow!(
            "unknown store URL {url:?}: use sqlite://PATH or dynamodb://TABLE?endpoint=URL&region=REGION"
        )))
    }
}

/// A `dynamodb://` URL's settings; a bad one is a usage error.
pub(crate) fn dynamo_config(url: &str) -> anyhow::Result<DynamoConfig> {
    DynamoConfig::from_url(url).map_err(usage)
}

/// The parts one hookline process runs on, shared by its intake and its
/// processors: one store, one clock, one provider catalog, one SSRF policy
/// and one metrics registry (so `GET /metrics` shows intake and processor).
///
/// Built with [`App::new`] and the `with_*` seams tests use: a manual
/// clock, another resolver for callback hosts, a shared registry.
#[derive(Debug, Clone)]
pub struct App {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    providers: ProviderCatalog,
    callback_network: Arc<NetPolicy>,
    callback_lookups: Option<netguard::Resolver>,
    metrics: Arc<Metrics>,
    /// What deliveries to SQS endpoints are sent with.
    queues: Arc<sqs::Queues>,
}

impl App {
    /// On the system clock, with a registry of its own, letting callbacks
    /// reach public addresses only, looked up by the system resolver.
    pub fn new(store: Arc<dyn Store>, providers: ProviderCatalog) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            providers,
            callback_network: Arc::new(NetPolicy::strict()),
            callback_lookups: None,
            metrics: Arc::new(Metrics::new()),
            queues: Arc::new(sqs::Queues::from_environment()),
        }
    }

    /// How processors reach SQS endpoints (by default configured the AWS
    /// SDK's standard way, from the environment, at the first send).
    pub fn with_queues(self, queues: Arc<sqs::Queues>) -> Self {
        Self { queues, ..self }
    }

    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    /// The SSRF guard's policy, for the intake's check of a `callbackUrl`
    /// and the processor's at connect time alike.
    pub fn with_callback_network(self, callback_network: Arc<NetPolicy>) -> Self {
        Self {
            callback_network,
            ..self
        }
    }

    /// How the intake looks callback hosts up (instead of the system resolver).
    pub fn with_callback_lookups(self, resolver: netguard::Resolver) -> Self {
        Self {
            callback_lookups: Some(resolver),
            ..self
        }
    }

    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        Self { metrics, ..self }
    }

    pub fn with_providers(self, providers: ProviderCatalog) -> Self {
        Self { providers, ..self }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn providers(&self) -> &ProviderCatalog {
        &self.providers
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The API, notifying `wake` of every job it accepts (a processor in
    /// the same process, which then drains at once). A synchronous publish
    /// (`?sync=true`) waits for a processor's first attempt.
    pub fn intake(&self, wake: Option<Arc<Notify>>) -> axum::Router {
        self.intake_attempting(wake, None)
    }

    /// [`App::intake`], making a synchronous publish's first attempts with
    /// `processor` (under a lease, so processors elsewhere never make them
    /// too).
    pub fn intake_attempting(
        &self,
        wake: Option<Arc<Notify>>,
        processor: Option<Arc<Processor>>,
    ) -> axum::Router {
        let mut config = intake::IntakeConfig::new(self.providers.names())
            .with_callback_network(Arc::clone(&self.callback_network))
            .with_metrics(Arc::clone(&self.metrics));
        config.on_job_created = wake;
        config.attempt_now = processor.map(|p| Arc::new(Attempts(p)) as Arc<dyn intake::AttemptNow>);
        if let Some(lookups) = &self.callback_lookups {
            config = config.with_callback_lookups(lookups.clone());
        }
        intake::router(Arc::clone(&self.store), Arc::clone(&self.clock), config)
    }

    /// A processor over these parts, counting into this registry; its
    /// callbacks are guarded by this app's policy whatever `config` says.
    pub fn processor(&self, config: ProcessorConfig) -> Result<Processor, ConfigError> {
        let config = ProcessorConfig {
            callback_network: Arc::clone(&self.callback_network),
            ..config
        };
        let processor = Processor::new(
            Arc::clone(&self.store),
            Arc::clone(&self.clock),
            processor::http_client(),
            self.providers.clone(),
            config,
        )?;
        Ok(processor
            .with_metrics(Arc::clone(&self.metrics))
            .with_queues(Arc::clone(&self.queues)))
    }
}

/// A processor making a synchronous publish's first attempts.
struct Attempts(Arc<Processor>);

#[async_trait::async_trait]
impl intake::AttemptNow for Attempts {
    async fn attempt_now(&self, tenant: &domain::TenantId, id: domain::JobId) -> Option<domain::Job> {
        self.0.attempt_now(tenant, id).await
    }
}

/// How the API and the processor run side by side.
#[derive(Debug, Clone)]
pub struct Serving {
    /// What the API's listener tolerates from its clients.
    pub limits: intake::ServerLimits,
    /// The processor's cron schedule (6 fields, seconds first).
    pub schedule: String,
    /// On shutdown, how long in-flight work may take to finish.
    pub shutdown_grace: Duration,
}

/// Serves `api` on `listener` and runs `processor` on the schedule, woken
/// at once by `wake` (which `api` notifies of every job it accepts), until
/// `shutdown`; then stops both, in-flight work given the grace period.
pub async fn serve_together(
    listener: TcpListener,
    api: axum::Router,
    processor: Arc<Processor>,
    wake: Option<Arc<Notify>>,
    serving: &Serving,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let api = tokio::spawn(intake::run_with(
        listener,
        api,
        serving.limits.clone(),
        shutdown.clone(),
    ));
    let scheduled = processor::schedule::run_scheduled(
        processor,
        &serving.schedule,
        shutdown.clone(),
        serving.shutdown_grace,
        wake,
    );
    let scheduled_result = scheduled.await;
    shutdown.cancel();
    api.await.context("intake task")?.context("serving the API")?;
    scheduled_result?;
    Ok(())
}
