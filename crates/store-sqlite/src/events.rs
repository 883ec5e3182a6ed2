//! `impl EventStore for SqliteStore`: event types, endpoints and events
//! (SPEC section 9) in their own tables of the same file, written through
//! the same writer thread as the jobs. Publishing is one request to the
//! writer: the event's key, the event and every delivery job commit
//! together or not at all.

use async_trait::async_trait;
use chrono::DateTime;
use domain::{
    Endpoint, EndpointId, Event, EventId, EventType, EventTypeDef, Owner, SettledResult, TenantId, Timestamp,
};
use rusqlite::{OptionalExtension, params};
use store::{
    EndpointPage, EndpointQuery, EventPage, EventQuery, EventStore, IdempotencyRecord, MAX_EVENT_TYPES,
    Published, StoreError,
};

use crate::codec::{
    decode_event_type, decode_event_with_results, decode_settled, encode_event, encode_event_type,
    encode_settled,
};
use crate::error::sql_error;
use crate::store::{MAX_JOB_BYTES, SqliteStore, mismatched};
use crate::writer::{EndpointRow, EventRow, KeyRow, Returned, Write};

/// Compare-and-set attempts of one `put_event_type` before giving up.
const PUT_TRIES: usize = 5;

/// Above every ULID (Crockford base32: digits and capitals), so "below
/// the cursor" with no cursor is every id, and the listing is still a
/// range of the index.
const NEWEST: &str = "~";

#[async_trait]
impl EventStore for SqliteStore {
    async fn put_event_type(&self, event_type: &EventTypeDef) -> Result<bool, StoreError> {
        for _ in 0..PUT_TRIES {
            let stored = self
                .stored_event_type(&event_type.tenant, &event_type.name)
                .await?;
            let mut written = event_type.clone();
            let expected = match stored {
                Some((body, created_at)) => {
                    // The column, not the record: a record this release
                    // cannot read is still replaced.
                    written.created_at = DateTime::from_timestamp_millis(created_at).ok_or_else(|| {
                        StoreError::Corrupt(format!("event type row with created_at {created_at}"))
                    })?;
                    Some(body)
                }
                None => None,
            };
            let outcome = self
                .write(Write::PutEventType {
                    tenant: written.tenant.as_str().to_owned(),
                    name: written.name.as_str().to_owned(),
                    body: encode_event_type(&written),
                    created_at: written.created_at.timestamp_millis(),
                    updated_at: written.updated_at.timestamp_millis(),
                    expected: expected.clone(),
                })
                .await?;
            if outcome.changed == 1 {
                return Ok(expected.is_none());
            }
        }
        Err(StoreError::Unavailable(format!(
            "the event type changed {PUT_TRIES} times while being written; try again"
        )))
    }

    async fn get_event_type(
        &self,
        tenant: &TenantId,
        name: &EventType,
    ) -> Result<Option<EventTypeDef>, StoreError> {
        self.stored_event_type(tenant, name)
            .await?
            .map(|(body, _)| decode_event_type(&body))
            .transpose()
    }

