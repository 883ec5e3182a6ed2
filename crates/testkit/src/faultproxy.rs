//! A TCP proxy in front of DynamoDB that loses requests or their answers on
//! demand: what a timeout or a dropped connection does to a write.
//!
//! It listens on `127.0.0.1:0` and forwards every connection to the
//! upstream endpoint, reading the requests (HTTP/1.1 with a
//! `Content-Length`, as the AWS SDK sends them) one at a time. A [`Fault`]
//! armed for an `X-Amz-Target` (`DynamoDB_20120810.PutItem`) fires on the
//! next requests with that target:
//! - [`Fault::LoseAnswer`] forwards the request, waits until DynamoDB
//!   starts answering (so the write has been applied), and closes the
//!   client's connection without passing the answer on;
//! - [`Fault::LoseRequest`] closes the client's connection without
//!   forwarding the request (nothing is applied, but the client cannot
//!   tell: it sent the request and got no answer);
//! - [`Fault::Answer`] answers in DynamoDB's place with an error of the
//!   given status and type (`400`, `ProvisionedThroughputExceededException`
//!   is throttling; `500`, `InternalServerError` a server error), without
//!   forwarding the request.
//!
//! Everything else passes through untouched.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// What happens to a request the fault fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Forwarded and applied; the answer is dropped with the connection.
    LoseAnswer,
    /// Dropped with the connection, never forwarded.
    LoseRequest,
    /// Not forwarded; answered with this HTTP status and DynamoDB error type.
    Answer(u16, &'static str),
}

#[derive(Debug, Default)]
struct State {
    /// Per target, the faults still to fire, in order.
    armed: HashMap<String, Vec<Fault>>,
    /// Requests seen, per target.
    seen: HashMap<String, u32>,
    /// Faults fired, per target and kind.
    fired: HashMap<(String, Fault), u32>,
}

/// The running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FaultProxy {
    /// A proxy to `upstream` (`http://127.0.0.1:8000`), on a port of its
    /// own. Must be called inside a Tokio runtime.
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let upstream = upstream_addr(upstream)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    // A connection that fails ends; the client sees that.
                    let _ = serve(client, upstream, state).await;
                });
            }
        });
        Ok(Self { addr, state, accept })
    }

    /// The endpoint to give the SDK instead of the upstream's.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Fires `fault` on the next `times` requests whose `X-Amz-Target` is
    /// `target`, after any faults already armed for it.
    pub fn arm(&self, target: &str, fault: Fault, times: u32) {
        let mut state = lock(&self.state);
        let queue = state.armed.entry(target.to_owned()).or_default();
        queue.extend(std::iter::repeat_n(fault, usize::try_from(times).unwrap_or(0)));
    }

    /// Forgets every armed fault that has not fired.
    pub fn disarm(&self) {
        lock(&self.state).armed.clear();
    }

    /// How many requests with `target` the proxy has seen.
    pub fn seen(&self, target: &str) -> u32 {
        lock(&self.state).seen.get(target).copied().unwrap_or(0)
    }

    /// How many times `fault` fired on `target`.
    pub fn fired(&self, target: &str, fault: Fault) -> u32 {
        lock(&self.state)
            .fired
            .get(&(target.to_owned(), fault))
            .copied()
            .unwrap_or(0)
    }
}

/// The `X-Amz-Target` of a DynamoDB operation (`PutItem`).
pub fn dynamodb_target(operation: &str) -> String {
    format!("DynamoDB_20120810.{operation}")
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn upstream_addr(endpoint: &str) -> std::io::Result<SocketAddr> {
    use std::net::ToSocketAddrs as _;
    let hostport = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    hostport.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("no address for {endpoint}"),
        )
    })
}

/// The next fault to fire on a request with `target`, counting it.
fn take_fault(state: &Mutex<State>, target: &str) -> Option<Fault> {
    let mut state = lock(state);
    *state.seen.entry(target.to_owned()).or_default() += 1;
    let queue = state.armed.get_mut(target)?;
    if queue.is_empty() {
        return None;
    }
    let fault = queue.remove(0);
    *state.fired.entry((target.to_owned(), fault)).or_default() += 1;
    Some(fault)
}

/// One client connection: requests one at a time to one upstream
/// connection, answers piped back by a task of their own.
async fn serve(client: TcpStream, upstream: SocketAddr, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let upstream = TcpStream::connect(upstream).await?;
    let (mut from_client, to_client) = client.into_split();
    let to_client = Arc::new(tokio::sync::Mutex::new(to_client));
    let (mut from_upstream, mut to_upstream) = upstream.into_split();
    let swallow = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Notify::new());
    let answers = {
        let swallow = Arc::clone(&swallow);
        let answered = Arc::clone(&answered);
        let to_client = Arc::clone(&to_client);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match from_upstream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if swallow.load(Ordering::SeqCst) {
                    answered.notify_one();
                    break;
                }
                if to_client.lock().await.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            // Dropping `to_client` here closes the client's side.
        })
    };
    let mut pending = Vec::new();
    while let Some((request, target)) = read_request(&mut from_client, &mut pending).await? {
        match target.as_deref().and_then(|target| take_fault(&state, target)) {
            None => to_upstream.write_all(&request).await?,
            Some(Fault::LoseRequest) => break,
            Some(Fault::Answer(status, kind)) => {
                to_client
                    .lock()
                    .await
                    .write_all(&error_answer(status, kind))
                    .await?;
            }
            Some(Fault::LoseAnswer) => {
                swallow.store(true, Ordering::SeqCst);
                to_upstream.write_all(&request).await?;
                // Once DynamoDB answers, the write has been applied.
                let _ = tokio::time::timeout(Duration::from_secs(10), answered.notified()).await;
                break;
            }
        }
    }
    answers.abort();
    Ok(())
}

/// An HTTP answer as DynamoDB gives an error: JSON with its `__type`.
fn error_answer(status: u16, kind: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"injected by the fault proxy"}}"#
    );
    format!(
        "HTTP/1.1 {status} Injected\r\ncontent-type: application/x-amz-json-1.0\r\n\
         x-amzn-requestid: faultproxy\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The next whole request (head and body) from the client, and its
/// `X-Amz-Target`; `None` when the client closed the connection.
async fn read_request(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    pending: &mut Vec<u8>,
) -> std::io::Result<Option<(Vec<u8>, Option<String>)>> {
    let mut buf = vec![0u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let length: usize = header("content-length").and_then(|n| n.parse().ok()).unwrap_or(0);
    let target = header("x-amz-target");
    while pending.len() < head_end + length {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        pending.extend_from_slice(&buf[..n]);
    }
    let rest = pending.split_off(head_end + length);
    let request = std::mem::replace(pending, rest);
    Ok(Some((request, target)))
}
