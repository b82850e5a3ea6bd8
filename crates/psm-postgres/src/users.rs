//! [`PostgresUserStore`]: the `UserStore` port on the `users` table, with an optional cache of
//! lookups by email.

use std::{fmt, sync::Arc};

use psm_core::{
    CacheKey, CacheTag, DynCache, Email, Error, ErrorKind, NewUser, Page, PasswordHash, Permission,
    PermissionRef, Result, Ttl, User, UserId, UserStore, UserUpdate, Username, async_trait,
    dedup_permissions,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::{Row, types::ToSql};

use crate::{
    PROVIDER, PostgresStorage,
    error::{corrupt, pg_error, unique_violation},
    sql::quote_ident,
    storage::{from_pg, to_pg},
};

/// Users in PostgreSQL (`<schema>.users`): unique lowercased email and username (psm lowercases,
/// the same rule in every provider), the PHC password hash, created/updated times from the clock.
///
/// With [`with_cache`](Self::with_cache), `get_user_by_email` is served from a
/// [`Cache`](psm_core::Cache) and the entry is dropped (by the tag `<namespace>:user:<id>`) when the
/// user is updated or deleted through this store. A hit reads the entry and the store's `users`
/// generation at once; entries carry the generation read before their database read, and an
/// update or delete starts a new one, so a lookup racing a write may store its stale result, but
/// no later lookup accepts it. A failing invalidation makes `update_user` or
/// `delete_user` return the cache's error (the database write happened).
///
/// `list_users` is one query walking the `(created_at, id)` index (`users_created_idx`, schema
/// version 2) with `LIMIT`/`OFFSET`; a permission filter is `$1 = ANY(permissions)` on the rows
/// the walk meets, so a filter few users match reads more of the index. It is never cached.
///
/// # Clone
/// Cloning is cheap and shares the pool and the cache.
#[derive(Clone)]
pub struct PostgresUserStore {
    storage: PostgresStorage,
    cache: Option<UserCache>,
    list: Arc<ListSql>,
}

/// The listing statements of the storage's schema, quoted in once at construction.
#[derive(Debug)]
struct ListSql {
    /// Every user: `$1` limit, `$2` offset.
    all: String,
    /// The users holding permission `$1` exactly: `$2` limit, `$3` offset.
    with_permission: String,
}

/// The columns [`user_from_row`] reads, in its order.
const USER_COLS: &str = "id, username, email, password_hash, permissions, created_at, updated_at";

impl ListSql {
    fn new(schema: &str) -> Self {
        let u = format!("{}.users", quote_ident(schema));
        // `id` is COLLATE "C": ties on created_at are ordered bytewise, as in every provider, and
        // the order is the index's, so `LIMIT` stops the walk.
        Self {
            all: format!("SELECT {USER_COLS} FROM {u} ORDER BY created_at, id LIMIT $1 OFFSET $2"),
            with_permission: format!(
                "SELECT {USER_COLS} FROM {u} WHERE $1 = ANY(permissions) \
                 ORDER BY created_at, id LIMIT $2 OFFSET $3"
            ),
        }
    }
}

#[derive(Clone)]
struct UserCache {
    cache: DynCache,
    ttl: Ttl,
    namespace: String,
}

impl PostgresUserStore {
    pub(crate) fn from_storage(storage: PostgresStorage) -> Self {
        let list = Arc::new(ListSql::new(storage.schema()));
        Self {
            storage,
            cache: None,
            list,
        }
    }

    /// Caches `get_user_by_email` results in `cache` for `ttl`, under keys and tags prefixed with
    /// the storage's [default namespace](PostgresStorage::default_cache_namespace)
    /// (`psm:pg:<host>:<port>:<dbname>:<schema>`). Misses are not cached.
    #[must_use]
    pub fn with_cache(mut self, cache: DynCache, ttl: Ttl) -> Self {
        let namespace = match &self.cache {
            Some(c) => c.namespace.clone(),
            None => self.storage.default_cache_namespace(),
        };
        self.cache = Some(UserCache {
            cache,
            ttl,
            namespace,
        });
        self
    }

    /// Replaces the cache key namespace (call after [`with_cache`](Self::with_cache)).
    ///
    /// # Errors
    /// `Validation` when it is empty, longer than 256 bytes or holds control characters, or when
    /// no cache is set.
    pub fn with_namespace(mut self, namespace: &str) -> Result<Self> {
        if namespace.is_empty() || namespace.len() > 256 || namespace.chars().any(char::is_control)
        {
            return Err(Error::validation(
                "cache namespace must be 1 to 256 bytes without control characters",
            ));
        }
        let Some(c) = &mut self.cache else {
            return Err(Error::validation("with_namespace needs with_cache first"));
        };
        namespace.clone_into(&mut c.namespace);
        Ok(self)
    }

    /// The storage this store runs on.
    pub fn storage(&self) -> &PostgresStorage {
        &self.storage
    }

    /// Runs a prepared, cached statement returning at most one row. A unique violation comes back
    /// as `UserExists`.
    async fn one(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        self.storage.row_mapped(op, sql, params, user_error).await
    }

    /// The key of a lookup by `email` (`None` when the address makes it too long to cache).
    fn email_key(c: &UserCache, email: &Email) -> Option<CacheKey> {
        CacheKey::parse(&format!(
            "{}:user_email:{}",
            c.namespace,
            email.normalized()
        ))
        .ok()
    }

    fn user_tag(c: &UserCache, id: &UserId) -> Option<CacheTag> {
        CacheTag::parse(&format!("{}:user:{}", c.namespace, id.as_str())).ok()
    }

    /// Starts a new generation of cached lookups (so none read before this point is used again)
    /// and drops the user's entries.
    ///
    /// # Errors
    /// The cache's error: the write happened, but a stale lookup could be served until its TTL.
    async fn invalidate(&self, id: &UserId) -> Result<()> {
        let Some(c) = &self.cache else { return Ok(()) };
        crate::query::bump(&*c.cache, &c.namespace, USERS_GENERATION).await?;
        if let Some(tag) = Self::user_tag(c, id) {
            c.cache.delete_tag(&tag).await?;
        }
        Ok(())
    }

    async fn lookup_email(&self, email: &Email) -> Result<Option<User>> {
        let row = self
            .one(
                "get user by email",
                &self.storage.sql().user_by_email,
                &[&email.normalized()],
            )
            .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }
}

/// The generation tag of every cached lookup by email (any update or delete through this store
/// starts a new one).
const USERS_GENERATION: &str = "users";

/// A driver error of the users table: a unique violation is `UserExists` naming the field.
fn user_error(op: &'static str, e: tokio_postgres::Error) -> Error {
    match unique_violation(&e).map(field_of) {
        Some(field) => Error::new(
            ErrorKind::UserExists,
            format!("a user with this {field} already exists"),
        )
        .with_detail("field", field),
        None => pg_error(op, e),
    }
}

/// The field a unique constraint protects.
fn field_of(constraint: &str) -> &'static str {
    if constraint.contains("email") {
        "email"
    } else if constraint.contains("username") {
        "username"
    } else {
        "id"
    }
}

