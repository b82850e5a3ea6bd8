//! The wire shapes of requests and responses, with their OpenAPI schemas.
//!
//! Request bodies refuse unknown fields, so a misspelt `ttl` is an error and not a silent default.
//! Values are validated by psm's own types after decoding; the schemas state the same bounds so a
//! client can check before sending.

use psm::{
    PermissionCheck, SessionData, SessionId, SessionInfo, Timestamp, auth::User, jwt::TokenPair,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{
    IntoParams, PartialSchema, ToSchema,
    openapi::{ObjectBuilder, RefOr, Schema, Type},
};

/// The schema of one permission: 1 to 255 bytes, no whitespace or control characters.
pub struct PermissionItem;

impl std::fmt::Debug for PermissionItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PermissionItem")
    }
}

impl PartialSchema for PermissionItem {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "a permission: 1 to 255 bytes of UTF-8, no whitespace or control characters",
            ))
            .min_length(Some(1))
            .max_length(Some(255))
            .pattern(Some(PERMISSION_PATTERN))
            .into()
    }
}

impl ToSchema for PermissionItem {
    fn name() -> std::borrow::Cow<'static, str> {
        "Permission".into()
    }
}

/// No whitespace, no control characters (psm's permission rule, byte length aside).
const PERMISSION_PATTERN: &str = r"^[^\s\x00-\x1f\x7f-\x9f]+$";

/// Largest `max_sessions` of `POST /v1/sessions`.
pub const MAX_SESSION_LIMIT: u32 = 1_000_000;

/// Largest `offset` of a listing (the stores count in signed 64-bit).
pub const MAX_OFFSET: u64 = i64::MAX as u64;

/// Body of `POST /v1/auth/register`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// 3 to 64 ASCII letters, digits, `.`, `-`, `_`; unique case-insensitively.
    #[schema(min_length = 3, max_length = 64, pattern = "^[A-Za-z0-9._-]{3,64}$")]
    pub username: String,
    /// An email address; unique case-insensitively.
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$"
    )]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
}

impl std::fmt::Debug for RegisterBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterBody")
            .field("username", &self.username)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// Body of `POST /v1/auth/login`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// The account's email address (any case).
    #[schema(max_length = 254)]
    pub email: String,
    /// The password.
    #[schema(max_length = 1024)]
    pub password: String,
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// Body of `POST /v1/auth/refresh` and `POST /v1/auth/logout`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    /// The refresh token of the pair.
    #[schema(max_length = 8192)]
    pub refresh_token: String,
}

impl std::fmt::Debug for RefreshBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshBody { .. }")
    }
}

/// An access and refresh token pair.
#[derive(Serialize, ToSchema)]
pub struct TokenView {
    /// The access token (a JWT; send it as `Authorization: Bearer <token>`).
    pub access_token: String,
    /// The refresh token (single use: every refresh returns a new one).
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// When the access token expires (RFC 3339).
    pub access_expires_at: String,
    /// When the refresh token, and the session's token family, expire (RFC 3339).
    pub refresh_expires_at: String,
    /// The login session.
    pub session_id: String,
    /// The user.
    pub user_id: String,
}

impl std::fmt::Debug for TokenView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenView")
            .field("session_id", &psm::redact_id(&self.session_id))
            .finish_non_exhaustive()
    }
}

impl TokenView {
    /// The view of `pair`, with `expires_in` counted from `now`.
    pub fn new(pair: TokenPair, now: Timestamp) -> Self {
        let expires_in = pair.access_expires_at.secs_until_ceil(now);
        Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: "Bearer",
            expires_in,
            access_expires_at: pair.access_expires_at.to_rfc3339(),
            refresh_expires_at: pair.refresh_expires_at.to_rfc3339(),
            session_id: pair.session_id.as_str().to_owned(),
            user_id: pair.user_id.as_str().to_owned(),
        }
    }
}

/// A user account (never its password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// The user's id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Email address.
    pub email: String,
    /// Permissions every session of the user gets.
    pub permissions: Vec<String>,
    /// When the account was created (RFC 3339).
    pub created_at: String,
    /// When the account last changed (RFC 3339).
    pub updated_at: String,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id.as_str().to_owned(),
            username: user.username.as_str().to_owned(),
            email: user.email.as_str().to_owned(),
            permissions: user
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            created_at: user.created_at.to_rfc3339(),
            updated_at: user.updated_at.to_rfc3339(),
        }
    }
}

