//! psm's PostgreSQL provider through the manager against a bare `tokio-postgres` prepared
//! primary-key `SELECT` on a table of the same shape, on the same server and Tokio runtimes, in the
//! same rounds; and the query layer's cached fetches against the cache's own reads.
//!
//! Sequential calls run on a current-thread runtime (as `pgbench -c 1` is one thread), concurrent
//! calls on a two-worker runtime (as `pgbench -c 16 -j 2` uses two threads). Each runtime has its
//! own manager and bare pool, on the same data.
//!
//! Everything the run creates lives in two fresh schemas, `psm_bench_<pid>_<random>` (psm's
//! migrated tables) and the same name with `_bare` (the bare table); both are dropped with
//! `DROP SCHEMA … CASCADE` at the end, also after a failure.

use std::{ops::Range, sync::Arc};

use deadpool_postgres::{Manager as PoolManager, ManagerConfig, Pool, RecyclingMethod};
use psm::postgres::{CacheOptions, Database, PostgresConfig, PostgresStorage, Query, SqlValue};
use psm::redis::{RedisCache, RedisConfig, RedisStorage};
use psm::{PermissionStorageManager as Manager, Ttl, memory::MemoryCache};
use psm_core::{Cache, CacheKey, CacheTag, DynCache};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio_postgres::NoTls;

use crate::{
    BenchResult,
    ops::Op,
    psm_run::run_op,
    remote::{
        Figure, SLICES, current_thread, expected_check_hits, fresh_suffix, paired, psm_checks,
        redact, run_tasks, segments, two_workers, with_param,
    },
    workload::Workload,
};

/// Concurrent tasks of the concurrent measurement, and of the filling.
pub(crate) const CONCURRENCY: usize = 16;
/// The ttl of psm's sessions and of the cached query result (the workload's default ttl).
const TTL: u64 = 3600;
/// The workload position whose session the cached query reads.
const CACHED_POSITION: usize = 0;

/// Connections of the bare pool: psm-postgres's default pool size, so both sides spread their
/// tasks over as many connections.
pub(crate) fn bare_pool_size() -> usize {
    PostgresConfig::default().pool_size
}

/// `url` as psm is given it: with `schema`, and without TLS unless the URL asks for it (the bare
/// pool and pgbench connect without TLS too; loopback connections need none).
pub(crate) fn psm_url(url: &str, schema: &str) -> String {
    let url = with_param(url, "schema", schema);
    if url.contains("sslmode=") {
        url
    } else {
        with_param(&url, "sslmode", "disable")
    }
}

/// What the PostgreSQL part measures.
#[derive(Debug, Clone)]
pub(crate) struct PgParams {
    /// The server and database, as `postgres://user@host:port/db` with no psm options: psm's URL
    /// adds `schema`, the bare pool connects to it as it is.
    pub(crate) url: String,
    /// Checks per measurement, sequential and concurrent alike.
    pub(crate) ops: usize,
    /// Cache reads per measurement of the query layer's cache.
    pub(crate) cache_ops: usize,
    pub(crate) rounds: u32,
    /// A Redis server for the query cache measured on psm-redis's `RedisCache` (the seed's own
    /// choice of result cache), beside the memory cache; none measures the memory cache only.
    pub(crate) redis_url: Option<String>,
}

/// The bare side: a pool and the query, prepared once per connection.
#[derive(Debug)]
struct Bare {
    pool: Pool,
    check_sql: String,
}

impl Bare {
    /// The prepared `SELECT` for the run positions `range`, each on a connection taken from the
    /// pool for the call (as a store does); returns the `true` answers.
    async fn checks(&self, w: &Workload, range: Range<usize>) -> BenchResult<u64> {
        let mut hits = 0;
        for segment in segments(range, w.len()) {
            for j in segment {
                let client = self.pool.get().await?;
                let statement = client.prepare_cached(&self.check_sql).await?;
                let id = w.read_ids[j].as_str();
                let permission = w.pool[w.check[j]].as_str();
                if let Some(row) = client.query_opt(&statement, &[&id, &permission]).await? {
                    hits += u64::from(row.try_get::<_, Option<bool>>(0)?.unwrap_or(false));
                }
            }
        }
        Ok(hits)
    }
}

