-- umanage-ratelimit: one GCRA check, the hot path of RedisRateLimiter::check (the general
-- script check.lua does the same for GCRA inside a batch; both store the theoretical
-- arrival time as a plain string value, so they share state).
-- KEYS[1]: the key. ARGV: burst, cost, emission interval (µs).
-- Time is the server's (TIME). Reply: {allowed, remaining, reset_us, retry_us (-1 = never)}.
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local key = KEYS[1]
local burst = tonumber(ARGV[1])
local c = tonumber(ARGV[2])
local em = tonumber(ARGV[3])
-- a value of another type (a key written by an older version) counts as no state
local v = redis.pcall('GET', key)
local tat = type(v) == 'string' and tonumber(v) or now
if tat < now then tat = now end
local tau = em * burst
local due = tat + c * em
if c <= burst and due - now <= tau then
  -- %d: the value is a whole number of µs, above the 14 digits Lua prints by default
  redis.call('SET', key, string.format('%d', due), 'PX', math.max(math.ceil((due - now) / 1000), 1))
  return {1, math.floor((tau - (due - now)) / em), due - now, -1}
end
if redis.call('PTTL', key) == -1 then
  -- a key that lost its TTL (restored, or written by hand) gets one back
  redis.call('PEXPIRE', key, math.max(math.ceil((tat - now) / 1000), 1))
end
local retry = -1
if c <= burst then retry = due - tau - now end
return {0, math.floor((tau - (tat - now)) / em), tat - now, retry}
