//! Password policy and argon2id hashing, always on the service's own hashing threads.

use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use argon2::{Algorithm, Argon2, PasswordHasher, Version};
use psm_core::{Error, ErrorKind, PasswordHash, RandomSource, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::config::{Argon2Params, AuthConfig};

/// Salt bytes per hash (argon2's recommended length).
const SALT_BYTES: usize = 16;

/// Checks the password policy: only the length, counted in characters (NIST SP 800-63B and OWASP ask
/// for no composition rules).
pub(crate) fn check_policy(config: &AuthConfig, password: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < config.password_min_chars || chars > config.password_max_chars {
        // The message names the bounds, never the password or its length.
        return Err(Error::new(
            ErrorKind::Validation,
            "password length is outside the policy",
        )
        .with_detail("field", "password")
        .with_detail("min_chars", config.password_min_chars)
        .with_detail("max_chars", config.password_max_chars));
    }
    Ok(())
}

/// Runs argon2 on the service's own hashing threads (one per core, at most
/// `max_concurrent_hashes`), admitting at most `max_concurrent_hashes` jobs at once.
///
/// Every hash and verification first takes a permit, held until its job ends; a caller that waits
/// longer than the queue timeout fails with `RateLimited`, so a burst of logins queues briefly and
/// is then shed instead of piling up memory-hungry work.
#[derive(Debug)]
pub(crate) struct Hasher {
    params: Argon2Params,
    permits: Arc<Semaphore>,
    threads: HashThreads,
    queue_timeout: Duration,
    /// Verifications run so far (tests read it to see that a path really verified).
    verifications: AtomicU64,
}

impl Hasher {
    pub(crate) fn new(config: &AuthConfig) -> Self {
        Self {
            params: config.argon2,
            permits: Arc::new(Semaphore::new(config.max_concurrent_hashes)),
            // No more threads than cores: argon2 is CPU-bound, and jobs spread over idle extra
            // threads lose the memory reuse these threads exist for (measured: 4 threads on 2
            // cores ran logins at 75% of bare verification, 2 threads at about 98%).
            threads: HashThreads::new(
                config
                    .max_concurrent_hashes
                    .min(thread::available_parallelism().map_or(1, std::num::NonZero::get)),
            ),
            queue_timeout: config.hash_queue_timeout,
            verifications: AtomicU64::new(0),
        }
    }

    /// The configured cost of new hashes.
    pub(crate) fn params(&self) -> Argon2Params {
        self.params
    }

    /// How many verifications ran (started on the hashing threads) so far.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// The permit semaphore (tests hold permits to fill the queue).
    #[cfg(test)]
    pub(crate) fn permits(&self) -> &Semaphore {
        &self.permits
    }

    /// Waits for a hashing slot, at most the queue timeout.
    async fn permit(&self) -> Result<OwnedSemaphorePermit> {
        let busy = || {
            let secs = self.queue_timeout.as_secs().max(1);
            Error::new(
                ErrorKind::RateLimited,
                "too many password hashes in progress",
            )
            .with_detail("retry_after", secs)
            .with_detail("scope", "hashing")
        };
        let permits = Arc::clone(&self.permits);
        match tokio::time::timeout(self.queue_timeout, permits.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; a closed one means nothing can be hashed.
            Ok(Err(_)) | Err(_) => Err(busy()),
        }
    }

    /// Hashes `password` with the configured cost, salted from `rng`.
    pub(crate) async fn hash(
        &self,
        rng: &dyn RandomSource,
        password: String,
    ) -> Result<PasswordHash> {
        let permit = self.permit().await?;
        hash_now(&self.threads, permit, self.params, rng, password).await
    }

    /// Verifies `password` against `hash` in constant time (argon2 compares the outputs without
    /// early exit). The cost comes from the hash's own parameters.
    ///
    /// Returns `false` for a wrong password and for a hash argon2 cannot read.
    pub(crate) async fn verify(&self, hash: PasswordHash, password: String) -> Result<bool> {
        let permit = self.permit().await?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        self.threads
            .run(permit, move || {
                verify_blocking(password.as_bytes(), hash.as_str())
            })
            .await
    }
}

/// Hashes `password` with argon2id on the hashing threads, salted from `rng` (no permit: callers
/// hold one).
async fn hash_now(
    threads: &HashThreads,
    permit: OwnedSemaphorePermit,
    params: Argon2Params,
    rng: &dyn RandomSource,
    password: String,
) -> Result<PasswordHash> {
    let mut salt = [0u8; SALT_BYTES];
    rng.fill(&mut salt)?;
    threads
        .run(permit, move || hash_blocking(params, &salt, &password))
        .await?
}

/// Hashes on the calling thread (for the dummy hash, made once when the service is built).
fn hash_sync(params: Argon2Params, rng: &dyn RandomSource, password: &str) -> Result<PasswordHash> {
    let mut salt = [0u8; SALT_BYTES];
    rng.fill(&mut salt)?;
    hash_blocking(params, &salt, password)
}

/// The hash logins with an unknown email are verified against: a random secret nobody knows,
/// hashed with the configured cost so that path costs what a wrong password costs.
pub(crate) fn dummy_hash(params: Argon2Params, rng: &dyn RandomSource) -> Result<PasswordHash> {
    let mut secret = [0u8; 32];
    rng.fill(&mut secret)?;
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    hash_sync(params, rng, &secret)
}

fn hash_blocking(params: Argon2Params, salt: &[u8], password: &str) -> Result<PasswordHash> {
    let phc = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.to_argon2()?)
        .hash_password_with_salt(password.as_bytes(), salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::provider("password hashing failed").with_source(e))?;
    PasswordHash::new(&phc)
}

