//! One hung receiver does not hold up another: not another tenant's, and
//! not the same tenant's other endpoints or callback receivers. A drain
//! claims as slots free up, no tenant takes every slot, and no receiver
//! takes every slot of its tenant's share.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netguard::NetPolicy;
use processor::ProcessorConfig;
use processor::schedule::run_scheduled;
use serde_json::Value;
use store::Store;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, client_with_key, create_key, on_every_store, spawn_app_waking};

/// A receiver that accepts every connection, reads what it is sent and
/// never answers: a callback to it ends only by the callback timeout.
struct HungReceiver {
    url: String,
    accepted: Arc<AtomicUsize>,
}

async fn spawn_hung_receiver(shutdown: CancellationToken) -> HungReceiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind hung receiver");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    tokio::spawn({
        let accepted = Arc::clone(&accepted);
        async move {
            loop {
                let (socket, _) = tokio::select! {
                    () = shutdown.cancelled() => break,
                    conn = listener.accept() => match conn {
                        Ok(conn) => conn,
                        Err(_) => continue,
                    },
                };
                accepted.fetch_add(1, Ordering::Relaxed);
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            ready = socket.readable() => if ready.is_err() { break },
                        }
                        match socket.try_read(&mut buf) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(_) => break,
                        }
                    }
                });
            }
        }
    });
    HungReceiver {
        url: format!("http://{addr}/hooks"),
        accepted,
    }
}

async fn post(http: &reqwest::Client, base: &str, callback: &str) -> String {
    let response = http
        .post(format!("{base}/webhook"))
        .json(&serde_json::json!({"providers": ["gas"], "callbackUrl": callback}))
        .send()
        .await
        .expect("post job");
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("json");
    body["jobId"].as_str().expect("jobId").to_owned()
}

async fn store_on(backend: Backend) -> (Arc<dyn Store>, Option<tempfile::TempDir>) {
    match backend {
        Backend::DynamoDb => (Arc::new(crate::helpers::dynamo_store().await), None),
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = store_sqlite::SqliteStore::open(
                &dir.path().join("fair.db"),
                Default::default(),
                crate::helpers::sealer(),
            )
            .expect("open sqlite");
            (Arc::new(store), Some(dir))
        }
    }
}

on_every_store!(
    a_hung_receiver_of_one_tenant_does_not_hold_up_another,
    a_hung_callback_receiver_does_not_hold_up_the_tenant_s_other_callbacks,
    a_hung_endpoint_does_not_hold_up_the_tenant_s_other_endpoints,
);

/// A store of `backend`, the API over it (waking a processor when a job
/// is accepted) and a receiver that never answers.
struct Rig {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    app: crate::helpers::TestApp,
    wake: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
    hung: HungReceiver,
}

impl Rig {
    async fn start(backend: Backend) -> Self {
        let (store, _dir) = store_on(backend).await;
        let wake = Arc::new(tokio::sync::Notify::new());
        let app = spawn_app_waking(
            Arc::clone(&store),
            Some(Arc::clone(&wake)),
            Arc::new(NetPolicy::loopback_allowed()),
        )
        .await;
        let shutdown = CancellationToken::new();
        let hung = spawn_hung_receiver(shutdown.clone()).await;
        Self {
            store,
            _dir,
            app,
            wake,
            shutdown,
            hung,
        }
    }
}

