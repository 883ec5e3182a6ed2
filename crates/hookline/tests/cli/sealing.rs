//! The key that seals secrets at rest (SPEC section 13), from the command
//! line: where each command finds it, the errors when it cannot, and key
//! rotation with `hookline secrets new-key`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::BIN;

/// The binary with `args` and `env`, and no key but the ones they name.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("HOOKLINE_STORE")
        .env_remove("HOOKLINE_SECRETS_KEY_FILE")
        .env_remove("HOOKLINE_KMS_KEY")
        .envs(env.iter().copied())
        .env("HOOKLINE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run hookline")
}

fn ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A usage error: exit 2, one line on stderr holding `needle`.
fn assert_usage(output: &Output, needle: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{what}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{what}: {stderr}");
    assert!(stderr.contains(needle), "{what}: {stderr}");
}

/// The database file and its WAL, as one text.
fn stored(db: &Path) -> String {
    let mut text = String::new();
    for path in [db.to_owned(), db.with_extension("db-wal")] {
        if let Ok(bytes) = std::fs::read(&path) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    text
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn a_dynamodb_store_needs_the_key_named_and_a_key_that_will_not_do_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = dir.path().join("providers.toml");
    std::fs::write(&providers, "[providers.gas]\nurl = \"http://127.0.0.1:9/gas\"\n").expect("write");
    let providers = providers.to_string_lossy().into_owned();
    // Nothing listens there: every case fails before the store is reached.
    let store = "dynamodb://jobs?endpoint=http://127.0.0.1:9&region=us-east-1";
    for args in [
        &["serve", "--store", store, "--providers", &providers][..],
        &["intake", "--store", store, "--providers", &providers],
        &["processor", "--store", store, "--providers", &providers],
        &["keys", "list", "--store", store],
        &["secrets", "rotate", "--tenant", "acme", "--store", store],
    ] {
        assert_usage(&run(args, &[]), "--kms-key", &format!("{args:?}"));
    }

    let missing = dir.path().join("missing.key");
    let missing = missing.to_string_lossy();
    assert_usage(
        &run(
            &["keys", "list", "--store", store, "--secrets-key-file", &missing],
            &[],
        ),
        "secrets new-key",
        "a key file that is not there",
    );
    assert_usage(
        &run(
            &["keys", "list", "--store", store],
            &[("HOOKLINE_SECRETS_KEY_FILE", &missing)],
        ),
        "secrets new-key",
        "the same from the environment",
    );
    let open = dir.path().join("open.key");
    ok(
        &run(
            &["secrets", "new-key", "--key-file", &open.to_string_lossy()],
            &[],
        ),
        "new-key",
    );
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_usage(
        &run(
            &[
                "keys",
                "list",
                "--store",
                store,
                "--secrets-key-file",
                &open.to_string_lossy(),
            ],
            &[],
        ),
        "chmod 600",
        "a key file others may read",
    );
    assert_usage(
        &run(&["keys", "list", "--store", store, "--kms-key", " "], &[]),
        "--kms-key",
        "an empty KMS key",
    );
    // One key or the other, never both.
    let both = run(
        &[
            "keys",
            "list",
            "--store",
            store,
            "--kms-key",
            "arn:aws:kms:us-east-1:123456789012:key/x",
        ],
        &[("HOOKLINE_SECRETS_KEY_FILE", &missing)],
    );
    assert_eq!(
        both.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
}

/// SQLite's default: a key file beside the database, made (0600) by the
/// first command that opens it and used by the next; the secrets it seals
/// are in neither the database nor its WAL.
#[test]
fn on_sqlite_the_key_file_beside_the_database_is_made_once_and_seals_the_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("data").join("hookline.db");
    let store = format!("sqlite://{}", db.display());
    let created = ok(
        &run(&["keys", "create", "--tenant", "acme", "--store", &store], &[]),
        "keys create",
    );
    let first = created
        .lines()
        .nth(1)
        .expect("the tenant's first signing secret")
        .trim()
        .to_owned();
    assert!(first.starts_with("whsec_"), "{created}");
    let key_file = hookline::default_key_file(&db);
    assert!(
        key_file.ends_with("hookline.db.secrets-key"),
        "{}",
        key_file.display()
    );
    assert_eq!(mode(&key_file), 0o600);
    let made = std::fs::read(&key_file).expect("the key file");

    let rotated = ok(
        &run(&["secrets", "rotate", "--tenant", "acme", "--store", &store], &[]),
        "secrets rotate",
    );
    let second = rotated.trim().to_owned();
    assert!(second.starts_with("whsec_") && second != first, "{rotated}");
    assert_eq!(
        std::fs::read(&key_file).expect("the key file"),
        made,
        "made once, then read"
    );

    let text = stored(&db);
    assert!(text.contains("\"sealed\""), "the secrets are stored sealed");
    for secret in [&first, &second] {
        let key = secret.trim_start_matches("whsec_");
        assert!(
            !text.contains(key),
            "a signing secret in the clear in the database or its WAL"
        );
    }
}

/// Rotation: `secrets new-key` puts a new key in front of the file's; what
/// the older key sealed still opens, new seals use the new key, and a
/// process with another installation's key file cannot read the secrets
/// and says why without showing them.
#[test]
fn a_new_key_seals_from_then_on_and_what_older_keys_sealed_still_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hookline.db");
    let store = format!("sqlite://{}", db.display());
    let key_file = dir.path().join("secrets.key");
    let key_file = key_file.to_string_lossy().into_owned();
    let made = run(&["secrets", "new-key", "--key-file", &key_file], &[]);
    ok(&made, "new-key makes the file");
    assert_eq!(mode(Path::new(&key_file)), 0o600);
    let env = [("HOOKLINE_SECRETS_KEY_FILE", key_file.as_str())];

    let created = ok(
        &run(&["keys", "create", "--tenant", "acme", "--store", &store], &env),
        "keys create",
    );
    let first = created
        .lines()
        .nth(1)
        .expect("a signing secret")
        .trim()
        .to_owned();
    assert!(
        !hookline::default_key_file(&db).exists(),
        "the key file named is used, none is made beside the database"
    );

    let again = run(&["secrets", "new-key", "--key-file", &key_file], &[]);
    ok(&again, "new-key rotates");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("1 older kept"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // Reads what the older key sealed, writes under the new one.
    let rotated = ok(
        &run(
            &["secrets", "rotate", "--tenant", "acme", "--store", &store],
            &env,
        ),
        "rotate after a new key",
    );
    let second = rotated.trim().to_owned();
    let again = ok(
        &run(
            &["secrets", "rotate", "--tenant", "acme", "--store", &store],
            &env,
        ),
        "rotate what the new key sealed",
    );
    assert!(again.trim().starts_with("whsec_"), "{again}");

    let other = dir.path().join("other.key");
    let other = other.to_string_lossy().into_owned();
    ok(
        &run(&["secrets", "new-key", "--key-file", &other], &[]),
        "another key file",
    );
    let refused = run(
        &[
            "secrets",
            "rotate",
            "--tenant",
            "acme",
            "--store",
            &store,
            "--secrets-key-file",
            &other,
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not in this key file"), "{stderr}");
    for secret in [&first, &second] {
        assert!(!stderr.contains(secret.trim_start_matches("whsec_")), "{stderr}");
    }
    let text = stored(&db);
    for secret in [&first, &second] {
        assert!(
            !text.contains(secret.trim_start_matches("whsec_")),
            "a signing secret in the clear"
        );
    }
}
