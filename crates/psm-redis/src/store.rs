//! [`RedisStore`]: the `PermissionStore` port on Redis.

use std::{collections::HashMap, sync::Arc};

use fred::{
    interfaces::HashesInterface,
    types::{Key, Value},
};
use futures::future::join_all;
use psm_core::{
    Capabilities, Error, ErrorKind, LimitPolicy, NewSession, Page, PermissionCheck, PermissionList,
    PermissionRef, PermissionStore, Result, SessionData, SessionId, SessionIdRef, SessionInfo,
    SessionLimit, Timestamp, Ttl, UserId, async_trait,
};

use crate::{
    PROVIDER, RedisConfig, RedisStorage,
    client_cache::{ClientCache, ClientCacheStats, Entry},
    conn::{Conn, Retry, Shared, now_micros, read},
    scripts,
    session::{self, decode, expiry, integer, strings, write_args},
};

/// The Redis permission store. Clones share the connection.
#[derive(Debug, Clone)]
pub struct RedisStore {
    pub(crate) shared: Arc<Shared>,
}

impl RedisStore {
    /// A store with its own [`RedisStorage`] (no I/O until [`initialize`](PermissionStore::initialize)).
    ///
    /// # Errors
    /// None today; kept fallible for configuration checks.
    pub fn new(config: RedisConfig) -> Result<Self> {
        Ok(RedisStorage::new(config)?.sessions())
    }

    /// The counters of the client-side cache, when `client_cache` is on.
    pub fn client_cache_stats(&self) -> Option<ClientCacheStats> {
        self.shared.client_cache.as_ref().map(|c| c.stats())
    }

    fn cluster(&self) -> bool {
        self.shared.config.cluster
    }

    pub(crate) fn prefix(&self) -> &str {
        self.shared.keys.prefix()
    }

    pub(crate) fn invalidate_local(&self, sid: &str) {
        if let Some(c) = &self.shared.client_cache {
            c.invalidate(sid);
        }
    }

    /// The stored session hash of `sid` as of `now`.
    pub(crate) async fn read(
        &self,
        conn: &Conn,
        sid: &str,
        now: i64,
    ) -> Result<Option<session::Stored>> {
        let map: HashMap<String, String> = read!(conn, "get_permissions", |c| c
            .hgetall::<HashMap<String, String>, _>(self.shared.keys.session(sid)))?;
        decode(map, now)
    }

    /// Fills the client cache for `sid` with one HGETALL; returns the entry. The fill is
    /// announced in the cache before the read, so an invalidation of `sid` that arrives before
    /// the insert cancels it (per key).
    async fn fill(&self, cache: &ClientCache, sid: &str) -> Result<Arc<Entry>> {
        let ticket = cache.begin_fill(sid);
        let conn = self.shared.conn()?;
        let map: HashMap<String, String> = read!(&conn, "check_permission", |c| c
            .hgetall::<HashMap<String, String>, _>(self.shared.keys.session(sid)))?;
        let entry = if map.is_empty() {
            Entry::missing()
        } else {
            let expires = map.get(" e").and_then(|e| e.parse::<i64>().ok());
            Entry::new(
                map.into_keys()
                    .filter(|k| !k.starts_with(' '))
                    .map(String::into_boxed_str),
                expires,
            )
        };
        let entry = Arc::new(entry);
        cache.finish_fill(sid, ticket, Arc::clone(&entry));
        Ok(entry)
    }

    /// Lists every live session id (SCAN on every master), sorted by id. Costs a scan of every
    /// session key of the prefix per call (documented in docs/providers.md).
    async fn all_ids(&self, conn: &Conn) -> Result<Vec<String>> {
        let keys = conn
            .scan(&self.shared.keys.session_pattern(), "list_sessions")
            .await?;
        let ids: Vec<String> = keys
            .iter()
            .filter_map(|k| self.shared.keys.session_id_of(k).map(str::to_owned))
            .collect();
        let now = now_micros();
        let mut live = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(512) {
            let checks = chunk.iter().map(|sid| async move {
                read!(conn, "list_sessions", |c| c
                    .hmget::<(Option<String>, Option<i64>), _, _>(
                        self.shared.keys.session(sid),
                        &[" u", " e"]
                    ))
            });
            for (sid, r) in chunk.iter().zip(join_all(checks).await) {
                let (owner, e) = r?;
                if owner.is_some() && e.is_none_or(|e| now < e) {
                    live.push(sid.clone());
                }
            }
        }
        Ok(live)
    }

