//! The background sweeper: a Tokio task that removes expired sessions every `cleanup_interval`.
//!
//! It holds only a [`Weak`] reference to the store, so it never keeps the data alive: it ends at
//! its next tick after the last clone is dropped (and is aborted at once by the store's `Drop`),
//! or when `close` stops it.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use tokio::time::{Instant, MissedTickBehavior};

use crate::store::Inner;

/// Starts the sweeper when a Tokio runtime is current, the interval is enabled and no sweeper of
/// this store is running yet. Without a runtime it does nothing: `cleanup` is then explicit.
pub(crate) fn start(inner: &Arc<Inner>) {
    let Some(every) = inner.cleanup_interval() else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if inner.sweeper_running() {
        return;
    }
    // An interval too long to schedule (beyond the runtime's clock range) means "never".
    let Some(first) = Instant::now().checked_add(every) else {
        return;
    };
    let weak = Arc::downgrade(inner);
    if let Some(old) = inner.set_sweeper(runtime.spawn(run(weak, first, every))) {
        old.abort();
    }
}

async fn run(store: Weak<Inner>, first: Instant, every: Duration) {
    let mut ticks = tokio::time::interval_at(first, every);
    // After a stall, sweep once and carry on instead of sweeping repeatedly to catch up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = store.upgrade() else { break };
        inner.cleanup();
    }
}