fn user_from_row(r: &Row) -> Result<User> {
    let pe = |e| pg_error("read user", e);
    let id: &str = r.try_get(0).map_err(pe)?;
    let username: &str = r.try_get(1).map_err(pe)?;
    let email: &str = r.try_get(2).map_err(pe)?;
    let hash: &str = r.try_get(3).map_err(pe)?;
    let perms: Vec<&str> = r.try_get(4).map_err(pe)?;
    let created: OffsetDateTime = r.try_get(5).map_err(pe)?;
    let updated: OffsetDateTime = r.try_get(6).map_err(pe)?;
    Ok(User {
        id: UserId::parse(id).map_err(|e| corrupt("user id", e))?,
        username: Username::parse(username).map_err(|e| corrupt("username", e))?,
        email: Email::parse(email).map_err(|e| corrupt("email", e))?,
        password_hash: PasswordHash::new(hash).map_err(|e| corrupt("password hash", e))?,
        permissions: perms
            .into_iter()
            .map(Permission::parse)
            .collect::<Result<_>>()
            .map_err(|e| corrupt("permission", e))?,
        created_at: from_pg(created),
        updated_at: from_pg(updated),
    })
}

/// The cached form of a user.
#[derive(Serialize, Deserialize)]
struct CachedUser {
    /// The `users` generation read before the database read this came from.
    generation: String,
    id: String,
    username: String,
    email: String,
    password_hash: String,
    permissions: Vec<String>,
    created_at: i64,
    updated_at: i64,
}

impl CachedUser {
    fn from_user(u: &User, generation: String) -> Self {
        Self {
            generation,
            id: u.id.as_str().to_owned(),
            username: u.username.as_str().to_owned(),
            email: u.email.as_str().to_owned(),
            password_hash: u.password_hash.as_str().to_owned(),
            permissions: u
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            created_at: u.created_at.as_unix_micros(),
            updated_at: u.updated_at.as_unix_micros(),
        }
    }

    fn into_user(self) -> Result<User> {
        Ok(User {
            id: UserId::parse(&self.id)?,
            username: Username::parse(&self.username)?,
            email: Email::parse(&self.email)?,
            password_hash: PasswordHash::new(&self.password_hash)?,
            permissions: self
                .permissions
                .iter()
                .map(|p| Permission::parse(p))
                .collect::<Result<_>>()?,
            created_at: psm_core::Timestamp::from_unix_micros(self.created_at),
            updated_at: psm_core::Timestamp::from_unix_micros(self.updated_at),
        })
    }
}

#[async_trait]
impl UserStore for PostgresUserStore {
    fn provider_name(&self) -> &str {
        PROVIDER
    }

