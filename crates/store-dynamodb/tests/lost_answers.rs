//! Writes whose answer was lost (`testkit::faultproxy` between the store
//! and DynamoDB Local): the SDK retries them, and a retry that finds its
//! own effect is success; a write that may have been applied but whose
//! outcome is still unknown is `StoreError::Indeterminate`, never a
//! conflict or a plain `Unavailable`. Every case checks the table itself
//! through a second store that talks to DynamoDB Local directly.

use domain::{CallbackOutcome, JobStatus, RetryPolicy, Timestamp, Tried};
use rand::SeedableRng;
use store::conformance::{at, lease, new_job};
use store::{Claim, Fenced, IdempotencyRecord, IdempotentCreate, JobStore, Redrive, StoreError};
use store_dynamodb::{DynamoConfig, DynamoStore, create_table};
use testkit::faultproxy::{Fault, FaultProxy, dynamodb_target};

/// A store on a fresh table through a fault proxy, the same table without
/// it, and the proxy.
async fn proxied() -> (DynamoStore, DynamoStore, FaultProxy) {
    let upstream = testkit::dynamodb_endpoint();
    let proxy = FaultProxy::start(&upstream).await.expect("start the fault proxy");
    let table = testkit::unique_table_name("lost-answers");
    let sealer = std::sync::Arc::new(seal::Sealer::ephemeral().expect("an in-memory sealer"));
    let direct =
        DynamoStore::connect(DynamoConfig::new(&table).with_endpoint(upstream), sealer.clone()).await;
    create_table(direct.client(), &table).await.expect("create table");
    let through =
        DynamoStore::connect(DynamoConfig::new(&table).with_endpoint(proxy.endpoint()), sealer).await;
    (through, direct, proxy)
}

fn put_item() -> String {
    dynamodb_target("PutItem")
}

