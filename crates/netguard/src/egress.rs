//! Deliveries through an egress proxy (`--egress-proxy http://HOST:PORT`,
//! for a static source IP) with the SSRF guard still deciding.
//!
//! A forward proxy asked for a host name resolves it itself, so a name that
//! rebinds to an inside address would get the proxy to connect there. Here
//! hookline resolves the target through [`GuardedResolver`], refuses what
//! the policy refuses (the same [`Blocked`] as without a proxy), and asks
//! the proxy for a tunnel to the checked address only: `CONNECT
//! 203.0.113.7:443`, never `CONNECT receiver.example:443`. TLS then runs
//! through the tunnel to the receiver, with SNI and certificate checks for
//! the URL's host name (rustls with the platform's roots, as reqwest uses).
//!
//! Plain `http` targets go through a `CONNECT` tunnel too, not an
//! absolute-form request (`POST http://203.0.113.7/hook`): a proxy must
//! replace the `Host` header with the request target's authority (RFC 9112
//! section 3.2.2), so the receiver would see the address instead of its
//! name, and the proxy would read (and could log) the signed body. The
//! cost: squid's default configuration allows `CONNECT` to port 443 only
//! (`http_access deny CONNECT !SSL_ports`), so an operator whose receivers
//! listen on other ports allows those ports for `CONNECT`.
//!
//! The proxy's own address is the operator's choice and is not guarded.
//! Nothing here reads proxy variables from the environment.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::{Host, Url};

use crate::{Blocked, GuardedResolver, LookupError, Resolver};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where deliveries go out: an `http://HOST:PORT` forward proxy that
/// supports `CONNECT`. Credentials, paths and other schemes are refused
/// when it is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressProxy {
    host: ProxyHost,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ProxyHost {
    Name(String),
    Ip(IpAddr),
}

