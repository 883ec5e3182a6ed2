//! Mock billing providers and a callback sink, for tests, `hookline dev` and
//! demos.
//!
//! - `GET /providers/{name}?jobId=..` (or `?eventId=..`, a thin event's
//!   fetch) serves `gas` and `internet` billing data (`[{billedOn, amount}]`),
//!   404 for any other name; each call's `jobId`/`eventId` is recorded.
//! - `POST /complete` is a callback sink that records each delivery (headers,
//!   body as received and parsed, the status it answered, and the verdict on
//!   its Standard Webhooks signature, see [`SignatureVerdict`]);
//!   `GET /deliveries` lists them. The sink checks signatures with the
//!   secrets given to [`MockState::set_signing_secrets`]; it only records the
//!   verdict and answers as it would anyway, so a test decides what a bad
//!   signature means.
//! - `POST /accepted` is a sink that answers `200` with a JSON body and an
//!   `x-request-id` (`sink-N`), as receivers that say what they did do;
//!   its deliveries are recorded too.
//! - `POST /gone` is a sink that always answers `410 Gone` (the receiver asks
//!   to stop: the job must fail at once); its deliveries are recorded too.
//! - `POST /oauth2/token` is an OAuth2 token endpoint (client credentials,
//!   RFC 6749 section 4.4; the client authenticated by HTTP Basic, by
//!   default `hookline-mock` / `mock-client-secret`, see
//!   [`MockState::set_oauth2_client`]); `POST /protected` is a sink that
//!   answers 401 unless the delivery carries `Authorization: Bearer` with a
//!   token it issued and has not revoked ([`MockState::revoke_tokens`]).
//! - Every sink records the credentials a delivery carried
//!   (`authorization`, and headers whose names say they hold one): the
//!   listing shows them as `***`, [`Delivery::credential`] has them whole.
//! - Faults are set from code ([`MockState`]) or over HTTP
//!   (`PUT /faults/providers/{name}`, `PUT /faults/sink`, `DELETE /faults`):
//!   fail the next N calls with a status, fail with a probability, add latency.
//!   Sink faults apply to `/complete` only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use domain::signing::{self, SigningSecret};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The providers this mock knows.
pub const PROVIDERS: [&str; 2] = ["gas", "internet"];

/// Faults applied to the next calls of one provider, or of the sink.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Fail this many of the next calls...
    pub fail_next: u32,
    /// ...with this status (default 503).
    pub status: Option<u16>,
    /// Fail each call with this probability (0.0..=1.0), after `fail_next`.
    pub failure_probability: f64,
    /// Wait this long before answering.
    pub latency_ms: u64,
    /// Answer successful calls with at least this many bytes of bills, to
    /// exercise size limits.
    pub min_body_bytes: usize,
}

/// What the sink made of a delivery's `webhook-signature`. In JSON:
/// `{"verdict": "valid"}`, `{"verdict": "invalid", "reason": ".."}`,
/// `{"verdict": "missing"}` or `{"verdict": "notChecked"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "camelCase")]
pub enum SignatureVerdict {
    /// A `v1` signature matches one of the configured secrets, and the
    /// timestamp is within tolerance.
    Valid,
    /// The headers are there but do not verify; the reason says why (it
    /// never contains a secret).
    Invalid(String),
    /// No `webhook-signature` header, while secrets are configured.
    Missing,
    /// No secret is configured, so nothing was checked.
    NotChecked,
}

/// One callback the sink received.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub headers: HashMap<String, String>,
    /// The body parsed as JSON (a JSON string of the text when it is not JSON).
    pub body: Value,
    /// The body exactly as received, to verify again byte for byte; base64
    /// in JSON (`rawBody`).
    #[serde(serialize_with = "as_base64")]
    pub raw_body: Vec<u8>,
    /// The status the sink answered with.
    pub status: u16,
    pub signature: SignatureVerdict,
    /// The credential headers as received (`headers` shows them as
    /// `***`): for tests, never listed.
    #[serde(skip)]
    pub credentials: HashMap<String, String>,
}

/// Whether a header's name says it carries a credential.
fn is_credential(name: &str) -> bool {
    name == "authorization"
        || name == "proxy-authorization"
        || ["key", "token", "secret", "password"]
            .iter()
            .any(|word| name.contains(word))
}

