//! What `deploy/` and `localstack/` declare is what hookline does: the
//! LocalStack init hook and the CloudFormation template make the table
//! `hookline table create` makes, and each IAM policy grants exactly the
//! DynamoDB, SQS, KMS and S3 calls its process makes (seen through recording
//! proxies).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    LOOPBACK, Setup, authed, create_key, free_port, get_json, hookline_command, hookline_with_env,
    job_status, post_job, serve_delivers_a_job, setup, spawn, spawn_with_env, table_create, wait_healthy,
    wait_ready, wait_until, with_log, write_providers,
};

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

/// `deploy/hookline.yaml` as JSON.
fn cloudformation_template() -> Value {
    template_at("deploy/hookline.yaml")
}

/// A template of the repository's as JSON, read by the PyYAML that comes
/// with the AWS CLI; short-form intrinsics become mappings (`!Sub "x"` is
/// `{"Sub": "x"}`).
fn template_at(relative: &str) -> Value {
    let python = testkit::aws_cli_bin()
        .unwrap_or_else(|e| panic!("the AWS CLI is unavailable: {e}"))
        .join("python");
    let output = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml\n\
             class Loader(yaml.SafeLoader): pass\n\
             def intrinsic(l, tag, node):\n\
             \x20   if isinstance(node, yaml.ScalarNode): return {tag: l.construct_scalar(node)}\n\
             \x20   if isinstance(node, yaml.SequenceNode): return {tag: l.construct_sequence(node, deep=True)}\n\
             \x20   return {tag: l.construct_mapping(node, deep=True)}\n\
             Loader.add_multi_constructor('!', intrinsic)\n\
             print(json.dumps(yaml.load(open(sys.argv[1]), Loader=Loader)))",
            &repo_file(relative),
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

/// The SAM template (`deploy/sam.yaml`, the Lambda functions) declares the
/// table, the secrets key, the blobs bucket and the intake's, processor's
/// and operators' policies exactly as `deploy/hookline.yaml` does (whose
/// table the test above holds to `table create`'s, and whose policies
/// `each_iam_policy_grants_exactly_what_its_process_calls` holds to what
/// each process calls), with the parameters they use; and each function
/// runs with its process's policy and nothing more.
#[test]
fn the_sam_template_declares_what_the_cloudformation_template_does() {
    let reference = cloudformation_template();
    let sam = template_at("deploy/sam.yaml");
    assert_eq!(sam["Transform"], "AWS::Serverless-2016-10-31");
    for resource in [
        "Table",
        "SecretsKey",
        "SecretsKeyAlias",
        "Blobs",
        "IntakePolicy",
        "ProcessorPolicy",
        "OperatorPolicy",
    ] {
        assert_eq!(
            sam["Resources"][resource], reference["Resources"][resource],
            "deploy/sam.yaml's {resource} differs from deploy/hookline.yaml's"
        );
    }
    for parameter in [
        "TableName",
        "DeliveryQueueArns",
        "BlobsPrefix",
        "BlobRetentionDays",
    ] {
        assert_eq!(
            sam["Parameters"][parameter], reference["Parameters"][parameter],
            "deploy/sam.yaml's parameter {parameter} differs from deploy/hookline.yaml's"
        );
    }
    for (function, handler, policy) in [
        ("IntakeFunction", "intake", "IntakePolicy"),
        ("ProcessorFunction", "processor", "ProcessorPolicy"),
    ] {
        let properties = &sam["Resources"][function]["Properties"];
        assert_eq!(properties["Handler"], handler, "{function}");
        assert_eq!(properties["Policies"], json!([{"Ref": policy}]), "{function}");
    }
    let globals = &sam["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    let events = &sam["Resources"]["ProcessorFunction"]["Properties"]["Events"]["Drain"];
    assert_eq!(events["Type"], "Schedule");
    assert_eq!(events["Properties"]["Schedule"], "rate(1 minute)");
    let api = &sam["Resources"]["IntakeFunction"]["Properties"]["Events"]["Api"];
    assert_eq!(api["Type"], "HttpApi");
    assert_eq!(api["Properties"]["PayloadFormatVersion"], "2.0");
}

/// A TCP proxy in front of DynamoDB that notes which API operations pass
/// through it (`X-Amz-Target: DynamoDB_20120810.Query`), and for those that
/// name an index, which (`Query index/due`), as IAM would see them; and
/// the table partition keys each request names (IAM's
/// `dynamodb:LeadingKeys`).
struct RecordingProxy {
    endpoint: String,
    seen: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    leading_keys: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

impl RecordingProxy {
    async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let leading_keys = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let record = std::sync::Arc::clone(&seen);
        let record_keys = std::sync::Arc::clone(&leading_keys);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let record = std::sync::Arc::clone(&record);
                let record_keys = std::sync::Arc::clone(&record_keys);
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
                        while let Some((request, used)) = whole_request(&pending) {
                            if let Some(operation) = request.operation {
                                record.lock().expect("lock").insert(operation);
                            }
                            record_keys.lock().expect("lock").extend(request.leading_keys);
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
        Self {
            endpoint,
            seen,
            leading_keys,
        }
    }

    fn seen(&self) -> std::collections::BTreeSet<String> {
        self.seen.lock().expect("lock").clone()
    }

    fn leading_keys(&self) -> std::collections::BTreeSet<String> {
        self.leading_keys.lock().expect("lock").clone()
    }
}

/// What one request asked: its operation as IAM names it (`None` when it
/// names none), and the table partition keys it names.
struct Request {
    operation: Option<String>,
    leading_keys: Vec<String>,
}

/// The first whole HTTP request in `bytes`: what it asks DynamoDB for
/// (`Query`, or `Query index/due` when it names an index), the table
/// partition keys it names, and how many bytes it takes. The SDK sends
/// DynamoDB requests with a Content-Length.
fn whole_request(bytes: &[u8]) -> Option<(Request, usize)> {
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
    if !head.contains("\r\nx-amz-target:") {
        // S3 (REST): the SDK names the operation in the query (`x-id=`).
        let line = String::from_utf8_lossy(&bytes[..head_end]);
        let target = line.split_whitespace().nth(1).unwrap_or_default();
        let operation = target
            .split_once('?')
            .and_then(|(_, query)| query.split('&').find_map(|pair| pair.strip_prefix("x-id=")))
            .map(|op| format!("s3:{op}"));
        let request = Request {
            operation,
            leading_keys: Vec::new(),
        };
        return Some((request, head_end + length));
    }
    let mut leading_keys = Vec::new();
    let operation = header("x-amz-target:").map(|target| {
        // The header was lowered; the operation is read from the original
        // bytes to keep its case.
        let at = head.find(&target).expect("found above");
        let original = String::from_utf8_lossy(&bytes[at..at + target.len()]).into_owned();
        let op = original.rsplit('.').next().unwrap_or_default().to_owned();
        if target.starts_with("dynamodb_") {
            leading_keys = table_leading_keys(&op, &body);
        }
        match body["IndexName"].as_str() {
            Some(index) => format!("{op} index/{index}"),
            None => op,
        }
    });
    let request = Request {
        operation,
        leading_keys,
    };
    Some((request, head_end + length))
}

/// The table partition keys (`pk`) a DynamoDB request names, as IAM's
/// `dynamodb:LeadingKeys` holds them: each item's of a `GetItem`,
/// `PutItem`, `UpdateItem`, `DeleteItem`, `BatchGetItem` or
/// `TransactWriteItems`, the key condition's of a `Query` of the table.
/// An index query names the index's key instead, and is left out.
fn table_leading_keys(operation: &str, body: &Value) -> Vec<String> {
    let pk = |key: &Value| key["pk"]["S"].as_str().map(str::to_owned);
    match operation {
        "GetItem" | "UpdateItem" | "DeleteItem" => pk(&body["Key"]).into_iter().collect(),
        "PutItem" => pk(&body["Item"]).into_iter().collect(),
        "BatchGetItem" => body["RequestItems"]
            .as_object()
            .into_iter()
            .flat_map(|tables| tables.values())
            .flat_map(|table| table["Keys"].as_array().cloned().unwrap_or_default())
            .filter_map(|key| pk(&key))
            .collect(),
        "TransactWriteItems" => body["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let (kind, write) = item.as_object()?.iter().next()?;
                pk(if kind == "Put" {
                    &write["Item"]
                } else {
                    &write["Key"]
                })
            })
            .collect(),
        "Query" if body["IndexName"].is_null() => {
            // `#pk = :pk AND ...`: the name bound to `pk`, then its value.
            let condition = body["KeyConditionExpression"].as_str().unwrap_or_default();
            let names = body["ExpressionAttributeNames"].as_object();
            let name = names
                .and_then(|names| names.iter().find(|(_, v)| v.as_str() == Some("pk")))
                .map_or("pk", |(k, _)| k.as_str());
            let value = condition
                .split(" AND ")
                .find_map(|part| part.trim().strip_prefix(name)?.trim().strip_prefix('='))
                .map(str::trim);
            value
                .and_then(|placeholder| body["ExpressionAttributeValues"][placeholder]["S"].as_str())
                .map(str::to_owned)
                .into_iter()
                .collect()
        }
        _ => Vec::new(),
    }
}

/// IAM's `StringLike`: `*` is any run of characters, `?` any one.
fn string_like(pattern: &str, value: &str) -> bool {
    match pattern.chars().next() {
        None => value.is_empty(),
        Some('*') => {
            let rest = &pattern[1..];
            value
                .char_indices()
                .map(|(i, _)| i)
                .chain([value.len()])
                .any(|i| string_like(rest, &value[i..]))
        }
        Some(c) => {
            let mut chars = value.chars();
            chars.next().is_some_and(|v| {
                (c == '?' || v == c) && string_like(&pattern[c.len_utf8()..], chars.as_str())
            })
        }
    }
}

/// The `dynamodb:LeadingKeys` patterns of a policy's table statements
/// that name item actions: `None` when some such statement has no
/// condition (every partition). Statements on an index are left out
/// (the condition would be about the index's key there).
fn leading_key_patterns(template: &Value, policy: &str) -> Option<Vec<String>> {
    let statements = template["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap_or_else(|| panic!("{policy} has no statements"));
    let mut patterns = Vec::new();
    for statement in statements {
        if statement["Resource"]["GetAtt"] != "Table.Arn" {
            continue;
        }
        let actions: Vec<&str> = statement["Action"]
            .as_array()
            .expect("Action list")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if actions == ["dynamodb:DescribeTable"] {
            // No key in the request: a condition on one would not bite.
            assert!(statement["Condition"].is_null(), "{policy}: {statement}");
            continue;
        }
        let condition = &statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"];
        let Some(listed) = condition.as_array() else {
            assert!(
                statement["Condition"].is_null(),
                "{policy}: a condition other than ForAllValues:StringLike on dynamodb:LeadingKeys: {statement}"
            );
            return None;
        };
        patterns.extend(listed.iter().map(|p| p.as_str().expect("pattern").to_owned()));
    }
    Some(patterns)
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
        if statement["Resource"]["GetAtt"] == "SecretsKey.Arn" {
            // Only under hookline's encryption context.
            assert_eq!(
                statement["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"],
                seal::ENCRYPTION_CONTEXT.1,
                "{policy}: {statement}"
            );
            for action in statement["Action"].as_array().expect("Action list") {
                let action = action.as_str().expect("action");
                assert!(
                    action.starts_with("kms:"),
                    "{policy}: {action} on the secrets key"
                );
                granted.insert(action.to_owned());
            }
            continue;
        }
        if statement["Resource"]["Ref"] == "DeliveryQueueArns" {
            for action in statement["Action"].as_array().expect("Action list") {
                let action = action.as_str().expect("action");
                assert!(
                    action.starts_with("sqs:"),
                    "{policy}: {action} on the delivery queues"
                );
                granted.insert(action.to_owned());
            }
            continue;
        }
        let on_blobs = statement["Resource"]["GetAtt"] == "Blobs.Arn"
            || statement["Resource"]["Sub"]
                .as_str()
                .is_some_and(|arn| arn == "${Blobs.Arn}/${BlobsPrefix}*");
        if on_blobs {
            for action in statement["Action"].as_array().expect("Action list") {
                let action = action.as_str().expect("action");
                assert!(action.starts_with("s3:"), "{policy}: {action} on the blobs");
                granted.insert(action.to_owned());
            }
            continue;
        }
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
/// item by item (hookline's transactions put, and a source's deletion
/// deletes two items, which `DeleteItem` covers: the intake calls it
/// itself for event types anyway).
fn needed(seen: &std::collections::BTreeSet<String>) -> std::collections::BTreeSet<String> {
    let mut needed: std::collections::BTreeSet<String> = seen
        .iter()
        .map(|op| match op.as_str() {
            "TransactWriteItems" => "PutItem".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    // S3 answers a GetObject of a missing key 404 only to a caller that
    // may list the bucket (403 otherwise), and a missing payload must be
    // told from a refusal.
    if needed.contains("s3:GetObject") {
        needed.insert("s3:ListBucket".to_owned());
    }
    needed
}

/// The template's IAM policies are exact: `hookline intake`, `hookline
/// processor` and the operator commands, each talking to DynamoDB through a
/// recording proxy while every path they have is exercised (idempotent
/// create and replay, get, list, dead letter and retry; poll, claim, save,
/// sign; keys and secrets; event types, endpoints and events, and their
/// deliveries), use every action their policy grants and none
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
    // KMS (moto's server) through a recording proxy per process: each
    // seals with data keys of the same KMS key, `--kms-key` as deployed.
    let secrets_key = moto_kms_key().await;
    let kms_proxies = [
        RecordingProxy::start(&testkit::moto_endpoint()).await,
        RecordingProxy::start(&testkit::moto_endpoint()).await,
        RecordingProxy::start(&testkit::moto_endpoint()).await,
    ];
    let [operator_kms, intake_kms, processor_kms] = &kms_proxies;
    let aws_env = |kms: &RecordingProxy| {
        vec![
            ("HOOKLINE_KMS_KEY", secrets_key.clone()),
            ("AWS_ENDPOINT_URL_KMS", kms.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "local".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "local".to_owned()),
            ("AWS_REGION", testkit::moto::REGION.to_owned()),
        ]
    };

    // Operators: a key (and with it the tenant's secret), a listing, a
    // rotation, a revocation.
    let operator_store = via(&operator);
    let run = |args: &[&str]| {
        let output = hookline_with_env(args, &aws_env(operator_kms));
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let created = |tenant: &str| {
        run(&["keys", "create", "--tenant", tenant, "--store", &operator_store])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let key = created("acme");
    created("spare");
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
    // Payloads over 64 KiB in a bucket on moto, reached through a recording
    // proxy per process.
    let bucket = format!("parity-{}", std::process::id());
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&testkit::moto::moto_sdk_config().await)
            .force_path_style(true)
            .build(),
    )
    .create_bucket()
    .bucket(&bucket)
    .send()
    .await
    .expect("create bucket");
    let blobs_url = format!("s3://{bucket}/payloads/");
    let intake_blobs = RecordingProxy::start(&testkit::moto_endpoint()).await;
    let processor_blobs = RecordingProxy::start(&testkit::moto_endpoint()).await;
    let _intake = spawn_with_env(
        &[
            "intake",
            "--store",
            &intake_store,
            "--listen",
            &listen,
            "--providers",
            &providers,
            "--blobs",
            &blobs_url,
        ],
        &setup.dir.path().join("intake.log"),
        &[
            aws_env(intake_kms),
            vec![("AWS_ENDPOINT_URL_S3", intake_blobs.endpoint.clone())],
        ]
        .concat(),
    );
    // SQS (moto's server) through a recording proxy of its own, reached
    // the AWS SDK's standard way; moto takes the credentials DynamoDB Local
    // keeps this table under.
    let queues_proxy = RecordingProxy::start(&testkit::moto_endpoint()).await;
    let processor_log = setup.dir.path().join("processor.log");
    let _processor = spawn_with_env(
        &[
            "processor",
            "--store",
            &processor_store,
            "--providers",
            &providers,
            "--schedule",
            "* * * * * *",
            "--blobs",
            &blobs_url,
        ],
        &processor_log,
        &[
            aws_env(processor_kms),
            vec![
                ("AWS_ENDPOINT_URL_SQS", queues_proxy.endpoint.clone()),
                ("AWS_ENDPOINT_URL_S3", processor_blobs.endpoint.clone()),
            ],
        ]
        .concat(),
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
    wait_until(
        Duration::from_secs(30),
        with_log("one job complete and one failed", &processor_log),
        async || {
            job_status(&http, &base, &complete).await == "complete"
                && job_status(&http, &base, &gone).await == "failed"
        },
    )
    .await;
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

    events_workload(&http, &base, &setup, &processor_log).await;
    queue_workload(&http, &base, &processor_log).await;
    blob_workload(&http, &base, &setup, &processor_log).await;

    let template = cloudformation_template();
    let calls = |service: &str, proxy: &RecordingProxy| -> std::collections::BTreeSet<String> {
        proxy.seen().iter().map(|op| format!("{service}:{op}")).collect()
    };
    for (policy, proxy, kms, queues, blobs) in [
        (
            "IntakePolicy",
            &intake_proxy,
            intake_kms,
            None,
            Some(&intake_blobs),
        ),
        (
            "ProcessorPolicy",
            &processor_proxy,
            processor_kms,
            Some(&queues_proxy),
            Some(&processor_blobs),
        ),
        ("OperatorPolicy", &operator, operator_kms, None, None),
    ] {
        let mut used = proxy.seen();
        // S3's operations are recorded as IAM names them (`s3:GetObject`).
        used.extend(blobs.map(RecordingProxy::seen).unwrap_or_default());
        let mut used = needed(&used);
        used.extend(calls("kms", kms));
        used.extend(queues.map(|q| calls("sqs", q)).unwrap_or_default());
        let granted = granted(&template, policy);
        assert_eq!(
            used, granted,
            "{policy}: the process used {used:?} but the template grants {granted:?}"
        );
    }

    // The intake's partitions: every key it named is one its policy's
    // LeadingKeys allow, every pattern there was used, and none lets in
    // the tenant's signing secrets, which the processor read (it signed
    // the callbacks) from the partition the operator made.
    let patterns = leading_key_patterns(&template, "IntakePolicy")
        .expect("IntakePolicy: every table statement with item actions is held to dynamodb:LeadingKeys");
    let intake_keys = intake_proxy.leading_keys();
    for key in &intake_keys {
        assert!(
            patterns.iter().any(|p| string_like(p, key)),
            "IntakePolicy: the intake used partition {key:?}, which {patterns:?} does not allow"
        );
    }
    for pattern in &patterns {
        assert!(
            intake_keys.iter().any(|key| string_like(pattern, key)),
            "IntakePolicy: {pattern:?} allows partitions the intake never used; it used {intake_keys:?}"
        );
    }
    let secrets = "tenant#acme";
    assert!(
        processor_proxy.leading_keys().contains(secrets) && operator.leading_keys().contains(secrets),
        "the signing secrets' partition is not {secrets:?}: processor {:?}, operator {:?}",
        processor_proxy.leading_keys(),
        operator.leading_keys()
    );
    assert!(
        !patterns.iter().any(|p| string_like(p, secrets)),
        "IntakePolicy: {patterns:?} lets the intake read {secrets:?}"
    );
    assert!(
        !intake_keys.iter().any(|key| key.starts_with("tenant#")),
        "the intake read signing secrets: {intake_keys:?}"
    );
}

#[test]
fn string_like_is_iam_s() {
    assert!(string_like("job#*", "job#acme#003"));
    assert!(string_like("apikeys", "apikeys"));
    assert!(!string_like("apikeys", "apikeys2"));
    assert!(!string_like("source#*", "sources#acme"));
    assert!(string_like("sources#*", "sources#acme"));
    assert!(string_like("a?c*", "abc"));
    assert!(!string_like("job#*", "tenant#job#x"));
    assert!(string_like("*", ""));
}

/// A new KMS key in moto's server: its ARN.
async fn moto_kms_key() -> String {
    aws_sdk_kms::Client::new(&testkit::moto::moto_sdk_config().await)
        .create_key()
        .description("hookline's secrets at rest, for the IAM test")
        .send()
        .await
        .expect("CreateKey")
        .key_metadata()
        .and_then(|key| key.arn())
        .expect("the key's ARN")
        .to_owned()
}

/// An event whose payload is over 64 KiB: the intake puts it in the
/// bucket (PutObject), the processor reads it to deliver it (GetObject),
/// and reading the event reads it too (the intake's GetObject).
async fn blob_workload(http: &reqwest::Client, base: &str, setup: &Setup, processor_log: &Path) {
    use reqwest::Method;
    call(
        http,
        Method::PUT,
        format!("{base}/v1/event-types/report.ready"),
        json!({"description": "a report is ready"}),
        201,
    )
    .await;
    call(
        http,
        Method::POST,
        format!("{base}/v1/endpoints"),
        json!({"url": setup.mock.url("/complete"), "eventTypes": ["report.ready"]}),
        201,
    )
    .await;
    let payload = json!({"rows": "r".repeat(100 * 1024)});
    let event = call(
        http,
        Method::POST,
        format!("{base}/v1/events"),
        json!({"type": "report.ready", "payload": payload}),
        202,
    )
    .await;
    let delivery = event["deliveries"][0]["deliveryId"]
        .as_str()
        .expect("a delivery")
        .to_owned();
    wait_until(
        Duration::from_secs(30),
        with_log("the large event delivered", processor_log),
        async || job_status(http, base, &delivery).await == "complete",
    )
    .await;
    let shown = call(
        http,
        Method::GET,
        format!("{base}/v1/events/{}", event["eventId"].as_str().expect("eventId")),
        Value::Null,
        200,
    )
    .await;
    assert_eq!(shown["payload"], payload, "the payload, read from the bucket");
}

/// Sends `method path` with `body` (none when `Null`) and requires `status`:
/// the answer's JSON body (`Null` when it has none).
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Value,
    status: u16,
) -> Value {
    let mut request = http.request(method.clone(), &url);
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let got = response.status().as_u16();
    let text = response.text().await.expect("body");
    assert_eq!(got, status, "{method} {url}: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: {e}: {text}"))
    }
}

/// The intake's event type, endpoint and event routes, each once (an
/// idempotent publish and its replay among them), and the processor
/// delivering an event to two endpoints.
async fn events_workload(http: &reqwest::Client, base: &str, setup: &Setup, processor_log: &Path) {
    use reqwest::Method;
    let event_type = format!("{base}/v1/event-types/invoice.paid");
    let description = json!({"description": "an invoice was paid"});
    call(http, Method::PUT, event_type.clone(), description.clone(), 201).await;
    call(http, Method::PUT, event_type.clone(), description, 200).await;
    let types = call(
        http,
        Method::GET,
        format!("{base}/v1/event-types"),
        Value::Null,
        200,
    )
    .await;
    assert_eq!(types["data"][0]["name"], "invoice.paid", "{types}");

    let sink = setup.mock.url("/complete");
    let mut endpoints = Vec::new();
    for owner in ["company-1", "company-2"] {
        let created = call(
            http,
            Method::POST,
            format!("{base}/v1/endpoints"),
            json!({"url": sink, "owner": owner, "eventTypes": ["invoice.paid"]}),
            201,
        )
        .await;
        assert!(
            created["secret"]
                .as_str()
                .is_some_and(|s| s.starts_with("whsec_")),
            "{created}"
        );
        endpoints.push(created["endpointId"].as_str().expect("endpointId").to_owned());
    }
    let (first, second) = (&endpoints[0], &endpoints[1]);
    let listed = call(
        http,
        Method::GET,
        format!("{base}/v1/endpoints"),
        Value::Null,
        200,
    )
    .await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(2), "{listed}");
    let one = call(
        http,
        Method::GET,
        format!("{base}/v1/endpoints/{first}"),
        Value::Null,
        200,
    )
    .await;
    assert!(one.get("secret").is_none(), "{one}");
    call(
        http,
        Method::PATCH,
        format!("{base}/v1/endpoints/{first}"),
        json!({"description": "billing"}),
        200,
    )
    .await;
    let rotated = call(
        http,
        Method::POST,
        format!("{base}/v1/endpoints/{first}/secret/rotate"),
        json!({"overlap": "1h"}),
        200,
    )
    .await;
    assert!(
        rotated["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "{rotated}"
    );
    let disabled = call(
        http,
        Method::POST,
        format!("{base}/v1/endpoints/{second}/disable"),
        Value::Null,
        200,
    )
    .await;
    assert_eq!(disabled["status"], "disabled", "{disabled}");
    let enabled = call(
        http,
        Method::POST,
        format!("{base}/v1/endpoints/{second}/enable"),
        Value::Null,
        200,
    )
    .await;
    assert_eq!(enabled["status"], "enabled", "{enabled}");

    let event = json!({"type": "invoice.paid", "payload": {"invoiceId": "in_1", "amount": 1200}});
    let published = call(
        http,
        Method::POST,
        format!("{base}/v1/events"),
        event.clone(),
        202,
    )
    .await;
    assert_eq!(
        published["deliveries"].as_array().map(Vec::len),
        Some(2),
        "{published}"
    );
    let event_id = published["eventId"].as_str().expect("eventId").to_owned();
    // An idempotent publish (the event and its key in one transaction) and
    // its replay, which answers the same event, 200 as for jobs.
    let mut replayed = Vec::new();
    for expected in [202, 200] {
        let response = http
            .post(format!("{base}/v1/events"))
            .header("Idempotency-Key", "iam-event")
            .json(&event)
            .send()
            .await
            .expect("publish");
        assert_eq!(response.status(), expected);
        let body: Value = response.json().await.expect("json");
        replayed.push(body["eventId"].clone());
    }
    assert_eq!(replayed[0], replayed[1]);

    wait_until(
        Duration::from_secs(30),
        with_log("the event delivered to both endpoints", processor_log),
        async || {
            let shown = get_json(http, &format!("{base}/v1/events/{event_id}")).await;
            shown["deliveries"].as_array().is_some_and(|deliveries| {
                deliveries.len() == 2 && deliveries.iter().all(|d| d["status"] == "complete")
            })
        },
    )
    .await;
    // An endpoint that answers 410 Gone: the processor disables it.
    let gone = call(
        http,
        Method::POST,
        format!("{base}/v1/endpoints"),
        json!({"url": setup.mock.url("/gone"), "owner": "company-gone", "eventTypes": ["*"]}),
        201,
    )
    .await;
    let gone = gone["endpointId"].as_str().expect("endpointId").to_owned();
    let to_gone = call(
        http,
        Method::POST,
        format!("{base}/v1/events"),
        json!({"type": "invoice.paid", "owner": "company-gone", "payload": {}}),
        202,
    )
    .await;
    assert_eq!(to_gone["deliveries"][0]["endpointId"], gone.as_str(), "{to_gone}");
    wait_until(
        Duration::from_secs(30),
        with_log("the endpoint that answered 410 disabled", processor_log),
        async || {
            let shown = get_json(http, &format!("{base}/v1/endpoints/{gone}")).await;
            shown["disabledReason"] == "gone"
        },
    )
    .await;

    let page = call(
        http,
        Method::GET,
        format!("{base}/v1/events?type=invoice.paid"),
        Value::Null,
        200,
    )
    .await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(3), "{page}");

    call(
        http,
        Method::DELETE,
        format!("{base}/v1/endpoints/{second}"),
        Value::Null,
        204,
    )
    .await;
    call(
        http,
        Method::GET,
        format!("{base}/v1/endpoints/{second}"),
        Value::Null,
        404,
    )
    .await;
    sources_workload(http, base).await;
    call(http, Method::DELETE, event_type, Value::Null, 204).await;
    call(http, Method::POST, format!("{base}/v1/events"), event, 422).await;
}

/// An SQS endpoint on moto (a queue made here) and an event delivered
/// to it by the processor: GetQueueUrl once, then SendMessage.
async fn queue_workload(http: &reqwest::Client, base: &str, processor_log: &Path) {
    let config = testkit::moto::moto_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let name = format!("hookline-iam-{}", std::process::id());
    let url = sqs
        .create_queue()
        .queue_name(&name)
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
    call(
        http,
        reqwest::Method::PUT,
        format!("{base}/v1/event-types/order.placed"),
        json!({"description": "an order was placed"}),
        201,
    )
    .await;
    call(
        http,
        reqwest::Method::POST,
        format!("{base}/v1/endpoints"),
        json!({"url": arn, "owner": "company-queue", "eventTypes": ["*"]}),
        201,
    )
    .await;
    let published = call(
        http,
        reqwest::Method::POST,
        format!("{base}/v1/events"),
        json!({"type": "order.placed", "owner": "company-queue", "payload": {"orderId": "o_q"}}),
        202,
    )
    .await;
    let event_id = published["eventId"].as_str().expect("eventId").to_owned();
    wait_until(
        Duration::from_secs(30),
        with_log("the event sent to the queue", processor_log),
        async || {
            let shown = get_json(http, &format!("{base}/v1/events/{event_id}")).await;
            shown["deliveries"][0]["status"] == "complete"
        },
    )
    .await;
    let received = sqs
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive");
    let messages = received.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1, "one message on the queue");
    let attributes = messages[0].message_attributes.clone().unwrap_or_default();
    assert_eq!(
        attributes
            .get("webhook-id")
            .and_then(|v| v.string_value.as_deref()),
        Some(event_id.as_str())
    );
}

/// The inbound source routes, each once: a source, a provider's POST
/// split into events, a refused one, the request log, change, list, delete.
async fn sources_workload(http: &reqwest::Client, base: &str) {
    use reqwest::Method;
    let source = call(
        http,
        Method::POST,
        format!("{base}/v1/sources"),
        json!({"name": "parity", "eventType": "invoice.paid", "owner": "company-1",
               "verify": {"type": "header", "name": "x-token", "value": "parity-token"},
               "split": {"items": "/items", "id": "/id"}}),
        201,
    )
    .await;
    let id = source["sourceId"].as_str().expect("sourceId").to_owned();
    let provider = reqwest::Client::new();
    for (token, status) in [("parity-token", 200), ("wrong", 401)] {
        let response = provider
            .post(format!("{base}/in/{id}"))
            .header("x-token", token)
            .header("content-type", "application/json")
            .body(r#"{"items":[{"id":"p1"},{"id":"p2"}]}"#)
            .send()
            .await
            .expect("ingest");
        assert_eq!(response.status().as_u16(), status);
    }
    let log = call(
        http,
        Method::GET,
        format!("{base}/v1/sources/{id}/requests"),
        Value::Null,
        200,
    )
    .await;
    assert_eq!(log["data"].as_array().map(Vec::len), Some(2), "{log}");
    call(
        http,
        Method::PATCH,
        format!("{base}/v1/sources/{id}"),
        json!({"name": "parity-renamed"}),
        200,
    )
    .await;
    call(http, Method::GET, format!("{base}/v1/sources"), Value::Null, 200).await;
    call(
        http,
        Method::DELETE,
        format!("{base}/v1/sources/{id}"),
        Value::Null,
        204,
    )
    .await;
}

/// Every string in `value` (intrinsics' arguments included).
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(members) => members.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// A role's trust policy: assumable by `service` alone, from this account.
fn assert_trusts(role: &Value, service: &str, name: &str) {
    let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"];
    assert_eq!(
        trust,
        &json!([{
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
        }]),
        "{name}'s trust"
    );
}

/// (action, resource as JSON text) for each action of each statement, each resource of
/// a list apart; every statement an Allow.
fn grants(statements: &Value) -> std::collections::BTreeSet<(String, String)> {
    let mut grants = std::collections::BTreeSet::new();
    for statement in statements.as_array().expect("statements") {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        let resources = match &statement["Resource"] {
            Value::Array(list) => list.clone(),
            one => vec![one.clone()],
        };
        for action in statement["Action"].as_array().expect("Action list") {
            for resource in &resources {
                grants.insert((action.as_str().expect("action").to_owned(), resource.to_string()));
            }
        }
    }
    grants
}

/// `deploy/ecs.yaml`'s IAM, read statically (no process of its own calls
/// AWS): the task roles are hookline.yaml's policies and nothing else, so
/// the test above holds for them; the execution role pulls and logs; the
/// CloudWatch agent writes to the stack's log group only; the scheduler
/// may run the processor's task definition in the cluster and pass its two
/// roles to ECS, nothing more; and every export it imports exists.
#[test]
fn the_ecs_stack_grants_its_roles_exactly_what_they_need() {
    let ecs = template_at("deploy/ecs.yaml");
    let base = cloudformation_template();
    let resources = ecs["Resources"].as_object().expect("Resources");

    let iam: std::collections::BTreeSet<&str> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str().is_some_and(|t| t.starts_with("AWS::IAM::")))
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        iam,
        [
            "IntakeTaskRole",
            "MetricsAgentPolicy",
            "ProcessorTaskRole",
            "SchedulerRole",
            "TaskExecutionRole"
        ]
        .into(),
        "the IAM resources of deploy/ecs.yaml"
    );

    for (role, policy, task) in [
        ("IntakeTaskRole", "IntakePolicyArn", "IntakeTaskDefinition"),
        (
            "ProcessorTaskRole",
            "ProcessorPolicyArn",
            "ProcessorTaskDefinition",
        ),
    ] {
        let properties = &resources[role]["Properties"];
        assert_trusts(&resources[role], "ecs-tasks.amazonaws.com", role);
        assert_eq!(
            properties["ManagedPolicyArns"],
            json!([{"Fn::ImportValue": {"Sub": format!("${{HooklineStack}}-{policy}")}}]),
            "{role}: only hookline.yaml's policy"
        );
        assert!(properties["Policies"].is_null(), "{role}: no inline policy");
        let task = &resources[task]["Properties"];
        assert_eq!(task["TaskRoleArn"], json!({"GetAtt": format!("{role}.Arn")}));
        assert_eq!(
            task["ExecutionRoleArn"],
            json!({"GetAtt": "TaskExecutionRole.Arn"})
        );
    }

    let execution = &resources["TaskExecutionRole"];
    assert_trusts(execution, "ecs-tasks.amazonaws.com", "TaskExecutionRole");
    assert!(execution["Properties"]["ManagedPolicyArns"].is_null());
    let policies = execution["Properties"]["Policies"].as_array().expect("policies");
    assert_eq!(policies.len(), 1);
    let repository = json!({"Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${ImageRepository}"});
    let log_group = json!({"GetAtt": "LogGroup.Arn"});
    let expected: std::collections::BTreeSet<(String, String)> = [
        ("ecr:GetAuthorizationToken", json!("*")),
        ("ecr:BatchCheckLayerAvailability", repository.clone()),
        ("ecr:GetDownloadUrlForLayer", repository.clone()),
        ("ecr:BatchGetImage", repository),
        ("logs:CreateLogStream", log_group.clone()),
        ("logs:PutLogEvents", log_group.clone()),
    ]
    .into_iter()
    .map(|(a, r)| (a.to_owned(), r.to_string()))
    .collect();
    assert_eq!(
        grants(&policies[0]["PolicyDocument"]["Statement"]),
        expected,
        "TaskExecutionRole"
    );

    let agent = &resources["MetricsAgentPolicy"];
    assert_eq!(agent["Condition"], "ProcessorsService");
    assert_eq!(
        agent["Properties"]["RoleName"],
        json!({"Ref": "ProcessorTaskRole"})
    );
    let expected: std::collections::BTreeSet<(String, String)> = [
        "logs:CreateLogStream",
        "logs:DescribeLogStreams",
        "logs:PutLogEvents",
    ]
    .into_iter()
    .map(|a| (a.to_owned(), log_group.to_string()))
    .collect();
    assert_eq!(
        grants(&agent["Properties"]["PolicyDocument"]["Statement"]),
        expected,
        "MetricsAgentPolicy"
    );

    let scheduler = &resources["SchedulerRole"];
    assert_eq!(scheduler["Condition"], "ProcessorsScheduled");
    assert_trusts(scheduler, "scheduler.amazonaws.com", "SchedulerRole");
    assert!(scheduler["Properties"]["ManagedPolicyArns"].is_null());
    let policies = scheduler["Properties"]["Policies"].as_array().expect("policies");
    assert_eq!(policies.len(), 1);
    let statements = &policies[0]["PolicyDocument"]["Statement"];
    let expected: std::collections::BTreeSet<(String, String)> = [
        ("ecs:RunTask", json!({"Ref": "ProcessorTaskDefinition"})),
        ("iam:PassRole", json!({"GetAtt": "TaskExecutionRole.Arn"})),
        ("iam:PassRole", json!({"GetAtt": "ProcessorTaskRole.Arn"})),
    ]
    .into_iter()
    .map(|(a, r)| (a.to_owned(), r.to_string()))
    .collect();
    assert_eq!(grants(statements), expected, "SchedulerRole");
    for statement in statements.as_array().expect("statements") {
        let condition = &statement["Condition"];
        match statement["Action"][0].as_str() {
            Some("ecs:RunTask") => assert_eq!(
                condition,
                &json!({"ArnEquals": {"ecs:cluster": {"GetAtt": "Cluster.Arn"}}}),
                "RunTask only in the stack's cluster"
            ),
            _ => assert_eq!(
                condition,
                &json!({"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}),
                "PassRole only to ECS tasks"
            ),
        }
    }
    let target = &resources["ProcessorSchedule"]["Properties"]["Target"];
    assert_eq!(target["RoleArn"], json!({"GetAtt": "SchedulerRole.Arn"}));
    assert_eq!(target["Arn"], json!({"GetAtt": "Cluster.Arn"}));
    assert_eq!(
        target["EcsParameters"]["TaskDefinitionArn"],
        json!({"Ref": "ProcessorTaskDefinition"})
    );

    // What the ECS stack imports, the base stack exports.
    let mut used = Vec::new();
    strings(&ecs, &mut used);
    let imported: std::collections::BTreeSet<String> = used
        .iter()
        .filter_map(|s| s.strip_prefix("${HooklineStack}-"))
        .map(str::to_owned)
        .collect();
    let exported: std::collections::BTreeSet<String> = base["Outputs"]
        .as_object()
        .expect("Outputs")
        .values()
        .filter_map(|output| output["Export"]["Name"]["Sub"].as_str())
        .filter_map(|name| name.strip_prefix("${AWS::StackName}-"))
        .map(str::to_owned)
        .collect();
    assert!(
        !imported.is_empty() && imported.is_subset(&exported),
        "deploy/ecs.yaml imports {imported:?}; hookline.yaml exports {exported:?}"
    );
}

/// One term of a CloudWatch Logs JSON filter pattern, `$.field OP value`,
/// held against a JSON log line as CloudWatch reads it: a string compared
/// for equality, a number by its operator. Anything else in a pattern is a
/// test failure, so a new filter gets a reading here before it ships.
fn filter_term_holds(term: &str, line: &Value) -> bool {
    let term = term.trim().trim_start_matches('(').trim_end_matches(')').trim();
    let (field, rest) = term
        .strip_prefix("$.")
        .and_then(|t| t.split_once(' '))
        .unwrap_or_else(|| panic!("not a `$.field OP value` term: {term}"));
    let (op, value) = rest
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| panic!("no operator: {term}"));
    let found = field.split('.').fold(line, |v, part| &v[part]);
    let value = value.trim();
    if let Some(text) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        match op {
            "=" => found.as_str() == Some(text),
            "!=" => found.as_str() != Some(text),
            _ => panic!("string operator {op} in {term}"),
        }
    } else {
        let wanted: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {term}"));
        let Some(found) = found.as_f64() else { return false };
        match op {
            "=" => found == wanted,
            ">=" => found >= wanted,
            ">" => found > wanted,
            "<=" => found <= wanted,
            "<" => found < wanted,
            _ => panic!("numeric operator {op} in {term}"),
        }
    }
}

