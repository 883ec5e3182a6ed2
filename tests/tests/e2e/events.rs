//! Endpoints, event types and events (SPEC section 9) over real HTTP, on
//! every store: each endpoint receives exactly the events it subscribed
//! to (by type and owner), each delivery signed with that endpoint's own
//! secret as the official Standard Webhooks library verifies it; an
//! endpoint answering 410 is disabled and gets nothing more; bad requests
//! are problems that change nothing.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, TestApp, client_with_key, create_key, on_every_store, spawn_app_on};

on_every_store!(
    each_endpoint_receives_exactly_its_events_signed_with_its_own_secret,
    an_endpoint_answering_410_is_disabled_and_gets_nothing_more,
    endpoints_are_managed_and_their_secret_is_shown_only_when_made,
    bad_requests_are_problems_and_another_tenant_sees_nothing,
    an_idempotent_publish_is_one_event,
    recover_redrives_an_endpoints_failed_deliveries_since_a_time,
    a_thin_events_providers_are_fetched_once_and_every_endpoint_gets_their_results,
    a_thin_events_provider_retry_and_failure_are_shared_by_its_deliveries,
    a_thin_event_type_names_configured_providers_only,
);

/// Registers event type `name` (201, or 200 when it was there).
pub(crate) async fn event_type(app: &TestApp, name: &str) {
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &format!("/v1/event-types/{name}"),
            Some(json!({"description": name})),
        )
        .await;
    assert!(status == 201 || status == 200, "{status} {body}");
}

/// Registers an endpoint at the sink, marked by an `x-endpoint` header;
/// returns its id and secret.
async fn endpoint(app: &TestApp, mark: &str, owner: Option<&str>, types: &[&str]) -> (String, String) {
    let mut request = json!({
        "url": app.callback_url(),
        "description": mark,
        "eventTypes": types,
        "headers": {"x-endpoint": mark},
    });
    if let Some(owner) = owner {
        request["owner"] = json!(owner);
    }
    let (status, body) = app
        .send(reqwest::Method::POST, "/v1/endpoints", Some(request))
        .await;
    assert_eq!(status, 201, "{body}");
    let secret = body["secret"].as_str().expect("a secret at creation").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (body["endpointId"].as_str().expect("id").to_owned(), secret)
}

async fn publish(app: &TestApp, event_type: &str, owner: Option<&str>, payload: Value) -> Value {
    let mut request = json!({"type": event_type, "payload": payload});
    if let Some(owner) = owner {
        request["owner"] = json!(owner);
    }
    let (status, body) = app.send(reqwest::Method::POST, "/v1/events", Some(request)).await;
    assert_eq!(status, 202, "{body}");
    body
}

async fn drain(app: &TestApp) -> processor::DrainReport {
    app.processor("p1").drain(&CancellationToken::new()).await
}

