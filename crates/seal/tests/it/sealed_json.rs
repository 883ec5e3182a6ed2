//! The stored form of a sealed value, and garbage in its place.

use seal::{SealError, Sealed};

use crate::support::{key_file, sealer_over};

#[tokio::test]
async fn a_sealed_value_reads_back_from_its_json() {
    let sealer = sealer_over(&key_file(1), 2).await;
    let sealed = sealer.seal(b"ctx", b"whsec_abc").await.expect("seals");
    let text = sealed.to_json();
    assert!(text.starts_with(r#"{"kid":"local:"#), "{text}");
    assert_eq!(Sealed::from_json(&text).expect("reads"), sealed);
    // serde and to_json/to_value agree.
    assert_eq!(serde_json::to_string(&sealed).expect("serializes"), text);
    assert_eq!(
        serde_json::to_value(&sealed).expect("serializes"),
        sealed.to_value()
    );
    assert_eq!(Sealed::from_value(&sealed.to_value()).expect("reads"), sealed);
}

#[test]
fn garbage_is_an_error_never_a_panic() {
    let good_n = "AAAAAAAAAAAAAAAA"; // 12 bytes
    let good_ct = "AAAAAAAAAAAAAAAAAAAAAA=="; // 16 bytes
    let cases = [
        "".to_owned(),
        "null".to_owned(),
        "[]".to_owned(),
        "{".to_owned(),
        "\"sealed\"".to_owned(),
        "{}".to_owned(),
        format!(r#"{{"kid":"k","dk":"AA==","n":"{good_n}"}}"#),
        format!(r#"{{"kid":"","dk":"AA==","n":"{good_n}","ct":"{good_ct}"}}"#),
        format!(r#"{{"kid":"k","dk":"","n":"{good_n}","ct":"{good_ct}"}}"#),
        format!(r#"{{"kid":"k","dk":"!!","n":"{good_n}","ct":"{good_ct}"}}"#),
        format!(r#"{{"kid":"k","dk":"AA==","n":"AAAA","ct":"{good_ct}"}}"#),
        format!(r#"{{"kid":"k","dk":"AA==","n":"{good_n}","ct":"AAAA"}}"#),
        format!(r#"{{"kid":7,"dk":"AA==","n":"{good_n}","ct":"{good_ct}"}}"#),
        format!(r#"{{"kid":"k","dk":"AA==","n":"{good_n}","ct":"{good_ct}","extra":1}}"#),
        "\u{0}\u{ffff}".to_owned(),
    ];
    for case in &cases {
        match Sealed::from_json(case) {
            Err(SealError::Malformed(why)) => assert!(!why.is_empty(), "{case}"),
            other => panic!("{case:?} gave {other:?}"),
        }
    }
    let ok = format!(r#"{{"kid":"k","dk":"AA==","n":"{good_n}","ct":"{good_ct}"}}"#);
    Sealed::from_json(&ok).expect("the well-formed case reads");
}
