//! The cluster code path: every step touches one hash slot, in an order that never leaves a
//! session that should be gone passing checks (see the crate docs, "Cluster write order").

use std::time::Duration;

use fred::{interfaces::HashesInterface, types::Value};
use futures::future::join_all;
use psm_core::{
    Error, ErrorKind, NewSession, PermissionList, Result, SessionId, SessionIdRef, SessionLimit,
};

use crate::{
    PROVIDER,
    conn::{Conn, PENDING_GRACE_MS, now_micros},
    keys::escape,
    scripts,
    session::{string, strings, write_args},
    store::{RedisStore, parse_ids, policy, push_perms},
};

/// A user's index as read by [`RedisStore::snapshot`].
struct Snapshot {
    members: Vec<String>,
    expired: Vec<String>,
    pending: std::collections::HashSet<String>,
}

fn now_ms() -> i64 {
    now_micros() / 1000
}

impl RedisStore {
    fn base(&self, now: i64) -> Vec<Value> {
        vec![self.prefix().into(), now.to_string().into()]
    }

    async fn user_script(
        &self,
        conn: &Conn,
        uenc: &str,
        script: &scripts::Source,
        args: Vec<Value>,
        op: &'static str,
    ) -> Result<Value> {
        let keys = self.shared.keys.user_index_escaped(uenc).all();
        conn.run(script, keys, args, op).await
    }

    /// Removes `sids` from a user's index; `force` also removes fresh reservations.
    async fn prune(&self, conn: &Conn, uenc: &str, sids: &[String], force: bool) -> Result<()> {
        if sids.is_empty() {
            return Ok(());
        }
        let mut args = self.base(now_micros());
        args.push(now_ms().to_string().into());
        args.push(PENDING_GRACE_MS.to_string().into());
        args.push(if force { "1" } else { "0" }.into());
        args.extend(sids.iter().map(|s| Value::from(s.as_str())));
        self.user_script(conn, uenc, &scripts::CL_PRUNE, args, "prune_index")
            .await
            .map(drop)
    }

    /// Which of `sids` are live sessions of the user `user` (parallel HMGETs, one slot each).
    async fn live_of(&self, conn: &Conn, user: &str, sids: &[String]) -> Result<Vec<bool>> {
        let now = now_micros();
        let mut out = Vec::with_capacity(sids.len());
        for chunk in sids.chunks(512) {
            let reads = chunk.iter().map(|sid| {
                let key = self.shared.keys.session(sid);
                async move {
                    conn.pool
                        .hmget::<(Option<String>, Option<i64>), _, _>(key, &[" u", " e"])
                        .await
                }
            });
            for r in join_all(reads).await {
                let (owner, e) = r.map_err(|e| conn.err(&e, "verify_index"))?;
                out.push(owner.as_deref() == Some(user) && e.is_none_or(|e| now < e));
            }
        }
        Ok(out)
    }

    /// The user's index after dropping expired entries: members in created order, the expired
    /// ones, and the ones reserved but not committed yet (never pruned as dangling: their session
    /// may be written any moment).
    async fn snapshot(&self, conn: &Conn, uenc: &str) -> Result<Snapshot> {
        let mut args = self.base(now_micros());
        args.push(now_ms().to_string().into());
        args.push(PENDING_GRACE_MS.to_string().into());
        let v = self
            .user_script(conn, uenc, &scripts::CL_SNAPSHOT, args, "list_sessions")
            .await?;
        let all = strings(v, "list_sessions")?;
        let mut parts = all.split(|s| s == "|");
        let (Some(members), Some(expired), Some(pending)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(crate::error::reply("list_sessions"));
        };
        Ok(Snapshot {
            members: members.to_vec(),
            expired: expired.to_vec(),
            pending: pending.iter().cloned().collect(),
        })
    }

