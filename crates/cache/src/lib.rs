//! [`TtlCache`]: what a process read from its store, kept for a fixed time
//! and a bounded number of entries, for many tasks at once.
//!
//! The time is always the caller's (`now` is an argument, and any ordered
//! type that a TTL can be added to will do), so expiry is tested without
//! a clock. The values are often secrets, so `Debug` shows only how full the
//! cache is, never a key or a value.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::ops::Add;
use std::sync::{Mutex, MutexGuard};

/// A cache whose entries expire `ttl` after they were inserted, holding at
/// most `capacity` of them: inserting into a full cache evicts the entry
/// inserted longest ago (with one TTL for all, also the first to expire).
///
/// `T` is the caller's time (e.g. `domain::Timestamp`), `D` the TTL's type
/// (e.g. `chrono::Duration`). An entry read at `now` is fresh while
/// `now < inserted + ttl`.
pub struct TtlCache<K, V, T, D> {
    ttl: D,
    capacity: usize,
    inner: Mutex<Inner<K, V, T>>,
}

struct Inner<K, V, T> {
    entries: HashMap<K, Entry<V, T>>,
    /// Keys by insertion, oldest first: the order entries are evicted and
    /// expire in.
    order: BTreeMap<u64, K>,
    next: u64,
}

struct Entry<V, T> {
    value: V,
    expires: T,
    /// Where the entry is in `order`.
    seq: u64,
}

