//! Each command: what its flags ask for, built with [`crate::App`] and run
//! until shutdown; the exit codes' split between usage errors and failures.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use netguard::NetPolicy;
use processor::{Processor, ProcessorConfig, ProviderCatalog};
use telemetry::Metrics;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::app::{App, Serving, dynamo_config, open_blobs, open_store, serve_together};
use crate::cli::{
    Command, DevArgs, IntakeOnlyArgs, KeysCommand, LambdaCommand, LambdaProcessorArgs, ProcessorArgs,
    ProcessorTuning, ProvidersArgs, SecretsCommand, ServeArgs, StoreArgs, TableArgs, TableCommand,
};
use crate::{backup, dev_sink, health, keys, out};

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
        Command::Lambda {
            command: LambdaCommand::Intake(args),
        } => lambda_intake(*args).await,
        Command::Lambda {
            command: LambdaCommand::Processor(args),
        } => lambda_processor(*args).await,
        Command::Table {
            command: TableCommand::Create(args),
        } => table_create(args).await,
        Command::Keys { command } => {
            let store = open_store(command_store(&command), &Metrics::new()).await?;
            keys::run(command, &*store).await
        }
        Command::Secrets {
            command: SecretsCommand::NewKey { key_file },
        } => keys::new_key(&key_file),
        Command::Secrets {
            command:
                SecretsCommand::Rotate {
                    tenant,
                    overlap,
                    store,
                },
        } => keys::rotate_secret(&*open_store(&store, &Metrics::new()).await?, &tenant, overlap).await,
        Command::Backup(args) => backup::run(args).await,
        Command::Healthcheck(args) => health::check(args).await,
    }
}

fn command_store(command: &KeysCommand) -> &StoreArgs {
    match command {
        KeysCommand::Create { store, .. }
        | KeysCommand::List { store, .. }
        | KeysCommand::Revoke { store, .. } => store,
    }
}

/// The providers, from the file or from `HOOKLINE_PROVIDERS_TOML`: any
/// problem with them is the user's to fix (exit 2).
fn load_providers(args: &ProvidersArgs) -> anyhow::Result<ProviderCatalog> {
    let (text, source) = match (&args.providers, &args.providers_toml) {
        (Some(_), Some(_)) => {
            return Err(usage(anyhow::anyhow!(
                "give the providers once: --providers FILE (HOOKLINE_PROVIDERS) or --providers-toml TOML \
                 (HOOKLINE_PROVIDERS_TOML), not both"
            )));
        }
        (None, None) => {
            return Err(usage(anyhow::anyhow!(
                "no providers: give --providers FILE (HOOKLINE_PROVIDERS) or the TOML itself in \
                 HOOKLINE_PROVIDERS_TOML (--providers-toml)"
            )));
        }
        (Some(path), None) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("reading providers file {}", path.display()))
                .map_err(usage)?,
            path.display().to_string(),
        ),
        (None, Some(text)) => (text.clone(), "HOOKLINE_PROVIDERS_TOML".to_owned()),
    };
    let catalog = ProviderCatalog::from_toml(&text)
        .with_context(|| format!("in {source}"))
        .map_err(usage)?;
    if catalog.is_empty() {
        return Err(usage(anyhow::anyhow!("{source} configures no providers")));
    }
    Ok(catalog)
}

/// The processor `tuning` asks for over `app`'s parts; a schedule or
/// setting that will not do is a usage error.
fn build_processor(app: &App, tuning: &ProcessorTuning) -> anyhow::Result<Arc<Processor>> {
    processor::schedule::validate_schedule(&tuning.schedule).map_err(usage)?;
    let processor = app.processor(tuning.config()).map_err(config_error)?;
    log_egress(processor.config());
    Ok(Arc::new(processor))
}

/// A setting that will not do is a usage error; TLS that cannot be set up
/// for the egress proxy is the platform's failure, not the flags'.
fn config_error(err: processor::ConfigError) -> anyhow::Error {
    match err {
        processor::ConfigError::EgressTls(_) => err.into(),
        other => usage(other),
    }
}

