//! Review tests: a randomized differential test against a simple model, plus targeted cases.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use psm_core::{
    Clock, ErrorKind, LimitPolicy, ManualClock, Metadata, NewSession, Page, PermissionList,
    PermissionRef, SessionIdRef, SessionLimit, Ttl, UserId,
};

use super::{SessionTable, users::split};
use crate::TableConfig;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Debug)]
struct M {
    user: String,
    perms: Vec<String>,
    created: i64,
    updated: i64,
    expires: Option<i64>,
    meta: Option<i64>,
}

impl M {
    fn live(&self, now: i64) -> bool {
        self.expires.is_none_or(|e| now < e)
    }
}

struct Model {
    sessions: BTreeMap<String, M>,
    cap: usize,
    created: u64,
    expired: u64,
}

impl Model {
    fn cleanup(&mut self, now: i64) -> u64 {
        let before = self.sessions.len();
        self.sessions.retain(|_, s| s.live(now));
        let n = (before - self.sessions.len()) as u64;
        self.expired += n;
        n
    }
    /// The quota reservation: `Ok` when there is room, purging expired sessions first when full.
    fn reserve(&mut self, now: i64) -> bool {
        if self.sessions.len() < self.cap {
            return true;
        }
        self.cleanup(now);
        self.sessions.len() < self.cap
    }
    fn live_of(&self, user: &str, now: i64) -> Vec<String> {
        let mut v: Vec<(&M, &String)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.user == user && s.live(now))
            .map(|(id, s)| (s, id))
            .collect();
        v.sort_by(|a, b| a.0.created.cmp(&b.0.created).then_with(|| a.1.cmp(b.1)));
        v.into_iter().map(|(_, id)| id.clone()).collect()
    }
}

const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const PERMS: [&str; 10] = [
    "read", "write", "admin", "a:b", "x*", "p?", "del", "ins", "upd", "sel",
];

fn ids() -> Vec<String> {
    let mut v: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
    v.extend((0..5).map(|i| format!("session_long_identifier_over_thirty_bytes_{i}")));
    v.push("session_abcdefghijklmnopqrstuv".to_owned()); // exactly 30 bytes
    v.push("session_abcdefghijklmnopqrstuvw".to_owned()); // 31 bytes
    v
}

fn rand_perms(rng: &mut Rng) -> Vec<String> {
    let n = 1 + rng.below(8);
    let mut pool: Vec<&str> = PERMS.to_vec();
    let mut out = Vec::new();
    for _ in 0..n {
        let i = rng.below(pool.len());
        out.push(pool.remove(i).to_owned());
    }
    out
}

fn new_session(user: &str, perms: &[String], ttl: Option<u64>, meta: Option<i64>) -> NewSession {
    let mut s = NewSession::new(
        UserId::parse(user).unwrap(),
        PermissionList::parse(perms).unwrap(),
    )
    .with_ttl(ttl.map(|t| Ttl::from_secs(t).unwrap()));
    if let Some(m) = meta {
        s = s.with_metadata(Metadata::from_value(serde_json::json!({ "m": m })).unwrap());
    }
    s
}

fn plus(now: i64, ttl: u64) -> i64 {
    now + ttl as i64 * 1_000_000
}