/// Body of `POST /v1/users` (administrators create accounts with chosen permissions).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    /// 3 to 64 ASCII letters, digits, `.`, `-`, `_`.
    #[schema(min_length = 3, max_length = 64, pattern = "^[A-Za-z0-9._-]{3,64}$")]
    pub username: String,
    /// An email address.
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$"
    )]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// Permissions every session of the user gets (1 to 4,096).
    #[schema(value_type = Vec<PermissionItem>, min_items = 1, max_items = 4096)]
    pub permissions: Vec<String>,
}

/// Query of `GET /v1/users`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Only users holding exactly this permission.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]+$"
    )]
    pub permission: Option<String>,
    /// Page size, 1 to 10,000 (default 100).
    #[param(minimum = 1, maximum = 10_000)]
    pub limit: Option<u64>,
    /// Users to skip (default 0).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_u64)]
    pub offset: Option<u64>,
}

/// Response of `GET /v1/users`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserListView {
    /// Users of this page, by creation.
    pub users: Vec<UserView>,
    /// The page size asked for.
    pub limit: u64,
    /// The offset asked for.
    pub offset: u64,
}

impl std::fmt::Debug for CreateUserBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUserBody")
            .field("username", &self.username)
            .field("email", &self.email)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

/// A session's record and ttl state.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// The session id.
    pub session_id: String,
    /// The owner.
    pub user_id: String,
    /// The permissions, in stored order.
    pub permissions: Vec<String>,
    /// When the session was created (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
    /// Caller metadata, exactly as stored.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Whole seconds left, rounded up; null when the session never expires.
    pub ttl_remaining: Option<u64>,
    /// Whether the session expires.
    pub has_ttl: bool,
    /// When it expires (RFC 3339); null when it never does.
    pub expires_at: Option<String>,
    /// The provider holding it.
    pub provider: String,
}

impl SessionView {
    /// The view of session `id`.
    pub fn new(id: &SessionId, info: SessionInfo) -> Self {
        let data = DataView::from(info.data);
        Self {
            session_id: id.as_str().to_owned(),
            user_id: data.user_id,
            permissions: data.permissions,
            created_at: data.created_at,
            updated_at: data.updated_at,
            metadata: data.metadata,
            ttl_remaining: info.ttl_remaining,
            has_ttl: info.has_ttl,
            expires_at: info.expires_at.map(|t| t.to_rfc3339()),
            provider: info.provider,
        }
    }
}

/// A session's record (the seed's `get_permissions`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DataView {
    /// The owner.
    pub user_id: String,
    /// The permissions, in stored order.
    pub permissions: Vec<String>,
    /// When the session was created (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
    /// Caller metadata, exactly as stored.
    #[schema(value_type = Object)]
    pub metadata: Value,
}

impl From<SessionData> for DataView {
    fn from(data: SessionData) -> Self {
        Self {
            user_id: data.user_id.as_str().to_owned(),
            permissions: data.permissions.to_strings(),
            created_at: data.created_at.to_rfc3339(),
            updated_at: data.updated_at.to_rfc3339(),
            metadata: Value::Object(data.metadata.as_map().clone()),
        }
    }
}

/// Body of `PUT /v1/sessions/{id}` (the seed's `store_permissions`, an upsert).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreBody {
    /// The owner: 1 to 255 bytes of UTF-8 without control characters.
    #[schema(min_length = 1, max_length = 255)]
    pub user_id: String,
    /// 1 to 4,096 permissions: each 1 to 255 bytes, no whitespace or control characters.
    #[schema(value_type = Vec<PermissionItem>, min_items = 1, max_items = 4096)]
    pub permissions: Vec<String>,
    /// Seconds, 1 to 31,536,000; absent means the server's default ttl.
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub ttl: Option<u64>,
    /// A JSON object of at most 64 KiB and 32 levels.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// Body of `POST /v1/sessions` (`create_session`: a new id, under the per-user limit).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionBody {
    /// The owner.
    #[schema(min_length = 1, max_length = 255)]
    pub user_id: String,
    /// 1 to 4,096 permissions.
    #[schema(value_type = Vec<PermissionItem>, min_items = 1, max_items = 4096)]
    pub permissions: Vec<String>,
    /// Seconds, 1 to 31,536,000; absent means the server's default ttl.
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub ttl: Option<u64>,
    /// A JSON object of at most 64 KiB and 32 levels.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// The id to use (ASCII letters, digits, `-`, `_`); absent means a generated one.
    #[schema(min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9_-]{1,255}$")]
    pub session_id: Option<String>,
    /// The most live sessions the user may have (1 to 1,000,000); absent means no limit.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub max_sessions: Option<u32>,
    /// What happens at the limit.
    pub policy: Option<PolicyBody>,
}

