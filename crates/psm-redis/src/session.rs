//! Encoding sessions into script arguments and decoding session hashes.

use std::collections::HashMap;

use fred::types::Value;
use psm_core::{Metadata, NewSession, PermissionList, Result, SessionData, Timestamp, UserId};

use crate::{error, keys::escape};

/// Arguments `sid user uenc created expires ttl_ms meta n perms...` after `P NOW`.
pub(crate) fn write_args(
    prefix: &str,
    now: i64,
    sid: &str,
    s: &NewSession,
) -> (Vec<Value>, String) {
    let uenc = escape(s.user_id.as_str());
    let (expires, ttl_ms) = match s.ttl {
        Some(t) => {
            let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX / 2_000_000);
            (
                (now + secs * 1_000_000).to_string(),
                (secs * 1000).to_string(),
            )
        }
        None => (String::new(), String::new()),
    };
    let mut a: Vec<Value> = Vec::with_capacity(10 + s.permissions.len());
    a.push(prefix.into());
    a.push(now.to_string().into());
    a.push(sid.into());
    a.push(s.user_id.as_str().into());
    a.push(uenc.clone().into());
    a.push(now.to_string().into());
    a.push(expires.into());
    a.push(ttl_ms.into());
    a.push(s.metadata.to_json().into());
    a.push(s.permissions.len().to_string().into());
    for p in s.permissions.iter_str() {
        a.push(p.into());
    }
    (a, uenc)
}

/// The expiry (unix micros) and ttl in ms for a ttl of `secs` from `now`.
pub(crate) fn expiry(now: i64, secs: u64) -> (i64, i64) {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX / 2_000_000);
    (now + secs * 1_000_000, secs * 1000)
}

/// A decoded session hash.
pub(crate) struct Stored {
    pub(crate) data: SessionData,
    pub(crate) expires: Option<i64>,
}

/// Decodes a session hash; `None` when empty or expired at `now`.
pub(crate) fn decode(map: HashMap<String, String>, now: i64) -> Result<Option<Stored>> {
    const OP: &str = "decode_session";
    if map.is_empty() {
        return Ok(None);
    }
    let expires = match map.get(" e") {
        Some(e) => Some(e.parse::<i64>().map_err(|_| error::reply(OP))?),
        None => None,
    };
    if expires.is_some_and(|e| e <= now) {
        return Ok(None);
    }
    let get = |f: &str| map.get(f).ok_or_else(|| error::reply(OP));
    let micros = |f: &str| -> Result<Timestamp> {
        get(f)?
            .parse::<i64>()
            .map(Timestamp::from_unix_micros)
            .map_err(|_| error::reply(OP))
    };
    let user_id = UserId::parse(get(" u")?).map_err(|_| error::reply(OP))?;
    let created_at = micros(" c")?;
    let updated_at = micros(" m")?;
    let metadata = Metadata::from_json(get(" d")?).map_err(|_| error::reply(OP))?;
    let mut perms: Vec<(u32, &str)> = map
        .iter()
        .filter(|(k, _)| !k.starts_with(' '))
        .map(|(k, v)| v.parse::<u32>().map(|i| (i, k.as_str())))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| error::reply(OP))?;
    perms.sort_unstable();
    let permissions =
        PermissionList::parse(perms.into_iter().map(|(_, p)| p)).map_err(|_| error::reply(OP))?;
    Ok(Some(Stored {
        data: SessionData {
            user_id,
            permissions,
            created_at,
            updated_at,
            metadata,
        },
        expires,
    }))
}

/// A script reply as a list of strings.
pub(crate) fn strings(v: Value, op: &'static str) -> Result<Vec<String>> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.to_string()),
                Value::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| error::reply(op)),
                Value::Integer(n) => Ok(n.to_string()),
                _ => Err(error::reply(op)),
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(error::reply(op)),
    }
}

/// A script reply as an integer.
pub(crate) fn integer(v: Value, op: &'static str) -> Result<i64> {
    match v {
        Value::Integer(n) => Ok(n),
        Value::String(s) => s.parse().map_err(|_| error::reply(op)),
        _ => Err(error::reply(op)),
    }
}

/// A script reply as a string.
pub(crate) fn string(v: Value, op: &'static str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.to_string()),
        Value::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| error::reply(op)),
        Value::Null => Ok(String::new()),
        _ => Err(error::reply(op)),
    }
}
