//! The Lua scripts behind every store operation: one round trip each, atomic on the server.
//!
//! Shared conventions: `KEYS[1]` is the record hash, `KEYS[2]` the lease index (sorted set),
//! `KEYS[3]` the completion channel. `now` is the server's clock in milliseconds. A record is
//! final when its `final` field is `1`. Numbers stay below 2^53, exact in Lua.
//!
//! Every write keeps the operator's views in the same atomic step: the history (one JSON entry
//! per field `h<n>` of the record's own hash, the latest `history_limit - 1` kept besides the
//! `started` entry, which is read back from the record's `by`, `created` and `mode`; written by the
//! transition's `HSET`, so it costs no command of its own and shares the record's
//! time-to-live) and the status index: one sorted set for every status family, each family a
//! band of scores (`band(kind) + since`, [`status_score`]), so a saga that changes family is
//! moved by one `ZADD` (the record's `kind` and `since` fields say where it is). The status
//! index (of the saga's bucket) is a key of every script that touches it; the lease index of
//! [`REMOVE`] is built from its prefix.
//!
//! Scripts are called through [`Lua::call`]: `EVALSHA` built straight into one command, sent
//! again as `EVAL` on a `NOSCRIPT` reply (a restarted or flushed Redis, a promoted replica).
//!
//! In a Redis Cluster every key a script touches, declared or built from a prefix argument
//! (the record keys a listing reads, the lease index [`REMOVE`] cleans), carries its bucket's
//! hash tag (see the `keys` module), so the whole script runs on one slot of one master.

use std::sync::LazyLock;

use ::redis::{Cmd, FromRedisValue, RedisResult, Script, ToRedisArgs};

use crate::store::StatusKind;

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
    /// Advance only: an operator asked for compensation; nothing written.
    pub(crate) const COMPENSATE: i64 = 5;
}

/// `now` (a number, for arithmetic) and `now_s` (the same as a string, for commands), and
/// `int(x)`: a number as the decimal string of an integer. Redis turns every Lua number given to
/// `redis.call` into text with `%.17g` (and `..` does with `%.14g`): glibc's float formatting,
/// about 2,700 instructions each, a tenth of the server's work per saga when every number went
/// that way. So commands get strings: literals, `now_s` (cut from `TIME`'s own text), or
/// `int`'s integer formatting.
const NOW: &str = r#"local t = redis.call('TIME')
local now_s = t[1] .. string.sub('00000' .. t[2], -6, -4)
local now = tonumber(now_s)
local function int(x) return string.format('%d', x) end
"#;

/// Width of a status family's band of scores in the status index: 2^43 ms (about 278
/// years), so `band + since` stays an exact integer in a double (below 2^53).
const BAND_WIDTH: u64 = 1 << 43;

/// The score of a saga in the status index: its family's band plus when it entered it (ms).
pub(super) fn status_score(kind: StatusKind, since_ms: u64) -> u64 {
    band(kind) + since_ms.min(BAND_WIDTH - 1)
}

/// The lowest score of `kind`'s band.
pub(super) fn band(kind: StatusKind) -> u64 {
    let rank = StatusKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("every kind is in StatusKind::ALL") as u64;
    rank * BAND_WIDTH
}

/// The highest score of `kind`'s band.
pub(super) fn band_end(kind: StatusKind) -> u64 {
    band(kind) + BAND_WIDTH - 1
}

/// One Lua script, called by its SHA.
pub(super) struct Lua {
    script: Script,
    /// The whole body, for `EVAL` when a server does not have the script cached.
    body: String,
}

impl Lua {
    fn new(body: &str) -> Self {
        let body = format!("{NOW}{}{body}", status_bands());
        Self {
            script: Script::new(&body),
            body,
        }
    }

    /// A call of this script on `keys`; add its arguments with [`Call::arg`].
    pub(super) fn call(&self, keys: &[&str]) -> Call<'_> {
        let mut cmd = Cmd::with_capacity(3 + keys.len() + 16, 512);
        cmd.arg("EVALSHA")
            .arg(self.script.get_hash())
            .arg(keys.len())
            .arg(keys);
        Call { script: self, cmd }
    }
}

