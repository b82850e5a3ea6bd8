//! Result caching for the query layer: options, keys and the stored encoding.

use std::sync::OnceLock;

use psm_core::{CacheKey, CacheTag, Error, Result, Ttl};
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

/// The cache key of `sql` with `params` under `namespace`: `<namespace>:q:<sha-256 hex>` of an
/// unambiguous encoding of the SQL text and every parameter (type and value), so two different
/// queries never share a key.
pub(crate) fn key(namespace: &str, sql: &str, params: &[SqlValue]) -> Result<CacheKey> {
    let mut material = Vec::with_capacity(sql.len() + 16 + params.len() * 16);
    material.extend_from_slice(&(sql.len() as u64).to_le_bytes());
    material.extend_from_slice(sql.as_bytes());
    material.extend_from_slice(&(params.len() as u64).to_le_bytes());
    for p in params {
        p.encode_key(&mut material);
    }
    let hash = sha256().ok_or_else(|| Error::provider("sha-256 is not available"))?;
    let digest = hash.hash(&material);
    let mut text = String::with_capacity(namespace.len() + 3 + 64);
    text.push_str(namespace);
    text.push_str(":q:");
    for b in digest.as_ref() {
        text.push(char::from(HEX[usize::from(b >> 4)]));
        text.push(char::from(HEX[usize::from(b & 15)]));
    }
    CacheKey::parse(&text)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn keys_differ_by_sql_params_and_types_and_are_stable() {
        let a = key("ns", "SELECT $1", &[SqlValue::Int(1)]).unwrap();
        assert_eq!(a, key("ns", "SELECT $1", &[SqlValue::Int(1)]).unwrap());
        assert!(a.as_str().starts_with("ns:q:"));
        assert_eq!(a.as_str().len(), "ns:q:".len() + 64);
        for other in [
            key("ns", "SELECT $1", &[SqlValue::Int(2)]),
            key("ns", "SELECT $1", &[SqlValue::Text("1".into())]),
            key("ns", "SELECT $1 ", &[SqlValue::Int(1)]),
            key("other", "SELECT $1", &[SqlValue::Int(1)]),
            key("ns", "SELECT $1", &[SqlValue::Null]),
        ] {
            assert_ne!(a, other.unwrap());
        }
        // Concatenation ambiguity: ("ab","c") vs ("a","bc").
        let x = key("ns", "q", &[SqlValue::from("ab"), SqlValue::from("c")]).unwrap();
        let y = key("ns", "q", &[SqlValue::from("a"), SqlValue::from("bc")]).unwrap();
        assert_ne!(x, y);
    }
}
