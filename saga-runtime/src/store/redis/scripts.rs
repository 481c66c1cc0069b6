//! The Lua scripts behind every store operation: one round trip each, atomic on the server.
//!
//! Shared conventions: `KEYS[1]` is the record hash, `KEYS[2]` the lease index (sorted set),
//! `KEYS[3]` the completion channel. `now` is the server's clock in milliseconds. A record is
//! final when its `final` field is `1`. Numbers stay below 2^53, exact in Lua.

use std::sync::LazyLock;

use ::redis::Script;

/// Reply codes of [`Scripts::claim`], [`Scripts::advance`] and [`Scripts::hold`].
pub(super) mod reply {
    /// No record.
    pub(crate) const MISSING: i64 = 0;
    /// The record is final.
    pub(crate) const FINISHED: i64 = 1;
    /// Another sequence number or owner (claim: the sequence number follows).
    pub(crate) const STALE: i64 = 2;
    /// Claim only: held by a live lease of another run.
    pub(crate) const BUSY: i64 = 3;
    /// Done (claim: attempt, seq, mode and, for recovery, the state follow).
    pub(crate) const DONE: i64 = 4;
}

const NOW: &str = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

/// The compiled scripts (their SHA is computed once per process).
pub(super) struct Scripts {
    pub(super) begin: Script,
    pub(super) claim: Script,
    pub(super) advance: Script,
    pub(super) hold: Script,
    pub(super) expired: Script,
    pub(super) remove: Script,
}

/// The scripts, built once.
pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    begin: script(BEGIN),
    claim: script(CLAIM),
    advance: fenced(ADVANCE),
    hold: fenced(HOLD),
    expired: script(EXPIRED),
    remove: script(REMOVE),
});

fn script(body: &str) -> Script {
    Script::new(&format!("{NOW}{body}"))
}

/// A script that first checks that `KEYS[1]` is at seq `ARGV[2]`, held by token `ARGV[3]`, and
/// not final; otherwise it returns MISSING (dropping the lease entry `ARGV[1]`), FINISHED or
/// STALE. The body sees the record's seq as `h[1]`.
fn fenced(body: &str) -> Script {
    script(&format!("{FENCE}{body}"))
}

const FENCE: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'seq', 'owner', 'final')
if not h[1] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
if h[3] == '1' then return 1 end
if h[1] ~= ARGV[2] or h[2] ~= ARGV[3] then return 2 end
"#;

/// ARGV: trace id, saga, fingerprint, mode, status, state, owner, lease ms, queued (0/1),
/// ttl ms (0: none). Returns `{}` when created, else the existing hash (HGETALL).
const BEGIN: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HGETALL', KEYS[1])
end
local lease_until = now + tonumber(ARGV[8])
redis.call('HSET', KEYS[1], 'saga', ARGV[2], 'fp', ARGV[3], 'mode', ARGV[4], 'status', ARGV[5],
  'state', ARGV[6], 'seq', 0, 'owner', ARGV[7], 'until', lease_until, 'queued', ARGV[9],
  'attempts', 0, 'final', 0, 'created', now, 'updated', now)
if ARGV[10] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[10]) end
redis.call('ZADD', KEYS[2], lease_until, ARGV[1])
return {}
"#;

/// ARGV: trace id, seq ('' for any), token, lease ms, recovery (0/1).
/// Returns `{code, ...}`: STALE with the current seq; DONE with attempt, seq, mode and (for
/// recovery) the state.
const CLAIM: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'seq', 'owner', 'until', 'queued', 'final', 'attempts', 'mode')
if not h[1] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {0}
end
if h[5] == '1' then return {1} end
if ARGV[2] ~= '' and h[1] ~= ARGV[2] then return {2, tonumber(h[1])} end
local lapsed = tonumber(h[3]) <= now
if ARGV[5] == '1' then
  if not lapsed then return {3} end
elseif not (lapsed or h[4] == '1' or h[2] == ARGV[3]) then
  return {3}
end
local attempts = tonumber(h[6]) + 1
local lease_until = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'owner', ARGV[3], 'until', lease_until, 'queued', 0,
  'attempts', attempts, 'updated', now)
redis.call('ZADD', KEYS[2], lease_until, ARGV[1])
if ARGV[5] == '1' then
  return {4, attempts, tonumber(h[1]), h[7], redis.call('HGET', KEYS[1], 'state')}
end
return {4, attempts, tonumber(h[1]), h[7]}
"#;

/// ARGV: trace id, seq, token, status, state, lease ms, queued (0/1), final (0/1), ttl ms
/// (0: none). Runs after [`FENCE`]. Returns a reply code.
const ADVANCE: &str = r#"
local seq = tonumber(h[1]) + 1
if ARGV[8] == '1' then
  redis.call('HSET', KEYS[1], 'status', ARGV[4], 'seq', seq, 'final', 1, 'owner', '',
    'until', 0, 'queued', 0, 'attempts', 0, 'updated', now)
  if ARGV[5] == '' then
    redis.call('HDEL', KEYS[1], 'state')
  else
    redis.call('HSET', KEYS[1], 'state', ARGV[5])
  end
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('PUBLISH', KEYS[3], ARGV[4])
else
  local lease_until = now + tonumber(ARGV[6])
  redis.call('HSET', KEYS[1], 'status', ARGV[4], 'state', ARGV[5], 'seq', seq, 'owner', ARGV[3],
    'until', lease_until, 'queued', ARGV[7], 'attempts', 0, 'updated', now)
  redis.call('ZADD', KEYS[2], lease_until, ARGV[1])
end
if ARGV[9] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[9])
else
  redis.call('PERSIST', KEYS[1])
end
return 4
"#;

/// ARGV: trace id, seq, token, new owner, lease ms, queued (0/1), refund an attempt (0/1).
/// Runs after [`FENCE`]. Returns a reply code.
const HOLD: &str = r#"
local lease_until = now + tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'owner', ARGV[4], 'until', lease_until, 'queued', ARGV[6], 'updated', now)
if ARGV[7] == '1' then
  local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts'))
  if attempts > 0 then redis.call('HSET', KEYS[1], 'attempts', attempts - 1) end
end
redis.call('ZADD', KEYS[2], lease_until, ARGV[1])
return 4
"#;

/// KEYS[1]: the lease index. ARGV: limit. Returns the trace ids whose lease passed.
const EXPIRED: &str = r#"
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
"#;

/// ARGV: lease index prefix, trace id. Deletes the record and its lease entry.
const REMOVE: &str = r#"
local saga = redis.call('HGET', KEYS[1], 'saga')
redis.call('DEL', KEYS[1])
if saga then redis.call('ZREM', ARGV[1] .. saga, ARGV[2]) end
return 0
"#;
