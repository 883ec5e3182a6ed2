//! SQS endpoints (SPEC section 13) on moto's server, on every store: an
//! endpoint whose `url` is a queue's ARN gets each delivery as a message of
//! the same body with the `webhook-*` values as attributes (verified by the
//! official Standard Webhooks library, as a worker reading the queue
//! would); a FIFO queue's message carries the owner as its group and the
//! event's id as its deduplication id; a queue that does not exist settles
//! the delivery `failed` at once; what cannot apply to a queue is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::events::event_type;
use crate::helpers::{Backend, TestApp, on_every_store, spawn_app_on};

on_every_store!(
    a_queue_endpoint_gets_each_event_as_a_signed_message,
    a_fifo_queue_gets_the_owner_as_group_and_the_event_id_as_deduplication_id,
    a_missing_queue_fails_its_delivery_at_once_and_others_are_delivered,
    what_cannot_apply_to_a_queue_is_refused,
);

/// A queue of its own for this test (`.fifo` for a FIFO queue), and its
/// ARN and URL.
async fn queue(client: &aws_sdk_sqs::Client, fifo: bool) -> (String, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "hookline-{}-{}{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        if fifo { ".fifo" } else { "" }
    );
    let mut create = client.create_queue().queue_name(&name);
    if fifo {
        create = create.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let url = create
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    let arn = format!(
        "arn:aws:sqs:{}:{}:{name}",
        testkit::moto::REGION,
        testkit::moto::ACCOUNT
    );
    (arn, url)
}

/// The app, sending to queues on moto.
async fn app_with_queues(backend: Backend) -> (TestApp, aws_sdk_sqs::Client) {
    let config = testkit::moto::moto_sdk_config().await;
    let mut app = spawn_app_on(backend).await;
    app.send_to_queues(Arc::new(sqs::Queues::with_config(config.clone())));
    event_type(&app, "order.placed").await;
    (app, aws_sdk_sqs::Client::new(&config))
}

async fn endpoint(app: &TestApp, body: Value) -> (String, String) {
    let (status, body) = app.send(reqwest::Method::POST, "/v1/endpoints", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    (
        body["endpointId"].as_str().expect("id").to_owned(),
        body["secret"].as_str().expect("secret").to_owned(),
    )
}

async fn publish(app: &TestApp, owner: Option<&str>, payload: Value) -> Value {
    let mut request = json!({"type": "order.placed", "payload": payload});
    if let Some(owner) = owner {
        request["owner"] = json!(owner);
    }
    let (status, body) = app.send(reqwest::Method::POST, "/v1/events", Some(request)).await;
    assert_eq!(status, 202, "{body}");
    body
}

/// A message as a worker reads it: body, attributes, system attributes.
struct Received {
    body: String,
    attributes: HashMap<String, String>,
    system: HashMap<String, String>,
}

async fn receive(client: &aws_sdk_sqs::Client, url: &str) -> Vec<Received> {
    let answer = client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive");
    answer
        .messages
        .unwrap_or_default()
        .into_iter()
        .map(|message| Received {
            body: message.body.unwrap_or_default(),
            attributes: message
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(name, value)| (name, value.string_value.unwrap_or_default()))
                .collect(),
            system: message
                .attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(name, value)| (name.as_str().to_owned(), value))
                .collect(),
        })
        .collect()
}

async fn drain(app: &TestApp) -> processor::DrainReport {
    app.processor("p1").drain(&CancellationToken::new()).await
}

async fn a_queue_endpoint_gets_each_event_as_a_signed_message(backend: Backend) {
    let (app, client) = app_with_queues(backend).await;
    let (arn, url) = queue(&client, false).await;
    let (endpoint_id, secret) = endpoint(&app, json!({"url": arn, "eventTypes": ["order.placed"]})).await;
    let (status, view) = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/endpoints/{endpoint_id}"),
            None,
        )
        .await;
    assert_eq!(
        (status, view["url"].as_str()),
        (200, Some(arn.as_str())),
        "{view}"
    );

    let event = publish(
        &app,
        None,
        json!({"orderId": "o-1", "lines": [{"sku": "a", "qty": 2}], "note": "ünïcode"}),
    )
    .await;
    let event_id = event["eventId"].as_str().expect("eventId");
    let report = drain(&app).await;
    assert_eq!(report.delivered, 1, "{report:?}");

    let messages = receive(&client, &url).await;
    let [message] = messages.as_slice() else {
        panic!("one message, got {}", messages.len());
    };
    assert_eq!(message.attributes["webhook-id"], event_id);
    assert_eq!(message.attributes["content-type"], "application/json");
    testkit::verify_with_official_library(&secret, message.attributes.iter(), message.body.as_bytes())
        .unwrap_or_else(|e| panic!("the official verifier refuses the message's signature: {e}"));
    let body: Value = serde_json::from_str(&message.body).expect("JSON body");
    assert_eq!(body["type"], "order.placed");
    assert_eq!(body["data"]["note"], "ünïcode");

    let (_, view) = app
        .send(reqwest::Method::GET, &format!("/v1/events/{event_id}"), None)
        .await;
    let delivery = &view["deliveries"][0];
    assert_eq!(delivery["status"], "complete", "{view}");
    assert_eq!(delivery["attempts"], 1);
}

