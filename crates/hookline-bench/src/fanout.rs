//! Scenario `fanout` (SPEC section 9): a tenant with one event type and N
//! endpoints, all at our own receiver; events published through the real
//! intake (`POST /v1/events`, in this process), then their deliveries
//! drained by one processor. Cases: 1 event to 1 endpoint, and to 10.
//!
//! Figures: events/s accepted, beside the same intake over a store that
//! accepts a publish without writing it ([`NoStore`]: it still reads the
//! event type and the tenant's endpoints); deliveries/s drained (first
//! claim to last delivery received), beside the store's raw single-item
//! writes/s measured on a fresh store of the same kind (the e2e scenario's
//! ceiling, `deliveries/s x 3 writes per delivery / ceiling`);
//! creation-to-delivery latency (the body's `timestamp` is the event's
//! creation); on SQLite a trickle of events posted one at a time to an
//! intake that wakes a processor beside it; on DynamoDB the write units one
//! event of 1 KiB costs, delivered, beside the SPEC's bound 2 + 6N.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use domain::{Clock, SystemClock};
use processor::ProviderCatalog;
use store::Store;
use store_dynamodb::DynamoStore;
use tokio_util::sync::CancellationToken;

use crate::Settings;
use crate::nostore::NoStore;
use crate::report::{Figure, ScenarioReport, number, percentile};
use crate::rig::{self, Dynamo};
use crate::timed::Timed;

const SCENARIO: &str = "fanout";
pub(crate) const EVENT_TYPE: &str = "invoice.paid";
/// Clients posting events at once, closed loop (as e2e accepts jobs).
const CLIENTS: usize = 32;
/// Store writes a happy-path delivery costs: create, claim, final save.
const WRITES_PER_DELIVERY: f64 = 3.0;
/// Serialized size of every event's payload.
const PAYLOAD_BYTES: usize = 1024;
/// Events/s of the trickle: low enough that no queue forms.
const TRICKLE_RATE: f64 = 50.0;
/// What SPEC section 9 bounds an event's write units by on the happy path.
fn spec_write_bound(endpoints: usize) -> f64 {
    2.0 + 6.0 * endpoints as f64
}

/// Events per case: (endpoints, events).
struct Sizes {
    sqlite: [(usize, usize); 2],
    dynamo: [(usize, usize); 2],
    trickle: usize,
    /// SQLite cases run this many times, each on a fresh store; the round
    /// of median deliveries/s is reported (runs of one build spread by
    /// 10-20% on a shared 2-core machine).
    sqlite_rounds: usize,
}

fn sizes(settings: &Settings) -> Sizes {
    if settings.quick {
        Sizes {
            sqlite: [(1, 100), (10, 50)],
            dynamo: [(1, 20), (10, 10)],
            trickle: 25,
            sqlite_rounds: 1,
        }
    } else {
        Sizes {
            sqlite: [(1, 5_000), (10, 2_000)],
            dynamo: [(1, 300), (10, 100)],
            trickle: 200,
            sqlite_rounds: 3,
        }
    }
}

/// What one case measured.
struct Case {
    endpoints: usize,
    events: usize,
    accepted_per_s: f64,
    /// The same intake over [`NoStore`], the same events.
    nostore_per_s: f64,
    deliveries_per_s: f64,
    /// Creation-to-delivery, microseconds, sorted.
    latencies_us: Vec<u64>,
    duplicates: u64,
    /// Where the processor's slot time went, per delivery.
    spent: String,
    /// DynamoDB only: units per event, and by operation.
    units: Option<Units>,
}

pub(crate) struct Units {
    pub(crate) write: f64,
    pub(crate) read: f64,
    pub(crate) breakdown: String,
}

/// One store's cases and its ceiling.
struct OnStore {
    cases: Vec<Case>,
    ceiling_writes_per_s: f64,
}