/// The largest memory cost a stored hash may ask of a verification: 1 GiB (in 1 KiB blocks).
const MAX_VERIFY_BLOCKS: usize = 1 << 20;
/// The most passes a stored hash may ask of a verification.
const MAX_VERIFY_ITERATIONS: u32 = 64;

thread_local! {
    /// argon2's working memory, kept by each hashing thread between verifications.
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// argon2's own verification of `password` against the PHC string `stored` (any argon2 variant and
/// version it names; the outputs compared in constant time by `phc::Output`), computed in memory
/// the calling hashing thread keeps instead of ~19 MiB allocated and released per call. The
/// memory holds the last computation's blocks until the next one overwrites them.
fn verify_blocking(password: &[u8], stored: &str) -> bool {
    let Ok(phc) = argon2::PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(phc.algorithm.as_str()) else {
        return false;
    };
    let version = match phc.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&phc) else {
        return false;
    };
    let blocks_needed = params.block_count();
    // A stored hash is trusted input, but a cost far beyond any sane setting (up to 4 TiB of
    // memory in the PHC grammar) must fail the verification, not abort the process.
    if blocks_needed > MAX_VERIFY_BLOCKS || params.t_cost() > MAX_VERIFY_ITERATIONS {
        return false;
    }
    let argon = Argon2::new(algorithm, version, params);
    let mut buffer = [0u8; 64];
    let Some(out) = buffer.get_mut(..expected.len()) else {
        return false;
    };
    let computed = BLOCKS.with(|blocks| {
        // Each hashing thread runs one job at a time, so this borrow is never contended.
        let Ok(mut blocks) = blocks.try_borrow_mut() else {
            return false;
        };
        if blocks.len() < blocks_needed {
            let missing = blocks_needed - blocks.len();
            if blocks.try_reserve_exact(missing).is_err() {
                return false;
            }
        }
        blocks.resize(blocks_needed, argon2::Block::default());
        argon
            .hash_password_into_with_memory(password, salt, &mut *out, &mut blocks[..])
            .is_ok()
    });
    computed && argon2::password_hash::phc::Output::new(out).is_ok_and(|output| output == *expected)
}

/// The argon2 parameters a stored hash records, or `None` when it is not an argon2id (version 19)
/// hash this module can read.
pub(crate) fn params_of(hash: &PasswordHash) -> Option<Argon2Params> {
    let phc = argon2::PasswordHash::new(hash.as_str()).ok()?;
    if phc.algorithm.as_str() != "argon2id" || phc.version != Some(Version::V0x13.into()) {
        return None;
    }
    let p = argon2::Params::try_from(&phc).ok()?;
    Some(Argon2Params {
        memory_kib: p.m_cost(),
        iterations: p.t_cost(),
        parallelism: p.p_cost(),
        allow_below_owasp_minimum: true,
    })
}

/// Whether a stored hash is weaker than `configured` in any parameter (or not argon2id at all), so a
/// login should store a fresh hash (OWASP: upgrade hashes as users log in).
pub(crate) fn needs_rehash(hash: &PasswordHash, configured: Argon2Params) -> bool {
    params_of(hash).is_none_or(|p| {
        p.memory_kib < configured.memory_kib
            || p.iterations < configured.iterations
            || p.parallelism < configured.parallelism
    })
}

