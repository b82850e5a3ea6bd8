//! The query layer (the seed's `fetch_from_db` / `execute_query`): parameterized statements only,
//! validated before any I/O, with optional result caching through the `Cache` port.

mod cache;
mod encode;
mod json;
mod prepared;
mod validate;
mod value;

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Poll, ready},
    time::Duration,
};

use deadpool_postgres::Object;
use futures::{TryStreamExt, future::BoxFuture};
use psm_core::{Cache, CacheKey, CacheTag, DynCache, Error, ErrorKind, Result, Ttl};
use serde_json::{Map, Value};
use tokio_postgres::{Row, Statement, error::SqlState, types::ToSql};

pub(crate) use self::cache::{bump, default_namespace, generation_key, generation_or_new};
pub use self::{
    cache::{CacheOptions, CachedRows, MEMO_ENTRIES, MEMO_VALUE_BYTES},
    prepared::Query,
    value::SqlValue,
};
use self::{
    cache::{Lookup, QueryCache, Sql},
    validate::Limits,
    value::Bound,
};
use crate::{
    PostgresStorage,
    error::pg_error,
    pool::{deadline, expired},
};

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
/// [`execute_invalidating`](Self::execute_invalidating) names one of their tags. A hit costs one
/// `Cache::get` (plus one per tag, sent together); see the crate's docs/providers.md for the
/// stored form and why a hit never returns another query's rows or rows an invalidation dropped.
/// [`query`](Self::query) prepares a [`Query`] handle for SQL run many times (validated and
/// hashed once).
///
/// # Clone
/// Cloning is cheap and shares the pool and the cache.
#[derive(Clone)]
pub struct Database {
    storage: PostgresStorage,
    cache: Option<Arc<QueryCache>>,
    namespace: String,
}

impl Database {
    pub(crate) fn from_storage(storage: PostgresStorage) -> Self {
        let namespace = storage.default_cache_namespace();
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
        self.cache = Some(Arc::new(QueryCache::new(
            cache,
            default_ttl,
            self.namespace.clone(),
        )));
        self
    }

