//! Sealing and opening: round trips, contexts, tampering, synthetic
//! nonces, renewal, the data key cache and sealed record members.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use seal::{SEALS_PER_DATA_KEY, SealError, Sealer};

use crate::support::{Known, fresh, key_file, sealer_over, tampered};

const CONTEXT: &[u8] = b"endpoint\0tenant-a\0ep_01";

#[tokio::test]
async fn a_sealed_secret_opens_to_itself() {
    let sealer = sealer_over(&key_file(1), 2).await;
    for plaintext in [b"".as_slice(), b"whsec_abc", &[0u8; 5000]] {
        let sealed = sealer.seal(CONTEXT, plaintext).await.expect("seals");
        assert_eq!(sealed.key_id(), key_file(1).key_ids()[0]);
        assert_eq!(sealed.ciphertext().len(), plaintext.len() + seal::TAG_LEN);
        let opened = sealer.open(CONTEXT, &sealed).await.expect("opens");
        assert_eq!(opened.as_slice(), plaintext);
    }
}

#[tokio::test]
async fn a_sealed_secret_does_not_open_for_another_record() {
    let sealer = sealer_over(&key_file(1), 2).await;
    let sealed = sealer.seal(CONTEXT, b"whsec_abc").await.expect("seals");
    for other in [
        b"endpoint\0tenant-a\0ep_02".as_slice(),
        b"endpoint\0tenant-b\0ep_01",
        b"",
    ] {
        let err = sealer.open(other, &sealed).await.expect_err("another context");
        assert!(matches!(err, SealError::DoesNotOpen), "{err:?}");
        assert!(err.to_string().contains("another context"), "{err}");
    }
}