/// A script call being built: `EVALSHA sha numkeys keys... args...`, every argument written
/// once into the command's buffer (`redis::ScriptInvocation` keeps a buffer per argument and
/// copies them all again).
pub(super) struct Call<'s> {
    script: &'s Lua,
    cmd: Cmd,
}

/// Replicas that must acknowledge a write (`WAIT numreplicas timeout`), see
/// `RedisConfig::replica_acks`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Acks {
    /// How many replicas.
    pub(super) replicas: u16,
    /// Bound on the wait, in milliseconds.
    pub(super) timeout_ms: u64,
}

impl Call<'_> {
    /// Appends an argument (`ARGV[n]`).
    pub(super) fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    /// Runs the script. On `NOSCRIPT` (a restarted or flushed server, or a replica promoted
    /// after a failover: the script cache is not replicated) it sends the same call once more
    /// as `EVAL` with the script's body, which runs it and caches it on that server: one more
    /// round trip on the node that lacks it, and no `SCRIPT LOAD` to every node of a cluster
    /// (which would fail while one of them is down).
    pub(super) async fn invoke<T: FromRedisValue>(
        &self,
        conn: &mut impl ::redis::aio::ConnectionLike,
    ) -> RedisResult<T> {
        match self.cmd.query_async(conn).await {
            Err(error) if is_noscript(&error) => self.eval().query_async(conn).await,
            result => result,
        }
    }

    /// Runs the script like [`Call::invoke`], then, with `acks`, `WAIT`s in the same pipeline
    /// (so on the same connection to the same master: a cluster routes the pipeline by the
    /// script's first key) until that many replicas acknowledged it. Returns the reply and how
    /// many replicas acknowledged (`None` without `acks`).
    pub(super) async fn invoke_acked<T: FromRedisValue>(
        &self,
        conn: &mut impl ::redis::aio::ConnectionLike,
        acks: Option<Acks>,
    ) -> RedisResult<(T, Option<i64>)> {
        let Some(acks) = acks else {
            return Ok((self.invoke(conn).await?, None));
        };
        let pipeline = |cmd: Cmd| {
            let mut pipe = ::redis::pipe();
            pipe.add_command(cmd)
                .cmd("WAIT")
                .arg(acks.replicas)
                .arg(acks.timeout_ms);
            pipe
        };
        let (reply, acked): (T, i64) = match pipeline(self.cmd.clone()).query_async(conn).await {
            Err(error) if is_noscript(&error) => pipeline(self.eval()).query_async(conn).await?,
            result => result?,
        };
        Ok((reply, Some(acked)))
    }

    /// The same call as `EVAL body numkeys keys... args...`.
    fn eval(&self) -> Cmd {
        let mut eval = Cmd::with_capacity(self.cmd.args_iter().len(), 512 + self.script.body.len());
        eval.arg("EVAL").arg(&self.script.body);
        for arg in self.cmd.args_iter().skip(2) {
            if let ::redis::Arg::Simple(bytes) = arg {
                eval.arg(bytes);
            }
        }
        eval
    }
}

fn is_noscript(error: &::redis::RedisError) -> bool {
    error.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript)
}

/// The compiled scripts (their SHA is computed once per process).
pub(super) struct Scripts {
    pub(super) begin: Lua,
    pub(super) claim: Lua,
    pub(super) advance: Lua,
    pub(super) hold: Lua,
    pub(super) expired: Lua,
    pub(super) remove: Lua,
    pub(super) reopen: Lua,
    pub(super) request_compensation: Lua,
    pub(super) list: Lua,
}

/// The scripts, built once.
pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    begin: Lua::new(BEGIN),
    claim: Lua::new(CLAIM),
    advance: fenced(ADVANCE),
    hold: fenced(HOLD),
    expired: Lua::new(EXPIRED),
    remove: Lua::new(REMOVE),
    reopen: Lua::new(&format!("{HISTORY}{REOPEN}")),
    request_compensation: Lua::new(&format!("{HISTORY}{REQUEST_COMPENSATION}")),
    list: Lua::new(LIST),
});

