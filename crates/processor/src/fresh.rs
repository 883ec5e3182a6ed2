//! Store reads that callers asking at the same time share, without any of
//! them getting an answer older than its question: each caller gets the
//! result of a read that *began after it asked*. So sharing a read is as
//! fresh as making one (an endpoint disabled before a delivery asks is seen
//! disabled), and concurrent deliveries to one endpoint make one read, not
//! one each.
//!
//! Per key, one read is in flight at a time. A caller takes a ticket, then
//! waits its turn; when its turn comes, the last read's answer is its own if
//! that read began after its ticket was taken, and otherwise it reads,
//! covering every ticket taken so far. A burst of N callers makes at most
//! two reads (the one in flight when they came, which began too early for
//! them, and one more), however large N is.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Reads shared per key `K`, answering `V`.
pub(crate) struct FreshReads<K, V> {
    slots: Mutex<HashMap<K, Arc<Slot<V>>>>,
}

struct Slot<V> {
    /// Tickets taken: the number of callers that have asked so far.
    asked: AtomicU64,
    /// The last read's answer and the tickets it covers (those taken
    /// before it began). Held across a read: one at a time per key.
    last: tokio::sync::Mutex<Option<(u64, V)>>,
}

impl<K, V> Default for FreshReads<K, V> {
    fn default() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K, V> std::fmt::Debug for FreshReads<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.slots.lock().map_or(0, |slots| slots.len());
        f.debug_struct("FreshReads").field("keys", &keys).finish()
    }
}

/// Forgets a key's slot once nobody holds it, however its caller ended
/// (answered, or its future dropped mid-read).
struct Release<'a, K: Hash + Eq, V> {
    reads: &'a FreshReads<K, V>,
    key: &'a K,
    slot: Arc<Slot<V>>,
}

impl<K: Hash + Eq, V> Drop for Release<'_, K, V> {
    fn drop(&mut self) {
        let mut slots = self.reads.slots.lock().unwrap_or_else(|p| p.into_inner());
        // The map's reference and ours: nobody else has it, and nobody can
        // take it without this lock.
        if Arc::strong_count(&self.slot) == 2
            && slots.get(self.key).is_some_and(|s| Arc::ptr_eq(s, &self.slot))
        {
            slots.remove(self.key);
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> FreshReads<K, V> {
    /// `key`'s answer from a read that began after this call did: `read`,
    /// or another caller's read of `key` that began after this call.
    pub(crate) async fn read<F, Fut>(&self, key: &K, read: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(slots.entry(key.clone()).or_insert_with(|| {
                Arc::new(Slot {
                    asked: AtomicU64::new(0),
                    last: tokio::sync::Mutex::new(None),
                })
            }))
        };
        let release = Release {
            reads: self,
            key,
            slot,
        };
        let ticket = release.slot.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut last = release.slot.last.lock().await;
        if let Some((covers, value)) = &*last
            && *covers >= ticket
        {
            return value.clone();
        }
        // Every ticket taken until now was taken before this read begins.
        let covers = release.slot.asked.load(Ordering::SeqCst);
        let value = read().await;
        *last = Some((covers, value.clone()));
        value
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.slots.lock().map_or(0, |slots| slots.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// A store whose value callers change, and whose reads take a while.
    #[derive(Default)]
    struct Slow {
        value: AtomicU64,
        reads: AtomicUsize,
    }

    impl Slow {
        async fn read(&self) -> u64 {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let value = self.value.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            value
        }
    }

    #[tokio::test(start_paused = true)]
    async fn callers_asking_together_share_at_most_two_reads() {
        let reads = FreshReads::<&str, u64>::default();
        let store = Slow::default();
        let answers =
            futures::future::join_all((0..50).map(|_| reads.read(&"endpoint", || store.read()))).await;
        assert!(answers.iter().all(|&a| a == 0));
        assert!(
            store.reads.load(Ordering::SeqCst) <= 2,
            "{} reads",
            store.reads.load(Ordering::SeqCst)
        );
        assert_eq!(reads.keys(), 0, "a key nobody asks for is forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_never_gets_a_read_that_began_before_it_asked() {
        let reads = Arc::new(FreshReads::<&str, u64>::default());
        let store = Arc::new(Slow::default());
        // A read in flight that saw 0...
        let early = {
            let (reads, store) = (Arc::clone(&reads), Arc::clone(&store));
            tokio::spawn(async move { reads.read(&"endpoint", || store.read()).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        // ...then a change, then a caller: it must see the change.
        store.value.store(1, Ordering::SeqCst);
        let late = reads.read(&"endpoint", || store.read()).await;
        assert_eq!(early.await.expect("the early read finishes"), 0);
        assert_eq!(late, 1, "the late caller waited for a read of its own");
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_read_apart_and_one_after_another_reads_again() {
        let reads = FreshReads::<&str, u64>::default();
        let store = Slow::default();
        let (a, b) = tokio::join!(
            reads.read(&"a", || store.read()),
            reads.read(&"b", || store.read())
        );
        assert_eq!((a, b), (0, 0));
        assert_eq!(store.reads.load(Ordering::SeqCst), 2, "one read per key");
        store.value.store(7, Ordering::SeqCst);
        assert_eq!(
            reads.read(&"a", || store.read()).await,
            7,
            "a later call reads again"
        );
        assert_eq!(store.reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_dropped_mid_read_leaves_the_next_one_to_read() {
        let reads = FreshReads::<&str, u64>::default();
        let store = Slow::default();
        let dropped = tokio::time::timeout(Duration::from_millis(5), reads.read(&"a", || store.read())).await;
        assert!(dropped.is_err());
        assert_eq!(
            reads.keys(),
            0,
            "the slot is forgotten when its caller is dropped"
        );
        store.value.store(3, Ordering::SeqCst);
        assert_eq!(reads.read(&"a", || store.read()).await, 3);
    }
}
