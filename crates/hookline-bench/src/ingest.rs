//! Scenario `ingest`: closed-loop `POST /in/{sourceId}` against the real
//! intake (in this process) on SQLite: each request is verified (an HMAC
//! of its raw body) and split into [`ITEMS`] events, each published to one
//! subscribed endpoint, beside the ceiling: the same intake over a store
//! that drops the writes ([`NoStore`]: the source and endpoints are read
//! from the real store underneath, the events are not written).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use domain::{Clock, SystemClock};
use hmac::{KeyInit, Mac};
use store::Store;
use tokio_util::sync::CancellationToken;

use crate::Settings;
use crate::load::{self, LoadResult, Request};
use crate::nostore::NoStore;
use crate::report::{Figure, ScenarioReport, number};
use crate::rig;

/// Events each request splits into.
const ITEMS: usize = 10;
const SECRET: &str = "bench-ingest-secret";

struct Shape {
    clients: usize,
    warmup: Duration,
    measure: Duration,
    rounds: usize,
}

fn shape(settings: &Settings) -> Shape {
    if settings.quick {
        Shape {
            clients: 16,
            warmup: Duration::from_millis(500),
            measure: Duration::from_secs(2),
            rounds: 1,
        }
    } else {
        Shape {
            clients: 64,
            warmup: Duration::from_secs(2),
            measure: Duration::from_secs(10),
            rounds: 3,
        }
    }
}

/// A provider's body: [`ITEMS`] items of about 100 bytes each.
fn body() -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..ITEMS)
        .map(|i| {
            serde_json::json!({
                "type": "bench.item",
                "object": {"id": format!("obj_{i}"), "account": "acct_42", "amount": 1200.50, "currency": "eur"},
            })
        })
        .collect();
    serde_json::json!({ "deltas": items }).to_string().into_bytes()
}

