//! The web UI at `/ui` over real HTTP (SPEC section 12): signing in, the
//! session cookie, the CSRF token every form carries, the security headers,
//! tenant scoping, and hostile text shown as text. What a browser does with
//! the pages (scripts, keyboard, the clipboard) is the browser tests'.

use std::time::Duration;

use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, TestApp, create_key, on_every_store, spawn_app_on};

on_every_store!(
    signing_in_keeps_the_key_in_a_strict_cookie_and_every_page_carries_the_csp,
    a_dead_lettered_job_is_shown_as_text_and_redriven_only_from_our_own_form,
);

/// A browser that follows no redirect, so the test sees each one.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

impl TestApp {
    /// Signs in with `key`; the `Cookie` header value the session is.
    async fn sign_in(&self, key: &str) -> String {
        let response = browser()
            .post(format!("{}/ui/sign-in", self.base))
            .form(&[("key", key)])
            .send()
            .await
            .expect("POST sign-in");
        assert_eq!(response.status(), 303);
        assert_eq!(response.headers()[LOCATION], "/ui");
        let cookie = response.headers()[SET_COOKIE].to_str().expect("ascii").to_owned();
        cookie.split(';').next().expect("name=value").to_owned()
    }

    async fn page(&self, cookie: Option<&str>, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
        let mut request = browser().get(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("GET");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, response.text().await.expect("body"), headers)
    }
}

/// The one value of `name="csrf"` on a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().expect("value").to_owned()
}

