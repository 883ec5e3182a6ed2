//! The accept loop every hookline HTTP listener uses: the intake API,
//! `hookline processor`'s metrics and the mock providers. What it adds to
//! hyper's HTTP/1.1:
//!
//! - a request head must arrive within `header_read_timeout` of its first
//!   byte (of the accept, for a connection's first request), and a
//!   keep-alive connection may sit idle between requests for
//!   `idle_timeout` (`conn.rs`);
//! - a request body must arrive within `body_read_timeout` of its head,
//!   else the answer is 408 (`body.rs`);
//! - at most `max_connections` are open, by default a bound below the
//!   process's open-file limit that leaves room for the store's files and
//!   outgoing calls; a new connection beyond it closes the one that has
//!   waited longest for a request, so clients that send nothing cannot
//!   queue everyone else behind them;
//! - a declared body over `max_body_bytes`, a request target over
//!   `max_uri_bytes` and headers over `max_headers`/`max_header_bytes` are
//!   refused as problem+json (413, 414, 431) before the app sees them (hyper's
//!   own limits, above these, answer with an empty body).

mod body;
mod conn;
mod problem;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use conn::{Guarded, Watch};

/// Connections when the open-file limit is unlimited or unknown.
pub const DEFAULT_MAX_CONNECTIONS: usize = 65_536;

/// What a listener tolerates from its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// From a request's first byte (from the accept, for a connection's
    /// first request) to the end of its head.
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    /// Longer than a load balancer's idle timeout (60 s on AWS), so the
    /// balancer closes first and never sends on a connection being closed.
    pub idle_timeout: Duration,
    /// From the end of a request's head to the end of its body.
    pub body_read_timeout: Duration,
    /// Open connections at most; `None`: [`connection_bound_for`] the
    /// process's open-file limit.
    pub max_connections: Option<usize>,
    /// A request declaring a longer body (`Content-Length`) is answered 413
    /// at once, unread; `None`: the app decides.
    pub max_body_bytes: Option<u64>,
    /// The request target (path and query) at most, else 414.
    pub max_uri_bytes: usize,
    /// Header fields at most, else 431.
    pub max_headers: usize,
    /// Header names and values at most, in bytes, else 431.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            body_read_timeout: Duration::from_secs(30),
            max_connections: None,
            max_body_bytes: None,
            max_uri_bytes: 8 * 1024,
            max_headers: 100,
            max_header_bytes: 32 * 1024,
        }
    }
}

impl Limits {
    pub fn with_max_body_bytes(mut self, bytes: u64) -> Self {
        self.max_body_bytes = Some(bytes);
        self
    }

    /// How many connections may be open at once.
    pub fn connection_bound(&self) -> usize {
        self.max_connections
            .unwrap_or_else(|| connection_bound_for(open_file_limit()))
            .max(1)
    }
}

