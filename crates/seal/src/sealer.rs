//! The [`Sealer`]: seals under the current data key, renews it, and opens
//! under any data key, each unwrapped once and kept.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use crate::{DataKey, Fresh, KeyWrap, SealError, Sealed};

/// A data key seals at most this many values before the next seal makes a
/// new one. Synthetic nonces are 96 bits of an HMAC, so this keeps the
/// chance that two distinct values share one below 2^-57.
pub const SEALS_PER_DATA_KEY: u64 = 1 << 20;
/// Unwrapped data keys kept for opening; past this the oldest is dropped
/// (and unwrapped again when next needed).
pub const CACHED_DATA_KEYS: usize = 4096;
/// The member [`Sealer::seal_record`] makes of a record's secret members.
pub const SEALED_MEMBER: &str = "sealed";

/// Which data key: the wrapping key's id and the wrapped data key.
type CacheKey = (String, Vec<u8>);
type Slot = Arc<OnceCell<Arc<DataKey>>>;

struct Current {
    key: Arc<DataKey>,
    kid: String,
    wrapped: Vec<u8>,
    seals: AtomicU64,
}

#[derive(Default)]
struct Cache {
    slots: HashMap<CacheKey, Slot>,
    order: VecDeque<CacheKey>,
}

impl Cache {
    fn slot(&mut self, key: &CacheKey) -> Slot {
        if let Some(slot) = self.slots.get(key) {
            return slot.clone();
        }
        let slot = Slot::default();
        self.insert(key.clone(), slot.clone());
        slot
    }

    fn insert(&mut self, key: CacheKey, slot: Slot) {
        if self.slots.insert(key.clone(), slot).is_none() {
            self.order.push_back(key);
        }
        while self.slots.len() > CACHED_DATA_KEYS {
            match self.order.pop_front() {
                Some(old) => {
                    self.slots.remove(&old);
                }
                None => break,
            }
        }
    }

    /// Drops `key`'s slot if it is still empty (its unwrap failed), so
    /// garbage keys do not fill the cache.
    fn forget_empty(&mut self, key: &CacheKey) {
        if self.slots.get(key).is_some_and(|slot| !slot.initialized()) {
            self.slots.remove(key);
            self.order.retain(|k| k != key);
        }
    }
}

/// Seals and opens secrets. One per process: it holds the current data key
/// (made by [`Sealer::start`], renewed after [`SEALS_PER_DATA_KEY`] seals or
/// by [`Sealer::renew`]) and every data key it has unwrapped, so opening
/// many records costs one unwrap (one KMS `Decrypt`) per data key, however
/// many ask at once. `Debug` shows key ids only.
pub struct Sealer {
    wrap: Arc<dyn KeyWrap>,
    fresh: Arc<dyn Fresh>,
    current: RwLock<Arc<Current>>,
    renewing: tokio::sync::Mutex<()>,
    cache: Mutex<Cache>,
}

impl Sealer {
    /// A sealer whose first data key `wrap` makes now.
    pub async fn start(wrap: Arc<dyn KeyWrap>, fresh: Arc<dyn Fresh>) -> Result<Self, SealError> {
        let current = Self::new_current(&*wrap, &*fresh).await?;
        let sealer = Sealer {
            wrap,
            fresh,
            current: RwLock::new(current.clone()),
            renewing: tokio::sync::Mutex::new(()),
            cache: Mutex::new(Cache::default()),
        };
        sealer.remember(&current);
        Ok(sealer)
    }

    /// A sealer over a key file of its own, held only in memory: for tests
    /// and benchmarks. What it seals opens in no other process, and not
    /// once it is gone.
    pub fn ephemeral() -> Result<Self, SealError> {
        let fresh: Arc<dyn Fresh> = Arc::new(crate::SystemFresh);
        let file = crate::KeyFile::generate(&*fresh)?;
        let mut start = std::pin::pin!(Self::start(Arc::new(file), fresh));
        // A key file makes a data key without waiting on anything, so the
        // first poll finishes.
        match start
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        {
            std::task::Poll::Ready(sealer) => sealer,
            std::task::Poll::Pending => Err(SealError::Unavailable(
                "an in-memory key file did not make a data key at once".to_owned(),
            )),
        }
    }

