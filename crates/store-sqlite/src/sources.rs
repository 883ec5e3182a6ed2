//! `impl SourceStore for SqliteStore`: inbound sources and the requests
//! they received (SPEC section 11), in their own tables of the same file
//! (`sources`, `source_requests`), written through the same writer thread
//! as everything else. A source is read by its id alone; everything else
//! is scoped to its tenant.

use async_trait::async_trait;
use domain::{Source, SourceId, SourceRequest, TenantId};
use rusqlite::{OptionalExtension, params};
use store::{MAX_SOURCE_REQUESTS, SourcePage, SourceStore, StoreError};

use crate::codec::{decode_source_request, encode_source_request};
use crate::error::sql_error;
use crate::events::page_of;
use crate::store::SqliteStore;
use crate::writer::{SourceRequestRow, SourceRow, Write};

#[async_trait]
impl SourceStore for SqliteStore {
    async fn create_source(&self, source: &Source) -> Result<(), StoreError> {
        let outcome = self
            .write(Write::CreateSource(self.source_row(source).await?))
            .await?;
        if outcome.changed == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn get_source(&self, id: SourceId) -> Result<Option<(Source, u64)>, StoreError> {
        let id = id.to_string();
        let row: Option<(String, i64)> = self
            .read(move |conn| {
                conn.prepare_cached(GET_SOURCE)
                    .and_then(|mut stmt| {
                        stmt.query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .map_err(|e| sql_error("get source", e))
            })
            .await?;
        let Some((body, version)) = row else {
            return Ok(None);
        };
        let version = u64::try_from(version)
            .map_err(|_| StoreError::Corrupt(format!("source row with version {version}")))?;
        Ok(Some((
            store::sealing::open_source(self.sealer(), &body).await?,
            version,
        )))
    }

    async fn update_source(&self, source: &Source, expected: u64) -> Result<bool, StoreError> {
        let Ok(expected) = i64::try_from(expected) else {
            // No stored version is that large.
            return Ok(false);
        };
        let outcome = self
            .write(Write::UpdateSource {
                row: self.source_row(source).await?,
                expected,
            })
            .await?;
        Ok(outcome.changed == 1)
    }

    /// Deletes the source and every request it received, in one request
    /// to the writer (one savepoint): both go, or neither.
    async fn delete_source(&self, tenant: &TenantId, id: SourceId) -> Result<bool, StoreError> {
        let outcome = self
            .write(Write::DeleteSource {
                tenant: tenant.as_str().to_owned(),
                id: id.to_string(),
            })
            .await?;
        Ok(outcome.changed == 1)
    }

    async fn list_sources(
        &self,
        tenant: &TenantId,
        after: Option<SourceId>,
        limit: usize,
    ) -> Result<SourcePage, StoreError> {
        let tenant = tenant.as_str().to_owned();
        // Ids are never empty: "" is below every one.
        let after = after.map(|id| id.to_string()).unwrap_or_default();
        let page = limit.clamp(1, store::MAX_PAGE);
        let fetch = i64::try_from(page + 1).unwrap_or(i64::MAX);
        let mut bodies: Vec<String> = self
            .read(move |conn| {
                conn.prepare_cached(LIST_SOURCES)
                    .and_then(|mut stmt| {
                        stmt.query_map(params![tenant, after, fetch], |r| r.get(0))?
                            .collect()
                    })
                    .map_err(|e| sql_error("list sources", e))
            })
            .await?;
        let more = page_of(&mut bodies, page);
        let mut sources = Vec::with_capacity(bodies.len());
        for body in &bodies {
            sources.push(store::sealing::open_source(self.sealer(), body).await?);
        }
        let next = more.then(|| sources.last().map(|s: &Source| s.id)).flatten();
        Ok(SourcePage { sources, next })
    }

    async fn record_source_request(&self, request: &SourceRequest) -> Result<(), StoreError> {
        // Changing nothing (the request is kept already: a retry) is as
        // good as writing it.
        self.write(Write::RecordSourceRequest(SourceRequestRow {
            source_id: request.source.to_string(),
            id: request.id.to_string(),
            tenant: request.tenant.as_str().to_owned(),
            received_at: request.received_at.timestamp_millis(),
            expires_at: self.retained_until(request.received_at),
            body: encode_source_request(request),
        }))
        .await
        .map(|_| ())
    }

    async fn source_requests(
        &self,
        tenant: &TenantId,
        source: SourceId,
        limit: usize,
    ) -> Result<Vec<SourceRequest>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let source = source.to_string();
        let limit = i64::try_from(limit.clamp(1, MAX_SOURCE_REQUESTS)).unwrap_or(i64::MAX);
        let bodies: Vec<String> = self
            .read(move |conn| {
                conn.prepare_cached(SOURCE_REQUESTS)
                    .and_then(|mut stmt| {
                        stmt.query_map(params![source, tenant, limit], |r| r.get(0))?
                            .collect()
                    })
                    .map_err(|e| sql_error("list source requests", e))
            })
            .await?;
        bodies.iter().map(|body| decode_source_request(body)).collect()
    }
}

impl SqliteStore {
    /// A source's row, its verification sealed.
    async fn source_row(&self, source: &Source) -> Result<SourceRow, StoreError> {
        Ok(SourceRow {
            id: source.id.to_string(),
            tenant: source.tenant.as_str().to_owned(),
            created_at: source.created_at.timestamp_millis(),
            body: store::sealing::seal_source(self.sealer(), source).await?,
        })
    }
}

/// A source by its id alone, from the primary key.
pub(crate) const GET_SOURCE: &str = "SELECT body, version FROM sources WHERE id = ?1";

/// A tenant's sources oldest first after the cursor `?2` ("" for the first
/// page), from `sources_by_tenant`.
pub(crate) const LIST_SOURCES: &str = "SELECT body FROM sources
     WHERE tenant = ?1 AND id > ?2
     ORDER BY id
     LIMIT ?3";

/// A source's latest requests, newest first, from the primary key
/// (source_id, id), the tenant checked on each row read.
pub(crate) const SOURCE_REQUESTS: &str = "SELECT body FROM source_requests
     WHERE source_id = ?1 AND tenant = ?2
     ORDER BY id DESC
     LIMIT ?3";
