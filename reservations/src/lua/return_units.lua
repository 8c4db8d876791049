-- return_units: a cancelled or refunded order's units leave `sold` (order_life).
--
-- KEYS: the eight keys of the hold's stripe (see common.lua); a hold's units are all
-- in its own stripe.
-- ARGV: 1 hold id (the order's reservation), 2 mode: 'restock' (the units go back on
-- their variants' free lists) or 'retire' (they leave the sale: total goes down).
-- Returns {'ok', units moved}, {'no_state'}, {'missing'} (Redis does not know the
-- hold: it was rebuilt from Postgres, which already counts the units where they are
-- now) or {'noop', status} (the hold is not `checked_out`: already returned).
-- Idempotent: the hold moves from `checked_out` to `returned` exactly once, and only
-- that move moves units, so a repeated call (a retry, the completer) changes nothing.
if redis.call('EXISTS', K_META) == 0 then return {'no_state'} end
check_variant_keys()
local varied = variant_count() > 1
local id, mode = ARGV[1], ARGV[2]
local hold = load_hold(id)
if hold == nil then return {'missing'} end
if hold.s ~= 'checked_out' then return {'noop', hold.s} end
for _, line in ipairs(hold_lines(hold)) do
  if mode == 'restock' then push_to(free_key(line.v), line.units) end
  if varied then
    redis.call('HINCRBY', K_META, 'sold:' .. line.v, -line.q)
    if mode ~= 'restock' then redis.call('HINCRBY', K_META, 'total:' .. line.v, -line.q) end
  end
  if hold.l then redis.call('HINCRBY', K_USERS, hold.o .. ':' .. line.v, -line.q) end
end
redis.call('HINCRBY', K_META, 'sold', -hold.q)
if mode ~= 'restock' then redis.call('HINCRBY', K_META, 'total', -hold.q) end
redis.call('HINCRBY', K_USERS, hold.o, -hold.q)
hold.s = 'returned'
save_hold(id, hold)
return {'ok', hold.q}
