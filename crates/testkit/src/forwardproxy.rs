//! A small forward proxy for the egress proxy's tests: `CONNECT HOST:PORT`
//! opens a tunnel, and every request it gets is recorded (method and
//! target), so a test can say the proxy was asked for `127.0.0.1:PORT` and
//! never for a name.
//!
//! It reaches loopback addresses only (tests talk to 127.0.0.1 and nothing
//! else): a `CONNECT` to a name or another address is answered 403, as is
//! every `CONNECT` while it is [`ForwardProxy::refuse`]d. Any other method
//! (an absolute-form `GET http://...`) is answered 405: hookline never
//! sends one. It listens on `127.0.0.1:0` and stops when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the proxy got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub method: String,
    /// The request target as sent: `127.0.0.1:8080` for a `CONNECT`.
    pub target: String,
}

#[derive(Debug, Default)]
struct State {
    asked: Mutex<Vec<Asked>>,
    /// `0`: tunnels are opened; otherwise every `CONNECT` gets this status.
    refusing: AtomicU16,
}

/// The running proxy; stops when dropped.
#[derive(Debug)]
pub struct ForwardProxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The largest request head read.
const MAX_HEAD: usize = 16 * 1024;

impl ForwardProxy {
    /// A proxy on a port of its own. Must be called inside a Tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    // A connection that fails ends; the client sees that.
                    let _ = serve(client, &state).await;
                });
            }
        });
        Ok(Self { addr, state, accept })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, as `--egress-proxy` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in order.
    pub fn asked(&self) -> Vec<Asked> {
        self.state
            .asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The targets of every `CONNECT` so far.
    pub fn connect_targets(&self) -> Vec<String> {
        self.asked()
            .into_iter()
            .filter(|asked| asked.method == "CONNECT")
            .map(|asked| asked.target)
            .collect()
    }

    /// Answers every `CONNECT` from now on with `status` (403, 502).
    pub fn refuse(&self, status: u16) {
        self.state.refusing.store(status, Ordering::SeqCst);
    }
}

async fn serve(mut client: TcpStream, state: &State) -> std::io::Result<()> {
    let Some(head) = read_head(&mut client).await? else {
        return Ok(());
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    state
        .asked
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Asked {
            method: method.to_owned(),
            target: target.to_owned(),
        });
    if method != "CONNECT" {
        return answer(&mut client, 405).await;
    }
    let refusing = state.refusing.load(Ordering::SeqCst);
    if refusing != 0 {
        return answer(&mut client, refusing).await;
    }
    let Some(upstream) = target.parse::<SocketAddr>().ok().filter(|a| a.ip().is_loopback()) else {
        return answer(&mut client, 403).await;
    };
    let Ok(mut upstream) = TcpStream::connect(upstream).await else {
        return answer(&mut client, 502).await;
    };
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

async fn answer(client: &mut TcpStream, status: u16) -> std::io::Result<()> {
    let reply = format!("HTTP/1.1 {status} Refused\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    client.write_all(reply.as_bytes()).await?;
    client.shutdown().await
}

/// The request head, up to its blank line; `None` if the client left first.
async fn read_head(client: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_HEAD || client.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}
