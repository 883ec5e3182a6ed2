//! The conformance suite's part for [`EventStore`]: event types, endpoints,
//! events and their fan-out into delivery jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use domain::{
    DisabledReason, Endpoint, EndpointHeaders, EndpointId, EndpointStatus, Event, EventId, EventPayload,
    EventType, EventTypeDef, JobStatus, NewEvent, Owner, Payload, RawJson, SettledResult, SigningSecret,
    Subscription, Target, TenantId, TenantSecrets, Timestamp,
};
use rand::SeedableRng;

use super::{at, lease};
use crate::{EndpointQuery, EventQuery, IdempotencyRecord, Published, Store, StoreError};

/// What a backend's test hands the event half of the suite.
pub trait EventStoreUnderTest {
    type Guard;
    fn split_events(self) -> (Arc<dyn Store>, Self::Guard);
}

impl<S: Store + 'static> EventStoreUnderTest for Arc<S> {
    type Guard = ();
    fn split_events(self) -> (Arc<dyn Store>, ()) {
        (self, ())
    }
}

impl<S: Store + 'static, G> EventStoreUnderTest for (Arc<S>, G) {
    type Guard = G;
    fn split_events(self) -> (Arc<dyn Store>, G) {
        (self.0, self.1)
    }
}

fn tenant(name: &str) -> TenantId {
    TenantId::new(name)
}

fn kind(name: &str) -> EventType {
    EventType::parse(name).expect("valid type")
}

/// A new endpoint of `tenant` with a reproducible id, made at `created`.
pub fn endpoint(
    tenant_name: &str,
    seed: u64,
    owner: Option<&str>,
    types: &[&str],
    created: Timestamp,
) -> Endpoint {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let id = EndpointId::generate(created, &mut rng);
    let event_types = if types == ["*"] {
        Subscription::All
    } else {
        Subscription::Only(types.iter().map(|t| kind(t)).collect())
    };
    Endpoint {
        id,
        tenant: tenant(tenant_name),
        url: url::Url::parse(&format!("https://client.example/hooks/{seed}")).expect("valid"),
        description: format!("endpoint {seed}"),
        owner: owner.map(|o| Owner::parse(o).expect("valid owner")),
        event_types,
        headers: EndpointHeaders::parse(BTreeMap::from([("x-team".to_owned(), "billing".to_owned())]))
            .expect("valid headers"),
        // Stored and read back whole, credentials included.
        auth: Some(domain::EndpointAuth::Bearer {
            token: domain::Credential::new(format!("token-{seed}")),
        }),
        timeout: Some(std::time::Duration::from_secs(90)),
        status: EndpointStatus::Enabled,
        secrets: TenantSecrets::new(SigningSecret::generate(&mut rng)),
        failing_since: None,
        created_at: created,
        updated_at: created,
    }
}

