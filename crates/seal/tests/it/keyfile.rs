//! Key files: rotation, permissions, formats, and racing creators.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::{Arc, Barrier};

use seal::{KeyFile, SealError};

use crate::support::{fresh, key_file, sealer_over};

const CONTEXT: &[u8] = b"source\0tenant-a\0src_01";

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).expect("exists").permissions().mode() & 0o777
}

#[tokio::test]
async fn a_rotated_key_file_opens_old_seals_until_the_older_keys_are_dropped() {
    let old = key_file(1);
    let old_id = old.key_ids()[0].to_owned();
    let before = sealer_over(&old, 2)
        .await
        .seal(CONTEXT, b"old secret")
        .await
        .expect("seals");
    assert_eq!(before.key_id(), old_id);

    let rotated = old.rotated(&*fresh(3)).expect("rotates");
    assert_eq!(rotated.key_ids().len(), 2);
    assert_eq!(rotated.key_ids()[1], old_id);
    let new_id = rotated.key_ids()[0].to_owned();
    assert_ne!(new_id, old_id);

    let sealer = sealer_over(&rotated, 4).await;
    assert_eq!(
        sealer
            .open(CONTEXT, &before)
            .await
            .expect("old seals open")
            .as_slice(),
        b"old secret"
    );
    let after = sealer.seal(CONTEXT, b"new secret").await.expect("seals");
    assert_eq!(after.key_id(), new_id);

    let newest_only = rotated.without_older();
    assert_eq!(newest_only.key_ids(), [new_id.as_str()]);
    let sealer = sealer_over(&newest_only, 5).await;
    assert_eq!(
        sealer
            .open(CONTEXT, &after)
            .await
            .expect("new seals open")
            .as_slice(),
        b"new secret"
    );
    let err = sealer
        .open(CONTEXT, &before)
        .await
        .expect_err("the old key is gone");
    assert!(
        matches!(&err, SealError::UnknownKey { key_id } if *key_id == old_id),
        "{err:?}"
    );
    assert!(err.to_string().contains(&old_id), "{err}");
    assert!(!err.is_retryable());
}

#[test]
fn a_saved_key_file_is_private_and_reads_back() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("secrets.key");
    let file = key_file(1).rotated(&*fresh(2)).expect("rotates");
    file.save(&path).expect("saves");
    assert_eq!(mode_of(&path), 0o600);
    let loaded = KeyFile::load(&path).expect("loads");
    assert_eq!(loaded.key_ids(), file.key_ids());

    let text = fs::read_to_string(&path).expect("reads");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(json["kind"], "hookline-secrets-key");
    assert_eq!(json["v"], 1);
    assert_eq!(json["keys"].as_array().expect("keys").len(), 2);
    assert_eq!(json["keys"][0]["id"], file.key_ids()[0]);

    // save replaces; nothing temporary is left beside it.
    let replaced = file.without_older();
    replaced.save(&path).expect("saves again");
    assert_eq!(KeyFile::load(&path).expect("loads").key_ids(), replaced.key_ids());
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("lists")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["secrets.key"]);
}

#[test]
fn a_key_file_others_may_read_is_refused_naming_chmod_600() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("secrets.key");
    key_file(1).save(&path).expect("saves");
    for mode in [0o644, 0o640, 0o604, 0o660, 0o606] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        let err = KeyFile::load(&path).expect_err("too open");
        let text = err.to_string();
        assert!(matches!(err, SealError::KeyFile { .. }), "{err:?}");
        assert!(
            text.contains("chmod 600") && text.contains(&format!("{mode:04o}")),
            "{text}"
        );
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).expect("chmod");
    KeyFile::load(&path).expect("owner-only read is fine");
}

#[test]
fn other_kinds_versions_and_garbage_are_refused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("secrets.key");
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // 32 bytes
    let id = "local:0123456789abcdef";
    let cases = [
        (
            format!(r#"{{"kind":"other","v":1,"keys":[{{"id":"{id}","key":"{key}"}}]}}"#),
            "kind",
        ),
        (
            format!(r#"{{"kind":"hookline-secrets-key","v":2,"keys":[{{"id":"{id}","key":"{key}"}}]}}"#),
            "version 2",
        ),
        (
            r#"{"kind":"hookline-secrets-key","v":1,"keys":[]}"#.to_owned(),
            "no keys",
        ),
        (
            format!(r#"{{"kind":"hookline-secrets-key","v":1,"keys":[{{"id":"mine","key":"{key}"}}]}}"#),
            "id",
        ),
        (
            format!(
                r#"{{"kind":"hookline-secrets-key","v":1,"keys":[{{"id":"{id}","key":"{key}"}},{{"id":"{id}","key":"{key}"}}]}}"#
            ),
            "twice",
        ),
        (
            format!(r#"{{"kind":"hookline-secrets-key","v":1,"keys":[{{"id":"{id}","key":"c2hvcnQ="}}]}}"#),
            "32 bytes",
        ),
        (
            format!(
                r#"{{"kind":"hookline-secrets-key","v":1,"keys":[{{"id":"{id}","key":"not base64!"}}]}}"#
            ),
            "base64",
        ),
        (
            r#"{"kind":"hookline-secrets-key","v":1,"keys":"AAECAwQF-a-secret"}"#.to_owned(),
            "JSON error",
        ),
        ("not json at all".to_owned(), "JSON error"),
    ];
    for (text, says) in cases {
        fs::write(&path, &text).expect("writes");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        let err = KeyFile::load(&path).expect_err(&text);
        let shown = err.to_string();
        assert!(matches!(err, SealError::KeyFile { .. }), "{text}: {err:?}");
        assert!(shown.contains(says), "{text}: {shown}");
        for secret in [key, "c2hvcnQ=", "not base64!", "AAECAwQF-a-secret"] {
            assert!(!shown.contains(secret), "{shown} echoes the file");
        }
    }
}

#[test]
fn creators_racing_for_one_path_all_end_with_the_one_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("secrets.key");
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let barrier = barrier.clone();
            let path = path.clone();
            std::thread::spawn(move || {
                let mine = key_file(100 + i as u64);
                barrier.wait();
                let got = mine.save_new(&path).expect("saves or loads the winner's");
                got.key_ids().iter().map(|id| id.to_string()).collect::<Vec<_>>()
            })
        })
        .collect();
    let seen: Vec<Vec<String>> = handles.into_iter().map(|h| h.join().expect("no panic")).collect();
    let on_disk = KeyFile::load(&path).expect("loads");
    for ids in &seen {
        assert_eq!(ids, &on_disk.key_ids(), "every creator agrees with the file");
    }
    assert_eq!(mode_of(&path), 0o600);
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("lists")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["secrets.key"], "no temporary file left");
}

#[test]
fn load_or_create_makes_the_file_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("nested-ok.key");
    let made = KeyFile::load_or_create(&path, &*fresh(1)).expect("creates");
    assert_eq!(mode_of(&path), 0o600);
    let again = KeyFile::load_or_create(&path, &*fresh(2)).expect("loads");
    assert_eq!(made.key_ids(), again.key_ids());
    let err = KeyFile::load_or_create(&dir.path().join("missing-dir/x.key"), &*fresh(3)).expect_err("no dir");
    assert!(matches!(err, SealError::Io { .. }), "{err:?}");
}
