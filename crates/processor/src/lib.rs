//! The processor: claims due jobs, fetches their providers, delivers the
//! callback and settles each job, fenced on its lease.
//!
//! [`Processor::drain`] is one drain of due work; [`schedule::run_scheduled`]
//! calls it on a cron schedule. Tests drive `drain` directly with a
//! [`domain::ManualClock`].
//!
//! What a drain decides lives beside it, each with its own tests:
//! [`slots`] (how tenants and their receivers share the slots), `claiming` (the queue of due
//! jobs, when to poll, what a probe says), `in_flight` (the leases held, for
//! shutdown), `lease` (lengthening one before a call that would outlast it)
//! and `purge` (how often retention runs); `http` makes the calls
//! and classifies their outcomes.

mod claiming;
mod fresh;
mod http;
mod in_flight;
mod lease;
mod oauth2;
pub mod providers;
mod purge;
pub mod schedule;
pub mod slots;
mod targets;
mod thin;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache::TtlCache;
use domain::{
    CallbackOutcome, Clock, Credential, FetchOutcome, Job, JobStatus, RetryPolicy, SigningSecret, Target,
    TenantId, TenantSecrets, Timestamp, Tried, signing,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use netguard::NetPolicy;
use rand::{Rng, SeedableRng};
use store::{Claim, DueJob, Fenced, Lease, Store};
use telemetry::{DeliveryResult, FetchResult, Metrics};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::claiming::{Claiming, PollMove};
use crate::in_flight::InFlight;
use crate::purge::PurgeSchedule;
use crate::slots::{ShareKey, Slots};

pub use http::client as http_client;
pub use providers::{CatalogError, ProviderCatalog, ProviderConfig};

/// How one processor instance behaves.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Names this instance in leases, for operators reading the store.
    pub owner: String,
    /// How long a claim holds a job. Must exceed the longest provider
    /// timeout plus the callback timeout plus a margin, so a healthy
    /// processor never loses a lease mid-job.
    pub lease: Duration,
    /// Due jobs read per poll of the store.
    pub batch_size: usize,
    /// Jobs processed at the same time: a drain's slots, shared fairly
    /// between tenants and, within a tenant, its receivers ([`slots`]).
    pub concurrency: usize,
    /// While a drain has a free slot but nothing it may claim, it polls
    /// the store again this often, so work that falls due mid-drain (another
    /// tenant's, a retry) starts without waiting for the drain to end.
    pub refill_every: Duration,
    /// A drain stops claiming once it has run this long.
    pub run_budget: Duration,
    pub callback_timeout: Duration,
    /// Largest provider response accepted.
    pub max_response_bytes: usize,
    pub retry: RetryPolicy,
    /// Seed for jitter, lease ids and where polls start (mixed with
    /// `owner`); `None` draws one from the OS.
    pub seed: Option<u64>,
    /// Which addresses callbacks may reach (the SSRF guard), checked again
    /// at connect time. Provider URLs are the operator's and not guarded.
    pub callback_network: Arc<NetPolicy>,
    /// How callback hosts are looked up at connect time; `None`: the system
    /// resolver on the callback client's own threads. Tests inject one.
    pub callback_lookups: Option<netguard::Resolver>,
    /// `--egress-proxy`: callbacks and deliveries go out through this
    /// forward proxy, which is asked for addresses the guard checked only.
    /// Provider fetches (the operator's own services) never do.
    pub egress_proxy: Option<netguard::EgressProxy>,
    /// A drain that runs longer than this logs its progress this often.
    pub progress_every: Duration,
    /// An endpoint whose every delivery attempt has failed for this long is
    /// disabled (SPEC section 9).
    pub endpoint_disable_after: Duration,
}

/// Time kept between the longest HTTP call and the lease's end.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// `--endpoint-disable-after`'s default: five days of failures.
pub const DEFAULT_ENDPOINT_DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            owner: default_owner(),
            lease: Duration::from_secs(60),
            batch_size: 50,
            concurrency: 128,
            refill_every: Duration::from_millis(500),
            run_budget: Duration::from_secs(240),
            callback_timeout: Duration::from_secs(10),
            max_response_bytes: 256 * 1024,
            retry: RetryPolicy::default(),
            seed: None,
            callback_network: Arc::new(NetPolicy::strict()),
            callback_lookups: None,
            egress_proxy: None,
            progress_every: Duration::from_secs(10),
            endpoint_disable_after: DEFAULT_ENDPOINT_DISABLE_AFTER,
        }
    }
}

/// FNV-1a: a stable hash of a name, for mixing into a seed.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn default_owner() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "processor".to_owned());
    format!("{host}-{}", std::process::id())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "lease of {lease:?} is too short: it must exceed the longest provider timeout ({provider:?}) \
         plus the callback timeout ({callback:?}) plus {LEASE_MARGIN:?}"
    )]
    LeaseTooShort {
        lease: Duration,
        provider: Duration,
        callback: Duration,
    },
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error(transparent)]
    EgressTls(#[from] netguard::EgressTlsError),
}

