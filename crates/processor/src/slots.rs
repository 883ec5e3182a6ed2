//! How a drain shares its `concurrency` slots: no key (a tenant today)
//! takes every slot, and some are always kept for a key that holds none,
//! so a newcomer starts at once even while another key's jobs hang.
//!
//! The rule, for `C` slots, headroom `H` ([`headroom`]) and `n` keys
//! holding slots: a key holding no slot may take any free one; a key
//! holding some may take another while it holds fewer than its share,
//! `max(1, (C - H) / n)`, and more than `H` slots are free. A lone key so
//! runs `C - H` jobs at once (28 of 32), and keys within their shares
//! together hold at most `C - H`. A key over its share (its share shrank
//! when others arrived) takes nothing until it is back under it; as its
//! jobs finish, their slots go to the others.
//!
//! A job names its keys ([`ShareKey`]); it starts only if every one of
//! them may take a slot. Its tenant is one key and its receiver (the
//! endpoint or callback origin its id's [`ReceiverTag`] names) within that
//! tenant the other: the same rule shares the tenant's slots among its
//! receivers, with the tenant's share in place of `C` and its free part
//! in place of the free slots, and an even split rounded up
//! ([`receiver_share`]). So a tenant's one hung endpoint holds at most
//! `S - H(S)` of the tenant's share `S` (25 of 28), its other endpoints
//! start at once beside it, and healthy receivers together still run all
//! of `S` but its headroom.

use std::collections::HashMap;

use domain::{ReceiverTag, TenantId};
use store::{DueJob, PassOver};

/// What a share of the slots is counted by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ShareKey {
    Tenant(TenantId),
    /// One receiver of a tenant: its share is of the tenant's.
    Receiver(TenantId, ReceiverTag),
}

impl ShareKey {
    /// The keys a due job is counted under, its tenant's first.
    pub fn of(due: &DueJob) -> Vec<ShareKey> {
        vec![
            ShareKey::Tenant(due.tenant.clone()),
            ShareKey::Receiver(due.tenant.clone(), due.id.receiver()),
        ]
    }
}

/// Slots kept free for keys that hold none: an eighth of them (at least
/// one, when there is more than one slot).
pub fn headroom(concurrency: usize) -> usize {
    if concurrency <= 1 {
        0
    } else {
        (concurrency / 8).max(1)
    }
}

/// The most slots one of `holders` keys (of one kind) may hold.
pub fn share(concurrency: usize, holders: usize) -> usize {
    (concurrency.saturating_sub(headroom(concurrency)) / holders.max(1)).max(1)
}

/// Whether a key holding `held` slots may take one more, with `holders`
/// keys of its kind holding slots (itself included once it holds one) and
/// `free` slots free.
pub fn may_take(concurrency: usize, held: usize, holders: usize, free: usize) -> bool {
    if free == 0 {
        return false;
    }
    if held == 0 {
        return true;
    }
    held < share(concurrency, holders) && free > headroom(concurrency)
}

/// The most of a tenant's `budget` (its share) one of its `holders`
/// receivers may hold: an even split of all but the budget's headroom,
/// rounded up, so receivers within their shares fill the budget but for
/// that headroom (ten receivers of a lone tenant run 25 of its 28, not 20).
/// The headroom, kept by [`may_take`]'s check of the free slots, is what a
/// newcomer starts in.
pub fn receiver_share(budget: usize, holders: usize) -> usize {
    budget
        .saturating_sub(headroom(budget))
        .div_ceil(holders.max(1))
        .max(1)
}

/// [`may_take`] for a receiver within its tenant's `budget`, with the
/// shares of [`receiver_share`].
pub fn receiver_may_take(budget: usize, held: usize, holders: usize, free: usize) -> bool {
    if free == 0 {
        return false;
    }
    if held == 0 {
        return true;
    }
    held < receiver_share(budget, holders) && free > headroom(budget)
}

/// The keys a job of each tenant and receiver in `pass_over` would count
/// under.
pub fn keys_passed_over(pass_over: &PassOver) -> Vec<Vec<ShareKey>> {
    let tenants = pass_over
        .tenants()
        .iter()
        .map(|tenant| vec![ShareKey::Tenant(tenant.clone())]);
    let receivers = pass_over.receivers().map(|(tenant, tag)| {
        vec![
            ShareKey::Tenant(tenant.clone()),
            ShareKey::Receiver(tenant.clone(), tag),
        ]
    });
    tenants.chain(receivers).collect()
}

/// The slots of one drain: how many are taken and by which keys.
#[derive(Debug)]
pub struct Slots {
    concurrency: usize,
    taken: usize,
    held: HashMap<ShareKey, usize>,
    /// Tenants holding slots, and each one's receivers holding slots: the
    /// `holders` of the rule, kept as keys come and go.
    tenants_holding: usize,
    receivers_holding: HashMap<TenantId, usize>,
}

