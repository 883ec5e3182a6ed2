//! `GET /openapi.json`: the document parses, is OpenAPI 3.1, describes
//! exactly the routes the router serves (`intake::ROUTES`), and real
//! responses of every kind match it: status documented, content type,
//! required headers, and the body against its schema (a small validator
//! for the keywords the document uses; schemathesis, `.ci/schemathesis`,
//! does the rest with generated requests).

use std::collections::BTreeSet;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, TestApp, spawn_app_on};

async fn document(app: &TestApp) -> Value {
    // No key: the document is public.
    let response = reqwest::get(format!("{}/openapi.json", app.base))
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.expect("the document is JSON")
}

/// Checks one real response against the document: the operation lists its
/// status with its content type, every required header is there, and the
/// body matches the schema. Returns the body.
async fn conforms(doc: &Value, method: &str, path: &str, response: reqwest::Response) -> Value {
    let status = response.status().as_u16().to_string();
    let documented = &doc["paths"][path][method.to_ascii_lowercase()]["responses"][&status];
    assert!(
        documented.is_object(),
        "{method} {path} does not document {status}"
    );
    let headers = response.headers().clone();
    for (name, header) in documented["headers"].as_object().into_iter().flatten() {
        if header["required"] == true {
            assert!(
                headers.contains_key(name.as_str()),
                "{method} {path} {status}: no {name} header"
            );
        }
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await.expect("JSON body");
    let schema = &documented["content"][&content_type]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status}: content type {content_type} is not documented"
    );
    let mut errors = Vec::new();
    validate(doc, schema, &body, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:#?}\nbody: {body:#}"
    );
    body
}

