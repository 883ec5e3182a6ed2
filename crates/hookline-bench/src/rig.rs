//! What the scenarios stand on: DynamoDB Local (or a given endpoint), fresh
//! stores, the mock providers and callback sink, an in-process intake, and
//! processors wired to them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use domain::{ApiKey, Clock, SigningSecret, TenantId};
use netguard::NetPolicy;
use processor::{Processor, ProcessorConfig, ProviderCatalog};
use providers_mock::{MockState, RunningMock};
use store::{ApiKeyRecord, Store};
use store_dynamodb::{DynamoConfig, DynamoStore};
use tokio_util::sync::CancellationToken;

/// Where DynamoDB is for this run: an endpoint given on the command line, or
/// DynamoDB Local started on a free port the first time a scenario asks for
/// it (and stopped when this is dropped). Started lazily, so the SQLite
/// figures measured before are not shared with a JVM booting and compiling
/// on the same cores.
#[derive(Debug)]
pub struct Dynamo {
    given: Option<String>,
    local: tokio::sync::OnceCell<(String, dynamodb_local::DynamoDbLocal)>,
}

impl Dynamo {
    pub fn new(endpoint: Option<String>) -> Self {
        Self {
            given: endpoint,
            local: tokio::sync::OnceCell::new(),
        }
    }

    /// DynamoDB's endpoint, starting DynamoDB Local if none was given and it
    /// is not running yet.
    pub async fn endpoint(&self) -> Result<&str> {
        if let Some(given) = &self.given {
            return Ok(given);
        }
        let (endpoint, _) = self
            .local
            .get_or_try_init(|| async {
                eprintln!("hookline-bench: starting DynamoDB Local");
                let local = tokio::task::spawn_blocking(dynamodb_local::DynamoDbLocal::start)
                    .await
                    .context("the DynamoDB Local launcher")?
                    .context("starting DynamoDB Local (or pass --dynamodb-endpoint)")?;
                anyhow::Ok((local.endpoint().to_owned(), local))
            })
            .await?;
        Ok(endpoint)
    }

    /// A store on a new table with the store's own schema.
    pub async fn fresh_store(&self, purpose: &str) -> Result<DynamoStore> {
        let config = DynamoConfig::new(unique_table(purpose)).with_endpoint(self.endpoint().await?);
        let store = DynamoStore::connect(config, shared_sealer().await?).await;
        store_dynamodb::create_table(store.client(), &store.config().table)
            .await
            .with_context(|| format!("creating the {purpose} table"))?;
        Ok(store)
    }
}

fn unique_table(purpose: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "bench-{purpose}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The key file the benchmarks' DynamoDB stores and the `hookline`
/// processes they start (`scale`) seal secrets with, so each reads what
/// the others sealed.
pub fn key_file() -> Result<&'static std::path::Path> {
    static FILE: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> = std::sync::OnceLock::new();
    if let Some((_, path)) = FILE.get() {
        return Ok(path);
    }
    let dir = tempfile::tempdir().context("a directory for the key file")?;
    let path = dir.path().join("bench.secrets-key");
    seal::KeyFile::generate(&seal::SystemFresh)
        .and_then(|file| file.save_new(&path))
        .context("making the benchmarks' key file")?;
    Ok(&FILE.get_or_init(|| (dir, path)).1)
}

/// A sealer over [`key_file`].
async fn shared_sealer() -> Result<Arc<seal::Sealer>> {
    let file = seal::KeyFile::load(key_file()?).context("reading the benchmarks' key file")?;
    let sealer = seal::Sealer::start(Arc::new(file), Arc::new(seal::SystemFresh))
        .await
        .context("a sealer over the benchmarks' key file")?;
    Ok(Arc::new(sealer))
}

/// A sealer over a key of its own, as a process with a key file has: the
/// benchmarks seal and open secrets as production does.
fn bench_sealer() -> Result<Arc<seal::Sealer>> {
    Ok(Arc::new(
        seal::Sealer::ephemeral().context("an in-memory sealer")?,
    ))
}

/// A fresh SQLite store in its own temporary directory.
pub fn sqlite_store() -> Result<(Arc<dyn Store>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().context("a temporary directory for SQLite")?;
    let store =
        store_sqlite::SqliteStore::open(&dir.path().join("bench.db"), Default::default(), bench_sealer()?)
            .context("opening SQLite")?;
    Ok((Arc::new(store), dir))
}

