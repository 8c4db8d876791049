-- unretire_units: puts units back after Postgres refused to record their retirement.
--
-- KEYS: the eight keys of one stripe of the sale (see common.lua).
-- ARGV: the unit numbers.
-- Returns the number of units returned.
local units = {}
for i = 1, #ARGV do units[i] = tonumber(ARGV[i]) end
push_free(units)
redis.call('HINCRBY', K_META, 'total', #units)
return #units
