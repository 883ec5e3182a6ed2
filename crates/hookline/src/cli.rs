//! The command line (SPEC section 7): every flag has a `HOOKLINE_*`
//! environment variable.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use domain::{ApiKey, RetryPolicy, RetrySchedule};
use ipnet::IpNet;
use netguard::{EgressProxy, NetPolicy};
use processor::ProcessorConfig;

use crate::Serving;

/// The embedded store, in the working directory.
pub const DEFAULT_STORE: &str = "sqlite://hookline.db";

/// Where the API listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";

// The flags' defaults as clap shows them. Each duration is the typed default
// of the setting it fills (`ProcessorConfig::default()`, `ServerLimits`'s),
// spelled as a person writes it: `flag_defaults_are_the_settings_defaults`
// holds them equal. Only `--shutdown-grace` and `--overlap` have no typed
// default elsewhere.
const DEFAULT_LEASE: &str = "60s";
const DEFAULT_CALLBACK_TIMEOUT: &str = "10s";
const DEFAULT_RUN_BUDGET: &str = "4m";
const DEFAULT_PROGRESS_EVERY: &str = "10s";
const DEFAULT_SHUTDOWN_GRACE: &str = "30s";
const DEFAULT_HEADER_TIMEOUT: &str = "10s";
const DEFAULT_IDLE_TIMEOUT: &str = "75s";
const DEFAULT_BODY_TIMEOUT: &str = "30s";
const DEFAULT_OVERLAP: &str = "24h";
const DEFAULT_DEADLINE_MARGIN: &str = "10s";

/// The processor's own defaults, for the flags that show them as they are.
fn processor_defaults() -> ProcessorConfig {
    ProcessorConfig::default()
}

#[derive(Debug, Parser)]
#[command(
    name = "hookline",
    version,
    about = "Webhook job service: fetch from providers, then call back"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "HOOKLINE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Intake, processor, mock providers and callback sink in one process,
    /// for trying hookline on a laptop.
    Dev(DevArgs),
    /// Intake API and processor in one process.
    Serve(ServeArgs),
    /// Intake API only.
    Intake(IntakeOnlyArgs),
    /// Scheduled processor only.
    Processor(ProcessorArgs),
    /// As an AWS Lambda function (configured by the same environment
    /// variables as the commands it stands for).
    Lambda {
        #[command(subcommand)]
        command: LambdaCommand,
    },
    /// DynamoDB table management.
    Table {
        #[command(subcommand)]
        command: TableCommand,
    },
    /// Tenants' API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Tenants' callback signing secrets.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Copies a SQLite store while it runs: a consistent snapshot of the
    /// database, its key file and its blobs, laid out as a store of their own.
    Backup(BackupArgs),
    /// Asks a running hookline's /healthz and exits 0 if it answers 2xx, 1
    /// otherwise: a container's HEALTHCHECK, without curl in the image.
    Healthcheck(HealthcheckArgs),
}

/// `hookline backup`: a SQLite store (never opened as a store: nothing is
/// created, no key is made) copied to `--to`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The SQLite store to back up: sqlite://PATH
    #[arg(long, env = "HOOKLINE_STORE", default_value = DEFAULT_STORE)]
    pub store: String,
    /// The key file the store's secrets are sealed with, if not the default DATABASE.secrets-key
    #[arg(long, env = "HOOKLINE_SECRETS_KEY_FILE", conflicts_with = "kms_key")]
    pub secrets_key_file: Option<PathBuf>,
    /// The store's secrets are sealed under this KMS key: there is no key file to copy
    #[arg(long, env = "HOOKLINE_KMS_KEY")]
    pub kms_key: Option<String>,
    /// The blob directory, if not the default DATABASE-blobs (file://DIR; an s3:// store is not copied)
    #[arg(long = "blobs", env = "HOOKLINE_BLOBS")]
    pub blobs: Option<String>,
    /// The backup's database file (must not exist); its key file is FILE.secrets-key and its blobs FILE-blobs/,
    /// where a store at sqlite://FILE looks for them
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
}

