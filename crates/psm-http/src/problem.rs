//! RFC 9457 problem documents: the one shape of every error the API returns.
//!
//! A [`psm::Error`] becomes a [`Problem`] with the status its [`ErrorKind`] maps to and the
//! kind's stable [`code`](ErrorKind::code); errors of the HTTP layer itself (a malformed body, a
//! missing token, an unknown route) get codes of their own, listed in [`codes`]. Only details that
//! are safe to show (which field, which limit, when to retry) reach the client; server-side
//! failures are logged in full and answered with a generic message.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use psm::{Error, ErrorKind};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Codes of the errors the HTTP layer raises itself (beside [`ErrorKind::code`]).
pub mod codes {
    /// The body is not valid JSON.
    pub const MALFORMED_JSON: &str = "malformed_json";
    /// The body is JSON but not of the expected shape (a missing, unknown or mistyped field).
    pub const INVALID_BODY: &str = "invalid_body";
    /// A path or query parameter does not parse.
    pub const INVALID_PARAMETER: &str = "invalid_parameter";
    /// The body is not `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// The body is larger than the configured limit.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// No credentials, or credentials of the wrong form.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// Authenticated, but without the permission the route requires.
    pub const FORBIDDEN: &str = "forbidden";
    /// No such route, or no such resource.
    pub const NOT_FOUND: &str = "not_found";
    /// The route exists, but not with this method.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// The request did not finish within the configured time.
    pub const REQUEST_TIMEOUT: &str = "request_timeout";
    /// Self-registration is switched off on this server.
    pub const REGISTRATION_CLOSED: &str = "registration_closed";
    /// Something failed on the server; the log has the details.
    pub const INTERNAL: &str = "internal";
}

/// Details of a [`psm::Error`] that may be shown to the client: none names a secret, a full id or
/// a server-side resource.
const PUBLIC_DETAILS: [&str; 10] = [
    "field",
    "length",
    "limit",
    "max",
    "min",
    "max_bytes",
    "max_depth",
    "scope",
    "retry_after",
    "index",
];

/// An RFC 9457 problem: status, stable code, human-readable detail and safe extension members.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    detail: String,
    retry_after: Option<u64>,
    extensions: Map<String, Value>,
    /// Whether a 401 carries a `WWW-Authenticate: Bearer` challenge (not when the credential was
    /// a password or a refresh token in the body).
    challenge: bool,
}

/// The JSON body of a problem (for the OpenAPI document; `Problem` writes it).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody {
    /// A URI naming the problem type: `urn:psm:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence.
    pub detail: String,
    /// The stable machine-readable code (an `ErrorKind` code or one of the HTTP layer's).
    pub code: String,
    /// Seconds to wait before retrying (429 and 503 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// The offending field, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    /// A problem with `status`, `code` and `detail`.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
            extensions: Map::new(),
            challenge: true,
        }
    }

    /// Answers without a `WWW-Authenticate` challenge: for routes whose credential is in the body.
    #[must_use]
    pub fn without_challenge(mut self) -> Self {
        self.challenge = false;
        self
    }

    /// 401 with the `unauthorized` code.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, detail)
    }

    /// 403 with the `forbidden` code.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, detail)
    }

    /// 404 with the `not_found` code.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, detail)
    }

    /// 400 with the `invalid_parameter` code, naming the parameter.
    pub fn invalid_parameter(name: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::INVALID_PARAMETER, detail).with("field", name)
    }

    /// 500 with the `internal` code and a message that names nothing of the server.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            "the server failed to handle the request",
        )
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    /// Asks the client to retry after `secs` seconds (`Retry-After`).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The detail message.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
}

