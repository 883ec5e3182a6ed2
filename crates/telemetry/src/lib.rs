//! Every metric hookline exports, defined once, and the registry they live
//! in. A [`Metrics`] is owned by one app instance (an intake and the
//! processor beside it share one; tests make their own), never a process
//! global: two apps in one test binary count separately.
//!
//! Served as Prometheus/OpenMetrics text by the intake's `GET /metrics` and
//! by `hookline processor`'s own metrics port ([`Metrics::encode`]).

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s text (what Prometheus asks for).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric name starts with this.
pub const PREFIX: &str = "hookline";

/// How one provider fetch ended (SPEC section 3's classification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchResult {
    Ok,
    /// Timeouts, connection errors, 408, 429, 5xx: tried again later.
    Retryable,
    /// Other 4xx, non-JSON, oversize.
    Permanent,
}

impl FetchResult {
    /// Every outcome, for label values created before the first fetch.
    pub const ALL: [Self; 3] = [Self::Ok, Self::Retryable, Self::Permanent];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retryable => "retryable",
            Self::Permanent => "permanent",
        }
    }
}

/// How one callback attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    /// A 2xx answer.
    Delivered,
    /// `410 Gone`: the job fails at once.
    Gone,
    /// Any other answer, or none: tried again later.
    Retryable,
    /// Not sent: the tenant has no signing secret (or it, the endpoint or
    /// the event could not be read): tried again later.
    NotSent,
    /// Not sent, and never to be: the endpoint was deleted or disabled.
    Abandoned,
}

impl DeliveryResult {
    /// Every outcome, for label values created before the first attempt.
    pub const ALL: [Self; 5] = [
        Self::Delivered,
        Self::Gone,
        Self::Retryable,
        Self::NotSent,
        Self::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Gone => "gone",
            Self::Retryable => "retryable",
            Self::NotSent => "not_sent",
            Self::Abandoned => "abandoned",
        }
    }
}

/// Whether DynamoDB billed read or write units for an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// One operation's consumed capacity so far.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityReading {
    pub operation: &'static str,
    pub access: Access,
    /// Units on the table itself.
    pub table: f64,
    /// Units on its indexes together.
    pub indexes: f64,
}

/// Something that knows what its store calls have cost (DynamoDB's
/// `ReturnConsumedCapacity`), read at every scrape.
pub trait CapacitySource: Send + Sync + fmt::Debug {
    fn capacity(&self) -> Vec<CapacityReading>;
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    provider: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// What `hookline_build_info` says: the release every crate of the
/// workspace shares.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The outcomes [`Metrics::source_request`] counts.
pub const SOURCE_OUTCOMES: [&str; 3] = ["accepted", "unverified", "unsplittable"];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// HTTP calls: 5 ms to about 20 s.
fn http_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

/// Drains: 10 ms to about 45 min.
fn run_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 4.0, 10))
}

