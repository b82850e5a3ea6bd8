//! A counting global allocator, for heap bytes per session.
//!
//! Counting is off unless [`measure`] is running, so the timed runs pay one relaxed load per
//! allocation and never contend on the counter.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicBool, AtomicIsize, Ordering},
};

static ENABLED: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting the bytes requested while [`measure`] runs.
#[derive(Debug)]
pub(crate) struct Counting;

/// Sizes come from `Layout`, which never exceeds `isize::MAX` bytes, so the casts cannot wrap.
#[allow(clippy::cast_possible_wrap)]
fn add(bytes: usize) {
    if ENABLED.load(Ordering::Relaxed) {
        LIVE.fetch_add(bytes as isize, Ordering::Relaxed);
    }
}

#[allow(clippy::cast_possible_wrap)]
fn sub(bytes: usize) {
    if ENABLED.load(Ordering::Relaxed) {
        LIVE.fetch_sub(bytes as isize, Ordering::Relaxed);
    }
}

// The workspace denies `unsafe_code`; a global allocator cannot be written without it, and this is
// the only unsafe code of the crate.
#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees are ours; the only addition is bookkeeping on atomics, which neither allocates nor
// touches the returned memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System.alloc` shares.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            add(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` came from this allocator (that is, from `System`) with
        // this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        sub(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract, which `System.realloc` shares.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            add(new_size);
            sub(layout.size());
        }
        new
    }
}

/// Runs `f` with counting on; returns its result and the growth of live heap bytes meanwhile.
///
/// Memory `f` frees that was allocated before the call is subtracted too, so `f` should build what it
/// measures from nothing (the manager, the map) rather than mutate something older.
pub(crate) fn measure<T>(f: impl FnOnce() -> T) -> (T, isize) {
    let before = LIVE.load(Ordering::SeqCst);
    ENABLED.store(true, Ordering::SeqCst);
    let out = f();
    let after = LIVE.load(Ordering::SeqCst);
    ENABLED.store(false, Ordering::SeqCst);
    (out, after - before)
}
