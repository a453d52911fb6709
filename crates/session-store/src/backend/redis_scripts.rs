//! The Lua scripts that make each Redis operation one atomic step.

use redis::Script;

/// KEYS: session. ARGV: version, data, expires_ms. Returns 1 if inserted, 0 if the id is taken.
pub(super) const INSERT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2], 'e', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
";

/// KEYS: session. ARGV: expected version, data, expires_ms. The expiry kept is the later of
/// the stored and the given one, so a save of an older copy never undoes a touch.
/// Returns {0, new version, expires_ms} | {1, 0, 0} (not found) | {2, stored version, 0}
/// (conflict).
pub(super) const SAVE: &str = r"
local stored = redis.call('HMGET', KEYS[1], 'v', 'e')
local v = stored[1]
if not v then return {1, 0, 0} end
if v ~= ARGV[1] then return {2, tonumber(v), 0} end
local nv = tonumber(v) + 1
local e = ARGV[3]
if stored[2] and tonumber(stored[2]) > tonumber(e) then e = stored[2] end
redis.call('HSET', KEYS[1], 'v', string.format('%d', nv), 'd', ARGV[2], 'e', e)
redis.call('PEXPIREAT', KEYS[1], e)
return {0, nv, tonumber(e)}
";

/// KEYS: session. ARGV: expires_ms. Returns 1 if the session existed.
pub(super) const TOUCH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'e', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
";

/// Shared by HEARTBEAT and PRESENCE: drops members whose expiry (the score) is past ARGV[n].
const PRUNE: &str = r"
local function prune(members, users, now)
  local gone = redis.call('ZRANGEBYSCORE', members, '-inf', now)
  for i = 1, #gone do
    redis.call('ZREM', members, gone[i])
    redis.call('HDEL', users, gone[i])
  end
end
";

/// KEYS: members (zset, score = expiry ms), users (hash). ARGV: session, user, expires_ms,
/// now_ms. Both keys expire with their longest-lived member.
pub(super) fn heartbeat() -> String {
    format!(
        "{PRUNE}
prune(KEYS[1], KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
redis.call('PEXPIREAT', KEYS[2], last[2])
return 1
"
    )
}

/// KEYS: members, users. ARGV: now_ms. Returns {session, expires_ms, user, …}.
pub(super) fn presence() -> String {
    format!(
        "{PRUNE}
prune(KEYS[1], KEYS[2], ARGV[1])
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {{}}
for i = 1, #members, 2 do
  out[#out + 1] = members[i]
  out[#out + 1] = members[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], members[i]) or ''
end
return out
"
    )
}

/// Makes sure a room has an epoch; a room without one has lost its history, so any stream
/// left over is dropped with it (its offsets belong to a forgotten epoch).
const ENSURE_EPOCH: &str = r"
local function ensure_epoch(meta, stream, fresh)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'epoch', fresh, 'top', 0)
    epoch = fresh
  end
  return epoch
end
";

/// KEYS: meta (hash: epoch, top), stream. ARGV: body, fresh epoch, max length.
/// Returns {offset, epoch}.
pub(super) fn publish() -> String {
    format!(
        "{ENSURE_EPOCH}
local epoch = ensure_epoch(KEYS[1], KEYS[2], ARGV[2])
local top = redis.call('HINCRBY', KEYS[1], 'top', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], top .. '-1', 'b', ARGV[1])
return {{top, epoch}}
"
    )
}

/// KEYS: meta, stream. ARGV: first id to return, limit, fresh epoch.
/// Returns {top, epoch, earliest, entries}.
pub(super) fn history() -> String {
    format!(
        "{ENSURE_EPOCH}
local epoch = ensure_epoch(KEYS[1], KEYS[2], ARGV[3])
local top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0')
local earliest = top + 1
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #first > 0 then earliest = tonumber(string.match(first[1][1], '^(%d+)')) end
local entries = {{}}
if tonumber(ARGV[2]) > 0 then
  entries = redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])
end
return {{top, epoch, earliest, entries}}
"
    )
}

/// Every script, hashed once.
#[derive(Debug)]
pub(super) struct Scripts {
    pub(super) insert: Script,
    pub(super) save: Script,
    pub(super) touch: Script,
    pub(super) heartbeat: Script,
    pub(super) presence: Script,
    pub(super) publish: Script,
    pub(super) history: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            insert: Script::new(INSERT),
            save: Script::new(SAVE),
            touch: Script::new(TOUCH),
            heartbeat: Script::new(&heartbeat()),
            presence: Script::new(&presence()),
            publish: Script::new(&publish()),
            history: Script::new(&history()),
        }
    }
}