/// Shards and per-user indexes describe the same sessions; the quota counter matches.
fn check_internal(store: &SessionTable) {
    let inner = &store.inner;
    let mut stored = 0;
    for (si, shard) in inner.shards.iter().enumerate() {
        let table = shard.table.read();
        assert_eq!(
            table.len(),
            table.iter().count(),
            "index vs slabs in shard {si}"
        );
        for (slot, s) in table.iter() {
            stored += 1;
            let id = s.hot.id.to_session_id().unwrap();
            assert_eq!(inner.shard_of(inner.hash(id.as_str())), si);
            let users = inner.users[inner.user_shard(&s.cold.user)].map.lock();
            let index = users.get(&*s.cold.user).expect("user indexed");
            assert!(
                index
                    .iter()
                    .any(|e| e == (s.cold.created, super::users::handle(si, slot)))
            );
            assert_eq!(
                table
                    .find(inner.hash(id.as_str()), id.as_str())
                    .map(|(x, _)| x),
                Some(slot)
            );
        }
    }
    let mut indexed = 0;
    for users in inner.users.iter() {
        for (user, index) in users.map.lock().iter() {
            assert!(!index.is_empty());
            for (created, h) in index.iter() {
                indexed += 1;
                let (si, slot) = split(h);
                let table = inner.shards[si].table.read();
                let s = table.get(slot).expect("index entry points to a session");
                assert_eq!((&*s.cold.user, s.cold.created), (&**user, created));
            }
        }
    }
    assert_eq!(indexed, stored);
    assert_eq!(
        inner.stored.load(std::sync::atomic::Ordering::SeqCst),
        stored
    );
}

fn compare(
    store: &SessionTable,
    model: &Model,
    now: i64,
    ids: &[String],
    rng: &mut Rng,
    step: usize,
) {
    let ctx = |what: &str| format!("step {step}: {what}");
    for id in ids {
        let sid = SessionIdRef::parse(id).unwrap();
        let m = model.sessions.get(id).filter(|s| s.live(now));
        let got = store.get_session_info_now(sid);
        match (m, got) {
            (None, None) => {}
            (Some(m), Some(info)) => {
                let d = &info.data;
                assert_eq!(d.user_id.as_str(), m.user, "{}", ctx(id));
                assert_eq!(d.permissions.to_strings(), m.perms, "{}", ctx(id));
                assert_eq!(d.created_at.as_unix_micros(), m.created, "{}", ctx(id));
                assert_eq!(d.updated_at.as_unix_micros(), m.updated, "{}", ctx(id));
                let meta = m.meta.map_or_else(Metadata::empty, |v| {
                    Metadata::from_value(serde_json::json!({ "m": v })).unwrap()
                });
                assert!(d.metadata == meta, "{}", ctx(id));
                assert_eq!(
                    info.expires_at.map(|e| e.as_unix_micros()),
                    m.expires,
                    "{}",
                    ctx(id)
                );
            }
            (m, g) => panic!("{}: model {:?} store {:?}", ctx(id), m, g),
        }
        for p in PERMS {
            let want = m.is_some_and(|m| m.perms.iter().any(|x| x == p));
            assert_eq!(
                store.check_permission_now(sid, PermissionRef::parse(p).unwrap()),
                want,
                "{}",
                ctx(&format!("{id} {p}"))
            );
        }
        let ask = rand_perms(rng);
        let res = store.check_permissions_now(sid, &PermissionList::parse(&ask).unwrap());
        let want: Vec<bool> = ask
            .iter()
            .map(|p| m.is_some_and(|m| m.perms.contains(p)))
            .collect();
        assert_eq!(
            res.entries().iter().map(|e| e.1).collect::<Vec<_>>(),
            want,
            "{}",
            ctx(id)
        );
    }
    // Per-user listing, whole and paged.
    for u in USERS {
        let want = model.live_of(u, now);
        let user = UserId::parse(u).unwrap();
        let all: Vec<String> = store
            .list_sessions_now(Some(&user), Page::new(10_000, 0).unwrap())
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        assert_eq!(all, want, "{}", ctx(u));
        let limit = 1 + rng.below(3);
        let mut paged = Vec::new();
        let mut page = Page::new(limit as u64, 0).unwrap();
        loop {
            let got = store.list_sessions_now(Some(&user), page);
            if got.is_empty() {
                break;
            }
            paged.extend(got.iter().map(|s| s.as_str().to_owned()));
            page = page.next();
        }
        assert_eq!(paged, want, "{}", ctx(&format!("{u} paged by {limit}")));
    }
    // Global listing, paged.
    let want: BTreeSet<String> = model
        .sessions
        .iter()
        .filter(|(_, s)| s.live(now))
        .map(|(id, _)| id.clone())
        .collect();
    let limit = 1 + rng.below(4);
    let mut page = Page::new(limit as u64, 0).unwrap();
    let mut got = Vec::new();
    loop {
        let p = store.list_sessions_now(None, page);
        assert!(p.len() <= limit);
        if p.is_empty() {
            break;
        }
        got.extend(p.iter().map(|s| s.as_str().to_owned()));
        page = page.next();
    }
    let set: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(
        set.len(),
        got.len(),
        "{}",
        ctx("global listing has duplicates")
    );
    assert_eq!(set, want, "{}", ctx("global listing"));
    // Stats.
    let st = store.stats();
    let live: Vec<&M> = model.sessions.values().filter(|s| s.live(now)).collect();
    assert_eq!(
        st.total_sessions,
        model.sessions.len() as u64,
        "{}",
        ctx("total")
    );
    assert_eq!(st.active_sessions, live.len() as u64, "{}", ctx("active"));
    assert_eq!(
        st.sessions_with_ttl,
        live.iter().filter(|s| s.expires.is_some()).count() as u64,
        "{}",
        ctx("with_ttl")
    );
    let users: BTreeSet<&str> = live.iter().map(|s| s.user.as_str()).collect();
    assert_eq!(
        st.unique_users,
        users.len() as u64,
        "{}",
        ctx("unique_users")
    );
    assert_eq!(
        st.total_sessions_created,
        model.created,
        "{}",
        ctx("created")
    );
    assert_eq!(
        st.total_sessions_expired,
        model.expired,
        "{}",
        ctx("expired")
    );
    check_internal(store);
}

