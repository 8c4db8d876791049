-- stock: one stripe's counters in one atomic read.
--
-- KEYS: the eight keys of the stripe (see common.lua).
-- ARGV: none.
-- Returns {total, free, held, sold, stripes the sale was loaded with}, or {} when the
-- state is missing.
if redis.call('EXISTS', K_META) == 0 then return {} end
local m = redis.call('HMGET', K_META, 'total', 'held', 'sold', 'stripes')
return {tonumber(m[1]), redis.call('LLEN', K_FREE), tonumber(m[2]), tonumber(m[3]),
        tonumber(m[4]) or 1}