/// Why an `--egress-proxy` value is not one. It never repeats the value:
/// a URL given with a password must not show it anywhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an egress proxy is http://HOST:PORT: {0}")]
pub struct EgressProxyError(&'static str);

impl std::str::FromStr for EgressProxy {
    type Err = EgressProxyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let url = Url::parse(text.trim()).map_err(|_| EgressProxyError("this is not a URL"))?;
        if url.scheme() != "http" {
            return Err(EgressProxyError("only http:// proxies are supported"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EgressProxyError("credentials in the URL are not supported"));
        }
        if url.path() != "/" && !url.path().is_empty() {
            return Err(EgressProxyError("a path is not allowed"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(EgressProxyError("a query or fragment is not allowed"));
        }
        let host = match url.host() {
            Some(Host::Domain(name)) => ProxyHost::Name(name.to_owned()),
            Some(Host::Ipv4(ip)) => ProxyHost::Ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => ProxyHost::Ip(IpAddr::V6(ip)),
            None => return Err(EgressProxyError("it has no host")),
        };
        let port = url
            .port_or_known_default()
            .ok_or(EgressProxyError("it has no port"))?;
        Ok(Self { host, port })
    }
}

impl fmt::Display for EgressProxy {
    /// `HOST:PORT`, as errors and logs name it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            ProxyHost::Name(name) => write!(f, "{name}:{}", self.port),
            ProxyHost::Ip(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
        }
    }
}

/// A connection through the proxy that did not come about. Each says it
/// was the egress proxy (or the guard, before the proxy was asked).
#[derive(Debug, Clone, thiserror::Error)]
pub enum EgressError {
    /// The guard refused every address of the target: the proxy was not asked.
    #[error(transparent)]
    Blocked(#[from] Blocked),
    /// The target's host name could not be looked up.
    #[error("{host} could not be looked up")]
    NotFound { host: String },
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("egress proxy {proxy} is unreachable: {reason}")]
    Unreachable { proxy: String, reason: String },
    #[error("egress proxy {proxy} refused a tunnel to {target}: HTTP {status}")]
    Refused {
        proxy: String,
        target: SocketAddr,
        status: u16,
    },
    #[error("egress proxy {proxy} answered CONNECT with something other than HTTP")]
    Malformed { proxy: String },
    #[error("egress proxy {proxy} opened no tunnel within {} s", .after.as_secs_f64())]
    TimedOut { proxy: String, after: Duration },
    #[error("the URL has no host")]
    NoHost,
}

/// The tunnel to a checked address: a `Service<Uri>` for hyper's client,
/// under TLS from [`hyper_rustls`] for `https` targets.
#[derive(Debug, Clone)]
struct Tunnel {
    proxy: Arc<EgressProxy>,
    guard: GuardedResolver,
    /// Looks the proxy's own name up (not guarded).
    proxy_lookups: Resolver,
    connect_timeout: Duration,
}

/// The largest CONNECT answer head read.
const MAX_CONNECT_ANSWER: usize = 8 * 1024;

impl Tunnel {
    /// The target's addresses the policy allows, with the URI's port.
    async fn targets(&self, uri: &Uri) -> Result<Vec<SocketAddr>, EgressError> {
        let host = uri.host().ok_or(EgressError::NoHost)?;
        let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.guard.policy().check_ip(bare, ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        match self.guard.allowed(host, port).await {
            Ok(addresses) if addresses.is_empty() => Err(EgressError::NotFound {
                host: host.to_owned(),
            }),
            Ok(addresses) => Ok(addresses),
            Err(err) => Err(match err.downcast::<Blocked>() {
                Ok(blocked) => EgressError::Blocked(*blocked),
                Err(err) => match err.downcast::<LookupError>() {
                    Ok(lookup) => EgressError::Lookup(*lookup),
                    Err(_) => EgressError::NotFound {
                        host: host.to_owned(),
                    },
                },
            }),
        }
    }

    async fn proxy_addresses(&self) -> Result<Vec<SocketAddr>, EgressError> {
        let unreachable = |reason: String| EgressError::Unreachable {
            proxy: self.proxy.to_string(),
            reason,
        };
        match &self.proxy.host {
            ProxyHost::Ip(ip) => Ok(vec![SocketAddr::new(*ip, self.proxy.port)]),
            ProxyHost::Name(name) => match self.proxy_lookups.lookup(name, self.proxy.port).await {
                Ok(Ok(found)) if !found.is_empty() => Ok(found),
                Ok(_) => Err(unreachable(format!("{name} could not be looked up"))),
                Err(err) => Err(unreachable(err.to_string())),
            },
        }
    }

    /// A connection to the proxy, then `CONNECT` to each allowed address in
    /// turn until one is granted.
    async fn open(&self, uri: Uri) -> Result<TcpStream, EgressError> {
        let targets = self.targets(&uri).await?;
        let proxies = self.proxy_addresses().await?;
        let mut last = None;
        for target in targets {
            let mut stream = connect_any(&proxies)
                .await
                .map_err(|err| EgressError::Unreachable {
                    proxy: self.proxy.to_string(),
                    reason: io_reason(&err),
                })?;
            match connect_through(&mut stream, target).await {
                Ok(()) => return Ok(stream),
                Err(Handshake::Status(status)) => {
                    last = Some(EgressError::Refused {
                        proxy: self.proxy.to_string(),
                        target,
                        status,
                    });
                }
                Err(Handshake::Malformed) => {
                    return Err(EgressError::Malformed {
                        proxy: self.proxy.to_string(),
                    });
                }
                Err(Handshake::Io(err)) => {
                    return Err(EgressError::Unreachable {
                        proxy: self.proxy.to_string(),
                        reason: io_reason(&err),
                    });
                }
            }
        }
        Err(last.unwrap_or(EgressError::NoHost))
    }
}

async fn connect_any(addresses: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// A short description of an I/O failure: its kind, never more.
fn io_reason(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => "connection reset".to_owned(),
        io::ErrorKind::UnexpectedEof => "connection closed".to_owned(),
        kind => kind.to_string(),
    }
}

/// Why a CONNECT did not open a tunnel.
#[derive(Debug)]
enum Handshake {
    Status(u16),
    Malformed,
    Io(io::Error),
}

/// `CONNECT {target}` on `stream`; `Ok` once the proxy answered 2xx, with
/// nothing read past its answer's head.
async fn connect_through(stream: &mut TcpStream, target: SocketAddr) -> Result<(), Handshake> {
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(Handshake::Io)?;
    let head = read_head(stream).await?;
    match connect_status(&head) {
        Some(status) if (200..300).contains(&status) => Ok(()),
        Some(status) => Err(Handshake::Status(status)),
        None => Err(Handshake::Malformed),
    }
}

/// The answer's head, read one byte at a time so nothing of the tunnel's
/// own data is consumed (a proxy sends none before we do, but the receiver
/// of a plain `http` tunnel might).
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, Handshake> {
    let mut head = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_ANSWER {
            return Err(Handshake::Malformed);
        }
        match stream.read(&mut byte).await {
            Ok(0) => {
                return Err(Handshake::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed",
                )));
            }
            Ok(_) => head.push(byte[0]),
            Err(err) => return Err(Handshake::Io(err)),
        }
    }
    Ok(head)
}

