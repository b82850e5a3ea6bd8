//! [`PostgresTokenStateStore`]: refresh-token families and user epochs.

use psm_core::{
    ConsumeOutcome, Error, ErrorKind, FamilyId, NewTokenFamily, Result, SessionId, TokenFamily,
    TokenId, TokenStateStore, UserId, async_trait,
};
use time::OffsetDateTime;
use tokio_postgres::{Row, types::ToSql};

use crate::{
    PROVIDER, PostgresStorage,
    error::{corrupt, pg_error},
    storage::{from_pg, to_pg},
};

/// Token state in PostgreSQL: `<schema>.token_families` (one row per family, with the consumed
/// token ids as a `text[]`) and `<schema>.token_epochs`.
///
/// `consume` is a compare-and-swap: one `UPDATE … WHERE current_token = $presented RETURNING`;
/// concurrent consumers of one id queue on the row lock and re-check, so exactly one rotates and
/// the others then find the id consumed (reuse: the family is revoked).
///
/// # Clone
/// Cloning is cheap and shares the pool.
#[derive(Debug, Clone)]
pub struct PostgresTokenStateStore {
    storage: PostgresStorage,
}

impl PostgresTokenStateStore {
    pub(crate) fn from_storage(storage: PostgresStorage) -> Self {
        Self { storage }
    }

    /// The storage this store runs on.
    pub fn storage(&self) -> &PostgresStorage {
        &self.storage
    }

    /// The first row of `sql`, if any (the statements here return at most one).
    async fn one(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        Ok(self.storage.rows(op, sql, params).await?.into_iter().next())
    }

    fn now(&self) -> OffsetDateTime {
        to_pg(self.storage.now())
    }
}

fn family_from_row(r: &Row) -> Result<TokenFamily> {
    let pe = |e| pg_error("read token family", e);
    let id: &str = r.try_get(0).map_err(pe)?;
    let user: &str = r.try_get(1).map_err(pe)?;
    let session: Option<&str> = r.try_get(2).map_err(pe)?;
    let current: &str = r.try_get(3).map_err(pe)?;
    let created: OffsetDateTime = r.try_get(4).map_err(pe)?;
    let expires: OffsetDateTime = r.try_get(5).map_err(pe)?;
    let revoked: bool = r.try_get(6).map_err(pe)?;
    let rotations: i64 = r.try_get(7).map_err(pe)?;
    Ok(TokenFamily {
        id: FamilyId::parse(id).map_err(|e| corrupt("family id", e))?,
        user_id: UserId::parse(user).map_err(|e| corrupt("user id", e))?,
        session_id: session
            .map(SessionId::parse)
            .transpose()
            .map_err(|e| corrupt("session id", e))?,
        current_token: TokenId::parse(current).map_err(|e| corrupt("token id", e))?,
        created_at: from_pg(created),
        expires_at: from_pg(expires),
        revoked,
        rotations: u32::try_from(rotations.max(0)).unwrap_or(u32::MAX),
    })
}

#[async_trait]
impl TokenStateStore for PostgresTokenStateStore {
    fn provider_name(&self) -> &str {
        PROVIDER
    }

    async fn create_family(&self, family: NewTokenFamily) -> Result<TokenFamily> {
        let now = self.now();
        let expires = to_pg(family.expires_at);
        let session = family
            .session_id
            .as_deref()
            .map(psm_core::SessionIdRef::as_str);
        let row = self
            .one(
                "create token family",
                &self.storage.sql().family_create,
                &[
                    &family.id.as_str(),
                    &family.user_id.as_str(),
                    &session,
                    &family.first_token.as_str(),
                    &now,
                    &expires,
                ],
            )
            .await?;
        match row {
            Some(r) => family_from_row(&r),
            None => Err(Error::new(
                ErrorKind::Concurrency,
                "a token family with this id already exists",
            )),
        }
    }

    async fn get_family(&self, id: &FamilyId) -> Result<Option<TokenFamily>> {
        let now = self.now();
        let row = self
            .one(
                "get token family",
                &self.storage.sql().family_get,
                &[&id.as_str(), &now],
            )
            .await?;
        row.map(|r| family_from_row(&r)).transpose()
    }

    async fn consume(
        &self,
        family: &FamilyId,
        presented: &TokenId,
        next: &TokenId,
    ) -> Result<ConsumeOutcome> {
        const OP: &str = "consume refresh token";
        let sql = self.storage.sql();
        let now = self.now();
        let (fid, tid) = (family.as_str(), presented.as_str());
        if let Some(r) = self
            .one(OP, &sql.family_rotate, &[&fid, &tid, &next.as_str(), &now])
            .await?
        {
            return Ok(ConsumeOutcome::Rotated(family_from_row(&r)?));
        }
        if let Some(r) = self.one(OP, &sql.family_reuse, &[&fid, &tid]).await? {
            return Ok(ConsumeOutcome::ReuseDetected(family_from_row(&r)?));
        }
        let Some(r) = self.one(OP, &sql.family_inspect, &[&fid, &now]).await? else {
            return Ok(ConsumeOutcome::Unknown);
        };
        let revoked: bool = r.try_get(0).map_err(|e| pg_error(OP, e))?;
        let live: bool = r.try_get(1).map_err(|e| pg_error(OP, e))?;
        Ok(if revoked {
            ConsumeOutcome::Revoked
        } else if !live {
            ConsumeOutcome::Expired
        } else {
            ConsumeOutcome::Unknown
        })
    }

    async fn revoke_family(&self, id: &FamilyId) -> Result<bool> {
        let now = self.now();
        let n = self
            .storage
            .exec(
                "revoke token family",
                &self.storage.sql().family_revoke,
                &[&id.as_str(), &now],
            )
            .await?;
        Ok(n > 0)
    }

    async fn revoke_user_families(&self, user: &UserId) -> Result<u64> {
        let now = self.now();
        self.storage
            .exec(
                "revoke user token families",
                &self.storage.sql().family_revoke_user,
                &[&user.as_str(), &now],
            )
            .await
    }

    async fn user_epoch(&self, user: &UserId) -> Result<u64> {
        let row = self
            .one(
                "read token epoch",
                &self.storage.sql().epoch_get,
                &[&user.as_str()],
            )
            .await?;
        match row {
            Some(r) => {
                let e: i64 = r.try_get(0).map_err(|e| pg_error("read token epoch", e))?;
                Ok(u64::try_from(e).unwrap_or(0))
            }
            None => Ok(0),
        }
    }

    async fn bump_user_epoch(&self, user: &UserId) -> Result<u64> {
        let row = self
            .one(
                "bump token epoch",
                &self.storage.sql().epoch_bump,
                &[&user.as_str()],
            )
            .await?
            .ok_or_else(|| Error::provider("postgres epoch bump returned no row"))?;
        let e: i64 = row
            .try_get(0)
            .map_err(|e| pg_error("bump token epoch", e))?;
        Ok(u64::try_from(e).unwrap_or(0))
    }

    async fn cleanup_expired_families(&self) -> Result<u64> {
        let now = self.now();
        self.storage
            .exec(
                "cleanup token families",
                &self.storage.sql().family_cleanup,
                &[&now],
            )
            .await
    }
}
