//! Randomness as a port: [`RandomSource`] and the operating system's CSPRNG, [`OsRandom`].

use std::fmt;

use crate::{Error, ErrorKind, Result};

/// A cryptographically secure source of random bytes.
pub trait RandomSource: fmt::Debug + Send + Sync + 'static {
    /// Fills `buf` with random bytes.
    ///
    /// # Errors
    /// [`ErrorKind::Provider`] when the source is unavailable.
    fn fill(&self, buf: &mut [u8]) -> Result<()>;
}

/// The operating system's CSPRNG (`getrandom`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<()> {
        getrandom::fill(buf).map_err(|e| {
            Error::new(
                ErrorKind::Provider,
                "the operating system's random source failed",
            )
            .with_detail("code", e)
        })
    }
}
