//! Result caching for the query layer: options, keys and the stored encoding.

use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

use psm_core::{Cache, CacheKey, CacheTag, Error, Result, Ttl};
use rustls::crypto::hash::{Hash, HashAlgorithm};

use super::SqlValue;

/// How one cached fetch is cached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheOptions {
    /// How long the result stays cached; `None` uses the [`Database`](crate::Database)'s default.
    pub ttl: Option<Ttl>,
    /// Tags naming what the result depends on (for example `users`, `user:42`); an
    /// [`execute_invalidating`](crate::Database::execute_invalidating) naming one of them drops the
    /// result.
    pub tags: Vec<CacheTag>,
}

impl CacheOptions {
    /// Options with `ttl` and no tags.
    pub fn ttl(ttl: Ttl) -> Self {
        Self {
            ttl: Some(ttl),
            tags: Vec::new(),
        }
    }

    /// Adds `tag`.
    #[must_use]
    pub fn tag(mut self, tag: CacheTag) -> Self {
        self.tags.push(tag);
        self
    }
}

/// SHA-256 from the rustls crypto provider already linked for TLS (aws-lc-rs).
fn sha256() -> Option<&'static dyn Hash> {
    static HASH: OnceLock<Option<&'static dyn Hash>> = OnceLock::new();
    *HASH.get_or_init(|| {
        rustls::crypto::aws_lc_rs::default_provider()
            .cipher_suites
            .iter()
            .filter_map(|s| s.tls13().map(|t| t.common.hash_provider))
            .find(|h| h.algorithm() == HashAlgorithm::SHA256)
    })
}

/// The cache key of `sql` with `params` under `namespace`, read while the result's tags were at
/// `generations`: `<namespace>:q:<sha-256 hex>` of an unambiguous encoding of the SQL text, every
/// parameter (type and value) and every generation, so two different queries (or one query before
/// and after an invalidation) never share a key.
pub(crate) fn key(
    namespace: &str,
    sql: &str,
    params: &[SqlValue],
    generations: &[String],
) -> Result<CacheKey> {
    let mut material = Vec::with_capacity(sql.len() + 16 + params.len() * 16);
    material.extend_from_slice(&(sql.len() as u64).to_le_bytes());
    material.extend_from_slice(sql.as_bytes());
    material.extend_from_slice(&(params.len() as u64).to_le_bytes());
    for p in params {
        p.encode_key(&mut material);
    }
    material.extend_from_slice(&(generations.len() as u64).to_le_bytes());
    for g in generations {
        material.extend_from_slice(&(g.len() as u64).to_le_bytes());
        material.extend_from_slice(g.as_bytes());
    }
    let mut text = String::with_capacity(namespace.len() + 3 + 64);
    text.push_str(namespace);
    text.push_str(":q:");
    text.push_str(&sha256_hex(&material)?);
    CacheKey::parse(&text)
}

/// Lowercase hex SHA-256 of `material`.
pub(crate) fn sha256_hex(material: &[u8]) -> Result<String> {
    let hash = sha256().ok_or_else(|| Error::provider("sha-256 is not available"))?;
    let digest = hash.hash(material);
    let mut text = String::with_capacity(64);
    for b in digest.as_ref() {
        text.push(char::from(HEX[usize::from(b >> 4)]));
        text.push(char::from(HEX[usize::from(b & 15)]));
    }
    Ok(text)
}

/// The default cache namespace of a storage: `psm:pg:<host>:<port>:<dbname>:<schema>`, or
/// `psm:pg:h<sha-256 hex>` of those four when that is longer than 160 bytes, so two databases
/// sharing one cache never share entries.
pub(crate) fn default_namespace(host: &str, port: u16, dbname: &str, schema: &str) -> String {
    let plain = format!("psm:pg:{host}:{port}:{dbname}:{schema}");
    if plain.len() <= 160 && !plain.chars().any(char::is_control) {
        return plain;
    }
    let mut material = Vec::new();
    for part in [host, &port.to_string(), dbname, schema] {
        material.extend_from_slice(&(part.len() as u64).to_le_bytes());
        material.extend_from_slice(part.as_bytes());
    }
    match sha256_hex(&material) {
        Ok(hex) => format!("psm:pg:h{hex}"),
        Err(_) => format!("psm:pg:{schema}"),
    }
}

