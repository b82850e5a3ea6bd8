#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod args;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod auth;
mod backend;
pub mod blocking;
mod builder;
mod manager;
mod registry;
mod url;

pub use builder::ManagerBuilder;
pub use manager::{CreatedSession, PermissionStorageManager, create_manager};
pub use registry::{ProviderFactory, ProviderRegistry};

/// The seed's utility functions (session ids, permission merging and patterns, ttl strings, provider
/// URLs, config merging).
pub use psm_core::util;
pub use psm_core::{
    Cache, CacheKey, CacheTag, Capabilities, Clock, DynCache, DynClock, DynPermissionStore,
    DynTokenStateStore, DynUserStore, Error, ErrorKind, LimitPolicy, ManualClock, Metadata,
    NewSession, OsRandom, Page, Permission, PermissionCheck, PermissionList, PermissionRef,
    PermissionStore, RandomSource, Result, SessionData, SessionId, SessionIdRef, SessionInfo,
    SessionLimit, SystemClock, Timestamp, TokenStateStore, Ttl, UserId, UserStore, async_trait,
    is_valid_permission, is_valid_session_id, is_valid_user_id, redact_id,
};

/// The in-process provider (`memory://`): [`memory::MemoryStore`] and its configuration.
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub use psm_memory as memory;

/// The durable embedded provider (`file:///path`): [`file::FileStorage`], [`file::FileStore`] and
/// their configuration.
#[cfg(feature = "file")]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub use psm_file as file;

/// Redis, standalone or Cluster (`redis://`, `rediss://`): [`redis::RedisStorage`] and the
/// stores it hands out, [`redis::RedisConfig`].
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use psm_redis as redis;

/// PostgreSQL (`postgres://`): [`postgres::PostgresStorage`], its stores, migrations and the query
/// layer [`postgres::Database`].
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use psm_postgres as postgres;

/// The token service (`psm-jwt`): keys, token settings, access and refresh pairs.
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use psm_jwt as jwt;
