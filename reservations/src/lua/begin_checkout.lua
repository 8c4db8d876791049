-- begin_checkout: moves a hold from `held` to `committing` so the sweeper leaves it
-- alone while payment and the order transaction run.
--
-- KEYS: the eight keys of one stripe of the sale (see common.lua).
-- ARGV: 1 hold id, 2 shopper id, 3 now_ms, 4 order id of this attempt.
-- Returns one of:
--   {'ok', quantity, deadline_ms, unit...}
--   {'missing'}             no such hold (lost with Redis state, or never existed)
--   {'not_found'}           another shopper's hold
--   {'committing'}          another checkout of this hold is in flight
--   {'not_held', status}    released, expired or checked out
--   {'expired'}             its deadline passed (not yet swept)
local id, shopper, now, order = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local hold = load_hold(id)
if hold == nil then return {'missing'} end
if hold.o ~= shopper then return {'not_found'} end
if hold.s == 'committing' then return {'committing'} end
if hold.s ~= 'held' then return {'not_held', hold.s} end
if hold.d <= now then return {'expired'} end
hold.s = 'committing'
hold.r = order
save_hold(id, hold)
redis.call('ZREM', K_DEADLINES, id)
redis.call('ZADD', K_COMMITTING, now, id)
local reply = {'ok', hold.q, hold.d}
for _, unit in ipairs(hold.u) do reply[#reply + 1] = unit end
return reply
