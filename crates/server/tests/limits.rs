//! The listener's limits over real sockets on 127.0.0.1, with timeouts
//! short enough for a test: half-sent heads, idle floods past the bound,
//! oversized heads and bodies, slow bodies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use server::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(limits: Limits) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/echo", post(|body: axum::body::Bytes| async move { body }));
    let shutdown = CancellationToken::new();
    tokio::spawn(server::serve(listener, app, limits, shutdown.clone()));
    Running { addr, shutdown }
}

/// A head as far as it got, and the whole answer to one that completes.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Reads one answer (head and a Content-Length body) within `within`.
async fn read_answer(stream: &mut TcpStream, within: Duration) -> Answer {
    let read = async {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if bytes.len() >= end + 4 + length {
                    let status = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .expect("status");
                    let body = String::from_utf8_lossy(&bytes[end + 4..end + 4 + length]).into_owned();
                    return Answer { status, head, body };
                }
            }
            let n = stream.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before a whole answer: {:?}",
                String::from_utf8_lossy(&bytes)
            );
            bytes.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("an answer in time")
}

/// Holds `stream` open and counts it into `closed` once the server closes it.
fn count_close(mut stream: TcpStream, closed: Arc<AtomicUsize>) {
    tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        closed.fetch_add(1, Ordering::SeqCst);
    });
}

