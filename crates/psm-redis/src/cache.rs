//! [`RedisCache`]: the `Cache` port on Redis.
//!
//! An entry is a hash `<prefix>c:{<escaped key>}` with the value (`v`), its expiry in unix
//! microseconds (`e`, checked on read so an entry is gone exactly at its ttl) and its tags (`t`, a
//! JSON list), with native expiry. A tag is a set `<prefix>t:{<escaped tag>}` of keys. `set` adds
//! the key to its tag sets *before* writing the entry, so a crash never leaves a tagged value that
//! `delete_tag` cannot find; `delete_tag` deletes only entries whose own tag list holds the tag.

use std::sync::Arc;

use fred::{
    interfaces::{HashesInterface, KeysInterface, SetsInterface},
    types::{ExpireOptions, Value},
};
use psm_core::{Cache, CacheKey, CacheTag, Result, Ttl, async_trait, check_cache_value};

use crate::{
    PROVIDER,
    conn::{Conn, Shared, now_micros},
    scripts,
    session::integer,
};

/// The Redis cache. Clones share the connection.
#[derive(Debug, Clone)]
pub struct RedisCache {
    pub(crate) shared: Arc<Shared>,
}

impl RedisCache {
    fn conn(&self) -> Result<Arc<Conn>> {
        self.shared.conn()
    }
}

#[async_trait]
impl Cache for RedisCache {
    fn provider_name(&self) -> &str {
        PROVIDER
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>> {
        let conn = self.conn()?;
        let (v, e): (Option<Vec<u8>>, Option<i64>) = conn
            .pool
            .hmget(self.shared.keys.cache_entry(key.as_str()), &["v", "e"])
            .await
            .map_err(|e| conn.err(&e, "cache_get"))?;
        Ok(match (v, e) {
            (Some(v), Some(e)) if now_micros() < e => Some(v),
            _ => None,
        })
    }

    async fn set(&self, key: &CacheKey, value: &[u8], ttl: Ttl, tags: &[CacheTag]) -> Result<()> {
        check_cache_value(value)?;
        let conn = self.conn()?;
        let keys = &self.shared.keys;
        let ms = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2_000_000) * 1000;
        for tag in tags {
            let tk = keys.cache_tag(tag.as_str());
            conn.pool
                .sadd::<(), _, _>(tk.as_str(), key.as_str())
                .await
                .map_err(|e| conn.err(&e, "cache_set"))?;
            // A tag set lives as long as its longest-lived entry.
            for opt in [ExpireOptions::NX, ExpireOptions::GT] {
                conn.pool
                    .pexpire::<(), _>(tk.as_str(), ms, Some(opt))
                    .await
                    .map_err(|e| conn.err(&e, "cache_set"))?;
            }
        }
        let tag_list: Vec<&str> = tags.iter().map(CacheTag::as_str).collect();
        let e = now_micros() + ms * 1000;
        let entry = keys.cache_entry(key.as_str());
        let fields: Vec<(Value, Value)> = vec![
            ("v".into(), Value::Bytes(value.to_vec().into())),
            ("e".into(), e.to_string().into()),
            ("t".into(), serde_json::to_string(&tag_list)?.into()),
        ];
        conn.pool
            .hset::<(), _, _>(entry.as_str(), fields)
            .await
            .map_err(|e| conn.err(&e, "cache_set"))?;
        conn.pool
            .pexpire::<(), _>(entry.as_str(), ms, None)
            .await
            .map_err(|e| conn.err(&e, "cache_set"))?;
        Ok(())
    }

    async fn delete(&self, key: &CacheKey) -> Result<bool> {
        let conn = self.conn()?;
        let v = conn
            .run(
                &scripts::CA_DELETE,
                vec![self.shared.keys.cache_entry(key.as_str())],
                vec![
                    self.shared.keys.prefix().into(),
                    now_micros().to_string().into(),
                ],
                "cache_delete",
            )
            .await?;
        Ok(integer(v, "cache_delete")? == 1)
    }

    async fn delete_tag(&self, tag: &CacheTag) -> Result<u64> {
        let conn = self.conn()?;
        let tk = self.shared.keys.cache_tag(tag.as_str());
        let members: Vec<String> = conn
            .pool
            .smembers(tk.as_str())
            .await
            .map_err(|e| conn.err(&e, "cache_delete_tag"))?;
        let mut removed = 0;
        let mut done = Vec::new();
        for m in members {
            let v = conn
                .run(
                    &scripts::CA_DELETE_TAGGED,
                    vec![self.shared.keys.cache_entry(&m)],
                    vec![
                        self.shared.keys.prefix().into(),
                        now_micros().to_string().into(),
                        tag.as_str().into(),
                    ],
                    "cache_delete_tag",
                )
                .await?;
            match integer(v, "cache_delete_tag")? {
                2 => {
                    removed += 1;
                    done.push(m);
                }
                // Missing entries stay listed: a concurrent `set` may be about to write them.
                0 => {}
                _ => done.push(m),
            }
        }
        if !done.is_empty() {
            conn.pool
                .srem::<(), _, _>(tk.as_str(), done)
                .await
                .map_err(|e| conn.err(&e, "cache_delete_tag"))?;
        }
        Ok(removed)
    }
}
