//! How an endpoint's deliveries authenticate to it (SPEC section 10):
//! basic, bearer, a header of its own, or an OAuth2 client-credentials
//! grant, and how long one delivery may take. **Holds credentials**: every
//! credential is a [`Credential`], whose `Debug` and `Display` show `***`,
//! and which an API answer shows as `***` too ([`EndpointAuth::shown`]).

use std::fmt;
use std::time::Duration;

use url::Url;

use crate::endpoint::{is_header_name, is_reserved_header};

/// What a credential is shown as, wherever it is shown.
pub const HIDDEN: &str = "***";

/// A password, token, header value or client secret: write-only. Its text
/// is reached only by [`Credential::expose`], where a request is made or
/// the record is written.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HIDDEN)
    }
}

impl Credential {
    /// Wraps a credential's text (checked by the auth that holds it).
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The credential itself, to send or to store.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// An OAuth2 client-credentials grant (RFC 6749 section 4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Grant {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Credential,
    pub scope: Option<String>,
    pub audience: Option<String>,
}

/// How an endpoint's deliveries authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointAuth {
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: Credential },
    /// `Authorization: Bearer <token>`.
    Bearer { token: Credential },
    /// `<name>: <value>`, a header of the receiver's choosing.
    Header { name: String, value: Credential },
    /// `Authorization: Bearer <access token>` from the grant's token URL.
    OAuth2(OAuth2Grant),
}

/// Why an `auth` is refused: one field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct InvalidAuth {
    /// The field inside `auth` (`username`, `tokenUrl`, ...), or `type`.
    pub field: &'static str,
    pub problem: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> InvalidAuth {
    InvalidAuth {
        field,
        problem: problem.into(),
    }
}

/// Text that fits in a header value: 1-`max` visible ASCII characters or
/// spaces, not starting or ending with a space.
fn header_text(field: &'static str, text: &str, max: usize) -> Result<(), InvalidAuth> {
    let visible = (1..=max).contains(&text.len()) && text.bytes().all(|b| (0x20..0x7f).contains(&b));
    if visible && text.trim() == text {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be 1-{max} visible ASCII characters, without surrounding spaces"),
        ))
    }
}

/// Free text without control characters, 1-`max` characters.
fn plain_text(field: &'static str, text: &str, max: usize) -> Result<(), InvalidAuth> {
    if (1..=max).contains(&text.chars().count()) && !text.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be 1-{max} characters without control characters"),
        ))
    }
}

/// The longest credential or value accepted.
pub const MAX_CREDENTIAL: usize = 4096;

impl EndpointAuth {
    /// `auth`, checked: each part fits where it is sent.
    pub fn checked(self) -> Result<Self, InvalidAuth> {
        match &self {
            Self::Basic { username, password } => {
                plain_text("username", username, 256)?;
                if username.contains(':') {
                    return Err(invalid("username", "cannot contain ':' (RFC 7617)"));
                }
                plain_text("password", password.expose(), 1024)?;
            }
            Self::Bearer { token } => header_text("token", token.expose(), MAX_CREDENTIAL)?,
            Self::Header { name, value } => {
                if !is_header_name(name) {
                    return Err(invalid("name", "is not a header name"));
                }
                if is_reserved_header(&name.to_ascii_lowercase()) {
                    return Err(invalid("name", "is set by hookline and cannot be overridden"));
                }
                header_text("value", value.expose(), MAX_CREDENTIAL)?;
            }
            Self::OAuth2(grant) => {
                if !matches!(grant.token_url.scheme(), "http" | "https") || grant.token_url.host().is_none() {
                    return Err(invalid("tokenUrl", "must be an absolute http(s) URL"));
                }
                if !grant.token_url.username().is_empty() || grant.token_url.password().is_some() {
                    return Err(invalid(
                        "tokenUrl",
                        "cannot hold credentials; give them as clientId and clientSecret",
                    ));
                }
                plain_text("clientId", &grant.client_id, 256)?;
                plain_text("clientSecret", grant.client_secret.expose(), 1024)?;
                if let Some(scope) = &grant.scope {
                    plain_text("scope", scope, 1024)?;
                }
                if let Some(audience) = &grant.audience {
                    plain_text("audience", audience, 1024)?;
                }
            }
        }
        Ok(self.normalized())
    }

