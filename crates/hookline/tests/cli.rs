//! The real `hookline` binary as a child process: the README's DynamoDB
//! path (table create, then serve or intake + processor --once, a job posted
//! over HTTP and delivered), and one-line errors for bad input.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use providers_mock::MockState;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hookline");

/// The mock providers and sink listen on loopback, which the SSRF guard
/// refuses unless allowed.
const LOOPBACK: &str = "127.0.0.0/8,::1";

/// Kills the child if a test fails before it is stopped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hookline(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("HOOKLINE_STORE")
        .env("HOOKLINE_LOG", "warn")
        .env("HOOKLINE_ALLOW_NETWORKS", LOOPBACK)
        .env("HOOKLINE_METRICS_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .output()
        .expect("run hookline")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Setup {
    endpoint: String,
    table: String,
    store: String,
    providers: PathBuf,
    mock: providers_mock::RunningMock,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let endpoint = testkit::dynamodb_endpoint();
    let table = testkit::unique_table_name("cli");
    let store = format!("dynamodb://{table}?endpoint={endpoint}&region=us-east-1");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mock = providers_mock::spawn(listener, MockState::with_seed(3)).expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = write_providers(dir.path(), &mock, "5s");
    Setup {
        endpoint,
        table,
        store,
        providers,
        mock,
        _dir: dir,
    }
}

/// A providers file in `dir` naming the mock's `gas` and `internet`, each
/// with `timeout`.
fn write_providers(dir: &Path, mock: &providers_mock::RunningMock, timeout: &str) -> PathBuf {
    let path = dir.join("providers.toml");
    let text = ["gas", "internet"]
        .iter()
        .map(|name| {
            format!(
                "[providers.{name}]\nurl = \"{}\"\ntimeout = \"{timeout}\"\n\n",
                mock.url(&format!("/providers/{name}"))
            )
        })
        .collect::<String>();
    std::fs::write(&path, text).expect("write providers");
    path
}

fn spawn(args: &[&str], log: &Path) -> ChildGuard {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new(BIN)
        .args(args)
        .env("HOOKLINE_LOG", "info")
        .env("HOOKLINE_ALLOW_NETWORKS", LOOPBACK)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn hookline");
    ChildGuard(child)
}

/// `hookline table create` on `store`, which must succeed: what it printed.
fn table_create(store: &str) -> String {
    let output = hookline(&["table", "create", "--store", store]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `hookline keys create --tenant TENANT` on `store`: the key it prints.
fn create_key(store: &str, tenant: &str) -> String {
    let output = hookline(&["keys", "create", "--tenant", tenant, "--store", store]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    // The first line; a tenant's first key is followed by its new secret.
    stdout.lines().next().expect("the key").trim().to_owned()
}

/// The API key `hookline dev` printed to `log`.
fn dev_api_key(log: &Path) -> String {
    let printed = std::fs::read_to_string(log).unwrap_or_default();
    printed
        .lines()
        .find_map(|line| line.strip_prefix("API key (tenant dev): "))
        .unwrap_or_else(|| panic!("dev prints its API key:\n{printed}"))
        .trim()
        .to_owned()
}

/// A client that sends `key` with every request.
fn authed(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().expect("header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = http.get(format!("{base}/healthz")).send().await
            && response.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} never became healthy");
}

/// Waits until `base` is up, then requires it to be ready (its store answers).
async fn wait_ready(http: &reqwest::Client, base: &str) {
    wait_healthy(http, base).await;
    let ready = http.get(format!("{base}/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);
}

async fn post_job(http: &reqwest::Client, base: &str, callback: &str) -> String {
    let response = http
        .post(format!("{base}/webhook"))
        .json(&json!({"providers": ["gas", "internet"], "callbackUrl": callback}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("json");
    body["jobId"].as_str().expect("jobId").to_owned()
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let response = http.get(url).send().await.expect("GET");
    response.json().await.expect("JSON body")
}

async fn job_status(http: &reqwest::Client, base: &str, id: &str) -> String {
    let job = get_json(http, &format!("{base}/v1/jobs/{id}")).await;
    job["status"].as_str().unwrap_or_default().to_owned()
}

/// Runs `hookline serve` on `store` with the setup's mock providers, posts
/// a job and waits until it is delivered; gives back the running server and
/// its log file.
async fn serve_delivers_a_job(setup: &Setup, store: &str) -> (ChildGuard, PathBuf) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = setup._dir.path().join("serve.log");
    let listen = format!("127.0.0.1:{port}");
    let providers = setup.providers.to_string_lossy().into_owned();
    let server = spawn(
        &[
            "serve",
            "--store",
            store,
            "--listen",
            &listen,
            "--providers",
            &providers,
            "--schedule",
            "* * * * * *",
        ],
        &log,
    );
    let http = authed(&create_key(store, "acme"));
    wait_ready(&http, &base).await;

    let id = post_job(&http, &base, &setup.mock.url("/complete")).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while job_status(&http, &base, &id).await != "complete" {
        assert!(
            Instant::now() < deadline,
            "job not complete in time; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deliveries = setup.mock.state.accepted_deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].job_id(), Some(id.as_str()));

    (server, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_create_then_serve_delivers_a_job() {
    let setup = setup().await;
    assert!(table_create(&setup.store).contains("created table"));
    assert!(table_create(&setup.store).contains("already exists"));

    let (mut server, log) = serve_delivers_a_job(&setup, &setup.store).await;

    // SIGTERM stops it cleanly.
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "exit {status}; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// Runs the AWS CLI (PyPI, pinned; installed into the cache on first use)
/// with `args` against the setup's DynamoDB, as the LocalStack init hook
/// runs it; `program` is `aws` or a script that calls it.
fn aws(setup: &Setup, program: &str, args: &[&str], table: &str) -> Output {
    let bin = testkit::aws_cli_bin().unwrap_or_else(|e| panic!("the AWS CLI is unavailable: {e}"));
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new(program)
        .args(args)
        .env("PATH", path)
        .env("AWS_ENDPOINT_URL", &setup.endpoint)
        // DynamoDB Local keeps one database per access key and region:
        // these are the ones hookline uses against a loopback endpoint.
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("HOOKLINE_TABLE", table)
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A table's shape in CloudFormation's and DescribeTable's shared field
/// names, in a canonical order: billing, keys, attributes, indexes with
/// their projections, and the TTL attribute.
fn table_shape(properties: &Value, ttl_attribute: &Value) -> Value {
    fn sorted(value: &Value, by: &str) -> Value {
        let mut items = value.as_array().cloned().unwrap_or_default();
        items.sort_by(|a, b| a[by].as_str().cmp(&b[by].as_str()));
        Value::Array(items)
    }
    let billing = properties
        .get("BillingMode")
        .or_else(|| properties.pointer("/BillingModeSummary/BillingMode"))
        .cloned()
        .unwrap_or(Value::Null);
    let indexes: Vec<Value> = sorted(&properties["GlobalSecondaryIndexes"], "IndexName")
        .as_array()
        .into_iter()
        .flatten()
        .map(|index| {
            let mut non_key: Vec<Value> = index
                .pointer("/Projection/NonKeyAttributes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            non_key.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            json!({
                "name": index["IndexName"],
                "key": index["KeySchema"],
                "projection": index["Projection"]["ProjectionType"],
                "nonKeyAttributes": non_key,
            })
        })
        .collect();
    json!({
        "billing": billing,
        "key": properties["KeySchema"],
        "attributes": sorted(&properties["AttributeDefinitions"], "AttributeName"),
        "indexes": indexes,
        "ttl": ttl_attribute,
    })
}

/// `deploy/hookline.yaml` as JSON, read by the PyYAML that comes with the
/// AWS CLI; short-form intrinsics become mappings (`!Sub "x"` is
/// `{"Sub": "x"}`).
fn cloudformation_template() -> Value {
    let python = testkit::aws_cli_bin()
        .unwrap_or_else(|e| panic!("the AWS CLI is unavailable: {e}"))
        .join("python");
    let output = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml\n\
             class Loader(yaml.SafeLoader): pass\n\
             Loader.add_multi_constructor('!', lambda l, tag, node: {tag: node.value if \
                 isinstance(node, yaml.ScalarNode) else [n.value for n in node.value]})\n\
             print(json.dumps(yaml.load(open(sys.argv[1]), Loader=Loader)))",
            &repo_file("deploy/hookline.yaml"),
        ])
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("template JSON")
}

fn repo_file(relative: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
        .to_string_lossy()
        .into_owned()
}

/// The LocalStack init hook, run by the AWS CLI against DynamoDB Local,
/// makes the table `hookline table create` makes and the CloudFormation
/// template declares, field for field; it is safe to run twice; and
/// `hookline serve` on its table delivers a job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_localstack_hook_and_the_template_make_the_table_hookline_makes() {
    let setup = setup().await;
    let hook = repo_file("localstack/init/ready.d/10-hookline-table.sh");
    let first = aws(&setup, "bash", &[&hook], &setup.table);
    assert!(String::from_utf8_lossy(&first.stdout).contains("created table"));
    let again = aws(&setup, "bash", &[&hook], &setup.table);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already exists"));

    let reference = testkit::unique_table_name("cli-reference");
    let reference_store = format!(
        "dynamodb://{reference}?endpoint={}&region=us-east-1",
        setup.endpoint
    );
    table_create(&reference_store);

    let described = |table: &str| {
        let parse = |output: Output| -> Value { serde_json::from_slice(&output.stdout).expect("JSON") };
        let table_json = parse(aws(
            &setup,
            "aws",
            &[
                "dynamodb",
                "describe-table",
                "--table-name",
                table,
                "--output",
                "json",
            ],
            table,
        ));
        let ttl = parse(aws(
            &setup,
            "aws",
            &[
                "dynamodb",
                "describe-time-to-live",
                "--table-name",
                table,
                "--output",
                "json",
            ],
            table,
        ));
        assert_eq!(
            ttl["TimeToLiveDescription"]["TimeToLiveStatus"], "ENABLED",
            "{table}"
        );
        table_shape(
            &table_json["Table"],
            &ttl["TimeToLiveDescription"]["AttributeName"],
        )
    };
    let from_hook = described(&setup.table);
    let from_hookline = described(&reference);
    assert_eq!(
        from_hook, from_hookline,
        "the init hook's table differs from `table create`'s"
    );

    let template = cloudformation_template();
    let properties = &template["Resources"]["Table"]["Properties"];
    assert_eq!(properties["TimeToLiveSpecification"]["Enabled"], true);
    assert_eq!(
        properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    let from_template = table_shape(
        properties,
        &properties["TimeToLiveSpecification"]["AttributeName"],
    );
    assert_eq!(
        from_template, from_hookline,
        "the template's table differs from `table create`'s"
    );

    let (_server, _log) = serve_delivers_a_job(&setup, &setup.store).await;
}

/// A TCP proxy in front of DynamoDB that notes which API operations pass
/// through it (`X-Amz-Target: DynamoDB_20120810.Query`), and for those that
/// name an index, which (`Query index/due`), as IAM would see them.
struct RecordingProxy {
    endpoint: String,
    seen: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

impl RecordingProxy {
    async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let record = std::sync::Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let record = std::sync::Arc::clone(&record);
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let answers = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    // Requests seen so far but not yet whole.
                    let mut pending: Vec<u8> = Vec::new();
                    loop {
                        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        pending.extend_from_slice(&buf[..n]);
                        while let Some((operation, used)) = whole_request(&pending) {
                            if let Some(operation) = operation {
                                record.lock().expect("lock").insert(operation);
                            }
                            pending.drain(..used);
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    answers.abort();
                });
            }
        });
        Self { endpoint, seen }
    }

    fn seen(&self) -> std::collections::BTreeSet<String> {
        self.seen.lock().expect("lock").clone()
    }
}

/// The first whole HTTP request in `bytes`: what it asks DynamoDB for
/// (`Query`, or `Query index/due` when it names an index), and how many
/// bytes it takes. The SDK sends DynamoDB requests with a Content-Length.
fn whole_request(bytes: &[u8]) -> Option<(Option<String>, usize)> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|value| value.trim().to_owned())
    };
    let length: usize = header("content-length:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if bytes.len() < head_end + length {
        return None;
    }
    let body: Value = serde_json::from_slice(&bytes[head_end..head_end + length]).unwrap_or(Value::Null);
    let operation = header("x-amz-target:").map(|target| {
        // The header was lowered; the operation is read from the original
        // bytes to keep its case.
        let at = head.find(&target).expect("found above");
        let original = String::from_utf8_lossy(&bytes[at..at + target.len()]).into_owned();
        let op = original.rsplit('.').next().unwrap_or_default().to_owned();
        match body["IndexName"].as_str() {
            Some(index) => format!("{op} index/{index}"),
            None => op,
        }
    });
    Some((operation, head_end + length))
}

/// What one of the template's managed policies grants, in the proxy's
/// terms: DynamoDB actions on the table (`PutItem`), and on an index
/// (`Query index/due`).
fn granted(template: &Value, policy: &str) -> std::collections::BTreeSet<String> {
    let statements = template["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap_or_else(|| panic!("{policy} has no statements"));
    let mut granted = std::collections::BTreeSet::new();
    for statement in statements {
        assert_eq!(statement["Effect"], "Allow");
        let on_index = statement["Resource"]["Sub"]
            .as_str()
            .and_then(|arn| arn.strip_prefix("${Table.Arn}/index/"));
        let on_table = statement["Resource"]["GetAtt"] == "Table.Arn";
        assert!(
            on_table || on_index.is_some(),
            "{policy}: unexpected resource {statement}"
        );
        for action in statement["Action"].as_array().expect("Action list") {
            let action = action
                .as_str()
                .expect("action")
                .strip_prefix("dynamodb:")
                .expect("dynamodb action");
            granted.insert(match on_index {
                Some(index) => format!("{action} index/{index}"),
                None => action.to_owned(),
            });
        }
    }
    granted
}

/// What IAM checks for what the proxy saw: a transaction is authorised
/// item by item (hookline's transactions only put).
fn needed(seen: &std::collections::BTreeSet<String>) -> std::collections::BTreeSet<String> {
    seen.iter()
        .map(|op| match op.as_str() {
            "TransactWriteItems" => "PutItem".to_owned(),
            other => other.to_owned(),
        })
        .collect()
}

/// The template's IAM policies are exact: `hookline intake`, `hookline
/// processor` and the operator commands, each talking to DynamoDB through a
/// recording proxy while every path they have is exercised (idempotent
/// create and replay, get, list, dead letter and retry; poll, claim, save,
/// sign; keys and secrets), use every action their policy grants and none
/// it does not, and query only the index it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_iam_policy_grants_exactly_what_its_process_calls() {
    let setup = setup().await;
    table_create(&setup.store);
    let via = |proxy: &RecordingProxy| {
        format!(
            "dynamodb://{}?endpoint={}&region=us-east-1",
            setup.table, proxy.endpoint
        )
    };
    let operator = RecordingProxy::start(&setup.endpoint).await;
    let intake_proxy = RecordingProxy::start(&setup.endpoint).await;
    let processor_proxy = RecordingProxy::start(&setup.endpoint).await;

    // Operators: a key (and with it the tenant's secret), a listing, a
    // rotation, a revocation.
    let operator_store = via(&operator);
    let key = create_key(&operator_store, "acme");
    create_key(&operator_store, "spare");
    let run = |args: &[&str]| {
        let output = hookline(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let listed = run(&["keys", "list", "--tenant", "spare", "--store", &operator_store]);
    let spare_id = listed
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("no key listed: {listed}"))
        .to_owned();
    run(&["keys", "revoke", &spare_id, "--store", &operator_store]);
    run(&[
        "secrets",
        "rotate",
        "--tenant",
        "acme",
        "--store",
        &operator_store,
    ]);

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let providers = setup.providers.to_string_lossy().into_owned();
    let intake_store = via(&intake_proxy);
    let processor_store = via(&processor_proxy);
    let _intake = spawn(
        &[
            "intake",
            "--store",
            &intake_store,
            "--listen",
            &listen,
            "--providers",
            &providers,
        ],
        &setup._dir.path().join("intake.log"),
    );
    let processor_log = setup._dir.path().join("processor.log");
    let _processor = spawn(
        &[
            "processor",
            "--store",
            &processor_store,
            "--providers",
            &providers,
            "--schedule",
            "* * * * * *",
        ],
        &processor_log,
    );
    let http = authed(&key);
    wait_ready(&http, &base).await;

    let complete = post_job(&http, &base, &setup.mock.url("/complete")).await;
    for expected in [202, 200] {
        let response = http
            .post(format!("{base}/v1/jobs"))
            .header("Idempotency-Key", "iam-test")
            .json(&json!({"providers": ["gas"], "callbackUrl": setup.mock.url("/complete")}))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), expected);
    }
    let gone = post_job(&http, &base, &setup.mock.url("/gone")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while job_status(&http, &base, &complete).await != "complete"
        || job_status(&http, &base, &gone).await != "failed"
    {
        assert!(
            Instant::now() < deadline,
            "jobs not finished in time; processor log:\n{}",
            std::fs::read_to_string(&processor_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = get_json(&http, &format!("{base}/v1/jobs?status=failed")).await;
    assert_eq!(page["data"][0]["jobId"], gone.as_str());
    let page = get_json(&http, &format!("{base}/v1/jobs?status=complete")).await;
    let listed: Vec<&str> = page["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|job| job["jobId"].as_str())
        .collect();
    assert!(listed.contains(&complete.as_str()), "{page}");
    let retried = http
        .post(format!("{base}/v1/jobs/{gone}/retry"))
        .send()
        .await
        .expect("retry");
    assert_eq!(retried.status(), 202);

    let template = cloudformation_template();
    for (policy, proxy) in [
        ("IntakePolicy", &intake_proxy),
        ("ProcessorPolicy", &processor_proxy),
        ("OperatorPolicy", &operator),
    ] {
        let used = needed(&proxy.seen());
        let granted = granted(&template, policy);
        assert_eq!(
            used, granted,
            "{policy}: the process used {used:?} but the template grants {granted:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_then_processor_once_drains_and_exits() {
    let setup = setup().await;
    table_create(&setup.store);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let providers = setup.providers.to_string_lossy().into_owned();
    let _intake = spawn(
        &[
            "intake",
            "--store",
            &setup.store,
            "--listen",
            &listen,
            "--providers",
            &providers,
        ],
        &setup._dir.path().join("intake.log"),
    );
    let http = authed(&create_key(&setup.store, "acme"));
    wait_healthy(&http, &base).await;
    let ids = [
        post_job(&http, &base, &setup.mock.url("/complete")).await,
        post_job(&http, &base, &setup.mock.url("/complete")).await,
    ];

    let once = hookline(&[
        "processor",
        "--once",
        "--store",
        &setup.store,
        "--providers",
        &providers,
    ]);
    let stdout = String::from_utf8_lossy(&once.stdout);
    assert!(
        once.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&once.stderr)
    );
    assert!(stdout.contains("claimed 2 delivered 2"), "{stdout}");
    for id in &ids {
        assert_eq!(job_status(&http, &base, id).await, "complete");
    }
    assert_eq!(setup.mock.state.accepted_deliveries().len(), 2);
}

#[test]
fn bad_input_is_a_one_line_error_and_a_failed_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = dir.path().join("providers.toml");
    std::fs::write(&providers, "[providers.gas]\nurl = \"http://127.0.0.1:9/gas\"\n").expect("write");
    let providers = providers.to_string_lossy().into_owned();
    let missing = dir.path().join("missing.toml").to_string_lossy().into_owned();
    let store = "dynamodb://jobs?endpoint=http://127.0.0.1:9";
    let cases: [(&[&str], &str); 7] = [
        (
            &["serve", "--store", "postgres://x", "--providers", &providers],
            "unknown store URL",
        ),
        (&["table", "create", "--store", "sqlite://x.db"], "for DynamoDB"),
        (
            &["processor", "--store", "dynamodb://ab", "--providers", &providers],
            "table name",
        ),
        (
            &["processor", "--store", store, "--providers", &missing],
            "reading providers file",
        ),
        (
            &[
                "processor",
                "--store",
                store,
                "--providers",
                &providers,
                "--schedule",
                "*/5 * * * *",
            ],
            "cron",
        ),
        (
            &[
                "processor",
                "--store",
                store,
                "--providers",
                &providers,
                "--lease",
                "5s",
            ],
            "lease",
        ),
        (
            &[
                "intake",
                "--store",
                store,
                "--providers",
                &providers,
                "--listen",
                "not-an-address",
            ],
            "cannot listen",
        ),
    ];
    // Every one is the user's to fix: exit 2, as for clap's usage errors.
    for (args, needle) in cases {
        assert_one_line_failure(args, needle);
        assert_eq!(hookline(args).status.code(), Some(2), "{args:?}");
    }

    // A providers file that is not TOML: where and why, said once, on one line.
    let malformed = dir.path().join("malformed.toml");
    std::fs::write(
        &malformed,
        "[providers.gas]\nurl = \"http://127.0.0.1:9/gas\"\ntimeout = \n",
    )
    .expect("write");
    let malformed = malformed.to_string_lossy().into_owned();
    let args = ["processor", "--store", store, "--providers", &malformed];
    assert_one_line_failure(&args, "line 3, column 11");
    let output = hookline(&args);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let why = stderr.rsplit(": ").next().unwrap_or_default().trim();
    assert_eq!(stderr.matches(why).count(), 1, "said once: {stderr}");

    // A missing required argument is named.
    let output = hookline(&["keys", "create"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--tenant"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");

    // Values clap rejects while parsing: its own one-line error (plus its
    // "try --help" hint) and exit code 2, before anything starts.
    let clap_cases: [(&[&str], &str); 3] = [
        (
            &[
                "processor",
                "--providers",
                &providers,
                "--provider-retries",
                "5s,soon",
            ],
            "--provider-retries",
        ),
        (
            &[
                "processor",
                "--providers",
                &providers,
                "--callback-retries",
                "5s,,1m",
            ],
            "--callback-retries",
        ),
        (
            &["processor", "--providers", &providers, "--lease", "long"],
            "--lease",
        ),
    ];
    // Usage errors, too, are one line (and exit 2, as clap's are).
    for (args, flag) in clap_cases {
        assert_one_line_failure(args, flag);
        assert_eq!(hookline(args).status.code(), Some(2), "{args:?}");
    }
    let from_env = Command::new(BIN)
        .args(["processor", "--providers", &providers])
        .env("HOOKLINE_CALLBACK_RETRIES", "1h,forever")
        .env("HOOKLINE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run hookline");
    let stderr = String::from_utf8_lossy(&from_env.stderr);
    assert_eq!(from_env.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--callback-retries"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

/// The bar: the real `hookline dev` on the embedded store, a job
/// posted over HTTP, complete and delivered to the sink in under 2 seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_delivers_a_job_within_two_seconds_on_the_embedded_store() {
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
    loop {
        let deliveries = get_json(&http, &format!("{base}/mock/deliveries")).await;
        let delivered = deliveries
            .as_array()
            .expect("list")
            .iter()
            .any(|d| d["body"]["jobId"] == id.as_str() && d["status"] == 204);
        if delivered && job_status(&http, &base, &id).await == "complete" {
            break;
        }
        assert!(
            posted.elapsed() < Duration::from_secs(2),
            "not delivered and complete within 2 s; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("dev: posted to delivered and complete in {:?}", posted.elapsed());
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        printed.contains("curl -i -X POST"),
        "dev prints a ready curl line:\n{printed}"
    );
    assert!(dir.path().join("dev.db").exists(), "the embedded store is a file");
}

/// Runs `hookline args` and asserts it fails with one line on stderr that
/// mentions `needle`.
fn assert_one_line_failure(args: &[&str], needle: &str) {
    let output = hookline(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} should fail");
    assert!(stderr.starts_with("hookline: "), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
}

#[test]
fn bad_stores_are_a_one_line_error_and_a_failed_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = dir.path().join("providers.toml");
    std::fs::write(&providers, "[providers.gas]\nurl = \"http://127.0.0.1:9/gas\"\n").expect("write");
    let providers = providers.to_string_lossy().into_owned();
    // A plain file where the database's directory should be: unwritable
    // even for root, unlike permissions.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").expect("write");
    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, "SQLite format 3\0".repeat(512)).expect("write");
    let cases = [
        ("sqlite://".to_owned(), "a file path is needed"),
        ("sqlite://x.db?retention=forever".to_owned(), "retention"),
        ("sqlite://x.db?mode=fast".to_owned(), "unknown parameter"),
        ("dynamodb://jobs?shards=0".to_owned(), "shards"),
        ("dynamodb://".to_owned(), "table name"),
        (
            format!("sqlite://{}/hookline.db", file.display()),
            "cannot create the directory",
        ),
        (format!("sqlite://{}", corrupt.display()), "not a database"),
        (format!("sqlite://{}", dir.path().display()), "unable to open"),
    ];
    for (i, (store, needle)) in cases.iter().enumerate() {
        let args = [
            "serve",
            "--store",
            store,
            "--providers",
            &providers,
            "--listen",
            "127.0.0.1:0",
        ];
        assert_one_line_failure(&args, needle);
        // A URL the user must fix is a usage error (2); a store that will
        // not open is a failure (1).
        let code = if i < 5 { 2 } else { 1 };
        assert_eq!(hookline(&args).status.code(), Some(code), "{store}");
    }
    let kept = std::fs::read(&corrupt).expect("read");
    assert_eq!(
        kept,
        "SQLite format 3\0".repeat(512).into_bytes(),
        "a corrupt file is left as it was"
    );
}

/// The bar for the embedded store: `hookline serve` on SQLite is
/// SIGKILLed with jobs in flight and restarted; every accepted job is
/// delivered and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_mid_flight_loses_no_accepted_job() {
    use providers_mock::Faults;
    use store::{JobStore, ListQuery};

    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mock = providers_mock::spawn(listener, MockState::with_seed(5)).expect("mock");
    // A slow provider and a slow receiver keep jobs in flight long enough
    // to be killed mid-fetch and mid-callback.
    let slow = |latency_ms| Faults {
        latency_ms,
        ..Faults::default()
    };
    mock.state.set_provider_faults("gas", slow(400));
    mock.state.set_sink_faults(slow(300));
    let providers = write_providers(dir.path(), &mock, "2s");
    let providers = providers.to_string_lossy().into_owned();
    let db = dir.path().join("serve.db");
    let store = format!("sqlite://{}", db.display());
    let serve = |port: u16, log: &str| {
        spawn(
            &[
                "serve",
                "--store",
                &store,
                "--providers",
                &providers,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--schedule",
                "* * * * * *",
                "--lease",
                "9s",
                "--callback-timeout",
                "1s",
            ],
            &dir.path().join(log),
        )
    };

    let http = authed(&create_key(&store, "acme"));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut first = serve(port, "first.log");
    wait_healthy(&http, &base).await;
    let callback = mock.url("/complete");
    let posts = (0..40).map(|_| post_job(&http, &base, &callback));
    let accepted: Vec<String> = futures::future::join_all(posts).await;

    // Kill as soon as the first callback lands: others are then in flight,
    // some answered by the receiver but not yet saved as complete.
    let deadline = Instant::now() + Duration::from_secs(20);
    while mock.state.accepted_deliveries().is_empty() {
        assert!(Instant::now() < deadline, "the processor never delivered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.0.kill().expect("SIGKILL");
    first.0.wait().expect("reap");
    let delivered_before = mock.state.accepted_deliveries().len();

    // What the file says right after the crash: every accepted job is
    // there, and some were cut off mid-flight.
    let unfinished = {
        let file = store_sqlite::SqliteStore::open(&db, Default::default()).expect("reopen after a crash");
        let page = file
            .list_jobs(
                &domain::TenantId::new("acme"),
                &ListQuery {
                    status: None,
                    after: None,
                    limit: 100,
                },
            )
            .await
            .expect("list");
        assert_eq!(
            page.jobs.len(),
            accepted.len(),
            "every accepted job survived the crash"
        );
        let unfinished = page.jobs.iter().filter(|j| !j.status().is_terminal()).count();
        assert!(unfinished > 0, "the kill should cut jobs off mid-flight");
        println!(
            "killed with {unfinished} of {} jobs unfinished, {delivered_before} delivered",
            accepted.len()
        );
        unfinished
    };

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _second = serve(port, "second.log");
    wait_healthy(&http, &base).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &accepted {
        while job_status(&http, &base, id).await != "complete" {
            assert!(
                Instant::now() < deadline,
                "job {id} not complete after the restart; log:\n{}",
                std::fs::read_to_string(dir.path().join("second.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let deliveries = mock.state.accepted_deliveries();
    for id in &accepted {
        assert!(
            deliveries.iter().any(|d| d.job_id() == Some(id.as_str())),
            "job {id} complete but never delivered"
        );
    }
    let duplicates = deliveries.len() - accepted.len();
    println!(
        "all {} accepted jobs delivered; {duplicates} duplicate deliveries (jobs cut off between callback and save)",
        accepted.len(),
    );
    assert!(
        duplicates <= unfinished,
        "only jobs in flight at the kill may be delivered twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssrf_guard_is_on_unless_networks_are_allowed() {
    assert_one_line_failure(
        &[
            "intake",
            "--providers",
            "x.toml",
            "--allow-networks",
            "10.0.0.0/33",
        ],
        "is not a network",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = dir.path().join("providers.toml");
    std::fs::write(&providers, "[providers.gas]\nurl = \"http://127.0.0.1:9/gas\"\n").expect("write");
    let store = format!("sqlite://{}", dir.path().join("guard.db").display());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("intake.log");
    let mut command = Command::new(BIN);
    command
        .args(["intake", "--store", &store, "--providers"])
        .arg(&providers)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("HOOKLINE_ALLOW_NETWORKS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    let _intake = ChildGuard(command.spawn().expect("spawn"));
    let http = authed(&create_key(&store, "acme"));
    wait_healthy(&http, &base).await;
    let response = http
        .post(format!("{base}/webhook"))
        .json(&json!({"providers": ["gas"], "callbackUrl": "http://127.0.0.1:4000/complete"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 422, "loopback refused by default");
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem["errors"][0]["field"], "callbackUrl", "{problem}");
}

#[test]
fn keys_are_created_listed_and_revoked_and_only_ever_shown_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("keys.db").display());
    let first = create_key(&store, "acme");
    let second = create_key(&store, "globex");
    assert!(first.starts_with("hl_") && first != second, "{first} {second}");

    let listed = hookline(&["keys", "list", "--store", &store]);
    assert!(listed.status.success());
    let table = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert_eq!(table.lines().count(), 3, "a header and two keys:\n{table}");
    assert!(table.contains("acme") && table.contains("globex"), "{table}");
    assert!(
        !table.contains(&first[3..]) && !table.contains(&second[3..]),
        "keys are never listed"
    );
    let acme_id = table
        .lines()
        .find(|line| line.contains("acme"))
        .and_then(|line| line.split_whitespace().next())
        .expect("acme's key id")
        .to_owned();
    let only_globex = hookline(&["keys", "list", "--tenant", "globex", "--store", &store]);
    assert!(!String::from_utf8_lossy(&only_globex.stdout).contains("acme"));

    let revoked = hookline(&["keys", "revoke", &acme_id, "--store", &store]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert!(String::from_utf8_lossy(&revoked.stdout).contains(&format!("revoked key {acme_id}")));
    let relisted =
        String::from_utf8_lossy(&hookline(&["keys", "list", "--store", &store]).stdout).into_owned();
    let acme_line = relisted
        .lines()
        .find(|l| l.contains("acme"))
        .expect("still listed");
    assert!(
        !acme_line.trim_end().ends_with('-'),
        "shows when it was revoked: {acme_line}"
    );

    assert_one_line_failure(
        &["keys", "revoke", "0123456789ab", "--store", &store],
        "no key with id",
    );
    assert_one_line_failure(
        &["keys", "create", "--tenant", "Not A Tenant", "--store", &store],
        "invalid tenant",
    );
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
    let child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "serve",
            "--store",
            &store,
            "--schedule",
            "* * * * * *",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--providers"])
        .arg(&providers)
        .env("HOOKLINE_LOG", "debug")
        .env("HOOKLINE_ALLOW_NETWORKS", LOOPBACK)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(dir.path().join("serve.err")).expect("log"))
        .spawn()
        .expect("spawn");
    let mut server = ChildGuard(child);
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while job_status(&http, &base, &id).await != "complete" {
        assert!(Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let child = Command::new(BIN)
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while job_status(&http, &base, &id).await != "complete" {
        assert!(Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let spans = |line: &Value| -> Vec<Value> {
        let mut all: Vec<Value> = line["spans"].as_array().cloned().unwrap_or_default();
        all.extend(line.get("span").cloned());
        all
    };
    let names_job = |line: &Value| {
        line["fields"]["job_id"] == id.as_str()
            || spans(line).iter().any(|span| span["job_id"] == id.as_str())
    };
    // About the job: inside the processor's span for it, in a request whose
    // path names it, or mentioning it anywhere.
    let about_job = |line: &Value| {
        spans(line).iter().any(|span| {
            span["name"] == "job"
                || (span["name"] == "request" && span["path"].as_str().is_some_and(|p| p.contains(&id)))
        }) || line.to_string().contains(&id)
    };
    let about: Vec<&Value> = lines.iter().filter(|line| about_job(line)).collect();
    let unnamed: Vec<&&Value> = about.iter().filter(|line| !names_job(line)).collect();
    assert!(
        unnamed.is_empty(),
        "lines about the job without its id: {unnamed:#?}"
    );

    let message = |line: &Value| line["fields"]["message"].as_str().unwrap_or_default().to_owned();
    let find = |wanted: &str| -> Vec<&Value> {
        about
            .iter()
            .copied()
            .filter(|line| message(line) == wanted)
            .collect()
    };
    let accepted = find("job accepted");
    assert_eq!(accepted.len(), 1, "{about:#?}");
    let request = &accepted[0]["span"];
    assert!(request["request_id"].is_string(), "{request}");
    assert_eq!(request["tenant"], "acme", "{request}");
    let fetched = find("provider fetched");
    assert_eq!(fetched.len(), 3, "gas twice, internet once: {fetched:#?}");
    for line in &fetched {
        assert_eq!(line["level"], "DEBUG");
        let fetch = spans(line)
            .into_iter()
            .find(|span| span["name"] == "fetch")
            .expect("in a fetch span");
        assert!(
            fetch["provider"].is_string() && fetch["attempt"].is_number(),
            "{line}"
        );
        assert!(spans(line).iter().any(|span| span["tenant"] == "acme"), "{line}");
    }
    let delivered = find("callback delivered");
    assert_eq!(delivered.len(), 1, "{about:#?}");
    assert_eq!(delivered[0]["level"], "INFO");
    assert_eq!(find("job delivered").len(), 1);
    assert_eq!(find("job left due for a later run").len(), 1, "the gas retry");
}

/// `processor --once` logs its progress through a long drain and ends with
/// a summary; the scheduled processor serves its own metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_once_reports_progress_and_the_scheduled_one_serves_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("progress.db").display());
    let key = create_key(&store, "acme");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mock = providers_mock::spawn(listener, MockState::with_seed(10)).expect("mock");
    let providers = write_providers(dir.path(), &mock, "5s");
    let providers = providers.to_string_lossy().into_owned();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _intake = spawn(
        &[
            "intake",
            "--store",
            &store,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--providers",
            &providers,
        ],
        &dir.path().join("intake.log"),
    );
    let http = authed(&key);
    wait_healthy(&http, &base).await;
    for _ in 0..4 {
        post_job(&http, &base, &mock.url("/complete")).await;
    }

    let once = Command::new(BIN)
        .args([
            "processor",
            "--once",
            "--store",
            &store,
            "--providers",
            &providers,
        ])
        .args(["--batch-size", "1", "--progress-every", "0s"])
        .env("HOOKLINE_LOG", "info")
        .env("HOOKLINE_ALLOW_NETWORKS", LOOPBACK)
        .stdin(Stdio::null())
        .output()
        .expect("run hookline");
    let stdout = String::from_utf8_lossy(&once.stdout);
    let stderr = String::from_utf8_lossy(&once.stderr);
    assert!(once.status.success(), "{stdout}{stderr}");
    let progress = stderr.lines().filter(|l| l.contains("drain in progress")).count();
    assert!(progress >= 4, "a progress line per round of one job: {stderr}");
    assert!(stderr.contains("drain finished"), "{stderr}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("claimed 4 delivered 4 retried 0 dead-lettered 0") && summary.ends_with('s'),
        "{stdout}"
    );

    let metrics_port = free_port();
    let _processor = spawn(
        &[
            "processor",
            "--store",
            &store,
            "--providers",
            &providers,
            "--schedule",
            "* * * * * *",
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
        ],
        &dir.path().join("processor.log"),
    );
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "no drain showed in {url}");
        if let Ok(response) = client.get(&url).send().await
            && response.status() == 200
        {
            let text = response.text().await.expect("text");
            let runs = text
                .lines()
                .find_map(|l| l.strip_prefix("hookline_processor_runs_total "))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if runs >= 1 {
                assert!(text.contains("hookline_due_backlog 0"), "{text}");
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The metrics listener is the API's hardened one: what hyper cannot
    // parse is a problem+json, and a declared body over the limit is
    // refused unread.
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    for (request, status) in [
        (b"\x16\x03\x01 not http\r\n\r\n".to_vec(), "HTTP/1.1 400"),
        (
            b"POST /metrics HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000000000\r\n\r\n".to_vec(),
            "HTTP/1.1 413",
        ),
    ] {
        let answer = raw_answer(&metrics_addr, &request).await;
        assert!(answer.starts_with(status), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
    }
}

/// Sends `request` on a new connection and reads until the server closes.
async fn raw_answer(addr: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer))
        .await
        .expect("answered and closed in time")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A stand-in for a proxy from the environment: counts the requests it is
/// sent and answers each `200 {}`, as an obliging proxy would.
async fn counting_proxy() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut buf = vec![0u8; 16 * 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    (url, seen)
}

/// `HTTP_PROXY` and friends in the processor's environment are ignored: the
/// callback (and the provider fetch) go straight to their targets through
/// the SSRF guard's resolver, never to the proxy, which would resolve and
/// connect on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_in_the_environment_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, proxied) = counting_proxy().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("dev.log");
    let store = format!("sqlite://{}", dir.path().join("dev.db").display());
    let log_file = std::fs::File::create(&log).expect("log file");
    let mut command = Command::new(BIN);
    command
        .args(["dev", "--listen", &format!("127.0.0.1:{port}"), "--store", &store])
        .env("HOOKLINE_LOG", "info")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    for variable in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env(variable, &proxy);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("spawn hookline");
    let _dev = ChildGuard(child);
    let direct = reqwest::Client::builder().no_proxy().build().expect("client");
    wait_healthy(&direct, &base).await;
    let http = authed(&dev_api_key(&log));

    let posted = Instant::now();
    let id = post_job(&http, &base, &format!("{base}/mock/complete")).await;
    while job_status(&http, &base, &id).await != "complete" {
        assert!(
            posted.elapsed() < Duration::from_secs(10),
            "not complete within 10 s; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deliveries = get_json(&http, &format!("{base}/mock/deliveries")).await;
    let delivered = deliveries
        .as_array()
        .expect("list")
        .iter()
        .filter(|d| d["body"]["jobId"] == id.as_str())
        .count();
    let through_proxy = proxied.load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "proxy variables set: job complete in {:?}, {delivered} deliveries at the sink, {through_proxy} connections to the proxy",
        posted.elapsed()
    );
    assert_eq!(
        through_proxy, 0,
        "the processor went through the proxy from the environment"
    );
    assert_eq!(delivered, 1, "the sink got the callback itself");
}

/// The lock-out: `hookline dev` allowed 256 open files, and 400
/// connections that never send a byte. Its listener keeps its connections
/// below the file limit and closes the longest-waiting one for a newcomer,
/// so `/healthz` still answers at once and accepting never runs out of
/// files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_file_limit_do_not_lock_out_healthz() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("dev.log");
    let store = format!("sqlite://{}", dir.path().join("dev.db").display());
    let log_file = std::fs::File::create(&log).expect("log file");
    let child = Command::new("sh")
        .args(["-c", "ulimit -n 256 && exec \"$0\" \"$@\"", BIN])
        .args(["dev", "--listen", &format!("127.0.0.1:{port}"), "--store", &store])
        .env("HOOKLINE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("spawn hookline");
    let _dev = ChildGuard(child);
    wait_healthy(&reqwest::Client::new(), &base).await;

    let flood = 400;
    let closed = std::sync::Arc::new(AtomicUsize::new(0));
    for _ in 0..flood {
        let mut stream = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .expect("connected within 2 s: the listener still accepts")
        .expect("connect");
        let closed = std::sync::Arc::clone(&closed);
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
        });
    }
    let fresh = reqwest::Client::builder().no_proxy().build().expect("client");
    let asked = Instant::now();
    let status = tokio::time::timeout(
        Duration::from_secs(5),
        fresh.get(format!("{base}/healthz")).send(),
    )
    .await
    .expect("/healthz answered within 5 s")
    .expect("/healthz")
    .status();
    let took = asked.elapsed();
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    println!(
        "ulimit -n 256, {flood} idle connections: /healthz {status} in {:.3} s; {} of them closed to make room; {} accept errors logged",
        took.as_secs_f64(),
        closed.load(Ordering::SeqCst),
        printed.matches("accept").count()
    );
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    assert!(!printed.contains("Too many open files"), "{printed}");
    assert!(!printed.contains("accept failed"), "{printed}");
}

/// `hookline serve 2>&1 | head -5`: once the reader of its logs has gone,
/// it goes on serving and SIGTERM still stops it, cleanly (a log line it
/// cannot write is dropped; it used to panic on the next one, in whatever
/// task was logging, the signal task among them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_serve_after_the_log_reader_has_gone() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = dir.path().join("providers.toml");
    std::fs::write(&providers, "[providers.gas]\nurl = \"http://127.0.0.1:9/gas\"\n").expect("write");
    let store = format!("sqlite://{}", dir.path().join("head.db").display());
    let mut child = ChildGuard(
        Command::new(BIN)
            .args([
                "serve",
                "--store",
                &store,
                "--listen",
                "127.0.0.1:0",
                "--providers",
            ])
            .arg(&providers)
            .env("HOOKLINE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hookline serve"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let serving = lines
        .by_ref()
        .take(20)
        .map_while(Result::ok)
        .find(|line| line.contains("hookline serving"))
        .expect("serve says where it serves");
    let addr = serving
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("addr=")
        .to_owned();
    drop(lines);
    // Its scheduled runs and every request go on logging into the closed
    // pipe; it must go on answering.
    let http = reqwest::Client::new();
    for _ in 0..10 {
        let health = http
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .expect("serve still answers after its log reader has gone");
        assert!(health.status().is_success());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The reader is gone (dropped with the BufReader), like `head` exiting.
    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop on SIGTERM with its stderr closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "a clean stop, not a panic: {status}");
    eprintln!(
        "serve stopped {:.2} s after SIGTERM with its stderr closed ({status})",
        started.elapsed().as_secs_f64()
    );
}

/// The listener's limits are the operator's: `--header-timeout` and
/// `--max-connections` take effect, and a zero timeout is a usage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_limits_are_set_on_the_command_line() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let store = format!("sqlite://{}", dir.path().join("dev.db").display());
    let _dev = spawn(
        &[
            "dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store",
            &store,
            "--header-timeout",
            "300ms",
        ],
        &dir.path().join("dev.log"),
    );
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    wait_healthy(&http, &base).await;

    // Half a request head: closed once the 300 ms are up, not after 10 s.
    let mut half = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let sent = Instant::now();
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(n) = half.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    let took = sent.elapsed();
    assert!(closed.is_ok(), "a half-sent head is still open after 5 s");
    eprintln!(
        "--header-timeout 300ms: a half-sent head closed after {:.2} s",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(3), "{took:?}");

    // 40 idle connections against a bound of 16 (another server, with the
    // default header timeout): the newest are served, the oldest closed.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let store = format!("sqlite://{}", dir.path().join("bounded.db").display());
    let _bounded = spawn(
        &[
            "dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store",
            &store,
            "--max-connections",
            "16",
        ],
        &dir.path().join("bounded.log"),
    );
    wait_healthy(&http, &base).await;
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
        );
    }
    let health = tokio::time::timeout(Duration::from_secs(5), http.get(format!("{base}/healthz")).send())
        .await
        .expect("/healthz answers behind 40 idle connections with --max-connections 16")
        .expect("healthz");
    assert!(health.status().is_success());
    // And the oldest of them were closed to make room: at most 16 stay open.
    let mut closed = 0;
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await {
            closed += 1;
        }
    }
    eprintln!("--max-connections 16: {closed} of 40 idle connections closed to make room");
    assert!(
        closed >= 40 - 16,
        "only {closed} of 40 idle connections were closed"
    );
    drop(idle);

    let output = hookline(&["dev", "--idle-timeout", "0s"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--idle-timeout"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}