    /// Every user with an index (SCAN).
    pub(crate) async fn indexed_users(&self, conn: &Conn) -> Result<Vec<String>> {
        conn.scan(
            &self.shared.keys.user_created_pattern(),
            "cleanup_expired_sessions",
        )
        .await
    }
}

/// A script's keys and arguments from strings.
pub(crate) fn kv(keys: &[&str], args: Vec<Value>) -> (Vec<Key>, Vec<Value>) {
    (keys.iter().map(|k| Key::from(*k)).collect(), args)
}

/// A fresh request token for an idempotent retry (128 bits from the OS CSPRNG).
pub(crate) fn request_token() -> Result<String> {
    Ok(psm_core::util::generate_session_id("q")?
        .as_str()
        .to_owned())
}

fn ok_tag(v: &[String]) -> Option<&str> {
    v.first().map(String::as_str)
}

fn limit_reached() -> Error {
    Error::new(
        ErrorKind::SessionLimitReached,
        "the user has reached the concurrent session limit",
    )
    .with_detail("provider", PROVIDER)
}

fn exists(id: &SessionIdRef) -> Error {
    Error::new(
        ErrorKind::SessionExists,
        "a live session with this id exists",
    )
    .with_detail("provider", PROVIDER)
    .with_detail("session", id.redacted())
}

pub(crate) fn parse_ids(v: Vec<String>) -> Result<Vec<SessionId>> {
    v.into_iter()
        .map(|s| SessionId::parse(&s).map_err(|_| crate::error::reply("list_sessions")))
        .collect()
}

/// Entries a standalone script reads per call when working through a whole index.
const WINDOW: usize = 256;

#[async_trait]
impl PermissionStore for RedisStore {
    fn provider_name(&self) -> &str {
        PROVIDER
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_native_ttl(true)
            .with_shared_across_processes(true)
    }

    async fn initialize(&self) -> Result<()> {
        self.shared.initialize().await
    }

    async fn close(&self) -> Result<()> {
        self.shared.close().await
    }

    async fn store_permissions(&self, id: &SessionIdRef, session: NewSession) -> Result<()> {
        let conn = self.shared.conn()?;
        let sid = id.as_str();
        self.invalidate_local(sid);
        if self.cluster() {
            let r = self.cl_store(&conn, sid, &session).await;
            self.invalidate_local(sid);
            return r;
        }
        let now = now_micros();
        let key = self.shared.keys.session(sid);
        conn.run(
            &scripts::SA_STORE,
            "store_permissions",
            Retry::Idempotent,
            || kv(&[&key], write_args(self.prefix(), now, sid, &session).0),
        )
        .await?;
        self.invalidate_local(sid);
        Ok(())
    }

    async fn create_session(
        &self,
        id: &SessionIdRef,
        session: NewSession,
        limit: SessionLimit,
    ) -> Result<Vec<SessionId>> {
        let conn = self.shared.conn()?;
        let sid = id.as_str();
        if self.cluster() {
            let r = self.cl_create(&conn, id, &session, limit).await;
            self.invalidate_local(sid);
            return r;
        }
        let now = now_micros();
        let key = self.shared.keys.session(sid);
        let token = request_token()?;
        let mut evicted = Vec::new();
        loop {
            let v = conn
                .run(
                    &scripts::SA_CREATE,
                    "create_session",
                    Retry::Idempotent,
                    || {
                        let (mut args, _) = write_args(self.prefix(), now, sid, &session);
                        args.push(limit.max.get().to_string().into());
                        args.push(policy(limit.policy).into());
                        args.push(token.as_str().into());
                        args.push(WINDOW.to_string().into());
                        kv(&[&key], args)
                    },
                )
                .await?;
            let v = strings(v, "create_session")?;
            let more = match ok_tag(&v) {
                Some("ok") => false,
                Some("more") => true,
                Some("exists") => return Err(exists(id)),
                Some("limit") => return Err(limit_reached()),
                _ => return Err(crate::error::reply("create_session")),
            };
            for e in parse_ids(v[1..].to_vec())? {
                self.invalidate_local(e.as_str());
                evicted.push(e);
            }
            if !more {
                self.invalidate_local(sid);
                return Ok(evicted);
            }
        }
    }

