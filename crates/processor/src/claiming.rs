//! A drain's claiming between its polls: the queue of due jobs a poll read
//! and the slots have not taken yet, when to poll again, and what a poll's
//! first claims (its probe) say about other processors working the same
//! part of the due set. Decisions only: the drain does the store calls and
//! moves its place in the due set as told.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use store::{DueJob, PassOver};

use crate::slots::{self, ShareKey, Slots};

/// Claims made after a poll before the rest of its jobs: enough to notice
/// another processor working the same jobs, few enough that meeting it
/// costs little.
pub(crate) const PROBE_CLAIMS: usize = 2;

/// Polls in a row whose probe met another processor and won nothing, after
/// which a drain leaves the work to it.
pub(crate) const MAX_FRUITLESS_POLLS: u32 = 3;

/// Where the drain's next poll starts in the due set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PollMove {
    /// One on from where the last poll started: its probe met nobody.
    OneOn,
    /// Somewhere new at random, away from another processor we just met.
    Elsewhere,
}

/// What the drain does after a claim's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AfterClaim {
    /// Whether the drain goes on claiming.
    pub go_on: bool,
    /// Where the next poll starts, if that changes.
    pub poll_start: Option<PollMove>,
}

impl AfterClaim {
    const GO_ON: Self = Self {
        go_on: true,
        poll_start: None,
    };
}

/// The jobs of the last poll not claimed yet, and how that poll's probe went.
#[derive(Debug, Default)]
pub(crate) struct Claiming {
    /// Each with the share keys it counts under, worked out once.
    queue: VecDeque<(DueJob, Vec<ShareKey>)>,
    /// [`Slots::given_back`] when the last pass over the queue left every
    /// job in it refused; `None` once the queue has changed since.
    refused_at: Option<u64>,
    /// Probe claims of the last poll not answered yet; the rest of its
    /// jobs wait for them.
    probing: usize,
    probe_won: u64,
    probe_lost: u64,
    /// Polls in a row whose probe met another processor and won nothing.
    fruitless: u32,
    /// The last poll came back full, so it may have left due work unread:
    /// poll again as soon as a slot past the headroom frees and no queued
    /// job may take it.
    more_due: bool,
    /// What the last poll passed over, as the share keys its jobs count
    /// under: once one of them may start again (and none of its queued jobs
    /// is left to), its backlog is unread.
    passed_over: Vec<Vec<ShareKey>>,
    last_poll: Option<Instant>,
}

impl Claiming {
    /// Whether a poll's probe claims are still out (the rest of its jobs
    /// wait for them).
    pub fn probing(&self) -> bool {
        self.probing > 0
    }

    pub fn last_poll(&self) -> Option<Instant> {
        self.last_poll
    }

