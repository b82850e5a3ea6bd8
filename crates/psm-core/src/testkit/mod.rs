//! The conformance suite every provider runs (DESIGN §3, STYLE rules 18 to 20).
//!
//! Each case is a plain `pub async fn` in [`cases`] taking a *fixture* (a store factory), so a case
//! can build two isolated stores (isolation) or share one store across many tasks (concurrency).
//! An adapter runs the whole suite with one macro per port it implements, in its
//! `tests/conformance.rs` (the calling crate needs `tokio` with `macros` and `rt-multi-thread` among
//! its dev-dependencies):
//!
//! ```text
//! // tests/conformance.rs of an adapter; each argument builds a fixture.
//! psm_core::permission_store_tests!(SessionFixture::new());
//! psm_core::user_store_tests!(UserFixture);
//! psm_core::token_state_tests!(TokenFixture);
//! psm_core::cache_tests!(CacheFixture);
//! // or all four at once:
//! psm_core::conformance_tests!(SessionFixture::new(), UserFixture, TokenFixture, CacheFixture);
//! ```
//!
//! Each macro expands to a module (`permission_store_conformance`, …) with one submodule per theme
//! and one `#[tokio::test]` per case, so a failure is reported as, for example,
//! `permission_store_conformance::limits::concurrent_create_session_with_reject_leaves_the_limit`.
//! To run a port's suite twice in one crate (say through `Box<dyn>` and `Arc<dyn>`), name the
//! modules: `psm_core::permission_store_tests!(mod boxed, BoxFixture);`.
//!
//! # What a fixture promises
//! - Every `create` returns a store in a fresh namespace (a random key prefix, temp directory or
//!   schema) that no other call shares, already initialized. Cases never assume anything about data
//!   outside their own stores, and fixtures remove only what they created.
//! - A store reads time from the given [`ManualClock`] exactly when it says so
//!   ([`Capabilities::honours_clock`](crate::Capabilities) for permission stores,
//!   [`TokenStateFixture::honours_clock`] and [`CacheFixture::honours_clock`] for the others).
//!   Cases move time only through [`TimeTravel`], which advances that clock or really sleeps, and
//!   keep the real sleeping of one case to about three seconds. User stores do not say, so their
//!   cases move the clock *and* sleep, in steps of milliseconds.
//! - Stores do not sweep expired data in the background while a case runs (or sweep far less often
//!   than a case lasts), because the cleanup cases assert exact counts. Cases never read an expired
//!   session before counting a cleanup, so lazy expiry on read is fine, and a provider with native
//!   expiry counts the expired sessions it finds in its indexes.
//!
//! **Destructive and outside semver**: cases write and delete data in the stores they are given,
//! and cases may be added in any release.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

use crate::{
    Clock, DynCache, DynPermissionStore, DynTokenStateStore, DynUserStore, ManualClock,
    SystemClock, Timestamp,
};

pub mod cases;
pub mod fuzz;
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
    /// Whether the stores read time from the given clock (otherwise cases sleep).
    fn honours_clock(&self) -> bool;
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
    mode: Mode,
}

/// How a store keeps time, as far as the suite knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The store reads the manual clock.
    Manual,
    /// The store reads real time.
    Real,
    /// The fixture does not say; time moves both ways.
    Unknown,
}

impl TimeTravel {
    /// Time control over `clock`; `honours_clock` says whether the store reads it.
    pub fn new(clock: ManualClock, honours_clock: bool) -> Self {
        Self {
            clock,
            mode: if honours_clock {
                Mode::Manual
            } else {
                Mode::Real
            },
        }
    }

    /// Time control for a store that may or may not read `clock`: [`advance`](Self::advance) moves the
    /// clock *and* sleeps, so use it only for short steps.
    pub fn unknown(clock: ManualClock) -> Self {
        Self {
            clock,
            mode: Mode::Unknown,
        }
    }

    /// The manual clock handed to the store.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// Whether the store reads the manual clock, so instants and boundaries can be asserted exactly.
    pub fn is_exact(&self) -> bool {
        self.mode == Mode::Manual
    }

    /// The store's current time as far as the suite can tell: the manual clock when the store reads
    /// it, the system clock otherwise.
    pub fn now(&self) -> Timestamp {
        match self.mode {
            Mode::Manual => self.clock.now(),
            Mode::Real | Mode::Unknown => SystemClock.now(),
        }
    }

    /// Lets `d` pass for the store.
    pub async fn advance(&self, d: Duration) {
        match self.mode {
            Mode::Manual => self.clock.advance(d),
            Mode::Real => tokio::time::sleep(d).await,
            Mode::Unknown => {
                self.clock.advance(d);
                tokio::time::sleep(d).await;
            }
        }
    }
}

/// A fresh permission store from `f` together with its time control.
pub async fn permission_store<F: PermissionStoreFixture + ?Sized>(
    f: &F,
) -> (DynPermissionStore, TimeTravel) {
    let clock = ManualClock::at_2024();
    let store = f.create(clock.clone()).await;
    let honours = store.capabilities().honours_clock;
    (store, TimeTravel::new(clock, honours))
}

/// A fresh user store from `f` together with its time control.
pub async fn user_store<F: UserStoreFixture + ?Sized>(f: &F) -> (DynUserStore, TimeTravel) {
    let clock = ManualClock::at_2024();
    let store = f.create(clock.clone()).await;
    (store, TimeTravel::new(clock, f.honours_clock()))
}

/// A fresh token state store from `f` together with its time control.
pub async fn token_state<F: TokenStateFixture + ?Sized>(f: &F) -> (DynTokenStateStore, TimeTravel) {
    let clock = ManualClock::at_2024();
    let store = f.create(clock.clone()).await;
    (store, TimeTravel::new(clock, f.honours_clock()))
}

/// A fresh cache from `f` together with its time control.
pub async fn cache<F: CacheFixture + ?Sized>(f: &F) -> (DynCache, TimeTravel) {
    let clock = ManualClock::at_2024();
    let store = f.create(clock.clone()).await;
    (store, TimeTravel::new(clock, f.honours_clock()))
}

/// Wraps a fixture in an `Arc` so cases can share it across spawned tasks.
pub fn shared<T>(t: T) -> Arc<T> {
    Arc::new(t)
}