#[tokio::test]
async fn an_altered_ciphertext_nonce_or_wrapped_key_does_not_open() {
    let file = key_file(1);
    let sealer = sealer_over(&file, 2).await;
    let sealed = sealer.seal(CONTEXT, b"whsec_abc").await.expect("seals");

    for field in ["ct", "n"] {
        let err = sealer
            .open(CONTEXT, &tampered(&sealed, field))
            .await
            .expect_err(field);
        assert!(matches!(err, SealError::DoesNotOpen), "{field}: {err:?}");
        assert!(err.to_string().contains("altered"), "{err}");
    }

    // A fresh sealer, so the wrapped key is unwrapped rather than cached.
    let other = sealer_over(&file, 3).await;
    let err = other
        .open(CONTEXT, &tampered(&sealed, "dk"))
        .await
        .expect_err("dk");
    assert!(matches!(err, SealError::Refused(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("does not unwrap") && text.contains(sealed.key_id()),
        "{text}"
    );
    // The untouched value still opens there: the failure was not cached.
    assert_eq!(
        other.open(CONTEXT, &sealed).await.expect("opens").as_slice(),
        b"whsec_abc"
    );
}

#[tokio::test]
async fn the_same_input_under_one_data_key_seals_to_the_same_bytes() {
    let sealer = sealer_over(&key_file(1), 2).await;
    let a = sealer.seal(CONTEXT, b"whsec_abc").await.expect("seals");
    let again = sealer.seal(CONTEXT, b"whsec_abc").await.expect("seals");
    assert_eq!(a, again);
    assert_eq!(a.to_json(), again.to_json());

    let other_plaintext = sealer.seal(CONTEXT, b"whsec_abd").await.expect("seals");
    let other_context = sealer
        .seal(b"endpoint\0tenant-a\0ep_02", b"whsec_abc")
        .await
        .expect("seals");
    assert_ne!(a.nonce(), other_plaintext.nonce());
    assert_ne!(a.nonce(), other_context.nonce());
    assert_ne!(other_plaintext.nonce(), other_context.nonce());

    // Where the context ends and the plaintext begins is part of the
    // nonce's input: each pair is one byte string concatenated, the second
    // also with a NUL between them (as `context || 0x00 || plaintext`
    // would be, contexts holding NULs themselves).
    for ((c1, p1), (c2, p2)) in [
        (
            (b"ab".as_slice(), b"c".as_slice()),
            (b"a".as_slice(), b"bc".as_slice()),
        ),
        ((b"a\0b", b"c"), (b"a", b"b\0c")),
    ] {
        let left = sealer.seal(c1, p1).await.expect("seals");
        let right = sealer.seal(c2, p2).await.expect("seals");
        assert_ne!(left.nonce(), right.nonce(), "{c1:?} {p1:?} / {c2:?} {p2:?}");
    }
}

#[tokio::test]
async fn a_renewed_sealer_seals_under_a_new_data_key_and_still_opens_the_old() {
    let sealer = sealer_over(&key_file(1), 2).await;
    let first_key = sealer.data_key_id();
    let old = sealer.seal(CONTEXT, b"whsec_abc").await.expect("seals");
    sealer.renew().await.expect("renews");
    assert_ne!(sealer.data_key_id(), first_key);
    let new = sealer.seal(CONTEXT, b"whsec_abc").await.expect("seals");
    assert_ne!(old.wrapped_key(), new.wrapped_key());
    assert_ne!(old.ciphertext(), new.ciphertext());
    for sealed in [&old, &new] {
        assert_eq!(
            sealer.open(CONTEXT, sealed).await.expect("opens").as_slice(),
            b"whsec_abc"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_key_is_renewed_after_its_seals_and_once() {
    let known = Arc::new(Known::default());
    let sealer = Arc::new(Sealer::start(known.clone(), fresh(1)).await.expect("starts"));
    let first = sealer.data_key_id();
    for i in 0..SEALS_PER_DATA_KEY {
        let sealed = sealer.seal(b"c", &i.to_be_bytes()).await.expect("seals");
        assert_eq!(sealed.wrapped_key(), b"known:\x01", "seal {i}");
    }
    assert_eq!(sealer.data_key_id(), first);
    // The next seals, from several tasks at once, make one new key.
    let tasks: Vec<_> = (0..8)
        .map(|i: u8| {
            let sealer = sealer.clone();
            tokio::spawn(async move { sealer.seal(b"c", &[i]).await })
        })
        .collect();
    for task in tasks {
        let sealed = task.await.expect("no panic").expect("seals");
        assert_eq!(sealed.wrapped_key(), b"known:\x02");
    }
    assert_eq!(known.made.load(Ordering::SeqCst), 2);
    assert_ne!(sealer.data_key_id(), first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_many_records_unwraps_each_data_key_once() {
    let known = Arc::new(Known::default());
    let writer = Sealer::start(known.clone(), fresh(1)).await.expect("starts");
    let mut sealed = Vec::new();
    for i in 0..50u32 {
        sealed.push((
            format!("record {i}"),
            writer
                .seal(format!("record {i}").as_bytes(), &i.to_be_bytes())
                .await
                .expect("seals"),
        ));
    }
    writer.renew().await.expect("renews");
    for i in 50..60u32 {
        sealed.push((
            format!("record {i}"),
            writer
                .seal(format!("record {i}").as_bytes(), &i.to_be_bytes())
                .await
                .expect("seals"),
        ));
    }

    // Another process: nothing cached; every record opened at once.
    let reader = Arc::new(Sealer::start(known.clone(), fresh(2)).await.expect("starts"));
    let tasks: Vec<_> = sealed
        .into_iter()
        .enumerate()
        .map(|(i, (context, sealed))| {
            let reader = reader.clone();
            tokio::spawn(async move {
                let opened = reader.open(context.as_bytes(), &sealed).await.expect("opens");
                assert_eq!(opened.as_slice(), &u32::try_from(i).expect("small").to_be_bytes());
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("no panic");
    }
    assert_eq!(
        known.unwrapped.load(Ordering::SeqCst),
        2,
        "one unwrap per data key"
    );
}

#[tokio::test]
async fn a_records_secret_members_are_sealed_and_open_back_in_place() {
    let sealer = sealer_over(&key_file(1), 2).await;
    let record = r#"{"v":2,"id":"ep_01","secrets":{"current":"whsec_b"},"url":"https://example.com/h","auth":{"type":"bearer","token":"t0k"},"z":null}"#;
    let sealed = sealer
        .seal_record(CONTEXT, record, &["secrets", "auth", "absent"])
        .await
        .expect("seals");
    assert!(
        sealed.starts_with(r#"{"v":2,"id":"ep_01","url":"https://example.com/h","z":null,"sealed":{"#),
        "{sealed}"
    );
    assert!(!sealed.contains("whsec_") && !sealed.contains("t0k"), "{sealed}");
    let context_of = |r: &seal::RecordView<'_, '_>| {
        format!("endpoint\0tenant-a\0{}", r.string("id").unwrap_or_default()).into_bytes()
    };
    // The members come back where "sealed" was, in their order.
    let opened = sealer.open_record(&sealed, context_of).await.expect("opens");
    assert_eq!(
        opened,
        r#"{"v":2,"id":"ep_01","url":"https://example.com/h","z":null,"secrets":{"current":"whsec_b"},"auth":{"type":"bearer","token":"t0k"}}"#
    );
    // A record sealed for another id does not open as this one.
    let moved = sealed.replace(r#""id":"ep_01""#, r#""id":"ep_02""#);
    let err = sealer
        .open_record(&moved, context_of)
        .await
        .expect_err("another record");
    assert!(matches!(err, SealError::DoesNotOpen), "{err:?}");
    // Records without secrets, and records written before sealing, pass as they are.
    assert_eq!(
        sealer
            .seal_record(CONTEXT, r#"{"v":1,"id":"x"}"#, &["secrets"])
            .await
            .expect("no secrets"),
        r#"{"v":1,"id":"x"}"#
    );
    assert!(matches!(
        sealer.open_record(record, context_of).await.expect("plaintext"),
        std::borrow::Cow::Borrowed(r) if r == record
    ));
    // Sealing twice would lose the first sealed members: refused.
    let err = sealer
        .seal_record(CONTEXT, &sealed, &["url"])
        .await
        .expect_err("sealed twice");
    assert!(matches!(err, SealError::Malformed(_)), "{err:?}");
    for garbage in [
        "",
        "[1]",
        "{\"sealed\":\"garbage\"}",
        "{\"sealed\":{}}",
        "{\"a\":1",
    ] {
        let err = sealer.open_record(garbage, context_of).await.expect_err(garbage);
        assert!(matches!(err, SealError::Malformed(_)), "{garbage}: {err:?}");
    }
    // A value sealed by `seal` (not a list of members) is refused as such.
    let plain = sealer.seal(CONTEXT, b"not members").await.expect("seals");
    let odd = format!(r#"{{"id":"ep_01","sealed":{}}}"#, plain.to_json());
    let err = sealer
        .open_record(&odd, context_of)
        .await
        .expect_err("not members");
    assert!(
        matches!(err, SealError::Malformed(_)) && !err.to_string().contains("not members"),
        "{err}"
    );
}
