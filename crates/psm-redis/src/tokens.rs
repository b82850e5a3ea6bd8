//! [`RedisTokenStateStore`]: refresh-token families on Redis.
//!
//! A family is a hash `<prefix>f:{<fid>}` plus its consumed-ids set `<prefix>f:{<fid>}:used` (one
//! slot, so consume is one atomic script in both modes). Families keep native expiry one day past
//! `expires_at`, so `consume` can still answer `Expired` until a cleanup removes them. A user's
//! families (`<prefix>fam:{<user>}`, scored by expiry) and the global expiry index are written
//! *before* the family, so a crash leaves at most a dangling id (revocation checks the owner;
//! cleanup checks the family's own expiry). The per-user index drops expired families on every
//! create and revoke-all, and revoked or vanished ones when it meets them, so it never grows past
//! the user's live families.

use std::{collections::HashMap, sync::Arc};

use fred::{
    interfaces::{HashesInterface, KeysInterface, SortedSetsInterface},
    types::{Value, sorted_sets::Ordering as ZOrdering},
};
use psm_core::{
    ConsumeOutcome, Error, ErrorKind, FamilyId, NewTokenFamily, Result, SessionId, Timestamp,
    TokenFamily, TokenId, TokenStateStore, UserId, async_trait,
};

use crate::{
    PROVIDER,
    conn::{Conn, Retry, Shared, call, now_micros, read},
    error, scripts,
    session::{integer, strings},
    store::kv,
};

/// Family ids read per call when walking an index.
const BATCH: i64 = 1000;

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

    /// Removes every token-family key of this prefix (families, consumed ids, the per-user family
    /// indexes, the expiry index) with `SCAN` + `UNLINK`; never `FLUSHDB`. Token epochs stay: a
    /// reset epoch would make access tokens revoked by `bump_user_epoch` valid again. Returns how
    /// many keys it removed.
    ///
    /// # Errors
    /// `ProviderNotInitialized` before `initialize`; `ProviderConnection` when unreachable.
    pub async fn flush_all(&self) -> Result<u64> {
        const OP: &str = "flush_token_state";
        let conn = self.conn()?;
        let keys = &self.shared.keys;
        let mut found = Vec::new();
        for pattern in keys.token_patterns() {
            found.extend(
                conn.scan(&pattern, OP)
                    .await?
                    .into_iter()
                    .filter(|k| keys.is_token_key(k)),
            );
        }
        found.sort_unstable();
        found.dedup();
        conn.unlink_all(found, OP).await
    }

    /// Drops `ids` from the user's family index.
    async fn unindex(
        &self,
        conn: &Conn,
        user: &str,
        ids: &[String],
        op: &'static str,
    ) -> Result<()> {
        if ids.is_empty() || user.is_empty() {
            return Ok(());
        }
        let key = self.shared.keys.user_families(user);
        call!(conn, op, |c| c.zrem::<(), _, _>(key.as_str(), ids.to_vec()))
    }

    /// Drops the user's expired families from the user's family index.
    async fn drop_expired_index(&self, conn: &Conn, user: &str, op: &'static str) -> Result<()> {
        let key = self.shared.keys.user_families(user);
        let now = now_micros() as f64;
        call!(conn, op, |c| c.zremrangebyscore::<(), _, _, _>(
            key.as_str(),
            f64::NEG_INFINITY,
            now
        ))
    }
}

