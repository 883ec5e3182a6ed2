//! What the logs say: never a key or a secret, and the job's id on every
//! JSON line about it.

use std::process::{Command, Stdio};
use std::time::Duration;

use providers_mock::MockState;
use serde_json::{Value, json};

use crate::support::{
    ChildGuard, LOOPBACK, authed, create_key, free_port, hookline, job_status, post_job, wait_healthy,
    wait_until, write_providers,
};

/// `hookline serve` on `store` at debug, JSON logs to `dir/serve.log`
/// (stdout) and `dir/serve.err`, every second and woken by the intake.
fn serve_at_debug(dir: &std::path::Path, store: &str, providers: &std::path::Path, port: u16) -> ChildGuard {
    let child = crate::support::hookline_command()
        .args([
            "--log-format",
            "json",
            "serve",
            "--store",
            store,
            "--schedule",
            "* * * * * *",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--providers"])
        .arg(providers)
        .env("HOOKLINE_LOG", "debug")
        .env("HOOKLINE_ALLOW_NETWORKS", LOOPBACK)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("serve.log")).expect("log"))
        .stderr(std::fs::File::create(dir.join("serve.err")).expect("log"))
        .spawn()
        .expect("spawn");
    ChildGuard(child)
}

/// The bar: a whole flow with debug logs, and no API key or signing
/// secret anywhere in them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_keys_or_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("logs.db").display());
    let created = hookline(&["keys", "create", "--tenant", "acme", "--store", &store]);
    assert!(created.status.success());
    // `$(hookline keys create ...)` and `read` get both: the key on stdout's
    // first line, the new tenant's signing secret on its second; stderr,
    // which logs keep, gets neither.
    let shown = String::from_utf8_lossy(&created.stdout).into_owned();
    let lines: Vec<&str> = shown.lines().collect();
    let [key, first_secret] = lines[..] else {
        panic!("keys create shows the key and the new tenant's secret on stdout: {shown:?}");
    };
    let (key, first_secret) = (key.to_owned(), first_secret.to_owned());
    assert!(
        key.starts_with("hl_") && first_secret.starts_with("whsec_"),
        "{shown}"
    );
    let told = String::from_utf8_lossy(&created.stderr).into_owned();
    assert!(!told.contains("whsec_") && !told.contains(&key[3..]), "{told}");
    // A tenant's second key comes alone: its secret exists already.
    let again = hookline(&["keys", "create", "--tenant", "acme", "--store", &store]);
    assert_eq!(String::from_utf8_lossy(&again.stdout).lines().count(), 1);
    let second = create_key(&store, "acme");
    let rotated = hookline(&["secrets", "rotate", "--tenant", "acme", "--store", &store]);
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let new_secret = String::from_utf8_lossy(&rotated.stdout).trim().to_owned();
    assert!(new_secret.starts_with("whsec_") && new_secret != first_secret);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mock = providers_mock::spawn(listener, MockState::with_seed(8)).expect("mock");
    mock.state.set_signing_secrets(vec![
        new_secret.parse().expect("secret"),
        first_secret.parse().expect("secret"),
    ]);
    let providers = write_providers(dir.path(), &mock, "10s");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("serve.log");
    let mut server = serve_at_debug(dir.path(), &store, &providers, port);
    let http = authed(&key);
    wait_healthy(&http, &base).await;
    // A wrong key, an idempotent post, a read, a listing: every path that
    // touches a key.
    let refused = authed("hl_not-the-right-key-00000000000")
        .get(format!("{base}/v1/jobs"))
        .send()
        .await
        .expect("GET");
    assert_eq!(refused.status(), 401);
    let id = post_job(&http, &base, &mock.url("/complete")).await;
    let other = authed(&second)
        .post(format!("{base}/webhook"))
        .header("idempotency-key", "logs-test")
        .json(&json!({"providers": ["gas"], "callbackUrl": mock.url("/complete")}))
        .send()
        .await
        .expect("POST");
    assert_eq!(other.status(), 202);
    wait_until(Duration::from_secs(20), "the job to be delivered", async || {
        job_status(&http, &base, &id).await == "complete"
    })
    .await;
    let delivery = mock.state.accepted_deliveries().remove(0);
    assert_eq!(delivery.signature, providers_mock::SignatureVerdict::Valid);
    assert_eq!(
        delivery.headers["webhook-signature"].split(' ').count(),
        2,
        "rotated: both secrets sign"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status();
    let _ = server.0.wait();

    let mut logs = std::fs::read_to_string(&log).expect("log");
    logs.push_str(&std::fs::read_to_string(dir.path().join("serve.err")).expect("log"));
    assert!(logs.contains(&id), "the flow was logged");
    assert!(logs.lines().count() > 10, "debug logs are verbose:\n{logs}");
    for secret in [&key, &second, &first_secret, &new_secret] {
        // The whole value, and its random part on its own.
        let random = secret.split_once('_').map_or(secret.as_str(), |(_, rest)| rest);
        assert!(!logs.contains(random), "a key or secret leaked into the logs");
    }
}

