//! Inbound sources (SPEC section 11) over real HTTP, on every store: each
//! kind of verification takes a request its provider signed (with the
//! provider's own signing package where there is one) and refuses a bad,
//! missing or stale one with nothing stored; a split body makes one event
//! per item, once per provider event id; the events reach the endpoints
//! subscribed to them; the challenge is echoed exactly; secrets are
//! write-only.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use domain::Clock as _;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, TestApp, client_with_key, create_key, on_every_store, spawn_app_on};

on_every_store!(
    a_github_source_takes_what_githubs_signer_signed_once_and_refuses_the_rest,
    a_stripe_source_takes_a_fresh_signature_and_refuses_a_stale_one,
    a_split_body_makes_one_event_per_item_and_the_same_body_again_makes_none,
    every_verification_type_accepts_a_good_request_and_refuses_a_bad_one,
    the_challenge_is_echoed_exactly_as_plain_text,
    sources_are_managed_with_write_only_secrets_and_tenant_scoped,
);

const GITHUB_SECRET: &str = "gh-webhook-secret-7f3a";

async fn event_types(app: &TestApp, names: &[&str]) {
    for name in names {
        let (status, body) = app
            .send(
                Method::PUT,
                &format!("/v1/event-types/{name}"),
                Some(json!({"description": name})),
            )
            .await;
        assert!(status == 201 || status == 200, "{status} {body}");
    }
}