/// A `{n, owner}` script reply.
fn flag_and_owner(v: Value, op: &'static str) -> Result<(bool, String)> {
    let v = strings(v, op)?;
    match v.as_slice() {
        [n, owner] => Ok((n == "1", owner.clone())),
        _ => Err(error::reply(op)),
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
        const OP: &str = "create_family";
        self.drop_expired_index(&conn, user, OP).await?;
        for index in [keys.user_families(user), keys.family_expiry()] {
            call!(&conn, OP, |c| c.zadd::<(), _, _>(
                index.as_str(),
                None,
                Some(ZOrdering::GreaterThan),
                false,
                false,
                (exp as f64, family.id.as_str()),
            ))?;
        }
        let (fk, used) = keys.family(family.id.as_str());
        let pexpire = ((exp - now) / 1000).max(1) + FAMILY_GRACE_MS;
        let created = conn
            .run(&scripts::TK_CREATE, OP, Retry::Idempotent, || {
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
                kv(&[&fk, &used], a)
            })
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
        let map: HashMap<String, String> =
            read!(&conn, "get_family", |c| c
                .hgetall::<HashMap<String, String>, _>(
                    self.shared.keys.family(id.as_str()).0
                ))?;
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
        let now = now_micros();
        // Idempotent: a retry of (presented, next) after the rotation answers `Rotated` again.
        let v = conn
            .run(&scripts::TK_CONSUME, "consume", Retry::Idempotent, || {
                let mut a = base(&self.shared, now);
                a.push(presented.as_str().into());
                a.push(next.as_str().into());
                kv(&[&fk, &used], a)
            })
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
        const OP: &str = "revoke_family";
        let conn = self.conn()?;
        let key = self.shared.keys.family(id.as_str()).0;
        let now = now_micros();
        let v = conn
            .run(&scripts::TK_REVOKE, OP, Retry::Never, || {
                let mut a = base(&self.shared, now);
                a.push("".into());
                kv(&[&key], a)
            })
            .await?;
        let (revoked, owner) = flag_and_owner(v, OP)?;
        // A revoked family is dead: it leaves its user's index.
        self.unindex(&conn, &owner, &[id.as_str().to_owned()], OP)
            .await?;
        Ok(revoked)
    }

    async fn revoke_user_families(&self, user: &UserId) -> Result<u64> {
        const OP: &str = "revoke_user_families";
        let conn = self.conn()?;
        let index = self.shared.keys.user_families(user.as_str());
        self.drop_expired_index(&conn, user.as_str(), OP).await?;
        let mut n = 0;
        loop {
            // Every family read here leaves the index (revoked now, already revoked, expired,
            // vanished or not the user's), so each batch starts at the front.
            let ids: Vec<String> = read!(&conn, OP, |c| c.zrange::<Vec<String>, _, _, _>(
                index.as_str(),
                0,
                BATCH - 1,
                None,
                false,
                None,
                false
            ))?;
            if ids.is_empty() {
                return Ok(n);
            }
            for id in &ids {
                let key = self.shared.keys.family(id).0;
                let now = now_micros();
                let v = conn
                    .run(&scripts::TK_REVOKE, OP, Retry::Never, || {
                        let mut a = base(&self.shared, now);
                        a.push(user.as_str().into());
                        kv(&[&key], a)
                    })
                    .await?;
                if flag_and_owner(v, OP)?.0 {
                    n += 1;
                }
            }
            self.unindex(&conn, user.as_str(), &ids, OP).await?;
            if (ids.len() as i64) < BATCH {
                return Ok(n);
            }
        }
    }

    async fn user_epoch(&self, user: &UserId) -> Result<u64> {
        let conn = self.conn()?;
        let v: Option<u64> = read!(&conn, "user_epoch", |c| c
            .get::<Option<u64>, _>(self.shared.keys.user_epoch(user.as_str())))?;
        Ok(v.unwrap_or(0))
    }

    async fn bump_user_epoch(&self, user: &UserId) -> Result<u64> {
        let conn = self.conn()?;
        let key = self.shared.keys.user_epoch(user.as_str());
        conn.write_once(
            "bump_user_epoch",
            conn.writer("bump_user_epoch")?.incr::<u64, _>(key.as_str()),
        )
        .await
    }

    async fn cleanup_expired_families(&self) -> Result<u64> {
        const OP: &str = "cleanup_expired_families";
        let conn = self.conn()?;
        let now = now_micros();
        let index = self.shared.keys.family_expiry();
        let mut n = 0;
        loop {
            let due: Vec<String> = read!(&conn, OP, |c| c.zrangebyscore::<Vec<String>, _, _, _>(
                index.as_str(),
                "-inf",
                now as f64,
                false,
                Some((0, BATCH))
            ))?;
            for id in &due {
                let (fk, used) = self.shared.keys.family(id);
                let v = conn
                    .run(&scripts::TK_DROP_EXPIRED, OP, Retry::Idempotent, || {
                        kv(&[&fk, &used], base(&self.shared, now))
                    })
                    .await?;
                let (dropped, owner) = flag_and_owner(v, OP)?;
                if dropped {
                    n += 1;
                    self.unindex(&conn, &owner, std::slice::from_ref(id), OP)
                        .await?;
                }
            }
            if !due.is_empty() {
                call!(&conn, OP, |c| c
                    .zrem::<(), _, _>(index.as_str(), due.clone()))?;
            }
            if (due.len() as i64) < BATCH {
                return Ok(n);
            }
        }
    }
}
