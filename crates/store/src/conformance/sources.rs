//! The conformance suite's part for [`SourceStore`]: inbound sources
//! (found by id alone, listed per tenant) and the requests they received.

use std::sync::Arc;

use domain::{
    EventId, EventType, Source, SourceId, SourceRequest, SourceRequestId, Split, TenantId, Timestamp,
    Verdict, Verify,
};
use rand::SeedableRng;

use super::at;
use crate::{MAX_SOURCE_REQUESTS, Store, StoreError};

fn tenant(name: &str) -> TenantId {
    TenantId::new(name)
}

/// A new GitHub source of `tenant` with a reproducible id, made at
/// `created`: every event it makes is a `github.push`.
pub fn source(tenant_name: &str, seed: u64, name: &str, created: Timestamp) -> Source {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Source {
        id: SourceId::generate(created, &mut rng),
        tenant: tenant(tenant_name),
        name: name.to_owned(),
        event_type: Some(EventType::parse("github.push").expect("valid type")),
        owner: None,
        verify: Verify::github("secret").expect("valid verification"),
        challenge: None,
        split: Split::default(),
        created_at: created,
        updated_at: created,
    }
}

/// A request `source` received at `received` (ids drawn from `seed`):
/// accepted with one event for even seeds, rejected for odd ones.
pub fn source_request(source: &Source, seed: u64, received: Timestamp) -> SourceRequest {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let id = SourceRequestId::generate(received, &mut rng);
    let verdict = if seed.is_multiple_of(2) {
        Verdict::Accepted {
            events: vec![EventId::generate(received, &mut rng)],
            duplicates: 0,
        }
    } else {
        Verdict::Rejected {
            status: 401,
            reason: "signature mismatch".to_owned(),
        }
    };
    SourceRequest {
        id,
        source: source.id,
        tenant: source.tenant.clone(),
        received_at: received,
        body_bytes: 100 + seed,
        verdict,
    }
}

pub async fn sources_are_created_read_updated_and_deleted_by_id(store: Arc<dyn Store>) {
    let created = source("acme", 1, "github", at(0));
    store.create_source(&created).await.expect("create");
    store
        .create_source(&created)
        .await
        .expect("the same create again finds its own source");
    let mut other = source("acme", 1, "someone else's", at(0));
    assert_eq!(other.id, created.id, "same id");
    assert!(
        matches!(store.create_source(&other).await, Err(StoreError::Conflict)),
        "a different source under a taken id"
    );
    other.tenant = tenant("globex");
    assert!(
        matches!(store.create_source(&other).await, Err(StoreError::Conflict)),
        "ids are unique across tenants"
    );

    let (read, version) = store
        .get_source(created.id)
        .await
        .expect("get")
        .expect("found by id alone");
    assert_eq!(read, created);

    let mut renamed = created.clone();
    renamed.name = "github (org)".to_owned();
    renamed.verify = Verify::github("rotated").expect("valid");
    renamed.updated_at = at(5);
    assert!(
        !store
            .update_source(&renamed, version + 1)
            .await
            .expect("update at a version it is not at"),
        "a wrong version writes nothing"
    );
    let mut theirs = renamed.clone();
    theirs.tenant = tenant("globex");
    assert!(
        !store
            .update_source(&theirs, version)
            .await
            .expect("update as another tenant"),
        "another tenant's update writes nothing"
    );
    assert_eq!(
        store.get_source(created.id).await.expect("get"),
        Some((created.clone(), version)),
        "unchanged"
    );
    assert!(
        store.update_source(&renamed, version).await.expect("update"),
        "the version read"
    );
    let (read, moved_on) = store.get_source(created.id).await.expect("get").expect("found");
    assert_eq!(read, renamed);
    assert!(
        moved_on > version,
        "the version moves on: {version} -> {moved_on}"
    );

    let mut stale = renamed.clone();
    stale.name = "a lost update".to_owned();
    assert!(
        !store.update_source(&stale, version).await.expect("update"),
        "a stale version writes nothing"
    );
    assert_eq!(
        store.get_source(created.id).await.expect("get"),
        Some((renamed.clone(), moved_on))
    );

    assert!(
        !store
            .delete_source(&tenant("globex"), created.id)
            .await
            .expect("delete as another tenant"),
        "another tenant cannot delete it"
    );
    assert!(
        store.get_source(created.id).await.expect("get").is_some(),
        "it stays"
    );
    assert!(
        store
            .delete_source(&tenant("acme"), created.id)
            .await
            .expect("delete")
    );
    assert_eq!(store.get_source(created.id).await.expect("get"), None);
    assert!(
        !store
            .delete_source(&tenant("acme"), created.id)
            .await
            .expect("delete again"),
        "gone"
    );
    assert!(
        !store.update_source(&renamed, moved_on).await.expect("update"),
        "a deleted source is not brought back"
    );
    assert_eq!(store.get_source(created.id).await.expect("get"), None);
}

