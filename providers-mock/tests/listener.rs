//! The mock serves on the same hardened listener as the API: what hyper
//! cannot parse gets a problem+json answer rather than an empty one.

use std::time::Duration;

use providers_mock::MockState;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_request_line_gets_a_problem_from_the_mock() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mock = providers_mock::spawn(listener, MockState::with_seed(1)).expect("spawn");
    let mut stream = tokio::net::TcpStream::connect(mock.addr).await.expect("connect");
    stream
        .write_all(b"\x16\x03\x01 not http\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer))
        .await
        .expect("answered and closed in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    println!("mock, garbage request line: {:?}", answer.lines().next());
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(
        answer.contains("urn:hookline:problem:malformed-request"),
        "{answer}"
    );
}