fn filter_pattern_matches(pattern: &str, line: &Value) -> bool {
    let inner = pattern
        .trim()
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or_else(|| panic!("not a JSON filter pattern: {pattern}"));
    assert!(!inner.contains("||"), "`||` is not read here: {pattern}");
    inner.split("&&").all(|term| filter_term_holds(term, line))
}

/// `deploy/ecs.yaml`'s log metric filters count what hookline writes: a
/// real `processor --once` with `HOOKLINE_LOG_FORMAT=json`, as the stack
/// runs it, drains one job that is delivered and one the receiver answers
/// 410 Gone (dead-lettered at once); each filter matches exactly the lines
/// it is named for, and a filter's metric value is a number on that line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ecs_stacks_log_metric_filters_match_the_processors_json_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("filters.db").display());
    let key = create_key(&store, "acme");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mock = providers_mock::spawn(listener, providers_mock::MockState::with_seed(21)).expect("mock");
    let providers = write_providers(dir.path(), &mock, "5s")
        .to_string_lossy()
        .into_owned();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let _intake = spawn(
        &[
            "intake",
            "--store",
            &store,
            "--listen",
            &listen,
            "--providers",
            &providers,
        ],
        &dir.path().join("intake.log"),
    );
    let http = authed(&key);
    wait_healthy(&http, &base).await;
    post_job(&http, &base, &mock.url("/complete")).await;
    let gone = post_job(&http, &base, &mock.url("/gone")).await;

    let once = hookline_command()
        .args([
            "processor",
            "--once",
            "--store",
            &store,
            "--providers",
            &providers,
        ])
        .env("HOOKLINE_LOG", "info")
        .env("HOOKLINE_LOG_FORMAT", "json")
        .env("HOOKLINE_ALLOW_NETWORKS", LOOPBACK)
        .stdin(Stdio::null())
        .output()
        .expect("run hookline");
    let stderr = String::from_utf8_lossy(&once.stderr);
    assert!(once.status.success(), "{stderr}");
    assert_eq!(job_status(&http, &base, &gone).await, "failed");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();

    let template = template_at("deploy/ecs.yaml");
    let expected = [
        ("JobsDeadLettered", 1),
        ("DrainsFinished", 1),
        ("DrainDurationMs", 1),
    ];
    let mut checked = Vec::new();
    for resource in template["Resources"].as_object().expect("resources").values() {
        if resource["Type"] != "AWS::Logs::MetricFilter" {
            continue;
        }
        let pattern = resource["Properties"]["FilterPattern"]
            .as_str()
            .expect("FilterPattern");
        let transformation = &resource["Properties"]["MetricTransformations"][0];
        let metric = transformation["MetricName"].as_str().expect("MetricName");
        let matching: Vec<&Value> = lines
            .iter()
            .filter(|line| filter_pattern_matches(pattern, line))
            .collect();
        let (_, count) = expected
            .iter()
            .find(|(name, _)| *name == metric)
            .unwrap_or_else(|| panic!("a metric filter this test does not know: {metric}"));
        assert_eq!(matching.len(), *count, "{metric} ({pattern}) in:\n{stderr}");
        let value = transformation["MetricValue"].as_str().expect("MetricValue");
        if let Some(field) = value.strip_prefix("$.") {
            for line in &matching {
                assert!(line[field].is_u64(), "{metric}'s value {value} on {line}");
            }
        } else {
            assert_eq!(value, "1", "{metric}");
        }
        checked.push(metric.to_owned());
    }
    checked.sort();
    let mut all: Vec<String> = expected.iter().map(|(name, _)| (*name).to_owned()).collect();
    all.sort();
    assert_eq!(checked, all, "every filter this test knows is in the stack");
}