/// An event of `tenant` published at `now` to those of `endpoints` that
/// receive it.
pub fn event(
    tenant_name: &str,
    seed: u64,
    event_type: &str,
    owner: Option<&str>,
    endpoints: &[Endpoint],
    now: Timestamp,
) -> Event {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Event::fan_out(
        NewEvent {
            id: EventId::generate(now, &mut rng),
            tenant: tenant(tenant_name),
            event_type: kind(event_type),
            owner: owner.map(|o| Owner::parse(o).expect("valid owner")),
            payload: EventPayload::Inline(
                RawJson::from_json(&format!(r#"{{"invoiceId":"in_{seed}","amount":1200}}"#)).expect("json"),
            ),
            providers: Vec::new(),
        },
        endpoints,
        now,
    )
}

fn event_type(tenant_name: &str, name: &str, description: &str, now: Timestamp) -> EventTypeDef {
    EventTypeDef {
        tenant: tenant(tenant_name),
        name: kind(name),
        description: description.to_owned(),
        providers: Vec::new(),
        created_at: now,
        updated_at: now,
    }
}

pub async fn event_types_are_created_replaced_listed_and_deleted_per_tenant(store: Arc<dyn Store>) {
    let paid = event_type("acme", "invoice.paid", "An invoice was paid", at(0));
    assert!(store.put_event_type(&paid).await.expect("put"), "created");
    let mut changed = event_type("acme", "invoice.paid", "Paid in full", at(5));
    assert!(
        !store.put_event_type(&changed).await.expect("put again"),
        "replaced, not created"
    );
    changed.created_at = at(0);
    assert_eq!(
        store
            .get_event_type(&tenant("acme"), &kind("invoice.paid"))
            .await
            .expect("get"),
        Some(changed.clone()),
        "replacing keeps when it was created"
    );
    store
        .put_event_type(&event_type("acme", "a.first", "", at(1)))
        .await
        .expect("put");
    store
        .put_event_type(&event_type("other", "invoice.paid", "theirs", at(1)))
        .await
        .expect("put");
    let names: Vec<String> = store
        .list_event_types(&tenant("acme"))
        .await
        .expect("list")
        .iter()
        .map(|t| t.name.as_str().to_owned())
        .collect();
    assert_eq!(names, ["a.first", "invoice.paid"], "by name, this tenant's only");
    assert!(
        store
            .delete_event_type(&tenant("acme"), &kind("invoice.paid"))
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_event_type(&tenant("acme"), &kind("invoice.paid"))
            .await
            .expect("delete again")
    );
    assert_eq!(
        store
            .get_event_type(&tenant("acme"), &kind("invoice.paid"))
            .await
            .expect("get"),
        None
    );
    assert!(
        store
            .get_event_type(&tenant("other"), &kind("invoice.paid"))
            .await
            .expect("get")
            .is_some(),
        "another tenant's type of the same name stays"
    );
}

pub async fn endpoints_are_versioned_listed_by_owner_and_tenant_scoped(store: Arc<dyn Store>) {
    let first = endpoint("acme", 1, Some("company-42"), &["invoice.paid"], at(0));
    store.create_endpoint(&first).await.expect("create");
    // The same write again (a retry of a lost answer) finds its own.
    store.create_endpoint(&first).await.expect("create again");
    let mut clash = first.clone();
    clash.description = "another".to_owned();
    assert!(matches!(
        store.create_endpoint(&clash).await,
        Err(StoreError::Conflict)
    ));

    let (read, version) = store
        .get_endpoint(&tenant("acme"), first.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(read, first);
    assert_eq!(
        store.get_endpoint(&tenant("other"), first.id).await.expect("get"),
        None
    );

    let mut disabled = read.clone();
    disabled.disable(DisabledReason::Gone, at(3));
    assert!(store.update_endpoint(&disabled, version).await.expect("update"));
    let mut stale = read.clone();
    stale.description = "lost update".to_owned();
    assert!(
        !store
            .update_endpoint(&stale, version)
            .await
            .expect("stale update"),
        "the version moved on"
    );
    let (now_stored, next) = store
        .get_endpoint(&tenant("acme"), first.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(now_stored, disabled);
    assert_eq!(next, version + 1);

    for seed in 2..=6 {
        let owner = if seed % 2 == 0 { Some("company-7") } else { None };
        store
            .create_endpoint(&endpoint(
                "acme",
                seed,
                owner,
                &["*"],
                at(i64::try_from(seed).unwrap_or(0)),
            ))
            .await
            .expect("create");
    }
    store
        .create_endpoint(&endpoint("other", 99, Some("company-7"), &["*"], at(1)))
        .await
        .expect("create");

    // Oldest first, two at a time, to the end.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_endpoints(
                &tenant("acme"),
                &EndpointQuery {
                    owner: None,
                    after,
                    limit: 2,
                },
            )
            .await
            .expect("list");
        assert!(page.endpoints.len() <= 2);
        seen.extend(page.endpoints.iter().map(|e| e.id));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "oldest first");
    assert_eq!(seen.len(), 6, "every endpoint of the tenant once: {seen:?}");

    let mut owned = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_endpoints(
                &tenant("acme"),
                &EndpointQuery {
                    owner: Some(Owner::parse("company-7").expect("owner")),
                    after,
                    limit: 100,
                },
            )
            .await
            .expect("list");
        owned.extend(page.endpoints.iter().map(|e| e.description.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        owned,
        ["endpoint 2", "endpoint 4", "endpoint 6"],
        "one owner's, this tenant's"
    );

    assert!(
        store
            .delete_endpoint(&tenant("acme"), first.id)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_endpoint(&tenant("acme"), first.id)
            .await
            .expect("delete again")
    );
    assert_eq!(
        store.get_endpoint(&tenant("acme"), first.id).await.expect("get"),
        None
    );
    assert!(
        !store
            .update_endpoint(&disabled, next)
            .await
            .expect("update a deleted one")
    );
}

/// An event whose payload is a blob (SPEC section 13) is stored with its
/// reference (event record version 3) and reads back with it: by id, in
/// the listing, and to its deliveries; the same id with another blob is
/// another event.
pub async fn an_event_held_in_a_blob_is_stored_by_its_reference(store: Arc<dyn Store>) {
    let receiver = endpoint("acme", 1, None, &["*"], at(0));
    let mut event = event(
        "acme",
        20,
        "report.ready",
        None,
        std::slice::from_ref(&receiver),
        at(1),
    );
    let blob = domain::BlobRef::of(&vec![b'x'; 2 * 1024 * 1024]);
    event.payload = EventPayload::Blob(blob);
    assert_eq!(
        store.publish(&event, None, at(1)).await.expect("publish"),
        Published::Accepted
    );
    let stored = store
        .get_event(&tenant("acme"), event.id)
        .await
        .expect("get")
        .expect("the event");
    assert_eq!(stored, event);
    assert_eq!(stored.payload.blob(), Some(&blob));
    let page = store
        .list_events(
            &tenant("acme"),
            &EventQuery {
                event_type: None,
                owner: None,
                after: None,
                limit: 10,
            },
        )
        .await
        .expect("list");
    assert_eq!(page.events, [event.clone()]);
    let delivery = store
        .get_job(&tenant("acme"), event.deliveries[0].id)
        .await
        .expect("get job")
        .expect("the delivery");
    assert_eq!(delivery.payload(), &Payload::OfEvent(event.id));
    // Published again: the same event.
    assert_eq!(
        store.publish(&event, None, at(2)).await.expect("again"),
        Published::Accepted
    );
    let mut other = event.clone();
    other.payload = EventPayload::Blob(domain::BlobRef::of(b"other bytes"));
    assert!(matches!(
        store.publish(&other, None, at(2)).await,
        Err(StoreError::Conflict)
    ));
}

pub async fn fan_out_reads_every_endpoint_of_the_tenant(store: Arc<dyn Store>) {
    let many = 130;
    for seed in 0..many {
        store
            .create_endpoint(&endpoint("acme", seed, None, &["*"], at(0)))
            .await
            .expect("create");
    }
    store
        .create_endpoint(&endpoint("other", 1000, None, &["*"], at(0)))
        .await
        .expect("create");
    let endpoints = store.tenant_endpoints(&tenant("acme")).await.expect("endpoints");
    let ids: BTreeSet<EndpointId> = endpoints.iter().map(|e| e.id).collect();
    assert_eq!(
        ids.len(),
        usize::try_from(many).unwrap_or(0),
        "past one page, each once"
    );
    assert!(endpoints.iter().all(|e| e.tenant == tenant("acme")));
}

pub async fn publishing_creates_the_event_and_each_delivery_once(store: Arc<dyn Store>) {
    let billing = endpoint("acme", 1, Some("company-42"), &["invoice.paid"], at(0));
    let everything = endpoint("acme", 2, Some("company-42"), &["*"], at(0));
    let elsewhere = endpoint("acme", 3, Some("company-7"), &["invoice.paid"], at(0));
    let unsubscribed = endpoint("acme", 4, None, &["invoice.void"], at(0));
    let endpoints = [billing.clone(), everything.clone(), elsewhere, unsubscribed];
    let event = event("acme", 10, "invoice.paid", Some("company-42"), &endpoints, at(1));
    assert_eq!(
        event.deliveries.iter().map(|d| d.endpoint).collect::<Vec<_>>(),
        [billing.id, everything.id],
        "the owner's endpoints subscribed to the type or to every type"
    );
    assert_eq!(
        store.publish(&event, None, at(1)).await.expect("publish"),
        Published::Accepted
    );
    assert_eq!(
        store.get_event(&tenant("acme"), event.id).await.expect("get"),
        Some(event.clone())
    );
    assert_eq!(
        store.get_event(&tenant("other"), event.id).await.expect("get"),
        None
    );
    for (delivery, job) in event.deliveries.iter().zip(event.delivery_jobs()) {
        let stored = store
            .get_job(&tenant("acme"), delivery.id)
            .await
            .expect("get job")
            .expect("the delivery exists");
        assert_eq!(stored, job);
        assert_eq!(stored.target(), &Target::Endpoint(delivery.endpoint));
        assert_eq!(stored.payload(), &Payload::OfEvent(event.id));
        assert_eq!(stored.status(), JobStatus::Delivering);
    }
    let due = store.due_jobs(at(2), 100).await.expect("due");
    assert_eq!(due.len(), 2, "one delivery per endpoint: {due:?}");

    // Published again (a retry after a lost answer or a crash): nothing new.
    assert_eq!(
        store.publish(&event, None, at(2)).await.expect("again"),
        Published::Accepted
    );
    assert_eq!(store.due_jobs(at(2), 100).await.expect("due").len(), 2);

    // The same id with other content is another event: refused.
    let mut other = event.clone();
    other.payload = EventPayload::Inline(RawJson::from_json("[1]").expect("json"));
    assert!(matches!(
        store.publish(&other, None, at(2)).await,
        Err(StoreError::Conflict)
    ));

    // An event no endpoint receives is stored with no deliveries.
    let lonely = self::event(
        "acme",
        11,
        "nobody.listens",
        Some("company-99"),
        &endpoints,
        at(3),
    );
    assert!(lonely.deliveries.is_empty());
    assert_eq!(
        store.publish(&lonely, None, at(3)).await.expect("publish"),
        Published::Accepted
    );
    assert_eq!(
        store.get_event(&tenant("acme"), lonely.id).await.expect("get"),
        Some(lonely)
    );
}

pub async fn a_fan_out_cut_short_is_completed_without_touching_what_it_made(store: Arc<dyn Store>) {
    let endpoints: Vec<Endpoint> = (1..=3)
        .map(|seed| endpoint("acme", seed, None, &["*"], at(0)))
        .collect();
    let event = event("acme", 20, "invoice.paid", None, &endpoints, at(1));
    // What a publisher that died mid fan-out left: one delivery, already
    // made by a processor before the rest were written.
    let first = event.delivery_jobs().remove(0);
    store.create_job(&first).await.expect("create");
    let held = lease("p1", at(60));
    let crate::Claim::Won { job: claimed, .. } = store
        .claim(first.tenant(), first.id(), &held, at(2))
        .await
        .expect("claim")
    else {
        panic!("claim lost");
    };
    let done = super::delivered(&claimed, at(2));
    assert_eq!(
        store.save(&done, &held, at(2)).await.expect("save"),
        crate::Fenced::Written
    );

    assert_eq!(
        store.publish(&event, None, at(3)).await.expect("publish"),
        Published::Accepted
    );
    let stored = store
        .get_job(&tenant("acme"), first.id())
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        stored.status(),
        JobStatus::Complete,
        "the delivery made is not made again"
    );
    let due = store.due_jobs(at(3), 100).await.expect("due");
    assert_eq!(due.len(), 2, "the two missing deliveries were created: {due:?}");
}

pub async fn an_idempotency_key_publishes_one_event_per_window(store: Arc<dyn Store>) {
    let endpoints = [endpoint("acme", 1, None, &["*"], at(0))];
    let first = event("acme", 30, "invoice.paid", None, &endpoints, at(1));
    let key = IdempotencyRecord {
        key_hash: "k".repeat(64),
        fingerprint: "f".repeat(64),
        expires_at: at(100),
    };
    assert_eq!(
        store.publish(&first, Some(&key), at(1)).await.expect("publish"),
        Published::Accepted
    );
    let second = event("acme", 31, "invoice.paid", None, &endpoints, at(2));
    assert_eq!(
        store.publish(&second, Some(&key), at(2)).await.expect("publish"),
        Published::Replay {
            event_id: first.id,
            same_request: true
        }
    );
    let changed = IdempotencyRecord {
        fingerprint: "g".repeat(64),
        ..key.clone()
    };
    assert_eq!(
        store
            .publish(&second, Some(&changed), at(2))
            .await
            .expect("publish"),
        Published::Replay {
            event_id: first.id,
            same_request: false
        }
    );
    assert_eq!(
        store.get_event(&tenant("acme"), second.id).await.expect("get"),
        None,
        "nothing written"
    );
    // Another tenant's key of the same hash is its own.
    let theirs = event("other", 32, "invoice.paid", None, &[], at(2));
    assert_eq!(
        store.publish(&theirs, Some(&key), at(2)).await.expect("publish"),
        Published::Accepted
    );
    // Past its window the key publishes anew.
    let later = event("acme", 33, "invoice.paid", None, &endpoints, at(101));
    let renewed = IdempotencyRecord {
        expires_at: at(200),
        ..key
    };
    assert_eq!(
        store
            .publish(&later, Some(&renewed), at(101))
            .await
            .expect("publish"),
        Published::Accepted
    );
    assert_eq!(store.due_jobs(at(102), 100).await.expect("due").len(), 2);
}

pub async fn events_are_listed_newest_first_by_type_and_owner_with_a_cursor(store: Arc<dyn Store>) {
    let mut published = Vec::new();
    for seed in 0..7u64 {
        let kind = if seed % 2 == 0 {
            "invoice.paid"
        } else {
            "invoice.void"
        };
        let owner = if seed % 3 == 0 { Some("company-42") } else { None };
        let event = event(
            "acme",
            40 + seed,
            kind,
            owner,
            &[],
            at(i64::try_from(seed).unwrap_or(0) + 1),
        );
        store
            .publish(&event, None, event.created_at)
            .await
            .expect("publish");
        published.push(event);
    }
    store
        .publish(&event("other", 99, "invoice.paid", None, &[], at(3)), None, at(3))
        .await
        .expect("publish");
    let list = |event_type: Option<&str>, owner: Option<&str>| {
        let store = Arc::clone(&store);
        let query = EventQuery {
            event_type: event_type.map(kind),
            owner: owner.map(|o| Owner::parse(o).expect("owner")),
            after: None,
            limit: 2,
        };
        async move {
            let mut seen = Vec::new();
            let mut query = query;
            for _ in 0..50 {
                let page = store.list_events(&tenant("acme"), &query).await.expect("list");
                assert!(page.events.len() <= 2);
                seen.extend(page.events.iter().map(|e| e.id));
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => return seen,
                }
            }
            panic!("the listing did not end");
        }
    };
    let newest_first: Vec<EventId> = published.iter().rev().map(|e| e.id).collect();
    assert_eq!(list(None, None).await, newest_first);
    let paid: Vec<EventId> = published
        .iter()
        .rev()
        .filter(|e| e.event_type.as_str() == "invoice.paid")
        .map(|e| e.id)
        .collect();
    assert_eq!(list(Some("invoice.paid"), None).await, paid);
    let owned: Vec<EventId> = published
        .iter()
        .rev()
        .filter(|e| e.owner.is_some())
        .map(|e| e.id)
        .collect();
    assert_eq!(list(None, Some("company-42")).await, owned);
    let both: Vec<EventId> = published
        .iter()
        .rev()
        .filter(|e| e.owner.is_some() && e.event_type.as_str() == "invoice.paid")
        .map(|e| e.id)
        .collect();
    assert_eq!(list(Some("invoice.paid"), Some("company-42")).await, both);
}

/// A thin event: its type's providers are stored with it, its deliveries
/// fetch them, and each provider's result is kept once, first writer wins.
pub async fn a_thin_events_provider_results_are_settled_once_first_writer_wins(store: Arc<dyn Store>) {
    let endpoints = [
        endpoint("acme", 1, None, &["meter.read"], at(0)),
        endpoint("acme", 2, None, &["*"], at(0)),
    ];
    let mut thin = event("acme", 30, "meter.read", None, &endpoints, at(1));
    thin.providers = vec!["gas".to_owned(), "internet".to_owned()];
    let mut type_def = event_type("acme", "meter.read", "", at(0));
    type_def.providers = thin.providers.clone();
    store.put_event_type(&type_def).await.expect("put type");
    assert_eq!(
        store
            .get_event_type(&tenant("acme"), &kind("meter.read"))
            .await
            .expect("get type")
            .map(|t| t.providers),
        Some(thin.providers.clone()),
        "a type keeps its providers"
    );
    assert_eq!(
        store.publish(&thin, None, at(1)).await.expect("publish"),
        Published::Accepted
    );
    for delivery in &thin.deliveries {
        let job = store
            .get_job(&tenant("acme"), delivery.id)
            .await
            .expect("get job")
            .expect("the delivery exists");
        let names: Vec<&str> = job.providers().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["gas", "internet"],
            "each delivery fetches the event's providers"
        );
        assert_eq!(job.status(), JobStatus::Pending);
    }

    let first = SettledResult::Ok {
        status: 200,
        data: serde_json::json!([{"billedOn": "2026-11-01", "amount": 22.27}]),
    };
    let second = SettledResult::Ok {
        status: 200,
        data: serde_json::json!([{"billedOn": "2026-11-01", "amount": 99.0}]),
    };
    let settle = |provider: &'static str, settled: SettledResult| {
        let store = Arc::clone(&store);
        let id = thin.id;
        async move {
            store
                .settle_event_provider(&tenant("acme"), id, provider, &settled)
                .await
        }
    };
    assert_eq!(
        settle("gas", first.clone()).await.expect("settle"),
        Some(first.clone())
    );
    assert_eq!(
        settle("gas", second.clone()).await.expect("settle again"),
        Some(first.clone()),
        "the second writer is answered the first's result"
    );
    let failed = SettledResult::Failed {
        status: Some(503),
        error: "HTTP 503 after 6 attempts".to_owned(),
    };
    assert_eq!(
        settle("internet", failed.clone()).await.expect("settle"),
        Some(failed.clone())
    );
    let stored = store
        .get_event(&tenant("acme"), thin.id)
        .await
        .expect("get")
        .expect("the event");
    assert_eq!(
        stored.settled,
        BTreeMap::from([("gas".to_owned(), first.clone()), ("internet".to_owned(), failed)])
    );
    assert!(
        stored.is_published_as(&thin),
        "results are not the event's content"
    );
    let listed = store
        .list_events(
            &tenant("acme"),
            &EventQuery {
                event_type: Some(kind("meter.read")),
                owner: None,
                limit: 10,
                after: None,
            },
        )
        .await
        .expect("list");
    assert_eq!(
        listed.events,
        std::slice::from_ref(&stored),
        "listed with its results"
    );

    // Published again after its results were settled: the same event.
    assert_eq!(
        store.publish(&stored, None, at(2)).await.expect("again"),
        Published::Accepted
    );
    assert_eq!(
        store.publish(&thin, None, at(2)).await.expect("again"),
        Published::Accepted
    );

    // Concurrent writers of one provider all get one result.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            settle(
                "water",
                SettledResult::Ok {
                    status: 200,
                    data: serde_json::json!({ "writer": i }),
                },
            )
        })
        .collect();
    let answers: BTreeSet<String> = futures::future::join_all(racers)
        .await
        .into_iter()
        .map(|answer| format!("{:?}", answer.expect("settle").expect("the event exists")))
        .collect();
    assert_eq!(answers.len(), 1, "one result for every writer: {answers:?}");

    // No such event (another tenant's, or never published): nothing is
    // written, and the answer says so.
    assert_eq!(
        store
            .settle_event_provider(&tenant("other"), thin.id, "gas", &second)
            .await
            .expect("settle"),
        None
    );
    let unknown = EventId::generate(at(3), &mut rand::rngs::StdRng::seed_from_u64(99));
    assert_eq!(
        store
            .settle_event_provider(&tenant("acme"), unknown, "gas", &second)
            .await
            .expect("settle"),
        None
    );
    assert_eq!(
        store.get_event(&tenant("acme"), unknown).await.expect("get"),
        None
    );
}
