//! OAuth2 client-credentials tokens for endpoints whose `auth` is one
//! (SPEC section 10; RFC 6749 section 4.4). One token per endpoint in each
//! processor, shared by all its deliveries there: fetched when the first
//! delivery needs it, kept until shortly before it expires, and fetched
//! again when a delivery is answered 401 with it. Processors do not share
//! tokens (each asks the token endpoint once per token lifetime): a token
//! in the store would be one more credential at rest, for one request per
//! processor per hour saved.
//!
//! The token request authenticates the client with HTTP Basic (RFC 6749
//! section 2.3.1, which every authorization server must accept) and is made
//! through the SSRF-guarded client, like a delivery. A failed request is a
//! retryable delivery failure whose error says what the token endpoint did;
//! no credential, token or answer body is ever in it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::{Credential, EndpointId, OAuth2Grant, TenantId, Timestamp};
use futures::StreamExt;
use netguard::NetPolicy;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use crate::http::CallbackClient;

/// How long a token request may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest token answer read.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;
/// How long a token is kept when its answer has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// A token is fetched again this long before it expires (or at half its
/// lifetime, if that is shorter).
const MARGIN: Duration = Duration::from_secs(60);

type Key = (TenantId, EndpointId);

/// A token as fetched, for the grant it was fetched with.
struct Held {
    grant: OAuth2Grant,
    token: Credential,
    /// When it is fetched again, on the processor's clock.
    fresh_until: Timestamp,
}

/// The tokens of one processor, one per endpoint.
#[derive(Default)]
pub(crate) struct Tokens {
    slots: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<Option<Held>>>>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.slots.lock().map_or(0, |slots| slots.len());
        f.debug_struct("Tokens").field("endpoints", &held).finish()
    }
}

/// Most endpoints whose tokens one processor keeps; past this, all are
/// forgotten (and fetched again when next needed).
const MAX_ENDPOINTS: usize = 10_000;

impl Tokens {
    fn slot(&self, key: &Key) -> Arc<tokio::sync::Mutex<Option<Held>>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= MAX_ENDPOINTS && !slots.contains_key(key) {
            slots.clear();
        }
        Arc::clone(slots.entry(key.clone()).or_default())
    }

    /// The endpoint's token: the one held if it is still fresh and was
    /// fetched with this grant, else a new one (one request at a time per
    /// endpoint: deliveries asking meanwhile wait for it). `stale`, when
    /// given, is a token a receiver refused: it is not used again.
    pub(crate) async fn token(
        &self,
        key: &Key,
        grant: &OAuth2Grant,
        stale: Option<&Credential>,
        client: &CallbackClient,
        network: &NetPolicy,
        now: Timestamp,
    ) -> Result<Credential, String> {
        let slot = self.slot(key);
        let mut held = slot.lock().await;
        if let Some(h) = &*held
            && h.grant == *grant
            && now < h.fresh_until
            && stale != Some(&h.token)
        {
            return Ok(h.token.clone());
        }
        *held = None;
        let (token, lifetime) = fetch(grant, client, network).await?;
        let margin = MARGIN.min(lifetime / 2);
        *held = Some(Held {
            grant: grant.clone(),
            token: token.clone(),
            fresh_until: chrono::Duration::from_std(lifetime.saturating_sub(margin))
                .ok()
                .and_then(|fresh| now.checked_add_signed(fresh))
                .unwrap_or(now),
        });
        Ok(token)
    }
}

/// One token request: the token and how long it lives.
async fn fetch(
    grant: &OAuth2Grant,
    client: &CallbackClient,
    network: &NetPolicy,
) -> Result<(Credential, Duration), String> {
    let failed = |what: &str| format!("the OAuth2 token endpoint {what}; will retry");
    if let Err(blocked) = network.check_literal(&grant.token_url) {
        return Err(failed(&format!("is refused: {blocked}")));
    }
    let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
    if let Some(scope) = &grant.scope {
        form.push(("scope", scope));
    }
    if let Some(audience) = &grant.audience {
        form.push(("audience", audience));
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    // RFC 6749 section 2.3.1: the id and secret form-encoded, then Basic.
    let encode = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let request = client
        .post(grant.token_url.clone())
        .basic_auth(
            encode(&grant.client_id),
            Some(encode(grant.client_secret.expose())),
        )
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .timeout(TOKEN_TIMEOUT);
    // The client's errors are secret-free: a guard's refusal, a timeout,
    // a connection (or the egress proxy) failing.
    let response = client
        .send(request)
        .await
        .map_err(|why| failed(&format!("could not be reached: {why}")))?;
    let status = response.status();
    let mut answer = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| failed("answer broke off"))?;
        if answer.len() + chunk.len() > MAX_TOKEN_ANSWER {
            return Err(failed("answer is too large"));
        }
        answer.extend_from_slice(&chunk);
    }
    let json: serde_json::Value = serde_json::from_slice(&answer).unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        // RFC 6749 section 5.2's error code, when it is one (never a
        // description, which might echo what was sent).
        let code = json
            .get("error")
            .and_then(|e| e.as_str())
            .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        return Err(failed(&format!("answered HTTP {}{code}", status.as_u16())));
    }
    let token = json
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty() && t.len() <= 8192 && t.bytes().all(|b| (0x21..0x7f).contains(&b)))
        .ok_or_else(|| failed("answered without a usable access_token"))?;
    let bearer = json
        .get("token_type")
        .and_then(|t| t.as_str())
        .is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
    if !bearer {
        return Err(failed("answered a token_type other than Bearer"));
    }
    let lifetime = match json.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(Duration::from_secs),
        Some(serde_json::Value::String(s)) => s.parse().ok().map(Duration::from_secs),
        _ => None,
    }
    .unwrap_or(DEFAULT_LIFETIME);
    Ok((Credential::new(token), lifetime))
}
