-- sync_meta: copies a changed sale definition (not its units) into Redis.
--
-- KEYS: the eight keys of one stripe of the sale (see common.lua).
-- ARGV: 1 state, 2 starts_ms, 3 ends_ms, 4 limit, 5 ttl_ms, 6 version.
-- Returns 1, or 0 when the state is missing (the caller then loads it whole).
-- An older version never overwrites a newer one (two admin requests racing).
if redis.call('EXISTS', K_META) == 0 then return 0 end
local current = tonumber(redis.call('HGET', K_META, 'version')) or 0
if current > tonumber(ARGV[6]) then return 1 end
redis.call('HSET', K_META, 'state', ARGV[1], 'starts_ms', ARGV[2], 'ends_ms', ARGV[3],
  'limit', ARGV[4], 'ttl_ms', ARGV[5], 'version', ARGV[6])
return 1
