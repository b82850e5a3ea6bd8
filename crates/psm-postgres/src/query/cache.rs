//! Result caching for the query layer: options, keys, tag generations, the stored form, and a
//! small in-process memo of decoded results.
//!
//! # What a hit costs
//! Without tags, one `Cache::get`. With tags, that `get` and one per tag (the generations), all
//! sent at once, so on a networked cache they cost one round trip. Besides: a hash of the
//! parameters and tags (foldhash, no allocation; through [`Database::fetch_json_cached`] also of
//! the SQL text, which a [`Query`] hashed once), a look-up in the memo (one slot lock, the SQL,
//! parameters and tags compared in full), and a check of the fetched value's 21-byte head (format
//! and write nonce) and length against the value the memo decoded last: when they match, the
//! memo's decoded rows are returned (shared), so a hot entry is decoded once, not on every hit.
//!
//! # Why a hit can never return another query's rows
//! The stored value starts with a fresh 128-bit random nonce (the operating system's CSPRNG, new
//! for every write), then the full key material (SQL text, every parameter's type and value, the
//! tag names). A value is decoded only when its material equals the caller's, so the short hash
//! in the key only spreads entries; a collision is a miss, never a wrong answer. The memo is
//! found by the same identity compared in full, and it hands out its rows only for a value
//! carrying the nonce of the value they were decoded from (or written as): that value had this
//! query's material, and no other write, of this or any other query or process, draws the same
//! 128 random bits. Anything else under the key is decoded and checked afresh.
//!
//! # Why a fetch racing an invalidation cannot serve stale rows later
//! Each tag has a generation (a unique value at `<namespace>:gen:<tag>`). A fetch reads the
//! generations of its tags *before* it reads the database and stores them in the value. An
//! invalidation first gives each tag a new generation, then drops the tagged entries. A value
//! (and a memo entry decoded from one) is used only while every generation it holds is still
//! current. So a fetch that read the database before a concurrent invalidation may still write
//! its (stale) value after it, but no later fetch accepts that value: its generation is no longer
//! current.
//!
//! [`Database::fetch_json_cached`]: crate::Database::fetch_json_cached
//! [`Query`]: crate::Query

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
use psm_core::{
    Cache, CacheKey, CacheTag, DynCache, Error, MAX_CACHE_VALUE_BYTES, OsRandom, RandomSource,
    Result, Ttl,
};
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
#[derive(Clone)]
pub struct CachedRows(Arc<RowSet>);

/// Shared rows and, for the memo's entries, what the memo knows about their query: a memo hit
/// hands out the entry it already holds, as one pointer, without another reference count.
pub(crate) struct RowSet {
    rows: Box<[JsonRow]>,
    memo: Option<MemoEntry>,
}

impl CachedRows {
    /// The rows as an owned vector (a copy).
    pub fn to_vec(&self) -> Vec<JsonRow> {
        self.0.rows.to_vec()
    }
}

impl Default for CachedRows {
    fn default() -> Self {
        Vec::new().into()
    }
}

impl Deref for CachedRows {
    type Target = [JsonRow];
    #[inline]
    fn deref(&self) -> &[JsonRow] {
        &self.0.rows
    }
}