/// A providers file in `dir` naming the mock's providers (5 s timeouts),
/// for the `hookline` processes a scenario starts.
pub fn write_providers(dir: &std::path::Path, mock: &RunningMock) -> Result<std::path::PathBuf> {
    let path = dir.join("providers.toml");
    let mut toml = String::new();
    for name in providers_mock::PROVIDERS {
        toml.push_str(&format!(
            "[providers.{name}]\nurl = \"{}\"\ntimeout = \"5s\"\n",
            mock.url(&format!("/providers/{name}"))
        ));
    }
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// Mock providers and the callback sink on a port of their own.
pub async fn spawn_mock(seed: u64) -> Result<RunningMock> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the mock")?;
    providers_mock::spawn(listener, MockState::with_seed(seed)).context("spawning the mock")
}

pub fn catalog(mock: &RunningMock) -> Result<ProviderCatalog> {
    let base = url::Url::parse(&mock.url("/providers/")).context("mock URL")?;
    Ok(ProviderCatalog::at_base_url(&base, &providers_mock::PROVIDERS)?)
}

/// A new API key of tenant `name`, stored.
pub async fn api_key(store: &dyn Store, name: &str) -> Result<String> {
    let key = ApiKey::generate(&mut rand::rng());
    store
        .create_api_key(&ApiKeyRecord {
            hash: key.hash(),
            tenant: TenantId::parse(name).context("tenant name")?,
            created_at: chrono::Utc::now(),
            revoked_at: None,
        })
        .await
        .context("storing the API key")?;
    Ok(key.expose().to_owned())
}

/// A tenant with an API key and a signing secret the sink checks with.
pub async fn tenant(store: &dyn Store, mock: &RunningMock, name: &str) -> Result<String> {
    let key = api_key(store, name).await?;
    let (secrets, _) = store::ensure_signing_secrets(
        store,
        &TenantId::new(name),
        SigningSecret::generate(&mut rand::rng()),
    )
    .await
    .context("storing the signing secret")?;
    mock.state.set_signing_secrets(vec![secrets.current.clone()]);
    Ok(key)
}

/// The intake on a port of its own, in this process; stops when `shutdown` is cancelled.
pub async fn spawn_intake(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    catalog: &ProviderCatalog,
    shutdown: &CancellationToken,
) -> Result<String> {
    spawn_intake_named(store, clock, catalog.names(), shutdown).await
}

/// [`spawn_intake`] telling `wake` of every accepted job, as `hookline serve` does.
pub async fn spawn_intake_waking(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    catalog: &ProviderCatalog,
    wake: Arc<tokio::sync::Notify>,
    shutdown: &CancellationToken,
) -> Result<String> {
    let config = intake::IntakeConfig::new(catalog.names())
        .with_callback_network(loopback())
        .waking(wake);
    serve_intake(intake::router(store, clock, config), shutdown).await
}

/// [`spawn_intake`] for a list of provider names.
pub async fn spawn_intake_named(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    providers: Vec<String>,
    shutdown: &CancellationToken,
) -> Result<String> {
    let config = intake::IntakeConfig::new(providers).with_callback_network(loopback());
    serve_intake(intake::router(store, clock, config), shutdown).await
}

pub async fn serve_intake(app: axum::Router, shutdown: &CancellationToken) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the intake")?;
    let addr = listener.local_addr()?;
    tokio::spawn(intake::run(listener, app, shutdown.clone()));
    Ok(format!("http://{addr}"))
}

pub fn loopback() -> Arc<NetPolicy> {
    Arc::new(NetPolicy::loopback_allowed())
}

pub fn processor(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    catalog: ProviderCatalog,
    owner: &str,
    seed: u64,
) -> Result<Processor> {
    Ok(Processor::new(
        store,
        clock,
        processor::http_client(),
        catalog,
        ProcessorConfig {
            owner: owner.to_owned(),
            seed: Some(seed),
            callback_network: loopback(),
            ..ProcessorConfig::default()
        },
    )?)
}

/// The processor's defaults the scenarios run with, as their notes name them.
pub fn processor_defaults() -> String {
    let defaults = ProcessorConfig::default();
    format!(
        "defaults: batch {}, concurrency {}",
        defaults.batch_size, defaults.concurrency
    )
}

/// An HTTP client that sends `key` with every request and keeps connections alive.
pub fn client_with_key(key: &str) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))?;
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(1024)
        .build()?)
}

/// The body of a job asking for both mock providers.
pub fn job_body(callback_url: &str) -> serde_json::Value {
    serde_json::json!({
        "providers": providers_mock::PROVIDERS,
        "callbackUrl": callback_url,
        "metadata": {"orderId": "A-17"},
    })
}