    /// Forgets the queued jobs: claiming is over, or another processor has
    /// them.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.refused_at = None;
    }

    /// Whether to poll now, at `now`: not without a free slot; at once when
    /// nothing runs (`idle`), when the last poll came back full and a slot
    /// past the headroom is free (some tenant holding slots may take it),
    /// or when something the last poll passed over may start again (its
    /// queued jobs, started first, are gone); otherwise, for a newcomer the
    /// headroom waits for, once `refill_every` has passed since the last
    /// poll. Called after the queue's jobs that may start have started.
    pub fn wants_poll(&self, slots: &Slots, idle: bool, refill_every: Duration, now: Instant) -> bool {
        let refill = self
            .last_poll
            .is_none_or(|at| now.saturating_duration_since(at) >= refill_every);
        let room = slots.free() > slots::headroom(slots.concurrency());
        slots.free() > 0 && (idle || (self.more_due && room) || refill || slots.admits_any(&self.passed_over))
    }

    /// Takes in what a poll at `at` read (`due`, at most `batch_size` jobs,
    /// none of the `passed_over` tenants' or receivers'); returns how many
    /// jobs are queued now. A poll that passed over some says nothing of
    /// their backlog: their queued jobs stay queued for their slots, and
    /// once one of them may start again, [`Self::wants_poll`] says so.
    pub fn polled(
        &mut self,
        due: Vec<DueJob>,
        passed_over: &PassOver,
        batch_size: usize,
        at: Instant,
    ) -> usize {
        self.last_poll = Some(at);
        self.more_due = due.len() >= batch_size;
        self.passed_over = slots::keys_passed_over(passed_over);
        let mut queue = if passed_over.is_empty() {
            VecDeque::with_capacity(due.len())
        } else {
            let mut kept = std::mem::take(&mut self.queue);
            kept.retain(|(d, _)| passed_over.passes(d));
            kept
        };
        // Claimed in the order the store gives: from this processor's own
        // place in the due set, so processors that read the same jobs (a
        // short backlog) still begin at different ones.
        queue.extend(due.into_iter().map(|due| {
            let keys = ShareKey::of(&due);
            (due, keys)
        }));
        self.queue = queue;
        self.refused_at = None;
        self.queue.len()
    }

    /// Takes slots for the queued jobs that may start now (only
    /// [`PROBE_CLAIMS`] of them right after a poll, the `probe`), oldest in
    /// the queue first, and returns them to claim; a job whose shares are
    /// full stays queued.
    pub fn start_claims(&mut self, slots: &mut Slots, probe: bool) -> Vec<(DueJob, Vec<ShareKey>)> {
        // Nothing given back and nothing queued since every queued job was
        // refused: they still are.
        if self.refused_at == Some(slots.given_back()) {
            return Vec::new();
        }
        let mut started = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        // Taking slots never lets a key in that was refused, so a key
        // refused once in this pass refuses the rest of its jobs: all of
        // them when it was refused for a job to a receiver new to it, the
        // others' otherwise (those new to it may still start past a
        // tenant's share).
        let mut refused: Vec<(ShareKey, bool)> = Vec::new();
        while let Some((due, keys)) = self.queue.pop_front() {
            let room = slots.free() > 0 && (!probe || started.len() < PROBE_CLAIMS);
            let newcomer = slots.newcomer(&keys);
            let known = || {
                refused
                    .iter()
                    .any(|(key, as_newcomer)| (*as_newcomer || !newcomer) && keys.contains(key))
            };
            if !room || known() {
                kept.push_back((due, keys));
                continue;
            }
            match slots.refusing(&keys) {
                None => {
                    slots.take(&keys);
                    started.push((due, keys));
                }
                Some(key) => {
                    refused.push((key.clone(), newcomer));
                    kept.push_back((due, keys));
                }
            }
        }
        self.queue = kept;
        // What is left was refused (a probe pass leaves some only for later).
        self.refused_at = (!probe).then(|| slots.given_back());
        if probe {
            self.probing = started.len();
            self.probe_won = 0;
            self.probe_lost = 0;
        }
        started
    }

    /// A claim's answer: it was a `probe` claim or not, and it `won`, was
    /// `lost` to another processor, or neither (the store failed, or
    /// shutdown came first).
    pub fn claim_answered(&mut self, probe: bool, won: bool, lost: bool) -> AfterClaim {
        if won {
            self.fruitless = 0;
        }
        if !probe {
            if lost {
                // Another processor is working these jobs: leave it the
                // rest and poll elsewhere.
                self.queue.clear();
                return AfterClaim {
                    go_on: true,
                    poll_start: Some(PollMove::Elsewhere),
                };
            }
            return AfterClaim::GO_ON;
        }
        self.probing = self.probing.saturating_sub(1);
        self.probe_won += u64::from(won);
        self.probe_lost += u64::from(lost);
        if self.probing > 0 {
            return AfterClaim::GO_ON;
        }
        self.probe_answered()
    }

    /// Once a poll's probe claims are answered. A probe that lost met
    /// another processor working here, so the rest of the poll is left to
    /// it and the next poll starts somewhere new, a few times; one that won
    /// nothing and met nobody (the index is behind the table, or the store
    /// failed) ends claiming: the next run will see.
    fn probe_answered(&mut self) -> AfterClaim {
        if self.probe_lost > 0 {
            self.queue.clear();
            let go_on = if self.probe_won == 0 {
                self.fruitless += 1;
                self.fruitless < MAX_FRUITLESS_POLLS
            } else {
                true
            };
            return AfterClaim {
                go_on,
                poll_start: Some(PollMove::Elsewhere),
            };
        }
        AfterClaim {
            go_on: self.probe_won > 0,
            poll_start: Some(PollMove::OneOn),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use domain::{JobId, TenantId};
    use rand::SeedableRng;

    use super::*;

    fn due(tenant: &str, n: u32) -> Vec<DueJob> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(n) + tenant.len() as u64);
        let at = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid time");
        (0..n)
            .map(|_| DueJob {
                id: JobId::generate(at, &mut rng),
                tenant: TenantId::new(tenant),
                due_at: at,
            })
            .collect()
    }

    fn tenants(started: &[(DueJob, Vec<ShareKey>)]) -> Vec<String> {
        started.iter().map(|(due, _)| due.tenant.to_string()).collect()
    }

    fn none() -> PassOver {
        PassOver::default()
    }

    /// A poll of `jobs` whose probe claims then come back as `answers`
    /// (won, lost); what the last answer said.
    fn probe(claiming: &mut Claiming, slots: &mut Slots, answers: &[(bool, bool)]) -> AfterClaim {
        claiming.polled(due("a", 10), &none(), 50, Instant::now());
        let started = claiming.start_claims(slots, true);
        assert_eq!(started.len(), answers.len(), "one answer per probe claim");
        let mut after = AfterClaim::GO_ON;
        for ((_, keys), (won, lost)) in started.iter().zip(answers) {
            slots.give_back(keys);
            after = claiming.claim_answered(true, *won, *lost);
        }
        after
    }

    #[test]
    fn a_poll_starts_only_its_probe_claims_and_the_rest_wait_for_them() {
        let mut claiming = Claiming::default();
        let mut slots = Slots::new(32);
        assert_eq!(claiming.polled(due("a", 10), &none(), 50, Instant::now()), 10);
        let probe = claiming.start_claims(&mut slots, true);
        assert_eq!(probe.len(), PROBE_CLAIMS);
        assert!(claiming.probing());
        let first = claiming.claim_answered(true, true, false);
        assert_eq!(first, AfterClaim::GO_ON, "one probe claim still out");
        assert!(claiming.probing());
        let second = claiming.claim_answered(true, true, false);
        assert_eq!(
            second,
            AfterClaim {
                go_on: true,
                poll_start: Some(PollMove::OneOn)
            },
            "a probe that met nobody moves the next poll one on"
        );
        assert!(!claiming.probing());
        let rest = claiming.start_claims(&mut slots, false);
        assert_eq!(rest.len(), 8, "then the rest of the poll starts");
    }

    #[test]
    fn a_probe_that_lost_leaves_the_poll_to_the_other_processor() {
        let mut claiming = Claiming::default();
        let mut slots = Slots::new(32);
        let after = probe(&mut claiming, &mut slots, &[(true, false), (false, true)]);
        assert_eq!(
            after,
            AfterClaim {
                go_on: true,
                poll_start: Some(PollMove::Elsewhere)
            }
        );
        assert!(
            claiming.start_claims(&mut slots, false).is_empty(),
            "the queue was left"
        );
    }

    #[test]
    fn three_fruitless_probes_in_a_row_end_claiming_and_a_win_resets_the_count() {
        let mut claiming = Claiming::default();
        let mut slots = Slots::new(32);
        let lost = [(false, true), (false, true)];
        assert!(probe(&mut claiming, &mut slots, &lost).go_on);
        assert!(probe(&mut claiming, &mut slots, &lost).go_on);
        // A claim won (here after a poll's probe) starts the count again.
        assert!(probe(&mut claiming, &mut slots, &[(true, false), (false, true)]).go_on);
        assert!(probe(&mut claiming, &mut slots, &lost).go_on);
        assert!(probe(&mut claiming, &mut slots, &lost).go_on);
        let third = probe(&mut claiming, &mut slots, &lost);
        assert_eq!(
            third,
            AfterClaim {
                go_on: false,
                poll_start: Some(PollMove::Elsewhere)
            }
        );
        assert_eq!(MAX_FRUITLESS_POLLS, 3);
    }

    #[test]
    fn a_probe_that_won_nothing_and_met_nobody_ends_claiming() {
        let mut claiming = Claiming::default();
        let mut slots = Slots::new(32);
        let after = probe(&mut claiming, &mut slots, &[(false, false), (false, false)]);
        assert_eq!(
            after,
            AfterClaim {
                go_on: false,
                poll_start: Some(PollMove::OneOn)
            }
        );
    }

    #[test]
    fn a_later_claim_lost_drops_the_queue_and_moves_elsewhere() {
        let mut claiming = Claiming::default();
        let mut slots = Slots::new(32);
        probe(&mut claiming, &mut slots, &[(true, false), (true, false)]);
        let started = claiming.start_claims(&mut slots, false);
        assert_eq!(started.len(), 8);
        claiming.polled(due("b", 3), &none(), 50, Instant::now());
        assert_eq!(claiming.claim_answered(false, true, false), AfterClaim::GO_ON);
        assert_eq!(
            claiming.claim_answered(false, false, true),
            AfterClaim {
                go_on: true,
                poll_start: Some(PollMove::Elsewhere)
            }
        );
        assert!(claiming.start_claims(&mut slots, false).is_empty());
        assert_eq!(
            claiming.claim_answered(false, false, false),
            AfterClaim::GO_ON,
            "a store error says nothing of other processors"
        );
    }

    #[test]
    fn a_job_whose_tenant_is_at_its_share_stays_queued() {
        let mut claiming = Claiming::default();
        let mut slots = Slots::new(4);
        // Share of one tenant in 4 slots: 4 - 1 headroom = 3.
        let mut jobs = due("a", 5);
        jobs.extend(due("b", 1));
        claiming.polled(jobs, &none(), 50, Instant::now());
        claiming.probing = 0;
        let started = claiming.start_claims(&mut slots, false);
        assert_eq!(
            tenants(&started),
            ["a", "a", "a", "b"],
            "b passes a's queued jobs"
        );
        assert_eq!(slots.free(), 0);
        let (_, keys) = &started[0];
        slots.give_back(keys);
        // a holds 2 of its share of 1 (two tenants in 3 slots): still queued.
        assert!(claiming.start_claims(&mut slots, false).is_empty());
        assert_eq!(claiming.queue.len(), 2);
    }

    #[test]
    fn a_job_to_a_new_receiver_starts_behind_a_queue_of_a_hung_one_s() {
        let at = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid time");
        let url = |s: &str| url::Url::parse(s).expect("a URL");
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut to = |origin: &str, n: usize| -> Vec<DueJob> {
            let tag = domain::ReceiverTag::of_callback(&url(origin));
            (0..n)
                .map(|_| DueJob {
                    id: JobId::generate_for(tag, at, &mut rng),
                    tenant: TenantId::new("a"),
                    due_at: at,
                })
                .collect()
        };
        let mut claiming = Claiming::default();
        let mut slots = Slots::new(32);
        let mut due = to("https://hung.example/", 40);
        due.extend(to("https://quick.example/", 1));
        claiming.polled(due, &none(), 50, Instant::now());
        let started = claiming.start_claims(&mut slots, false);
        assert_eq!(started.len(), 29, "the hung receiver's 28, and the quick one's");
        assert_eq!(
            started.last().map(|(d, _)| d.id.receiver()),
            Some(domain::ReceiverTag::of_callback(&url("https://quick.example/")))
        );
        assert_eq!(claiming.queue.len(), 12);
    }

    #[test]
    fn a_poll_that_passed_over_tenants_keeps_their_queued_jobs_and_their_backlog() {
        let mut claiming = Claiming::default();
        let at = Instant::now();
        let mut first = due("a", 2);
        first.extend(due("b", 1));
        claiming.polled(first, &none(), 3, at);
        assert!(claiming.more_due, "a full poll may have left work unread");
        let passed_over: PassOver = [TenantId::new("a")].into_iter().collect();
        let found = claiming.polled(due("c", 1), &passed_over, 3, at);
        assert_eq!(found, 3, "a's two queued jobs stay, b's go, c's join");
        let queued: Vec<String> = claiming.queue.iter().map(|(d, _)| d.tenant.to_string()).collect();
        assert_eq!(queued, ["a", "a", "c"]);
        assert!(!claiming.more_due, "the poll of the others was not full");
        // a holds no slot here, so it may start: its backlog is unread.
        let slots = Slots::new(32);
        let later = at + Duration::from_millis(1);
        assert!(claiming.wants_poll(&slots, false, Duration::from_secs(60), later));
        assert_eq!(
            claiming.polled(due("c", 1), &none(), 3, at),
            1,
            "a poll of all starts over"
        );
        assert!(!claiming.more_due);
    }

    #[test]
    fn polls_again_when_idle_when_work_was_left_unread_or_after_the_refill_interval() {
        let every = Duration::from_millis(500);
        let mut claiming = Claiming::default();
        let mut slots = Slots::new(8);
        let at = Instant::now();
        assert!(claiming.wants_poll(&slots, false, every, at), "never polled yet");
        claiming.polled(due("a", 1), &none(), 50, at);
        assert!(claiming.wants_poll(&slots, true, every, at), "nothing runs");
        assert!(!claiming.wants_poll(&slots, false, every, at));
        assert!(
            claiming.wants_poll(&slots, false, every, at + every),
            "refill is due"
        );
        claiming.polled(due("a", 2), &none(), 2, at);
        assert!(
            claiming.wants_poll(&slots, false, every, at),
            "the poll came back full"
        );
        // 7 of 8 taken: the one free slot is the headroom.
        for _ in 0..7 {
            assert!(slots.try_take(&[ShareKey::Tenant(TenantId::new("x"))]));
        }
        assert_eq!(slots.free(), 1);
        assert!(
            !claiming.wants_poll(&slots, false, every, at),
            "only the headroom is free"
        );
        assert!(claiming.wants_poll(&slots, false, every, at + every));
        assert!(slots.try_take(&[ShareKey::Tenant(TenantId::new("z"))]));
        assert!(
            !claiming.wants_poll(&slots, true, every, at + every),
            "no slot free"
        );
    }
}
