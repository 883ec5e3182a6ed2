//! An endpoint's `auth` and `timeout` in the API (SPEC section 10): read
//! from a request, and shown with every credential as `***`.

use std::time::Duration;

use domain::{Credential, EndpointAuth, HIDDEN, MAX_ENDPOINT_TIMEOUT, MIN_ENDPOINT_TIMEOUT, OAuth2Grant};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::fields::Fields;

/// How deliveries authenticate to the endpoint. Credentials (`password`,
/// `token`, `value`, `clientSecret`) are write-only: answers show `***`,
/// and a `PATCH` giving `***` for one keeps the stored credential.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type")]
pub(crate) enum AuthView {
    /// `Authorization: Basic ...` (RFC 7617).
    #[serde(rename = "basic")]
    Basic {
        #[schema(min_length = 1, max_length = 256)]
        username: String,
        #[schema(min_length = 1, max_length = 1024)]
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    #[serde(rename = "bearer")]
    Bearer {
        #[schema(min_length = 1, max_length = 4096)]
        token: String,
    },
    /// A header of the receiver's choosing, such as `x-api-key`.
    #[serde(rename = "header")]
    Header {
        #[schema(min_length = 1, max_length = 256)]
        name: String,
        #[schema(min_length = 1, max_length = 4096)]
        value: String,
    },
    /// OAuth2 client credentials (RFC 6749 section 4.4): hookline asks
    /// `tokenUrl` for a token (client authentication by HTTP Basic), sends
    /// it as `Authorization: Bearer`, keeps it until shortly before it
    /// expires, and asks again once when a delivery is answered 401.
    #[serde(rename = "oauth2", rename_all = "camelCase")]
    OAuth2 {
        #[schema(format = "uri", max_length = 2048)]
        token_url: String,
        #[schema(min_length = 1, max_length = 256)]
        client_id: String,
        #[schema(min_length = 1, max_length = 1024)]
        client_secret: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(max_length = 1024, required = false)]
        scope: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(max_length = 1024, required = false)]
        audience: Option<String>,
    },
}

impl AuthView {
    /// `auth` as an answer shows it: every credential `***`.
    pub(crate) fn of(auth: &EndpointAuth) -> Self {
        let hidden = || HIDDEN.to_owned();
        match auth {
            EndpointAuth::Basic { username, .. } => Self::Basic {
                username: username.clone(),
                password: hidden(),
            },
            EndpointAuth::Bearer { .. } => Self::Bearer { token: hidden() },
            EndpointAuth::Header { name, .. } => Self::Header {
                name: name.clone(),
                value: hidden(),
            },
            EndpointAuth::OAuth2(grant) => Self::OAuth2 {
                token_url: grant.token_url.to_string(),
                client_id: grant.client_id.clone(),
                client_secret: hidden(),
                scope: grant.scope.clone(),
                audience: grant.audience.clone(),
            },
        }
    }
}

/// The fields of one auth type, each required unless optional.
fn members(kind: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    Some(match kind {
        "basic" => (&["username", "password"], &[]),
        "bearer" => (&["token"], &[]),
        "header" => (&["name", "value"], &[]),
        "oauth2" => (&["tokenUrl", "clientId", "clientSecret"], &["scope", "audience"]),
        _ => return None,
    })
}

