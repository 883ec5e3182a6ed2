//! `Processor::drain` on a real store (SQLite in a temporary directory), a
//! `ManualClock` and a callback receiver on a loopback port: what a drain
//! reports, counts and saves for each way a job's attempt can go.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::{
    Clock, Job, JobId, JobStatus, ManualClock, NewJob, Payload, SigningSecret, Target, TenantId,
    TenantSecrets, Timestamp, signing,
};
use netguard::NetPolicy;
use processor::{DrainReport, Processor, ProcessorConfig, ProviderCatalog};
use rand::SeedableRng;
use store::{Claim, EventStore, JobStore, KeyStore, Lease, Store};
use store_sqlite::{SqliteOptions, SqliteStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// A request as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    /// The request line, e.g. `POST /hook HTTP/1.1`.
    line: String,
    id: String,
    timestamp: String,
    signature: String,
    /// The whole request head, lowercase.
    head: String,
    body: Vec<u8>,
}

/// How a receiver answers every request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// This status line, and this JSON body.
    With(&'static str, &'static str),
    Never,
}

const OK: Answer = Answer::With("200 OK", "");

/// A callback receiver (or provider) on a loopback port.
struct Receiver {
    url: url::Url,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn spawn(answer: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"))
            .parse()
            .expect("a URL");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut conn).await else {
                        return;
                    };
                    log.lock().expect("not poisoned").push(request);
                    match answer {
                        Answer::With(status, body) => {
                            let response = format!(
                                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = conn.write_all(response.as_bytes()).await;
                        }
                        Answer::Never => std::future::pending::<()>().await,
                    }
                });
            }
        });
        Self { url, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("not poisoned").clone()
    }
}

async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        bytes.extend_from_slice(&buf[..n]);
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let header = |name: &str| {
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_owned())
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while bytes.len() < head_end + length {
        let n = conn.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    Some(Received {
        line: head.lines().next().unwrap_or_default().to_owned(),
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        head: head.to_ascii_lowercase(),
        body: bytes[head_end..head_end + length].to_vec(),
    })
}

struct Harness {
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    rng: rand::rngs::StdRng,
    _dir: tempfile::TempDir,
}

fn start() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().expect("a time")
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(
            &dir.path().join("jobs.db"),
            SqliteOptions::default(),
            Arc::new(seal::Sealer::ephemeral().expect("a sealer")),
        )
        .expect("open");
        Self {
            store: Arc::new(store),
            clock: Arc::new(ManualClock::new(start())),
            rng: rand::rngs::StdRng::seed_from_u64(7),
            _dir: dir,
        }
    }

    fn processor(&self, owner: &str) -> Processor {
        self.processor_with(owner, ProviderCatalog::new([]))
    }

    fn processor_with(&self, owner: &str, providers: ProviderCatalog) -> Processor {
        let config = ProcessorConfig {
            owner: owner.to_owned(),
            lease: Duration::from_secs(30),
            callback_timeout: Duration::from_secs(2),
            seed: Some(1),
            callback_network: Arc::new(NetPolicy::loopback_allowed()),
            ..ProcessorConfig::default()
        };
        let store: Arc<dyn Store> = self.store.clone();
        let clock: Arc<dyn Clock> = self.clock.clone();
        Processor::new(store, clock, processor::http_client(), providers, config)
            .expect("a valid configuration")
    }

    async fn job(&mut self, tenant: &str, callback: &url::Url) -> Job {
        self.job_fetching(tenant, callback, &[]).await
    }

    async fn job_fetching(&mut self, tenant: &str, callback: &url::Url, providers: &[&str]) -> Job {
        let now = self.clock.now();
        let job = Job::new(
            NewJob {
                id: JobId::generate(now, &mut self.rng),
                tenant: TenantId::new(tenant),
                target: Target::Callback(callback.clone()),
                payload: Payload::Results { metadata: None },
                providers: providers.iter().map(|name| (*name).to_owned()).collect(),
            },
            now,
        );
        self.store.create_job(&job).await.expect("created");
        job
    }

    async fn secret(&mut self, tenant: &str) -> SigningSecret {
        let secret = SigningSecret::generate(&mut self.rng);
        let tenant = TenantId::new(tenant);
        let current = self.store.signing_secrets(&tenant).await.expect("read");
        let secrets = match &current {
            Some((secrets, _)) => secrets.rotated(secret.clone(), self.clock.now(), Duration::ZERO),
            None => TenantSecrets::new(secret.clone()),
        };
        let written = self
            .store
            .put_signing_secrets(&tenant, &secrets, current.map(|(_, version)| version))
            .await
            .expect("written");
        assert!(written);
        secret
    }

    async fn stored(&self, job: &Job) -> Job {
        self.store
            .get_job(job.tenant(), job.id())
            .await
            .expect("read")
            .expect("still there")
    }
}

