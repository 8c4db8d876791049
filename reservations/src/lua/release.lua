-- release: the shopper gives a hold back; its units are free at once.
--
-- KEYS: the eight keys of one stripe of the sale (see common.lua).
-- ARGV: 1 hold id, 2 shopper id.
-- Returns {'ok'}, {'missing'} (no hold under this id), {'not_found'} (another
-- shopper's), or {'not_held', status}.
check_variant_keys()
local id, shopper = ARGV[1], ARGV[2]
local hold = load_hold(id)
if hold == nil then return {'missing'} end
if hold.o ~= shopper then return {'not_found'} end
if hold.s ~= 'held' then return {'not_held', hold.s} end
release_hold(id, hold, 'released')
return {'ok'}