fn update_item() -> String {
    dynamodb_target("UpdateItem")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_is_created_not_a_conflict() {
    let (store, direct, proxy) = proxied().await;
    let job = new_job("acme", &["gas"], at(0), 1);
    proxy.arm(&put_item(), Fault::LoseAnswer, 1);

    let created = store.create_job(&job).await;

    eprintln!(
        "create: PutItem sent {} times, answers lost {}, outcome {created:?}",
        proxy.seen(&put_item()),
        proxy.fired(&put_item(), Fault::LoseAnswer)
    );
    assert_eq!(proxy.fired(&put_item(), Fault::LoseAnswer), 1);
    assert!(created.is_ok(), "the retry found our own job: {created:?}");
    assert_eq!(
        direct.get_job(job.tenant(), job.id()).await.expect("get"),
        Some(job)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_the_sdk_could_not_confirm_is_indeterminate_and_a_second_create_finds_it() {
    let (store, direct, proxy) = proxied().await;
    let job = new_job("acme", &["gas"], at(0), 2);
    // Applied by the first attempt; every retry's request is lost too.
    proxy.arm(&put_item(), Fault::LoseAnswer, 1);
    proxy.arm(&put_item(), Fault::LoseRequest, 10);

    let err = store.create_job(&job).await.expect_err("no answer got through");

    assert!(matches!(err, StoreError::Indeterminate(_)), "{err}");
    assert!(!err.is_determinate());
    assert!(
        direct
            .get_job(job.tenant(), job.id())
            .await
            .expect("get")
            .is_some()
    );
    proxy.disarm();
    // The caller's rule: the id is its own, so a conflict now is its job.
    assert!(matches!(store.create_job(&job).await, Err(StoreError::Conflict)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_requests_were_all_lost_is_indeterminate_and_wrote_nothing() {
    let (store, direct, proxy) = proxied().await;
    let job = new_job("acme", &["gas"], at(0), 3);
    proxy.arm(&put_item(), Fault::LoseRequest, 10);

    let err = store.create_job(&job).await.expect_err("no answer got through");

    // The SDK sent them and got no answer: it cannot know.
    assert!(matches!(err, StoreError::Indeterminate(_)), "{err}");
    assert_eq!(direct.get_job(job.tenant(), job.id()).await.expect("get"), None);
    proxy.disarm();
    store.create_job(&job).await.expect("created by the second call");
    assert_eq!(
        direct.get_job(job.tenant(), job.id()).await.expect("get"),
        Some(job)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_unavailable_and_determinate() {
    // A port nothing listens on: the connection is refused before sending.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let config = DynamoConfig::new("anything").with_endpoint(format!("http://127.0.0.1:{port}"));
    let store = DynamoStore::connect(
        config,
        std::sync::Arc::new(seal::Sealer::ephemeral().expect("sealer")),
    )
    .await;

    let err = store
        .create_job(&new_job("acme", &["gas"], at(0), 4))
        .await
        .expect_err("nothing listens");

    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.is_determinate());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_create_whose_answer_was_lost_is_created_once() {
    let (store, direct, proxy) = proxied().await;
    let target = dynamodb_target("TransactWriteItems");
    let job = new_job("acme", &["gas"], at(0), 5);
    let key = IdempotencyRecord {
        key_hash: "a".repeat(64),
        fingerprint: "f".repeat(64),
        expires_at: at(86_400),
    };
    proxy.arm(&target, Fault::LoseAnswer, 1);

    let created = store.create_job_idempotent(&job, &key, at(0)).await;

    assert_eq!(proxy.fired(&target, Fault::LoseAnswer), 1);
    assert_eq!(created.expect("created"), IdempotentCreate::Created);
    let again = new_job("acme", &["gas"], at(1), 6);
    assert_eq!(again.tenant(), job.tenant());
    assert_eq!(
        direct
            .create_job_idempotent(&again, &key, at(1))
            .await
            .expect("replay"),
        IdempotentCreate::Replay {
            job_id: job.id(),
            same_request: true
        }
    );
    assert_eq!(direct.get_job(job.tenant(), again.id()).await.expect("get"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_was_lost_is_won() {
    let (store, direct, proxy) = proxied().await;
    let job = new_job("acme", &["gas"], at(0), 7);
    direct.create_job(&job).await.expect("create");
    let ours = lease("p1", at(60));
    proxy.arm(&update_item(), Fault::LoseAnswer, 1);

    let claim = store
        .claim(job.tenant(), job.id(), &ours, at(1))
        .await
        .expect("claim");

    assert_eq!(proxy.fired(&update_item(), Fault::LoseAnswer), 1);
    let Claim::Won { job: won, .. } = claim else {
        panic!("our own lease is on the job: {claim:?}");
    };
    assert_eq!(*won, job);
    // The lease is ours: a save under it lands, another claim loses.
    assert!(matches!(
        direct
            .claim(job.tenant(), job.id(), &lease("p2", at(61)), at(2))
            .await
            .expect("claim"),
        Claim::Lost
    ));
    assert_eq!(
        direct.save(&won, &ours, at(2)).await.expect("save"),
        Fenced::Written
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_save_whose_answer_was_lost_is_written() {
    let (store, direct, proxy) = proxied().await;
    let job = new_job("acme", &[], at(0), 8);
    direct.create_job(&job).await.expect("create");
    let held = lease("p1", at(60));
    let Claim::Won { job: claimed, .. } = direct
        .claim(job.tenant(), job.id(), &held, at(1))
        .await
        .expect("claim")
    else {
        panic!("claim lost");
    };
    let mut done = *claimed;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    done.record_delivery(
        CallbackOutcome::Delivered { status: 200 },
        tried(at(2)),
        at(2),
        &RetryPolicy::default(),
        &mut rng,
    );
    proxy.arm(&put_item(), Fault::LoseAnswer, 1);

    let saved = store.save(&done, &held, at(2)).await.expect("save");

    assert_eq!(proxy.fired(&put_item(), Fault::LoseAnswer), 1);
    assert_eq!(saved, Fenced::Written, "the job is exactly what we wrote");
    assert_eq!(
        direct.get_job(job.tenant(), job.id()).await.expect("get"),
        Some(done)
    );
    // A lease that was really lost is still LeaseLost.
    assert_eq!(
        store.save(&job, &lease("p9", at(60)), at(3)).await.expect("save"),
        Fenced::LeaseLost
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_whose_answer_was_lost_is_written() {
    let (store, direct, proxy) = proxied().await;
    let job = new_job("acme", &["gas"], at(0), 9);
    direct.create_job(&job).await.expect("create");
    let held = lease("p1", at(60));
    assert!(matches!(
        direct
            .claim(job.tenant(), job.id(), &held, at(1))
            .await
            .expect("claim"),
        Claim::Won { .. }
    ));
    proxy.arm(&update_item(), Fault::LoseAnswer, 1);

    let released = store
        .release(job.tenant(), job.id(), &held)
        .await
        .expect("release");

    assert_eq!(proxy.fired(&update_item(), Fault::LoseAnswer), 1);
    assert_eq!(released, Fenced::Written);
    assert!(matches!(
        direct
            .claim(job.tenant(), job.id(), &lease("p2", at(61)), at(2))
            .await
            .expect("claim"),
        Claim::Won { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_extension_whose_answer_was_lost_is_written() {
    let (store, direct, proxy) = proxied().await;
    let job = new_job("acme", &["gas"], at(0), 15);
    direct.create_job(&job).await.expect("create");
    let held = lease("p1", at(30));
    assert!(matches!(
        direct
            .claim(job.tenant(), job.id(), &held, at(1))
            .await
            .expect("claim"),
        Claim::Won { .. }
    ));
    proxy.arm(&update_item(), Fault::LoseAnswer, 1);

    let extended = store
        .extend_lease(job.tenant(), job.id(), &held, at(300))
        .await
        .expect("extend");

    assert_eq!(proxy.fired(&update_item(), Fault::LoseAnswer), 1);
    assert_eq!(extended, Fenced::Written, "the retry found our lease lengthened");
    assert!(
        matches!(
            direct
                .claim(job.tenant(), job.id(), &lease("p2", at(400)), at(31))
                .await
                .expect("claim"),
            Claim::Lost
        ),
        "the lease lasts until its new expiry"
    );
    assert!(direct.due_jobs(at(300), 10).await.expect("due").is_empty());
    // A lease that was really replaced is still LeaseLost.
    assert_eq!(
        store
            .extend_lease(job.tenant(), job.id(), &lease("p9", at(30)), at(600))
            .await
            .expect("extend"),
        Fenced::LeaseLost
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_extension_that_landed_unconfirmed_is_indeterminate_and_issued_again_is_written() {
    let (store, direct, proxy) = proxied().await;
    let job = new_job("acme", &["gas"], at(0), 16);
    direct.create_job(&job).await.expect("create");
    let held = lease("p1", at(30));
    assert!(matches!(
        direct
            .claim(job.tenant(), job.id(), &held, at(1))
            .await
            .expect("claim"),
        Claim::Won { .. }
    ));
    proxy.arm(&update_item(), Fault::LoseAnswer, 1);
    proxy.arm(&update_item(), THROTTLED, 10);

    let err = store
        .extend_lease(job.tenant(), job.id(), &held, at(300))
        .await
        .expect_err("throttled");

    assert!(matches!(err, StoreError::Indeterminate(_)), "{err}");
    assert_eq!(
        direct
            .extend_lease(job.tenant(), job.id(), &held, at(300))
            .await
            .expect("extend again"),
        Fenced::Written,
        "issued again, it finds its own effect"
    );
    assert!(
        direct.due_jobs(at(31), 10).await.expect("due").is_empty(),
        "the first attempt landed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_whose_answer_was_lost_is_requeued() {
    let (store, direct, proxy) = proxied().await;
    let job = new_job("acme", &[], at(0), 10);
    direct.create_job(&job).await.expect("create");
    let held = lease("p1", at(60));
    let Claim::Won { job: claimed, .. } = direct
        .claim(job.tenant(), job.id(), &held, at(1))
        .await
        .expect("claim")
    else {
        panic!("claim lost");
    };
    let mut failed = *claimed;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    failed.record_delivery(
        CallbackOutcome::Gone,
        tried(at(2)),
        at(2),
        &RetryPolicy::default(),
        &mut rng,
    );
    assert_eq!(failed.status(), JobStatus::Failed);
    assert_eq!(
        direct.save(&failed, &held, at(2)).await.expect("save"),
        Fenced::Written
    );
    proxy.arm(&put_item(), Fault::LoseAnswer, 1);

    let redrive = store
        .redrive(job.tenant(), job.id(), at(100))
        .await
        .expect("redrive");

    assert_eq!(proxy.fired(&put_item(), Fault::LoseAnswer), 1);
    let Redrive::Requeued(requeued) = redrive else {
        panic!("the job is as our redrive left it: {redrive:?}");
    };
    assert_eq!(
        direct.get_job(job.tenant(), job.id()).await.expect("get"),
        Some(*requeued)
    );
}

const THROTTLED: Fault = Fault::Answer(400, "ProvisionedThroughputExceededException");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_write_is_unavailable_and_a_server_error_is_indeterminate() {
    let (store, direct, proxy) = proxied().await;
    let job = new_job("acme", &["gas"], at(0), 11);
    proxy.arm(&put_item(), THROTTLED, 10);

    let throttled = store.create_job(&job).await.expect_err("throttled");

    assert!(proxy.fired(&put_item(), THROTTLED) > 1, "the SDK retried");
    assert!(matches!(throttled, StoreError::Unavailable(_)), "{throttled}");
    proxy.disarm();
    proxy.arm(&put_item(), Fault::Answer(500, "InternalServerError"), 10);

    let failed = store.create_job(&job).await.expect_err("server error");

    assert!(matches!(failed, StoreError::Indeterminate(_)), "{failed}");
    assert_eq!(direct.get_job(job.tenant(), job.id()).await.expect("get"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_retry_after_a_lost_answer_is_indeterminate() {
    let (store, direct, proxy) = proxied().await;
    let job = new_job("acme", &[], at(0), 12);
    direct.create_job(&job).await.expect("create");
    let held = lease("p1", at(60));
    let Claim::Won { job: claimed, .. } = direct
        .claim(job.tenant(), job.id(), &held, at(1))
        .await
        .expect("claim")
    else {
        panic!("claim lost");
    };
    // Applied, its answer lost, and every retry throttled: the last error
    // is throttling, but the write may have happened (and did).
    proxy.arm(&put_item(), Fault::LoseAnswer, 1);
    proxy.arm(&put_item(), THROTTLED, 10);

    let err = store.save(&claimed, &held, at(2)).await.expect_err("throttled");

    assert!(matches!(err, StoreError::Indeterminate(_)), "{err}");
    proxy.disarm();
    assert_eq!(
        store.save(&claimed, &held, at(2)).await.expect("save"),
        Fenced::LeaseLost,
        "a new call finds the lease gone: the first one was written"
    );
}

/// The processor's rule for a claim it cannot confirm: give the lease back.
/// Here the claim landed, its answer was lost and every retry throttled:
/// the claim says it may have been applied, and the release that follows
/// frees the job for the next processor at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_landed_unconfirmed_is_indeterminate_and_its_release_frees_the_job() {
    let (store, direct, proxy) = proxied().await;
    let job = new_job("acme", &["gas"], at(0), 13);
    direct.create_job(&job).await.expect("create");
    let ours = lease("p1", at(60));
    proxy.arm(&update_item(), Fault::LoseAnswer, 1);
    proxy.arm(&update_item(), THROTTLED, 10);

    let err = store
        .claim(job.tenant(), job.id(), &ours, at(1))
        .await
        .expect_err("throttled");

    assert_eq!(proxy.fired(&update_item(), Fault::LoseAnswer), 1);
    assert!(proxy.fired(&update_item(), THROTTLED) >= 1, "the SDK retried");
    assert!(matches!(err, StoreError::Indeterminate(_)), "{err}");
    assert!(
        matches!(
            direct
                .claim(job.tenant(), job.id(), &lease("p2", at(61)), at(2))
                .await
                .expect("claim"),
            Claim::Lost
        ),
        "the first attempt landed: the job is held"
    );
    proxy.disarm();
    assert_eq!(
        store
            .release(job.tenant(), job.id(), &ours)
            .await
            .expect("release"),
        Fenced::Written
    );
    assert!(matches!(
        direct
            .claim(job.tenant(), job.id(), &lease("p2", at(61)), at(2))
            .await
            .expect("claim"),
        Claim::Won { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_landed_unconfirmed_is_indeterminate() {
    let (store, direct, proxy) = proxied().await;
    let job = new_job("acme", &["gas"], at(0), 14);
    direct.create_job(&job).await.expect("create");
    let held = lease("p1", at(60));
    assert!(matches!(
        direct
            .claim(job.tenant(), job.id(), &held, at(1))
            .await
            .expect("claim"),
        Claim::Won { .. }
    ));
    proxy.arm(&update_item(), Fault::LoseAnswer, 1);
    proxy.arm(&update_item(), THROTTLED, 10);

    let err = store
        .release(job.tenant(), job.id(), &held)
        .await
        .expect_err("throttled");

    assert!(matches!(err, StoreError::Indeterminate(_)), "{err}");
    assert!(
        matches!(
            direct
                .claim(job.tenant(), job.id(), &lease("p2", at(61)), at(2))
                .await
                .expect("claim"),
            Claim::Won { .. }
        ),
        "it was released"
    );
}

/// KeyStore writes take the same path as job writes: a rotation whose
/// answer was lost finds its own secrets and version, and is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_secrets_write_whose_answer_was_lost_is_written() {
    use domain::{SigningSecret, TenantId, TenantSecrets};
    use store::KeyStore;

    let (store, direct, proxy) = proxied().await;
    let tenant = TenantId::new("acme");
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let secrets = TenantSecrets::new(SigningSecret::generate(&mut rng));
    proxy.arm(&put_item(), Fault::LoseAnswer, 1);

    let written = store
        .put_signing_secrets(&tenant, &secrets, None)
        .await
        .expect("put");

    assert_eq!(proxy.fired(&put_item(), Fault::LoseAnswer), 1);
    assert!(written, "the retry found our own secrets and version");
    let (stored, version) = direct
        .signing_secrets(&tenant)
        .await
        .expect("read")
        .expect("written");
    assert_eq!(version, 1);
    assert_eq!(stored, secrets);
    // A second writer expecting no secrets is refused.
    assert!(
        !store
            .put_signing_secrets(&tenant, &secrets, None)
            .await
            .expect("put")
    );
}

fn tried(at: Timestamp) -> Tried {
    Tried {
        at,
        took: None,
        body: None,
        headers: Default::default(),
    }
}

/// A publish whose event put lost its answer: the SDK's retry finds the
/// event as ours (not a conflict), and the fan-out is completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_whose_event_answer_was_lost_completes_its_fan_out() {
    use store::conformance::events::{endpoint, event};
    use store::{EventStore, Published};

    let (store, direct, proxy) = proxied().await;
    let endpoints: Vec<domain::Endpoint> = (1..=3)
        .map(|seed| endpoint("acme", seed, None, &["*"], at(0)))
        .collect();
    let event = event("acme", 50, "invoice.paid", None, &endpoints, at(1));
    // The first PutItem is the event's; the deliveries follow it.
    proxy.arm(&put_item(), Fault::LoseAnswer, 1);

    let published = store.publish(&event, None, at(1)).await;

    assert_eq!(proxy.fired(&put_item(), Fault::LoseAnswer), 1);
    assert_eq!(published.expect("publish"), Published::Accepted);
    assert_eq!(
        direct.get_event(&event.tenant, event.id).await.expect("get"),
        Some(event.clone())
    );
    for job in event.delivery_jobs() {
        assert_eq!(
            direct.get_job(job.tenant(), job.id()).await.expect("get"),
            Some(job)
        );
    }
}

/// An endpoint update whose answer was lost: the retry finds our body at
/// the next version and answers written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_update_whose_answer_was_lost_is_written() {
    use store::EventStore;
    use store::conformance::events::endpoint;

    let (store, direct, proxy) = proxied().await;
    let first = endpoint("acme", 1, None, &["*"], at(0));
    store.create_endpoint(&first).await.expect("create");
    let mut disabled = first.clone();
    disabled.disable(domain::DisabledReason::Manual, at(2));
    proxy.arm(&put_item(), Fault::LoseAnswer, 1);

    let updated = store.update_endpoint(&disabled, 1).await;

    assert_eq!(proxy.fired(&put_item(), Fault::LoseAnswer), 1);
    assert!(updated.expect("update"), "the retry found our own write");
    assert_eq!(
        direct.get_endpoint(&first.tenant, first.id).await.expect("get"),
        Some((disabled, 2))
    );
}

/// A source's create, update and delete (each one transaction of its two
/// items) whose answers were lost: each retry finds its own effect (our
/// source; our body at the next version; nothing left) and answers
/// written, and both items are as the write left them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_writes_whose_answers_were_lost_are_written() {
    use store::SourceStore;
    use store::conformance::sources::source;

    let (store, direct, proxy) = proxied().await;
    let target = dynamodb_target("TransactWriteItems");
    let created = source("acme", 1, "github", at(0));

    proxy.arm(&target, Fault::LoseAnswer, 1);
    let create = store.create_source(&created).await;
    assert_eq!(proxy.fired(&target, Fault::LoseAnswer), 1);
    create.expect("the retry found our own source");
    assert_eq!(
        direct.get_source(created.id).await.expect("get"),
        Some((created.clone(), 1))
    );

    let mut renamed = created.clone();
    renamed.name = "renamed".to_owned();
    proxy.arm(&target, Fault::LoseAnswer, 1);
    let update = store.update_source(&renamed, 1).await;
    assert_eq!(proxy.fired(&target, Fault::LoseAnswer), 2);
    assert!(update.expect("update"), "the retry found our own write");
    assert_eq!(
        direct.get_source(created.id).await.expect("get"),
        Some((renamed.clone(), 2))
    );
    assert_eq!(
        direct
            .list_sources(&created.tenant, None, 10)
            .await
            .expect("list")
            .sources,
        [renamed],
        "the listing item moved with it"
    );

    proxy.arm(&target, Fault::LoseAnswer, 1);
    let delete = store.delete_source(&created.tenant, created.id).await;
    assert_eq!(proxy.fired(&target, Fault::LoseAnswer), 3);
    assert!(delete.expect("delete"), "the retry found it gone");
    assert_eq!(direct.get_source(created.id).await.expect("get"), None);
    assert!(
        direct
            .list_sources(&created.tenant, None, 10)
            .await
            .expect("list")
            .sources
            .is_empty()
    );
}

/// A source request whose answer was lost: the retry's refusal is the
/// request written, so it is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_request_whose_answer_was_lost_is_recorded_once() {
    use store::SourceStore;
    use store::conformance::sources::{source, source_request};

    let (store, direct, proxy) = proxied().await;
    let created = source("acme", 1, "github", at(0));
    direct.create_source(&created).await.expect("create");
    let request = source_request(&created, 2, at(10));
    proxy.arm(&put_item(), Fault::LoseAnswer, 1);

    let recorded = store.record_source_request(&request).await;

    assert_eq!(proxy.fired(&put_item(), Fault::LoseAnswer), 1);
    recorded.expect("recorded");
    assert_eq!(
        direct
            .source_requests(&created.tenant, created.id, 10)
            .await
            .expect("read"),
        [request]
    );
}

/// A source create applied but never confirmed is `Indeterminate`; issued
/// again, it finds its own source (the same content) and answers `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_create_the_sdk_could_not_confirm_is_indeterminate_and_issued_again_is_ok() {
    use store::SourceStore;
    use store::conformance::sources::source;

    let (store, direct, proxy) = proxied().await;
    let target = dynamodb_target("TransactWriteItems");
    let created = source("acme", 3, "github", at(0));
    proxy.arm(&target, Fault::LoseAnswer, 1);
    proxy.arm(&target, Fault::LoseRequest, 10);

    let err = store
        .create_source(&created)
        .await
        .expect_err("no answer got through");

    assert!(matches!(err, StoreError::Indeterminate(_)), "{err}");
    assert_eq!(
        direct.get_source(created.id).await.expect("get"),
        Some((created.clone(), 1))
    );
    proxy.disarm();
    store
        .create_source(&created)
        .await
        .expect("the same source again is ours");
}
