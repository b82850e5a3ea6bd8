//! The one error type of psm: an [`ErrorKind`], a message, structured details and an optional source.

use std::{borrow::Cow, error::Error as StdError, fmt};

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, as a stable, matchable class.
///
/// The kinds mirror the seed's exception hierarchy plus the auth kinds. Ask [`Error::is_validation`] or
/// [`Error::is_retryable`] instead of matching strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A value failed validation (other than the specific validation kinds below).
    Validation,
    /// A session id is malformed.
    InvalidSessionId,
    /// A user id is malformed.
    InvalidUserId,
    /// A permission string is malformed.
    InvalidPermission,
    /// A ttl is out of range or unparsable.
    Ttl,
    /// The session does not exist.
    SessionNotFound,
    /// The session existed but has expired.
    SessionExpired,
    /// A session with this id already exists (`create_session` never overwrites).
    SessionExists,
    /// The provider cannot reach its backend.
    ProviderConnection,
    /// The provider was used before `initialize` or after `close`.
    ProviderNotInitialized,
    /// The provider configuration is invalid.
    ProviderConfiguration,
    /// The provider is unknown, or its Cargo feature is disabled.
    ProviderNotSupported,
    /// The operation did not finish in time.
    OperationTimeout,
    /// Concurrent operations conflicted.
    Concurrency,
    /// A configured storage quota is full.
    StorageQuotaExceeded,
    /// Data could not be serialized or deserialized.
    Serialization,
    /// Any other provider failure.
    Provider,
    /// Wrong email or password.
    InvalidCredentials,
    /// A token is malformed, badly signed or otherwise unacceptable.
    TokenInvalid,
    /// A token has expired.
    TokenExpired,
    /// A token has been revoked.
    TokenRevoked,
    /// A refresh token was presented again after it was consumed.
    TokenReuseDetected,
    /// A user with this email or username already exists.
    UserExists,
    /// The user does not exist.
    UserNotFound,
    /// The per-user concurrent-session limit is reached (policy `reject`).
    SessionLimitReached,
    /// Too many attempts; retry later.
    RateLimited,
}