pub async fn sources_are_listed_per_tenant_oldest_first_with_a_cursor(store: Arc<dyn Store>) {
    let acme: Vec<Source> = (0..5)
        .map(|i| {
            source(
                "acme",
                10 + i,
                &format!("source {i}"),
                at(i64::try_from(i).expect("small")),
            )
        })
        .collect();
    let globex: Vec<Source> = (0..2)
        .map(|i| {
            source(
                "globex",
                20 + i,
                &format!("theirs {i}"),
                at(i64::try_from(i).expect("small")),
            )
        })
        .collect();
    // Created out of order: the listing is by creation (id), not by write.
    for s in acme.iter().rev().chain(&globex) {
        store.create_source(s).await.expect("create");
    }

    let list_all = |name: &'static str| {
        let store = Arc::clone(&store);
        async move {
            let mut after = None;
            let mut listed = Vec::new();
            let mut pages = 0;
            loop {
                let page = store.list_sources(&tenant(name), after, 2).await.expect("list");
                assert!(page.sources.len() <= 2, "a page holds at most its limit");
                pages += 1;
                assert!(pages <= 10, "the listing ends");
                listed.extend(page.sources);
                match page.next {
                    Some(next) => after = Some(next),
                    None => return listed,
                }
            }
        }
    };
    assert_eq!(list_all("acme").await, acme, "oldest first, whole, across pages");
    assert_eq!(list_all("globex").await, globex, "no other tenant's sources");
    assert!(list_all("initech").await.is_empty());

    let first = store.list_sources(&tenant("acme"), None, 2).await.expect("list");
    assert_eq!(first.sources, acme[..2]);
    assert_eq!(first.next, Some(acme[1].id), "the cursor is the last one listed");
    let rest = store
        .list_sources(&tenant("acme"), Some(acme[2].id), 100)
        .await
        .expect("list");
    assert_eq!(rest.sources, acme[3..], "after is exclusive");
    let one = store.list_sources(&tenant("acme"), None, 0).await.expect("list");
    assert_eq!(one.sources, acme[..1], "a limit of 0 is 1");

    assert!(
        store
            .delete_source(&tenant("acme"), acme[0].id)
            .await
            .expect("delete")
    );
    assert_eq!(
        list_all("acme").await,
        acme[1..],
        "a deleted source is no longer listed"
    );
}

pub async fn source_requests_are_kept_newest_first_per_source_and_tenant(store: Arc<dyn Store>) {
    let first = source("acme", 30, "first", at(0));
    let second = source("acme", 31, "second", at(0));
    for s in [&first, &second] {
        store.create_source(s).await.expect("create");
    }
    let requests: Vec<SourceRequest> = (0..5)
        .map(|i| source_request(&first, 40 + i, at(10 + i64::try_from(i).expect("small"))))
        .collect();
    let others: Vec<SourceRequest> = (0..2)
        .map(|i| source_request(&second, 50 + i, at(20 + i64::try_from(i).expect("small"))))
        .collect();
    for request in requests.iter().chain(&others) {
        store.record_source_request(request).await.expect("record");
    }
    store
        .record_source_request(&requests[2])
        .await
        .expect("recording one again (a retry) is fine");

    let newest_first: Vec<SourceRequest> = requests.iter().rev().cloned().collect();
    assert_eq!(
        store
            .source_requests(&tenant("acme"), first.id, 10)
            .await
            .expect("read"),
        newest_first,
        "newest first, each once"
    );
    assert_eq!(
        store
            .source_requests(&tenant("acme"), first.id, 2)
            .await
            .expect("read"),
        newest_first[..2],
        "at most the limit"
    );
    assert_eq!(
        store
            .source_requests(&tenant("acme"), first.id, 0)
            .await
            .expect("read"),
        newest_first[..1],
        "a limit of 0 is 1"
    );
    assert_eq!(
        store
            .source_requests(&tenant("acme"), first.id, MAX_SOURCE_REQUESTS + 10)
            .await
            .expect("read")
            .len(),
        5
    );
    let second_newest_first: Vec<SourceRequest> = others.iter().rev().cloned().collect();
    assert_eq!(
        store
            .source_requests(&tenant("acme"), second.id, 10)
            .await
            .expect("read"),
        second_newest_first,
        "per source"
    );
    assert!(
        store
            .source_requests(&tenant("globex"), first.id, 10)
            .await
            .expect("read")
            .is_empty(),
        "another tenant sees none of them"
    );
    assert!(
        store
            .source_requests(&tenant("acme"), source("acme", 99, "none", at(0)).id, 10)
            .await
            .expect("read")
            .is_empty(),
        "a source that received nothing"
    );

    // Well within the retention (every store keeps them longer than a
    // few seconds), a purge keeps them all.
    store.purge_expired(at(30)).await.expect("purge");
    assert_eq!(
        store
            .source_requests(&tenant("acme"), first.id, 10)
            .await
            .expect("read")
            .len(),
        5,
        "kept until received_at plus the retention"
    );
}

/// For a store whose [`crate::JobStore::purge_expired`] deletes (not one
/// whose database expires items itself): a request is kept until its
/// `received_at` plus the store's `retention`, and purged then. Backends
/// call it with the retention they opened the store with.
pub async fn source_requests_are_purged_after_the_retention(
    store: Arc<dyn Store>,
    retention: std::time::Duration,
) {
    let kept = source("acme", 60, "kept", at(0));
    store.create_source(&kept).await.expect("create");
    let early = source_request(&kept, 61, at(10));
    let late = source_request(&kept, 62, at(1000));
    for request in [&early, &late] {
        store.record_source_request(request).await.expect("record");
    }
    let retention = chrono::Duration::from_std(retention).expect("a plausible retention");
    let expires = at(10) + retention;
    store
        .purge_expired(expires - chrono::Duration::seconds(1))
        .await
        .expect("purge");
    assert_eq!(
        store
            .source_requests(&tenant("acme"), kept.id, 10)
            .await
            .expect("read"),
        [late.clone(), early.clone()],
        "kept until the retention runs out"
    );
    store.purge_expired(expires).await.expect("purge");
    assert_eq!(
        store
            .source_requests(&tenant("acme"), kept.id, 10)
            .await
            .expect("read"),
        [late],
        "purged once it did"
    );
    assert!(
        store.get_source(kept.id).await.expect("get").is_some(),
        "a source does not expire"
    );
}
