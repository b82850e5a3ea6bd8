//! The cluster code path: every step touches one hash slot, in an order that never leaves a
//! session that should be gone passing checks (see docs/providers.md, "Cluster write order").
//!
//! Index entries are only ever removed for the incarnation the remover saw (their created_at
//! score still matches) and never while a reservation of the id is in flight, so a racing loser
//! cannot unindex the winner's session. The expiry score is only ever raised.

use std::time::Duration;

use fred::{
    interfaces::HashesInterface,
    types::{Key, Value},
};
use futures::future::join_all;
use psm_core::{
    Error, ErrorKind, NewSession, PermissionList, Result, SessionId, SessionIdRef, SessionLimit,
};

use crate::{
    PROVIDER,
    conn::{Conn, PENDING_GRACE_MS, Retry, now_micros, read},
    keys::escape,
    scripts,
    session::{string, strings, write_args},
    store::{RedisStore, kv, parse_ids, policy, push_perms, request_token},
};

/// Index entries read per window.
const WINDOW: usize = 256;
/// Most due entries dropped by one call.
const PRUNE_CAP: usize = 10_000;

fn now_ms() -> i64 {
    now_micros() / 1000
}

/// An index entry: id, created_at score (as Redis prints it), whether a reservation is in flight.
struct Entry {
    sid: String,
    created: String,
    pending: bool,
}

/// What `CL_RESERVE` answered.
enum Reserved {
    /// Reserved; the victims (id, created) are marked.
    Ok(Vec<(String, String)>),
    /// At the limit with `reject`.
    Limit,
}

/// How a reservation ends.
#[derive(Clone, Copy)]
enum Finish {
    /// The session was written: drop only this reservation.
    Commit,
    /// The write may or may not have happened: drop this reservation, keep the entry.
    Keep,
    /// Nothing of ours was written: also drop the entry unless another reservation is in flight.
    Rollback,
}

impl Finish {
    fn as_str(self) -> &'static str {
        match self {
            Finish::Commit => "commit",
            Finish::Keep => "keep",
            Finish::Rollback => "rollback",
        }
    }
}

fn pairs(v: Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(v.len() / 2);
    let mut it = v.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    out
}

impl RedisStore {
    fn base(&self, now: i64) -> Vec<Value> {
        vec![self.prefix().into(), now.to_string().into()]
    }

    fn base_ms(&self) -> Vec<Value> {
        let mut a = self.base(now_micros());
        a.push(now_ms().to_string().into());
        a.push(PENDING_GRACE_MS.to_string().into());
        a
    }

    async fn user_run(
        &self,
        conn: &Conn,
        uenc: &str,
        script: &scripts::Source,
        op: &'static str,
        args: impl Fn() -> Vec<Value>,
    ) -> Result<Value> {
        let uk = self.shared.keys.user_index_escaped(uenc);
        conn.run(script, op, Retry::Idempotent, || {
            (uk.all().iter().map(|k| Key::from(*k)).collect(), args())
        })
        .await
    }

    async fn session_run(
        &self,
        conn: &Conn,
        sid: &str,
        script: &scripts::Source,
        op: &'static str,
        retry: Retry,
        args: impl Fn() -> Vec<Value>,
    ) -> Result<Value> {
        let key = self.shared.keys.session(sid);
        conn.run(script, op, retry, || kv(&[&key], args())).await
    }

    /// Removes the entries `(sid, created)` still of that incarnation and not reserved.
    async fn prune(&self, conn: &Conn, uenc: &str, entries: &[(String, String)]) -> Result<i64> {
        if entries.is_empty() || uenc.is_empty() {
            return Ok(0);
        }
        let v = self
            .user_run(conn, uenc, &scripts::CL_PRUNE, "prune_index", || {
                let mut a = self.base_ms();
                for (s, c) in entries {
                    a.push(s.as_str().into());
                    a.push(c.as_str().into());
                }
                a
            })
            .await?;
        crate::session::integer(v, "prune_index")
    }

    /// Drops stale reservations and marks and the due entries; returns the due ids.
    async fn prune_expired(
        &self,
        conn: &Conn,
        uenc: &str,
        op: &'static str,
    ) -> Result<Vec<String>> {
        let v = self
            .user_run(conn, uenc, &scripts::CL_PRUNE_EXPIRED, op, || {
                let mut a = self.base_ms();
                a.push(PRUNE_CAP.to_string().into());
                a
            })
            .await?;
        strings(v, op)
    }

