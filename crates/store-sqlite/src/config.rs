//! Where the database file is and how long finished jobs are kept, parsed
//! from a store URL: `sqlite://hookline.db` (relative to the working
//! directory), `sqlite:///var/lib/hookline/jobs.db` (absolute), optionally
//! with `?retention=30d`.

use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How long finished jobs are kept before `purge_expired`
    /// may delete them.
    pub retention: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            retention: DEFAULT_RETENTION,
        }
    }
}

/// A parsed `sqlite://` store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    pub path: PathBuf,
    pub options: SqliteOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum SqliteConfigError {
    #[error("invalid SQLite store URL: {0}")]
    Url(String),
}

impl SqliteConfig {
    /// Parses `sqlite://PATH[?retention=DURATION]`. Everything between the
    /// scheme and the query is the path, taken literally, so a third slash
    /// makes it absolute.
    pub fn from_url(raw: &str) -> Result<Self, SqliteConfigError> {
        let rest = raw
            .strip_prefix("sqlite://")
            .ok_or_else(|| SqliteConfigError::Url(format!("{raw}: scheme must be sqlite://")))?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        if path.is_empty() || path.ends_with('/') {
            return Err(SqliteConfigError::Url(format!(
                "{raw}: a file path is needed, as in sqlite://hookline.db or sqlite:///var/lib/hookline.db"
            )));
        }
        let mut options = SqliteOptions::default();
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "retention" => {
                    options.retention = humantime::parse_duration(value).map_err(|_| {
                        SqliteConfigError::Url(format!("{raw}: retention must look like 30d, 12h or 3600s"))
                    })?
                }
                other => {
                    return Err(SqliteConfigError::Url(format!(
                        "{raw}: unknown parameter {other:?}"
                    )));
                }
            }
        }
        Ok(Self {
            path: PathBuf::from(path),
            options,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_relative_and_absolute_paths() {
        let relative = SqliteConfig::from_url("sqlite://hookline.db").expect("valid");
        assert_eq!(relative.path, PathBuf::from("hookline.db"));
        assert_eq!(relative.options, SqliteOptions::default());

        let nested = SqliteConfig::from_url("sqlite://data/jobs.db").expect("valid");
        assert_eq!(nested.path, PathBuf::from("data/jobs.db"));

        let absolute =
            SqliteConfig::from_url("sqlite:///var/lib/hookline/jobs.db?retention=7d").expect("valid");
        assert_eq!(absolute.path, PathBuf::from("/var/lib/hookline/jobs.db"));
        assert!(absolute.path.is_absolute());
        assert_eq!(absolute.options.retention, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn refuses_bad_urls_with_a_reason() {
        for bad in [
            "dynamodb://jobs",
            "sqlite:hookline.db",
            "sqlite://",
            "sqlite:///var/lib/",
            "sqlite://jobs.db?retention=forever",
            "sqlite://jobs.db?colour=blue",
        ] {
            let err = SqliteConfig::from_url(bad).expect_err(bad).to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
