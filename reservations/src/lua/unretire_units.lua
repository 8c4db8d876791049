-- unretire_units: puts units back after Postgres refused to record their retirement.
--
-- KEYS: the eight keys of one stripe of the sale (see common.lua).
-- ARGV: the unit numbers.
-- Returns the number of units returned.
check_variant_keys()
local units = {}
for i = 1, #ARGV do units[i] = tonumber(ARGV[i]) end
if variant_count() > 1 then
  -- Each unit back to its own variant's list (meta.ranges).
  for _, unit in ipairs(units) do
    local v = variant_of(unit)
    redis.call('RPUSH', free_key(v), unit)
    redis.call('HINCRBY', K_META, 'total:' .. v, 1)
  end
else
  push_free(units)
end
redis.call('HINCRBY', K_META, 'total', #units)
return #units
