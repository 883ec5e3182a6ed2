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
//! them may take a slot. Only tenants are keys today; endpoints of the
//! fan-out (SPEC section 9) become a second kind with its own shares.

use std::collections::{BTreeSet, HashMap};

use domain::TenantId;
use store::DueJob;

/// What a share of the slots is counted by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ShareKey {
    Tenant(TenantId),
}

impl ShareKey {
    /// The keys a due job is counted under.
    pub fn of(due: &DueJob) -> Vec<ShareKey> {
        vec![ShareKey::Tenant(due.tenant.clone())]
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

/// The slots of one drain: how many are taken and by which keys.
#[derive(Debug)]
pub struct Slots {
    concurrency: usize,
    taken: usize,
    held: HashMap<ShareKey, usize>,
}

impl Slots {
    pub fn new(concurrency: usize) -> Self {
        Self {
            concurrency,
            taken: 0,
            held: HashMap::new(),
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

    fn holders_like(&self, key: &ShareKey) -> usize {
        self.held
            .keys()
            .filter(|k| std::mem::discriminant(*k) == std::mem::discriminant(key))
            .count()
    }

    fn admits(&self, key: &ShareKey) -> bool {
        let held = self.held.get(key).copied().unwrap_or(0);
        let holders = self.holders_like(key) + usize::from(held == 0);
        may_take(self.concurrency, held, holders, self.free())
    }

    /// Takes a slot for a job with `keys` if every key may take one.
    pub fn try_take(&mut self, keys: &[ShareKey]) -> bool {
        if self.free() == 0 || !keys.iter().all(|k| self.admits(k)) {
            return false;
        }
        self.taken += 1;
        for key in keys {
            *self.held.entry(key.clone()).or_insert(0) += 1;
        }
        true
    }

    /// Gives back the slot a job with `keys` took.
    pub fn give_back(&mut self, keys: &[ShareKey]) {
        self.taken = self.taken.saturating_sub(1);
        for key in keys {
            if let Some(held) = self.held.get_mut(key) {
                *held -= 1;
                if *held == 0 {
                    self.held.remove(key);
                }
            }
        }
    }

    /// Tenants that hold slots and may take no more now: a poll reads past
    /// their due jobs, to find other tenants' behind them.
    pub fn full_tenants(&self) -> BTreeSet<TenantId> {
        self.held
            .keys()
            .filter(|key| !self.admits(key))
            .map(|ShareKey::Tenant(tenant)| tenant.clone())
            .collect()
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
            slots.full_tenants().into_iter().collect::<Vec<_>>(),
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

    #[test]
    fn a_slot_given_back_frees_the_key() {
        let mut slots = Slots::new(4);
        assert!(slots.try_take(&tenant("a")));
        slots.give_back(&tenant("a"));
        assert_eq!((slots.taken(), slots.held.len()), (0, 0));
    }
}
