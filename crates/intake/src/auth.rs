//! `Authorization: Bearer <api key>` on every job route: the key's tenant
//! scopes everything the request reads and writes.
//!
//! A key is looked up by its SHA-256 (all the store keeps) and the stored
//! hash is compared in constant time. Found keys are cached for
//! [`KEY_CACHE_TTL`] per intake instance, so a busy API reads the store once
//! per key and half-minute, and a revocation takes effect within that time.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use cache::TtlCache;
use domain::{ApiKey, KeyHash, TenantId, Timestamp};
use store::ApiKeyRecord;

use crate::{ApiError, AppState};

/// How long a key read from the store is trusted before it is read again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(30);

/// Bounds the cache: past this many keys the oldest read goes.
const KEY_CACHE_MAX: usize = 10_000;

/// The caller's tenant, from a valid API key.
#[derive(Debug, Clone)]
pub(crate) struct Tenant(pub TenantId);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("send an API key as Authorization: Bearer <key>"))?;
        let key = header
            .to_str()
            .ok()
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .and_then(|(_, key)| ApiKey::parse(key.trim()))
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be Bearer <key>"))?;
        let hash = key.hash();
        let record = state.keys.lookup(state, &hash).await?;
        match record {
            Some(record) if record.hash.constant_time_eq(&hash) && record.is_active() => {
                // Every later line of this request's log names the tenant.
                tracing::Span::current().record("tenant", tracing::field::display(&record.tenant));
                Ok(Tenant(record.tenant))
            }
            // Unknown and revoked keys get the same answer.
            _ => Err(ApiError::unauthorized("the API key is not valid")),
        }
    }
}

/// Keys read from the store, by hash, as of when they were read. Only keys
/// found are kept: an unknown key is read again on every request.
#[derive(Debug)]
pub(crate) struct KeyCache {
    entries: TtlCache<KeyHash, ApiKeyRecord, Timestamp, chrono::Duration>,
}

impl Default for KeyCache {
    fn default() -> Self {
        let ttl = chrono::Duration::from_std(KEY_CACHE_TTL).unwrap_or(chrono::Duration::MAX);
        Self {
            entries: TtlCache::new(ttl, KEY_CACHE_MAX),
        }
    }
}

impl KeyCache {
    async fn lookup(&self, state: &AppState, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, ApiError> {
        let now = state.clock.now();
        if let Some(record) = self.entries.get(hash, now) {
            return Ok(Some(record));
        }
        let record = state
            .store
            .find_api_key(hash)
            .await
            .map_err(|err| ApiError::from_store(err, "look up API key"))?;
        match &record {
            Some(found) => self.entries.insert(*hash, found.clone(), now),
            None => self.entries.remove(hash),
        }
        Ok(record)
    }
}