/// A processor running every second (and when woken) until `shutdown`,
/// its callbacks timing out after 3 s.
fn spawn_processor(
    app: &crate::helpers::TestApp,
    wake: &Arc<tokio::sync::Notify>,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<Result<(), processor::schedule::ScheduleError>> {
    let config = ProcessorConfig {
        owner: "fair".to_owned(),
        // The backlogs below (160 jobs, 20 stuck) are sized against 32
        // slots: several times the slots, so the hung tenant reaches its
        // share and its other jobs stay due.
        concurrency: 32,
        callback_timeout: Duration::from_secs(3),
        seed: Some(7),
        callback_network: Arc::new(NetPolicy::loopback_allowed()),
        ..ProcessorConfig::default()
    };
    let processor = Arc::new(
        processor::Processor::new(
            Arc::clone(&app.store),
            Arc::clone(&app.clock) as Arc<dyn domain::Clock>,
            processor::http_client(),
            app.catalog.clone(),
            config,
        )
        .expect("valid processor config")
        .with_metrics(Arc::clone(&app.metrics)),
    );
    let (shutdown, wake) = (shutdown.clone(), Arc::clone(wake));
    tokio::spawn(async move {
        run_scheduled(
            processor,
            "* * * * * *",
            shutdown,
            Duration::from_millis(200),
            Some(wake),
        )
        .await
    })
}

/// Waits until `hung` holds at least 20 connections: the backlog sent
/// to it is stuck.
async fn until_stuck(hung: &HungReceiver) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while hung.accepted.load(Ordering::Relaxed) < 20 {
        assert!(
            Instant::now() < deadline,
            "no callbacks reached the hung receiver"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `path` with `http` until `done` says so of its body, or 10 s
/// pass; how long it took from `posted`.
async fn until(
    http: &reqwest::Client,
    url: String,
    posted: Instant,
    done: impl Fn(&Value) -> bool,
) -> Duration {
    let deadline = posted + Duration::from_secs(10);
    loop {
        let body: Value = http
            .get(&url)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if done(&body) {
            return posted.elapsed();
        }
        assert!(Instant::now() < deadline, "not done within 10 s: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stop(
    shutdown: CancellationToken,
    scheduled: tokio::task::JoinHandle<Result<(), processor::schedule::ScheduleError>>,
) {
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), scheduled).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "stopped: {stopped:?}");
}

/// Tenant a's 160 jobs go to a receiver that never answers (3 s callback
/// timeout, the first retry immediate, so a's jobs keep coming due);
/// tenant b's job, posted while a's backlog is stuck, is delivered at once.
async fn a_hung_receiver_of_one_tenant_does_not_hold_up_another(backend: Backend) {
    let Rig {
        store,
        _dir,
        app,
        wake,
        shutdown,
        hung,
    } = Rig::start(backend).await;
    let tenant_a = client_with_key(&create_key(&*store, "a").await);
    let tenant_b = client_with_key(&create_key(&*store, "b").await);

    let scheduled = spawn_processor(&app, &wake, &shutdown);

    for _ in 0..160 {
        post(&tenant_a, &app.base, &hung.url).await;
    }
    // a's backlog is stuck: its callbacks hold connections that never answer.
    until_stuck(&hung).await;
    // b's job is due after every one of a's, retries included.
    app.advance(Duration::from_millis(1));

    let posted = Instant::now();
    let id = post(&tenant_b, &app.base, &app.callback_url()).await;
    let latency = until(&tenant_b, format!("{}/v1/jobs/{id}", app.base), posted, |job| {
        job["status"] == "complete"
    })
    .await;
    println!(
        "{backend:?}: tenant b's job posted to complete in {} ms while tenant a's receiver hangs ({} callbacks to it so far)",
        latency.as_millis(),
        hung.accepted.load(Ordering::Relaxed)
    );
    // A drain already running finds it at its next refill poll (every
    // 500 ms); the old round loop left it behind a's hung callbacks (> 10 s).
    assert!(
        latency < Duration::from_secs(2),
        "tenant b waited {latency:?} behind tenant a's hung receiver"
    );
    assert_eq!(app.mock.state.accepted_deliveries().len(), 1, "b's callback only");
    stop(shutdown, scheduled).await;
}

/// Tenant a's 160 jobs go to a receiver that never answers; its next job,
/// to another receiver, is delivered at once: a receiver holding no slot
/// starts in the drain's headroom while its tenant is at its share.
async fn a_hung_callback_receiver_does_not_hold_up_the_tenant_s_other_callbacks(backend: Backend) {
    let Rig {
        store,
        _dir,
        app,
        wake,
        shutdown,
        hung,
    } = Rig::start(backend).await;
    let tenant = client_with_key(&create_key(&*store, "a").await);
    let scheduled = spawn_processor(&app, &wake, &shutdown);

    for _ in 0..160 {
        post(&tenant, &app.base, &hung.url).await;
    }
    until_stuck(&hung).await;
    app.advance(Duration::from_millis(1));

    let posted = Instant::now();
    let id = post(&tenant, &app.base, &app.callback_url()).await;
    let latency = until(&tenant, format!("{}/v1/jobs/{id}", app.base), posted, |job| {
        job["status"] == "complete"
    })
    .await;
    println!(
        "{backend:?}: the job to a second receiver posted to complete in {} ms while the tenant's first hangs",
        latency.as_millis()
    );
    assert!(
        latency < Duration::from_secs(2),
        "the job waited {latency:?} behind its tenant's hung receiver"
    );
    assert_eq!(app.mock.state.accepted_deliveries().len(), 1);
    stop(shutdown, scheduled).await;
}

/// The same for registered endpoints (SPEC section 9): 160 events to an
/// endpoint that never answers, then one to the tenant's other endpoint,
/// delivered at once.
async fn a_hung_endpoint_does_not_hold_up_the_tenant_s_other_endpoints(backend: Backend) {
    let Rig {
        store,
        _dir,
        app,
        wake,
        shutdown,
        hung,
    } = Rig::start(backend).await;
    let tenant = client_with_key(&create_key(&*store, "a").await);
    let send = |method: reqwest::Method, path: &str, body: Value| {
        tenant
            .request(method, format!("{}{path}", app.base))
            .json(&body)
            .send()
    };
    for name in ["slow.thing", "quick.thing"] {
        let response = send(
            reqwest::Method::PUT,
            &format!("/v1/event-types/{name}"),
            serde_json::json!({}),
        )
        .await
        .expect("put event type");
        assert_eq!(response.status(), 201);
    }
    for (url, types) in [
        (hung.url.clone(), "slow.thing"),
        (app.callback_url(), "quick.thing"),
    ] {
        let response = send(
            reqwest::Method::POST,
            "/v1/endpoints",
            serde_json::json!({"url": url, "eventTypes": [types]}),
        )
        .await
        .expect("create endpoint");
        assert_eq!(response.status(), 201);
    }
    let publish = |event_type: &'static str| async move {
        let response = send(
            reqwest::Method::POST,
            "/v1/events",
            serde_json::json!({"type": event_type, "payload": {"n": 1}}),
        )
        .await
        .expect("publish");
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.expect("json");
        body["eventId"].as_str().expect("eventId").to_owned()
    };
    let scheduled = spawn_processor(&app, &wake, &shutdown);
    for _ in 0..160 {
        publish("slow.thing").await;
    }
    until_stuck(&hung).await;
    app.advance(Duration::from_millis(1));

    let posted = Instant::now();
    let id = publish("quick.thing").await;
    let latency = until(&tenant, format!("{}/v1/events/{id}", app.base), posted, |event| {
        event["deliveries"][0]["status"] == "complete"
    })
    .await;
    println!(
        "{backend:?}: the event to a second endpoint published to delivered in {} ms while the tenant's first hangs",
        latency.as_millis()
    );
    assert!(
        latency < Duration::from_secs(2),
        "the event waited {latency:?} behind its tenant's hung endpoint"
    );
    stop(shutdown, scheduled).await;
}
