//! The workload's tasks: writers, readers, updaters, invalidators, logins, refreshers, and the
//! checker that sweeps every session, counts every login user's sessions and cleans up expired
//! state. Every call is bounded in time and its failure counted by kind, never unwrapped.

use std::{
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use psm::{
    Clock, LimitPolicy, SessionId, SessionLimit, SystemClock, TokenStateStore as _, jwt::TokenPair,
};
use tokio::{sync::mpsc, task::JoinSet, time::sleep};

use crate::{
    SoakError,
    chain::{Refreshed, judge_after_reuse, judge_fresh, judge_replay, judge_simultaneous},
    model::{
        Invariant, Mutation, PERMISSIONS, Slot, Verdict, Window, judge_check, judge_get,
        judge_returned, mask_of, names,
    },
    provider::Rig,
    rng::Rng,
    stats::{Failure, Op, Stats},
};

/// Session ids under test, and the users they belong to (slot `i` belongs to user `i % USERS`).
pub(crate) const SLOTS: usize = 256;
const USERS: usize = 16;
/// Users that only log in; each alternates policies (even: evict the oldest, odd: reject).
const LOGIN_USERS: usize = 8;
pub(crate) const LOGIN_LIMIT: u32 = 3;
/// Shortest and longest ttl of the workload's sessions, in seconds.
const TTL: (u64, u64) = (1, 3);
/// A call that has not answered after this long counts as failed (its effect unknown).
const CALL_BOUND: Duration = Duration::from_secs(10);
/// Pause between logins of one task: a login starts a token family that lives for the absolute
/// lifetime, so unpaced logins would only measure how fast families pile up.
const LOGIN_PAUSE: Duration = Duration::from_millis(5);
/// Refreshes per chain before it ends, and the pause between them (ms).
const CHAIN_STEPS: (u64, u64) = (1, 5);
const CHAIN_PAUSE_MS: (u64, u64) = (10, 150);
/// How often the checker counts the login users' sessions, sweeps the slots and cleans up.
const LIMIT_EVERY: Duration = Duration::from_millis(200);
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How many tasks of each kind run.
const WRITERS: u64 = 3;
const READERS: u64 = 6;
const UPDATERS: u64 = 2;
const INVALIDATORS: u64 = 1;
const LOGINS: u64 = 2;
const REFRESHERS: u64 = 4;

/// Everything the tasks of one provider's run share.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) rig: Rig,
    pub(crate) stats: Stats,
    slots: Vec<Mutex<Slot>>,
    ids: Vec<String>,
    users: Vec<String>,
    login_users: Vec<String>,
    limits: [SessionLimit; 2],
    /// Per login user: creates in flight, and a count bumped when one starts or ends.
    gates: Vec<(AtomicU64, AtomicU64)>,
    stop: AtomicBool,
    seed: u64,
}

/// A login handed to a refresher.
struct Chain {
    session: SessionId,
    /// A permission the session holds, to test whether it still passes.
    permission: &'static str,
    pair: TokenPair,
}

fn now() -> i64 {
    SystemClock.now().as_unix_micros()
}

async fn call<T>(fut: impl Future<Output = psm::Result<T>>) -> Result<T, Failure> {
    match tokio::time::timeout(CALL_BOUND, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Psm(e.kind())),
        Err(_) => Err(Failure::Timeout),
    }
}

fn random_mask(rng: &mut Rng) -> u8 {
    // Never empty: a permission list needs at least one entry.
    (rng.below(255) + 1) as u8
}

impl Ctx {
    pub(crate) fn new(rig: Rig, seed: u64) -> Result<Self, SoakError> {
        Ok(Self {
            rig,
            stats: Stats::default(),
            slots: (0..SLOTS)
                .map(|i| Mutex::new(Slot::new((i % USERS) as u32)))
                .collect(),
            ids: (0..SLOTS).map(|i| format!("soak_{i}")).collect(),
            users: (0..USERS).map(|u| format!("soak-user-{u}")).collect(),
            login_users: (0..LOGIN_USERS)
                .map(|u| format!("soak-login-{u}"))
                .collect(),
            limits: [
                SessionLimit::new(LOGIN_LIMIT, LimitPolicy::EvictOldest)?,
                SessionLimit::new(LOGIN_LIMIT, LimitPolicy::Reject)?,
            ],
            gates: (0..LOGIN_USERS)
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
            stop: AtomicBool::new(false),
            seed,
        })
    }