/// A bare pool on `url` (connections are made on the runtime that first uses them).
fn bare_pool(url: &str) -> BenchResult<Pool> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| {
        format!("bad --postgres-url (psm-bench wants postgres://user@host:port/db): {e}")
    })?;
    let manager = PoolManager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager).max_size(bare_pool_size()).build()?)
}

/// psm's manager on `schema` and a bare pool, on the current runtime.
async fn connect_side(
    p: &PgParams,
    schema: &str,
    check_sql: &str,
) -> BenchResult<(Manager, Arc<Bare>)> {
    let m = Manager::builder()
        .url(psm_url(&p.url, schema))
        .default_ttl(Some(TTL))
        .build()
        .await?;
    let bare = Arc::new(Bare {
        pool: bare_pool(&p.url)?,
        check_sql: check_sql.to_owned(),
    });
    Ok((m, bare))
}

/// Creates the bare table, measures every round and drops both schemas; returns the JSON figures.
/// Wrong answers are added to `problems`.
pub(crate) fn run(
    w: &Arc<Workload>,
    p: &PgParams,
    problems: &mut Vec<String>,
) -> BenchResult<Value> {
    let multi = two_workers()?;
    let single = current_thread()?;
    let schema = format!("psm_bench_{}", fresh_suffix());
    let bare_schema = format!("{schema}_bare");
    let admin = bare_pool(&p.url)?;
    let version = multi.block_on(async {
        let client = admin.get().await.map_err(|e| {
            format!(
                "cannot connect to PostgreSQL at {} (set PSM_POSTGRES_URL to a server that answers): {e}",
                redact(&p.url)
            )
        })?;
        let version: String = client
            .query_one("SELECT current_setting('server_version')", &[])
            .await?
            .try_get(0)?;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {bare_schema}; \
                 CREATE TABLE {bare_schema}.sessions (id text PRIMARY KEY, permissions text[] NOT NULL)"
            ))
            .await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(version)
    })?;
    let measured = measure(
        w,
        p,
        &schema,
        &bare_schema,
        &admin,
        [&single, &multi],
        problems,
    );
    let dropped = multi.block_on(drop_schemas(&admin, &[&schema, &bare_schema]));
    let mut out = measured?;
    dropped?;
    out["cleanup"] = json!({ "schemas_dropped": [schema, bare_schema] });
    out["server"] = Value::from(format!("PostgreSQL {version}"));
    Ok(out)
}