/// The status an error kind is answered with.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    use ErrorKind as K;
    match kind {
        K::Validation | K::InvalidSessionId | K::InvalidUserId | K::InvalidPermission | K::Ttl => {
            StatusCode::BAD_REQUEST
        }
        K::SessionNotFound | K::SessionExpired | K::UserNotFound => StatusCode::NOT_FOUND,
        K::SessionExists | K::UserExists | K::Concurrency | K::SessionLimitReached => {
            StatusCode::CONFLICT
        }
        K::InvalidCredentials
        | K::TokenInvalid
        | K::TokenExpired
        | K::TokenRevoked
        | K::TokenReuseDetected => StatusCode::UNAUTHORIZED,
        K::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        K::ProviderConnection
        | K::ProviderNotInitialized
        | K::OperationTimeout
        | K::StorageQuotaExceeded => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for Problem {
    fn from(error: Error) -> Self {
        let kind = error.kind();
        let status = status_of(kind);
        if status.is_server_error() {
            // The whole error (provider, operation, source) goes to the log, not to the client.
            tracing::warn!(error = %error, code = kind.code(), "request failed in a store");
            let detail = if status == StatusCode::SERVICE_UNAVAILABLE {
                "a store is unavailable; retry later"
            } else {
                "the server failed to handle the request"
            };
            let mut problem = Self::new(status, kind.code(), detail);
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                problem.code = codes::INTERNAL;
            } else {
                // Every 503 says when to come back.
                problem.retry_after = Some(1);
            }
            return problem;
        }
        let mut problem = Self::new(status, kind.code(), error.message());
        for (key, value) in error.details() {
            if PUBLIC_DETAILS.contains(key) {
                let value = value
                    .parse::<u64>()
                    .map_or_else(|_| Value::String(value.clone()), Value::from);
                problem.extensions.insert((*key).to_owned(), value);
            }
        }
        if kind == ErrorKind::RateLimited {
            let secs = error
                .detail("retry_after")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(1)
                .max(1);
            problem.retry_after = Some(secs);
        }
        problem
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert(
            "type".to_owned(),
            Value::String(format!("urn:psm:problem:{}", self.code)),
        );
        body.insert("title".to_owned(), Value::String(self.title().to_owned()));
        body.insert("status".to_owned(), Value::from(self.status.as_u16()));
        body.insert("detail".to_owned(), Value::String(self.detail.clone()));
        body.insert("code".to_owned(), Value::String(self.code.to_owned()));
        if let Some(secs) = self.retry_after {
            body.insert("retry_after".to_owned(), Value::from(secs));
        }
        for (key, value) in self.extensions {
            body.entry(key).or_insert(value);
        }
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED && self.challenge {
            let challenge = if self.code == codes::UNAUTHORIZED {
                "Bearer realm=\"psm\""
            } else {
                "Bearer realm=\"psm\", error=\"invalid_token\""
            };
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_a_status_and_server_errors_hide_their_details() {
        let e = Error::new(ErrorKind::ProviderConnection, "redis at 10.0.0.7 refused")
            .with_detail("provider", "redis");
        let p = Problem::from(e);
        assert_eq!(p.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(p.code(), "provider_connection");
        assert!(!p.detail().contains("10.0.0.7"));
        assert_eq!(p.retry_after, Some(1));

        let p = Problem::from(Error::new(ErrorKind::Provider, "disk said EIO"));
        assert_eq!(p.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(p.code(), codes::INTERNAL);
        assert!(!p.detail().contains("EIO"));

        let p = Problem::from(
            Error::new(ErrorKind::InvalidPermission, "permission has whitespace")
                .with_detail("field", "permissions")
                .with_detail("session", "abc…"),
        );
        assert_eq!(p.status(), StatusCode::BAD_REQUEST);
        assert_eq!(p.extensions.get("field"), Some(&Value::from("permissions")));
        assert!(!p.extensions.contains_key("session"));
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let p = Problem::from(
            Error::new(ErrorKind::RateLimited, "too many attempts")
                .with_detail("retry_after", "30")
                .with_detail("scope", "account"),
        );
        assert_eq!(p.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(p.retry_after, Some(30));
        let response = p.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }

    #[test]
    fn unauthorized_carries_a_bearer_challenge() {
        let response = Problem::unauthorized("no token").into_response();
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"psm\""
        );
        let response =
            Problem::from(Error::new(ErrorKind::TokenExpired, "expired")).into_response();
        assert!(
            response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .is_ok_and(|v| v.contains("invalid_token"))
        );
    }
}
