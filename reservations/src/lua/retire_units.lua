-- retire_units: takes free units out of sale (a merchant's negative stock delta).
--
-- KEYS: the eight keys of one stripe of the sale (see common.lua).
-- ARGV: 1 count.
-- Returns {'ok', unit...}, {'insufficient', free}, or {'no_state'}.
-- All or nothing: held units are never taken from their shoppers.
-- ARGV 2 (a multi-variant sale): the ordinal of the variant to retire units of.
if redis.call('EXISTS', K_META) == 0 then return {'no_state'} end
local variant = tonumber(ARGV[2] or '')
if variant then check_variant_keys() end
local list = free_key(variant or 0)
local count = tonumber(ARGV[1])
local free = redis.call('LLEN', list)
if free < count then return {'insufficient', free} end
local units = redis.call('RPOP', list, count)
redis.call('HINCRBY', K_META, 'total', -count)
if variant then redis.call('HINCRBY', K_META, 'total:' .. variant, -count) end
local reply = {'ok'}
for _, unit in ipairs(units) do reply[#reply + 1] = unit end
return reply
