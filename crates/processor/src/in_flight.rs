//! [`InFlight`]: the leases of the jobs a processor is working on now, so
//! shutdown can give back what it cannot finish.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use domain::{JobId, TenantId};
use store::Lease;

/// Leases held, by job: taken when a claim is won, let go once the job's
/// save has been tried (whatever came of it).
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    leases: Mutex<HashMap<JobId, (TenantId, Lease)>>,
}

impl InFlight {
    pub fn hold(&self, id: JobId, tenant: TenantId, lease: Lease) {
        self.lock().insert(id, (tenant, lease));
    }

    /// Keeps `lease` (lengthened) in place of the one held on `id` under
    /// the same lease id; nothing if none is held any more (shutdown took
    /// it, or the job's save was tried).
    pub fn lengthen(&self, id: JobId, lease: &Lease) {
        if let Some((_, held)) = self.lock().get_mut(&id).filter(|(_, held)| held.id == lease.id) {
            held.until = lease.until;
        }
    }

    pub fn let_go(&self, id: JobId) {
        self.lock().remove(&id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Every lease held, which are then no longer this instance's to give back.
    pub fn take_all(&self) -> Vec<(JobId, TenantId, Lease)> {
        self.lock()
            .drain()
            .map(|(id, (tenant, lease))| (id, tenant, lease))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<JobId, (TenantId, Lease)>> {
        // One insert or remove at a time: a poisoned map is still whole.
        self.leases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use rand::SeedableRng;

    use super::*;

    fn lease(id: &str) -> Lease {
        Lease {
            id: id.to_owned(),
            owner: "p1".to_owned(),
            until: Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 1, 0)
                .single()
                .expect("a valid time"),
        }
    }

    #[test]
    fn holds_until_let_go_and_hands_over_what_is_left_once() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let now = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid time");
        let (a, b) = (JobId::generate(now, &mut rng), JobId::generate(now, &mut rng));
        let held = InFlight::default();
        held.hold(a, TenantId::new("acme"), lease("la"));
        held.hold(b, TenantId::new("other"), lease("lb"));
        assert_eq!(held.len(), 2);
        held.let_go(a);
        held.let_go(a);
        assert_eq!(held.len(), 1);
        let left = held.take_all();
        assert_eq!(left.len(), 1);
        let (id, tenant, lease) = &left[0];
        assert_eq!(
            (*id, tenant.to_string(), lease.id.as_str()),
            (b, "other".to_owned(), "lb")
        );
        assert_eq!(held.len(), 0);
        assert!(held.take_all().is_empty(), "given back once");
    }

    #[test]
    fn a_lengthened_lease_replaces_the_one_held_under_its_id_only() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let now = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid time");
        let (a, b) = (JobId::generate(now, &mut rng), JobId::generate(now, &mut rng));
        let held = InFlight::default();
        held.hold(a, TenantId::new("acme"), lease("la"));
        let longer = Lease {
            until: now + chrono::Duration::minutes(20),
            ..lease("la")
        };
        held.lengthen(a, &longer);
        held.lengthen(
            a,
            &Lease {
                until: now + chrono::Duration::hours(5),
                ..lease("someone-else")
            },
        );
        held.lengthen(b, &longer);
        let left = held.take_all();
        assert_eq!(left.len(), 1, "nothing held is added");
        assert_eq!(left[0].2, longer);
        held.lengthen(a, &longer);
        assert_eq!(held.len(), 0, "once taken, not held again");
    }
}
