//! `Authorization: Bearer <api key>` on every job route: the key's tenant
//! scopes everything the request reads and writes.
//!
//! A key is looked up by its SHA-256 (all the store keeps) and the stored
//! hash is compared in constant time. Found keys are cached for
//! [`KEY_CACHE_TTL`] per intake instance, so a busy API reads the store once
//! per key and half-minute, and a revocation takes effect within that time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use domain::{ApiKey, KeyHash, TenantId, Timestamp};
use store::ApiKeyRecord;

use crate::{ApiError, AppState};

/// How long a key read from the store is trusted before it is read again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(30);

/// Bounds the cache: past this many keys it starts over.
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

/// Keys read from the store, by hash, with when they were read.
#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    entries: Mutex<HashMap<KeyHash, (ApiKeyRecord, Timestamp)>>,
}

impl KeyCache {
    async fn lookup(&self, state: &AppState, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, ApiError> {
        let now = state.clock.now();
        let ttl = chrono::Duration::from_std(KEY_CACHE_TTL).unwrap_or(chrono::Duration::MAX);
        if let Some((record, read_at)) = self.lock().get(hash)
            && now < *read_at + ttl
        {
            return Ok(Some(record.clone()));
        }
        let record = state
            .store
            .find_api_key(hash)
            .await
            .map_err(|err| ApiError::from_store(err, "look up API key"))?;
        let mut entries = self.lock();
        match &record {
            Some(found) => {
                if entries.len() >= KEY_CACHE_MAX {
                    entries.clear();
                }
                entries.insert(*hash, (found.clone(), now));
            }
            None => {
                entries.remove(hash);
            }
        }
        Ok(record)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyHash, (ApiKeyRecord, Timestamp)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
