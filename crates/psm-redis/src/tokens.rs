//! [`RedisTokenStateStore`]: refresh-token families on Redis.
//!
//! A family is a hash `<prefix>f:{<fid>}` plus its consumed-ids set `<prefix>f:{<fid>}:used` (one
//! slot, so consume is one atomic script in both modes). Families keep native expiry one day past
//! `expires_at`, so `consume` can still answer `Expired` until a cleanup removes them. The set of a
//! user's families and the global expiry index are written *before* the family, so a crash leaves
//! at most a dangling id (revocation checks the owner; cleanup checks the family's own expiry).

use std::{collections::HashMap, sync::Arc};

use fred::{
    interfaces::{HashesInterface, KeysInterface, SetsInterface, SortedSetsInterface},
    types::{Value, sorted_sets::Ordering as ZOrdering},
};
use psm_core::{
    ConsumeOutcome, Error, ErrorKind, FamilyId, NewTokenFamily, Result, SessionId, Timestamp,
    TokenFamily, TokenId, TokenStateStore, UserId, async_trait,
};

use crate::{
    PROVIDER,
    conn::{Conn, Shared, now_micros},
    error, scripts,
    session::{integer, strings},
};

/// How long a family outlives its `expires_at` before Redis drops it natively (ms).
const FAMILY_GRACE_MS: i64 = 86_400_000;

/// The Redis token state store. Clones share the connection.
#[derive(Debug, Clone)]
pub struct RedisTokenStateStore {
    pub(crate) shared: Arc<Shared>,
}

fn base(shared: &Shared, now: i64) -> Vec<Value> {
    vec![shared.keys.prefix().into(), now.to_string().into()]
}

fn parse_family(id: &FamilyId, map: &HashMap<String, String>) -> Result<TokenFamily> {
    const OP: &str = "get_family";
    let get = |k: &str| map.get(k).ok_or_else(|| error::reply(OP));
    let int = |k: &str| get(k)?.parse::<i64>().map_err(|_| error::reply(OP));
    let session = get("sess")?;
    Ok(TokenFamily {
        id: id.clone(),
        user_id: UserId::parse(get("user")?).map_err(|_| error::reply(OP))?,
        session_id: if session.is_empty() {
            None
        } else {
            Some(SessionId::parse(session).map_err(|_| error::reply(OP))?)
        },
        current_token: TokenId::parse(get("cur")?).map_err(|_| error::reply(OP))?,
        created_at: Timestamp::from_unix_micros(int("created")?),
        expires_at: Timestamp::from_unix_micros(int("exp")?),
        revoked: get("rev")? == "1",
        rotations: u32::try_from(int("rot")?).unwrap_or(u32::MAX),
    })
}

/// A flat `[k, v, k, v…]` reply as a map.
fn pairs(v: Vec<String>) -> HashMap<String, String> {
    let mut m = HashMap::new();
    let mut it = v.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        m.insert(k, v);
    }
    m
}

impl RedisTokenStateStore {
    fn conn(&self) -> Result<Arc<Conn>> {
        self.shared.conn()
    }
}

#[async_trait]
impl TokenStateStore for RedisTokenStateStore {
    fn provider_name(&self) -> &str {
        PROVIDER
    }

    async fn create_family(&self, family: NewTokenFamily) -> Result<TokenFamily> {
        let conn = self.conn()?;
        let keys = &self.shared.keys;
        let now = now_micros();
        let exp = family.expires_at.as_unix_micros();
        let user = family.user_id.as_str();
        conn.pool
            .sadd::<(), _, _>(keys.user_families(user), family.id.as_str())
            .await
            .map_err(|e| conn.err(&e, "create_family"))?;
        conn.pool
            .zadd::<(), _, _>(
                keys.family_expiry(),
                None,
                Some(ZOrdering::GreaterThan),
                false,
                false,
                (exp as f64, family.id.as_str()),
            )
            .await
            .map_err(|e| conn.err(&e, "create_family"))?;
        let (fk, used) = keys.family(family.id.as_str());
        let pexpire = ((exp - now) / 1000).max(1) + FAMILY_GRACE_MS;
        let mut a = base(&self.shared, now);
        a.push(user.into());
        a.push(
            family
                .session_id
                .as_ref()
                .map(|s| s.as_str())
                .unwrap_or("")
                .into(),
        );
        a.push(family.first_token.as_str().into());
        a.push(now.to_string().into());
        a.push(exp.to_string().into());
        a.push(pexpire.to_string().into());
        let created = conn
            .run(&scripts::TK_CREATE, vec![fk, used], a, "create_family")
            .await?;
        if integer(created, "create_family")? != 1 {
            return Err(Error::new(
                ErrorKind::Concurrency,
                "a token family with this id already exists",
            )
            .with_detail("provider", PROVIDER));
        }
        Ok(TokenFamily {
            id: family.id,
            user_id: family.user_id,
            session_id: family.session_id,
            current_token: family.first_token,
            created_at: Timestamp::from_unix_micros(now),
            expires_at: family.expires_at,
            revoked: false,
            rotations: 0,
        })
    }