/// The status code of `HTTP/1.x NNN ...`.
fn connect_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

impl tower_service::Service<Uri> for Tunnel {
    type Response = TokioIo<TcpStream>;
    type Error = EgressError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tunnel = self.clone();
        Box::pin(async move {
            let after = tunnel.connect_timeout;
            match tokio::time::timeout(after, tunnel.open(uri)).await {
                Ok(opened) => opened.map(TokioIo::new),
                Err(_) => Err(EgressError::TimedOut {
                    proxy: tunnel.proxy.to_string(),
                    after,
                }),
            }
        })
    }
}

/// Why a request through the proxy got no answer, as the attempt history
/// shows it: a guard's refusal word for word as without a proxy, the
/// proxy's failure naming it, or what a direct request says.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Blocked(Blocked),
    #[error(transparent)]
    Proxy(EgressError),
    #[error("connection failed")]
    Connect,
    #[error("timed out")]
    TimedOut,
    #[error("request failed")]
    Failed,
}

/// The client deliveries use when an egress proxy is set: HTTP/1.1, a pool
/// of tunnels per receiver, no redirects, nothing from the environment.
#[derive(Clone)]
pub struct EgressClient {
    proxy: Arc<EgressProxy>,
    client: Client<hyper_rustls::HttpsConnector<Tunnel>, reqwest::Body>,
}

impl fmt::Debug for EgressClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressClient")
            .field("proxy", &self.proxy)
            .finish()
    }
}

/// The TLS settings could not be made (the platform's verifier failed).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for deliveries through the egress proxy: {0}")]
pub struct EgressTlsError(String);

impl EgressClient {
    /// Through `proxy`, resolving targets with `guard`, certificates checked
    /// against the platform's roots (reqwest's verifier).
    pub fn new(
        proxy: EgressProxy,
        guard: GuardedResolver,
        connect_timeout: Duration,
    ) -> Result<Self, EgressTlsError> {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
            .map_err(|err| EgressTlsError(err.to_string()))?;
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| EgressTlsError(err.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Self::with_tls(proxy, guard, connect_timeout, tls))
    }

    /// With TLS settings of the caller's (tests: a root of their own).
    pub fn with_tls(
        proxy: EgressProxy,
        guard: GuardedResolver,
        connect_timeout: Duration,
        tls: rustls::ClientConfig,
    ) -> Self {
        let proxy = Arc::new(proxy);
        let tunnel = Tunnel {
            proxy: Arc::clone(&proxy),
            guard,
            proxy_lookups: Resolver::system_for_callbacks(),
            connect_timeout,
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tunnel);
        // Idle tunnels are closed after 90 s (reqwest's default); the
        // timer is what enforces it.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Self { proxy, client }
    }

    pub fn proxy(&self) -> &EgressProxy {
        &self.proxy
    }

    /// Sends `request` through the proxy within its timeout (the answer's
    /// body too: reading it past the timeout is an error).
    pub async fn execute(&self, request: reqwest::Request) -> Result<reqwest::Response, SendError> {
        let timeout = request.timeout().copied();
        let request = http::Request::<reqwest::Body>::try_from(request).map_err(|_| SendError::Failed)?;
        let sent = self.client.request(request);
        let answer = match timeout {
            Some(timeout) => match tokio::time::timeout(timeout, sent).await {
                Ok(answer) => answer,
                Err(_) => return Err(SendError::TimedOut),
            },
            None => sent.await,
        };
        let answer = answer.map_err(classify)?;
        let deadline = timeout.map(|timeout| Box::pin(tokio::time::sleep(timeout)));
        Ok(reqwest::Response::from(answer.map(|body| {
            reqwest::Body::wrap(Deadline {
                inner: body,
                deadline,
            })
        })))
    }
}