    /// Splits `members` into live ones and prunable dead ones (dead and not pending).
    async fn classify(
        &self,
        conn: &Conn,
        user: &str,
        snap: Snapshot,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let live = self.live_of(conn, user, &snap.members).await?;
        let (mut keep, mut dead) = (Vec::new(), Vec::new());
        for (m, l) in snap.members.into_iter().zip(live) {
            if l {
                keep.push(m);
            } else if !snap.pending.contains(&m) {
                dead.push(m);
            }
        }
        Ok((keep, dead))
    }

    /// The user's live sessions in created order; dangling entries are pruned.
    pub(crate) async fn cl_live_entries(&self, conn: &Conn, user: &str) -> Result<Vec<String>> {
        let uenc = escape(user);
        let snap = self.snapshot(conn, &uenc).await?;
        let (keep, dead) = self.classify(conn, user, snap).await?;
        self.prune(conn, &uenc, &dead, false).await?;
        Ok(keep)
    }

    /// Reserves `sid` in the user's index under `max`/`policy`: `Ok(Some(victims))`, or
    /// `Ok(None)` at the limit with `reject`.
    async fn reserve(
        &self,
        conn: &Conn,
        user: &str,
        uenc: &str,
        sid: &str,
        (created, expires): (i64, Option<i64>),
        limit: SessionLimit,
    ) -> Result<Option<Vec<String>>> {
        let deadline = tokio::time::Instant::now() + self.shared.config.socket_timeout;
        let mut verified = false;
        loop {
            let mut args = self.base(now_micros());
            args.push(sid.into());
            args.push(created.to_string().into());
            args.push(expires.map(|e| e.to_string()).unwrap_or_default().into());
            args.push(limit.max.get().to_string().into());
            args.push(policy(limit.policy).into());
            args.push(now_ms().to_string().into());
            args.push(PENDING_GRACE_MS.to_string().into());
            let v = self
                .user_script(conn, uenc, &scripts::CL_RESERVE, args, "create_session")
                .await?;
            let v = strings(v, "create_session")?;
            match v.first().map(String::as_str) {
                Some("ok") => return Ok(Some(v[1..].to_vec())),
                // Dangling entries may count: verify the index once, then decide.
                Some("limit") if !verified => {
                    verified = true;
                    self.cl_live_entries(conn, user).await?;
                }
                Some("limit") => return Ok(None),
                Some("busy") if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Some("busy") => {
                    return Err(Error::new(
                        ErrorKind::Concurrency,
                        "too many concurrent session creations for one user",
                    )
                    .with_detail("provider", PROVIDER));
                }
                _ => return Err(crate::error::reply("create_session")),
            }
        }
    }

    async fn finish(
        &self,
        conn: &Conn,
        uenc: &str,
        sid: &str,
        ok: bool,
        victims: &[String],
    ) -> Result<()> {
        let mut args = self.base(now_micros());
        args.push(sid.into());
        args.push(if ok { "1" } else { "0" }.into());
        args.extend(victims.iter().map(|s| Value::from(s.as_str())));
        self.user_script(conn, uenc, &scripts::CL_FINISH, args, "create_session")
            .await
            .map(drop)
    }

    /// Writes the session; `Ok(None)` when `create` found a live one, else the old owner's uenc.
    async fn write(&self, conn: &Conn, sid: &str, args: Vec<Value>) -> Result<Option<String>> {
        let v = conn
            .run(
                &scripts::CL_WRITE,
                vec![self.shared.keys.session(sid)],
                args,
                "store_permissions",
            )
            .await?;
        let v = strings(v, "store_permissions")?;
        match v.first().map(String::as_str) {
            Some("ok") => Ok(Some(v.get(1).cloned().unwrap_or_default())),
            Some("exists") => Ok(None),
            _ => Err(crate::error::reply("store_permissions")),
        }
    }

    async fn drop_from_old_owner(
        &self,
        conn: &Conn,
        old: &str,
        uenc: &str,
        sid: &str,
    ) -> Result<()> {
        if !old.is_empty() && old != uenc {
            self.prune(conn, old, &[sid.to_owned()], true).await?;
        }
        Ok(())
    }

