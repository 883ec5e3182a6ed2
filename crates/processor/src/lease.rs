//! Lengthening the lease a processor holds before a call that would
//! outlast it (a delivery to an endpoint whose timeout is longer than the
//! processor's lease, SPEC section 10): [`Processor::lease_for`]. The store
//! lengthens it fenced on the lease ([`store::JobStore::extend_lease`]);
//! only once it has may the call be made, so two healthy processors still
//! never deliver one job twice.

use std::time::Duration;

use chrono::SubsecRound;
use domain::{Job, Timestamp};
use store::{Fenced, Lease};

use crate::{LEASE_MARGIN, Processor};

/// Why a call that needed a longer lease must not be made now. Either way
/// the job is left as it is: due again when the lease on it runs out.
#[derive(Debug)]
pub(crate) enum LeaseNotLengthened {
    /// Another lease, or none, is on the job (it was taken over): nothing
    /// this processor writes for it will land, so nothing may be sent.
    Lost,
    /// The store did not lengthen it, or could not say whether it did
    /// ([`store::StoreError::Indeterminate`], still unknown after issuing it
    /// again; logged with the job's id): the lease may end before the call
    /// would. (If the outcome was unknown the lease may be the longer one:
    /// a release gives the job back sooner.)
    Store,
}

impl LeaseNotLengthened {
    /// The attempt's outcome: not sent, tried again later. Lost, the save
    /// that follows is fenced out anyway; otherwise it records this and
    /// gives the lease back, whatever length it has.
    pub(crate) fn outcome(&self) -> domain::CallbackOutcome {
        let error = match self {
            Self::Lost => "the lease was taken over before the call; not sent",
            Self::Store => "the lease could not be lengthened to outlast the endpoint's timeout; not sent",
        };
        domain::CallbackOutcome::Retryable {
            status: None,
            error: error.to_owned(),
            retry_after: None,
        }
    }
}

/// How often a lengthening whose outcome is unknown is issued, in all.
const TRIES: u32 = 3;