pub async fn run(settings: &Settings, dynamo: &Dynamo) -> Result<ScenarioReport> {
    let sizes = sizes(settings);
    let mut cases = Vec::new();
    let mut dirs = Vec::new();
    let mut rounds_note = Vec::new();
    for (endpoints, events) in sizes.sqlite {
        let mut rounds = Vec::new();
        for _ in 0..sizes.sqlite_rounds.max(1) {
            let (store, dir) = rig::sqlite_store()?;
            dirs.push(dir);
            rounds.push(case(settings, store, None, endpoints, events).await?);
        }
        rounds_note.push(format!(
            "1 -> {endpoints}: {}",
            rounds
                .iter()
                .map(|c| number(c.deliveries_per_s))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        rounds.sort_by(|a, b| a.deliveries_per_s.total_cmp(&b.deliveries_per_s));
        let middle = rounds.len() / 2;
        cases.push(rounds.swap_remove(middle));
    }
    let trickle_us = trickle(settings, sizes.trickle).await?;
    let (ceiling, _ceiling_dir) = rig::sqlite_store()?;
    let on_sqlite = OnStore {
        ceiling_writes_per_s: ceiling_of(settings, &*ceiling, &cases).await?,
        cases,
    };
    drop(dirs);

    // DynamoDB Local's JIT warmed first, so the cases do not run colder than the ceilings after them.
    let warmup = dynamo.fresh_store("fanout-warmup").await?;
    rig::raw_writes(
        &warmup,
        if settings.quick { 100 } else { 2_000 },
        64,
        settings.seed,
    )
    .await?;
    let mut cases = Vec::new();
    for (endpoints, events) in sizes.dynamo {
        let store = dynamo.fresh_store("fanout").await?;
        let shared: Arc<dyn Store> = Arc::new(store.clone());
        cases.push(case(settings, shared, Some(&store), endpoints, events).await?);
    }
    let ceiling = dynamo.fresh_store("fanout-ceiling").await?;
    let on_dynamo = OnStore {
        ceiling_writes_per_s: ceiling_of(settings, &ceiling, &cases).await?,
        cases,
    };

    let mut figures = Vec::new();
    let mut notes = Vec::new();
    for (subject, on) in [("sqlite", &on_sqlite), ("dynamodb", &on_dynamo)] {
        figures.push(Figure::new(
            SCENARIO,
            subject,
            "raw single-item writes/s (ceiling)",
            on.ceiling_writes_per_s,
            "writes/s",
        ));
        for c in &on.cases {
            let n = c.endpoints;
            figures.push(
                Figure::new(
                    SCENARIO,
                    subject,
                    &format!("accepted events/s, 1 -> {n} ({} events)", c.events),
                    c.accepted_per_s,
                    "events/s",
                )
                .against(c.nostore_per_s),
            );
            figures.push(
                Figure::new(
                    SCENARIO,
                    subject,
                    &format!("store writes/s used by the intake (events/s x (1 + {n})), 1 -> {n}"),
                    c.accepted_per_s * (1 + n) as f64,
                    "writes/s",
                )
                .against(on.ceiling_writes_per_s),
            );
            let rate = Figure::new(
                SCENARIO,
                subject,
                &format!("delivered deliveries/s, 1 -> {n} ({} deliveries)", c.events * n),
                c.deliveries_per_s,
                "deliveries/s",
            );
            figures.push(if subject == "sqlite" && n == 10 {
                rate.target(">= 10000 deliveries/s", c.deliveries_per_s >= 10_000.0)
            } else {
                rate
            });
            figures.push(
                Figure::new(
                    SCENARIO,
                    subject,
                    &format!("store writes/s used by the drain (deliveries/s x 3), 1 -> {n}"),
                    c.deliveries_per_s * WRITES_PER_DELIVERY,
                    "writes/s",
                )
                .against(on.ceiling_writes_per_s),
            );
            for p in [50.0, 99.0] {
                figures.push(Figure::new(
                    SCENARIO,
                    subject,
                    &format!("creation-to-delivery p{p}, drain, 1 -> {n}"),
                    ms(&c.latencies_us, p),
                    "ms",
                ));
            }
            if let Some(units) = &c.units {
                let bound = spec_write_bound(n);
                figures.push(
                    Figure::new(
                        SCENARIO,
                        subject,
                        &format!("write units per event, 1 KiB to {n}, delivered"),
                        units.write,
                        "WCU",
                    )
                    .target(
                        &format!("<= {} (SPEC: 2 + 6N)", number(bound)),
                        units.write <= bound,
                    ),
                );
                figures.push(Figure::new(
                    SCENARIO,
                    subject,
                    &format!("read units per event, 1 KiB to {n}, delivered"),
                    units.read,
                    "RCU",
                ));
                notes.push(format!(
                    "DynamoDB, 1 -> {n}, per event by operation (table + indexes): {}",
                    units.breakdown
                ));
            }
            notes.push(format!("{subject}, 1 -> {n}: {}", c.spent));
            if c.duplicates > 0 {
                notes.push(format!(
                    "{subject}, 1 -> {n}: {} deliveries arrived more than once (at-least-once).",
                    c.duplicates
                ));
            }
        }
        if subject == "sqlite" {
            for p in [50.0, 99.0] {
                let value = ms(&trickle_us, p);
                let figure = Figure::new(
                    SCENARIO,
                    subject,
                    &format!(
                        "creation-to-delivery p{p}, trickle of {} events/s to 1",
                        number(TRICKLE_RATE)
                    ),
                    value,
                    "ms",
                );
                figures.push(if p == 99.0 {
                    figure.target("< 50 ms", value < 50.0)
                } else {
                    figure
                });
            }
        }
    }
    notes.push(format!(
        "Each case on a fresh store: a tenant, event type `{EVENT_TYPE}`, and N endpoints subscribed \
         to it, all at one loopback receiver (an `x-endpoint` header tells them apart). Every event \
         carries a {PAYLOAD_BYTES}-byte payload. SQLite: {} and {} events; DynamoDB Local (one JVM \
         on the same cores, a few hundred writes/s): {} and {}. The events are posted first ({CLIENTS} \
         clients, closed loop, each answer checked to name N deliveries); then one processor \
         ({}) drains them. Deliveries/s = events x N / (last delivery \
         received - first claim). DynamoDB Local is warmed first with {} unmeasured writes on a table of \
         its own (the ceilings come after the cases). Creation-to-delivery in the drain includes the wait in the queue \
         (it measures the drain order); the trickle is the latency of an event that finds no queue: \
         {} events posted one at a time at {} events/s to an intake that wakes a processor beside \
         it, as `hookline serve` does.",
        sizes.sqlite[0].1,
        sizes.sqlite[1].1,
        sizes.dynamo[0].1,
        sizes.dynamo[1].1,
        rig::processor_defaults(),
        if settings.quick { 100 } else { 2_000 },
        sizes.trickle,
        number(TRICKLE_RATE),
    ));
    notes.push(format!(
        "SQLite's cases ran {} times each, each round on a fresh store, and the round of median \
         deliveries/s is the one reported (all its figures); deliveries/s round by round: {}.",
        sizes.sqlite_rounds,
        rounds_note.join("; ")
    ));
    notes.push(
        "Events/s ceiling: after the drain, the same events posted to the same intake over a store that \
         accepts a publish without writing it (`NoStore`); it still reads the event type and the \
         tenant's endpoints from the real store, as every publish does. Deliveries/s ceiling: \
         `create_job` of one-provider jobs, 64 at once, on a fresh store of the same kind (the e2e \
         scenario's), beside which the intake's writes are shown too (the event and its N deliveries: \
         1 + N items per event; on SQLite rows of one transaction, so that ratio is only indicative); a delivery costs 3 writes (created with its event, claim, final save), so the \
         ratio is the share of that ceiling the drain used."
            .to_owned(),
    );
    Ok(ScenarioReport {
        name: SCENARIO.to_owned(),
        seconds: 0.0,
        figures,
        notes,
    })
}

fn ms(sorted_us: &[u64], p: f64) -> f64 {
    percentile(sorted_us, p).map_or(f64::NAN, |us| us as f64 / 1000.0)
}

/// Raw writes/s of a fresh store: as many writes as the largest case's deliveries (at most 5,000).
async fn ceiling_of(settings: &Settings, store: &dyn Store, cases: &[Case]) -> Result<f64> {
    let deliveries = cases.iter().map(|c| c.events * c.endpoints).max().unwrap_or(100);
    let writes = if settings.quick {
        deliveries
    } else {
        deliveries.min(5_000)
    };
    rig::raw_writes(store, writes, 64, settings.seed).await
}

/// An event's body: type and a payload of [`PAYLOAD_BYTES`] serialized.
fn event_body() -> serde_json::Value {
    let payload = |note: String| serde_json::json!({"invoiceId": "in_1", "amount": 1200, "note": note});
    let bare = payload(String::new()).to_string().len();
    let payload = payload("x".repeat(PAYLOAD_BYTES.saturating_sub(bare)));
    debug_assert_eq!(payload.to_string().len(), PAYLOAD_BYTES);
    serde_json::json!({"type": EVENT_TYPE, "payload": payload})
}

/// Registers the event type and `endpoints` endpoints at `receiver` through the API.
pub(crate) async fn register(
    http: &reqwest::Client,
    base: &str,
    receiver: &str,
    endpoints: usize,
) -> Result<()> {
    let response = http
        .put(format!("{base}/v1/event-types/{EVENT_TYPE}"))
        .json(&serde_json::json!({"description": "the fan-out benchmark's"}))
        .send()
        .await
        .context("PUT /v1/event-types")?;
    if !response.status().is_success() {
        bail!(
            "PUT /v1/event-types answered {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    for n in 0..endpoints {
        let response = http
            .post(format!("{base}/v1/endpoints"))
            .json(&serde_json::json!({
                "url": receiver,
                "description": format!("bench {n}"),
                "eventTypes": [EVENT_TYPE],
                "headers": {"x-endpoint": n.to_string()},
            }))
            .send()
            .await
            .context("POST /v1/endpoints")?;
        if response.status() != 201 {
            bail!(
                "POST /v1/endpoints answered {}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Posts `events` events, [`CLIENTS`] at a time, each answer naming `endpoints` deliveries; returns events/s.
async fn post_events(http: &reqwest::Client, base: &str, events: usize, endpoints: usize) -> Result<f64> {
    let started = Instant::now();
    rig::post_many(
        http,
        &format!("{base}/v1/events"),
        &event_body(),
        events,
        CLIENTS,
        |answer| {
            let answer: serde_json::Value = serde_json::from_slice(answer).context("the event's answer")?;
            let deliveries = answer["deliveries"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(
                deliveries == endpoints,
                "an event went to {deliveries} endpoints, not {endpoints}"
            );
            Ok(())
        },
    )
    .await?;
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// One case: setup, events accepted, drained, then the no-store ceiling.
async fn case(
    settings: &Settings,
    store: Arc<dyn Store>,
    meter: Option<&DynamoStore>,
    endpoints: usize,
    events: usize,
) -> Result<Case> {
    let shutdown = CancellationToken::new();
    let result = case_on(settings, store, meter, endpoints, events, &shutdown).await;
    shutdown.cancel();
    result
}

async fn case_on(
    settings: &Settings,
    store: Arc<dyn Store>,
    meter: Option<&DynamoStore>,
    endpoints: usize,
    events: usize,
    shutdown: &CancellationToken,
) -> Result<Case> {
    let receiver = Receiver::default();
    let receiver_url = receiver.spawn(shutdown).await?;
    let key = rig::api_key(&*store, "bench").await?;
    let clock = Arc::new(SystemClock) as Arc<dyn Clock>;
    let base = rig::spawn_intake_named(Arc::clone(&store), Arc::clone(&clock), Vec::new(), shutdown).await?;
    let http = rig::client_with_key(&key)?;
    register(&http, &base, &receiver_url, endpoints).await?;

    // What setting up the tenant cost is not an event's.
    let before = meter.map(|m| m.capacity().snapshot());
    let accepted_per_s = post_events(&http, &base, events, endpoints).await?;

    let timed = Arc::new(Timed::over(Arc::clone(&store)));
    let processor = rig::processor(
        Arc::clone(&timed) as Arc<dyn Store>,
        Arc::clone(&clock),
        ProviderCatalog::default(),
        "fanout",
        settings.seed,
    )?;
    let deliveries = events * endpoints;
    let deadline = Instant::now() + Duration::from_secs(if settings.quick { 60 } else { 300 });
    while receiver.delivered() < deliveries && Instant::now() < deadline {
        processor.drain(shutdown).await;
    }
    if receiver.delivered() < deliveries {
        bail!(
            "1 -> {endpoints}: {} of {deliveries} deliveries received before the deadline",
            receiver.delivered()
        );
    }
    let (Some(first), Some(last)) = (timed.first_claim(), receiver.last_received()) else {
        bail!("1 -> {endpoints}: no claim or no delivery timed");
    };
    let seconds = last.saturating_duration_since(first).as_secs_f64();
    let deliveries_per_s = deliveries as f64 / seconds;
    eprintln!(
        "  fanout: 1 -> {endpoints}: {events} events accepted at {} events/s, {deliveries} deliveries drained at {} deliveries/s",
        number(accepted_per_s),
        number(deliveries_per_s)
    );
    let spent = slot_time(&timed, seconds, deliveries);
    let units = match (meter, before) {
        (Some(meter), Some(before)) => Some(units_per_event(&before, &meter.capacity().snapshot(), events)),
        _ => None,
    };

    // The ceiling, after the drain: the same intake, its publishes not written.
    let nostore: Arc<dyn Store> = Arc::new(NoStore::over(Arc::clone(&store)));
    let nostore_base = rig::spawn_intake_named(nostore, clock, Vec::new(), shutdown).await?;
    let nostore_per_s = post_events(&http, &nostore_base, events, endpoints).await?;

    Ok(Case {
        endpoints,
        events,
        accepted_per_s,
        nostore_per_s,
        deliveries_per_s,
        latencies_us: receiver.latencies_us(),
        duplicates: receiver.duplicates(),
        spent,
        units,
    })
}

/// The processor's slot time per delivery (slots x drain time / deliveries)
/// and the part of it each kind of store call took (summed call times over
/// deliveries; a call waiting for SQLite's writer or a core counts as its own).
fn slot_time(timed: &Timed, seconds: f64, deliveries: usize) -> String {
    let slots = processor::ProcessorConfig::default().concurrency as f64;
    let per = |x: f64| x / deliveries as f64;
    let slot_us = per(slots * seconds * 1e6);
    let mut in_store = 0.0;
    let mut parts = Vec::new();
    for (operation, (calls, took)) in timed.spent() {
        let us = per(took.as_secs_f64() * 1e6);
        in_store += us;
        parts.push(format!("{operation} {us:.0} µs ({:.2} calls)", per(calls as f64)));
    }
    format!(
        "per delivery, {slot_us:.0} µs of processor slot time ({} slots x drain time / deliveries), of which \
         in store calls: {}; the rest, {:.0} µs, is the HTTP delivery, signing, processing and waiting for a core.",
        slots,
        parts.join(", "),
        slot_us - in_store
    )
}

/// Units per event between two snapshots of the meter: (write, read, by operation).
pub(crate) fn units_per_event(
    before: &BTreeMap<&'static str, store_dynamodb::Units>,
    after: &BTreeMap<&'static str, store_dynamodb::Units>,
    events: usize,
) -> Units {
    let per_event = |x: f64| x / events as f64;
    let mut units = Units {
        write: 0.0,
        read: 0.0,
        breakdown: String::new(),
    };
    let mut parts = Vec::new();
    for (operation, now) in after {
        let (table0, indexes0, calls0) = before
            .get(operation)
            .map_or((0.0, 0.0, 0), |b| (b.table, b.indexes, b.calls));
        let calls = now.calls - calls0;
        if calls == 0 {
            continue;
        }
        let (table, indexes) = (now.table - table0, now.indexes - indexes0);
        match now.access {
            store_dynamodb::Access::Read => units.read += per_event(table + indexes),
            store_dynamodb::Access::Write => units.write += per_event(table + indexes),
        }
        parts.push(format!(
            "{operation} {:.2} + {:.2} ({:.2} calls)",
            per_event(table),
            per_event(indexes),
            per_event(calls as f64)
        ));
    }
    units.breakdown = parts.join("; ");
    units
}

/// The trickle (SQLite): events to 1 endpoint posted one at a time at
/// [`TRICKLE_RATE`] to an intake that wakes a processor beside it;
/// creation-to-delivery latencies, microseconds, sorted.
async fn trickle(settings: &Settings, events: usize) -> Result<Vec<u64>> {
    let (store, _dir) = rig::sqlite_store()?;
    let shutdown = CancellationToken::new();
    let result = trickle_on(settings, store, events, &shutdown).await;
    shutdown.cancel();
    result
}

async fn trickle_on(
    settings: &Settings,
    store: Arc<dyn Store>,
    events: usize,
    shutdown: &CancellationToken,
) -> Result<Vec<u64>> {
    let receiver = Receiver::default();
    let receiver_url = receiver.spawn(shutdown).await?;
    let key = rig::api_key(&*store, "bench").await?;
    let clock = Arc::new(SystemClock) as Arc<dyn Clock>;
    let catalog = ProviderCatalog::default();
    let wake = Arc::new(tokio::sync::Notify::new());
    let base = rig::spawn_intake_waking(
        Arc::clone(&store),
        Arc::clone(&clock),
        &catalog,
        Arc::clone(&wake),
        shutdown,
    )
    .await?;
    let http = rig::client_with_key(&key)?;
    register(&http, &base, &receiver_url, 1).await?;
    let processor = Arc::new(rig::processor(
        Arc::clone(&store),
        clock,
        catalog,
        "trickle",
        settings.seed,
    )?);
    let stop = shutdown.child_token();
    let worker = rig::spawn_woken(processor, wake, stop.clone());
    let body = event_body();
    let period = Duration::from_secs_f64(1.0 / TRICKLE_RATE);
    let mut next = tokio::time::Instant::now();
    let mut posts = Vec::new();
    for _ in 0..events {
        tokio::time::sleep_until(next).await;
        next += period;
        let request = http.post(format!("{base}/v1/events")).json(&body);
        posts.push(tokio::spawn(async move {
            request.send().await.map(|r| r.status().as_u16())
        }));
    }
    for post in posts {
        let status = post.await??;
        if status != 202 {
            bail!("fanout trickle: POST /v1/events answered {status}");
        }
    }
    let delivered = receiver.wait_for(events, Duration::from_secs(60)).await;
    stop.cancel();
    let _ = worker.await;
    if !delivered {
        bail!(
            "fanout trickle: {} of {events} events delivered",
            receiver.delivered()
        );
    }
    Ok(receiver.latencies_us())
}

/// The endpoints' receiver: counts each (endpoint, event) delivery, and
/// how long after the event's creation (the body's `timestamp`) the first
/// one arrived.
#[derive(Debug, Clone, Default)]
pub(crate) struct Receiver {
    inner: Arc<std::sync::Mutex<Received>>,
}

#[derive(Debug, Default)]
struct Received {
    /// Deliveries per (`x-endpoint`, `webhook-id`).
    seen: HashMap<(String, String), u32>,
    /// Creation to first delivery, microseconds.
    latencies_us: Vec<u64>,
    /// The smallest body received, bytes.
    smallest_body: Option<usize>,
    last: Option<Instant>,
}

impl Receiver {
    pub(crate) async fn spawn(&self, shutdown: &CancellationToken) -> Result<String> {
        use axum::routing::post;
        let receiver = self.clone();
        let app = axum::Router::new().route(
            "/hooks",
            post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let receiver = receiver.clone();
                async move {
                    receiver.record(&headers, &body);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the receiver")?;
        let addr = listener.local_addr()?;
        let token = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        Ok(format!("http://{addr}/hooks"))
    }

    fn record(&self, headers: &axum::http::HeaderMap, body: &[u8]) {
        let now = chrono::Utc::now();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let key = (header("x-endpoint"), header("webhook-id"));
        let created = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|b| b["timestamp"].as_str().map(str::to_owned))
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
        let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        state.smallest_body = Some(state.smallest_body.map_or(body.len(), |n| n.min(body.len())));
        let count = state.seen.entry(key).or_default();
        *count += 1;
        if *count > 1 {
            return;
        }
        state.last = Some(Instant::now());
        if let Some(created) = created {
            let micros = (now - created.with_timezone(&chrono::Utc))
                .num_microseconds()
                .unwrap_or(0);
            state.latencies_us.push(u64::try_from(micros).unwrap_or(0));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Received> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Distinct (endpoint, event) deliveries received.
    pub(crate) fn delivered(&self) -> usize {
        self.lock().seen.len()
    }

    pub(crate) fn duplicates(&self) -> u64 {
        self.lock().seen.values().map(|n| u64::from(n - 1)).sum()
    }

    /// The smallest body any delivery carried, bytes (0 before the first).
    pub(crate) fn smallest_body(&self) -> usize {
        self.lock().smallest_body.unwrap_or(0)
    }

    fn last_received(&self) -> Option<Instant> {
        self.lock().last
    }

    fn latencies_us(&self) -> Vec<u64> {
        let mut latencies = self.lock().latencies_us.clone();
        latencies.sort_unstable();
        latencies
    }

    async fn wait_for(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.delivered() >= count {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.delivered() >= count
    }
}
