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
//! tenant the other. A tenant's receivers split its share `S` evenly,
//! rounded up ([`receiver_share`]), so busy healthy receivers together run
//! all of it (ten run 28 of 28); and a receiver holding none may start even
//! when its tenant is at its share, in up to [`borrow`] of the drain's
//! headroom (2 of 4), leaving the rest of the headroom to new tenants. So a
//! tenant's one hung endpoint takes the tenant's share, and its other
//! endpoints still start at once beside it; as the hung one's jobs end, its
//! share shrinks to a split among them.

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

/// Headroom slots a tenant at its share may still take for a receiver
/// that holds none: half the headroom (none below 16 slots, where the
/// headroom is one slot, kept for new tenants).
pub fn borrow(concurrency: usize) -> usize {
    headroom(concurrency) / 2
}

/// The most of its tenant's share `tenant_share` one of `holders`
/// receivers may hold: an even split rounded up, so busy receivers
/// together fill the share.
pub fn receiver_share(tenant_share: usize, holders: usize) -> usize {
    tenant_share.div_ceil(holders.max(1)).max(1)
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
    /// Slots given back so far: what a job refused since may find changed.
    given_back: u64,
}

impl Slots {
    pub fn new(concurrency: usize) -> Self {
        Self {
            concurrency,
            taken: 0,
            held: HashMap::new(),
            tenants_holding: 0,
            receivers_holding: HashMap::new(),
            given_back: 0,
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

    /// Whether `key` may take a slot for a job whose receiver holds none
    /// (`newcomer`) or some.
    fn admits(&self, key: &ShareKey, newcomer: bool) -> bool {
        let free = self.free();
        let held = self.held(key);
        let holders = self.holders_beside(key) + usize::from(held == 0);
        match key {
            ShareKey::Tenant(_) => {
                may_take(self.concurrency, held, holders, free)
                    || (newcomer
                        && borrow(self.concurrency) > 0
                        && free > headroom(self.concurrency) - borrow(self.concurrency))
            }
            ShareKey::Receiver(tenant, _) => {
                if held == 0 {
                    return free > 0;
                }
                let tenant = ShareKey::Tenant(tenant.clone());
                let tenant_share = share(self.concurrency, self.holders_beside(&tenant));
                free > 0 && held < receiver_share(tenant_share, holders)
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

    /// Whether a job with `keys` goes to a receiver that holds no slot
    /// (its tenant may then take one past its share: [`borrow`]).
    pub fn newcomer(&self, keys: &[ShareKey]) -> bool {
        keys.iter()
            .any(|key| matches!(key, ShareKey::Receiver(..)) && self.held(key) == 0)
    }

    /// The first of `keys` that may not take a slot now, if any (no free
    /// slot: the first key).
    pub fn refusing<'k>(&self, keys: &'k [ShareKey]) -> Option<&'k ShareKey> {
        if self.free() == 0 {
            return keys.first();
        }
        let newcomer = self.newcomer(keys);
        keys.iter().find(|key| !self.admits(key, newcomer))
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

    /// How many slots have been given back: while it stays the same,
    /// nothing refused a slot may take one (taking slots only narrows).
    pub fn given_back(&self) -> u64 {
        self.given_back
    }

    /// Gives back the slot a job with `keys` took.
    pub fn give_back(&mut self, keys: &[ShareKey]) {
        self.given_back += 1;
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
        // A tenant that may take no slot, not even for a receiver new to
        // it, is passed over whole.
        for key in self.held.keys() {
            if let ShareKey::Tenant(tenant) = key
                && !self.admits(key, true)
            {
                pass_over.tenant(tenant.clone());
            }
        }
        // Receivers holding slots that may take no more, their own share
        // or their tenant's full.
        for key in self.held.keys() {
            if let ShareKey::Receiver(tenant, tag) = key {
                let tenant_key = ShareKey::Tenant(tenant.clone());
                if !self.admits(key, false) || !self.admits(&tenant_key, false) {
                    pass_over.receiver(tenant.clone(), *tag);
                }
            }
        }
        pass_over
    }

    /// Whether a job of something a poll passed over (`passed`, as
    /// [`keys_passed_over`] gives them) may start now: its backlog is unread.
    pub fn admits_any(&self, passed: &[Vec<ShareKey>]) -> bool {
        self.free() > 0
            && passed.iter().any(|keys| match keys.as_slice() {
                // A tenant passed over whole: any of its jobs, one to a
                // receiver new to it among them.
                [tenant @ ShareKey::Tenant(_)] => self.admits(tenant, true),
                keys => self.refusing(keys).is_none(),
            })
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
        assert!(!slots.try_take(&tenant("a")));
        // Not passed over whole: a job of it to a receiver new to it may
        // still start, in half the headroom.
        assert!(slots.pass_over().tenants().is_empty());
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
    fn a_hung_receiver_takes_its_tenant_s_share_and_the_others_still_start() {
        let mut slots = Slots::new(32);
        // Alone, the receiver may hold all of its tenant's share.
        assert_eq!(fill_to(&mut slots, "a", 0), 28);
        assert_eq!(slots.free(), 4);
        // Two other receivers of the tenant start at once beside it, in
        // half the drain's headroom...
        for tag in 1..=2 {
            assert!(slots.try_take(&to("a", tag)), "receiver {tag} starts at once");
        }
        assert!(!slots.try_take(&to("a", 3)), "the rest is kept for new tenants");
        assert!(!slots.try_take(&to("a", 1)));
        // ...and the tenant is passed over whole now; new tenants start.
        let pass_over = slots.pass_over();
        assert_eq!(pass_over.tenants().len(), 1);
        assert_eq!(pass_over.receivers().count(), 0);
        assert!(slots.try_take(&to("b", 0)));
        assert!(slots.try_take(&to("c", 0)));
        assert_eq!(slots.free(), 0);
    }

    #[test]
    fn a_full_receiver_is_passed_over_while_its_tenant_may_take_newcomers() {
        let mut slots = Slots::new(32);
        assert_eq!(fill_to(&mut slots, "a", 0), 28);
        assert!(slots.try_take(&to("a", 1)));
        // Receiver 0 is over its share of two (14) now, and the tenant
        // over its own: both receivers are passed over, the tenant is not
        // (a third receiver may still start).
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
        assert!(!slots.admits_any(&keys_passed_over(&pass_over)));
        assert!(slots.try_take(&to("a", 2)), "a third starts at once");
        slots.give_back(&to("a", 2));
        // As the hung receiver's jobs finish, their slots go to the other,
        // up to an even split of the tenant's share.
        for _ in 0..28 {
            slots.give_back(&to("a", 0));
            while slots.try_take(&to("a", 1)) {}
            while slots.try_take(&to("a", 0)) {}
        }
        let held = (slots.held(&to("a", 0)[1]), slots.held(&to("a", 1)[1]));
        assert_eq!(held, (14, 14), "the tenant's 28, split evenly");
    }

    #[test]
    fn healthy_receivers_together_fill_their_tenant_s_share() {
        let mut slots = Slots::new(32);
        // Ten receivers, each with a backlog, taking slots in turn.
        let mut took = true;
        while took {
            took = false;
            for tag in 0..10 {
                took |= slots.try_take(&to("a", tag));
            }
        }
        assert_eq!(slots.taken(), 28, "all of the share");
        assert!(slots.try_take(&to("a", 10)), "a newcomer still starts at once");
        assert_eq!(receiver_share(28, 10), 3);
        assert_eq!(receiver_share(28, 1), 28);
        assert_eq!(receiver_share(1, 3), 1);
        assert_eq!((borrow(32), borrow(16), borrow(8)), (2, 1, 0));
    }

    #[test]
    fn what_a_poll_passed_over_may_start_again_once_its_slots_free() {
        let mut slots = Slots::new(32);
        assert_eq!(fill_to(&mut slots, "a", 0), 28);
        assert!(slots.try_take(&to("a", 1)));
        let passed = keys_passed_over(&slots.pass_over());
        assert!(!slots.admits_any(&passed), "nothing passed over may start");
        // One of receiver 0's jobs finishing leaves the tenant at its
        // share: still nothing of theirs.
        slots.give_back(&to("a", 0));
        assert!(!slots.admits_any(&passed));
        // Receiver 1's finishing leaves it holding none: it may start.
        slots.give_back(&to("a", 1));
        assert!(slots.admits_any(&passed), "receiver 1's backlog is unread");
        assert!(slots.try_take(&to("a", 1)));
        assert!(!slots.try_take(&to("a", 0)), "the tenant is at its share");
        // A tenant passed over whole may start again once a slot frees.
        let mut slots = Slots::new(32);
        fill_to(&mut slots, "b", 0);
        assert!(slots.try_take(&to("b", 1)) && slots.try_take(&to("b", 2)));
        let passed = keys_passed_over(&slots.pass_over());
        assert_eq!(passed.len(), 1, "{passed:?}");
        assert!(!slots.admits_any(&passed));
        slots.give_back(&to("b", 2));
        assert!(slots.admits_any(&passed));
    }

    #[test]
    fn jobs_each_to_a_receiver_of_its_own_borrow_at_most_half_the_headroom() {
        // Ids made before receiver tags: every job a receiver new to its
        // tenant. The tenant takes its share and half the headroom; new
        // tenants still have the rest.
        let mut slots = Slots::new(32);
        let mut took = 0;
        while slots.try_take(&to("a", took)) {
            took += 1;
        }
        assert_eq!(took, 30);
        assert!(slots.try_take(&to("b", 0)));
        assert!(slots.try_take(&to("c", 0)));
        let mut one = Slots::new(1);
        assert!(one.try_take(&to("a", 0)));
        assert!(!one.try_take(&to("a", 1)));
        assert!(!one.try_take(&to("b", 0)));
        // Below 16 slots nothing is borrowed.
        let mut eight = Slots::new(8);
        let mut took = 0;
        while eight.try_take(&to("a", took)) {
            took += 1;
        }
        assert_eq!(took, 7);
        assert!(eight.try_take(&to("b", 0)));
    }

    #[test]
    fn a_slot_given_back_frees_the_key() {
        let mut slots = Slots::new(4);
        assert!(slots.try_take(&tenant("a")));
        slots.give_back(&tenant("a"));
        assert_eq!((slots.taken(), slots.held.len()), (0, 0));
    }
}
