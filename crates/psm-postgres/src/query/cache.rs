//! Result caching for the query layer: options, keys, tag generations, the stored form, and a
//! small in-process memo of decoded results.
//!
//! # What a hit costs
//! Without tags, one `Cache::get`. With tags, that `get` and one per tag (the generations), all
//! sent at once, so on a networked cache they cost one round trip. Besides, a hash of the SQL
//! text and parameters (foldhash, no allocation), a look-up in the memo, and a comparison of the
//! fetched bytes with the bytes the memo decoded last time: when they are equal the memo's
//! decoded rows are returned (shared), so a hot entry is decoded once, not on every hit.
//!
//! # Why a hit can never return another query's rows
//! The stored value starts with the full key material (SQL text, every parameter's type and value,
//! the tag names) and is used only when that equals the caller's, so the short hash in the key
//! only spreads entries; a collision is a miss, never a wrong answer. The memo compares SQL,
//! parameters and tags in full too.
//!
//! # Why a fetch racing an invalidation cannot serve stale rows later
//! Each tag has a generation (a unique value at `<namespace>:gen:<tag>`). A fetch reads the
//! generations of its tags *before* it reads the database and stores them in the value. An
//! invalidation first gives each tag a new generation, then drops the tagged entries. A value
//! is used only while every generation it holds is still current. So a fetch that read the
//! database before a concurrent invalidation may still write its (stale) value after it, but no
//! later fetch accepts that value: its generation is no longer current.

