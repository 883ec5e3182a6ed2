//! Deliveries through the egress proxy (`--egress-proxy`, SPEC section 10):
//! a job's callback and an endpoint's delivery arrive signed as usual, and
//! the proxy was asked for the address hookline checked, never the name; a
//! name that resolves to a refused address is refused as without a proxy,
//! and the proxy is never asked; a proxy that is gone or refuses is a
//! retryable failure that names it. On SQLite: the store plays no part.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use domain::{Clock, JobId, NewJob, TenantId};
use netguard::{Lookup, NetPolicy, Resolve, Resolver};
use serde_json::{Value, json};
use testkit::forwardproxy::ForwardProxy;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, spawn_app_looking_up};

/// Every name resolves to one address, as a DNS server an attacker runs.
#[derive(Debug)]
struct Fixed(IpAddr);

impl Resolve for Fixed {
    fn lookup(&self, _name: &str, port: u16) -> Lookup {
        let address = SocketAddr::new(self.0, port);
        Box::pin(async move { Ok(vec![address]) })
    }
}

fn to_loopback() -> Resolver {
    Resolver::new(
        Arc::new(Fixed(IpAddr::V4(Ipv4Addr::LOCALHOST))),
        Duration::from_secs(2),
    )
}

struct Rig {
    app: TestApp,
    _dir: tempfile::TempDir,
}

/// An app on SQLite whose intake lets loopback in and looks every name up
/// as 127.0.0.1.
async fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("egress.db").display());
    let metrics = Arc::new(telemetry::Metrics::new());
    let store = hookline::open_store(&hookline::StoreArgs::url(&url), &metrics)
        .await
        .expect("open sqlite");
    let app = spawn_app_looking_up(
        store,
        None,
        Arc::new(NetPolicy::loopback_allowed()),
        metrics,
        Some(to_loopback()),
    )
    .await;
    Rig { app, _dir: dir }
}

/// A processor guarded by `network`, looking every name up as 127.0.0.1,
/// going out through `proxy` (or straight, for `None`).
fn processor(app: &TestApp, network: NetPolicy, proxy: Option<&str>) -> processor::Processor {
    processor::Processor::new(
        Arc::clone(&app.store),
        Arc::clone(&app.clock) as Arc<dyn Clock>,
        processor::http_client(),
        app.catalog.clone(),
        processor::ProcessorConfig {
            owner: "egress".to_owned(),
            seed: Some(3),
            callback_network: Arc::new(network),
            callback_lookups: Some(to_loopback()),
            egress_proxy: proxy.map(|url| url.parse().expect("a proxy URL")),
            ..processor::ProcessorConfig::default()
        },
    )
    .expect("valid processor config")
}

/// The sink's URL under another host name (which [`to_loopback`] resolves).
fn named(app: &TestApp, host: &str) -> String {
    app.mock.url("/complete").replace("127.0.0.1", host)
}

