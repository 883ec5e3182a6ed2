//! `hookline lambda processor`: an EventBridge scheduled event through the
//! handler drains what is due, within the invocation's deadline.

use std::time::{Duration, Instant};

use domain::{JobId, JobStatus, TenantId};
use processor::ProcessorConfig;
use providers_mock::{Faults, SignatureVerdict};

use crate::support::{scheduled_event, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_event_drains_a_due_job_to_a_signed_callback() {
    let setup = setup(Duration::from_secs(5)).await;
    let id: JobId = setup.post_job().await.parse().expect("job id");
    let processor = setup.processor(ProcessorConfig {
        owner: "lambda-processor".to_owned(),
        ..ProcessorConfig::default()
    });
    let summary = lambda::drain_invocation(
        &processor,
        scheduled_event(Duration::from_secs(120)),
        lambda::DEFAULT_DEADLINE_MARGIN,
    )
    .await
    .expect("a drain without store errors");
    assert!(summary.finished, "{summary:?}");
    assert_eq!((summary.claimed, summary.delivered), (1, 1), "{summary:?}");
    assert_eq!((summary.retried, summary.dead_lettered), (0, 0), "{summary:?}");
    let json = serde_json::to_value(&summary).expect("JSON");
    assert_eq!(json["delivered"], 1, "{json}");
    assert_eq!(json["deadLettered"], 0, "{json}");

    let deliveries = setup.mock.state.accepted_deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0].job_id(), Some(id.to_string().as_str()));
    assert_eq!(deliveries[0].signature, SignatureVerdict::Valid);
    let job = setup
        .store
        .get_job(&TenantId::new("acme"), id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(job.status(), JobStatus::Complete);
    assert_eq!(processor.in_flight(), 0);
}

/// An invocation with little time left claims only while a job claimed
/// could still finish before the deadline less the margin, saves what it
/// claimed, and leaves the rest due, leased to nobody: nothing is lost,
/// the next invocation takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_out_of_time_stops_cleanly_and_leaves_work_due() {
    let setup = setup(Duration::from_secs(2)).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(setup.post_job().await.parse::<JobId>().expect("job id"));
    }
    // Each callback takes 1.5 s: more than the drain's time to claim.
    setup.mock.state.set_sink_faults(Faults {
        latency_ms: 1_500,
        ..Faults::default()
    });
    let processor = setup.processor(ProcessorConfig {
        owner: "lambda-processor".to_owned(),
        concurrency: 1,
        callback_timeout: Duration::from_secs(3),
        ..ProcessorConfig::default()
    });
    // A job's attempt takes at most 2 s + 3 s; with a 1 s margin, 6 s
    // left is 1 s to claim in.
    let margin = Duration::from_secs(1);
    let remaining = margin + processor.attempt_time() + Duration::from_secs(1);
    let started = Instant::now();
    let summary = lambda::drain_invocation(&processor, scheduled_event(remaining), margin)
        .await
        .expect("a drain without store errors");
    let took = started.elapsed();
    assert!(
        took < remaining - margin,
        "answered after the deadline less the margin: {took:?}"
    );
    assert!(summary.finished, "{summary:?}");
    // The deadline is a wall-clock time: what the handler reads of it is
    // a little less than the event was made with.
    assert!((900..=1_000).contains(&summary.claim_window_ms), "{summary:?}");
    assert!(summary.claimed >= 1 && summary.claimed < 4, "{summary:?}");
    assert_eq!(
        summary.delivered, summary.claimed,
        "every claimed job was saved: {summary:?}"
    );
    assert_eq!(processor.in_flight(), 0);

    let due: Vec<JobId> = setup
        .store
        .due_jobs(chrono::Utc::now(), 10)
        .await
        .expect("due")
        .into_iter()
        .map(|due| due.id)
        .collect();
    let mut complete = 0;
    for id in &ids {
        let job = setup
            .store
            .get_job(&TenantId::new("acme"), *id)
            .await
            .expect("read")
            .expect("every job is still stored");
        match job.status() {
            JobStatus::Complete => complete += 1,
            JobStatus::Pending => assert!(due.contains(id), "{id} is pending and due: {due:?}"),
            other => panic!("{id} is {other:?}"),
        }
    }
    assert_eq!(complete, summary.delivered, "{summary:?}");
    assert_eq!(
        due.len() as u64,
        4 - summary.delivered,
        "the rest are due now: {due:?}"
    );

    // The next invocation, with time enough, delivers the rest.
    setup.mock.state.clear_faults();
    let next = lambda::drain_invocation(&processor, scheduled_event(Duration::from_secs(60)), margin)
        .await
        .expect("a drain without store errors");
    assert_eq!(next.delivered, 4 - summary.delivered, "{next:?}");
    assert_eq!(setup.mock.state.accepted_deliveries().len(), 4);
}

/// No time to finish a job before the deadline: nothing is claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_near_its_deadline_claims_nothing() {
    let setup = setup(Duration::from_secs(2)).await;
    let id: JobId = setup.post_job().await.parse().expect("job id");
    let processor = setup.processor(ProcessorConfig::default());
    let summary = lambda::drain_invocation(
        &processor,
        scheduled_event(Duration::from_secs(5)),
        lambda::DEFAULT_DEADLINE_MARGIN,
    )
    .await
    .expect("nothing to fail");
    assert!(summary.finished, "{summary:?}");
    assert_eq!((summary.claimed, summary.claim_window_ms), (0, 0), "{summary:?}");
    let due = setup.store.due_jobs(chrono::Utc::now(), 10).await.expect("due");
    assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), vec![id]);
    assert!(setup.mock.state.deliveries().is_empty());
}