    async fn check_permission(
        &self,
        id: &SessionIdRef,
        permission: &PermissionRef,
    ) -> Result<bool> {
        let sid = id.as_str();
        if let Some(cache) = &self.shared.client_cache {
            if let Some(hit) = cache.check(sid, permission.as_str()) {
                return Ok(hit);
            }
            if cache.usable() {
                // Boxed: the fill's future is large, and this one is copied on every check.
                let entry = Box::pin(self.fill(cache, sid)).await?;
                return Ok(entry.grants_now(permission.as_str()));
            }
        }
        let conn = self.shared.conn()?;
        let (granted, e): (Option<i64>, Option<i64>) = read!(&conn, "check_permission", |c| c
            .hmget::<(Option<i64>, Option<i64>), _, _>(
                self.shared.keys.session(sid),
                &[permission.as_str(), " e"]
            ))?;
        Ok(granted.is_some() && e.is_none_or(|e| now_micros() < e))
    }

    async fn check_permissions(
        &self,
        id: &SessionIdRef,
        permissions: &PermissionList,
    ) -> Result<PermissionCheck> {
        let sid = id.as_str();
        if let Some(cache) = &self.shared.client_cache {
            let entry = match cache.entry(sid) {
                Some(e) => Some(e),
                None if cache.usable() => Some(Box::pin(self.fill(cache, sid)).await?),
                None => None,
            };
            if let Some(entry) = entry {
                return Ok(PermissionCheck::from_entries(
                    permissions
                        .iter()
                        .map(|p| (p.clone(), entry.grants_now(p.as_str())))
                        .collect(),
                ));
            }
        }
        let conn = self.shared.conn()?;
        let got: Vec<Option<String>> = read!(&conn, "check_permissions", |c| {
            let mut fields: Vec<&str> = permissions.iter_str().collect();
            fields.push(" e");
            c.hmget::<Vec<Option<String>>, _, _>(self.shared.keys.session(sid), fields)
        })?;
        let live = match got.last() {
            Some(Some(e)) => e.parse::<i64>().is_ok_and(|e| now_micros() < e),
            _ => true,
        };
        Ok(PermissionCheck::from_entries(
            permissions
                .iter()
                .zip(got.iter())
                .map(|(p, g)| (p.clone(), live && g.is_some()))
                .collect(),
        ))
    }

    async fn get_permissions(&self, id: &SessionIdRef) -> Result<Option<SessionData>> {
        let conn = self.shared.conn()?;
        Ok(self
            .read(&conn, id.as_str(), now_micros())
            .await?
            .map(|s| s.data))
    }

    async fn invalidate_session(&self, id: &SessionIdRef) -> Result<bool> {
        let conn = self.shared.conn()?;
        let sid = id.as_str();
        self.invalidate_local(sid);
        let r = if self.cluster() {
            self.cl_invalidate(&conn, sid).await
        } else {
            let key = self.shared.keys.session(sid);
            let now = now_micros();
            let v = conn
                .run(
                    &scripts::SA_INVALIDATE,
                    "invalidate_session",
                    Retry::Never,
                    || {
                        kv(
                            &[&key],
                            vec![self.prefix().into(), now.to_string().into(), sid.into()],
                        )
                    },
                )
                .await?;
            integer(v, "invalidate_session").map(|n| n == 1)
        };
        self.invalidate_local(sid);
        r
    }

    async fn update_permissions(
        &self,
        id: &SessionIdRef,
        permissions: PermissionList,
        ttl: Option<Ttl>,
    ) -> Result<bool> {
        self.update(id, Some(&permissions), ttl).await
    }

