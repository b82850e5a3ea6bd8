//! [`Query`]: one SQL text validated and hashed once, run many times with parameters.

use std::{fmt, sync::Arc};

use psm_core::{CacheKey, CacheTag, Error, Result};
use tokio_postgres::Row;

use super::{
    CacheOptions, CachedRows, Database, Got, JsonRow, Params, Source, SqlValue, Want,
    cache::{self, Sql},
    json,
    validate::{self, Limits},
};

/// One SQL statement prepared for repeated calls: created by [`Database::query`], which checks
/// it once (size, NUL bytes, exactly one statement) and hashes its text once, so a call checks
/// only its parameters and a cached hit hashes only its parameters and tags.
///
/// Every call behaves as the [`Database`] call of the same name with this SQL: the same
/// parameter checks before any I/O, the same statement preparation per pooled connection, the
/// same cache entries and memo (a result cached through the handle is a hit for
/// [`Database::fetch_json_cached`] of the same SQL, and the other way round).
///
/// ```no_run
/// # async fn demo(db: psm_postgres::Database) -> psm_core::Result<()> {
/// use psm_postgres::{CacheOptions, SqlValue};
/// let by_id = db.query("SELECT id, name FROM items WHERE id = $1")?;
/// let rows = by_id
///     .fetch_json_cached(&[SqlValue::Int(42)], &CacheOptions::default())
///     .await?;
/// # let _ = rows; Ok(()) }
/// ```
///
/// # Clone
/// Cloning is cheap: the clones share the text, the pool, the cache and the memo. A handle keeps
/// the [`Database`] (cache and namespace) it was created from.
#[derive(Clone)]
pub struct Query {
    db: Database,
    sql: Arc<str>,
    /// The memo's hash of `sql`.
    hash: u64,
}

impl Database {
    /// A [`Query`] handle for `sql`, validated now.
    ///
    /// # Errors
    /// `Validation` when the SQL is empty, longer than `max_query_bytes`, holds a NUL byte or
    /// more than one statement (see the type docs); nothing is sent to the server.
    pub fn query(&self, sql: &str) -> Result<Query> {
        validate::check(sql, 0, self.limits())?;
        Ok(Query {
            db: self.clone(),
            sql: sql.into(),
            hash: cache::sql_hash(sql),
        })
    }
}

impl Query {
    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The only per-call check: the number of parameters (the SQL was checked at creation).
    fn check(&self, params: usize) -> Result<()> {
        validate::check_params(params, self.db.limits())
    }

    /// [`Database::fetch`] of this SQL.
    ///
    /// # Errors
    /// As [`Database::fetch`].
    pub async fn fetch(&self, params: &Params<'_>) -> Result<Vec<Row>> {
        self.check(params.len())?;
        match self.db.bounded(&self.sql, params, Want::All).await? {
            Got::Rows(rows) => Ok(rows),
            _ => Err(Error::provider("unexpected query result")),
        }
    }

    /// [`Database::fetch_one`] of this SQL.
    ///
    /// # Errors
    /// As [`Database::fetch`].
    pub async fn fetch_one(&self, params: &Params<'_>) -> Result<Option<Row>> {
        self.check(params.len())?;
        match self.db.bounded(&self.sql, params, Want::One).await? {
            Got::One(row) => Ok(row),
            _ => Err(Error::provider("unexpected query result")),
        }
    }

    /// [`Database::fetch_json`] of this SQL.
    ///
    /// # Errors
    /// As [`Database::fetch_json`].
    pub async fn fetch_json(&self, params: &Params<'_>) -> Result<Vec<JsonRow>> {
        self.fetch(params)
            .await?
            .iter()
            .map(json::row_to_object)
            .collect()
    }

    /// [`Database::fetch_json_values`] of this SQL.
    ///
    /// # Errors
    /// As [`Database::fetch_json_values`].
    pub async fn fetch_json_values(&self, params: &[SqlValue]) -> Result<Vec<JsonRow>> {
        self.check(params.len())?;
        self.db.read_json(&self.sql, params).await
    }

    /// [`Database::fetch_json_cached`] of this SQL: the same entry, the same checks of what a hit
    /// returns, without hashing or comparing the SQL text again.
    ///
    /// # Errors
    /// As [`Database::fetch_json_cached`].
    pub fn fetch_json_cached<'a>(
        &'a self,
        params: &'a [SqlValue],
        options: &'a CacheOptions,
    ) -> impl Future<Output = Result<CachedRows>> + Send + 'a {
        // Not an `async fn`: the future is the cached fetch's own, not one wrapping it.
        self.db.cached(self, params, options)
    }

    /// [`Database::execute`] of this SQL.
    ///
    /// # Errors
    /// As [`Database::execute`].
    pub async fn execute(&self, params: &Params<'_>) -> Result<u64> {
        self.check(params.len())?;
        match self.db.bounded(&self.sql, params, Want::Count).await? {
            Got::Count(n) => Ok(n),
            _ => Err(Error::provider("unexpected query result")),
        }
    }

    /// [`Database::execute_invalidating`] of this SQL.
    ///
    /// # Errors
    /// As [`Database::execute_invalidating`].
    pub async fn execute_invalidating(
        &self,
        params: &Params<'_>,
        tags: &[CacheTag],
    ) -> Result<u64> {
        let n = self.execute(params).await?;
        self.db.invalidate(tags).await?;
        Ok(n)
    }

    /// [`Database::cache_key`] of this SQL.
    ///
    /// # Errors
    /// `Validation` for too many parameters.
    pub fn cache_key(
        &self,
        params: &[SqlValue],
        options: &CacheOptions,
    ) -> Result<Option<CacheKey>> {
        self.check(params.len())?;
        self.db
            .cache
            .as_ref()
            .map(|c| cache::key(&c.namespace, &self.sql, params, &options.tags))
            .transpose()
    }
}

impl Source for Query {
    fn sql(&self) -> Sql<'_> {
        Sql {
            text: &self.sql,
            hash: self.hash,
            shared: Some(&self.sql),
        }
    }

    fn validate(&self, limits: Limits, params: usize) -> Result<()> {
        validate::check_params(params, limits)
    }
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("sql_bytes", &self.sql.len())
            .field("db", &self.db)
            .finish()
    }
}
