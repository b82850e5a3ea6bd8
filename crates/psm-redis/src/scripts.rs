//! The Lua scripts. Standalone scripts (`SA_*`) update a session and its user index atomically;
//! cluster scripts (`CL_*`) touch one hash slot each and are ordered by the store (see the crate
//! docs for the order and the crash reasoning).
//!
//! Session hash fields: each permission → its position; ` u` user id, ` k` escaped user id, ` c`
//! created_at, ` m` updated_at, ` e` expires_at (unix microseconds; absent when the session never
//! expires), ` d` metadata JSON. Permissions hold no whitespace, so they never collide with the
//! fields starting with a space.

/// Shared helpers, prepended to every script that needs them.
const PRELUDE: &str = r#"
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
local function sk(sid) return P .. 's:{' .. sid .. '}' end
local function uk(uenc, s) return P .. 'u:{' .. uenc .. '}:' .. s end
-- owner of a live session at NOW, or false
local function live_owner(k)
  local v = redis.call('HMGET', k, ' u', ' e')
  if not v[1] then return false end
  if v[2] and tonumber(v[2]) <= NOW then return false end
  return v[1]
end
local function hset_all(k, fields)
  for i = 1, #fields, 2000 do
    redis.call('HSET', k, unpack(fields, i, math.min(i + 1999, #fields)))
  end
end
local function unindex(uenc, sid)
  redis.call('ZREM', uk(uenc, 'c'), sid)
  redis.call('ZREM', uk(uenc, 'x'), sid)
  redis.call('ZREM', uk(uenc, 'r'), sid)
  redis.call('ZREM', uk(uenc, 'v'), sid)
end
-- writes session k from ARGV[a+1..]: sid user uenc created expires ttl_ms meta n perms...
local function write_session(k, a)
  redis.call('DEL', k)
  local n = tonumber(ARGV[a + 8])
  local fields = {' u', ARGV[a + 2], ' k', ARGV[a + 3], ' c', ARGV[a + 4], ' m', ARGV[a + 4], ' d', ARGV[a + 7]}
  if ARGV[a + 5] ~= '' then
    fields[#fields + 1] = ' e'
    fields[#fields + 1] = ARGV[a + 5]
  end
  for i = 1, n do
    fields[#fields + 1] = ARGV[a + 8 + i]
    fields[#fields + 1] = tostring(i - 1)
  end
  hset_all(k, fields)
  if ARGV[a + 6] ~= '' then redis.call('PEXPIRE', k, ARGV[a + 6]) end
end
-- replaces the permissions of k with ARGV[first+1 ..] (count at ARGV[first])
local function replace_perms(k, a)
  local names = redis.call('HKEYS', k)
  local old = {}
  for _, f in ipairs(names) do
    if string.byte(f, 1) ~= 32 then old[#old + 1] = f end
  end
  for i = 1, #old, 1000 do
    redis.call('HDEL', k, unpack(old, i, math.min(i + 999, #old)))
  end
  local n = tonumber(ARGV[a])
  local fields = {}
  for i = 1, n do
    fields[#fields + 1] = ARGV[a + i]
    fields[#fields + 1] = tostring(i - 1)
  end
  if n > 0 then hset_all(k, fields) end
end
"#;

/// A script's source.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source {
    pub(crate) name: &'static str,
    pub(crate) body: &'static str,
}

macro_rules! script {
    ($name:ident, $body:expr) => {
        pub(crate) const $name: Source = Source {
            name: stringify!($name),
            body: $body,
        };
    };
}

// ---- standalone (atomic over the session and its user index) ----

// KEYS: session. ARGV: P NOW | sid user uenc created expires ttl_ms meta n perms...
// Upsert; moves the session out of its old owner's index.
script!(
    SA_STORE,
    r#"
local k = KEYS[1]
local sid, uenc = ARGV[3], ARGV[5]
local old = redis.call('HGET', k, ' k')
if old and old ~= uenc then unindex(old, sid) end
write_session(k, 2)
redis.call('ZADD', uk(uenc, 'c'), ARGV[6], sid)
redis.call('ZADD', uk(uenc, 'x'), ARGV[7] == '' and '+inf' or ARGV[7], sid)
return 1
"#
);

// KEYS: session. ARGV: P NOW | sid user uenc created expires ttl_ms meta n perms... | max policy
// Returns {'exists'} | {'limit'} | {'ok', evicted...}.
script!(
    SA_CREATE,
    r#"
local k = KEYS[1]
local sid, user, uenc = ARGV[3], ARGV[4], ARGV[5]
local n = tonumber(ARGV[10])
local max = tonumber(ARGV[11 + n])
local evict = ARGV[12 + n] == 'evict'
if live_owner(k) then return {'exists'} end
local c, x = uk(uenc, 'c'), uk(uenc, 'x')
local expired = redis.call('ZRANGEBYSCORE', x, '-inf', NOW)
for _, m in ipairs(expired) do redis.call('ZREM', c, m); redis.call('ZREM', x, m) end
local live = {}
for _, m in ipairs(redis.call('ZRANGE', c, 0, -1)) do
  if m ~= sid and live_owner(sk(m)) == user then
    live[#live + 1] = m
  else
    redis.call('ZREM', c, m); redis.call('ZREM', x, m)
  end
end
local victims = {}
if #live >= max then
  if not evict then return {'limit'} end
  for i = 1, #live - max + 1 do
    local v = live[i]
    victims[#victims + 1] = v
    redis.call('DEL', sk(v))
    redis.call('ZREM', c, v); redis.call('ZREM', x, v)
  end
end
local old = redis.call('HGET', k, ' k')
if old and old ~= uenc then unindex(old, sid) end
write_session(k, 2)
redis.call('ZADD', c, ARGV[6], sid)
redis.call('ZADD', x, ARGV[7] == '' and '+inf' or ARGV[7], sid)
local out = {'ok'}
for _, v in ipairs(victims) do out[#out + 1] = v end
return out
"#
);

// KEYS: session. ARGV: P NOW | sid. Returns 1 if a live session was removed.
script!(
    SA_INVALIDATE,
    r#"
local k = KEYS[1]
local v = redis.call('HMGET', k, ' k', ' e')
if not v[1] then return 0 end
redis.call('DEL', k)
unindex(v[1], ARGV[3])
if v[2] and tonumber(v[2]) <= NOW then return 0 end
return 1
"#
);

// KEYS: session. ARGV: P NOW | sid updated expires ttl_ms n perms...
// expires == '' keeps the expiry. Returns 1 if updated.
script!(
    SA_UPDATE,
    r#"
local k = KEYS[1]
if not live_owner(k) then return 0 end
if tonumber(ARGV[7]) >= 0 then replace_perms(k, 7) end
redis.call('HSET', k, ' m', ARGV[4])
if ARGV[5] ~= '' then
  redis.call('HSET', k, ' e', ARGV[5])
  redis.call('PEXPIRE', k, ARGV[6])
  local uenc = redis.call('HGET', k, ' k')
  redis.call('ZADD', uk(uenc, 'x'), ARGV[5], ARGV[3])
end
return 1
"#
);

// KEYS: user c, x. ARGV: P NOW | user offset limit. Cleans the index and returns a page.
script!(
    SA_LIST_USER,
    r#"
local c, x = KEYS[1], KEYS[2]
local user = ARGV[3]
local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local expired = redis.call('ZRANGEBYSCORE', x, '-inf', NOW)
for _, m in ipairs(expired) do redis.call('ZREM', c, m); redis.call('ZREM', x, m) end
local out, seen = {}, 0
for _, m in ipairs(redis.call('ZRANGE', c, 0, -1)) do
  if live_owner(sk(m)) == user then
    if seen >= offset and #out < limit then out[#out + 1] = m end
    seen = seen + 1
  else
    redis.call('ZREM', c, m); redis.call('ZREM', x, m)
  end
end
return out
"#
);

// KEYS: user c, x. ARGV: P NOW | user. Removes expired and dangling entries; returns how many
// expired sessions of the user it found (deleting those still stored).
script!(
    SA_CLEANUP_USER,
    r#"
local c, x = KEYS[1], KEYS[2]
local user = ARGV[3]
local count = 0
for _, m in ipairs(redis.call('ZRANGE', c, 0, -1)) do
  local k = sk(m)
  local v = redis.call('HMGET', k, ' u', ' e')
  local xs = redis.call('ZSCORE', x, m)
  if not v[1] then
    if xs and tonumber(xs) <= NOW then count = count + 1 end
    redis.call('ZREM', c, m); redis.call('ZREM', x, m)
  elseif v[1] ~= user then
    redis.call('ZREM', c, m); redis.call('ZREM', x, m)
  elseif v[2] and tonumber(v[2]) <= NOW then
    redis.call('DEL', k)
    count = count + 1
    redis.call('ZREM', c, m); redis.call('ZREM', x, m)
  end
end
for _, m in ipairs(redis.call('ZRANGE', x, 0, -1)) do
  if not redis.call('ZSCORE', c, m) then redis.call('ZREM', x, m) end
end
return count
"#
);

// KEYS: user c, x. ARGV: P NOW | user. Removes every session of the user; returns the live count.
script!(
    SA_INVALIDATE_USER,
    r#"
local c, x = KEYS[1], KEYS[2]
local user = ARGV[3]
local count = 0
for _, m in ipairs(redis.call('ZRANGE', c, 0, -1)) do
  local k = sk(m)
  local v = redis.call('HMGET', k, ' u', ' e')
  if v[1] == user then
    redis.call('DEL', k)
    if not (v[2] and tonumber(v[2]) <= NOW) then count = count + 1 end
  end
end
redis.call('DEL', c, x)
return count
"#
);

// ---- cluster: session slot ----

// KEYS: session. ARGV: P NOW | sid user uenc created expires ttl_ms meta n perms... | mode
// mode 'create' refuses a live session. Returns {'exists'} or {'ok', old uenc or ''}.
script!(
    CL_WRITE,
    r#"
local k = KEYS[1]
local n = tonumber(ARGV[10])
if ARGV[11 + n] == 'create' and live_owner(k) then return {'exists'} end
local old = redis.call('HGET', k, ' k') or ''
write_session(k, 2)
return {'ok', old}
"#
);

// KEYS: session. ARGV: P NOW | owner-uenc or ''. Deletes the session (only if owned by the given
// user when one is given). Returns {live 0/1, uenc} or {} when nothing was deleted.
script!(
    CL_DELETE,
    r#"
local k = KEYS[1]
local v = redis.call('HMGET', k, ' k', ' e')
if not v[1] then return {} end
if ARGV[3] ~= '' and v[1] ~= ARGV[3] then return {} end
redis.call('DEL', k)
local live = 1
if v[2] and tonumber(v[2]) <= NOW then live = 0 end
return {live, v[1]}
"#
);

// KEYS: session. ARGV: P NOW | updated expires ttl_ms n perms... (n = -1: keep permissions)
// Returns '' when missing or expired, else the owner's uenc.
script!(
    CL_UPDATE,
    r#"
local k = KEYS[1]
if not live_owner(k) then return '' end
if tonumber(ARGV[6]) >= 0 then replace_perms(k, 6) end
redis.call('HSET', k, ' m', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', k, ' e', ARGV[4])
  redis.call('PEXPIRE', k, ARGV[5])
end
return redis.call('HGET', k, ' k')
"#
);

// ---- cluster: user slot (KEYS: c x r v) ----

// ARGV: P NOW | sid created expires max policy now_ms grace_ms
// Returns {'limit'} | {'busy'} | {'ok', victims...}. Victims are marked in v, the new id is
// indexed and marked pending in r.
script!(
    CL_RESERVE,
    r#"
local c, x, r, v = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local sid = ARGV[3]
local max = tonumber(ARGV[6])
local evict = ARGV[7] == 'evict'
local now_ms, grace = tonumber(ARGV[8]), tonumber(ARGV[9])
for _, m in ipairs(redis.call('ZRANGEBYSCORE', x, '-inf', NOW)) do
  redis.call('ZREM', c, m); redis.call('ZREM', x, m); redis.call('ZREM', r, m); redis.call('ZREM', v, m)
end
redis.call('ZREM', c, sid); redis.call('ZREM', x, sid); redis.call('ZREM', r, sid); redis.call('ZREM', v, sid)
local members = redis.call('ZRANGE', c, 0, -1)
local counted, candidates = 0, {}
for _, m in ipairs(members) do
  if not redis.call('ZSCORE', v, m) then
    counted = counted + 1
    local rs = redis.call('ZSCORE', r, m)
    if not (rs and tonumber(rs) > now_ms - grace) then candidates[#candidates + 1] = m end
  end
end
local victims = {}
if counted >= max then
  if not evict then return {'limit'} end
  local need = counted - max + 1
  if #candidates < need then return {'busy'} end
  for i = 1, need do
    victims[#victims + 1] = candidates[i]
    redis.call('ZADD', v, now_ms, candidates[i])
  end
end
redis.call('ZADD', c, ARGV[4], sid)
redis.call('ZADD', x, ARGV[5] == '' and '+inf' or ARGV[5], sid)
redis.call('ZADD', r, now_ms, sid)
local out = {'ok'}
for _, m in ipairs(victims) do out[#out + 1] = m end
return out
"#
);

// ARGV: P NOW | sid ok(1/0) victims... Commits (drops the pending mark and the victims) or rolls
// back (drops the reservation, unmarks the victims).
script!(
    CL_FINISH,
    r#"
local c, x, r, v = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local sid = ARGV[3]
if ARGV[4] == '1' then
  redis.call('ZREM', r, sid)
  for i = 5, #ARGV do
    local m = ARGV[i]
    redis.call('ZREM', c, m); redis.call('ZREM', x, m); redis.call('ZREM', v, m)
  end
else
  redis.call('ZREM', c, sid); redis.call('ZREM', x, sid); redis.call('ZREM', r, sid)
  for i = 5, #ARGV do redis.call('ZREM', v, ARGV[i]) end
end
return 1
"#
);

// ARGV: P NOW | now_ms grace_ms force(1/0) sids... Removes index entries; unless force, entries
// reserved less than grace ago stay.
script!(
    CL_PRUNE,
    r#"
local c, x, r, v = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now_ms, grace, force = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local n = 0
for i = 6, #ARGV do
  local m = ARGV[i]
  local rs = redis.call('ZSCORE', r, m)
  if force or not (rs and tonumber(rs) > now_ms - grace) then
    redis.call('ZREM', c, m); redis.call('ZREM', x, m); redis.call('ZREM', r, m); redis.call('ZREM', v, m)
    n = n + 1
  end
end
return n
"#
);

// ARGV: P NOW | sid expires mode ('gt' raises only, 'set' sets). Only for indexed ids.
script!(
    CL_SET_EXPIRY,
    r#"
local x = KEYS[2]
if ARGV[5] == 'gt' then
  redis.call('ZADD', x, 'XX', 'GT', ARGV[4], ARGV[3])
else
  redis.call('ZADD', x, 'XX', ARGV[4], ARGV[3])
end
return 1
"#
);

// ARGV: P NOW | now_ms grace_ms. Drops entries expired by score and returns {members in created
// order..., '|', expired members..., '|', members reserved but not yet committed...}.
script!(
    CL_SNAPSHOT,
    r#"
local c, x, r, v = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now_ms, grace = tonumber(ARGV[3]), tonumber(ARGV[4])
local expired = redis.call('ZRANGEBYSCORE', x, '-inf', NOW)
for _, m in ipairs(expired) do
  redis.call('ZREM', c, m); redis.call('ZREM', x, m); redis.call('ZREM', r, m); redis.call('ZREM', v, m)
end
local out = redis.call('ZRANGE', c, 0, -1)
out[#out + 1] = '|'
for _, m in ipairs(expired) do out[#out + 1] = m end
out[#out + 1] = '|'
for _, m in ipairs(redis.call('ZRANGEBYSCORE', r, '(' .. (now_ms - grace), '+inf')) do
  out[#out + 1] = m
end
return out
"#
);

// ---- token families (one slot each: family hash + consumed set) ----

// KEYS: fam used. ARGV: P NOW | user session cur created expires pexpire_ms
script!(
    TK_CREATE,
    r#"
local f = KEYS[1]
local e = redis.call('HGET', f, 'exp')
if e and tonumber(e) > NOW then return 0 end
redis.call('DEL', f, KEYS[2])
redis.call('HSET', f, 'user', ARGV[3], 'sess', ARGV[4], 'cur', ARGV[5], 'created', ARGV[6],
  'exp', ARGV[7], 'rev', '0', 'rot', '0')
redis.call('PEXPIRE', f, ARGV[8])
return 1
"#
);

// KEYS: fam used. ARGV: P NOW | presented next
// Returns {'unknown'} | {'reuse', hash...} | {'revoked'} | {'expired'} | {'rotated', hash...}
script!(
    TK_CONSUME,
    r#"
local f, used = KEYS[1], KEYS[2]
if redis.call('EXISTS', f) == 0 then return {'unknown'} end
if redis.call('SISMEMBER', used, ARGV[3]) == 1 then
  redis.call('HSET', f, 'rev', '1')
  local out = redis.call('HGETALL', f); table.insert(out, 1, 'reuse'); return out
end
if redis.call('HGET', f, 'rev') == '1' then return {'revoked'} end
if tonumber(redis.call('HGET', f, 'exp')) <= NOW then return {'expired'} end
if redis.call('HGET', f, 'cur') ~= ARGV[3] then return {'unknown'} end
redis.call('SADD', used, ARGV[3])
local ttl = redis.call('PTTL', f)
if ttl > 0 then redis.call('PEXPIRE', used, ttl) end
redis.call('HSET', f, 'cur', ARGV[4])
redis.call('HINCRBY', f, 'rot', 1)
local out = redis.call('HGETALL', f); table.insert(out, 1, 'rotated'); return out
"#
);

// KEYS: fam. ARGV: P NOW | user or ''. Returns 1 if newly revoked (only the user's family when
// a user is given).
script!(
    TK_REVOKE,
    r#"
local f = KEYS[1]
local v = redis.call('HMGET', f, 'exp', 'rev', 'user')
if not v[1] or tonumber(v[1]) <= NOW or v[2] == '1' then return 0 end
if ARGV[3] ~= '' and v[3] ~= ARGV[3] then return 0 end
redis.call('HSET', f, 'rev', '1')
return 1
"#
);

// KEYS: fam used. ARGV: P NOW. Deletes the family if expired; returns 1 if it did.
script!(
    TK_DROP_EXPIRED,
    r#"
local v = redis.call('HGET', KEYS[1], 'exp')
if v and tonumber(v) <= NOW then redis.call('DEL', KEYS[1], KEYS[2]); return 1 end
return 0
"#
);

// ---- cache (one slot each) ----

// KEYS: entry. ARGV: P NOW. Deletes; returns 1 if the value was live.
script!(
    CA_DELETE,
    r#"
local e = redis.call('HGET', KEYS[1], 'e')
if not e then return 0 end
redis.call('DEL', KEYS[1])
if tonumber(e) <= NOW then return 0 end
return 1
"#
);

// KEYS: entry. ARGV: P NOW | tag. Deletes the entry if it carries tag; returns 2 when it was live,
// 1 when expired, 0 when missing, -1 when it does not carry the tag.
script!(
    CA_DELETE_TAGGED,
    r#"
local v = redis.call('HMGET', KEYS[1], 'e', 't')
if not v[1] then return 0 end
local tags = cjson.decode(v[2])
for _, t in ipairs(tags) do
  if t == ARGV[3] then
    redis.call('DEL', KEYS[1])
    if tonumber(v[1]) <= NOW then return 1 end
    return 2
  end
end
return -1
"#
);

/// Every script, in a fixed order (their index is the [`ScriptId`]).
pub(crate) const ALL: [Source; 21] = [
    SA_STORE,
    SA_CREATE,
    SA_INVALIDATE,
    SA_UPDATE,
    SA_LIST_USER,
    SA_CLEANUP_USER,
    SA_INVALIDATE_USER,
    CL_WRITE,
    CL_DELETE,
    CL_UPDATE,
    CL_RESERVE,
    CL_FINISH,
    CL_PRUNE,
    CL_SET_EXPIRY,
    CL_SNAPSHOT,
    TK_CREATE,
    TK_CONSUME,
    TK_REVOKE,
    TK_DROP_EXPIRED,
    CA_DELETE,
    CA_DELETE_TAGGED,
];

/// The full text of a script: the prelude plus its body.
pub(crate) fn full_text(s: &Source) -> String {
    format!("{PRELUDE}\n{}", s.body)
}