/// `hookline healthcheck`.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The URL to ask (default: /healthz on the --listen address, an unspecified host such as 0.0.0.0 read as
    /// loopback)
    #[arg(long)]
    pub url: Option<String>,
    /// The address hookline listens on, as for serve.
    #[arg(long, env = "HOOKLINE_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// How long to wait for the answer.
    #[arg(long, default_value = "5s", value_parser = parse_positive_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub enum LambdaCommand {
    /// The intake API behind an API Gateway HTTP API (payload 2.0), a REST
    /// API or an Application Load Balancer: `hookline intake`'s options
    /// (the listener's are accepted and unused).
    Intake(Box<IntakeOnlyArgs>),
    /// One drain per invocation (an EventBridge schedule), ending before
    /// the invocation's deadline; answers a JSON summary. `hookline
    /// processor`'s options (the schedule, metrics listener and --once
    /// are accepted and unused: every invocation is one drain).
    Processor(Box<LambdaProcessorArgs>),
}

/// `hookline lambda processor`: `hookline processor`'s options and the
/// time kept before each invocation's deadline.
#[derive(Debug, Clone, Args)]
pub struct LambdaProcessorArgs {
    #[command(flatten)]
    pub processor: ProcessorArgs,
    /// Kept before each invocation's deadline for giving back the leases
    /// of unfinished jobs and answering; claiming stops earlier still, once
    /// a job claimed could not finish before it.
    #[arg(long, env = "HOOKLINE_DEADLINE_MARGIN", default_value = DEFAULT_DEADLINE_MARGIN, value_parser = parse_positive_duration)]
    pub deadline_margin: Duration,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Makes a new signing secret for a tenant and prints it once; the old
    /// one keeps signing alongside it for the overlap, so receivers can
    /// switch without missing a callback.
    Rotate {
        #[arg(long)]
        tenant: String,
        /// How long the old secret keeps signing too.
        #[arg(long, default_value = DEFAULT_OVERLAP, value_parser = humantime::parse_duration)]
        overlap: Duration,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Adds a new key to a key file (making the file if it has none): the
    /// processes started with it from then on seal with the new key, and
    /// every key it held before still opens what was sealed under it.
    NewKey {
        /// The key file (0600 JSON).
        #[arg(long, env = "HOOKLINE_SECRETS_KEY_FILE")]
        key_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Creates a key for a tenant and prints it, once: only its hash is kept.
    Create {
        /// The tenant the key acts for: 1-64 of a-z, 0-9, '-', '_'.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Lists keys (id, tenant, created, revoked), never the keys themselves.
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revokes a key by the id `keys list` shows.
    Revoke {
        key_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// Creates the table, its due and dead-letter indexes and TTL; safe to
    /// run again.
    ///
    /// An existing table is compared with what hookline needs:
    /// what it lacks that can be added (an index, TTL) is added and listed;
    /// what cannot change (the table's keys, an index's keys or projection,
    /// TTL on another attribute) is listed, one line each, the table is left
    /// as it was, and the command fails (exit 1).
    Create(TableArgs),
}

/// The table `table create` makes: a store URL and nothing else (it
/// neither reads nor writes secrets).
#[derive(Debug, Clone, Args)]
pub struct TableArgs {
    /// Job store URL: dynamodb://TABLE?endpoint=URL&region=REGION
    #[arg(long, env = "HOOKLINE_STORE", default_value = DEFAULT_STORE)]
    pub store: String,
}

/// `--blobs`: where event payloads too large to keep inline are kept
/// (SPEC section 13).
#[derive(Debug, Clone, Args)]
pub struct BlobsArgs {
    /// Blob store for event payloads over 64 KiB: s3://BUCKET/PREFIX or file://DIR. Default: on a SQLite
    /// store, a directory beside its file (PATH-blobs); on DynamoDB, none (payloads over 256 KiB are
    /// refused with 413)
    #[arg(long = "blobs", env = "HOOKLINE_BLOBS")]
    pub blobs: Option<String>,
}

/// A store, and the key its records' secrets are sealed with.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Job store URL: sqlite://PATH, or dynamodb://TABLE?endpoint=URL&region=REGION
    #[arg(long, env = "HOOKLINE_STORE", default_value = DEFAULT_STORE)]
    pub store: String,
    #[command(flatten)]
    pub seal: SealArgs,
}

impl StoreArgs {
    /// The store `url` names, its secrets sealed the default way (on
    /// SQLite: under the key file beside the database).
    pub fn url(url: impl Into<String>) -> Self {
        Self {
            store: url.into(),
            seal: SealArgs::default(),
        }
    }
}

/// Where the key that seals secrets at rest comes from (SPEC section 13):
/// signing secrets, endpoints' credentials and sources' verification
/// secrets are stored sealed under data keys that it wraps. Every process
/// on one store needs the same key.
#[derive(Debug, Clone, Default, Args)]
pub struct SealArgs {
    /// AWS KMS key ARN (or alias ARN) that makes and unwraps the data keys
    /// sealing secrets at rest
    #[arg(long, env = "HOOKLINE_KMS_KEY", conflicts_with = "secrets_key_file")]
    pub kms_key: Option<String>,
    /// Key file that wraps the data keys sealing secrets at rest (made by
    /// `hookline secrets new-key`); on SQLite the default is the file
    /// DATABASE.secrets-key beside the database, made when missing
    #[arg(long, env = "HOOKLINE_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
}

/// The SSRF guard's allow-list.
#[derive(Debug, Clone, Args)]
pub struct NetworkArgs {
    /// Networks callbacks may reach although they are loopback, private or
    /// otherwise reserved, comma-separated (10.20.0.0/16,fd00::/8); by
    /// default callbacks reach public addresses only.
    #[arg(long, env = "HOOKLINE_ALLOW_NETWORKS", value_delimiter = ',', value_parser = parse_network)]
    pub allow_networks: Vec<IpNet>,
}

impl NetworkArgs {
    pub fn policy(&self) -> Arc<NetPolicy> {
        Arc::new(NetPolicy::allowing(self.allow_networks.iter().copied()))
    }
}

/// A CIDR network, or one address.
fn parse_network(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{value:?} is not a network such as 10.0.0.0/8 or an address"))
}

/// Where callbacks and deliveries go out.
#[derive(Debug, Clone, Args)]
pub struct EgressArgs {
    /// Send callbacks and endpoint deliveries through this forward proxy
    /// (http://HOST:PORT, CONNECT), for a static source IP. The SSRF guard
    /// still decides: hookline resolves and checks each target and asks the
    /// proxy for that address. Provider fetches go direct. Proxy variables
    /// in the environment (HTTP_PROXY, ...) are ignored either way.
    #[arg(long, env = "HOOKLINE_EGRESS_PROXY", value_name = "URL", hide_env_values = true, value_parser = EgressProxyParser)]
    pub egress_proxy: Option<EgressProxy>,
}

/// `--egress-proxy`'s parser: its error never repeats the value (clap's
/// would), since a URL with a password in it must not show anywhere.
#[derive(Debug, Clone, Copy)]
struct EgressProxyParser;

impl clap::builder::TypedValueParser for EgressProxyParser {
    type Value = EgressProxy;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<EgressProxy, clap::Error> {
        let invalid = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--egress-proxy: {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| invalid("an egress proxy is http://HOST:PORT: it is not UTF-8".to_owned()))?;
        text.parse()
            .map_err(|err: netguard::EgressProxyError| invalid(err.to_string()))
    }
}

/// What a listener tolerates from its clients (the API's, and a
/// processor's metrics listener).
#[derive(Debug, Clone, Args)]
pub struct ListenerArgs {
    /// A request head must arrive within this of its first byte (of the
    /// accept, for a connection's first request).
    #[arg(long, env = "HOOKLINE_HEADER_TIMEOUT", default_value = DEFAULT_HEADER_TIMEOUT, value_parser = parse_positive_duration)]
    pub header_timeout: Duration,
    /// A keep-alive connection is closed after this long without a request;
    /// keep it above a load balancer's idle timeout (AWS: 60 s).
    #[arg(long, env = "HOOKLINE_IDLE_TIMEOUT", default_value = DEFAULT_IDLE_TIMEOUT, value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,
    /// A request body must arrive within this of its head (else 408).
    #[arg(long, env = "HOOKLINE_BODY_TIMEOUT", default_value = DEFAULT_BODY_TIMEOUT, value_parser = parse_positive_duration)]
    pub body_timeout: Duration,
    /// Open connections at most (default: a bound below the open-file limit
    /// that keeps a quarter of it, 64 to 1,024 files, for everything else).
    #[arg(long, env = "HOOKLINE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
}

impl ListenerArgs {
    /// These limits over `base` (the listener's own, such as its body limit).
    pub fn limits(&self, base: intake::ServerLimits) -> intake::ServerLimits {
        intake::ServerLimits {
            header_read_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            body_read_timeout: self.body_timeout,
            max_connections: self.max_connections.map(|n| n as usize),
            ..base
        }
    }
}

/// A humantime duration above zero.
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("must be more than zero".to_owned()),
        Ok(duration) => Ok(duration),
        Err(e) => Err(e.to_string()),
    }
}

/// The providers jobs may name: a TOML file, or the same TOML in an
/// environment variable (a container configured without a file). Exactly
/// one of the two; which is checked when the command starts
/// (`commands::load_providers`), so either missing or both given is one
/// line naming both, and exit 2.
#[derive(Debug, Clone, Default, Args)]
pub struct ProvidersArgs {
    /// TOML file naming the providers and their URLs (or give the TOML itself in HOOKLINE_PROVIDERS_TOML)
    #[arg(long, env = "HOOKLINE_PROVIDERS")]
    pub providers: Option<PathBuf>,
    /// The providers' TOML itself, instead of a file: `[providers.NAME] url = "..." timeout = "10s"`
    #[arg(
        long = "providers-toml",
        env = "HOOKLINE_PROVIDERS_TOML",
        value_name = "TOML",
        hide_env_values = true
    )]
    pub providers_toml: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct IntakeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub blobs: BlobsArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub listener: ListenerArgs,
    /// Address the API listens on.
    #[arg(long, env = "HOOKLINE_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    #[command(flatten)]
    pub providers: ProvidersArgs,
}