/// Fills both sides through `admin`'s runtime (`multi`), then runs the interleaved rounds:
/// sequential ones and the query cache's on `single`, concurrent ones on `multi`.
fn measure(
    w: &Arc<Workload>,
    p: &PgParams,
    schema: &str,
    bare_schema: &str,
    admin: &Pool,
    [single, multi]: [&Runtime; 2],
    problems: &mut Vec<String>,
) -> BenchResult<Value> {
    let n = w.len();
    let check_sql =
        format!("SELECT $2 = ANY(permissions) FROM {bare_schema}.sessions WHERE id = $1");
    let (mm, mbare) = multi.block_on(connect_side(p, schema, &check_sql))?;

    eprintln!("psm-bench: postgres: storing {n} sessions through psm and into the bare table");
    let (fill, stored) = multi.block_on(run_tasks(0..n, CONCURRENCY, |range| {
        let (m, w) = (mm.clone(), Arc::clone(w));
        async move { Ok(run_op(&m, &w, Op::Store, range).await?) }
    }))?;
    if stored != n as u64 {
        problems.push(format!(
            "postgres psm fill: {stored} of {n} stores answered true"
        ));
    }
    let psm_fill_rate = n as f64 / fill.as_secs_f64().max(1e-9);
    let insert_sql =
        format!("INSERT INTO {bare_schema}.sessions (id, permissions) VALUES ($1, $2)");
    let (_, inserted) = multi.block_on(run_tasks(0..n, CONCURRENCY, |range| {
        let (pool, w, sql) = (admin.clone(), Arc::clone(w), insert_sql.clone());
        async move {
            // One transaction per task: the filling is not measured, so it needs no fsync per row.
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let statement = tx.prepare_cached(&sql).await?;
            let mut inserted = 0;
            for k in range {
                let s = w.insert_order[k];
                let perms: Vec<&str> = w.perms_of(s).collect();
                inserted += tx.execute(&statement, &[&w.sessions[s], &perms]).await?;
            }
            tx.commit().await?;
            Ok(inserted)
        }
    }))?;
    if inserted != n as u64 {
        problems.push(format!(
            "postgres bare fill: {inserted} of {n} rows inserted"
        ));
    }

    let (sm, sbare) = single.block_on(connect_side(p, schema, &check_sql))?;
    // The query layer of a second storage on psm's schema, caching in a memory cache, and a key
    // of the same shape in the same cache holding the same bytes for the bare `get`. The first
    // two fetch the same entry: through a `Query` handle and with the SQL text on each call.
    let (storage, queries) = single.block_on(async {
        let storage =
            PostgresStorage::connect(PostgresConfig::from_url(&psm_url(&p.url, schema))?).await?;
        let cache = Arc::new(MemoryCache::new());
        let db = storage
            .database()
            .with_cache(Arc::clone(&cache) as DynCache, Ttl::from_secs(TTL)?);
        let mut queries = Vec::new();
        for (via, options) in [
            (Via::Handle, CacheOptions::default()),
            (Via::SqlText, CacheOptions::default()),
            (
                Via::Handle,
                CacheOptions::default().tag(CacheTag::parse("bench:sessions")?),
            ),
        ] {
            let q = CachedQuery::prepare(w, db.clone(), bare_schema, &cache, options, via).await?;
            queries.push(Arc::new(q));
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((storage, queries))
    })?;
    // The same, caching in Redis (keys under a fresh prefix, removed at the end).
    let redis = match &p.redis_url {
        Some(url) => Some(single.block_on(RedisSide::connect(w, &storage, bare_schema, url))?),
        None => None,
    };

    let (mut psm_seq, mut bare_seq) = (Figure::default(), Figure::default());
    let (mut psm_conc, mut bare_conc) = (Figure::default(), Figure::default());
    let mut cached: Vec<(Figure, Figure)> = queries.iter().map(|_| Default::default()).collect();
    let redis_queries = redis.as_ref().map_or(&[][..], |r| &r.queries[..]);
    let mut cached_redis: Vec<(Figure, Figure)> =
        redis_queries.iter().map(|_| Default::default()).collect();
    let ops = p.ops;
    let expected = expected_check_hits(0..ops, n);
    let cache_ops = p.cache_ops;
    let rounds = (|| -> BenchResult<()> {
        for round in 1..=p.rounds {
            eprintln!(
                "psm-bench: postgres round {round}: {ops} checks by psm and by the bare pool, alternating in {SLICES} slices, from 1 task and from {CONCURRENCY}"
            );
            for (rt, m, bare, tasks, psm_fig, bare_fig) in [
                (single, &sm, &sbare, 1, &mut psm_seq, &mut bare_seq),
                (
                    multi,
                    &mm,
                    &mbare,
                    CONCURRENCY,
                    &mut psm_conc,
                    &mut bare_conc,
                ),
            ] {
                let [psm_side, bare_side] = rt.block_on(paired(
                    ops,
                    tasks,
                    |range| {
                        let (m, w) = (m.clone(), Arc::clone(w));
                        async move { Ok(psm_checks(&m, &w, range, w.len()).await?) }
                    },
                    |range| {
                        let (bare, w) = (Arc::clone(bare), Arc::clone(w));
                        async move { bare.checks(&w, range).await }
                    },
                ))?;
                psm_fig.record_side(ops, psm_side, expected);
                bare_fig.record_side(ops, bare_side, expected);
            }
            cached_rounds(
                single,
                round,
                cache_ops,
                &queries,
                &mut cached,
                "Cache::get",
            )?;
            cached_rounds(
                single,
                round,
                cache_ops,
                redis_queries,
                &mut cached_redis,
                "RedisCache::get",
            )?;
        }
        Ok(())
    })();
    let redis_json = single.block_on(async {
        let out = match &redis {
            Some(r) => Some(r.close().await?),
            None => None,
        };
        sm.close().await?;
        storage.close().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(out)
    })?;
    rounds?;
    multi.block_on(mm.close())?;

    psm_seq.verify("postgres psm sequential", problems);
    bare_seq.verify("postgres bare sequential", problems);
    psm_conc.verify("postgres psm concurrent", problems);
    bare_conc.verify("postgres bare concurrent", problems);
    for (i, (fetch_fig, get_fig)) in cached.iter().enumerate() {
        fetch_fig.verify(&format!("postgres cached fetch {i}"), problems);
        get_fig.verify(&format!("postgres cache get {i}"), problems);
    }
    for (i, (fetch_fig, get_fig)) in cached_redis.iter().enumerate() {
        fetch_fig.verify(&format!("postgres cached fetch on Redis {i}"), problems);
        get_fig.verify(&format!("postgres RedisCache get {i}"), problems);
    }
    let [
        (cached_fetch, cache_get),
        (text_fetch, text_get),
        (tagged_fetch, tagged_get),
    ] = &cached[..]
    else {
        return Err("three cached queries expected".into());
    };
    let [plain, text, tagged] = &queries[..] else {
        return Err("three cached queries expected".into());
    };
    let mut ratios = json!({
        "sequential": round_ratios(&psm_seq, &bare_seq),
        "concurrent": round_ratios(&psm_conc, &bare_conc),
        "cached_fetch": round_ratios(cached_fetch, cache_get),
        "cached_fetch_sql_text": round_ratios(text_fetch, text_get),
        "cached_fetch_tagged": round_ratios(tagged_fetch, tagged_get),
    });
    let query_cache_redis = match (redis_json, &cached_redis[..], redis_queries) {
        (Some(server), [(fetch, get), (tagged_fetch, tagged_get)], [plain, tagged]) => {
            ratios["cached_fetch_redis"] = round_ratios(fetch, get);
            ratios["cached_fetch_redis_tagged"] = round_ratios(tagged_fetch, tagged_get);
            json!({
                "server": server,
                "api": plain.via.api(),
                "peer": "one Cache::get, called on psm-redis's RedisCache itself (one HMGET round trip), of the very key and value the cached fetch hits",
                "key_bytes": plain.key.as_str().len(),
                "value_bytes": plain.bytes.len(),
                "cached_fetch": fetch.to_json(),
                "cache_get": get.to_json(),
                "tagged": {
                    "api": tagged.via.api(),
                    "tags": tagged.options.tags.len(),
                    "note": "a hit reads the entry and the tag's generation: two Cache::get; the peer is one",
                    "cached_fetch": tagged_fetch.to_json(),
                    "cache_get": tagged_get.to_json(),
                },
            })
        }
        (None, [], []) => Value::Null,
        _ => return Err("two cached queries on the Redis cache expected".into()),
    };
    Ok(json!({
        "url": redact(&p.url),
        "sessions": n,
        "ops": ops,
        "concurrency": CONCURRENCY,
        "bare_pool": bare_pool_size(),
        "rounds": p.rounds,
        "psm_store_concurrent": psm_fill_rate,
        "psm": { "sequential": psm_seq.to_json(), "concurrent": psm_conc.to_json() },
        "bare": { "sequential": bare_seq.to_json(), "concurrent": bare_conc.to_json() },
        "round_ratios": ratios,
        "query_cache_redis": query_cache_redis,
        "query_cache": {
            "ops": cache_ops,
            "sql": plain.sql,
            "api": plain.via.api(),
            "peer": "one Cache::get, called on psm-memory's MemoryCache itself, of the very key and value the cached fetch hits",
            "key_bytes": plain.key.as_str().len(),
            "value_bytes": plain.bytes.len(),
            "cached_fetch": cached_fetch.to_json(),
            "cache_get": cache_get.to_json(),
            "sql_text": {
                "api": text.via.api(),
                "note": "the same entry, with the SQL text hashed and compared on every call",
                "value_bytes": text.bytes.len(),
                "cached_fetch": text_fetch.to_json(),
                "cache_get": text_get.to_json(),
            },
            "tagged": {
                "api": tagged.via.api(),
                "tags": tagged.options.tags.len(),
                "note": "a hit reads the entry and the tag's generation at once: two Cache::get; the peer is one",
                "value_bytes": tagged.bytes.len(),
                "cached_fetch": tagged_fetch.to_json(),
                "cache_get": tagged_get.to_json(),
            },
        },
    }))
}

/// One round of each cached query's fetches beside as many `get` of its entry on its own cache
/// (`peer` names that get), alternating in tenths on `single`, recorded in `figures`.
fn cached_rounds<C: Cache + ?Sized + 'static>(
    single: &Runtime,
    round: u32,
    cache_ops: usize,
    queries: &[Arc<CachedQuery<C>>],
    figures: &mut [(Figure, Figure)],
    peer: &str,
) -> BenchResult<()> {
    for (query, (fetch_fig, get_fig)) in queries.iter().zip(figures.iter_mut()) {
        eprintln!(
            "psm-bench: postgres round {round}: {cache_ops} cached query-layer fetches ({}, {} tags) and as many {peer} of the same entry, alternating in {SLICES} slices",
            query.via.api(),
            query.options.tags.len()
        );
        let [fetch_side, get_side] = single.block_on(paired(
            cache_ops,
            1,
            |range| {
                let query = Arc::clone(query);
                async move { query.fetches(range.len()).await }
            },
            |range| {
                let query = Arc::clone(query);
                async move { query.gets(range.len()).await }
            },
        ))?;
        fetch_fig.record_side(cache_ops, fetch_side, cache_ops as u64);
        get_fig.record_side(cache_ops, get_side, cache_ops as u64);
    }
    Ok(())
}

