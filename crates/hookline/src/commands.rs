//! Wiring: builds the store, intake and processor each command needs and
//! runs them until shutdown.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use domain::{Clock, RetryPolicy, RetrySchedule, SystemClock};
use netguard::NetPolicy;
use processor::{Processor, ProcessorConfig, ProviderCatalog};
use store::Store;
use store_dynamodb::{DynamoConfig, DynamoStore};
use store_sqlite::{SqliteOpenError, SqliteStore};
use telemetry::Metrics;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cli::{
    Command, DevArgs, IntakeArgs, KeysCommand, ProcessorArgs, ProcessorTuning, SecretsCommand, ServeArgs,
    StoreArgs, TableCommand,
};
use crate::{keys, out};

/// Something the user asked for is wrong: a flag, an environment variable,
/// a store URL or a providers file. `main` exits 2 for it, as for clap's own
/// usage errors; any other failure exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct UsageError(anyhow::Error);

/// `err` as a [`UsageError`].
pub fn usage(err: impl Into<anyhow::Error>) -> anyhow::Error {
    UsageError(err.into()).into()
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Dev(args) => dev(args).await,
        Command::Serve(args) => serve(args).await,
        Command::Intake(args) => intake_only(args).await,
        Command::Processor(args) => processor_only(args).await,
        Command::Table {
            command: TableCommand::Create(args),
        } => table_create(args).await,
        Command::Keys { command } => {
            let store = open_store(command_store(&command), &Metrics::new()).await?;
            keys::run(command, &*store).await
        }
        Command::Secrets {
            command:
                SecretsCommand::Rotate {
                    tenant,
                    overlap,
                    store,
                },
        } => {
            keys::rotate_secret(
                &*open_store(&store.store, &Metrics::new()).await?,
                &tenant,
                overlap,
            )
            .await
        }
    }
}

fn command_store(command: &KeysCommand) -> &str {
    match command {
        KeysCommand::Create { store, .. }
        | KeysCommand::List { store, .. }
        | KeysCommand::Revoke { store, .. } => &store.store,
    }
}

fn dynamo_config(store: &str) -> anyhow::Result<DynamoConfig> {
    DynamoConfig::from_url(store).map_err(usage)
}

/// Opens the store a URL names: `sqlite://PATH` or `dynamodb://TABLE?...`.
/// A DynamoDB store's consumed capacity shows in `metrics`.
async fn open_store(url: &str, metrics: &Metrics) -> anyhow::Result<Arc<dyn Store>> {
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

/// The providers file: any problem with it is the user's to fix (exit 2).
fn load_providers(path: &Path) -> anyhow::Result<ProviderCatalog> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading providers file {}", path.display()))
        .map_err(usage)?;
    let catalog = ProviderCatalog::from_toml(&text)
        .with_context(|| format!("in {}", path.display()))
        .map_err(usage)?;
    if catalog.is_empty() {
        return Err(usage(anyhow::anyhow!(
            "{} configures no providers",
            path.display()
        )));
    }
    Ok(catalog)
}

fn processor_config(tuning: &ProcessorTuning) -> ProcessorConfig {
    let defaults = ProcessorConfig::default();
    ProcessorConfig {
        owner: tuning.processor_id.clone().unwrap_or(defaults.owner.clone()),
        lease: tuning.lease,
        batch_size: tuning.batch_size,
        concurrency: tuning.concurrency,
        run_budget: tuning.run_budget,
        callback_timeout: tuning.callback_timeout,
        progress_every: tuning.progress_every,
        retry: RetryPolicy {
            provider: tuning.provider_retries.clone(),
            callback: tuning.callback_retries.clone(),
            ..defaults.retry.clone()
        },
        ..defaults
    }
}

fn build_processor(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    providers: ProviderCatalog,
    tuning: &ProcessorTuning,
    callback_network: Arc<NetPolicy>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Arc<Processor>> {
    processor::schedule::validate_schedule(&tuning.schedule).map_err(usage)?;
    let config = ProcessorConfig {
        callback_network,
        ..processor_config(tuning)
    };
    let processor = Processor::new(store, clock, processor::http_client(), providers, config)
        .map_err(usage)?
        .with_metrics(metrics);
    Ok(Arc::new(processor))
}

/// A listen address that is not one is a usage error; one that cannot be
/// bound (in use, not ours) is a failure.
async fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}: not a HOST:PORT address"))
        .map_err(usage)?
        .collect();
    TcpListener::bind(&addrs[..])
        .await
        .with_context(|| format!("cannot listen on {listen}"))
}

