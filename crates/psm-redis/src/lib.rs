//! Redis adapters for psm on [`fred`]: [`RedisStore`] (`PermissionStore`),
//! [`RedisTokenStateStore`] (`TokenStateStore`) and [`RedisCache`] (`Cache`), sharing one
//! connection pool through [`RedisStorage`]. Standalone servers and Redis Cluster are supported;
//! optional client-side caching (RESP3 tracking) serves hot checks locally.
//!
//! ```no_run
//! use psm_core::{NewSession, PermissionList, PermissionStore, SessionIdRef, UserId};
//! use psm_redis::{RedisConfig, RedisStorage};
//!
//! # async fn demo() -> psm_core::Result<()> {
//! let config = RedisConfig::from_url("redis://127.0.0.1:6379/0?key_prefix=app:")?;
//! let storage = RedisStorage::connect(config).await?;
//! let sessions = storage.sessions();
//! let id = SessionIdRef::parse("session_1")?;
//! let perms = PermissionList::parse(["read", "write"])?;
//! sessions
//!     .store_permissions(id, NewSession::new(UserId::parse("alice")?, perms))
//!     .await?;
//! assert!(sessions.check_permission(id, psm_core::PermissionRef::parse("read")?).await?);
//! # Ok(())
//! # }
//! ```
//!
//! # Key layout
//! Every key starts with `key_prefix` (default `psm:`):
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `<p>s:{<sid>}` | hash | one session: each permission → its position, plus ` u` user, ` k` escaped user, ` c` created, ` m` updated, ` e` expires (unix µs), ` d` metadata JSON; native expiry |
//! | `<p>u:{<user>}:c` | sorted set | the user's sessions by created_at (µs), ties by id |
//! | `<p>u:{<user>}:x` | sorted set | the same ids by an expiry never below the real one (µs, `+inf` for none) |
//! | `<p>u:{<user>}:r`, `:q`, `:v` | sorted set, hash, sorted set | cluster only: reservations in flight (and how many per id), eviction marks |
//! | `<p>f:{<fid>}`, `<p>f:{<fid>}:used` | hash, set | a refresh-token family and its consumed ids |
//! | `<p>fam:{<user>}`, `<p>ue:{<user>}`, `<p>fx` | sorted set, string, sorted set | a user's families by expiry, token epoch, families by expiry |
//! | `<p>c:{<key>}`, `<p>t:{<tag>}` | hash, set | a cache entry, a cache tag's keys |
//!
//! User ids, cache keys and tags are percent-encoded (everything but `[A-Za-z0-9._-]`), so they
//! never hold `{` or `}` and never collide. Checks are one `HMGET <session> <perm> " e"`, with no
//! timer per command: calls fail fast during an outage through fred's fail-fast commands,
//! unresponsive-connection detection and psm's per-connection "down" flags (see the `conn`
//! module docs and `docs/providers.md`, which also has the cluster write order and the crash
//! reasoning).

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod cache;
mod client_cache;
mod config;
mod conn;
mod error;
#[cfg(test)]
mod fuzz;
mod info;
mod keys;
mod scripts;
mod session;
mod store;
mod store_cluster;
mod tls;
mod tokens;

use std::sync::Arc;

pub use cache::RedisCache;
pub use client_cache::ClientCacheStats;
pub use config::{
    ClientCacheConfig, DEFAULT_CLIENT_CACHE_BYTES, DEFAULT_CLIENT_CACHE_ENTRIES,
    DEFAULT_CLIENT_CACHE_MAX_AGE, DEFAULT_KEY_PREFIX, DEFAULT_POOL_SIZE, MAX_KEY_PREFIX_LEN,
    RedisConfig, SslCertReqs, is_valid_key_prefix,
};
pub use info::{ConnectionInfo, KeyspaceInfo, NodeInfo};
pub use store::RedisStore;
pub use tokens::RedisTokenStateStore;

use conn::Shared;
use psm_core::Result;

/// The provider name.
pub const PROVIDER: &str = "redis";

/// One connection pool shared by the three Redis ports. Clones share it.
#[derive(Debug, Clone)]
pub struct RedisStorage {
    shared: Arc<Shared>,
}

impl RedisStorage {
    /// Storage for `config`; no I/O until [`initialize`](Self::initialize).
    ///
    /// # Errors
    /// `ProviderConfiguration` when a value breaks the rules of [`RedisConfig::validate`] (a
    /// configuration built as a struct is checked exactly like one read from JSON or a URL), or
    /// when the TLS settings cannot be built.
    pub fn new(config: RedisConfig) -> Result<Self> {
        config.validate()?;
        if config.ssl {
            tls::client_config(&config)?;
        }
        Ok(Self {
            shared: Arc::new(Shared::new(config)),
        })
    }

    /// [`new`](Self::new) then [`initialize`](Self::initialize).
    ///
    /// # Errors
    /// As both.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let s = Self::new(config)?;
        s.initialize().await?;
        Ok(s)
    }

    /// Connects (idempotent).
    ///
    /// # Errors
    /// `ProviderConnection` when the server cannot be reached within the connect timeout.
    pub async fn initialize(&self) -> Result<()> {
        self.shared.initialize().await
    }

    /// Disconnects (idempotent); calls then fail with `ProviderNotInitialized`.
    ///
    /// # Errors
    /// None today.
    pub async fn close(&self) -> Result<()> {
        self.shared.close().await
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// The permission store.
    pub fn sessions(&self) -> RedisStore {
        RedisStore {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The token state store.
    pub fn tokens(&self) -> RedisTokenStateStore {
        RedisTokenStateStore {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The cache.
    pub fn cache(&self) -> RedisCache {
        RedisCache {
            shared: Arc::clone(&self.shared),
        }
    }
}