    async fn extend_session_ttl(&self, id: &SessionIdRef, ttl: Ttl) -> Result<bool> {
        self.update(id, None, Some(ttl)).await
    }

    async fn get_session_info(&self, id: &SessionIdRef) -> Result<Option<SessionInfo>> {
        let conn = self.shared.conn()?;
        let now = now_micros();
        Ok(self.read(&conn, id.as_str(), now).await?.map(|s| {
            SessionInfo::new(
                s.data,
                s.expires.map(Timestamp::from_unix_micros),
                Timestamp::from_unix_micros(now),
                PROVIDER,
            )
        }))
    }

    async fn list_sessions(&self, user: Option<&UserId>, page: Page) -> Result<Vec<SessionId>> {
        let conn = self.shared.conn()?;
        let Some(user) = user else {
            let ids = self.all_ids(&conn).await?;
            return parse_ids(
                ids.into_iter()
                    .skip(page.offset_usize())
                    .take(page.limit())
                    .collect(),
            );
        };
        if self.cluster() {
            let live = self
                .cl_live_entries(&conn, user.as_str(), page.offset_usize(), page.limit())
                .await?;
            return parse_ids(live);
        }
        let uk = self.shared.keys.user_index(user.as_str());
        let now = now_micros();
        let v = conn
            .run(
                &scripts::SA_LIST_USER,
                "list_sessions",
                Retry::Idempotent,
                || {
                    kv(
                        &[&uk.created, &uk.expiry],
                        vec![
                            self.prefix().into(),
                            now.to_string().into(),
                            user.as_str().into(),
                            // Lua prints numbers with %.14g: keep the offset exact (no index is that long).
                            page.offset().min(1_000_000_000_000).to_string().into(),
                            page.limit().to_string().into(),
                        ],
                    )
                },
            )
            .await?;
        parse_ids(strings(v, "list_sessions")?)
    }

    async fn cleanup_expired_sessions(&self) -> Result<u64> {
        let conn = self.shared.conn()?;
        let mut total = 0u64;
        for created_key in self.indexed_users(&conn).await? {
            let Some(user) = user_of_index(self.prefix(), &created_key) else {
                continue;
            };
            let n = if self.cluster() {
                self.cl_cleanup_user(&conn, &user).await?
            } else {
                self.sa_cleanup_user(&conn, &user).await?
            };
            total += u64::try_from(n).unwrap_or(0);
        }
        Ok(total)
    }

    async fn invalidate_user_sessions(&self, user: &UserId) -> Result<u64> {
        let conn = self.shared.conn()?;
        if let Some(c) = &self.shared.client_cache {
            c.clear();
        }
        let r = if self.cluster() {
            self.cl_invalidate_user(&conn, user.as_str()).await
        } else {
            self.sa_invalidate_user(&conn, user.as_str()).await
        };
        if let Some(c) = &self.shared.client_cache {
            c.clear();
        }
        r
    }
}