/// Cancelled on ctrl-c or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            () = terminate => {}
        }
        // Cancel before saying so: should the log be gone, shutdown is not.
        trigger.cancel();
        tracing::info!("shutting down: no new claims, finishing in-flight work");
    });
    token
}

/// Serves the API and runs the scheduled processor until shutdown.
async fn serve_together(
    listener: TcpListener,
    limits: intake::ServerLimits,
    app: axum::Router,
    processor: Arc<Processor>,
    wake: Option<Arc<Notify>>,
    tuning: &ProcessorTuning,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let api = tokio::spawn(intake::run_with(listener, app, limits, shutdown.clone()));
    let scheduled = processor::schedule::run_scheduled(
        processor,
        &tuning.schedule,
        shutdown.clone(),
        tuning.shutdown_grace,
        wake,
    );
    let scheduled_result = scheduled.await;
    shutdown.cancel();
    api.await.context("intake task")?.context("serving the API")?;
    scheduled_result?;
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // One registry for the process: GET /metrics shows intake and processor.
    let metrics = Arc::new(Metrics::new());
    let store = open_store(&args.intake.store.store, &metrics).await?;
    let providers = load_providers(&args.intake.providers)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let processor = build_processor(
        Arc::clone(&store),
        Arc::clone(&clock),
        providers.clone(),
        &args.tuning,
        args.intake.network.policy(),
        Arc::clone(&metrics),
    )?;
    let wake = Arc::new(Notify::new());
    let config = intake::IntakeConfig::new(providers.names())
        .waking(Arc::clone(&wake))
        .with_callback_network(args.intake.network.policy())
        .with_metrics(metrics);
    let app = intake::router(store, clock, config);
    let listener = bind(&args.intake.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "hookline serving intake and processor");
    serve_together(
        listener,
        args.intake.listener.limits(intake::server_limits()),
        app,
        processor,
        Some(wake),
        &args.tuning,
        shutdown_on_signal(),
    )
    .await
}

async fn intake_only(args: IntakeArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let store = open_store(&args.store.store, &metrics).await?;
    let providers = load_providers(&args.providers)?;
    let app = intake::router(
        store,
        Arc::new(SystemClock),
        intake::IntakeConfig::new(providers.names())
            .with_callback_network(args.network.policy())
            .with_metrics(metrics),
    );
    let listener = bind(&args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "hookline intake listening");
    intake::run_with(
        listener,
        app,
        args.listener.limits(intake::server_limits()),
        shutdown_on_signal(),
    )
    .await
    .context("serving the API")
}

async fn processor_only(args: ProcessorArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let store = open_store(&args.store.store, &metrics).await?;
    let providers = load_providers(&args.providers)?;
    let processor = build_processor(
        store,
        Arc::new(SystemClock),
        providers,
        &args.tuning,
        args.network.policy(),
        Arc::clone(&metrics),
    )?;
    let shutdown = shutdown_on_signal();
    if args.once {
        return drain_once(&processor, &args, &shutdown).await;
    }
    // Its own metrics port: there is no API in this process to serve them.
    let listener = bind(&args.metrics_listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "processor metrics at /metrics");
    let metrics_server = tokio::spawn(intake::run_with(
        listener,
        intake::metrics_router(metrics),
        args.listener.limits(intake::server_limits()),
        shutdown.clone(),
    ));
    let scheduled = processor::schedule::run_scheduled(
        processor,
        &args.tuning.schedule,
        shutdown.clone(),
        args.tuning.shutdown_grace,
        None,
    )
    .await;
    shutdown.cancel();
    metrics_server
        .await
        .context("metrics task")?
        .context("serving metrics")?;
    scheduled?;
    Ok(())
}

/// `hookline processor --once`: one drain, its progress logged as it goes
/// (see `ProcessorConfig::progress_every`), and a summary line at the end.
async fn drain_once(
    processor: &Processor,
    args: &ProcessorArgs,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let grace = args.tuning.shutdown_grace;
    let started = std::time::Instant::now();
    let report = tokio::select! {
        report = processor.run_once(shutdown) => report,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            let released = processor.release_in_flight().await;
            bail!("stopped before the drain finished; released {released} unfinished jobs to other processors");
        }
    };
    let took = started.elapsed();
    tracing::info!(
        claimed = report.claimed,
        delivered = report.delivered,
        retried = report.retried,
        dead_lettered = report.dead_lettered,
        lost = report.lost,
        recovered = report.recovered,
        duration_ms = took.as_millis() as u64,
        "drain finished"
    );
    out::show(&format!(
        "claimed {} delivered {} retried {} dead-lettered {} lost {} fenced {} store-errors {} in {:.1}s",
        report.claimed,
        report.delivered,
        report.retried,
        report.dead_lettered,
        report.lost,
        report.fenced,
        report.store_errors,
        took.as_secs_f64()
    ));
    if report.store_errors > 0 {
        bail!("{} store errors during the drain", report.store_errors);
    }
    Ok(())
}