    async fn list_event_types(&self, tenant: &TenantId) -> Result<Vec<EventTypeDef>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let limit = i64::try_from(MAX_EVENT_TYPES).unwrap_or(i64::MAX);
        let bodies = self
            .read(move |conn| {
                conn.prepare_cached(LIST_EVENT_TYPES)
                    .and_then(|mut stmt| {
                        stmt.query_map(params![tenant, limit], |r| r.get(0))?
                            .collect::<Result<Vec<String>, _>>()
                    })
                    .map_err(|e| sql_error("list event types", e))
            })
            .await?;
        bodies.iter().map(|body| decode_event_type(body)).collect()
    }

    async fn delete_event_type(&self, tenant: &TenantId, name: &EventType) -> Result<bool, StoreError> {
        let outcome = self
            .write(Write::DeleteEventType {
                tenant: tenant.as_str().to_owned(),
                name: name.as_str().to_owned(),
            })
            .await?;
        Ok(outcome.changed == 1)
    }

    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let outcome = self
            .write(Write::CreateEndpoint(self.endpoint_row(endpoint).await?))
            .await?;
        if outcome.changed == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn get_endpoint(
        &self,
        tenant: &TenantId,
        id: EndpointId,
    ) -> Result<Option<(Endpoint, u64)>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let id = id.to_string();
        let row: Option<(String, i64)> = self
            .read(move |conn| {
                conn.prepare_cached("SELECT body, version FROM endpoints WHERE id = ?1 AND tenant = ?2")
                    .and_then(|mut stmt| {
                        stmt.query_row(params![id, tenant], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .map_err(|e| sql_error("get endpoint", e))
            })
            .await?;
        let Some((body, version)) = row else {
            return Ok(None);
        };
        let version = u64::try_from(version)
            .map_err(|_| StoreError::Corrupt(format!("endpoint row with version {version}")))?;
        Ok(Some((self.open_endpoint(&body).await?, version)))
    }

    async fn update_endpoint(&self, endpoint: &Endpoint, expected: u64) -> Result<bool, StoreError> {
        let Ok(expected) = i64::try_from(expected) else {
            // No stored version is that large.
            return Ok(false);
        };
        let outcome = self
            .write(Write::UpdateEndpoint {
                row: self.endpoint_row(endpoint).await?,
                expected,
            })
            .await?;
        Ok(outcome.changed == 1)
    }

    async fn delete_endpoint(&self, tenant: &TenantId, id: EndpointId) -> Result<bool, StoreError> {
        let outcome = self
            .write(Write::DeleteEndpoint {
                tenant: tenant.as_str().to_owned(),
                id: id.to_string(),
            })
            .await?;
        Ok(outcome.changed == 1)
    }

    async fn list_endpoints(
        &self,
        tenant: &TenantId,
        query: &EndpointQuery,
    ) -> Result<EndpointPage, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let owner = query.owner.as_ref().map(|o| o.as_str().to_owned());
        // Ids are never empty: "" is below every one.
        let after = query.after.map(|id| id.to_string()).unwrap_or_default();
        let page = query.limit.clamp(1, store::MAX_PAGE);
        // One more than the page, to know whether another page follows.
        let fetch = i64::try_from(page + 1).unwrap_or(i64::MAX);
        let mut bodies: Vec<String> = self
            .read(move |conn| {
                let result = match owner {
                    Some(owner) => conn.prepare_cached(LIST_ENDPOINTS_BY_OWNER).and_then(|mut stmt| {
                        stmt.query_map(params![tenant, owner, after, fetch], |r| r.get(0))?
                            .collect()
                    }),
                    None => conn.prepare_cached(LIST_ENDPOINTS).and_then(|mut stmt| {
                        stmt.query_map(params![tenant, after, fetch], |r| r.get(0))?
                            .collect()
                    }),
                };
                result.map_err(|e| sql_error("list endpoints", e))
            })
            .await?;
        let more = page_of(&mut bodies, page);
        let mut endpoints = Vec::with_capacity(bodies.len());
        for body in &bodies {
            endpoints.push(self.open_endpoint(body).await?);
        }
        let next = more.then(|| endpoints.last().map(|e| e.id)).flatten();
        Ok(EndpointPage { endpoints, next })
    }

    async fn tenant_endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let bodies = self
            .read(move |conn| {
                conn.prepare_cached(TENANT_ENDPOINTS)
                    .and_then(|mut stmt| {
                        stmt.query_map(params![tenant], |r| r.get(0))?
                            .collect::<Result<Vec<String>, _>>()
                    })
                    .map_err(|e| sql_error("read the tenant's endpoints", e))
            })
            .await?;
        let mut endpoints = Vec::with_capacity(bodies.len());
        for body in &bodies {
            endpoints.push(self.open_endpoint(body).await?);
        }
        Ok(endpoints)
    }

    async fn publish(
        &self,
        event: &Event,
        key: Option<&IdempotencyRecord>,
        now: Timestamp,
    ) -> Result<Published, StoreError> {
        let body = encode_event(event);
        if body.len() > MAX_JOB_BYTES {
            return Err(StoreError::TooLarge(format!(
                "event {} is {} bytes, more than {MAX_JOB_BYTES}",
                event.id,
                body.len()
            )));
        }
        let deliveries = event
            .delivery_jobs()
            .iter()
            .map(|job| self.row(job, job.created_at()))
            .collect::<Result<Vec<_>, _>>()?;
        let outcome = self
            .write(Write::Publish {
                event: EventRow {
                    id: event.id.to_string(),
                    tenant: event.tenant.as_str().to_owned(),
                    event_type: event.event_type.as_str().to_owned(),
                    owner: event.owner.as_ref().map(|o| o.as_str().to_owned()),
                    created_at: event.created_at.timestamp_millis(),
                    expires_at: store::event_expires_at(event.created_at, self.options().retention)
                        .timestamp_millis(),
                    body,
                },
                key: key.map(|key| KeyRow {
                    key_hash: key.key_hash.clone(),
                    fingerprint: key.fingerprint.clone(),
                    expires_at: key.expires_at.timestamp_millis(),
                }),
                deliveries,
                now: now.timestamp_millis(),
            })
            .await?;
        match outcome.returned {
            None => Ok(Published::Accepted),
            Some(Returned::EventReplay {
                event_id,
                fingerprint,
            }) => Ok(Published::Replay {
                event_id: event_id.parse().map_err(|_| {
                    StoreError::Corrupt(format!("event idempotency key row naming event {event_id:?}"))
                })?,
                same_request: key.is_some_and(|key| key.fingerprint == fingerprint),
            }),
            Some(Returned::Claimed { .. } | Returned::Replay { .. }) => Err(mismatched("publish event")),
        }
    }

    async fn get_event(&self, tenant: &TenantId, id: EventId) -> Result<Option<Event>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let id = id.to_string();
        let row: Option<(String, Vec<(String, String)>)> = self
            .read(move |conn| {
                let body: Option<String> = conn
                    .prepare_cached("SELECT body FROM events WHERE id = ?1 AND tenant = ?2")
                    .and_then(|mut stmt| stmt.query_row(params![id, tenant], |r| r.get(0)).optional())
                    .map_err(|e| sql_error("get event", e))?;
                body.map(|body| Ok((body, event_results(conn, &id)?))).transpose()
            })
            .await?;
        row.map(|(body, results)| decode_event_with_results(&body, results))
            .transpose()
    }

    async fn settle_event_provider(
        &self,
        tenant: &TenantId,
        id: EventId,
        provider: &str,
        settled: &SettledResult,
    ) -> Result<Option<SettledResult>, StoreError> {
        let body = encode_settled(settled);
        if body.len() > MAX_JOB_BYTES {
            return Err(StoreError::TooLarge(format!(
                "provider {provider}'s result for event {id} is {} bytes, more than {MAX_JOB_BYTES}",
                body.len()
            )));
        }
        self.write(Write::SettleEventProvider {
            tenant: tenant.as_str().to_owned(),
            event_id: id.to_string(),
            provider: provider.to_owned(),
            body,
        })
        .await?;
        let (tenant, id, provider) = (tenant.as_str().to_owned(), id.to_string(), provider.to_owned());
        let stored: Option<String> = self
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT r.body FROM event_results r JOIN events e ON e.id = r.event_id
                     WHERE r.event_id = ?1 AND r.provider = ?2 AND e.tenant = ?3",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![id, provider, tenant], |r| r.get(0))
                        .optional()
                })
                .map_err(|e| sql_error("read event result", e))
            })
            .await?;
        stored.map(|body| decode_settled(&body)).transpose()
    }

    async fn list_events(&self, tenant: &TenantId, query: &EventQuery) -> Result<EventPage, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let event_type = query.event_type.as_ref().map(|t| t.as_str().to_owned());
        let owner = query.owner.as_ref().map(Owner::as_str).map(str::to_owned);
        let before = query.after.map_or_else(|| NEWEST.to_owned(), |id| id.to_string());
        let page = query.limit.clamp(1, store::MAX_PAGE);
        let fetch = i64::try_from(page + 1).unwrap_or(i64::MAX);
        let bodies: Vec<(String, Vec<(String, String)>)> = self
            .read(move |conn| {
                let result: rusqlite::Result<Vec<(String, String)>> = match (event_type, owner) {
                    (None, None) => conn.prepare_cached(LIST_EVENTS).and_then(|mut stmt| {
                        stmt.query_map(params![tenant, before, fetch], |r| Ok((r.get(0)?, r.get(1)?)))?
                            .collect()
                    }),
                    (Some(event_type), None) => {
                        conn.prepare_cached(LIST_EVENTS_BY_TYPE).and_then(|mut stmt| {
                            stmt.query_map(params![tenant, event_type, before, fetch], |r| {
                                Ok((r.get(0)?, r.get(1)?))
                            })?
                            .collect()
                        })
                    }
                    (None, Some(owner)) => conn.prepare_cached(LIST_EVENTS_BY_OWNER).and_then(|mut stmt| {
                        stmt.query_map(params![tenant, owner, before, fetch], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })?
                        .collect()
                    }),
                    (Some(event_type), Some(owner)) => conn
                        .prepare_cached(LIST_EVENTS_BY_TYPE_AND_OWNER)
                        .and_then(|mut stmt| {
                            stmt.query_map(params![tenant, event_type, owner, before, fetch], |r| {
                                Ok((r.get(0)?, r.get(1)?))
                            })?
                            .collect()
                        }),
                };
                let rows = result.map_err(|e| sql_error("list events", e))?;
                rows.into_iter()
                    .map(|(id, body)| Ok((body, event_results(conn, &id)?)))
                    .collect()
            })
            .await?;
        let more = bodies.len() > page;
        let events = bodies
            .into_iter()
            .take(page)
            .map(|(body, results)| decode_event_with_results(&body, results))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if more { events.last().map(|e| e.id) } else { None };
        Ok(EventPage { events, next })
    }
}

