//! [`PostgresStorage`]: the pool and lifecycle shared by every port.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use deadpool_postgres::{Object, Pool};
use parking_lot::RwLock;
use psm_core::{DynClock, Result, SystemClock, Timestamp};
use time::OffsetDateTime;

use crate::{
    Database, MigrationReport, PoolStatus, PostgresConfig, PostgresStore, PostgresTokenStateStore,
    PostgresUserStore,
    error::not_initialized,
    migrations,
    pool::{acquire, build_pool, ping},
    sql::{Sql, fnv1a64},
};

/// The connection pool, configuration and clock shared by the session, user and token stores and
/// the query layer.
///
/// [`new`](Self::new) only validates and builds (no I/O); [`initialize`](Self::initialize)
/// connects (with retry) and runs the migrations; [`close`](Self::close) closes the pool, and a
/// later `initialize` opens a new one.
///
/// # Clone
/// Cloning is cheap and **shares** the pool and state.
#[derive(Clone)]
pub struct PostgresStorage {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: PostgresConfig,
    pub(crate) sql: Sql,
    pub(crate) clock: DynClock,
    /// The client-side bound of one call (`PostgresConfig::call_timeout`).
    pub(crate) call_timeout: Option<std::time::Duration>,
    /// Seed of the per-user advisory lock keys (derived from the schema).
    pub(crate) lock_seed: i64,
    /// The pool while initialized.
    live: RwLock<Option<Pool>>,
    /// A pool built but not yet published by `initialize`.
    pending: RwLock<Option<Pool>>,
    /// Whether this storage's schema was migrated by this process already.
    migrated: AtomicBool,
    init: tokio::sync::Mutex<()>,
}