    async fn create_user(&self, user: NewUser) -> Result<User> {
        let permissions = dedup_permissions(user.permissions);
        psm_core::check_user_permissions(&permissions)?;
        let perms: Vec<&str> = permissions.iter().map(|p| p.as_str()).collect();
        let now = to_pg(self.storage.now());
        let row = self
            .one(
                "create user",
                &self.storage.sql().user_insert,
                &[
                    &user.id.as_str(),
                    &user.username.as_str(),
                    &user.username.normalized(),
                    &user.email.as_str(),
                    &user.email.normalized(),
                    &user.password_hash.as_str(),
                    &perms,
                    &now,
                ],
            )
            .await?;
        let row = row.ok_or_else(|| Error::provider("postgres insert returned no row"))?;
        user_from_row(&row)
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>> {
        let row = self
            .one("get user", &self.storage.sql().user_get, &[&id.as_str()])
            .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    async fn get_user_by_email(&self, email: &Email) -> Result<Option<User>> {
        let Some(c) = &self.cache else {
            return self.lookup_email(email).await;
        };
        let (Some(key), Ok(gen_key)) = (
            Self::email_key(c, email),
            crate::query::generation_key(&c.namespace, USERS_GENERATION),
        ) else {
            return self.lookup_email(email).await;
        };
        // The entry and the `users` generation are read at once (one round trip on a networked
        // cache); the generation is thus read before the database. An entry counts only while
        // the generation it was written under is current, so a lookup that read the row before a
        // concurrent update or delete may write its entry, but no later lookup accepts it.
        let (entry, generation) = futures::join!(c.cache.get(&key), c.cache.get(&gen_key));
        let generation = match generation {
            Ok(read) => {
                crate::query::generation_or_new(&*c.cache, &c.namespace, USERS_GENERATION, read)
                    .await
            }
            Err(e) => Err(e),
        };
        let generation = match generation {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "postgres user cache unavailable");
                return self.lookup_email(email).await;
            }
        };
        match entry {
            Ok(Some(bytes)) => match serde_json::from_slice::<CachedUser>(&bytes) {
                Ok(cached) if cached.generation == generation => match cached.into_user() {
                    Ok(user) => return Ok(Some(user)),
                    Err(e) => tracing::warn!(error = %e, "ignoring an invalid cached user"),
                },
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "ignoring an undecodable cached user"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "postgres user cache read failed"),
        }
        let user = self.lookup_email(email).await?;
        if let Some(u) = &user {
            let tags: Vec<CacheTag> = Self::user_tag(c, &u.id).into_iter().collect();
            let bytes = serde_json::to_vec(&CachedUser::from_user(u, generation))?;
            if let Err(e) = c.cache.set(&key, &bytes, c.ttl, &tags).await {
                tracing::warn!(error = %e, "postgres user cache write failed");
            }
        }
        Ok(user)
    }

    async fn update_user(&self, id: &UserId, update: UserUpdate) -> Result<Option<User>> {
        let permissions = update.permissions.map(dedup_permissions);
        if let Some(p) = &permissions {
            psm_core::check_user_permissions(p)?;
        }
        let perms: Option<Vec<&str>> = permissions
            .as_ref()
            .map(|p| p.iter().map(|p| p.as_str()).collect());
        let now = to_pg(self.storage.now());
        let row = self
            .one(
                "update user",
                &self.storage.sql().user_update,
                &[
                    &id.as_str(),
                    &update.username.as_ref().map(Username::as_str),
                    &update.username.as_ref().map(Username::normalized),
                    &update.email.as_ref().map(Email::as_str),
                    &update.email.as_ref().map(Email::normalized),
                    &update.password_hash.as_ref().map(PasswordHash::as_str),
                    &perms,
                    &now,
                ],
            )
            .await?;
        self.invalidate(id).await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    async fn delete_user(&self, id: &UserId) -> Result<bool> {
        let n = self
            .storage
            .exec(
                "delete user",
                &self.storage.sql().user_delete,
                &[&id.as_str()],
            )
            .await?;
        self.invalidate(id).await?;
        Ok(n > 0)
    }

    async fn list_users(
        &self,
        permission: Option<&PermissionRef>,
        page: Page,
    ) -> Result<Vec<User>> {
        // An offset past i64::MAX is past every table: the largest offset lists nothing too.
        let limit = i64::try_from(page.limit()).unwrap_or(i64::MAX);
        let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
        let rows = match permission {
            None => {
                self.storage
                    .rows("list users", &self.list.all, &[&limit, &offset])
                    .await?
            }
            Some(p) => {
                self.storage
                    .rows(
                        "list users",
                        &self.list.with_permission,
                        &[&p.as_str(), &limit, &offset],
                    )
                    .await?
            }
        };
        rows.iter().map(user_from_row).collect()
    }
}

impl fmt::Debug for PostgresUserStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresUserStore")
            .field("schema", &self.storage.schema())
            .field("cached", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}