/// `hookline intake`: the API alone. A synchronous publish's first
/// attempts (`?sync=true`) are made here, so they go out as deliveries do.
#[derive(Debug, Clone, Args)]
pub struct IntakeOnlyArgs {
    #[command(flatten)]
    pub intake: IntakeArgs,
    #[command(flatten)]
    pub egress: EgressArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ProcessorArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub blobs: BlobsArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub providers: ProvidersArgs,
    #[command(flatten)]
    pub tuning: ProcessorTuning,
    /// Run one drain and exit (cron jobs, scheduled tasks).
    #[arg(long)]
    pub once: bool,
    /// Address of this processor's own `GET /metrics` (not served with --once).
    #[arg(long, env = "HOOKLINE_METRICS_LISTEN", default_value = DEFAULT_METRICS_LISTEN)]
    pub metrics_listen: String,
    #[command(flatten)]
    pub listener: ListenerArgs,
}

/// Where `hookline processor` serves its metrics unless told otherwise.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

#[derive(Debug, Clone, Args)]
pub struct ProcessorTuning {
    /// Cron schedule of drains: 6 fields, seconds first.
    #[arg(long, env = "HOOKLINE_SCHEDULE", default_value = processor::schedule::DEFAULT_SCHEDULE)]
    pub schedule: String,
    /// How long a claim holds a job.
    #[arg(long, env = "HOOKLINE_LEASE", default_value = DEFAULT_LEASE, value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// Timeout of one callback attempt.
    #[arg(long, env = "HOOKLINE_CALLBACK_TIMEOUT", default_value = DEFAULT_CALLBACK_TIMEOUT, value_parser = humantime::parse_duration)]
    pub callback_timeout: Duration,
    /// Due jobs one poll reads into a drain's queue.
    #[arg(long, env = "HOOKLINE_BATCH_SIZE", default_value_t = processor_defaults().batch_size)]
    pub batch_size: usize,
    /// Jobs processed at the same time.
    #[arg(long, env = "HOOKLINE_CONCURRENCY", default_value_t = processor_defaults().concurrency)]
    pub concurrency: usize,
    /// A drain stops claiming after this long.
    #[arg(long, env = "HOOKLINE_RUN_BUDGET", default_value = DEFAULT_RUN_BUDGET, value_parser = humantime::parse_duration)]
    pub run_budget: Duration,
    /// On shutdown, how long in-flight work may take to finish.
    #[arg(long, env = "HOOKLINE_SHUTDOWN_GRACE", default_value = DEFAULT_SHUTDOWN_GRACE, value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Names this instance in leases (default: host and process id).
    #[arg(long, env = "HOOKLINE_PROCESSOR_ID")]
    pub processor_id: Option<String>,
    /// A drain running longer than this logs its progress this often (info).
    #[arg(long, env = "HOOKLINE_PROGRESS_EVERY", default_value = DEFAULT_PROGRESS_EVERY, value_parser = humantime::parse_duration)]
    pub progress_every: Duration,
    /// A registered endpoint whose every delivery attempt has failed for
    /// this long is disabled (reason `failing`).
    #[arg(long, env = "HOOKLINE_ENDPOINT_DISABLE_AFTER", default_value = "5d", value_parser = humantime::parse_duration)]
    pub endpoint_disable_after: Duration,
    /// Delays between provider fetch attempts, comma-separated (one more
    /// attempt than delays); each gets +-20% jitter.
    #[arg(
        long,
        env = "HOOKLINE_PROVIDER_RETRIES",
        value_name = "DELAYS",
        default_value = DEFAULT_PROVIDER_RETRIES,
        value_parser = parse_retry_schedule
    )]
    pub provider_retries: RetrySchedule,
    /// Delays between callback attempts, comma-separated (one more attempt
    /// than delays; the first attempt goes out at once); each gets +-20% jitter.
    #[arg(
        long,
        env = "HOOKLINE_CALLBACK_RETRIES",
        value_name = "DELAYS",
        default_value = DEFAULT_CALLBACK_RETRIES,
        value_parser = parse_retry_schedule
    )]
    pub callback_retries: RetrySchedule,
    #[command(flatten)]
    pub egress: EgressArgs,
}

