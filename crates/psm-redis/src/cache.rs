//! [`RedisCache`]: the `Cache` port on Redis.
//!
//! An entry is a hash `<prefix>c:{<escaped key>}` with the value (`v`), its expiry in unix
//! microseconds (`e`, checked on read so an entry is gone exactly at its ttl) and its tags (`t`, a
//! JSON list), with native expiry. A tag is a set `<prefix>t:{<escaped tag>}` of keys. `set` adds
//! the key to its tag sets *before* writing the entry, so a crash never leaves a tagged value that
//! `delete_tag` cannot find; `delete_tag` deletes only entries whose own tag list holds the tag.
//! The entry itself is written by one script (one key, so atomic in both modes): a reader never
//! sees a new value with an old expiry or tag list.

use std::sync::Arc;

use fred::{
    interfaces::{HashesInterface, KeysInterface, SetsInterface},
    types::{ExpireOptions, Value},
};
use psm_core::{Cache, CacheKey, CacheTag, Result, Ttl, async_trait, check_cache_value};

use crate::{
    PROVIDER,
    conn::{Conn, Retry, Shared, call, now_micros, read},
    scripts,
    session::integer,
    store::kv,
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

    /// Removes every cache entry and tag of this prefix with `SCAN` + `UNLINK`; never `FLUSHDB`.
    /// Returns how many keys it removed.
    ///
    /// # Errors
    /// `ProviderNotInitialized` before `initialize`; `ProviderConnection` when unreachable.
    pub async fn clear(&self) -> Result<u64> {
        const OP: &str = "cache_clear";
        let conn = self.conn()?;
        let keys = &self.shared.keys;
        let mut found = Vec::new();
        for pattern in keys.cache_patterns() {
            found.extend(
                conn.scan(&pattern, OP)
                    .await?
                    .into_iter()
                    .filter(|k| keys.is_cache_key(k)),
            );
        }
        conn.unlink_all(found, OP).await
    }
}

#[async_trait]
impl Cache for RedisCache {
    fn provider_name(&self) -> &str {
        PROVIDER
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>> {
        let conn = self.conn()?;
        let (v, e): (Option<Vec<u8>>, Option<i64>) =
            read!(&conn, "cache_get", |c| c
                .hmget::<(Option<Vec<u8>>, Option<i64>), _, _>(
                    self.shared.keys.cache_entry(key.as_str()),
                    &["v", "e"]
                ))?;
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
        const OP: &str = "cache_set";
        for tag in tags {
            let tk = keys.cache_tag(tag.as_str());
            call!(&conn, OP, |c| c.sadd::<(), _, _>(tk.as_str(), key.as_str()))?;
            // A tag set lives as long as its longest-lived entry.
            for opt in [ExpireOptions::NX, ExpireOptions::GT] {
                call!(&conn, OP, |c| c.pexpire::<(), _>(
                    tk.as_str(),
                    ms,
                    Some(opt.clone())
                ))?;
            }
        }
        let tag_list: Vec<&str> = tags.iter().map(CacheTag::as_str).collect();
        let tags_json = serde_json::to_string(&tag_list)?;
        let e = now_micros() + ms * 1000;
        let entry = keys.cache_entry(key.as_str());
        conn.run(&scripts::CA_SET, OP, Retry::Idempotent, || {
            kv(
                &[&entry],
                vec![
                    keys.prefix().into(),
                    now_micros().to_string().into(),
                    Value::Bytes(value.to_vec().into()),
                    e.to_string().into(),
                    ms.to_string().into(),
                    tags_json.as_str().into(),
                ],
            )
        })
        .await?;
        Ok(())
    }

    async fn delete(&self, key: &CacheKey) -> Result<bool> {
        let conn = self.conn()?;
        let entry = self.shared.keys.cache_entry(key.as_str());
        let now = now_micros();
        let v = conn
            .run(&scripts::CA_DELETE, "cache_delete", Retry::Never, || {
                kv(
                    &[&entry],
                    vec![self.shared.keys.prefix().into(), now.to_string().into()],
                )
            })
            .await?;
        Ok(integer(v, "cache_delete")? == 1)
    }

    async fn delete_tag(&self, tag: &CacheTag) -> Result<u64> {
        let conn = self.conn()?;
        let tk = self.shared.keys.cache_tag(tag.as_str());
        let members: Vec<String> = read!(&conn, "cache_delete_tag", |c| c
            .smembers::<Vec<String>, _>(tk.as_str()))?;
        let mut removed = 0;
        let mut done = Vec::new();
        for m in members {
            let entry = self.shared.keys.cache_entry(&m);
            let now = now_micros();
            let v = conn
                .run(
                    &scripts::CA_DELETE_TAGGED,
                    "cache_delete_tag",
                    Retry::Never,
                    || {
                        kv(
                            &[&entry],
                            vec![
                                self.shared.keys.prefix().into(),
                                now.to_string().into(),
                                tag.as_str().into(),
                            ],
                        )
                    },
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
            call!(&conn, "cache_delete_tag", |c| c
                .srem::<(), _, _>(tk.as_str(), done.clone()))?;
        }
        Ok(removed)
    }
}
