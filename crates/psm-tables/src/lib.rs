#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod cache_table;
mod config;
mod intern;
mod perm_set;
mod sessions;
mod stats;
mod token_table;
mod user_table;

pub use cache_table::CacheTable;
pub use config::{DEFAULT_PROVIDER, DEFAULT_SHARDS, MAX_SHARDS, TableConfig};
pub use sessions::{SessionRecord, SessionTable, WeakSessionTable};
pub use stats::TableStats;
pub use token_table::{FamilyRecord, TokenTable};
pub use user_table::UserTable;
