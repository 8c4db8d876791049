-- release: the shopper gives a hold back; its units are free at once.
--
-- KEYS: the eight keys of one stripe of the sale (see common.lua).
-- ARGV: 1 hold id, 2 shopper id.
-- Returns {'ok'}, {'not_found'} (missing or another shopper's), or {'not_held', status}.
local id, shopper = ARGV[1], ARGV[2]
local hold = load_hold(id)
if hold == nil or hold.o ~= shopper then return {'not_found'} end
if hold.s ~= 'held' then return {'not_held', hold.s} end
release_hold(id, hold, 'released')
return {'ok'}