fn signature(body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("any key");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Registers, through the API of an intake on `store`, an endpoint for
/// the items' type and a source splitting them; returns the source's id.
async fn register(store: Arc<dyn Store>, shutdown: &CancellationToken) -> Result<(String, reqwest::Client)> {
    let key = rig::api_key(&*store, "bench").await?;
    let base = rig::spawn_intake_named(
        store,
        Arc::new(SystemClock) as Arc<dyn Clock>,
        Vec::new(),
        shutdown,
    )
    .await?;
    let http = rig::client_with_key(&key)?;
    let event_type = http
        .put(format!("{base}/v1/event-types/bench.item"))
        .json(&serde_json::json!({"description": "a provider's item"}))
        .send()
        .await?;
    if event_type.status() != 201 {
        bail!("registering the event type: HTTP {}", event_type.status());
    }
    let endpoint = http
        .post(format!("{base}/v1/endpoints"))
        .json(&serde_json::json!({"url": "http://127.0.0.1:9/hooks", "eventTypes": ["bench.item"]}))
        .send()
        .await?;
    if endpoint.status() != 201 {
        bail!("registering the endpoint: HTTP {}", endpoint.status());
    }
    let source = http
        .post(format!("{base}/v1/sources"))
        .json(&serde_json::json!({
            "name": "bench",
            "eventType": "bench.item",
            "verify": {"type": "hmac", "header": "x-bench-signature", "algorithm": "sha256",
                       "encoding": "hex", "secret": SECRET},
            "split": {"items": "/deltas", "type": "/type"},
        }))
        .send()
        .await?;
    if source.status() != 201 {
        bail!("registering the source: HTTP {}", source.status());
    }
    let source: serde_json::Value = source.json().await?;
    let id = source["sourceId"].as_str().context("no sourceId")?.to_owned();
    Ok((id, http))
}

/// The provider's request to an intake on `store`.
async fn request_to(store: Arc<dyn Store>, source: &str, shutdown: &CancellationToken) -> Result<Request> {
    let base = rig::spawn_intake_named(
        store,
        Arc::new(SystemClock) as Arc<dyn Clock>,
        Vec::new(),
        shutdown,
    )
    .await?;
    let body = body();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-bench-signature", signature(&body).parse()?);
    Ok(Request {
        client: reqwest::Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(1024)
            .build()?,
        url: format!("{base}/in/{source}"),
        body: Arc::new(body),
        expected: 200,
    })
}

pub async fn run(settings: &Settings) -> Result<ScenarioReport> {
    let shape = shape(settings);
    let shutdown = CancellationToken::new();
    let result = measure(&shape, &shutdown).await;
    shutdown.cancel();
    let (ceiling, sqlite, ratios, events_written) = result?;
    let mut figures = Vec::new();
    let peak = ceiling.rate();
    for (subject, result) in [("no-store ceiling", &ceiling), ("sqlite", &sqlite)] {
        let rate = Figure::new(
            "ingest",
            subject,
            "POST /in verified req/s",
            result.rate(),
            "req/s",
        );
        figures.push(if subject == "sqlite" {
            rate.against(peak)
        } else {
            rate
        });
        let events = Figure::new(
            "ingest",
            subject,
            &format!("events/s ({ITEMS} per request, 1 delivery each)"),
            result.rate() * ITEMS as f64,
            "events/s",
        );
        figures.push(if subject == "sqlite" {
            events.against(peak * ITEMS as f64)
        } else {
            events
        });
        for p in [50.0, 99.0] {
            figures.push(Figure::new(
                "ingest",
                subject,
                &format!("latency p{p}"),
                result.latency_ms(p),
                "ms",
            ));
        }
        figures.push(Figure::new(
            "ingest",
            subject,
            "CPU per request (server + load generator)",
            result.cpu_ms_per_request(),
            "ms",
        ));
    }
    let mut notes = vec![format!(
        "{} keep-alive clients, closed loop, {:.1} s warm-up then {:.0} s measured per subject, {} \
         rounds alternated (the round of median SQLite / ceiling ratio is reported; each round's: {}). \
         Each request: a {}-byte body with {ITEMS} items, its HMAC-SHA256 checked, split by JSON \
         pointers, each item published as an event to the one endpoint subscribed (SQLite: one \
         publish per item, {} at once, group-committed). Ceiling: the same intake, source lookup, \
         verification, split and endpoint read, over a store that drops the writes. The intake runs \
         in this process, sharing the 2 cores with the load generator. {} events were written on \
         SQLite in all.",
        shape.clients,
        shape.warmup.as_secs_f64(),
        shape.measure.as_secs_f64(),
        ratios.len(),
        ratios
            .iter()
            .map(|r| format!("{:.0}%", r * 100.0))
            .collect::<Vec<_>>()
            .join(", "),
        body().len(),
        16,
        number(events_written as f64),
    )];
    for (subject, result) in [("no-store ceiling", &ceiling), ("sqlite", &sqlite)] {
        if result.errors > 0 {
            notes.push(format!(
                "{subject}: {} requests not answered 200 (first: {}); not counted.",
                result.errors,
                result.first_error.as_deref().unwrap_or("?")
            ));
        }
    }
    Ok(ScenarioReport {
        name: "ingest".to_owned(),
        seconds: 0.0,
        figures,
        notes,
    })
}

async fn measure(
    shape: &Shape,
    shutdown: &CancellationToken,
) -> Result<(LoadResult, LoadResult, Vec<f64>, u64)> {
    let (sqlite, _dir) = rig::sqlite_store()?;
    let (source, http) = register(sqlite.clone(), shutdown).await?;
    let ceiling_store: Arc<dyn Store> = Arc::new(NoStore::over(sqlite.clone()));
    let ceiling_request = request_to(ceiling_store, &source, shutdown).await?;
    let sqlite_request = request_to(sqlite.clone(), &source, shutdown).await?;
    let (mut rounds, mut ratios) = (Vec::new(), Vec::new());
    for _ in 0..shape.rounds.max(1) {
        let ceiling = load::closed_loop(&ceiling_request, shape.clients, shape.warmup, shape.measure).await;
        let on_sqlite = load::closed_loop(&sqlite_request, shape.clients, shape.warmup, shape.measure).await;
        eprintln!(
            "  ingest: ceiling {} req/s, sqlite {} req/s",
            number(ceiling.rate()),
            number(on_sqlite.rate())
        );
        ratios.push(on_sqlite.rate() / ceiling.rate());
        rounds.push((ceiling, on_sqlite));
    }
    let ratio = |(c, s): &(LoadResult, LoadResult)| s.rate() / c.rate();
    rounds.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    let middle = rounds.len() / 2;
    let (ceiling, on_sqlite) = rounds.swap_remove(middle);
    drop(http);
    let written = count_events(&*sqlite).await;
    Ok((ceiling, on_sqlite, ratios, written))
}

/// How many events the tenant has (paged listing), to show the load wrote them.
async fn count_events(store: &dyn Store) -> u64 {
    let tenant = domain::TenantId::new("bench");
    let mut query = store::EventQuery {
        event_type: None,
        owner: None,
        after: None,
        limit: store::MAX_PAGE,
    };
    let mut count = 0u64;
    loop {
        let Ok(page) = store.list_events(&tenant, &query).await else {
            return count;
        };
        count += page.events.len() as u64;
        match page.next {
            Some(next) => query.after = Some(next),
            None => return count,
        }
    }
}
