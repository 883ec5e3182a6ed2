//! Part of scenario `cost` (SPEC section 13): what an event costs by the
//! size of its payload. Events of 1 KiB, 64 KiB (the largest kept inline,
//! [`blobs::INLINE_THRESHOLD_BYTES`]) and 1 MiB (a blob) published through
//! the real intake to 1 and 10 endpoints on DynamoDB, then delivered by a
//! real processor: DynamoDB's write and read units per event from the
//! store's capacity meter, and the blob store's requests per event.
//!
//! The blob store is [`FileBlobs`] behind a counter of its calls: each
//! call is exactly one S3 request in [`blobs::S3Blobs`] (a `put` one
//! PutObject, a `get` one GetObject, a `delete` one DeleteObject), so the
//! count is what S3 would bill without putting moto's Python server (far
//! slower than S3) on the measured path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use blobs::{BlobError, BlobRef, BlobStore, FileBlobs};
use bytes::Bytes;
use domain::{Clock, SystemClock};
use processor::ProviderCatalog;
use store::Store;
use tokio_util::sync::CancellationToken;

use crate::Settings;
use crate::fanout::{self, Receiver};
use crate::report::{Figure, number};
use crate::rig::{self, Dynamo};

const SCENARIO: &str = "cost";
const KIB: usize = 1024;
/// Payload sizes measured, serialized bytes.
const SIZES: [usize; 3] = [KIB, 64 * KIB, 1024 * KIB];
/// Endpoints each event goes to.
const FAN_OUT: [usize; 2] = [1, 10];
/// Events posted at once.
const CLIENTS: usize = 8;

/// What one (size, endpoints) case cost per event.
struct PayloadCost {
    size: usize,
    endpoints: usize,
    events: usize,
    units: fanout::Units,
    puts: f64,
    gets: f64,
    deletes: f64,
}

/// The figures and notes of every case.
pub async fn run(settings: &Settings, dynamo: &Dynamo) -> Result<(Vec<Figure>, Vec<String>)> {
    let events = if settings.quick { 4 } else { 40 };
    let mut costs = Vec::new();
    for size in SIZES {
        for endpoints in FAN_OUT {
            costs.push(case(settings, dynamo, size, endpoints, events).await?);
        }
    }
    let mut figures = Vec::new();
    let mut notes = Vec::new();
    let of_1_kib = |endpoints: usize| {
        costs
            .iter()
            .find(|c| c.size == KIB && c.endpoints == endpoints)
            .map_or((f64::NAN, f64::NAN), |c| (c.units.write, c.units.read))
    };
    let base = |endpoints: usize| of_1_kib(endpoints).0;
    for c in &costs {
        let n = c.endpoints;
        let label = format!("{} to {n}", size_label(c.size));
        let write = Figure::new(
            SCENARIO,
            "dynamodb",
            &format!("write units per event, {label}, delivered"),
            c.units.write,
            "WCU",
        );
        figures.push(if c.size > blobs::INLINE_THRESHOLD_BYTES {
            // A blob leaves only its reference in the table: the event
            // costs what a 1 KiB one does, whatever the payload's size.
            let bound = base(n) + 1.0;
            write.target(
                &format!("<= {} (the 1 KiB event's + 1)", number(bound)),
                c.units.write <= bound,
            )
        } else if c.size > KIB {
            // Inline: the payload's units are paid once per event (its
            // PutItem), not once per delivery.
            let bound = base(n) + 2.0 * (c.size / KIB) as f64;
            write.target(
                &format!("<= {} (the 1 KiB event's + 2 per KiB, once)", number(bound)),
                c.units.write <= bound,
            )
        } else {
            write
        });
        let read = Figure::new(
            SCENARIO,
            "dynamodb",
            &format!("read units per event, {label}, delivered"),
            c.units.read,
            "RCU",
        );
        figures.push(if c.size > KIB && c.size <= blobs::INLINE_THRESHOLD_BYTES {
            // The event is read about once per processor, not once per
            // delivery: a strongly consistent read is 1 unit per 4 KiB.
            let bound = of_1_kib(n).1 + (c.size / (4 * KIB)) as f64 + 4.0;
            read.target(
                &format!("<= {} (the 1 KiB event's + one read of it)", number(bound)),
                c.units.read <= bound,
            )
        } else {
            read
        });
        let puts = Figure::new(
            SCENARIO,
            "s3",
            &format!("PUT requests per event, {label}"),
            c.puts,
            "requests",
        );
        figures.push(if c.size > blobs::INLINE_THRESHOLD_BYTES {
            puts.target("= 1", (c.puts - 1.0).abs() < f64::EPSILON)
        } else {
            puts.target("= 0 (inline)", c.puts == 0.0)
        });
        figures.push(Figure::new(
            SCENARIO,
            "s3",
            &format!("GET requests per event, {label}"),
            c.gets,
            "requests",
        ));
        if c.deletes > 0.0 {
            figures.push(Figure::new(
                SCENARIO,
                "s3",
                &format!("DELETE requests per event, {label}"),
                c.deletes,
                "requests",
            ));
        }
        notes.push(format!(
            "DynamoDB, {label}, {} events, per event by operation (table + indexes): {}",
            c.events, c.units.breakdown
        ));
    }
    notes.push(format!(
        "Payload cost: each case on a fresh table, a tenant with one event type and N endpoints at one \
         loopback receiver; {events} events of distinct payloads posted ({CLIENTS} at once), then \
         drained by one processor ({}) until every delivery arrived, each body checked to carry the \
         whole payload. Payloads over {} go to the blob store (1 MiB here), smaller ones stay inline \
         in the event's item. S3 requests are the blob store's calls, counted in front of a file \
         store: `S3Blobs` makes exactly one request per call (PutObject, GetObject). A processor \
         keeps the last 16 payloads it read, so an event's N deliveries read its blob about once \
         per processor. Not counted: the bucket's lifecycle rule expiring blobs (no request billed).",
        rig::processor_defaults(),
        size_label(blobs::INLINE_THRESHOLD_BYTES),
    ));
    Ok((figures, notes))
}

