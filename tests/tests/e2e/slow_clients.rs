//! What slow or hostile clients and a silent DNS cost everyone else: a
//! declared body over the limit is refused before it is sent (and before
//! the key is looked at), and callback host lookups that never finish end
//! at their time limit without holding back store reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netguard::{Lookup, NetPolicy, Resolve, Resolver};
use telemetry::Metrics;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{Backend, client_with_key, create_key, spawn_app_looking_up, spawn_app_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_post_declaring_a_huge_body_is_refused_at_once() {
    let app = spawn_app_on(Backend::Sqlite).await;
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let asked = Instant::now();
    stream
        .write_all(
            format!(
                "POST /webhook HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 1000000000000\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    // The server closes after its answer: read it all.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer))
        .await
        .expect("answered before the client gives up")
        .expect("read");
    let took = asked.elapsed();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    println!(
        "keyless POST declaring 1e12 bytes, none sent: {} in {:.3} s",
        answer.lines().next().unwrap_or_default(),
        took.as_secs_f64()
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(answer.contains("urn:hookline:problem:body-too-large"), "{answer}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// A DNS server that drops every query: lookups never answer.
#[derive(Debug, Default)]
struct Silent {
    asked: AtomicUsize,
}

impl Resolve for Silent {
    fn lookup(&self, _name: &str, _port: u16) -> Lookup {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::pending())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hung_callback_lookups_end_at_their_limit_and_hold_back_no_reads() {
    let silent = Arc::new(Silent::default());
    let limit = Duration::from_secs(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_sqlite::SqliteStore::open(
        &dir.path().join("dns.db"),
        Default::default(),
        crate::helpers::sealer(),
    )
    .expect("open sqlite");
    let app = spawn_app_looking_up(
        Arc::new(store),
        None,
        Arc::new(NetPolicy::loopback_allowed()),
        Arc::new(Metrics::new()),
        Some(Resolver::new(Arc::clone(&silent) as Arc<dyn Resolve>, limit)),
    )
    .await;
    // A job to read back (its callback is an address literal: no lookup).
    let job = app.accepted_job(&["gas"]).await;
    // A key whose first use comes during the flood (a store read).
    let fresh_key = create_key(&*app.store, "fresh").await;

    let in_flight = 300;
    let started = Instant::now();
    let posts: Vec<_> = (0..in_flight)
        .map(|i| {
            let http = app.http.clone();
            let url = format!("{}/webhook", app.base);
            tokio::spawn(async move {
                let response = http
                    .post(url)
                    .json(&serde_json::json!({
                        "providers": ["gas"],
                        "callbackUrl": format!("https://receiver-{i}.example/hook"),
                    }))
                    .send()
                    .await
                    .expect("post");
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.expect("json");
                (status, body, started.elapsed())
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while silent.asked.load(Ordering::SeqCst) < in_flight {
        assert!(
            Instant::now() < deadline,
            "only {} lookups started",
            silent.asked.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let hung = silent.asked.load(Ordering::SeqCst);

    let timed = |path: String, http: reqwest::Client| async move {
        let asked = Instant::now();
        let status = http.get(path).send().await.expect("GET").status().as_u16();
        (status, asked.elapsed())
    };
    let (ready, ready_took) = timed(format!("{}/readyz", app.base), app.http.clone()).await;
    let (list, list_took) = timed(format!("{}/v1/jobs", app.base), app.http.clone()).await;
    let (read, read_took) = timed(format!("{}/v1/jobs/{job}", app.base), app.http.clone()).await;
    let (first_use, first_use_took) =
        timed(format!("{}/v1/jobs", app.base), client_with_key(&fresh_key)).await;
    println!(
        "{hung} callback lookups hung: /readyz {ready} in {:.3} s, GET /v1/jobs {list} in {:.3} s, \
         a job {read} in {:.3} s, a new key's first use {first_use} in {:.3} s",
        ready_took.as_secs_f64(),
        list_took.as_secs_f64(),
        read_took.as_secs_f64(),
        first_use_took.as_secs_f64()
    );
    for (what, status, took) in [
        ("/readyz", ready, ready_took),
        ("GET /v1/jobs", list, list_took),
        ("GET /v1/jobs/{id}", read, read_took),
        ("first use of a key", first_use, first_use_took),
    ] {
        assert_eq!(status, 200, "{what}");
        assert!(
            took < Duration::from_millis(500),
            "{what} took {took:?} behind hung lookups"
        );
    }

    let mut slowest = Duration::ZERO;
    for post in posts {
        let (status, body, took) = post.await.expect("post task");
        assert_eq!(status, 503, "{body}");
        assert_eq!(
            body["type"], "urn:hookline:problem:callback-lookup-unfinished",
            "{body}"
        );
        slowest = slowest.max(took);
    }
    println!(
        "{in_flight} POSTs with a silent callback host: all 503 callback-lookup-unfinished, the last after {:.2} s (limit {:.1} s)",
        slowest.as_secs_f64(),
        limit.as_secs_f64()
    );
    assert!(slowest < limit + Duration::from_secs(2), "{slowest:?}");
}