/// Polls until `closed` reaches `want` or `within` passes; the count then.
async fn wait_closed(closed: &AtomicUsize, want: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    while closed.load(Ordering::SeqCst) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    closed.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_heads_are_closed_within_the_header_timeout() {
    let header = Duration::from_millis(500);
    let server = start(Limits {
        header_read_timeout: header,
        idle_timeout: Duration::from_secs(30),
        ..Limits::default()
    })
    .await;
    let connections = 200;
    let closed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    for _ in 0..connections {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-half: ")
            .await
            .expect("write");
        count_close(stream, Arc::clone(&closed));
    }
    let sent = started.elapsed();
    assert_eq!(
        closed.load(Ordering::SeqCst),
        0,
        "closed before the header timeout"
    );
    let after = header + Duration::from_secs(1);
    let done = wait_closed(&closed, connections, after + sent).await;
    println!(
        "{connections} half-sent heads (sent in {:.2} s): {} still open {:.1} s after (header timeout {:.1} s); closed by {:.2} s",
        sent.as_secs_f64(),
        connections - done,
        after.as_secs_f64(),
        header.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        done, connections,
        "half-sent heads still open after the header timeout"
    );
    // The server still answers.
    let mut fresh = TcpStream::connect(server.addr).await.expect("connect");
    fresh
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_answer(&mut fresh, Duration::from_secs(1)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_may_idle_longer_than_a_head_may_take() {
    let header = Duration::from_millis(300);
    let idle = Duration::from_millis(1200);
    let server = start(Limits {
        header_read_timeout: header,
        idle_timeout: idle,
        ..Limits::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    for _ in 0..2 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            .await
            .expect("write");
        assert_eq!(read_answer(&mut stream, Duration::from_secs(1)).await.status, 200);
    }
    let idle_from = Instant::now();
    // Past the header timeout, the idle connection still serves.
    tokio::time::sleep(header * 2).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_answer(&mut stream, Duration::from_secs(1)).await.status, 200);
    let idle_from_again = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(idle + Duration::from_secs(1), stream.read(&mut buf))
        .await
        .expect("closed within the idle timeout")
        .unwrap_or(0);
    let idled = idle_from_again.elapsed();
    println!(
        "keep-alive: served after {:.2} s idle (header timeout {:.1} s), closed after {:.2} s idle (idle timeout {:.1} s)",
        (idle_from_again - idle_from).as_secs_f64(),
        header.as_secs_f64(),
        idled.as_secs_f64(),
        idle.as_secs_f64()
    );
    assert_eq!(n, 0);
    assert!(
        idled >= idle - Duration::from_millis(50),
        "closed after {idled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_past_the_bound_does_not_lock_out_healthz() {
    let bound = 50;
    // Timeouts far beyond the test: only the bound can help.
    let server = start(Limits {
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        max_connections: Some(bound),
        ..Limits::default()
    })
    .await;
    let flood = 300;
    let closed = Arc::new(AtomicUsize::new(0));
    for _ in 0..flood {
        let stream = TcpStream::connect(server.addr).await.expect("connect");
        count_close(stream, Arc::clone(&closed));
    }
    let asked = Instant::now();
    let mut fresh = TcpStream::connect(server.addr).await.expect("connect");
    fresh
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let answer = read_answer(&mut fresh, Duration::from_secs(2)).await;
    let took = asked.elapsed();
    // Everything past the bound was closed to make room.
    let done = wait_closed(&closed, flood + 1 - bound, Duration::from_secs(2)).await;
    println!(
        "{flood} idle connections, bound {bound}: /healthz answered {} in {:.3} s; {} of the flood still open",
        answer.status,
        took.as_secs_f64(),
        flood - done
    );
    assert_eq!(answer.status, 200);
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    assert!(
        flood - done < bound,
        "{} open past the bound of {bound}",
        flood - done
    );
}

/// Connections the listener accepts faster than their tasks start (here:
/// queued before it runs, on one thread) still count as closable: before,
/// the newcomer past the bound found none registered, closed nothing and
/// waited for the header timeout.
#[tokio::test(flavor = "current_thread")]
async fn connections_accepted_before_their_tasks_run_can_be_closed_to_make_room() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let bound = 16;
    let mut queued = Vec::new();
    for _ in 0..40 {
        queued.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let app = Router::new().route("/healthz", get(|| async { "ok" }));
    let shutdown = CancellationToken::new();
    let limits = Limits {
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        max_connections: Some(bound),
        ..Limits::default()
    };
    tokio::spawn(server::serve(listener, app, limits, shutdown.clone()));
    let _stop = Running { addr, shutdown };
    let asked = Instant::now();
    let mut fresh = TcpStream::connect(addr).await.expect("connect");
    fresh
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let answer = read_answer(&mut fresh, Duration::from_secs(5)).await;
    println!(
        "40 connections queued before the first accept, bound {bound}: /healthz answered in {:.3} s",
        asked.elapsed().as_secs_f64()
    );
    assert_eq!(answer.status, 200);
    drop(queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_sent() {
    let server = start(Limits::default().with_max_body_bytes(64 * 1024)).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let asked = Instant::now();
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 1000000000000\r\n\r\n",
        )
        .await
        .expect("write");
    let answer = read_answer(&mut stream, Duration::from_secs(1)).await;
    println!(
        "Content-Length 1e12, no body sent: {} in {:.3} s",
        answer.status,
        asked.elapsed().as_secs_f64()
    );
    assert_eq!(answer.status, 413);
    assert!(
        answer.head.contains("content-type: application/problem+json"),
        "{}",
        answer.head
    );
    assert!(answer.head.contains("connection: close"), "{}", answer.head);
    assert!(answer.head.contains("x-request-id: "), "{}", answer.head);
    let problem: serde_json::Value = serde_json::from_str(&answer.body).expect("json");
    assert_eq!(problem["type"], "urn:hookline:problem:body-too-large");
    assert_eq!(problem["status"], 413);

    // A client that sends the whole oversized body anyway still reads the
    // answer (the server closes with the body unread).
    for size in [70_000usize, 1_000_000] {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let mut request =
            format!("POST /echo HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {size}\r\n\r\n").into_bytes();
        request.resize(request.len() + size, b'x');
        let (mut reader, mut writer) = stream.split();
        let write = async {
            // The server may close before it is all in.
            let _ = writer.write_all(&request).await;
        };
        let read = async {
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), reader.read_to_end(&mut answer)).await;
            String::from_utf8_lossy(&answer).into_owned()
        };
        let ((), answer) = tokio::join!(write, read);
        println!("{size} body bytes sent anyway: {:?}", answer.lines().next());
        assert!(answer.starts_with("HTTP/1.1 413"), "{size}: {answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_past_its_deadline_is_answered_408() {
    let deadline = Duration::from_millis(500);
    let server = start(Limits {
        body_read_timeout: deadline,
        ..Limits::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let asked = Instant::now();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .expect("write");
    let answer = read_answer(&mut stream, deadline + Duration::from_secs(1)).await;
    let took = asked.elapsed();
    println!(
        "10 of 100 body bytes sent: {} after {:.2} s (body deadline {:.1} s)",
        answer.status,
        took.as_secs_f64(),
        deadline.as_secs_f64()
    );
    assert_eq!(answer.status, 408);
    assert!(
        answer.head.contains("application/problem+json"),
        "{}",
        answer.head
    );
    assert!(took >= deadline, "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_target_or_too_many_headers_is_a_problem_not_an_empty_answer() {
    let server = start(Limits::default()).await;
    let long_target = format!(
        "GET /healthz?{} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n",
        "a".repeat(9 * 1024)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n{}\r\n",
        (0..150).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()
    );
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: {}\r\n\r\n",
        "b".repeat(40 * 1024)
    );
    for (request, status, kind) in [
        (long_target, 414, "uri-too-long"),
        (many_headers, 431, "headers-too-large"),
        (big_header, 431, "headers-too-large"),
    ] {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let answer = read_answer(&mut stream, Duration::from_secs(1)).await;
        println!("{kind}: {} with {} body bytes", answer.status, answer.body.len());
        assert_eq!(answer.status, status, "{kind}");
        assert!(answer.head.contains("x-request-id: "), "{kind}: {}", answer.head);
        assert!(
            answer.head.contains("application/problem+json"),
            "{}",
            answer.head
        );
        let problem: serde_json::Value = serde_json::from_str(&answer.body).expect("json");
        assert_eq!(problem["type"], format!("urn:hookline:problem:{kind}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_hyper_cannot_parse_is_answered_as_a_problem_too() {
    let server = start(Limits::default()).await;
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-huge: {}\r\n\r\n",
        "h".repeat(500 * 1024)
    );
    let cases: [(&str, Vec<u8>, u16, &str); 4] = [
        (
            "a garbage request line",
            b"\x16\x03\x01 hello\r\n\r\n".to_vec(),
            400,
            "malformed-request",
        ),
        (
            "a control byte in a header",
            b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-bad: a\x01b\r\n\r\n".to_vec(),
            400,
            "malformed-request",
        ),
        (
            "a space in the target",
            b"GET /health z HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".to_vec(),
            400,
            "malformed-request",
        ),
        (
            "headers past hyper's buffer",
            huge_header.into_bytes(),
            431,
            "headers-too-large",
        ),
    ];
    for (what, request, status, kind) in cases {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        // The server may answer and close before all of a huge head is in.
        let _ = stream.write_all(&request).await;
        let answer = read_answer(&mut stream, Duration::from_secs(2)).await;
        println!("{what}: {} with {} body bytes", answer.status, answer.body.len());
        assert_eq!(answer.status, status, "{what}");
        assert!(
            answer.head.contains("application/problem+json"),
            "{what}: {}",
            answer.head
        );
        assert!(answer.head.contains("x-request-id: "), "{what}: {}", answer.head);
        let problem: serde_json::Value = serde_json::from_str(&answer.body).expect("json");
        assert_eq!(problem["type"], format!("urn:hookline:problem:{kind}"), "{what}");
    }
    // Well-formed requests on the same server are still answered by the app.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\nGET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    // Both answers, pipelined, may come in one read.
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(2);
    while seen.matches("HTTP/1.1 200 OK").count() < 2 {
        assert!(Instant::now() < deadline, "pipelined answers: {seen:?}");
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "closed: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(!seen.contains("problem"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_all_answered_by_the_app() {
    let server = start(Limits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let pipelined = 500;
    let request = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".repeat(pipelined);
    let started = Instant::now();
    let (mut reader, mut writer) = stream.split();
    let write = async { writer.write_all(&request).await.expect("write") };
    let read = async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let deadline = Instant::now() + Duration::from_secs(5);
        let answered = |seen: &[u8]| seen.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count();
        while answered(&seen) < pipelined {
            assert!(Instant::now() < deadline, "{} answered", answered(&seen));
            let n = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf))
                .await
                .expect("in time")
                .expect("read");
            assert!(n > 0, "closed after {} answers", answered(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    };
    let ((), seen) = tokio::join!(write, read);
    let seen = String::from_utf8_lossy(&seen);
    println!(
        "{pipelined} pipelined requests: {} answers 200 in {:.3} s, {} problems",
        seen.matches("HTTP/1.1 200 OK").count(),
        started.elapsed().as_secs_f64(),
        seen.matches("problem").count()
    );
    assert!(!seen.contains("problem"), "a pipelined answer was replaced");
}
