//! Building the deadpool pool from a [`PostgresConfig`], and acquiring connections with retry.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use psm_core::{Error, ErrorKind, Result};
use tokio_postgres::NoTls;

use crate::{
    PROVIDER, PostgresConfig, RecycleCheck, SslMode,
    error::{pg_error, pool_error},
    tls,
};

/// A snapshot of the pool for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStatus {
    /// Connections currently open (idle or in use).
    pub size: usize,
    /// Idle connections ready for use.
    pub available: usize,
    /// Calls waiting for a connection.
    pub waiting: usize,
    /// The configured maximum (`pool_size`).
    pub max_size: usize,
}

/// The driver configuration: host, credentials, timeouts, keepalives, TLS negotiation, and the
/// per-connection settings (`search_path`, `statement_timeout`) sent as startup options so they
/// cost no extra round trip.
pub(crate) fn driver_config(config: &PostgresConfig) -> tokio_postgres::Config {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .user(&config.user)
        .dbname(config.effective_dbname())
        .application_name(&config.application_name)
        .connect_timeout(config.connect_timeout)
        .keepalives(config.keepalives)
        .keepalives_idle(config.keepalives_idle)
        .keepalives_interval(config.keepalives_interval)
        .keepalives_retries(config.keepalives_retries)
        .ssl_mode(match config.sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
    if let Some(t) = config.tcp_user_timeout {
        pg.tcp_user_timeout(t);
    }
    if let Some(password) = &config.password {
        pg.password(password.expose());
    }
    // The schema name is a validated identifier (no spaces, quotes or backslashes), so it needs no
    // escaping inside the options string.
    // `standard_conforming_strings` is pinned on: the statement scanner reads `'\'` as a complete
    // string, exactly as the server then does.
    let mut options = format!(
        "-c search_path={},public -c standard_conforming_strings=on",
        config.schema
    );
    if let Some(t) = config.statement_timeout {
        let ms = t.as_millis().clamp(1, i32::MAX as u128);
        options.push_str(&format!(" -c statement_timeout={ms}"));
    }
    pg.options(&options);
    pg
}

/// Builds the pool (no I/O).
pub(crate) fn build_pool(config: &PostgresConfig) -> Result<Pool> {
    let pg = driver_config(config);
    let manager_config = ManagerConfig {
        recycling_method: match config.recycle_check {
            RecycleCheck::Fast => RecyclingMethod::Fast,
            RecycleCheck::Verified => RecyclingMethod::Verified,
        },
    };
    let manager = match tls::connector(config)? {
        Some(tls) => Manager::from_config(pg, tls, manager_config),
        None => Manager::from_config(pg, NoTls, manager_config),
    };
    // Creating a connection is bounded by connect_timeout twice over (TCP + TLS + startup), so a
    // dead server never stalls a call beyond the configured limits.
    let create = config.connect_timeout.saturating_mul(2);
    Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.wait_timeout))
        .create_timeout(Some(create))
        .recycle_timeout(Some(config.connect_timeout))
        .build()
        .map_err(|e| Error::configuration("cannot build the postgres pool").with_source(e))
}

/// A pooled connection, retrying connection errors with exponential backoff.
///
/// Only `ProviderConnection` failures are retried (never `ProviderConfiguration`, such as failed
/// authentication); the error's `attempts` detail counts the attempts actually made. Retries (`retry_attempts` times, starting at
/// `retry_delay`, doubling up to `retry_max_delay`); waiting for a free connection is bounded by
/// `wait_timeout` and never retried.
pub(crate) async fn acquire(pool: &Pool, config: &PostgresConfig) -> Result<Object> {
    match pool.get().await {
        Ok(client) => Ok(client),
        Err(e) => retry(pool, config, pool_error(e)).await,
    }
}

#[cold]
async fn retry(pool: &Pool, config: &PostgresConfig, mut last: Error) -> Result<Object> {
    let mut delay = config.retry_delay;
    let mut attempts: u32 = 1;
    while attempts <= config.retry_attempts && last.kind() == ErrorKind::ProviderConnection {
        tracing::debug!(attempts, error = %last, "postgres connection failed; retrying");
        tokio::time::sleep(delay).await;
        delay = delay
            .saturating_mul(2)
            .min(config.retry_max_delay.max(Duration::from_millis(1)));
        attempts += 1;
        match pool.get().await {
            Ok(client) => return Ok(client),
            Err(e) => last = pool_error(e),
        }
    }
    Err(last.with_detail("attempts", attempts))
}

/// Runs `fut` (one call on one pooled connection) within `limit`; `None` when the limit passed.
/// Pair with [`expired`] to discard the connection.
pub(crate) async fn deadline<T>(
    limit: Option<Duration>,
    fut: impl Future<Output = Result<T>>,
) -> Option<Result<T>> {
    match limit {
        None => Some(fut.await),
        Some(limit) => tokio::time::timeout(limit, fut).await.ok(),
    }
}

/// The error of a call that outlived its client-side bound. The connection is taken out of the
/// pool and closed: whatever the server is doing with it, no other caller will queue behind it.
#[cold]
pub(crate) fn expired(client: Object, op: &'static str) -> Error {
    drop(Object::take(client));
    Error::new(
        ErrorKind::OperationTimeout,
        format!("postgres {op} got no answer in time; the connection was discarded"),
    )
    .with_detail("provider", PROVIDER)
    .with_detail("operation", op)
}

/// Runs a trivial query: proves the server answers.
pub(crate) async fn ping(client: &Object) -> Result<()> {
    client
        .simple_query("")
        .await
        .map(drop)
        .map_err(|e| pg_error("ping", e))
}
