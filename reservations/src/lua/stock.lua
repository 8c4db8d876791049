-- stock: one stripe's counters in one atomic read.
--
-- KEYS: the eight keys of the stripe (see common.lua).
-- ARGV: none.
-- Returns {total, free, held, sold, stripes the sale was loaded with}, then for a
-- multi-variant sale {total, free, held, sold} of each variant in order; or {} when the
-- state is missing.
if redis.call('EXISTS', K_META) == 0 then return {} end
check_variant_keys()
local m = redis.call('HMGET', K_META, 'total', 'held', 'sold', 'stripes')
local reply = {tonumber(m[1]), redis.call('LLEN', K_FREE), tonumber(m[2]), tonumber(m[3]),
               tonumber(m[4]) or 1}
local n = variant_count()
if n > 1 then
  -- The sale's free units are every variant's.
  for k = 1, n - 1 do reply[2] = reply[2] + redis.call('LLEN', free_key(k)) end
  for k = 0, n - 1 do
    local v = redis.call('HMGET', K_META, 'total:' .. k, 'held:' .. k, 'sold:' .. k)
    reply[#reply + 1] = tonumber(v[1])
    reply[#reply + 1] = redis.call('LLEN', free_key(k))
    reply[#reply + 1] = tonumber(v[2])
    reply[#reply + 1] = tonumber(v[3])
  end
end
return reply
