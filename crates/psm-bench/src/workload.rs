//! The benchmark's data: sessions, users, permissions and the random access sequences, generated
//! deterministically from a seed and entirely before any timing starts.

use std::collections::HashSet;

/// Permissions per session.
pub(crate) const PERMS_PER_SESSION: usize = 5;
/// Sessions per user.
pub(crate) const SESSIONS_PER_USER: usize = 10;
/// Resources in the permission pool; each has four actions, so the pool holds 200 permissions.
const RESOURCES: usize = 50;
const ACTIONS: [&str; 4] = ["read", "write", "admin", "delete"];
/// The `list_sessions` page size (the seed's default).
pub(crate) const LIST_LIMIT: u64 = 100;
/// URL-safe base64's alphabet, for session ids like `generate_session_id`'s.
const ID_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// SplitMix64: a tiny, fast, well-distributed generator; plenty for shuffling benchmark data.
#[derive(Debug)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (the modulo bias is irrelevant at these sizes).
    #[allow(clippy::cast_possible_truncation)]
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Everything the runs need, indexed by plain integers so the timed loops only look things up.
#[derive(Debug)]
pub(crate) struct Workload {
    /// `session_` + 22 URL-safe characters, all distinct.
    pub(crate) sessions: Vec<String>,
    pub(crate) users: Vec<String>,
    /// The user of each session.
    pub(crate) owner: Vec<usize>,
    /// The pool: `res<n>:<action>`.
    pub(crate) pool: Vec<String>,
    /// Each session's permissions, as pool indices, distinct.
    pub(crate) perms: Vec<[usize; PERMS_PER_SESSION]>,
    /// The order sessions are stored in (a permutation).
    pub(crate) insert_order: Vec<usize>,
    /// The random access sequence of every other operation: a second, independent permutation, so
    /// reads never follow the order the data was allocated in (which would hand either side
    /// hardware-prefetch locality and stop this being random access).
    pub(crate) order: Vec<usize>,
    /// The id each read asks for (`read_ids[k]` is `sessions[order[k]]`), as fresh strings laid out in
    /// access order: a server checks the id of the request it is serving, which is in cache. The
    /// store's own data is still accessed at random; only the caller's copy of the id is local.
    pub(crate) read_ids: Vec<String>,
    /// The random access sequence over users (a permutation), for `list_sessions(user)`.
    pub(crate) user_order: Vec<usize>,
    /// For position `k` of `order`: the permission asked by `check_permission`; the session holds it
    /// at even positions and lacks it at odd ones.
    pub(crate) check: Vec<usize>,
    /// For position `k` of `order`: five distinct permissions asked by `check_permissions`.
    pub(crate) check5: Vec<[usize; PERMS_PER_SESSION]>,
}

impl Workload {
    /// `sessions` sessions of `sessions / 10` users (at least one), from `seed`.
    pub(crate) fn generate(sessions: usize, seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let pool: Vec<String> = (0..RESOURCES)
            .flat_map(|r| ACTIONS.iter().map(move |a| format!("res{r}:{a}")))
            .collect();
        let user_count = (sessions / SESSIONS_PER_USER).max(1);
        let users: Vec<String> = (0..user_count).map(|u| format!("user_{u:05}")).collect();

        let mut seen = HashSet::with_capacity(sessions);
        let mut ids = Vec::with_capacity(sessions);
        while ids.len() < sessions {
            let mut id = String::with_capacity(30);
            id.push_str("session_");
            for _ in 0..22 {
                id.push(char::from(ID_ALPHABET[rng.below(64)]));
            }
            if seen.insert(id.clone()) {
                ids.push(id);
            }
        }

        let owner: Vec<usize> = (0..sessions).map(|s| s % user_count).collect();
        let perms: Vec<[usize; PERMS_PER_SESSION]> = (0..sessions)
            .map(|_| distinct(&mut rng, pool.len(), &[]))
            .collect();

        let mut insert_order: Vec<usize> = (0..sessions).collect();
        rng.shuffle(&mut insert_order);
        let mut order: Vec<usize> = (0..sessions).collect();
        rng.shuffle(&mut order);
        let mut user_order: Vec<usize> = (0..user_count).collect();
        rng.shuffle(&mut user_order);

        let mut check = Vec::with_capacity(sessions);
        let mut check5 = Vec::with_capacity(sessions);
        for (k, &s) in order.iter().enumerate() {
            let asked = if k % 2 == 0 {
                perms[s][rng.below(PERMS_PER_SESSION)]
            } else {
                loop {
                    let p = rng.below(pool.len());
                    if !perms[s].contains(&p) {
                        break p;
                    }
                }
            };
            check.push(asked);
            check5.push(distinct(&mut rng, pool.len(), &[asked]));
        }
        let read_ids = order.iter().map(|&s| ids[s].clone()).collect();
        Self {
            sessions: ids,
            users,
            owner,
            pool,
            perms,
            insert_order,
            read_ids,
            order,
            user_order,
            check,
            check5,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// The permission strings of session `s`.
    pub(crate) fn perms_of(&self, s: usize) -> impl Iterator<Item = &str> {
        self.perms[s].iter().map(|&p| self.pool[p].as_str())
    }

    /// The five permission strings asked at position `k`.
    pub(crate) fn check5_at(&self, k: usize) -> impl Iterator<Item = &str> {
        self.check5[k].iter().map(|&p| self.pool[p].as_str())
    }

    /// How many `check_permission` calls must answer `true`: the even positions.
    pub(crate) fn expected_check_hits(&self) -> u64 {
        self.len().div_ceil(2) as u64
    }

    /// How many of all `check_permissions` answers must be `true`.
    pub(crate) fn expected_check5_hits(&self) -> u64 {
        let granted =
            self.order.iter().zip(&self.check5).map(|(&s, asked)| {
                asked.iter().filter(|p| self.perms[s].contains(p)).count() as u64
            });
        granted.sum()
    }
}

/// `PERMS_PER_SESSION` distinct values below `n`, starting with `first`.
fn distinct(rng: &mut SplitMix64, n: usize, first: &[usize]) -> [usize; PERMS_PER_SESSION] {
    let mut out = [0; PERMS_PER_SESSION];
    let mut len = 0;
    for &f in first {
        out[len] = f;
        len += 1;
    }
    while len < PERMS_PER_SESSION {
        let p = rng.below(n);
        if !out[..len].contains(&p) {
            out[len] = p;
            len += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_has_the_promised_shape() {
        let w = Workload::generate(1_000, 7);
        assert_eq!(w.pool.len(), 200);
        assert_eq!(w.users.len(), 100);
        assert!(
            w.sessions
                .iter()
                .all(|id| id.len() == 30 && id.starts_with("session_"))
        );
        assert_eq!(w.sessions.iter().collect::<HashSet<_>>().len(), 1_000);
        for (k, &s) in w.order.iter().enumerate() {
            assert_eq!(w.perms[s].contains(&w.check[k]), k % 2 == 0);
            assert_eq!(w.check5[k].iter().collect::<HashSet<_>>().len(), 5);
        }
        let mut sorted = w.order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1_000).collect::<Vec<_>>());
        let again = Workload::generate(1_000, 7);
        assert_eq!(again.sessions, w.sessions);
    }
}
