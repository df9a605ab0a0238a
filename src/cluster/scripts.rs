//! The Lua scripts run inside Redis, and the keys they touch. Each
//! operation is one script, so it is atomic across the fleet; each reads
//! the time from Redis (`TIME`), so the nodes' clocks do not matter.
//!
//! Keys (all under `sealpost:`):
//! - `conn:<destination>`: a sorted set of connection leases, member
//!   `<node>/<n>`, score the lease's expiry in Unix milliseconds;
//! - `rate:<tenant>` and `rate:<tenant>/<destination>`: a GCRA theoretical
//!   arrival time in Unix microseconds;
//! - `nodes`: a sorted set of node names, score last heartbeat (ms);
//! - `node:<name>`: the node's [`super::fleet::NodeReport`] as JSON;
//! - `mta-sts:<domain>`: a shared MTA-STS policy (see [`super::mta_sts`]).

use redis::Script;

pub(crate) const PREFIX: &str = "sealpost:";

pub(crate) fn connections_key(destination: &str) -> String {
    format!("{PREFIX}conn:{}", destination.to_ascii_lowercase())
}

pub(crate) fn tenant_rate_key(tenant: &str) -> String {
    format!("{PREFIX}rate:{tenant}")
}

pub(crate) fn tenant_destination_rate_key(tenant: &str, destination: &str) -> String {
    format!("{PREFIX}rate:{tenant}/{}", destination.to_ascii_lowercase())
}

pub(crate) const NODES_KEY: &str = "sealpost:nodes";

pub(crate) fn node_key(node: &str) -> String {
    format!("{PREFIX}node:{node}")
}

pub(crate) fn mta_sts_key(domain: &str) -> String {
    format!("{PREFIX}mta-sts:{}", domain.to_ascii_lowercase())
}

/// How long a node's name and report stay after its last heartbeat, so
/// that the fleet view can show it as silent: one hour.
pub(crate) const FORGET_NODE_AFTER_MS: u64 = 3_600_000;

/// KEYS[1] the lease set; ARGV member, limit, ttl (ms). Drops expired
/// leases, then adds `member` if fewer than `limit` remain.
/// Returns the number of leases held after the call if granted, else
/// `-held`.
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[2]) then
  return -held
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return held + 1
";

/// KEYS[1] the lease set; ARGV member, ttl (ms). The connection is open:
/// its lease is (re)written whatever the count (after an outage a lease
/// that expired comes back). Returns 1 if the lease was still there.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if score and tonumber(score) > now then return 1 end
return 0
";

/// KEYS[1] the lease set; ARGV member. Returns 1 if it was held.
const RELEASE: &str = r"
return redis.call('ZREM', KEYS[1], ARGV[1])
";

/// GCRA over every key at once: KEYS the rate keys; ARGV per key its
/// interval and tolerance (microseconds). Charges all or none.
/// Returns 0 if admitted, else the wait in microseconds.
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  if tat - now <= tolerance then
    tats[i] = tat + interval
  else
    local w = tat - now - tolerance
    if w > wait then wait = w end
  end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  local ttl = math.ceil((tats[i] - now) / 1000) + 1
  redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', ttl)
end
return 0
";

/// KEYS[1] the node set; ARGV node, alive window (ms), forget after (ms).
/// Records this node's heartbeat; returns how many nodes were heard of
/// within the window (this one included).
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
return redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[2]), '+inf')
";

/// No keys. The server's time in Unix milliseconds.
const NOW_MS: &str = r"
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// The scripts, loaded once per [`super::Cluster`] (sent by hash, and
/// in full when Redis does not know the hash yet).
pub(crate) struct Scripts {
    pub acquire: Script,
    pub renew: Script,
    pub release: Script,
    pub admit: Script,
    pub heartbeat: Script,
    pub now_ms: Script,
}

impl Default for Scripts {
    fn default() -> Scripts {
        Scripts {
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
            admit: Script::new(ADMIT),
            heartbeat: Script::new(HEARTBEAT),
            now_ms: Script::new(NOW_MS),
        }
    }
}