impl SqliteStore {
    /// The type's stored record and its `created_at` column.
    async fn stored_event_type(
        &self,
        tenant: &TenantId,
        name: &EventType,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let name = name.as_str().to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT body, created_at FROM event_types WHERE tenant = ?1 AND name = ?2")
                .and_then(|mut stmt| {
                    stmt.query_row(params![tenant, name], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(|e| sql_error("get event type", e))
        })
        .await
    }
}

/// The `event_results` rows of event `id`: (provider, body), by provider.
fn event_results(conn: &rusqlite::Connection, id: &str) -> Result<Vec<(String, String)>, StoreError> {
    conn.prepare_cached("SELECT provider, body FROM event_results WHERE event_id = ?1 ORDER BY provider")
        .and_then(|mut stmt| {
            stmt.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(|e| sql_error("read event results", e))
}

/// Leaves the first `page` of `bodies` (fetched one past the page) and
/// says whether another page follows.
pub(crate) fn page_of(bodies: &mut Vec<String>, page: usize) -> bool {
    let more = bodies.len() > page;
    bodies.truncate(page);
    more
}

impl SqliteStore {
    /// An endpoint's row, its secrets sealed.
    async fn endpoint_row(&self, endpoint: &Endpoint) -> Result<EndpointRow, StoreError> {
        Ok(EndpointRow {
            id: endpoint.id.to_string(),
            tenant: endpoint.tenant.as_str().to_owned(),
            owner: endpoint.owner.as_ref().map(|o| o.as_str().to_owned()),
            body: store::sealing::seal_endpoint(self.sealer(), endpoint).await?,
        })
    }

    /// An endpoint from its row's body, sealed or (written by an earlier
    /// release) not.
    async fn open_endpoint(&self, body: &str) -> Result<Endpoint, StoreError> {
        store::sealing::open_endpoint(self.sealer(), body).await
    }
}

/// A tenant's types by name, from the primary key alone.
pub(crate) const LIST_EVENT_TYPES: &str = "SELECT body FROM event_types
     WHERE tenant = ?1
     ORDER BY name
     LIMIT ?2";

/// A tenant's endpoints oldest first after the cursor `?2` ("" for the
/// first page), from `endpoints_by_tenant`.
pub(crate) const LIST_ENDPOINTS: &str = "SELECT body FROM endpoints
     WHERE tenant = ?1 AND id > ?2
     ORDER BY id
     LIMIT ?3";

/// One owner's endpoints oldest first, from `endpoints_by_owner`.
pub(crate) const LIST_ENDPOINTS_BY_OWNER: &str = "SELECT body FROM endpoints
     WHERE tenant = ?1 AND owner = ?2 AND id > ?3
     ORDER BY id
     LIMIT ?4";

/// Every endpoint of a tenant, for fan-out, from `endpoints_by_tenant`.
pub(crate) const TENANT_ENDPOINTS: &str = "SELECT body FROM endpoints
     WHERE tenant = ?1
     ORDER BY id";

/// A tenant's events newest first below the cursor (`NEWEST` for the
/// first page), from `events_by_tenant`.
pub(crate) const LIST_EVENTS: &str = "SELECT id, body FROM events
     WHERE tenant = ?1 AND id < ?2
     ORDER BY id DESC
     LIMIT ?3";

/// One type's events newest first, from `events_by_type`.
pub(crate) const LIST_EVENTS_BY_TYPE: &str = "SELECT id, body FROM events
     WHERE tenant = ?1 AND event_type = ?2 AND id < ?3
     ORDER BY id DESC
     LIMIT ?4";

/// One owner's events newest first, from `events_by_owner`.
pub(crate) const LIST_EVENTS_BY_OWNER: &str = "SELECT id, body FROM events
     WHERE tenant = ?1 AND owner = ?2 AND id < ?3
     ORDER BY id DESC
     LIMIT ?4";

/// One owner's events of one type newest first: one of the two indexes
/// above, the other column filtered (within the tenant's range either way).
pub(crate) const LIST_EVENTS_BY_TYPE_AND_OWNER: &str = "SELECT id, body FROM events
     WHERE tenant = ?1 AND event_type = ?2 AND owner = ?3 AND id < ?4
     ORDER BY id DESC
     LIMIT ?5";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;

    fn plan_of(conn: &rusqlite::Connection, sql: &str, params: &[&dyn rusqlite::ToSql]) -> String {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .and_then(|mut stmt| stmt.query_map(params, |r| r.get::<_, String>(3))?.collect())
            .map(|lines: Vec<String>| lines.join("\n"))
            .expect("plan")
    }

    #[test]
    fn listings_read_one_tenants_range_of_an_index_and_never_sort() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = schema::open_writer(&dir.path().join("plan.db")).expect("open");
        let cursor = "01J00000000000000000000000";
        let cases: [(&str, Vec<&dyn rusqlite::ToSql>, &[&str]); 8] = [
            (
                LIST_EVENT_TYPES,
                vec![&"acme", &10],
                &["sqlite_autoindex_event_types_1"],
            ),
            (
                LIST_ENDPOINTS,
                vec![&"acme", &cursor, &10],
                &["endpoints_by_tenant"],
            ),
            (
                LIST_ENDPOINTS_BY_OWNER,
                vec![&"acme", &"company-7", &cursor, &10],
                &["endpoints_by_owner"],
            ),
            (TENANT_ENDPOINTS, vec![&"acme"], &["endpoints_by_tenant"]),
            (
                crate::sources::LIST_SOURCES,
                vec![&"acme", &cursor, &10],
                &["sources_by_tenant"],
            ),
            (LIST_EVENTS, vec![&"acme", &NEWEST, &10], &["events_by_tenant"]),
            (
                LIST_EVENTS_BY_TYPE,
                vec![&"acme", &"invoice.paid", &cursor, &10],
                &["events_by_type"],
            ),
            (
                LIST_EVENTS_BY_OWNER,
                vec![&"acme", &"company-42", &cursor, &10],
                &["events_by_owner"],
            ),
        ];
        for (sql, params, indexes) in cases {
            let plan = plan_of(&conn, sql, &params);
            assert!(
                indexes
                    .iter()
                    .any(|index| plan.contains(&format!("INDEX {index} (tenant="))),
                "{sql}\n{plan}"
            );
            assert!(
                !plan.contains("TEMP B-TREE"),
                "sorted by the index itself: {plan}"
            );
            assert!(!plan.contains("SCAN"), "{plan}");
        }
        let both = plan_of(
            &conn,
            LIST_EVENTS_BY_TYPE_AND_OWNER,
            params![&"acme", &"invoice.paid", &"company-42", &cursor, &10],
        );
        assert!(
            both.contains("INDEX events_by_type (tenant=") || both.contains("INDEX events_by_owner (tenant="),
            "{both}"
        );
        assert!(!both.contains("TEMP B-TREE") && !both.contains("SCAN"), "{both}");
        // A source's requests: its range of the primary key, newest first.
        let requests = plan_of(
            &conn,
            crate::sources::SOURCE_REQUESTS,
            params![&cursor, &"acme", &10],
        );
        assert!(
            requests.contains("INDEX sqlite_autoindex_source_requests_1 (source_id="),
            "{requests}"
        );
        assert!(
            !requests.contains("TEMP B-TREE") && !requests.contains("SCAN"),
            "{requests}"
        );
        let source = plan_of(&conn, crate::sources::GET_SOURCE, params![&cursor]);
        assert!(source.contains("sqlite_autoindex_sources_1 (id=?)"), "{source}");
    }
}
