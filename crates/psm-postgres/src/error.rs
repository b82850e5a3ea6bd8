//! Mapping driver and pool errors to psm's [`ErrorKind`]s.
//!
//! Messages name the operation only; the driver error is kept as the source (it never holds the
//! password) and the SQLSTATE, when there is one, as the `sqlstate` detail.

use deadpool_postgres::{PoolError, TimeoutType};
use psm_core::{Error, ErrorKind};
use tokio_postgres::error::{Severity, SqlState};

use crate::PROVIDER;

/// Maps a tokio-postgres error raised while running `op`.
///
/// - statement timeout or cancel (57014) → `OperationTimeout`;
/// - a closed connection, an I/O error, SQLSTATE class 08, an administrator shutdown (57P0x), too
///   many connections (53300), any `FATAL`/`PANIC` response, and the driver's own connection
///   failures without a SQLSTATE (unexpected or unparsable replies, TLS, connect, timeout) →
///   `ProviderConnection`;
/// - the driver refusing to authenticate with this configuration → `ProviderConfiguration`;
/// - a unique violation (23505) → `Concurrency` (callers turn it into their domain kind);
/// - a serialization failure or deadlock (40001, 40P01) → `Concurrency`;
/// - anything else → `Provider`.
pub(crate) fn pg_error(op: &'static str, e: tokio_postgres::Error) -> Error {
    let (kind, what) = classify(&e);
    let mut err = Error::new(kind, format!("postgres {op} failed: {what}"))
        .with_detail("provider", PROVIDER)
        .with_detail("operation", op);
    if let Some(code) = e.code() {
        err = err.with_detail("sqlstate", code.code());
    }
    err.with_source(e)
}

/// Whether `e` is a unique violation (SQLSTATE 23505), and on which constraint.
pub(crate) fn unique_violation(e: &tokio_postgres::Error) -> Option<&str> {
    let db = e.as_db_error()?;
    (db.code() == &SqlState::UNIQUE_VIOLATION).then(|| db.constraint().unwrap_or(""))
}

fn classify(e: &tokio_postgres::Error) -> (ErrorKind, &'static str) {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let c = code.code();
        return if code == &SqlState::QUERY_CANCELED {
            (ErrorKind::OperationTimeout, "statement timed out")
        } else if c.starts_with("08") || c.starts_with("57P") || c == "53300" {
            (ErrorKind::ProviderConnection, "connection lost")
        } else if matches!(
            db.parsed_severity(),
            Some(Severity::Fatal | Severity::Panic)
        ) {
            // The server ended the session, whatever the code says: the connection is gone.
            (
                ErrorKind::ProviderConnection,
                "the server closed the connection",
            )
        } else if code == &SqlState::UNIQUE_VIOLATION {
            (ErrorKind::Concurrency, "unique violation")
        } else if code == &SqlState::T_R_SERIALIZATION_FAILURE
            || code == &SqlState::T_R_DEADLOCK_DETECTED
        {
            (ErrorKind::Concurrency, "transaction conflict")
        } else {
            (ErrorKind::Provider, "server error")
        };
    }
    if e.is_closed() || has_io_source(e) {
        return (ErrorKind::ProviderConnection, "connection lost");
    }
    match driver_kind(e) {
        DriverKind::Connection => (ErrorKind::ProviderConnection, "connection lost"),
        DriverKind::Permanent => (ErrorKind::ProviderConfiguration, "connection refused"),
        DriverKind::Other => (ErrorKind::Provider, "driver error"),
    }
}

/// What a driver error without a server error response means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DriverKind {
    /// The connection is unreachable or no longer usable: I/O, closed, TLS, a reply the protocol
    /// does not allow there (the stream is out of step), a timeout, a failed connect.
    Connection,
    /// The client's own configuration refuses to connect (authentication method or password
    /// missing, invalid settings).
    Permanent,
    /// Encoding parameters, decoding columns, row counts: a programming or data error.
    Other,
}