/// One app instance's metrics. Cheap to share (`Arc<Metrics>`); every
/// method is a few atomic operations.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    jobs_accepted: Counter,
    jobs_rejected: Family<ReasonLabel, Counter>,
    due_backlog: Gauge,
    oldest_due_age: Gauge<f64, AtomicU64>,
    build_info: Family<VersionLabel, Gauge>,
    runs: Counter,
    run_duration: Histogram,
    claims: Family<ResultLabel, Counter>,
    lease_expiries_recovered: Counter,
    provider_fetches: Family<FetchLabels, Counter>,
    provider_fetch_duration: HistogramFamily<ProviderLabel>,
    callback_deliveries: Family<OutcomeLabel, Counter>,
    endpoint_deliveries: Family<OutcomeLabel, Counter>,
    callback_duration: Histogram,
    events_published: Counter,
    source_requests: Family<OutcomeLabel, Counter>,
    jobs_delivered: Counter,
    jobs_retried: Counter,
    jobs_dead_lettered: Counter,
    capacity: Arc<CapacityCollector>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let metrics = Self {
            jobs_accepted: Counter::default(),
            jobs_rejected: Family::default(),
            due_backlog: Gauge::default(),
            oldest_due_age: Gauge::default(),
            build_info: Family::default(),
            runs: Counter::default(),
            run_duration: run_histogram(),
            claims: Family::default(),
            lease_expiries_recovered: Counter::default(),
            provider_fetches: Family::default(),
            provider_fetch_duration: Family::new_with_constructor(http_histogram),
            callback_deliveries: Family::default(),
            endpoint_deliveries: Family::default(),
            callback_duration: http_histogram(),
            events_published: Counter::default(),
            source_requests: Family::default(),
            jobs_delivered: Counter::default(),
            jobs_retried: Counter::default(),
            jobs_dead_lettered: Counter::default(),
            capacity: Arc::default(),
            registry: Registry::default(),
        };
        registry.register(
            "jobs_accepted",
            "Jobs accepted by the intake (202); idempotent replays are not counted",
            metrics.jobs_accepted.clone(),
        );
        registry.register(
            "jobs_rejected",
            "Job submissions refused, by reason (the problem type: validation, unauthorized, body-too-large, ...)",
            metrics.jobs_rejected.clone(),
        );
        registry.register(
            "due_backlog",
            "Jobs the processor's last poll found due and unleased: an estimate from the poll itself \
             (no scan), capped at the batch size, so the cap means at least that many",
            metrics.due_backlog.clone(),
        );
        registry.register(
            "oldest_due_job_age_seconds",
            "How long the oldest due job has been due (0 when nothing is due), as the processor last read \
             it from the head of the due index (at most every 15 s, one read per due-index shard)",
            metrics.oldest_due_age.clone(),
        );
        registry.register(
            "build_info",
            "Always 1; the version label says which hookline release this process runs",
            metrics.build_info.clone(),
        );
        registry.register("processor_runs", "Drains run", metrics.runs.clone());
        registry.register(
            "processor_run_duration_seconds",
            "How long each drain took",
            metrics.run_duration.clone(),
        );
        registry.register(
            "claims",
            "Claim attempts: won, or lost to another processor",
            metrics.claims.clone(),
        );
        registry.register(
            "lease_expiries_recovered",
            "Jobs claimed from a processor whose lease had expired (it died or stalled mid-job)",
            metrics.lease_expiries_recovered.clone(),
        );
        registry.register(
            "provider_fetches",
            "Provider fetches by provider and outcome (ok, retryable, permanent)",
            metrics.provider_fetches.clone(),
        );
        registry.register(
            "provider_fetch_duration_seconds",
            "Provider fetch latency, by provider",
            metrics.provider_fetch_duration.clone(),
        );
        registry.register(
            "callback_deliveries",
            "Callback attempts by outcome (delivered, gone, retryable, not_sent)",
            metrics.callback_deliveries.clone(),
        );
        registry.register(
            "endpoint_deliveries",
            "Delivery attempts to registered endpoints by outcome (delivered, gone, retryable, not_sent, abandoned)",
            metrics.endpoint_deliveries.clone(),
        );
        registry.register(
            "events_published",
            "Events accepted (each fans out to its endpoints' deliveries)",
            metrics.events_published.clone(),
        );
        registry.register(
            "source_requests",
            "Requests inbound sources received, by outcome: accepted, unverified, unsplittable (no source id as a label)",
            metrics.source_requests.clone(),
        );
        registry.register(
            "callback_duration_seconds",
            "Callback and endpoint delivery latency, of attempts that were sent",
            metrics.callback_duration.clone(),
        );
        registry.register(
            "jobs_delivered",
            "Jobs completed: their callback was acknowledged",
            metrics.jobs_delivered.clone(),
        );
        registry.register(
            "jobs_retried",
            "Processed jobs left due for a later attempt",
            metrics.jobs_retried.clone(),
        );
        registry.register(
            "jobs_dead_lettered",
            "Jobs that ended failed (the dead letter)",
            metrics.jobs_dead_lettered.clone(),
        );
        registry.register_collector(Box::new(Arc::clone(&metrics.capacity)));
        let metrics = Self { registry, ..metrics };
        // Every label value of a closed set exists from the start (at 0), so
        // an alert on a rate has a series before the first such event.
        metrics
            .build_info
            .get_or_create(&VersionLabel { version: VERSION })
            .set(1);
        for result in ["won", "lost"] {
            drop(metrics.claims.get_or_create(&ResultLabel { result }));
        }
        for result in DeliveryResult::ALL {
            let outcome = OutcomeLabel {
                outcome: result.as_str(),
            };
            drop(metrics.callback_deliveries.get_or_create(&outcome));
            drop(metrics.endpoint_deliveries.get_or_create(&outcome));
        }
        for outcome in SOURCE_OUTCOMES {
            drop(metrics.source_requests.get_or_create(&OutcomeLabel { outcome }));
        }
        metrics
    }

    /// Creates the label values of the providers a processor knows (each
    /// fetch outcome at 0, and their latency histograms).
    pub fn expect_providers<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        for provider in names {
            for result in FetchResult::ALL {
                drop(self.provider_fetches.get_or_create(&FetchLabels {
                    provider: provider.to_owned(),
                    outcome: result.as_str(),
                }));
            }
            drop(self.provider_fetch_duration.get_or_create(&ProviderLabel {
                provider: provider.to_owned(),
            }));
        }
    }

    /// Creates the label values of the reasons a job submission can be refused for.
    pub fn expect_rejections(&self, reasons: &[&'static str]) {
        for reason in reasons {
            drop(self.jobs_rejected.get_or_create(&ReasonLabel { reason }));
        }
    }

    /// The text a Prometheus scrape gets ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            // Only a collector can fail; what was written is still useful.
            text.push_str(&format!("# encoding stopped: {err}\n# EOF\n"));
        }
        text
    }

    /// Adds a store's consumed capacity to every later scrape.
    pub fn watch_capacity(&self, source: Arc<dyn CapacitySource>) {
        self.capacity.lock().push(source);
    }

    pub fn job_accepted(&self) {
        self.jobs_accepted.inc();
    }

    /// `reason` is a problem type's short name: a small fixed set.
    pub fn job_rejected(&self, reason: &'static str) {
        self.jobs_rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// What a poll of due work returned (at most its limit).
    pub fn due_backlog(&self, found: usize) {
        self.due_backlog.set(i64::try_from(found).unwrap_or(i64::MAX));
    }

    /// How long the oldest due job has been due (zero: nothing is due).
    pub fn oldest_due_job_age(&self, age: Duration) {
        self.oldest_due_age.set(age.as_secs_f64());
    }

    pub fn drain_finished(&self, took: Duration) {
        self.runs.inc();
        self.run_duration.observe(took.as_secs_f64());
    }

    pub fn claim(&self, won: bool) {
        let result = if won { "won" } else { "lost" };
        self.claims.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn lease_expiry_recovered(&self) {
        self.lease_expiries_recovered.inc();
    }

    pub fn provider_fetched(&self, provider: &str, result: FetchResult, took: Duration) {
        self.provider_fetches
            .get_or_create(&FetchLabels {
                provider: provider.to_owned(),
                outcome: result.as_str(),
            })
            .inc();
        self.provider_fetch_duration
            .get_or_create(&ProviderLabel {
                provider: provider.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// One callback attempt; `took` is `None` when nothing was sent.
    pub fn callback_attempted(&self, result: DeliveryResult, took: Option<Duration>) {
        self.callback_deliveries
            .get_or_create(&OutcomeLabel {
                outcome: result.as_str(),
            })
            .inc();
        if let Some(took) = took {
            self.callback_duration.observe(took.as_secs_f64());
        }
    }

    /// One delivery attempt to a registered endpoint; `took` is `None`
    /// when nothing was sent. (No endpoint id as a label: their number is
    /// the tenants'.)
    pub fn endpoint_attempted(&self, result: DeliveryResult, took: Option<Duration>) {
        self.endpoint_deliveries
            .get_or_create(&OutcomeLabel {
                outcome: result.as_str(),
            })
            .inc();
        if let Some(took) = took {
            self.callback_duration.observe(took.as_secs_f64());
        }
    }

    pub fn event_published(&self) {
        self.events_published.inc();
    }

    /// A request to an inbound source: `accepted`, `unverified` or
    /// `unsplittable` (a closed set, so the label stays bounded).
    pub fn source_request(&self, outcome: &'static str) {
        debug_assert!(SOURCE_OUTCOMES.contains(&outcome), "{outcome}");
        self.source_requests
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn job_delivered(&self) {
        self.jobs_delivered.inc();
    }

    pub fn job_retried(&self) {
        self.jobs_retried.inc();
    }

    pub fn job_dead_lettered(&self) {
        self.jobs_dead_lettered.inc();
    }
}

/// Reads the watched stores' consumed capacity at scrape time, as two
/// counters by operation and target (table or indexes).
#[derive(Debug, Default)]
struct CapacityCollector {
    sources: Mutex<Vec<Arc<dyn CapacitySource>>>,
}

impl CapacityCollector {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<dyn CapacitySource>>> {
        self.sources
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Collector for CapacityCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let readings: Vec<CapacityReading> = self.lock().iter().flat_map(|s| s.capacity()).collect();
        if readings.is_empty() {
            return Ok(());
        }
        for (access, name, help) in [
            (
                Access::Read,
                "dynamodb_read_capacity_units",
                "Read capacity units DynamoDB reported consuming, by operation and target (table, indexes)",
            ),
            (
                Access::Write,
                "dynamodb_write_capacity_units",
                "Write capacity units DynamoDB reported consuming, by operation and target \
                 (table, indexes: index writes included)",
            ),
        ] {
            let mine: Vec<&CapacityReading> = readings.iter().filter(|r| r.access == access).collect();
            if mine.is_empty() {
                continue;
            }
            let mut family = encoder.encode_descriptor(name, help, None, ConstCounter::<f64>::TYPE)?;
            for reading in mine {
                for (target, units) in [("table", reading.table), ("indexes", reading.indexes)] {
                    let labels = [("operation", reading.operation), ("target", target)];
                    ConstCounter::new(units).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;

    impl CapacitySource for Fixed {
        fn capacity(&self) -> Vec<CapacityReading> {
            vec![CapacityReading {
                operation: "save job",
                access: Access::Write,
                table: 2.0,
                indexes: 3.0,
            }]
        }
    }

    #[test]
    fn instances_count_separately_and_encode_what_they_counted() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.job_accepted();
        a.job_rejected("validation");
        a.provider_fetched("gas", FetchResult::Retryable, Duration::from_millis(20));
        a.callback_attempted(DeliveryResult::Delivered, Some(Duration::from_millis(3)));
        let text = a.encode();
        assert!(text.contains("hookline_jobs_accepted_total 1\n"), "{text}");
        assert!(
            text.contains("hookline_jobs_rejected_total{reason=\"validation\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("hookline_provider_fetches_total{provider=\"gas\",outcome=\"retryable\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("hookline_provider_fetch_duration_seconds_count{provider=\"gas\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(!text.contains("dynamodb"), "no capacity without a DynamoDB store");
        assert!(b.encode().contains("hookline_jobs_accepted_total 0\n"));
    }

    #[test]
    fn closed_label_sets_have_their_series_before_anything_happens() {
        let metrics = Metrics::new();
        metrics.expect_providers(["gas"]);
        metrics.expect_rejections(&["validation", "unauthorized"]);
        let text = metrics.encode();
        for series in [
            format!("hookline_build_info{{version=\"{VERSION}\"}} 1\n"),
            "hookline_oldest_due_job_age_seconds 0.0\n".to_owned(),
            "hookline_claims_total{result=\"lost\"} 0\n".to_owned(),
            "hookline_endpoint_deliveries_total{outcome=\"gone\"} 0\n".to_owned(),
            "hookline_callback_deliveries_total{outcome=\"retryable\"} 0\n".to_owned(),
            "hookline_source_requests_total{outcome=\"unverified\"} 0\n".to_owned(),
            "hookline_provider_fetches_total{provider=\"gas\",outcome=\"permanent\"} 0\n".to_owned(),
            "hookline_provider_fetch_duration_seconds_count{provider=\"gas\"} 0\n".to_owned(),
            "hookline_jobs_rejected_total{reason=\"unauthorized\"} 0\n".to_owned(),
        ] {
            assert!(text.contains(&series), "{series} in {text}");
        }
        metrics.oldest_due_job_age(Duration::from_millis(2500));
        assert!(
            metrics
                .encode()
                .contains("hookline_oldest_due_job_age_seconds 2.5\n"),
            "{}",
            metrics.encode()
        );
    }

    #[test]
    fn capacity_is_read_at_scrape_time() {
        let metrics = Metrics::new();
        metrics.watch_capacity(Arc::new(Fixed));
        let text = metrics.encode();
        assert!(
            text.contains(
                "hookline_dynamodb_write_capacity_units_total{operation=\"save job\",target=\"indexes\"} 3.0\n"
            ),
            "{text}"
        );
        assert!(!text.contains("read_capacity"), "{text}");
    }
}
