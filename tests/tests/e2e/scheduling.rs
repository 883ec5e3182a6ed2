//! The cron loop: drains on schedule, never two at once, stops on shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use processor::schedule::{DrainGate, run_scheduled};
use providers_mock::Faults;
use tokio_util::sync::CancellationToken;

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_in_progress_turns_away_the_next_tick() {
    let app = spawn_app().await;
    app.mock.state.set_provider_faults(
        "gas",
        Faults {
            latency_ms: 1500,
            ..Faults::default()
        },
    );
    app.accepted_job(&["gas"]).await;
    let processor = app.processor("p1");
    let gate = DrainGate::default();
    let token = CancellationToken::new();

    // The second drain is tried once the first is provably inside its job:
    // the provider has the fetch, which it holds for 1.5 s.
    let (slow, overlapping) = tokio::join!(gate.try_drain(&processor, &token), async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while app.mock.state.provider_calls("gas") == 0 {
            assert!(Instant::now() < deadline, "the first drain never fetched");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        gate.try_drain(&processor, &token).await
    });
    assert_eq!(slow.map(|r| r.delivered), Some(1));
    assert!(
        overlapping.is_none(),
        "a second drain ran while the first was still going"
    );
    assert!(gate.wait_idle(Duration::from_millis(100)).await);
    let after = gate.try_drain(&processor, &token).await;
    assert_eq!(
        after.map(|r| r.claimed),
        Some(0),
        "the gate opens again once the drain is done"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cron_loop_delivers_and_stops_on_shutdown() {
    let app = spawn_app().await;
    let id = app.accepted_job(&["gas", "internet"]).await;
    let processor = Arc::new(app.processor("cron"));
    let shutdown = CancellationToken::new();
    let scheduled = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { run_scheduled(processor, "* * * * * *", shutdown, Duration::from_secs(5), None).await }
    });

    let deadline = Instant::now() + Duration::from_secs(15);
    while app.get_job(&id).await["status"] != "complete" {
        assert!(
            Instant::now() < deadline,
            "the scheduled processor did not deliver"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), scheduled).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "run_scheduled returns after shutdown: {stopped:?}"
    );
    assert_eq!(app.mock.state.accepted_deliveries().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_job_wakes_the_processor_before_its_next_tick() {
    let wake = Arc::new(tokio::sync::Notify::new());
    let store = Arc::new(crate::helpers::dynamo_store().await);
    let app = crate::helpers::spawn_app_waking(
        store,
        Some(Arc::clone(&wake)),
        Arc::new(netguard::NetPolicy::loopback_allowed()),
    )
    .await;
    let processor = Arc::new(app.processor("woken"));
    let shutdown = CancellationToken::new();
    // Once a year: only the wake-up can deliver within the test.
    let scheduled = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            run_scheduled(
                processor,
                "0 0 0 1 1 *",
                shutdown,
                Duration::from_secs(5),
                Some(wake),
            )
            .await
        }
    });

    let posted = Instant::now();
    let id = app.accepted_job(&["gas"]).await;
    let deadline = posted + Duration::from_secs(5);
    // The sink hears of the job before the processor records it complete.
    while app.mock.state.accepted_deliveries().is_empty() || app.get_job(&id).await["status"] != "complete" {
        assert!(
            Instant::now() < deadline,
            "the new job did not wake the processor"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("posted to delivered and complete: {:?}", posted.elapsed());
    shutdown.cancel();
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(10), scheduled).await,
        Ok(Ok(Ok(())))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_what_it_cannot_finish_within_the_grace_period() {
    let app = spawn_app().await;
    app.mock.state.set_provider_faults(
        "gas",
        Faults {
            latency_ms: 4000,
            ..Faults::default()
        },
    );
    let id = app.accepted_job(&["gas"]).await;
    let processor = Arc::new(app.processor("leaving"));
    let shutdown = CancellationToken::new();
    let scheduled = tokio::spawn({
        let (processor, shutdown) = (Arc::clone(&processor), shutdown.clone());
        async move {
            run_scheduled(
                processor,
                "* * * * * *",
                shutdown,
                Duration::from_millis(300),
                None,
            )
            .await
        }
    });

    let deadline = Instant::now() + Duration::from_secs(10);
    while processor.in_flight() == 0 {
        assert!(Instant::now() < deadline, "the job was never claimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        app.store
            .due_jobs(app.later(Duration::ZERO), 10)
            .await
            .expect("due")
            .is_empty(),
        "leased"
    );
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(3), scheduled).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "stopped within the grace period: {stopped:?}"
    );

    // Released, not left to expire: another processor may take it now.
    let due = app
        .store
        .due_jobs(app.later(Duration::ZERO), 10)
        .await
        .expect("due");
    assert_eq!(
        due.iter().map(|d| d.id.to_string()).collect::<Vec<_>>(),
        vec![id.clone()]
    );
    let rescuer = app.processor("rescuer").drain(&CancellationToken::new()).await;
    assert_eq!(rescuer.claimed, 1, "{rescuer:?}");
}