/// Posts `count` jobs, `parallel` at a time; fails on any answer but 202.
pub async fn post_jobs(
    http: &reqwest::Client,
    base: &str,
    body: &serde_json::Value,
    count: usize,
    parallel: usize,
) -> Result<()> {
    post_many(
        http,
        &format!("{base}/webhook"),
        body,
        count,
        parallel,
        |_| Ok(()),
    )
    .await
}

/// Posts `body` to `url` `count` times, `parallel` at a time; fails on any
/// answer but 202, or one `check` refuses (it reads the answer's body).
pub async fn post_many(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    count: usize,
    parallel: usize,
    check: impl Fn(&[u8]) -> Result<()>,
) -> Result<()> {
    use futures::StreamExt;
    let check = &check;
    let results: Vec<Result<()>> = futures::stream::iter(0..count)
        .map(|_| {
            let request = http.post(url).json(body);
            async move {
                let response = request.send().await.with_context(|| format!("POST {url}"))?;
                let status = response.status();
                let answer = response.bytes().await.with_context(|| format!("POST {url}"))?;
                anyhow::ensure!(status == 202, "POST {url} answered {status}");
                check(&answer)
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Runs `processor` whenever `wake` is told of new work, and every 500 ms
/// besides (the schedule's role: polling stays the source of truth), as
/// `hookline serve` does, until `stop` is cancelled.
pub fn spawn_woken(
    processor: Arc<Processor>,
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            }
            processor.drain(&stop).await;
        }
    })
}

/// A callback receiver that records, per job, how often it was delivered
/// and how long after its creation the first delivery arrived.
#[derive(Debug, Clone, Default)]
pub struct Sink {
    inner: Arc<std::sync::Mutex<SinkState>>,
}

#[derive(Debug, Default)]
struct SinkState {
    seen: std::collections::HashMap<String, u32>,
    /// Creation to first delivery, microseconds.
    latencies_us: Vec<u64>,
}

impl Sink {
    /// Serves the sink on a port of its own; returns its callback URL.
    pub async fn spawn(&self, shutdown: &CancellationToken) -> Result<String> {
        use axum::routing::post;
        let sink = self.clone();
        let app = axum::Router::new().route(
            "/complete",
            post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    sink.record(&headers, &body);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the sink")?;
        let addr = listener.local_addr()?;
        let token = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        Ok(format!("http://{addr}/complete"))
    }

    fn record(&self, headers: &axum::http::HeaderMap, body: &[u8]) {
        let now = chrono::Utc::now();
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let created = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|b| b["createdAt"].as_str().map(str::to_owned))
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
        let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let count = state.seen.entry(id).or_default();
        *count += 1;
        if *count == 1
            && let Some(created) = created
        {
            let micros = (now - created.with_timezone(&chrono::Utc))
                .num_microseconds()
                .unwrap_or(0);
            state.latencies_us.push(u64::try_from(micros).unwrap_or(0));
        }
    }

    /// Distinct jobs delivered.
    pub fn delivered(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).seen.len()
    }

    /// Deliveries beyond the first, over all jobs.
    pub fn duplicates(&self) -> u64 {
        let state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        state.seen.values().map(|n| u64::from(n - 1)).sum()
    }

    /// Creation-to-first-delivery latencies, microseconds, sorted.
    pub fn latencies_us(&self) -> Vec<u64> {
        let mut latencies = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .latencies_us
            .clone();
        latencies.sort_unstable();
        latencies
    }

    /// Waits until `count` distinct jobs arrived, or `timeout` passed.
    pub async fn wait_for(&self, count: usize, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.delivered() >= count {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.delivered() >= count
    }
}

/// Writes `count` jobs with `store.create_job`, `parallel` at a time; returns writes/s.
pub async fn raw_writes(store: &dyn Store, count: usize, parallel: usize, seed: u64) -> Result<f64> {
    use futures::StreamExt;
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let now = chrono::Utc::now();
    let jobs: Vec<domain::Job> = (0..count)
        .map(|_| {
            domain::Job::new(
                domain::NewJob {
                    id: domain::JobId::generate(now, &mut rng),
                    tenant: TenantId::new("ceiling"),
                    target: domain::Target::Callback(
                        url::Url::parse("http://127.0.0.1:9/complete").expect("a valid constant URL"),
                    ),
                    payload: domain::Payload::Results { metadata: None },
                    providers: vec!["gas".to_owned()],
                },
                // Far in the future: these jobs never become due.
                now + chrono::Duration::days(365),
            )
        })
        .collect();
    let started = std::time::Instant::now();
    let results: Vec<Result<(), store::StoreError>> = futures::stream::iter(&jobs)
        .map(|job| store.create_job(job))
        .buffer_unordered(parallel)
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    for result in results {
        result.context("a ceiling write")?;
    }
    Ok(count as f64 / seconds)
}
