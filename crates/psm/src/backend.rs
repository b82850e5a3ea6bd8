//! The store a manager drives, with a direct handle on the in-process store for the hot path.

#[cfg(any(
    feature = "memory",
    feature = "file",
    feature = "redis",
    feature = "postgres"
))]
use std::any::Any;
use std::sync::Arc;

use psm_core::{DynPermissionStore, PermissionStore};
#[cfg(feature = "file")]
use psm_file::FileStore;
#[cfg(feature = "memory")]
use psm_memory::MemoryStore;
#[cfg(feature = "postgres")]
use psm_postgres::PostgresStore;
#[cfg(feature = "redis")]
use psm_redis::RedisStore;

/// A store as the manager holds it.
///
/// `dynamic` serves every call of providers reached through the port. When the store is the
/// in-process one, `memory` holds a clone sharing its state, so the manager calls its synchronous
/// `_now` methods directly: no boxed future per call, which keeps checks close to a bare map lookup.
#[derive(Debug, Clone)]
pub(crate) struct Backend {
    pub(crate) dynamic: DynPermissionStore,
    #[cfg(feature = "memory")]
    pub(crate) memory: Option<MemoryStore>,
    /// The durable embedded store, whose reads are served from memory without a future.
    #[cfg(feature = "file")]
    pub(crate) file: Option<FileStore>,
    /// The Redis store, kept for its extras (connection info, flush).
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<RedisStore>,
    /// The PostgreSQL store, kept for its extras (pool status, the query layer).
    #[cfg(feature = "postgres")]
    pub(crate) postgres: Option<PostgresStore>,
}

impl Backend {
    /// A store reached only through the port.
    pub(crate) fn from_dyn(store: DynPermissionStore) -> Self {
        Self {
            dynamic: store,
            #[cfg(feature = "memory")]
            memory: None,
            #[cfg(feature = "file")]
            file: None,
            #[cfg(feature = "redis")]
            redis: None,
            #[cfg(feature = "postgres")]
            postgres: None,
        }
    }

    /// The Redis store, reached through the port and kept for its extras.
    #[cfg(feature = "redis")]
    pub(crate) fn from_redis(store: RedisStore) -> Self {
        Self {
            redis: Some(store.clone()),
            ..Self::from_dyn(Arc::new(store))
        }
    }

    /// The PostgreSQL store, reached through the port and kept for its extras.
    #[cfg(feature = "postgres")]
    pub(crate) fn from_postgres(store: PostgresStore) -> Self {
        Self {
            postgres: Some(store.clone()),
            ..Self::from_dyn(Arc::new(store))
        }
    }

    /// The durable embedded store, with its read fast path.
    #[cfg(feature = "file")]
    pub(crate) fn from_file(store: FileStore) -> Self {
        Self {
            file: Some(store.clone()),
            ..Self::from_dyn(Arc::new(store))
        }
    }

    /// The in-process store, with its fast path.
    #[cfg(feature = "memory")]
    pub(crate) fn from_memory(store: MemoryStore) -> Self {
        Self {
            memory: Some(store.clone()),
            ..Self::from_dyn(Arc::new(store))
        }
    }

    /// Any store instance; an in-process store is recognised so it gets the fast path too.
    pub(crate) fn from_store<S: PermissionStore>(store: S) -> Self {
        #[cfg(feature = "memory")]
        if let Some(memory) = (&store as &dyn Any).downcast_ref::<MemoryStore>() {
            // Clones share state (the store's documented contract), so keeping a clone is keeping it.
            return Self::from_memory(memory.clone());
        }
        #[cfg(feature = "file")]
        if let Some(file) = (&store as &dyn Any).downcast_ref::<FileStore>() {
            return Self::from_file(file.clone());
        }
        #[cfg(feature = "redis")]
        if let Some(redis) = (&store as &dyn Any).downcast_ref::<RedisStore>() {
            return Self::from_redis(redis.clone());
        }
        #[cfg(feature = "postgres")]
        if let Some(postgres) = (&store as &dyn Any).downcast_ref::<PostgresStore>() {
            return Self::from_postgres(postgres.clone());
        }
        Self::from_dyn(Arc::new(store))
    }
}