    /// Replaces the cache key namespace (default `psm:pg:<host>:<port>:<dbname>:<schema>`, hashed
    /// to `psm:pg:h<sha-256>` when longer than 160 bytes).
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
        if let Some(c) = self.cache.take() {
            self.cache = Some(Arc::new(QueryCache::new(
                c.cache.clone(),
                c.default_ttl,
                self.namespace.clone(),
            )));
        }
        Ok(self)
    }

    /// The cache key [`fetch_json_cached`](Self::fetch_json_cached) uses for this query:
    /// `<namespace>:q:<32 hex digits>` (for inspecting or measuring the cache); `None` without a
    /// cache.
    ///
    /// # Errors
    /// `Validation` for a rejected query (see the type docs).
    pub fn cache_key(
        &self,
        sql: &str,
        params: &[SqlValue],
        options: &CacheOptions,
    ) -> Result<Option<CacheKey>> {
        validate::check(sql, params.len(), self.limits())?;
        self.cache
            .as_ref()
            .map(|c| cache::key(&c.namespace, sql, params, &options.tags))
            .transpose()
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
    /// malformed; `OperationTimeout` past `statement_timeout`, `wait_timeout` or the client-side
    /// bound (the connection is then discarded);
    /// `ProviderConnection` when the server is unreachable.
    pub async fn fetch(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        validate::check(sql, params.len(), self.limits())?;
        match self.bounded(sql, params, Want::All).await? {
            Got::Rows(rows) => Ok(rows),
            _ => Err(Error::provider("unexpected query result")),
        }
    }

    /// At most one row: the first, or `None`. Rows after the first are not collected (the
    /// result is streamed and the stream dropped after one row; the server still runs the
    /// statement to completion, so add `LIMIT 1` to spare it the work).
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch).
    pub async fn fetch_one(&self, sql: &str, params: &Params<'_>) -> Result<Option<Row>> {
        validate::check(sql, params.len(), self.limits())?;
        match self.bounded(sql, params, Want::One).await? {
            Got::One(row) => Ok(row),
            _ => Err(Error::provider("unexpected query result")),
        }
    }

    /// Runs one statement on a pooled connection within the call bound.
    async fn bounded(&self, sql: &str, params: &Params<'_>, want: Want) -> Result<Got> {
        self.storage
            .with_client("query", async |c| {
                run(c, sql, params, want, Scope::Alone).await
            })
            .await
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
    /// when an entry for exactly this SQL, these values and these tags is live and none of the
    /// tags was invalidated since it was read (without touching the pool); otherwise read from
    /// the database and cached for `options.ttl` with `options.tags`. The rows are shared
    /// ([`CachedRows`]).
    ///
    /// Without a cache (see [`with_cache`](Self::with_cache)) it always reads the database. Cache
    /// failures are logged and fall back to the database; they never fail the call.
    ///
    /// A query run again and again is cheaper through a [`Query`] handle
    /// ([`query`](Self::query)): it validates and hashes the SQL once, where this call hashes and
    /// compares the text every time. Both share one memo and one cache entry per query.
    ///
    /// # Errors
    /// As [`fetch_json`](Self::fetch_json).
    pub async fn fetch_json_cached(
        &self,
        sql: &str,
        params: &[SqlValue],
        options: &CacheOptions,
    ) -> Result<CachedRows> {
        self.cached(&OneOff(Sql::one_off(sql)), params, options)
            .await
    }

    /// A cached fetch of `source`'s SQL: validated before any I/O (by `source`, unless the memo
    /// knows this exact query: it learns a query only after validating it, and the limits never
    /// change).
    ///
    /// Only a hit on the value the memo saw last is served here; everything else (a value to
    /// check and decode, a miss, a cache error, no cache) goes to
    /// [`cached_slow`](Self::cached_slow), whose future is boxed, so the future of a hit stays
    /// small. The fetched value is looked at where the cache's future left it: only another
    /// value than the memo's is moved on, to the slow path.
    async fn cached<S: Source>(
        &self,
        source: &S,
        params: &[SqlValue],
        options: &CacheOptions,
    ) -> Result<CachedRows> {
        let Some(cache) = &self.cache else {
            return self
                .cached_slow(source, params, options, Seen::NoCache)
                .await;
        };
        let sql = source.sql();
        let tags = options.tags.as_slice();
        let hash = cache::memo_hash(sql.hash, params, tags);
        let Some(known) = cache.known(hash, &sql, params, tags) else {
            return self
                .cached_slow(source, params, options, Seen::Unknown(hash))
                .await;
        };
        // On the trait object itself: through the `Arc` it would box a second future.
        let port: &dyn Cache = &*cache.cache;
        let seen = match (known.key(), known.generation_key()) {
            (Some(key), None) if known.untagged() && known.keeps_rows() => {
                let mut get = port.get(key);
                std::future::poll_fn(|cx| {
                    let read = ready!(get.as_mut().poll(cx));
                    // Looked at in place; moved on only when it is not the memo's value.
                    if matches!(&read, Ok(Some(bytes)) if known.holds(bytes, &[])) {
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Some(match read {
                        Ok(value) => Read::Value(value),
                        Err(e) => Read::Failed(e),
                    }))
                })
                .await
            }
            // One tag: the entry and the tag's generation, read at once.
            (Some(key), Some(generation_key)) if known.keeps_rows() => {
                match futures::join!(port.get(key), port.get(generation_key)) {
                    (Ok(Some(bytes)), Ok(Some(generation)))
                        if known.holds_one(&bytes, &generation) =>
                    {
                        None
                    }
                    (Ok(value), Ok(generation)) => Some(Read::Tagged(value, vec![generation])),
                    (Err(e), _) | (_, Err(e)) => Some(Read::Failed(e)),
                }
            }
            // More tags, or rows the memo does not keep: all on the slow path.
            _ => Some(Read::Nothing),
        };
        let Some(read) = seen else {
            return Ok(known.into_rows());
        };
        self.cached_slow(source, params, options, Seen::Known(known, read))
            .await
    }

    /// The rest of [`cached`](Self::cached) after what it saw: a value checked and decoded, or
    /// a miss (read the database, then cache the rows), or a cache error or no cache (read the
    /// database without caching).
    #[inline(never)]
    fn cached_slow<'a, S: Source>(
        &'a self,
        source: &'a S,
        params: &'a [SqlValue],
        options: &'a CacheOptions,
        seen: Seen,
    ) -> BoxFuture<'a, Result<CachedRows>> {
        Box::pin(async move {
            let sql = source.sql();
            let validate = || source.validate(self.limits(), params.len());
            let query = (sql, params, options.tags.as_slice());
            let (cache, lookup) = match (&self.cache, seen) {
                (Some(cache), Seen::Unknown(hash)) => {
                    (cache, cache.lookup_unknown(hash, query, &validate).await)
                }
                (Some(cache), Seen::Known(known, read)) => {
                    let read = match read {
                        Read::Value(value) => Ok(Some((value, Vec::new()))),
                        Read::Tagged(value, current) => Ok(Some((value, current))),
                        Read::Nothing => Ok(None),
                        Read::Failed(e) => Err(e),
                    };
                    let lookup = match read {
                        Ok(read) => cache.lookup_known(query, known, read).await,
                        Err(e) => Err(e),
                    };
                    (cache, lookup)
                }
                (None, _) | (_, Seen::NoCache) => {
                    validate()?;
                    return self.read_json(sql.text, params).await.map(CachedRows::from);
                }
            };
            match lookup {
                Ok(Lookup::Hit(rows)) => Ok(rows),
                // A rejected query: nothing was read or written.
                Ok(Lookup::Rejected(e)) => Err(e),
                Ok(Lookup::Miss(pending)) => {
                    let rows = self.read_json(sql.text, params).await?;
                    Ok(cache.store(pending, (sql, params, options), rows).await)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "query cache unavailable; reading the database");
                    validate()?;
                    self.read_json(sql.text, params).await.map(CachedRows::from)
                }
            }
        })
    }

    /// [`fetch_json`](Self::fetch_json) with owned [`SqlValue`] parameters (uncached).
    ///
    /// # Errors
    /// As [`fetch_json`](Self::fetch_json); `Validation` when a value does not fit its parameter's
    /// type.
    pub async fn fetch_json_values(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<JsonRow>> {
        validate::check(sql, params.len(), self.limits())?;
        self.read_json(sql, params).await
    }

    /// The rows of an already validated query with owned parameters, as JSON objects.
    async fn read_json(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<JsonRow>> {
        let rows = self
            .storage
            .with_client("query", async |client| {
                let mut retried = false;
                loop {
                    let stmt = prepare(client, sql, params.len()).await?;
                    let bound = bind(&stmt, params)?;
                    let refs: Vec<&(dyn ToSql + Sync)> =
                        bound.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect();
                    match client.query(&stmt, &refs).await {
                        Err(e) if !retried && stale_plan(&e) => {
                            client.statement_cache.remove(sql, &[]);
                            retried = true;
                        }
                        r => return r.map_err(|e| query_error("query", e)),
                    }
                }
            })
            .await?;
        rows.iter().map(json::row_to_object).collect()
    }

    /// Runs a statement that changes data; returns the number of rows it affected.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch).
    pub async fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64> {
        validate::check(sql, params.len(), self.limits())?;
        match self.bounded(sql, params, Want::Count).await? {
            Got::Count(n) => Ok(n),
            _ => Err(Error::provider("unexpected query result")),
        }
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
    /// Each tag first gets a new generation (see the crate docs), so a cached fetch that read the
    /// database before this call cannot store its stale result where later fetches look.
    ///
    /// # Errors
    /// The cache's error.
    pub async fn invalidate(&self, tags: &[CacheTag]) -> Result<u64> {
        let Some(c) = &self.cache else {
            return Ok(0);
        };
        let mut n = 0;
        for tag in tags {
            cache::bump(&*c.cache, &c.namespace, tag.as_str()).await?;
            n += c.cache.delete_tag(tag).await?;
        }
        Ok(n)
    }

    /// Starts a transaction on its own pooled connection.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch).
    pub async fn begin(&self) -> Result<DbTransaction> {
        let client = self.storage.client().await?;
        let limit = self.storage.call_timeout();
        match deadline(limit, async {
            client
                .batch_execute("BEGIN")
                .await
                .map_err(|e| pg_error("begin", e))
        })
        .await
        {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                if e.kind() == ErrorKind::ProviderConnection {
                    drop(Object::take(client));
                }
                return Err(e);
            }
            None => return Err(expired(client, "begin")),
        }
        Ok(DbTransaction {
            client: Some(client),
            limits: self.limits(),
            limit,
            expired: AtomicBool::new(false),
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
    /// The client-side bound of each statement.
    limit: Option<Duration>,
    /// Set when a statement outlived its bound: the transaction is dead and its connection is
    /// discarded when it finishes.
    expired: AtomicBool,
}

impl DbTransaction {
    fn client(&self) -> Result<&Object> {
        if self.expired.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorKind::OperationTimeout,
                "the transaction timed out earlier; roll it back",
            ));
        }
        self.client
            .as_ref()
            .ok_or_else(|| Error::provider("transaction is already finished"))
    }

    async fn bounded(&self, sql: &str, params: &Params<'_>, want: Want) -> Result<Got> {
        validate::check(sql, params.len(), self.limits)?;
        let client = self.client()?;
        match deadline(
            self.limit,
            run(client, sql, params, want, Scope::InTransaction),
        )
        .await
        {
            Some(r) => r,
            None => {
                self.expired.store(true, Ordering::Relaxed);
                Err(Error::new(
                    ErrorKind::OperationTimeout,
                    "postgres query got no answer in time; the transaction is abandoned",
                )
                .with_detail("provider", crate::PROVIDER))
            }
        }
    }

    /// The rows of a query inside the transaction.
    ///
    /// # Errors
    /// As [`Database::fetch`].
    pub async fn fetch(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        match self.bounded(sql, params, Want::All).await? {
            Got::Rows(rows) => Ok(rows),
            _ => Err(Error::provider("unexpected query result")),
        }
    }

    /// At most one row.
    ///
    /// # Errors
    /// As [`Database::fetch`].
    pub async fn fetch_one(&self, sql: &str, params: &Params<'_>) -> Result<Option<Row>> {
        match self.bounded(sql, params, Want::One).await? {
            Got::One(row) => Ok(row),
            _ => Err(Error::provider("unexpected query result")),
        }
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
        match self.bounded(sql, params, Want::Count).await? {
            Got::Count(n) => Ok(n),
            _ => Err(Error::provider("unexpected query result")),
        }
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
        if self.expired.load(Ordering::Relaxed) {
            drop(Object::take(client));
            return if verb == "ROLLBACK" {
                Ok(())
            } else {
                Err(Error::new(
                    ErrorKind::OperationTimeout,
                    "the transaction timed out earlier and was rolled back",
                ))
            };
        }
        let finish = async {
            client
                .batch_execute(verb)
                .await
                .map_err(|e| pg_error("finish transaction", e))
        };
        match deadline(self.limit, finish).await {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => {
                drop(Object::take(client));
                Err(e)
            }
            None => Err(expired(client, "finish transaction")),
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

/// Beyond this many prepared statements on one connection, its statement cache is cleared before
/// the next query-layer statement is prepared (caller-written SQL is open-ended; the stores' few
/// statements are simply prepared again).
pub const STATEMENT_CACHE_LIMIT: usize = 256;

async fn prepare(client: &Object, sql: &str, given: usize) -> Result<Statement> {
    if client.statement_cache.size() > STATEMENT_CACHE_LIMIT {
        client.statement_cache.clear();
    }
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

/// What the hit path of a cached fetch saw before handing over to the slow path.
enum Seen {
    /// The `Database` has no cache.
    NoCache,
    /// The memo does not know the query (its memo hash).
    Unknown(u64),
    /// A known query, and what the hit path read of it: not the value the memo saw last.
    Known(Arc<cache::RowSet>, Read),
}

/// What the hit path read of a known query.
enum Read {
    /// Nothing (the slow path reads the entry and the generations).
    Nothing,
    /// The entry of an untagged query.
    Value(Option<Vec<u8>>),
    /// The entry and its one tag's generation.
    Tagged(Option<Vec<u8>>, cache::Current),
    /// A read failed (the call skips the cache).
    Failed(Error),
}

/// Where a cached fetch's SQL comes from: a [`Query`] handle (checked and hashed once) or a
/// one-off SQL text.
trait Source: Sync {
    /// The SQL and its memo hash.
    fn sql(&self) -> Sql<'_>;
    /// The checks before any I/O for `params` parameters.
    fn validate(&self, limits: Limits, params: usize) -> Result<()>;
}

/// The SQL text of a single [`Database::fetch_json_cached`] call.
struct OneOff<'a>(Sql<'a>);

impl Source for OneOff<'_> {
    fn sql(&self) -> Sql<'_> {
        self.0
    }

    fn validate(&self, limits: Limits, params: usize) -> Result<()> {
        validate::check(self.0.text, params, limits)
    }
}

/// What a statement's caller wants back.
#[derive(Clone, Copy)]
enum Want {
    All,
    One,
    Count,
}

enum Got {
    Rows(Vec<Row>),
    One(Option<Row>),
    Count(u64),
}

/// SQLSTATE 0A000 "cached plan must not change result type": a cached prepared statement whose
/// table changed shape underneath it.
fn stale_plan(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED)
}

/// Where a statement runs: on its own, or inside an open transaction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Alone,
    InTransaction,
}