fn classify(err: hyper_util::client::legacy::Error) -> SendError {
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        if let Some(egress) = cause.downcast_ref::<EgressError>() {
            return match egress {
                EgressError::Blocked(blocked) => SendError::Blocked(blocked.clone()),
                // As a direct request's failed lookup reads.
                EgressError::NotFound { .. } | EgressError::Lookup(_) | EgressError::NoHost => {
                    SendError::Connect
                }
                other => SendError::Proxy(other.clone()),
            };
        }
        source = cause.source();
    }
    if err.is_connect() {
        SendError::Connect
    } else {
        SendError::Failed
    }
}

/// A body that fails once its request's time is up, so a receiver that
/// trickles its answer holds a delivery no longer than a direct one.
struct Deadline<B> {
    inner: B,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("timed out")]
struct BodyTimedOut;

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Pin::new(&mut this.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Mutex;

    use testkit::forwardproxy::ForwardProxy;
    use tokio::io::{AsyncRead, AsyncWrite};
    use tokio::net::TcpListener;

    use super::*;
    use crate::{Lookup, NetPolicy, Resolve};

    /// Every name resolves to one address, as a DNS server an attacker runs.
    #[derive(Debug)]
    struct Fixed(IpAddr);

    impl Resolve for Fixed {
        fn lookup(&self, _name: &str, port: u16) -> Lookup {
            let address = SocketAddr::new(self.0, port);
            Box::pin(async move { Ok(vec![address]) })
        }
    }

    fn guard(policy: NetPolicy, answer: IpAddr) -> GuardedResolver {
        GuardedResolver::with_resolver(
            Arc::new(policy),
            Resolver::new(Arc::new(Fixed(answer)), Duration::from_secs(2)),
        )
    }

    fn proxy_of(proxy: &ForwardProxy) -> EgressProxy {
        proxy.url().parse().expect("the test proxy's URL")
    }

    fn plain_tls() -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    }

    /// What a receiver saw of one request.
    #[derive(Debug, Clone, Default)]
    struct Seen {
        request_line: String,
        host: String,
        body: String,
        sni: Option<String>,
    }

    /// Answers one request per connection `200 ok`, recording it.
    async fn answer_one<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        sni: Option<String>,
        seen: &Mutex<Vec<Seen>>,
    ) {
        let mut data = Vec::new();
        let mut chunk = [0u8; 1024];
        let head_end = loop {
            if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => data.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
        let header = |name: &str| {
            head.lines()
                .find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
                })
                .unwrap_or_default()
        };
        let length: usize = header("content-length").parse().unwrap_or(0);
        while data.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => data.extend_from_slice(&chunk[..n]),
            }
        }
        seen.lock().expect("lock").push(Seen {
            request_line: head.lines().next().unwrap_or("").to_owned(),
            host: header("host"),
            body: String::from_utf8_lossy(&data[head_end..]).into_owned(),
            sni,
        });
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .await;
        let _ = stream.shutdown().await;
    }

    async fn receiver(tls: Option<tokio_rustls::TlsAcceptor>) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = Arc::clone(&shared);
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => answer_one(stream, None, &seen).await,
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let sni = stream.get_ref().1.server_name().map(str::to_owned);
                                answer_one(stream, sni, &seen).await;
                            }
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    fn post(url: &str) -> reqwest::Request {
        reqwest::Client::new()
            .post(url)
            .body("{\"hello\":1}")
            .timeout(Duration::from_secs(5))
            .build()
            .expect("request")
    }

    #[test]
    fn only_http_host_port_is_a_proxy_and_errors_never_echo_it() {
        for (text, shown) in [
            ("http://10.0.0.5:3128", "10.0.0.5:3128"),
            ("http://proxy.internal:3128/", "proxy.internal:3128"),
            ("http://[fd00::5]:3128", "[fd00::5]:3128"),
            ("http://proxy.internal", "proxy.internal:80"),
        ] {
            let proxy: EgressProxy = text.parse().expect(text);
            assert_eq!(proxy.to_string(), shown);
        }
        for text in [
            "https://proxy:3128",
            "socks5://proxy:1080",
            "http://user:hunter2@proxy:3128",
            "http://:hunter2@proxy:3128",
            "http://proxy:3128/squid",
            "http://proxy:3128/?a=b",
            "http://proxy:3128/#f",
            "proxy:3128",
            "",
            "http://:3128",
        ] {
            let err = text.parse::<EgressProxy>().expect_err(text).to_string();
            assert!(
                err.starts_with("an egress proxy is http://HOST:PORT"),
                "{text}: {err}"
            );
            assert!(
                !err.contains("hunter2") && (text.is_empty() || !err.contains(text)),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn reads_the_status_of_a_connect_answer() {
        assert_eq!(
            connect_status(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some(200)
        );
        assert_eq!(connect_status(b"HTTP/1.0 403 Forbidden\r\n\r\n"), Some(403));
        assert_eq!(connect_status(b"HTTP/1.1 200\r\n\r\n"), Some(200));
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 2000 x\r\n\r\n",
            b"HTTP/1.1 abc\r\n\r\n",
            b"",
        ] {
            assert_eq!(connect_status(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[tokio::test]
    async fn a_delivery_goes_through_a_tunnel_to_the_checked_address() {
        let proxy = ForwardProxy::start().await.expect("proxy");
        let (addr, seen) = receiver(None).await;
        let client = EgressClient::with_tls(
            proxy_of(&proxy),
            guard(NetPolicy::loopback_allowed(), IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Duration::from_secs(5),
            plain_tls(),
        );
        let url = format!("http://receiver.test:{}/hook", addr.port());
        let answer = client.execute(post(&url)).await.expect("delivered");
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.expect("body"), "ok");
        assert_eq!(
            proxy.connect_targets(),
            [addr.to_string()],
            "asked for the address, not the name"
        );
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(
            seen[0].request_line, "POST /hook HTTP/1.1",
            "origin-form inside the tunnel"
        );
        assert_eq!(
            seen[0].host,
            format!("receiver.test:{}", addr.port()),
            "the name, as sent direct"
        );
        assert_eq!(seen[0].body, "{\"hello\":1}");
    }

    #[tokio::test]
    async fn https_goes_through_the_tunnel_checked_for_the_host_name() {
        let certified = rcgen::generate_simple_self_signed(vec!["receiver.test".to_owned()]).expect("cert");
        let cert = certified.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("server config");
        let (addr, seen) = receiver(Some(tokio_rustls::TlsAcceptor::from(Arc::new(server)))).await;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("root");
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let proxy = ForwardProxy::start().await.expect("proxy");
        let client = EgressClient::with_tls(
            proxy_of(&proxy),
            guard(NetPolicy::loopback_allowed(), IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Duration::from_secs(5),
            tls,
        );
        let url = format!("https://receiver.test:{}/hook", addr.port());
        let answer = client.execute(post(&url)).await.expect("delivered over TLS");
        assert_eq!(answer.status(), 200);
        assert_eq!(proxy.connect_targets(), [addr.to_string()]);
        let first = seen.lock().expect("lock").clone();
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(
            first[0].sni.as_deref(),
            Some("receiver.test"),
            "SNI is the URL's name"
        );

        // The certificate is checked for the URL's name, not the address
        // the tunnel goes to: another name on the same address fails.
        let url = format!("https://other.test:{}/hook", addr.port());
        let err = client.execute(post(&url)).await.expect_err("wrong name");
        assert!(matches!(err, SendError::Connect), "{err:?}");
        assert_eq!(seen.lock().expect("lock").len(), 1, "nothing was sent");
    }

    #[tokio::test]
    async fn a_name_rebound_to_a_refused_address_never_reaches_the_proxy() {
        let proxy = ForwardProxy::start().await.expect("proxy");
        for (policy, answer) in [
            (NetPolicy::strict(), IpAddr::V4(Ipv4Addr::LOCALHOST)),
            (
                NetPolicy::loopback_allowed(),
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            ),
            (
                NetPolicy::loopback_allowed(),
                IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
            ),
        ] {
            let expected = policy
                .check_ip("rebind.test", answer)
                .expect_err("refused")
                .to_string();
            let client = EgressClient::with_tls(
                proxy_of(&proxy),
                guard(policy, answer),
                Duration::from_secs(5),
                plain_tls(),
            );
            let err = client
                .execute(post("https://rebind.test/hook"))
                .await
                .expect_err("refused");
            let SendError::Blocked(blocked) = &err else {
                panic!("{answer}: {err:?}");
            };
            assert_eq!(err.to_string(), expected, "the same refusal as without a proxy");
            assert!(
                matches!(blocked, Blocked::Address { ip, .. } if *ip == answer),
                "{blocked}"
            );
            // An address literal is checked as well.
            let literal = format!("http://{}/hook", SocketAddr::new(answer, 80));
            assert!(matches!(
                client.execute(post(&literal)).await,
                Err(SendError::Blocked(_))
            ));
        }
        assert_eq!(proxy.asked(), [], "the proxy was never asked");
    }

    #[tokio::test]
    async fn a_proxy_that_refuses_or_is_gone_is_named_in_the_error() {
        let proxy = ForwardProxy::start().await.expect("proxy");
        let (addr, seen) = receiver(None).await;
        let client = EgressClient::with_tls(
            proxy_of(&proxy),
            guard(NetPolicy::loopback_allowed(), IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Duration::from_secs(5),
            plain_tls(),
        );
        proxy.refuse(403);
        let url = format!("http://receiver.test:{}/hook", addr.port());
        let err = client.execute(post(&url)).await.expect_err("refused");
        assert_eq!(
            err.to_string(),
            format!(
                "egress proxy {} refused a tunnel to {addr}: HTTP 403",
                proxy.addr()
            )
        );
        assert!(seen.lock().expect("lock").is_empty());

        // A port nothing listens on.
        let gone = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let gone_addr = gone.local_addr().expect("addr");
        drop(gone);
        let client = EgressClient::with_tls(
            format!("http://{gone_addr}").parse().expect("proxy"),
            guard(NetPolicy::loopback_allowed(), IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Duration::from_secs(5),
            plain_tls(),
        );
        let err = client.execute(post(&url)).await.expect_err("unreachable");
        assert_eq!(
            err.to_string(),
            format!("egress proxy {gone_addr} is unreachable: connection refused")
        );
    }

    #[tokio::test]
    async fn a_proxy_that_answers_something_else_is_named_not_trusted() {
        let long = vec![b'a'; MAX_CONNECT_ANSWER + 10];
        for answer in [b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec(), long] {
            let fake = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let fake_addr = fake.local_addr().expect("addr");
            let answering = tokio::spawn(async move {
                while let Ok((mut stream, _)) = fake.accept().await {
                    let _ = stream.write_all(&answer).await;
                    let mut rest = [0u8; 256];
                    let _ = stream.read(&mut rest).await;
                }
            });
            let client = EgressClient::with_tls(
                format!("http://{fake_addr}").parse().expect("proxy"),
                guard(NetPolicy::loopback_allowed(), IpAddr::V4(Ipv4Addr::LOCALHOST)),
                Duration::from_secs(5),
                plain_tls(),
            );
            let err = client
                .execute(post("http://receiver.test:9/hook"))
                .await
                .expect_err("no tunnel");
            assert_eq!(
                err.to_string(),
                format!("egress proxy {fake_addr} answered CONNECT with something other than HTTP")
            );
            answering.abort();
        }
    }

    #[tokio::test]
    async fn a_proxy_that_never_answers_ends_at_the_connect_timeout() {
        // Accepts and then says nothing.
        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let silent_addr = silent.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                open.push(stream);
            }
        });
        let client = EgressClient::with_tls(
            format!("http://{silent_addr}").parse().expect("proxy"),
            guard(NetPolicy::loopback_allowed(), IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Duration::from_millis(300),
            plain_tls(),
        );
        let started = std::time::Instant::now();
        let err = client
            .execute(post("http://receiver.test:9/hook"))
            .await
            .expect_err("no tunnel");
        assert!(
            err.to_string()
                .starts_with(&format!("egress proxy {silent_addr} opened no tunnel")),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        held.abort();
    }
}