    async fn new_current(wrap: &dyn KeyWrap, fresh: &dyn Fresh) -> Result<Arc<Current>, SealError> {
        let (key, wrapped) = wrap.new_data_key(fresh).await?;
        Ok(Arc::new(Current {
            key: Arc::new(key),
            kid: wrap.key_id().to_owned(),
            wrapped,
            seals: AtomicU64::new(0),
        }))
    }

    fn remember(&self, current: &Current) {
        let slot = Slot::new(OnceCell::new_with(Some(current.key.clone())));
        self.lock_cache()
            .insert((current.kid.clone(), current.wrapped.clone()), slot);
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The id of the data key new seals use.
    pub fn data_key_id(&self) -> String {
        self.current().key.id().to_owned()
    }

    /// Makes a new data key for the seals from now on (values sealed before
    /// still open). Concurrent calls make one.
    pub async fn renew(&self) -> Result<(), SealError> {
        let before = self.current();
        self.renew_from(&before).await
    }

    /// Renews unless another caller already replaced `seen`.
    async fn renew_from(&self, seen: &Arc<Current>) -> Result<(), SealError> {
        let _one_at_a_time = self.renewing.lock().await;
        if !Arc::ptr_eq(&self.current(), seen) {
            return Ok(());
        }
        let next = Self::new_current(&*self.wrap, &*self.fresh).await?;
        self.remember(&next);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(())
    }

    /// Seals `plaintext` for `context` (the record it belongs to, e.g.
    /// `b"endpoint\0{tenant}\0{id}"`): it opens only with the same context.
    /// The same context and plaintext under the same data key seal to the
    /// same bytes, so a write issued again is the same write; a renewal in
    /// between makes different (equally valid) bytes. Fails only when a
    /// data key due for renewal cannot be made (`Unavailable` is worth
    /// retrying).
    pub async fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Sealed, SealError> {
        let mut current = self.current();
        if current.seals.fetch_add(1, Ordering::Relaxed) >= SEALS_PER_DATA_KEY {
            self.renew_from(&current).await?;
            current = self.current();
            current.seals.fetch_add(1, Ordering::Relaxed);
        }
        let (nonce, ct) = current.key.seal(context, plaintext)?;
        Ok(Sealed::new(
            current.kid.clone(),
            current.wrapped.clone(),
            nonce,
            ct,
        ))
    }

    /// Opens what a sealer (this one, or another process's under the same
    /// wrapping key) sealed for `context`.
    pub async fn open(&self, context: &[u8], sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let key = self.data_key(sealed.key_id(), sealed.wrapped_key()).await?;
        key.open(context, *sealed.nonce(), sealed.ciphertext())
    }

    async fn data_key(&self, kid: &str, wrapped: &[u8]) -> Result<Arc<DataKey>, SealError> {
        let cache_key: CacheKey = (kid.to_owned(), wrapped.to_vec());
        let slot = self.lock_cache().slot(&cache_key);
        let unwrapped = slot
            .get_or_try_init(|| async { self.wrap.unwrap_key(kid, wrapped).await.map(Arc::new) })
            .await
            .cloned();
        if unwrapped.is_err() {
            self.lock_cache().forget_empty(&cache_key);
        }
        unwrapped
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current();
        f.debug_struct("Sealer")
            .field("wrap", &self.wrap)
            .field("data_key", &current.key)
            .field("seals", &current.seals.load(Ordering::Relaxed))
            .field("cached_data_keys", &self.lock_cache().slots.len())
            .finish_non_exhaustive()
    }
}