impl Slots {
    pub fn new(concurrency: usize) -> Self {
        Self {
            concurrency,
            taken: 0,
            held: HashMap::new(),
            tenants_holding: 0,
            receivers_holding: HashMap::new(),
        }
    }

    pub fn free(&self) -> usize {
        self.concurrency.saturating_sub(self.taken)
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    pub fn taken(&self) -> usize {
        self.taken
    }

    fn held(&self, key: &ShareKey) -> usize {
        self.held.get(key).copied().unwrap_or(0)
    }

    /// Keys holding slots that `key` shares with: other tenants, or the
    /// other receivers of its tenant.
    fn holders_beside(&self, key: &ShareKey) -> usize {
        match key {
            ShareKey::Tenant(_) => self.tenants_holding,
            ShareKey::Receiver(tenant, _) => self.receivers_holding.get(tenant).copied().unwrap_or(0),
        }
    }

    fn counted(&mut self, key: &ShareKey, holding: bool) {
        match key {
            ShareKey::Tenant(_) if holding => self.tenants_holding += 1,
            ShareKey::Tenant(_) => self.tenants_holding = self.tenants_holding.saturating_sub(1),
            ShareKey::Receiver(tenant, _) if holding => {
                *self.receivers_holding.entry(tenant.clone()).or_insert(0) += 1;
            }
            ShareKey::Receiver(tenant, _) => {
                if let Some(n) = self.receivers_holding.get_mut(tenant) {
                    *n -= 1;
                    if *n == 0 {
                        self.receivers_holding.remove(tenant);
                    }
                }
            }
        }
    }

    fn admits(&self, key: &ShareKey) -> bool {
        let held = self.held(key);
        let holders = self.holders_beside(key) + usize::from(held == 0);
        match key {
            ShareKey::Tenant(_) => may_take(self.concurrency, held, holders, self.free()),
            ShareKey::Receiver(tenant, _) => {
                let tenant = ShareKey::Tenant(tenant.clone());
                let tenant_held = self.held(&tenant);
                if tenant_held == 0 {
                    return self.free() > 0;
                }
                // The tenant's share as it stands, its slots among its
                // receivers as a drain's among its tenants.
                let tenant_holders = self.holders_beside(&tenant);
                let budget = share(self.concurrency, tenant_holders).max(tenant_held);
                let free = (budget - tenant_held).min(self.free());
                receiver_may_take(budget, held, holders, free)
            }
        }
    }

    /// Takes a slot for a job with `keys` if every key may take one.
    pub fn try_take(&mut self, keys: &[ShareKey]) -> bool {
        if self.refusing(keys).is_some() {
            return false;
        }
        self.take(keys);
        true
    }

    /// The first of `keys` that may not take a slot now, if any (no free
    /// slot: the first key).
    pub fn refusing<'k>(&self, keys: &'k [ShareKey]) -> Option<&'k ShareKey> {
        if self.free() == 0 {
            return keys.first();
        }
        keys.iter().find(|key| !self.admits(key))
    }

    /// Takes a slot for a job with `keys`, which [`Self::refusing`] has
    /// just let in.
    pub fn take(&mut self, keys: &[ShareKey]) {
        self.taken += 1;
        for key in keys {
            let held = self.held.entry(key.clone()).or_insert(0);
            *held += 1;
            if *held == 1 {
                self.counted(key, true);
            }
        }
    }

    /// Gives back the slot a job with `keys` took.
    pub fn give_back(&mut self, keys: &[ShareKey]) {
        self.taken = self.taken.saturating_sub(1);
        for key in keys {
            if let Some(held) = self.held.get_mut(key) {
                *held -= 1;
                if *held == 0 {
                    self.held.remove(key);
                    self.counted(key, false);
                }
            }
        }
    }

    /// Tenants and receivers that hold slots and may take no more now: a
    /// poll reads past their due jobs, to find others' behind them.
    pub fn pass_over(&self) -> PassOver {
        let mut pass_over = PassOver::default();
        let full = || self.held.keys().filter(|key| !self.admits(key));
        // Tenants first: a full tenant's receivers are passed over with it.
        for key in full() {
            if let ShareKey::Tenant(tenant) = key {
                pass_over.tenant(tenant.clone());
            }
        }
        for key in full() {
            if let ShareKey::Receiver(tenant, tag) = key {
                pass_over.receiver(tenant.clone(), *tag);
            }
        }
        pass_over
    }

    /// Whether a job of something a poll passed over (`passed`, as
    /// [`keys_passed_over`] gives them) may start now: its backlog is unread.
    pub fn admits_any(&self, passed: &[Vec<ShareKey>]) -> bool {
        passed.iter().any(|keys| self.refusing(keys).is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> Vec<ShareKey> {
        vec![ShareKey::Tenant(TenantId::new(name))]
    }

    fn fill(slots: &mut Slots, name: &str) -> usize {
        let mut took = 0;
        while slots.try_take(&tenant(name)) {
            took += 1;
        }
        took
    }

    #[test]
    fn a_lone_tenant_runs_all_but_the_headroom() {
        let mut slots = Slots::new(32);
        assert_eq!(fill(&mut slots, "a"), 28);
        assert_eq!(slots.free(), 4);
        assert_eq!(
            slots.pass_over().tenants().iter().cloned().collect::<Vec<_>>(),
            vec![TenantId::new("a")]
        );
        let mut one = Slots::new(1);
        assert_eq!(fill(&mut one, "a"), 1, "one slot: one job at a time");
    }

    #[test]
    fn a_newcomer_starts_at_once_beside_a_tenant_at_its_share() {
        let mut slots = Slots::new(32);
        fill(&mut slots, "a");
        assert!(slots.try_take(&tenant("b")), "b starts in the headroom");
        assert!(slots.try_take(&tenant("c")), "so does c");
        // b holds one, and the headroom is for keys that hold none.
        assert!(!slots.try_take(&tenant("b")));
        // a is over its share now (9 of 28 among three): the slots its
        // finishing jobs free, past the headroom, go to the others.
        for _ in 0..3 {
            slots.give_back(&tenant("a"));
        }
        assert!(!slots.try_take(&tenant("a")));
        assert!(slots.try_take(&tenant("b")));
        assert!(!slots.try_take(&tenant("c")), "the headroom is back to 4");
        assert_eq!(slots.free(), 4);
    }

    #[test]
    fn shares_even_out_as_the_hung_tenant_s_jobs_finish() {
        let mut slots = Slots::new(32);
        fill(&mut slots, "a");
        assert!(slots.try_take(&tenant("b")));
        for _ in 0..28 {
            slots.give_back(&tenant("a"));
            while slots.try_take(&tenant("b")) {}
            while slots.try_take(&tenant("a")) {}
        }
        let held = |name: &str| slots.held.get(&ShareKey::Tenant(TenantId::new(name))).copied();
        assert_eq!((held("a"), held("b")), (Some(14), Some(14)));
        assert_eq!(slots.free(), 4, "the headroom is kept");
        assert!(slots.try_take(&tenant("c")), "a third tenant starts at once");
    }

    #[test]
    fn the_rule_in_numbers() {
        assert_eq!(headroom(32), 4);
        assert_eq!(headroom(8), 1);
        assert_eq!(headroom(2), 1);
        assert_eq!(headroom(1), 0);
        assert_eq!(share(32, 1), 28);
        assert_eq!(share(32, 2), 14);
        assert_eq!(share(32, 40), 1, "every holder may run one");
        assert!(may_take(32, 0, 5, 1), "a key with none takes the last slot");
        assert!(!may_take(32, 1, 1, 4), "the headroom is for keys with none");
        assert!(may_take(32, 27, 1, 5));
        assert!(!may_take(32, 0, 1, 0));
    }

    /// A job of tenant `name` to receiver `tag`.
    fn to(name: &str, tag: u32) -> Vec<ShareKey> {
        let tenant = TenantId::new(name);
        let receiver = (0u32..)
            .map(|n| {
                let endpoint = format!("01JDENDP0NT{n:015}").parse().expect("an endpoint id");
                ReceiverTag::of_endpoint(endpoint)
            })
            .nth(tag as usize)
            .expect("a tag");
        vec![
            ShareKey::Tenant(tenant.clone()),
            ShareKey::Receiver(tenant, receiver),
        ]
    }

    fn fill_to(slots: &mut Slots, name: &str, tag: u32) -> usize {
        let mut took = 0;
        while slots.try_take(&to(name, tag)) {
            took += 1;
        }
        took
    }

    #[test]
    fn a_hung_receiver_leaves_room_in_its_tenant_s_share_for_the_others() {
        let mut slots = Slots::new(32);
        // Alone, the tenant's share is 28; its hung receiver takes all but
        // that share's own headroom.
        assert_eq!(fill_to(&mut slots, "a", 0), 25);
        assert_eq!(slots.free(), 7);
        // Three other receivers of the tenant start at once beside it.
        for tag in 1..=3 {
            assert!(slots.try_take(&to("a", tag)), "receiver {tag} starts at once");
        }
        assert!(!slots.try_take(&to("a", 4)), "the tenant's share is full");
        assert!(!slots.try_take(&to("a", 1)));
        // The tenant is full, so a poll passes over it, receivers and all.
        let pass_over = slots.pass_over();
        assert_eq!(pass_over.tenants().len(), 1);
        assert_eq!(pass_over.receivers().count(), 0);
        // Another tenant still starts in the drain's headroom.
        assert!(slots.try_take(&to("b", 0)));
    }

    #[test]
    fn a_full_receiver_is_passed_over_while_its_tenant_has_room() {
        let mut slots = Slots::new(32);
        assert_eq!(fill_to(&mut slots, "a", 0), 25);
        assert!(slots.try_take(&to("a", 1)));
        // Receiver 0 is over its share of two (13) now, and the 2 slots
        // left in the tenant's share are its headroom, kept for receivers
        // holding none: both are passed over, the tenant is not.
        let pass_over = slots.pass_over();
        assert!(pass_over.tenants().is_empty(), "{pass_over:?}");
        let receiver = |tag| match &to("a", tag)[1] {
            ShareKey::Receiver(_, receiver) => *receiver,
            ShareKey::Tenant(_) => unreachable!("to gives a receiver second"),
        };
        let mut passed: Vec<_> = pass_over.receivers().map(|(_, tag)| tag).collect();
        passed.sort();
        let mut expected = vec![receiver(0), receiver(1)];
        expected.sort();
        assert_eq!(passed, expected);
        assert!(
            !slots.admits_any(&keys_passed_over(&pass_over)),
            "nothing passed over may start"
        );
        assert!(slots.try_take(&to("a", 2)), "a third starts at once");
        slots.give_back(&to("a", 2));
        // As the hung receiver's jobs finish, their slots go to the other,
        // up to an even split of the tenant's share less its headroom.
        for _ in 0..25 {
            slots.give_back(&to("a", 0));
            while slots.try_take(&to("a", 1)) {}
            while slots.try_take(&to("a", 0)) {}
        }
        let held = (slots.held(&to("a", 0)[1]), slots.held(&to("a", 1)[1]));
        assert_eq!(held, (12, 13), "25 of the tenant's 28, split evenly");
    }

    #[test]
    fn healthy_receivers_together_fill_their_tenant_s_share_but_its_headroom() {
        let mut slots = Slots::new(32);
        // Ten receivers, each with a backlog, taking slots in turn.
        let mut took = true;
        while took {
            took = false;
            for tag in 0..10 {
                took |= slots.try_take(&to("a", tag));
            }
        }
        assert_eq!(slots.taken(), 25, "all of the share (28) but its headroom");
        assert!(slots.try_take(&to("a", 10)), "a newcomer still starts at once");
        assert_eq!(receiver_share(28, 10), 3);
        assert_eq!(receiver_share(28, 1), 25);
        assert_eq!(receiver_share(1, 3), 1);
    }

    #[test]
    fn what_a_poll_passed_over_may_start_again_once_its_slots_free() {
        let mut slots = Slots::new(32);
        assert_eq!(fill_to(&mut slots, "a", 0), 25);
        assert!(slots.try_take(&to("a", 1)));
        let pass_over = slots.pass_over();
        assert!(
            !slots.admits_any(&keys_passed_over(&pass_over)),
            "nothing passed over may start"
        );
        // One of receiver 0's jobs finishing leaves it over its share (13)
        // and the tenant's room at its headroom: still nothing.
        slots.give_back(&to("a", 0));
        assert!(!slots.admits_any(&keys_passed_over(&pass_over)));
        // Receiver 1's finishing leaves it holding none: it may start.
        slots.give_back(&to("a", 1));
        assert!(
            slots.admits_any(&keys_passed_over(&pass_over)),
            "receiver 1's backlog is unread"
        );
        assert!(slots.try_take(&to("a", 1)));
        assert!(!slots.try_take(&to("a", 0)), "receiver 0 is over its share");
        // A passed-over tenant, once back under its share, may start too.
        let mut slots = Slots::new(32);
        fill(&mut slots, "b");
        let pass_over = slots.pass_over();
        assert!(!slots.admits_any(&keys_passed_over(&pass_over)));
        slots.give_back(&tenant("b"));
        assert!(slots.admits_any(&keys_passed_over(&pass_over)));
    }

    #[test]
    fn one_receiver_per_job_changes_nothing_for_tenants() {
        // Jobs to receivers of their own (ids made before receiver tags)
        // share slots as tenants alone would.
        let mut slots = Slots::new(32);
        let mut took = 0;
        while slots.try_take(&to("a", took)) {
            took += 1;
        }
        assert_eq!(took, 28);
        let mut one = Slots::new(1);
        assert!(one.try_take(&to("a", 0)));
        assert!(!one.try_take(&to("a", 1)));
        assert!(!one.try_take(&to("b", 0)));
    }

    #[test]
    fn a_slot_given_back_frees_the_key() {
        let mut slots = Slots::new(4);
        assert!(slots.try_take(&tenant("a")));
        slots.give_back(&tenant("a"));
        assert_eq!((slots.taken(), slots.held.len()), (0, 0));
    }
}