    fn normalized(self) -> Self {
        match self {
            Self::Header { name, value } => Self::Header {
                name: name.to_ascii_lowercase(),
                value,
            },
            other => other,
        }
    }

    /// `basic`, `bearer`, `header` or `oauth2`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Basic { .. } => "basic",
            Self::Bearer { .. } => "bearer",
            Self::Header { .. } => "header",
            Self::OAuth2(_) => "oauth2",
        }
    }

    /// The request header it sets (lowercase): `authorization`, or a
    /// header auth's own name.
    pub fn header_name(&self) -> &str {
        match self {
            Self::Header { name, .. } => name,
            Self::Basic { .. } | Self::Bearer { .. } | Self::OAuth2(_) => "authorization",
        }
    }

    /// The header a delivery carries, for every kind but OAuth2 (whose
    /// value is a token fetched when the delivery is made).
    pub fn static_header(&self) -> Option<(String, String)> {
        use base64::Engine;
        match self {
            Self::Basic { username, password } => {
                let pair = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                Some(("authorization".to_owned(), format!("Basic {encoded}")))
            }
            Self::Bearer { token } => {
                Some(("authorization".to_owned(), format!("Bearer {}", token.expose())))
            }
            Self::Header { name, value } => Some((name.clone(), value.expose().to_owned())),
            Self::OAuth2(_) => None,
        }
    }

    /// This auth with every credential it holds kept from `stored` where
    /// it gives [`HIDDEN`] in its place: a `PATCH` may send back what a
    /// read showed and change only what it gives anew. `Err(field)` when
    /// `***` stands for a credential `stored` does not have (another kind,
    /// or none).
    pub fn keeping_hidden(self, stored: Option<&Self>) -> Result<Self, InvalidAuth> {
        let kept = |field: &'static str, given: Credential, stored: Option<&Credential>| {
            if given.expose() != HIDDEN {
                return Ok(given);
            }
            stored.cloned().ok_or_else(|| {
                invalid(
                    field,
                    "is \"***\", which keeps the stored credential, but the endpoint has none of this auth type",
                )
            })
        };
        Ok(match (self, stored) {
            (Self::Basic { username, password }, stored) => {
                let old = match stored {
                    Some(Self::Basic { password, .. }) => Some(password),
                    _ => None,
                };
                Self::Basic {
                    username,
                    password: kept("password", password, old)?,
                }
            }
            (Self::Bearer { token }, stored) => {
                let old = match stored {
                    Some(Self::Bearer { token }) => Some(token),
                    _ => None,
                };
                Self::Bearer {
                    token: kept("token", token, old)?,
                }
            }
            (Self::Header { name, value }, stored) => {
                let old = match stored {
                    Some(Self::Header {
                        name: old_name,
                        value,
                    }) if old_name.eq_ignore_ascii_case(&name) => Some(value),
                    _ => None,
                };
                Self::Header {
                    value: kept("value", value, old)?,
                    name,
                }
            }
            (Self::OAuth2(grant), stored) => {
                let old = match stored {
                    Some(Self::OAuth2(old)) => Some(&old.client_secret),
                    _ => None,
                };
                Self::OAuth2(OAuth2Grant {
                    client_secret: kept("clientSecret", grant.client_secret, old)?,
                    ..grant
                })
            }
        })
    }
}