fn log_egress(config: &ProcessorConfig) {
    if let Some(proxy) = &config.egress_proxy {
        tracing::info!(%proxy, "callbacks and deliveries go out through the egress proxy");
    }
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // One registry for the process: GET /metrics shows intake and processor.
    let metrics = Arc::new(Metrics::new());
    let store = open_store(&args.intake.store, &metrics).await?;
    let blobs = open_blobs(args.intake.blobs.blobs.as_deref(), &args.intake.store.store).await?;
    let providers = load_providers(&args.intake.providers)?;
    let app = App::new(store, providers)
        .with_blobs(blobs)
        .with_callback_network(args.intake.network.policy())
        .with_metrics(metrics);
    let processor = build_processor(&app, &args.tuning)?;
    let wake = Arc::new(Notify::new());
    let api = app.intake_attempting(Some(Arc::clone(&wake)), Some(Arc::clone(&processor)));
    let listener = bind(&args.intake.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "hookline serving intake and processor");
    serve_together(
        listener,
        api,
        processor,
        Some(wake),
        &args
            .tuning
            .serving(args.intake.listener.limits(intake::server_limits())),
        shutdown_on_signal(),
    )
    .await
}

async fn intake_only(only: IntakeOnlyArgs) -> anyhow::Result<()> {
    let api = intake_api(&only, format!("intake-{}", std::process::id())).await?;
    let args = &only.intake;
    let listener = bind(&args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "hookline intake listening");
    intake::run_with(
        listener,
        api,
        args.listener.limits(intake::server_limits()),
        shutdown_on_signal(),
    )
    .await
    .context("serving the API")
}

/// `hookline intake`'s API: the store, blobs and providers its flags name,
/// and a processor of its own (leases owned by `owner`) for synchronous
/// publishes only: it never drains.
async fn intake_api(only: &IntakeOnlyArgs, owner: String) -> anyhow::Result<axum::Router> {
    let IntakeOnlyArgs { intake: args, egress } = only;
    let metrics = Arc::new(Metrics::new());
    let store = open_store(&args.store, &metrics).await?;
    let blobs = open_blobs(args.blobs.blobs.as_deref(), &args.store.store).await?;
    let providers = load_providers(&args.providers)?;
    let app = App::new(store, providers)
        .with_blobs(blobs)
        .with_callback_network(args.network.policy())
        .with_metrics(metrics);
    let attempts = app
        .processor(ProcessorConfig {
            owner,
            egress_proxy: egress.egress_proxy.clone(),
            ..ProcessorConfig::default()
        })
        .map_err(config_error)?;
    log_egress(attempts.config());
    Ok(app.intake_attempting(None, Some(Arc::new(attempts))))
}

