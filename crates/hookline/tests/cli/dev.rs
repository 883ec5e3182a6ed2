//! `hookline dev`: everything in one process on the embedded store.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    authed, dev_api_key, free_port, get_json, job_status, post_job, spawn, wait_healthy, wait_until, with_log,
};

/// The real `hookline dev` on the embedded store, with nothing else
/// running: a job posted over HTTP is fetched from its own mock providers,
/// delivered to its own sink and complete. How long that took is printed
/// (a figure, not a bound: this machine is shared); the bound is only there
/// to end the test, and that a new job wakes the processor instead of
/// waiting for its next tick is
/// `serve::a_new_job_wakes_serve_long_before_its_next_tick`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_delivers_a_job_end_to_end_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("dev.log");
    let store = format!("sqlite://{}", dir.path().join("dev.db").display());
    let _dev = spawn(
        &["dev", "--listen", &format!("127.0.0.1:{port}"), "--store", &store],
        &log,
    );
    wait_healthy(&reqwest::Client::new(), &base).await;
    let http = authed(&dev_api_key(&log));

    let posted = Instant::now();
    let id = post_job(&http, &base, &format!("{base}/mock/complete")).await;
    wait_until(
        Duration::from_secs(30),
        with_log("the job to be delivered to the sink and complete", &log),
        async || {
            let deliveries = get_json(&http, &format!("{base}/mock/deliveries")).await;
            let delivered = deliveries
                .as_array()
                .expect("list")
                .iter()
                .any(|d| d["body"]["jobId"] == id.as_str() && d["status"] == 204);
            delivered && job_status(&http, &base, &id).await == "complete"
        },
    )
    .await;
    println!("dev: posted to delivered and complete in {:?}", posted.elapsed());
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        printed.contains("curl -i -X POST"),
        "dev prints a ready curl line:\n{printed}"
    );

    // The web UI, at the address printed: a visitor is sent to sign in, on a
    // page that carries the Content-Security-Policy.
    let ui = printed
        .lines()
        .find_map(|line| line.strip_prefix("web UI: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("dev prints the web UI's address:\n{printed}"));
    assert_eq!(ui, format!("{base}/ui"));
    let page = reqwest::get(ui).await.expect("GET the UI");
    assert_eq!(page.status(), 200);
    assert_eq!(page.url().path(), "/ui/sign-in");
    assert!(
        page.headers()
            .get("content-security-policy")
            .is_some_and(|csp| csp.as_bytes().starts_with(b"default-src 'none'")),
        "{:?}",
        page.headers()
    );

    // The events example, as printed: a type, an endpoint at the sink, an
    // event, delivered to the sink signed with the endpoint's own secret.
    let events = printed
        .split_once("\nevents:")
        .unwrap_or_else(|| panic!("dev prints an events example:\n{printed}"))
        .1;
    let (events, ingest) = events
        .split_once("\ningest:")
        .unwrap_or_else(|| panic!("dev prints an ingest example after the events one:\n{printed}"));
    let commands = printed_curls(events);
    assert_eq!(commands.len(), 4, "{events}");
    let mut answers = Vec::new();
    for command in &commands {
        answers.push(run_curl(command).await);
    }
    assert_eq!(answers[0].0, 201, "PUT event type: {:?}", answers[0]);
    assert_eq!(answers[1].0, 201, "POST endpoint: {:?}", answers[1]);
    let endpoint = answers[1].1["endpointId"]
        .as_str()
        .expect("endpointId")
        .to_owned();
    assert!(
        answers[1].1["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "{:?}",
        answers[1]
    );
    assert_eq!(answers[2].0, 202, "POST event: {:?}", answers[2]);
    let event = answers[2].1["eventId"].as_str().expect("eventId").to_owned();
    assert_eq!(answers[2].1["deliveries"][0]["endpointId"], endpoint.as_str());
    assert_eq!(
        commands[3],
        ["curl".to_owned(), format!("{base}/mock/deliveries")],
        "the last command shows the sink's deliveries"
    );
    wait_until(
        Duration::from_secs(30),
        with_log("the event to be delivered to the sink", &log),
        async || {
            let deliveries = get_json(&http, &format!("{base}/mock/deliveries")).await;
            deliveries.as_array().expect("list").iter().any(|d| {
                d["headers"]["webhook-id"] == event.as_str()
                    && d["body"]["type"] == "invoice.paid"
                    && d["body"]["data"]["invoiceId"] == "in_1"
                    && d["status"] == 204
                    && d["signature"]["verdict"] == "valid"
            })
        },
    )
    .await;

    // The ingest example, as printed: a source, its challenge, a provider's
    // POST split into two events, which reach the endpoint above.
    let commands = printed_curls(ingest);
    assert_eq!(commands.len(), 4, "{ingest}");
    let created = run_curl(&commands[0]).await;
    assert_eq!(created.0, 201, "POST source: {created:?}");
    let source = created.1["sourceId"].as_str().expect("sourceId").to_owned();
    let with_source = |command: &Vec<String>| -> Vec<String> {
        command.iter().map(|w| w.replace("SOURCE_ID", &source)).collect()
    };
    let challenge = run_curl(&with_source(&commands[1])).await;
    assert_eq!(
        challenge,
        (200, Value::String("hello".to_owned())),
        "the challenge echoed"
    );
    let ingested = run_curl(&with_source(&commands[2])).await;
    assert_eq!(ingested.0, 200, "POST /in: {ingested:?}");
    assert_eq!(
        ingested.1["eventIds"].as_array().map(Vec::len),
        Some(2),
        "{ingested:?}"
    );
    let requests = run_curl(&with_source(&commands[3])).await;
    assert_eq!(requests.1["data"][0]["verdict"], "accepted", "{requests:?}");
    wait_until(
        Duration::from_secs(30),
        with_log("the ingested events to be delivered to the sink", &log),
        async || {
            let deliveries = get_json(&http, &format!("{base}/mock/deliveries")).await;
            let delivered = |invoice: &str| {
                deliveries.as_array().expect("list").iter().any(|d| {
                    d["body"]["data"]["invoiceId"] == invoice && d["signature"]["verdict"] == "valid"
                })
            };
            delivered("in_2") && delivered("in_3")
        },
    )
    .await;
    assert!(dir.path().join("dev.db").exists(), "the embedded store is a file");
}

/// Each `curl` command in `printed` (continued lines joined), as the words a
/// shell would pass it: the printed commands quote with `'...'` only.
fn printed_curls(printed: &str) -> Vec<Vec<String>> {
    printed
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("curl "))
        .map(|line| {
            let mut words = Vec::new();
            let (mut word, mut quoted, mut any) = (String::new(), false, false);
            for c in line.chars() {
                match c {
                    '\'' => (quoted, any) = (!quoted, true),
                    c if c.is_whitespace() && !quoted => {
                        if any {
                            words.push(std::mem::take(&mut word));
                        }
                        any = false;
                    }
                    c => {
                        word.push(c);
                        any = true;
                    }
                }
            }
            assert!(!quoted, "an unclosed quote in {line}");
            if any {
                words.push(word);
            }
            words
        })
        .collect()
}

/// Sends what `curl` would for `words` (`-i`, `-X`, `-H`, `-d` and a URL):
/// the status and the JSON body (`Null` when it has none).
async fn run_curl(words: &[String]) -> (u16, Value) {
    let mut words = words.iter().skip(1);
    let (mut method, mut url, mut headers, mut body) = (None, None, Vec::new(), None);
    while let Some(word) = words.next() {
        match word.as_str() {
            "-i" => {}
            "-X" => method = words.next().cloned(),
            "-H" => {
                let header = words.next().expect("a header after -H");
                let (name, value) = header.split_once(':').expect("name: value");
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
            "-d" => body = words.next().cloned(),
            other if other.starts_with('-') => panic!("an option the test does not know: {other}"),
            other => url = Some(other.to_owned()),
        }
    }
    let method = method.unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.to_owned());
    let url = url.expect("a URL");
    let mut request = reqwest::Client::new().request(method.parse().expect("method"), &url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}
