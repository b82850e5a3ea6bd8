//! Mapping fred errors to psm error kinds. Messages never carry server replies verbatim (they could
//! echo keys, hence session ids) nor configuration (it could hold a password).

use fred::error::{Error as FredError, ErrorKind as FredKind};
use psm_core::{Error, ErrorKind};

use crate::PROVIDER;

/// A psm error for a failed fred call during `op`. `connected` says whether the client believed it
/// was connected (a timeout while connected is an `OperationTimeout`, otherwise the server is
/// unreachable).
pub(crate) fn map(e: &FredError, op: &'static str, connected: bool) -> Error {
    let (kind, msg) = match e.kind() {
        FredKind::IO | FredKind::Canceled | FredKind::Backpressure => {
            (ErrorKind::ProviderConnection, "redis connection failed")
        }
        FredKind::Routing | FredKind::Cluster => (
            ErrorKind::ProviderConnection,
            "redis cluster routing failed",
        ),
        FredKind::Timeout if connected => (ErrorKind::OperationTimeout, "redis command timed out"),
        FredKind::Timeout => (
            ErrorKind::ProviderConnection,
            "redis server unreachable (command timed out)",
        ),
        FredKind::Auth => (
            ErrorKind::ProviderConfiguration,
            "redis authentication failed",
        ),
        FredKind::Config | FredKind::Url => (
            ErrorKind::ProviderConfiguration,
            "redis client configuration rejected",
        ),
        FredKind::Tls => (ErrorKind::ProviderConnection, "redis tls handshake failed"),
        FredKind::Parse => (ErrorKind::Serialization, "unexpected redis reply"),
        _ => {
            let d = e.details();
            if d.starts_with("LOADING")
                || d.starts_with("TRYAGAIN")
                || d.starts_with("CLUSTERDOWN")
                || d.starts_with("MASTERDOWN")
            {
                (ErrorKind::ProviderConnection, "redis server not ready")
            } else {
                (ErrorKind::Provider, "redis command failed")
            }
        }
    };
    Error::new(kind, msg)
        .with_detail("provider", PROVIDER)
        .with_detail("operation", op)
        .with_detail("redis_error", e.kind().to_str())
}

/// An unexpected reply shape.
pub(crate) fn reply(op: &'static str) -> Error {
    Error::new(ErrorKind::Serialization, "unexpected redis reply")
        .with_detail("provider", PROVIDER)
        .with_detail("operation", op)
}

/// Use before `initialize` or after `close`.
pub(crate) fn not_initialized() -> Error {
    Error::new(
        ErrorKind::ProviderNotInitialized,
        "redis store is not initialized (call initialize first)",
    )
    .with_detail("provider", PROVIDER)
}
