//! Where random bytes come from: a parameter, so tests are deterministic
//! and production draws from the operating system.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use rand::RngCore;

use crate::SealError;

/// A source of random bytes for new keys and key-file nonces.
pub trait Fresh: Send + Sync + fmt::Debug {
    /// Fills `out` with random bytes.
    fn fill(&self, out: &mut [u8]) -> Result<(), SealError>;
}

/// Draws `N` random bytes from `fresh`.
pub(crate) fn draw<const N: usize>(fresh: &dyn Fresh) -> Result<[u8; N], SealError> {
    let mut out = [0u8; N];
    fresh.fill(&mut out)?;
    Ok(out)
}

/// The operating system's randomness, through aws-lc-rs.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemFresh;

impl Fresh for SystemFresh {
    fn fill(&self, out: &mut [u8]) -> Result<(), SealError> {
        aws_lc_rs::rand::fill(out)
            .map_err(|_| SealError::Random("the system's random source failed".to_owned()))
    }
}

/// Any [`RngCore`] (e.g. a seeded `StdRng` in tests) as a [`Fresh`].
pub struct RngFresh<R> {
    rng: Mutex<R>,
}

impl<R: RngCore + Send> RngFresh<R> {
    /// Draws from `rng`.
    pub fn new(rng: R) -> Self {
        RngFresh { rng: Mutex::new(rng) }
    }
}

impl<R: RngCore + Send> Fresh for RngFresh<R> {
    fn fill(&self, out: &mut [u8]) -> Result<(), SealError> {
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fill_bytes(out);
        Ok(())
    }
}

impl<R> fmt::Debug for RngFresh<R> {
    // The generator's state predicts every key it will make.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RngFresh([redacted])")
    }
}