impl<K, V, T, D> TtlCache<K, V, T, D>
where
    K: Eq + Hash + Clone,
    V: Clone,
    T: Copy + Ord + Add<D, Output = T>,
    D: Copy,
{
    /// An empty cache; a `capacity` of 0 is taken as 1.
    pub fn new(ttl: D, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: BTreeMap::new(),
                next: 0,
            }),
        }
    }

    /// The value cached for `key`, if it is still fresh at `now`.
    pub fn get(&self, key: &K, now: T) -> Option<V> {
        self.lock()
            .entries
            .get(key)
            .filter(|entry| now < entry.expires)
            .map(|entry| entry.value.clone())
    }

    /// Caches `value` for `key` as read at `now`, replacing what was cached
    /// for it. Entries expired at `now` go first; if the cache is still
    /// full, the oldest one does.
    pub fn insert(&self, key: K, value: V, now: T) {
        let expires = now + self.ttl;
        let mut inner = self.lock();
        inner.remove(&key);
        while let Some((_, oldest)) = inner.order.first_key_value() {
            let expired = inner.entries.get(oldest).is_none_or(|entry| entry.expires <= now);
            if !expired && inner.entries.len() < self.capacity {
                break;
            }
            let oldest = oldest.clone();
            inner.remove(&oldest);
        }
        let seq = inner.next;
        inner.next += 1;
        inner.order.insert(seq, key.clone());
        inner.entries.insert(key, Entry { value, expires, seq });
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Entries held, fresh or not yet evicted.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K, V, T>> {
        // Nothing in a change can leave a key in one map that is wrong in
        // the other (at worst an order entry without its entry, which
        // eviction drops), so a poisoned lock's data is still good.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<K: Eq + Hash, V, T> Inner<K, V, T> {
    fn remove(&mut self, key: &K) {
        if let Some(entry) = self.entries.remove(key) {
            self.order.remove(&entry.seq);
        }
    }
}

impl<K, V, T, D> fmt::Debug for TtlCache<K, V, T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self.inner.lock().map_or_else(
            |poisoned| poisoned.into_inner().entries.len(),
            |inner| inner.entries.len(),
        );
        f.debug_struct("TtlCache")
            .field("entries", &held)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Seconds, as the caller's time.
    type Cache = TtlCache<&'static str, String, u64, u64>;

    #[test]
    fn an_entry_is_fresh_until_its_ttl_has_passed() {
        let cache = Cache::new(30, 10);
        cache.insert("a", "one".to_owned(), 100);
        assert_eq!(cache.get(&"a", 100).as_deref(), Some("one"));
        assert_eq!(cache.get(&"a", 129).as_deref(), Some("one"));
        assert_eq!(cache.get(&"a", 130), None, "stale at exactly the TTL");
        assert_eq!(cache.get(&"b", 100), None);
    }

    #[test]
    fn inserting_again_replaces_the_value_and_restarts_the_ttl() {
        let cache = Cache::new(30, 10);
        cache.insert("a", "one".to_owned(), 100);
        cache.insert("a", "two".to_owned(), 120);
        assert_eq!(cache.get(&"a", 140).as_deref(), Some("two"));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_full_cache_evicts_its_oldest_entry_not_everything() {
        let cache = Cache::new(30, 3);
        cache.insert("a", "1".to_owned(), 100);
        cache.insert("b", "2".to_owned(), 101);
        cache.insert("c", "3".to_owned(), 102);
        cache.insert("d", "4".to_owned(), 103);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&"a", 103), None, "the oldest went");
        for (key, value) in [("b", "2"), ("c", "3"), ("d", "4")] {
            assert_eq!(cache.get(&key, 103).as_deref(), Some(value), "{key} stays");
        }
    }

    #[test]
    fn eviction_follows_insertion_and_a_replaced_entry_counts_as_new() {
        let cache = Cache::new(30, 3);
        cache.insert("a", "1".to_owned(), 100);
        cache.insert("b", "2".to_owned(), 101);
        cache.insert("c", "3".to_owned(), 102);
        // Read again: "a" is now the newest, so "b" is the oldest.
        cache.insert("a", "1'".to_owned(), 103);
        cache.insert("d", "4".to_owned(), 104);
        assert_eq!(cache.get(&"b", 104), None);
        assert_eq!(cache.get(&"a", 104).as_deref(), Some("1'"));
        cache.insert("e", "5".to_owned(), 105);
        assert_eq!(cache.get(&"c", 105), None, "then the next oldest");
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn expired_entries_are_dropped_before_a_fresh_one_is_evicted() {
        let cache = Cache::new(30, 3);
        cache.insert("a", "1".to_owned(), 100);
        cache.insert("b", "2".to_owned(), 101);
        cache.insert("c", "3".to_owned(), 140);
        // "a" and "b" are stale at 140: both go, though one would make room.
        cache.insert("d", "4".to_owned(), 140);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&"c", 140).as_deref(), Some("3"));
        assert_eq!(cache.get(&"d", 140).as_deref(), Some("4"));
    }

    #[test]
    fn removing_forgets_the_key_and_frees_its_place() {
        let cache = Cache::new(30, 2);
        cache.insert("a", "1".to_owned(), 100);
        cache.insert("b", "2".to_owned(), 101);
        cache.remove(&"a");
        assert_eq!(cache.get(&"a", 101), None);
        cache.insert("c", "3".to_owned(), 102);
        assert_eq!(
            cache.get(&"b", 102).as_deref(),
            Some("2"),
            "no eviction was needed"
        );
        assert_eq!(cache.len(), 2);
        cache.remove(&"nothing");
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_zero_capacity_holds_one() {
        let cache = Cache::new(30, 0);
        cache.insert("a", "1".to_owned(), 100);
        cache.insert("b", "2".to_owned(), 100);
        assert_eq!((cache.capacity(), cache.len()), (1, 1));
        assert_eq!(cache.get(&"b", 100).as_deref(), Some("2"));
    }

    #[test]
    fn debug_shows_neither_keys_nor_values() {
        let cache = TtlCache::<String, String, u64, u64>::new(30, 10);
        cache.insert("tenant-key".to_owned(), "whsec_c2VjcmV0".to_owned(), 100);
        let shown = format!("{cache:?}");
        assert!(!shown.contains("whsec"), "{shown}");
        assert!(!shown.contains("tenant-key"), "{shown}");
        assert_eq!(shown, "TtlCache { entries: 1, capacity: 10, .. }");
    }

    #[test]
    fn tasks_share_one_cache() {
        let cache = Arc::new(TtlCache::<u32, u32, u64, u64>::new(30, 64));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for i in 0..1_000 {
                        let key = (t * 1_000 + i) % 200;
                        cache.insert(key, key * 2, 100);
                        if let Some(value) = cache.get(&key, 100) {
                            assert_eq!(value, key * 2);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no thread panics");
        }
        assert_eq!(cache.len(), 64, "the bound held");
    }
}