impl Processor {
    /// Makes `lease` (held on `job`) last at least `needed` from now plus
    /// [`LEASE_MARGIN`], before a call that may take `needed`: nothing to
    /// do if it does already; otherwise one fenced write lengthens it, and
    /// `lease` (and the lease kept for shutdown) then say until when. On
    /// `Err` the caller does not make the call. A lengthening whose outcome
    /// is unknown is issued again (it is idempotent for its lease), each
    /// time from the clock's new now.
    pub(crate) async fn lease_for(
        &self,
        job: &Job,
        lease: &mut Lease,
        needed: Duration,
    ) -> Result<(), LeaseNotLengthened> {
        if lease.until >= self.lease_needed_until(needed) {
            return Ok(());
        }
        let mut pause = Duration::from_millis(100);
        let mut tries = 1;
        loop {
            let until = self.lease_needed_until(needed);
            match self
                .store
                .extend_lease(job.tenant(), job.id(), lease, until)
                .await
            {
                Ok(Fenced::Written) => {
                    lease.until = lease.until.max(until);
                    self.in_flight.lengthen(job.id(), lease);
                    tracing::info!(
                        lease_until = %lease.until,
                        needed_ms = needed.as_millis() as u64,
                        "lease lengthened for a long call"
                    );
                    return Ok(());
                }
                Ok(Fenced::LeaseLost) => {
                    tracing::warn!(job_id = %job.id(), "lease was taken over before a long call; not sending");
                    return Err(LeaseNotLengthened::Lost);
                }
                Err(err) if !err.is_determinate() && tries < TRIES => {
                    tracing::warn!(job_id = %job.id(), error = %err, "lengthening the lease: outcome unknown; issuing it again");
                    tries += 1;
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(err) => {
                    tracing::warn!(job_id = %job.id(), error = %err, "could not lengthen the lease; not sending, the job is due again when it runs out");
                    return Err(LeaseNotLengthened::Store);
                }
            }
        }
    }

    /// Until when a lease must last for a call of `needed` starting now.
    fn lease_needed_until(&self, needed: Duration) -> Timestamp {
        let span =
            chrono::Duration::from_std(needed.saturating_add(LEASE_MARGIN)).unwrap_or(chrono::Duration::MAX);
        self.clock
            .now()
            .checked_add_signed(span)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
            .trunc_subsecs(3)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use domain::{Clock, JobId, ManualClock, NewJob, Payload, Target, TenantId};
    use rand::SeedableRng;
    use store::{Claim, JobStore, Store};
    use store_sqlite::{SqliteOptions, SqliteStore};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::{ProcessorConfig, ProviderCatalog};

    struct Rig {
        store: Arc<SqliteStore>,
        clock: Arc<ManualClock>,
        processor: Processor,
        _dir: tempfile::TempDir,
    }

    /// A processor with a 30 s lease on a fresh SQLite store, and one job
    /// it has claimed (through the drain's own claim).
    async fn claimed() -> (Rig, Job, Lease) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Arc::new(
            SqliteStore::open(
                &dir.path().join("jobs.db"),
                SqliteOptions::default(),
                Arc::new(seal::Sealer::ephemeral().expect("a sealer")),
            )
            .expect("open"),
        );
        let clock = Arc::new(ManualClock::new("2026-03-01T12:00:00Z".parse().expect("a time")));
        let config = ProcessorConfig {
            owner: "p1".to_owned(),
            lease: Duration::from_secs(30),
            callback_timeout: Duration::from_secs(2),
            seed: Some(1),
            ..ProcessorConfig::default()
        };
        let as_store: Arc<dyn Store> = store.clone();
        let as_clock: Arc<dyn Clock> = clock.clone();
        let processor = Processor::new(
            as_store,
            as_clock,
            crate::http_client(),
            ProviderCatalog::new([]),
            config,
        )
        .expect("a valid configuration");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let now = clock.now();
        let job = Job::new(
            NewJob {
                id: JobId::generate(now, &mut rng),
                tenant: TenantId::new("acme"),
                target: Target::Callback("https://client.example/hook".parse().expect("a URL")),
                payload: Payload::Results { metadata: None },
                providers: Vec::new(),
            },
            now,
        );
        store.create_job(&job).await.expect("created");
        let due = store.due_jobs(now, 1).await.expect("due").remove(0);
        let (_, claimed) = processor.claim_in_span(due, &CancellationToken::new()).await;
        let (job, lease) = claimed.expect("claimed");
        let rig = Rig {
            store,
            clock,
            processor,
            _dir: dir,
        };
        (rig, job, lease)
    }

    /// The leases shutdown would give back (which it then no longer holds).
    fn held(rig: &Rig) -> Vec<Lease> {
        rig.processor
            .in_flight
            .take_all()
            .into_iter()
            .map(|(_, _, lease)| lease)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_lease_long_enough_is_left_alone() {
        let (rig, job, mut lease) = claimed().await;
        let before = lease.clone();
        rig.processor
            .lease_for(&job, &mut lease, Duration::from_secs(10))
            .await
            .expect("long enough");
        assert_eq!(lease, before, "30 s covers 10 s and the margin");
        assert_eq!(held(&rig), vec![before]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_lease_too_short_is_lengthened_in_the_store_and_for_shutdown() {
        let (rig, job, mut lease) = claimed().await;
        let claimed_until = lease.until;
        let needed = Duration::from_secs(15 * 60);
        rig.processor
            .lease_for(&job, &mut lease, needed)
            .await
            .expect("lengthened");
        let now = rig.clock.now();
        assert_eq!(
            lease.until,
            now + chrono::Duration::from_std(needed + LEASE_MARGIN).expect("fits")
        );
        assert!(lease.until > claimed_until);
        // Past the lease it was claimed with, another processor's claim
        // still loses; past the new one, the job is due again.
        let after_claimed = claimed_until + chrono::Duration::seconds(1);
        assert!(
            rig.store
                .due_jobs(after_claimed, 10)
                .await
                .expect("due")
                .is_empty()
        );
        let other = Lease {
            id: "other".to_owned(),
            owner: "p2".to_owned(),
            until: lease.until + chrono::Duration::seconds(60),
        };
        assert!(matches!(
            rig.store
                .claim(job.tenant(), job.id(), &other, after_claimed)
                .await
                .expect("claim"),
            Claim::Lost
        ));
        assert!(rig.store.due_jobs(lease.until, 10).await.expect("due").is_empty());
        let past = lease.until + chrono::Duration::milliseconds(1);
        assert_eq!(rig.store.due_jobs(past, 10).await.expect("due").len(), 1);
        assert_eq!(
            held(&rig),
            vec![lease.clone()],
            "shutdown releases the lengthened lease"
        );

        // Asked again for less, nothing changes.
        let before = lease.clone();
        rig.processor
            .lease_for(&job, &mut lease, Duration::from_secs(60))
            .await
            .expect("long enough");
        assert_eq!(lease, before);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_lease_taken_over_is_not_lengthened_and_nothing_may_be_sent() {
        let (rig, job, mut lease) = claimed().await;
        let past = lease.until + chrono::Duration::seconds(1);
        let rescuer = Lease {
            id: "rescuer".to_owned(),
            owner: "p2".to_owned(),
            until: past + chrono::Duration::seconds(30),
        };
        assert!(matches!(
            rig.store
                .claim(job.tenant(), job.id(), &rescuer, past)
                .await
                .expect("claim"),
            Claim::Won { .. }
        ));
        rig.clock.advance(Duration::from_secs(31));
        let before = lease.clone();
        let refused = rig
            .processor
            .lease_for(&job, &mut lease, Duration::from_secs(600))
            .await;
        assert!(matches!(refused, Err(LeaseNotLengthened::Lost)), "{refused:?}");
        assert_eq!(lease, before, "the lease we held is unchanged");
        assert_eq!(held(&rig), vec![before]);
        assert_eq!(
            rig.store
                .due_jobs(rescuer.until + chrono::Duration::milliseconds(1), 10)
                .await
                .expect("due")
                .len(),
            1,
            "the rescuer's lease runs out when it did"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_lease_that_ran_out_unreplaced_is_lengthened() {
        let (rig, job, mut lease) = claimed().await;
        rig.clock.advance(Duration::from_secs(45));
        rig.processor
            .lease_for(&job, &mut lease, Duration::from_secs(120))
            .await
            .expect("nobody replaced it");
        let now = rig.clock.now();
        assert!(lease.until >= now + chrono::Duration::seconds(125));
        assert!(rig.store.due_jobs(now, 10).await.expect("due").is_empty());
    }
}
