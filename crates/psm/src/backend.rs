//! The store a manager drives, with a direct handle on the in-process store for the hot path.

#[cfg(feature = "memory")]
use std::any::Any;
use std::sync::Arc;

use psm_core::{DynPermissionStore, PermissionStore};
#[cfg(feature = "memory")]
use psm_memory::MemoryStore;

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
}

impl Backend {
    /// A store reached only through the port.
    pub(crate) fn from_dyn(store: DynPermissionStore) -> Self {
        Self {
            dynamic: store,
            #[cfg(feature = "memory")]
            memory: None,
        }
    }

    /// The in-process store, with its fast path.
    #[cfg(feature = "memory")]
    pub(crate) fn from_memory(store: MemoryStore) -> Self {
        Self {
            dynamic: Arc::new(store.clone()),
            memory: Some(store),
        }
    }

    /// Any store instance; an in-process store is recognised so it gets the fast path too.
    pub(crate) fn from_store<S: PermissionStore>(store: S) -> Self {
        #[cfg(feature = "memory")]
        if let Some(memory) = (&store as &dyn Any).downcast_ref::<MemoryStore>() {
            // Clones share state (the store's documented contract), so keeping a clone is keeping it.
            return Self::from_memory(memory.clone());
        }
        Self::from_dyn(Arc::new(store))
    }
}
