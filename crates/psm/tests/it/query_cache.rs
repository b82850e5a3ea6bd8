//! The PostgreSQL query layer caching through each real `Cache` provider the caller picks (psm-redis
//! and psm-memory; the adapters never depend on each other, the facade wires them): a hit is
//! served from the cache (a row changed behind its back still reads as cached), an
//! `execute_invalidating` naming the tag makes the next fetch read the database, and on Redis a
//! second storage sharing the prefix sees the same cached result.

#![cfg(all(feature = "redis", feature = "postgres", feature = "memory"))]

use std::sync::Arc;

use psm::{
    CacheTag, DynCache, Ttl,
    memory::MemoryCache,
    postgres::{CacheOptions, Database, PostgresConfig, PostgresStorage, SqlValue},
    redis::{RedisConfig, RedisStorage},
};

use serde_json::json;

use crate::support::{postgres_url, purge_redis_prefix, redis_url, unique_name};

/// A storage on a fresh schema of the test server.
async fn storage(schema: &str) -> PostgresStorage {
    let base = postgres_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    let config =
        PostgresConfig::from_url(&format!("{base}{sep}schema={schema}&pool_size=2")).unwrap();
    PostgresStorage::connect(config).await.unwrap()
}

/// A Redis storage under `prefix`.
async fn redis(prefix: &str) -> RedisStorage {
    let mut config = RedisConfig::from_url(&redis_url()).unwrap();
    config.key_prefix = prefix.to_owned();
    RedisStorage::connect(config).await.unwrap()
}

fn with(db: Database, cache: DynCache) -> Database {
    db.with_cache(cache, Ttl::from_secs(600).unwrap())
}

/// The name of row 1, fetched through the cache.
async fn cached_name(db: &Database, table: &str, options: &CacheOptions) -> serde_json::Value {
    let rows = db
        .fetch_json_cached(
            &format!("SELECT name FROM {table} WHERE id = $1"),
            &[SqlValue::Int(1)],
            options,
        )
        .await
        .unwrap();
    serde_json::Value::from(rows.to_vec())
}

/// Writes `name` into row 1 without telling the cache.
async fn set_behind(db: &Database, table: &str, name: &str) {
    let n = db
        .execute(
            &format!("UPDATE {table} SET name = $1 WHERE id = 1"),
            &[&name],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// A hit is the cache's (stale by design until invalidated); the tag's invalidation ends it.
async fn hit_then_invalidated(db: &Database, table: &str) {
    let tag = CacheTag::parse("qc:names").unwrap();
    let options = CacheOptions::default().tag(tag.clone());
    assert_eq!(
        cached_name(db, table, &options).await,
        json!([{"name": "before"}])
    );
    set_behind(db, table, "behind").await;
    assert_eq!(
        cached_name(db, table, &options).await,
        json!([{"name": "before"}]),
        "the second fetch was not served from the cache"
    );
    let n = db
        .execute_invalidating(
            &format!("UPDATE {table} SET name = $1 WHERE id = 1"),
            &[&"after"],
            &[tag],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        cached_name(db, table, &options).await,
        json!([{"name": "after"}])
    );
}

#[tokio::test]
async fn the_query_layer_caches_in_redis_and_in_memory() {
    let schema = unique_name("psm_qcache");
    let pg = storage(&schema).await;
    let plain = pg.database();
    let table = format!("\"{schema}\".names");
    plain
        .execute(
            &format!("CREATE TABLE {table} (id int PRIMARY KEY, name text NOT NULL)"),
            &[],
        )
        .await
        .unwrap();
    plain
        .execute(&format!("INSERT INTO {table} VALUES (1, 'before')"), &[])
        .await
        .unwrap();

    // In memory.
    let memory = with(plain.clone(), Arc::new(MemoryCache::new()));
    hit_then_invalidated(&memory, &table).await;

    // In Redis, under a fresh prefix; a second storage on the prefix shares the entries.
    set_behind(&plain, &table, "before").await;
    let prefix = format!("{}:", unique_name("psmtest_qcache"));
    let (r1, r2) = (redis(&prefix).await, redis(&prefix).await);
    let one = with(plain.clone(), Arc::new(r1.cache()));
    let two = with(plain.clone(), Arc::new(r2.cache()));
    let options = CacheOptions::default().tag(CacheTag::parse("qc:names").unwrap());
    assert_eq!(
        cached_name(&one, &table, &options).await,
        json!([{"name": "before"}])
    );
    set_behind(&plain, &table, "behind").await;
    assert_eq!(
        cached_name(&two, &table, &options).await,
        json!([{"name": "before"}]),
        "a second storage on the same Redis prefix did not see the cached result"
    );
    set_behind(&plain, &table, "before").await;
    r1.cache().clear().await.unwrap();
    hit_then_invalidated(&one, &table).await;
    // The invalidation through one reached the other.
    assert_eq!(
        cached_name(&two, &table, &options).await,
        json!([{"name": "after"}])
    );

    r1.cache().clear().await.unwrap();
    r1.close().await.unwrap();
    r2.close().await.unwrap();
    purge_redis_prefix(&redis_url(), &prefix).await;
    plain
        .execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"), &[])
        .await
        .unwrap();
    pg.close().await.unwrap();
}