fn run(seed: u64, shards: usize, cap: Option<usize>, steps: usize) {
    let clock = ManualClock::at_2024();
    let store = SessionTable::with_clock(
        TableConfig {
            max_sessions: cap,
            shards,
            ..TableConfig::default()
        },
        Arc::new(clock.clone()),
    );
    let mut model = Model {
        sessions: BTreeMap::new(),
        cap: cap.unwrap_or(usize::MAX),
        created: 0,
        expired: 0,
    };
    let ids = ids();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    for step in 0..steps {
        let now = clock.now().as_unix_micros();
        let id = ids[rng.below(ids.len())].clone();
        let sid = SessionIdRef::parse(&id).unwrap();
        let user = USERS[rng.below(USERS.len())];
        let ttl = rng.chance(70).then(|| 1 + rng.below(10) as u64);
        match rng.below(100) {
            0..=24 => {
                let perms = rand_perms(&mut rng);
                let meta = rng.chance(30).then(|| rng.below(1000) as i64);
                let got = store.store_permissions_now(sid, new_session(user, &perms, ttl, meta));
                let exists = model.sessions.contains_key(&id);
                if !exists && !model.reserve(now) {
                    assert_eq!(
                        got.unwrap_err().kind(),
                        ErrorKind::StorageQuotaExceeded,
                        "step {step}"
                    );
                } else {
                    got.unwrap_or_else(|e| panic!("step {step}: store {e:?}"));
                    if let Some(old) = model.sessions.get(&id)
                        && !old.live(now)
                    {
                        model.expired += 1;
                    }
                    model.sessions.insert(
                        id.clone(),
                        M {
                            user: user.to_owned(),
                            perms,
                            created: now,
                            updated: now,
                            expires: ttl.map(|t| plus(now, t)),
                            meta,
                        },
                    );
                    model.created += 1;
                }
            }
            25..=49 => {
                let perms = rand_perms(&mut rng);
                let meta = rng.chance(30).then(|| rng.below(1000) as i64);
                let max = 1 + rng.below(3) as u32;
                let policy = if rng.chance(50) {
                    LimitPolicy::Reject
                } else {
                    LimitPolicy::EvictOldest
                };
                let limit = SessionLimit::new(max, policy).unwrap();
                let got =
                    store.create_session_now(sid, new_session(user, &perms, ttl, meta), limit);
                // Model.
                let current = model.sessions.get(&id).cloned();
                if current.as_ref().is_some_and(|c| c.live(now)) {
                    assert_eq!(
                        got.unwrap_err().kind(),
                        ErrorKind::SessionExists,
                        "step {step}"
                    );
                    continue_after(&store, &model, now, &ids, &mut rng, step, &clock);
                    continue;
                }
                let reservation = current.is_some() || model.reserve(now);
                let reservation = reservation && current.is_none();
                let live: Vec<String> = model
                    .live_of(user, now)
                    .into_iter()
                    .filter(|x| *x != id)
                    .collect();
                let expired: Vec<String> = model
                    .sessions
                    .iter()
                    .filter(|(x, s)| s.user == user && !s.live(now) && **x != id)
                    .map(|(x, _)| x.clone())
                    .collect();
                let excess = (live.len() + 1).saturating_sub(max as usize);
                if excess > 0 && policy == LimitPolicy::Reject {
                    assert_eq!(
                        got.unwrap_err().kind(),
                        ErrorKind::SessionLimitReached,
                        "step {step}"
                    );
                } else if usize::from(reservation)
                    + usize::from(current.is_some())
                    + expired.len()
                    + excess
                    == 0
                {
                    assert_eq!(
                        got.unwrap_err().kind(),
                        ErrorKind::StorageQuotaExceeded,
                        "step {step}"
                    );
                } else {
                    let evicted = got.unwrap_or_else(|e| panic!("step {step}: create {e:?}"));
                    let evicted: Vec<String> =
                        evicted.iter().map(|s| s.as_str().to_owned()).collect();
                    assert_eq!(evicted, live[..excess].to_vec(), "step {step}: evicted");
                    model.expired += (expired.len() + usize::from(current.is_some())) as u64;
                    for x in expired.iter().chain(&live[..excess]) {
                        model.sessions.remove(x);
                    }
                    model.sessions.insert(
                        id.clone(),
                        M {
                            user: user.to_owned(),
                            perms,
                            created: now,
                            updated: now,
                            expires: ttl.map(|t| plus(now, t)),
                            meta,
                        },
                    );
                    model.created += 1;
                }
            }
            50..=57 => {
                let perms = rand_perms(&mut rng);
                let got = store.update_permissions_now(
                    sid,
                    PermissionList::parse(&perms).unwrap(),
                    ttl.map(|t| Ttl::from_secs(t).unwrap()),
                );
                let want = match model.sessions.get_mut(&id) {
                    Some(s) if s.live(now) => {
                        s.perms = perms;
                        s.updated = now;
                        if let Some(t) = ttl {
                            s.expires = Some(plus(now, t));
                        }
                        true
                    }
                    _ => false,
                };
                assert_eq!(got, want, "step {step}: update");
            }
            58..=65 => {
                let t = 1 + rng.below(10) as u64;
                let got = store.extend_session_ttl_now(sid, Ttl::from_secs(t).unwrap());
                let want = match model.sessions.get_mut(&id) {
                    Some(s) if s.live(now) => {
                        s.expires = Some(plus(now, t));
                        s.updated = now;
                        true
                    }
                    _ => false,
                };
                assert_eq!(got, want, "step {step}: extend");
            }
            66..=75 => {
                let got = store.invalidate_session_now(sid);
                let want = match model.sessions.remove(&id) {
                    Some(s) if s.live(now) => true,
                    Some(_) => {
                        model.expired += 1;
                        false
                    }
                    None => false,
                };
                assert_eq!(got, want, "step {step}: invalidate");
            }
            76..=79 => {
                let got = store.invalidate_user_sessions_now(&UserId::parse(user).unwrap());
                let mine: Vec<(String, bool)> = model
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.user == user)
                    .map(|(x, s)| (x.clone(), s.live(now)))
                    .collect();
                let mut live = 0;
                for (x, l) in mine {
                    model.sessions.remove(&x);
                    if l {
                        live += 1;
                    } else {
                        model.expired += 1;
                    }
                }
                assert_eq!(got, live, "step {step}: invalidate_user");
            }
            80..=83 => {
                assert_eq!(store.cleanup(), model.cleanup(now), "step {step}: cleanup");
            }
            84 => {
                let live = model.sessions.values().filter(|s| s.live(now)).count() as u64;
                model.expired += model.sessions.len() as u64 - live;
                model.sessions.clear();
                assert_eq!(store.clear_all_sessions(), live, "step {step}: clear");
            }
            _ => {}
        }
        continue_after(&store, &model, now, &ids, &mut rng, step, &clock);
    }
}

