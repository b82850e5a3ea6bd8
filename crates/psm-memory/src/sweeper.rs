//! The background sweeper: a Tokio task that removes expired sessions every `cleanup_interval`.
//!
//! It holds only a [`WeakSessionTable`], so it never keeps the data alive: it ends at its next tick
//! after the table is dropped (and is aborted at once when the last store clone is dropped), or
//! when `close` stops it.

use std::time::Duration;

use psm_tables::WeakSessionTable;
use tokio::{
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};

/// Spawns the sweeper when a Tokio runtime is current. Without a runtime it does nothing and
/// returns `None`: `cleanup` is then explicit.
pub(crate) fn spawn(table: WeakSessionTable, every: Duration) -> Option<JoinHandle<()>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    // An interval too long to schedule (beyond the runtime's clock range) means "never".
    let first = Instant::now().checked_add(every)?;
    Some(runtime.spawn(run(table, first, every)))
}

async fn run(table: WeakSessionTable, first: Instant, every: Duration) {
    let mut ticks = tokio::time::interval_at(first, every);
    // After a stall, sweep once and carry on instead of sweeping repeatedly to catch up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(table) = table.upgrade() else { break };
        table.sweep();
    }
}