    /// Ranks `start..start + WINDOW` of the user's index.
    async fn window(
        &self,
        conn: &Conn,
        uenc: &str,
        start: usize,
        op: &'static str,
    ) -> Result<Vec<Entry>> {
        let v = self
            .user_run(conn, uenc, &scripts::CL_WINDOW, op, || {
                let mut a = self.base_ms();
                a.push(start.to_string().into());
                a.push(WINDOW.to_string().into());
                a
            })
            .await?;
        let flat = strings(v, op)?;
        Ok(flat
            .chunks_exact(3)
            .map(|t| Entry {
                sid: t[0].clone(),
                created: t[1].clone(),
                pending: t[2] == "1",
            })
            .collect())
    }

    /// Which of `entries` are live sessions of the user `user` (parallel HMGETs, one slot each).
    async fn live_of(&self, conn: &Conn, user: &str, entries: &[Entry]) -> Result<Vec<bool>> {
        let now = now_micros();
        let reads = entries.iter().map(|e| async move {
            read!(conn, "verify_index", |c| c
                .hmget::<(Option<String>, Option<i64>), _, _>(
                    self.shared.keys.session(&e.sid),
                    &[" u", " e"]
                ))
        });
        let mut out = Vec::with_capacity(entries.len());
        for r in join_all(reads).await {
            let (owner, e) = r?;
            out.push(owner.as_deref() == Some(user) && e.is_none_or(|e| now < e));
        }
        Ok(out)
    }

    /// The user's live sessions in created order, reading windows until `want` live ones are
    /// found (or the index ends); dead entries read on the way are pruned.
    async fn cl_scan_live(&self, conn: &Conn, user: &str, want: usize) -> Result<Vec<String>> {
        const OP: &str = "list_sessions";
        let uenc = escape(user);
        self.prune_expired(conn, &uenc, OP).await?;
        let (mut live, mut dead) = (Vec::new(), Vec::new());
        let mut start = 0;
        while live.len() < want {
            let win = self.window(conn, &uenc, start, OP).await?;
            if win.is_empty() {
                break;
            }
            start += win.len();
            let ok = self.live_of(conn, user, &win).await?;
            for (e, l) in win.into_iter().zip(ok) {
                if l {
                    live.push(e.sid);
                } else if !e.pending {
                    dead.push((e.sid, e.created));
                }
            }
        }
        for chunk in dead.chunks(512) {
            self.prune(conn, &uenc, chunk).await?;
        }
        Ok(live)
    }

