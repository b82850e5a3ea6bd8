//! [`PostgresStore`]: the `PermissionStore` port on the `sessions` table.

use psm_core::{
    Capabilities, Error, ErrorKind, LimitPolicy, Metadata, NewSession, Page, PermissionCheck,
    PermissionList, PermissionRef, PermissionStore, Result, SessionData, SessionId, SessionIdRef,
    SessionInfo, SessionLimit, Ttl, UserId, async_trait,
};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::{
    PROVIDER, PostgresStorage,
    error::{corrupt, pg_error},
    storage::{from_pg, to_pg},
};

/// Sessions in PostgreSQL: one row per session in `<schema>.sessions`, permissions as `text[]`.
///
/// A check is one prepared `SELECT` by primary key on a pooled connection; `create_session`
/// serializes one user's creations with a transaction-scoped advisory lock, so the per-user limit
/// holds under any concurrency. Time comes from the storage's clock, passed as a parameter.
///
/// # Clone
/// Cloning is cheap and shares the pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    storage: PostgresStorage,
}

impl PostgresStore {
    pub(crate) fn from_storage(storage: PostgresStorage) -> Self {
        Self { storage }
    }

    /// The storage (pool, configuration) this store runs on.
    pub fn storage(&self) -> &PostgresStorage {
        &self.storage
    }

    fn now(&self) -> OffsetDateTime {
        to_pg(self.storage.now())
    }

    async fn read(
        &self,
        id: &SessionIdRef,
    ) -> Result<Option<(SessionData, Option<OffsetDateTime>)>> {
        let now = self.now();
        let row = self
            .storage
            .row(
                "get session",
                &self.storage.sql().get,
                &[&id.as_str(), &now],
            )
            .await?;
        row.map(|r| session_from_row(&r)).transpose()
    }

    async fn create_in_tx(
        &self,
        id: &SessionIdRef,
        s: &NewSession,
        limit: SessionLimit,
    ) -> Result<Vec<SessionId>> {
        const OP: &str = "create session";
        let sql = self.storage.sql();
        let now_ts = self.storage.now();
        let now = to_pg(now_ts);
        let expires = s.ttl.map(|t| to_pg(now_ts.plus_ttl(t)));
        let perms: Vec<&str> = s.permissions.iter_str().collect();
        let metadata = s.metadata.to_json();
        let limited = limit.max.get() != u32::MAX;
        // The whole transaction counts as one call.
        self.storage
            .with_client(OP, async |client| {
                let tx = client.transaction().await.map_err(|e| pg_error(OP, e))?;
                let pe = |e| pg_error(OP, e);
                if limited {
                    let lock = tx.prepare_cached(&sql.lock_user).await.map_err(pe)?;
                    tx.query(&lock, &[&s.user_id.as_str(), &self.storage.inner.lock_seed])
                        .await
                        .map_err(pe)?;
                }
                let del = tx
                    .prepare_cached(&sql.delete_expired_id)
                    .await
                    .map_err(pe)?;
                tx.execute(&del, &[&id.as_str(), &now]).await.map_err(pe)?;
                let ins = tx.prepare_cached(&sql.insert_new).await.map_err(pe)?;
                let inserted = tx
                    .execute(
                        &ins,
                        &[
                            &id.as_str(),
                            &s.user_id.as_str(),
                            &perms,
                            &metadata,
                            &now,
                            &expires,
                        ],
                    )
                    .await
                    .map_err(pe)?;
                if inserted == 0 {
                    return Err(Error::new(
                        ErrorKind::SessionExists,
                        "a live session with this id already exists",
                    )
                    .with_detail("session", id.redacted()));
                }
                let mut evicted = Vec::new();
                if limited {
                    let live = tx
                        .prepare_cached(&sql.live_of_user_except)
                        .await
                        .map_err(pe)?;
                    let rows = tx
                        .query(&live, &[&s.user_id.as_str(), &id.as_str(), &now])
                        .await
                        .map_err(pe)?;
                    let max = limit.max_usize();
                    if rows.len() >= max {
                        match limit.policy {
                            LimitPolicy::Reject => {
                                return Err(Error::new(
                                    ErrorKind::SessionLimitReached,
                                    "the user has reached the concurrent session limit",
                                )
                                .with_detail("limit", max));
                            }
                            LimitPolicy::EvictOldest => {
                                let n = rows.len() + 1 - max;
                                let mut ids = Vec::with_capacity(n);
                                for r in &rows[..n] {
                                    let text: &str = r.try_get(0).map_err(pe)?;
                                    ids.push(text.to_owned());
                                }
                                let del = tx.prepare_cached(&sql.delete_ids).await.map_err(pe)?;
                                tx.execute(&del, &[&ids]).await.map_err(pe)?;
                                for text in ids {
                                    evicted.push(
                                        SessionId::parse(&text)
                                            .map_err(|e| corrupt("session id", e))?,
                                    );
                                }
                            }
                        }
                    }
                }
                tx.commit().await.map_err(pe)?;
                Ok(evicted)
            })
            .await
    }
}

