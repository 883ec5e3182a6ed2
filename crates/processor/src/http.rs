//! The processor's two HTTP calls, and how their answers are classified
//! (SPEC section 3): a provider fetch and a callback delivery.

use std::sync::Arc;
use std::time::Duration;

use domain::{CallbackOutcome, FetchOutcome};
use futures::StreamExt;
use netguard::{GuardedResolver, NetPolicy};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER, USER_AGENT as USER_AGENT_HEADER};

use crate::providers::ProviderConfig;

pub(crate) const USER_AGENT: &str = concat!("hookline/", env!("CARGO_PKG_VERSION"));

/// One HTTP client for the whole processor: connection pools are shared, and
/// redirects are never followed (a callback target must not bounce us to
/// somewhere else). Proxy variables in the environment (`HTTP_PROXY`,
/// `HTTPS_PROXY`, `ALL_PROXY`) are ignored: a proxy is something an operator
/// configures on purpose, not something a shell leaks into the process.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("a client with static settings always builds")
}

/// The callback client: like [`client`], resolving host names through the
/// SSRF guard so a connection to a refused address is never opened. Never
/// through a proxy from the environment: a proxy resolves and connects on
/// its own, so the guard would decide nothing. With `--egress-proxy`,
/// through that proxy, asked for the addresses the guard checked
/// (`netguard::egress`).
#[derive(Debug, Clone)]
pub(crate) struct CallbackClient {
    direct: reqwest::Client,
    egress: Option<netguard::EgressClient>,
}

/// How long a connection (to the receiver, or a tunnel through the egress
/// proxy) may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl CallbackClient {
    /// A request to `url`, to complete and [`CallbackClient::send`].
    pub(crate) fn post(&self, url: url::Url) -> reqwest::RequestBuilder {
        self.direct.post(url)
    }

    /// Sends `request` directly, or through the egress proxy's tunnel to
    /// the address the guard checked; the error is secret-free text.
    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        match &self.egress {
            None => request.send().await.map_err(|err| transport_error(&err)),
            Some(egress) => match request.header(USER_AGENT_HEADER, USER_AGENT).build() {
                Ok(request) => egress.execute(request).await.map_err(|err| err.to_string()),
                Err(err) => Err(transport_error(&err)),
            },
        }
    }
}

pub(crate) fn callback_client(
    policy: Arc<NetPolicy>,
    lookups: Option<netguard::Resolver>,
    egress_proxy: Option<&netguard::EgressProxy>,
) -> Result<CallbackClient, netguard::EgressTlsError> {
    let guard = match lookups {
        Some(lookups) => GuardedResolver::with_resolver(policy, lookups),
        None => GuardedResolver::new(policy),
    };
    let direct = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .dns_resolver(guard.clone())
        .build()
        .expect("a client with static settings always builds");
    let egress = egress_proxy
        .map(|proxy| netguard::EgressClient::new(proxy.clone(), guard, CONNECT_TIMEOUT))
        .transpose()?;
    Ok(CallbackClient { direct, egress })
}

/// A provider's answer, classified, with the body of a failed one (cut to
/// [`domain::MAX_ATTEMPT_BODY`]) for the job's attempt history.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub outcome: FetchOutcome,
    pub body: Option<String>,
}

impl From<FetchOutcome> for Fetched {
    fn from(outcome: FetchOutcome) -> Self {
        Self { outcome, body: None }
    }
}

/// `GET {provider.url}?{name}={value}`: `jobId` for a job, `eventId` for
/// a thin event (its deliveries share the fetch).
pub(crate) async fn fetch_provider(
    client: &reqwest::Client,
    provider: &ProviderConfig,
    (name, value): &(&'static str, String),
    max_bytes: usize,
) -> Fetched {
    let request = client
        .get(provider.url.clone())
        .query(&[(*name, value.as_str())])
        .timeout(provider.timeout)
        .send();
    let response = match request.await {
        Ok(response) => response,
        Err(err) => {
            return FetchOutcome::Retryable {
                status: None,
                error: transport_error(&err),
                retry_after: None,
            }
            .into();
        }
    };
    let status = response.status();
    if !status.is_success() {
        let code = Some(status.as_u16());
        let error = format!("HTTP {}", status.as_u16());
        let outcome = if is_retryable(status) {
            FetchOutcome::Retryable {
                status: code,
                error,
                retry_after: retry_after(response.headers()),
            }
        } else {
            FetchOutcome::Permanent { status: code, error }
        };
        return Fetched {
            outcome,
            body: read_head(response).await,
        };
    }
    let body = match read_limited(response, max_bytes).await {
        Ok(body) => body,
        Err(ReadError::TooLarge(head)) => {
            return Fetched {
                outcome: FetchOutcome::Permanent {
                    status: Some(status.as_u16()),
                    error: format!("response body over {max_bytes} bytes"),
                },
                body: domain::truncate_body(&head),
            };
        }
        Err(ReadError::Transport(error, head)) => {
            return Fetched {
                outcome: FetchOutcome::Retryable {
                    status: Some(status.as_u16()),
                    error,
                    retry_after: None,
                },
                body: domain::truncate_body(&head),
            };
        }
    };
    match serde_json::from_slice(&body) {
        Ok(data) => FetchOutcome::Ok {
            status: status.as_u16(),
            data,
        }
        .into(),
        Err(_) => Fetched {
            outcome: FetchOutcome::Permanent {
                status: Some(status.as_u16()),
                error: "response is not JSON".to_owned(),
            },
            body: domain::truncate_body(&body),
        },
    }
}

/// One signed callback request (SPEC section 4).
#[derive(Debug)]
pub(crate) struct Callback<'a> {
    pub url: &'a url::Url,
    /// `webhook-id`: the job's id, or the event's for a delivery of one.
    pub message_id: &'a str,
    /// The endpoint's own headers, sent before hookline's (which they
    /// cannot name: `domain::EndpointHeaders`).
    pub headers: &'a domain::EndpointHeaders,
    /// The endpoint's auth header (`authorization`, or its own), if any.
    pub auth: Option<(String, domain::Credential)>,
    pub body: bytes::Bytes,
    /// Unix seconds of this attempt, as signed.
    pub timestamp: i64,
    /// The `webhook-signature` header: one `v1,...` per secret.
    pub signature: String,
}