/// Every JSON log line about a job carries its id: the intake's request
/// lines (the span names it), and the processor's lines about the claim,
/// each provider fetch, the callback and the outcome (the job's span). A
/// provider fails once so there is a retry to log too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_job_on_every_line_about_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("jsonlogs.db").display());
    let key = create_key(&store, "acme");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mock = providers_mock::spawn(listener, MockState::with_seed(9)).expect("mock");
    mock.state.fail_provider_next("gas", 1, 503);
    let providers = write_providers(dir.path(), &mock, "5s");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("serve.jsonl");
    let child = crate::support::hookline_command()
        .args(["--log-format", "json", "serve", "--store", &store])
        .args(["--schedule", "* * * * * *", "--provider-retries", "200ms"])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--providers"])
        .arg(&providers)
        .env("HOOKLINE_LOG", "debug")
        .env("HOOKLINE_ALLOW_NETWORKS", LOOPBACK)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    let mut server = ChildGuard(child);
    let http = authed(&key);
    wait_healthy(&http, &base).await;
    let id = post_job(&http, &base, &mock.url("/complete")).await;
    wait_until(Duration::from_secs(20), "the job to be delivered", async || {
        job_status(&http, &base, &id).await == "complete"
    })
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status();
    let _ = server.0.wait();

    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<Value> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    // Flat lines: the event's fields and its spans' side by side, the
    // spans' names in `spans`.
    let in_span = |line: &Value, name: &str| {
        line["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|span| span == name))
    };
    assert!(
        lines
            .iter()
            .all(|line| line.get("fields").is_none() && line["level"].is_string()),
        "every line flat"
    );
    let names_job = |line: &Value| line["job_id"] == id.as_str();
    // About the job: inside the processor's span for it, in a request whose
    // path names it, or mentioning it anywhere.
    let about_job = |line: &Value| {
        in_span(line, "job")
            || (in_span(line, "request") && line["path"].as_str().is_some_and(|p| p.contains(&id)))
            || line.to_string().contains(&id)
    };
    let about: Vec<&Value> = lines.iter().filter(|line| about_job(line)).collect();
    let unnamed: Vec<&&Value> = about.iter().filter(|line| !names_job(line)).collect();
    assert!(
        unnamed.is_empty(),
        "lines about the job without its id: {unnamed:#?}"
    );

    let message = |line: &Value| line["message"].as_str().unwrap_or_default().to_owned();
    let find = |wanted: &str| -> Vec<&Value> {
        about
            .iter()
            .copied()
            .filter(|line| message(line) == wanted)
            .collect()
    };
    let accepted = find("job accepted");
    assert_eq!(accepted.len(), 1, "{about:#?}");
    let request = accepted[0];
    assert!(request["request_id"].is_string(), "{request}");
    assert_eq!(request["tenant"], "acme", "{request}");
    // One info line per request, when it is answered, with its status.
    let answered: Vec<&Value> = lines
        .iter()
        .filter(|line| {
            message(line) == "finished processing request" && line["request_id"] == request["request_id"]
        })
        .collect();
    assert_eq!(answered.len(), 1, "{lines:#?}");
    assert_eq!(answered[0]["level"], "INFO");
    assert_eq!(answered[0]["status"], 202, "{}", answered[0]);
    assert_eq!(answered[0]["path"], "/webhook", "{}", answered[0]);
    let fetched = find("provider fetched");
    assert_eq!(fetched.len(), 3, "gas twice, internet once: {fetched:#?}");
    for line in &fetched {
        assert_eq!(line["level"], "DEBUG");
        assert!(in_span(line, "fetch"), "in a fetch span: {line}");
        assert!(
            line["provider"].is_string() && line["attempt"].is_number(),
            "{line}"
        );
        assert_eq!(line["tenant"], "acme", "{line}");
    }
    let delivered = find("callback delivered");
    assert_eq!(delivered.len(), 1, "{about:#?}");
    assert_eq!(delivered[0]["level"], "INFO");
    assert_eq!(find("job delivered").len(), 1);
    assert_eq!(find("job left due for a later run").len(), 1, "the gas retry");
}