fn size_label(bytes: usize) -> String {
    if bytes >= 1024 * KIB {
        format!("{} MiB", bytes / (1024 * KIB))
    } else {
        format!("{} KiB", bytes / KIB)
    }
}

async fn case(
    settings: &Settings,
    dynamo: &Dynamo,
    size: usize,
    endpoints: usize,
    events: usize,
) -> Result<PayloadCost> {
    let shutdown = CancellationToken::new();
    let result = case_on(settings, dynamo, size, endpoints, events, &shutdown).await;
    shutdown.cancel();
    result
}

async fn case_on(
    settings: &Settings,
    dynamo: &Dynamo,
    size: usize,
    endpoints: usize,
    events: usize,
    shutdown: &CancellationToken,
) -> Result<PayloadCost> {
    let store = dynamo.fresh_store("cost-payload").await?;
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let dir = tempfile::tempdir().context("a temporary directory for the blobs")?;
    let counted = Arc::new(Counted::over(FileBlobs::new(dir.path())));
    let blobs: Arc<dyn BlobStore> = Arc::clone(&counted) as Arc<dyn BlobStore>;

    let receiver = Receiver::default();
    let receiver_url = receiver.spawn(shutdown).await?;
    let key = rig::api_key(&*shared, "bench").await?;
    let clock = Arc::new(SystemClock) as Arc<dyn Clock>;
    let config = intake::IntakeConfig::new(Vec::new())
        .with_callback_network(rig::loopback())
        .with_blobs(Some(Arc::clone(&blobs)));
    let base = rig::serve_intake(
        intake::router(Arc::clone(&shared), Arc::clone(&clock), config),
        shutdown,
    )
    .await?;
    let http = rig::client_with_key(&key)?;
    fanout::register(&http, &base, &receiver_url, endpoints).await?;

    let before = store.capacity().snapshot();
    let counted_before = counted.counts();
    post_events(&http, &base, size, events, endpoints).await?;
    let processor = rig::processor(shared, clock, ProviderCatalog::default(), "cost", settings.seed)?
        .with_blobs(Some(blobs));
    let deliveries = events * endpoints;
    let deadline = Instant::now() + Duration::from_secs(if settings.quick { 60 } else { 300 });
    while receiver.delivered() < deliveries && Instant::now() < deadline {
        processor.drain(shutdown).await;
    }
    if receiver.delivered() < deliveries {
        bail!(
            "cost, {} to {endpoints}: {} of {deliveries} deliveries received before the deadline",
            size_label(size),
            receiver.delivered()
        );
    }
    if receiver.smallest_body() < size {
        bail!(
            "cost, {} to {endpoints}: a delivery carried {} bytes, less than the payload",
            size_label(size),
            receiver.smallest_body()
        );
    }
    let units = fanout::units_per_event(&before, &store.capacity().snapshot(), events);
    let (puts, gets, deletes) = counted.counts();
    let per_event = |now: u64, then: u64| (now - then) as f64 / events as f64;
    eprintln!(
        "  cost: {} to {endpoints}: {} WCU, {} S3 PUTs per event",
        size_label(size),
        number(units.write),
        number(per_event(puts, counted_before.0))
    );
    Ok(PayloadCost {
        size,
        endpoints,
        events,
        units,
        puts: per_event(puts, counted_before.0),
        gets: per_event(gets, counted_before.1),
        deletes: per_event(deletes, counted_before.2),
    })
}

