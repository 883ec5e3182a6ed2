//! Where the table is and how to reach it, parsed from a store URL:
//! `dynamodb://TABLE?endpoint=http://localhost:8000&region=eu-west-1&shards=8&retention=30d`.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoConfig {
    pub table: String,
    /// A custom endpoint (DynamoDB Local, LocalStack); `None` for AWS itself.
    pub endpoint: Option<String>,
    /// `None` means the AWS SDK's own resolution (env, profile, IMDS).
    pub region: Option<String>,
    /// How many partitions the due index, and each tenant's status in the
    /// listing index, are spread over. Must stay the same
    /// for the life of a table: every processor reads all of them.
    pub shards: u16,
    /// How long finished jobs are kept before DynamoDB's TTL removes them.
    pub retention: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DynamoConfigError {
    #[error("invalid DynamoDB store URL: {0}")]
    Url(String),
}

pub const DEFAULT_SHARDS: u16 = 8;
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

impl DynamoConfig {
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            endpoint: None,
            region: None,
            shards: DEFAULT_SHARDS,
            retention: DEFAULT_RETENTION,
        }
    }

    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    pub fn from_url(raw: &str) -> Result<Self, DynamoConfigError> {
        let url = url::Url::parse(raw).map_err(|e| DynamoConfigError::Url(format!("{raw}: {e}")))?;
        if url.scheme() != "dynamodb" {
            return Err(DynamoConfigError::Url(format!(
                "{raw}: scheme must be dynamodb://"
            )));
        }
        let table = url.host_str().unwrap_or_default().to_owned();
        if !valid_table_name(&table) {
            return Err(DynamoConfigError::Url(format!(
                "{raw}: table name must be 3-255 characters of a-z, A-Z, 0-9, '_', '-', '.'"
            )));
        }
        let mut config = Self::new(table);
        for (key, value) in url.query_pairs() {
            match &*key {
                "endpoint" => config.endpoint = Some(value.into_owned()),
                "region" => config.region = Some(value.into_owned()),
                "shards" => {
                    config.shards = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=256).contains(n))
                        .ok_or_else(|| DynamoConfigError::Url(format!("{raw}: shards must be 1..=256")))?
                }
                "retention" => {
                    config.retention = humantime::parse_duration(&value).map_err(|_| {
                        DynamoConfigError::Url(format!("{raw}: retention must look like 30d, 12h or 3600s"))
                    })?
                }
                other => {
                    return Err(DynamoConfigError::Url(format!(
                        "{raw}: unknown parameter {other:?}"
                    )));
                }
            }
        }
        Ok(config)
    }

    /// Builds an SDK client. Against a local endpoint with no credentials in
    /// the environment, dummy static credentials are used: DynamoDB Local
    /// and LocalStack accept any.
    pub async fn client(&self) -> aws_sdk_dynamodb::Client {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
            if is_local(endpoint) && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                loader = loader.credentials_provider(Credentials::new(
                    "local",
                    "local",
                    None,
                    None,
                    "hookline-local",
                ));
                if self.region.is_none() {
                    loader = loader.region(Region::new("us-east-1"));
                }
            }
        }
        aws_sdk_dynamodb::Client::new(&loader.load().await)
    }
}

fn is_local(endpoint: &str) -> bool {
    url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .is_some_and(|host| {
            host == "localhost"
                || host.ends_with(".localhost")
                || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
                || host == "localstack"
        })
}

fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_url() {
        let config = DynamoConfig::from_url(
            "dynamodb://hookline-jobs?endpoint=http://localhost:4566&region=eu-west-1&shards=4&retention=7d",
        )
        .expect("valid");
        assert_eq!(config.table, "hookline-jobs");
        assert_eq!(config.endpoint.as_deref(), Some("http://localhost:4566"));
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.shards, 4);
        assert_eq!(config.retention, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn refuses_bad_urls_with_a_reason() {
        for bad in [
            "sqlite://x.db",
            "dynamodb://ab",
            "dynamodb://jobs?shards=0",
            "dynamodb://jobs?retention=forever",
            "dynamodb://jobs?colour=blue",
        ] {
            let err = DynamoConfig::from_url(bad).expect_err(bad).to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn recognises_local_endpoints() {
        assert!(is_local("http://localhost:8000"));
        assert!(is_local("http://127.0.0.1:8000"));
        assert!(is_local("http://[::1]:8000"));
        assert!(!is_local("https://dynamodb.eu-west-1.amazonaws.com"));
    }
}
