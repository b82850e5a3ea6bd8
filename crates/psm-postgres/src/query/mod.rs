//! The query layer (the seed's `fetch_from_db` / `execute_query`): parameterized statements only,
//! validated before any I/O, with optional result caching through the `Cache` port.

mod cache;
mod json;
mod validate;
mod value;

use std::fmt;

use deadpool_postgres::Object;
use futures::future::BoxFuture;
use psm_core::{CacheTag, DynCache, Error, ErrorKind, Result, Ttl};
use serde_json::{Map, Value};
use tokio_postgres::{Row, Statement, types::ToSql};

pub use self::{cache::CacheOptions, value::SqlValue};
use self::{validate::Limits, value::Bound};
use crate::{PostgresStorage, error::pg_error};

/// A parameter list for the uncached calls: any driver value.
pub type Params<'a> = [&'a (dyn ToSql + Sync)];

/// A row as a JSON object (the seed's `as_dict=True`).
pub type JsonRow = Map<String, Value>;

/// Parameterized queries on the storage's pool.
///
/// Every call takes exactly one statement with `$1`, `$2`, … placeholders and separate parameters
/// (there is no way to splice values into SQL text). Before any I/O a call is rejected with
/// `Validation` when the SQL is empty, longer than `max_query_bytes`, holds more than one
/// statement, or has more than `max_query_params` parameters; after preparing, when the number of
/// parameters differs from the statement's placeholders. Statements are prepared once per pooled
/// connection and reused.
///
/// With [`with_cache`](Self::with_cache), [`fetch_json_cached`](Self::fetch_json_cached) serves
/// repeated reads from the cache without touching the pool, until their TTL passes or an
/// [`execute_invalidating`](Self::execute_invalidating) names one of their tags.
///
/// # Clone
/// Cloning is cheap and shares the pool and the cache.
#[derive(Clone)]
pub struct Database {
    storage: PostgresStorage,
    cache: Option<(DynCache, Ttl)>,
    namespace: String,
}

impl Database {
    pub(crate) fn from_storage(storage: PostgresStorage) -> Self {
        let namespace = format!("psm:pg:{}", storage.schema());
        Self {
            storage,
            cache: None,
            namespace,
        }
    }

    /// Caches [`fetch_json_cached`](Self::fetch_json_cached) results in `cache` (memory, Redis, …:
    /// the caller's choice), for `default_ttl` unless a call says otherwise.
    #[must_use]
    pub fn with_cache(mut self, cache: DynCache, default_ttl: Ttl) -> Self {
        self.cache = Some((cache, default_ttl));
        self
    }

    /// Replaces the cache key namespace (default `psm:pg:<schema>`).
    ///
    /// # Errors
    /// `Validation` when it is empty, longer than 256 bytes or holds control characters.
    pub fn with_namespace(mut self, namespace: &str) -> Result<Self> {
        if namespace.is_empty() || namespace.len() > 256 || namespace.chars().any(char::is_control)
        {
            return Err(Error::validation(
                "cache namespace must be 1 to 256 bytes without control characters",
            ));
        }
        self.namespace = namespace.to_owned();
        Ok(self)
    }

    fn limits(&self) -> Limits {
        let c = self.storage.config();
        Limits {
            max_bytes: c.max_query_bytes,
            max_params: c.max_query_params,
        }
    }

    /// The rows of a query.
    ///
    /// # Errors
    /// `Validation` for a rejected query (see the type docs) or a statement the server refuses as
    /// malformed; `OperationTimeout` past `statement_timeout` or `wait_timeout`;
    /// `ProviderConnection` when the server is unreachable.
    pub async fn fetch(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        validate::check(sql, params.len(), self.limits())?;
        let client = self.storage.client().await?;
        run_query(&client, sql, params).await
    }

    /// At most one row: the first, or `None`.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch).
    pub async fn fetch_one(&self, sql: &str, params: &Params<'_>) -> Result<Option<Row>> {
        Ok(self.fetch(sql, params).await?.into_iter().next())
    }

