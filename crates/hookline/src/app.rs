//! Wiring shared by the binary and the tests: a store from its URL, the
//! intake and processors of one process over the same parts, and the API
//! served beside the scheduled processor.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use domain::{Clock, SystemClock};
use netguard::NetPolicy;
use processor::{ConfigError, Processor, ProcessorConfig, ProviderCatalog};
use seal::{KeyFile, KeyWrap, Kms, SealError, Sealer, SystemFresh};
use store::Store;
use store_dynamodb::{DynamoConfig, DynamoStore};
use store_sqlite::{SqliteConfig, SqliteStore};
use telemetry::Metrics;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cli::{SealArgs, StoreArgs};
use crate::commands::usage;

/// Opens the store `args` names: `sqlite://PATH` or `dynamodb://TABLE?...`,
/// sealing secrets with the key they name ([`sealer_for`]). A DynamoDB
/// store's consumed capacity shows in `metrics`. A URL that is wrong is a
/// [`crate::UsageError`].
pub async fn open_store(args: &StoreArgs, metrics: &Metrics) -> anyhow::Result<Arc<dyn Store>> {
    let url = args.store.as_str();
    if url.starts_with("sqlite:") {
        let config = SqliteConfig::from_url(url).map_err(usage)?;
        let sealer = sqlite_sealer(&config.path, &args.seal).await?;
        let opened =
            tokio::task::spawn_blocking(move || SqliteStore::open(&config.path, config.options, sealer))
                .await
                .context("opening the SQLite store")?;
        Ok(Arc::new(opened.with_context(|| format!("cannot open {url}"))?))
    } else if url.starts_with("dynamodb:") {
        let config = dynamo_config(url)?;
        let sealer = Sealer::start(
            given_key(&args.seal).await?.ok_or_else(no_key)?,
            Arc::new(SystemFresh),
        )
        .await
        .context(NO_DATA_KEY)?;
        let store = DynamoStore::connect(config, Arc::new(sealer)).await;
        metrics.watch_capacity(store.capacity_meter());
        Ok(Arc::new(store))
    } else {
        Err(usage(anyhow::anyhow!(
            "unknown store URL {url:?}: use sqlite://PATH or dynamodb://TABLE?endpoint=URL&region=REGION"
        )))
    }
}

const NO_DATA_KEY: &str = "cannot make a data key to seal secrets with";

/// The key file a SQLite store's secrets are sealed under unless
/// `--secrets-key-file` names another: `DATABASE.secrets-key`, beside it.
pub fn default_key_file(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".secrets-key");
    PathBuf::from(name)
}

/// What the store `url` seals its records' secrets with: data keys made
/// and unwrapped by AWS KMS under `--kms-key`, or wrapped by the keys of
/// `--secrets-key-file` (which must exist), or on SQLite by the key file
/// beside the database (made when missing). A DynamoDB store needs one of
/// the two flags: a key made up by each process would leave every other
/// process unable to read what it sealed.
pub async fn sealer_for(url: &str, args: &SealArgs) -> anyhow::Result<Arc<Sealer>> {
    if url.starts_with("sqlite:") {
        let config = SqliteConfig::from_url(url).map_err(usage)?;
        return sqlite_sealer(&config.path, args).await;
    }
    let wrap = given_key(args).await?.ok_or_else(no_key)?;
    Ok(Arc::new(
        Sealer::start(wrap, Arc::new(SystemFresh))
            .await
            .context(NO_DATA_KEY)?,
    ))
}

fn no_key() -> anyhow::Error {
    usage(anyhow::anyhow!(
        "a DynamoDB store needs --kms-key ARN or --secrets-key-file PATH (HOOKLINE_KMS_KEY, \
         HOOKLINE_SECRETS_KEY_FILE): the key that seals signing secrets and credentials at rest, \
         the same for every process on the table"
    ))
}

/// The key the flags name, if they name one.
async fn given_key(args: &SealArgs) -> anyhow::Result<Option<Arc<dyn KeyWrap>>> {
    Ok(match (&args.kms_key, &args.secrets_key_file) {
        (Some(key), _) if key.trim().is_empty() => {
            return Err(usage(anyhow::anyhow!(
                "--kms-key is empty: give the KMS key's ARN"
            )));
        }
        (Some(key), _) => Some(Arc::new(Kms::from_environment(key.trim()).await)),
        (None, Some(path)) => Some(Arc::new(
            KeyFile::load(path).map_err(|e| key_file_error(path, e))?,
        )),
        (None, None) => None,
    })
}

