//! hookline's management web UI (SPEC section 12), served at `/ui` by the
//! binary itself: server-rendered pages (askama templates, compiled in and
//! HTML-escaped by default) with a little progressive enhancement from one
//! script of ours (`assets/ui.js`: local times, copy buttons). Nothing is
//! loaded from another origin and the Content-Security-Policy says so.
//!
//! The UI holds no state and no store: each page reads, and each form
//! writes, through the intake's own API router in the process ([`api`]),
//! with the signed-in viewer's API key ([`session`]), so it shows and
//! changes exactly what that key may, checked as an API client's request
//! is.

mod api;
mod pages;
pub mod session;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use session::Session;

/// Every page's Content-Security-Policy: our own script and style only, no
/// inline script or style, no frames, forms posting only to us.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The UI's routes under `/ui` (the overview is `/ui`; `/ui/` leads
/// there), to be merged with `api`, the intake's router, which the pages
/// call.
pub fn router(api: Router) -> Router {
    let state = pages::State::new(api::Api::new(api));
    let pages = Router::new()
        .route("/", get(pages::overview))
        .route("/sign-in", get(pages::sign_in_form).post(pages::sign_in))
        .route("/sign-out", post(pages::sign_out))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/retry-all", post(pages::retry_all))
        .route("/jobs/{job_id}", get(pages::job))
        .route("/jobs/{job_id}/retry", post(pages::retry_job))
        .route("/endpoints", get(pages::endpoints).post(pages::create_endpoint))
        .route("/endpoints/new", get(pages::new_endpoint))
        .route(
            "/endpoints/{endpoint_id}",
            get(pages::endpoint).post(pages::update_endpoint),
        )
        .route(
            "/endpoints/{endpoint_id}/status",
            post(pages::set_endpoint_enabled),
        )
        .route("/endpoints/{endpoint_id}/rotate", post(pages::rotate_secret))
        .route("/endpoints/{endpoint_id}/recover", post(pages::recover_endpoint))
        .route(
            "/event-types",
            get(pages::event_types).post(pages::put_event_type),
        )
        .route("/event-types/{name}/delete", post(pages::delete_event_type))
        .route("/events", get(pages::events).post(pages::publish_event))
        .route("/events/{event_id}", get(pages::event))
        .route("/sources", get(pages::sources).post(pages::create_source))
        .route("/sources/{source_id}", get(pages::source))
        .route("/assets/{name}", get(asset))
        .fallback(pages::not_found)
        .with_state(state);
    Router::new()
        .nest("/ui", pages)
        .route(
            "/ui/",
            get(|| async { axum::response::Redirect::permanent("/ui") }),
        )
        .layer(axum::middleware::map_response(secure_headers))
}

/// The headers every answer of the UI carries.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The UI's own files, compiled into the binary.
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "ui.css",
        "text/css; charset=utf-8",
        include_str!("../assets/ui.css"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/ui.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../assets/favicon.svg"),
    ),
];

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *body,
        )
            .into_response(),
        None => pages::not_found().await.into_response(),
    }
}