async fn drain(processor: &Processor) -> DrainReport {
    processor.drain(&CancellationToken::new()).await
}

fn signed_by(secret: &SigningSecret, received: &Received) -> bool {
    let timestamp: i64 = received.timestamp.parse().expect("a timestamp");
    received.signature
        == signing::signature_header(
            std::slice::from_ref(secret),
            &received.id,
            timestamp,
            &received.body,
        )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivered_callback_completes_the_job_and_is_counted() {
    let mut h = Harness::new();
    let receiver = Receiver::spawn(OK).await;
    let secret = h.secret("acme").await;
    let job = h.job("acme", &receiver.url).await;
    let processor = h.processor("p1");

    let report = drain(&processor).await;

    assert_eq!(
        report,
        DrainReport {
            claimed: 1,
            delivered: 1,
            ..DrainReport::default()
        }
    );
    assert_eq!(h.stored(&job).await.status(), JobStatus::Complete);
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].id, job.id().to_string());
    assert!(
        signed_by(&secret, &received[0]),
        "signed with the tenant's secret"
    );
    let metrics = processor.metrics().encode();
    assert!(metrics.contains("hookline_jobs_delivered_total 1\n"), "{metrics}");
    assert_eq!(processor.in_flight(), 0, "nothing held once saved");
    assert_eq!(
        drain(&processor).await,
        DrainReport::default(),
        "nothing is due any more"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_without_a_secret_gets_no_callback_and_the_job_stays_due() {
    let mut h = Harness::new();
    let receiver = Receiver::spawn(OK).await;
    let job = h.job("nosecret", &receiver.url).await;
    let processor = h.processor("p1");

    let report = drain(&processor).await;

    assert_eq!(
        report,
        DrainReport {
            claimed: 1,
            retried: 1,
            ..DrainReport::default()
        }
    );
    assert!(receiver.received().is_empty(), "nothing unsigned is sent");
    let stored = h.stored(&job).await;
    assert_ne!(stored.status(), JobStatus::Complete);
    let error = stored.delivery().last_error.clone().unwrap_or_default();
    assert!(error.contains("has no signing secret"), "{error}");
    assert!(
        stored.due_at().is_some_and(|at| at > h.clock.now()),
        "due again later"
    );
    let metrics = processor.metrics().encode();
    assert!(metrics.contains("hookline_jobs_retried_total 1\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_read_again_only_once_the_cache_ttl_has_passed() {
    let mut h = Harness::new();
    let receiver = Receiver::spawn(OK).await;
    let old = h.secret("acme").await;
    let processor = h.processor("p1");
    h.job("acme", &receiver.url).await;
    assert_eq!(drain(&processor).await.delivered, 1);

    let new = h.secret("acme").await;
    h.clock.advance(Duration::from_secs(59));
    h.job("acme", &receiver.url).await;
    assert_eq!(drain(&processor).await.delivered, 1);
    h.clock
        .advance(processor::SECRETS_CACHE_TTL - Duration::from_secs(59));
    h.job("acme", &receiver.url).await;
    assert_eq!(drain(&processor).await.delivered, 1);

    let received = receiver.received();
    assert_eq!(received.len(), 3);
    assert!(signed_by(&old, &received[0]));
    assert!(
        signed_by(&old, &received[1]),
        "within the TTL: the secrets as read"
    );
    assert!(signed_by(&new, &received[2]), "after it: the rotated secret");
    assert!(!signed_by(&old, &received[2]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_of_an_expired_lease_is_counted_as_a_recovery() {
    let mut h = Harness::new();
    let receiver = Receiver::spawn(OK).await;
    h.secret("acme").await;
    let job = h.job("acme", &receiver.url).await;
    let crashed = Lease {
        id: "crashed".to_owned(),
        owner: "gone".to_owned(),
        until: start() + chrono::Duration::seconds(30),
    };
    let claim = h.store.claim(job.tenant(), job.id(), &crashed, start()).await;
    assert!(matches!(claim, Ok(Claim::Won { .. })));
    let processor = h.processor("p1");
    assert_eq!(
        drain(&processor).await,
        DrainReport::default(),
        "the lease is live"
    );

    h.clock.advance(Duration::from_secs(31));
    let report = drain(&processor).await;

    assert_eq!((report.claimed, report.recovered, report.delivered), (1, 1, 1));
    let metrics = processor.metrics().encode();
    assert!(metrics.contains("recovered_total 1\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn at_shutdown_released_work_is_free_at_once_and_its_late_save_is_fenced_off() {
    let mut h = Harness::new();
    let hanging = Receiver::spawn(Answer::Never).await;
    h.secret("acme").await;
    let job = h.job("acme", &hanging.url).await;
    let processor = Arc::new(h.processor("p1"));
    let shutdown = CancellationToken::new();
    let draining = tokio::spawn({
        let (processor, shutdown) = (Arc::clone(&processor), shutdown.clone());
        async move { processor.drain(&shutdown).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hanging.received().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the callback was never sent"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(processor.in_flight(), 1);

    // Shutdown as `run_scheduled` does it: claiming stops, and once the
    // grace period is over the leases still held are given back.
    shutdown.cancel();
    assert_eq!(processor.release_in_flight().await, 1);
    assert_eq!(processor.in_flight(), 0);
    let due = h.store.due_jobs(h.clock.now(), 10).await.expect("read");
    assert_eq!(due.len(), 1, "another processor may take it now");
    // The hung callback times out and the save finds the lease gone.
    let report = draining.await.expect("the drain ends");
    assert_eq!((report.claimed, report.fenced, report.retried), (1, 1, 0));
    assert_eq!(
        h.stored(&job).await.delivery().attempts,
        0,
        "our result was discarded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_answered_410_dead_letters_the_job() {
    let mut h = Harness::new();
    let receiver = Receiver::spawn(Answer::With("410 Gone", "")).await;
    h.secret("acme").await;
    let job = h.job("acme", &receiver.url).await;
    let processor = h.processor("p1");

    let report = drain(&processor).await;

    assert_eq!(
        report,
        DrainReport {
            claimed: 1,
            dead_lettered: 1,
            ..DrainReport::default()
        }
    );
    let stored = h.stored(&job).await;
    assert_eq!(stored.status(), JobStatus::Failed);
    assert_eq!(stored.due_at(), None, "a failed job is not due");
    let metrics = processor.metrics().encode();
    assert!(
        metrics.contains("hookline_jobs_dead_lettered_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hookline_callback_deliveries_total{outcome=\"gone\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_answered_503_leaves_the_job_due_with_the_answer_recorded() {
    let mut h = Harness::new();
    let receiver = Receiver::spawn(Answer::With("503 Service Unavailable", "")).await;
    h.secret("acme").await;
    let job = h.job("acme", &receiver.url).await;
    let processor = h.processor("p1");

    let report = drain(&processor).await;

    assert_eq!((report.claimed, report.retried, report.delivered), (1, 1, 0));
    let stored = h.stored(&job).await;
    assert_eq!(stored.delivery().attempts, 1);
    assert_eq!(stored.delivery().last_status_code, Some(503));
    assert!(stored.due_at().is_some_and(|at| at > h.clock.now()), "backed off");
    assert_eq!(drain(&processor).await, DrainReport::default(), "not due yet");
    let metrics = processor.metrics().encode();
    assert!(
        metrics.contains("hookline_callback_deliveries_total{outcome=\"retryable\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_data_is_fetched_and_delivered_in_the_signed_body() {
    let mut h = Harness::new();
    let provider = Receiver::spawn(Answer::With("200 OK", r#"{"score":7}"#)).await;
    let receiver = Receiver::spawn(OK).await;
    let secret = h.secret("acme").await;
    let job = h.job_fetching("acme", &receiver.url, &["credit"]).await;
    let catalog = ProviderCatalog::new([processor::ProviderConfig {
        name: "credit".to_owned(),
        url: provider.url.clone(),
        timeout: Duration::from_secs(2),
    }]);
    let processor = h.processor_with("p1", catalog);

    let report = drain(&processor).await;

    assert_eq!((report.claimed, report.delivered), (1, 1));
    let fetched = provider.received();
    assert_eq!(fetched.len(), 1, "fetched once");
    assert!(fetched[0].line.starts_with("GET /hook?"), "{}", fetched[0].line);
    assert!(
        fetched[0].line.contains(&job.id().to_string()),
        "{}",
        fetched[0].line
    );
    let delivered = receiver.received();
    assert_eq!(delivered.len(), 1);
    let body = String::from_utf8_lossy(&delivered[0].body);
    assert!(body.contains(r#"{"score":7}"#), "{body}");
    assert!(signed_by(&secret, &delivered[0]));
    let metrics = processor.metrics().encode();
    assert!(
        metrics.contains("hookline_provider_fetches_total{provider=\"credit\",outcome=\"ok\"} 1\n"),
        "{metrics}"
    );
}

impl Harness {
    /// A registered endpoint of `tenant` at `url` and its secret.
    async fn endpoint(
        &mut self,
        tenant: &str,
        url: &url::Url,
        owner: Option<&str>,
        types: &[&str],
    ) -> domain::Endpoint {
        let now = self.clock.now();
        let event_types = if types == ["*"] {
            domain::Subscription::All
        } else {
            domain::Subscription::Only(
                types
                    .iter()
                    .map(|t| domain::EventType::parse(t).expect("a type"))
                    .collect(),
            )
        };
        let endpoint = domain::Endpoint {
            id: domain::EndpointId::generate(now, &mut self.rng),
            tenant: TenantId::new(tenant),
            url: url.clone(),
            description: String::new(),
            owner: owner.map(|o| domain::Owner::parse(o).expect("an owner")),
            event_types,
            headers: domain::EndpointHeaders::parse(
                [("x-team".to_owned(), "billing".to_owned())]
                    .into_iter()
                    .collect(),
            )
            .expect("headers"),
            auth: None,
            timeout: None,
            status: domain::EndpointStatus::Enabled,
            secrets: TenantSecrets::new(SigningSecret::generate(&mut self.rng)),
            failing_since: None,
            created_at: now,
            updated_at: now,
        };
        self.store.create_endpoint(&endpoint).await.expect("created");
        endpoint
    }

    /// Publishes an event of `tenant` to its endpoints, as the intake does.
    async fn publish(&mut self, tenant: &str, event_type: &str, owner: Option<&str>) -> domain::Event {
        self.publish_thin(tenant, event_type, owner, &[]).await
    }

    /// Publishes an event of a type with `providers` (a thin event).
    async fn publish_thin(
        &mut self,
        tenant: &str,
        event_type: &str,
        owner: Option<&str>,
        providers: &[&str],
    ) -> domain::Event {
        let now = self.clock.now();
        let endpoints = self
            .store
            .tenant_endpoints(&TenantId::new(tenant))
            .await
            .expect("endpoints");
        let event = domain::Event::fan_out(
            domain::NewEvent {
                id: domain::EventId::generate(now, &mut self.rng),
                tenant: TenantId::new(tenant),
                event_type: domain::EventType::parse(event_type).expect("a type"),
                owner: owner.map(|o| domain::Owner::parse(o).expect("an owner")),
                payload: domain::EventPayload::Inline(
                    domain::RawJson::from_json(r#"{"invoiceId":"in_1","amount":1200.50}"#).expect("json"),
                ),
                providers: providers.iter().map(|p| (*p).to_owned()).collect(),
            },
            &endpoints,
            now,
        );
        assert_eq!(
            self.store.publish(&event, None, now).await.expect("published"),
            store::Published::Accepted
        );
        event
    }

    async fn delivery(&self, event: &domain::Event, endpoint: &domain::Endpoint) -> Job {
        let delivery = event
            .deliveries
            .iter()
            .find(|d| d.endpoint == endpoint.id)
            .expect("the event goes to the endpoint");
        self.store
            .get_job(&event.tenant, delivery.id)
            .await
            .expect("read")
            .expect("the delivery exists")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_reaches_each_subscribed_endpoint_signed_with_its_own_secret() {
    let mut h = Harness::new();
    let (first, second, other) = (
        Receiver::spawn(OK).await,
        Receiver::spawn(OK).await,
        Receiver::spawn(OK).await,
    );
    let billing = h
        .endpoint("acme", &first.url, Some("company-42"), &["invoice.paid"])
        .await;
    let everything = h.endpoint("acme", &second.url, None, &["*"]).await;
    let _unsubscribed = h.endpoint("acme", &other.url, None, &["invoice.void"]).await;
    let event = h.publish("acme", "invoice.paid", None).await;
    assert_eq!(event.deliveries.len(), 2);
    let processor = h.processor("p1");

    let report = drain(&processor).await;

    assert_eq!(
        report,
        DrainReport {
            claimed: 2,
            delivered: 2,
            ..DrainReport::default()
        }
    );
    for (receiver, endpoint, not) in [(&first, &billing, &everything), (&second, &everything, &billing)] {
        let received = receiver.received();
        assert_eq!(received.len(), 1, "one delivery to {}", endpoint.id);
        let got = &received[0];
        assert_eq!(got.id, event.id.to_string(), "webhook-id is the event's id");
        assert!(
            signed_by(&endpoint.secrets.current, got),
            "signed with the endpoint's own secret"
        );
        assert!(
            !signed_by(&not.secrets.current, got),
            "not with another endpoint's"
        );
        assert!(got.head.contains("\r\nx-team: billing\r\n"), "{}", got.head);
        let body: serde_json::Value = serde_json::from_slice(&got.body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({
                "type": "invoice.paid",
                "timestamp": "2026-03-01T12:00:00.000Z",
                "data": {"invoiceId": "in_1", "amount": 1200.50},
            })
        );
        assert_eq!(h.delivery(&event, endpoint).await.status(), JobStatus::Complete);
    }
    assert!(
        other.received().is_empty(),
        "an endpoint not subscribed gets nothing"
    );
    let metrics = processor.metrics().encode();
    assert!(
        metrics.contains("hookline_endpoint_deliveries_total{outcome=\"delivered\"} 2\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thin_events_deliveries_drained_together_share_one_fetch_per_provider() {
    let mut h = Harness::new();
    let provider = Receiver::spawn(Answer::With("200 OK", r#"{"reading":4711}"#)).await;
    let receivers = [
        Receiver::spawn(OK).await,
        Receiver::spawn(OK).await,
        Receiver::spawn(OK).await,
    ];
    for receiver in &receivers {
        h.endpoint("acme", &receiver.url, None, &["meter.read"]).await;
    }
    let event = h.publish_thin("acme", "meter.read", None, &["meter"]).await;
    assert_eq!(event.deliveries.len(), 3);
    let catalog = ProviderCatalog::new([processor::ProviderConfig {
        name: "meter".to_owned(),
        url: provider.url.clone(),
        timeout: Duration::from_secs(2),
    }]);
    let processor = h.processor_with("p1", catalog);

    let report = drain(&processor).await;

    assert_eq!((report.claimed, report.delivered), (3, 3), "{report:?}");
    let fetched = provider.received();
    assert_eq!(fetched.len(), 1, "one fetch for the event: {fetched:?}");
    assert!(
        fetched[0]
            .line
            .starts_with(&format!("GET /hook?eventId={} ", event.id)),
        "{}",
        fetched[0].line
    );
    for receiver in &receivers {
        let received = receiver.received();
        assert_eq!(received.len(), 1);
        let body: serde_json::Value = serde_json::from_slice(&received[0].body).expect("json");
        assert_eq!(
            body["results"],
            serde_json::json!([{"provider": "meter", "status": "ok", "data": {"reading": 4711}}])
        );
        assert_eq!(
            body["data"],
            serde_json::json!({"invoiceId": "in_1", "amount": 1200.50})
        );
    }
    let stored = h
        .store
        .get_event(&event.tenant, event.id)
        .await
        .expect("read")
        .expect("the event");
    assert_eq!(
        stored.settled.get("meter"),
        Some(&domain::SettledResult::Ok {
            status: 200,
            data: serde_json::json!({"reading": 4711})
        }),
        "the result is kept on the event"
    );
    let metrics = processor.metrics().encode();
    assert!(
        metrics.contains("hookline_provider_fetches_total{provider=\"meter\",outcome=\"ok\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thin_events_later_delivery_uses_the_result_kept_on_the_event() {
    let mut h = Harness::new();
    let provider = Receiver::spawn(Answer::With("200 OK", r#"{"reading":1}"#)).await;
    let receiver = Receiver::spawn(OK).await;
    h.endpoint("acme", &receiver.url, None, &["meter.read"]).await;
    let event = h.publish_thin("acme", "meter.read", None, &["meter"]).await;
    // Another processor settled the provider already, with other data.
    let kept = domain::SettledResult::Ok {
        status: 200,
        data: serde_json::json!({"reading": 99}),
    };
    assert_eq!(
        h.store
            .settle_event_provider(&event.tenant, event.id, "meter", &kept)
            .await
            .expect("settled"),
        Some(kept)
    );
    let catalog = ProviderCatalog::new([processor::ProviderConfig {
        name: "meter".to_owned(),
        url: provider.url.clone(),
        timeout: Duration::from_secs(2),
    }]);
    let report = drain(&h.processor_with("p1", catalog)).await;

    assert_eq!(report.delivered, 1, "{report:?}");
    assert!(provider.received().is_empty(), "nothing fetched again");
    let body: serde_json::Value = serde_json::from_slice(&receiver.received()[0].body).expect("json");
    assert_eq!(body["results"][0]["data"], serde_json::json!({"reading": 99}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thin_events_deliveries_to_a_disabled_or_deleted_endpoint_fetch_nothing() {
    let mut h = Harness::new();
    let provider = Receiver::spawn(Answer::With("200 OK", r#"{"reading":1}"#)).await;
    let (first, second) = (Receiver::spawn(OK).await, Receiver::spawn(OK).await);
    let disabled = h.endpoint("acme", &first.url, None, &["meter.read"]).await;
    let deleted = h.endpoint("acme", &second.url, None, &["meter.read"]).await;
    let event = h.publish_thin("acme", "meter.read", None, &["meter"]).await;
    let (mut endpoint, version) = h
        .store
        .get_endpoint(&disabled.tenant, disabled.id)
        .await
        .expect("read")
        .expect("exists");
    endpoint.disable(domain::DisabledReason::Manual, h.clock.now());
    assert!(
        h.store
            .update_endpoint(&endpoint, version)
            .await
            .expect("written")
    );
    assert!(
        h.store
            .delete_endpoint(&deleted.tenant, deleted.id)
            .await
            .expect("deleted")
    );
    let catalog = ProviderCatalog::new([processor::ProviderConfig {
        name: "meter".to_owned(),
        url: provider.url.clone(),
        timeout: Duration::from_secs(2),
    }]);

    let report = drain(&h.processor_with("p1", catalog)).await;

    assert_eq!(report.dead_lettered, 2, "{report:?}");
    assert!(
        provider.received().is_empty(),
        "nothing fetched for deliveries not to be made"
    );
    for (endpoint, reason) in [(&disabled, "endpointDisabled"), (&deleted, "endpointDeleted")] {
        let job = h.delivery(&event, endpoint).await;
        assert_eq!(job.status(), JobStatus::Failed);
        assert_eq!(job.delivery().last_error.as_deref(), Some(reason));
        assert_eq!(job.delivery().attempts, 0, "nothing was sent");
        assert_eq!(job.due_at(), None);
    }
    assert!(first.received().is_empty() && second.received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_answering_410_is_disabled_and_its_deliveries_stop() {
    let mut h = Harness::new();
    let gone = Receiver::spawn(Answer::With("410 Gone", "")).await;
    let endpoint = h.endpoint("acme", &gone.url, None, &["*"]).await;
    let first = h.publish("acme", "invoice.paid", None).await;
    let processor = h.processor("p1");

    let report = drain(&processor).await;

    assert_eq!(report.dead_lettered, 1, "{report:?}");
    let (stored, _) = h
        .store
        .get_endpoint(&endpoint.tenant, endpoint.id)
        .await
        .expect("read")
        .expect("exists");
    assert!(
        matches!(
            stored.status,
            domain::EndpointStatus::Disabled {
                reason: domain::DisabledReason::Gone,
                ..
            }
        ),
        "{:?}",
        stored.status
    );
    assert_eq!(h.delivery(&first, &endpoint).await.status(), JobStatus::Failed);
    // A disabled endpoint is not part of a new event's fan-out.
    let later = h.publish("acme", "invoice.paid", None).await;
    assert!(later.deliveries.is_empty());
    assert_eq!(gone.received().len(), 1, "nothing more was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_to_a_disabled_or_deleted_endpoint_fail_without_being_sent() {
    let mut h = Harness::new();
    let (first, second) = (Receiver::spawn(OK).await, Receiver::spawn(OK).await);
    let disabled = h.endpoint("acme", &first.url, None, &["*"]).await;
    let deleted = h.endpoint("acme", &second.url, None, &["*"]).await;
    let event = h.publish("acme", "invoice.paid", None).await;
    let (mut endpoint, version) = h
        .store
        .get_endpoint(&disabled.tenant, disabled.id)
        .await
        .expect("read")
        .expect("exists");
    endpoint.disable(domain::DisabledReason::Manual, h.clock.now());
    assert!(
        h.store
            .update_endpoint(&endpoint, version)
            .await
            .expect("written")
    );
    assert!(
        h.store
            .delete_endpoint(&deleted.tenant, deleted.id)
            .await
            .expect("deleted")
    );
    let processor = h.processor("p1");

    let report = drain(&processor).await;

    assert_eq!(report.dead_lettered, 2, "{report:?}");
    for (endpoint, reason) in [(&disabled, "endpointDisabled"), (&deleted, "endpointDeleted")] {
        let job = h.delivery(&event, endpoint).await;
        assert_eq!(job.status(), JobStatus::Failed);
        assert_eq!(job.delivery().last_error.as_deref(), Some(reason));
        assert_eq!(job.delivery().attempts, 0, "nothing was sent");
    }
    assert!(first.received().is_empty() && second.received().is_empty());
    let metrics = processor.metrics().encode();
    assert!(
        metrics.contains("hookline_endpoint_deliveries_total{outcome=\"abandoned\"} 2\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_failing_past_the_limit_is_disabled_and_a_success_ends_a_streak() {
    let mut h = Harness::new();
    let failing = Receiver::spawn(Answer::With("503 Service Unavailable", "")).await;
    let endpoint = h.endpoint("acme", &failing.url, None, &["*"]).await;
    let healthy = Receiver::spawn(OK).await;
    let recovering = h.endpoint("acme", &healthy.url, None, &["*"]).await;
    // The second endpoint failed before: a success ends its streak.
    let (mut before, version) = h
        .store
        .get_endpoint(&recovering.tenant, recovering.id)
        .await
        .expect("read")
        .expect("exists");
    before.failing_since = Some(h.clock.now());
    assert!(h.store.update_endpoint(&before, version).await.expect("written"));
    h.publish("acme", "invoice.paid", None).await;
    let limit = Duration::from_secs(3600);
    let processor = {
        let store: Arc<dyn Store> = h.store.clone();
        let clock: Arc<dyn Clock> = h.clock.clone();
        Processor::new(
            store,
            clock,
            processor::http_client(),
            ProviderCatalog::new([]),
            ProcessorConfig {
                owner: "p1".to_owned(),
                lease: Duration::from_secs(30),
                callback_timeout: Duration::from_secs(2),
                seed: Some(1),
                callback_network: Arc::new(NetPolicy::loopback_allowed()),
                endpoint_disable_after: limit,
                ..ProcessorConfig::default()
            },
        )
        .expect("a valid configuration")
    };
    let started = h.clock.now();

    drain(&processor).await;

    let store = Arc::clone(&h.store);
    let read = |id| {
        let store = Arc::clone(&store);
        let tenant = endpoint.tenant.clone();
        async move {
            store
                .get_endpoint(&tenant, id)
                .await
                .expect("read")
                .expect("exists")
                .0
        }
    };
    assert_eq!(
        read(endpoint.id).await.failing_since,
        Some(started),
        "the first failure starts a streak"
    );
    assert_eq!(
        read(recovering.id).await.failing_since,
        None,
        "a success ends one"
    );
    // Later failures within the limit change nothing; past it, disabled.
    h.clock.advance(Duration::from_secs(1800));
    h.publish("acme", "invoice.paid", None).await;
    drain(&processor).await;
    assert!(read(endpoint.id).await.is_enabled());
    h.clock.advance(Duration::from_secs(1900));
    h.publish("acme", "invoice.paid", None).await;
    drain(&processor).await;
    let disabled = read(endpoint.id).await;
    assert!(
        matches!(
            disabled.status,
            domain::EndpointStatus::Disabled {
                reason: domain::DisabledReason::Failing,
                ..
            }
        ),
        "{:?}",
        disabled.status
    );
    assert!(read(recovering.id).await.is_enabled());
}
