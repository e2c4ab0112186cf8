"""The Lua scripts behind :class:`~gateway.quota.redis_quota.RedisQuota`.

Each script touches the keys of one tenant only, all under the tenant's hash tag
(:mod:`gateway.keyspace`): one slot, so they run on a Redis Cluster as on one
server. The clock is the server's (``TIME``), so replicas with skewed clocks agree.
The admit and usage scripts name the day's budget key from that clock (the key
base plus the server's UTC day): a key not passed in ``KEYS``, which a cluster
accepts because it carries the same hash tag, hence the same slot.
"""

from __future__ import annotations

__all__ = ["LUA_ADMIT", "LUA_CIVIL_FROM_DAYS", "LUA_SETTLE", "LUA_USAGE"]

# Days since 1970-01-01 -> "YYYY-MM-DD" (H. Hinnant's civil_from_days); Lua in
# Redis has no date library, and the day must come from the server's clock.
LUA_CIVIL_FROM_DAYS = """
local function civil(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
                          - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02d', y, m, d)
end
"""

# KEYS[1] window log (sorted set: score = admission time in µs, member unique)
# KEYS[2] token budget key base; the script appends the server's UTC day
#         (same hash slot: both keys carry the tenant as hash tag)
# ARGV: rpm_limit, window_us, member, token_limit, estimate, key_lifetime_days
# Returns "rpm_ok tokens_ok window_count now_us rpm_reset_us used reserved day
#          day_number" (space-separated); counts are after recording when admitted.
LUA_ADMIT = LUA_CIVIL_FROM_DAYS + """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now_us = sec * 1000000 + tonumber(t[2])
local rpm_limit = tonumber(ARGV[1])
local window_us = tonumber(ARGV[2])
local token_limit = tonumber(ARGV[4])
local estimate = tonumber(ARGV[5])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_us - window_us)
local count = redis.call('ZCARD', KEYS[1])
local rpm_ok = count < rpm_limit

local day_number = math.floor(sec / 86400)
local day = civil(day_number)
local token_key = KEYS[2] .. day
local budget = redis.call('HMGET', token_key, 'used', 'reserved')
local used = tonumber(budget[1]) or 0
local reserved = tonumber(budget[2]) or 0
local tokens_ok = used + reserved + estimate <= token_limit

local rpm_reset_us
if rpm_ok and tokens_ok then
  redis.call('ZADD', KEYS[1], now_us, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window_us / 1000) + 1000)
  count = count + 1
  if estimate > 0 then
    reserved = redis.call('HINCRBY', token_key, 'reserved', estimate)
    redis.call('EXPIREAT', token_key, (day_number + tonumber(ARGV[6])) * 86400)
  end
end
if rpm_ok then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  rpm_reset_us = (tonumber(oldest[2]) or now_us) + window_us
else
  -- the entry whose departure brings the count below the limit
  local nth = redis.call('ZRANGE', KEYS[1], count - rpm_limit, count - rpm_limit, 'WITHSCORES')
  rpm_reset_us = tonumber(nth[2]) + window_us
end
-- one bulk string, not an array: a single reply line is cheaper for the client to parse
return string.format('%d %d %d %.0f %.0f %d %d %s %d', rpm_ok and 1 or 0,
                     tokens_ok and 1 or 0, count, now_us, rpm_reset_us, used, reserved,
                     day, day_number)
"""

# KEYS[1] the admission day's budget key
# ARGV: reserved (to give back), actual (to record), expire_at (epoch s)
# A reservation that already expired with its day is not given back twice.
LUA_SETTLE = """
local give_back = tonumber(ARGV[1])
local actual = tonumber(ARGV[2])
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved')) or 0
if give_back > reserved then give_back = reserved end
if give_back > 0 then reserved = redis.call('HINCRBY', KEYS[1], 'reserved', -give_back) end
local used
if actual > 0 then
  used = redis.call('HINCRBY', KEYS[1], 'used', actual)
else
  used = tonumber(redis.call('HGET', KEYS[1], 'used')) or 0
end
if used > 0 or reserved > 0 then redis.call('EXPIREAT', KEYS[1], ARGV[3]) end
return used
"""

# Read-only view for GET /v1/usage.
# KEYS[1] window log, KEYS[2] token budget key base; ARGV: window_us
LUA_USAGE = LUA_CIVIL_FROM_DAYS + """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now_us = sec * 1000000 + tonumber(t[2])
local window_us = tonumber(ARGV[1])
local count = redis.call('ZCOUNT', KEYS[1], '(' .. (now_us - window_us), '+inf')
local reset_us = now_us
if count > 0 then
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now_us - window_us), '+inf',
                            'WITHSCORES', 'LIMIT', 0, 1)
  reset_us = tonumber(oldest[2]) + window_us
end
local day_number = math.floor(sec / 86400)
local day = civil(day_number)
local budget = redis.call('HMGET', KEYS[2] .. day, 'used', 'reserved')
return {count, now_us, reset_us, tonumber(budget[1]) or 0, tonumber(budget[2]) or 0,
        day, day_number}
"""
