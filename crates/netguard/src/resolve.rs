//! Host name lookups for the guard, bounded in time and kept off tokio's
//! blocking pool (which the SQLite store reads on): the system resolver
//! (`getaddrinfo`, so `/etc/hosts` and the platform's rules apply) on a few
//! threads of its own with a bounded queue, or any [`Resolve`] a test
//! injects.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// What a lookup yields.
pub type Lookup = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// Looks a host name up.
pub trait Resolve: Send + Sync + fmt::Debug {
    fn lookup(&self, name: &str, port: u16) -> Lookup;
}

/// How long the intake waits for a callback host's addresses by default.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// A lookup that did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("looking up {host} took longer than {} s", .after.as_secs_f64())]
    TimedOut { host: String, after: Duration },
    #[error("too many host name lookups are in flight to look up {host} now")]
    Busy { host: String },
}

/// A [`Resolve`] with its time limit.
#[derive(Debug, Clone)]
pub struct Resolver {
    inner: Arc<dyn Resolve>,
    timeout: Duration,
}

impl Resolver {
    pub fn new(inner: Arc<dyn Resolve>, timeout: Duration) -> Self {
        Self { inner, timeout }
    }

    /// The system resolver on the intake's own lookup threads, with
    /// [`DEFAULT_LOOKUP_TIMEOUT`].
    pub fn system() -> Self {
        static INTAKE: OnceLock<Arc<SystemResolver>> = OnceLock::new();
        let pool = INTAKE.get_or_init(|| Arc::new(SystemResolver::new("lookup", 8, 1024)));
        Self::new(Arc::clone(pool) as Arc<dyn Resolve>, DEFAULT_LOOKUP_TIMEOUT)
    }

    /// The system resolver on the callback client's own lookup threads
    /// (apart from the intake's, so a flood of hung lookups at intake does
    /// not hold back deliveries).
    pub fn system_for_callbacks() -> Self {
        static CALLBACKS: OnceLock<Arc<SystemResolver>> = OnceLock::new();
        let pool = CALLBACKS.get_or_init(|| Arc::new(SystemResolver::new("callback-lookup", 8, 1024)));
        Self::new(Arc::clone(pool) as Arc<dyn Resolve>, DEFAULT_LOOKUP_TIMEOUT)
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The addresses `name` has, or an error: the resolver's own (no such
    /// name, ...) inside, the time limit or a full queue outside.
    pub async fn lookup(&self, name: &str, port: u16) -> Result<io::Result<Vec<SocketAddr>>, LookupError> {
        match tokio::time::timeout(self.timeout, self.inner.lookup(name, port)).await {
            Err(_) => Err(LookupError::TimedOut {
                host: name.to_owned(),
                after: self.timeout,
            }),
            Ok(Err(err)) if err.kind() == io::ErrorKind::WouldBlock => Err(LookupError::Busy {
                host: name.to_owned(),
            }),
            Ok(found) => Ok(found),
        }
    }
}

struct Job {
    name: String,
    port: u16,
    answer: tokio::sync::oneshot::Sender<io::Result<Vec<SocketAddr>>>,
}

/// `getaddrinfo` on threads of its own, fed by a bounded queue: a lookup
/// that finds the queue full fails at once (`WouldBlock`), and one whose
/// caller gave up by the time a thread is free is skipped.
#[derive(Debug)]
pub struct SystemResolver {
    /// `None` if no thread could be started: lookups then use tokio's.
    jobs: Option<SyncSender<Job>>,
}

impl SystemResolver {
    pub fn new(name: &str, threads: usize, queue: usize) -> Self {
        let (jobs, queued) = std::sync::mpsc::sync_channel::<Job>(queue);
        let queued = Arc::new(Mutex::new(queued));
        let mut started = 0;
        for i in 0..threads.max(1) {
            let queued = Arc::clone(&queued);
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || work(&queued));
            if spawned.is_ok() {
                started += 1;
            }
        }
        Self {
            jobs: (started > 0).then_some(jobs),
        }
    }
}

fn work(queued: &Mutex<Receiver<Job>>) {
    loop {
        let job = queued.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else {
            return;
        };
        if job.answer.is_closed() {
            continue;
        }
        let found = (job.name.as_str(), job.port)
            .to_socket_addrs()
            .map(|addresses| addresses.collect());
        let _ = job.answer.send(found);
    }
}

impl Resolve for SystemResolver {
    fn lookup(&self, name: &str, port: u16) -> Lookup {
        let Some(jobs) = &self.jobs else {
            let name = name.to_owned();
            return Box::pin(
                async move { Ok(tokio::net::lookup_host((name.as_str(), port)).await?.collect()) },
            );
        };
        let (answer, answered) = tokio::sync::oneshot::channel();
        let queued = jobs.try_send(Job {
            name: name.to_owned(),
            port,
            answer,
        });
        Box::pin(async move {
            match queued {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    return Err(io::Error::new(io::ErrorKind::WouldBlock, "lookup queue full"));
                }
                Err(TrySendError::Disconnected(_)) => return Err(io::Error::other("lookup threads stopped")),
            }
            answered
                .await
                .unwrap_or_else(|_| Err(io::Error::other("lookup thread stopped")))
        })
    }
}