    fn slot(&self, i: usize) -> MutexGuard<'_, Slot> {
        self.slots[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Asks every task to finish its current call and return.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The user index of a stored user id (`u32::MAX` for one the workload never wrote).
    fn user_index(&self, user: &str) -> u32 {
        self.users
            .iter()
            .position(|u| u == user)
            .map_or(u32::MAX, |i| i as u32)
    }

    /// Spawns every task of the workload.
    pub(crate) fn spawn(self: &Arc<Self>, tasks: &mut JoinSet<()>) {
        let (tx, rx) = mpsc::channel::<Chain>(64);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let mut stream = 0;
        let mut next_rng = || {
            stream += 1;
            Rng::new(self.seed, stream)
        };
        for (count, kind) in [
            (WRITERS, Kind::Write),
            (UPDATERS, Kind::Update),
            (INVALIDATORS, Kind::Invalidate),
        ] {
            for _ in 0..count {
                let (ctx, mut rng) = (Arc::clone(self), next_rng());
                tasks.spawn(async move {
                    while !ctx.stopped() {
                        ctx.mutate(&mut rng, kind).await;
                        tokio::task::yield_now().await;
                    }
                });
            }
        }
        for _ in 0..READERS {
            let (ctx, mut rng) = (Arc::clone(self), next_rng());
            tasks.spawn(async move {
                while !ctx.stopped() {
                    let i = rng.below(SLOTS as u64) as usize;
                    ctx.read(i, Read::random(&mut rng)).await;
                    tokio::task::yield_now().await;
                }
            });
        }
        for _ in 0..LOGINS {
            let (ctx, mut rng, tx) = (Arc::clone(self), next_rng(), tx.clone());
            tasks.spawn(async move {
                while !ctx.stopped() {
                    ctx.login(&mut rng, &tx).await;
                    sleep(LOGIN_PAUSE).await;
                }
            });
        }
        for _ in 0..REFRESHERS {
            let (ctx, mut rng, rx) = (Arc::clone(self), next_rng(), Arc::clone(&rx));
            tasks.spawn(async move {
                while !ctx.stopped() {
                    let next = {
                        let mut rx = rx.lock().await;
                        tokio::time::timeout(Duration::from_millis(100), rx.recv()).await
                    };
                    match next {
                        Ok(Some(chain)) => ctx.run_chain(&mut rng, chain).await,
                        Ok(None) => break,
                        Err(_) => {}
                    }
                }
            });
        }
        let ctx = Arc::clone(self);
        tasks.spawn(async move { ctx.checker().await });
    }

    /// One mutation of a claimed slot (a store, an update or renewal, an invalidation).
    async fn mutate(&self, rng: &mut Rng, kind: Kind) {
        let mut i = rng.below(SLOTS as u64) as usize;
        // Another mutator holds it: the next one is as good.
        let mut tries = 0;
        while !self.slot(i).try_claim() {
            i = (i + 1) % SLOTS;
            tries += 1;
            if tries == SLOTS {
                return;
            }
        }
        let user = self.slot(i).user;
        let ttl = rng.between(TTL.0, TTL.1);
        let m = match kind {
            Kind::Write => Mutation::Store {
                user,
                perms: random_mask(rng),
                ttl,
            },
            Kind::Update if rng.one_in(2) => Mutation::Update {
                perms: random_mask(rng),
                ttl: (!rng.one_in(2)).then_some(ttl),
            },
            Kind::Update => Mutation::Extend { ttl },
            Kind::Invalidate => Mutation::Invalidate,
        };
        let id = self.ids[i].as_str();
        let manager = &self.rig.manager;
        let start = now();
        let prev = self.slot(i).begin(m, start);
        let (op, result) = match m {
            Mutation::Store { perms, ttl, .. } => (
                Op::Store,
                call(manager.store_permissions(
                    id,
                    &self.users[user as usize],
                    names(perms),
                    Some(ttl),
                    None,
                ))
                .await,
            ),
            Mutation::Update { perms, ttl } => (
                Op::Update,
                call(manager.update_permissions(id, names(perms), ttl)).await,
            ),
            Mutation::Extend { ttl } => {
                (Op::Extend, call(manager.extend_session_ttl(id, ttl)).await)
            }
            Mutation::Invalidate => (Op::Invalidate, call(manager.invalidate_session(id)).await),
        };
        let w = Window { start, end: now() };
        self.stats.call(op);
        let returned = match result {
            Ok(b) => Some(b),
            Err(f) => {
                self.stats.error(op, f);
                None
            }
        };
        if let (Some(r), false) = (returned, matches!(m, Mutation::Store { .. })) {
            self.stats.verdict(judge_returned(&prev, w, r), || {
                format!("{op:?} of {id} returned {r}; the model held {prev:?} over {w:?}")
            });
        }
        self.slot(i).finish(m.after(&prev, w, returned));
    }

    /// One read of slot `i`, judged against every state it may have seen.
    async fn read(&self, i: usize, what: Read) {
        let id = self.ids[i].as_str();
        let manager = &self.rig.manager;
        let ticket = self.slot(i).begin_read();
        let start = now();
        match what {
            Read::Check(bit) => {
                let r = call(manager.check_permission(id, PERMISSIONS[bit as usize])).await;
                let w = Window { start, end: now() };
                let cands = self.slot(i).end_read(ticket);
                self.stats.call(Op::Check);
                match r {
                    Ok(b) => self.stats.verdict(judge_check(&cands, bit, w, b), || {
                        format!(
                            "check_permission({id}, p{bit}) = {b} over {w:?}; candidates {cands:?}"
                        )
                    }),
                    Err(f) => self.stats.error(Op::Check, f),
                }
            }
            Read::CheckAll => {
                let r = call(manager.check_permissions(id, PERMISSIONS)).await;
                let w = Window { start, end: now() };
                let cands = self.slot(i).end_read(ticket);
                self.stats.call(Op::CheckMany);
                match r {
                    Ok(checks) => {
                        for (bit, p) in PERMISSIONS.iter().enumerate() {
                            let b = checks.get(p).unwrap_or(false);
                            self.stats
                                .verdict(judge_check(&cands, bit as u8, w, b), || {
                                    format!(
                                        "check_permissions({id})[{p}] = {b} over {w:?}; candidates {cands:?}"
                                    )
                                });
                        }
                    }
                    Err(f) => self.stats.error(Op::CheckMany, f),
                }
            }
            Read::Get => {
                let r = call(manager.get_permissions(id)).await;
                let w = Window { start, end: now() };
                let cands = self.slot(i).end_read(ticket);
                self.stats.call(Op::Get);
                match r {
                    Ok(data) => {
                        let seen = data.map(|d| {
                            (
                                self.user_index(d.user_id.as_str()),
                                // A permission outside the workload reads as no set at all.
                                mask_of(d.permissions.iter_str()).unwrap_or(0),
                            )
                        });
                        self.stats.verdict(judge_get(&cands, w, seen), || {
                            format!(
                                "get_permissions({id}) = {seen:?} over {w:?}; candidates {cands:?}"
                            )
                        });
                    }
                    Err(f) => self.stats.error(Op::Get, f),
                }
            }
        }
    }

    /// A login under the per-user limit, then its first token pair, handed to a refresher.
    async fn login(&self, rng: &mut Rng, tx: &mpsc::Sender<Chain>) {
        let u = rng.below(LOGIN_USERS as u64) as usize;
        let limit = self.limits[u % 2];
        let perms = names(random_mask(rng));
        let permission = perms.first().copied().unwrap_or(PERMISSIONS[0]);
        let ttl = rng.between(TTL.0, TTL.1);
        let manager = &self.rig.manager;
        let (inflight, bumps) = &self.gates[u];
        bumps.fetch_add(1, Ordering::SeqCst);
        inflight.fetch_add(1, Ordering::SeqCst);
        let created =
            call(manager.create_session(&self.login_users[u], perms, Some(ttl), None, limit)).await;
        inflight.fetch_sub(1, Ordering::SeqCst);
        bumps.fetch_add(1, Ordering::SeqCst);
        self.stats.call(Op::Login);
        let created = match created {
            Ok(c) => c,
            Err(f @ Failure::Psm(psm::ErrorKind::SessionLimitReached))
                if limit.policy == LimitPolicy::Reject =>
            {
                return self.stats.refused(Op::Login, f);
            }
            Err(f) => return self.stats.error(Op::Login, f),
        };
        let issued = call(self.rig.auth.issue_tokens(&created.id)).await;
        self.stats.call(Op::IssueTokens);
        match issued {
            Ok(pair) => {
                // A full queue drops the chain: its family simply expires.
                let _ = tx.try_send(Chain {
                    session: created.id,
                    permission,
                    pair,
                });
            }
            // Evicted by a concurrent login of the same user, or expired already.
            Err(f @ Failure::Psm(psm::ErrorKind::SessionNotFound)) => {
                self.stats.refused(Op::IssueTokens, f);
            }
            Err(f) => self.stats.error(Op::IssueTokens, f),
        }
    }

    async fn refresh(&self, op: Op, token: &str) -> (Refreshed, Option<TokenPair>) {
        let r = call(self.rig.auth.refresh(token)).await;
        self.stats.call(op);
        match r {
            Ok(pair) => (Refreshed::Accepted, Some(pair)),
            Err(f) => {
                let outcome = match f {
                    Failure::Psm(kind) => Refreshed::from_kind(kind),
                    Failure::Timeout => Refreshed::Failed,
                };
                if outcome == Refreshed::Failed {
                    self.stats.error(op, f);
                } else {
                    self.stats.refused(op, f);
                }
                (outcome, None)
            }
        }
    }

    /// Rotates one login's refresh token a few times, then replays an accepted token, or presents
    /// the current one three times at once, or abandons the chain.
    async fn run_chain(&self, rng: &mut Rng, chain: Chain) {
        let Chain {
            session,
            permission,
            pair,
        } = chain;
        let family_end = pair.refresh_expires_at.as_unix_micros();
        let mut current = pair.refresh_token;
        let mut accepted: Vec<String> = Vec::new();
        let mut live = true;
        for _ in 0..rng.between(CHAIN_STEPS.0, CHAIN_STEPS.1) {
            if self.stopped() {
                return;
            }
            sleep(Duration::from_millis(
                rng.between(CHAIN_PAUSE_MS.0, CHAIN_PAUSE_MS.1),
            ))
            .await;
            let (outcome, next) = self.refresh(Op::Refresh, &current).await;
            self.stats.verdict(judge_fresh(outcome), || {
                format!(
                    "a fresh refresh token of {} was refused as reused",
                    session.redacted()
                )
            });
            match next {
                Some(next) => accepted.push(std::mem::replace(&mut current, next.refresh_token)),
                None => {
                    live = false;
                    break;
                }
            }
        }
        if accepted.is_empty() || self.stopped() {
            return;
        }
        match rng.below(3) {
            0 => {
                let old = &accepted[rng.below(accepted.len() as u64) as usize];
                // Only reuse detection may refuse a token of a family that is live and not near
                // its absolute end.
                let family_live = live && now() + 1_000_000 < family_end;
                let (outcome, _) = self.refresh(Op::Replay, old).await;
                self.stats.verdict(judge_replay(outcome, family_live), || {
                    format!(
                        "replaying a rotated token of {} gave {outcome:?} (family live: {family_live})",
                        session.redacted()
                    )
                });
                if outcome == Refreshed::Refused(psm::ErrorKind::TokenReuseDetected) {
                    let passed = call(
                        self.rig
                            .manager
                            .check_permission(session.as_str(), permission),
                    )
                    .await
                    .unwrap_or(false);
                    self.stats.call(Op::Check);
                    let (latest, _) = self.refresh(Op::AfterReuse, &current).await;
                    self.stats.verdict(judge_after_reuse(passed, latest), || {
                        format!(
                            "after reuse detection on {}: check passed {passed}, latest token {latest:?}",
                            session.redacted()
                        )
                    });
                }
            }
            1 if live => {
                let (a, b, c) = tokio::join!(
                    self.refresh(Op::Simultaneous, &current),
                    self.refresh(Op::Simultaneous, &current),
                    self.refresh(Op::Simultaneous, &current),
                );
                let outcomes = [a.0, b.0, c.0];
                self.stats.verdict(judge_simultaneous(&outcomes), || {
                    format!(
                        "three simultaneous refreshes of {} gave {outcomes:?}",
                        session.redacted()
                    )
                });
            }
            _ => {}
        }
    }

    /// The checker: login users' session counts against the limit, a sweep of every slot, and the
    /// cleanup a deployment runs periodically (expired sessions and token families).
    async fn checker(&self) {
        let mut last_sweep = tokio::time::Instant::now();
        while !self.stopped() {
            sleep(LIMIT_EVERY).await;
            self.check_limits().await;
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = tokio::time::Instant::now();
                if self.stopped() {
                    break;
                }
                self.sweep().await;
                self.cleanup().await;
            }
        }
    }

