//! Callback signatures as Standard Webhooks defines them (SPEC section 4):
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`,
//! keyed by a tenant's [`SigningSecret`] (`whsec_<base64 of 24..=64 bytes>`).
//!
//! During a rotation a callback carries one signature per secret, newest
//! first, separated by a space; a receiver accepts the message when any one
//! of them verifies with a secret it knows.
//!
//! A secret never shows up in `Debug` output or in an error message: the
//! only way to read it is [`SigningSecret::expose_secret`], for the one place
//! that hands it to its owner.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{KeyInit, Mac};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize as _;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The header carrying the message id (hookline sends the job id).
pub const HEADER_ID: &str = "webhook-id";
/// The header carrying the unix seconds the signature was made at.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The header carrying one or more space-separated `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// How far a timestamp may be from the receiver's clock; the official
/// libraries use five minutes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Key lengths the spec allows, in bytes.
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// Length of a key made by [`SigningSecret::generate`].
const GENERATED_KEY_BYTES: usize = 32;
const PREFIX: &str = "whsec_";

/// Secrets are written padded, but read with or without padding: the
/// official libraries accept both.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A tenant's signing secret: **secret material**.
///
/// Written as `whsec_<base64 of the key>`. `Debug` prints
/// `SigningSecret(whsec_***)`; there is deliberately no `Display`. Serde
/// reads and writes the full `whsec_` string so a store can keep it, which
/// means a serialized value is as secret as the key itself: never log it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    key: Vec<u8>,
}

/// Why a string is not a signing secret. The message never contains the
/// input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseSecretError {
    #[error("a signing secret starts with `whsec_`")]
    MissingPrefix,
    #[error("a signing secret is `whsec_` followed by standard base64, and this one is not valid base64")]
    NotBase64,
    #[error("a signing secret's key is 24 to 64 bytes long, this one has {len}")]
    BadLength { len: usize },
}

impl SigningSecret {
    /// A new secret of 32 random bytes; the randomness is the caller's (use
    /// a cryptographically secure generator such as `rand::rng()`).
    pub fn generate(rng: &mut dyn RngCore) -> Self {
        let mut key = vec![0u8; GENERATED_KEY_BYTES];
        rng.fill_bytes(&mut key);
        Self { key }
    }

    /// The secret as `whsec_<base64>`, to hand to its owner once (for
    /// example when it is created or rotated). Never log it.
    pub fn expose_secret(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("HMAC accepts keys of any length")
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(whsec_***)")
    }
}

impl FromStr for SigningSecret {
    type Err = ParseSecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let encoded = s
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(ParseSecretError::MissingPrefix)?;
        let key = LENIENT.decode(encoded).map_err(|_| ParseSecretError::NotBase64)?;
        if !KEY_BYTES.contains(&key.len()) {
            return Err(ParseSecretError::BadLength { len: key.len() });
        }
        Ok(Self { key })
    }
}

impl Drop for SigningSecret {
    fn drop(&mut self) {
        // Do not leave the key behind in freed memory.
        self.key.zeroize();
    }
}

impl Serialize for SigningSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.expose_secret())
    }
}

