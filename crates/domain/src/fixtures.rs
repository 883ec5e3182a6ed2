//! The golden stored jobs: one job per case, built through the lifecycle
//! at fixed times, and the directory holding each stored-format version's
//! record of it (`fixtures/jobs/v{N}/{case}.json`). [`crate::record`]'s
//! tests hold the writer to the newest version's files and every reader to
//! its own; each store's tests read every file through the store. Test
//! support only (feature `fixtures`): it panics on a broken fixture.

use std::path::PathBuf;
use std::time::Duration;

use rand::SeedableRng;
use url::Url;

use crate::{
    CallbackOutcome, DeliveryRef, EndpointId, Event, EventId, EventType, EventTypeDef, FetchOutcome, Jitter,
    Job, JobId, Metadata, NewJob, Owner, Payload, RawJson, RetryPolicy, Target, TenantId, Timestamp, Tried,
};

/// `fixtures/jobs` in this crate.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("jobs")
}

/// The stored record of `case` in format `version`, if that version has it
/// (version 1 holds no events, version 2 no registered endpoints).
pub fn record(version: u64, case: &str) -> Option<String> {
    let path = dir().join(format!("v{version}")).join(format!("{case}.json"));
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim_end().to_owned())
}

/// Every case, by name, with the job it stores.
pub fn cases() -> Vec<(&'static str, Job)> {
    vec![
        ("pending-retrying", pending_retrying()),
        ("delivering-retrying", delivering_retrying()),
        ("complete", complete()),
        ("failed-gone", failed_gone()),
        ("redriven", redriven()),
        ("event-given", event_given()),
        ("event-thin", event_thin()),
        ("endpoint-delivered", endpoint_delivered()),
        ("endpoint-abandoned", endpoint_abandoned()),
        ("endpoint-answered", endpoint_answered()),
    ]
}

fn at(text: &str) -> Timestamp {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .expect("a fixed time")
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        jitter: Jitter::None,
        ..RetryPolicy::default()
    }
}

fn rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(7)
}

fn tried(at: Timestamp, ms: u64, body: Option<&str>) -> Tried {
    Tried {
        at,
        took: Some(Duration::from_millis(ms)),
        body: body.map(str::to_owned),
        headers: Default::default(),
    }
}

/// Each case's own job id, so a store holds every case of a version at once.
fn id(case: char) -> JobId {
    format!("01JD3X5Q8Z6WJ8M6E4V8K2R9T{case}")
        .parse()
        .expect("a fixed ULID")
}

fn callback_job(case: char, providers: &[&str], metadata: Option<&str>, now: Timestamp) -> Job {
    Job::new(
        NewJob {
            id: id(case),
            tenant: TenantId::new("acme"),
            target: Target::Callback(
                Url::parse("https://client.example/hooks/complete?team=billing").expect("a fixed URL"),
            ),
            payload: Payload::Results {
                metadata: metadata.map(|m| Metadata::from_json(m).expect("fixed metadata")),
            },
            providers: providers.iter().map(|p| (*p).to_owned()).collect(),
        },
        now,
    )
}

fn pending_retrying() -> Job {
    pending_retrying_as('A')
}