/// The Lua `band(kind)`: the lowest score of a status family in the status index, built from
/// [`band`] so the scripts and [`status_score`] cannot disagree. Its table is built by each call
/// (a saga changing family, the sweeper's pruning), not by every script run.
fn status_bands() -> String {
    let bands: Vec<String> = StatusKind::ALL
        .iter()
        .map(|kind| format!("{} = {}", kind.as_str(), band(*kind)))
        .collect();
    format!(
        "local function band(kind) return ({{{}}})[kind] end\n",
        bands.join(", ")
    )
}

/// A script that first checks that `KEYS[1]` is at seq `ARGV[2]`, held by token `ARGV[3]`, and
/// not final; otherwise it returns MISSING (dropping the lease entry `ARGV[1]`), FINISHED or
/// STALE. The body sees the record's seq as `h[1]`.
fn fenced(body: &str) -> Lua {
    Lua::new(&format!("{HISTORY}{FENCE}{body}"))
}

/// History and index helpers, shared by the writes.
///
/// `appended(fields, hn, from, limit)`: adds the history entries `ARGV[from..]` (one JSON
/// entry each) to the `HSET` arguments `fields`, as the record's fields `h<n>` numbered on from
/// the `hn` it holds, with the new `hn`; keeps the latest `limit` (an `HDEL` of the oldest, only
/// once a saga has more than `limit` entries); nothing at all without entries (the history
/// off sends none). Appending reads nothing back and costs no command
/// of its own: the history is written by the transition's `HSET` and goes with the record.
///
/// `moved(fields, index, id, from, to)`: moves `id` from the status family `from` to `to` in
/// the status index (one `ZADD`; nothing when they are the same) and adds the record's `kind`
/// and `since` to the `HSET` arguments `fields`.
const HISTORY: &str = r#"
local function appended(fields, hn, from, limit)
  local last = #ARGV
  if last < from then return end
  local old = tonumber(hn) or 0
  local n = old + last - from + 1
  local keep = n - tonumber(limit) + 1
  local k = #fields
  local name
  for i = from, last do
    local at = old + i - from + 1
    if at >= keep then
      name = int(at)
      fields[k + 1], fields[k + 2] = 'h' .. name, ARGV[i]
      k = k + 2
    end
  end
  fields[k + 1], fields[k + 2] = 'hn', name or int(n)
  local first = keep - last + from - 1
  if first < 1 then first = 1 end
  if first < keep and first <= old then
    local drop = {}
    for at = first, math.min(old, keep - 1) do drop[#drop + 1] = 'h' .. int(at) end
    redis.call('HDEL', KEYS[1], unpack(drop))
  end
end
local function moved(fields, index, id, from, to)
  if from == to then return end
  redis.call('ZADD', index, int(band(to) + now), id)
  local k = #fields
  fields[k + 1], fields[k + 2], fields[k + 3], fields[k + 4] = 'kind', to, 'since', now_s
end
"#;

/// Reads `h` = seq, owner, final, kind, abort, hn, ttl_at, requeues (absent while 0), until
/// (the lease end); see [`fenced`].
const FENCE: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'seq', 'owner', 'final', 'kind', 'abort', 'hn', 'ttl_at', 'requeues', 'until')
if not h[1] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
if h[3] == '1' then return 1 end
if h[1] ~= ARGV[2] or h[2] ~= ARGV[3] then return 2 end
"#;