impl ProcessorTuning {
    /// The processor these flags ask for; what they do not set is
    /// [`ProcessorConfig::default`]'s.
    pub fn config(&self) -> ProcessorConfig {
        let defaults = ProcessorConfig::default();
        ProcessorConfig {
            owner: self.processor_id.clone().unwrap_or(defaults.owner.clone()),
            lease: self.lease,
            batch_size: self.batch_size,
            concurrency: self.concurrency,
            run_budget: self.run_budget,
            callback_timeout: self.callback_timeout,
            progress_every: self.progress_every,
            endpoint_disable_after: self.endpoint_disable_after,
            egress_proxy: self.egress.egress_proxy.clone(),
            retry: RetryPolicy {
                provider: self.provider_retries.clone(),
                callback: self.callback_retries.clone(),
                ..defaults.retry.clone()
            },
            ..defaults
        }
    }

    /// How the processor runs beside an API served with `limits`.
    pub fn serving(&self, limits: intake::ServerLimits) -> Serving {
        Serving {
            limits,
            schedule: self.schedule.clone(),
            shutdown_grace: self.shutdown_grace,
        }
    }
}

/// SPEC section 3's provider schedule: 6 attempts.
pub const DEFAULT_PROVIDER_RETRIES: &str = "5s,30s,2m,10m,30m";
/// SPEC section 3's callback schedule: 8 attempts.
pub const DEFAULT_CALLBACK_RETRIES: &str = "5s,5m,30m,2h,5h,10h,10h";

