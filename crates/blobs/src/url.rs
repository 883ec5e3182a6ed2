//! `--blobs`: where the blob store is, as `s3://BUCKET/PREFIX` or
//! `file://DIR`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};

use crate::{BlobStore, FileBlobs, S3Blobs};

/// A blob store's place, as `--blobs` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobsUrl {
    /// `s3://BUCKET/PREFIX`; the prefix is empty or ends in `/`.
    S3 { bucket: String, prefix: String },
    /// `file://DIR`: everything after `file://` is the directory, so
    /// `file:///var/lib/hookline/blobs` is absolute and `file://blobs` is
    /// relative to the working directory.
    File(PathBuf),
}

/// A `--blobs` value that names no blob store; one line, saying why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobUrlError {
    #[error("the blob store's URL is empty: give s3://BUCKET/PREFIX or file://DIR")]
    Empty,
    #[error("{0:?} is not a blob store's URL: give s3://BUCKET/PREFIX or file://DIR")]
    UnknownScheme(String),
    #[error("{bucket:?} is not an S3 bucket name: {why}")]
    BadBucket { bucket: String, why: &'static str },
    #[error("{prefix:?} is not a usable key prefix: {why}")]
    BadPrefix { prefix: String, why: &'static str },
    #[error("file:// names no directory: give file:///ABSOLUTE/DIR or file://RELATIVE/DIR")]
    EmptyPath,
}

/// Reads `--blobs`.
pub fn parse_blobs_url(text: &str) -> Result<BlobsUrl, BlobUrlError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(BlobUrlError::Empty);
    }
    if let Some(rest) = strip_scheme(text, "s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket)?;
        check_prefix(prefix)?;
        let mut prefix = prefix.to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(BlobsUrl::S3 {
            bucket: bucket.to_owned(),
            prefix,
        })
    } else if let Some(path) = strip_scheme(text, "file://") {
        if path.is_empty() {
            return Err(BlobUrlError::EmptyPath);
        }
        Ok(BlobsUrl::File(PathBuf::from(path)))
    } else {
        Err(BlobUrlError::UnknownScheme(echo(text)))
    }
}

fn strip_scheme<'a>(text: &'a str, scheme: &str) -> Option<&'a str> {
    let head = text.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme).then(|| &text[scheme.len()..])
}

/// At most 64 characters of what was given, as every error echoes input.
fn echo(text: &str) -> String {
    text.chars().take(64).collect()
}

/// S3's rules for general purpose bucket names.
fn check_bucket(bucket: &str) -> Result<(), BlobUrlError> {
    let bad = |why| {
        Err(BlobUrlError::BadBucket {
            bucket: echo(bucket),
            why,
        })
    };
    if bucket.is_empty() {
        return bad("s3:// names no bucket");
    }
    if !(3..=63).contains(&bucket.len()) {
        return bad("bucket names are 3-63 characters");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return bad("bucket names are lowercase letters, digits, '.' and '-'");
    }
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !edge(bucket.bytes().next()) || !edge(bucket.bytes().last()) {
        return bad("bucket names begin and end with a letter or a digit");
    }
    if bucket.contains("..") {
        return bad("bucket names have no two '.' in a row");
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("bucket names are not IP addresses");
    }
    if ["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .any(|p| bucket.starts_with(p))
        || ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
            .iter()
            .any(|s| bucket.ends_with(s))
    {
        return bad("the name has a prefix or suffix S3 reserves");
    }
    Ok(())
}

fn check_prefix(prefix: &str) -> Result<(), BlobUrlError> {
    let bad = |why| {
        Err(BlobUrlError::BadPrefix {
            prefix: echo(prefix),
            why,
        })
    };
    // Keys are at most 1,024 bytes; a blob's tenant and hash take up to 194.
    if prefix.len() > 512 {
        return bad("prefixes are at most 512 bytes");
    }
    if prefix
        .chars()
        .any(|c| c.is_control() || c == '?' || c == '#' || c == '\\')
    {
        return bad("control characters, '?', '#' and '\\' are not allowed");
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if !trimmed.is_empty() && trimmed.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return bad("no empty, '.' or '..' segments");
    }
    Ok(())
}

impl fmt::Display for BlobsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::File(dir) => write!(f, "file://{}", dir.display()),
        }
    }
}

impl BlobsUrl {
    /// The embedded default: a directory beside the SQLite database
    /// (`hookline.db` keeps its blobs in `hookline.db-blobs/`).
    pub fn beside_database(database: &Path) -> Self {
        let mut dir = database.as_os_str().to_owned();
        dir.push("-blobs");
        Self::File(PathBuf::from(dir))
    }