/// `auth` from a request: `Some(None)` when given `null` (no auth),
/// `None` when absent or wrong (then an error is in `fields`). Credentials
/// given as `***` are still `***` here: [`EndpointAuth::keeping_hidden`]
/// resolves them against the stored endpoint.
pub(crate) fn auth(fields: &mut Fields) -> Option<Option<EndpointAuth>> {
    let object = match fields.take("auth")? {
        Value::Null => return Some(None),
        Value::Object(object) => object,
        _ => {
            fields.error("auth", "must be an object with a type, or null");
            return None;
        }
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        _ => {
            fields.error("auth.type", "is required: basic, bearer, header or oauth2");
            return None;
        }
    };
    let Some((required, optional)) = members(&kind) else {
        fields.error("auth.type", "must be basic, bearer, header or oauth2");
        return None;
    };
    let before = fields.errors_len();
    for key in object.keys() {
        if key != "type" && !required.contains(&key.as_str()) && !optional.contains(&key.as_str()) {
            fields.error(
                format!("auth.{}", crate::error::echo(key)),
                format!("unknown field for auth type {kind}"),
            );
        }
    }
    let mut text = |name: &'static str, needed: bool, object: &Map<String, Value>| -> Option<String> {
        match object.get(name) {
            Some(Value::String(text)) => Some(text.clone()),
            None | Some(Value::Null) if !needed => None,
            None | Some(Value::Null) => {
                fields.error(format!("auth.{name}"), "is required");
                None
            }
            Some(_) => {
                fields.error(format!("auth.{name}"), "must be a string");
                None
            }
        }
    };
    let auth = match kind.as_str() {
        "basic" => {
            let (username, password) = (text("username", true, &object), text("password", true, &object));
            EndpointAuth::Basic {
                username: username?,
                password: Credential::new(password?),
            }
        }
        "bearer" => EndpointAuth::Bearer {
            token: Credential::new(text("token", true, &object)?),
        },
        "header" => {
            let (name, value) = (text("name", true, &object), text("value", true, &object));
            EndpointAuth::Header {
                name: name?,
                value: Credential::new(value?),
            }
        }
        _ => {
            let token_url = text("tokenUrl", true, &object);
            let client_id = text("clientId", true, &object);
            let client_secret = text("clientSecret", true, &object);
            let scope = text("scope", false, &object);
            let audience = text("audience", false, &object);
            let token_url = match url::Url::parse(&token_url?) {
                Ok(url) => url,
                Err(_) => {
                    fields.error("auth.tokenUrl", "must be an absolute http(s) URL");
                    return None;
                }
            };
            EndpointAuth::OAuth2(OAuth2Grant {
                token_url,
                client_id: client_id?,
                client_secret: Credential::new(client_secret?),
                scope,
                audience,
            })
        }
    };
    if fields.errors_len() > before {
        return None;
    }
    // `***` stands for the stored credential and is checked once resolved.
    let hidden_kept = |c: &Credential| c.expose() == HIDDEN;
    let checked = match &auth {
        EndpointAuth::Basic { password, .. } if hidden_kept(password) => Ok(auth),
        EndpointAuth::Bearer { token } if hidden_kept(token) => Ok(auth),
        EndpointAuth::Header { value, .. } if hidden_kept(value) => Ok(auth),
        EndpointAuth::OAuth2(grant) if hidden_kept(&grant.client_secret) => Ok(auth),
        _ => auth.checked(),
    };
    match checked {
        Ok(auth) => Some(Some(auth)),
        Err(err) => {
            fields.error(format!("auth.{}", err.field), err.problem);
            None
        }
    }
}

/// `timeout` from a request, as `30s`, `5m` or `15m`: `Some(None)` for
/// `null` (the processor's default), `None` when absent or wrong.
pub(crate) fn timeout(fields: &mut Fields) -> Option<Option<Duration>> {
    let text = match fields.take("timeout")? {
        Value::Null => return Some(None),
        Value::String(text) => text,
        _ => {
            fields.error("timeout", "must be a duration such as 30s or 5m, or null");
            return None;
        }
    };
    match humantime::parse_duration(&text) {
        Ok(timeout) if (MIN_ENDPOINT_TIMEOUT..=MAX_ENDPOINT_TIMEOUT).contains(&timeout) => {
            Some(Some(timeout))
        }
        Ok(_) => {
            fields.error("timeout", "must be from 1s to 15m");
            None
        }
        Err(_) => {
            fields.error("timeout", "must be a duration such as 30s or 5m, or null");
            None
        }
    }
}

/// A timeout as answers show it (`30s`, `2m 30s`).
pub(crate) fn shown_timeout(timeout: Duration) -> String {
    humantime::format_duration(timeout).to_string()
}