    /// store_permissions: reserve in the new user's index, write the session, commit, then drop
    /// the id from a previous owner's index.
    pub(crate) async fn cl_store(&self, conn: &Conn, sid: &str, s: &NewSession) -> Result<()> {
        let now = now_micros();
        let (mut args, uenc) = write_args(self.prefix(), now, sid, s);
        let expires = s.ttl.map(|t| crate::session::expiry(now, t.as_secs()).0);
        self.reserve(
            conn,
            s.user_id.as_str(),
            &uenc,
            sid,
            (now, expires),
            SessionLimit::unlimited(),
        )
        .await?;
        args.push("store".into());
        let old = match self.write(conn, sid, args).await {
            Ok(old) => old.unwrap_or_default(),
            Err(e) => {
                let _ = self.finish(conn, &uenc, sid, false, &[]).await;
                return Err(e);
            }
        };
        self.finish(conn, &uenc, sid, true, &[]).await?;
        self.drop_from_old_owner(conn, &old, &uenc, sid).await
    }

    /// create_session: the user's slot serializes reservations; victims are deleted after the
    /// new session is written and dropped from the index last.
    pub(crate) async fn cl_create(
        &self,
        conn: &Conn,
        id: &SessionIdRef,
        s: &NewSession,
        limit: SessionLimit,
    ) -> Result<Vec<SessionId>> {
        let sid = id.as_str();
        let now = now_micros();
        let (owner, e): (Option<String>, Option<i64>) = conn
            .pool
            .hmget(self.shared.keys.session(sid), &[" u", " e"])
            .await
            .map_err(|e| conn.err(&e, "create_session"))?;
        let exists = || {
            Error::new(
                ErrorKind::SessionExists,
                "a live session with this id exists",
            )
            .with_detail("provider", PROVIDER)
            .with_detail("session", id.redacted())
        };
        if owner.is_some() && e.is_none_or(|e| now < e) {
            return Err(exists());
        }
        let (mut args, uenc) = write_args(self.prefix(), now, sid, s);
        let expires = s.ttl.map(|t| crate::session::expiry(now, t.as_secs()).0);
        let Some(victims) = self
            .reserve(conn, s.user_id.as_str(), &uenc, sid, (now, expires), limit)
            .await?
        else {
            return Err(Error::new(
                ErrorKind::SessionLimitReached,
                "the user has reached the concurrent session limit",
            )
            .with_detail("provider", PROVIDER));
        };
        args.push("create".into());
        let old = match self.write(conn, sid, args).await {
            Ok(Some(old)) => old,
            Ok(None) => {
                self.finish(conn, &uenc, sid, false, &victims).await?;
                return Err(exists());
            }
            Err(e) => {
                let _ = self.finish(conn, &uenc, sid, false, &victims).await;
                return Err(e);
            }
        };
        for v in &victims {
            let mut a = self.base(now_micros());
            a.push(uenc.as_str().into());
            conn.run(
                &scripts::CL_DELETE,
                vec![self.shared.keys.session(v)],
                a,
                "create_session",
            )
            .await?;
            self.invalidate_local(v);
        }
        self.finish(conn, &uenc, sid, true, &victims).await?;
        self.drop_from_old_owner(conn, &old, &uenc, sid).await?;
        parse_ids(victims)
    }

    /// invalidate_session: delete the session first, then its index entry.
    pub(crate) async fn cl_invalidate(&self, conn: &Conn, sid: &str) -> Result<bool> {
        let mut a = self.base(now_micros());
        a.push("".into());
        let v = conn
            .run(
                &scripts::CL_DELETE,
                vec![self.shared.keys.session(sid)],
                a,
                "invalidate_session",
            )
            .await?;
        let v = strings(v, "invalidate_session")?;
        let [live, uenc] = v.as_slice() else {
            return Ok(false);
        };
        self.prune(conn, uenc, &[sid.to_owned()], true).await?;
        Ok(live == "1")
    }