/// Parses `5s,30s,2m`: the delays between consecutive attempts, each a
/// humantime duration.
pub fn parse_retry_schedule(text: &str) -> Result<RetrySchedule, String> {
    let mut delays = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err("expected comma-separated delays such as 5s,30s,2m".to_owned());
        }
        let delay = humantime::parse_duration(part).map_err(|e| format!("{part:?}: {e}"))?;
        delays.push(delay);
    }
    Ok(RetrySchedule::new(delays))
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub intake: IntakeArgs,
    #[command(flatten)]
    pub tuning: ProcessorTuning,
}

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Address to listen on.
    #[arg(long, env = "HOOKLINE_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub blobs: BlobsArgs,
    /// The API key to accept (tenant `dev`); generated and printed if unset.
    #[arg(long = "api-key", env = "HOOKLINE_DEV_API_KEY", hide_env_values = true, value_parser = parse_api_key)]
    pub api_key: Option<ApiKey>,
    #[command(flatten)]
    pub listener: ListenerArgs,
    #[command(flatten)]
    pub egress: EgressArgs,
}

fn parse_api_key(value: &str) -> Result<ApiKey, String> {
    ApiKey::parse(value).ok_or_else(|| {
        format!(
            "an API key is {}-{} printable characters without spaces",
            ApiKey::MIN_LEN,
            ApiKey::MAX_LEN
        )
    })
}

/// The process's arguments, as [`lambda::command_line`] reads them: a
/// binary named `bootstrap` run without arguments (a Lambda function on a
/// `provided` runtime) is `hookline lambda {_HANDLER}`.
pub fn command_line() -> Vec<std::ffi::OsString> {
    lambda::command_line(std::env::args_os().collect(), std::env::var_os("_HANDLER"))
}

pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HOOKLINE_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn,tokio_cron_scheduler=warn")
    });
    // Colours only for a person at a terminal, never in files or collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A log line that cannot be written (stderr closed: `hookline serve
    // 2>&1 | head` after head exits) is dropped, never a panic: the default
    // reports the failure with `eprintln!`, which panics on that same
    // stderr, inside whatever task was logging (the signal task among them).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(crate::logging::FlatJson)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn default_retry_schedules_are_the_spec_ones() {
        assert_eq!(
            parse_retry_schedule(DEFAULT_PROVIDER_RETRIES),
            Ok(RetrySchedule::provider_default())
        );
        assert_eq!(
            parse_retry_schedule(DEFAULT_CALLBACK_RETRIES),
            Ok(RetrySchedule::callback_default())
        );
    }

    /// What a flag defaults to is what its setting defaults to, so a
    /// default changed in one place and not the other fails here.
    #[test]
    fn flag_defaults_are_the_settings_defaults() {
        let cli = Cli::try_parse_from(["hookline", "serve", "--providers", "p.toml"]).expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("serve parses as serve");
        };
        let flags = args.tuning.config();
        let defaults = ProcessorConfig::default();
        assert_eq!(flags.lease, defaults.lease);
        assert_eq!(flags.callback_timeout, defaults.callback_timeout);
        assert_eq!(flags.batch_size, defaults.batch_size);
        assert_eq!(flags.concurrency, defaults.concurrency);
        assert_eq!(flags.run_budget, defaults.run_budget);
        assert_eq!(flags.progress_every, defaults.progress_every);
        assert_eq!(flags.retry.provider, defaults.retry.provider);
        assert_eq!(flags.retry.callback, defaults.retry.callback);
        assert_eq!(args.tuning.schedule, processor::schedule::DEFAULT_SCHEDULE);
        assert_eq!(
            args.intake.listener.limits(intake::server_limits()),
            intake::server_limits(),
            "the listener flags' defaults are the listener's"
        );
        assert_eq!(args.intake.listen, DEFAULT_LISTEN);
        assert_eq!(args.intake.store.store, DEFAULT_STORE);
        let cli = Cli::try_parse_from(["hookline", "lambda", "processor", "--providers", "p.toml"])
            .expect("parses");
        let Command::Lambda {
            command: LambdaCommand::Processor(args),
        } = cli.command
        else {
            panic!("lambda processor parses as lambda processor");
        };
        assert_eq!(args.deadline_margin, lambda::DEFAULT_DEADLINE_MARGIN);
    }

    #[test]
    fn an_egress_proxy_is_http_host_port_and_errors_never_echo_it() {
        let parse = |value: &str| {
            Cli::try_parse_from([
                "hookline",
                "serve",
                "--providers",
                "p.toml",
                "--egress-proxy",
                value,
            ])
            .map(|cli| match cli.command {
                Command::Serve(args) => args.tuning.config().egress_proxy,
                _ => panic!("serve parses as serve"),
            })
        };
        let proxy = parse("http://10.0.0.5:3128").expect("valid").expect("set");
        assert_eq!(proxy.to_string(), "10.0.0.5:3128");
        assert_eq!(
            parse("http://proxy.internal:3128/")
                .expect("valid")
                .expect("set")
                .to_string(),
            "proxy.internal:3128"
        );
        for bad in [
            "https://proxy:3128",
            "http://proxy:3128/path",
            "http://user:hunter2@proxy:3128",
            "socks5://proxy:1080",
            "proxy:3128",
            "http://proxy:3128?x=1",
        ] {
            let err = parse(bad).expect_err(bad).render().to_string();
            assert!(err.contains("--egress-proxy"), "{bad}: {err}");
            assert!(!err.contains("hunter2") && !err.contains(bad), "{bad}: {err}");
        }
        let cli = Cli::try_parse_from(["hookline", "serve", "--providers", "p.toml"]).expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("serve parses as serve");
        };
        assert_eq!(args.tuning.config().egress_proxy, None, "none unless asked");
    }

    #[test]
    fn retry_schedules_parse_humantime_lists() {
        let schedule = parse_retry_schedule("100ms, 2s,1m").expect("valid");
        assert_eq!(
            schedule.delays(),
            [
                Duration::from_millis(100),
                Duration::from_secs(2),
                Duration::from_secs(60)
            ]
        );
        assert_eq!(schedule.max_attempts(), 4);
        for bad in ["", "5s,,30s", "5s,", "soon", "5s,30"] {
            assert!(parse_retry_schedule(bad).is_err(), "{bad:?}");
        }
    }
}