fn as_base64<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

impl Delivery {
    pub fn job_id(&self) -> Option<&str> {
        self.body.get("jobId").and_then(Value::as_str)
    }

    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A credential header as received (`authorization`, `x-api-key`, ...).
    pub fn credential(&self, name: &str) -> Option<&str> {
        self.credentials.get(name).map(String::as_str)
    }
}

/// The OAuth2 client the token endpoint accepts, and what it issued.
#[derive(Debug)]
struct OAuth2Mock {
    client_id: String,
    client_secret: String,
    /// `expires_in` of the tokens it issues.
    lifetime: Duration,
    /// Tokens issued and still honoured by `/protected`.
    valid: Vec<String>,
    issued: u64,
    /// Each token request's form (`grant_type`, `scope`, `audience`), in
    /// arrival order, refused ones included.
    requests: Vec<HashMap<String, String>>,
}

impl Default for OAuth2Mock {
    fn default() -> Self {
        Self {
            client_id: "hookline-mock".to_owned(),
            client_secret: "mock-client-secret".to_owned(),
            lifetime: Duration::from_secs(3600),
            valid: Vec::new(),
            issued: 0,
            requests: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    provider_faults: HashMap<String, Faults>,
    sink_faults: Faults,
    provider_calls: HashMap<String, u64>,
    provider_requests: HashMap<String, Vec<ProviderRequest>>,
    deliveries: Vec<Delivery>,
    rng: rand::rngs::StdRng,
    signing_secrets: Vec<SigningSecret>,
    signature_tolerance: Duration,
    oauth2: OAuth2Mock,
}

/// Shared state of a running mock; cheap to clone.
#[derive(Debug, Clone)]
pub struct MockState {
    inner: Arc<Mutex<Inner>>,
}

impl Default for MockState {
    fn default() -> Self {
        Self::with_seed(rand::rng().random())
    }
}

impl MockState {
    /// A mock whose probabilistic faults follow `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                provider_faults: HashMap::new(),
                sink_faults: Faults::default(),
                provider_calls: HashMap::new(),
                provider_requests: HashMap::new(),
                deliveries: Vec::new(),
                rng: rand::rngs::StdRng::seed_from_u64(seed),
                signing_secrets: Vec::new(),
                signature_tolerance: signing::DEFAULT_TOLERANCE,
                oauth2: OAuth2Mock::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set_provider_faults(&self, provider: &str, faults: Faults) {
        self.lock().provider_faults.insert(provider.to_owned(), faults);
    }

    /// Fails the next `n` calls of `provider` with `status`.
    pub fn fail_provider_next(&self, provider: &str, n: u32, status: u16) {
        self.set_provider_faults(
            provider,
            Faults {
                fail_next: n,
                status: Some(status),
                ..Faults::default()
            },
        );
    }

    pub fn set_sink_faults(&self, faults: Faults) {
        self.lock().sink_faults = faults;
    }

    /// Fails the next `n` callbacks with `status`.
    pub fn fail_sink_next(&self, n: u32, status: u16) {
        self.set_sink_faults(Faults {
            fail_next: n,
            status: Some(status),
            ..Faults::default()
        });
    }

    /// The secrets the sink verifies callbacks with (any one matching is
    /// enough, as for a receiver during a rotation). Empty: nothing is checked
    /// and every delivery is [`SignatureVerdict::NotChecked`].
    pub fn set_signing_secrets(&self, secrets: Vec<SigningSecret>) {
        self.lock().signing_secrets = secrets;
    }

    /// How far `webhook-timestamp` may be from the wall clock (default five
    /// minutes, as the official libraries). Widen it for a processor driven
    /// by a `ManualClock` far from now.
    pub fn set_signature_tolerance(&self, tolerance: Duration) {
        self.lock().signature_tolerance = tolerance;
    }

    pub fn clear_faults(&self) {
        let mut inner = self.lock();
        inner.provider_faults.clear();
        inner.sink_faults = Faults::default();
    }

    /// How many times `provider` was called, faults included.
    pub fn provider_calls(&self, provider: &str) -> u64 {
        self.lock().provider_calls.get(provider).copied().unwrap_or(0)
    }

    /// What each call of `provider` asked for, in arrival order, faults
    /// included.
    pub fn provider_requests(&self, provider: &str) -> Vec<ProviderRequest> {
        self.lock()
            .provider_requests
            .get(provider)
            .cloned()
            .unwrap_or_default()
    }

    /// Every callback attempt the sink saw, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    /// Only the callbacks the sink acknowledged with 2xx.
    pub fn accepted_deliveries(&self) -> Vec<Delivery> {
        self.lock()
            .deliveries
            .iter()
            .filter(|d| d.accepted())
            .cloned()
            .collect()
    }

    /// The client the token endpoint accepts, and the lifetime
    /// (`expires_in`) of the tokens it issues.
    pub fn set_oauth2_client(&self, client_id: &str, client_secret: &str, lifetime: Duration) {
        let mut inner = self.lock();
        inner.oauth2.client_id = client_id.to_owned();
        inner.oauth2.client_secret = client_secret.to_owned();
        inner.oauth2.lifetime = lifetime;
    }

    /// `/protected` refuses every token issued so far (401), as after a
    /// key rotation at the authorization server.
    pub fn revoke_tokens(&self) {
        self.lock().oauth2.valid.clear();
    }

    /// How many tokens the token endpoint issued.
    pub fn tokens_issued(&self) -> u64 {
        self.lock().oauth2.issued
    }

    /// Each token request's form fields, refused ones included.
    pub fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.lock().oauth2.requests.clone()
    }

    /// Fills successful answers of `provider` up to `bytes`.
    pub fn pad_provider(&self, provider: &str, bytes: usize) {
        self.lock()
            .provider_faults
            .entry(provider.to_owned())
            .or_default()
            .min_body_bytes = bytes;
    }

    fn record(&self, headers: &HeaderMap, body: &[u8], status: u16) {
        let signature = {
            let inner = self.lock();
            check_signature(&inner.signing_secrets, inner.signature_tolerance, headers, body)
        };
        let text = |value: &axum::http::HeaderValue| String::from_utf8_lossy(value.as_bytes()).into_owned();
        let delivery = Delivery {
            headers: headers
                .iter()
                .map(|(name, value)| {
                    let shown = if is_credential(name.as_str()) {
                        "***".to_owned()
                    } else {
                        text(value)
                    };
                    (name.as_str().to_owned(), shown)
                })
                .collect(),
            credentials: headers
                .iter()
                .filter(|(name, _)| is_credential(name.as_str()))
                .map(|(name, value)| (name.as_str().to_owned(), text(value)))
                .collect(),
            body: serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned())),
            raw_body: body.to_vec(),
            status,
            signature,
        };
        self.lock().deliveries.push(delivery);
    }

    /// Decides whether this call fails, consuming one `fail_next` if so.
    fn next_fault(faults: &mut Faults, rng: &mut rand::rngs::StdRng) -> (Option<u16>, Duration) {
        let latency = Duration::from_millis(faults.latency_ms);
        let status = faults.status.unwrap_or(503);
        if faults.fail_next > 0 {
            faults.fail_next -= 1;
            return (Some(status), latency);
        }
        let p = faults.failure_probability.clamp(0.0, 1.0);
        if p > 0.0 && rng.random_bool(p) {
            return (Some(status), latency);
        }
        (None, latency)
    }
}