/// The process's soft limit on open files (`RLIMIT_NOFILE`); `None` when
/// unlimited or unknown.
pub fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Connections for a process allowed `file_limit` open files: a quarter of
/// them (at least 64, at most 1,024) is left for everything else the
/// process opens (the store's files and connections, outgoing calls, logs),
/// so accepting never fails for want of a file.
pub fn connection_bound_for(file_limit: Option<u64>) -> usize {
    match file_limit {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(limit) => {
            let headroom = (limit / 4).clamp(64, 1024);
            let bound = limit.saturating_sub(headroom).max(1);
            usize::try_from(bound).unwrap_or(usize::MAX)
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets
/// in-flight requests finish and closes idle connections.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let bound = limits.connection_bound();
    let permits = Arc::new(Semaphore::new(bound));
    let open = Arc::new(Open::default());
    let tracker = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // The header and idle timeouts are ours (`conn.rs`): hyper's own header
    // timeout would also be the idle one, and sets a timer per request.
    http.header_read_timeout(None)
        // Above ours, so ours answer (as problem+json) first.
        .max_headers(limits.max_headers.saturating_mul(2).max(100))
        .keep_alive(true);
    let http = Arc::new(http);
    let limits = Arc::new(limits);
    tracing::debug!(addr = ?listener.local_addr().ok(), max_connections = bound, "serving");
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(err) if is_per_connection(&err) => continue,
            Err(err) => {
                // Out of files or memory: wait a little rather than spin.
                tracing::warn!(error = %err, "accept failed; retrying in 100 ms");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let Some(permit) = room_for(&permits, &open, &shutdown).await else {
            break;
        };
        // Registered here, not in the connection's task: a task not yet run
        // holds a permit too, and the next newcomer must be able to close it.
        let watch = Arc::new(Watch::new(limits.header_read_timeout, limits.idle_timeout));
        let close = CancellationToken::new();
        let registered = open.register(Arc::clone(&watch), close.clone());
        let connection = Connection {
            app: app.clone(),
            limits: Arc::clone(&limits),
            http: Arc::clone(&http),
            watch,
            close,
            shutdown: shutdown.clone(),
            _registered: registered,
            _permit: permit,
        };
        tracker.spawn(connection.run(stream));
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// A permit for one more connection: at once while below the bound, else
/// once the connection that waited longest for a request is closed. When
/// every open one is busy answering, the one that goes idle first is closed,
/// so a newcomer waits for an answer to finish, never for a timeout.
/// `None` on shutdown.
async fn room_for(
    permits: &Arc<Semaphore>,
    open: &Open,
    shutdown: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    loop {
        if let Ok(permit) = Arc::clone(permits).try_acquire_owned() {
            return Some(permit);
        }
        let recheck = if open.close_longest_waiting() {
            // The closed connection's task ends and gives back its permit.
            Duration::from_secs(1)
        } else {
            Duration::from_millis(20)
        };
        tokio::select! {
            permit = Arc::clone(permits).acquire_owned() => return permit.ok(),
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(recheck) => {}
        }
    }
}

/// Errors that concern one connection, not the listener.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// One accepted connection and what it needs.
struct Connection {
    app: Router,
    limits: Arc<Limits>,
    http: Arc<hyper::server::conn::http1::Builder>,
    watch: Arc<Watch>,
    /// Cancelled to make room for a newcomer.
    close: CancellationToken,
    shutdown: CancellationToken,
    _registered: Registered,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        // Small answers go out at once rather than waiting for an ACK.
        let _ = stream.set_nodelay(true);
        let watch = self.watch;
        let close = self.close;
        let app = self.app;
        let limits = self.limits;
        let service_watch = Arc::clone(&watch);
        let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
            let app = app.clone();
            let limits = Arc::clone(&limits);
            let watch = Arc::clone(&service_watch);
            async move {
                watch.request_started();
                let response = answer(app, request, &limits, &watch).await;
                Ok::<_, Infallible>(response.map(|body| body::Finished::new(body, watch)))
            }
        });
        let io = TokioIo::new(Guarded::new(stream, watch));
        let connection = self.http.serve_connection(io, service);
        let mut connection = std::pin::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "connection ended");
                }
            }
            () = close.cancelled() => {
                tracing::debug!("closed the connection that waited longest, to make room");
            }
            () = self.shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "connection ended during shutdown");
                }
            }
        }
    }
}

/// The app's answer, or ours when the head breaks a limit or the body
/// does not arrive in time.
async fn answer(
    app: Router,
    request: http::Request<Incoming>,
    limits: &Limits,
    watch: &Arc<Watch>,
) -> axum::response::Response {
    if let Some(refusal) = problem::refuse_head(&request, limits) {
        return refusal;
    }
    let deadline = tokio::time::Instant::now() + limits.body_read_timeout;
    let request = request
        .map(|incoming| axum::body::Body::new(body::Deadline::new(incoming, deadline, Arc::clone(watch))));
    let response = match app.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if watch.take_body_timed_out() {
        // The app's answer (to a body it could not read) is replaced; its
        // request id, which its logs name, is kept.
        return problem::body_timeout(
            limits.body_read_timeout,
            response.headers().get(problem::REQUEST_ID),
        );
    }
    response
}

/// The open connections, so the longest-waiting one can be closed when a
/// new one needs its place.
#[derive(Debug, Default)]
struct Open {
    next: AtomicU64,
    connections: Mutex<HashMap<u64, (Arc<Watch>, CancellationToken)>>,
}

impl Open {
    fn register(self: &Arc<Self>, watch: Arc<Watch>, close: CancellationToken) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, (watch, close));
        Registered {
            open: Arc::clone(self),
            id,
        }
    }

    /// Closes the connection waiting longest for a request (its first, or
    /// the next on a keep-alive one); one busy with a request is left alone.
    /// Whether there was one to close.
    fn close_longest_waiting(&self) -> bool {
        let connections = self.connections.lock().unwrap_or_else(PoisonError::into_inner);
        let longest = connections
            .values()
            .filter(|(_, close)| !close.is_cancelled())
            .filter_map(|(watch, close)| watch.waiting_since().map(|since| (since, close)))
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((_, close)) => {
                close.cancel();
                true
            }
            None => false,
        }
    }
}

/// Removes its connection from [`Open`] when the connection ends.
struct Registered {
    open: Arc<Open>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.open
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_leaves_headroom_below_the_file_limit() {
        for (limit, bound) in [
            (Some(1024), 768),
            (Some(256), 192),
            (Some(100), 36),
            (Some(64), 1),
            (Some(65_536), 64_512),
            (Some(1_048_576), 1_047_552),
            (None, DEFAULT_MAX_CONNECTIONS),
        ] {
            assert_eq!(connection_bound_for(limit), bound, "{limit:?}");
        }
        let here = open_file_limit();
        println!(
            "this process may open {here:?} files: {} connections",
            Limits::default().connection_bound()
        );
        if let Some(limit) = here {
            assert!((Limits::default().connection_bound() as u64) < limit);
        }
    }
}
