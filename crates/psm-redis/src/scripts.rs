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
end
-- drops at most `cap` entries whose expiry score is due from c and x (and v when given), in
-- batches of 1000; returns the dropped ids. The score is never below a session's real expiry.
local function prune_expired(c, x, v, cap)
  local all = {}
  repeat
    local batch = redis.call('ZRANGEBYSCORE', x, '-inf', NOW, 'LIMIT', 0, 1000)
    if #batch > 0 then
      redis.call('ZREM', c, unpack(batch))
      redis.call('ZREM', x, unpack(batch))
      if v then redis.call('ZREM', v, unpack(batch)) end
      for _, m in ipairs(batch) do all[#all + 1] = m end
    end
  until #batch < 1000 or #all >= cap
  return all
end
-- whether id m has a reservation in flight (younger than the grace period)
local function pending(r, m, now_ms, grace)
  local s = redis.call('ZSCORE', r, m)
  return s and tonumber(s) > now_ms - grace
end
-- drops reservations and eviction marks older than the grace period (their callers died)
local function drop_stale(r, v, q, now_ms, grace)
  local cut = '(' .. (now_ms - grace)
  local stale = redis.call('ZRANGEBYSCORE', r, '-inf', cut, 'LIMIT', 0, 1000)
  if #stale > 0 then
    redis.call('ZREM', r, unpack(stale))
    redis.call('HDEL', q, unpack(stale))
  end
  redis.call('ZREMRANGEBYSCORE', v, '-inf', cut)
end
-- removes entry m when its created score still equals `created` (the incarnation the caller saw
-- or deleted) and no reservation of m is in flight
local function drop_incarnation(c, x, r, v, m, created, now_ms, grace)
  local s = redis.call('ZSCORE', c, m)
  if not s then
    redis.call('ZREM', x, m); redis.call('ZREM', v, m)
    return false
  end
  if tonumber(s) ~= tonumber(created) or pending(r, m, now_ms, grace) then return false end
  redis.call('ZREM', c, m); redis.call('ZREM', x, m); redis.call('ZREM', v, m)
  return true
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
//
// Every script reads a bounded window of a user's index: expired entries go by score range
// (`ZRANGEBYSCORE … LIMIT`), counts come from `ZCARD`, and whole-index work (cleanup,
// invalidate_user_sessions, big evictions) is driven from Rust in windows.

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
// token window. Returns {'exists'} | {'limit'} | {'more', evicted...} (evicted a window of
// victims, call again) | {'ok', evicted...}. The request token makes a retry of a call that
// already succeeded answer 'ok' again instead of 'exists'.
script!(
    SA_CREATE,
    r#"
local k = KEYS[1]
local sid, user, uenc = ARGV[3], ARGV[4], ARGV[5]
local n = tonumber(ARGV[10])
local max = tonumber(ARGV[11 + n])
local evict = ARGV[12 + n] == 'evict'
local token = ARGV[13 + n]
local W = tonumber(ARGV[14 + n])
local cur = redis.call('HMGET', k, ' u', ' e', ' q', ' w')
if cur[1] and not (cur[2] and tonumber(cur[2]) <= NOW) then
  if cur[3] == token then
    local out = {'ok'}
    if cur[4] then for m in string.gmatch(cur[4], '[^,]+') do out[#out + 1] = m end end
    return out
  end
  return {'exists'}
end
local c, x = uk(uenc, 'c'), uk(uenc, 'x')
prune_expired(c, x, nil, 10000)
local count = redis.call('ZCARD', c)
if redis.call('ZSCORE', c, sid) then count = count - 1 end
local victims = {}
if count >= max then
  if not evict then
    -- entries whose session vanished outside psm do not count: verify the oldest window
    local batch = redis.call('ZRANGE', c, 0, W - 1)
    for _, m in ipairs(batch) do
      if m ~= sid and live_owner(sk(m)) ~= user then
        redis.call('ZREM', c, m); redis.call('ZREM', x, m)
        count = count - 1
      end
    end
    if count >= max then return {'limit'} end
  else
    local need = count - max + 1
    local rank, examined = 0, 0
    while need > 0 and #victims < W and examined < 10000 do
      local batch = redis.call('ZRANGE', c, rank, rank + 99)
      if #batch == 0 then break end
      local kept = 0
      for _, m in ipairs(batch) do
        examined = examined + 1
        if need == 0 or #victims >= W or m == sid then
          kept = kept + 1
        else
          if live_owner(sk(m)) == user then
            victims[#victims + 1] = m
            redis.call('DEL', sk(m))
          end
          redis.call('ZREM', c, m); redis.call('ZREM', x, m)
          need = need - 1
        end
      end
      rank = rank + kept
    end
    if need > 0 then
      local out = {'more'}
      for _, m in ipairs(victims) do out[#out + 1] = m end
      return out
    end
  end
end
local old = redis.call('HGET', k, ' k')
if old and old ~= uenc then unindex(old, sid) end
write_session(k, 2)
redis.call('HSET', k, ' q', token)
if #victims > 0 then redis.call('HSET', k, ' w', table.concat(victims, ',')) end
redis.call('ZADD', c, ARGV[6], sid)
redis.call('ZADD', x, ARGV[7] == '' and '+inf' or ARGV[7], sid)
local out = {'ok'}
for _, m in ipairs(victims) do out[#out + 1] = m end
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

// KEYS: user c, x. ARGV: P NOW | user offset limit. Drops due entries by score, then reads the
// page from rank `offset`, verifying (and dropping) only the entries it reads.
script!(
    SA_LIST_USER,
    r#"
local c, x = KEYS[1], KEYS[2]
local user = ARGV[3]
local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
prune_expired(c, x, nil, 10000)
local out = {}
local rank, examined = offset, 0
while #out < limit and examined < limit + 10000 do
  local batch = redis.call('ZRANGE', c, rank, rank + (limit - #out) - 1)
  if #batch == 0 then break end
  for _, m in ipairs(batch) do
    examined = examined + 1
    if live_owner(sk(m)) == user then
      out[#out + 1] = m
      rank = rank + 1
    else
      redis.call('ZREM', c, m); redis.call('ZREM', x, m)
    end
  end
end
return out
"#
);

// KEYS: user c, x. ARGV: P NOW | user start window. One window of cleanup: removes expired and
// dangling entries among ranks start..start+window-1 of c (deleting expired sessions still
// stored). Returns {expired sessions found, entries examined, entries removed}.
script!(
    SA_CLEANUP_USER,
    r#"
local c, x = KEYS[1], KEYS[2]
local user = ARGV[3]
local start, W = tonumber(ARGV[4]), tonumber(ARGV[5])
local count, removed = 0, 0
local batch = redis.call('ZRANGE', c, start, start + W - 1)
for _, m in ipairs(batch) do
  local k = sk(m)
  local v = redis.call('HMGET', k, ' u', ' e')
  local dead = false
  if not v[1] then
    local xs = redis.call('ZSCORE', x, m)
    if xs and tonumber(xs) <= NOW then count = count + 1 end
    dead = true
  elseif v[1] ~= user then
    dead = true
  elseif v[2] and tonumber(v[2]) <= NOW then
    redis.call('DEL', k)
    count = count + 1
    dead = true
  end
  if dead then
    redis.call('ZREM', c, m); redis.call('ZREM', x, m)
    removed = removed + 1
  end
end
return {count, #batch, removed}
"#
);

// KEYS: user c, x. ARGV: P NOW | start window. One window over x: drops entries missing from c.
// Returns {entries examined, entries removed}.
script!(
    SA_CLEANUP_EXPIRY,
    r#"
local c, x = KEYS[1], KEYS[2]
local start, W = tonumber(ARGV[3]), tonumber(ARGV[4])
local removed = 0
local batch = redis.call('ZRANGE', x, start, start + W - 1)
for _, m in ipairs(batch) do
  if not redis.call('ZSCORE', c, m) then redis.call('ZREM', x, m); removed = removed + 1 end
end
return {#batch, removed}
"#
);

// KEYS: user c, x. ARGV: P NOW | user window. Removes the first window of the user's sessions
// and their entries. Returns {live sessions removed, entries examined}; when fewer than a window
// were left, the expiry index is removed too.
script!(
    SA_INVALIDATE_USER,
    r#"
local c, x = KEYS[1], KEYS[2]
local user, W = ARGV[3], tonumber(ARGV[4])
local count = 0
local batch = redis.call('ZRANGE', c, 0, W - 1)
for _, m in ipairs(batch) do
  local k = sk(m)
  local v = redis.call('HMGET', k, ' u', ' e')
  if v[1] == user then
    redis.call('DEL', k)
    if not (v[2] and tonumber(v[2]) <= NOW) then count = count + 1 end
  end
  redis.call('ZREM', c, m); redis.call('ZREM', x, m)
end
if #batch < W then redis.call('DEL', x) end
return {count, #batch}
"#
);

// ---- cluster: session slot ----

// KEYS: session. ARGV: P NOW | sid user uenc created expires ttl_ms meta n perms... | mode token
// mode 'create' refuses a live session unless it carries this request's token (a retry).
// Returns {'exists', owner uenc} or {'ok', old uenc or '', old created or ''}.
script!(
    CL_WRITE,
    r#"
local k = KEYS[1]
local n = tonumber(ARGV[10])
local create = ARGV[11 + n] == 'create'
local token = ARGV[12 + n]
if create and live_owner(k) then
  local v = redis.call('HMGET', k, ' k', ' q')
  if v[2] == token then return {'ok', ''} end
  return {'exists', v[1] or ''}
end
local old = redis.call('HMGET', k, ' k', ' c')
write_session(k, 2)
if create then redis.call('HSET', k, ' q', token) end
return {'ok', old[1] or '', old[2] or ''}
"#
);

// KEYS: session. ARGV: P NOW | owner-uenc or ''. Deletes the session (only if owned by the given
// user when one is given). Returns {live 0/1, uenc, created} or {} when nothing was deleted.
script!(
    CL_DELETE,
    r#"
local k = KEYS[1]
local v = redis.call('HMGET', k, ' k', ' e', ' c')
if not v[1] then return {} end
if ARGV[3] ~= '' and v[1] ~= ARGV[3] then return {} end
redis.call('DEL', k)
local live = 1
if v[2] and tonumber(v[2]) <= NOW then live = 0 end
return {live, v[1], v[3] or ''}
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

// ---- cluster: user slot (KEYS: c x r v q) ----
//
// c: ids by created_at; x: ids by an expiry that is never below the session's real one (raised
// before a session write, never lowered); r: ids with a reservation in flight, scored by the
// latest reservation time, and q: how many reservations of each id are in flight; v: ids marked
// as eviction victims, scored by the mark time. Reservations and marks older than the grace
// period belong to callers that died: they are dropped, and the entries count again.

// ARGV: P NOW | sid created expires max policy now_ms grace window
// Returns {'limit'} | {'busy'} | {'more', victim, created, ...} (victims marked, no reservation:
// evict them and call again) | {'ok', victim, created, ...} (victims marked, sid reserved).
script!(
    CL_RESERVE,
    r#"
local c, x, r, v, q = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local sid = ARGV[3]
local max = tonumber(ARGV[6])
local evict = ARGV[7] == 'evict'
local now_ms, grace = tonumber(ARGV[8]), tonumber(ARGV[9])
local W = tonumber(ARGV[10])
drop_stale(r, v, q, now_ms, grace)
prune_expired(c, x, v, 10000)
local counted = redis.call('ZCARD', c) - redis.call('ZCARD', v)
if redis.call('ZSCORE', c, sid) and not redis.call('ZSCORE', v, sid) then counted = counted - 1 end
local victims = {}
if counted >= max then
  if not evict then return {'limit'} end
  local need = counted - max + 1
  local rank, examined = 0, 0
  while need > 0 and #victims < 2 * W and examined < 10000 do
    local batch = redis.call('ZRANGE', c, rank, rank + 99, 'WITHSCORES')
    if #batch == 0 then break end
    for i = 1, #batch, 2 do
      local m = batch[i]
      examined = examined + 1
      if need > 0 and #victims < 2 * W and m ~= sid and not redis.call('ZSCORE', v, m)
        and not pending(r, m, now_ms, grace) then
        victims[#victims + 1] = m
        victims[#victims + 1] = batch[i + 1]
        redis.call('ZADD', v, now_ms, m)
        need = need - 1
      end
    end
    rank = rank + #batch / 2
  end
  if need > 0 then
    if #victims == 0 then return {'busy'} end
    local out = {'more'}
    for _, m in ipairs(victims) do out[#out + 1] = m end
    return out
  end
end
redis.call('ZADD', c, ARGV[4], sid)
redis.call('ZADD', x, 'GT', ARGV[5] == '' and '+inf' or ARGV[5], sid)
redis.call('ZADD', r, 'GT', now_ms, sid)
redis.call('HINCRBY', q, sid, 1)
local out = {'ok'}
for _, m in ipairs(victims) do out[#out + 1] = m end
return out
"#
);

// ARGV: P NOW | now_ms grace sid mode nd victim created ... unmarked...
// Ends a reservation of sid ('' for none): mode 'commit' or 'keep' drop only this reservation;
// 'rollback' also drops the entry unless another reservation of sid is in flight. The nd
// (victim, created) pairs were deleted: their entries go when still of that incarnation (same
// created score) and not re-reserved. The remaining ids are unmarked (they count again).
script!(
    CL_FINISH,
    r#"
local c, x, r, v, q = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now_ms, grace = tonumber(ARGV[3]), tonumber(ARGV[4])
local sid, mode, nd = ARGV[5], ARGV[6], tonumber(ARGV[7])
if sid ~= '' then
  local left = 0
  if redis.call('HEXISTS', q, sid) == 1 then left = redis.call('HINCRBY', q, sid, -1) end
  if left <= 0 then redis.call('HDEL', q, sid); redis.call('ZREM', r, sid) end
  if mode == 'rollback' and left <= 0 then
    redis.call('ZREM', c, sid); redis.call('ZREM', x, sid); redis.call('ZREM', v, sid)
  end
end
for i = 0, nd - 1 do
  local m, created = ARGV[8 + 2 * i], ARGV[9 + 2 * i]
  drop_incarnation(c, x, r, v, m, created, now_ms, grace)
end
for i = 8 + 2 * nd, #ARGV do redis.call('ZREM', v, ARGV[i]) end
return 1
"#
);

// ARGV: P NOW | now_ms grace (sid created)... Removes each entry whose created score still
// equals `created` and that has no reservation in flight; returns how many.
script!(
    CL_PRUNE,
    r#"
local c, x, r, v = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now_ms, grace = tonumber(ARGV[3]), tonumber(ARGV[4])
local n = 0
for i = 5, #ARGV, 2 do
  if drop_incarnation(c, x, r, v, ARGV[i], ARGV[i + 1], now_ms, grace) then n = n + 1 end
end
return n
"#
);

// ARGV: P NOW | sid expires. Raises the expiry score of an indexed id; never lowers it.
script!(
    CL_RAISE_EXPIRY,
    r#"
redis.call('ZADD', KEYS[2], 'XX', 'GT', ARGV[4], ARGV[3])
return 1
"#
);

// ARGV: P NOW | now_ms grace cap. Drops stale reservations and marks and at most `cap` due
// entries; returns the dropped due ids.
script!(
    CL_PRUNE_EXPIRED,
    r#"
local c, x, r, v, q = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
drop_stale(r, v, q, tonumber(ARGV[3]), tonumber(ARGV[4]))
return prune_expired(c, x, v, tonumber(ARGV[5]))
"#
);

// ARGV: P NOW | now_ms grace start count. Ranks start..start+count-1 of c as
// {id, created score, pending 0/1, ...}.
script!(
    CL_WINDOW,
    r#"
local c, r = KEYS[1], KEYS[3]
local now_ms, grace = tonumber(ARGV[3]), tonumber(ARGV[4])
local start, n = tonumber(ARGV[5]), tonumber(ARGV[6])
local batch = redis.call('ZRANGE', c, start, start + n - 1, 'WITHSCORES')
local out = {}
for i = 1, #batch, 2 do
  out[#out + 1] = batch[i]
  out[#out + 1] = batch[i + 1]
  out[#out + 1] = pending(r, batch[i], now_ms, grace) and '1' or '0'
end
return out
"#
);

// ---- token families (one slot each: family hash + consumed set) ----

// KEYS: fam used. ARGV: P NOW | user session cur created expires pexpire_ms
// Returns 1 when created (or when this very create already ran: same user and first token, no
// rotation yet), 0 when another live family holds the id.
script!(
    TK_CREATE,
    r#"
local f = KEYS[1]
local h = redis.call('HMGET', f, 'exp', 'user', 'cur', 'rot')
if h[1] and tonumber(h[1]) > NOW then
  if h[2] == ARGV[3] and h[3] == ARGV[5] and h[4] == '0' then return 1 end
  return 0
end
redis.call('DEL', f, KEYS[2])
redis.call('HSET', f, 'user', ARGV[3], 'sess', ARGV[4], 'cur', ARGV[5], 'created', ARGV[6],
  'exp', ARGV[7], 'rev', '0', 'rot', '0')
redis.call('PEXPIRE', f, ARGV[8])
return 1
"#
);

// KEYS: fam used. ARGV: P NOW | presented next
// Returns {'unknown'} | {'reuse', hash...} | {'revoked'} | {'expired'} | {'rotated', hash...}.
// A retry of the rotation presented -> next (same pair, already applied) answers 'rotated'
// again; any other use of a consumed id is reuse.
script!(
    TK_CONSUME,
    r#"
local f, used = KEYS[1], KEYS[2]
if redis.call('EXISTS', f) == 0 then return {'unknown'} end
local h = redis.call('HMGET', f, 'cur', 'prev', 'rev')
if h[2] == ARGV[3] and h[1] == ARGV[4] and h[3] ~= '1' then
  local out = redis.call('HGETALL', f); table.insert(out, 1, 'rotated'); return out
end
if redis.call('SISMEMBER', used, ARGV[3]) == 1 then
  redis.call('HSET', f, 'rev', '1')
  local out = redis.call('HGETALL', f); table.insert(out, 1, 'reuse'); return out
end
if h[3] == '1' then return {'revoked'} end
if tonumber(redis.call('HGET', f, 'exp')) <= NOW then return {'expired'} end
if h[1] ~= ARGV[3] then return {'unknown'} end
redis.call('SADD', used, ARGV[3])
local ttl = redis.call('PTTL', f)
if ttl > 0 then redis.call('PEXPIRE', used, ttl) end
redis.call('HSET', f, 'cur', ARGV[4], 'prev', ARGV[3])
redis.call('HINCRBY', f, 'rot', 1)
local out = redis.call('HGETALL', f); table.insert(out, 1, 'rotated'); return out
"#
);

// KEYS: fam. ARGV: P NOW | user or ''. Returns {1 if newly revoked else 0, owner or ''}; with a
// user, only that user's family is revoked. The owner lets the caller prune its family index.
script!(
    TK_REVOKE,
    r#"
local f = KEYS[1]
local v = redis.call('HMGET', f, 'exp', 'rev', 'user')
if not v[1] then return {0, ''} end
if ARGV[3] ~= '' and v[3] ~= ARGV[3] then return {0, ''} end
if tonumber(v[1]) <= NOW or v[2] == '1' then return {0, v[3] or ''} end
redis.call('HSET', f, 'rev', '1')
return {1, v[3] or ''}
"#
);

// KEYS: fam used. ARGV: P NOW. Deletes the family if expired; returns {1 if it did, owner or ''}.
script!(
    TK_DROP_EXPIRED,
    r#"
local v = redis.call('HMGET', KEYS[1], 'exp', 'user')
if v[1] and tonumber(v[1]) <= NOW then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {1, v[2] or ''}
end
return {0, v[2] or ''}
"#
);

// ---- cache (one slot each) ----

// KEYS: entry. ARGV: P NOW | value expires_us ttl_ms tags_json. Writes the whole entry at once.
script!(
    CA_SET,
    r#"
local k = KEYS[1]
redis.call('DEL', k)
redis.call('HSET', k, 'v', ARGV[3], 'e', ARGV[4], 't', ARGV[6])
redis.call('PEXPIRE', k, ARGV[5])
return 1
"#
);

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

/// Every script, in a fixed order.
pub(crate) const ALL: [Source; 24] = [
    SA_STORE,
    SA_CREATE,
    SA_INVALIDATE,
    SA_UPDATE,
    SA_LIST_USER,
    SA_CLEANUP_USER,
    SA_CLEANUP_EXPIRY,
    SA_INVALIDATE_USER,
    CL_WRITE,
    CL_DELETE,
    CL_UPDATE,
    CL_RESERVE,
    CL_FINISH,
    CL_PRUNE,
    CL_RAISE_EXPIRY,
    CL_PRUNE_EXPIRED,
    CL_WINDOW,
    TK_CREATE,
    TK_CONSUME,
    TK_REVOKE,
    TK_DROP_EXPIRED,
    CA_SET,
    CA_DELETE,
    CA_DELETE_TAGGED,
];

/// The full text of a script: the prelude plus its body.
pub(crate) fn full_text(s: &Source) -> String {
    format!("{PRELUDE}\n{}", s.body)
}