impl PartialEq for CachedRows {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl From<Vec<JsonRow>> for CachedRows {
    fn from(rows: Vec<JsonRow>) -> Self {
        Self(Arc::new(RowSet {
            rows: rows.into(),
            memo: None,
        }))
    }
}

impl<'a> IntoIterator for &'a CachedRows {
    type Item = &'a JsonRow;
    type IntoIter = std::slice::Iter<'a, JsonRow>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Debug for CachedRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Slots of the memo of one [`Database`](crate::Database) (shared by its clones and its
/// [`Query`](crate::Query) handles): a query's hash picks its slot, and a newer query with the
/// same slot replaces the older one.
pub const MEMO_ENTRIES: usize = 256;
/// Stored values larger than this are decoded on every hit instead of being kept in the memo.
pub const MEMO_VALUE_BYTES: usize = 64 * 1024;

/// The first bytes of every stored value (format version 2: a write nonce follows).
const MAGIC: &[u8; 5] = b"psmq\x02";
/// Bytes of the random nonce each write puts after [`MAGIC`].
const NONCE_BYTES: usize = 16;
/// The head of a stored value: the format and the write's nonce.
const HEAD: usize = MAGIC.len() + NONCE_BYTES;

/// The cache of one `Database`: the port, the default ttl, the namespace and the memo.
pub(crate) struct QueryCache {
    pub(crate) cache: DynCache,
    pub(crate) default_ttl: Ttl,
    pub(crate) namespace: String,
    memo: Box<[Mutex<Option<Arc<RowSet>>>]>,
}

/// The SQL of a look-up: its text and the hash of the text (computed once by a
/// [`Query`](crate::Query)), and the handle's shared copy of the text when there is one.
#[derive(Clone, Copy)]
pub(crate) struct Sql<'a> {
    pub(crate) text: &'a str,
    pub(crate) hash: u64,
    pub(crate) shared: Option<&'a Arc<str>>,
}

impl<'a> Sql<'a> {
    /// The SQL of a one-off call (hashed now).
    pub(crate) fn one_off(text: &'a str) -> Self {
        Self {
            text,
            hash: sql_hash(text),
            shared: None,
        }
    }

    #[inline]
    fn is(&self, other: &Arc<str>) -> bool {
        self.shared.is_some_and(|s| Arc::ptr_eq(s, other)) || **other == *self.text
    }

    fn to_arc(self) -> Arc<str> {
        self.shared.map_or_else(|| self.text.into(), Arc::clone)
    }
}

/// One query the memo knows: its identity (validated once), its keys, and which value the rows
/// of its [`RowSet`] came from.
struct MemoEntry {
    hash: u64,
    sql: Arc<str>,
    params: Box<[SqlValue]>,
    tags: Box<[CacheTag]>,
    key: CacheKey,
    generation_keys: Box<[CacheKey]>,
    /// `None` when the rows were not kept (a value over [`MEMO_VALUE_BYTES`]).
    value: Option<ValueId>,
}

/// A stored value as the memo knows it.
struct ValueId {
    /// The head (format and nonce) and the length of the value.
    head: [u8; HEAD],
    len: usize,
    generations: Box<[Box<str>]>,
}

impl RowSet {
    /// The cache key of the memo's query.
    #[inline]
    pub(crate) fn key(&self) -> Option<&CacheKey> {
        self.memo.as_ref().map(|m| &m.key)
    }

    /// Whether the memo's query has no tags (a hit reads only its entry).
    #[inline]
    pub(crate) fn untagged(&self) -> bool {
        self.memo
            .as_ref()
            .is_some_and(|m| m.generation_keys.is_empty())
    }

    /// Whether `bytes` is the very value these rows came from, under generations that are all
    /// still `current`.
    #[inline]
    pub(crate) fn holds(&self, bytes: &[u8], current: &[Option<Vec<u8>>]) -> bool {
        self.value_of(bytes).is_some_and(|v| {
            v.generations.is_empty() && current.is_empty()
                || same_generations(&v.generations, current)
        })
    }

    /// [`holds`](Self::holds) for a query with one tag, whose generation is `generation`.
    #[inline]
    pub(crate) fn holds_one(&self, bytes: &[u8], generation: &[u8]) -> bool {
        self.value_of(bytes)
            .is_some_and(|v| matches!(&*v.generations, [g] if g.as_bytes() == generation))
    }

    /// What the memo knows of `bytes` when they are the value these rows came from: the same
    /// length, format and write nonce.
    #[inline]
    fn value_of(&self, bytes: &[u8]) -> Option<&ValueId> {
        self.memo.as_ref()?.value.as_ref().filter(|v| {
            bytes.len() == v.len
                && bytes
                    .first_chunk::<HEAD>()
                    .is_some_and(|head| *head == v.head)
        })
    }