/// `hookline processor`'s processor, over the store, blobs and providers
/// its flags name, counting into `metrics`.
async fn processor_of(
    args: &ProcessorArgs,
    tuning: &ProcessorTuning,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<Processor>> {
    let store = open_store(&args.store, metrics).await?;
    let blobs = open_blobs(args.blobs.blobs.as_deref(), &args.store.store).await?;
    let providers = load_providers(&args.providers)?;
    let app = App::new(store, providers)
        .with_blobs(blobs)
        .with_callback_network(args.network.policy())
        .with_metrics(Arc::clone(metrics));
    build_processor(&app, tuning)
}

async fn processor_only(args: ProcessorArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let processor = processor_of(&args, &args.tuning, &metrics).await?;
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

/// `hookline lambda intake`: `hookline intake`'s API, configured the same
/// way (every flag has its variable), answering Lambda's invocations. A
/// configuration that will not do fails here, before the runtime starts.
async fn lambda_intake(args: IntakeOnlyArgs) -> anyhow::Result<()> {
    let api = intake_api(&args, lambda_owner("intake")).await?;
    lambda::in_lambda(|name| std::env::var_os(name)).map_err(usage)?;
    tracing::info!("hookline intake answering Lambda invocations");
    lambda::serve_intake(api)
        .await
        .map_err(|err| anyhow::anyhow!("the Lambda runtime stopped: {err}"))
}

/// `hookline lambda processor`: `hookline processor --once` per
/// invocation, each drain ending `--deadline-margin` before the
/// invocation's deadline.
async fn lambda_processor(args: LambdaProcessorArgs) -> anyhow::Result<()> {
    let LambdaProcessorArgs {
        processor: args,
        deadline_margin,
    } = args;
    let mut tuning = args.tuning.clone();
    tuning.processor_id = tuning.processor_id.or_else(|| Some(lambda_owner("processor")));
    let processor = processor_of(&args, &tuning, &Arc::new(Metrics::new())).await?;
    lambda::in_lambda(|name| std::env::var_os(name)).map_err(usage)?;
    tracing::info!(
        deadline_margin_ms = deadline_margin.as_millis() as u64,
        "hookline processor draining once per Lambda invocation"
    );
    lambda::serve_processor(processor, deadline_margin)
        .await
        .map_err(|err| anyhow::anyhow!("the Lambda runtime stopped: {err}"))
}

/// Who holds a Lambda function's leases, for operators reading them: the
/// function and its execution environment's log stream (one per
/// environment; a process id there is the same in every one).
fn lambda_owner(role: &str) -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    match (var("AWS_LAMBDA_FUNCTION_NAME"), var("AWS_LAMBDA_LOG_STREAM_NAME")) {
        (Some(function), Some(stream)) => format!("{function}/{stream}"),
        (Some(function), None) => format!("{function}-{}", std::process::id()),
        _ => format!("lambda-{role}-{}", std::process::id()),
    }
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
        report = processor.drain(shutdown) => report,
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

async fn table_create(args: TableArgs) -> anyhow::Result<()> {
    if args.store.starts_with("sqlite:") {
        return Err(usage(anyhow::anyhow!(
            "`table create` is for DynamoDB; a SQLite store creates its schema when it opens"
        )));
    }
    let config = dynamo_config(&args.store)?;
    let client = config.client().await;
    let table = &config.table;
    match store_dynamodb::create_table(&client, table).await {
        Ok(store_dynamodb::TableStatus::Created) => {
            out::show(&format!("created table {table} with its indexes and TTL"));
        }
        Ok(store_dynamodb::TableStatus::Exists { changed }) if changed.is_empty() => {
            out::show(&format!(
                "table {table} already exists and matches what hookline needs"
            ));
        }
        Ok(store_dynamodb::TableStatus::Exists { changed }) => {
            out::show(&format!("table {table} already exists; added what it lacked:"));
            for difference in &changed {
                out::show(&format!("  {}", difference.applied()));
            }
        }
        // A line per problem, as main prints an error, then the verdict. The
        // additions are not listed: they are made once the problems are fixed.
        Err(store_dynamodb::CreateTableError::Unfit { differences, .. }) => {
            for problem in differences.iter().filter(|d| !d.can_apply()) {
                out::note(&format!("hookline: table {table}: {problem}"));
            }
            bail!("table {table} is not laid out as hookline needs; left it unchanged");
        }
        Err(err) => return Err(err.into()),
    }
    Ok(())
}

/// `hookline dev`'s processor: drains every second (and at once for a new
/// job), a minute at most, and a shorter grace on ctrl-c than a server's;
/// otherwise [`ProcessorConfig::default`].
const DEV_SCHEDULE: &str = "* * * * * *";
const DEV_RUN_BUDGET: Duration = Duration::from_secs(60);
const DEV_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const DEV_PROCESSOR_ID: &str = "dev";

/// Everything in one process for a laptop: the API, the processor (woken by
/// every new job, and polling every second), the mock providers under
/// `/mock/providers/{name}` and the callback sink at `/mock/complete`, on the
/// embedded SQLite store unless `--store` says otherwise.
async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let listener = bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::new());
    let store = open_store(&args.store, &metrics).await?;
    let blobs = open_blobs(args.blobs.blobs.as_deref(), &args.store.store).await?;

    let base = url::Url::parse(&format!("http://{addr}/mock/providers/")).context("provider base URL")?;
    let providers = ProviderCatalog::at_base_url(&base, &providers_mock::PROVIDERS)?;
    // Loopback is allowed: the sink and whatever the developer runs locally.
    let app = App::new(store, providers)
        .with_blobs(blobs)
        .with_callback_network(Arc::new(NetPolicy::loopback_allowed()))
        .with_metrics(metrics);
    let processor = app
        .processor(ProcessorConfig {
            owner: DEV_PROCESSOR_ID.to_owned(),
            run_budget: DEV_RUN_BUDGET,
            egress_proxy: args.egress.egress_proxy.clone(),
            ..ProcessorConfig::default()
        })
        .map_err(config_error)?;
    log_egress(processor.config());
    let processor = Arc::new(processor);
    let wake = Arc::new(Notify::new());
    let store = Arc::clone(app.store());
    let key = keys::dev_key(&*store, args.api_key.clone()).await?;
    let secrets = keys::tenant_secrets(&*store, keys::DEV_TENANT).await?;
    // The mock sink checks every callback's signature with the dev tenant's
    // secrets: GET /mock/deliveries shows the verdict.
    // An endpoint's deliveries are signed with its own secret: the sink
    // learns each from the answer that shows it (creation, rotation).
    let mock = providers_mock::MockState::default();
    let sink_secrets = dev_sink::SinkSecrets::new(mock.clone(), secrets.current.clone());
    let api = sink_secrets
        .learning(app.intake_attempting(Some(Arc::clone(&wake)), Some(Arc::clone(&processor))))
        .nest("/mock", providers_mock::router(mock));

    out::show(&format!(
        "hookline dev listening on http://{addr}  (store: {})",
        args.store.store
    ));
    out::show(&format!(
        "web UI: http://{addr}/ui  (sign in with the API key below)"
    ));
    if let Some(key) = sealing_key(&args.store) {
        out::show(&format!("secrets at rest are sealed with {key}"));
    }
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
    out::show(&events_example(&addr.to_string(), key.expose()));
    out::show(&ingest_example(&addr.to_string(), key.expose()));
    serve_together(
        listener,
        api,
        processor,
        Some(wake),
        &Serving {
            limits: args.listener.limits(intake::server_limits()),
            schedule: DEV_SCHEDULE.to_owned(),
            shutdown_grace: DEV_SHUTDOWN_GRACE,
        },
        shutdown_on_signal(),
    )
    .await
}