/// What one drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Claims won.
    pub claimed: u64,
    /// Claims another processor won first.
    pub lost: u64,
    /// Callbacks acknowledged: jobs now complete.
    pub delivered: u64,
    /// Jobs left due for a later attempt.
    pub retried: u64,
    /// Jobs that ended in the dead letter (`failed`).
    pub dead_lettered: u64,
    /// Writes refused because our lease had been taken over.
    pub fenced: u64,
    /// Store errors; the jobs involved become due again when their leases expire.
    pub store_errors: u64,
    /// Finished jobs past their retention that the store deleted.
    pub purged: u64,
    /// Claims of jobs whose previous processor's lease had expired.
    pub recovered: u64,
}

impl DrainReport {
    fn merge(&mut self, other: &DrainReport) {
        self.claimed += other.claimed;
        self.lost += other.lost;
        self.delivered += other.delivered;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
        self.fenced += other.fenced;
        self.store_errors += other.store_errors;
        self.purged += other.purged;
        self.recovered += other.recovered;
    }
}

#[derive(Debug)]
pub struct Processor {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    /// Resolves through the SSRF guard (and goes through the egress proxy
    /// when one is set).
    callback_http: http::CallbackClient,
    providers: ProviderCatalog,
    config: ProcessorConfig,
    rng: Mutex<rand::rngs::StdRng>,
    /// When retention last ran.
    purges: PurgeSchedule,
    /// When the oldest due job's age was last read.
    oldest_due_reads: PurgeSchedule,
    /// The SQS client deliveries to queue endpoints are sent with.
    queues: Arc<sqs::Queues>,
    /// Tenants' signing secrets as last read.
    secrets: TtlCache<TenantId, TenantSecrets, Timestamp, chrono::Duration>,
    /// Events whose payloads deliveries carry (`targets.rs`).
    events: TtlCache<(TenantId, domain::EventId), Arc<domain::Event>, Timestamp, chrono::Duration>,
    /// Events with inline payloads too large for `events`, a few at a time.
    large_events: TtlCache<(TenantId, domain::EventId), Arc<domain::Event>, Timestamp, chrono::Duration>,
    /// Where payloads too large to keep inline are (SPEC section 13);
    /// `None`: no blob store is configured, and a delivery of such an event
    /// waits (retryable) for a processor that has one.
    blobs: Option<Arc<dyn blobs::BlobStore>>,
    /// Blob payloads as read and verified, a few at a time (`targets.rs`).
    payloads: TtlCache<(TenantId, domain::BlobRef), Arc<domain::RawJson>, Timestamp, chrono::Duration>,
    /// Thin events' provider fetches in flight, shared by their deliveries
    /// (`thin.rs`).
    thin: thin::ThinFetches,
    /// Endpoint reads shared by the deliveries asking at the same time,
    /// each answered by a read that began after it asked (`targets.rs`).
    endpoint_reads: targets::EndpointReads,
    /// Event reads shared by the deliveries that miss `events` together.
    event_reads: targets::EventReads,
    /// OAuth2 tokens of endpoints whose auth is a client-credentials grant.
    tokens: oauth2::Tokens,
    /// Leases of the jobs being worked on now, so shutdown can give back
    /// what it cannot finish.
    in_flight: InFlight,
    metrics: Arc<Metrics>,
    /// Where in the due set the next poll starts ([`Store::due_jobs_from`]):
    /// random at first, one on after each poll whose probe won, somewhere
    /// new after a claim lost to another processor.
    poll_start: AtomicU64,
}

/// A job this processor holds a lease on, with the span its logs go in.
struct Claimed {
    job: Job,
    lease: Lease,
    span: tracing::Span,
}

/// What one slot of a drain does next: claim a due job, then fetch its
/// providers, deliver its callback and save it.
enum SlotWork {
    Claim { due: DueJob, probe: bool },
    FetchDeliverSave(Box<Claimed>),
}

/// What a slot's work came to; `keys` are the shares its slot counts in.
/// `Finished`: the job's attempt was made and its save tried (the report
/// says how that went), so the slot is free.
enum SlotDone {
    Claimed {
        keys: Vec<ShareKey>,
        probe: bool,
        report: DrainReport,
        claimed: Option<Box<Claimed>>,
    },
    Finished {
        keys: Vec<ShareKey>,
        report: DrainReport,
    },
}

/// A poll's answer: what it read, whom it passed over, and when it began.
struct Polled {
    due: Result<Vec<DueJob>, store::StoreError>,
    passed_over: store::PassOver,
    at: Instant,
}

/// How long a processor signs with the secrets it read before reading them
/// again: a rotation reaches every processor within this time (and the old
/// secret keeps signing for the whole overlap anyway).
pub const SECRETS_CACHE_TTL: Duration = Duration::from_secs(60);

/// Tenants whose secrets one processor keeps; past this many, the secrets
/// read longest ago go first.
const SECRETS_CACHE_MAX: usize = 10_000;

/// How often a processor asks the store to delete expired finished jobs.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// How often a processor reads the oldest due job's age for its gauge.
pub const OLDEST_DUE_INTERVAL: Duration = Duration::from_secs(15);