/// JSON Schema, only the keywords our document uses; stricter in one way:
/// a property the schema does not name is an error even without
/// `additionalProperties: false`, so nothing we send goes undocumented.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(reference) = schema["$ref"].as_str() {
        let pointer = reference.trim_start_matches('#');
        let target = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling $ref {reference}"));
        return validate(doc, target, value, at, errors);
    }
    if let Some(any) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        let matching = any.iter().any(|option| {
            let mut inner = Vec::new();
            validate(doc, option, value, at, &mut inner);
            inner.is_empty()
        });
        if !matching {
            errors.push(format!("{at}: matches none of {any:?}"));
        }
        return;
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let allowed =
        types.is_empty() || types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
    if !allowed {
        errors.push(format!("{at}: {actual} is not {types:?}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    match value {
        Value::Object(object) => {
            let properties = schema["properties"].as_object();
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap_or_default();
                if !object.contains_key(name) {
                    errors.push(format!("{at}: missing {name}"));
                }
            }
            for (name, item) in object {
                match properties.and_then(|p| p.get(name)) {
                    Some(property) => validate(doc, property, item, &format!("{at}.{name}"), errors),
                    None if schema["additionalProperties"].is_object() => validate(
                        doc,
                        &schema["additionalProperties"],
                        item,
                        &format!("{at}.{name}"),
                        errors,
                    ),
                    // A free-form object (metadata) may hold anything.
                    None if properties.is_none() => {}
                    None => errors.push(format!("{at}: {name} is not documented")),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                validate(doc, &schema["items"], item, &format!("{at}[{i}]"), errors);
            }
        }
        Value::Number(n) => {
            let n = n.as_f64().unwrap_or_default();
            if schema["minimum"].as_f64().is_some_and(|min| n < min)
                || schema["maximum"].as_f64().is_some_and(|max| n > max)
            {
                errors.push(format!("{at}: {n} is out of range"));
            }
        }
        Value::String(s) => {
            if schema["maxLength"]
                .as_u64()
                .is_some_and(|max| s.chars().count() as u64 > max)
                || schema["minLength"]
                    .as_u64()
                    .is_some_and(|min| (s.chars().count() as u64) < min)
            {
                errors.push(format!("{at}: length of {s:?}"));
            }
            if schema["format"] == "date-time" && chrono::DateTime::parse_from_rfc3339(s).is_err() {
                errors.push(format!("{at}: {s:?} is not a date-time"));
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_openapi_3_1_and_lists_every_route() {
    let app = spawn_app_on(Backend::Sqlite).await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().expect("openapi").starts_with("3.1."),
        "{}",
        doc["openapi"]
    );

    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            methods
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (m.to_ascii_uppercase(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = intake::ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(documented, served);

    // Every operation documents its errors as problem+json, and the job
    // routes want the bearer key.
    for (method, path) in &served {
        let operation = &doc["paths"][path][method.to_ascii_lowercase()];
        for (status, response) in operation["responses"].as_object().expect("responses") {
            assert!(
                response["headers"]["x-request-id"]["required"] == true,
                "{method} {path} {status}"
            );
            if status.starts_with('4') || status.starts_with('5') {
                assert!(
                    response["content"]["application/problem+json"]["schema"]["$ref"]
                        == "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
        }
        let secured = operation["security"] == json!([{"bearer": []}]);
        assert_eq!(
            secured,
            path.starts_with("/v1/") || path == "/webhook",
            "{method} {path}"
        );
        if secured {
            assert!(operation["responses"]["401"].is_object(), "{method} {path}");
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "hl_...", "description": doc["components"]["securitySchemes"]["bearer"]["description"]})
    );

    // The request body: what validate.rs accepts, with the configured providers.
    let request = &doc["components"]["schemas"]["JobRequest"];
    assert_eq!(request["additionalProperties"], false, "{request:#}");
    assert_eq!(request["required"], json!(["providers", "callbackUrl"]));
    let providers = &request["properties"]["providers"];
    assert_eq!(
        (
            &providers["minItems"],
            &providers["maxItems"],
            &providers["uniqueItems"]
        ),
        (&json!(1), &json!(intake::MAX_PROVIDERS), &json!(true))
    );
    assert_eq!(providers["items"]["enum"], json!(app.catalog.names()));
    assert_eq!(request["properties"]["callbackUrl"]["maxLength"], 2048);

    // The router answers every documented route (no fallback 404 or 405).
    let id = app.accepted_job(&["gas"]).await;
    for (method, path) in &served {
        let url = format!("{}{}", app.base, path.replace("{job_id}", &id));
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let request = match method {
            reqwest::Method::GET | reqwest::Method::DELETE => app.http.request(method.clone(), url),
            _ => app.http.request(method.clone(), url).json(&json!({})),
        };
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status != 405 && body["detail"] != "no such route",
            "{method} {path}: {status} {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_responses_of_every_kind_match_the_document() {
    let app = spawn_app_on(Backend::Sqlite).await;
    let doc = document(&app).await;
    let anonymous = reqwest::Client::new();
    let base = &app.base;

    conforms(&doc, "GET", "/healthz", app.get("/healthz").await).await;
    conforms(&doc, "GET", "/readyz", app.get("/readyz").await).await;
    conforms(&doc, "GET", "/openapi.json", app.get("/openapi.json").await).await;

    // Created, replayed, conflicting.
    let job =
        json!({"providers": ["gas", "internet"], "callbackUrl": app.callback_url(), "metadata": {"a": [1]}});
    let post = |path: &str, body: &Value, key: &str| {
        app.http
            .post(format!("{base}{path}"))
            .header("idempotency-key", key)
            .json(body)
            .send()
    };
    let created = conforms(
        &doc,
        "POST",
        "/webhook",
        post("/webhook", &job, "k1").await.expect("post"),
    )
    .await;
    let id = created["jobId"].as_str().expect("jobId").to_owned();
    conforms(
        &doc,
        "POST",
        "/v1/jobs",
        post("/v1/jobs", &job, "k1").await.expect("replay"),
    )
    .await;
    let other = json!({"providers": ["gas"], "callbackUrl": app.callback_url()});
    conforms(
        &doc,
        "POST",
        "/v1/jobs",
        post("/v1/jobs", &other, "k1").await.expect("409"),
    )
    .await;

    // Client errors of the create route.
    let raw = |content_type: &str, body: String| {
        app.http
            .post(format!("{base}/v1/jobs"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    conforms(
        &doc,
        "POST",
        "/v1/jobs",
        raw("application/json", "{".into()).await.expect("400"),
    )
    .await;
    conforms(
        &doc,
        "POST",
        "/v1/jobs",
        raw("text/plain", "{}".into()).await.expect("415"),
    )
    .await;
    conforms(
        &doc,
        "POST",
        "/v1/jobs",
        raw("application/json", "x".repeat(70_000)).await.expect("413"),
    )
    .await;
    let invalid = conforms(
        &doc,
        "POST",
        "/v1/jobs",
        raw(
            "application/json",
            r#"{"providers":["gas","gas"],"callbackUrl":"ftp://x","x":1}"#.into(),
        )
        .await
        .expect("422"),
    )
    .await;
    assert_eq!(
        invalid["errors"].as_array().expect("errors").len(),
        3,
        "{invalid}"
    );
    let unauthorized = anonymous.post(format!("{base}/v1/jobs")).json(&job).send().await;
    conforms(&doc, "POST", "/v1/jobs", unauthorized.expect("401")).await;

    // A job with every field filled: one provider fetched, the callback
    // refused with 410 so the job is dead-lettered.
    app.mock.state.fail_sink_next(1, 410);
    app.processor("p1").drain(&CancellationToken::new()).await;
    let job_path = format!("/v1/jobs/{id}");
    let read = conforms(&doc, "GET", "/v1/jobs/{job_id}", app.get(&job_path).await).await;
    assert_eq!(read["status"], "failed", "{read}");
    let attempts_path = "/v1/jobs/{job_id}/attempts";
    let attempts = conforms(
        &doc,
        "GET",
        attempts_path,
        app.get(&format!("{job_path}/attempts")).await,
    )
    .await;
    assert_eq!(
        attempts["data"].as_array().map(Vec::len),
        Some(3),
        "two fetches and the 410: {attempts}"
    );
    conforms(
        &doc,
        "GET",
        attempts_path,
        app.get("/v1/jobs/nope/attempts").await,
    )
    .await;
    let pending = app.accepted_job(&["gas"]).await;
    let page = conforms(&doc, "GET", "/v1/jobs", app.get("/v1/jobs?limit=1").await).await;
    assert!(page["nextCursor"].is_string(), "{page}");
    conforms(&doc, "GET", "/v1/jobs", app.get("/v1/jobs?status=failed").await).await;
    conforms(&doc, "GET", "/v1/jobs", app.get("/v1/jobs?limit=0&x=1").await).await;
    conforms(
        &doc,
        "GET",
        "/v1/jobs",
        anonymous
            .get(format!("{base}/v1/jobs"))
            .send()
            .await
            .expect("401"),
    )
    .await;
    conforms(&doc, "GET", "/v1/jobs/{job_id}", app.get("/v1/jobs/nope").await).await;
    // Not even UTF-8: still a problem+json 404, not axum's plain-text 400.
    conforms(&doc, "GET", "/v1/jobs/{job_id}", app.get("/v1/jobs/%FF").await).await;

    let retry = |id: &str| app.http.post(format!("{base}/v1/jobs/{id}/retry")).send();
    let path = "/v1/jobs/{job_id}/retry";
    conforms(&doc, "POST", path, retry(&id).await.expect("202")).await;
    conforms(&doc, "POST", path, retry(&pending).await.expect("409")).await;
    conforms(
        &doc,
        "POST",
        path,
        retry("01ARZ3NDEKTSV4RRFFQ69G5FAV").await.expect("404"),
    )
    .await;
    conforms(&doc, "POST", path, retry("%C3%28").await.expect("404")).await;

    // Event types, endpoints and events: made, read, listed, refused.
    let send = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let request = app.http.request(method, format!("{base}{path}"));
        match body {
            Some(body) => request.json(&body).send(),
            None => request.send(),
        }
    };
    use reqwest::Method;
    let put = "/v1/event-types/{name}";
    conforms(
        &doc,
        "PUT",
        put,
        send(Method::PUT, "/v1/event-types/invoice.paid", Some(json!({})))
            .await
            .expect("201"),
    )
    .await;
    conforms(
        &doc,
        "PUT",
        put,
        send(
            Method::PUT,
            "/v1/event-types/invoice.paid",
            Some(json!({"description": "d"})),
        )
        .await
        .expect("200"),
    )
    .await;
    conforms(
        &doc,
        "PUT",
        put,
        send(Method::PUT, "/v1/event-types/a%20b", Some(json!({})))
            .await
            .expect("422"),
    )
    .await;
    // A thin event type: its providers are shown.
    conforms(
        &doc,
        "PUT",
        put,
        send(
            Method::PUT,
            "/v1/event-types/meter.read",
            Some(json!({"providers": ["gas"]})),
        )
        .await
        .expect("201"),
    )
    .await;
    conforms(
        &doc,
        "PUT",
        put,
        send(
            Method::PUT,
            "/v1/event-types/meter.read",
            Some(json!({"providers": ["water"]})),
        )
        .await
        .expect("422"),
    )
    .await;
    conforms(
        &doc,
        "GET",
        "/v1/event-types",
        send(Method::GET, "/v1/event-types", None).await.expect("200"),
    )
    .await;
    let endpoint = json!({"url": app.callback_url(), "eventTypes": ["invoice.paid"], "owner": "o", "headers": {"x-a": "b"}});
    let created = conforms(
        &doc,
        "POST",
        "/v1/endpoints",
        send(Method::POST, "/v1/endpoints", Some(endpoint))
            .await
            .expect("201"),
    )
    .await;
    let endpoint_id = created["endpointId"].as_str().expect("endpointId").to_owned();
    conforms(
        &doc,
        "POST",
        "/v1/endpoints",
        send(Method::POST, "/v1/endpoints", Some(json!({"url": 1})))
            .await
            .expect("422"),
    )
    .await;
    let one = "/v1/endpoints/{endpoint_id}";
    let at = format!("/v1/endpoints/{endpoint_id}");
    conforms(&doc, "GET", one, send(Method::GET, &at, None).await.expect("200")).await;
    conforms(
        &doc,
        "PATCH",
        one,
        send(Method::PATCH, &at, Some(json!({"description": "x"})))
            .await
            .expect("200"),
    )
    .await;
    conforms(
        &doc,
        "GET",
        "/v1/endpoints",
        send(Method::GET, "/v1/endpoints?limit=1", None)
            .await
            .expect("200"),
    )
    .await;
    let rotate = "/v1/endpoints/{endpoint_id}/secret/rotate";
    conforms(
        &doc,
        "POST",
        rotate,
        send(Method::POST, &format!("{at}/secret/rotate"), None)
            .await
            .expect("200"),
    )
    .await;
    let disable = "/v1/endpoints/{endpoint_id}/disable";
    conforms(
        &doc,
        "POST",
        disable,
        send(Method::POST, &format!("{at}/disable"), None)
            .await
            .expect("200"),
    )
    .await;
    let enable = "/v1/endpoints/{endpoint_id}/enable";
    conforms(
        &doc,
        "POST",
        enable,
        send(Method::POST, &format!("{at}/enable"), None)
            .await
            .expect("200"),
    )
    .await;
    let event = json!({"type": "invoice.paid", "owner": "o", "payload": [1, {"a": null}]});
    let published = conforms(
        &doc,
        "POST",
        "/v1/events",
        send(Method::POST, "/v1/events", Some(event)).await.expect("202"),
    )
    .await;
    let event_id = published["eventId"].as_str().expect("eventId").to_owned();
    conforms(
        &doc,
        "POST",
        "/v1/events",
        send(
            Method::POST,
            "/v1/events",
            Some(json!({"type": "nope", "payload": 1})),
        )
        .await
        .expect("422"),
    )
    .await;
    app.processor("p1").drain(&CancellationToken::new()).await;
    conforms(
        &doc,
        "GET",
        "/v1/events/{event_id}",
        send(Method::GET, &format!("/v1/events/{event_id}"), None)
            .await
            .expect("200"),
    )
    .await;
    let thin = conforms(
        &doc,
        "POST",
        "/v1/events",
        send(
            Method::POST,
            "/v1/events",
            Some(json!({"type": "meter.read", "payload": {"meterId": "m"}})),
        )
        .await
        .expect("202"),
    )
    .await;
    let thin_id = thin["eventId"].as_str().expect("eventId").to_owned();
    let shown = conforms(
        &doc,
        "GET",
        "/v1/events/{event_id}",
        send(Method::GET, &format!("/v1/events/{thin_id}"), None)
            .await
            .expect("200"),
    )
    .await;
    assert_eq!(shown["providers"], json!(["gas"]), "{shown}");
    conforms(
        &doc,
        "GET",
        "/v1/events/{event_id}",
        send(Method::GET, "/v1/events/nope", None).await.expect("404"),
    )
    .await;
    conforms(
        &doc,
        "GET",
        "/v1/events",
        send(Method::GET, "/v1/events?type=invoice.paid", None)
            .await
            .expect("200"),
    )
    .await;
    conforms(
        &doc,
        "GET",
        "/v1/events",
        send(Method::GET, "/v1/events?x=1", None).await.expect("422"),
    )
    .await;
    let delivery = published["deliveries"][0]["deliveryId"]
        .as_str()
        .expect("deliveryId")
        .to_owned();
    conforms(
        &doc,
        "GET",
        "/v1/jobs/{job_id}",
        send(Method::GET, &format!("/v1/jobs/{delivery}"), None)
            .await
            .expect("200"),
    )
    .await;
    let deleted = send(Method::DELETE, &at, None).await.expect("204");
    assert_eq!(deleted.status(), 204);
    conforms(
        &doc,
        "DELETE",
        one,
        send(Method::DELETE, &at, None).await.expect("404"),
    )
    .await;
    let deleted = send(Method::DELETE, "/v1/event-types/invoice.paid", None)
        .await
        .expect("204");
    assert_eq!(deleted.status(), 204);
    conforms(
        &doc,
        "DELETE",
        "/v1/event-types/{name}",
        send(Method::DELETE, "/v1/event-types/invoice.paid", None)
            .await
            .expect("404"),
    )
    .await;
}
