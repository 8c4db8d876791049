-- retire_units: takes free units out of sale (a merchant's negative stock delta).
--
-- KEYS: the eight keys of one stripe of the sale (see common.lua).
-- ARGV: 1 count.
-- Returns {'ok', unit...}, {'insufficient', free}, or {'no_state'}.
-- All or nothing: held units are never taken from their shoppers.
if redis.call('EXISTS', K_META) == 0 then return {'no_state'} end
local count = tonumber(ARGV[1])
local free = redis.call('LLEN', K_FREE)
if free < count then return {'insufficient', free} end
local units = redis.call('RPOP', K_FREE, count)
redis.call('HINCRBY', K_META, 'total', -count)
local reply = {'ok'}
for _, unit in ipairs(units) do reply[#reply + 1] = unit end
return reply