use std::{
    fmt,
    hash::{BuildHasher, Hasher},
    ops::Deref,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use futures::future::join_all;
use parking_lot::Mutex;
use psm_core::{Cache, CacheKey, CacheTag, DynCache, Error, MAX_CACHE_VALUE_BYTES, Result, Ttl};
use rustls::crypto::hash::{Hash, HashAlgorithm};

use super::{JsonRow, SqlValue, encode};

/// How one cached fetch is cached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheOptions {
    /// How long the result stays cached; `None` uses the [`Database`](crate::Database)'s default.
    pub ttl: Option<Ttl>,
    /// Tags naming what the result depends on (for example `users`, `user:42`); an
    /// [`execute_invalidating`](crate::Database::execute_invalidating) naming one of them drops the
    /// result. The tags are part of the cache key: the same query cached with other tags is
    /// another entry.
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

/// The rows of a cached fetch, shared and immutable: cloning is cheap, and repeated hits on one
/// cache entry share one decoded copy. [`to_vec`](Self::to_vec) gives rows of your own to change.
#[derive(Clone, Default, PartialEq)]
pub struct CachedRows(Arc<[JsonRow]>);

impl CachedRows {
    /// The rows as an owned vector (a copy).
    pub fn to_vec(&self) -> Vec<JsonRow> {
        self.0.to_vec()
    }
}

impl Deref for CachedRows {
    type Target = [JsonRow];
    fn deref(&self) -> &[JsonRow] {
        &self.0
    }
}

impl From<Vec<JsonRow>> for CachedRows {
    fn from(rows: Vec<JsonRow>) -> Self {
        Self(rows.into())
    }
}

impl<'a> IntoIterator for &'a CachedRows {
    type Item = &'a JsonRow;
    type IntoIter = std::slice::Iter<'a, JsonRow>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Debug for CachedRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

/// Slots of the memo of one [`Database`](crate::Database): a query's hash picks its slot, and a
/// newer query with the same slot replaces the older one.
pub const MEMO_ENTRIES: usize = 256;
/// Stored values larger than this are decoded on every hit instead of being kept in the memo.
pub const MEMO_VALUE_BYTES: usize = 64 * 1024;

/// The first bytes of every stored value (format version 1).
const MAGIC: &[u8; 5] = b"psmq\x01";

/// The cache of one `Database`: the port, the default ttl, the namespace and the memo.
pub(crate) struct QueryCache {
    pub(crate) cache: DynCache,
    pub(crate) default_ttl: Ttl,
    pub(crate) namespace: String,
    memo: Box<[Mutex<Option<Arc<MemoEntry>>>]>,
}

/// One query the memo knows: its identity (validated once), its keys, and the last value it
/// decoded.
struct MemoEntry {
    hash: u64,
    sql: Box<str>,
    params: Vec<SqlValue>,
    tags: Vec<CacheTag>,
    key: CacheKey,
    generation_keys: Vec<CacheKey>,
    decoded: Option<Decoded>,
}

struct Decoded {
    bytes: Box<[u8]>,
    generations: Vec<Box<str>>,
    rows: CachedRows,
}

/// What a look-up found.
pub(crate) enum Lookup {
    /// A live, matching value: the rows.
    Hit(CachedRows),
    /// No usable value: read the database, then [`QueryCache::store`] under these generations.
    Miss(Pending),
    /// The query failed validation (nothing was read).
    Rejected(Error),
}

/// A miss: where and under which generations the result is to be stored.
pub(crate) struct Pending {
    key: CacheKey,
    generation_keys: Vec<CacheKey>,
    hash: u64,
    generations: Vec<String>,
}

/// What the generation keys of a look-up held (`None`: no generation yet).
type Current = Vec<Option<Vec<u8>>>;

impl QueryCache {
    pub(crate) fn new(cache: DynCache, default_ttl: Ttl, namespace: String) -> Self {
        Self {
            cache,
            default_ttl,
            namespace,
            memo: (0..MEMO_ENTRIES).map(|_| Mutex::new(None)).collect(),
        }
    }

    fn slot(&self, hash: u64) -> &Mutex<Option<Arc<MemoEntry>>> {
        // MEMO_ENTRIES is a power of two; the low bits of foldhash are well mixed.
        &self.memo[(hash as usize) & (MEMO_ENTRIES - 1)]
    }

    fn memo_entry(
        &self,
        hash: u64,
        sql: &str,
        params: &[SqlValue],
        tags: &[CacheTag],
    ) -> Option<Arc<MemoEntry>> {
        let entry = self.slot(hash).lock().clone()?;
        (entry.hash == hash
            && *entry.sql == *sql
            && entry.params.len() == params.len()
            && entry.params.iter().zip(params).all(|(a, b)| a.key_eq(b))
            && entry.tags == tags)
            .then_some(entry)
    }

    /// Looks the query up: the entry and the tags' generations are read at once. `validate` runs
    /// unless the memo already knows this exact query (which it only learns after validating).
    /// Cache errors are returned (the caller then reads the database without caching).
    pub(crate) async fn lookup(
        &self,
        sql: &str,
        params: &[SqlValue],
        tags: &[CacheTag],
        validate: impl FnOnce() -> Result<()>,
    ) -> Result<Lookup> {
        let hash = memo_hash(sql, params, tags);
        let known = self.memo_entry(hash, sql, params, tags);
        let computed;
        let (key, generation_keys) = match &known {
            Some(e) => (&e.key, e.generation_keys.as_slice()),
            None => {
                if let Err(e) = validate() {
                    return Ok(Lookup::Rejected(e));
                }
                computed = (
                    key(&self.namespace, sql, params, tags)?,
                    tags.iter()
                        .map(|t| generation_key(&self.namespace, t.as_str()))
                        .collect::<Result<Vec<_>>>()?,
                );
                (&computed.0, computed.1.as_slice())
            }
        };
        // Called on the trait object itself: through the `Arc` it would box a second future.
        let cache: &dyn Cache = &*self.cache;
        // The hot path: a known query without tags whose value is what the memo decoded last.
        if let (Some(d), []) = (known.as_deref().and_then(|e| e.decoded.as_ref()), tags) {
            let value = cache.get(key).await;
            if let Ok(Some(bytes)) = &value
                && **bytes == *d.bytes
            {
                return Ok(Lookup::Hit(d.rows.clone()));
            }
            return self
                .settle(
                    hash,
                    (sql, params, tags),
                    known.as_deref(),
                    (key, &[]),
                    value,
                    Vec::new(),
                )
                .await;
        }
        let (value, current): (_, Current) = match generation_keys {
            [] => (cache.get(key).await, Vec::new()),
            [g] => {
                let (value, g) = futures::join!(cache.get(key), cache.get(g));
                (value, vec![g?])
            }
            many => {
                let (value, gens) =
                    futures::join!(cache.get(key), join_all(many.iter().map(|k| cache.get(k))));
                (value, gens.into_iter().collect::<Result<_>>()?)
            }
        };
        self.settle(
            hash,
            (sql, params, tags),
            known.as_deref(),
            (key, generation_keys),
            value,
            current,
        )
        .await
    }

    /// The rest of a look-up once the entry and the generations were read: a hit when they
    /// match, else a miss with every tag's generation in place.
    async fn settle(
        &self,
        hash: u64,
        (sql, params, tags): (&str, &[SqlValue], &[CacheTag]),
        known: Option<&MemoEntry>,
        (key, generation_keys): (&CacheKey, &[CacheKey]),
        value: Result<Option<Vec<u8>>>,
        current: Current,
    ) -> Result<Lookup> {
        let value = match value {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "query cache read failed");
                None
            }
        };
        if let (Some(bytes), true) = (&value, current.iter().all(Option::is_some)) {
            if let Some(rows) = known
                .and_then(|e| e.decoded.as_ref())
                .filter(|d| *d.bytes == **bytes && same_generations(&d.generations, &current))
                .map(|d| d.rows.clone())
            {
                return Ok(Lookup::Hit(rows));
            }
            match accept(bytes, sql, params, tags, &current) {
                Some((rows, generations)) => {
                    self.remember(
                        hash,
                        (sql, params, tags),
                        (key, generation_keys),
                        bytes,
                        generations,
                        &rows,
                    );
                    return Ok(Lookup::Hit(rows));
                }
                None => tracing::debug!("cached value is stale, foreign or damaged; reading again"),
            }
        }
        // A miss. Tags without a generation get one now, still before the database read.
        let mut generations = Vec::with_capacity(tags.len());
        for (gen_key, g) in generation_keys.iter().zip(current) {
            generations.push(match g.and_then(|g| String::from_utf8(g).ok()) {
                Some(g) => g,
                None => {
                    let g = new_generation();
                    self.cache
                        .set(gen_key, g.as_bytes(), generation_ttl()?, &[])
                        .await?;
                    g
                }
            });
        }
        Ok(Lookup::Miss(Pending {
            key: key.clone(),
            generation_keys: generation_keys.to_vec(),
            hash,
            generations,
        }))
    }

    fn remember(
        &self,
        hash: u64,
        (sql, params, tags): (&str, &[SqlValue], &[CacheTag]),
        (key, generation_keys): (&CacheKey, &[CacheKey]),
        bytes: &[u8],
        generations: Vec<Box<str>>,
        rows: &CachedRows,
    ) {
        let decoded = (bytes.len() <= MEMO_VALUE_BYTES).then(|| Decoded {
            bytes: bytes.into(),
            generations,
            rows: rows.clone(),
        });
        let entry = Arc::new(MemoEntry {
            hash,
            sql: sql.into(),
            params: params.to_vec(),
            tags: tags.to_vec(),
            key: key.clone(),
            generation_keys: generation_keys.to_vec(),
            decoded,
        });
        *self.slot(hash).lock() = Some(entry);
    }

    /// Stores the rows read for a miss (failures are logged: the caller has its rows).
    pub(crate) async fn store(
        &self,
        pending: Pending,
        sql: &str,
        params: &[SqlValue],
        options: &CacheOptions,
        rows: &CachedRows,
    ) {
        let material = material(sql, params, &options.tags);
        let mut bytes = Vec::with_capacity(64 + material.len() + rows.len() * 64);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(
            &u32::try_from(material.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        bytes.extend_from_slice(&material);
        bytes.extend_from_slice(
            &u16::try_from(pending.generations.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        for g in &pending.generations {
            bytes.extend_from_slice(&u16::try_from(g.len()).unwrap_or(u16::MAX).to_le_bytes());
            bytes.extend_from_slice(g.as_bytes());
        }
        encode::rows(rows, &mut bytes);
        if bytes.len() > MAX_CACHE_VALUE_BYTES {
            tracing::debug!(bytes = bytes.len(), "query result too large to cache");
            return;
        }
        let ttl = options.ttl.unwrap_or(self.default_ttl);
        if let Err(e) = self
            .cache
            .set(&pending.key, &bytes, ttl, &options.tags)
            .await
        {
            tracing::warn!(error = %e, "query cache write failed");
            return;
        }
        let generations = pending
            .generations
            .iter()
            .map(|g| g.as_str().into())
            .collect();
        self.remember(
            pending.hash,
            (sql, params, &options.tags),
            (&pending.key, &pending.generation_keys),
            &bytes,
            generations,
            rows,
        );
    }
}

/// The rows of `bytes` when they hold exactly this query under the current generations.
fn accept(
    bytes: &[u8],
    sql: &str,
    params: &[SqlValue],
    tags: &[CacheTag],
    current: &Current,
) -> Option<(CachedRows, Vec<Box<str>>)> {
    let mut r = encode::Reader::new(bytes);
    if r.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let n = r.u32()?;
    if r.take(n)? != material(sql, params, tags).as_slice() {
        return None;
    }
    let count = usize::from(r.u16()?);
    if count != current.len() {
        return None;
    }
    let mut generations = Vec::with_capacity(count);
    for now in current {
        let n = usize::from(r.u16()?);
        let g = r.take(n)?;
        if Some(g) != now.as_deref() {
            return None;
        }
        generations.push(std::str::from_utf8(g).ok()?.into());
    }
    Some((CachedRows::from(r.rows()?), generations))
}

fn same_generations(stored: &[Box<str>], current: &Current) -> bool {
    stored.len() == current.len()
        && stored
            .iter()
            .zip(current)
            .all(|(s, c)| c.as_deref() == Some(s.as_bytes()))
}

/// Feeds an unambiguous encoding of the query's identity to `sink`: the SQL text, every
/// parameter (type and value), every tag name, each length-prefixed.
fn feed(sql: &str, params: &[SqlValue], tags: &[CacheTag], sink: &mut impl FnMut(&[u8])) {
    sink(&(sql.len() as u64).to_le_bytes());
    sink(sql.as_bytes());
    sink(&(params.len() as u64).to_le_bytes());
    for p in params {
        p.encode_key(sink);
    }
    sink(&(tags.len() as u64).to_le_bytes());
    for t in tags {
        sink(&(t.as_str().len() as u64).to_le_bytes());
        sink(t.as_str().as_bytes());
    }
}

/// The key material, as stored at the start of every value.
fn material(sql: &str, params: &[SqlValue], tags: &[CacheTag]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sql.len() + 32 + params.len() * 16);
    feed(sql, params, tags, &mut |b| out.extend_from_slice(b));
    out
}

/// The memo's hash of a query (in-process only).
fn memo_hash(sql: &str, params: &[SqlValue], tags: &[CacheTag]) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0x7073_6d5f_6d65_6d6f).build_hasher();
    feed(sql, params, tags, &mut |b| h.write(b));
    h.finish()
}

/// The cache key of a query under `namespace`: `<namespace>:q:<32 hex digits>`, 128 bits of
/// foldhash (fixed seeds, the same in every process) over the key material. The value repeats the
/// material, so the hash only has to spread keys, not to be collision-free.
pub(crate) fn key(
    namespace: &str,
    sql: &str,
    params: &[SqlValue],
    tags: &[CacheTag],
) -> Result<CacheKey> {
    let mut a = foldhash::quality::FixedState::with_seed(0x7073_6d5f_6b65_7931).build_hasher();
    let mut b = foldhash::quality::FixedState::with_seed(0x7073_6d5f_6b65_7932).build_hasher();
    feed(sql, params, tags, &mut |bytes| {
        a.write(bytes);
        b.write(bytes);
    });
    let mut text = String::with_capacity(namespace.len() + 3 + 32);
    text.push_str(namespace);
    text.push_str(":q:");
    for word in [a.finish(), b.finish()] {
        for byte in word.to_be_bytes() {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 15)]));
        }
    }
    CacheKey::parse(&text)
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