/// A job for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// Long-lived threads that run argon2, started on first use and ended with the service.
///
/// Not Tokio's blocking pool: argon2 allocates its whole memory cost (about 19 MiB) on every call,
/// and on the shared blocking pool that cost more than on dedicated threads (with glibc: a login on
/// 2 threads ran at 80-89% of bare argon2id verification, and at about 98% on these threads or with
/// `MALLOC_ARENA_MAX=1`, so the allocator's per-thread arenas are the likely cause). Measured by
/// `cargo bench -p psm --bench auth`.
#[derive(Debug)]
struct HashThreads {
    count: usize,
    queue: OnceLock<Mutex<mpsc::Sender<Job>>>,
}

impl HashThreads {
    fn new(count: usize) -> Self {
        Self {
            count: count.max(1),
            queue: OnceLock::new(),
        }
    }

    /// Runs `f` on a hashing thread and returns its result. The hashing permit travels with the
    /// job and is released when the job ends, so a caller that gives up waiting cannot free its
    /// slot while its work still runs; a job whose caller is already gone is skipped.
    async fn run<T: Send + 'static>(
        &self,
        permit: OwnedSemaphorePermit,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            if tx.is_closed() {
                return;
            }
            let _ = tx.send(f());
        });
        let failed = || Error::provider("the password hashing threads are unavailable");
        self.queue()
            .lock()
            .map_err(|_| failed())?
            .send(job)
            .map_err(|_| failed())?;
        rx.await.map_err(|_| failed())
    }

    fn queue(&self) -> &Mutex<mpsc::Sender<Job>> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..self.count {
                let rx = Arc::clone(&rx);
                // A thread that cannot start leaves the others; with none, every job fails
                // (its reply channel is dropped) instead of hanging.
                let _ = thread::Builder::new()
                    .name(format!("psm-argon2-{i}"))
                    .spawn(move || {
                        loop {
                            // The lock is held only to take the next job, never while running it.
                            let next = match rx.lock() {
                                Ok(rx) => rx.recv(),
                                Err(_) => return,
                            };
                            match next {
                                Ok(job) => {
                                    // A panicking job fails its caller (its reply is dropped),
                                    // not the thread.
                                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                                        .is_err()
                                    {
                                        tracing::error!("a password hashing job panicked");
                                    }
                                }
                                // The service is gone: its sender was dropped.
                                Err(_) => return,
                            }
                        }
                    });
            }
            Mutex::new(tx)
        })
    }
}

#[cfg(test)]
mod tests {
    /// The kept-memory verification answers exactly as argon2's own `verify_password`, for every
    /// argon2 variant, right and wrong passwords, tampered outputs and malformed strings, also when
    /// one thread verifies hashes of different costs one after another.
    #[test]
    fn verify_blocking_agrees_with_argon2() {
        use argon2::{PasswordVerifier, password_hash::PasswordHasher as _};
        let mut stored = Vec::new();
        for (alg, m, t) in [
            (Algorithm::Argon2id, 8, 1),
            (Algorithm::Argon2i, 16, 2),
            (Algorithm::Argon2d, 32, 1),
            (Algorithm::Argon2id, 64, 3),
        ] {
            let params = argon2::Params::new(m, t, 1, None).unwrap();
            let h = Argon2::new(alg, Version::V0x13, params)
                .hash_password_with_salt(b"right password", b"saltsaltsaltsalt")
                .unwrap()
                .to_string();
            stored.push(h);
        }
        // Version 0x10, a 64-byte output and a 16-byte output, which the PHC string records.
        for (version, out_len) in [
            (Version::V0x10, 32),
            (Version::V0x13, 64),
            (Version::V0x13, 16),
        ] {
            let params = argon2::Params::new(8, 1, 1, Some(out_len)).unwrap();
            let h = Argon2::new(Algorithm::Argon2id, version, params)
                .hash_password_with_salt(b"right password", b"saltsaltsaltsalt")
                .unwrap()
                .to_string();
            stored.push(h);
        }
        let mut tampered = stored[0].clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        stored.push(tampered);
        stored.push("not a phc string".to_owned());
        stored.push("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ".to_owned());
        for h in &stored {
            for pw in [&b"right password"[..], b"wrong password", b""] {
                let theirs = Argon2::default().verify_password(pw, h.as_str()).is_ok();
                assert_eq!(verify_blocking(pw, h), theirs, "{h} with {pw:?}");
            }
        }
        assert!(verify_blocking(b"right password", &stored[0]));
        for h in &stored[4..7] {
            assert!(verify_blocking(b"right password", h), "{h}");
        }
        assert!(!verify_blocking(b"right password", &stored[7]), "tampered");
    }