    /// Counts each login user's live sessions. The contract bounds what `create_session` calls
    /// *leave*, so a count above the limit is a violation only when no create of that user was in
    /// flight at any moment of the listing; otherwise it is reported as transient.
    async fn check_limits(&self) {
        for (user, (inflight, bumps)) in self.login_users.iter().zip(&self.gates) {
            let before = (
                bumps.load(Ordering::SeqCst),
                inflight.load(Ordering::SeqCst),
            );
            let listed = call(self.rig.manager.list_sessions(Some(user.as_str()), 100, 0)).await;
            let quiet = before.1 == 0 && bumps.load(Ordering::SeqCst) == before.0;
            self.stats.call(Op::ListUser);
            match listed {
                Ok(ids) if ids.len() > LOGIN_LIMIT as usize && !quiet => {
                    self.stats.transient_over_limit();
                }
                Ok(ids) if ids.len() > LOGIN_LIMIT as usize => self.stats.violation(
                    Invariant::LimitExceeded,
                    format!(
                        "{user} listed {} live sessions (limit {LOGIN_LIMIT}) with no create in flight",
                        ids.len()
                    ),
                ),
                Ok(_) => self.stats.verdict(Verdict::Consistent, String::new),
                Err(f) => self.stats.error(Op::ListUser, f),
            }
        }
    }