    /// The rows as JSON objects keyed by column name (see the type mapping in the crate docs).
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch); `Serialization` for a column type without a JSON mapping.
    pub async fn fetch_json(&self, sql: &str, params: &Params<'_>) -> Result<Vec<JsonRow>> {
        self.fetch(sql, params)
            .await?
            .iter()
            .map(json::row_to_object)
            .collect()
    }

    /// At most one row as a JSON object.
    ///
    /// # Errors
    /// As [`fetch_json`](Self::fetch_json).
    pub async fn fetch_one_json(&self, sql: &str, params: &Params<'_>) -> Result<Option<JsonRow>> {
        self.fetch_one(sql, params)
            .await?
            .as_ref()
            .map(json::row_to_object)
            .transpose()
    }

    /// [`fetch_json`](Self::fetch_json) with owned [`SqlValue`] parameters, served from the cache
    /// when an entry for exactly this SQL and these values is live (without touching the pool);
    /// otherwise read from the database and cached for `options.ttl` with `options.tags`.
    ///
    /// Without a cache (see [`with_cache`](Self::with_cache)) it always reads the database. Cache
    /// failures are logged and fall back to the database; they never fail the call.
    ///
    /// # Errors
    /// As [`fetch_json`](Self::fetch_json).
    pub async fn fetch_json_cached(
        &self,
        sql: &str,
        params: &[SqlValue],
        options: &CacheOptions,
    ) -> Result<Vec<JsonRow>> {
        validate::check(sql, params.len(), self.limits())?;
        let Some((cache, default_ttl)) = &self.cache else {
            return self.fetch_json_values(sql, params).await;
        };
        let key = cache::key(&self.namespace, sql, params)?;
        match cache.get(&key).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<Vec<JsonRow>>(&bytes) {
                Ok(rows) => return Ok(rows),
                Err(e) => tracing::warn!(error = %e, "ignoring an undecodable cached result"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "query cache read failed"),
        }
        let rows = self.fetch_json_values(sql, params).await?;
        let bytes = serde_json::to_vec(&rows)?;
        let ttl = options.ttl.unwrap_or(*default_ttl);
        if let Err(e) = cache.set(&key, &bytes, ttl, &options.tags).await {
            tracing::warn!(error = %e, "query cache write failed");
        }
        Ok(rows)
    }

    /// [`fetch_json`](Self::fetch_json) with owned [`SqlValue`] parameters (uncached).
    ///
    /// # Errors
    /// As [`fetch_json`](Self::fetch_json); `Validation` when a value does not fit its parameter's
    /// type.
    pub async fn fetch_json_values(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<JsonRow>> {
        validate::check(sql, params.len(), self.limits())?;
        let client = self.storage.client().await?;
        let stmt = prepare(&client, sql, params.len()).await?;
        let bound = bind(&stmt, params)?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            bound.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect();
        let rows = client
            .query(&stmt, &refs)
            .await
            .map_err(|e| query_error("query", e))?;
        rows.iter().map(json::row_to_object).collect()
    }

    /// Runs a statement that changes data; returns the number of rows it affected.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch).
    pub async fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64> {
        validate::check(sql, params.len(), self.limits())?;
        let client = self.storage.client().await?;
        run_execute(&client, sql, params).await
    }

    /// [`execute`](Self::execute), then drops every cached result tagged with one of `tags`.
    ///
    /// # Errors
    /// As [`execute`](Self::execute); a failing invalidation is an error too (the write happened,
    /// but stale results may remain until their TTL).
    pub async fn execute_invalidating(
        &self,
        sql: &str,
        params: &Params<'_>,
        tags: &[CacheTag],
    ) -> Result<u64> {
        let n = self.execute(sql, params).await?;
        self.invalidate(tags).await?;
        Ok(n)
    }

    /// Drops every cached result tagged with one of `tags`; returns how many were dropped.
    ///
    /// # Errors
    /// The cache's error.
    pub async fn invalidate(&self, tags: &[CacheTag]) -> Result<u64> {
        let Some((cache, _)) = &self.cache else {
            return Ok(0);
        };
        let mut n = 0;
        for tag in tags {
            n += cache.delete_tag(tag).await?;
        }
        Ok(n)
    }

    /// Starts a transaction on its own pooled connection.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch).
    pub async fn begin(&self) -> Result<DbTransaction> {
        let client = self.storage.client().await?;
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| pg_error("begin", e))?;
        Ok(DbTransaction {
            client: Some(client),
            limits: self.limits(),
        })
    }

    /// Runs `f` in a transaction: commits when it returns `Ok`, rolls back when it returns `Err`
    /// (and returns that error).
    ///
    /// ```no_run
    /// # async fn demo(db: psm_postgres::Database) -> psm_core::Result<()> {
    /// let moved = db
    ///     .transaction(|tx| {
    ///         Box::pin(async move {
    ///             tx.execute("UPDATE accounts SET n = n - 1 WHERE id = $1", &[&1_i64]).await?;
    ///             tx.execute("UPDATE accounts SET n = n + 1 WHERE id = $1", &[&2_i64]).await
    ///         })
    ///     })
    ///     .await?;
    /// # let _ = moved; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `f`'s error, or the commit's.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: for<'t> FnOnce(&'t mut DbTransaction) -> BoxFuture<'t, Result<T>> + Send,
    {
        let mut tx = self.begin().await?;
        match f(&mut tx).await {
            Ok(v) => {
                tx.commit().await?;
                Ok(v)
            }
            Err(e) => {
                if let Err(re) = tx.rollback().await {
                    tracing::warn!(error = %re, "rollback failed; the connection was discarded");
                }
                Err(e)
            }
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("schema", &self.storage.schema())
            .field("namespace", &self.namespace)
            .field("cached", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// An open transaction holding one pooled connection. [`commit`](Self::commit) or
/// [`rollback`](Self::rollback) it; dropped unfinished, its connection is discarded, which makes
/// the server roll it back.
pub struct DbTransaction {
    client: Option<Object>,
    limits: Limits,
}

impl DbTransaction {
    fn client(&self) -> Result<&Object> {
        self.client
            .as_ref()
            .ok_or_else(|| Error::provider("transaction is already finished"))
    }

    /// The rows of a query inside the transaction.
    ///
    /// # Errors
    /// As [`Database::fetch`].
    pub async fn fetch(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        validate::check(sql, params.len(), self.limits)?;
        run_query(self.client()?, sql, params).await
    }

    /// At most one row.
    ///
    /// # Errors
    /// As [`Database::fetch`].
    pub async fn fetch_one(&self, sql: &str, params: &Params<'_>) -> Result<Option<Row>> {
        Ok(self.fetch(sql, params).await?.into_iter().next())
    }

    /// The rows as JSON objects.
    ///
    /// # Errors
    /// As [`Database::fetch_json`].
    pub async fn fetch_json(&self, sql: &str, params: &Params<'_>) -> Result<Vec<JsonRow>> {
        self.fetch(sql, params)
            .await?
            .iter()
            .map(json::row_to_object)
            .collect()
    }

    /// Runs a statement that changes data; returns the number of rows it affected.
    ///
    /// # Errors
    /// As [`Database::execute`].
    pub async fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64> {
        validate::check(sql, params.len(), self.limits)?;
        run_execute(self.client()?, sql, params).await
    }

    /// Commits.
    ///
    /// # Errors
    /// `ProviderConnection` and friends; the transaction is finished either way.
    pub async fn commit(mut self) -> Result<()> {
        self.finish("COMMIT").await
    }

    /// Rolls back.
    ///
    /// # Errors
    /// As [`commit`](Self::commit).
    pub async fn rollback(mut self) -> Result<()> {
        self.finish("ROLLBACK").await
    }

    async fn finish(&mut self, verb: &'static str) -> Result<()> {
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        match client.batch_execute(verb).await {
            Ok(()) => Ok(()),
            Err(e) => {
                drop(Object::take(client));
                Err(pg_error("finish transaction", e))
            }
        }
    }
}

impl Drop for DbTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Still inside BEGIN: never hand the connection to another caller.
            drop(Object::take(client));
        }
    }
}

