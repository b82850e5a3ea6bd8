//! The `Cache` port: exact bytes, overwrite, ttl expiry, delete, delete by tag, the value size
//! limit, and copies.

use std::time::Duration;

use super::support::{Must, SECOND, must_fail, ttl};
use crate::{
    CacheKey, CacheTag, DynCache, ErrorKind, MAX_CACHE_VALUE_BYTES,
    testkit::{CacheFixture, cache},
};

/// A key the case knows to be valid.
#[track_caller]
fn key(s: &str) -> CacheKey {
    CacheKey::parse(s).must("building a test cache key")
}

/// A tag the case knows to be valid.
#[track_caller]
fn tag(s: &str) -> CacheTag {
    CacheTag::parse(s).must("building a test cache tag")
}

/// Tags from names.
#[track_caller]
fn tags(s: &[&str]) -> Vec<CacheTag> {
    s.iter().map(|t| tag(t)).collect()
}

/// `get`, failing the case on error.
async fn get(c: &DynCache, k: &str) -> Option<Vec<u8>> {
    c.get(&key(k)).await.must(&format!("cache get({k})"))
}

/// `set` for `secs` seconds with `t` tags, failing the case on error.
async fn set(c: &DynCache, k: &str, v: &[u8], secs: u64, t: &[&str]) {
    c.set(&key(k), v, ttl(secs), &tags(t))
        .await
        .must(&format!("cache set({k})"));
}

/// `delete_tag`, failing the case on error.
async fn delete_tag(c: &DynCache, t: &str) -> u64 {
    c.delete_tag(&tag(t))
        .await
        .must(&format!("cache delete_tag({t})"))
}

/// A missing key is `None`; a set value comes back as exactly the bytes stored, empty included.
pub async fn set_then_get_returns_the_exact_bytes<F: CacheFixture + ?Sized>(f: &F) {
    let (c, _) = cache(f).await;
    assert!(
        !c.provider_name().is_empty(),
        "provider_name must not be empty"
    );
    assert_eq!(get(&c, "missing").await, None, "a missing key must be None");
    let binary: Vec<u8> = (0..=255).collect();
    set(&c, "bin", &binary, 60, &[]).await;
    assert_eq!(
        get(&c, "bin").await,
        Some(binary),
        "every byte value must round-trip"
    );
    set(&c, "empty", b"", 60, &[]).await;
    assert_eq!(
        get(&c, "empty").await,
        Some(Vec::new()),
        "an empty value must be Some(empty), not None"
    );
    set(&c, "text", "ü \0 {\"json\": true}".as_bytes(), 60, &["t"]).await;
    assert_eq!(
        get(&c, "text").await.as_deref(),
        Some("ü \0 {\"json\": true}".as_bytes()),
        "text must round-trip"
    );
}

/// `set` overwrites the value and replaces its tags.
pub async fn set_overwrites_the_value_and_its_tags<F: CacheFixture + ?Sized>(f: &F) {
    let (c, _) = cache(f).await;
    set(&c, "k", b"one", 60, &["old"]).await;
    set(&c, "k", b"two", 60, &["new"]).await;
    assert_eq!(
        get(&c, "k").await,
        Some(b"two".to_vec()),
        "set must overwrite the value"
    );
    assert_eq!(
        delete_tag(&c, "old").await,
        0,
        "the overwritten value must have lost its old tag"
    );
    assert_eq!(
        get(&c, "k").await,
        Some(b"two".to_vec()),
        "deleting the old tag must leave the value"
    );
    assert_eq!(
        delete_tag(&c, "new").await,
        1,
        "the overwritten value must carry its new tag"
    );
    assert_eq!(
        get(&c, "k").await,
        None,
        "deleting the new tag must remove the value"
    );
}

/// A value expires when its ttl has passed (exactly at `set time + ttl` when the cache reads the
/// clock), and an overwrite restarts the ttl.
pub async fn values_expire_after_their_ttl<F: CacheFixture + ?Sized>(f: &F) {
    let (c, tt) = cache(f).await;
    set(&c, "k", b"v", 1, &[]).await;
    set(&c, "long", b"v", 60, &[]).await;
    assert_eq!(
        get(&c, "k").await,
        Some(b"v".to_vec()),
        "a fresh value must be readable"
    );
    if tt.is_exact() {
        tt.advance(Duration::from_millis(999)).await;
        assert_eq!(
            get(&c, "k").await,
            Some(b"v".to_vec()),
            "a value must be live 1 ms before its expiry"
        );
        tt.advance(Duration::from_millis(1)).await;
    } else {
        tt.advance(SECOND).await;
    }
    assert_eq!(
        get(&c, "k").await,
        None,
        "a value must be gone once its ttl has passed"
    );
    assert_eq!(
        get(&c, "long").await,
        Some(b"v".to_vec()),
        "a value with a longer ttl must stay"
    );
    set(&c, "k", b"again", 1, &[]).await;
    assert_eq!(
        get(&c, "k").await,
        Some(b"again".to_vec()),
        "an expired key can be set again"
    );
}

/// `delete` returns `true` for a live value once, `false` for a missing or expired one.
pub async fn delete_reports_whether_a_live_value_was_removed<F: CacheFixture + ?Sized>(f: &F) {
    let (c, tt) = cache(f).await;
    set(&c, "k", b"v", 60, &[]).await;
    set(&c, "short", b"v", 1, &[]).await;
    set(&c, "other", b"v", 60, &[]).await;
    assert!(
        c.delete(&key("k")).await.must("delete(k)"),
        "deleting a live value returns true"
    );
    assert!(
        !c.delete(&key("k")).await.must("delete(k) again"),
        "a second delete returns false"
    );
    assert_eq!(get(&c, "k").await, None, "a deleted value must be gone");
    assert!(
        !c.delete(&key("missing")).await.must("delete(missing)"),
        "deleting a missing key returns false"
    );
    tt.advance(SECOND).await;
    assert!(
        !c.delete(&key("short")).await.must("delete(short)"),
        "deleting an expired value returns false"
    );
    assert_eq!(
        get(&c, "other").await,
        Some(b"v".to_vec()),
        "deleting one key must leave the others"
    );
}

