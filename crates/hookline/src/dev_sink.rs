//! `hookline dev`'s sink checks every delivery's signature: a job's with the
//! dev tenant's secret, an event's with its endpoint's. The intake shows an
//! endpoint's secret once, in the answer that creates or rotates it; the
//! sink learns it from that answer on its way out.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use domain::SigningSecret;
use providers_mock::MockState;

/// Largest answer read for a secret: an endpoint's answer is a few KiB.
const ANSWER_LIMIT: usize = 256 * 1024;

/// The secrets the dev sink checks with: the tenant's, and every endpoint's
/// seen so far (a rotated one stays, as the overlap keeps it signing).
#[derive(Clone)]
pub(crate) struct SinkSecrets {
    mock: MockState,
    known: Arc<Mutex<Vec<SigningSecret>>>,
}

impl SinkSecrets {
    pub(crate) fn new(mock: MockState, tenant: SigningSecret) -> Self {
        mock.set_signing_secrets(vec![tenant.clone()]);
        Self {
            mock,
            known: Arc::new(Mutex::new(vec![tenant])),
        }
    }

    /// `api` with the answers that show an endpoint's secret read on the way.
    pub(crate) fn learning(&self, api: Router) -> Router {
        api.layer(middleware::from_fn_with_state(self.clone(), learn))
    }

    fn add(&self, secret: SigningSecret) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.push(secret);
        self.mock.set_signing_secrets(known.clone());
    }
}

/// Whether the answer to `method path` may carry an endpoint's secret.
fn shows_a_secret(method: &Method, path: &str) -> bool {
    *method == Method::POST
        && (path == "/v1/endpoints"
            || path
                .strip_prefix("/v1/endpoints/")
                .is_some_and(|rest| rest.ends_with("/secret/rotate")))
}

async fn learn(State(secrets): State<SinkSecrets>, request: Request, next: Next) -> Response {
    let shows = shows_a_secret(request.method(), request.uri().path());
    let response = next.run(request).await;
    if !shows || !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, ANSWER_LIMIT).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let secret = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|answer| answer["secret"].as_str().and_then(|s| s.parse().ok()));
    if let Some(secret) = secret {
        secrets.add(secret);
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_creation_and_rotation_show_a_secret() {
        assert!(shows_a_secret(&Method::POST, "/v1/endpoints"));
        assert!(shows_a_secret(&Method::POST, "/v1/endpoints/01J/secret/rotate"));
        assert!(!shows_a_secret(&Method::GET, "/v1/endpoints"));
        assert!(!shows_a_secret(&Method::POST, "/v1/events"));
        assert!(!shows_a_secret(&Method::POST, "/v1/endpoints/01J/disable"));
    }
}