    /// A page of the user's live sessions in created order; costs O(offset + limit + dead
    /// entries met).
    pub(crate) async fn cl_live_entries(
        &self,
        conn: &Conn,
        user: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<String>> {
        let live = self
            .cl_scan_live(conn, user, offset.saturating_add(limit))
            .await?;
        Ok(live.into_iter().skip(offset).take(limit).collect())
    }

    /// Reserves `sid` in the user's index under `max`/`policy`. Victims of big evictions are
    /// evicted in windows before the reservation; their ids are appended to `evicted`.
    #[allow(clippy::too_many_arguments)]
    async fn reserve(
        &self,
        conn: &Conn,
        user: &str,
        uenc: &str,
        sid: &str,
        (created, expires): (i64, Option<i64>),
        limit: SessionLimit,
        evicted: &mut Vec<String>,
    ) -> Result<Reserved> {
        const OP: &str = "create_session";
        let deadline = tokio::time::Instant::now() + self.shared.config.socket_timeout;
        let mut verified = false;
        loop {
            let v = self
                .user_run(conn, uenc, &scripts::CL_RESERVE, OP, || {
                    let mut a = self.base(now_micros());
                    a.push(sid.into());
                    a.push(created.to_string().into());
                    a.push(expires.map(|e| e.to_string()).unwrap_or_default().into());
                    a.push(limit.max.get().to_string().into());
                    a.push(policy(limit.policy).into());
                    a.push(now_ms().to_string().into());
                    a.push(PENDING_GRACE_MS.to_string().into());
                    a.push(WINDOW.to_string().into());
                    a
                })
                .await?;
            let mut v = strings(v, OP)?;
            if v.is_empty() {
                return Err(crate::error::reply(OP));
            }
            let tag = v.remove(0);
            match tag.as_str() {
                "ok" => return Ok(Reserved::Ok(pairs(v))),
                "more" => {
                    let victims = pairs(v);
                    let deleted = self.evict(conn, uenc, &victims, evicted).await;
                    self.finish(conn, uenc, None, &deleted, &unmarked(&victims, &deleted))
                        .await?;
                    if deleted.len() < victims.len() {
                        return Err(Error::new(
                            ErrorKind::ProviderConnection,
                            "eviction of the oldest sessions failed",
                        )
                        .with_detail("provider", PROVIDER));
                    }
                }
                // Dangling entries may count: verify the index once, then decide.
                "limit" if !verified => {
                    verified = true;
                    self.cl_scan_live(conn, user, limit.max.get() as usize)
                        .await?;
                }
                "limit" => return Ok(Reserved::Limit),
                "busy" if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                "busy" => {
                    return Err(Error::new(
                        ErrorKind::Concurrency,
                        "too many concurrent session creations for one user",
                    )
                    .with_detail("provider", PROVIDER));
                }
                _ => return Err(crate::error::reply(OP)),
            }
        }
    }

    /// Deletes each victim (owner-checked); returns the (id, created) pairs whose removal is
    /// settled (deleted, or already gone), stopping at the first error. Deleted live ids are
    /// appended to `evicted`.
    async fn evict(
        &self,
        conn: &Conn,
        uenc: &str,
        victims: &[(String, String)],
        evicted: &mut Vec<String>,
    ) -> Vec<(String, String)> {
        let mut settled = Vec::with_capacity(victims.len());
        for (v, created) in victims {
            let r = self
                .session_run(
                    conn,
                    v,
                    &scripts::CL_DELETE,
                    "create_session",
                    Retry::Idempotent,
                    || {
                        let mut a = self.base(now_micros());
                        a.push(uenc.into());
                        a
                    },
                )
                .await
                .and_then(|r| strings(r, "create_session"));
            match r {
                Ok(d) => {
                    self.invalidate_local(v);
                    match d.as_slice() {
                        [live, _, c] => {
                            if live == "1" {
                                evicted.push(v.clone());
                            }
                            settled.push((v.clone(), c.clone()));
                        }
                        _ => settled.push((v.clone(), created.clone())),
                    }
                }
                Err(_) => break,
            }
        }
        settled
    }

    /// Ends a reservation (`sid`, when one was made) and settles victims: `deleted` entries go
    /// when still of that incarnation, `unmarked` ones count again.
    async fn finish(
        &self,
        conn: &Conn,
        uenc: &str,
        sid: Option<(&str, Finish)>,
        deleted: &[(String, String)],
        unmarked: &[String],
    ) -> Result<()> {
        self.user_run(conn, uenc, &scripts::CL_FINISH, "create_session", || {
            let mut a = self.base_ms();
            match sid {
                Some((s, mode)) => {
                    a.push(s.into());
                    a.push(mode.as_str().into());
                }
                None => {
                    a.push("".into());
                    a.push("commit".into());
                }
            }
            a.push(deleted.len().to_string().into());
            for (s, c) in deleted {
                a.push(s.as_str().into());
                a.push(c.as_str().into());
            }
            a.extend(unmarked.iter().map(|s| Value::from(s.as_str())));
            a
        })
        .await
        .map(drop)
    }

    /// Writes the session: `Ok(Ok((old uenc, old created)))`, or `Ok(Err(owner uenc))` when
    /// `create` found a live session.
    async fn write(
        &self,
        conn: &Conn,
        sid: &str,
        s: &NewSession,
        now: i64,
        mode: &str,
        token: &str,
    ) -> Result<std::result::Result<(String, String), String>> {
        const OP: &str = "store_permissions";
        let v = self
            .session_run(conn, sid, &scripts::CL_WRITE, OP, Retry::Idempotent, || {
                let (mut args, _) = write_args(self.prefix(), now, sid, s);
                args.push(mode.into());
                args.push(token.into());
                args
            })
            .await?;
        let mut v = strings(v, OP)?.into_iter();
        match v.next().as_deref() {
            Some("ok") => Ok(Ok((
                v.next().unwrap_or_default(),
                v.next().unwrap_or_default(),
            ))),
            Some("exists") => Ok(Err(v.next().unwrap_or_default())),
            _ => Err(crate::error::reply(OP)),
        }
    }

    /// Drops the id from a previous owner's index (that incarnation only).
    async fn drop_from_old_owner(
        &self,
        conn: &Conn,
        (old, old_created): &(String, String),
        uenc: &str,
        sid: &str,
    ) -> Result<()> {
        if !old.is_empty() && old != uenc {
            self.prune(conn, old, &[(sid.to_owned(), old_created.clone())])
                .await?;
        }
        Ok(())
    }

    /// store_permissions: reserve in the new user's index, write the session, commit, then drop
    /// the id from a previous owner's index.
    pub(crate) async fn cl_store(&self, conn: &Conn, sid: &str, s: &NewSession) -> Result<()> {
        let now = now_micros();
        let uenc = escape(s.user_id.as_str());
        let expires = s.ttl.map(|t| crate::session::expiry(now, t.as_secs()).0);
        let mut none = Vec::new();
        self.reserve(
            conn,
            s.user_id.as_str(),
            &uenc,
            sid,
            (now, expires),
            SessionLimit::unlimited(),
            &mut none,
        )
        .await?;
        let old = match self.write(conn, sid, s, now, "store", "").await {
            Ok(Ok(old)) => old,
            Ok(Err(_)) => (String::new(), String::new()),
            Err(e) => {
                let _ = self
                    .finish(conn, &uenc, Some((sid, Finish::Keep)), &[], &[])
                    .await;
                return Err(e);
            }
        };
        self.finish(conn, &uenc, Some((sid, Finish::Commit)), &[], &[])
            .await?;
        self.drop_from_old_owner(conn, &old, &uenc, sid).await
    }

    /// create_session: the user's slot serializes reservations; victims are deleted after the
    /// new session is written and dropped from the index last. Every error after the reservation
    /// ends it (and unmarks victims not deleted).
    pub(crate) async fn cl_create(
        &self,
        conn: &Conn,
        id: &SessionIdRef,
        s: &NewSession,
        limit: SessionLimit,
    ) -> Result<Vec<SessionId>> {
        const OP: &str = "create_session";
        let sid = id.as_str();
        let now = now_micros();
        let exists = || {
            Error::new(
                ErrorKind::SessionExists,
                "a live session with this id exists",
            )
            .with_detail("provider", PROVIDER)
            .with_detail("session", id.redacted())
        };
        let (owner, e): (Option<String>, Option<i64>) =
            read!(conn, OP, |c| c
                .hmget::<(Option<String>, Option<i64>), _, _>(
                    self.shared.keys.session(sid),
                    &[" u", " e"]
                ))?;
        if owner.is_some() && e.is_none_or(|e| now < e) {
            return Err(exists());
        }
        let uenc = escape(s.user_id.as_str());
        let expires = s.ttl.map(|t| crate::session::expiry(now, t.as_secs()).0);
        let token = request_token()?;
        let mut evicted = Vec::new();
        let reserved = self
            .reserve(
                conn,
                s.user_id.as_str(),
                &uenc,
                sid,
                (now, expires),
                limit,
                &mut evicted,
            )
            .await;
        let victims = match reserved {
            Ok(Reserved::Ok(v)) => v,
            Ok(Reserved::Limit) => {
                return Err(Error::new(
                    ErrorKind::SessionLimitReached,
                    "the user has reached the concurrent session limit",
                )
                .with_detail("provider", PROVIDER));
            }
            Err(e) => return Err(e),
        };
        let all_victims: Vec<String> = victims.iter().map(|(v, _)| v.clone()).collect();
        let old = match self.write(conn, sid, s, now, "create", &token).await {
            Ok(Ok(old)) => old,
            Ok(Err(owner)) => {
                // A live session won the race: ours was never written. Its entry stays when the
                // winner is this user (it is the winner's entry now).
                let mode = if owner == uenc {
                    Finish::Keep
                } else {
                    Finish::Rollback
                };
                self.finish(conn, &uenc, Some((sid, mode)), &[], &all_victims)
                    .await?;
                return Err(exists());
            }
            Err(e) => {
                let _ = self
                    .finish(conn, &uenc, Some((sid, Finish::Keep)), &[], &all_victims)
                    .await;
                return Err(e);
            }
        };
        let deleted = self.evict(conn, &uenc, &victims, &mut evicted).await;
        let rest = unmarked(&victims, &deleted);
        let finished = self
            .finish(conn, &uenc, Some((sid, Finish::Commit)), &deleted, &rest)
            .await;
        if deleted.len() < victims.len() {
            return Err(Error::new(
                ErrorKind::ProviderConnection,
                "the session was created but evicting the oldest sessions failed",
            )
            .with_detail("provider", PROVIDER));
        }
        finished?;
        self.drop_from_old_owner(conn, &old, &uenc, sid).await?;
        parse_ids(evicted)
    }

    /// invalidate_session: delete the session first, then its index entry (that incarnation).
    pub(crate) async fn cl_invalidate(&self, conn: &Conn, sid: &str) -> Result<bool> {
        const OP: &str = "invalidate_session";
        let v = self
            .session_run(conn, sid, &scripts::CL_DELETE, OP, Retry::Never, || {
                let mut a = self.base(now_micros());
                a.push("".into());
                a
            })
            .await?;
        let v = strings(v, OP)?;
        let [live, uenc, created] = v.as_slice() else {
            return Ok(false);
        };
        self.prune(conn, uenc, &[(sid.to_owned(), created.clone())])
            .await?;
        Ok(live == "1")
    }

    /// update / extend: raise the index expiry first (never below the truth; never lowered),
    /// then update the session.
    pub(crate) async fn cl_update(
        &self,
        conn: &Conn,
        sid: &str,
        now: i64,
        perms: Option<&PermissionList>,
        new_expiry: Option<(i64, i64)>,
    ) -> Result<bool> {
        const OP: &str = "update_permissions";
        if let Some((e, _)) = new_expiry {
            let owner: Option<String> = read!(conn, OP, |c| c
                .hget::<Option<String>, _, _>(self.shared.keys.session(sid), " k"))?;
            let Some(owner) = owner else {
                return Ok(false);
            };
            self.user_run(conn, &owner, &scripts::CL_RAISE_EXPIRY, OP, || {
                let mut a = self.base(now);
                a.push(sid.into());
                a.push(e.to_string().into());
                a
            })
            .await?;
        }
        let v = self
            .session_run(
                conn,
                sid,
                &scripts::CL_UPDATE,
                OP,
                Retry::Idempotent,
                || {
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
                    a
                },
            )
            .await?;
        Ok(!string(v, OP)?.is_empty())
    }

    /// cleanup for one user: counts the expired sessions found through the index, deletes those
    /// still stored, then verifies the whole index window by window.
    pub(crate) async fn cl_cleanup_user(&self, conn: &Conn, user: &str) -> Result<i64> {
        const OP: &str = "cleanup_expired_sessions";
        let uenc = escape(user);
        let mut count = 0;
        loop {
            let due = self.prune_expired(conn, &uenc, OP).await?;
            let now = now_micros();
            for sid in &due {
                let (owner, e): (Option<String>, Option<i64>) =
                    read!(conn, OP, |c| c
                        .hmget::<(Option<String>, Option<i64>), _, _>(
                            self.shared.keys.session(sid),
                            &[" u", " e"]
                        ))?;
                match owner {
                    None => count += 1,
                    Some(o) if o == user && e.is_some_and(|e| e <= now) => {
                        self.session_run(
                            conn,
                            sid,
                            &scripts::CL_DELETE,
                            OP,
                            Retry::Idempotent,
                            || {
                                let mut a = self.base(now);
                                a.push(uenc.as_str().into());
                                a
                            },
                        )
                        .await?;
                        count += 1;
                    }
                    Some(_) => {}
                }
            }
            if due.len() < PRUNE_CAP {
                break;
            }
        }
        self.cl_scan_live(conn, user, usize::MAX).await?;
        Ok(count)
    }

    /// invalidate_user_sessions: delete each owned session, then its index entry, one window at
    /// a time.
    pub(crate) async fn cl_invalidate_user(&self, conn: &Conn, user: &str) -> Result<u64> {
        const OP: &str = "invalidate_user_sessions";
        let uenc = escape(user);
        loop {
            if self.prune_expired(conn, &uenc, OP).await?.len() < PRUNE_CAP {
                break;
            }
        }
        let mut count = 0u64;
        let mut start = 0;
        loop {
            let win = self.window(conn, &uenc, start, OP).await?;
            if win.is_empty() {
                return Ok(count);
            }
            let mut settled = Vec::with_capacity(win.len());
            for e in &win {
                let v = self
                    .session_run(
                        conn,
                        &e.sid,
                        &scripts::CL_DELETE,
                        OP,
                        Retry::Idempotent,
                        || {
                            let mut a = self.base(now_micros());
                            a.push(uenc.as_str().into());
                            a
                        },
                    )
                    .await?;
                let v = strings(v, OP)?;
                self.invalidate_local(&e.sid);
                match v.as_slice() {
                    [live, _, created] => {
                        if live == "1" {
                            count += 1;
                        }
                        settled.push((e.sid.clone(), created.clone()));
                    }
                    _ => settled.push((e.sid.clone(), e.created.clone())),
                }
            }
            let removed = self.prune(conn, &uenc, &settled).await?;
            start += win.len() - usize::try_from(removed).unwrap_or(0).min(win.len());
        }
    }
}

/// The victims whose removal is not settled.
fn unmarked(victims: &[(String, String)], settled: &[(String, String)]) -> Vec<String> {
    victims
        .iter()
        .filter(|(v, _)| !settled.iter().any(|(s, _)| s == v))
        .map(|(v, _)| v.clone())
        .collect()
}
