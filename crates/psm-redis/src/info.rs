//! `get_connection_info` and `flush_all_sessions`.

use std::collections::BTreeMap;

use fred::interfaces::{ClientLike, KeysInterface};
use futures::{StreamExt, future::join_all};
use psm_core::Result;
use serde::Serialize;

use crate::{conn::Conn, store::RedisStore};

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
        let conn = self.shared.conn()?;
        let client = conn.pool.next();
        let nodes = if self.shared.config.cluster {
            let servers = client.active_connections();
            let infos = join_all(servers.iter().map(|s| {
                let c = client.with_cluster_node(s.clone());
                async move { c.info::<String>(None).await }
            }))
            .await;
            let mut nodes = Vec::new();
            for (s, i) in servers.iter().zip(infos) {
                let text = i.map_err(|e| conn.err(&e, "get_connection_info"))?;
                nodes.push(parse_info(s.to_string(), &text));
            }
            nodes.sort_by(|a, b| a.server.cmp(&b.server));
            nodes
        } else {
            let text: String = client
                .info(None)
                .await
                .map_err(|e| conn.err(&e, "get_connection_info"))?;
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

    /// Removes every key under this store's prefix (sessions, indexes, and the token and cache
    /// keys sharing the prefix) with `SCAN MATCH <prefix>*` and `UNLINK`; never `FLUSHDB`.
    /// Returns how many keys it removed.
    ///
    /// # Errors
    /// `ProviderNotInitialized` before `initialize`; `ProviderConnection` when unreachable.
    pub async fn flush_all_sessions(&self) -> Result<u64> {
        let conn = self.shared.conn()?;
        let n = flush_prefix(
            &conn,
            &self.shared.keys.all_pattern(),
            self.shared.config.cluster,
        )
        .await;
        if let Some(c) = &self.shared.client_cache {
            c.clear();
        }
        n
    }
}

async fn flush_prefix(conn: &Conn, pattern: &str, cluster: bool) -> Result<u64> {
    let client = conn.pool.next();
    let mut stream = if cluster {
        client
            .scan_cluster_buffered(pattern, Some(1000), None)
            .boxed()
    } else {
        client.scan_buffered(pattern, Some(1000), None).boxed()
    };
    let mut keys = Vec::new();
    while let Some(k) = stream.next().await {
        keys.push(k.map_err(|e| conn.err(&e, "flush_all_sessions"))?);
    }
    let mut removed = 0u64;
    for chunk in keys.chunks(512) {
        let dels = chunk.iter().map(|k| conn.pool.unlink::<u64, _>(k.clone()));
        for r in join_all(dels).await {
            removed += r.map_err(|e| conn.err(&e, "flush_all_sessions"))?;
        }
    }
    Ok(removed)
}