    use psm_core::OsRandom;

    use super::*;

    const CHEAP: Argon2Params = Argon2Params {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
        allow_below_owasp_minimum: true,
    };

    fn hasher(max: usize, timeout: Duration) -> Hasher {
        Hasher::new(&AuthConfig {
            argon2: CHEAP,
            max_concurrent_hashes: max,
            hash_queue_timeout: timeout,
            ..AuthConfig::default()
        })
    }

    async fn hash(params: Argon2Params, rng: &dyn RandomSource, p: String) -> Result<PasswordHash> {
        let permit = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
        hash_now(&HashThreads::new(1), permit, params, rng, p).await
    }

    async fn verify(h: PasswordHash, p: String) -> Result<bool> {
        hasher(1, Duration::from_secs(5)).verify(h, p).await
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_and_verify() {
        let h = hash(CHEAP, &OsRandom, "correct horse".to_owned())
            .await
            .unwrap();
        assert!(h.as_str().starts_with("$argon2id$v=19$m=8,t=1,p=1$"));
        assert!(!h.as_str().contains("correct horse"));
        assert!(verify(h.clone(), "correct horse".to_owned()).await.unwrap());
        assert!(!verify(h, "correct horsE".to_owned()).await.unwrap());
        let other = hash(CHEAP, &OsRandom, "correct horse".to_owned())
            .await
            .unwrap();
        assert_ne!(
            other,
            hash(CHEAP, &OsRandom, "correct horse".to_owned())
                .await
                .unwrap(),
            "salted"
        );
    }

    #[tokio::test]
    async fn unreadable_hash_does_not_verify() {
        let h = PasswordHash::new("$argon2id$garbage").unwrap();
        assert!(!verify(h, "whatever1".to_owned()).await.unwrap());
    }

    #[test]
    fn policy_counts_characters() {
        let c = AuthConfig::default();
        assert!(check_policy(&c, "1234567").is_err());
        assert!(check_policy(&c, "12345678").is_ok());
        // Eight characters, sixteen bytes.
        assert!(check_policy(&c, "éééééééé").is_ok());
        assert!(check_policy(&c, &"x".repeat(128)).is_ok());
        let e = check_policy(&c, &"x".repeat(129)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Validation);
        assert!(!e.to_string().contains("xxxx"));
    }
}

#[cfg(test)]
mod queue_tests {
    use std::time::Duration;

    use psm_core::OsRandom;

    use super::*;

    #[tokio::test]
    async fn a_full_queue_answers_rate_limited() {
        let h = Hasher::new(&AuthConfig {
            argon2: Argon2Params {
                memory_kib: 8,
                iterations: 1,
                parallelism: 1,
                allow_below_owasp_minimum: true,
            },
            max_concurrent_hashes: 1,
            hash_queue_timeout: Duration::from_millis(1),
            ..AuthConfig::default()
        });
        // The one slot is taken, as by a slow hash that never ends while the test runs.
        let held = h.permits().acquire().await.unwrap();
        for e in [
            h.hash(&OsRandom, "password1".to_owned()).await.unwrap_err(),
            h.verify(
                PasswordHash::new("$argon2id$x").unwrap(),
                "password1".to_owned(),
            )
            .await
            .unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::RateLimited);
            assert_eq!(e.detail("retry_after"), Some("1"));
            assert_eq!(e.detail("scope"), Some("hashing"));
        }
        assert_eq!(h.verifications(), 0);
        drop(held);
        h.hash(&OsRandom, "password1".to_owned()).await.unwrap();
    }

    #[test]
    fn rehash_when_any_parameter_is_weaker() {
        let strong = Argon2Params::OWASP_MINIMUM;
        let weak = hash_sync(
            Argon2Params {
                memory_kib: 8,
                iterations: 1,
                parallelism: 1,
                allow_below_owasp_minimum: true,
            },
            &OsRandom,
            "password1",
        )
        .unwrap();
        let p = params_of(&weak).unwrap();
        assert_eq!((p.memory_kib, p.iterations, p.parallelism), (8, 1, 1));
        assert!(needs_rehash(&weak, strong));
        assert!(!needs_rehash(&weak, p));
        assert!(needs_rehash(&PasswordHash::new("$argon2i$x").unwrap(), p));
    }
}
