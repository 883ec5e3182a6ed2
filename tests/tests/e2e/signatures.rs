//! Signed callbacks (SPEC section 4): every delivery carries a Standard
//! Webhooks signature that the official verifier (PyPI `standardwebhooks`)
//! accepts; during a rotation it carries two.

use std::time::Duration;

use domain::{Clock, JobId, NewJob, SigningSecret, TenantId};
use providers_mock::SignatureVerdict;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, on_every_store, spawn_app_on};

on_every_store!(
    a_delivery_verifies_with_the_official_library,
    a_rotation_signs_with_both_secrets,
    a_tenant_without_a_secret_gets_no_unsigned_callback,
);

fn official(secret: &SigningSecret, delivery: &providers_mock::Delivery, body: &[u8]) -> Result<(), String> {
    testkit::verify_with_official_library(&secret.expose_secret(), delivery.headers.iter(), body)
}

async fn a_delivery_verifies_with_the_official_library(backend: Backend) {
    let app = spawn_app_on(backend).await;
    app.accepted_job(&["gas", "internet"]).await;
    let report = app.processor("p1").drain(&CancellationToken::new()).await;
    assert_eq!(report.delivered, 1, "{report:?}");
    let delivery = app.mock.state.accepted_deliveries().remove(0);
    assert_eq!(
        delivery.signature,
        SignatureVerdict::Valid,
        "the sink's own check"
    );
    let header = &delivery.headers["webhook-signature"];
    assert!(
        header.starts_with("v1,") && !header.contains(' '),
        "one signature: {header}"
    );
    official(&app.secret, &delivery, &delivery.raw_body).expect("the official verifier accepts it");

    let mut tampered = delivery.raw_body.clone();
    tampered.extend_from_slice(b" ");
    assert!(
        official(&app.secret, &delivery, &tampered).is_err(),
        "a changed body is refused"
    );
    let stranger = SigningSecret::generate(&mut rand::rng());
    assert!(
        official(&stranger, &delivery, &delivery.raw_body).is_err(),
        "another secret is refused"
    );
}

async fn a_rotation_signs_with_both_secrets(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let old = app.secret.clone();
    let new = SigningSecret::generate(&mut rand::rng());
    store::rotate_signing_secret(
        &*app.store,
        &TenantId::new("default"),
        new.clone(),
        app.clock.now(),
        Duration::from_secs(3600),
    )
    .await
    .expect("rotate");
    app.accepted_job(&["gas"]).await;
    let report = app.processor("p1").drain(&CancellationToken::new()).await;
    assert_eq!(report.delivered, 1, "{report:?}");
    let delivery = app.mock.state.accepted_deliveries().remove(0);
    let header = &delivery.headers["webhook-signature"];
    assert_eq!(
        header.split(' ').count(),
        2,
        "both secrets sign during the overlap: {header}"
    );
    // A receiver that knows either secret accepts it.
    official(&old, &delivery, &delivery.raw_body).expect("the old secret verifies");
    official(&new, &delivery, &delivery.raw_body).expect("the new secret verifies");
}

async fn a_tenant_without_a_secret_gets_no_unsigned_callback(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let now = app.clock.now();
    let tenant = TenantId::new("unsigned");
    let job = domain::Job::new(
        NewJob {
            id: JobId::generate(now, &mut rand::rng()),
            tenant: tenant.clone(),
            target: domain::Target::Callback(url::Url::parse(&app.callback_url()).expect("url")),
            payload: domain::Payload::Results { metadata: None },
            providers: vec![],
        },
        now,
    );
    app.store.create_job(&job).await.expect("create");
    let report = app.processor("p1").drain(&CancellationToken::new()).await;
    assert_eq!((report.delivered, report.retried), (0, 1), "{report:?}");
    assert!(
        app.mock.state.deliveries().is_empty(),
        "nothing unsigned was sent"
    );
    let read = app
        .store
        .get_job(&tenant, job.id())
        .await
        .expect("get")
        .expect("kept");
    let error = read.delivery().last_error.clone().expect("why");
    assert!(error.contains("no signing secret"), "{error}");
}
