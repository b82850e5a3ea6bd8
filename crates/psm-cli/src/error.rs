//! [`CliError`] and the exit codes scripts can rely on.

use std::{fmt, process::ExitCode};

use psm::ErrorKind;

/// The exit codes of `psm` (also in `psm --help` and docs/operations.md).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A check was answered "no" (`psm sessions check`, `psm check`), like `grep` finding nothing.
    pub const DENIED: u8 = 1;
    /// Bad command-line usage (clap's own code).
    pub const USAGE: u8 = 2;
    /// The session or user does not exist.
    pub const NOT_FOUND: u8 = 3;
    /// An argument or input record is invalid; nothing was changed.
    pub const INVALID: u8 = 4;
    /// A conflict: the session or user exists already, or a limit is reached.
    pub const CONFLICT: u8 = 5;
    /// A store is unavailable, busy (the file store locked by a running `psm serve`) or timed out;
    /// retrying later may succeed.
    pub const UNAVAILABLE: u8 = 6;
    /// The configuration is wrong (URL, file, key, unsupported provider).
    pub const CONFIG: u8 = 7;
    /// Authentication failed (a wrong password, a bad token).
    pub const AUTH: u8 = 8;
    /// Any other failure.
    pub const FAILURE: u8 = 10;
}

/// An error of a command: a message for standard error and an exit code.
#[derive(Debug)]
pub struct CliError {
    message: String,
    code: u8,
}

impl CliError {
    /// An error with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code,
        }
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(exit::CONFIG, message)
    }

    /// A not-found error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(exit::NOT_FOUND, message)
    }

    /// An invalid-input error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(exit::INVALID, message)
    }

    /// An I/O failure while reading or writing `what`.
    pub fn io(what: &str, e: &std::io::Error) -> Self {
        Self::new(exit::FAILURE, format!("{what}: {e}"))
    }

    /// The exit code.
    pub fn code(&self) -> u8 {
        self.code
    }

    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The exit code of an error kind.
pub fn code_of(kind: ErrorKind) -> u8 {
    use ErrorKind as K;
    match kind {
        K::Validation | K::InvalidSessionId | K::InvalidUserId | K::InvalidPermission | K::Ttl => {
            exit::INVALID
        }
        K::SessionNotFound | K::SessionExpired | K::UserNotFound => exit::NOT_FOUND,
        K::SessionExists | K::UserExists | K::SessionLimitReached => exit::CONFLICT,
        // `Concurrency` is a retryable conflict, such as the file store locked by a running server.
        K::Concurrency
        | K::ProviderConnection
        | K::ProviderNotInitialized
        | K::OperationTimeout
        | K::RateLimited
        | K::StorageQuotaExceeded => exit::UNAVAILABLE,
        K::ProviderConfiguration | K::ProviderNotSupported => exit::CONFIG,
        K::InvalidCredentials
        | K::TokenInvalid
        | K::TokenExpired
        | K::TokenRevoked
        | K::TokenReuseDetected => exit::AUTH,
        _ => exit::FAILURE,
    }
}

impl From<psm::Error> for CliError {
    fn from(e: psm::Error) -> Self {
        // psm's Display names the kind, the message and the details; none holds a secret.
        Self::new(code_of(e.kind()), e.to_string())
    }
}
