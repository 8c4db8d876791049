-- reserve: takes `quantity` free units of one stripe for one shopper, all or none.
--
-- KEYS: the eight keys of the stripe (see common.lua).
-- ARGV: 1 now_ms, 2 new hold id, 3 shopper id, 4 quantity,
--       5 idempotency key ('' when none), 6 the stripe count the caller expects,
--       7 '1' when this is the shopper's home stripe (only there is the shopper
--       recorded in `reserved`, so the stripes' sets never overlap).
-- Returns one of:
--   {'ok', hold id, deadline_ms, replayed (0|1)}
--   {'no_state'}            the stripe's state is not in Redis (caller rebuilds, retries)
--   {'stripes', n}          the sale was loaded with n stripes, not ARGV[6]
--   {'elsewhere', k}        the first answer to this key is a hold in stripe k
--   {'idem_mismatch'}       the key was used with another quantity
--   {'not_live'}            before start, after end, paused or ended
--   {'limit', limit}        held + bought + requested would pass the per-shopper limit
--                           (as far as this stripe knows)
--   {'sold_out', free}      fewer free units than requested in this stripe
--   {'variant_required'}    the sale has several variants: a cart (reserve_cart) names them
local now, id, shopper, qty, key =
  tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local m = redis.call('HMGET', K_META, 'state', 'starts_ms', 'ends_ms', 'limit', 'ttl_ms',
  'stripes', 'variants')
-- `state` is written with the rest of meta by load, in one script, and no script writes
-- meta without it: no `state`, no meta (one call less than an EXISTS first).
if not m[1] then return {'no_state'} end
local stripes = tonumber(m[6]) or 1
if stripes ~= tonumber(ARGV[6]) then return {'stripes', stripes} end
if m[7] then return {'variant_required'} end

-- A retry with the same key answers the first result, whatever happened since.
local idem_field = shopper .. ':' .. key
if key ~= '' then
  local previous = redis.call('HGET', K_IDEM, idem_field)
  if previous then
    local elsewhere = string.match(previous, '^@(%d+)$')
    if elsewhere then return {'elsewhere', tonumber(elsewhere)} end
    local hold = load_hold(previous)
    if hold == nil or hold.q ~= qty then return {'idem_mismatch'} end
    return {'ok', previous, hold.d, 1}
  end
end

if m[1] ~= 'active' or now < tonumber(m[2]) or now >= tonumber(m[3]) then
  return {'not_live'}
end
local limit = tonumber(m[4])
local have = tonumber(redis.call('HGET', K_USERS, shopper)) or 0
if have + qty > limit then return {'limit', limit} end
-- Pop first and put back when short (the list as it was): the hold path costs one
-- call, not an LLEN and then the pop.
local units = redis.call('LPOP', K_FREE, qty) or {}
if #units < qty then
  for i = #units, 1, -1 do redis.call('LPUSH', K_FREE, units[i]) end
  -- Told sold out, the shopper has had their turn: the waiting room counts them as
  -- shown up, not as a buyer still to come, so units that return later (expired or
  -- released holds) are offered to the line instead of waiting for them.
  if ARGV[7] == '1' then redis.call('SADD', K_RESERVED, shopper) end
  return {'sold_out', #units}
end

for i, unit in ipairs(units) do units[i] = tonumber(unit) end
local deadline = now + tonumber(m[5])
save_hold(id, {o = shopper, q = qty, u = units, d = deadline, s = 'held', c = now, k = key})
redis.call('ZADD', K_DEADLINES, deadline, id)
redis.call('HINCRBY', K_USERS, shopper, qty)
redis.call('HINCRBY', K_META, 'held', qty)
if ARGV[7] == '1' then redis.call('SADD', K_RESERVED, shopper) end
if key ~= '' then redis.call('HSET', K_IDEM, idem_field, id) end
return {'ok', id, deadline, 0}