/// An event of type [`fanout::EVENT_TYPE`] whose payload serializes to
/// exactly `size` bytes and differs from every other event's (`n`).
fn event_body(size: usize, n: usize) -> serde_json::Value {
    let payload = |note: String| serde_json::json!({"n": n, "note": note});
    let bare = payload(String::new()).to_string().len();
    let payload = payload("x".repeat(size.saturating_sub(bare)));
    debug_assert_eq!(payload.to_string().len(), size);
    serde_json::json!({"type": fanout::EVENT_TYPE, "payload": payload})
}

async fn post_events(
    http: &reqwest::Client,
    base: &str,
    size: usize,
    events: usize,
    endpoints: usize,
) -> Result<()> {
    use futures::StreamExt;
    let url = format!("{base}/v1/events");
    let results: Vec<Result<()>> = futures::stream::iter(0..events)
        .map(|n| {
            let request = http.post(&url).json(&event_body(size, n));
            async move {
                let response = request.send().await.context("POST /v1/events")?;
                let status = response.status();
                let answer: serde_json::Value = response.json().await.context("the event's answer")?;
                anyhow::ensure!(status == 202, "POST /v1/events answered {status}: {answer}");
                let deliveries = answer["deliveries"].as_array().map_or(0, Vec::len);
                anyhow::ensure!(
                    deliveries == endpoints,
                    "an event went to {deliveries} endpoints, not {endpoints}"
                );
                Ok(())
            }
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    results.into_iter().collect()
}

/// A blob store counting its calls: what [`blobs::S3Blobs`] would send as requests.
#[derive(Debug)]
struct Counted<B> {
    inner: B,
    puts: AtomicU64,
    gets: AtomicU64,
    deletes: AtomicU64,
}

impl<B> Counted<B> {
    fn over(inner: B) -> Self {
        Self {
            inner,
            puts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
        }
    }

    /// (puts, gets, deletes) so far.
    fn counts(&self) -> (u64, u64, u64) {
        (
            self.puts.load(Ordering::Relaxed),
            self.gets.load(Ordering::Relaxed),
            self.deletes.load(Ordering::Relaxed),
        )
    }
}

#[async_trait]
impl<B: BlobStore> BlobStore for Counted<B> {
    async fn put(&self, tenant: &str, bytes: Bytes) -> Result<BlobRef, BlobError> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.inner.put(tenant, bytes).await
    }

    async fn get(&self, tenant: &str, blob: &BlobRef) -> Result<Bytes, BlobError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get(tenant, blob).await
    }

    async fn delete(&self, tenant: &str, blob: &BlobRef) -> Result<(), BlobError> {
        self.deletes.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(tenant, blob).await
    }

    async fn purge_expired(&self) -> Result<u64, BlobError> {
        self.inner.purge_expired().await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
