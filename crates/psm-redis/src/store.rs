//! [`RedisStore`]: the `PermissionStore` port on Redis.

use std::{collections::HashMap, sync::Arc};

use fred::{interfaces::HashesInterface, types::Value};
use futures::{StreamExt, future::join_all};
use psm_core::{
    Capabilities, Error, ErrorKind, LimitPolicy, NewSession, Page, PermissionCheck, PermissionList,
    PermissionRef, PermissionStore, Result, SessionData, SessionId, SessionIdRef, SessionInfo,
    SessionLimit, Timestamp, Ttl, UserId, async_trait,
};

use crate::{
    PROVIDER, RedisConfig, RedisStorage,
    client_cache::{ClientCacheStats, Entry},
    conn::{Conn, Shared, now_micros},
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
        let map: HashMap<String, String> = conn
            .pool
            .hgetall(self.shared.keys.session(sid))
            .await
            .map_err(|e| conn.err(&e, "get_permissions"))?;
        decode(map, now)
    }

    /// Fills the client cache for `sid` with one HGETALL; returns the entry.
    async fn fill(&self, conn: &Conn, sid: &str) -> Result<Arc<Entry>> {
        let cache = self.shared.client_cache.as_ref();
        let epoch = cache.map(|c| c.epoch());
        let map: HashMap<String, String> = conn
            .pool
            .hgetall(self.shared.keys.session(sid))
            .await
            .map_err(|e| conn.err(&e, "check_permission"))?;
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
        if let (Some(c), Some(ep)) = (cache, epoch) {
            c.insert(sid, Arc::clone(&entry), ep);
        }
        Ok(entry)
    }

    /// Lists every live session id (SCAN on every master), sorted.
    async fn all_ids(&self, conn: &Conn) -> Result<Vec<String>> {
        let pattern = self.shared.keys.session_pattern();
        let client = conn.pool.next();
        let mut stream = if self.cluster() {
            client
                .scan_cluster_buffered(pattern, Some(1000), None)
                .boxed()
        } else {
            client.scan_buffered(pattern, Some(1000), None).boxed()
        };
        let mut ids = Vec::new();
        while let Some(key) = stream.next().await {
            let key = key.map_err(|e| conn.err(&e, "list_sessions"))?;
            if let Some(sid) = key.as_str().and_then(|k| self.shared.keys.session_id_of(k)) {
                ids.push(sid.to_owned());
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let now = now_micros();
        let mut live = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(512) {
            let checks = chunk.iter().map(|sid| {
                let key = self.shared.keys.session(sid);
                async move {
                    let v: (Option<String>, Option<i64>) =
                        conn.pool.hmget(key, &[" u", " e"]).await?;
                    Ok::<_, fred::error::Error>(v)
                }
            });
            for (sid, r) in chunk.iter().zip(join_all(checks).await) {
                let (owner, e) = r.map_err(|e| conn.err(&e, "list_sessions"))?;
                if owner.is_some() && e.is_none_or(|e| now < e) {
                    live.push(sid.clone());
                }
            }
        }
        Ok(live)
    }

    /// Every user with an index (SCAN).
    pub(crate) async fn indexed_users(&self, conn: &Conn) -> Result<Vec<String>> {
        let pattern = self.shared.keys.user_created_pattern();
        let client = conn.pool.next();
        let mut stream = if self.cluster() {
            client
                .scan_cluster_buffered(pattern, Some(1000), None)
                .boxed()
        } else {
            client.scan_buffered(pattern, Some(1000), None).boxed()
        };
        let mut keys = Vec::new();
        while let Some(key) = stream.next().await {
            let key = key.map_err(|e| conn.err(&e, "cleanup_expired_sessions"))?;
            if let Some(k) = key.as_str() {
                keys.push(k.to_owned());
            }
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
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
            return self.cl_store(&conn, sid, &session).await;
        }
        let (args, _) = write_args(self.prefix(), now_micros(), sid, &session);
        conn.run(
            &scripts::SA_STORE,
            vec![self.shared.keys.session(sid)],
            args,
            "store_permissions",
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
        let (mut args, _) = write_args(self.prefix(), now_micros(), sid, &session);
        args.push(limit.max.get().to_string().into());
        args.push(policy(limit.policy).into());
        let v = conn
            .run(
                &scripts::SA_CREATE,
                vec![self.shared.keys.session(sid)],
                args,
                "create_session",
            )
            .await?;
        let v = strings(v, "create_session")?;
        self.invalidate_local(sid);
        match ok_tag(&v) {
            Some("ok") => {
                let evicted = parse_ids(v[1..].to_vec())?;
                for e in &evicted {
                    self.invalidate_local(e.as_str());
                }
                Ok(evicted)
            }
            Some("exists") => Err(exists(id)),
            Some("limit") => Err(limit_reached()),
            _ => Err(crate::error::reply("create_session")),
        }
    }

    async fn check_permission(
        &self,
        id: &SessionIdRef,
        permission: &PermissionRef,
    ) -> Result<bool> {
        let conn = self.shared.conn()?;
        let sid = id.as_str();
        if let Some(cache) = &self.shared.client_cache {
            if let Some(hit) = cache.check(sid, permission.as_str()) {
                return Ok(hit);
            }
            if cache.usable() {
                let entry = self.fill(&conn, sid).await?;
                return Ok(entry.grants_now(permission.as_str()));
            }
        }
        let (granted, e): (Option<i64>, Option<i64>) = conn
            .pool
            .hmget(self.shared.keys.session(sid), &[permission.as_str(), " e"])
            .await
            .map_err(|e| conn.err(&e, "check_permission"))?;
        Ok(granted.is_some() && e.is_none_or(|e| now_micros() < e))
    }

    async fn check_permissions(
        &self,
        id: &SessionIdRef,
        permissions: &PermissionList,
    ) -> Result<PermissionCheck> {
        let conn = self.shared.conn()?;
        let sid = id.as_str();
        if let Some(cache) = &self.shared.client_cache {
            let entry = match cache.entry(sid) {
                Some(e) => Some(e),
                None if cache.usable() => Some(self.fill(&conn, sid).await?),
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
        let mut fields: Vec<&str> = permissions.iter_str().collect();
        fields.push(" e");
        let got: Vec<Option<String>> = conn
            .pool
            .hmget(self.shared.keys.session(sid), fields)
            .await
            .map_err(|e| conn.err(&e, "check_permissions"))?;
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
        let r = if self.cluster() {
            self.cl_invalidate(&conn, sid).await
        } else {
            let args: Vec<Value> = vec![
                self.prefix().into(),
                now_micros().to_string().into(),
                sid.into(),
            ];
            let v = conn
                .run(
                    &scripts::SA_INVALIDATE,
                    vec![self.shared.keys.session(sid)],
                    args,
                    "invalidate_session",
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
            let live = self.cl_live_entries(&conn, user.as_str()).await?;
            return parse_ids(
                live.into_iter()
                    .skip(page.offset_usize())
                    .take(page.limit())
                    .collect(),
            );
        }
        let uk = self.shared.keys.user_index(user.as_str());
        let args: Vec<Value> = vec![
            self.prefix().into(),
            now_micros().to_string().into(),
            user.as_str().into(),
            page.offset().min(i64::MAX as u64).to_string().into(),
            page.limit().to_string().into(),
        ];
        let v = conn
            .run(
                &scripts::SA_LIST_USER,
                vec![uk.created, uk.expiry],
                args,
                "list_sessions",
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
                let uk = self.shared.keys.user_index(&user);
                let args: Vec<Value> = vec![
                    self.prefix().into(),
                    now_micros().to_string().into(),
                    user.as_str().into(),
                ];
                let v = conn
                    .run(
                        &scripts::SA_CLEANUP_USER,
                        vec![uk.created, uk.expiry],
                        args,
                        "cleanup_expired_sessions",
                    )
                    .await?;
                integer(v, "cleanup_expired_sessions")?
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
        if self.cluster() {
            return self.cl_invalidate_user(&conn, user.as_str()).await;
        }
        let uk = self.shared.keys.user_index(user.as_str());
        let args: Vec<Value> = vec![
            self.prefix().into(),
            now_micros().to_string().into(),
            user.as_str().into(),
        ];
        let v = conn
            .run(
                &scripts::SA_INVALIDATE_USER,
                vec![uk.created, uk.expiry],
                args,
                "invalidate_user_sessions",
            )
            .await?;
        let n = integer(v, "invalidate_user_sessions")?;
        if let Some(c) = &self.shared.client_cache {
            c.clear();
        }
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

impl RedisStore {
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
        let (expires, ttl_ms) = match ttl {
            Some(t) => {
                let (e, ms) = expiry(now, t.as_secs());
                (e.to_string(), ms.to_string())
            }
            None => (String::new(), String::new()),
        };
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
            let mut args: Vec<Value> = vec![
                self.prefix().into(),
                now.to_string().into(),
                sid.into(),
                now.to_string().into(),
                expires.into(),
                ttl_ms.into(),
            ];
            push_perms(&mut args, perms);
            let v = conn
                .run(
                    &scripts::SA_UPDATE,
                    vec![self.shared.keys.session(sid)],
                    args,
                    "update_permissions",
                )
                .await?;
            integer(v, "update_permissions").map(|n| n == 1)
        };
        self.invalidate_local(sid);
        r
    }
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
