//! Bad input, whatever its source (a flag, a variable, a store URL, a
//! providers file): one line on stderr, and exit 2 when it is the user's to
//! fix, 1 when something failed.

use std::process::Stdio;

use crate::support::{assert_one_line_failure, hookline};

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
    // A bad egress proxy, from the flag or the variable, on every command
    // that delivers: one line naming the flag, never the value (it may hold
    // a password).
    for command in ["serve", "processor", "dev"] {
        for value in [
            "http://ops:hunter2@proxy:3128",
            "https://proxy:3128",
            "proxy:3128/x",
        ] {
            let mut args = vec![command, "--egress-proxy", value];
            if command != "dev" {
                args.extend(["--providers", providers.as_str()]);
            }
            let output = hookline(&args);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
            assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
            assert!(stderr.contains("--egress-proxy"), "{stderr}");
            assert!(!stderr.contains("hunter2") && !stderr.contains(value), "{stderr}");
        }
    }
    let output = crate::support::hookline_command()
        .args(["processor", "--providers", &providers])
        .env("HOOKLINE_EGRESS_PROXY", "http://ops:hunter2@proxy:3128")
        .env("HOOKLINE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run hookline");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--egress-proxy") && !stderr.contains("hunter2"),
        "{stderr}"
    );

    let from_env = crate::support::hookline_command()
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

/// A `--blobs` (or `HOOKLINE_BLOBS`) that names no blob store is a usage
/// error (exit 2) of one line, on every command that takes it, before
/// anything listens.
#[test]
fn bad_blob_urls_are_a_one_line_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = dir.path().join("providers.toml");
    std::fs::write(&providers, "[providers.gas]\nurl = \"http://127.0.0.1:9/gas\"\n").expect("write");
    let providers = providers.to_string_lossy().into_owned();
    let store = format!("sqlite://{}", dir.path().join("hookline.db").display());
    for (blobs, needle) in [
        ("ftp://x/y", "is not a blob store's URL"),
        ("s3://", "names no bucket"),
        ("s3://Bad_Bucket/p", "is not an S3 bucket name"),
        ("file://", "names no directory"),
    ] {
        for command in [
            &["serve", "--listen", "127.0.0.1:0", "--providers", &providers][..],
            &["intake", "--listen", "127.0.0.1:0", "--providers", &providers][..],
            &["processor", "--once", "--providers", &providers][..],
            &["dev", "--listen", "127.0.0.1:0"][..],
        ] {
            let mut args = command.to_vec();
            args.extend(["--store", &store, "--blobs", blobs]);
            assert_one_line_failure(&args, needle);
            assert_eq!(hookline(&args).status.code(), Some(2), "{args:?}");
        }
    }
}

/// `hookline lambda intake|processor` read the options of `hookline
/// intake|processor` (flags or variables) and check them, then that they
/// run inside Lambda, before the runtime starts: one line and exit 2 for
/// either. A binary named `bootstrap` run bare (as Lambda runs a function
/// on a `provided` runtime) is `hookline lambda $_HANDLER`.
#[test]
fn lambda_commands_check_their_options_and_the_environment_before_the_runtime_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = dir.path().join("providers.toml");
    std::fs::write(&providers, "[providers.gas]\nurl = \"http://127.0.0.1:9/gas\"\n").expect("write");
    let providers = providers.to_string_lossy().into_owned();
    let store = format!("sqlite://{}", dir.path().join("lambda.db").display());
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "lambda",
                "intake",
                "--store",
                "postgres://x",
                "--providers",
                &providers,
            ],
            "unknown store URL",
        ),
        (
            &[
                "lambda",
                "processor",
                "--store",
                "dynamodb://ab",
                "--providers",
                &providers,
            ],
            "table name",
        ),
        (
            &[
                "lambda",
                "processor",
                "--store",
                &store,
                "--providers",
                &providers,
                "--lease",
                "5s",
            ],
            "lease",
        ),
        (
            &[
                "lambda",
                "processor",
                "--store",
                &store,
                "--providers",
                &providers,
                "--deadline-margin",
                "0s",
            ],
            "--deadline-margin",
        ),
        (
            &["lambda", "intake", "--store", &store, "--providers", &providers],
            "AWS_LAMBDA_RUNTIME_API is not set",
        ),
        (
            &[
                "lambda",
                "processor",
                "--store",
                &store,
                "--providers",
                &providers,
            ],
            "AWS_LAMBDA_RUNTIME_API is not set",
        ),
    ];
    for (args, needle) in cases {
        assert_one_line_failure(args, needle);
        assert_eq!(hookline(args).status.code(), Some(2), "{args:?}");
    }

    let bootstrap = dir.path().join("bootstrap");
    std::os::unix::fs::symlink(crate::support::BIN, &bootstrap).expect("symlink");
    let run = |handler: Option<&str>| {
        let mut command = std::process::Command::new(&bootstrap);
        command
            .env("HOOKLINE_STORE", &store)
            .env("HOOKLINE_PROVIDERS", &providers)
            .env("HOOKLINE_LOG", "warn")
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .stdin(Stdio::null());
        match handler {
            Some(handler) => command.env("_HANDLER", handler),
            None => command.env_remove("_HANDLER"),
        };
        command.output().expect("run bootstrap")
    };
    for handler in ["intake", "processor"] {
        let output = run(Some(handler));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{handler}: {stderr}");
        assert!(
            stderr.contains("AWS_LAMBDA_RUNTIME_API is not set"),
            "{handler}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
    let output = run(Some("main.handler"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("main.handler"), "{stderr}");
    assert_eq!(
        output.status.code(),
        run(None).status.code(),
        "no handler: a usage error too"
    );
}