async fn table_create(args: StoreArgs) -> anyhow::Result<()> {
    if args.store.starts_with("sqlite:") {
        return Err(usage(anyhow::anyhow!(
            "`table create` is for DynamoDB; a SQLite store creates its schema when it opens"
        )));
    }
    let config = dynamo_config(&args.store)?;
    let client = config.client().await;
    let status = store_dynamodb::create_table(&client, &config.table).await?;
    match status {
        store_dynamodb::TableStatus::Created => out::show(&format!(
            "created table {} with its indexes and TTL",
            config.table
        )),
        store_dynamodb::TableStatus::AlreadyExisted => {
            out::show(&format!("table {} already exists; TTL checked", config.table))
        }
    }
    Ok(())
}

/// Everything in one process for a laptop: the API, the processor (woken by
/// every new job, and polling every second), the mock providers under
/// `/mock/providers/{name}` and the callback sink at `/mock/complete`, on the
/// embedded SQLite store unless `--store` says otherwise.
async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let listener = bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::new());
    let store = open_store(&args.store, &metrics).await?;

    let base = url::Url::parse(&format!("http://{addr}/mock/providers/")).context("provider base URL")?;
    let providers = ProviderCatalog::at_base_url(&base, &providers_mock::PROVIDERS)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tuning = ProcessorTuning {
        schedule: "* * * * * *".to_owned(),
        lease: std::time::Duration::from_secs(60),
        callback_timeout: std::time::Duration::from_secs(10),
        batch_size: 50,
        concurrency: 32,
        run_budget: std::time::Duration::from_secs(60),
        shutdown_grace: std::time::Duration::from_secs(10),
        processor_id: Some("dev".to_owned()),
        progress_every: std::time::Duration::from_secs(10),
        provider_retries: RetrySchedule::provider_default(),
        callback_retries: RetrySchedule::callback_default(),
    };
    // Loopback is allowed: the sink and whatever the developer runs locally.
    let network = Arc::new(NetPolicy::loopback_allowed());
    let processor = build_processor(
        Arc::clone(&store),
        Arc::clone(&clock),
        providers.clone(),
        &tuning,
        Arc::clone(&network),
        Arc::clone(&metrics),
    )?;
    let wake = Arc::new(Notify::new());
    let config = intake::IntakeConfig::new(providers.names())
        .waking(Arc::clone(&wake))
        .with_callback_network(network)
        .with_metrics(metrics);
    let key = keys::dev_key(&*store, args.api_key.clone()).await?;
    let secrets = keys::tenant_secrets(&*store, keys::DEV_TENANT).await?;
    // The mock sink checks every callback's signature with the dev tenant's
    // secrets: GET /mock/deliveries shows the verdict.
    let mock = providers_mock::MockState::default();
    mock.set_signing_secrets(vec![secrets.current.clone()]);
    let app = intake::router(store, clock, config).nest("/mock", providers_mock::router(mock));

    out::show(&format!(
        "hookline dev listening on http://{addr}  (store: {})",
        args.store
    ));
    // The developer's own key on their own machine: printing it is the point.
    out::show(&format!(
        "API key (tenant {}): {}",
        keys::DEV_TENANT,
        key.expose()
    ));
    out::show(&format!(
        "callbacks are signed with (Standard Webhooks): {}",
        secrets.current.expose_secret()
    ));
    out::show("try it:");
    out::show(&format!(
        "  curl -i -X POST http://{addr}/webhook -H 'authorization: Bearer {}' -H 'content-type: application/json' \\\n    -d '{{\"providers\":[\"gas\",\"internet\"],\"callbackUrl\":\"http://{addr}/mock/complete\"}}'",
        key.expose()
    ));
    out::show(&format!("  curl http://{addr}/mock/deliveries"));
    serve_together(
        listener,
        args.listener.limits(intake::server_limits()),
        app,
        processor,
        Some(wake),
        &tuning,
        shutdown_on_signal(),
    )
    .await
}
