//! Who is signed in, and the token that proves a form came from our page.
//!
//! A session is the tenant's API key, kept in a cookie only this UI reads:
//! `HttpOnly` (no script sees it), `SameSite=Strict` (no other site's page
//! sends it), `Path=/ui` (the API never receives it as a credential), and
//! `Secure` unless the UI is reached on a loopback address. Nothing is kept
//! on the server, so any of several intake processes behind a load balancer
//! answers any request, and signing out is forgetting the cookie.
//!
//! Every form that changes something carries a CSRF token, an HMAC of a
//! fixed label under the session's key: a page of ours can show it, another
//! site cannot compute it. Both together: a cross-site request carries no
//! cookie (SameSite) and could not name the token if it did.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE_NAME: &str = "hookline_ui";
/// What the CSRF token is an HMAC of.
const CSRF_LABEL: &[u8] = b"hookline ui csrf v1";
/// How long a session lasts without signing in again.
pub const SESSION_MAX_AGE_SECS: u64 = 8 * 60 * 60;

/// A signed-in viewer: the API key their requests to the API carry.
#[derive(Clone)]
pub struct Session {
    key: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("key", &"***").finish()
    }
}

impl Session {
    /// A session for `key`, as given at sign-in (trimmed; checked by the
    /// API, not here).
    pub fn new(key: &str) -> Self {
        Self {
            key: key.trim().to_owned(),
        }
    }

    /// The session a request's `Cookie` header holds, if any.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|line| line.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE_NAME)
            .and_then(|(_, value)| URL_SAFE_NO_PAD.decode(value).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|key| !key.is_empty())
            .map(|key| Self { key })
    }

    /// The API key, for the `Authorization` header of the API requests
    /// made on the viewer's behalf.
    pub(crate) fn api_key(&self) -> &str {
        &self.key
    }

    /// The token this session's forms carry.
    pub fn csrf_token(&self) -> String {
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(self.key.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(CSRF_LABEL);
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Whether `token` is this session's CSRF token (in constant time).
    pub fn csrf_matches(&self, token: &str) -> bool {
        self.csrf_token().as_bytes().ct_eq(token.as_bytes()).into()
    }

    /// The `Set-Cookie` value that keeps this session.
    pub fn cookie(&self, secure: bool) -> HeaderValue {
        let value = URL_SAFE_NO_PAD.encode(self.key.as_bytes());
        let secure = if secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE_NAME}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={SESSION_MAX_AGE_SECS}{secure}"
        ))
        .expect("base64url and ASCII attributes make a valid header value")
    }

    /// The `Set-Cookie` value that ends a session.
    pub fn cleared_cookie(secure: bool) -> HeaderValue {
        let secure = if secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE_NAME}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{secure}"
        ))
        .expect("ASCII attributes make a valid header value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_round_trips_through_its_cookie_and_never_shows_its_key() {
        let session = Session::new(" hk_live_abc;def=ghi ");
        let cookie = session.cookie(true);
        let cookie = cookie.to_str().expect("ascii");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        assert!(
            cookie.contains("Path=/ui") && cookie.ends_with("; Secure"),
            "{cookie}"
        );
        assert!(!cookie.contains("hk_live"), "the key is encoded: {cookie}");
        let pair = cookie.split(';').next().expect("pair");
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&format!("other=1; {pair}")).expect("header"),
        );
        let back = Session::from_headers(&headers).expect("a session");
        assert_eq!(back.api_key(), "hk_live_abc;def=ghi");
        assert_eq!(format!("{back:?}"), "Session { key: \"***\" }");
    }

    #[test]
    fn the_csrf_token_is_the_sessions_own() {
        let a = Session::new("hk_a");
        let b = Session::new("hk_b");
        assert!(a.csrf_matches(&a.csrf_token()));
        assert!(!a.csrf_matches(&b.csrf_token()));
        assert!(!a.csrf_matches(""));
        assert!(!a.csrf_matches(&a.csrf_token()[1..]));
    }

    #[test]
    fn a_missing_or_garbled_cookie_is_no_session() {
        let mut headers = HeaderMap::new();
        assert!(Session::from_headers(&headers).is_none());
        headers.insert(COOKIE, HeaderValue::from_static("hookline_ui=***not base64***"));
        assert!(Session::from_headers(&headers).is_none());
        headers.insert(COOKIE, HeaderValue::from_static("hookline_ui="));
        assert!(Session::from_headers(&headers).is_none());
    }
}
