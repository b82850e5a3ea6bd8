//! The benchmark data set: 100,000 sessions with 5 permissions each drawn from a pool of 200,
//! 10 sessions per user, empty metadata and ids like `session_` + 22 base64url characters.
//! Deterministic (a fixed-seed xorshift), so runs compare.

// Each bench binary uses a different part of this module.
#![allow(dead_code)]

use psm_core::{NewSession, Permission, PermissionList, SessionId, Ttl, UserId};

pub(crate) const SESSIONS: usize = 100_000;
pub(crate) const POOL: usize = 200;
pub(crate) const PER_SESSION: usize = 5;
pub(crate) const PER_USER: usize = 10;

/// A small deterministic generator (xorshift64*), good enough to scatter accesses.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub(crate) struct Dataset {
    pub(crate) ids: Vec<SessionId>,
    pub(crate) pool: Vec<Permission>,
    /// Indexes into `pool`, per session (distinct).
    pub(crate) perms: Vec<[u16; PER_SESSION]>,
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

impl Dataset {
    pub(crate) fn new() -> Self {
        let mut rng = Rng::new(0x5eed);
        let pool: Vec<Permission> = (0..POOL)
            .map(|i| {
                let verb = ["read", "write", "delete", "admin"][i % 4];
                Permission::parse(&format!("app{}.resource{}:{verb}", i % 7, i / 4))
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        let ids = (0..SESSIONS)
            .map(|_| {
                let mut s = String::from("session_");
                s.extend((0..22).map(|_| char::from(B64URL[rng.below(64)])));
                SessionId::parse(&s).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        let perms = (0..SESSIONS)
            .map(|_| {
                let mut set = [0u16; PER_SESSION];
                let mut n = 0;
                while n < PER_SESSION {
                    let p = rng.below(POOL) as u16;
                    if !set[..n].contains(&p) {
                        set[n] = p;
                        n += 1;
                    }
                }
                set
            })
            .collect();
        Self { ids, pool, perms }
    }

    pub(crate) fn user(&self, i: usize) -> UserId {
        UserId::parse(&format!("user-{}", i / PER_USER)).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) fn permission_strings(&self, i: usize) -> impl Iterator<Item = &str> {
        self.perms[i]
            .iter()
            .map(|&p| self.pool[usize::from(p)].as_str())
    }

    pub(crate) fn session(&self, i: usize, ttl: Option<Ttl>) -> NewSession {
        let perms =
            PermissionList::parse(self.permission_strings(i)).unwrap_or_else(|e| panic!("{e}"));
        NewSession::new(self.user(i), perms).with_ttl(ttl)
    }
}
