use std::path::{Path, PathBuf};

use blobs::{BlobError, BlobRef, BlobStore, FileBlobs, MAX_PAYLOAD_BYTES};
use bytes::Bytes;

use crate::payload;

fn store() -> (tempfile::TempDir, FileBlobs) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FileBlobs::new(dir.path().join("blobs"));
    (dir, store)
}

fn blob_path(store: &FileBlobs, tenant: &str, blob: &BlobRef) -> PathBuf {
    store.dir().join(tenant).join(blob.hex())
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn a_put_blob_reads_back_as_the_same_bytes() {
    let (_dir, store) = store();
    let bytes = payload(100 * 1024, 1);
    let blob = store.put("acme", bytes.clone()).await.expect("put");
    assert_eq!(blob, BlobRef::of(&bytes));
    assert_eq!(blob.len(), 100 * 1024);
    assert_eq!(store.get("acme", &blob).await.expect("get"), bytes);
    assert!(store.describe().starts_with("file:///"), "{}", store.describe());
    assert!(store.describe().ends_with("/blobs"), "{}", store.describe());
}

#[tokio::test]
async fn the_same_bytes_put_again_are_the_same_blob_in_one_file() {
    let (_dir, store) = store();
    let bytes = payload(70_000, 2);
    let first = store.put("acme", bytes.clone()).await.expect("put");
    let again = store.put("acme", bytes.clone()).await.expect("put again");
    let (a, b) = tokio::join!(store.put("acme", bytes.clone()), store.put("acme", bytes.clone()));
    assert_eq!(first, again);
    assert_eq!(a.expect("concurrent put"), first);
    assert_eq!(b.expect("concurrent put"), first);
    assert_eq!(files(store.dir()), vec![blob_path(&store, "acme", &first)]);
    assert_eq!(store.get("acme", &first).await.expect("get"), bytes);
}

#[tokio::test]
async fn a_tenant_reads_only_its_own_blobs() {
    let (_dir, store) = store();
    let bytes = payload(1000, 3);
    let blob = store.put("acme", bytes.clone()).await.expect("put");
    assert_eq!(store.get("globex", &blob).await, Err(BlobError::Missing(blob)));
    let theirs = store.put("globex", bytes).await.expect("put");
    assert_eq!(theirs, blob);
    assert_eq!(files(store.dir()).len(), 2, "one file per tenant");
}

#[tokio::test]
async fn a_blob_never_put_is_missing() {
    let (_dir, store) = store();
    let blob = BlobRef::of(b"never put");
    let err = store.get("acme", &blob).await.expect_err("missing");
    assert_eq!(err, BlobError::Missing(blob));
    assert!(!err.is_transient());
    assert!(err.to_string().contains("not in the blob store"), "{err}");
}

#[tokio::test]
async fn a_file_altered_on_disk_is_altered_never_other_bytes() {
    let (_dir, store) = store();
    let bytes = payload(5000, 4);
    let blob = store.put("acme", bytes.clone()).await.expect("put");
    let path = blob_path(&store, "acme", &blob);

    let mut flipped = bytes.to_vec();
    flipped[2500] ^= 0x01;
    std::fs::write(&path, &flipped).expect("alter");
    let err = store.get("acme", &blob).await.expect_err("altered");
    assert_eq!(
        err,
        BlobError::Altered {
            expected: blob,
            found_len: 5000
        }
    );
    assert!(!err.is_transient());
    assert!(err.to_string().contains("altered"), "{err}");

    std::fs::write(&path, &bytes[..4999]).expect("truncate");
    assert!(matches!(
        store.get("acme", &blob).await,
        Err(BlobError::Altered { found_len: 4999, .. })
    ));

    std::fs::write(&path, b"").expect("empty");
    assert!(matches!(
        store.get("acme", &blob).await,
        Err(BlobError::Altered { found_len: 0, .. })
    ));

    let mut longer = bytes.to_vec();
    longer.push(0);
    std::fs::write(&path, &longer).expect("append");
    assert!(matches!(
        store.get("acme", &blob).await,
        Err(BlobError::Altered { found_len: 5001, .. })
    ));

    // Putting the payload again mends it.
    store.put("acme", bytes.clone()).await.expect("put again");
    assert_eq!(store.get("acme", &blob).await.expect("mended"), bytes);
}

#[tokio::test]
async fn a_deleted_blob_is_missing_and_deleting_it_again_is_fine() {
    let (_dir, store) = store();
    let blob = store.put("acme", payload(300, 5)).await.expect("put");
    store.delete("acme", &blob).await.expect("delete");
    assert_eq!(store.get("acme", &blob).await, Err(BlobError::Missing(blob)));
    store.delete("acme", &blob).await.expect("delete again");
    store
        .delete("acme", &BlobRef::of(b"never"))
        .await
        .expect("delete never put");
    assert!(files(store.dir()).is_empty());
}

#[tokio::test]
async fn a_tenant_that_could_leave_its_directory_is_refused() {
    let (dir, store) = store();
    let blob = BlobRef::of(b"x");
    for tenant in ["", "..", "../other", "a/b", "/etc", "a\0b", "."] {
        let refused = |r: Result<(), BlobError>| matches!(r, Err(BlobError::InvalidTenant(_)));
        let put = store.put(tenant, Bytes::from_static(b"x")).await;
        assert!(refused(put.map(|_| ())), "{tenant:?}");
        assert!(refused(store.get(tenant, &blob).await.map(|_| ())), "{tenant:?}");
        assert!(refused(store.delete(tenant, &blob).await), "{tenant:?}");
    }
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
}

#[tokio::test]
async fn payloads_of_one_and_four_mib_read_back_byte_for_byte() {
    let (_dir, store) = store();
    for (len, seed) in [(1024 * 1024, 6), (MAX_PAYLOAD_BYTES, 7)] {
        let bytes = payload(len, seed);
        let blob = store.put("acme", bytes.clone()).await.expect("put");
        let read = store.get("acme", &blob).await.expect("get");
        assert_eq!(read.len(), len);
        assert!(read == bytes, "{len} bytes differ");
        assert_eq!(
            std::fs::read(blob_path(&store, "acme", &blob)).expect("file"),
            bytes
        );
    }
    let over = payload(MAX_PAYLOAD_BYTES + 1, 8);
    assert_eq!(
        store.put("acme", over).await,
        Err(BlobError::TooLarge(MAX_PAYLOAD_BYTES as u64 + 1))
    );
}

#[cfg(unix)]
#[tokio::test]
async fn blob_files_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_dir, store) = store();
    let blob = store.put("acme", payload(10, 9)).await.expect("put");
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&blob_path(&store, "acme", &blob)), 0o600);
    assert_eq!(mode(&store.dir().join("acme")), 0o700);
}