    async fn get_family(&self, id: &FamilyId) -> Result<Option<TokenFamily>> {
        let conn = self.conn()?;
        let map: HashMap<String, String> = conn
            .pool
            .hgetall(self.shared.keys.family(id.as_str()).0)
            .await
            .map_err(|e| conn.err(&e, "get_family"))?;
        if map.is_empty() {
            return Ok(None);
        }
        let f = parse_family(id, &map)?;
        Ok((now_micros() < f.expires_at.as_unix_micros()).then_some(f))
    }

    async fn consume(
        &self,
        family: &FamilyId,
        presented: &TokenId,
        next: &TokenId,
    ) -> Result<ConsumeOutcome> {
        let conn = self.conn()?;
        let (fk, used) = self.shared.keys.family(family.as_str());
        let mut a = base(&self.shared, now_micros());
        a.push(presented.as_str().into());
        a.push(next.as_str().into());
        let v = conn
            .run(&scripts::TK_CONSUME, vec![fk, used], a, "consume")
            .await?;
        let mut v = strings(v, "consume")?;
        if v.is_empty() {
            return Err(error::reply("consume"));
        }
        let tag = v.remove(0);
        Ok(match tag.as_str() {
            "unknown" => ConsumeOutcome::Unknown,
            "revoked" => ConsumeOutcome::Revoked,
            "expired" => ConsumeOutcome::Expired,
            "reuse" => ConsumeOutcome::ReuseDetected(parse_family(family, &pairs(v))?),
            "rotated" => ConsumeOutcome::Rotated(parse_family(family, &pairs(v))?),
            _ => return Err(error::reply("consume")),
        })
    }

    async fn revoke_family(&self, id: &FamilyId) -> Result<bool> {
        let conn = self.conn()?;
        let mut a = base(&self.shared, now_micros());
        a.push("".into());
        let v = conn
            .run(
                &scripts::TK_REVOKE,
                vec![self.shared.keys.family(id.as_str()).0],
                a,
                "revoke_family",
            )
            .await?;
        Ok(integer(v, "revoke_family")? == 1)
    }

    async fn revoke_user_families(&self, user: &UserId) -> Result<u64> {
        let conn = self.conn()?;
        let ids: Vec<String> = conn
            .pool
            .smembers(self.shared.keys.user_families(user.as_str()))
            .await
            .map_err(|e| conn.err(&e, "revoke_user_families"))?;
        let mut n = 0;
        for id in ids {
            let mut a = base(&self.shared, now_micros());
            a.push(user.as_str().into());
            let v = conn
                .run(
                    &scripts::TK_REVOKE,
                    vec![self.shared.keys.family(&id).0],
                    a,
                    "revoke_user_families",
                )
                .await?;
            if integer(v, "revoke_user_families")? == 1 {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn user_epoch(&self, user: &UserId) -> Result<u64> {
        let conn = self.conn()?;
        let v: Option<u64> = conn
            .pool
            .get(self.shared.keys.user_epoch(user.as_str()))
            .await
            .map_err(|e| conn.err(&e, "user_epoch"))?;
        Ok(v.unwrap_or(0))
    }

    async fn bump_user_epoch(&self, user: &UserId) -> Result<u64> {
        let conn = self.conn()?;
        conn.pool
            .incr(self.shared.keys.user_epoch(user.as_str()))
            .await
            .map_err(|e| conn.err(&e, "bump_user_epoch"))
    }

    async fn cleanup_expired_families(&self) -> Result<u64> {
        let conn = self.conn()?;
        let now = now_micros();
        let index = self.shared.keys.family_expiry();
        let due: Vec<String> = conn
            .pool
            .zrangebyscore(index.as_str(), "-inf", now as f64, false, None)
            .await
            .map_err(|e| conn.err(&e, "cleanup_expired_families"))?;
        let mut n = 0;
        for id in due {
            let (fk, used) = self.shared.keys.family(&id);
            let v = conn
                .run(
                    &scripts::TK_DROP_EXPIRED,
                    vec![fk, used],
                    base(&self.shared, now),
                    "cleanup_expired_families",
                )
                .await?;
            if integer(v, "cleanup_expired_families")? == 1 {
                n += 1;
            }
            conn.pool
                .zrem::<(), _, _>(index.as_str(), id.as_str())
                .await
                .map_err(|e| conn.err(&e, "cleanup_expired_families"))?;
        }
        Ok(n)
    }
}