/// Each round's psm rate over the peer's, paired round by round (the machine is shared, so the
/// spread of these says more than any single best).
fn round_ratios(psm: &Figure, peer: &Figure) -> Value {
    let rates = |f: &Figure| -> Vec<f64> {
        f.to_json()["rounds"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    Value::from(
        rates(psm)
            .iter()
            .zip(rates(peer))
            .map(|(x, y)| x / y.max(1e-9))
            .collect::<Vec<f64>>(),
    )
}

/// How a [`CachedQuery`] calls the query layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `Query::fetch_json_cached` on a handle made once by `Database::query`.
    Handle,
    /// `Database::fetch_json_cached` with the SQL text on every call.
    SqlText,
}

impl Via {
    fn api(self) -> &'static str {
        match self {
            Self::Handle => "Query::fetch_json_cached (handle from Database::query, made once)",
            Self::SqlText => "Database::fetch_json_cached (SQL text on every call)",
        }
    }
}

/// One cached query of the query layer, and the very cache entry its hits read, read straight
/// from the cache by the peer.
#[derive(Debug)]
struct CachedQuery<C: ?Sized> {
    db: Database,
    query: Query,
    via: Via,
    sql: String,
    params: Vec<SqlValue>,
    options: CacheOptions,
    /// The session id the one row must carry.
    id: String,
    cache: Arc<C>,
    key: CacheKey,
    bytes: Vec<u8>,
}