impl PostgresStorage {
    /// Validates `config` and builds the pool without connecting, reading time from the system
    /// clock.
    ///
    /// # Errors
    /// `ProviderConfiguration` for an invalid configuration or unreadable TLS roots.
    pub fn new(config: PostgresConfig) -> Result<Self> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// Like [`new`](Self::new), reading time from `clock` (every timestamp and expiry the stores
    /// write or compare comes from it, passed to the server as a parameter).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_clock(config: PostgresConfig, clock: DynClock) -> Result<Self> {
        config.validate()?;
        let pool = build_pool(&config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                sql: Sql::new(&config.schema),
                lock_seed: fnv1a64(config.schema.as_bytes()),
                call_timeout: config.call_timeout(),
                config,
                clock,
                live: RwLock::new(None),
                pending: RwLock::new(Some(pool)),
                migrated: AtomicBool::new(false),
                init: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// [`new`](Self::new) and [`initialize`](Self::initialize).
    ///
    /// # Errors
    /// As both.
    pub async fn connect(config: PostgresConfig) -> Result<Self> {
        let storage = Self::new(config)?;
        storage.initialize().await?;
        Ok(storage)
    }

    /// Connects (retrying connection errors as configured) and runs the migrations once per
    /// storage. Harmless when repeated; after [`close`](Self::close) it opens a new pool.
    ///
    /// # Errors
    /// `ProviderConnection` when the server cannot be reached, `ProviderConfiguration` when it
    /// refuses for good (authentication, unknown database, rejected TLS certificate) or the schema
    /// was migrated by a newer psm, `OperationTimeout` when no pooled connection frees up in time,
    /// `Provider` when a migration fails.
    pub async fn initialize(&self) -> Result<()> {
        if self.inner.live.read().is_some() {
            return Ok(());
        }
        let _guard = self.inner.init.lock().await;
        if self.inner.live.read().is_some() {
            return Ok(());
        }
        let pool = match self.inner.pending.read().clone() {
            Some(p) => p,
            None => build_pool(&self.inner.config)?,
        };
        *self.inner.pending.write() = Some(pool.clone());
        if !self.inner.migrated.load(Ordering::Acquire) {
            self.migrate_on(&pool).await?;
        } else {
            ping(&acquire(&pool, &self.inner.config).await?).await?;
        }
        *self.inner.pending.write() = None;
        *self.inner.live.write() = Some(pool);
        tracing::debug!(schema = %self.inner.config.schema, "postgres storage initialized");
        Ok(())
    }

    /// Runs the migrations now (also before `initialize`). Idempotent and safe to run from many
    /// processes at once.
    ///
    /// # Errors
    /// As [`initialize`](Self::initialize).
    pub async fn migrate(&self) -> Result<MigrationReport> {
        let pool = self.any_pool()?;
        self.migrate_on(&pool).await
    }

    async fn migrate_on(&self, pool: &Pool) -> Result<MigrationReport> {
        // Taken out of the pool: the session-level advisory lock and `search_path` close with the
        // connection on every exit path, including a cancelled future, and never return to the
        // pool.
        let mut client = Object::take(acquire(pool, &self.inner.config).await?);
        let report = migrations::run(&mut client, &self.inner.config.schema).await?;
        self.inner.migrated.store(true, Ordering::Release);
        Ok(report)
    }

    /// Closes the pool: idle connections are closed now, busy ones when they are returned. Calls
    /// then fail with `ProviderNotInitialized` until [`initialize`](Self::initialize) runs again.
    /// Harmless when repeated.
    pub async fn close(&self) -> Result<()> {
        let _guard = self.inner.init.lock().await;
        for slot in [&self.inner.live, &self.inner.pending] {
            if let Some(pool) = slot.write().take() {
                pool.close();
            }
        }
        Ok(())
    }

    /// Whether the storage is initialized and not closed.
    pub fn is_initialized(&self) -> bool {
        self.inner.live.read().is_some()
    }

    /// The pool's current size, idle connections and waiters (all zero when closed).
    pub fn pool_status(&self) -> PoolStatus {
        let pool = self.inner.live.read().clone();
        let pool = pool.or_else(|| self.inner.pending.read().clone());
        pool.map(|p| {
            let s = p.status();
            PoolStatus {
                size: s.size,
                available: s.available,
                waiting: s.waiting,
                max_size: s.max_size,
            }
        })
        .unwrap_or(PoolStatus {
            max_size: self.inner.config.pool_size,
            ..PoolStatus::default()
        })
    }

    /// The configuration (its `Debug` hides the password).
    pub fn config(&self) -> &PostgresConfig {
        &self.inner.config
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.inner.config.schema
    }

    /// The session store ([`PermissionStore`](psm_core::PermissionStore)) on this pool.
    pub fn sessions(&self) -> PostgresStore {
        PostgresStore::from_storage(self.clone())
    }

    /// The user store ([`UserStore`](psm_core::UserStore)) on this pool.
    pub fn users(&self) -> PostgresUserStore {
        PostgresUserStore::from_storage(self.clone())
    }

    /// The token state store ([`TokenStateStore`](psm_core::TokenStateStore)) on this pool.
    pub fn tokens(&self) -> PostgresTokenStateStore {
        PostgresTokenStateStore::from_storage(self.clone())
    }

    /// The query layer on this pool.
    pub fn database(&self) -> Database {
        Database::from_storage(self.clone())
    }

    /// A pooled connection (retrying connection errors as configured).
    ///
    /// # Errors
    /// `ProviderNotInitialized` before `initialize` or after `close`; `ProviderConnection` or
    /// `OperationTimeout` as the pool reports.
    pub async fn client(&self) -> Result<Object> {
        let pool = self.inner.live.read().clone().ok_or_else(not_initialized)?;
        acquire(&pool, &self.inner.config).await
    }

    fn any_pool(&self) -> Result<Pool> {
        if let Some(p) = self.inner.live.read().clone() {
            return Ok(p);
        }
        if let Some(p) = self.inner.pending.read().clone() {
            return Ok(p);
        }
        let pool = build_pool(&self.inner.config)?;
        *self.inner.pending.write() = Some(pool.clone());
        Ok(pool)
    }

    /// The store's current time.
    pub(crate) fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// The default cache namespace of the query layer and the user store:
    /// `psm:pg:<host>:<port>:<dbname>:<schema>` (hashed when long).
    pub fn default_cache_namespace(&self) -> String {
        let c = &self.inner.config;
        crate::query::default_namespace(&c.host, c.port, c.effective_dbname(), &c.schema)
    }

    /// The client-side bound of one call.
    pub(crate) fn call_timeout(&self) -> Option<std::time::Duration> {
        self.inner.call_timeout
    }

    pub(crate) fn sql(&self) -> &Sql {
        &self.inner.sql
    }
}

/// A timestamp as the driver's `timestamptz`.
pub(crate) fn to_pg(t: Timestamp) -> OffsetDateTime {
    t.to_offset_date_time()
}

/// A driver `timestamptz` as a timestamp.
pub(crate) fn from_pg(t: OffsetDateTime) -> Timestamp {
    Timestamp::from_offset_date_time(t)
}

impl fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("host", &self.inner.config.host)
            .field("port", &self.inner.config.port)
            .field("schema", &self.inner.config.schema)
            .field("initialized", &self.is_initialized())
            .field("pool", &self.pool_status())
            .finish_non_exhaustive()
    }
}