async fn source(app: &TestApp, request: Value) -> (String, Value) {
    let (status, body) = app.send(Method::POST, "/v1/sources", Some(request)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["sourceId"].as_str().expect("sourceId").to_owned();
    assert_eq!(body["ingestUrl"], format!("/in/{id}"));
    (id, body)
}

/// Registers an endpoint at the sink for `types`; returns its secret.
async fn endpoint(app: &TestApp, types: &[&str]) -> String {
    let (status, body) = app
        .send(
            Method::POST,
            "/v1/endpoints",
            Some(json!({"url": app.callback_url(), "eventTypes": types})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["secret"].as_str().expect("secret").to_owned()
}

/// `POST /in/{id}` without an API key: the status and the body as JSON.
async fn ingest(app: &TestApp, id: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/in/{id}", app.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("ingest");
    // The request log is newest first by id, whose time is the clock's.
    app.advance(std::time::Duration::from_millis(1));
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn events(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.send(Method::GET, "/v1/events?limit=100", None).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("data").clone()
}

async fn requests(app: &TestApp, id: &str) -> Vec<Value> {
    let (status, body) = app
        .send(Method::GET, &format!("/v1/sources/{id}/requests"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("data").clone()
}

async fn a_github_source_takes_what_githubs_signer_signed_once_and_refuses_the_rest(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_types(&app, &["github.push"]).await;
    let endpoint_secret = endpoint(&app, &["github.push"]).await;
    let (id, _) = source(
        &app,
        json!({"name": "github", "eventType": "github.push",
               "verify": {"type": "github", "secret": GITHUB_SECRET}}),
    )
    .await;
    let body = r#"{"ref":"refs/heads/main","size":3,"ratio":1.50}"#;
    let signature = testkit::github_signature(GITHUB_SECRET, body);
    let wrong = testkit::github_signature("another-secret", body);

    // Refused, each with nothing stored.
    for (headers, why) in [
        (vec![], "is missing"),
        (vec![("x-hub-signature-256", wrong.as_str())], "does not match"),
        (vec![("x-hub-signature-256", "sha256=zz")], "sha256=<hex>"),
    ] {
        let (status, problem) = ingest(&app, &id, &headers, body).await;
        assert_eq!(status, 401, "{problem}");
        assert!(
            problem["detail"].as_str().expect("detail").contains(why),
            "{problem}"
        );
    }
    let tampered = body.replace("main", "evil");
    let (status, _) = ingest(&app, &id, &[("x-hub-signature-256", &signature)], &tampered).await;
    assert_eq!(status, 401);
    assert!(events(&app).await.is_empty(), "a refused request stores no event");

    let headers = [
        ("x-hub-signature-256", signature.as_str()),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ];
    let (status, accepted) = ingest(&app, &id, &headers, body).await;
    assert_eq!(status, 200, "{accepted}");
    let [event_id] = accepted["eventIds"].as_array().expect("ids").as_slice() else {
        panic!("one event: {accepted}");
    };
    assert_eq!(accepted["duplicates"], 0);
    // GitHub retries the same delivery: ingested once.
    let (status, again) = ingest(&app, &id, &headers, body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["eventIds"], json!([event_id]));
    assert_eq!(again["duplicates"], 1);
    assert_eq!(events(&app).await.len(), 1);

    let report = app.processor("p1").drain(&CancellationToken::new()).await;
    assert_eq!(report.delivered, 1, "{report:?}");
    let [delivery]: [providers_mock::Delivery; 1] = app
        .mock
        .state
        .accepted_deliveries()
        .try_into()
        .expect("one delivery");
    testkit::verify_with_official_library(&endpoint_secret, delivery.headers.iter(), &delivery.raw_body)
        .expect("the endpoint's delivery verifies with its own secret");
    assert_eq!(delivery.headers["webhook-id"], event_id.as_str().expect("id"));
    assert_eq!(delivery.body["type"], "github.push");
    // The provider's bytes, numbers and all.
    assert!(
        String::from_utf8_lossy(&delivery.raw_body)
            .contains(r#""data":{"ref":"refs/heads/main","size":3,"ratio":1.50}"#),
        "{}",
        String::from_utf8_lossy(&delivery.raw_body)
    );

    // The request log: newest first, verdicts, no signature or secret.
    let log = requests(&app, &id).await;
    assert_eq!(log.len(), 6, "{log:?}");
    assert_eq!(log[0]["verdict"], "accepted");
    assert_eq!(log[0]["duplicates"], 1);
    assert_eq!(log[1]["eventIds"], json!([event_id]));
    assert_eq!(log[5]["verdict"], "rejected");
    assert_eq!(log[5]["status"], 401);
    assert!(
        log[5]["reason"].as_str().expect("reason").contains("missing"),
        "{log:?}"
    );
    let shown = serde_json::to_string(&log).expect("json");
    for secret in [GITHUB_SECRET, signature.as_str(), wrong.as_str()] {
        assert!(!shown.contains(secret.trim_start_matches("sha256=")), "{shown}");
    }
}

async fn a_stripe_source_takes_a_fresh_signature_and_refuses_a_stale_one(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_types(&app, &["stripe.event", "invoice.paid"]).await;
    let secret = "whsec_stripe_test_0123456789";
    let (id, _) = source(
        &app,
        json!({"name": "stripe", "verify": {"type": "stripe", "secret": secret},
               "eventType": "stripe.event", "split": {"id": "/id", "type": "/type"}}),
    )
    .await;
    let body = r#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"invoice.paid","data":{"object":{"amount_paid":2000}}}"#;
    let now = app.clock.now().timestamp();
    let stale = testkit::stripe_signature_header(secret, body, now - 301);
    let (status, problem) = ingest(&app, &id, &[("stripe-signature", &stale)], body).await;
    assert_eq!(status, 401, "{problem}");
    assert!(
        problem["detail"].as_str().expect("detail").contains("300 s"),
        "{problem}"
    );
    let other = testkit::stripe_signature_header("whsec_other", body, now);
    assert_eq!(ingest(&app, &id, &[], body).await.0, 401, "no signature");
    assert_eq!(
        ingest(&app, &id, &[("stripe-signature", &other)], body).await.0,
        401
    );
    assert!(events(&app).await.is_empty());

    let fresh = testkit::stripe_signature_header(secret, body, now - 30);
    let (status, accepted) = ingest(&app, &id, &[("stripe-signature", &fresh)], body).await;
    assert_eq!(status, 200, "{accepted}");
    let listed = events(&app).await;
    assert_eq!(listed.len(), 1);
    // The type is the item's own.
    assert_eq!(listed[0]["type"], "invoice.paid");
    // Stripe retries the event (a new signature, the same id): once.
    let resigned = testkit::stripe_signature_header(secret, body, now);
    let (status, again) = ingest(&app, &id, &[("stripe-signature", &resigned)], body).await;
    assert_eq!((status, again["duplicates"].clone()), (200, json!(1)), "{again}");
    assert_eq!(events(&app).await.len(), 1);
}

async fn a_split_body_makes_one_event_per_item_and_the_same_body_again_makes_none(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_types(&app, &["message.created", "nylas.delta"]).await;
    endpoint(&app, &["message.created", "nylas.delta"]).await;
    let secret = "nylas-client-secret";
    let (id, _) = source(
        &app,
        json!({"name": "nylas", "eventType": "nylas.delta", "owner": "company-42",
               "verify": {"type": "hmac", "header": "X-Nylas-Signature", "algorithm": "sha256",
                          "encoding": "hex", "secret": secret},
               "challenge": {"queryParam": "challenge"},
               "split": {"items": "/deltas", "id": "/object_data/id", "type": "/type"}}),
    )
    .await;
    let items: Vec<Value> = (0..3)
        .map(|i| {
            json!({"type": if i == 2 { "message.deleted" } else { "message.created" },
                        "object_data": {"id": format!("msg_{i}")}})
        })
        .collect();
    let body = json!({"deltas": items}).to_string();
    let signature = hmac_hex(secret, &body);
    let (status, accepted) = ingest(&app, &id, &[("x-nylas-signature", &signature)], &body).await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["eventIds"].as_array().expect("ids").len(), 3);
    assert_eq!(accepted["duplicates"], 0);

    let listed = events(&app).await;
    assert_eq!(listed.len(), 3);
    let mut types: Vec<&str> = listed.iter().map(|e| e["type"].as_str().expect("type")).collect();
    types.sort_unstable();
    // An item whose type is not registered takes the source's.
    assert_eq!(types, ["message.created", "message.created", "nylas.delta"]);
    assert!(listed.iter().all(|e| e["owner"] == "company-42"), "{listed:?}");

    // The provider sends it again: nothing new.
    let (status, again) = ingest(&app, &id, &[("x-nylas-signature", &signature)], &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicates"], 3);
    let mut first: Vec<&Value> = accepted["eventIds"].as_array().expect("ids").iter().collect();
    let mut second: Vec<&Value> = again["eventIds"].as_array().expect("ids").iter().collect();
    first.sort_by_key(|v| v.as_str());
    second.sort_by_key(|v| v.as_str());
    assert_eq!(first, second);
    assert_eq!(events(&app).await.len(), 3);

    // Events with an owner go to that owner's endpoints only, and an
    // event reaches the endpoints registered when it was accepted.
    let report = app.processor("p1").drain(&CancellationToken::new()).await;
    assert_eq!(
        report.delivered, 0,
        "an event with an owner goes to that owner's endpoints only: {report:?}"
    );
    let (status, body) = app
        .send(
            Method::POST,
            "/v1/endpoints",
            Some(json!({"url": app.callback_url(), "eventTypes": ["*"], "owner": "company-42"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let more = json!({"deltas": [{"type": "message.created", "object_data": {"id": "msg_9"}}]}).to_string();
    let (status, _) = ingest(
        &app,
        &id,
        &[("x-nylas-signature", &hmac_hex(secret, &more))],
        &more,
    )
    .await;
    assert_eq!(status, 200);
    let report = app.processor("p1").drain(&CancellationToken::new()).await;
    assert_eq!(report.delivered, 1, "{report:?}");

    // A verified body that does not split: 422, nothing stored.
    let flat = r#"{"deltas":{"not":"an array"}}"#;
    let (status, problem) = ingest(&app, &id, &[("x-nylas-signature", &hmac_hex(secret, flat))], flat).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(events(&app).await.len(), 4);
}

fn hmac_hex(secret: &str, body: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn every_verification_type_accepts_a_good_request_and_refuses_a_bad_one(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_types(&app, &["ping"]).await;
    let body = r#"{"id":"1","kind":"ping"}"#;
    let now = app.clock.now().timestamp();

    let whsec = domain::SigningSecret::generate(&mut rand::rng());
    let signed = domain::signing::sign(&whsec, "msg_1", now, body.as_bytes());
    let now_text = now.to_string();
    let shopify = {
        use hmac::{KeyInit, Mac};
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"shpss").expect("any key");
        mac.update(body.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    };
    let hmac_good = format!("sha256={}", hmac_hex("nylas-secret", body));
    let hmac_bad = format!("sha256={}", hmac_hex("other-secret", body));
    let basic = format!("Basic {}", STANDARD.encode("hooks:s3cret"));
    let wrong_basic = format!("Basic {}", STANDARD.encode("hooks:guess"));
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Value, Headers, Headers)> = vec![
        (
            json!({"type": "standardWebhooks", "secret": whsec.expose_secret()}),
            vec![
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &now_text),
                ("webhook-signature", &signed),
            ],
            vec![
                ("webhook-id", "msg_2"),
                ("webhook-timestamp", &now_text),
                ("webhook-signature", &signed),
            ],
        ),
        (
            json!({"type": "hmac", "header": "x-signature", "algorithm": "sha256", "encoding": "hex",
                   "prefix": "sha256=", "secret": "nylas-secret"}),
            vec![("x-signature", &hmac_good)],
            vec![("x-signature", &hmac_bad)],
        ),
        (
            json!({"type": "shopify", "secret": "shpss"}),
            vec![("x-shopify-hmac-sha256", &shopify)],
            vec![("x-shopify-hmac-sha256", "AAAA")],
        ),
        (
            json!({"type": "basic", "username": "hooks", "password": "s3cret"}),
            vec![("authorization", &basic)],
            vec![("authorization", &wrong_basic)],
        ),
        (
            json!({"type": "header", "name": "x-webhook-token", "value": "tok_123"}),
            vec![("x-webhook-token", "tok_123")],
            vec![("x-webhook-token", "tok_124")],
        ),
    ];
    let mut made = 0;
    for (verify, good, bad) in cases {
        let kind = verify["type"].clone();
        let (id, _) = source(&app, json!({"name": "s", "eventType": "ping", "verify": verify})).await;
        for headers in [bad, vec![]] {
            let (status, problem) = ingest(&app, &id, &headers, body).await;
            assert_eq!(status, 401, "{kind}: {problem}");
            assert_eq!(events(&app).await.len(), made, "{kind}: nothing stored");
        }
        let (status, accepted) = ingest(&app, &id, &good, body).await;
        assert_eq!(status, 200, "{kind}: {accepted}");
        made += 1;
        assert_eq!(events(&app).await.len(), made, "{kind}");
    }
}

async fn the_challenge_is_echoed_exactly_as_plain_text(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_types(&app, &["nylas.delta", "x"]).await;
    let (id, _) = source(
        &app,
        json!({"name": "nylas", "eventType": "nylas.delta", "challenge": {"queryParam": "challenge"},
               "verify": {"type": "header", "name": "x-token", "value": "t"}}),
    )
    .await;
    let given = r#"abc "quoted" ünï/+="#;
    let url =
        url::Url::parse_with_params(&format!("{}/in/{id}", app.base), &[("challenge", given)]).expect("url");
    let response = reqwest::get(url).await.expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().expect("ascii"),
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        response.text().await.expect("body"),
        given,
        "exactly, without quotes"
    );
    let response = reqwest::get(format!("{}/in/{id}", app.base)).await.expect("get");
    assert_eq!(response.status(), 400);
    let (no_challenge, _) = source(
        &app,
        json!({"name": "x", "eventType": "x", "verify": {"type": "header", "name": "x-token", "value": "t"}}),
    )
    .await;
    let response = reqwest::get(format!("{}/in/{no_challenge}?challenge=1", app.base))
        .await
        .expect("get");
    assert_eq!(response.status(), 404);
    let response = reqwest::get(format!("{}/in/01J00000000000000000000000?challenge=1", app.base))
        .await
        .expect("get");
    assert_eq!(response.status(), 404);
}

async fn sources_are_managed_with_write_only_secrets_and_tenant_scoped(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (status, problem) = app
        .send(
            Method::POST,
            "/v1/sources",
            Some(json!({"name": "s", "eventType": "not.registered", "verify": {"type": "github", "secret": "s"}})),
        )
        .await;
    assert_eq!(status, 422, "an unregistered event type: {problem}");
    assert_eq!(problem["errors"][0]["field"], "eventType", "{problem}");
    event_types(&app, &["x", "github.push"]).await;
    // A source without verification takes anyone's requests: refused.
    let (status, problem) = app
        .send(
            Method::POST,
            "/v1/sources",
            Some(json!({"name": "open", "eventType": "x"})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "verify", "{problem}");
    for (bad, field) in [
        (
            json!({"type": "hmac", "header": "x", "algorithm": "md5", "encoding": "hex", "secret": "s"}),
            "verify",
        ),
        (json!({"type": "none"}), "verify"),
        (
            json!({"type": "standardWebhooks", "secret": "not-whsec"}),
            "verify",
        ),
    ] {
        let (status, problem) = app
            .send(
                Method::POST,
                "/v1/sources",
                Some(json!({"name": "s", "eventType": "x", "verify": bad})),
            )
            .await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let (status, problem) = app
        .send(
            Method::POST,
            "/v1/sources",
            Some(json!({"name": "s", "verify": {"type": "github", "secret": "s"}})),
        )
        .await;
    assert_eq!(status, 422, "no type for its events: {problem}");
    let (status, problem) = app
        .send(
            Method::POST,
            "/v1/sources",
            Some(
                json!({"name": "s", "eventType": "x", "split": {"items": "deltas"},
                        "verify": {"type": "github", "secret": "s"}}),
            ),
        )
        .await;
    assert_eq!(status, 422, "not a JSON pointer: {problem}");

    let (id, created) = source(
        &app,
        json!({"name": "gh", "eventType": "github.push", "verify": {"type": "github", "secret": GITHUB_SECRET}}),
    )
    .await;
    assert_eq!(created["verify"], json!({"type": "github", "secret": "***"}));
    let (status, shown) = app.send(Method::GET, &format!("/v1/sources/{id}"), None).await;
    assert_eq!(status, 200);
    assert!(!shown.to_string().contains(GITHUB_SECRET), "{shown}");

    // An edited read sent back keeps the secret.
    let (status, patched) = app
        .send(
            Method::PATCH,
            &format!("/v1/sources/{id}"),
            Some(json!({"name": "github", "verify": shown["verify"]})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["name"], "github");
    let body = "{}";
    let signature = testkit::github_signature(GITHUB_SECRET, body);
    assert_eq!(
        ingest(&app, &id, &[("x-hub-signature-256", &signature)], body)
            .await
            .0,
        200
    );
    // `***` for a type with no stored secret of its kind.
    let (status, problem) = app
        .send(
            Method::PATCH,
            &format!("/v1/sources/{id}"),
            Some(json!({"verify": {"type": "shopify", "secret": "***"}})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");

    // Another tenant sees nothing of it.
    let other = client_with_key(&create_key(app.store.as_ref(), "other").await);
    for path in [format!("/v1/sources/{id}"), format!("/v1/sources/{id}/requests")] {
        let response = other
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 404, "{path}");
    }
    let response = other
        .delete(format!("{}/v1/sources/{id}", app.base))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 404);
    let listed = other
        .get(format!("{}/v1/sources", app.base))
        .send()
        .await
        .expect("list");
    assert_eq!(listed.json::<Value>().await.expect("json")["data"], json!([]));

    let (status, listed) = app.send(Method::GET, "/v1/sources", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"].as_array().expect("data").len(), 1);
    // Without a key, the management routes are closed.
    let response = reqwest::get(format!("{}/v1/sources", app.base))
        .await
        .expect("get");
    assert_eq!(response.status(), 401);

    let (status, _) = app.send(Method::DELETE, &format!("/v1/sources/{id}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(
        ingest(&app, &id, &[("x-hub-signature-256", &signature)], body)
            .await
            .0,
        404
    );
}