/// KEYS[3]: the status index. ARGV: trace id, saga, fingerprint, mode, status, state, owner,
/// lease ms, queued (0/1), ttl ms (0: none), history on (0/1). Returns `{}` when created, else
/// the existing hash (HGETALL). The `started` history entry is not stored as an entry: with the
/// history on, the record keeps the begin's run as `by`, and a reader builds the entry from it,
/// `created` and `mode` (one short field instead of a JSON entry and the `hn` counter).
const BEGIN: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HGETALL', KEYS[1])
end
local lease_until = int(now + tonumber(ARGV[8]))
local f = {'saga', ARGV[2], 'fp', ARGV[3], 'mode', ARGV[4], 'status', ARGV[5],
  'state', ARGV[6], 'seq', '0', 'owner', ARGV[7], 'until', lease_until, 'queued', ARGV[9],
  'attempts', '0', 'final', '0', 'created', now_s, 'updated', now_s, 'kind', 'running',
  'since', now_s}
if ARGV[11] == '1' then f[#f + 1], f[#f + 2] = 'by', ARGV[7] end
if ARGV[10] ~= '0' then f[#f + 1], f[#f + 2] = 'ttl_at', now_s end
redis.call('HSET', KEYS[1], unpack(f))
if ARGV[10] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[10]) end
redis.call('ZADD', KEYS[2], lease_until, ARGV[1])
redis.call('ZADD', KEYS[3], int(band('running') + now), ARGV[1])
return {}
"#;

/// ARGV: trace id, seq ('' for any), token, lease ms, recovery (0/1).
/// Returns `{code, ...}`: STALE with the current seq; DONE with attempt, seq, mode, the state
/// (recovery; nil for a delivery), whether compensation was requested (0/1) and the
/// sweeper's requeues since the last transition.
const CLAIM: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'seq', 'owner', 'until', 'queued', 'final', 'attempts', 'mode', 'abort', 'requeues')
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
local lease_until = int(now + tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'owner', ARGV[3], 'until', lease_until, 'queued', '0',
  'attempts', int(attempts), 'updated', now_s)
redis.call('ZADD', KEYS[2], lease_until, ARGV[1])
local abort = 0
if h[8] == '1' then abort = 1 end
local requeues = tonumber(h[9]) or 0
if ARGV[5] == '1' then
  return {4, attempts, tonumber(h[1]), h[7], redis.call('HGET', KEYS[1], 'state'), abort, requeues}
end
return {4, attempts, tonumber(h[1]), h[7], false, abort, requeues}
"#;

/// KEYS[4]: the status index. ARGV: trace id, seq, token, status, state ('' for none), lease
/// ms, queued (0/1), final (0/1), ttl ms (0: none), status kind, history limit, abortable
/// (0/1), then the history entries (one each). Runs after [`FENCE`]. Returns a reply code. The
/// sweeper's requeue count goes back to 0 (written only when it is not 0 already, in the same
/// `HSET`). A final record
/// keeps the state only when given one (a stuck saga's, for an operator to resume). A running
/// record's safety TTL is restarted when a tenth of it passed since it was last (`ttl_at`), so
/// a saga's quick transitions do not each pay for a `PEXPIRE`. Likewise its lease: renewed
/// (`until` and the lease index) only when less than 90% of the lease asked for is left, or
/// more than all of it, so a lease after an advance ends between 0.9 and 1 lease from now and
/// a saga's quick transitions do not each pay for a `ZADD`. The owner is not written: the
/// fence checked it is the token already.
const ADVANCE: &str = r#"
if ARGV[12] == '1' and h[5] == '1' then return 5 end
local f = {'status', ARGV[4], 'state', ARGV[5], 'seq', int(tonumber(h[1]) + 1),
  'attempts', '0', 'updated', now_s}
