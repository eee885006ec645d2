-- umanage-ratelimit: every strategy, all-or-nothing over KEYS.
-- ARGV per key i (6 values from 6*(i-1)+1): kind, limit, window_us, burst, cost, emission_us.
-- Time is the server's (TIME). Numbers given to redis.call are formatted with %.17g, since
-- Lua's default conversion keeps only 14 digits.
-- Reply: {all_allowed, then per key: allowed, remaining, reset_us, retry_us (-1 = never)}.
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local floor, ceil, max, min = math.floor, math.ceil, math.max, math.min
local EPS = 1e-6

local function num(x) return string.format('%.17g', x) end

local function weighted(prev, w, e) return floor(prev * (w - e) / w) end

local function first_fit(prev, w, from, room)
  if weighted(prev, w, from) <= room then return from end
  local e = w - floor((room + 1) * w / prev)
  if e < from then e = from end
  if e > w then e = w end
  while e > from and weighted(prev, w, e - 1) <= room do e = e - 1 end
  while e < w and weighted(prev, w, e) > room do e = e + 1 end
  return e
end

local n = #KEYS
local out = {}
local writes = {}
local expiry = {}
local all = 1

for i = 1, n do
  local b = (i - 1) * 6
  local kind = tonumber(ARGV[b + 1])
  local limit = tonumber(ARGV[b + 2])
  local w = tonumber(ARGV[b + 3])
  local burst = tonumber(ARGV[b + 4])
  local c = tonumber(ARGV[b + 5])
  local em = tonumber(ARGV[b + 6])
  local key = KEYS[i]
  local allowed, remaining, reset, retry, exp, write = false, 0, 0, -1, now, nil

  if kind == 1 then -- fixed window
    local h = redis.call('HMGET', key, 'a', 'b')
    local start = now - (now % w)
    local cnt = 0
    local s = tonumber(h[1])
    if s and s >= start then start = s; cnt = tonumber(h[2]) or 0 end
    local fin = start + w
    allowed = cnt + c <= limit
    local used = cnt
    if allowed then used = cnt + c end
    remaining = limit - used
    if used > 0 then reset = fin - now end
    if not allowed and c <= limit then retry = fin - now end
    exp = fin
    write = {'HSET', key, 'a', num(start), 'b', num(used)}
  elseif kind == 2 then -- sliding log
    redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now - w))
    local items = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    local total = 0
    local costs, times = {}, {}
    for j = 1, #items, 2 do
      local m = items[j]
      local cost = tonumber(string.match(m, ':(%d+)$'))
      total = total + cost
      costs[#costs + 1] = cost
      times[#times + 1] = tonumber(items[j + 1])
    end
    allowed = total + c <= limit
    if not allowed and c <= limit then
      local need = total + c - limit
      local acc, at = 0, now
      for j = 1, #costs do
        acc = acc + costs[j]
        if acc >= need then at = times[j] + w; break end
      end
      retry = at - now
    end
    local newest = times[#times]
    if allowed then
      total = total + c
      newest = now
      write = {'ZADD', key, num(now), string.format('%.0f:%d:%d', now, #times, c)}
    end
    remaining = limit - total
    if newest then reset = newest + w - now; exp = newest + w end
  elseif kind == 3 then -- sliding counter
    local h = redis.call('HMGET', key, 'a', 'b', 'c')
    local start = now - (now % w)
    local prev, curr = 0, 0
    local s = tonumber(h[1])
    if s then
      if s >= start then
        start = s; prev = tonumber(h[2]) or 0; curr = tonumber(h[3]) or 0
      elseif s == start - w then
        prev = tonumber(h[3]) or 0
      end
    end
    local e = min(max(now - start, 0), w)
    local weight = weighted(prev, w, e)
    allowed = weight + curr + c <= limit
    local after = curr
    if allowed then after = curr + c end
    remaining = max(limit - weight - after, 0)
    if after > 0 then reset = start + 2 * w - now
    elseif weight > 0 then reset = start + w - now end
    if not allowed and c <= limit then
      if curr + c <= limit then
        retry = start + first_fit(prev, w, e, limit - curr - c) - now
      else
        retry = start + w + first_fit(curr, w, 0, limit - c) - now
      end
    end
    exp = start + 2 * w
    write = {'HSET', key, 'a', num(start), 'b', num(prev), 'c', num(after)}
  elseif kind == 4 then -- token bucket
    local h = redis.call('HMGET', key, 'a', 'b')
    local tokens, last = burst, now
    if h[1] then tokens = tonumber(h[1]); last = tonumber(h[2]) end
    if now > last then
      local ticks = floor((now - last) / w)
      if ticks >= ceil((burst - tokens) / limit) then tokens = burst
      else tokens = tokens + ticks * limit end
      last = last + ticks * w
    end
    if tokens == burst then last = now end
    allowed = c <= tokens
    local after = tokens
    if allowed then after = tokens - c end
    remaining = after
    local full_at = last + ceil((burst - after) / limit) * w
    if after < burst then reset = full_at - now end
    if not allowed and c <= burst then retry = last + ceil((c - tokens) / limit) * w - now end
    exp = now + max(full_at - now, 0)
    write = {'HSET', key, 'a', num(after), 'b', num(last)}
  elseif kind == 5 then -- leaky bucket
    local h = redis.call('HMGET', key, 'a', 'b')
    local level, last = 0, now
    if h[1] then level = tonumber(h[1]); last = tonumber(h[2]) end
    if now > last then
      level = max(level - (now - last) * limit / w, 0)
      last = now
    end
    allowed = c <= burst and level + c <= burst + EPS
    local after = level
    if allowed then after = level + c end
    remaining = max(floor(burst - after + EPS), 0)
    local drain = max(ceil(after * w / limit), 0)
    reset = max(last + drain - now, 0)
    if not allowed and c <= burst then
      retry = max(last + max(ceil((level + c - burst) * w / limit), 0) - now, 0)
    end
    exp = last + drain
    write = {'HSET', key, 'a', num(after), 'b', num(last)}
  else -- gcra: a plain string value (shared with gcra.lua); another type counts as none
    local v = redis.pcall('GET', key)
    local tat = type(v) == 'string' and tonumber(v) or now
    if tat < now then tat = now end
    local tau = em * burst
    if c > burst then
      allowed = false
      remaining = floor((tau - (tat - now)) / em)
      reset = tat - now
      exp = tat
    else
      local due = tat + c * em
      allowed = due - now <= tau
      local stored = tat
      if allowed then stored = due else retry = due - tau - now end
      remaining = floor((tau - (stored - now)) / em)
      reset = stored - now
      exp = stored
      write = {'SET', key, num(due)}
    end
  end

  if not allowed then all = 0 end
  out[#out + 1] = allowed and 1 or 0
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
  writes[i] = write
  expiry[i] = max(ceil((exp - now) / 1000), 1)
end

for i = 1, n do
  if all == 1 and writes[i] then
    redis.call(unpack(writes[i]))
    redis.call('PEXPIRE', KEYS[i], num(expiry[i]))
  elseif redis.call('PTTL', KEYS[i]) == -1 then
    -- a key that lost its TTL (restored, or written by hand) gets one back
    redis.call('PEXPIRE', KEYS[i], num(expiry[i]))
  end
end

table.insert(out, 1, all)
return out
