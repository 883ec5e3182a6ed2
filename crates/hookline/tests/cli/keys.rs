//! `hookline keys`: created, listed and revoked; a key is shown once.

use crate::support::{assert_one_line_failure, create_key, hookline};

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