/// The mock's routes, to mount anywhere (`hookline dev` nests them under `/mock`).
pub fn router(state: MockState) -> Router {
    Router::new()
        .route("/providers/{name}", get(provider))
        .route("/complete", post(complete))
        .route("/gone", post(gone))
        .route("/accepted", post(accepted))
        .route("/oauth2/token", post(oauth2_token))
        .route("/protected", post(protected))
        .route("/deliveries", get(list_deliveries))
        .route("/faults/providers/{name}", put(put_provider_faults))
        .route("/faults/sink", put(put_sink_faults))
        .route("/faults", delete(clear_faults))
        .with_state(state)
}

/// A mock serving on a listener until dropped or cancelled.
#[derive(Debug)]
pub struct RunningMock {
    pub addr: SocketAddr,
    pub state: MockState,
    shutdown: CancellationToken,
}

impl RunningMock {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for RunningMock {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Serves the mock on `listener` in a background task (bind port 0 in tests).
pub fn spawn(listener: TcpListener, state: MockState) -> std::io::Result<RunningMock> {
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let app = router(state.clone());
    let token = shutdown.clone();
    tokio::spawn(async move {
        let _ = server::serve(listener, app, server::Limits::default(), token).await;
    });
    Ok(RunningMock {
        addr,
        state,
        shutdown,
    })
}

/// One provider call's query: a job's fetch names its `jobId`, a thin
/// event's its `eventId`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRequest {
    #[serde(rename = "jobId")]
    pub job_id: Option<String>,
    #[serde(rename = "eventId")]
    pub event_id: Option<String>,
}

async fn provider(
    State(state): State<MockState>,
    Path(name): Path<String>,
    Query(query): Query<ProviderRequest>,
) -> Response {
    if !PROVIDERS.contains(&name.as_str()) {
        return problem(StatusCode::NOT_FOUND, &format!("no provider named {name:?}"));
    }
    let (fault, latency, min_bytes) = {
        let mut inner = state.lock();
        *inner.provider_calls.entry(name.clone()).or_default() += 1;
        inner
            .provider_requests
            .entry(name.clone())
            .or_default()
            .push(query.clone());
        let Inner {
            provider_faults, rng, ..
        } = &mut *inner;
        match provider_faults.get_mut(&name) {
            Some(faults) => {
                let (fault, latency) = MockState::next_fault(faults, rng);
                (fault, latency, faults.min_body_bytes)
            }
            None => (None, Duration::ZERO, 0),
        }
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(status) = fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return problem(status, "injected fault");
    }
    let asked = query.job_id.as_deref().or(query.event_id.as_deref());
    let mut data = billing_data(&name, asked.unwrap_or(""));
    if min_bytes > 0
        && let Value::Array(bills) = &mut data
    {
        let template = bills.first().cloned().unwrap_or(Value::Null);
        let per_bill = template.to_string().len() + 1;
        bills.extend(std::iter::repeat_n(template, min_bytes / per_bill + 1));
    }
    Json(data).into_response()
}

/// Deterministic billing data: the same provider and job always get the same
/// bills, so tests can compare what the callback carried.
pub fn billing_data(provider: &str, job_id: &str) -> Value {
    let seed = job_id
        .bytes()
        .chain(provider.bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let base = if provider == "gas" { 20.0 } else { 45.0 };
    let bills: Vec<Value> = (1..=3)
        .map(|month| {
            let cents: u32 = rng.random_range(0..2000);
            let amount = base + f64::from(cents) / 100.0;
            json!({"billedOn": format!("2026-{month:02}-01"), "amount": (amount * 100.0).round() / 100.0})
        })
        .collect();
    Value::Array(bills)
}

async fn complete(State(state): State<MockState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let (fault, latency) = {
        let mut inner = state.lock();
        let Inner { sink_faults, rng, .. } = &mut *inner;
        MockState::next_fault(sink_faults, rng)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    state.record(&headers, &body, fault.unwrap_or(204));
    match fault {
        Some(status) => problem(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "injected fault",
        ),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// A receiver that says what it did: `200 {"received": true, "n": N}` with
/// `x-request-id: sink-N`, N counting the deliveries it has seen.
async fn accepted(State(state): State<MockState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    state.record(&headers, &body, StatusCode::OK.as_u16());
    let n = state.lock().deliveries.len();
    (
        [("x-request-id", format!("sink-{n}"))],
        Json(json!({"received": true, "n": n})),
    )
        .into_response()
}

/// A receiver that has gone away for good: every callback is answered
/// `410 Gone` (and recorded), so the job must fail without retrying.
async fn gone(State(state): State<MockState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    state.record(&headers, &body, StatusCode::GONE.as_u16());
    problem(StatusCode::GONE, "this receiver no longer accepts callbacks")
}

/// `POST /oauth2/token`: a client-credentials grant for the configured
/// client (HTTP Basic, RFC 6749 section 2.3.1), answered as RFC 6749
/// section 5.1 says; a wrong client is `401 invalid_client`, another grant
/// type `400 unsupported_grant_type`.
async fn oauth2_token(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let client = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((decode(id)?, decode(secret)?))
        });
    let mut inner = state.lock();
    inner.oauth2.requests.push(form.clone());
    let oauth2 = &mut inner.oauth2;
    let error = |status: StatusCode, code: &str| {
        (
            status,
            Json(json!({"error": code, "error_description": "refused by the mock"})),
        )
            .into_response()
    };
    if client != Some((oauth2.client_id.clone(), oauth2.client_secret.clone())) {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    oauth2.issued += 1;
    let token = format!("mock-token-{}", oauth2.issued);
    oauth2.valid.push(token.clone());
    let mut answer = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": oauth2.lifetime.as_secs(),
    });
    if let Some(scope) = form.get("scope") {
        answer["scope"] = Value::String(scope.clone());
    }
    ([(axum::http::header::CACHE_CONTROL, "no-store")], Json(answer)).into_response()
}

/// `POST /protected`: a sink that takes only deliveries bearing a token
/// the token endpoint issued (and has not revoked); else 401.
async fn protected(State(state): State<MockState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let valid = bearer.is_some_and(|token| state.lock().oauth2.valid.contains(&token));
    let status = if valid {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    };
    state.record(&headers, &body, status.as_u16());
    if valid {
        status.into_response()
    } else {
        (
            status,
            [(
                axum::http::header::WWW_AUTHENTICATE,
                "Bearer error=\"invalid_token\"",
            )],
        )
            .into_response()
    }
}

/// The sink's verdict on one delivery, against the wall clock.
fn check_signature(
    secrets: &[SigningSecret],
    tolerance: Duration,
    headers: &HeaderMap,
    body: &[u8],
) -> SignatureVerdict {
    if secrets.is_empty() {
        return SignatureVerdict::NotChecked;
    }
    let header = |name: &str| match headers.get(name) {
        None => Err(format!("no {name} header")),
        Some(value) => value
            .to_str()
            .map_err(|_| format!("the {name} header is not text")),
    };
    let signature = match headers.get(signing::HEADER_SIGNATURE) {
        None => return SignatureVerdict::Missing,
        Some(_) => header(signing::HEADER_SIGNATURE),
    };
    let checked = (|| {
        let (id, timestamp, signature) = (
            header(signing::HEADER_ID)?,
            header(signing::HEADER_TIMESTAMP)?,
            signature?,
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        signing::verify(secrets, id, timestamp, signature, body, now, tolerance).map_err(|e| e.to_string())
    })();
    match checked {
        Ok(()) => SignatureVerdict::Valid,
        Err(reason) => SignatureVerdict::Invalid(reason),
    }
}

async fn list_deliveries(State(state): State<MockState>) -> Json<Vec<Delivery>> {
    Json(state.deliveries())
}

async fn put_provider_faults(
    State(state): State<MockState>,
    Path(name): Path<String>,
    Json(faults): Json<Faults>,
) -> StatusCode {
    state.set_provider_faults(&name, faults);
    StatusCode::NO_CONTENT
}

async fn put_sink_faults(State(state): State<MockState>, Json(faults): Json<Faults>) -> StatusCode {
    state.set_sink_faults(faults);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(state): State<MockState>) -> StatusCode {
    state.clear_faults();
    StatusCode::NO_CONTENT
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_data_is_deterministic_per_job_and_provider() {
        assert_eq!(billing_data("gas", "a"), billing_data("gas", "a"));
        assert_ne!(billing_data("gas", "a"), billing_data("internet", "a"));
        let bills = billing_data("gas", "a");
        let bills = bills.as_array().expect("a list");
        assert_eq!(bills.len(), 3);
        assert!(
            bills
                .iter()
                .all(|b| b["billedOn"].is_string() && b["amount"].is_f64())
        );
    }

    #[test]
    fn fail_next_then_probability() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut faults = Faults {
            fail_next: 2,
            status: Some(500),
            ..Faults::default()
        };
        assert_eq!(MockState::next_fault(&mut faults, &mut rng).0, Some(500));
        assert_eq!(MockState::next_fault(&mut faults, &mut rng).0, Some(500));
        assert_eq!(MockState::next_fault(&mut faults, &mut rng).0, None);
        faults.failure_probability = 1.0;
        assert_eq!(MockState::next_fault(&mut faults, &mut rng).0, Some(500));
    }
}