if h[8] and h[8] ~= '0' then f[#f + 1], f[#f + 2] = 'requeues', '0' end
appended(f, h[6], 13, ARGV[11])
moved(f, KEYS[4], ARGV[1], h[4] or 'running', ARGV[10])
if h[5] and ARGV[10] ~= 'running' then redis.call('HDEL', KEYS[1], 'abort') end
local k = #f
if ARGV[8] == '1' then
  f[k + 1], f[k + 2], f[k + 3], f[k + 4], f[k + 5], f[k + 6], f[k + 7], f[k + 8] =
    'final', '1', 'owner', '', 'until', '0', 'queued', '0'
  redis.call('HSET', KEYS[1], unpack(f))
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('PUBLISH', KEYS[3], ARGV[4])
else
  f[k + 1], f[k + 2] = 'queued', ARGV[7]
  k = k + 2
  local lease = tonumber(ARGV[6])
  local left = (tonumber(h[9]) or 0) - now
  local lease_until
  if left < lease * 0.9 or left > lease then
    lease_until = int(now + lease)
    f[k + 1], f[k + 2] = 'until', lease_until
    k = k + 2
  end
  if ARGV[9] ~= '0' and (not h[7] or now - tonumber(h[7]) >= tonumber(ARGV[9]) / 10) then
    redis.call('PEXPIRE', KEYS[1], ARGV[9])
    f[k + 1], f[k + 2] = 'ttl_at', now_s
  elseif ARGV[9] == '0' and h[7] then
    redis.call('PERSIST', KEYS[1])
    redis.call('HDEL', KEYS[1], 'ttl_at')
  end
  redis.call('HSET', KEYS[1], unpack(f))
  if lease_until then redis.call('ZADD', KEYS[2], lease_until, ARGV[1]) end
  return 4
end
redis.call('PEXPIRE', KEYS[1], ARGV[9])
return 4
"#;

/// ARGV: trace id, seq, token, new owner, lease ms, queued (0/1), refund an attempt (0/1),
/// history limit, requeued (0/1: one more sweeper requeue, in the same `HSET`), then the
/// history entries (one each). Runs after [`FENCE`]. Returns a reply code.
const HOLD: &str = r#"
local lease_until = int(now + tonumber(ARGV[5]))
local f = {'owner', ARGV[4], 'until', lease_until, 'queued', ARGV[6], 'updated', now_s}
if ARGV[9] == '1' then f[#f + 1], f[#f + 2] = 'requeues', int((tonumber(h[8]) or 0) + 1) end
if #ARGV > 9 then appended(f, h[6], 10, ARGV[8]) end
redis.call('HSET', KEYS[1], unpack(f))
if ARGV[7] == '1' then
  local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts'))
  if attempts > 0 then redis.call('HSET', KEYS[1], 'attempts', int(attempts - 1)) end
end
redis.call('ZADD', KEYS[2], lease_until, ARGV[1])
return 4
"#;

/// KEYS[1]: the lease index, KEYS[2]: the status index. ARGV: limit, finished ttl ms (0:
/// none).
/// Returns the trace ids whose lease passed, each followed by its lease end (`WITHSCORES`, so
/// the buckets' answers merge oldest first). Also drops the entries of expired final records
/// from the final status indexes (the sweeper calls this periodically, so ending a saga does
/// not pay for it).
const EXPIRED: &str = r#"
if ARGV[2] ~= '0' then
  local before = now - tonumber(ARGV[2])
  for _, kind in ipairs({'stuck', 'completed', 'compensated'}) do
    redis.call('ZREMRANGEBYSCORE', KEYS[2], int(band(kind)), '(' .. int(band(kind) + before))
  end
end
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_s, 'WITHSCORES', 'LIMIT', '0', ARGV[1])
"#;

/// KEYS[2]: the status index. ARGV: lease index prefix, trace id. Deletes the record (and
/// the history it holds), its lease entry and its status index entry.
const REMOVE: &str = r#"
local saga = redis.call('HGET', KEYS[1], 'saga')
redis.call('DEL', KEYS[1])
if saga then redis.call('ZREM', ARGV[1] .. saga, ARGV[2]) end
redis.call('ZREM', KEYS[2], ARGV[2])
return 0
"#;

/// KEYS[3]: the status index. ARGV: trace id, seq, status, state, owner, lease ms, queued
/// (0/1), status kind, history limit, running ttl ms (0: none), compensate (0/1), history
/// entry (none with the history off).
/// Reopens a final record still at `seq`: MISSING, STALE (running, or moved on) or DONE. The
/// caller checked that the record it read at `seq` is stuck.
const REOPEN: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'seq', 'final', 'kind', 'hn')
if not h[1] then return 0 end
if h[2] ~= '1' or h[1] ~= ARGV[2] then return 2 end
local lease_until = int(now + tonumber(ARGV[6]))
local f = {'status', ARGV[3], 'state', ARGV[4], 'seq', int(tonumber(h[1]) + 1), 'final', '0',
  'owner', ARGV[5], 'until', lease_until, 'queued', ARGV[7], 'attempts', '0', 'requeues', '0',
  'updated', now_s}
