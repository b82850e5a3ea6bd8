//! `get_connection_info` and `flush_all_sessions`.

use std::collections::BTreeMap;

use fred::interfaces::ClientLike;
use futures::future::join_all;
use psm_core::Result;
use serde::Serialize;

use crate::store::RedisStore;

/// Keys and keys with an expiry of one database (the `INFO keyspace` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct KeyspaceInfo {
    /// Keys in the database.
    pub keys: u64,
    /// Keys with an expiry.
    pub expires: u64,
}

/// One server's part of [`ConnectionInfo`] (cluster mode lists every master).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct NodeInfo {
    /// `host:port`.
    pub server: String,
    /// `redis_version`.
    pub redis_version: String,
    /// `connected_clients`.
    pub connected_clients: u64,
    /// `used_memory_human`.
    pub used_memory_human: String,
    /// `uptime_in_seconds`.
    pub uptime_in_seconds: u64,
    /// Per-database key counts.
    pub keyspace: BTreeMap<String, KeyspaceInfo>,
}

/// The seed's `get_connection_info` result. In cluster mode the top-level fields aggregate the
/// masters (version, memory and uptime of the first master, clients and keys summed) and `nodes`
/// lists each master; standalone, `nodes` holds the one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionInfo {
    /// `"connected"`.
    pub status: String,
    /// Server version.
    pub redis_version: String,
    /// Connected clients (summed over masters).
    pub connected_clients: u64,
    /// Memory in use, human readable.
    pub used_memory_human: String,
    /// Uptime of the (first) server.
    pub uptime_in_seconds: u64,
    /// Per-database key counts (summed over masters).
    pub keyspace: BTreeMap<String, KeyspaceInfo>,
    /// This store's key prefix.
    pub key_prefix: String,
    /// `"standalone"` or `"cluster"`.
    pub mode: String,
    /// Each server.
    pub nodes: Vec<NodeInfo>,
}

fn parse_info(server: String, text: &str) -> NodeInfo {
    let mut n = NodeInfo {
        server,
        ..NodeInfo::default()
    };
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        match k {
            "redis_version" => n.redis_version = v.to_owned(),
            "connected_clients" => n.connected_clients = v.parse().unwrap_or(0),
            "used_memory_human" => n.used_memory_human = v.to_owned(),
            "uptime_in_seconds" => n.uptime_in_seconds = v.parse().unwrap_or(0),
            db if db.starts_with("db") => {
                let mut ks = KeyspaceInfo::default();
                for part in v.split(',') {
                    match part.split_once('=') {
                        Some(("keys", x)) => ks.keys = x.parse().unwrap_or(0),
                        Some(("expires", x)) => ks.expires = x.parse().unwrap_or(0),
                        _ => {}
                    }
                }
                n.keyspace.insert(db.to_owned(), ks);
            }
            _ => {}
        }
    }
    n
}

impl RedisStore {
    /// Server statistics (the seed's `get_connection_info`). Reads `INFO` only; touches no key.
    ///
    /// # Errors
    /// `ProviderNotInitialized` before `initialize`; `ProviderConnection` when unreachable.
    pub async fn get_connection_info(&self) -> Result<ConnectionInfo> {
        const OP: &str = "get_connection_info";
        let conn = self.shared.conn()?;
        let client = conn.client(OP)?;
        let nodes = if self.shared.config.cluster {
            let servers = fred::interfaces::ClusterInterface::cached_cluster_state(client)
                .map(|s| s.unique_primary_nodes())
                .unwrap_or_default();
            let infos = join_all(servers.iter().map(|s| {
                let conn = &conn;
                async move {
                    let c = conn.on_node(OP, s)?;
                    conn.bounded(OP, c.info::<String>(None)).await
                }
            }))
            .await;
            let mut nodes = Vec::new();
            for (s, i) in servers.iter().zip(infos) {
                nodes.push(parse_info(s.to_string(), &i?));
            }
            nodes.sort_by(|a, b| a.server.cmp(&b.server));
            nodes
        } else {
            let text: String = conn.bounded(OP, client.info(None)).await?;
            let c = &self.shared.config;
            vec![parse_info(format!("{}:{}", c.host, c.port), &text)]
        };
        let first = nodes.first().cloned().unwrap_or_default();
        let mut keyspace: BTreeMap<String, KeyspaceInfo> = BTreeMap::new();
        for n in &nodes {
            for (db, ks) in &n.keyspace {
                let e = keyspace.entry(db.clone()).or_default();
                e.keys += ks.keys;
                e.expires += ks.expires;
            }
        }
        Ok(ConnectionInfo {
            status: "connected".into(),
            redis_version: first.redis_version,
            connected_clients: nodes.iter().map(|n| n.connected_clients).sum(),
            used_memory_human: first.used_memory_human,
            uptime_in_seconds: first.uptime_in_seconds,
            keyspace,
            key_prefix: self.shared.config.key_prefix.clone(),
            mode: if self.shared.config.cluster {
                "cluster"
            } else {
                "standalone"
            }
            .into(),
            nodes,
        })
    }

    /// Removes every session of this store: the session hashes and per-user session indexes of
    /// this exact prefix (`SCAN MATCH` + `UNLINK`; never `FLUSHDB`), each key checked against the
    /// layout, so neither keys outside the prefix nor keys of a longer (nested) prefix are
    /// touched. Token families, token epochs and cache entries stay (see
    /// [`RedisTokenStateStore::flush_all`](crate::RedisTokenStateStore::flush_all) and
    /// [`RedisCache::clear`](crate::RedisCache::clear)). Returns how many keys it removed.
    ///
    /// # Errors
    /// `ProviderNotInitialized` before `initialize`; `ProviderConnection` when unreachable.
    pub async fn flush_all_sessions(&self) -> Result<u64> {
        const OP: &str = "flush_all_sessions";
        let conn = self.shared.conn()?;
        let keys = &self.shared.keys;
        let mut found = Vec::new();
        for pattern in [keys.session_pattern(), keys.user_index_pattern()] {
            found.extend(
                conn.scan(&pattern, OP)
                    .await?
                    .into_iter()
                    .filter(|k| keys.is_session_family_key(k)),
            );
        }
        let n = conn.unlink_all(found, OP).await;
        if let Some(c) = &self.shared.client_cache {
            c.clear();
        }
        n
    }
}