fn continue_after(
    store: &SessionTable,
    model: &Model,
    now: i64,
    ids: &[String],
    rng: &mut Rng,
    step: usize,
    clock: &ManualClock,
) {
    compare(store, model, now, ids, rng, step);
    match rng.below(10) {
        0..=4 => {}
        5 => clock.advance(Duration::from_micros(1)),
        6 | 7 => clock.advance(Duration::from_secs(1)),
        8 => clock.advance(Duration::from_secs(3)),
        _ => clock.advance(Duration::from_millis(1 + rng.below(5000) as u64)),
    }
}

#[test]
fn differential_against_a_model() {
    for seed in 1..=24u64 {
        let shards = [1, 2, 64][seed as usize % 3];
        let cap = [None, Some(4), Some(7), None][(seed as usize / 3) % 4];
        run(seed, shards, cap, 2500);
    }
}

/// Concurrent stress: every session carries `id:<id>` and `user:<user>` among its permissions, so
/// any read that returns another session's data is caught; users `L*` are written only through
/// `create_session` with a limit of 2 and must never be seen with more than 2 live sessions.
#[test]
fn concurrent_stress_never_mixes_sessions_and_keeps_limits() {
    use std::thread;
    for (shards, cap) in [(1, Some(25)), (2, None), (8, Some(12))] {
        let clock = ManualClock::at_2024();
        let store = SessionTable::with_clock(
            TableConfig {
                max_sessions: cap,
                shards,
                ..TableConfig::default()
            },
            Arc::new(clock.clone()),
        );
        let mut all_ids: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
        all_ids.extend((0..20).map(|i| format!("session_long_identifier_over_thirty_bytes_{i}")));
        let users = ["L0", "L1", "L2", "free0", "free1", "free2"];
        thread::scope(|scope| {
            for t in 0..8u64 {
                let (store, clock, all_ids) = (store.clone(), clock.clone(), all_ids.clone());
                scope.spawn(move || {
                    let mut rng = Rng((t + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
                    for _ in 0..3000 {
                        let id = &all_ids[rng.below(all_ids.len())];
                        let sid = SessionIdRef::parse(id).unwrap();
                        let user = users[rng.below(users.len())];
                        let mut perms = vec![format!("id:{id}"), format!("user:{user}")];
                        perms.extend(rand_perms(&mut rng).into_iter().take(rng.below(6)));
                        let mut perms_no_user = vec![format!("id:{id}")];
                        perms_no_user.extend(rand_perms(&mut rng).into_iter().take(rng.below(7)));
                        let ttl = rng.chance(60).then(|| 1 + rng.below(4) as u64);
                        let ns = new_session(user, &perms, ttl, None);
                        match rng.below(20) {
                            0..=4 => {
                                let max = 2;
                                let policy = if rng.chance(50) {
                                    LimitPolicy::Reject
                                } else {
                                    LimitPolicy::EvictOldest
                                };
                                let _ = store.create_session_now(
                                    sid,
                                    ns,
                                    SessionLimit::new(max, policy).unwrap(),
                                );
                            }
                            5..=7 if user.starts_with("free") => {
                                let _ = store.store_permissions_now(sid, ns);
                            }
                            8 => {
                                let _ = store.invalidate_session_now(sid);
                            }
                            9 => {
                                let _ = store.update_permissions_now(
                                    sid,
                                    PermissionList::parse(&perms_no_user).unwrap(),
                                    ttl.map(|t| Ttl::from_secs(t).unwrap()),
                                );
                            }
                            10 => {
                                let _ =
                                    store.extend_session_ttl_now(sid, Ttl::from_secs(2).unwrap());
                            }
                            11 => {
                                let _ = store
                                    .invalidate_user_sessions_now(&UserId::parse(user).unwrap());
                            }
                            12 => {
                                let _ = store.cleanup();
                            }
                            13 => clock.advance(Duration::from_millis(rng.below(1500) as u64)),
                            14 if rng.chance(3) => {
                                let _ = store.clear_all_sessions();
                            }
                            _ => {
                                if let Some(d) = store.get_permissions_now(sid) {
                                    let ps = d.permissions.to_strings();
                                    assert!(ps.contains(&format!("id:{id}")), "{id} got {ps:?}");
                                    assert!(
                                        ps.iter()
                                            .filter(|p| p.starts_with("user:"))
                                            .all(|p| *p == format!("user:{}", d.user_id.as_str())),
                                        "{id} got {ps:?} for {}",
                                        d.user_id.as_str()
                                    );
                                }
                                let other = &all_ids[rng.below(all_ids.len())];
                                if other != id {
                                    let p = format!("id:{other}");
                                    assert!(!store.check_permission_now(
                                        sid,
                                        PermissionRef::parse(&p).unwrap()
                                    ));
                                }
                                for l in ["L0", "L1", "L2"] {
                                    let u = UserId::parse(l).unwrap();
                                    let n = store.list_sessions_now(Some(&u), Page::default());
                                    assert!(n.len() <= 2, "{l} holds {n:?}");
                                }
                            }
                        }
                    }
                });
            }
        });
        check_internal(&store);
        for l in ["L0", "L1", "L2"] {
            let u = UserId::parse(l).unwrap();
            assert!(store.list_sessions_now(Some(&u), Page::default()).len() <= 2);
        }
        let st = store.stats();
        if let Some(c) = cap {
            assert!(st.total_sessions as usize <= c);
        }
    }
}

/// Two concurrent upserts of one new id into a store with exactly one free place: in every serial
/// order both succeed (the first inserts, the second replaces), so neither may fail with
/// `StorageQuotaExceeded`. `store` returns the error of a failed reservation at once
/// (write.rs `reservation = Some(self.reserve()?)`) without re-checking, under the locks, whether
/// the id now exists (in which case the call is a replacement and needs no place).
#[test]
fn concurrent_upserts_of_one_id_never_fail_with_quota_exceeded() {
    use std::{sync::Barrier, thread};
    let clock = ManualClock::at_2024();
    let store = SessionTable::with_clock(
        TableConfig {
            max_sessions: Some(1),
            ..TableConfig::default()
        },
        Arc::new(clock),
    );
    let perms = vec!["read".to_owned()];
    let mut failures = 0;
    for _ in 0..3000 {
        store.clear_all_sessions();
        let barrier = Barrier::new(2);
        let results: Vec<bool> = thread::scope(|scope| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let (store, barrier, perms) = (&store, &barrier, &perms);
                    scope.spawn(move || {
                        barrier.wait();
                        store
                            .store_permissions_now(
                                SessionIdRef::parse("same").unwrap(),
                                new_session("u", perms, None, None),
                            )
                            .is_ok()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        failures += results.iter().filter(|ok| !**ok).count();
    }
    assert_eq!(
        failures, 0,
        "spurious StorageQuotaExceeded on an upsert of an existing id"
    );
}