    /// Reads every slot whole (the readers pick at random; this visits each one every second).
    pub(crate) async fn sweep(&self) {
        for i in 0..SLOTS {
            self.read(i, Read::Get).await;
        }
    }

    async fn cleanup(&self) {
        let sessions = call(self.rig.manager.cleanup_expired_sessions()).await;
        self.stats.call(Op::Cleanup);
        if let Err(f) = sessions {
            self.stats.error(Op::Cleanup, f);
        }
        let families = call(self.rig.tokens.cleanup_expired_families()).await;
        self.stats.call(Op::Cleanup);
        if let Err(f) = families {
            self.stats.error(Op::Cleanup, f);
        }
    }

    /// The counters and the rig, once the run is over.
    pub(crate) fn into_parts(self) -> (Stats, Rig) {
        (self.stats, self.rig)
    }
}

/// What a mutator task does.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Write,
    Update,
    Invalidate,
}

/// What a read asks.
#[derive(Debug, Clone, Copy)]
enum Read {
    /// `check_permission` of one permission.
    Check(u8),
    /// `check_permissions` of all eight.
    CheckAll,
    /// `get_permissions`, the whole record.
    Get,
}

impl Read {
    fn random(rng: &mut Rng) -> Self {
        match rng.below(10) {
            0..=6 => Read::Check(rng.below(PERMISSIONS.len() as u64) as u8),
            7 | 8 => Read::CheckAll,
            _ => Read::Get,
        }
    }
}