impl<C: Cache + ?Sized> CachedQuery<C> {
    /// Reads the row of one session through the query layer (filling the cache), checks it, and
    /// looks up the key and value the query layer stored.
    async fn prepare(
        w: &Workload,
        db: Database,
        bare_schema: &str,
        cache: &Arc<C>,
        options: CacheOptions,
        via: Via,
    ) -> BenchResult<Self> {
        let s = w.order[CACHED_POSITION];
        let sql = format!("SELECT id, permissions FROM {bare_schema}.sessions WHERE id = $1");
        let query = db.query(&sql)?;
        let params = vec![SqlValue::Text(w.sessions[s].clone())];
        let rows = match via {
            Via::Handle => query.fetch_json_cached(&params, &options).await?,
            Via::SqlText => db.fetch_json_cached(&sql, &params, &options).await?,
        };
        let perms: Vec<&str> = w.perms_of(s).collect();
        let expected = json!([{ "id": w.sessions[s], "permissions": perms }]);
        if Value::from(rows.to_vec()) != expected {
            return Err(format!("the cached query read {rows:?}, expected {expected}").into());
        }
        let key = db
            .cache_key(&sql, &params, &options)?
            .ok_or("the query layer has no cache")?;
        if query.cache_key(&params, &options)?.as_ref() != Some(&key) {
            return Err("the handle and the SQL text name different cache entries".into());
        }
        let bytes = cache
            .get(&key)
            .await?
            .ok_or("the cached fetch stored nothing under its key")?;
        Ok(Self {
            db,
            query,
            via,
            sql,
            params,
            options,
            id: w.sessions[s].clone(),
            cache: Arc::clone(cache),
            key,
            bytes,
        })
    }

