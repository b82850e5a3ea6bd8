//! `AuthService`'s whole flow (register, login, refresh with rotation and reuse detection, logout,
//! revoke-all, cached user lookup, delete with cascade) on server stores: DESIGN §5 promises it works
//! "on the embedded default and on Redis + PostgreSQL".

#![cfg(all(feature = "jwt", feature = "redis", feature = "postgres"))]

use std::sync::Arc;

use psm::{
    auth::AuthService,
    postgres::{PostgresConfig, PostgresStorage},
    redis::{RedisConfig, RedisStorage},
};

use crate::{
    auth::{cheap_config, full_flow, keys},
    support::{postgres_url, purge_redis_prefix, redis_url, unique_name},
};

async fn redis() -> RedisStorage {
    let mut config = RedisConfig::from_url(&redis_url()).unwrap();
    config.key_prefix = format!("{}:", unique_name("psmauth"));
    RedisStorage::connect(config).await.unwrap()
}

async fn postgres(schema: &str) -> PostgresStorage {
    let mut config = PostgresConfig::from_url(&postgres_url()).unwrap();
    config.schema = schema.to_owned();
    config.pool_size = 4;
    PostgresStorage::connect(config).await.unwrap()
}

async fn drop_schema(pg: &PostgresStorage) {
    let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", pg.schema());
    pg.database().execute(&sql, &[]).await.unwrap();
    pg.close().await.unwrap();
}

/// Sessions, refresh-token families and the user cache on Redis; accounts on PostgreSQL.
#[tokio::test]
async fn full_flow_on_redis_sessions_and_tokens_with_postgres_users() {
    let redis = redis().await;
    let pg = postgres(&unique_name("psm_auth")).await;
    let auth = AuthService::builder()
        .users(Arc::new(pg.users()))
        .sessions(Arc::new(redis.sessions()))
        .token_state(Arc::new(redis.tokens()))
        .cache(Arc::new(redis.cache()))
        .keys(keys())
        .config(cheap_config())
        .build()
        .unwrap();
    assert_eq!(auth.users().provider_name(), "postgres");
    assert_eq!(auth.sessions().provider_name(), "redis");
    full_flow(&auth).await;
    purge_redis_prefix(&redis_url(), &redis.config().key_prefix).await;
    drop_schema(&pg).await;
}

/// Everything durable on PostgreSQL, with Redis as the shared cache.
#[tokio::test]
async fn full_flow_on_postgres_stores_with_a_redis_cache() {
    let redis = redis().await;
    let pg = postgres(&unique_name("psm_auth")).await;
    let auth = AuthService::builder()
        .users(Arc::new(pg.users()))
        .sessions(Arc::new(pg.sessions()))
        .token_state(Arc::new(pg.tokens()))
        .cache(Arc::new(redis.cache()))
        .keys(keys())
        .config(cheap_config())
        .build()
        .unwrap();
    assert_eq!(auth.sessions().provider_name(), "postgres");
    full_flow(&auth).await;
    purge_redis_prefix(&redis_url(), &redis.config().key_prefix).await;
    drop_schema(&pg).await;
}