/// tokio-postgres keeps its error kind private; its `Display` starts with a fixed text per kind
/// (see `tokio_postgres::error::Kind`), which is what this matches.
fn driver_kind(e: &tokio_postgres::Error) -> DriverKind {
    let text = e.to_string();
    const CONNECTION: &[&str] = &[
        "error communicating with the server",
        "unexpected message from server",
        "error performing TLS handshake",
        "connection closed",
        "error parsing response from server",
        "error encoding message to server",
        "error connecting to server",
        "timeout waiting for server",
    ];
    const PERMANENT: &[&str] = &["authentication error", "invalid configuration"];
    if CONNECTION.iter().any(|p| text.starts_with(p)) {
        DriverKind::Connection
    } else if PERMANENT.iter().any(|p| text.starts_with(p)) {
        DriverKind::Permanent
    } else {
        DriverKind::Other
    }
}

fn has_io_source(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Maps a pool error: waiting too long for a free connection is `OperationTimeout`; failing to
/// create or recycle one is `ProviderConnection`, except permanent failures (authentication,
/// unknown database, rejected TLS certificate), which are `ProviderConfiguration`; a closed pool is
/// `ProviderNotInitialized`.
pub(crate) fn pool_error(e: PoolError) -> Error {
    let err = match e {
        PoolError::Timeout(TimeoutType::Wait) => Error::new(
            ErrorKind::OperationTimeout,
            "timed out waiting for a free postgres connection (wait_timeout)",
        ),
        PoolError::Timeout(TimeoutType::Create) => Error::new(
            ErrorKind::ProviderConnection,
            "timed out connecting to postgres (connect_timeout)",
        ),
        PoolError::Timeout(TimeoutType::Recycle) => Error::new(
            ErrorKind::ProviderConnection,
            "timed out checking a pooled postgres connection",
        ),
        PoolError::Backend(e) => {
            if let Some(what) = permanent_connect_failure(&e) {
                // Retrying cannot help: wrong credentials, a missing database, an untrusted
                // certificate. Fix the configuration.
                let mut err =
                    Error::configuration(format!("postgres refused the connection: {what}"))
                        .with_detail("provider", PROVIDER);
                if let Some(code) = e.code() {
                    err = err.with_detail("sqlstate", code.code());
                }
                return err.with_source(e);
            }
            let mut err = pg_error("connect", e);
            if err.kind() == ErrorKind::Provider {
                // Authentication and startup failures: the server answered but refused us.
                err = Error::new(
                    ErrorKind::ProviderConnection,
                    "postgres refused the connection",
                )
                .with_source(err);
            }
            return err.with_detail("provider", PROVIDER);
        }
        PoolError::Closed => Error::new(
            ErrorKind::ProviderNotInitialized,
            "postgres storage is closed; call initialize",
        ),
        PoolError::NoRuntimeSpecified => {
            Error::configuration("postgres pool has no async runtime configured")
        }
        PoolError::PostCreateHook(_) => Error::provider("postgres connection setup failed"),
    };
    err.with_detail("provider", PROVIDER)
}

/// Why a connection attempt can never succeed with this configuration: SQLSTATE class 28
/// (invalid authorization: bad password, no `pg_hba.conf` entry), 3D000 (no such database), or a
/// TLS certificate the client rejects. `None` for failures worth retrying.
fn permanent_connect_failure(e: &tokio_postgres::Error) -> Option<&'static str> {
    if let Some(code) = e.code() {
        let c = code.code();
        if c.starts_with("28") {
            return Some("authentication failed");
        }
        if code == &SqlState::INVALID_CATALOG_NAME {
            return Some("the database does not exist");
        }
        return None;
    }
    if driver_kind(e) == DriverKind::Permanent {
        return Some("the configuration cannot authenticate (method or password)");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let rustls_err = s.downcast_ref::<rustls::Error>().or_else(|| {
            s.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) =
            rustls_err
        {
            return Some("the server's TLS certificate was rejected");
        }
        source = s.source();
    }
    None
}

/// The error of a call made before `initialize` or after `close`.
pub(crate) fn not_initialized() -> Error {
    Error::new(
        ErrorKind::ProviderNotInitialized,
        "postgres storage is not initialized; call initialize",
    )
    .with_detail("provider", PROVIDER)
}

/// A value read back from the database that violates a domain rule (a damaged or foreign row).
pub(crate) fn corrupt(what: &'static str, e: Error) -> Error {
    Error::new(
        ErrorKind::Serialization,
        format!("postgres returned an invalid {what}"),
    )
    .with_detail("provider", PROVIDER)
    .with_source(e)
}
