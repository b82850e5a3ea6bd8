//! One `check_permission` through the synchronous fast path against a plain
//! `RwLock<HashMap<String, Vec<String>>>` lookup plus linear scan, on the same 100,000 sessions,
//! with random access (half the checks hit a held permission, half ask another one from the pool).
//! Every map is filled in the data set's order and read in a shuffled order.
//!
//! `cargo bench -p psm-memory --bench check -- --warm-up-time 1 --measurement-time 3`

mod common;

use std::{
    collections::HashMap,
    hint::black_box,
    sync::{Arc, RwLock},
};

use common::{Dataset, Rng, SESSIONS};
use criterion::{Criterion, criterion_main};
use psm_core::{ManualClock, Permission, SessionId, Ttl};
use psm_memory::{MemoryConfig, MemoryStore};

/// Random queries, cycled; a power of two so the index is a mask.
const QUERIES: usize = 1 << 16;

struct Query {
    id: SessionId,
    permission: Permission,
}

/// Queries over a random permutation of the sessions (a seed unrelated to the insertion order),
/// so consecutive checks never walk memory in the order it was allocated.
fn queries(data: &Dataset) -> Vec<Query> {
    let mut rng = Rng::new(0xc4ec);
    let mut order: Vec<usize> = (0..SESSIONS).collect();
    for k in (1..order.len()).rev() {
        order.swap(k, rng.below(k + 1));
    }
    order
        .into_iter()
        .take(QUERIES)
        .map(|i| {
            let permission = if rng.next().is_multiple_of(2) {
                data.pool[usize::from(data.perms[i][rng.below(data.perms[i].len())])].clone()
            } else {
                data.pool[rng.below(data.pool.len())].clone()
            };
            Query {
                id: data.ids[i].clone(),
                permission,
            }
        })
        .collect()
}

fn memory_store(data: &Dataset, ttl: Option<Ttl>, config: MemoryConfig) -> MemoryStore {
    let store = MemoryStore::new(MemoryConfig {
        cleanup_interval: None,
        ..config
    });
    for (i, id) in data.ids.iter().enumerate() {
        if let Err(e) = store.store_permissions_now(id, data.session(i, ttl)) {
            panic!("{e}");
        }
    }
    store
}

fn check(c: &mut Criterion) {
    let data = Dataset::new();
    let qs = queries(&data);
    let mut group = c.benchmark_group("check_permission_100k_random");

    let baseline: RwLock<HashMap<String, Vec<String>>> = RwLock::new(
        (0..SESSIONS)
            .map(|i| {
                (
                    data.ids[i].to_string(),
                    data.permission_strings(i).map(str::to_owned).collect(),
                )
            })
            .collect(),
    );
    let mut n = 0usize;
    group.bench_function("baseline_rwlock_hashmap_string_vec", |b| {
        b.iter(|| {
            let q = &qs[n & (QUERIES - 1)];
            n = n.wrapping_add(1);
            let granted = match baseline.read() {
                Ok(map) => map
                    .get(q.id.as_str())
                    .is_some_and(|ps| ps.iter().any(|p| p == q.permission.as_str())),
                Err(_) => false,
            };
            black_box(granted)
        });
    });

    // The same naive layout with the store's hasher and lock, to separate hashing from layout.
    let fast_baseline: parking_lot::RwLock<
        hashbrown::HashMap<String, Vec<String>, foldhash::fast::RandomState>,
    > = parking_lot::RwLock::new({
        let mut m = hashbrown::HashMap::with_hasher(foldhash::fast::RandomState::default());
        m.extend((0..SESSIONS).map(|i| {
            (
                data.ids[i].to_string(),
                data.permission_strings(i).map(str::to_owned).collect(),
            )
        }));
        m
    });
    group.bench_function("baseline_foldhash_hashbrown_string_vec", |b| {
        b.iter(|| {
            let q = &qs[n & (QUERIES - 1)];
            n = n.wrapping_add(1);
            let map = fast_baseline.read();
            black_box(
                map.get(q.id.as_str())
                    .is_some_and(|ps| ps.iter().any(|p| p == q.permission.as_str())),
            )
        });
    });

    let no_ttl = memory_store(&data, None, MemoryConfig::default());
    group.bench_function("memory_store_no_ttl", |b| {
        b.iter(|| {
            let q = &qs[n & (QUERIES - 1)];
            n = n.wrapping_add(1);
            black_box(no_ttl.check_permission_now(&q.id, &q.permission))
        });
    });
    drop(no_ttl);

    let ttl = memory_store(&data, Ttl::from_secs(3600).ok(), MemoryConfig::default());
    group.bench_function("memory_store_ttl_system_clock", |b| {
        b.iter(|| {
            let q = &qs[n & (QUERIES - 1)];
            n = n.wrapping_add(1);
            black_box(ttl.check_permission_now(&q.id, &q.permission))
        });
    });
    drop(ttl);

    let unmonitored = memory_store(
        &data,
        None,
        MemoryConfig {
            enable_monitoring: false,
            ..MemoryConfig::default()
        },
    );
    group.bench_function("memory_store_no_ttl_unmonitored", |b| {
        b.iter(|| {
            let q = &qs[n & (QUERIES - 1)];
            n = n.wrapping_add(1);
            black_box(unmonitored.check_permission_now(&q.id, &q.permission))
        });
    });
    drop(unmonitored);

    let clock = ManualClock::at_2024();
    let manual = MemoryStore::with_clock(
        MemoryConfig {
            cleanup_interval: None,
            ..MemoryConfig::default()
        },
        Arc::new(clock),
    );
    for (i, id) in data.ids.iter().enumerate() {
        if let Err(e) = manual.store_permissions_now(id, data.session(i, Ttl::from_secs(3600).ok()))
        {
            panic!("{e}");
        }
    }
    group.bench_function("memory_store_ttl_manual_clock", |b| {
        b.iter(|| {
            let q = &qs[n & (QUERIES - 1)];
            n = n.wrapping_add(1);
            black_box(manual.check_permission_now(&q.id, &q.permission))
        });
    });
    group.finish();
}

/// The benchmark group (what `criterion_group!` would generate, with docs).
fn benches() {
    let mut c = Criterion::default().configure_from_args();
    check(&mut c);
}

criterion_main!(benches);