/// The shortest and longest time one delivery to an endpoint may take.
pub const MIN_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(secret: &str) -> EndpointAuth {
        EndpointAuth::OAuth2(OAuth2Grant {
            token_url: Url::parse("https://auth.example/token").expect("url"),
            client_id: "hookline".to_owned(),
            client_secret: Credential::new(secret),
            scope: Some("webhooks".to_owned()),
            audience: None,
        })
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let all = [
            EndpointAuth::Basic {
                username: "user".to_owned(),
                password: Credential::new("pa55word"),
            },
            EndpointAuth::Bearer {
                token: Credential::new("t0ken"),
            },
            EndpointAuth::Header {
                name: "x-api-key".to_owned(),
                value: Credential::new("k3y"),
            },
            grant("cl1ent-secret"),
        ];
        for auth in all {
            let debug = format!("{auth:?}");
            for secret in ["pa55word", "t0ken", "k3y", "cl1ent-secret"] {
                assert!(!debug.contains(secret), "{debug}");
            }
            assert!(debug.contains(HIDDEN), "{debug}");
        }
    }

    #[test]
    fn each_kind_sets_its_header() {
        let basic = EndpointAuth::Basic {
            username: "Aladdin".to_owned(),
            password: Credential::new("open sesame"),
        };
        // RFC 7617's example.
        assert_eq!(
            basic.static_header(),
            Some((
                "authorization".to_owned(),
                "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".to_owned()
            ))
        );
        let header = EndpointAuth::Header {
            name: "X-Api-Key".to_owned(),
            value: Credential::new("k"),
        }
        .checked()
        .expect("valid");
        assert_eq!(
            header.static_header(),
            Some(("x-api-key".to_owned(), "k".to_owned()))
        );
        assert_eq!(grant("s").static_header(), None);
        assert_eq!(grant("s").header_name(), "authorization");
    }

    #[test]
    fn parts_that_cannot_be_sent_are_refused() {
        let refused = |auth: EndpointAuth| auth.checked().expect_err("refused").field;
        assert_eq!(
            refused(EndpointAuth::Basic {
                username: "a:b".to_owned(),
                password: Credential::new("p"),
            }),
            "username"
        );
        assert_eq!(
            refused(EndpointAuth::Bearer {
                token: Credential::new("line\nbreak"),
            }),
            "token"
        );
        for name in ["webhook-signature", "Content-Type", "host", "bad name"] {
            assert_eq!(
                refused(EndpointAuth::Header {
                    name: name.to_owned(),
                    value: Credential::new("v"),
                }),
                "name",
                "{name}"
            );
        }
        let mut with_user = Url::parse("https://auth.example/token").expect("url");
        with_user.set_username("u").expect("a user");
        assert_eq!(
            refused(EndpointAuth::OAuth2(OAuth2Grant {
                token_url: with_user,
                client_id: "c".to_owned(),
                client_secret: Credential::new("s"),
                scope: None,
                audience: None,
            })),
            "tokenUrl"
        );
        assert_eq!(refused(grant("")), "clientSecret");
    }

    #[test]
    fn hidden_credentials_keep_the_stored_ones_of_the_same_kind() {
        let stored = grant("old-secret");
        let EndpointAuth::OAuth2(kept) = grant(HIDDEN).keeping_hidden(Some(&stored)).expect("kept") else {
            panic!("an oauth2 grant");
        };
        assert_eq!(kept.client_secret.expose(), "old-secret");
        let EndpointAuth::OAuth2(new) = grant("new").keeping_hidden(Some(&stored)).expect("new") else {
            panic!("an oauth2 grant");
        };
        assert_eq!(new.client_secret.expose(), "new");
        let bearer = EndpointAuth::Bearer {
            token: Credential::new(HIDDEN),
        };
        assert_eq!(
            bearer
                .clone()
                .keeping_hidden(Some(&stored))
                .expect_err("another kind")
                .field,
            "token"
        );
        assert_eq!(
            bearer.keeping_hidden(None).expect_err("none stored").field,
            "token"
        );
    }
}