async fn a_fifo_queue_gets_the_owner_as_group_and_the_event_id_as_deduplication_id(backend: Backend) {
    let (app, client) = app_with_queues(backend).await;
    let (arn, url) = queue(&client, true).await;
    let (_, secret) = endpoint(
        &app,
        json!({"url": arn, "eventTypes": ["order.placed"], "owner": "company-42"}),
    )
    .await;
    let first = publish(&app, Some("company-42"), json!({"n": 1})).await;
    app.advance(std::time::Duration::from_millis(5));
    let second = publish(&app, Some("company-42"), json!({"n": 2})).await;
    let report = drain(&app).await;
    assert_eq!(report.delivered, 2, "{report:?}");

    let messages = receive(&client, &url).await;
    assert_eq!(messages.len(), 2, "both messages");
    let mut ids = Vec::new();
    for message in &messages {
        assert_eq!(message.system["MessageGroupId"], "company-42");
        assert_eq!(
            message.system["MessageDeduplicationId"],
            message.attributes["webhook-id"]
        );
        testkit::verify_with_official_library(&secret, message.attributes.iter(), message.body.as_bytes())
            .unwrap_or_else(|e| panic!("the official verifier refuses the message's signature: {e}"));
        ids.push(message.attributes["webhook-id"].clone());
    }
    // Both, once each (deliveries are concurrent, so the queue keeps the
    // order they were sent in, not necessarily the order of publishing).
    ids.sort();
    let mut published = [&first["eventId"], &second["eventId"]].map(|id| id.as_str().expect("id").to_owned());
    published.sort();
    assert_eq!(ids, published);
}

async fn a_missing_queue_fails_its_delivery_at_once_and_others_are_delivered(backend: Backend) {
    let (app, client) = app_with_queues(backend).await;
    let (arn, url) = queue(&client, false).await;
    let missing = format!(
        "arn:aws:sqs:{}:{}:no-such-queue-{}",
        testkit::moto::REGION,
        testkit::moto::ACCOUNT,
        std::process::id()
    );
    let (missing_id, _) = endpoint(&app, json!({"url": missing, "eventTypes": ["*"]})).await;
    let (present_id, _) = endpoint(&app, json!({"url": arn, "eventTypes": ["*"]})).await;
    let event = publish(&app, None, json!({"orderId": "o-2"})).await;
    let report = drain(&app).await;
    assert_eq!((report.delivered, report.dead_lettered), (1, 1), "{report:?}");
    assert_eq!(receive(&client, &url).await.len(), 1);

    let (_, view) = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/events/{}", event["eventId"].as_str().expect("id")),
            None,
        )
        .await;
    let state = |id: &str| -> Value {
        view["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .find(|d| d["endpointId"] == id)
            .cloned()
            .expect("a delivery to the endpoint")
    };
    let failed = state(&missing_id);
    assert_eq!(failed["status"], "failed", "{view}");
    assert_eq!(failed["lastError"], "queueMissing", "{view}");
    assert_eq!(state(&present_id)["status"], "complete", "{view}");
}

async fn what_cannot_apply_to_a_queue_is_refused(backend: Backend) {
    let app = spawn_app_on(backend).await;
    event_type(&app, "order.placed").await;
    let arn = "arn:aws:sqs:us-east-1:123456789012:orders";
    for (body, field) in [
        (
            json!({"url": "arn:aws:sqs:us-east-1:1234:orders", "eventTypes": ["*"]}),
            "url",
        ),
        (
            json!({"url": "arn:aws:sns:us-east-1:123456789012:topic", "eventTypes": ["*"]}),
            "url",
        ),
        (
            json!({"url": arn, "eventTypes": ["*"], "auth": {"type": "bearer", "token": "t0ken-value"}}),
            "auth",
        ),
        (
            json!({"url": arn, "eventTypes": ["*"], "headers": {"x-team": "billing"}}),
            "headers",
        ),
    ] {
        let (status, problem) = app
            .send(reqwest::Method::POST, "/v1/endpoints", Some(body.clone()))
            .await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        assert!(!problem.to_string().contains("t0ken-value"), "{problem}");
    }
    let (status, listed) = app.send(reqwest::Method::GET, "/v1/endpoints", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"], json!([]), "nothing was registered");
}