fn session_from_row(r: &Row) -> Result<(SessionData, Option<OffsetDateTime>)> {
    let pe = |e| pg_error("read session", e);
    let user: &str = r.try_get(0).map_err(pe)?;
    let perms: Vec<&str> = r.try_get(1).map_err(pe)?;
    let metadata: &str = r.try_get(2).map_err(pe)?;
    let created: OffsetDateTime = r.try_get(3).map_err(pe)?;
    let updated: OffsetDateTime = r.try_get(4).map_err(pe)?;
    let expires: Option<OffsetDateTime> = r.try_get(5).map_err(pe)?;
    let data = SessionData {
        user_id: UserId::parse(user).map_err(|e| corrupt("user id", e))?,
        permissions: PermissionList::parse(perms).map_err(|e| corrupt("permission list", e))?,
        created_at: from_pg(created),
        updated_at: from_pg(updated),
        metadata: Metadata::from_json(metadata).map_err(|e| corrupt("metadata", e))?,
    };
    Ok((data, expires))
}

fn ids_from_rows(rows: &[Row]) -> Result<Vec<SessionId>> {
    rows.iter()
        .map(|r| {
            let text: &str = r.try_get(0).map_err(|e| pg_error("list sessions", e))?;
            SessionId::parse(text).map_err(|e| corrupt("session id", e))
        })
        .collect()
}

fn page_params(page: Page) -> (i64, i64) {
    let limit = i64::try_from(page.limit()).unwrap_or(i64::MAX);
    let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
    (limit, offset)
}

#[async_trait]
impl PermissionStore for PostgresStore {
    fn provider_name(&self) -> &str {
        PROVIDER
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_honours_clock(true)
            .with_durable(true)
            .with_shared_across_processes(true)
    }

    async fn initialize(&self) -> Result<()> {
        self.storage.initialize().await
    }

    async fn close(&self) -> Result<()> {
        self.storage.close().await
    }

    async fn store_permissions(&self, id: &SessionIdRef, session: NewSession) -> Result<()> {
        let now_ts = self.storage.now();
        let now = to_pg(now_ts);
        let expires = session.ttl.map(|t| to_pg(now_ts.plus_ttl(t)));
        let perms: Vec<&str> = session.permissions.iter_str().collect();
        let metadata = session.metadata.to_json();
        self.storage
            .exec(
                "store session",
                &self.storage.sql().upsert,
                &[
                    &id.as_str(),
                    &session.user_id.as_str(),
                    &perms,
                    &metadata,
                    &now,
                    &expires,
                ],
            )
            .await
            .map(drop)
    }

    async fn create_session(
        &self,
        id: &SessionIdRef,
        session: NewSession,
        limit: SessionLimit,
    ) -> Result<Vec<SessionId>> {
        self.create_in_tx(id, &session, limit).await
    }

    async fn check_permission(
        &self,
        id: &SessionIdRef,
        permission: &PermissionRef,
    ) -> Result<bool> {
        let now = self.now();
        let row = self
            .storage
            .row(
                "check permission",
                &self.storage.sql().check,
                &[&id.as_str(), &now, &permission.as_str()],
            )
            .await?;
        match row {
            Some(r) => r
                .try_get::<_, Option<bool>>(0)
                .map(|g| g.unwrap_or(false))
                .map_err(|e| pg_error("check permission", e)),
            None => Ok(false),
        }
    }

