//! The conformance suite every provider runs (DESIGN §3, STYLE rules 18 to 20).
//!
//! Each case is a plain `pub async fn` taking a *fixture* (a store factory), so a case can build two
//! isolated stores (isolation) or share one store across many tasks (concurrency). An adapter runs the
//! whole suite with one macro per port it implements, in its `tests/conformance.rs`:
//!
//! ```ignore
//! psm_core::permission_store_tests!(my_crate_tests::Fixture::new());
//! psm_core::user_store_tests!(…);
//! psm_core::token_state_tests!(…);
//! psm_core::cache_tests!(…);
//! ```
//!
//! Time-dependent cases move a [`ManualClock`] when the store honours it
//! ([`Capabilities::honours_clock`](crate::Capabilities)) and sleep otherwise, so a provider with
//! native expiry is tested against real time.
//!
//! **Destructive and outside semver**: cases write and delete data in the stores they are given.
//! Fixtures must hand out stores in fresh namespaces (a random key prefix, temp directory or schema)
//! and remove only those.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

use crate::{DynCache, DynPermissionStore, DynTokenStateStore, DynUserStore, ManualClock};

pub mod cases;
mod macros;

/// Makes fresh, isolated, initialized permission stores.
#[async_trait]
pub trait PermissionStoreFixture: Send + Sync + 'static {
    /// A new store in its own namespace, using `clock` if it honours one. Two calls never share data.
    async fn create(&self, clock: ManualClock) -> DynPermissionStore;
}

/// Makes fresh, isolated user stores.
#[async_trait]
pub trait UserStoreFixture: Send + Sync + 'static {
    /// A new store in its own namespace, using `clock` if it honours one.
    async fn create(&self, clock: ManualClock) -> DynUserStore;
}

/// Makes fresh, isolated token state stores.
#[async_trait]
pub trait TokenStateFixture: Send + Sync + 'static {
    /// A new store in its own namespace, using `clock` if it honours one.
    async fn create(&self, clock: ManualClock) -> DynTokenStateStore;
    /// Whether the stores read time from the given clock (otherwise cases sleep).
    fn honours_clock(&self) -> bool;
}

/// Makes fresh, isolated caches.
#[async_trait]
pub trait CacheFixture: Send + Sync + 'static {
    /// A new cache in its own namespace, using `clock` if it honours one.
    async fn create(&self, clock: ManualClock) -> DynCache;
    /// Whether the caches read time from the given clock (otherwise cases sleep).
    fn honours_clock(&self) -> bool;
}

/// Moves time for a store: the manual clock when the store honours it, real sleep otherwise.
#[derive(Debug, Clone)]
pub struct TimeTravel {
    clock: ManualClock,
    honours_clock: bool,
}

impl TimeTravel {
    /// Time control over `clock`; `honours_clock` says whether the store reads it.
    pub fn new(clock: ManualClock, honours_clock: bool) -> Self {
        Self { clock, honours_clock }
    }

    /// The manual clock handed to the store.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// Lets `d` pass for the store.
    pub async fn advance(&self, d: Duration) {
        if self.honours_clock {
            self.clock.advance(d);
        } else {
            tokio::time::sleep(d).await;
        }
    }
}

/// A fixture's store together with its time control.
pub async fn permission_store<F: PermissionStoreFixture + ?Sized>(f: &F) -> (DynPermissionStore, TimeTravel) {
    let clock = ManualClock::at_2024();
    let store = f.create(clock.clone()).await;
    let honours = store.capabilities().honours_clock;
    (store, TimeTravel::new(clock, honours))
}

/// Wraps a fixture in an `Arc` so cases can share it across spawned tasks.
pub fn shared<T>(t: T) -> Arc<T> {
    Arc::new(t)
}