/// What `create_session` does when the user is at the limit.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyBody {
    /// Fail with 409 `session_limit_reached`, storing nothing.
    Reject,
    /// Remove the oldest sessions.
    EvictOldest,
}

/// Response of `POST /v1/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedView {
    /// The new session's id.
    pub session_id: String,
    /// Sessions removed to respect the limit, oldest first.
    pub evicted: Vec<String>,
}

/// Body of `PUT /v1/sessions/{id}/permissions` (`update_permissions`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    /// The new permissions (replacing the old ones).
    #[schema(value_type = Vec<PermissionItem>, min_items = 1, max_items = 4096)]
    pub permissions: Vec<String>,
    /// A new ttl in seconds; absent keeps the current expiry.
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub ttl: Option<u64>,
}

/// Body of `POST /v1/sessions/{id}/extend` (`extend_session_ttl`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// The session expires this many seconds from now.
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub ttl: u64,
}

/// Query of `GET /v1/sessions/{id}/check`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckQuery {
    /// The permission to check (exact, case-sensitive).
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]+$"
    )]
    pub permission: String,
}

/// Response of `GET /v1/sessions/{id}/check`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckView {
    /// The permission asked about.
    pub permission: String,
    /// Whether the session is live and holds it.
    pub granted: bool,
}

/// Body of `POST /v1/sessions/{id}/check` (`check_permissions`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckManyBody {
    /// The permissions to check.
    #[schema(value_type = Vec<PermissionItem>, min_items = 1, max_items = 4096)]
    pub permissions: Vec<String>,
}

/// Response of `POST /v1/sessions/{id}/check`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckManyView {
    /// Each permission asked about, in order, with whether it is granted.
    pub results: Vec<CheckView>,
    /// Whether every permission is granted.
    pub all: bool,
    /// Whether any permission is granted.
    pub any: bool,
}

impl From<PermissionCheck> for CheckManyView {
    fn from(check: PermissionCheck) -> Self {
        Self {
            all: check.all(),
            any: check.any(),
            results: check
                .entries()
                .iter()
                .map(|(p, granted)| CheckView {
                    permission: p.as_str().to_owned(),
                    granted: *granted,
                })
                .collect(),
        }
    }
}

/// Query of `GET /v1/sessions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this user's sessions (ordered by creation); absent lists every session.
    #[param(min_length = 1, max_length = 255)]
    pub user_id: Option<String>,
    /// Page size, 1 to 10,000 (default 100).
    #[param(minimum = 1, maximum = 10_000)]
    pub limit: Option<u64>,
    /// Ids to skip (default 0).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_u64)]
    pub offset: Option<u64>,
}

/// Response of `GET /v1/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListView {
    /// Session ids of this page.
    pub sessions: Vec<String>,
    /// The page size asked for.
    pub limit: u64,
    /// The offset asked for.
    pub offset: u64,
}

/// A count of what an operation removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct CountView {
    /// How many.
    pub count: u64,
}

/// Response of `PUT /v1/sessions/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredView {
    /// The session id.
    pub session_id: String,
    /// Always true once stored (the seed's return value).
    pub stored: bool,
}

/// The caller, as `GET /v1/me` sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// The user.
    pub user_id: String,
    /// The session the request came with.
    pub session_id: String,
    /// The session's permissions.
    pub permissions: Vec<String>,
}

/// Response of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    /// `ok`, or `unavailable` when a store is down.
    pub status: &'static str,
    /// Each store checked, with `ok` or the error code it answered.
    #[schema(value_type = Object)]
    pub checks: Map<String, Value>,
}
