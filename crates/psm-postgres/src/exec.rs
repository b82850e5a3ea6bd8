//! One call on one pooled connection, the way every store runs it: acquire (retrying connection
//! errors), prepare (cached per connection), run within the client-side bound, map the error.
//!
//! The session, user and token stores call only these; the query layer uses
//! [`with_client`](PostgresStorage::with_client) for its own prepare-and-retry logic.

use deadpool_postgres::Object;
use psm_core::{Error, ErrorKind, Result};
use tokio_postgres::{Row, Statement, types::ToSql};

use crate::{
    PostgresStorage,
    error::pg_error,
    pool::{deadline, expired},
};

/// One statement parameter.
pub(crate) type Param<'a> = &'a (dyn ToSql + Sync);

/// Turns a driver error raised by operation `op` into psm's error.
pub(crate) type MapErr = fn(&'static str, tokio_postgres::Error) -> Error;

impl PostgresStorage {
    /// Runs `f` on a pooled connection within the call bound. Past the bound the call fails with
    /// `OperationTimeout` and the connection is discarded (see [`expired`]). A connection that
    /// failed with `ProviderConnection` is discarded too: the driver may not have noticed yet that
    /// it is closed, and the pool would hand it to the next caller, who would fail the same way.
    ///
    /// # Errors
    /// Acquiring the connection's errors, `f`'s, or `OperationTimeout`.
    pub(crate) async fn with_client<T>(
        &self,
        op: &'static str,
        f: impl AsyncFnOnce(&mut Object) -> Result<T>,
    ) -> Result<T> {
        let mut client = self.client().await?;
        let outcome = deadline(self.call_timeout(), f(&mut client)).await;
        match outcome {
            Some(Err(e)) if e.kind() == ErrorKind::ProviderConnection => {
                drop(Object::take(client));
                Err(e)
            }
            Some(r) => r,
            None => Err(expired(client, op)),
        }
    }

    /// Every row of `sql` (a prepared, cached statement).
    pub(crate) async fn rows(
        &self,
        op: &'static str,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>> {
        self.with_client(op, async |c| {
            let stmt = prepared(c, op, sql, pg_error).await?;
            c.query(&stmt, params).await.map_err(|e| pg_error(op, e))
        })
        .await
    }

    /// The one row of `sql`, if any (more than one is an error).
    pub(crate) async fn row(
        &self,
        op: &'static str,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>> {
        self.row_mapped(op, sql, params, pg_error).await
    }

    /// [`row`](Self::row) with a caller-chosen error mapping (for example, unique violations as
    /// a domain error).
    pub(crate) async fn row_mapped(
        &self,
        op: &'static str,
        sql: &str,
        params: &[Param<'_>],
        map: MapErr,
    ) -> Result<Option<Row>> {
        self.with_client(op, async |c| {
            let stmt = prepared(c, op, sql, map).await?;
            c.query_opt(&stmt, params).await.map_err(|e| map(op, e))
        })
        .await
    }

    /// Runs `sql`; returns the number of rows it affected.
    pub(crate) async fn exec(
        &self,
        op: &'static str,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<u64> {
        self.with_client(op, async |c| {
            let stmt = prepared(c, op, sql, pg_error).await?;
            c.execute(&stmt, params).await.map_err(|e| pg_error(op, e))
        })
        .await
    }
}

/// `sql` prepared once per connection and reused from its statement cache.
async fn prepared(client: &Object, op: &'static str, sql: &str, map: MapErr) -> Result<Statement> {
    client.prepare_cached(sql).await.map_err(|e| map(op, e))
}