impl fmt::Debug for DbTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbTransaction")
            .field("open", &self.client.is_some())
            .finish()
    }
}

async fn prepare(client: &Object, sql: &str, given: usize) -> Result<Statement> {
    let stmt = client
        .prepare_cached(sql)
        .await
        .map_err(|e| query_error("prepare", e))?;
    let expected = stmt.params().len();
    if expected != given {
        return Err(Error::validation(
            "number of parameters does not match the query's placeholders",
        )
        .with_detail("expected", expected)
        .with_detail("given", given));
    }
    Ok(stmt)
}

fn bind(stmt: &Statement, params: &[SqlValue]) -> Result<Vec<Bound>> {
    params
        .iter()
        .zip(stmt.params())
        .enumerate()
        .map(|(i, (v, ty))| v.bind(ty, i + 1))
        .collect()
}

async fn run_query(client: &Object, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
    let stmt = prepare(client, sql, params.len()).await?;
    client
        .query(&stmt, params)
        .await
        .map_err(|e| query_error("query", e))
}

async fn run_execute(client: &Object, sql: &str, params: &Params<'_>) -> Result<u64> {
    let stmt = prepare(client, sql, params.len()).await?;
    client
        .execute(&stmt, params)
        .await
        .map_err(|e| query_error("execute", e))
}

/// Driver errors of caller-written SQL: syntax and access-rule errors (SQLSTATE class 42), data
/// errors (class 22), several statements in one prepared statement, and parameters of the wrong
/// Rust type are `Validation`; the rest as for the stores.
fn query_error(op: &'static str, e: tokio_postgres::Error) -> Error {
    let code = e.code().map(|c| c.code().to_owned());
    let text = e.to_string();
    if text.contains("cannot insert multiple commands into a prepared statement") {
        return Error::validation("query holds more than one statement; send one per call")
            .with_source(e);
    }
    if code.is_none() && text.contains("error serializing parameter") {
        return Error::validation("a query parameter does not fit its placeholder's type")
            .with_source(e);
    }
    match code.as_deref() {
        Some(c) if c.starts_with("42") || c.starts_with("22") => {
            Error::new(ErrorKind::Validation, "the server rejected the query")
                .with_detail("sqlstate", c)
                .with_source(e)
        }
        _ => pg_error(op, e),
    }
}
