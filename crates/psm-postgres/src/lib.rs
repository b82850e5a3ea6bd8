//! PostgreSQL adapters for psm, on tokio-postgres and deadpool-postgres.
//!
//! One [`PostgresStorage`] owns the connection pool (size, connect and wait timeouts,
//! `statement_timeout`, TCP keepalives, TLS through rustls, retry with backoff on connection
//! errors) and runs the embedded migrations into the configured schema. Its ports share the pool:
//!
//! - [`PostgresStore`]: [`PermissionStore`](psm_core::PermissionStore) (sessions; a check is one
//!   prepared primary-key `SELECT`; `create_session` keeps the per-user limit atomic);
//! - [`PostgresUserStore`]: [`UserStore`](psm_core::UserStore) (unique case-insensitive email
//!   and username; optional cache of lookups by email);
//! - [`PostgresTokenStateStore`]: the [`TokenStateStore`](psm_core::TokenStateStore) port
//!   (refresh-token families with a compare-and-swap consume; user epochs);
//! - [`Database`]: the query layer (parameterized statements, validation, transactions, result
//!   caching through the [`Cache`](psm_core::Cache) port).
//!
//! Every store reads time from the [`Clock`](psm_core::Clock) the storage was built with and
//! passes it to the server as a parameter, so a `ManualClock` moves time for them.
//!
//! ```no_run
//! use psm_core::{NewSession, PermissionList, PermissionStore, SessionIdRef, UserId};
//! use psm_postgres::{PostgresConfig, PostgresStorage};
//!
//! # async fn demo() -> psm_core::Result<()> {
//! let config = PostgresConfig::from_url("postgres://app:secret@db.local:5432/app?schema=psm&pool_size=8")?;
//! let storage = PostgresStorage::connect(config).await?; // connects and migrates
//! let sessions = storage.sessions();
//! let id = SessionIdRef::parse("sess_1")?;
//! let session = NewSession::new(UserId::parse("alice")?, PermissionList::parse(["read"])?);
//! sessions.store_permissions(id, session).await?;
//! assert!(sessions.check_permission(id, psm_core::PermissionRef::parse("read")?).await?);
//!
//! let rows = storage
//!     .database()
//!     .fetch_json("SELECT id, user_id FROM sessions WHERE user_id = $1", &[&"alice"])
//!     .await?;
//! assert_eq!(rows[0]["user_id"], "alice");
//! storage.close().await?;
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod config;
mod error;
mod exec;
#[cfg(test)]
mod fuzz;
mod migrations;
mod pool;
mod query;
mod sessions;
mod sql;
mod storage;
mod tls;
mod tokens;
mod users;

pub use config::{
    DEFAULT_SCHEMA, MAX_DURATION_SECS, PostgresConfig, QUERY_TIMEOUT_MARGIN, RecycleCheck, Secret,
    SslMode, validate_schema,
};
pub use migrations::{MIGRATION_TABLE, MigrationReport, latest_version};
pub use pool::PoolStatus;
pub use query::{
    CacheOptions, CachedRows, Database, DbTransaction, JsonRow, MEMO_ENTRIES, MEMO_VALUE_BYTES,
    Params, Query, STATEMENT_CACHE_LIMIT, SqlValue,
};
pub use sessions::PostgresStore;
pub use storage::PostgresStorage;
pub use tokens::PostgresTokenStateStore;
pub use users::PostgresUserStore;

/// The provider name every store reports.
pub const PROVIDER: &str = "postgres";
