//! Nothing secret in Debug, Display or errors.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::SeedableRng as _;
use seal::{DataKey, KeyFile, RngFresh, SealError, Sealer};
use zeroize::Zeroizing;

use crate::support::{Known, assert_shows_none, fresh, key_file, sealer_over, tampered};

fn file_keys(file: &KeyFile) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("k");
    file.save(&path).expect("saves");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("reads")).expect("JSON");
    json["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| B64.decode(k["key"].as_str().expect("a key")).expect("base64"))
        .collect()
}

#[test]
fn a_data_key_shows_its_id_only() {
    let bytes = [0x5au8; 32];
    let key = DataKey::new(Zeroizing::new(bytes), b"wrapped");
    let shown = format!("{key:?} {key:#?}");
    assert!(
        shown.contains(key.id()) && shown.contains("[redacted]"),
        "{shown}"
    );
    assert!(
        key.id().starts_with("dk:") && key.id().len() == 19,
        "{}",
        key.id()
    );
    assert_shows_none(&shown, &[bytes.to_vec()]);
}

#[tokio::test]
async fn key_files_sealers_and_their_errors_show_no_key() {
    let file = key_file(1).rotated(&*fresh(9)).expect("rotates");
    let keys = file_keys(&file);
    assert_eq!(keys.len(), 2);
    let shown = format!("{file:?} {file:#?}");
    assert!(shown.contains(file.key_ids()[0]), "{shown}");
    assert_shows_none(&shown, &keys);

    let sealer = sealer_over(&file, 2).await;
    let sealed = sealer.seal(b"ctx", b"whsec_abc").await.expect("seals");
    let shown = format!("{sealer:?} {sealer:#?} {sealed:?}");
    assert_shows_none(&shown, &keys);
    assert!(!shown.contains("whsec_abc"));

    let errors = [
        sealer.open(b"other", &sealed).await.expect_err("context"),
        sealer_over(&file, 3)
            .await
            .open(b"ctx", &tampered(&sealed, "dk"))
            .await
            .expect_err("dk"),
        sealer_over(&key_file(5), 3)
            .await
            .open(b"ctx", &sealed)
            .await
            .expect_err("unknown key"),
    ];
    for err in &errors {
        let shown = format!("{err} {err:?}");
        assert_shows_none(&shown, &keys);
        assert!(!shown.contains("whsec_abc"), "{shown}");
    }
}

#[tokio::test]
async fn a_sealer_over_known_data_keys_never_shows_them() {
    let sealer = Sealer::start(Arc::new(Known::default()), fresh(1))
        .await
        .expect("starts");
    sealer.renew().await.expect("renews");
    let sealed = sealer.seal(b"ctx", b"secret").await.expect("seals");
    let err = sealer.open(b"nope", &sealed).await.expect_err("context");
    let shown = format!("{sealer:?} {sealer:#?} {err} {err:?} {sealed:?}");
    assert_shows_none(
        &shown,
        &[Known::key_bytes(1).to_vec(), Known::key_bytes(2).to_vec()],
    );
    let rng = RngFresh::new(rand::rngs::StdRng::from_seed([7; 32]));
    assert_eq!(format!("{rng:?}"), "RngFresh([redacted])");
    assert!(matches!(err, SealError::DoesNotOpen));
}