impl Processor {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        http: reqwest::Client,
        providers: ProviderCatalog,
        config: ProcessorConfig,
    ) -> Result<Self, ConfigError> {
        let provider = providers.longest_timeout();
        if config.lease <= provider + config.callback_timeout + LEASE_MARGIN {
            return Err(ConfigError::LeaseTooShort {
                lease: config.lease,
                provider,
                callback: config.callback_timeout,
            });
        }
        if config.batch_size == 0 {
            return Err(ConfigError::Zero("batch size"));
        }
        if config.concurrency == 0 {
            return Err(ConfigError::Zero("concurrency"));
        }
        if config.refill_every.is_zero() {
            return Err(ConfigError::Zero("refill interval"));
        }
        let mut rng = match config.seed {
            // Mixed with the owner: processors given one seed still draw
            // their own lease ids and poll from their own places.
            Some(seed) => rand::rngs::StdRng::seed_from_u64(seed ^ fnv1a(config.owner.as_bytes())),
            None => rand::rngs::StdRng::from_os_rng(),
        };
        let poll_start = AtomicU64::new(rng.random());
        let metrics = Arc::new(Metrics::new());
        metrics.expect_providers(providers.names().iter().map(String::as_str));
        Ok(Self {
            store,
            clock,
            http,
            callback_http: http::callback_client(
                Arc::clone(&config.callback_network),
                config.callback_lookups.clone(),
                config.egress_proxy.as_ref(),
            )?,
            providers,
            config,
            rng: Mutex::new(rng),
            purges: PurgeSchedule::new(PURGE_INTERVAL),
            oldest_due_reads: PurgeSchedule::new(OLDEST_DUE_INTERVAL),
            queues: Arc::new(sqs::Queues::from_environment()),
            secrets: TtlCache::new(
                chrono::Duration::from_std(SECRETS_CACHE_TTL).unwrap_or(chrono::Duration::MAX),
                SECRETS_CACHE_MAX,
            ),
            events: TtlCache::new(
                chrono::Duration::from_std(targets::EVENTS_CACHE_TTL).unwrap_or(chrono::Duration::MAX),
                targets::EVENTS_CACHE_MAX,
            ),
            large_events: TtlCache::new(
                chrono::Duration::from_std(targets::EVENTS_CACHE_TTL).unwrap_or(chrono::Duration::MAX),
                targets::LARGE_EVENTS_CACHE_MAX,
            ),
            blobs: None,
            payloads: TtlCache::new(
                chrono::Duration::from_std(targets::PAYLOADS_CACHE_TTL).unwrap_or(chrono::Duration::MAX),
                targets::PAYLOADS_CACHE_MAX,
            ),
            thin: thin::ThinFetches::default(),
            endpoint_reads: targets::EndpointReads::default(),
            event_reads: targets::EventReads::default(),
            tokens: oauth2::Tokens::default(),
            in_flight: InFlight::default(),
            metrics,
            poll_start,
        })
    }

    /// Sends to queue endpoints with `queues` instead of a client
    /// configured from the environment.
    pub fn with_queues(mut self, queues: Arc<sqs::Queues>) -> Self {
        self.queues = queues;
        self
    }

    /// Reads the payloads of events kept as blobs from `blobs`.
    pub fn with_blobs(mut self, blobs: Option<Arc<dyn blobs::BlobStore>>) -> Self {
        self.blobs = blobs;
        self
    }

    /// Counts into `metrics` (shared with the intake in the same process)
    /// instead of this processor's own.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        metrics.expect_providers(self.providers.names().iter().map(String::as_str));
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn config(&self) -> &ProcessorConfig {
        &self.config
    }

    /// The longest one job's attempt takes on this processor's own
    /// timeouts: its providers (fetched at once) at the longest provider
    /// timeout, then the callback at the callback timeout. An endpoint's
    /// own timeout may be longer (its lease is lengthened for it).
    pub fn attempt_time(&self) -> Duration {
        self.providers.longest_timeout() + self.config.callback_timeout
    }

    /// How many jobs this instance holds leases on right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Gives back the lease of every job still being worked on, so another
    /// processor can take it at once instead of after the lease expires.
    /// For shutdown, once the grace period is over; the abandoned work's
    /// own writes are then fenced off. Returns how many were released.
    pub async fn release_in_flight(&self) -> usize {
        let mut released = 0;
        for (id, tenant, lease) in self.in_flight.take_all() {
            match self.store.release(&tenant, id, &lease).await {
                Ok(Fenced::Written) => released += 1,
                Ok(Fenced::LeaseLost) => {}
                Err(err) => {
                    tracing::warn!(job_id = %id, error = %err, "could not release; the lease will expire")
                }
            }
        }
        if released > 0 {
            tracing::info!(released, "released unfinished jobs for other processors");
        }
        released
    }

    fn with_rng<T>(&self, f: impl FnOnce(&mut rand::rngs::StdRng) -> T) -> T {
        let mut rng = self.rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut rng)
    }

    /// One drain: claims due work and works it until nothing is due,
    /// the run budget is spent, or `shutdown` is cancelled. Jobs already
    /// claimed are finished before it returns.
    ///
    /// There are no rounds: each of `concurrency` slots claims its next job
    /// as soon as its last one is done, so a slow job holds up only its own
    /// slot. Slots are shared between tenants and, within a tenant, its
    /// receivers ([`slots`]): one at its share takes no more, and a poll
    /// reads past its due jobs to others' behind them.
    pub async fn drain(&self, shutdown: &CancellationToken) -> DrainReport {
        let started = Instant::now();
        let mut report = DrainReport::default();
        let mut last_progress = started;
        self.purge_if_due(&mut report).await;
        self.observe_oldest_due().await;
        let mut slots = Slots::new(self.config.concurrency);
        let mut claiming = Claiming::default();
        let mut open = true;
        let mut running = FuturesUnordered::new();
        // The poll in flight, read beside the running slots: they go on
        // meanwhile (a poll awaited in this loop would freeze every one of
        // them until it came back).
        let mut polling: Option<Pin<Box<dyn Future<Output = Polled> + Send + '_>>> = None;
        loop {
            if open && (shutdown.is_cancelled() || started.elapsed() >= self.config.run_budget) {
                open = false;
            }
            if !open {
                claiming.clear();
                polling = None;
            }
            if open && !claiming.probing() {
                for (due, keys) in claiming.start_claims(&mut slots, false) {
                    running.push(self.work_slot(SlotWork::Claim { due, probe: false }, keys, shutdown));
                }
                if polling.is_none()
                    && claiming.wants_poll(
                        &slots,
                        running.is_empty(),
                        self.config.refill_every,
                        Instant::now(),
                    )
                {
                    polling = Some(Box::pin(self.read_due(slots.pass_over())));
                }
            }
            // Nothing runs and nothing is being read: claiming is over.
            if running.is_empty() && polling.is_none() {
                break;
            }
            let refill_at = claiming.last_poll().map_or_else(tokio::time::Instant::now, |at| {
                tokio::time::Instant::from_std(at + self.config.refill_every)
            });
            let waiting_to_refill = open && polling.is_none() && !claiming.probing() && slots.free() > 0;
            let event = tokio::select! {
                Some(done) = running.next(), if !running.is_empty() => Some(Ok(done)),
                polled = async { polling.as_mut().expect("guarded by is_some").await }, if polling.is_some() => Some(Err(polled)),
                () = tokio::time::sleep_until(refill_at), if waiting_to_refill => None,
                () = shutdown.cancelled(), if open => None,
            };
            match event {
                Some(Err(polled)) => {
                    polling = None;
                    match polled.due {
                        Ok(due) => {
                            self.metrics.due_backlog(due.len());
                            let found =
                                claiming.polled(due, &polled.passed_over, self.config.batch_size, polled.at);
                            for (due, keys) in claiming.start_claims(&mut slots, true) {
                                running.push(self.work_slot(
                                    SlotWork::Claim { due, probe: true },
                                    keys,
                                    shutdown,
                                ));
                            }
                            if found == 0 && running.is_empty() {
                                break;
                            }
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "could not read due work; the next run tries again");
                            report.store_errors += 1;
                            open = false;
                        }
                    }
                }
                Some(Ok(SlotDone::Claimed {
                    keys,
                    probe,
                    report: one,
                    claimed,
                })) => {
                    report.merge(&one);
                    match claimed {
                        Some(claimed) => {
                            running.push(self.work_slot(SlotWork::FetchDeliverSave(claimed), keys, shutdown));
                        }
                        None => slots.give_back(&keys),
                    }
                    let after = claiming.claim_answered(probe, one.claimed > 0, one.lost > 0);
                    match after.poll_start {
                        Some(PollMove::OneOn) => {
                            self.poll_start.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(PollMove::Elsewhere) => self.jump_poll_start(),
                        None => {}
                    }
                    open &= after.go_on;
                }
                Some(Ok(SlotDone::Finished { keys, report: one })) => {
                    report.merge(&one);
                    slots.give_back(&keys);
                }
                None => {}
            }
            if last_progress.elapsed() >= self.config.progress_every {
                last_progress = Instant::now();
                tracing::info!(
                    claimed = report.claimed,
                    delivered = report.delivered,
                    retried = report.retried,
                    dead_lettered = report.dead_lettered,
                    in_flight = slots.taken(),
                    elapsed_s = started.elapsed().as_secs(),
                    "drain in progress"
                );
            }
        }
        self.metrics.drain_finished(started.elapsed());
        report
    }

    /// Reads due work from this processor's place in the due set, passing
    /// over the tenants and receivers with no slot to spare (`pass_over`,
    /// worked out when the read began).
    async fn read_due(&self, pass_over: store::PassOver) -> Polled {
        let start = self.poll_start.load(Ordering::Relaxed);
        let at = Instant::now();
        let due = self
            .store
            .due_jobs_from(self.clock.now(), self.config.batch_size, start, &pass_over)
            .await;
        Polled {
            due,
            passed_over: pass_over,
            at,
        }
    }

    /// Sets `hookline_oldest_due_job_age_seconds` from the head of the due
    /// index (`due_jobs(now, 1)`: one read per due partition), at most
    /// once per [`OLDEST_DUE_INTERVAL`] per instance, so its cost does not
    /// grow with the drain rate. A failed read leaves the last value.
    async fn observe_oldest_due(&self) {
        let now = self.clock.now();
        if !self.oldest_due_reads.start_if_due(now) {
            return;
        }
        match self.store.due_jobs(now, 1).await {
            Ok(due) => {
                let age = due
                    .first()
                    .and_then(|oldest| (now - oldest.due_at).to_std().ok())
                    .unwrap_or_default();
                self.metrics.oldest_due_job_age(age);
            }
            Err(err) => tracing::debug!(error = %err, "could not read the oldest due job"),
        }
    }

    /// Retention for stores that do not expire items themselves, at most
    /// once per [`PURGE_INTERVAL`] per instance.
    async fn purge_if_due(&self, report: &mut DrainReport) {
        let now = self.clock.now();
        if !self.purges.start_if_due(now) {
            return;
        }
        match self.store.purge_expired(now).await {
            Ok(purged) => report.purged += purged,
            Err(err) => {
                report.store_errors += 1;
                tracing::warn!(error = %err, "could not purge expired jobs");
            }
        }
        // Blobs go with their events' retention: a blob store that expires
        // them itself (files) does it now; S3's lifecycle rule does it there.
        if let Some(blobs) = &self.blobs {
            match blobs.purge_expired().await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "purged expired payload blobs"),
                Err(err) => tracing::warn!(error = %err, "could not purge expired payload blobs"),
            }
        }
    }

    /// The next thing one slot does: claim a due job (its outcome goes back
    /// to the drain, which then works the job in the same slot), or fetch,
    /// deliver and save a claimed one.
    async fn work_slot(&self, work: SlotWork, keys: Vec<ShareKey>, shutdown: &CancellationToken) -> SlotDone {
        match work {
            SlotWork::Claim { due, probe } => {
                let (report, claimed) = self.claim(due, shutdown).await;
                SlotDone::Claimed {
                    keys,
                    probe,
                    report,
                    claimed: claimed.map(Box::new),
                }
            }
            SlotWork::FetchDeliverSave(claimed) => SlotDone::Finished {
                keys,
                report: self.fetch_deliver_and_save(*claimed).await,
            },
        }
    }

    /// Polls from a new random place in the due set, away from whoever we
    /// just met.
    fn jump_poll_start(&self) {
        let start = self.with_rng(|rng| rng.random());
        self.poll_start.store(start, Ordering::Relaxed);
    }

    async fn claim(&self, due: DueJob, shutdown: &CancellationToken) -> (DrainReport, Option<Claimed>) {
        // Everything logged about this job carries its id (and, once the
        // claim has read it, its tenant). The span is at info; warnings
        // name the job themselves too, so a warn-level filter keeps it.
        let span = tracing::info_span!("job", job_id = %due.id, tenant = tracing::field::Empty);
        let (report, claimed) = self.claim_in_span(due, shutdown).instrument(span.clone()).await;
        (report, claimed.map(|(job, lease)| Claimed { job, lease, span }))
    }

    async fn claim_in_span(
        &self,
        due: DueJob,
        shutdown: &CancellationToken,
    ) -> (DrainReport, Option<(Job, Lease)>) {
        let mut report = DrainReport::default();
        // Shutdown stops claiming at once, even in the middle of a batch.
        if shutdown.is_cancelled() {
            return (report, None);
        }
        let now = self.clock.now();
        let lease_length = chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::MAX);
        let lease = Lease {
            id: self.with_rng(|rng| format!("{:032x}", rng.random::<u128>())),
            owner: self.config.owner.clone(),
            until: now
                .checked_add_signed(lease_length)
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
        };
        let job = match self.store.claim(&due.tenant, due.id, &lease, now).await {
            Ok(Claim::Won { job, took_over_from }) => {
                if let Some(previous) = took_over_from {
                    report.recovered += 1;
                    self.metrics.lease_expiry_recovered();
                    tracing::info!(previous_owner = %previous, "took over a job whose lease expired");
                }
                *job
            }
            Ok(Claim::Lost) => {
                report.lost += 1;
                self.metrics.claim(false);
                tracing::debug!("claim lost to another processor");
                return (report, None);
            }
            Err(err) => {
                tracing::warn!(job_id = %due.id, error = %err, "claim failed");
                report.store_errors += 1;
                if !err.is_determinate() {
                    // The claim may have landed: give the lease back rather
                    // than leave the job held until it expires.
                    if let Err(err) = self.store.release(&due.tenant, due.id, &lease).await {
                        tracing::debug!(job_id = %due.id, error = %err, "could not release after the claim");
                    }
                }
                return (report, None);
            }
        };
        report.claimed += 1;
        self.metrics.claim(true);
        tracing::Span::current().record("tenant", tracing::field::display(&job.tenant()));
        self.in_flight.hold(job.id(), job.tenant().clone(), lease.clone());
        (report, Some((job, lease)))
    }

    /// Works one claimed job, in its span: fetches the providers due,
    /// delivers the callback if the job is ready for it, saves the result
    /// fenced on the lease, and counts and logs what came of it.
    async fn fetch_deliver_and_save(&self, claimed: Claimed) -> DrainReport {
        self.fetch_deliver_and_save_keeping(claimed).await.0
    }

    /// [`Processor::fetch_deliver_and_save`], with the job as saved when
    /// its save was written.
    async fn fetch_deliver_and_save_keeping(&self, claimed: Claimed) -> (DrainReport, Option<Job>) {
        let Claimed { job, lease, span } = claimed;
        self.fetch_deliver_and_save_in_span(job, lease)
            .instrument(span)
            .await
    }

    /// Claims `tenant`'s job `id` now and makes its due attempts, as a drain
    /// would, outside the drain's slots: the first attempt of a synchronous
    /// publish (`?sync=true`, SPEC section 10), which may come from an
    /// intake with processors elsewhere (the lease keeps them apart). The
    /// job as saved; `None` when it could not be claimed (another
    /// processor holds it, or it is not due) or its save was not written.
    pub async fn attempt_now(&self, tenant: &TenantId, id: domain::JobId) -> Option<Job> {
        let due = DueJob {
            id,
            tenant: tenant.clone(),
            due_at: self.clock.now(),
        };
        let (_, claimed) = self.claim(due, &CancellationToken::new()).await;
        self.fetch_deliver_and_save_keeping(claimed?).await.1
    }

    async fn fetch_deliver_and_save_in_span(&self, job: Job, mut lease: Lease) -> (DrainReport, Option<Job>) {
        let mut report = DrainReport::default();
        let job = self.fetch_and_deliver(job, &mut lease).await;
        let saved = self.save_fenced(&job, &lease).await;
        self.in_flight.let_go(job.id());
        let written = matches!(saved, Ok(Fenced::Written));
        match saved {
            Ok(Fenced::Written) => match job.status() {
                JobStatus::Complete => {
                    report.delivered += 1;
                    self.metrics.job_delivered();
                    tracing::info!(attempts = job.delivery().attempts, "job delivered");
                }
                JobStatus::Failed => {
                    report.dead_lettered += 1;
                    self.metrics.job_dead_lettered();
                    tracing::warn!(
                        job_id = %job.id(),
                        attempts = job.delivery().attempts,
                        error = job.delivery().last_error.as_deref().unwrap_or(""),
                        "job dead-lettered"
                    );
                }
                JobStatus::Pending | JobStatus::Delivering => {
                    report.retried += 1;
                    self.metrics.job_retried();
                    tracing::info!(
                        status = job.status().as_str(),
                        next_attempt_at = ?job.due_at(),
                        "job left due for a later run"
                    );
                }
            },
            Ok(Fenced::LeaseLost) => {
                report.fenced += 1;
                tracing::warn!(job_id = %job.id(), "lease was taken over; our result was discarded");
            }
            Err(err) if !err.is_determinate() => {
                report.store_errors += 1;
                tracing::warn!(job_id = %job.id(), error = %err, "save outcome unknown; if it did not land, the job is due again when the lease expires");
            }
            Err(err) => {
                report.store_errors += 1;
                tracing::warn!(job_id = %job.id(), error = %err, "could not save; the job is due again when the lease expires");
            }
        }
        (report, written.then_some(job))
    }

    /// The fenced save, re-issued while its outcome is unknown: a save
    /// cannot apply twice (it is fenced on the lease it spends). A re-issued
    /// save that finds the lease spent reads the job back: if it is exactly
    /// what we saved, the earlier save landed.
    async fn save_fenced(&self, job: &Job, lease: &Lease) -> Result<Fenced, store::StoreError> {
        const TRIES: u32 = 3;
        let mut pause = Duration::from_millis(100);
        let mut unknown = false;
        let mut tries = 1;
        loop {
            match self.store.save(job, lease, self.clock.now()).await {
                Err(err) if !err.is_determinate() && tries < TRIES => {
                    tracing::warn!(job_id = %job.id(), error = %err, "save outcome unknown; saving again");
                    unknown = true;
                    tries += 1;
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Ok(Fenced::LeaseLost) if unknown => {
                    let landed = matches!(
                        self.store.get_job(job.tenant(), job.id()).await,
                        Ok(Some(stored)) if stored == *job
                    );
                    return Ok(if landed {
                        Fenced::Written
                    } else {
                        Fenced::LeaseLost
                    });
                }
                // Whatever the re-issue met, the first save may have landed.
                Err(err) if unknown => {
                    return Err(store::StoreError::Indeterminate(format!(
                        "{err}, after a save whose outcome is unknown"
                    )));
                }
                saved => return saved,
            }
        }
    }

    /// One provider fetch, timed, counted and logged in its own span;
    /// `query` names what it is for (`jobId`, or a thin event's `eventId`).
    async fn fetch_one(
        &self,
        query: (&'static str, String),
        name: String,
        attempt: u32,
    ) -> (String, http::Fetched, Duration) {
        let span = tracing::debug_span!("fetch", provider = %name, attempt);
        async {
            let provider = self.providers.get(&name).cloned();
            let started = Instant::now();
            let fetched = match provider {
                Some(provider) => {
                    http::fetch_provider(&self.http, &provider, &query, self.config.max_response_bytes).await
                }
                None => http::Fetched::from(FetchOutcome::Permanent {
                    status: None,
                    error: format!("provider {name:?} is no longer configured"),
                }),
            };
            let took = started.elapsed();
            let result = match &fetched.outcome {
                FetchOutcome::Ok { .. } => FetchResult::Ok,
                FetchOutcome::Retryable { .. } => FetchResult::Retryable,
                FetchOutcome::Permanent { .. } => FetchResult::Permanent,
            };
            let (status, error) = (fetched.outcome.status(), fetched.outcome.error());
            self.metrics.provider_fetched(&name, result, took);
            tracing::debug!(
                outcome = result.as_str(),
                status,
                error,
                duration_ms = took.as_millis() as u64,
                "provider fetched"
            );
            (name, fetched, took)
        }
        .instrument(span)
        .await
    }

    /// One due provider of `job`: a thin event's delivery shares the
    /// event's fetch (`thin.rs`); any other job fetches with its `jobId`.
    async fn fetch_for(&self, job: &Job, name: String, attempt: u32) -> (String, thin::Flown) {
        match job.payload() {
            domain::Payload::OfEvent(event) => {
                let flown = self
                    .fetch_for_event(job.tenant(), *event, name.clone(), attempt)
                    .await;
                (name, flown)
            }
            domain::Payload::Results { .. } | domain::Payload::Event { .. } => {
                let (name, fetched, took) = self
                    .fetch_one(("jobId", job.id().to_string()), name, attempt)
                    .await;
                (name, thin::Flown::fetched(fetched, took))
            }
        }
    }

    /// Fetches whatever providers are due, then delivers the callback if the
    /// job is ready for it. Pure apart from the HTTP calls (and, for a
    /// thin event's delivery, the results kept on its event).
    async fn fetch_and_deliver(&self, mut job: Job, lease: &mut Lease) -> Job {
        let now = self.clock.now();
        let due = job.providers_due(now);
        if !due.is_empty()
            && let Some(reason) = self.refused_by_target(&job).await
        {
            self.count_attempt(&job, DeliveryResult::Abandoned, None);
            tracing::info!(error = reason.as_str(), "callback not sent; nothing fetched");
            job.abandon(&reason, self.clock.now());
            return job;
        }
        if !due.is_empty() {
            let fetches = due.into_iter().map(|name| {
                let attempt = job
                    .providers()
                    .iter()
                    .find(|p| p.name == name)
                    .map_or(1, |p| p.attempts + 1);
                self.fetch_for(&job, name, attempt)
            });
            let outcomes = futures::future::join_all(fetches).await;
            let done = self.clock.now();
            for (name, flown) in outcomes {
                let tried = Tried {
                    at: now,
                    took: flown.took,
                    body: flown.body,
                    headers: Default::default(),
                };
                let mut recorded = job.clone();
                let retryable = matches!(flown.outcome, FetchOutcome::Retryable { .. });
                self.with_rng(|rng| {
                    recorded.record_fetch(&name, flown.outcome, tried.clone(), done, &self.config.retry, rng)
                });
                let exhausted = recorded
                    .providers()
                    .iter()
                    .find(|p| p.name == name)
                    .filter(|p| retryable && p.status == domain::ProviderStatus::Failed)
                    .and_then(domain::SettledResult::of_provider);
                let thin_event = match job.payload() {
                    domain::Payload::OfEvent(event) => Some(*event),
                    domain::Payload::Results { .. } | domain::Payload::Event { .. } => None,
                };
                job = match (thin_event, exhausted) {
                    // A thin event's provider out of attempts: every
                    // delivery of the event reports the failure kept first.
                    (Some(event), Some(failed)) => {
                        let tenant = job.tenant().clone();
                        let kept = self.settle_exhausted(&tenant, event, &name, failed).await;
                        self.with_rng(|rng| {
                            job.record_fetch(
                                &name,
                                kept.to_fetch_outcome(),
                                tried,
                                done,
                                &self.config.retry,
                                rng,
                            )
                        });
                        job
                    }
                    _ => recorded,
                };
            }
            self.fit_into_store(&mut job);
        }
        let now = self.clock.now();
        if job.delivery_due(now) {
            let attempt = job.delivery().attempts + 1;
            let span = tracing::debug_span!("callback", attempt);
            let (outcome, answer, took) = self.deliver(&job, lease, now).instrument(span).await;
            let tried = Tried {
                at: now,
                took,
                body: answer.body,
                headers: answer.headers,
            };
            let done = self.clock.now();
            self.with_rng(|rng| job.record_delivery(outcome, tried, done, &self.config.retry, rng));
            self.fit_into_store(&mut job);
        }
        job
    }

    /// One signed delivery attempt: its outcome, what the receiver
    /// answered besides its status, and how long it took (`None` when
    /// nothing was sent).
    async fn deliver(
        &self,
        job: &Job,
        lease: &mut Lease,
        now: Timestamp,
    ) -> (CallbackOutcome, http::Answer, Option<Duration>) {
        let prepared = match self.prepare(job, now).await {
            Ok(prepared) => prepared,
            Err(outcome) => {
                let result = match outcome {
                    CallbackOutcome::Abandoned { .. } => DeliveryResult::Abandoned,
                    _ => DeliveryResult::NotSent,
                };
                self.count_attempt(job, result, None);
                tracing::info!(error = outcome.error().unwrap_or(""), "callback not sent");
                return (outcome, http::Answer::default(), None);
            }
        };
        let endpoint = prepared
            .endpoint
            .as_ref()
            .map(|(endpoint, _)| Arc::clone(endpoint));
        let mut auth = match &endpoint {
            Some(endpoint) => match self.auth_header(endpoint, None).await {
                Ok(auth) => auth,
                Err(outcome) => {
                    self.count_attempt(job, DeliveryResult::NotSent, None);
                    tracing::info!(error = outcome.error().unwrap_or(""), "callback not sent");
                    return (outcome, http::Answer::default(), None);
                }
            },
            None => None,
        };
        let signature = signing::signature_header(
            &prepared.secrets,
            &prepared.message_id,
            now.timestamp(),
            &prepared.body,
        );
        let body = bytes::Bytes::from(prepared.body);
        let send = |auth: Option<(String, Credential)>| {
            let (signature, body) = (signature.clone(), body.clone());
            let (destination, message_id) = (&prepared.destination, &prepared.message_id);
            let (headers, timeout) = (&prepared.headers, prepared.timeout);
            async move {
                match destination {
                    targets::Destination::Http(url) => {
                        http::deliver_callback(
                            &self.callback_http,
                            &self.config.callback_network,
                            http::Callback {
                                url,
                                message_id,
                                headers,
                                auth,
                                signature,
                                body,
                                timestamp: now.timestamp(),
                            },
                            timeout,
                        )
                        .await
                    }
                    targets::Destination::Queue { queue, group } => {
                        let message = sqs::Message {
                            body: &body,
                            id: message_id,
                            timestamp: now.timestamp(),
                            signature: &signature,
                            group,
                        };
                        let sent = self.queues.send(queue, message, timeout).await;
                        let answer = http::Answer {
                            body: sent.answer,
                            ..http::Answer::default()
                        };
                        (sent.outcome, answer)
                    }
                }
            }
        };
        // The lease must outlast the call: an endpoint's own timeout may be
        // longer than the lease it was claimed with.
        if let Err(not) = self.lease_for(job, lease, prepared.timeout).await {
            self.count_attempt(job, DeliveryResult::NotSent, None);
            return (not.outcome(), http::Answer::default(), None);
        }
        let started = Instant::now();
        let (mut outcome, mut answer) = send(auth.clone()).await;
        // An OAuth2 token refused: a new one, and the attempt once more at
        // once (the same signature: it is still fresh).
        if outcome.status() == Some(401)
            && let Some(endpoint) = &endpoint
            && matches!(endpoint.auth, Some(domain::EndpointAuth::OAuth2(_)))
        {
            let refused = auth.take().map(|(_, value)| value);
            let token = refused
                .as_ref()
                .and_then(|v| v.expose().strip_prefix("Bearer ").map(Credential::new));
            tracing::info!("callback answered 401; fetching a new OAuth2 token and trying again");
            match self.auth_header(endpoint, token.as_ref()).await {
                Ok(fresh) => match self.lease_for(job, lease, prepared.timeout).await {
                    Ok(()) => (outcome, answer) = send(fresh).await,
                    Err(not) => (outcome, answer) = (not.outcome(), http::Answer::default()),
                },
                Err(failed) => (outcome, answer) = (failed, http::Answer::default()),
            }
        }
        let took = started.elapsed();
        let result = match &outcome {
            CallbackOutcome::Delivered { .. } => DeliveryResult::Delivered,
            CallbackOutcome::Gone => DeliveryResult::Gone,
            CallbackOutcome::Retryable { .. } => DeliveryResult::Retryable,
            CallbackOutcome::Abandoned { .. } => DeliveryResult::Abandoned,
        };
        let (status, error) = (outcome.status(), outcome.error());
        self.count_attempt(job, result, Some(took));
        let duration_ms = took.as_millis() as u64;
        // One line per delivery outcome at info; the answer's details at debug.
        match result {
            DeliveryResult::Delivered => tracing::info!(status, duration_ms, "callback delivered"),
            DeliveryResult::Gone => tracing::info!(status, duration_ms, "callback answered 410 Gone"),
            _ => tracing::info!(status, error, duration_ms, "callback failed"),
        }
        tracing::debug!(
            status,
            body = answer.body.as_deref().unwrap_or(""),
            "callback answer"
        );
        if let Some(read) = prepared.endpoint {
            self.record_health(read, &outcome, self.clock.now()).await;
        }
        (outcome, answer, Some(took))
    }

    fn count_attempt(&self, job: &Job, result: DeliveryResult, took: Option<Duration>) {
        match job.target() {
            Target::Callback(_) => self.metrics.callback_attempted(result, took),
            Target::Endpoint(_) => self.metrics.endpoint_attempted(result, took),
        }
    }

    /// The secrets a callback to `tenant` is signed with at `now`, read from
    /// the store at most once per [`SECRETS_CACHE_TTL`]. The error is what
    /// the job's delivery state shows, so it says nothing internal.
    async fn signing_secrets(&self, tenant: &TenantId, now: Timestamp) -> Result<Vec<SigningSecret>, String> {
        let secrets = match self.secrets.get(tenant, now) {
            Some(secrets) => secrets,
            None => match self.store.signing_secrets(tenant).await {
                Ok(Some((secrets, _))) => {
                    self.secrets.insert(tenant.clone(), secrets.clone(), now);
                    secrets
                }
                Ok(None) => {
                    return Err(format!(
                        "tenant {tenant} has no signing secret; create one with hookline secrets rotate --tenant {tenant}"
                    ));
                }
                Err(err) => {
                    tracing::warn!(%tenant, error = %err, "could not read signing secrets");
                    return Err("signing secrets could not be read; will retry".to_owned());
                }
            },
        };
        Ok(secrets.signing_at(now))
    }

    /// Makes the job fit in one store item ([`Job::fit_within`]), saying
    /// which providers' data was too large to keep.
    fn fit_into_store(&self, job: &mut Job) {
        let limit = self.store.max_job_bytes();
        for dropped in job.fit_within(limit) {
            tracing::warn!(job_id = %job.id(), provider = %dropped.provider, size = dropped.size, limit, "provider data too large to keep");
        }
    }
}