impl RedisStore {
    /// Standalone cleanup of one user's index, one window per script call.
    async fn sa_cleanup_user(&self, conn: &Conn, user: &str) -> Result<i64> {
        const OP: &str = "cleanup_expired_sessions";
        let uk = self.shared.keys.user_index(user);
        let mut count = 0;
        let mut start = 0i64;
        loop {
            let now = now_micros();
            let v = conn
                .run(&scripts::SA_CLEANUP_USER, OP, Retry::Idempotent, || {
                    kv(
                        &[&uk.created, &uk.expiry],
                        vec![
                            self.prefix().into(),
                            now.to_string().into(),
                            user.into(),
                            start.to_string().into(),
                            WINDOW.to_string().into(),
                        ],
                    )
                })
                .await?;
            let [found, examined, removed] = triple(v, OP)?;
            count += found;
            start += examined - removed;
            if examined < WINDOW as i64 {
                break;
            }
        }
        let mut start = 0i64;
        loop {
            let v = conn
                .run(&scripts::SA_CLEANUP_EXPIRY, OP, Retry::Idempotent, || {
                    kv(
                        &[&uk.created, &uk.expiry],
                        vec![
                            self.prefix().into(),
                            now_micros().to_string().into(),
                            start.to_string().into(),
                            WINDOW.to_string().into(),
                        ],
                    )
                })
                .await?;
            let pair = strings(v, OP)?;
            let num = |i: usize| -> Result<i64> {
                pair.get(i)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| crate::error::reply(OP))
            };
            let (examined, removed) = (num(0)?, num(1)?);
            start += examined - removed;
            if examined < WINDOW as i64 {
                break;
            }
        }
        Ok(count)
    }

    /// Standalone invalidate_user_sessions, one window per script call.
    async fn sa_invalidate_user(&self, conn: &Conn, user: &str) -> Result<u64> {
        const OP: &str = "invalidate_user_sessions";
        let uk = self.shared.keys.user_index(user);
        let mut count = 0u64;
        loop {
            let now = now_micros();
            let v = conn
                .run(&scripts::SA_INVALIDATE_USER, OP, Retry::Idempotent, || {
                    kv(
                        &[&uk.created, &uk.expiry],
                        vec![
                            self.prefix().into(),
                            now.to_string().into(),
                            user.into(),
                            WINDOW.to_string().into(),
                        ],
                    )
                })
                .await?;
            let pair = strings(v, OP)?;
            let num = |i: usize| -> Result<u64> {
                pair.get(i)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| crate::error::reply(OP))
            };
            count += num(0)?;
            if num(1)? < WINDOW as u64 {
                return Ok(count);
            }
        }
    }

    /// update_permissions (with `perms`) and extend_session_ttl (without).
    async fn update(
        &self,
        id: &SessionIdRef,
        perms: Option<&PermissionList>,
        ttl: Option<Ttl>,
    ) -> Result<bool> {
        let conn = self.shared.conn()?;
        let sid = id.as_str();
        self.invalidate_local(sid);
        let now = now_micros();
        let r = if self.cluster() {
            self.cl_update(
                &conn,
                sid,
                now,
                perms,
                ttl.map(|t| expiry(now, t.as_secs())),
            )
            .await
        } else {
            let (expires, ttl_ms) = match ttl {
                Some(t) => {
                    let (e, ms) = expiry(now, t.as_secs());
                    (e.to_string(), ms.to_string())
                }
                None => (String::new(), String::new()),
            };
            let key = self.shared.keys.session(sid);
            let v = conn
                .run(
                    &scripts::SA_UPDATE,
                    "update_permissions",
                    Retry::Idempotent,
                    || {
                        let mut args: Vec<Value> = vec![
                            self.prefix().into(),
                            now.to_string().into(),
                            sid.into(),
                            now.to_string().into(),
                            expires.as_str().into(),
                            ttl_ms.as_str().into(),
                        ];
                        push_perms(&mut args, perms);
                        kv(&[&key], args)
                    },
                )
                .await?;
            integer(v, "update_permissions").map(|n| n == 1)
        };
        self.invalidate_local(sid);
        r
    }
}

/// A `{a, b, c}` integer reply.
fn triple(v: Value, op: &'static str) -> Result<[i64; 3]> {
    let s = strings(v, op)?;
    let num = |i: usize| -> Result<i64> {
        s.get(i)
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| crate::error::reply(op))
    };
    Ok([num(0)?, num(1)?, num(2)?])
}

/// Appends `n perms...`, or `-1` to keep the permissions.
pub(crate) fn push_perms(args: &mut Vec<Value>, perms: Option<&PermissionList>) {
    match perms {
        Some(p) => {
            args.push(p.len().to_string().into());
            for s in p.iter_str() {
                args.push(s.into());
            }
        }
        None => args.push("-1".into()),
    }
}

pub(crate) fn policy(p: LimitPolicy) -> &'static str {
    match p {
        LimitPolicy::EvictOldest => "evict",
        _ => "reject",
    }
}

/// The user id of a `<prefix>u:{<escaped>}:c` key.
pub(crate) fn user_of_index(prefix: &str, key: &str) -> Option<String> {
    let enc = key
        .strip_prefix(prefix)?
        .strip_prefix("u:{")?
        .strip_suffix("}:c")?;
    percent_encoding::percent_decode_str(enc)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}