pub(crate) fn generation_key(namespace: &str, tag: &str) -> Result<CacheKey> {
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

/// The generation `read` from `tag`'s generation key, or, when there was none, a fresh one
/// stored now (still before the database read it will guard).
///
/// # Errors
/// The cache's error (the caller then skips the cache).
pub(crate) async fn generation_or_new(
    cache: &dyn Cache,
    namespace: &str,
    tag: &str,
    read: Option<Vec<u8>>,
) -> Result<String> {
    if let Some(g) = read.and_then(|b| String::from_utf8(b).ok()) {
        return Ok(g);
    }
    let g = new_generation();
    cache
        .set(
            &generation_key(namespace, tag)?,
            g.as_bytes(),
            generation_ttl()?,
            &[],
        )
        .await?;
    Ok(g)
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

    fn tag(s: &str) -> CacheTag {
        CacheTag::parse(s).unwrap()
    }

    #[test]
    fn keys_differ_by_sql_params_types_and_tags_and_are_stable() {
        let a = key("ns", "SELECT $1", &[SqlValue::Int(1)], &[]).unwrap();
        assert_eq!(a, key("ns", "SELECT $1", &[SqlValue::Int(1)], &[]).unwrap());
        assert!(a.as_str().starts_with("ns:q:"));
        assert_eq!(a.as_str().len(), "ns:q:".len() + 32);
        for other in [
            key("ns", "SELECT $1", &[SqlValue::Int(2)], &[]),
            key("ns", "SELECT $1", &[SqlValue::Text("1".into())], &[]),
            key("ns", "SELECT $1 ", &[SqlValue::Int(1)], &[]),
            key("other", "SELECT $1", &[SqlValue::Int(1)], &[]),
            key("ns", "SELECT $1", &[SqlValue::Null], &[]),
            key("ns", "SELECT $1", &[SqlValue::Int(1)], &[tag("t")]),
        ] {
            assert_ne!(a, other.unwrap());
        }
        // Concatenation ambiguity: ("ab","c") vs ("a","bc").
        let x = key("ns", "q", &[SqlValue::from("ab"), SqlValue::from("c")], &[]).unwrap();
        let y = key("ns", "q", &[SqlValue::from("a"), SqlValue::from("bc")], &[]).unwrap();
        assert_ne!(x, y);
        // 0.0 and -0.0 are different parameters (`SELECT $1::text` tells them apart).
        assert_ne!(
            material("q", &[SqlValue::Float(0.0)], &[]),
            material("q", &[SqlValue::Float(-0.0)], &[])
        );
        // The same in every process: a fixed value for a fixed query.
        assert_eq!(
            key("ns", "SELECT 1", &[], &[]).unwrap(),
            key("ns", "SELECT 1", &[], &[]).unwrap()
        );
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