    /// Whether the memo keeps these rows (they came from a value of at most
    /// [`MEMO_VALUE_BYTES`]); otherwise it knows only the query, and every hit decodes.
    #[inline]
    pub(crate) fn keeps_rows(&self) -> bool {
        self.memo.as_ref().is_some_and(|m| m.value.is_some())
    }

    /// The generation key of the memo's query when it has exactly one tag.
    #[inline]
    pub(crate) fn generation_key(&self) -> Option<&CacheKey> {
        match self.memo.as_ref().map(|m| &*m.generation_keys) {
            Some([g]) => Some(g),
            _ => None,
        }
    }

    /// The rows as a fetch's answer.
    pub(crate) fn into_rows(self: Arc<Self>) -> CachedRows {
        CachedRows(self)
    }
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
    generation_keys: Box<[CacheKey]>,
    hash: u64,
    generations: Vec<String>,
}

/// What the generation keys of a look-up held (`None`: no generation yet).
pub(crate) type Current = Vec<Option<Vec<u8>>>;

impl QueryCache {
    pub(crate) fn new(cache: DynCache, default_ttl: Ttl, namespace: String) -> Self {
        Self {
            cache,
            default_ttl,
            namespace,
            memo: (0..MEMO_ENTRIES).map(|_| Mutex::new(None)).collect(),
        }
    }

    fn slot(&self, hash: u64) -> &Mutex<Option<Arc<RowSet>>> {
        // MEMO_ENTRIES is a power of two; the low bits of foldhash are well mixed.
        &self.memo[(hash as usize) & (MEMO_ENTRIES - 1)]
    }

    /// The memo's entry for exactly this query, if it knows it (a query it knows was validated
    /// when it was learned). `hash` is [`memo_hash`] of the query.
    #[inline]
    pub(crate) fn known(
        &self,
        hash: u64,
        sql: &Sql<'_>,
        params: &[SqlValue],
        tags: &[CacheTag],
    ) -> Option<Arc<RowSet>> {
        let slot = self.slot(hash).lock();
        let entry = slot.as_ref()?;
        let m = entry.memo.as_ref()?;
        (m.hash == hash
            && sql.is(&m.sql)
            && m.params.len() == params.len()
            && m.params.iter().zip(params).all(|(a, b)| a.key_eq(b))
            && *m.tags == *tags)
            .then(|| Arc::clone(entry))
    }

    /// Reads a known query's entry and, at the same time, its tags' generations (see [`read`]).
    async fn read_known(&self, known: &MemoEntry) -> Result<(Result<Option<Vec<u8>>>, Current)> {
        // Called on the trait object itself: through the `Arc` it would box a second future.
        let cache: &dyn Cache = &*self.cache;
        if known.generation_keys.is_empty() {
            return Ok((cache.get(&known.key).await, Vec::new()));
        }
        read(cache, &known.key, &known.generation_keys).await
    }

