//! The provider catalog: which names a job may ask for, where each one's
//! data lives and how long to wait for it. Loaded from TOML:
//!
//! ```toml
//! [providers.gas]
//! url = "https://billing.example/gas"
//! timeout = "10s"          # optional, default 10s
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub name: String,
    pub url: Url,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderCatalog {
    providers: BTreeMap<String, ProviderConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Not TOML, or not the shape of a providers file: where and why, on
    /// one line (toml's own message draws the line in several).
    #[error("providers file: {0}")]
    Toml(String),
    #[error("provider {name:?}: {message}")]
    Invalid { name: String, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    providers: BTreeMap<String, Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    url: String,
    timeout: Option<String>,
}

/// `line L, column C: message` for a TOML error in `text`.
fn toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim();
    match err.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_owned(),
    }
}

impl ProviderCatalog {
    pub fn new(providers: impl IntoIterator<Item = ProviderConfig>) -> Self {
        Self {
            providers: providers.into_iter().map(|p| (p.name.clone(), p)).collect(),
        }
    }

    /// Every provider at `{base}/{name}`, with the default timeout.
    pub fn at_base_url(base: &Url, names: &[&str]) -> Result<Self, CatalogError> {
        let mut providers = Vec::new();
        for name in names {
            let url = base.join(name).map_err(|e| CatalogError::Invalid {
                name: (*name).to_owned(),
                message: e.to_string(),
            })?;
            providers.push(ProviderConfig {
                name: (*name).to_owned(),
                url,
                timeout: DEFAULT_PROVIDER_TIMEOUT,
            });
        }
        Ok(Self::new(providers))
    }

    pub fn from_toml(text: &str) -> Result<Self, CatalogError> {
        let file: File = toml::from_str(text).map_err(|e| CatalogError::Toml(toml_error(text, &e)))?;
        let mut providers = Vec::new();
        for (name, entry) in file.providers {
            let invalid = |message: String| CatalogError::Invalid {
                name: name.clone(),
                message,
            };
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    "names are 1-64 characters of a-z, A-Z, 0-9, '-', '_'".to_owned(),
                ));
            }
            let url = Url::parse(&entry.url).map_err(|e| invalid(format!("url {:?}: {e}", entry.url)))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid(format!("url {:?} must be http or https", entry.url)));
            }
            let timeout = match entry.timeout {
                Some(text) => {
                    humantime::parse_duration(&text).map_err(|e| invalid(format!("timeout {text:?}: {e}")))?
                }
                None => DEFAULT_PROVIDER_TIMEOUT,
            };
            if timeout.is_zero() {
                return Err(invalid("timeout must be more than zero".to_owned()));
            }
            providers.push(ProviderConfig { name, url, timeout });
        }
        Ok(Self::new(providers))
    }

    pub fn get(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.get(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.providers.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// The longest per-provider timeout, which bounds a job's fetch phase.
    pub fn longest_timeout(&self) -> Duration {
        self.providers
            .values()
            .map(|p| p.timeout)
            .max()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_providers_with_defaults() {
        let catalog = ProviderCatalog::from_toml(
            r#"
            [providers.gas]
            url = "https://billing.example/gas"
            timeout = "3s"
            [providers.internet]
            url = "http://127.0.0.1:4000/providers/internet"
            "#,
        )
        .expect("valid");
        assert_eq!(catalog.names(), vec!["gas", "internet"]);
        assert_eq!(
            catalog.get("gas").map(|p| p.timeout),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            catalog.get("internet").map(|p| p.timeout),
            Some(DEFAULT_PROVIDER_TIMEOUT)
        );
        assert_eq!(catalog.longest_timeout(), DEFAULT_PROVIDER_TIMEOUT);
    }

    #[test]
    fn refuses_bad_entries_with_the_provider_named() {
        for (text, needle) in [
            ("[providers.gas]\nurl = \"ftp://x\"", "gas"),
            (
                "[providers.gas]\nurl = \"https://x\"\ntimeout = \"soon\"",
                "timeout",
            ),
            ("[providers.\"a b\"]\nurl = \"https://x\"", "names are"),
            (
                "[providers.gas]\nurl = \"https://x\"\ncolour = 1",
                "unknown field",
            ),
        ] {
            let err = ProviderCatalog::from_toml(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn base_url_catalog_joins_names() {
        let base = Url::parse("http://127.0.0.1:3000/mock/providers/").expect("url");
        let catalog = ProviderCatalog::at_base_url(&base, &["gas"]).expect("valid");
        assert_eq!(
            catalog.get("gas").map(|p| p.url.as_str()),
            Some("http://127.0.0.1:3000/mock/providers/gas")
        );
    }
}
