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
        _ if lost_connection(e.details()) => {
            (ErrorKind::ProviderConnection, "redis connection failed")
        }
        _ => {
            if transient(e.details()) {
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

/// Whether a server error reply is a transient state of the server or the cluster (busy with a
/// script, a replica, loading its data set, resharding, failing over): worth a retry later.
pub(crate) fn transient(details: &str) -> bool {
    const CODES: [&str; 7] = [
        "BUSY",
        "READONLY",
        "LOADING",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "MASTERDOWN",
        "NOREPLICAS",
    ];
    let code = details.split_whitespace().next().unwrap_or("");
    CODES.contains(&code)
}

/// Whether fred's own words say the command found no working connection (it reports these with
/// an `Unknown` kind).
pub(crate) fn lost_connection(details: &str) -> bool {
    const LOST: [&str; 4] = [
        "Failed to route command",
        "Too many failed write attempts",
        "Client is not initialized",
        "Connection closed",
    ];
    LOST.iter().any(|l| details.starts_with(l))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_server_states_are_retryable_connection_errors() {
        for reply in [
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
            "READONLY You can't write against a read only replica.",
            "LOADING Redis is loading the dataset in memory",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        ] {
            let e = map(&FredError::new(FredKind::Unknown, reply), "check", true);
            assert_eq!(e.kind(), ErrorKind::ProviderConnection, "{reply}");
            assert!(e.is_retryable(), "{reply}");
        }
        let e = map(
            &FredError::new(FredKind::Unknown, "ERR BUSYKEY-like words are not codes"),
            "check",
            true,
        );
        assert_eq!(e.kind(), ErrorKind::Provider);
        let e = map(
            &FredError::new(FredKind::Unknown, "BUSYGROUP exists"),
            "x",
            true,
        );
        assert_eq!(e.kind(), ErrorKind::Provider);
    }
}