/// What seals the secrets of the store `args` names, in words: the KMS
/// key, or the key file (on SQLite by default the one beside the database).
fn sealing_key(args: &StoreArgs) -> Option<String> {
    match (&args.seal.kms_key, &args.seal.secrets_key_file) {
        (Some(key), _) => Some(format!("the KMS key {key}")),
        (None, Some(path)) => Some(format!("the key file {}", path.display())),
        (None, None) => store_sqlite::SqliteConfig::from_url(&args.store)
            .ok()
            .map(|config| {
                format!(
                    "the key file {} (keep it with the database)",
                    crate::default_key_file(&config.path).display()
                )
            }),
    }
}

/// What `hookline dev` prints after the job example: an event type, an
/// endpoint at the dev sink subscribed to it, an event published to it, and
/// where its delivery shows.
fn events_example(addr: &str, key: &str) -> String {
    let auth = format!("-H 'authorization: Bearer {key}' -H 'content-type: application/json'");
    [
        "events: a type, an endpoint at the sink (its own whsec_ secret is in the answer), an event:".to_owned(),
        format!(
            "  curl -i -X PUT http://{addr}/v1/event-types/invoice.paid {auth} \\\n    -d '{{\"description\":\"an invoice was paid\"}}'"
        ),
        format!(
            "  curl -i -X POST http://{addr}/v1/endpoints {auth} \\\n    -d '{{\"url\":\"http://{addr}/mock/complete\",\"eventTypes\":[\"invoice.paid\"]}}'"
        ),
        format!(
            "  curl -i -X POST http://{addr}/v1/events {auth} \\\n    -d '{{\"type\":\"invoice.paid\",\"payload\":{{\"invoiceId\":\"in_1\",\"amount\":1200}}}}'"
        ),
        format!("  curl http://{addr}/mock/deliveries"),
    ]
    .join("\n")
}

/// What `hookline dev` prints after the events example: an inbound source
/// (a provider's webhooks, verified by a shared token and split into
/// events of the example's type), its challenge, and a provider's POST.
fn ingest_example(addr: &str, key: &str) -> String {
    let auth = format!("-H 'authorization: Bearer {key}' -H 'content-type: application/json'");
    [
        "ingest: a source for a provider's webhooks (SOURCE_ID: the sourceId it answers), its challenge, a \
         provider's POST split into two events:"
            .to_owned(),
        format!(
            "  curl -i -X POST http://{addr}/v1/sources {auth} \\\n    -d '{{\"name\":\"demo\",\"eventType\":\"invoice.paid\",\"verify\":{{\"type\":\"header\",\"name\":\"x-webhook-token\",\"value\":\"dev-token\"}},\"challenge\":{{\"queryParam\":\"challenge\"}},\"split\":{{\"items\":\"/events\",\"id\":\"/id\"}}}}'"
        ),
        format!("  curl -i 'http://{addr}/in/SOURCE_ID?challenge=hello'"),
        format!(
            "  curl -i -X POST http://{addr}/in/SOURCE_ID -H 'x-webhook-token: dev-token' -H 'content-type: application/json' \\\n    -d '{{\"events\":[{{\"id\":\"evt_1\",\"invoiceId\":\"in_2\"}},{{\"id\":\"evt_2\",\"invoiceId\":\"in_3\"}}]}}'"
        ),
        format!("  curl -i http://{addr}/v1/sources/SOURCE_ID/requests {auth}"),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_runs_on_a_valid_schedule() {
        assert!(processor::schedule::validate_schedule(DEV_SCHEDULE).is_ok());
    }
}