/// How long a tag's generation stays in the cache (the longest TTL allowed): entries of an older
/// generation are never read again, whatever their own TTL.
fn generation_ttl() -> Result<Ttl> {
    Ttl::from_secs(psm_core::MAX_TTL_SECS)
}

fn generation_key(namespace: &str, tag: &str) -> Result<CacheKey> {
    CacheKey::parse(&format!("{namespace}:gen:{tag}"))
}

/// A value no other generation of any process has: time, pid and a counter.
fn new_generation() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    // Uniqueness, not time, is what matters: micros, pid and a per-process counter.
    let micros = psm_core::Clock::now(&psm_core::SystemClock).as_unix_micros();
    format!(
        "{micros:x}.{:x}.{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The current generation of each tag, read **before** the database read it will guard. A tag
/// without one gets a fresh one. An entry written under these generations is only ever read while
/// they are current, so a lookup that raced an invalidation cannot resurrect its stale result.
///
/// # Errors
/// The cache's error (the caller then skips the cache).
pub(crate) async fn generations(
    cache: &dyn Cache,
    namespace: &str,
    tags: &[&str],
) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(tags.len());
    for tag in tags {
        let key = generation_key(namespace, tag)?;
        let current = cache
            .get(&key)
            .await?
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let g = match current {
            Some(g) => g,
            None => {
                let g = new_generation();
                cache
                    .set(&key, g.as_bytes(), generation_ttl()?, &[])
                    .await?;
                g
            }
        };
        out.push(g);
    }
    Ok(out)
}

/// Starts a new generation of `tag`: every entry read under the old one becomes unreachable,
/// including one a concurrent lookup is still about to write.
///
/// # Errors
/// The cache's error.
pub(crate) async fn bump(cache: &dyn Cache, namespace: &str, tag: &str) -> Result<()> {
    let key = generation_key(namespace, tag)?;
    cache
        .set(&key, new_generation().as_bytes(), generation_ttl()?, &[])
        .await
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn keys_differ_by_sql_params_and_types_and_are_stable() {
        let a = key("ns", "SELECT $1", &[SqlValue::Int(1)], &[]).unwrap();
        assert_eq!(a, key("ns", "SELECT $1", &[SqlValue::Int(1)], &[]).unwrap());
        assert!(a.as_str().starts_with("ns:q:"));
        assert_eq!(a.as_str().len(), "ns:q:".len() + 64);
        for other in [
            key("ns", "SELECT $1", &[SqlValue::Int(2)], &[]),
            key("ns", "SELECT $1", &[SqlValue::Text("1".into())], &[]),
            key("ns", "SELECT $1 ", &[SqlValue::Int(1)], &[]),
            key("other", "SELECT $1", &[SqlValue::Int(1)], &[]),
            key("ns", "SELECT $1", &[SqlValue::Null], &[]),
        ] {
            assert_ne!(a, other.unwrap());
        }
        // Concatenation ambiguity: ("ab","c") vs ("a","bc").
        let x = key("ns", "q", &[SqlValue::from("ab"), SqlValue::from("c")], &[]).unwrap();
        let y = key("ns", "q", &[SqlValue::from("a"), SqlValue::from("bc")], &[]).unwrap();
        assert_ne!(x, y);
        // A new generation of a tag gives a new key.
        let g1 = key("ns", "q", &[], &["1".into()]).unwrap();
        assert_ne!(g1, key("ns", "q", &[], &["2".into()]).unwrap());
        assert_ne!(g1, key("ns", "q", &[], &[]).unwrap());
    }

    #[test]
    fn default_namespaces_differ_by_database_and_stay_short() {
        let a = default_namespace("db1", 5432, "app", "psm");
        assert_eq!(a, "psm:pg:db1:5432:app:psm");
        assert_ne!(a, default_namespace("db2", 5432, "app", "psm"));
        assert_ne!(a, default_namespace("db1", 5433, "app", "psm"));
        assert_ne!(a, default_namespace("db1", 5432, "other", "psm"));
        let long = default_namespace(&"h".repeat(300), 5432, "app", "psm");
        assert!(long.starts_with("psm:pg:h") && long.len() == "psm:pg:h".len() + 64);
    }
}
