#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod cache;
mod config;
#[cfg(test)]
mod fuzz;
mod permission_store;
mod stats;
mod store;
mod sweeper;
mod token_state;
mod user_store;

pub use cache::MemoryCache;
pub use config::{
    DEFAULT_CLEANUP_INTERVAL, DEFAULT_SHARDS, MAX_CLEANUP_INTERVAL_SECS, MAX_SHARDS, MemoryConfig,
};
pub use stats::MemoryStats;
pub use store::MemoryStore;
pub use token_state::MemoryTokenStateStore;
pub use user_store::MemoryUserStore;

/// The provider name every memory adapter reports.
pub(crate) const PROVIDER: &str = "memory";