async fn each_endpoint_receives_exactly_its_events_signed_with_its_own_secret(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_type(&app, "invoice.paid").await;
    event_type(&app, "invoice.void").await;
    let (billing, billing_secret) = endpoint(&app, "billing", Some("company-42"), &["invoice.paid"]).await;
    let (audit, audit_secret) = endpoint(&app, "audit", None, &["*"]).await;
    let (_other, _) = endpoint(&app, "other-company", Some("company-7"), &["invoice.paid"]).await;

    // To company-42 only: billing is theirs; audit and other-company are not.
    let paid = publish(
        &app,
        "invoice.paid",
        Some("company-42"),
        json!({"invoiceId": "in_1", "amount": 1200.50}),
    )
    .await;
    app.advance(std::time::Duration::from_millis(5));
    // No owner: every endpoint subscribed to the type.
    let void = publish(&app, "invoice.void", None, json!({"invoiceId": "in_2"})).await;
    let to = |event: &Value| -> Vec<String> {
        let mut ids: Vec<String> = event["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .map(|d| d["endpointId"].as_str().expect("endpointId").to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(to(&paid), std::slice::from_ref(&billing));
    assert_eq!(to(&void), std::slice::from_ref(&audit));

    let report = drain(&app).await;
    assert_eq!(report.delivered, 2, "{report:?}");
    let deliveries = app.mock.state.accepted_deliveries();
    let mut by_endpoint: BTreeMap<String, Vec<&providers_mock::Delivery>> = BTreeMap::new();
    for delivery in &deliveries {
        by_endpoint
            .entry(delivery.headers["x-endpoint"].clone())
            .or_default()
            .push(delivery);
    }
    assert_eq!(
        by_endpoint.keys().collect::<Vec<_>>(),
        ["audit", "billing"],
        "{deliveries:?}"
    );
    for (mark, secret, event, other_secret) in [
        ("billing", &billing_secret, &paid, &audit_secret),
        ("audit", &audit_secret, &void, &billing_secret),
    ] {
        let [delivery] = by_endpoint[mark].as_slice() else {
            panic!("one delivery to {mark}");
        };
        assert_eq!(
            delivery.headers["webhook-id"],
            event["eventId"].as_str().expect("id")
        );
        testkit::verify_with_official_library(secret, delivery.headers.iter(), &delivery.raw_body)
            .unwrap_or_else(|e| {
                panic!("{mark}: the official verifier refuses its own endpoint's signature: {e}")
            });
        assert!(
            testkit::verify_with_official_library(other_secret, delivery.headers.iter(), &delivery.raw_body)
                .is_err(),
            "{mark}: another endpoint's secret does not verify"
        );
        assert_eq!(delivery.body["type"], event["type"]);
        assert_eq!(delivery.body["timestamp"], event["createdAt"]);
    }
    assert_eq!(
        by_endpoint["billing"][0].body["data"],
        json!({"invoiceId": "in_1", "amount": 1200.50})
    );

    // The event shows each delivery's state; the delivery is a job.
    let id = paid["eventId"].as_str().expect("id");
    let (status, shown) = app
        .send(reqwest::Method::GET, &format!("/v1/events/{id}"), None)
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["payload"], json!({"invoiceId": "in_1", "amount": 1200.50}));
    let delivery = &shown["deliveries"][0];
    assert_eq!(delivery["status"], "complete", "{shown}");
    assert_eq!(delivery["attempts"], 1);
    let job = app
        .get_job(delivery["deliveryId"].as_str().expect("deliveryId"))
        .await;
    assert_eq!(job["endpointId"], billing.as_str());
    assert_eq!(job["eventId"], id);
    assert_eq!(job["status"], "complete");

    // Listed newest first, filtered by type and by owner.
    let (_, all) = app.send(reqwest::Method::GET, "/v1/events", None).await;
    let ids: Vec<&str> = all["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["eventId"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [void["eventId"].as_str().expect("id"), id]);
    let (_, owned) = app
        .send(reqwest::Method::GET, "/v1/events?owner=company-42", None)
        .await;
    assert_eq!(owned["data"].as_array().expect("data").len(), 1);
    let (_, typed) = app
        .send(reqwest::Method::GET, "/v1/events?type=invoice.void", None)
        .await;
    assert_eq!(typed["data"][0]["eventId"], void["eventId"]);

    // An endpoint registered later does not get earlier events.
    endpoint(&app, "late", None, &["*"]).await;
    assert_eq!(drain(&app).await.claimed, 0);
}

async fn an_endpoint_answering_410_is_disabled_and_gets_nothing_more(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_type(&app, "invoice.paid").await;
    let (status, created) = app
        .send(
            reqwest::Method::POST,
            "/v1/endpoints",
            Some(json!({"url": app.mock.url("/gone"), "eventTypes": ["invoice.paid"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["endpointId"].as_str().expect("id").to_owned();
    let first = publish(&app, "invoice.paid", None, json!({"n": 1})).await;
    assert_eq!(first["deliveries"].as_array().expect("deliveries").len(), 1);

    let report = drain(&app).await;
    assert_eq!(report.dead_lettered, 1, "{report:?}");
    let (_, shown) = app
        .send(reqwest::Method::GET, &format!("/v1/endpoints/{id}"), None)
        .await;
    assert_eq!(shown["status"], "disabled", "{shown}");
    assert_eq!(shown["disabledReason"], "gone");
    let second = publish(&app, "invoice.paid", None, json!({"n": 2})).await;
    assert_eq!(
        second["deliveries"],
        json!([]),
        "a disabled endpoint is not in a new event's fan-out"
    );
    assert_eq!(drain(&app).await.claimed, 0);
    assert_eq!(
        app.mock.state.deliveries().len(),
        1,
        "nothing more was sent to it"
    );

    // Enabled again, it receives new events.
    let (status, enabled) = app
        .send(reqwest::Method::POST, &format!("/v1/endpoints/{id}/enable"), None)
        .await;
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(enabled["status"], "enabled");
    let third = publish(&app, "invoice.paid", None, json!({"n": 3})).await;
    assert_eq!(third["deliveries"].as_array().expect("deliveries").len(), 1);
}

async fn endpoints_are_managed_and_their_secret_is_shown_only_when_made(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_type(&app, "invoice.paid").await;
    event_type(&app, "invoice.void").await;
    let (id, secret) = endpoint(&app, "billing", Some("company-42"), &["invoice.paid"]).await;
    let path = format!("/v1/endpoints/{id}");
    let (status, read) = app.send(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 200);
    assert!(read.get("secret").is_none(), "the secret is shown once: {read}");
    assert!(!read.to_string().contains(&secret[6..]), "{read}");
    assert_eq!(read["headers"], json!({"x-endpoint": "billing"}));

    let (status, patched) = app.send(reqwest::Method::PATCH,
        &path,
        Some(json!({"description": "billing v2", "eventTypes": ["invoice.paid", "invoice.void"], "owner": null})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["description"], "billing v2");
    assert_eq!(patched["eventTypes"], json!(["invoice.paid", "invoice.void"]));
    assert!(patched.get("owner").is_none(), "{patched}");
    assert_eq!(patched["url"], read["url"], "what was not given stays");

    // Rotation: both secrets sign during the overlap.
    let (status, rotated) = app
        .send(
            reqwest::Method::POST,
            &format!("{path}/secret/rotate"),
            Some(json!({"overlap": "1h"})),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new_secret, secret);
    publish(&app, "invoice.void", None, json!({"n": 1})).await;
    assert_eq!(drain(&app).await.delivered, 1);
    let delivery = app.mock.state.accepted_deliveries().remove(0);
    assert_eq!(
        delivery.headers["webhook-signature"].split(' ').count(),
        2,
        "{:?}",
        delivery.headers
    );
    for key in [&secret, &new_secret] {
        testkit::verify_with_official_library(key, delivery.headers.iter(), &delivery.raw_body)
            .expect("verifies");
    }

    // Disabled: no fan-out; listed by owner; deleted: 404.
    let (status, disabled) = app
        .send(reqwest::Method::POST, &format!("{path}/disable"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(disabled["disabledReason"], "manual");
    let event = publish(&app, "invoice.paid", None, json!({"n": 2})).await;
    assert_eq!(event["deliveries"], json!([]));
    app.advance(std::time::Duration::from_millis(5));
    let (second_id, _) = endpoint(&app, "second", Some("company-7"), &["*"]).await;
    let (_, listed) = app
        .send(reqwest::Method::GET, "/v1/endpoints?limit=1", None)
        .await;
    assert_eq!(listed["data"][0]["endpointId"], id.as_str(), "oldest first");
    let cursor = listed["nextCursor"].as_str().expect("a next page");
    let (_, next) = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/endpoints?limit=1&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(next["data"][0]["endpointId"], second_id.as_str());
    let (_, owned) = app
        .send(reqwest::Method::GET, "/v1/endpoints?owner=company-7", None)
        .await;
    assert_eq!(owned["data"].as_array().expect("data").len(), 1);
    let (status, _) = app.send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (status, gone) = app.send(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 404, "{gone}");
    let (status, _) = app.send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 404);

    // Event types: listed by name; a deleted one takes no events.
    let (_, types) = app.send(reqwest::Method::GET, "/v1/event-types", None).await;
    let names: Vec<&str> = types["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["invoice.paid", "invoice.void"]);
    let (status, _) = app
        .send(reqwest::Method::DELETE, "/v1/event-types/invoice.void", None)
        .await;
    assert_eq!(status, 204);
    let (status, refused) = app
        .send(
            reqwest::Method::POST,
            "/v1/events",
            Some(json!({"type": "invoice.void", "payload": {}})),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["errors"][0]["field"], "type");
}

async fn bad_requests_are_problems_and_another_tenant_sees_nothing(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_type(&app, "invoice.paid").await;
    let cases = [
        (
            reqwest::Method::POST,
            "/v1/endpoints",
            json!({"url": "ftp://x.example", "eventTypes": ["*"]}),
            "url",
        ),
        (
            reqwest::Method::POST,
            "/v1/endpoints",
            json!({"url": app.callback_url(), "eventTypes": ["nope"]}),
            "eventTypes[0]",
        ),
        (
            reqwest::Method::POST,
            "/v1/endpoints",
            json!({"url": app.callback_url()}),
            "eventTypes",
        ),
        (
            reqwest::Method::POST,
            "/v1/endpoints",
            json!({"url": app.callback_url(), "eventTypes": ["*"], "headers": {"Webhook-Id": "x"}}),
            "headers",
        ),
        (
            reqwest::Method::POST,
            "/v1/endpoints",
            json!({"url": app.callback_url(), "eventTypes": ["*"], "auth": {"type": "digest", "token": "t"}}),
            "auth.type",
        ),
        (
            reqwest::Method::POST,
            "/v1/endpoints",
            json!({"url": app.callback_url(), "eventTypes": ["*"], "extra": 1}),
            "extra",
        ),
        (
            reqwest::Method::POST,
            "/v1/events",
            json!({"type": "invoice.paid"}),
            "payload",
        ),
        (
            reqwest::Method::POST,
            "/v1/events",
            json!({"type": "not registered", "payload": 1}),
            "type",
        ),
        (
            reqwest::Method::PUT,
            "/v1/event-types/bad%20name",
            json!({}),
            "name",
        ),
        (
            reqwest::Method::PUT,
            "/v1/event-types/thin",
            json!({"providers": ["gas", "water"]}),
            "providers[1]",
        ),
        (
            reqwest::Method::PUT,
            "/v1/event-types/thin",
            json!({"providers": ["gas", "gas"]}),
            "providers[1]",
        ),
        (
            reqwest::Method::PUT,
            "/v1/event-types/thin",
            json!({"providers": "gas"}),
            "providers",
        ),
    ];
    for (method, path, body, field) in cases {
        let (status, problem) = app.send(method.clone(), path, Some(body.clone())).await;
        assert_eq!(status, 422, "{method} {path} {body}: {problem}");
        assert_eq!(
            problem["errors"][0]["field"], field,
            "{method} {path} {body}: {problem}"
        );
    }
    let big =
        json!({"type": "invoice.paid", "payload": {"blob": "x".repeat(intake::MAX_EVENT_PAYLOAD_BYTES)}});
    let (status, problem) = app.send(reqwest::Method::POST, "/v1/events", Some(big)).await;
    assert_eq!(status, 413, "{problem}");
    let (status, _) = app
        .send(reqwest::Method::GET, "/v1/endpoints/not-an-id", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .send(reqwest::Method::GET, "/v1/events?color=blue", None)
        .await;
    assert_eq!(status, 422);
    let (_, listed) = app.send(reqwest::Method::GET, "/v1/endpoints", None).await;
    assert_eq!(listed["data"], json!([]), "nothing was written");

    // Another tenant's endpoints and events are not found.
    let (id, _) = endpoint(&app, "mine", None, &["*"]).await;
    let event = publish(&app, "invoice.paid", None, json!({})).await;
    let theirs = client_with_key(&create_key(&*app.store, "other").await);
    for path in [
        format!("/v1/endpoints/{id}"),
        format!("/v1/events/{}", event["eventId"].as_str().expect("id")),
    ] {
        let response = theirs
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 404, "{path}");
    }
    let response = theirs
        .get(format!("{}/v1/event-types", app.base))
        .send()
        .await
        .expect("get");
    assert_eq!(response.json::<Value>().await.expect("json")["data"], json!([]));
}

async fn an_idempotent_publish_is_one_event(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_type(&app, "invoice.paid").await;
    endpoint(&app, "one", None, &["*"]).await;
    let post = |payload: Value| {
        app.http
            .post(format!("{}/v1/events", app.base))
            .header("idempotency-key", "evt-1")
            .json(&json!({"type": "invoice.paid", "payload": payload}))
            .send()
    };
    let first = post(json!({"a": 1, "b": 2})).await.expect("post");
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.expect("json");
    // The same event, its keys in another order: the original.
    let again = post(json!({"b": 2, "a": 1})).await.expect("post");
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["eventId"], first["eventId"]);
    let other = post(json!({"a": 2})).await.expect("post");
    assert_eq!(other.status(), 409);
    assert_eq!(drain(&app).await.delivered, 1, "one event, one delivery");
}

async fn recover_redrives_an_endpoints_failed_deliveries_since_a_time(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_type(&app, "invoice.paid").await;
    let (status, created) = app
        .send(
            reqwest::Method::POST,
            "/v1/endpoints",
            Some(json!({"url": app.mock.url("/gone"), "eventTypes": ["*"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["endpointId"].as_str().expect("id").to_owned();
    let path = format!("/v1/endpoints/{id}");
    let before = created["createdAt"].as_str().expect("createdAt").to_owned();
    let event = publish(&app, "invoice.paid", None, json!({"n": 1})).await;
    assert_eq!(drain(&app).await.dead_lettered, 1);

    // Disabled by the 410: recover is refused until it is enabled.
    let since = json!({"since": before});
    let (status, refused) = app
        .send(
            reqwest::Method::POST,
            &format!("{path}/recover"),
            Some(since.clone()),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    let (status, _) = app
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"url": app.callback_url()})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .send(reqwest::Method::POST, &format!("{path}/enable"), None)
        .await;
    assert_eq!(status, 200);

    // Since after the event: nothing to redrive.
    app.advance(std::time::Duration::from_secs(1));
    let later = json!({"since": domain::Clock::now(&*app.clock).to_rfc3339()});
    let (status, none) = app
        .send(reqwest::Method::POST, &format!("{path}/recover"), Some(later))
        .await;
    assert_eq!((status, &none["redriven"]), (202, &json!(0)), "{none}");
    let (status, recovered) = app
        .send(
            reqwest::Method::POST,
            &format!("{path}/recover"),
            Some(since.clone()),
        )
        .await;
    assert_eq!(status, 202, "{recovered}");
    assert_eq!(recovered, json!({"redriven": 1, "more": false}));
    let report = drain(&app).await;
    assert_eq!(report.delivered, 1, "{report:?}");
    let delivery = app.mock.state.accepted_deliveries().remove(0);
    assert_eq!(
        delivery.headers["webhook-id"],
        event["eventId"].as_str().expect("id")
    );
    // Recovered once: again, nothing is failed.
    let (_, again) = app
        .send(reqwest::Method::POST, &format!("{path}/recover"), Some(since))
        .await;
    assert_eq!(again["redriven"], 0);
    let (status, bad) = app
        .send(
            reqwest::Method::POST,
            &format!("{path}/recover"),
            Some(json!({"since": "yesterday"})),
        )
        .await;
    assert_eq!(status, 422, "{bad}");
}

/// Registers `name` with `providers` (a thin event type); returns the answer.
async fn thin_event_type(app: &TestApp, name: &str, providers: &[&str]) -> Value {
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &format!("/v1/event-types/{name}"),
            Some(json!({"description": name, "providers": providers})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// Every accepted delivery, by its endpoint's `x-endpoint` mark.
fn accepted_by_endpoint(app: &TestApp) -> BTreeMap<String, Vec<providers_mock::Delivery>> {
    let mut by_endpoint: BTreeMap<String, Vec<providers_mock::Delivery>> = BTreeMap::new();
    for delivery in app.mock.state.accepted_deliveries() {
        by_endpoint
            .entry(delivery.headers["x-endpoint"].clone())
            .or_default()
            .push(delivery);
    }
    by_endpoint
}

/// The provider requests of a thin event's fetch: `eventId`, never `jobId`.
fn fetched_for_event(event_id: &str) -> providers_mock::ProviderRequest {
    providers_mock::ProviderRequest {
        job_id: None,
        event_id: Some(event_id.to_owned()),
    }
}

async fn a_thin_events_providers_are_fetched_once_and_every_endpoint_gets_their_results(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let created = thin_event_type(&app, "meter.read", &["gas", "internet"]).await;
    assert_eq!(created["providers"], json!(["gas", "internet"]));
    let (_, types) = app.send(reqwest::Method::GET, "/v1/event-types", None).await;
    assert_eq!(
        types["data"][0]["providers"],
        json!(["gas", "internet"]),
        "{types}"
    );
    let (_, a_secret) = endpoint(&app, "a", None, &["meter.read"]).await;
    let (_, b_secret) = endpoint(&app, "b", None, &["*"]).await;

    let event = publish(&app, "meter.read", None, json!({"meterId": "m-1"})).await;
    let id = event["eventId"].as_str().expect("id").to_owned();
    assert_eq!(event["deliveries"].as_array().expect("deliveries").len(), 2);
    let (_, shown) = app
        .send(reqwest::Method::GET, &format!("/v1/events/{id}"), None)
        .await;
    assert_eq!(shown["providers"], json!(["gas", "internet"]), "{shown}");
    for delivery in shown["deliveries"].as_array().expect("deliveries") {
        assert_eq!(delivery["status"], "pending", "fetching first: {shown}");
    }

    let report = drain(&app).await;
    assert_eq!((report.claimed, report.delivered), (2, 2), "{report:?}");
    let results = json!([
        {"provider": "gas", "status": "ok", "data": providers_mock::billing_data("gas", &id)},
        {"provider": "internet", "status": "ok", "data": providers_mock::billing_data("internet", &id)},
    ]);
    let by_endpoint = accepted_by_endpoint(&app);
    assert_eq!(by_endpoint.keys().collect::<Vec<_>>(), ["a", "b"]);
    for (mark, secret) in [("a", &a_secret), ("b", &b_secret)] {
        let [delivery] = by_endpoint[mark].as_slice() else {
            panic!("one delivery to {mark}: {by_endpoint:?}");
        };
        assert_eq!(delivery.headers["webhook-id"], id);
        testkit::verify_with_official_library(secret, delivery.headers.iter(), &delivery.raw_body)
            .unwrap_or_else(|e| panic!("{mark}: the official verifier refuses the signature: {e}"));
        assert_eq!(delivery.body["type"], "meter.read");
        assert_eq!(delivery.body["timestamp"], event["createdAt"]);
        assert_eq!(delivery.body["data"], json!({"meterId": "m-1"}));
        assert_eq!(delivery.body["results"], results, "{mark}");
    }
    for provider in ["gas", "internet"] {
        assert_eq!(
            app.mock.state.provider_requests(provider),
            [fetched_for_event(&id)],
            "{provider} fetched once, for the event"
        );
    }
    let (_, shown) = app
        .send(reqwest::Method::GET, &format!("/v1/events/{id}"), None)
        .await;
    for delivery in shown["deliveries"].as_array().expect("deliveries") {
        assert_eq!(delivery["status"], "complete", "{shown}");
    }
    assert_eq!(drain(&app).await.claimed, 0, "nothing left");

    // The jobs API still fetches with `jobId`.
    let job = app.accepted_job(&["gas"]).await;
    assert_eq!(drain(&app).await.delivered, 1);
    assert_eq!(
        app.mock.state.provider_requests("gas").last(),
        Some(&providers_mock::ProviderRequest {
            job_id: Some(job),
            event_id: None,
        })
    );
}

async fn a_thin_events_provider_retry_and_failure_are_shared_by_its_deliveries(backend: Backend) {
    let app = spawn_app_on(backend).await;
    thin_event_type(&app, "meter.read", &["gas", "internet"]).await;
    endpoint(&app, "a", None, &["meter.read"]).await;
    endpoint(&app, "b", None, &["meter.read"]).await;
    app.mock.state.fail_provider_next("gas", 1, 503);
    app.mock.state.fail_provider_next("internet", 1, 404);
    let event = publish(&app, "meter.read", None, json!({"meterId": "m-2"})).await;
    let id = event["eventId"].as_str().expect("id").to_owned();

    let first = drain(&app).await;
    assert_eq!(first.claimed, 2, "{first:?}");
    // Past the provider's first backoff (5 s +-20%): due again.
    app.advance(std::time::Duration::from_secs(7));
    let second = drain(&app).await;
    assert_eq!(first.delivered + second.delivered, 2, "{first:?} {second:?}");
    assert_eq!(drain(&app).await.claimed, 0, "nothing left");

    let by_endpoint = accepted_by_endpoint(&app);
    let results = json!([
        {"provider": "gas", "status": "ok", "data": providers_mock::billing_data("gas", &id)},
        {"provider": "internet", "status": "failed", "error": "HTTP 404"},
    ]);
    for mark in ["a", "b"] {
        let [delivery] = by_endpoint[mark].as_slice() else {
            panic!("one delivery to {mark}: {by_endpoint:?}");
        };
        assert_eq!(delivery.body["results"], results, "{mark}");
    }
    // One 503, then one 200 shared by both; the 404 settled at once.
    assert_eq!(
        app.mock.state.provider_requests("gas"),
        [fetched_for_event(&id), fetched_for_event(&id)]
    );
    assert_eq!(
        app.mock.state.provider_requests("internet"),
        [fetched_for_event(&id)]
    );
    let (_, shown) = app
        .send(reqwest::Method::GET, &format!("/v1/events/{id}"), None)
        .await;
    for delivery in shown["deliveries"].as_array().expect("deliveries") {
        assert_eq!(delivery["status"], "complete", "{shown}");
        let job = app
            .get_job(delivery["deliveryId"].as_str().expect("deliveryId"))
            .await;
        assert_eq!(job["providers"][0]["status"], "ok", "{job}");
        assert_eq!(job["providers"][1]["status"], "failed", "{job}");
    }
}

async fn a_thin_event_type_names_configured_providers_only(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let response = app
        .http
        .put(format!("{}/v1/event-types/meter.read", app.base))
        .json(&json!({"providers": ["gas", "water"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 422);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem["errors"][0]["field"], "providers[1]", "{problem}");
    let message = problem["errors"][0]["message"].as_str().expect("message");
    assert!(message.contains("water"), "{message}");
    let (_, types) = app.send(reqwest::Method::GET, "/v1/event-types", None).await;
    assert_eq!(types["data"], json!([]), "nothing was registered");

    // No providers (absent, null or empty) is a type whose events are given whole.
    for body in [json!({}), json!({"providers": null}), json!({"providers": []})] {
        let (status, created) = app
            .send(
                reqwest::Method::PUT,
                "/v1/event-types/invoice.paid",
                Some(body.clone()),
            )
            .await;
        assert!(status == 201 || status == 200, "{body}: {created}");
        assert_eq!(created["providers"], json!([]), "{body}: {created}");
    }
}