/// Issue 18's bar: a whole flow of endpoint deliveries with every auth
/// type, an OAuth2 token refused and fetched again, and a token endpoint
/// that refuses the client, logged at debug: no credential, token or
/// `Authorization` value anywhere in the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_endpoint_credentials() {
    use base64::Engine as _;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("auth-logs.db").display());
    let key = create_key(&store, "acme");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mock = providers_mock::spawn(listener, MockState::with_seed(18)).expect("mock");
    let providers = write_providers(dir.path(), &mock, "5s");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("serve.log");
    let mut server = serve_at_debug(dir.path(), &store, &providers, port);
    let http = authed(&key);
    wait_healthy(&http, &base).await;
    let put = http
        .put(format!("{base}/v1/event-types/invoice.paid"))
        .json(&json!({}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status(), 201);
    let oauth2 = |secret: &str| {
        json!({"type": "oauth2", "tokenUrl": mock.url("/oauth2/token"), "clientId": "hookline-mock",
            "clientSecret": secret, "scope": "webhooks"})
    };
    let endpoints = [
        (
            "/complete",
            json!({"type": "basic", "username": "user", "password": "basic-pa55word"}),
        ),
        (
            "/complete",
            json!({"type": "bearer", "token": "bearer-t0ken-value"}),
        ),
        (
            "/complete",
            json!({"type": "header", "name": "x-api-key", "value": "header-k3y-value"}),
        ),
        ("/protected", oauth2("mock-client-secret")),
        ("/protected", oauth2("wrong-client-secret")),
    ];
    for (path, auth) in endpoints {
        let created = http
            .post(format!("{base}/v1/endpoints"))
            .json(&json!({"url": mock.url(path), "eventTypes": ["*"], "auth": auth}))
            .send()
            .await
            .expect("POST");
        assert_eq!(created.status(), 201);
    }
    let publish = async || {
        let published = http
            .post(format!("{base}/v1/events"))
            .json(&json!({"type": "invoice.paid", "payload": {"n": 1}}))
            .send()
            .await
            .expect("POST");
        assert_eq!(published.status(), 202);
    };
    publish().await;
    wait_until(Duration::from_secs(20), "four deliveries", async || {
        mock.state.accepted_deliveries().len() == 4
    })
    .await;
    mock.state.revoke_tokens();
    publish().await;
    wait_until(
        Duration::from_secs(20),
        "four more, one after a 401",
        async || mock.state.accepted_deliveries().len() == 8,
    )
    .await;
    assert_eq!(mock.state.tokens_issued(), 2);
    // Inbound sources: their secrets, and what a provider (or anyone) sends.
    for (verify, good, bad) in [
        (
            json!({"type": "header", "name": "x-token", "value": "s0urce-t0ken-value"}),
            ("x-token", "s0urce-t0ken-value".to_owned()),
            ("x-token", "wr0ng-t0ken-value".to_owned()),
        ),
        (
            json!({"type": "basic", "username": "hooks", "password": "s0urce-pa55word"}),
            (
                "authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("hooks:s0urce-pa55word")
                ),
            ),
            (
                "authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("hooks:wr0ng-pa55word")
                ),
            ),
        ),
    ] {
        let created = http
            .post(format!("{base}/v1/sources"))
            .json(&json!({"name": "s", "eventType": "invoice.paid", "verify": verify}))
            .send()
            .await
            .expect("POST");
        assert_eq!(created.status(), 201);
        let id = created.json::<serde_json::Value>().await.expect("json")["sourceId"]
            .as_str()
            .expect("id")
            .to_owned();
        for ((name, value), status) in [(good, 200), (bad, 401)] {
            let ingested = reqwest::Client::new()
                .post(format!("{base}/in/{id}"))
                .header(name, value)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("POST");
            assert_eq!(ingested.status(), status);
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status();
    let _ = server.0.wait();

    let mut logs = std::fs::read_to_string(&log).expect("log");
    logs.push_str(&std::fs::read_to_string(dir.path().join("serve.err")).expect("log"));
    assert!(logs.lines().count() > 20, "debug logs are verbose:\n{logs}");
    assert!(
        logs.contains("OAuth2 token endpoint answered HTTP 401"),
        "the refusal was logged"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("user:basic-pa55word");
    let client = base64::engine::general_purpose::STANDARD.encode("hookline-mock:mock-client-secret");
    for secret in [
        "basic-pa55word",
        basic.as_str(),
        "bearer-t0ken-value",
        "header-k3y-value",
        "mock-client-secret",
        "wrong-client-secret",
        client.as_str(),
        "mock-token-1",
        "mock-token-2",
        "s0urce-t0ken-value",
        "wr0ng-t0ken-value",
        "s0urce-pa55word",
        "wr0ng-pa55word",
        &base64::engine::general_purpose::STANDARD.encode("hooks:s0urce-pa55word"),
        &base64::engine::general_purpose::STANDARD.encode("hooks:wr0ng-pa55word"),
    ] {
        assert!(
            !logs.contains(secret),
            "a credential leaked into the logs: {secret}"
        );
    }
}