appended(f, h[4], 12, ARGV[9])
moved(f, KEYS[3], ARGV[1], h[3] or 'stuck', ARGV[8])
if ARGV[10] ~= '0' then f[#f + 1], f[#f + 2] = 'ttl_at', now_s end
redis.call('HSET', KEYS[1], unpack(f))
if ARGV[11] == '1' then
  redis.call('HSET', KEYS[1], 'abort', '1')
else
  redis.call('HDEL', KEYS[1], 'abort')
end
if ARGV[10] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[10])
else
  redis.call('PERSIST', KEYS[1])
  redis.call('HDEL', KEYS[1], 'ttl_at')
end
redis.call('ZADD', KEYS[2], lease_until, ARGV[1])
return 4
"#;

/// ARGV: history limit, history entry (none with the history off). Marks a running saga for compensation: MISSING,
/// FINISHED or DONE.
const REQUEST_COMPENSATION: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'final', 'hn')
if not h[1] then return 0 end
if h[1] == '1' then return 1 end
local f = {'abort', '1', 'updated', now_s}
appended(f, h[2], 2, ARGV[1])
redis.call('HSET', KEYS[1], unpack(f))
return 4
"#;

/// The record fields a listing returns (everything but the state and the history), in reply
/// order.
pub(super) const LISTED_FIELDS: [&str; 16] = [
    "saga", "fp", "mode", "status", "seq", "owner", "until", "queued", "attempts", "final",
    "created", "updated", "since", "abort", "kind", "requeues",
];

/// KEYS[1]: the status index. ARGV: record key prefix, newest score, cursor score ('' for the
/// start), cursor trace id, page size, saga name ('' for any), most index entries to examine,
/// lowest score (the family's band; see [`status_score`]). Reads the index in order from the cursor and returns
/// `{more, last score, last id, id, fields, id, fields, ...}`: up to page size + 1 matching
/// sagas (the extra one says there is more), each with [`LISTED_FIELDS`]. `more` is 1 when
/// the examination bound stopped the read first: the listing goes on after the last entry
/// examined. Entries whose record expired are dropped from the index on the way.
const LIST: &str = r#"
local min = ARGV[8]
if ARGV[3] ~= '' then min = ARGV[3] end
local cursor = tonumber(ARGV[3])
local want = tonumber(ARGV[5]) + 1
local budget = tonumber(ARGV[7])
local out = {0, false, false}
local found, offset, examined = 0, 0, 0
local gone = {}
while found < want do
  local page = redis.call('ZRANGEBYSCORE', KEYS[1], min, ARGV[2], 'WITHSCORES', 'LIMIT', int(offset), '100')
  if #page == 0 then break end
  offset = offset + #page / 2
  for i = 1, #page, 2 do
    local id, score = page[i], tonumber(page[i + 1])
    if not (cursor and score == cursor and id <= ARGV[4]) then
      if examined >= budget then
        out[1] = 1
        return out
      end
      examined = examined + 1
      out[2], out[3] = page[i + 1], id
      local fields = redis.call('HMGET', ARGV[1] .. id, 'saga', 'fp', 'mode', 'status', 'seq',
        'owner', 'until', 'queued', 'attempts', 'final', 'created', 'updated', 'since', 'abort', 'kind',
        'requeues')
      if not fields[1] then
        gone[#gone + 1] = id
      elseif ARGV[6] == '' or fields[1] == ARGV[6] then
        out[#out + 1] = id
        out[#out + 1] = fields
        found = found + 1
        if found >= want then break end
      end
    end
  end
end
for _, id in ipairs(gone) do redis.call('ZREM', KEYS[1], id) end
return out
"#;