pub(crate) async fn deliver_callback(
    client: &CallbackClient,
    network: &NetPolicy,
    callback: Callback<'_>,
    timeout: Duration,
) -> (CallbackOutcome, Answer) {
    let Callback {
        url,
        message_id,
        headers,
        auth,
        body,
        timestamp,
        signature,
    } = callback;
    // An address literal never reaches the resolver: check it here. A
    // refusal is retried like any failure to connect, so an operator who
    // widens the allow-list can still have the job delivered.
    if let Err(blocked) = network.check_literal(url) {
        let refused = CallbackOutcome::Retryable {
            status: None,
            error: blocked.to_string(),
            retry_after: None,
        };
        return (refused, Answer::default());
    }
    let mut request = client.post(url.clone());
    for (name, value) in headers.iter() {
        request = request.header(name, value);
    }
    if let Some((name, value)) = auth {
        let mut value = reqwest::header::HeaderValue::from_str(value.expose())
            .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
        value.set_sensitive(true);
        request = request.header(name, value);
    }
    let request = request
        .header(CONTENT_TYPE, "application/json")
        .header("webhook-id", message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .timeout(timeout);
    // Every answer's head is kept for the attempt history, successes
    // included (SPEC section 10), with the headers that explain it.
    match client.send(request).await {
        Ok(response) => {
            let status = response.status();
            let outcome = if status.is_success() {
                CallbackOutcome::Delivered {
                    status: status.as_u16(),
                }
            } else if status == StatusCode::GONE {
                CallbackOutcome::Gone
            } else {
                // Any other answer is retried: receivers fix their 4xx bugs,
                // and the schedule ends in the dead letter where an operator
                // can redrive.
                CallbackOutcome::Retryable {
                    status: Some(status.as_u16()),
                    error: format!("HTTP {}", status.as_u16()),
                    retry_after: retry_after(response.headers()),
                }
            };
            let headers = domain::kept_headers(
                response
                    .headers()
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_bytes())),
            );
            let body = read_head(response).await;
            (outcome, Answer { body, headers })
        }
        Err(error) => (
            CallbackOutcome::Retryable {
                status: None,
                error,
                retry_after: None,
            },
            Answer::default(),
        ),
    }
}

/// What a receiver answered besides its status, for the attempt history:
/// the head of its body and the headers an attempt keeps.
#[derive(Debug, Clone, Default)]
pub(crate) struct Answer {
    pub body: Option<String>,
    pub headers: std::collections::BTreeMap<String, String>,
}

fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// `Retry-After` as delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    delta.to_std().ok()
}

/// A short, secret-free description of a transport failure.
fn transport_error(err: &reqwest::Error) -> String {
    // The SSRF guard's refusal, from the resolver, says which address.
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(blocked) = cause.downcast_ref::<netguard::Blocked>() {
            return blocked.to_string();
        }
        source = cause.source();
    }
    if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "connection failed".to_owned()
    } else if err.is_body() || err.is_decode() {
        "response body interrupted".to_owned()
    } else {
        "request failed".to_owned()
    }
}

enum ReadError {
    /// Over the limit; what was read before the limit showed, if any.
    TooLarge(Vec<u8>),
    Transport(String, Vec<u8>),
}

async fn read_limited(response: reqwest::Response, max_bytes: usize) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|len| len > max_bytes as u64)
    {
        return Err(ReadError::TooLarge(Vec::new()));
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => return Err(ReadError::Transport(transport_error(&e), body)),
        };
        if body.len() + chunk.len() > max_bytes {
            body.extend_from_slice(&chunk[..max_bytes.saturating_sub(body.len()).min(chunk.len())]);
            return Err(ReadError::TooLarge(body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The first [`domain::MAX_ATTEMPT_BODY`] bytes of an answer's body,
/// as text; the rest is not read. Within the request's timeout, like the
/// answer itself; a body that breaks off keeps what arrived.
async fn read_head(response: reqwest::Response) -> Option<String> {
    let mut head = Vec::new();
    let mut stream = response.bytes_stream();
    while head.len() <= domain::MAX_ATTEMPT_BODY {
        match stream.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(_)) | None => break,
        }
    }
    domain::truncate_body(&head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses_as_the_spec_says() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable(StatusCode::from_u16(code).expect("valid")), "{code}");
        }
        for code in [400, 401, 403, 404, 410, 422, 301] {
            assert!(
                !is_retryable(StatusCode::from_u16(code).expect("valid")),
                "{code}"
            );
        }
    }

    #[test]
    fn reads_retry_after_in_both_forms() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "120".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(600)).to_rfc2822();
        headers.insert(RETRY_AFTER, later.parse().expect("header"));
        let parsed = retry_after(&headers).expect("a date");
        assert!(parsed > Duration::from_secs(590) && parsed <= Duration::from_secs(600));
        headers.insert(RETRY_AFTER, "soon".parse().expect("header"));
        assert_eq!(retry_after(&headers), None);
    }
}