    /// `calls` cached fetches; returns how many answered the one expected row (its id read).
    async fn fetches(&self, calls: usize) -> BenchResult<u64> {
        let mut hits = 0;
        match self.via {
            Via::Handle => {
                for _ in 0..calls {
                    let rows = self
                        .query
                        .fetch_json_cached(&self.params, &self.options)
                        .await?;
                    hits += u64::from(rows.len() == 1 && rows[0]["id"] == *self.id);
                }
            }
            Via::SqlText => {
                for _ in 0..calls {
                    let rows = self
                        .db
                        .fetch_json_cached(&self.sql, &self.params, &self.options)
                        .await?;
                    hits += u64::from(rows.len() == 1 && rows[0]["id"] == *self.id);
                }
            }
        }
        Ok(hits)
    }

    /// `calls` reads of the same entry; returns how many answered the stored bytes' length.
    async fn gets(&self, calls: usize) -> BenchResult<u64> {
        let mut hits = 0;
        for _ in 0..calls {
            // On the cache itself, not through the `Arc` (which would box a second future).
            let value = Cache::get(&*self.cache, &self.key).await?;
            hits += u64::from(value.is_some_and(|v| v.len() == self.bytes.len()));
        }
        Ok(hits)
    }
}

/// `DROP SCHEMA … CASCADE` for each of `schemas` that exists.
async fn drop_schemas(pool: &Pool, schemas: &[&str]) -> BenchResult<()> {
    let client = pool.get().await?;
    for schema in schemas {
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await?;
    }
    Ok(())
}

/// The query layer caching in Redis: its storage, cache and the two cached queries measured on it
/// (a prepared handle with no tag and with one), all under a fresh key prefix.
struct RedisSide {
    storage: RedisStorage,
    cache: Arc<RedisCache>,
    queries: Vec<Arc<CachedQuery<RedisCache>>>,
}

impl RedisSide {
    /// Connects psm-redis under a fresh prefix and fills the cache through `storage`'s query layer.
    async fn connect(
        w: &Workload,
        storage: &PostgresStorage,
        bare_schema: &str,
        url: &str,
    ) -> BenchResult<Self> {
        let mut config = RedisConfig::from_url(url)?;
        config.key_prefix = format!("psmbench:{}:", fresh_suffix());
        let redis = RedisStorage::connect(config).await?;
        let cache = Arc::new(redis.cache());
        let db = storage
            .database()
            .with_cache(Arc::clone(&cache) as DynCache, Ttl::from_secs(TTL)?);
        let mut queries = Vec::new();
        for options in [
            CacheOptions::default(),
            CacheOptions::default().tag(CacheTag::parse("bench:sessions")?),
        ] {
            let q = CachedQuery::prepare(w, db.clone(), bare_schema, &cache, options, Via::Handle)
                .await?;
            queries.push(Arc::new(q));
        }
        Ok(Self {
            storage: redis,
            cache,
            queries,
        })
    }

    /// Removes every cache key of the prefix and disconnects; returns the server's version line.
    async fn close(&self) -> BenchResult<Value> {
        let info = self.storage.sessions().get_connection_info().await?;
        let removed = self.cache.clear().await?;
        self.storage.close().await?;
        Ok(json!({
            "prefix": self.storage.config().key_prefix,
            "keys_removed": removed,
            "server": format!("Redis {} ({})", info.redis_version, info.mode),
        }))
    }
}