#[tokio::test]
async fn a_store_shows_no_payload_in_debug() {
    let (_dir, store) = store();
    let bytes = Bytes::from_static(b"secret-payload-text");
    let blob = store.put("acme", bytes).await.expect("put");
    let shown = format!("{store:?} {blob:?} {:?}", BlobError::Missing(blob));
    assert!(!shown.contains("secret-payload-text"), "{shown}");
}

fn age_file(path: &Path, by: std::time::Duration) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open to set its time");
    file.set_modified(std::time::SystemTime::now() - by)
        .expect("set mtime");
}

#[tokio::test]
async fn the_purge_removes_blobs_last_put_before_the_expiry_and_keeps_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = std::time::Duration::from_secs(86_400);
    let store = FileBlobs::new(dir.path().join("blobs")).expiring_after(day);
    let old = store.put("acme", payload(70_000, 1)).await.expect("put");
    let fresh = store.put("acme", payload(70_000, 2)).await.expect("put");
    let shared = store.put("other", payload(70_000, 3)).await.expect("put");
    age_file(&blob_path(&store, "acme", &old), 2 * day);
    age_file(&blob_path(&store, "other", &shared), 2 * day);
    // Put again (a second event with the same payload): it lasts from now.
    store.put("other", payload(70_000, 3)).await.expect("put again");
    let crashed = dir.path().join("blobs/acme/.blob-left.tmp");
    std::fs::write(&crashed, b"half").expect("write");
    age_file(&crashed, 2 * day);

    assert_eq!(store.purge_expired().await, Ok(1));
    assert_eq!(store.get("acme", &old).await, Err(BlobError::Missing(old)));
    assert!(store.get("acme", &fresh).await.is_ok());
    assert!(store.get("other", &shared).await.is_ok());
    assert!(!crashed.exists(), "a put that never finished is removed too");
    assert_eq!(store.purge_expired().await, Ok(0));
}

#[tokio::test]
async fn without_an_expiry_the_purge_removes_nothing() {
    let (_dir, store) = store();
    let blob = store.put("acme", payload(70_000, 1)).await.expect("put");
    age_file(
        &blob_path(&store, "acme", &blob),
        std::time::Duration::from_secs(400 * 86_400),
    );
    assert_eq!(store.purge_expired().await, Ok(0));
    assert!(store.get("acme", &blob).await.is_ok());
    let nowhere =
        FileBlobs::new("/nonexistent/hookline-blobs").expiring_after(std::time::Duration::from_secs(1));
    assert_eq!(nowhere.purge_expired().await, Ok(0));
}