    async fn check_permissions(
        &self,
        id: &SessionIdRef,
        permissions: &PermissionList,
    ) -> Result<PermissionCheck> {
        let now = self.now();
        let row = self
            .storage
            .row(
                "check permissions",
                &self.storage.sql().permissions,
                &[&id.as_str(), &now],
            )
            .await?;
        let Some(row) = row else {
            return Ok(PermissionCheck::all_false(permissions));
        };
        let held: Vec<&str> = row
            .try_get(0)
            .map_err(|e| pg_error("check permissions", e))?;
        let held: std::collections::HashSet<&str> = held.into_iter().collect();
        Ok(PermissionCheck::from_entries(
            permissions
                .iter()
                .map(|p| (p.clone(), held.contains(p.as_str())))
                .collect(),
        ))
    }

    async fn get_permissions(&self, id: &SessionIdRef) -> Result<Option<SessionData>> {
        Ok(self.read(id).await?.map(|(d, _)| d))
    }

    async fn invalidate_session(&self, id: &SessionIdRef) -> Result<bool> {
        let now = self.now();
        let n = self
            .storage
            .exec(
                "invalidate session",
                &self.storage.sql().invalidate,
                &[&id.as_str(), &now],
            )
            .await?;
        Ok(n > 0)
    }

    async fn update_permissions(
        &self,
        id: &SessionIdRef,
        permissions: PermissionList,
        ttl: Option<Ttl>,
    ) -> Result<bool> {
        let now_ts = self.storage.now();
        let now = to_pg(now_ts);
        let expires = ttl.map(|t| to_pg(now_ts.plus_ttl(t)));
        let perms: Vec<&str> = permissions.iter_str().collect();
        let n = self
            .storage
            .exec(
                "update permissions",
                &self.storage.sql().update,
                &[&id.as_str(), &perms, &now, &expires],
            )
            .await?;
        Ok(n > 0)
    }

    async fn extend_session_ttl(&self, id: &SessionIdRef, ttl: Ttl) -> Result<bool> {
        let now_ts = self.storage.now();
        let now = to_pg(now_ts);
        let expires = to_pg(now_ts.plus_ttl(ttl));
        let n = self
            .storage
            .exec(
                "extend session",
                &self.storage.sql().extend,
                &[&id.as_str(), &expires, &now],
            )
            .await?;
        Ok(n > 0)
    }

    async fn get_session_info(&self, id: &SessionIdRef) -> Result<Option<SessionInfo>> {
        let now = self.storage.now();
        Ok(self
            .read(id)
            .await?
            .map(|(data, expires)| SessionInfo::new(data, expires.map(from_pg), now, PROVIDER)))
    }

    async fn list_sessions(&self, user: Option<&UserId>, page: Page) -> Result<Vec<SessionId>> {
        let now = self.now();
        let (limit, offset) = page_params(page);
        let rows = match user {
            Some(u) => {
                self.storage
                    .rows(
                        "list sessions",
                        &self.storage.sql().list_user,
                        &[&u.as_str(), &now, &limit, &offset],
                    )
                    .await?
            }
            None => {
                self.storage
                    .rows(
                        "list sessions",
                        &self.storage.sql().list_all,
                        &[&now, &limit, &offset],
                    )
                    .await?
            }
        };
        ids_from_rows(&rows)
    }

    async fn cleanup_expired_sessions(&self) -> Result<u64> {
        let now = self.now();
        self.storage
            .exec("cleanup sessions", &self.storage.sql().cleanup, &[&now])
            .await
    }

    async fn invalidate_user_sessions(&self, user: &UserId) -> Result<u64> {
        let now = self.now();
        self.storage
            .exec(
                "invalidate user sessions",
                &self.storage.sql().invalidate_user,
                &[&user.as_str(), &now],
            )
            .await
    }
}