async fn signing_in_keeps_the_key_in_a_strict_cookie_and_every_page_carries_the_csp(backend: Backend) {
    let app = spawn_app_on(backend).await;
    // Not signed in: every page sends the viewer to sign in.
    for path in [
        "/ui",
        "/ui/jobs",
        "/ui/endpoints",
        "/ui/jobs/01KDVDNBYG2G5GJBN0235ABBVQ",
    ] {
        let (status, _, headers) = app.page(None, path).await;
        assert_eq!(status, 303, "{path}");
        assert_eq!(headers[LOCATION], "/ui/sign-in", "{path}");
    }
    // `/ui/` is the overview's other name.
    let (status, _, headers) = app.page(None, "/ui/").await;
    assert_eq!(status, 308);
    assert_eq!(headers[LOCATION], "/ui");
    assert_eq!(headers[CONTENT_SECURITY_POLICY], ui::CONTENT_SECURITY_POLICY);
    let (status, html, headers) = app.page(None, "/ui/sign-in").await;
    assert_eq!(status, 200);
    let csp = headers[CONTENT_SECURITY_POLICY].to_str().expect("ascii");
    assert_eq!(csp, ui::CONTENT_SECURITY_POLICY);
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && !csp.contains('*'),
        "{csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        html.contains("<input id=\"key\" name=\"key\" type=\"password\""),
        "{html}"
    );
    assert!(
        !html.contains("<script>") && !html.contains(" style="),
        "no inline script or style: {html}"
    );

    // A wrong key: the form again, 401, no cookie.
    let wrong = browser()
        .post(format!("{}/ui/sign-in", app.base))
        .form(&[("key", "hk_not_a_key")])
        .send()
        .await
        .expect("POST");
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(
        wrong
            .text()
            .await
            .expect("body")
            .contains("That API key is not valid.")
    );

    // The right one: a cookie no script and no other site gets, on /ui only.
    let response = browser()
        .post(format!("{}/ui/sign-in", app.base))
        .form(&[("key", app.key.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 303);
    let set = response.headers()[SET_COOKIE].to_str().expect("ascii").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(
        !set.contains(&app.key),
        "the key as sent is not in the cookie: {set}"
    );
    // Served on 127.0.0.1 over plain HTTP: not Secure there (anywhere else it is).
    assert!(!set.contains("Secure"), "{set}");

    // A sign-in posted by another site's page is refused.
    let forged = browser()
        .post(format!("{}/ui/sign-in", app.base))
        .header("sec-fetch-site", "cross-site")
        .form(&[("key", app.key.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(forged.status(), 403);
    assert!(forged.headers().get(SET_COOKIE).is_none());

    let cookie = app.sign_in(&app.key).await;
    let (status, html, headers) = app.page(Some(&cookie), "/ui").await;
    assert_eq!(status, 200, "{html}");
    assert!(headers.contains_key(CONTENT_SECURITY_POLICY));
    assert_eq!(headers["cache-control"], "no-store");
    assert!(html.contains("Dead letter: latest failures"), "{html}");
    assert!(!html.contains(&app.key), "the key is never on a page");

    // Signing out needs the page's token, and forgets the cookie.
    let no_token = browser()
        .post(format!("{}/ui/sign-out", app.base))
        .header("cookie", &cookie)
        .form(&[("csrf", "")])
        .send()
        .await
        .expect("POST");
    assert_eq!(no_token.status(), 403);
    let out = browser()
        .post(format!("{}/ui/sign-out", app.base))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf_of(&html).as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(out.status(), 303);
    assert!(
        out.headers()[SET_COOKIE]
            .to_str()
            .expect("ascii")
            .contains("Max-Age=0")
    );

    // A revoked or garbled cookie is no session.
    let (status, _, _) = app.page(Some("hookline_ui=aGtfbm9wZQ"), "/ui").await;
    assert_eq!(status, 303);
}

async fn a_dead_lettered_job_is_shown_as_text_and_redriven_only_from_our_own_form(backend: Backend) {
    let app = spawn_app_on(backend).await;
    // A receiver that answers 410 with markup in its body.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hostile = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::GONE,
                "<script>alert(1)</script><img src=x onerror=alert(2)>",
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let (status, job) = app
        .send(
            reqwest::Method::POST,
            "/webhook",
            Some(json!({"providers": ["gas"], "callbackUrl": hostile})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["jobId"].as_str().expect("jobId").to_owned();
    let report = app.processor("p1").drain(&CancellationToken::new()).await;
    assert_eq!(report.dead_lettered, 1, "{report:?}");

    let cookie = app.sign_in(&app.key).await;
    let (status, dead, _) = app.page(Some(&cookie), "/ui/jobs?status=failed").await;
    assert_eq!(status, 200, "{dead}");
    assert!(dead.contains(&format!("href=\"/ui/jobs/{id}\"")), "{dead}");

    let (status, html, _) = app.page(Some(&cookie), &format!("/ui/jobs/{id}")).await;
    assert_eq!(status, 200, "{html}");
    // Escaped as entities, named or numbered (askama writes `&#60;`).
    let html = html.replace("&#60;", "&lt;").replace("&#62;", "&gt;");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "the receiver's body is shown as text: {html}"
    );
    assert!(
        !html.contains("<script>alert") && !html.contains("<img"),
        "{html}"
    );

    // Another tenant's key sees nothing of it.
    let other = create_key(&*app.store, "other").await;
    let other_cookie = app.sign_in(&other).await;
    let (status, _, _) = app.page(Some(&other_cookie), &format!("/ui/jobs/{id}")).await;
    assert_eq!(status, 404);

    // Redrive: refused without the page's token or from another site; done with it.
    let token = csrf_of(&html);
    let retry = |csrf: String, site: &'static str| {
        let url = format!("{}/ui/jobs/{id}/retry", app.base);
        let cookie = cookie.clone();
        async move {
            browser()
                .post(url)
                .header("cookie", cookie)
                .header("sec-fetch-site", site)
                .form(&[("csrf", csrf)])
                .send()
                .await
                .expect("POST retry")
        }
    };
    assert_eq!(retry(String::new(), "same-origin").await.status(), 403);
    assert_eq!(
        retry(
            csrf_of(&other_cookie_page(&app, &other_cookie).await),
            "same-origin"
        )
        .await
        .status(),
        403
    );
    assert_eq!(retry(token.clone(), "cross-site").await.status(), 403);
    assert_eq!(app.get_job(&id).await["status"], "failed", "nothing was redriven");
    let done = retry(token, "same-origin").await;
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()[LOCATION], format!("/ui/jobs/{id}").as_str());
    assert_eq!(app.get_job(&id).await["status"], "delivering");
}

/// A page of the other tenant's session, for its (valid, but not this
/// session's) CSRF token.
async fn other_cookie_page(app: &TestApp, cookie: &str) -> String {
    app.page(Some(cookie), "/ui").await.1
}
