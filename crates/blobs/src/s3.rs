//! Blobs as S3 objects: `s3://{bucket}/{prefix}{tenant}/{sha256 hex}`.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use base64::Engine as _;
use bytes::Bytes;

use crate::{BlobError, BlobRef, BlobStore, check_size, check_tenant};

/// How long one put, get or delete may take, retries included, unless
/// [`S3Blobs::with_timeout`] says otherwise: a 4 MiB transfer on a slow
/// link fits, and a hung S3 is an `Unavailable` rather than a hang.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Blobs as objects in one bucket, under a prefix. A put sends the
/// payload's sha256 (`x-amz-checksum-sha256`), so S3 refuses an upload
/// damaged on the way; a get verifies what it read against the reference.
#[derive(Clone)]
pub struct S3Blobs {
    client: Client,
    bucket: String,
    prefix: String,
    timeout: Duration,
}

impl fmt::Debug for S3Blobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Blobs")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl S3Blobs {
    /// Blobs in `bucket` under `prefix` (a `/` is added to a prefix that
    /// does not end in one; an empty prefix is the bucket's root).
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        let mut prefix = prefix.into();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self {
            client,
            bucket: bucket.into(),
            prefix,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Bounds every call to `timeout`, retries included.
    #[must_use]
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key of `blob` for `tenant`.
    pub fn key(&self, tenant: &str, blob: &BlobRef) -> Result<String, BlobError> {
        check_tenant(tenant)?;
        Ok(format!("{}{tenant}/{}", self.prefix, blob.hex()))
    }

    async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, BlobError>>,
    ) -> Result<T, BlobError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(BlobError::Unavailable(format!(
                    "S3 {what} did not finish within {} ms",
                    self.timeout.as_millis()
                )))
            })
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(&self, tenant: &str, bytes: Bytes) -> Result<BlobRef, BlobError> {
        check_size(&bytes)?;
        let blob = BlobRef::of(&bytes);
        let key = self.key(tenant, &blob)?;
        let checksum = base64::engine::general_purpose::STANDARD.encode(blob.sha256());
        self.bounded("PutObject", async {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_length(i64::try_from(bytes.len()).unwrap_or(i64::MAX))
                .content_type("application/octet-stream")
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(checksum)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(|err| unavailable("PutObject", &err))?;
            Ok(blob)
        })
        .await
    }

    async fn get(&self, tenant: &str, blob: &BlobRef) -> Result<Bytes, BlobError> {
        let key = self.key(tenant, blob)?;
        self.bounded("GetObject", async {
            let answer = match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(answer) => answer,
                Err(err) if is_missing(&err) => return Err(BlobError::Missing(*blob)),
                Err(err) => return Err(unavailable("GetObject", &err)),
            };
            // An object of another length is altered: said without reading
            // what may be far more than any payload.
            if let Some(found) = answer.content_length().and_then(|n| u64::try_from(n).ok())
                && found != blob.len()
            {
                return Err(BlobError::Altered {
                    expected: *blob,
                    found_len: found,
                });
            }
            let bytes = answer
                .body
                .collect()
                .await
                .map_err(|err| BlobError::Unavailable(format!("S3 GetObject: reading the body: {err}")))?
                .into_bytes();
            crate::verify(blob, bytes)
        })
        .await
    }

    async fn delete(&self, tenant: &str, blob: &BlobRef) -> Result<(), BlobError> {
        let key = self.key(tenant, blob)?;
        self.bounded("DeleteObject", async {
            // S3 answers 204 for a key that is not there.
            match self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(SdkError::ServiceError(service))
                    if service.raw().status().as_u16() == 404
                        && service.err().code() == Some("NoSuchKey") =>
                {
                    Ok(())
                }
                Err(err) => Err(unavailable("DeleteObject", &err)),
            }
        })
        .await
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

/// The key is not there: `NoSuchKey`, or a bare 404 (a GET's error body
/// may be absent). A missing bucket is the operator's to mend, so it is
/// not a missing blob.
fn is_missing(err: &SdkError<GetObjectError, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(service) => {
            if matches!(service.err(), GetObjectError::NoSuchKey(_)) {
                return true;
            }
            let code = service.err().code();
            code != Some("NoSuchBucket") && service.raw().status().as_u16() == 404
        }
        _ => false,
    }
}

/// Every other failure is worth trying again: throttling (`SlowDown`,
/// 503), S3 failing (5xx), timeouts, connections that fail, and refusals
/// an operator can mend (`AccessDenied`, a missing bucket). The text says
/// what S3 said, never anything of the payload.
fn unavailable<E>(operation: &str, err: &SdkError<E, HttpResponse>) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("no error code");
            match service.err().message() {
                Some(message) if !message.is_empty() => format!("{status} {code}: {message}"),
                _ => format!("{status} {code}"),
            }
        }
        SdkError::TimeoutError(_) => "S3 did not answer in time".to_owned(),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => "S3 did not answer in time".to_owned(),
        SdkError::DispatchFailure(_) => format!("S3 could not be reached: {}", error_chain(err)),
        other => error_chain(other),
    };
    BlobError::Unavailable(format!("S3 {operation}: {detail}"))
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}