impl<'de> Deserialize<'de> for SigningSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One signature, `v1,<base64>`, of `body` sent as message `msg_id` at
/// `timestamp_secs` (unix seconds), keyed by `secret`.
pub fn sign(secret: &SigningSecret, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let mut mac = secret.mac();
    feed(&mut mac, msg_id, timestamp_secs, body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header value: one `v1,...` signature per secret,
/// in the order given (during a rotation: the new secret first, then the
/// old), separated by single spaces. Empty when `secrets` is empty: a tenant
/// always has a secret, so callers treat that as a bug rather than send it.
pub fn signature_header(secrets: &[SigningSecret], msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| sign(secret, msg_id, timestamp_secs, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a signed message was refused. Messages name what is wrong, never a
/// secret or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no secret to verify with")]
    NoSecrets,
    #[error("the {0} header is empty")]
    EmptyHeader(&'static str),
    #[error("the webhook-timestamp header is not unix seconds")]
    BadTimestamp,
    #[error("the webhook-timestamp is {skew_secs} s away from now, more than the {tolerance_secs} s allowed")]
    OutsideTolerance { skew_secs: i64, tolerance_secs: u64 },
    #[error("the webhook-signature header has no v1 signature")]
    NoV1Signature,
    #[error("no signature matches any secret")]
    NoMatch,
}

/// Checks a received message the way the official libraries do: the
/// timestamp is within `tolerance` of `now_secs`, and at least one `v1`
/// signature in `signature_header` matches `body` under one of `secrets`
/// (compared in constant time). Signatures of other versions are skipped.
pub fn verify(
    secrets: &[SigningSecret],
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now_secs: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::NoSecrets);
    }
    if msg_id.is_empty() {
        return Err(VerifyError::EmptyHeader(HEADER_ID));
    }
    if signature_header.trim().is_empty() {
        return Err(VerifyError::EmptyHeader(HEADER_SIGNATURE));
    }
    let timestamp: i64 = timestamp_header
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    let skew = i128::from(timestamp) - i128::from(now_secs);
    if skew.unsigned_abs() > u128::from(tolerance.as_secs()) {
        return Err(VerifyError::OutsideTolerance {
            skew_secs: i64::try_from(skew).unwrap_or(i64::MAX),
            tolerance_secs: tolerance.as_secs(),
        });
    }
    let candidates: Vec<Vec<u8>> = signature_header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        // A malformed entry is one that cannot match, not a reason to stop.
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::NoV1Signature);
    }
    for secret in secrets {
        let mut mac = secret.mac();
        feed(&mut mac, msg_id, timestamp, body);
        if candidates
            .iter()
            .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
        {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

/// The signed content: `{id}.{timestamp}.{body}`, without copying the body.
fn feed(mac: &mut HmacSha256, msg_id: &str, timestamp_secs: i64, body: &[u8]) {
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    // The test vector of the Standard Webhooks libraries (`test_sign_function`
    // in the official Python library's tests).
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TS: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn vector_secret() -> SigningSecret {
        VECTOR_SECRET.parse().expect("the vector's secret parses")
    }

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        assert_eq!(
            sign(&vector_secret(), VECTOR_ID, VECTOR_TS, VECTOR_BODY),
            VECTOR_SIGNATURE
        );
    }

    #[test]
    fn verifies_the_standard_webhooks_test_vector() {
        let secrets = [vector_secret()];
        let check = |sig: &str, body: &[u8], now: i64| {
            verify(
                &secrets,
                VECTOR_ID,
                "1614265330",
                sig,
                body,
                now,
                DEFAULT_TOLERANCE,
            )
        };
        assert_eq!(check(VECTOR_SIGNATURE, VECTOR_BODY, VECTOR_TS), Ok(()));
        // The official tests' "invalid signature": the last byte differs.
        assert_eq!(
            check(
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
                VECTOR_BODY,
                VECTOR_TS
            ),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            check(VECTOR_SIGNATURE, br#"{"test": 2432232315}"#, VECTOR_TS),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(check(VECTOR_SIGNATURE, VECTOR_BODY, VECTOR_TS + 300), Ok(()));
        assert_eq!(
            check(VECTOR_SIGNATURE, VECTOR_BODY, VECTOR_TS + 301),
            Err(VerifyError::OutsideTolerance {
                skew_secs: -301,
                tolerance_secs: 300
            })
        );
        assert!(matches!(
            check(VECTOR_SIGNATURE, VECTOR_BODY, VECTOR_TS - 301),
            Err(VerifyError::OutsideTolerance { skew_secs: 301, .. })
        ));
    }

    #[test]
    fn a_rotation_header_carries_both_signatures_new_first_and_either_secret_verifies_it() {
        let mut rng = rng();
        let old = SigningSecret::generate(&mut rng);
        let new = SigningSecret::generate(&mut rng);
        let header = signature_header(&[new.clone(), old.clone()], "job-1", 1_700_000_000, b"{}");
        assert_eq!(
            header,
            format!(
                "{} {}",
                sign(&new, "job-1", 1_700_000_000, b"{}"),
                sign(&old, "job-1", 1_700_000_000, b"{}")
            )
        );
        for secrets in [
            vec![old.clone()],
            vec![new.clone()],
            vec![old.clone(), new.clone()],
        ] {
            assert_eq!(
                verify(
                    &secrets,
                    "job-1",
                    "1700000000",
                    &header,
                    b"{}",
                    1_700_000_000,
                    DEFAULT_TOLERANCE
                ),
                Ok(())
            );
        }
        let stranger = SigningSecret::generate(&mut rng);
        assert_eq!(
            verify(
                &[stranger],
                "job-1",
                "1700000000",
                &header,
                b"{}",
                1_700_000_000,
                DEFAULT_TOLERANCE
            ),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(signature_header(&[], "job-1", 1, b"{}"), "");
    }

    #[test]
    fn the_id_and_timestamp_are_signed() {
        let secrets = [vector_secret()];
        let sig = sign(&secrets[0], "a", 100, b"x");
        let tol = DEFAULT_TOLERANCE;
        assert_eq!(verify(&secrets, "a", "100", &sig, b"x", 100, tol), Ok(()));
        assert_eq!(
            verify(&secrets, "b", "100", &sig, b"x", 100, tol),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&secrets, "a", "101", &sig, b"x", 100, tol),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn malformed_headers_are_refused_with_a_reason() {
        let secrets = [vector_secret()];
        let tol = DEFAULT_TOLERANCE;
        let sig = sign(&secrets[0], "a", 100, b"x");
        assert_eq!(
            verify(&[], "a", "100", &sig, b"x", 100, tol),
            Err(VerifyError::NoSecrets)
        );
        assert_eq!(
            verify(&secrets, "", "100", &sig, b"x", 100, tol),
            Err(VerifyError::EmptyHeader(HEADER_ID))
        );
        assert_eq!(
            verify(&secrets, "a", "100", " ", b"x", 100, tol),
            Err(VerifyError::EmptyHeader(HEADER_SIGNATURE))
        );
        assert_eq!(
            verify(&secrets, "a", "soon", &sig, b"x", 100, tol),
            Err(VerifyError::BadTimestamp)
        );
        let v2 = sig.replacen("v1,", "v2,", 1);
        assert_eq!(
            verify(&secrets, "a", "100", &v2, b"x", 100, tol),
            Err(VerifyError::NoV1Signature)
        );
        // Unknown versions and garbage are skipped, not fatal: the good one still counts.
        let mixed = format!("v1a,abc v1,!!notbase64 nonsense {sig}");
        assert_eq!(verify(&secrets, "a", "100", &mixed, b"x", 100, tol), Ok(()));
    }

    #[test]
    fn secrets_parse_from_whsec_strings_and_round_trip() {
        let secret = vector_secret();
        assert_eq!(secret.expose_secret(), VECTOR_SECRET);
        // Unpadded and padded base64 are both accepted; written back padded.
        let generated = SigningSecret::generate(&mut rng());
        let text = generated.expose_secret();
        assert!(
            text.starts_with("whsec_") && text.ends_with('='),
            "{}",
            text.len()
        );
        assert_eq!(text.parse::<SigningSecret>(), Ok(generated.clone()));
        assert_eq!(
            text.trim_end_matches('=').parse::<SigningSecret>(),
            Ok(generated.clone())
        );
        let json = serde_json::to_string(&generated).expect("serializes");
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(
            serde_json::from_str::<SigningSecret>(&json).expect("deserializes"),
            generated
        );
    }

    #[test]
    fn bad_secrets_are_refused_without_echoing_them() {
        let short = format!("whsec_{}", STANDARD.encode([7u8; 23]));
        let long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        let cases = [
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                ParseSecretError::MissingPrefix,
            ),
            (
                "whsec_MfKQ9r8GKYqr*wjUPD8ILPZIo2LaLaSw",
                ParseSecretError::NotBase64,
            ),
            (short.as_str(), ParseSecretError::BadLength { len: 23 }),
            (long.as_str(), ParseSecretError::BadLength { len: 65 }),
        ];
        for (input, expected) in cases {
            let err = input.parse::<SigningSecret>().expect_err(input);
            assert_eq!(err, expected);
            let body = input.trim_start_matches("whsec_");
            assert!(!err.to_string().contains(body), "{err} echoes the input");
            let json = format!("\"{input}\"");
            let serde_err = serde_json::from_str::<SigningSecret>(&json).expect_err(input);
            assert!(
                !serde_err.to_string().contains(body),
                "{serde_err} echoes the input"
            );
        }
        assert!(SigningSecret::from_str(&format!("whsec_{}", STANDARD.encode([1u8; 24]))).is_ok());
        assert!(SigningSecret::from_str(&format!("whsec_{}", STANDARD.encode([1u8; 64]))).is_ok());
    }

    #[test]
    fn debug_and_errors_never_show_the_secret() {
        let secret = vector_secret();
        let key = VECTOR_SECRET.trim_start_matches("whsec_");
        let debug = format!("{secret:?}");
        assert_eq!(debug, "SigningSecret(whsec_***)");
        assert!(!format!("{:?}", vec![secret.clone()]).contains(key));
        assert!(!format!("{secret:#?}").contains(key));
        let sig = sign(&secret, "a", 100, b"x");
        let errors = [
            VerifyError::NoSecrets,
            VerifyError::EmptyHeader(HEADER_SIGNATURE),
            VerifyError::BadTimestamp,
            VerifyError::OutsideTolerance {
                skew_secs: 1,
                tolerance_secs: 0,
            },
            VerifyError::NoV1Signature,
            VerifyError::NoMatch,
        ];
        for err in errors {
            let (display, debug) = (err.to_string(), format!("{err:?}"));
            for text in [display, debug] {
                assert!(!text.contains(key) && !text.contains(&sig[3..]), "{text}");
            }
        }
        for err in [
            ParseSecretError::MissingPrefix,
            ParseSecretError::NotBase64,
            ParseSecretError::BadLength { len: 3 },
        ] {
            assert!(!err.to_string().contains(key));
        }
    }
}

/// A tenant's signing secrets: the current one and, for a while after a
/// rotation, the one before it, so receivers can switch without losing a
/// callback. **Secret material**: the serialized form holds the keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantSecrets {
    pub current: SigningSecret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<SigningSecret>,
    /// Until when callbacks are signed with `previous` as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_until: Option<crate::Timestamp>,
}

impl TenantSecrets {
    pub fn new(current: SigningSecret) -> Self {
        Self {
            current,
            previous: None,
            previous_until: None,
        }
    }

    /// `next` becomes current; the current secret keeps signing alongside
    /// it for `overlap` after `now`.
    pub fn rotated(&self, next: SigningSecret, now: crate::Timestamp, overlap: Duration) -> Self {
        let overlap = chrono::Duration::from_std(overlap).unwrap_or(chrono::Duration::MAX);
        Self {
            current: next,
            previous: Some(self.current.clone()),
            previous_until: Some(now.checked_add_signed(overlap).unwrap_or(now)),
        }
    }

    /// The secrets a callback made at `now` is signed with, newest first.
    pub fn signing_at(&self, now: crate::Timestamp) -> Vec<SigningSecret> {
        let mut secrets = vec![self.current.clone()];
        if let (Some(previous), Some(until)) = (&self.previous, self.previous_until)
            && now < until
        {
            secrets.push(previous.clone());
        }
        secrets
    }
}

#[cfg(test)]
mod rotation_tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_rotation_signs_with_both_secrets_until_the_overlap_ends() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let old = SigningSecret::generate(&mut rng);
        let new = SigningSecret::generate(&mut rng);
        let secrets = TenantSecrets::new(old.clone());
        assert_eq!(secrets.signing_at(now), vec![old.clone()]);
        let rotated = secrets.rotated(new.clone(), now, Duration::from_secs(3600));
        assert_eq!(rotated.signing_at(now), vec![new.clone(), old.clone()]);
        let later = now + chrono::Duration::seconds(3600);
        assert_eq!(rotated.signing_at(later), vec![new.clone()]);
        let json = serde_json::to_string(&rotated).expect("serializes");
        assert_eq!(
            serde_json::from_str::<TenantSecrets>(&json).expect("reads"),
            rotated
        );
        assert!(
            !format!("{rotated:?}").contains(&old.expose_secret()[6..]),
            "Debug hides keys"
        );
    }
}
