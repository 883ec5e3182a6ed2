//! AWS KMS as the wrapping key: a data key is made by `GenerateDataKey`
//! and unwrapped by `Decrypt`, both under one encryption context, so a
//! ciphertext made for another purpose does not decrypt here.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::{Zeroize, Zeroizing};

use crate::key::DATA_KEY_LEN;
use crate::{DataKey, Fresh, KeyWrap, SealError};

/// The encryption context of every data key: `{"purpose": "hookline data key"}`.
pub const ENCRYPTION_CONTEXT: (&str, &str) = ("purpose", "hookline data key");

/// KMS error codes that mean "not now" rather than "no".
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "KMSInternalException",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// A KMS key wrapping data keys. `Debug` shows the key's ARN only.
pub struct Kms {
    client: aws_sdk_kms::Client,
    key_arn: String,
}

impl Kms {
    /// New data keys are made under `key_arn` (a key ARN, or an alias ARN);
    /// `Decrypt` names the key each sealed value records.
    pub fn new(client: aws_sdk_kms::Client, key_arn: impl Into<String>) -> Self {
        Kms {
            client,
            key_arn: key_arn.into(),
        }
    }

    /// [`Kms::new`] with a client configured the AWS SDK's standard way
    /// (credentials, `AWS_ENDPOINT_URL_KMS` or `AWS_ENDPOINT_URL`), in the
    /// region the key's ARN names (the environment's for a bare key id).
    pub async fn from_environment(key_arn: impl Into<String>) -> Self {
        let key_arn = key_arn.into();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = arn_region(&key_arn) {
            loader = loader.region(aws_config::Region::new(region.to_owned()));
        }
        let config = loader.load().await;
        Self::new(aws_sdk_kms::Client::new(&config), key_arn)
    }
}

/// The region of `arn:PARTITION:kms:REGION:ACCOUNT:...`.
fn arn_region(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(5, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("kms"), Some(region)) if !region.is_empty() => Some(region),
        _ => None,
    }
}

#[async_trait]
impl KeyWrap for Kms {
    fn key_id(&self) -> &str {
        &self.key_arn
    }

    async fn new_data_key(&self, _fresh: &dyn Fresh) -> Result<(DataKey, Vec<u8>), SealError> {
        let (name, value) = ENCRYPTION_CONTEXT;
        let mut out = self
            .client
            .generate_data_key()
            .key_id(&self.key_arn)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(name, value)
            .send()
            .await
            .map_err(|e| classify("GenerateDataKey", e))?;
        let wrapped = out.ciphertext_blob.take().map(Blob::into_inner).ok_or_else(|| {
            SealError::Unavailable("KMS GenerateDataKey: the answer held no CiphertextBlob".to_owned())
        })?;
        let key = plaintext_key("GenerateDataKey", out.plaintext.take())?;
        Ok((DataKey::new(key, &wrapped), wrapped))
    }

    async fn unwrap_key(&self, key_id: &str, wrapped: &[u8]) -> Result<DataKey, SealError> {
        let (name, value) = ENCRYPTION_CONTEXT;
        let mut out = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .encryption_context(name, value)
            .send()
            .await
            .map_err(|e| classify("Decrypt", e))?;
        let key = plaintext_key("Decrypt", out.plaintext.take())?;
        Ok(DataKey::new(key, wrapped))
    }
}

/// The 32 bytes of an answer's `Plaintext`, the SDK's copy zeroized.
fn plaintext_key(op: &str, plaintext: Option<Blob>) -> Result<Zeroizing<[u8; DATA_KEY_LEN]>, SealError> {
    let mut bytes = plaintext
        .map(Blob::into_inner)
        .ok_or_else(|| SealError::Unavailable(format!("KMS {op}: the answer held no Plaintext")))?;
    let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
    let fits = bytes.len() == DATA_KEY_LEN;
    if fits {
        key.copy_from_slice(&bytes);
    }
    let len = bytes.len();
    bytes.zeroize();
    if !fits {
        return Err(SealError::Refused(format!(
            "KMS {op}: the plaintext is {len} bytes, not an AES-256 data key's {DATA_KEY_LEN}"
        )));
    }
    Ok(key)
}

/// `Unavailable` (retryable) or `Refused` (permanent), with KMS's code and
/// message (which never hold key material: neither operation sends any,
/// and KMS does not echo its answers' plaintext in errors).
fn classify<E>(op: &str, err: SdkError<E>) -> SealError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown error");
            let message = service.err().message().unwrap_or("no message");
            let status = service.raw().status();
            let text = format!("KMS {op}: {code} (HTTP {}): {message}", status.as_u16());
            if RETRYABLE_CODES.contains(&code) || status.is_server_error() || status.as_u16() == 429 {
                SealError::Unavailable(text)
            } else {
                SealError::Refused(text)
            }
        }
        // A request that could not be built will not build next time either.
        SdkError::ConstructionFailure(_) => {
            SealError::Refused(format!("KMS {op}: {}", DisplayErrorContext(&err)))
        }
        // Timeouts, dispatch failures (not sent or no answer), answers that
        // could not be read, and whatever the SDK adds later.
        _ => SealError::Unavailable(format!("KMS {op}: {}", DisplayErrorContext(&err))),
    }
}

impl fmt::Debug for Kms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kms")
            .field("key_arn", &self.key_arn)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::arn_region;

    #[test]
    fn the_region_is_read_from_a_key_or_alias_arn_only() {
        assert_eq!(
            arn_region("arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
            Some("eu-west-1")
        );
        assert_eq!(
            arn_region("arn:aws-cn:kms:cn-north-1:123456789012:alias/hookline"),
            Some("cn-north-1")
        );
        assert_eq!(arn_region("1234abcd-12ab-34cd-56ef-1234567890ab"), None);
        assert_eq!(arn_region("alias/hookline"), None);
        assert_eq!(arn_region("arn:aws:sqs:eu-west-1:123456789012:q"), None);
        assert_eq!(arn_region("arn:aws:kms::123456789012:key/x"), None);
    }
}
