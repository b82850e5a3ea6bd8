//! Bytes per session: allocated bytes after inserting 100,000 sessions minus before, divided by
//! 100,000, counted by a global allocator that wraps the system one. The budget is 200 bytes; the
//! run exits with status 1 above it. A `HashMap<String, Vec<String>>` of the same data is measured
//! alongside for scale.
//!
//! `cargo bench -p psm-memory --bench memory`

// Printing the figures is this binary's whole job.
#![allow(clippy::print_stdout)]

mod common;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::HashMap,
    hint::black_box,
    process::ExitCode,
    sync::atomic::{AtomicIsize, Ordering},
};

use common::{Dataset, SESSIONS};
use psm_core::Ttl;
use psm_memory::{MemoryConfig, MemoryStore};

const BUDGET: f64 = 200.0;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// The workspace denies `unsafe_code`; a global allocator cannot be written without it, and this
// impl is the only unsafe code of the benchmark.
#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees carry over; the counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) };
        ALLOCATED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            ALLOCATED.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated() -> isize {
    ALLOCATED.load(Ordering::SeqCst)
}

fn per_session(before: isize, after: isize) -> f64 {
    (after - before) as f64 / SESSIONS as f64
}

fn main() -> ExitCode {
    let data = Dataset::new();
    let ttl = Ttl::from_secs(3600).ok();

    // Sessions are built inside the measured span and consumed by the store, so whatever the store
    // does not keep is freed again before the second reading.
    let before = allocated();
    let store = MemoryStore::new(MemoryConfig {
        cleanup_interval: None,
        ..MemoryConfig::default()
    });
    for i in 0..SESSIONS {
        if let Err(e) = store.store_permissions_now(&data.ids[i], data.session(i, ttl)) {
            println!("store failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    let memory = per_session(before, allocated());
    black_box(&store);

    let before = allocated();
    let mut baseline: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..SESSIONS {
        baseline.insert(
            data.ids[i].to_string(),
            data.permission_strings(i).map(str::to_owned).collect(),
        );
    }
    let plain = per_session(before, allocated());
    black_box(&baseline);

    println!(
        "sessions: {SESSIONS}, 5 permissions each from a pool of 200, 10 per user, empty metadata"
    );
    println!("MemoryStore:                       {memory:.1} bytes/session (budget {BUDGET})");
    println!(
        "HashMap<String, Vec<String>> only: {plain:.1} bytes/session (no user index, no timestamps)"
    );
    if memory <= BUDGET {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