    /// Looks up a query the memo does not know: `validate` first (nothing is read for a rejected
    /// query), then the entry and the tags' generations at once. Cache errors are returned (the
    /// caller then reads the database without caching).
    pub(crate) async fn lookup_unknown(
        &self,
        hash: u64,
        (sql, params, tags): (Sql<'_>, &[SqlValue], &[CacheTag]),
        validate: &(dyn Fn() -> Result<()> + Sync),
    ) -> Result<Lookup> {
        if let Err(e) = validate() {
            return Ok(Lookup::Rejected(e));
        }
        let key = key(&self.namespace, sql.text, params, tags)?;
        let generation_keys = tags
            .iter()
            .map(|t| generation_key(&self.namespace, t.as_str()))
            .collect::<Result<Box<[_]>>>()?;
        let (value, current) = read(&*self.cache, &key, &generation_keys).await?;
        self.settle(
            hash,
            (sql, params, tags),
            (key, generation_keys),
            value,
            current,
        )
        .await
    }

    /// A known query, with its entry and generations as the hit path read them (`None`: read
    /// them now): the memo's rows when the value is the one they came from, else the value
    /// checked and decoded afresh, or a miss.
    pub(crate) async fn lookup_known(
        &self,
        (sql, params, tags): (Sql<'_>, &[SqlValue], &[CacheTag]),
        known: Arc<RowSet>,
        read: Option<(Option<Vec<u8>>, Current)>,
    ) -> Result<Lookup> {
        let Some(m) = known.memo.as_ref() else {
            return Err(Error::provider("memo entry without a query"));
        };
        let (value, current) = match read {
            Some((value, current)) => (Ok(value), current),
            None => self.read_known(m).await?,
        };
        if let Ok(Some(bytes)) = &value
            && known.holds(bytes, &current)
        {
            return Ok(Lookup::Hit(known.into_rows()));
        }
        let keys = (m.key.clone(), m.generation_keys.clone());
        let hash = m.hash;
        drop(known);
        self.settle(hash, (sql, params, tags), keys, value, current)
            .await
    }

    /// The rest of a look-up once the entry and the generations were read: a hit when they
    /// match, else a miss with every tag's generation in place.
    async fn settle(
        &self,
        hash: u64,
        (sql, params, tags): (Sql<'_>, &[SqlValue], &[CacheTag]),
        (key, generation_keys): (CacheKey, Box<[CacheKey]>),
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
            match accept(bytes, sql.text, params, tags, &current) {
                Some((rows, value)) => {
                    let rows = self.remember(
                        hash,
                        (sql, params, tags),
                        (key, generation_keys),
                        rows,
                        value,
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
            key,
            generation_keys,
            hash,
            generations,
        }))
    }

    /// Puts the query and its rows (read from `value`) into the memo; returns the rows. Rows of
    /// a value over [`MEMO_VALUE_BYTES`] are not kept: the memo then knows only the query.
    fn remember(
        &self,
        hash: u64,
        (sql, params, tags): (Sql<'_>, &[SqlValue], &[CacheTag]),
        (key, generation_keys): (CacheKey, Box<[CacheKey]>),
        rows: Vec<JsonRow>,
        value: ValueId,
    ) -> CachedRows {
        let keep = value.len <= MEMO_VALUE_BYTES;
        let memo = MemoEntry {
            hash,
            sql: sql.to_arc(),
            params: params.into(),
            tags: tags.into(),
            key,
            generation_keys,
            value: keep.then_some(value),
        };
        let (entry, answer) = if keep {
            let entry = Arc::new(RowSet {
                rows: rows.into(),
                memo: Some(memo),
            });
            (Arc::clone(&entry), CachedRows(entry))
        } else {
            let entry = Arc::new(RowSet {
                rows: Box::new([]),
                memo: Some(memo),
            });
            (entry, CachedRows::from(rows))
        };
        // The old entry (if any) is dropped after the lock is released.
        let old = self.slot(hash).lock().replace(entry);
        drop(old);
        answer
    }

    /// Stores the rows read for a miss and returns them (failures are logged: the caller gets
    /// its rows either way).
    pub(crate) async fn store(
        &self,
        pending: Pending,
        (sql, params, options): (Sql<'_>, &[SqlValue], &CacheOptions),
        rows: Vec<JsonRow>,
    ) -> CachedRows {
        let mut head = [0_u8; HEAD];
        head[..MAGIC.len()].copy_from_slice(MAGIC);
        if let Err(e) = OsRandom.fill(&mut head[MAGIC.len()..]) {
            // Without a fresh nonce a value could pass for another write: skip caching.
            tracing::warn!(error = %e, "no random nonce for the query cache; result not cached");
            return rows.into();
        }
        let material = material(sql.text, params, &options.tags);
        let mut bytes = Vec::with_capacity(64 + material.len() + rows.len() * 64);
        bytes.extend_from_slice(&head);
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
        encode::rows(&rows, &mut bytes);
        if bytes.len() > MAX_CACHE_VALUE_BYTES {
            tracing::debug!(bytes = bytes.len(), "query result too large to cache");
            return rows.into();
        }
        let ttl = options.ttl.unwrap_or(self.default_ttl);
        if let Err(e) = self
            .cache
            .set(&pending.key, &bytes, ttl, &options.tags)
            .await
        {
            tracing::warn!(error = %e, "query cache write failed");
            return rows.into();
        }
        let value = ValueId {
            head,
            len: bytes.len(),
            generations: pending
                .generations
                .iter()
                .map(|g| g.as_str().into())
                .collect(),
        };
        self.remember(
            pending.hash,
            (sql, params, &options.tags),
            (pending.key, pending.generation_keys),
            rows,
            value,
        )
    }
}

/// Reads the value under `key` and, at the same time, the generations under `generation_keys`.
/// The value's error is returned inside (it makes a miss); a generation's error is the call's.
async fn read(
    cache: &dyn Cache,
    key: &CacheKey,
    generation_keys: &[CacheKey],
) -> Result<(Result<Option<Vec<u8>>>, Current)> {
    Ok(match generation_keys {
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
    })
}

/// The rows of `bytes` and what the memo is to know of it, when it holds exactly this query under
/// the current generations.
fn accept(
    bytes: &[u8],
    sql: &str,
    params: &[SqlValue],
    tags: &[CacheTag],
    current: &Current,
) -> Option<(Vec<JsonRow>, ValueId)> {
    let mut r = encode::Reader::new(bytes);
    let head: [u8; HEAD] = r.take(HEAD)?.try_into().ok()?;
    if head[..MAGIC.len()] != *MAGIC {
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
    let value = ValueId {
        head,
        len: bytes.len(),
        generations: generations.into(),
    };
    Some((r.rows()?, value))
}

fn same_generations(stored: &[Box<str>], current: &[Option<Vec<u8>>]) -> bool {
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

/// The memo's hash of a SQL text (in-process only): a [`Query`](crate::Query) computes it once.
pub(crate) fn sql_hash(sql: &str) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0x7073_6d5f_7371_6c31).build_hasher();
    h.write(&(sql.len() as u64).to_le_bytes());
    h.write(sql.as_bytes());
    h.finish()
}

/// The memo's hash of a query (in-process only), from the hash of its SQL text. It only picks a
/// slot, so it is cheap rather than unambiguous: the memo compares the query itself in full.
#[inline(always)]
pub(crate) fn memo_hash(sql_hash: u64, params: &[SqlValue], tags: &[CacheTag]) -> u64 {
    let mut acc = sql_hash ^ ((params.len() as u64) << 48) ^ ((tags.len() as u64) << 56);
    for p in params {
        acc = acc.rotate_left(29) ^ p.memo_word();
    }
    for t in tags {
        acc = acc.rotate_left(31) ^ super::value::fold_bytes(t.as_str().as_bytes());
    }
    // One multiply spreads every bit over the low bits the slot is taken from.
    let m = u128::from(acc) * 0x9e37_79b9_7f4a_7c15_u128;
    (m as u64) ^ ((m >> 64) as u64)
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
    fn memo_hashes_count_every_byte_and_every_parameter() {
        // Every single-byte change of a text up to 72 bytes changes its word.
        for n in 1..=72_u8 {
            let base: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let word = super::super::value::fold_bytes(&base);
            for i in 0..usize::from(n) {
                for flip in [1_u8, 0x80, 0xff] {
                    let mut b = base.clone();
                    b[i] ^= flip;
                    assert_ne!(super::super::value::fold_bytes(&b), word, "{n} {i} {flip}");
                }
            }
        }
        let h = |params: &[SqlValue], tags: &[CacheTag]| memo_hash(sql_hash("q"), params, tags);
        let a = h(&[SqlValue::Int(1)], &[]);
        assert_eq!(a, h(&[SqlValue::Int(1)], &[]));
        for other in [
            h(&[SqlValue::Int(2)], &[]),
            h(&[SqlValue::Int(1), SqlValue::Int(1)], &[]),
            h(&[SqlValue::Int(1)], &[tag("t")]),
            h(&[], &[]),
            memo_hash(sql_hash("q "), &[SqlValue::Int(1)], &[]),
        ] {
            assert_ne!(a, other);
        }
        assert_ne!(
            h(&[SqlValue::from("sess-0001")], &[]),
            h(&[SqlValue::from("sess-0002")], &[])
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