    /// The store this names. S3's client comes from the AWS SDK's standard
    /// configuration (credentials, region, `AWS_ENDPOINT_URL_S3` or
    /// `AWS_ENDPOINT_URL`).
    pub async fn open(self) -> Arc<dyn BlobStore> {
        match self {
            Self::File(dir) => Arc::new(FileBlobs::new(dir)),
            Self::S3 { .. } => {
                let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
                self.open_with(&config)
            }
        }
    }

    /// The store this names, S3's client made from `config`.
    pub fn open_with(self, config: &SdkConfig) -> Arc<dyn BlobStore> {
        match self {
            Self::File(dir) => Arc::new(FileBlobs::new(dir)),
            Self::S3 { bucket, prefix } => {
                // moto, LocalStack and most S3-compatible servers answer
                // on one host, not on a virtual host per bucket.
                let endpoint_configured = config.endpoint_url().is_some()
                    || ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
                        .iter()
                        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
                let s3 = aws_sdk_s3::config::Builder::from(config)
                    .force_path_style(endpoint_configured)
                    .build();
                Arc::new(S3Blobs::new(aws_sdk_s3::Client::from_conf(s3), bucket, prefix))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, prefix: &str) -> BlobsUrl {
        BlobsUrl::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    #[test]
    fn s3_urls_name_a_bucket_and_a_prefix() {
        for (text, want) in [
            ("s3://hookline-blobs/payloads", s3("hookline-blobs", "payloads/")),
            ("s3://hookline-blobs/payloads/", s3("hookline-blobs", "payloads/")),
            ("s3://hookline-blobs/a/b", s3("hookline-blobs", "a/b/")),
            ("s3://hookline-blobs", s3("hookline-blobs", "")),
            ("s3://hookline-blobs/", s3("hookline-blobs", "")),
            ("S3://my.bucket.1/x", s3("my.bucket.1", "x/")),
            ("  s3://abc/x  ", s3("abc", "x/")),
        ] {
            assert_eq!(parse_blobs_url(text), Ok(want.clone()), "{text}");
            assert_eq!(parse_blobs_url(&want.to_string()), Ok(want), "{text}");
        }
    }

    #[test]
    fn file_urls_name_an_absolute_or_relative_directory() {
        for (text, want) in [
            ("file:///var/lib/hookline/blobs", "/var/lib/hookline/blobs"),
            ("file://blobs", "blobs"),
            ("file://./data/blobs", "./data/blobs"),
        ] {
            let parsed = parse_blobs_url(text);
            assert_eq!(parsed, Ok(BlobsUrl::File(PathBuf::from(want))), "{text}");
            assert_eq!(parsed.expect("parsed").to_string(), text);
        }
        assert_eq!(
            BlobsUrl::beside_database(Path::new("/data/hookline.db")),
            BlobsUrl::File(PathBuf::from("/data/hookline.db-blobs"))
        );
    }

    #[test]
    fn anything_else_is_one_clear_line() {
        for (text, want) in [
            ("", BlobUrlError::Empty),
            ("   ", BlobUrlError::Empty),
            ("file://", BlobUrlError::EmptyPath),
            (
                "gs://bucket/x",
                BlobUrlError::UnknownScheme("gs://bucket/x".to_owned()),
            ),
            ("/var/blobs", BlobUrlError::UnknownScheme("/var/blobs".to_owned())),
            ("s3:/bucket", BlobUrlError::UnknownScheme("s3:/bucket".to_owned())),
        ] {
            assert_eq!(parse_blobs_url(text), Err(want), "{text:?}");
        }
        for bad_bucket in [
            "s3://",
            "s3:///prefix",
            "s3://ab/x",
            "s3://My-Bucket/x",
            "s3://under_score",
            "s3://-leading",
            "s3://trailing-",
            "s3://two..dots",
            "s3://192.168.1.1",
            "s3://xn--bucket",
            "s3://bucket-s3alias",
            &format!("s3://{}", "a".repeat(64)),
        ] {
            let err = parse_blobs_url(bad_bucket).expect_err(bad_bucket);
            assert!(
                matches!(err, BlobUrlError::BadBucket { .. }),
                "{bad_bucket}: {err:?}"
            );
            assert!(!err.to_string().contains('\n'));
        }
        for bad_prefix in [
            "s3://bucket//x",
            "s3://bucket/a//b",
            "s3://bucket/../x",
            "s3://bucket/a/./b",
            "s3://bucket/a?b=c",
            "s3://bucket/a\nb",
        ] {
            let err = parse_blobs_url(bad_prefix).expect_err(bad_prefix);
            assert!(
                matches!(err, BlobUrlError::BadPrefix { .. }),
                "{bad_prefix}: {err:?}"
            );
        }
        let long = format!("gs://{}", "x".repeat(500));
        let message = parse_blobs_url(&long).expect_err("long").to_string();
        assert!(message.len() < 200, "{message}");
    }
}