/// `delete_tag` removes every value with the tag, returns how many live ones, and leaves the rest.
pub async fn delete_tag_removes_only_tagged_values<F: CacheFixture + ?Sized>(f: &F) {
    let (c, tt) = cache(f).await;
    set(&c, "k1", b"1", 60, &["a"]).await;
    set(&c, "k2", b"2", 60, &["a", "b"]).await;
    set(&c, "k3", b"3", 60, &["b"]).await;
    set(&c, "k4", b"4", 60, &[]).await;
    set(&c, "k5", b"5", 60, &["a*"]).await;
    set(&c, "k6", b"6", 1, &["a"]).await;
    tt.advance(SECOND).await;
    assert_eq!(
        delete_tag(&c, "a").await,
        2,
        "delete_tag must count the live values it removed"
    );
    assert_eq!(get(&c, "k1").await, None, "k1 was tagged a");
    assert_eq!(get(&c, "k2").await, None, "k2 was tagged a");
    assert_eq!(
        get(&c, "k3").await,
        Some(b"3".to_vec()),
        "k3 was not tagged a"
    );
    assert_eq!(get(&c, "k4").await, Some(b"4".to_vec()), "k4 had no tags");
    assert_eq!(
        get(&c, "k5").await,
        Some(b"5".to_vec()),
        "a tag is not a pattern: `a*` is not `a`"
    );
    assert_eq!(
        delete_tag(&c, "a").await,
        0,
        "a second delete_tag must remove nothing"
    );
    assert_eq!(delete_tag(&c, "b").await, 1, "only k3 is left with tag b");
    assert_eq!(
        delete_tag(&c, "*").await,
        0,
        "the tag `*` matches only itself"
    );
    assert_eq!(
        get(&c, "k5").await,
        Some(b"5".to_vec()),
        "the tag `*` must not remove other tags' values"
    );
    assert_eq!(
        delete_tag(&c, "unknown").await,
        0,
        "an unknown tag removes nothing"
    );
}

/// Values over 4 MiB fail with `Validation` and change nothing; exactly 4 MiB is accepted.
pub async fn values_over_the_size_limit_are_rejected<F: CacheFixture + ?Sized>(f: &F) {
    let (c, _) = cache(f).await;
    set(&c, "k", b"small", 60, &["t"]).await;
    let over = vec![7u8; MAX_CACHE_VALUE_BYTES + 1];
    must_fail(
        c.set(&key("k"), &over, ttl(60), &tags(&["t2"])).await,
        ErrorKind::Validation,
        "set over 4 MiB",
    );
    must_fail(
        c.set(&key("new"), &over, ttl(60), &[]).await,
        ErrorKind::Validation,
        "set of a new key over 4 MiB",
    );
    assert_eq!(
        get(&c, "k").await,
        Some(b"small".to_vec()),
        "a rejected set must keep the old value"
    );
    assert_eq!(
        get(&c, "new").await,
        None,
        "a rejected set must store nothing"
    );
    let max = vec![9u8; MAX_CACHE_VALUE_BYTES];
    set(&c, "max", &max, 60, &[]).await;
    assert_eq!(
        get(&c, "max").await.map(|v| v.len()),
        Some(MAX_CACHE_VALUE_BYTES),
        "exactly 4 MiB is accepted"
    );
    assert_eq!(
        delete_tag(&c, "t2").await,
        0,
        "the rejected set must not have tagged k"
    );
    assert_eq!(
        delete_tag(&c, "t").await,
        1,
        "the rejected set must have kept k's tags"
    );
}

/// A returned value is a copy: changing it changes nothing cached.
pub async fn returned_values_are_copies<F: CacheFixture + ?Sized>(f: &F) {
    let (c, _) = cache(f).await;
    set(&c, "k", b"original", 60, &[]).await;
    let mut v = get(&c, "k").await.unwrap_or_default();
    v.clear();
    v.extend_from_slice(b"changed");
    assert_eq!(
        get(&c, "k").await,
        Some(b"original".to_vec()),
        "changing a returned value must not change the cache"
    );
}

/// Keys are compared exactly: case, spaces, pattern characters and unicode forms make distinct keys.
pub async fn keys_are_compared_exactly<F: CacheFixture + ?Sized>(f: &F) {
    let (c, _) = cache(f).await;
    let keys = [
        "k",
        "K",
        "k ",
        " k",
        "k*",
        "k?",
        "k[1]",
        "{k}",
        "k:1",
        "k:10",
        "caf\u{e9}",
        "cafe\u{301}",
    ];
    for (i, k) in keys.iter().enumerate() {
        set(&c, k, format!("v{i}").as_bytes(), 60, &[]).await;
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            get(&c, k).await,
            Some(format!("v{i}").into_bytes()),
            "key {k:?} must hold its own value"
        );
    }
    assert!(
        c.delete(&key("k*")).await.must("delete(k*)"),
        "deleting `k*` removes that key"
    );
    assert_eq!(
        get(&c, "k").await,
        Some(b"v0".to_vec()),
        "deleting `k*` must not treat it as a pattern"
    );
}