fn pending_retrying_as(case: char) -> Job {
    let (t0, t1) = (at("2026-11-20T10:00:00.000Z"), at("2026-11-20T10:00:05.250Z"));
    let mut rng = rng();
    let mut job = callback_job(
        case,
        &["gas", "internet"],
        Some(r#"{"orderId":"A-17","tags":["x","é"]}"#),
        t0,
    );
    let data = serde_json::json!([{"billedOn": "2026-11-01", "amount": 22.27}]);
    job.record_fetch(
        "gas",
        FetchOutcome::Ok { status: 200, data },
        tried(t1, 120, None),
        t1,
        &policy(),
        &mut rng,
    );
    let busy = FetchOutcome::Retryable {
        status: Some(503),
        error: "HTTP 503".into(),
        retry_after: Some(Duration::from_secs(30)),
    };
    job.record_fetch(
        "internet",
        busy,
        tried(t1, 3001, Some("upstream busy")),
        t1,
        &policy(),
        &mut rng,
    );
    job
}

fn delivering_retrying() -> Job {
    let mut job = pending_retrying_as('B');
    let mut rng = rng();
    let t2 = at("2026-11-20T10:00:40.000Z");
    let missing = FetchOutcome::Permanent {
        status: Some(404),
        error: "HTTP 404".into(),
    };
    let answer = Some("{\"error\":\"no such account\"}");
    job.record_fetch(
        "internet",
        missing,
        tried(t2, 80, answer),
        t2,
        &policy(),
        &mut rng,
    );
    let failed = CallbackOutcome::Retryable {
        status: Some(500),
        error: "HTTP 500".into(),
        retry_after: None,
    };
    job.record_delivery(failed, tried(t2, 250, Some("oops")), t2, &policy(), &mut rng);
    job
}

fn complete() -> Job {
    let (t0, t1) = (at("2026-11-20T11:00:00.000Z"), at("2026-11-20T11:00:01.500Z"));
    let mut rng = rng();
    let mut job = callback_job('C', &["gas"], Some(r#"{"orderId":"B-2"}"#), t0);
    let data = serde_json::json!({"amount": 10});
    job.record_fetch(
        "gas",
        FetchOutcome::Ok { status: 200, data },
        tried(t1, 95, None),
        t1,
        &policy(),
        &mut rng,
    );
    job.record_delivery(
        CallbackOutcome::Delivered { status: 204 },
        tried(t1, 40, None),
        t1,
        &policy(),
        &mut rng,
    );
    job
}

fn failed_gone() -> Job {
    failed_gone_as('D')
}

fn failed_gone_as(case: char) -> Job {
    let t0 = at("2026-11-20T12:00:00.000Z");
    let mut job = callback_job(case, &[], None, t0);
    job.record_delivery(
        CallbackOutcome::Gone,
        tried(t0, 30, None),
        t0,
        &policy(),
        &mut rng(),
    );
    job
}

fn redriven() -> Job {
    let mut job = failed_gone_as('E');
    job.redrive(at("2026-11-21T08:30:00.000Z"));
    job
}

fn event_job(case: char, event_type: &str, data: &str, providers: &[&str], now: Timestamp) -> Job {
    Job::new(
        NewJob {
            id: id(case),
            tenant: TenantId::new("acme"),
            target: Target::Callback(Url::parse("https://client.example/hooks/events").expect("a fixed URL")),
            payload: Payload::Event {
                event_type: EventType::parse(event_type).expect("a fixed type"),
                data: RawJson::from_json(data).expect("fixed data"),
            },
            providers: providers.iter().map(|p| (*p).to_owned()).collect(),
        },
        now,
    )
}

/// An event's delivery: a payload given whole, no providers, retried once.
fn event_given() -> Job {
    let t0 = at("2026-11-22T09:00:00.000Z");
    let mut job = event_job(
        'F',
        "invoice.paid",
        r#"{"invoiceId":"in_1","amount":1200.50}"#,
        &[],
        t0,
    );
    let refused = CallbackOutcome::Retryable {
        status: None,
        error: "connection refused".into(),
        retry_after: None,
    };
    job.record_delivery(refused, tried(t0, 3, None), t0, &policy(), &mut rng());
    job
}

/// A thin event: its data fetched from a provider before delivery.
fn event_thin() -> Job {
    let (t0, t1) = (at("2026-11-22T09:30:00.000Z"), at("2026-11-22T09:30:00.400Z"));
    let mut rng = rng();
    let mut job = event_job('G', "meter.read", "[1,2,3]", &["gas"], t0);
    let data = serde_json::json!({"reading": 4711});
    job.record_fetch(
        "gas",
        FetchOutcome::Ok { status: 200, data },
        tried(t1, 60, None),
        t1,
        &policy(),
        &mut rng,
    );
    job
}

/// A delivery of a published event to a registered endpoint, as its
/// event's fan-out makes it: delivered on the second attempt.
fn endpoint_delivered() -> Job {
    let t0 = at("2026-11-30T12:00:00.000Z");
    let mut job = endpoint_delivery('1', t0);
    let refused = CallbackOutcome::Retryable {
        status: Some(503),
        error: "HTTP 503 Service Unavailable".into(),
        retry_after: None,
    };
    job.record_delivery(refused, tried(t0, 12, Some("busy")), t0, &policy(), &mut rng());
    let t1 = at("2026-11-30T12:00:05.000Z");
    job.record_delivery(
        CallbackOutcome::Delivered { status: 200 },
        tried(t1, 8, None),
        t1,
        &policy(),
        &mut rng(),
    );
    job
}

/// A delivery whose answers are kept whole (record version 4): a 401
/// asking for auth, then a 200 with a body and a request id.
fn endpoint_answered() -> Job {
    let t0 = at("2026-12-01T09:00:00.000Z");
    let mut job = endpoint_delivery('3', t0);
    let mut refused = tried(t0, 15, Some("{\"error\":\"invalid_token\"}"));
    refused.headers = [
        ("content-type".to_owned(), "application/json".to_owned()),
        (
            "www-authenticate".to_owned(),
            "Bearer error=\"invalid_token\"".to_owned(),
        ),
    ]
    .into_iter()
    .collect();
    let unauthorized = CallbackOutcome::Retryable {
        status: Some(401),
        error: "HTTP 401".into(),
        retry_after: None,
    };
    job.record_delivery(unauthorized, refused, t0, &policy(), &mut rng());
    let t1 = at("2026-12-01T09:00:05.000Z");
    let mut answered = tried(t1, 31, Some("{\"received\":true}"));
    answered.headers = [
        ("content-type".to_owned(), "application/json".to_owned()),
        ("x-request-id".to_owned(), "req-42".to_owned()),
    ]
    .into_iter()
    .collect();
    job.record_delivery(
        CallbackOutcome::Delivered { status: 200 },
        answered,
        t1,
        &policy(),
        &mut rng(),
    );
    job
}

/// A delivery whose endpoint was disabled before it was made.
fn endpoint_abandoned() -> Job {
    let t0 = at("2026-11-30T13:00:00.000Z");
    let mut job = endpoint_delivery('2', t0);
    let abandoned = CallbackOutcome::Abandoned {
        reason: "endpointDisabled".into(),
    };
    job.record_delivery(abandoned, tried(t0, 0, None), t0, &policy(), &mut rng());
    job
}

fn endpoint_delivery(case: char, now: Timestamp) -> Job {
    let event: EventId = format!("01JDEVENT0000000000000000{case}")
        .parse()
        .expect("a fixed event id");
    let endpoint: EndpointId = "01JDENDP0NT000000000000000".parse().expect("a fixed endpoint id");
    Job::new(
        NewJob {
            // Stored by the release before receiver tags.
            id: JobId::for_delivery_untagged(event, endpoint),
            tenant: TenantId::new("acme"),
            target: Target::Endpoint(endpoint),
            payload: Payload::OfEvent(event),
            providers: Vec::new(),
        },
        now,
    )
}

/// The stored record of `case` of `kind` (`"events"`, `"event-types"`) in
/// format `version`, if that version has it (version 1 holds no thin
/// events or types with providers).
pub fn record_of(kind: &str, version: u64, case: &str) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(kind)
        .join(format!("v{version}"))
        .join(format!("{case}.json"));
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim_end().to_owned())
}

/// `fixtures/{kind}`.
pub fn dir_of(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(kind)
}

fn endpoint_id(case: char) -> EndpointId {
    format!("01JDENDP0NT00000000000000{case}")
        .parse()
        .expect("a fixed endpoint id")
}

fn event(
    case: char,
    event_type: &str,
    owner: Option<&str>,
    endpoints: &[char],
    providers: &[&str],
    now: Timestamp,
) -> Event {
    let id: EventId = format!("01JDEVENT0000000000000000{case}")
        .parse()
        .expect("a fixed event id");
    Event {
        id,
        tenant: TenantId::new("acme"),
        event_type: EventType::parse(event_type).expect("a fixed type"),
        owner: owner.map(|o| Owner::parse(o).expect("a fixed owner")),
        payload: crate::EventPayload::Inline(
            RawJson::from_json(r#"{"invoiceId":"in_1","amount":1200.50}"#).expect("fixed data"),
        ),
        created_at: now,
        deliveries: endpoints
            .iter()
            .map(|e| DeliveryRef {
                id: JobId::for_delivery(id, endpoint_id(*e)),
                endpoint: endpoint_id(*e),
            })
            .collect(),
        providers: providers.iter().map(|p| (*p).to_owned()).collect(),
        settled: std::collections::BTreeMap::new(),
    }
}

/// Every stored event case, by name.
pub fn event_cases() -> Vec<(&'static str, Event)> {
    vec![
        (
            "fan-out",
            event(
                'A',
                "invoice.paid",
                Some("company-42"),
                &['1', '2'],
                &[],
                at("2026-11-30T12:00:00.000Z"),
            ),
        ),
        (
            "unowned",
            event(
                'B',
                "invoice.voided",
                None,
                &[],
                &[],
                at("2026-11-30T12:30:00.000Z"),
            ),
        ),
        (
            "thin",
            event(
                'C',
                "meter.read",
                Some("company-42"),
                &['1', '3'],
                &["gas", "internet"],
                at("2026-12-01T10:00:00.000Z"),
            ),
        ),
        ("blob", {
            // A payload kept as a blob (record version 3): the record holds
            // its reference, the bytes are the blob store's.
            let mut event = event(
                'D',
                "report.ready",
                Some("company-42"),
                &['1', '2'],
                &[],
                at("2026-12-02T09:00:00.000Z"),
            );
            event.payload = crate::EventPayload::Blob(crate::BlobRef::new([0xab; 32], 1_048_576));
            event
        }),
    ]
}

/// The stored event cases as a record of `version` reads: version 1 was
/// written before receiver tags, so its deliveries keep untagged ids.
pub fn event_cases_as_of(version: u64) -> Vec<(&'static str, Event)> {
    let mut cases = event_cases();
    if version == 1 {
        for (_, event) in &mut cases {
            for delivery in &mut event.deliveries {
                delivery.id = JobId::for_delivery_untagged(event.id, delivery.endpoint);
            }
        }
    }
    cases
}

/// Every stored event type case, by name.
pub fn event_type_cases() -> Vec<(&'static str, EventTypeDef)> {
    vec![
        (
            "described",
            EventTypeDef {
                tenant: TenantId::new("acme"),
                name: EventType::parse("invoice.paid").expect("a fixed type"),
                description: "An invoice was paid".to_owned(),
                providers: Vec::new(),
                created_at: at("2026-11-29T08:00:00.000Z"),
                updated_at: at("2026-11-30T09:15:00.000Z"),
            },
        ),
        (
            "thin",
            EventTypeDef {
                tenant: TenantId::new("acme"),
                name: EventType::parse("meter.read").expect("a fixed type"),
                description: "A meter was read; its data comes from the providers".to_owned(),
                providers: vec!["gas".to_owned(), "internet".to_owned()],
                created_at: at("2026-12-01T08:00:00.000Z"),
                updated_at: at("2026-12-01T08:00:00.000Z"),
            },
        ),
    ]
}

/// A fixed signing secret (`whsec_` and 32 bytes of `case`).
fn secret(case: u8) -> crate::SigningSecret {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode([case; 32]);
    format!("whsec_{key}").parse().expect("a fixed secret")
}

fn endpoint(case: char, now: Timestamp) -> crate::Endpoint {
    crate::Endpoint {
        id: endpoint_id(case),
        tenant: TenantId::new("acme"),
        url: Url::parse("https://client.example/hooks").expect("a fixed url"),
        description: String::new(),
        owner: None,
        event_types: crate::Subscription::All,
        headers: crate::EndpointHeaders::default(),
        auth: None,
        timeout: None,
        status: crate::EndpointStatus::Enabled,
        secrets: crate::TenantSecrets::new(secret(case as u8)),
        failing_since: None,
        created_at: now,
        updated_at: now,
    }
}

/// The golden endpoints, one per case (`fixtures/endpoints/v{N}/{case}.json`).
pub fn endpoint_cases() -> Vec<(&'static str, crate::Endpoint)> {
    let subscribed = {
        let mut e = endpoint('A', at("2026-11-29T08:00:00.000Z"));
        e.description = "billing".to_owned();
        e.owner = Some(Owner::parse("company-42").expect("a fixed owner"));
        e.event_types = crate::Subscription::Only(
            ["invoice.paid", "invoice.voided"]
                .iter()
                .map(|t| EventType::parse(t).expect("a fixed type"))
                .collect(),
        );
        e.headers = crate::EndpointHeaders::parse(
            [("x-team".to_owned(), "billing".to_owned())]
                .into_iter()
                .collect(),
        )
        .expect("fixed headers");
        e
    };
    let rotated_failing = {
        let mut e = endpoint('B', at("2026-11-29T08:00:00.000Z"));
        e.secrets = e.secrets.rotated(
            secret(b'C'),
            at("2026-11-30T10:00:00.000Z"),
            Duration::from_secs(86_400),
        );
        e.failing_since = Some(at("2026-11-30T11:00:00.000Z"));
        e.updated_at = at("2026-11-30T11:00:00.000Z");
        e
    };
    let disabled = {
        let mut e = endpoint('D', at("2026-11-29T08:00:00.000Z"));
        e.disable(crate::DisabledReason::Gone, at("2026-11-30T12:00:00.000Z"));
        e
    };
    let basic = {
        let mut e = endpoint('E', at("2026-12-01T08:00:00.000Z"));
        e.auth = Some(crate::EndpointAuth::Basic {
            username: "hookline".to_owned(),
            password: crate::Credential::new("basic-password"),
        });
        e.timeout = Some(Duration::from_secs(120));
        e
    };
    let bearer = {
        let mut e = endpoint('F', at("2026-12-01T08:00:00.000Z"));
        e.auth = Some(crate::EndpointAuth::Bearer {
            token: crate::Credential::new("bearer-token"),
        });
        e
    };
    let header = {
        let mut e = endpoint('G', at("2026-12-01T08:00:00.000Z"));
        e.auth = Some(crate::EndpointAuth::Header {
            name: "x-api-key".to_owned(),
            value: crate::Credential::new("header-value"),
        });
        e.timeout = Some(Duration::from_millis(1500));
        e
    };
    let oauth2 = {
        let mut e = endpoint('H', at("2026-12-01T08:00:00.000Z"));
        e.auth = Some(crate::EndpointAuth::OAuth2(crate::OAuth2Grant {
            token_url: Url::parse("https://auth.example/oauth/token").expect("a fixed url"),
            client_id: "hookline-client".to_owned(),
            client_secret: crate::Credential::new("client-secret"),
            scope: Some("webhooks:write".to_owned()),
            audience: Some("https://client.example".to_owned()),
        }));
        e.timeout = Some(Duration::from_secs(900));
        e
    };
    vec![
        ("subscribed", subscribed),
        ("rotated_failing", rotated_failing),
        ("disabled_gone", disabled),
        ("auth_basic_timeout", basic),
        ("auth_bearer", bearer),
        ("auth_header", header),
        ("auth_oauth2", oauth2),
    ]
}

/// An inbound source's id from a fixed seed.
fn source_id(seed: u64, created: Timestamp) -> crate::SourceId {
    crate::SourceId::generate(created, &mut rand::rngs::StdRng::seed_from_u64(seed))
}

/// The golden inbound sources, one per kind of verification and a split.
pub fn source_cases() -> Vec<(&'static str, crate::Source)> {
    use crate::{Challenge, Encoding, HmacAlgorithm, Pointer, Source, Split, Verify};
    let created = at("2026-12-01T08:00:00.000Z");
    let source = |seed: u64, verify: Verify| Source {
        id: source_id(seed, created),
        tenant: TenantId::new("acme"),
        name: "provider".to_owned(),
        event_type: Some(EventType::parse("provider.event").expect("a fixed type")),
        owner: None,
        verify,
        challenge: None,
        split: Split::default(),
        created_at: created,
        updated_at: created,
    };
    let nylas = {
        let mut s = source(
            1,
            Verify::hmac(
                "x-nylas-signature",
                HmacAlgorithm::Sha256,
                Encoding::Hex,
                Some("sha256="),
                "nylas-secret",
            )
            .expect("fixed"),
        );
        s.name = "nylas".to_owned();
        s.owner = Some(Owner::parse("company-42").expect("a fixed owner"));
        s.challenge = Some(Challenge {
            query_param: "challenge".to_owned(),
        });
        s.split = Split {
            items: Some(Pointer::parse("/deltas").expect("fixed")),
            id: Some(Pointer::parse("/object_data/id").expect("fixed")),
            event_type: Some(Pointer::parse("/type").expect("fixed")),
        };
        s.updated_at = at("2026-12-01T09:00:00.000Z");
        s
    };
    vec![
        ("hmac_split_challenge", nylas),
        (
            "standard_webhooks",
            source(
                2,
                Verify::standard_webhooks(&secret(b'S').expose_secret()).expect("fixed"),
            ),
        ),
        ("github", source(3, Verify::github("gh-secret").expect("fixed"))),
        (
            "stripe",
            source(
                4,
                Verify::stripe("whsec_stripe", Some(Duration::from_secs(600))).expect("fixed"),
            ),
        ),
        (
            "shopify",
            source(5, Verify::shopify("shp-secret").expect("fixed")),
        ),
        ("basic", source(6, Verify::basic("hooks", "pass").expect("fixed"))),
        (
            "header",
            source(7, Verify::header("x-token", "tok").expect("fixed")),
        ),
    ]
}

/// The golden source requests: one accepted with a duplicate, one rejected.
pub fn source_request_cases() -> Vec<(&'static str, crate::SourceRequest)> {
    use crate::{SourceRequest, SourceRequestId, Verdict};
    let received = at("2026-12-01T10:00:00.000Z");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let source = source_id(1, at("2026-12-01T08:00:00.000Z"));
    let accepted = SourceRequest {
        id: SourceRequestId::generate(received, &mut rng),
        source,
        tenant: TenantId::new("acme"),
        received_at: received,
        body_bytes: 812,
        verdict: Verdict::Accepted {
            events: vec![
                EventId::generate(received, &mut rng),
                EventId::generate(received, &mut rng),
            ],
            duplicates: 1,
        },
    };
    let rejected = SourceRequest {
        id: SourceRequestId::generate(received, &mut rng),
        source,
        tenant: TenantId::new("acme"),
        received_at: received,
        body_bytes: 40,
        verdict: Verdict::Rejected {
            status: 401,
            reason: "the signature does not match".to_owned(),
        },
    };
    vec![("accepted", accepted), ("rejected", rejected)]
}