impl ErrorKind {
    /// A stable, snake_case code for this kind (used in HTTP problem documents and logs).
    pub fn code(self) -> &'static str {
        match self {
            Self::Validation => "validation",
            Self::InvalidSessionId => "invalid_session_id",
            Self::InvalidUserId => "invalid_user_id",
            Self::InvalidPermission => "invalid_permission",
            Self::Ttl => "invalid_ttl",
            Self::SessionNotFound => "session_not_found",
            Self::SessionExpired => "session_expired",
            Self::SessionExists => "session_exists",
            Self::ProviderConnection => "provider_connection",
            Self::ProviderNotInitialized => "provider_not_initialized",
            Self::ProviderConfiguration => "provider_configuration",
            Self::ProviderNotSupported => "provider_not_supported",
            Self::OperationTimeout => "operation_timeout",
            Self::Concurrency => "concurrency",
            Self::StorageQuotaExceeded => "storage_quota_exceeded",
            Self::Serialization => "serialization",
            Self::Provider => "provider",
            Self::InvalidCredentials => "invalid_credentials",
            Self::TokenInvalid => "token_invalid",
            Self::TokenExpired => "token_expired",
            Self::TokenRevoked => "token_revoked",
            Self::TokenReuseDetected => "token_reuse_detected",
            Self::UserExists => "user_exists",
            Self::UserNotFound => "user_not_found",
            Self::SessionLimitReached => "session_limit_reached",
            Self::RateLimited => "rate_limited",
        }
    }

    /// Whether this kind is an input-validation failure (nothing was changed).
    pub fn is_validation(self) -> bool {
        matches!(
            self,
            Self::Validation
                | Self::InvalidSessionId
                | Self::InvalidUserId
                | Self::InvalidPermission
                | Self::Ttl
        )
    }

    /// Whether this kind belongs to the seed's `ProviderError` family: the store or its backend failed,
    /// not the caller's input or the session's state.
    pub fn is_provider(self) -> bool {
        matches!(
            self,
            Self::ProviderConnection
                | Self::ProviderNotInitialized
                | Self::ProviderConfiguration
                | Self::ProviderNotSupported
                | Self::OperationTimeout
                | Self::Concurrency
                | Self::StorageQuotaExceeded
                | Self::Serialization
                | Self::Provider
        )
    }

    /// Whether this kind is about a session's state (the seed's session exceptions).
    pub fn is_session(self) -> bool {
        matches!(
            self,
            Self::SessionNotFound
                | Self::SessionExpired
                | Self::SessionExists
                | Self::SessionLimitReached
        )
    }

    /// Whether this kind is an authentication or token failure.
    pub fn is_auth(self) -> bool {
        matches!(
            self,
            Self::InvalidCredentials
                | Self::TokenInvalid
                | Self::TokenExpired
                | Self::TokenRevoked
                | Self::TokenReuseDetected
                | Self::RateLimited
        )
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::ProviderConnection
                | Self::OperationTimeout
                | Self::Concurrency
                | Self::RateLimited
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The error of every psm operation.
///
/// Messages are lowercase, never contain secrets, tokens or full session ids, and details are
/// structured key/value pairs (for example `provider`, `operation`, `field`).
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    details: Vec<(&'static str, String)>,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl Error {
    /// Creates an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            details: Vec::new(),
            source: None,
        }
    }

    /// Adds a structured detail (replacing an earlier one with the same key).
    #[must_use]
    pub fn with_detail(mut self, key: &'static str, value: impl fmt::Display) -> Self {
        let value = value.to_string();
        match self.details.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.details.push((key, value)),
        }
        self
    }

    /// Attaches the underlying cause, kept as a source and never stringified into the message.
    #[must_use]
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Structured details, in insertion order.
    pub fn details(&self) -> &[(&'static str, String)] {
        &self.details
    }

    /// The value of one detail, if present.
    pub fn detail(&self, key: &str) -> Option<&str> {
        self.details
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// See [`ErrorKind::is_validation`].
    pub fn is_validation(&self) -> bool {
        self.kind.is_validation()
    }

    /// See [`ErrorKind::is_provider`].
    pub fn is_provider(&self) -> bool {
        self.kind.is_provider()
    }

    /// See [`ErrorKind::is_session`].
    pub fn is_session(&self) -> bool {
        self.kind.is_session()
    }

    /// See [`ErrorKind::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// A validation error of the generic kind.
    pub fn validation(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Validation, message)
    }

    /// A configuration error.
    pub fn configuration(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::ProviderConfiguration, message)
    }

    /// A generic provider error.
    pub fn provider(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Provider, message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if !self.details.is_empty() {
            d.field("details", &self.details);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if !self.details.is_empty() {
            f.write_str(" (")?;
            for (i, (k, v)) in self.details.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{k}={v}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::new(ErrorKind::Serialization, "json (de)serialization failed").with_source(e)
    }
}

/// Shortens an id for messages and logs so a full session id never leaks: the first 6 bytes and `…`.
pub fn redact_id(id: &str) -> String {
    let cut = id.char_indices().nth(6).map_or(id.len(), |(i, _)| i);
    if cut == id.len() {
        id.to_owned()
    } else {
        format!("{}…", &id[..cut])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_classify_kinds() {
        assert!(ErrorKind::InvalidSessionId.is_validation());
        assert!(ErrorKind::Ttl.is_validation());
        assert!(!ErrorKind::SessionNotFound.is_validation());
        assert!(ErrorKind::ProviderConnection.is_retryable());
        assert!(!ErrorKind::InvalidCredentials.is_retryable());
        assert!(
            ErrorKind::ProviderConnection.is_provider()
                && ErrorKind::StorageQuotaExceeded.is_provider()
        );
        assert!(
            !ErrorKind::InvalidSessionId.is_provider() && !ErrorKind::SessionNotFound.is_provider()
        );
        assert!(ErrorKind::SessionLimitReached.is_session() && !ErrorKind::Ttl.is_session());
        assert!(ErrorKind::TokenReuseDetected.is_auth() && !ErrorKind::Provider.is_auth());
    }

    #[test]
    fn display_includes_kind_message_and_details() {
        let e = Error::new(ErrorKind::Ttl, "ttl out of range")
            .with_detail("value", 0)
            .with_detail("value", 5);
        assert_eq!(e.to_string(), "invalid_ttl: ttl out of range (value=5)");
        assert_eq!(e.detail("value"), Some("5"));
    }

    #[test]
    fn redact_keeps_a_short_prefix() {
        assert_eq!(redact_id("session_abcdefgh"), "sessio…");
        assert_eq!(redact_id("abc"), "abc");
        assert_eq!(redact_id("ééééééé"), "éééééé…");
    }
}