/// Prepares (cached) and runs one statement. A stale cached plan (0A000) is dropped from the
/// connection's statement cache; on its own the statement is prepared and run once more, inside a
/// transaction (which the error has aborted) the call fails with a retryable `Concurrency`.
async fn run(
    client: &Object,
    sql: &str,
    params: &Params<'_>,
    want: Want,
    scope: Scope,
) -> Result<Got> {
    let mut retried = false;
    loop {
        let stmt = prepare(client, sql, params.len()).await?;
        let r = match want {
            Want::All => client.query(&stmt, params).await.map(Got::Rows),
            Want::One => first_row(client, &stmt, params).await.map(Got::One),
            Want::Count => client.execute(&stmt, params).await.map(Got::Count),
        };
        match r {
            Err(e) if stale_plan(&e) && scope == Scope::InTransaction => {
                client.statement_cache.remove(sql, &[]);
                return Err(stale_in_transaction(e));
            }
            Err(e) if !retried && stale_plan(&e) => {
                client.statement_cache.remove(sql, &[]);
                retried = true;
            }
            r => {
                let op = match want {
                    Want::Count => "execute",
                    Want::All | Want::One => "query",
                };
                return r.map_err(|e| query_error(op, e));
            }
        }
    }
}

/// A stale cached plan met inside a transaction: the server has aborted the transaction, so the
/// statement cannot simply be run again. It was dropped from the cache; retrying the whole
/// transaction works.
#[cold]
fn stale_in_transaction(e: tokio_postgres::Error) -> Error {
    Error::new(
        ErrorKind::Concurrency,
        "a table changed shape under a cached statement; the transaction was aborted, retry it",
    )
    .with_detail("provider", crate::PROVIDER)
    .with_detail("sqlstate", "0A000")
    .with_source(e)
}

/// The first row of a streamed result; the rest is never collected.
async fn first_row(
    client: &Object,
    stmt: &Statement,
    params: &Params<'_>,
) -> std::result::Result<Option<Row>, tokio_postgres::Error> {
    let stream = client.query_raw(stmt, params.iter().copied()).await?;
    futures::pin_mut!(stream);
    stream.try_next().await
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