fn sink_port(app: &TestApp) -> u16 {
    url::Url::parse(&app.mock.url("/complete"))
        .expect("url")
        .port()
        .expect("port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callback_and_an_endpoint_delivery_go_through_the_proxy_to_checked_addresses() {
    let Rig { app, _dir } = rig().await;
    let proxy = ForwardProxy::start().await.expect("proxy");

    let response = app
        .http
        .post(format!("{}/webhook", app.base))
        .json(&json!({"providers": ["gas"], "callbackUrl": named(&app, "receiver.test")}))
        .send()
        .await
        .expect("post job");
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.expect("json");
    let job_id = job["jobId"].as_str().expect("jobId").to_owned();

    let put = app
        .http
        .put(format!("{}/v1/event-types/invoice.paid", app.base))
        .json(&json!({"description": "paid"}))
        .send()
        .await
        .expect("event type");
    assert!(put.status().is_success(), "{}", put.status());
    let created: Value = app
        .http
        .post(format!("{}/v1/endpoints", app.base))
        .json(&json!({"url": named(&app, "endpoint.test"), "eventTypes": ["invoice.paid"]}))
        .send()
        .await
        .expect("endpoint")
        .json()
        .await
        .expect("json");
    let endpoint_secret = created["secret"].as_str().expect("secret").to_owned();
    let published = app
        .http
        .post(format!("{}/v1/events", app.base))
        .json(&json!({"type": "invoice.paid", "payload": {"invoiceId": "in_1"}}))
        .send()
        .await
        .expect("publish");
    assert_eq!(published.status(), 202);
    let event: Value = published.json().await.expect("json");

    let report = processor(&app, NetPolicy::loopback_allowed(), Some(&proxy.url()))
        .drain(&CancellationToken::new())
        .await;
    assert_eq!((report.delivered, report.retried), (2, 0), "{report:?}");

    let checked = format!("127.0.0.1:{}", sink_port(&app));
    assert_eq!(
        proxy.connect_targets(),
        [checked.clone(), checked],
        "the proxy was asked for the checked address, twice, and never for a name"
    );
    assert!(
        proxy.asked().iter().all(|asked| asked.method == "CONNECT"),
        "{:?}",
        proxy.asked()
    );
    let deliveries = app.mock.state.accepted_deliveries();
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    let callback = deliveries
        .iter()
        .find(|d| d.job_id() == Some(job_id.as_str()))
        .expect("the job's callback");
    assert_eq!(callback.signature, providers_mock::SignatureVerdict::Valid);
    testkit::verify_with_official_library(
        &app.secret.expose_secret(),
        callback.headers.iter(),
        &callback.raw_body,
    )
    .expect("the callback is signed with the tenant's secret");
    assert_eq!(
        callback.headers["host"],
        format!("receiver.test:{}", sink_port(&app)),
        "the receiver sees its own name"
    );
    let delivery = deliveries
        .iter()
        .find(|d| d.headers["webhook-id"] == event["eventId"].as_str().expect("eventId"))
        .expect("the endpoint's delivery");
    testkit::verify_with_official_library(&endpoint_secret, delivery.headers.iter(), &delivery.raw_body)
        .expect("the delivery is signed with the endpoint's secret");
    assert_eq!(
        app.mock.state.provider_calls("gas"),
        1,
        "the provider was fetched straight, not through the proxy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_name_rebound_to_a_refused_address_is_refused_with_the_proxy_set() {
    let Rig { app, _dir } = rig().await;
    let proxy = ForwardProxy::start().await.expect("proxy");
    // Written straight to the store: intake would have refused it, and DNS
    // now says 127.0.0.1 for it (rebinding).
    let now = app.clock.now();
    let job = domain::Job::new(
        NewJob {
            id: JobId::generate(now, &mut rand::rng()),
            tenant: TenantId::new("default"),
            target: domain::Target::Callback(url::Url::parse(&named(&app, "rebind.test")).expect("url")),
            payload: domain::Payload::Results { metadata: None },
            providers: vec![],
        },
        now,
    );
    app.store.create_job(&job).await.expect("create");

    let report = processor(&app, NetPolicy::strict(), Some(&proxy.url()))
        .drain(&CancellationToken::new())
        .await;
    assert_eq!(
        (report.claimed, report.delivered, report.retried),
        (1, 0, 1),
        "{report:?}"
    );
    assert_eq!(proxy.asked(), [], "the proxy was never asked");
    assert!(app.mock.state.deliveries().is_empty());
    let read = app.get_job(&job.id().to_string()).await;
    let through_proxy = read["delivery"]["lastError"]
        .as_str()
        .expect("lastError")
        .to_owned();
    assert_eq!(
        through_proxy, "rebind.test is a loopback address (127.0.0.1), which callbacks may not reach",
        "{read}"
    );

    // Straight, the same job fails the same way.
    app.advance(Duration::from_secs(3600));
    let report = processor(&app, NetPolicy::strict(), None)
        .drain(&CancellationToken::new())
        .await;
    assert_eq!((report.claimed, report.retried), (1, 1), "{report:?}");
    let read = app.get_job(&job.id().to_string()).await;
    assert_eq!(
        read["delivery"]["lastError"].as_str(),
        Some(through_proxy.as_str())
    );
    assert_eq!(read["status"], "delivering", "{read}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_that_is_gone_or_refuses_is_a_retryable_failure_naming_it() {
    let Rig { app, _dir } = rig().await;
    let gone = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let gone_addr = gone.local_addr().expect("addr");
    drop(gone);
    let response = app
        .http
        .post(format!("{}/webhook", app.base))
        .json(&json!({"providers": ["gas"], "callbackUrl": named(&app, "receiver.test")}))
        .send()
        .await
        .expect("post job");
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("json");
    let id = body["jobId"].as_str().expect("jobId").to_owned();

    let report = processor(
        &app,
        NetPolicy::loopback_allowed(),
        Some(&format!("http://{gone_addr}")),
    )
    .drain(&CancellationToken::new())
    .await;
    assert_eq!((report.delivered, report.retried), (0, 1), "{report:?}");
    let read = app.get_job(&id).await;
    assert_eq!(
        read["delivery"]["lastError"].as_str(),
        Some(format!("egress proxy {gone_addr} is unreachable: connection refused").as_str()),
        "{read}"
    );
    assert_eq!(read["status"], "delivering", "retried later: {read}");

    let proxy = ForwardProxy::start().await.expect("proxy");
    proxy.refuse(403);
    app.advance(Duration::from_secs(3600));
    let report = processor(&app, NetPolicy::loopback_allowed(), Some(&proxy.url()))
        .drain(&CancellationToken::new())
        .await;
    assert_eq!((report.delivered, report.retried), (0, 1), "{report:?}");
    let read = app.get_job(&id).await;
    let checked = format!("127.0.0.1:{}", sink_port(&app));
    assert_eq!(
        read["delivery"]["lastError"].as_str(),
        Some(
            format!(
                "egress proxy {} refused a tunnel to {checked}: HTTP 403",
                proxy.addr()
            )
            .as_str()
        ),
        "{read}"
    );
    assert_eq!(proxy.connect_targets(), [checked]);
    assert!(app.mock.state.deliveries().is_empty());
}
