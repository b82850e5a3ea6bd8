//! The token and login paths against their bare building blocks, in the same run:
//! - access-token verification (HS256): `TokenService::verify_access` (stateless) and
//!   `verify_access_strict` (plus the user's epoch from the memory token store) against a bare
//!   `jsonwebtoken::decode` of the same token with the same key and the same claim checks;
//! - login on 2 threads: `AuthService::login` (throttle, user lookup, argon2id verify at OWASP's
//!   minimum cost, session creation, token issue) against bare argon2id verification on 2 threads.
//!
//! `cargo bench -p psm --bench auth -- --warm-up-time 1 --measurement-time 2`

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use criterion::{Criterion, criterion_main};
use psm::{
    PermissionList, SessionId, UserId,
    auth::{AuthConfig, AuthService, ClientInfo, LoginRequest, RegisterRequest},
    jwt::{AccessClaims, Algorithm, KeySet, SigningKey},
};

const SECRET: &[u8] = b"an-hmac-secret-of-at-least-32-bytes!!";
const PASSWORD: &str = "correct horse battery staple";

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    }
}

fn service(rt: &tokio::runtime::Runtime) -> AuthService {
    let keys = match SigningKey::hmac("k1", Algorithm::HS256, SECRET).and_then(KeySet::new) {
        Ok(k) => k,
        Err(e) => panic!("keys: {e}"),
    };
    let auth = match AuthService::memory(keys, AuthConfig::default()) {
        Ok(a) => a,
        Err(e) => panic!("auth: {e}"),
    };
    rt.block_on(async {
        if let Err(e) = auth.initialize().await {
            panic!("initialize: {e}");
        }
        let request = RegisterRequest {
            username: "alice".into(),
            email: "alice@example.com".into(),
            password: PASSWORD.into(),
            permissions: match PermissionList::parse(["read", "write"]) {
                Ok(p) => p,
                Err(e) => panic!("{e}"),
            },
        };
        if let Err(e) = auth.register(request).await {
            panic!("register: {e}");
        }
    });
    auth
}

fn verify(c: &mut Criterion) {
    let rt = runtime();
    let auth = service(&rt);
    let tokens = auth.token_service();
    let (user, session) = match (UserId::parse("alice"), SessionId::parse("sess_bench")) {
        (Ok(u), Ok(s)) => (u, s),
        _ => panic!("ids"),
    };
    let pair = match rt.block_on(tokens.issue(&user, &session)) {
        Ok(p) => p,
        Err(e) => panic!("issue: {e}"),
    };
    let token = pair.access_token.clone();
    // The bare decode checks what psm checks: algorithm, signature, iss, aud, exp, nbf and the
    // presence of every claim.
    let key = jsonwebtoken::DecodingKey::from_secret(SECRET);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&[tokens.config().issuer.as_str()]);
    validation.set_audience(&[tokens.config().audience.as_str()]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    validation.leeway = 30;
    validation.validate_nbf = true;
    if let Err(e) = jsonwebtoken::decode::<AccessClaims>(&token, &key, &validation) {
        panic!("the bare decode must accept the token: {e}");
    }

    let mut group = c.benchmark_group("access_token_verify_hs256");
    group.bench_function("bare_jsonwebtoken_decode", |b| {
        b.iter(|| {
            black_box(jsonwebtoken::decode::<AccessClaims>(
                black_box(&token),
                &key,
                &validation,
            ))
        });
    });
    group.bench_function("psm_verify_access_stateless", |b| {
        b.iter(|| black_box(tokens.verify_access(black_box(&token))));
    });
    let single = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => panic!("{e}"),
    };
    group.bench_function("psm_verify_access_strict_memory", |b| {
        b.iter(|| black_box(single.block_on(tokens.verify_access_strict(black_box(&token)))));
    });
    group.finish();
}

/// Runs `total` calls of `each` split over two threads and returns the elapsed time.
fn two_threads(total: u64, each: impl Fn() + Send + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..total / 2 {
                    each();
                }
            });
        }
    });
    start.elapsed()
}

fn login(c: &mut Criterion) {
    let rt = runtime();
    let auth = Arc::new(service(&rt));
    let p = AuthConfig::default().argon2;
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, None)
        .unwrap_or_else(|e| panic!("{e}"));
    let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let hash = argon
        .hash_password(PASSWORD.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    let parsed = PasswordHash::new(&hash).unwrap_or_else(|e| panic!("{e}"));

    let mut group = c.benchmark_group("login_2_threads_owasp_argon2id");
    // A login takes ~10 ms: give every sample enough of them (about 70) that the machine's noise
    // averages out, whatever measurement time the command line asks for.
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("bare_argon2id_verify", |b| {
        b.iter_custom(|iters| {
            two_threads(iters.max(2), || {
                let ok = argon.verify_password(PASSWORD.as_bytes(), &parsed).is_ok();
                assert!(ok);
            })
        });
    });
    group.bench_function("psm_auth_login", |b| {
        b.iter_custom(|iters| {
            let n = iters.max(2);
            let start = Instant::now();
            rt.block_on(async {
                let tasks: Vec<_> = (0..2)
                    .map(|_| {
                        let auth = Arc::clone(&auth);
                        tokio::spawn(async move {
                            for _ in 0..n / 2 {
                                let request = LoginRequest {
                                    email: "alice@example.com".into(),
                                    password: PASSWORD.into(),
                                    client: ClientInfo {
                                        key: "bench".into(),
                                        ..ClientInfo::default()
                                    },
                                };
                                if let Err(e) = auth.login(request).await {
                                    panic!("login: {e}");
                                }
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    if let Err(e) = t.await {
                        panic!("{e}");
                    }
                }
            });
            start.elapsed()
        });
    });
    group.finish();
}

fn benches() {
    let mut c = Criterion::default().configure_from_args();
    verify(&mut c);
    login(&mut c);
}

criterion_main!(benches);