/// A SQLite store's sealer: under the key the flags name, or the key file
/// beside `database` (made, with the directory the store will be in, when
/// missing). For a database path that is a directory none is made: the
/// store refuses to open there, and says so.
async fn sqlite_sealer(database: &Path, args: &SealArgs) -> anyhow::Result<Arc<Sealer>> {
    let wrap: Arc<dyn KeyWrap> = match given_key(args).await? {
        Some(wrap) => wrap,
        None if database.is_dir() => Arc::new(KeyFile::generate(&SystemFresh)?),
        None => {
            let path = default_key_file(database);
            let made = tokio::task::spawn_blocking(move || {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create the directory {}", parent.display()))?;
                }
                KeyFile::load_or_create(&path, &SystemFresh).map_err(usage)
            })
            .await
            .context("making the key file")??;
            Arc::new(made)
        }
    };
    Ok(Arc::new(
        Sealer::start(wrap, Arc::new(SystemFresh))
            .await
            .context(NO_DATA_KEY)?,
    ))
}

/// A key file that cannot be used is the user's to fix; a missing one
/// says how to make it.
fn key_file_error(path: &Path, err: SealError) -> anyhow::Error {
    match err {
        SealError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            usage(anyhow::anyhow!(
                "no key file at {}: make one with `hookline secrets new-key --key-file {}`",
                path.display(),
                path.display()
            ))
        }
        other => usage(other),
    }
}

/// How long a file blob outlives its last put beyond the store's
/// retention: an event is kept its retention plus
/// [`store::EVENT_RETENTION_GRACE`] from its creation, and its payload was
/// put just before it was created; a day covers any clock between them.
pub const FILE_BLOBS_MARGIN: Duration = Duration::from_secs(24 * 3600);

/// The blob store `--blobs` names, or the default for the store at
/// `store_url` (which [`open_store`] has opened): on SQLite a directory
/// beside its file, on DynamoDB none. File blobs expire with the store's
/// retention ([`blobs::FileBlobs::expiring_after`]: the retention, the
/// events' grace and [`FILE_BLOBS_MARGIN`] after their last put); S3's
/// expire by the bucket's lifecycle rule. A bad URL is a usage error.
pub async fn open_blobs(
    blobs_url: Option<&str>,
    store_url: &str,
) -> anyhow::Result<Option<Arc<dyn blobs::BlobStore>>> {
    let sqlite = store_url
        .starts_with("sqlite:")
        .then(|| store_sqlite::SqliteConfig::from_url(store_url).ok())
        .flatten();
    let retention = match &sqlite {
        Some(config) => Some(config.options.retention),
        None => store_url
            .starts_with("dynamodb:")
            .then(|| DynamoConfig::from_url(store_url).ok().map(|c| c.retention))
            .flatten(),
    };
    let url = match blobs_url {
        Some(text) => blobs::parse_blobs_url(text).map_err(|err| usage(anyhow::anyhow!("--blobs: {err}")))?,
        None => match &sqlite {
            Some(config) => blobs::BlobsUrl::beside_database(&config.path),
            None => return Ok(None),
        },
    };
    let opened: Arc<dyn blobs::BlobStore> = match url {
        blobs::BlobsUrl::File(dir) => {
            let files = blobs::FileBlobs::new(dir);
            Arc::new(match retention {
                Some(retention) => files.expiring_after(
                    retention
                        .saturating_add(store::EVENT_RETENTION_GRACE)
                        .saturating_add(FILE_BLOBS_MARGIN),
                ),
                None => files,
            })
        }
        s3 @ blobs::BlobsUrl::S3 { .. } => s3.open().await,
    };
    tracing::info!(blobs = %opened.describe(), "event payloads over 64 KiB are kept as blobs");
    Ok(Some(opened))
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
    /// Where event payloads too large to keep inline are (`--blobs`).
    blobs: Option<Arc<dyn blobs::BlobStore>>,
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
            blobs: None,
        }
    }

    /// Where the intake keeps, and processors read, event payloads over
    /// [`blobs::INLINE_THRESHOLD_BYTES`] (none: they stay inline up to
    /// [`intake::MAX_INLINE_PAYLOAD_BYTES`], larger ones are refused).
    pub fn with_blobs(self, blobs: Option<Arc<dyn blobs::BlobStore>>) -> Self {
        Self { blobs, ..self }
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
            .with_metrics(Arc::clone(&self.metrics))
            .with_blobs(self.blobs.clone());
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
            .with_queues(Arc::clone(&self.queues))
            .with_blobs(self.blobs.clone()))
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