    /// update / extend: raise the index expiry first (never below the truth), update the session,
    /// then set the exact index expiry.
    pub(crate) async fn cl_update(
        &self,
        conn: &Conn,
        sid: &str,
        now: i64,
        perms: Option<&PermissionList>,
        new_expiry: Option<(i64, i64)>,
    ) -> Result<bool> {
        let key = self.shared.keys.session(sid);
        let set_expiry = |uenc: String, e: i64, mode: &'static str| {
            let mut a = self.base(now);
            a.push(sid.into());
            a.push(e.to_string().into());
            a.push(mode.into());
            async move {
                self.user_script(
                    conn,
                    &uenc,
                    &scripts::CL_SET_EXPIRY,
                    a,
                    "update_permissions",
                )
                .await
            }
        };
        if let Some((e, _)) = new_expiry {
            let owner: Option<String> = conn
                .pool
                .hget(key.as_str(), " k")
                .await
                .map_err(|e| conn.err(&e, "update_permissions"))?;
            let Some(owner) = owner else {
                return Ok(false);
            };
            set_expiry(owner, e, "gt").await?;
        }
        let mut a = self.base(now);
        a.push(now.to_string().into());
        match new_expiry {
            Some((e, ms)) => {
                a.push(e.to_string().into());
                a.push(ms.to_string().into());
            }
            None => {
                a.push("".into());
                a.push("".into());
            }
        }
        push_perms(&mut a, perms);
        let v = conn
            .run(&scripts::CL_UPDATE, vec![key], a, "update_permissions")
            .await?;
        let uenc = string(v, "update_permissions")?;
        if uenc.is_empty() {
            return Ok(false);
        }
        if let Some((e, _)) = new_expiry {
            set_expiry(uenc, e, "set").await?;
        }
        Ok(true)
    }

    /// cleanup for one user: counts the expired sessions found through the index.
    pub(crate) async fn cl_cleanup_user(&self, conn: &Conn, user: &str) -> Result<i64> {
        let uenc = escape(user);
        let snap = self.snapshot(conn, &uenc).await?;
        let now = now_micros();
        let mut count = 0;
        for sid in &snap.expired {
            let (owner, e): (Option<String>, Option<i64>) = conn
                .pool
                .hmget(self.shared.keys.session(sid), &[" u", " e"])
                .await
                .map_err(|e| conn.err(&e, "cleanup_expired_sessions"))?;
            match owner {
                None => count += 1,
                Some(o) if o == user && e.is_some_and(|e| e <= now) => {
                    let mut a = self.base(now);
                    a.push(uenc.as_str().into());
                    conn.run(
                        &scripts::CL_DELETE,
                        vec![self.shared.keys.session(sid)],
                        a,
                        "cleanup_expired_sessions",
                    )
                    .await?;
                    count += 1;
                }
                Some(_) => {}
            }
        }
        let (_, dead) = self.classify(conn, user, snap).await?;
        self.prune(conn, &uenc, &dead, false).await?;
        Ok(count)
    }

    /// invalidate_user_sessions: delete each owned session, then its index entry.
    pub(crate) async fn cl_invalidate_user(&self, conn: &Conn, user: &str) -> Result<u64> {
        let uenc = escape(user);
        let Snapshot {
            members, expired, ..
        } = self.snapshot(conn, &uenc).await?;
        let mut count = 0u64;
        let (mut deleted, mut other) = (Vec::new(), Vec::new());
        for sid in members.iter().chain(expired.iter()) {
            let mut a = self.base(now_micros());
            a.push(uenc.as_str().into());
            let v = conn
                .run(
                    &scripts::CL_DELETE,
                    vec![self.shared.keys.session(sid)],
                    a,
                    "invalidate_user_sessions",
                )
                .await?;
            let v = strings(v, "invalidate_user_sessions")?;
            self.invalidate_local(sid);
            match v.first().map(String::as_str) {
                Some(live) => {
                    if live == "1" {
                        count += 1;
                    }
                    deleted.push(sid.clone());
                }
                None => other.push(sid.clone()),
            }
        }
        self.prune(conn, &uenc, &deleted, true).await?;
        self.prune(conn, &uenc, &other, false).await?;
        Ok(count)
    }
}
